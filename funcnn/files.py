"""Writing a file whole or not at all: funcnn's one atomic writer.

Contract: `write_atomic(path, write)` calls `write(f)` on a new binary file beside `path`,
makes its bytes durable (fsync), optionally checks it, then renames it over `path` and makes
the rename durable too. A reader (a browser, a watcher, a restarted training run) sees the old
file or the new one, never half of one, even after a crash or kill -9; on any failure the
temporary file goes and `path` is as it was. Checkpoints, downloads and pictures all use it.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path, write, *, check=None) -> Path:
    """Write `path` through `write(f)` (f: a binary file), atomically and durably.

    `check(tmp_path)`, if given, runs on the complete temporary file before the rename and
    raises to refuse it (a download checks its hash there). Returns `path` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())                # the bytes on disk before the name points at them
        if check is not None:
            check(tmp)
        os.replace(tmp, path)                   # atomic: readers see the old file or the new one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)                      # the rename itself on disk
    return path


def write_text_atomic(path, text: str) -> Path:
    """`write_atomic` for a text (UTF-8), as the SVG pictures are."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new file `.<name>.<random>.tmp` in path's directory, mode 0o666 less the umask."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o666), tmp
        except FileExistsError:
            continue


def fsync_dir(d: Path) -> None:
    """Make a rename in directory `d` durable (POSIX); a no-op where directories cannot be
    opened."""
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
