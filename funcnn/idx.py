"""IDX files (the MNIST format) read by hand; Fashion-MNIST and MNIST found, fetched, loaded.

Contract: a reader returns NumPy arrays exactly as stored, or raises. `IdxError` (a ValueError)
names the file and the fault: bad magic, unknown type code, wrong payload length, a broken
gzip stream, a SHA-256 mismatch. `FileNotFoundError` says where it looked and how to get the
data; `OSError` reports a failed transfer. A file may be gzipped or not (`x.gz` or `x`, told
apart by its first bytes); a SHA-256 here is that of the IDX bytes after gunzip, so one hash
holds for both forms. A download never leaves a file under its final name unless it verified.
Standard library and NumPy only.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from funcnn.checks import InputError

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

# IDX type code -> big-endian NumPy dtype.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(InputError):
    """A data file is malformed or fails its SHA-256; the message names it and says what to do."""


# --- one IDX file ------------------------------------------------------------------------------

def read_idx(path, sha256: str | None = None) -> np.ndarray:
    """Read one IDX file, gzipped or not, into an array of its stored dtype and shape.

    The header is 00 00, a type code, a dimension count d, then d big-endian uint32 sizes;
    the payload must hold exactly prod(sizes) values. With `sha256`, the IDX bytes must match.
    Example: bytes 00 00 0B 01 | 00 00 00 02 | 01 02 FF FE  ->  int16 array [258, -2].
    """
    path = Path(path)
    data = _idx_bytes(path)
    if sha256 is not None:
        _check_hash(path, hashlib.sha256(data).hexdigest(), sha256)
    return _parse(data, path)


def write_idx(path, x: np.ndarray, gz: bool = False) -> Path:
    """Write `x` (a dtype IDX knows, 1 to 255 dimensions) as an IDX file, gzipped if `gz`."""
    x = np.asarray(x)
    codes = {np.dtype(t).newbyteorder("="): code for code, t in _DTYPES.items()}
    if x.dtype not in codes:
        raise IdxError(f"IDX cannot store dtype {x.dtype}; use one of "
                       f"{sorted(d.name for d in codes)}")
    if not 1 <= x.ndim <= 255:
        raise IdxError(f"IDX stores 1 to 255 dimensions, got an array of shape {x.shape}")
    header = bytes([0, 0, codes[x.dtype], x.ndim]) + struct.pack(f">{x.ndim}I", *x.shape)
    data = header + x.astype(x.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def verify(path, sha256: str) -> None:
    """Raise `IdxError` unless the IDX bytes of `path` (after gunzip) have this SHA-256."""
    path = Path(path)
    _check_hash(path, hashlib.sha256(_idx_bytes(path)).hexdigest(), sha256)


def _idx_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic 1f 8b."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:     # bad header, cut-off stream, CRC, deflate
        raise IdxError(f"{path}: broken gzip stream ({e}): the file is truncated or corrupt; "
                       "delete it and get it again") from None


def _parse(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4 or data[:2] != b"\0\0":
        start = data[:4].hex(" ") or "nothing (the file is empty)"
        raise IdxError(f"{path}: not an IDX file: it starts with {start}, an IDX file with "
                       "00 00, a type code and a dimension count")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X} ({np.dtype(t).name})" for c, t in _DTYPES.items())
        raise IdxError(f"{path}: unknown IDX type code 0x{code:02X}; known codes: {known}")
    if ndim == 0:
        raise IdxError(f"{path}: the IDX header gives 0 dimensions; an IDX array has at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the "
                       f"file holds {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        fault = "truncated payload" if found < expected else "extra bytes after the payload"
        raise IdxError(f"{path}: {fault}: shape {list(shape)} of {dtype.name} needs {expected} "
                       f"bytes after the {header}-byte header, the file holds {found}")
    x = np.frombuffer(data, dtype, count=math.prod(shape), offset=header).reshape(shape)
    return x.astype(dtype.newbyteorder("="))            # native byte order, a writable copy


def _check_hash(path: Path, found: str, expected: str) -> None:
    if found != expected.lower():
        raise IdxError(f"{path}: SHA-256 of its IDX bytes is {found}, expected {expected}: the "
                       "file is corrupt or another version. Delete it and download it again "
                       "(download=True, or the command-line flag --download)")


# --- where the files are -----------------------------------------------------------------------

def cache_dir(name: str) -> Path:
    """The user cache for data set `name`: $XDG_CACHE_HOME/funcnn/<name>, else ~/.cache/..."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "funcnn" / name


def find(name: str, files=FILES, path=None) -> Path:
    """The first directory holding all of `files` (each as `x.gz` or `x`).

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
        missing = [f for f in files if _locate(where, f) is None]
        if not missing:
            return where
        lack = "no such directory" if not where.is_dir() else "missing " + ", ".join(
            f + "(.gz)" for f in missing)
        searched.append(f"{label} {where}: {lack}")
    raise FileNotFoundError(_how_to_get(name, files, searched))


def _locate(where: Path, f: str) -> Path | None:
    for candidate in (where / (f + ".gz"), where / f):
        if candidate.is_file():
            return candidate
    return None


def _how_to_get(name: str, files, searched: list[str]) -> str:
    ways = []
    if name in APT_PACKAGES:
        ways.append(f"sudo apt-get install {APT_PACKAGES[name]}   (Debian/Ubuntu: installs "
                    f"{SYSTEM_DIRS[name]})")
    if _source(name)[0] is not None:
        loader = "load_" + name.replace("-", "_")
        ways.append(f"{loader}(download=True), or the command-line flag --download   "
                    f"(fetches into {cache_dir(name)}, SHA-256 checked)")
    ways.append(f"put the files ({', '.join(files)}; gzipped or not) in a directory and "
                f"pass path=that directory, or set FUNCNN_DATA to it")
    return (f"{name} data not found. Searched, in order:\n  " + "\n  ".join(searched)
            + "\nGet it with one of:\n  " + "\n  ".join(ways))


# --- download ----------------------------------------------------------------------------------

def _source(name: str) -> tuple[str | None, dict | None]:
    """(base_url, {file name as served: SHA-256 of its IDX bytes}) for a known data set."""
    if name == "fashion-mnist":
        return FASHION_MNIST_URL, {f + ".gz": h for f, h in FASHION_MNIST_SHA256.items()}
    return None, None


def download(name: str, dest_dir=None, base_url: str | None = None, files: dict | None = None,
             timeout: float = 30.0) -> Path:
    """Fetch each of `files` ({name as served: SHA-256}) from `base_url` into `dest_dir`.

    Defaults: the data set's known source (fashion-mnist: its upstream URL and hashes) and
    `cache_dir(name)`. A file already there that verifies is kept; any other is fetched into a
    temporary file beside it, checked, fsync'ed, then renamed over the final name, so a failed
    or interrupted download leaves the final name as it was. `timeout`: seconds a connection
    or a read may stall. Prints a line per file fetched, with its size.
    """
    known_url, known_files = _source(name)
    base_url = base_url or known_url
    files = files or known_files
    if base_url is None or files is None:
        raise IdxError(f"no download source is known for {name!r}; pass base_url= and "
                       "files={file name: SHA-256 of its IDX bytes}")
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
        _fetch(base_url.rstrip("/") + "/" + f, final, sha256, timeout)
    return dest


_download = download     # load_fashion_mnist's `download` argument hides the function's name


def _fetch(url: str, final: Path, sha256: str, timeout: float) -> None:
    import urllib.error, urllib.request                  # here: only a download needs them
    from http.client import HTTPException                # (and they cost ~0.1 s to import)
    tmp = None
    try:
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            print(f"downloading {url} ({'size unknown' if size is None else _mb(size)}) "
                  f"-> {final.parent}", flush=True)
            with tempfile.NamedTemporaryFile(dir=final.parent, prefix=f".{final.name}.",
                                             suffix=".part", delete=False) as out:
                tmp = Path(out.name)
                got = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    got += len(chunk)
                if size is not None and got != size:   # urllib does not check this itself
                    raise OSError(f"downloading {url}: the connection closed after {got} of "
                                  f"{size} bytes; nothing was saved, run it again")
                out.flush()
                os.fsync(out.fileno())                   # on disk before it gets the name
        try:
            verify(tmp, sha256)
        except IdxError as e:
            raise IdxError(f"downloading {url}: the file received is not the expected one; "
                           f"nothing was saved as {final}. {e}") from None
        os.replace(tmp, final)                           # atomic: the old file or the new one
        tmp = None
        fsync_dir(final.parent)
        print(f"  {final.name}: {_mb(got)} in {time.perf_counter() - t0:.1f} s, SHA-256 ok",
              flush=True)
    except (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError) as e:
        raise OSError(f"downloading {url} failed: {e}; check the network and run it again, or "
                      "use another source (base_url=)") from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def fsync_dir(d: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        where = _download("fashion-mnist", dest_dir=path)
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
