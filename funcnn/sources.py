"""Where the data sets come from: Fashion-MNIST and MNIST found on disk, fetched, loaded; tiny
Shakespeare found and fetched here, read as text by `funcnn.text`.

Contract: `find` returns the first directory holding a data set's files or raises
`FileNotFoundError` saying where it looked and how to get the data; `fetch` downloads a
file only into a temporary one beside its final name and gives it that name only once its
SHA-256 verified (funcnn.files.write_atomic), so a failed or interrupted download leaves
nothing behind, and a transfer that fails raises `OSError` naming the URL. The loaders return
NumPy arrays read by `funcnn.idx`, and raise its `IdxError` for a file that is not the one
expected. Standard library and NumPy only.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from funcnn.files import write_atomic
from funcnn.idx import IdxError, read_idx, verify

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# The four files of MNIST and of Fashion-MNIST, named without ".gz".
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# SHA-256 of the IDX bytes (after gunzip). Debian's dataset-fashion-mnist re-gzips the files, so
# its .gz differ from upstream's, but the bytes inside are upstream's: their MD5s are the ones
# published for the unzipped files (train-images f4a8712d..., train-labels 9018921c...,
# t10k-images 8181f547..., t10k-labels 15d48437...).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # its README's
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}  # Debian's package
APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}

# char-rnn's tiny Shakespeare: 1,115,394 bytes, 65 distinct characters. The address is the one
# nanoGPT's data/shakespeare_char/prepare.py downloads, less the file name.
TINY_SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                        "tinyshakespeare/")
TINY_SHAKESPEARE_SHA256 = {
    "input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"}
DOWNLOAD_CALLS = {   # what fetches a data set, for the message of a search that failed
    "fashion-mnist": "load_fashion_mnist(download=True), or the command-line flag --download",
    "tinyshakespeare": "funcnn.data.tiny_shakespeare(download=True)"}


# --- where the files are -----------------------------------------------------------------------

def cache_dir(name: str) -> Path:
    """The user cache for data set `name`: $XDG_CACHE_HOME/funcnn/<name>, else ~/.cache/..."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "funcnn" / name


def find(name: str, files=FILES, path=None, *, gz: bool = True) -> Path:
    """The first directory holding all of `files` (each as `x.gz` or `x`; only `x` if not `gz`).

    With `path`, only `path`: a path that lacks a file is an error, never skipped. Otherwise, in
    order: $FUNCNN_DATA, $FUNCNN_DATA/<name>, the system directory (`SYSTEM_DIRS`, Debian's for
    fashion-mnist), the user cache `cache_dir(name)`. Raises `FileNotFoundError` listing the
    places searched and how to get the data.
    """
    places, searched = [], []
    env = os.environ.get("FUNCNN_DATA")
    if path is not None:
        places.append(("the path argument", Path(path).expanduser()))
    elif env:
        places += [("$FUNCNN_DATA", Path(env).expanduser()),
                   ("$FUNCNN_DATA/" + name, Path(env).expanduser() / name)]
    else:
        searched.append("$FUNCNN_DATA: not set")
    if path is None:
        if name in SYSTEM_DIRS:
            places.append(("the system directory", SYSTEM_DIRS[name]))
        places.append(("the user cache", cache_dir(name)))
    for label, where in places:
        missing = [f for f in files if _locate(where, f, gz) is None]
        if not missing:
            return where
        lack = "no such directory" if not where.is_dir() else "missing " + ", ".join(
            f + "(.gz)" * gz for f in missing)
        searched.append(f"{label} {where}: {lack}")
    raise FileNotFoundError(_how_to_get(name, files, searched, gz))


def _locate(where: Path, f: str, gz: bool = True) -> Path | None:
    for candidate in (where / (f + ".gz"), where / f) if gz else (where / f,):
        if candidate.is_file():
            return candidate
    return None


def _how_to_get(name: str, files, searched: list[str], gz: bool = True) -> str:
    ways = []
    if name in APT_PACKAGES:
        ways.append(f"sudo apt-get install {APT_PACKAGES[name]}   (Debian/Ubuntu: installs "
                    f"{SYSTEM_DIRS[name]})")
    if _source(name)[0] is not None:
        ways.append(f"{DOWNLOAD_CALLS[name]}   (fetches into {cache_dir(name)}, SHA-256 checked)")
    ways.append(f"put the files ({', '.join(files)}{'; gzipped or not' * gz}) in a directory "
                f"and pass path=that directory, or set FUNCNN_DATA to it")
    return (f"{name} data not found. Searched, in order:\n  " + "\n  ".join(searched)
            + "\nGet it with one of:\n  " + "\n  ".join(ways))


# --- downloads -----------------------------------------------------------------------------------

def _source(name: str) -> tuple[str | None, dict | None]:
    """(base_url, {file name as served: SHA-256 of its bytes, after gunzip}) for a known data
    set."""
    if name == "fashion-mnist":
        return FASHION_MNIST_URL, {f + ".gz": h for f, h in FASHION_MNIST_SHA256.items()}
    if name == "tinyshakespeare":
        return TINY_SHAKESPEARE_URL, dict(TINY_SHAKESPEARE_SHA256)
    return None, None


def fetch(name: str, dest_dir=None, base_url: str | None = None, files: dict | None = None,
          timeout: float = 30.0) -> Path:
    """Download each of `files` ({name as served: SHA-256}) from `base_url` into `dest_dir`.

    Defaults: the data set's known source (fashion-mnist: its upstream URL and hashes) and
    `cache_dir(name)`. A file already there that verifies is kept; any other is downloaded
    into a temporary file beside it, checked, and only then renamed over the final name
    (funcnn.files.write_atomic), so a failed or interrupted download leaves the final name as
    it was. `timeout`: seconds a connection or a read may stall. Prints a line per file
    downloaded, with its size.
    """
    known_url, known_files = _source(name)
    base_url = base_url or known_url
    files = files or known_files
    if base_url is None or files is None:
        raise IdxError(f"no download source is known for {name!r}; pass base_url= and "
                       "files={file name: SHA-256 of its bytes, after gunzip}")
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir(name)
    dest.mkdir(parents=True, exist_ok=True)
    for f, sha256 in files.items():
        final = dest / f
        if final.is_file():
            try:
                verify(final, sha256)
                continue                                 # already here and good
            except IdxError:
                pass                                     # stale or corrupt: replace on success
        _fetch_file(base_url.rstrip("/") + "/" + f, final, sha256, timeout)
    return dest


def _fetch_file(url: str, final: Path, sha256: str, timeout: float) -> None:
    import urllib.error, urllib.request                  # here: only a download needs them
    from http.client import HTTPException                # (and they cost ~0.1 s to import)
    t0, got = time.perf_counter(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            print(f"downloading {url} ({'size unknown' if size is None else _mb(size)}) "
                  f"-> {final.parent}", flush=True)

            def copy(out):                               # the body into the temporary file
                nonlocal got
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    got += len(chunk)
                if size is not None and got != size:   # urllib does not check this itself
                    raise OSError(f"downloading {url}: the connection closed after {got} of "
                                  f"{size} bytes; nothing was saved, run it again")

            def check(tmp):                              # refuses the rename unless it verifies
                try:
                    verify(tmp, sha256)
                except IdxError as e:
                    raise IdxError(f"downloading {url}: the file received is not the expected "
                                   f"one; nothing was saved as {final}. {e}") from None

            write_atomic(final, copy, check=check)
        print(f"  {final.name}: {_mb(got)} in {time.perf_counter() - t0:.1f} s, SHA-256 ok",
              flush=True)
    except (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError) as e:
        raise OSError(f"downloading {url} failed: {e}; check the network and run it again, or "
                      "use another source (base_url=)") from e


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# --- the data sets -----------------------------------------------------------------------------

def load_fashion_mnist(path=None, download: bool = False):
    """Fashion-MNIST as `(x_train u8[60000, 28, 28], y_train u8[60000], x_test u8[10000, 28, 28],
    y_test u8[10000])`, labels indexing `FASHION_CLASSES`, every file checked by SHA-256.

    Looks where `find` looks; with `download=True`, missing files are fetched (into `path`
    if given, else the user cache).
    """
    try:
        where = find("fashion-mnist", FILES, path)
    except FileNotFoundError:
        if not download:
            raise
        where = fetch("fashion-mnist", dest_dir=path)
    return _load(where, FASHION_MNIST_SHA256)


def load_mnist(path=None):
    """The digits MNIST from a directory holding its four files (gzipped or not), as
    `load_fashion_mnist` returns them; no hash table, so the structure alone is checked.
    Looks where `find` looks (path, $FUNCNN_DATA, $FUNCNN_DATA/mnist, the user cache)."""
    return _load(find("mnist", FILES, path), None)


def _load(where: Path, hashes: dict | None):
    paths = [_locate(where, f) for f in FILES]
    x_train, y_train, x_test, y_test = (
        read_idx(p, None if hashes is None else hashes[f]) for p, f in zip(paths, FILES,
                                                                            strict=True))
    _check_pair(x_train, y_train, paths[0], paths[1])
    _check_pair(x_test, y_test, paths[2], paths[3])
    return x_train, y_train, x_test, y_test


def _check_pair(x: np.ndarray, y: np.ndarray, x_path: Path, y_path: Path) -> None:
    """Images u8[n, 28, 28] and labels u8[n] in 0..9, from the same set."""
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise IdxError(f"{x_path}: expected images uint8[n, 28, 28], found "
                       f"{x.dtype}{list(x.shape)}; is it an images file?")
    if y.dtype != np.uint8 or y.ndim != 1:
        raise IdxError(f"{y_path}: expected labels uint8[n], found {y.dtype}{list(y.shape)}; "
                       "is it a labels file?")
    if len(x) != len(y):
        raise IdxError(f"{x_path} holds {len(x)} images but {y_path} holds {len(y)} labels; "
                       "the two files come from different sets")
    if y.size and y.max() > 9:
        raise IdxError(f"{y_path}: label {int(y.max())} at index {int(y.argmax())}; labels "
                       "must be 0..9")
