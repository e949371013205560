"""IDX files (the MNIST format) read and written by hand, and checked by SHA-256.

Contract: a reader returns NumPy arrays exactly as stored, or raises. `IdxError` (an
InputError, so a ValueError) names the file and the fault: bad magic, unknown type code, wrong
payload length, a broken gzip stream, a SHA-256 mismatch. A file may be gzipped or not (`x.gz`
or `x`, told apart by its first bytes); a SHA-256 here is that of the IDX bytes after gunzip,
so one hash holds for both forms. Where the files come from (found on disk, downloaded) and the
data sets made of them are `funcnn.sources`'. Standard library and NumPy only.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from funcnn.checks import InputError

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
    """Raise `IdxError` unless the bytes of `path` (after gunzip, if gzipped) have this SHA-256:
    an IDX file's, or any other file's (tiny Shakespeare's text)."""
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
        raise IdxError(f"{path}: SHA-256 of its contents is {found}, expected {expected}: the "
                       "file is corrupt or another version. Delete it and download it again "
                       "(download=True, or the command-line flag --download)")
