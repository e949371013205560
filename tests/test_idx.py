"""IDX reading and verification (funcnn.idx); the search for data and the atomic download
(funcnn.sources).

The download tests run a small HTTP server on 127.0.0.1 serving IDX files the tests make.
The real Fashion-MNIST files are checked where installed (Debian's dataset-fashion-mnist).
"""
import gzip
import hashlib
import http.server
import os
import re
import struct
import threading
import time

import numpy as np
import pytest

from funcnn import idx, sources
from funcnn.idx import IdxError
from funcnn.sources import FILES

REAL_DIR = sources.SYSTEM_DIRS["fashion-mnist"]   # read before any test patches it


def sha256_of_idx(x: np.ndarray) -> str:
    """The hash `verify` expects: of the IDX bytes, built here with struct, not write_idx."""
    code = {np.uint8: 0x08, np.int16: 0x0B}[x.dtype.type]
    header = bytes([0, 0, code, x.ndim]) + struct.pack(f">{x.ndim}I", *x.shape)
    return hashlib.sha256(header + x.astype(x.dtype.newbyteorder(">")).tobytes()).hexdigest()


def small_set(seed=0, n_train=6, n_test=4):
    """Four arrays shaped like MNIST's, with few rows."""
    r = np.random.default_rng(seed)
    return (r.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            r.integers(0, 10, n_train, dtype=np.uint8),
            r.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            r.integers(0, 10, n_test, dtype=np.uint8))


def write_set(d, arrays, gz=True, names=FILES):
    d.mkdir(parents=True, exist_ok=True)
    for name, x in zip(names, arrays, strict=True):
        idx.write_idx(d / (name + ".gz" if gz else name), x, gz=gz)
    return d


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No FUNCNN_DATA, the system directory and the user cache moved under tmp_path."""
    monkeypatch.delenv("FUNCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", tmp_path / "system")
    return tmp_path


# --- reading -----------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (0, 28, 28)])
def test_round_trip(tmp_path, dtype, shape, gz):
    r = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    x = r.uniform(float(info.min) / 2, float(info.max) / 2, shape).astype(dtype)
    y = idx.read_idx(idx.write_idx(tmp_path / "x.idx", x, gz=gz))
    assert y.dtype == dtype and y.shape == shape and y.flags.writeable
    np.testing.assert_array_equal(y, x)


def test_reads_big_endian_bytes_written_by_hand(tmp_path):
    # 00 00 | 0B int16 | 1 dim | size 2 | 0x0102, 0xFFFE  ->  [258, -2]
    path = tmp_path / "h.idx"
    path.write_bytes(b"\0\0\x0b\x01" + struct.pack(">I", 2) + bytes([1, 2, 0xFF, 0xFE]))
    np.testing.assert_array_equal(idx.read_idx(path), np.array([258, -2], np.int16))


def test_gzip_told_by_its_magic_not_its_name(tmp_path):
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    zipped_no_suffix = idx.write_idx(tmp_path / "a", x, gz=True)
    raw_with_suffix = idx.write_idx(tmp_path / "b.gz", x, gz=False)
    np.testing.assert_array_equal(idx.read_idx(zipped_no_suffix), x)
    np.testing.assert_array_equal(idx.read_idx(raw_with_suffix), x)


def _good_bytes():
    return b"\0\0\x08\x02" + struct.pack(">II", 3, 4) + bytes(range(12))


def _truncated_gzip():
    z = gzip.compress(_good_bytes() * 1000)
    return z[: len(z) // 2]


def _flipped_gzip():
    z = bytearray(gzip.compress(bytes(range(256)) * 40))
    z[len(z) // 2] ^= 0xFF
    return bytes(z)


CORRUPT = {
    "empty": (b"", "empty"),
    "bad magic": (b"\x01\x00" + _good_bytes()[2:], "not an IDX file"),
    "unknown type code": (b"\0\0\x0a" + _good_bytes()[3:], "type code 0x0A"),
    "zero dimensions": (b"\0\0\x08\x00", "0 dimensions"),
    "truncated header": (_good_bytes()[:9], "truncated header"),
    "truncated payload": (_good_bytes()[:-1], "truncated payload"),
    "extra bytes": (_good_bytes() + b"\0", "extra bytes"),
    "truncated gzip": (_truncated_gzip(), "gzip"),
    "corrupt gzip": (_flipped_gzip(), "gzip"),
    "gzip of a bad IDX": (gzip.compress(_good_bytes()[:-2]), "truncated payload"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_file_is_an_error_naming_it(tmp_path, case):
    data, fault = CORRUPT[case]
    path = tmp_path / "bad-file.gz"
    path.write_bytes(data)
    with pytest.raises(IdxError, match=re.escape(str(path))) as e:
        idx.read_idx(path)
    assert fault in str(e.value)
    assert isinstance(e.value, ValueError)


def test_good_bytes_do_read():   # the corruptions above start from a readable file
    assert idx._parse(_good_bytes(), "g").shape == (3, 4)


def test_verify_names_both_hashes_and_the_fix(tmp_path):
    x = np.arange(10, dtype=np.uint8)
    gz = idx.write_idx(tmp_path / "x.gz", x, gz=True)
    raw = idx.write_idx(tmp_path / "x", x, gz=False)
    good = sha256_of_idx(x)
    idx.verify(gz, good)                    # one hash for both forms
    idx.verify(raw, good)
    np.testing.assert_array_equal(idx.read_idx(gz, sha256=good), x)
    wrong = "0" * 64
    with pytest.raises(IdxError) as e:
        idx.read_idx(gz, sha256=wrong)
    assert str(gz) in str(e.value) and good in str(e.value) and wrong in str(e.value)
    assert "Delete it and download it again" in str(e.value)


# --- finding the files -------------------------------------------------------------------------

def test_search_order(clean_env, monkeypatch):
    tmp = clean_env
    arrays = [small_set(seed) for seed in range(4)]
    given, env, system, cache = (write_set(d, a) for d, a in zip(
        [tmp / "given", tmp / "env", tmp / "system", tmp / "cache/funcnn/fashion-mnist"],
        arrays, strict=True))
    monkeypatch.setenv("FUNCNN_DATA", str(env))

    def loaded_from():                       # which set find + load gave, by its content
        got = sources.load_mnist(sources.find("fashion-mnist"))
        return [i for i, a in enumerate(arrays) if np.array_equal(got[0], a[0])]

    assert sources.find("fashion-mnist", FILES, given) == given
    assert sources.find("fashion-mnist") == env and loaded_from() == [1]
    monkeypatch.delenv("FUNCNN_DATA")
    assert sources.find("fashion-mnist") == system and loaded_from() == [2]
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", tmp / "nowhere")
    assert sources.find("fashion-mnist") == cache and loaded_from() == [3]


def test_funcnn_data_subdirectory_and_mixed_gzip(clean_env, monkeypatch):
    d = clean_env / "data"
    write_set(d / "fashion-mnist", small_set()[:2], gz=True, names=FILES[:2])
    write_set(d / "fashion-mnist", small_set()[2:], gz=False, names=FILES[2:])
    monkeypatch.setenv("FUNCNN_DATA", str(d))
    assert sources.find("fashion-mnist") == d / "fashion-mnist"


def test_incomplete_directory_is_skipped(clean_env, monkeypatch):
    write_set(clean_env / "env", small_set()[:3], names=FILES[:3])     # no t10k labels
    write_set(clean_env / "system", small_set())
    monkeypatch.setenv("FUNCNN_DATA", str(clean_env / "env"))
    assert sources.find("fashion-mnist") == clean_env / "system"


def test_a_given_path_is_not_skipped(clean_env):
    write_set(clean_env / "system", small_set())
    with pytest.raises(FileNotFoundError, match="the path argument .*no such directory"):
        sources.find("fashion-mnist", FILES, clean_env / "typo")


def test_missing_data_says_how_to_get_it(clean_env):
    with pytest.raises(FileNotFoundError) as e:
        sources.load_fashion_mnist()
    message = str(e.value)
    for needed in ["sudo apt-get install dataset-fashion-mnist", "download=True", "--download",
                   "FUNCNN_DATA", "$FUNCNN_DATA: not set", str(clean_env / "system"),
                   str(clean_env / "cache/funcnn/fashion-mnist")]:
        assert needed in message, needed


def test_missing_mnist_offers_no_package_or_download(clean_env):
    with pytest.raises(FileNotFoundError) as e:
        sources.load_mnist()
    assert "apt-get" not in str(e.value) and "download" not in str(e.value)
    assert "FUNCNN_DATA" in str(e.value)


# --- loading checks ----------------------------------------------------------------------------

def test_load_mnist_returns_the_arrays(tmp_path):
    arrays = small_set()
    got = sources.load_mnist(write_set(tmp_path, arrays, gz=False))
    for g, a in zip(got, arrays, strict=True):
        assert g.dtype == np.uint8
        np.testing.assert_array_equal(g, a)


@pytest.mark.parametrize("fault, change", [
    ("images but", lambda s: (s[0], s[1][:-1], s[2], s[3])),             # 6 images, 5 labels
    ("labels must be 0..9", lambda s: (s[0], s[1], s[2], s[3] + 10)),
    ("expected images uint8", lambda s: (s[0][:, :27], s[1], s[2], s[3])),
    ("expected labels uint8", lambda s: (s[0], s[1].astype(np.int16), s[2], s[3])),
])
def test_inconsistent_sets_are_errors(tmp_path, fault, change):
    write_set(tmp_path, change(small_set()))
    with pytest.raises(IdxError, match=fault):
        sources.load_mnist(tmp_path)


# --- download ----------------------------------------------------------------------------------

class Server:
    """Serves `routes[path] = (body, content_length or None, seconds to stall before the body)`
    on 127.0.0.1 in a background thread; records the paths requested."""

    def __init__(self):
        self.routes, self.requests = {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length, stall = server.routes[self.path]
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                time.sleep(stall)
                self.wfile.write(body)            # HTTP/1.0: the connection closes after it

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)             # poll interval: quick shutdown
        self.thread.start()

    def serve(self, name, body, length="right", stall=0.0):
        self.routes["/data/" + name] = (body, len(body) if length == "right" else length, stall)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def gz_idx(x):
    return gzip.compress(b"\0\0\x08" + bytes([x.ndim]) + struct.pack(f">{x.ndim}I", *x.shape)
                         + x.tobytes())


def fetch(server, dest, files):
    return sources.fetch("toy", dest_dir=dest, base_url=server.url, files=files, timeout=5)


def test_download_good_file(server, tmp_path, capsys):
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    server.serve("good.gz", gz_idx(x))
    dest = fetch(server, tmp_path / "d", {"good.gz": sha256_of_idx(x)})
    np.testing.assert_array_equal(idx.read_idx(dest / "good.gz"), x)
    assert os.listdir(dest) == ["good.gz"]                   # no temporary file left
    assert "good.gz" in capsys.readouterr().out              # a line per file
    fetch(server, tmp_path / "d", {"good.gz": sha256_of_idx(x)})
    assert server.requests == ["/data/good.gz"]              # a verified file is not fetched again


def test_download_hash_mismatch_leaves_nothing(server, tmp_path):
    x = np.arange(50, dtype=np.uint8)
    server.serve("bad.gz", gz_idx(x + 1))
    with pytest.raises(IdxError, match="SHA-256") as e:
        fetch(server, tmp_path, {"bad.gz": sha256_of_idx(x)})
    assert sha256_of_idx(x) in str(e.value) and "bad.gz" in str(e.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("declared", [True, False], ids=["short-of-content-length", "no-length"])
def test_download_cut_short_leaves_nothing(server, tmp_path, declared):
    x = np.arange(5000, dtype=np.uint8)
    body = gz_idx(x)
    half = len(body) // 2
    server.serve("cut.gz", body[:half], length=len(body) if declared else None)
    error, fault = ((OSError, f"closed after {half} of {len(body)} bytes") if declared
                    else (IdxError, "broken gzip stream"))   # no length: the hash check catches it
    with pytest.raises(error, match="cut.gz") as e:
        fetch(server, tmp_path, {"cut.gz": sha256_of_idx(x)})
    assert fault in str(e.value)
    assert os.listdir(tmp_path) == []


def test_failed_download_keeps_the_file_already_there(server, tmp_path):
    x = np.arange(50, dtype=np.uint8)
    before = gz_idx(x[::-1].copy())                           # an old version: fails the hash
    (tmp_path / "f.gz").write_bytes(before)
    server.serve("f.gz", gz_idx(x)[:20], length=None)         # and the new one arrives broken
    with pytest.raises(IdxError):
        fetch(server, tmp_path, {"f.gz": sha256_of_idx(x)})
    assert (tmp_path / "f.gz").read_bytes() == before
    assert os.listdir(tmp_path) == ["f.gz"]
    server.serve("f.gz", gz_idx(x))                           # a good download replaces it
    fetch(server, tmp_path, {"f.gz": sha256_of_idx(x)})
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "f.gz"), x)


def test_download_stalled_server_times_out(server, tmp_path):
    x = np.arange(50, dtype=np.uint8)
    server.serve("slow.gz", gz_idx(x), stall=1.0)
    t0 = time.perf_counter()
    with pytest.raises(OSError, match="slow.gz.*timed out"):
        sources.fetch("toy", tmp_path, server.url, {"slow.gz": sha256_of_idx(x)}, timeout=0.2)
    assert time.perf_counter() - t0 < 0.9
    assert os.listdir(tmp_path) == []


def test_download_http_error_names_the_url(server, tmp_path):
    with pytest.raises(OSError, match=re.escape(server.url + "absent.gz") + ".*404"):
        fetch(server, tmp_path, {"absent.gz": "0" * 64})
    assert os.listdir(tmp_path) == []


def test_download_needs_a_source():
    with pytest.raises(IdxError, match="no download source is known for 'mnist'"):
        sources.fetch("mnist")


def test_load_fashion_mnist_downloads_into_the_cache(clean_env, server, monkeypatch):
    arrays = small_set()
    for name, x in zip(FILES, arrays, strict=True):
        server.serve(name + ".gz", gz_idx(x))
    monkeypatch.setattr(sources, "FASHION_MNIST_URL", server.url)
    monkeypatch.setattr(sources, "FASHION_MNIST_SHA256",
                        {f: sha256_of_idx(x) for f, x in zip(FILES, arrays, strict=True)})
    got = sources.load_fashion_mnist(download=True)
    cache = clean_env / "cache/funcnn/fashion-mnist"
    assert sorted(os.listdir(cache)) == sorted(f + ".gz" for f in FILES)
    for g, a in zip(got, arrays, strict=True):
        np.testing.assert_array_equal(g, a)
    sources.load_fashion_mnist()                                  # now found without downloading
    assert len(server.requests) == 4


def test_load_fashion_mnist_checks_each_hash(clean_env, monkeypatch):
    arrays = small_set()
    write_set(clean_env / "system", arrays)
    hashes = {f: sha256_of_idx(x) for f, x in zip(FILES, arrays, strict=True)}
    monkeypatch.setattr(sources, "FASHION_MNIST_SHA256", hashes)
    sources.load_fashion_mnist()
    monkeypatch.setitem(hashes, FILES[3], sha256_of_idx(arrays[3] ^ 1))   # another version
    with pytest.raises(IdxError, match=re.escape(str(clean_env / "system" / FILES[3]))):
        sources.load_fashion_mnist()


# --- the real files ----------------------------------------------------------------------------

# MD5 of the unzipped files as upstream publishes them: a referee for the SHA-256 table.
UPSTREAM_IDX_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
needs_real = pytest.mark.skipif(
    not REAL_DIR.is_dir(),
    reason=f"Fashion-MNIST is not installed at {REAL_DIR} (sudo apt-get install "
           "dataset-fashion-mnist)")


@needs_real
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("FUNCNN_DATA", raising=False)
    x_train, y_train, x_test, y_test = sources.load_fashion_mnist()      # SHA-256 checked inside
    assert (x_train.dtype, x_train.shape) == (np.uint8, (60000, 28, 28))
    assert (y_train.dtype, y_train.shape) == (np.uint8, (60000,))
    assert (x_test.dtype, x_test.shape) == (np.uint8, (10000, 28, 28))
    assert (y_test.dtype, y_test.shape) == (np.uint8, (10000,))
    assert np.bincount(y_train).tolist() == [6000] * 10               # balanced classes
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert len(sources.FASHION_CLASSES) == 10


@needs_real
@pytest.mark.parametrize("name", FILES)
def test_real_files_match_the_tables(name):
    data = gzip.decompress((REAL_DIR / (name + ".gz")).read_bytes())
    assert hashlib.sha256(data).hexdigest() == sources.FASHION_MNIST_SHA256[name]
    assert hashlib.md5(data).hexdigest() == UPSTREAM_IDX_MD5[name]
