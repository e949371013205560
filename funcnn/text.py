"""Text for a character-level model: a file's characters as int32 tokens, nanoGPT's split, and
random windows of them to train on.

Contract: `text(path)` reads a UTF-8 file whole, its characters exactly as stored (no newline
translation), and returns a `Text`: its vocabulary (the sorted set of its characters, one str;
a character's id is its index there), `encode`/`decode` between strings and `int32` ids, and
`train`/`val`, the ids split 90/10 in file order as nanoGPT's data/shakespeare_char/prepare.py
splits them. `tiny_shakespeare` finds char-rnn's tiny Shakespeare where `funcnn.sources` finds
Fashion-MNIST, or downloads it there, SHA-256 checked and written atomically. `windows(key,
tokens, n, t)` draws next-character pairs `(x, y): int32[n, t]` from a key, compiled, so that
it runs inside `lax.scan`. A file that is missing, a directory, empty or not UTF-8, and a
character outside the vocabulary, are errors that name the file (or the characters) and the fix.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import rng, sources
from funcnn.checks import InputError, InputTypeError, integer

TRAIN_FRACTION = 0.9   # nanoGPT's: train is the first int(n * 0.9) characters, val the rest
TINY_SHAKESPEARE = "tinyshakespeare"   # its directory under $FUNCNN_DATA and the user cache


@dataclass(frozen=True, eq=False)
class Text:
    """A text's vocabulary and its tokens, split; `encode` and `decode` map between the two."""
    vocab: str          # the distinct characters, sorted; id i is vocab[i]
    train: np.ndarray   # int32[int(0.9 n)]: the first 90% of the n characters, as ids
    val: np.ndarray     # int32[n - int(0.9 n)]: the rest

    def encode(self, s: str) -> np.ndarray:
        """`s` as `int32[len(s)]` ids. Characters outside `vocab` are an `InputError` that
        names them."""
        if not isinstance(s, str):
            raise InputTypeError(f"encode takes a str, got {type(s).__name__}; decode bytes "
                                 "first (b.decode('utf-8'))")
        codes = _code_points(self.vocab)                 # sorted, as vocab is
        points = _code_points(s)
        ids = np.searchsorted(codes, points)                 # where each would sort in
        unknown = ids == len(codes)
        unknown[~unknown] = codes[ids[~unknown]] != points[~unknown]
        if unknown.any():
            chars = [chr(c) for c in np.unique(points[unknown])]
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars[:10])
            more = f" and {len(chars) - 10} more" if len(chars) > 10 else ""
            raise InputError(f"encode: {len(chars)} character(s) not in the vocabulary of "
                             f"{len(self.vocab)}: {shown}{more}, the first at index "
                             f"{int(np.argmax(unknown))}; replace them (str.translate), or read "
                             "a text that holds them")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        """The characters of ids `int[t]` (a list, NumPy or JAX array) as one str; an id
        outside `[0, len(vocab))` is an `InputError`."""
        a = np.asarray(ids)
        if a.dtype.kind not in "iu" and a.size:               # [] reads as float64: no ids
            raise InputTypeError(f"decode takes integer ids, got dtype {a.dtype}; pass the ids "
                                 "encode or a model returned")
        if a.ndim > 1:
            raise InputError(f"decode takes one sequence of ids, int[t], got shape "
                             f"{list(a.shape)}; decode each row: [text.decode(r) for r in ids]")
        a = a.reshape(-1).astype(np.int64)
        bad = (a < 0) | (a >= len(self.vocab))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"decode: id {int(a[i])} at index {i} is outside the vocabulary "
                             f"of {len(self.vocab)} (ids 0..{len(self.vocab) - 1})")
        return _code_points(self.vocab)[a].astype("<u4").tobytes().decode("utf-32-le")

    def __repr__(self) -> str:
        return (f"Text(vocab={len(self.vocab)} characters, train=int32[{len(self.train)}], "
                f"val=int32[{len(self.val)}])")


def _code_points(s: str) -> np.ndarray:
    """u32[len(s)]: each character's code point (a lone surrogate too, so encode can name it)."""
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), "<u4")


# --- reading ----------------------------------------------------------------------------------

def text(path) -> Text:
    """The UTF-8 file at `path` as a `Text`: its sorted characters as the vocabulary, its ids
    split 90/10 in file order (train the first `int(n * 0.9)`). A missing file, a directory, an
    empty file or bytes that are not UTF-8 are errors naming the path and the fix."""
    path = Path(path).expanduser()
    return _from_bytes(_read(path), path)


def _read(path: Path) -> bytes:
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.txt"))[:3]
        hint = f"; it holds {', '.join(inside)}" if inside else ""
        raise IsADirectoryError(f"{path} is a directory, not a text file; pass the path of a "
                                f"file in it{hint}")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file; check the path (a relative one is read "
                                f"from {Path.cwd()})") from None


def _from_bytes(raw: bytes, path: Path) -> Text:
    if not raw:
        raise InputError(f"{path} is empty; a text needs at least one character")
    try:
        chars = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path} is not UTF-8 text: byte {e.start} (line {line}) is "
                         f"0x{raw[e.start]:02x} ({e.reason}); convert it to UTF-8 first, "
                         "e.g. iconv -f latin1 -t utf-8 in.txt > out.txt") from None
    vocab = "".join(sorted(set(chars)))
    ids = Text(vocab, np.zeros(0, np.int32), np.zeros(0, np.int32)).encode(chars)
    ids.flags.writeable = False                              # Text is frozen, so are its arrays
    n_train = int(len(ids) * TRAIN_FRACTION)
    return Text(vocab, ids[:n_train], ids[n_train:])


def tiny_shakespeare(path=None, download: bool = False) -> Text:
    """char-rnn's tiny Shakespeare (1,115,394 characters, 65 distinct; 1,003,854 train) as a
    `Text`, its SHA-256 checked.

    `input.txt` is looked for where Fashion-MNIST is (`funcnn.sources.find`): `path` (a
    directory, or the file itself), else $FUNCNN_DATA, $FUNCNN_DATA/tinyshakespeare, the user
    cache (~/.cache/funcnn/tinyshakespeare). Not found: with `download=True` it is fetched from
    `funcnn.sources.TINY_SHAKESPEARE_URL` (into `path` if given, else the user cache), written
    atomically once its SHA-256 verified; without, a `FileNotFoundError` lists where it looked.
    """
    if path is not None and Path(path).expanduser().is_file():
        file = Path(path).expanduser()
    else:
        try:
            where = sources.find(TINY_SHAKESPEARE, ("input.txt",), path, gz=False)
        except FileNotFoundError:
            if not download:
                raise
            where = sources.fetch(TINY_SHAKESPEARE, dest_dir=path)
        file = where / "input.txt"
    raw = _read(file)
    found = hashlib.sha256(raw).hexdigest()
    expected = sources.TINY_SHAKESPEARE_SHA256["input.txt"]
    if found != expected:
        raise InputError(f"{file}: SHA-256 {found}, expected {expected}: not tiny Shakespeare "
                         "as char-rnn publishes it (corrupt, or another text). Delete it and "
                         "download it again (download=True), or read another text with "
                         "funcnn.data.text(path)")
    return _from_bytes(raw, file)


# --- windows to train on ------------------------------------------------------------------------

def windows(key: rng.Key, tokens, n: int, t: int) -> tuple[jax.Array, jax.Array]:
    """`n` windows of `t + 1` consecutive tokens, each starting at a random position drawn from
    `key` (nanoGPT's get_batch: starts uniform in `[0, len(tokens) - t)`), as
    `x = window[:, :t]` and `y = window[:, 1:]`, both `int32[n, t]`: y holds the token after
    each of x's. Same key, same windows. Compiled and pure (one gather), so it can be called
    with a traced key inside `lax.scan` or `jit`; `tokens`: `int[m]`, m >= t + 1.
    """
    key = rng.check_key(key)
    n, t = integer("n", n, 1), integer("t", t, 1)
    dtype, shape = getattr(tokens, "dtype", None), getattr(tokens, "shape", None)
    if dtype is None:                                        # a list: as an array
        tokens = np.asarray(tokens)
        dtype, shape = tokens.dtype, tokens.shape
    if not jnp.issubdtype(dtype, jnp.integer) or len(shape) != 1:
        raise InputTypeError(f"tokens must be int[m], one sequence of ids, got {dtype}"
                             f"{list(shape)}; pass text.train or text.val")
    if shape[0] < t + 1:
        raise InputError(f"tokens holds {shape[0]} ids, fewer than a window of t + 1 = {t + 1}; "
                         "use a smaller t or a longer text")
    return _windows(key, tokens, n=n, t=t)


@partial(jax.jit, static_argnames=("n", "t"))
def _windows(key, tokens, *, n, t):
    starts = jax.random.randint(key, (n, 1), 0, tokens.shape[0] - t)   # i32[n, 1]
    rows = tokens[starts + jnp.arange(t + 1)[None, :]].astype(jnp.int32)  # i32[n, t + 1]
    return rows[:, :-1], rows[:, 1:]
