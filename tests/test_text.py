"""Text for a character-level model (funcnn.text): reading, encoding, nanoGPT's split, tiny
Shakespeare found and downloaded, and random windows.

Tiny Shakespeare itself is read from the shared copy for tests and CI (../shared/data from the
repository root, through $FUNCNN_DATA; skipped where absent). The downloads are tested as
test_idx.py tests them: a small HTTP server on 127.0.0.1 serving files the tests write.
"""
import hashlib
import http.server
import os
import shutil
import threading
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import sources
from funcnn.checks import InputError, InputTypeError
from funcnn.idx import IdxError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"
needs_shakespeare = pytest.mark.skipif(
    not SHAKESPEARE.is_file(),
    reason=f"the shared copy of tiny Shakespeare is not at {SHAKESPEARE} (the development "
           "machines and CI have it; see ../shared/data/README.md)")
NANOGPT_VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

SAMPLE = "To be, or not to be: that is the question.\nWhether 'tis nobler → café\n"


def write(tmp_path, content, name="t.txt"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No FUNCNN_DATA, the user cache under tmp_path."""
    monkeypatch.delenv("FUNCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


# --- text(): vocabulary, encoding, split --------------------------------------------------------

def test_vocab_is_the_sorted_characters(tmp_path):
    t = fn.data.text(write(tmp_path, SAMPLE))
    assert isinstance(t.vocab, str) and t.vocab == "".join(sorted(set(SAMPLE)))
    assert list(t.vocab) == sorted(t.vocab) and len(set(t.vocab)) == len(t.vocab)
    assert "é" in t.vocab and "→" in t.vocab                # characters, not bytes


def test_encode_decode_round_trip(tmp_path):
    t = fn.data.text(write(tmp_path, SAMPLE))
    ids = t.encode(SAMPLE)
    assert ids.dtype == np.int32 and ids.shape == (len(SAMPLE),)
    assert [t.vocab[i] for i in ids] == list(SAMPLE)        # an id is its character's index
    assert t.decode(ids) == SAMPLE
    assert t.decode(jnp.asarray(ids)) == SAMPLE             # a JAX array, a list, a 0-d id
    assert t.decode(ids.tolist()) == SAMPLE and t.decode(ids[3]) == SAMPLE[3]
    assert t.encode("").shape == (0,) and t.decode([]) == ""


@pytest.mark.parametrize("n", [1, 9, 10, 11, 19, 100, 12345])
def test_split_is_nanogpts(tmp_path, n):
    content = ("abcé→\n" * (n // 6 + 1))[:n]
    t = fn.data.text(write(tmp_path, content))
    assert len(t.train) == int(n * 0.9) and len(t.val) == n - int(n * 0.9)
    assert t.train.dtype == np.int32 and t.val.dtype == np.int32
    assert t.decode(t.train) + t.decode(t.val) == content    # file order, nothing lost


def test_text_is_frozen(tmp_path):
    t = fn.data.text(write(tmp_path, SAMPLE))
    with pytest.raises(AttributeError):
        t.vocab = "abc"
    with pytest.raises(ValueError, match="read-only"):
        t.train[0] = 0
    assert repr(t) == f"Text(vocab={len(t.vocab)} characters, train=int32[{len(t.train)}], " \
                      f"val=int32[{len(t.val)}])"


def test_characters_are_read_as_stored(tmp_path):
    t = fn.data.text(write(tmp_path, b"a\r\nb\xef\xbb\xbf"))      # CRLF and a BOM kept
    assert t.decode(np.concatenate([t.train, t.val])) == "a\r\nb\ufeff"


# --- text(): errors -----------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file; check the path") as e:
        fn.data.text(tmp_path / "absent.txt")
    assert str(tmp_path / "absent.txt") in str(e.value)


def test_directory(tmp_path):
    write(tmp_path, SAMPLE, "input.txt")
    with pytest.raises(IsADirectoryError, match="is a directory.*it holds input.txt") as e:
        fn.data.text(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_empty_file(tmp_path):
    path = write(tmp_path, b"")
    with pytest.raises(InputError, match="is empty") as e:
        fn.data.text(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("content, offset, line", [
    (b"ab\ncd\xe9f", 5, 2),                  # Latin-1 e-acute
    (b"\xff", 0, 1),
    (b"ok\n\nok\xe2\x86", 6, 3),             # a character cut off at the end
])
def test_not_utf8_names_the_byte(tmp_path, content, offset, line):
    path = write(tmp_path, content)
    with pytest.raises(InputError, match=f"not UTF-8 text: byte {offset} \\(line {line}\\)") as e:
        fn.data.text(path)
    assert str(path) in str(e.value) and "iconv" in str(e.value)


def test_encode_names_unknown_characters(tmp_path):
    t = fn.data.text(write(tmp_path, "abc"))
    with pytest.raises(InputError, match=r"2 character\(s\) not in the vocabulary of 3: "
                                         r"'d' \(U\+0064\), 'é' \(U\+00E9\), the first at index 1"):
        t.encode("adébé")
    with pytest.raises(InputError, match="not in the vocabulary"):
        t.encode("\ud800")                                    # a lone surrogate, named too
    with pytest.raises(InputTypeError, match="encode takes a str"):
        t.encode(b"abc")


def test_decode_refuses_ids_outside_the_vocabulary(tmp_path):
    t = fn.data.text(write(tmp_path, "abc"))
    with pytest.raises(InputError, match="id 3 at index 1 is outside the vocabulary of 3"):
        t.decode([0, 3])
    with pytest.raises(InputError, match="id -1 at index 0"):
        t.decode(np.array([-1]))
    with pytest.raises(InputTypeError, match="integer ids"):
        t.decode(np.array([0.0]))
    with pytest.raises(InputError, match="one sequence"):
        t.decode(np.zeros((2, 3), np.int32))


# --- tiny Shakespeare: found on disk ------------------------------------------------------------

@needs_shakespeare
def test_tiny_shakespeare_from_funcnn_data(monkeypatch):
    monkeypatch.setenv("FUNCNN_DATA", str(SHARED_DATA))        # found in $FUNCNN_DATA/<name>
    t = fn.data.tiny_shakespeare()
    assert len(t.train) + len(t.val) == 1_115_394
    assert len(t.vocab) == 65 and t.vocab == NANOGPT_VOCAB
    assert len(t.train) == 1_003_854 and len(t.val) == 111_540   # nanoGPT's figures
    assert t.decode(t.train[:13]) == "First Citizen"


@needs_shakespeare
def test_the_shared_copy_is_the_one_the_hash_names():
    digest = hashlib.sha256(SHAKESPEARE.read_bytes()).hexdigest()
    assert digest == sources.TINY_SHAKESPEARE_SHA256["input.txt"]
    assert sources.TINY_SHAKESPEARE_URL + "input.txt" == (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
        "input.txt")


@needs_shakespeare
def test_tiny_shakespeare_search_order(clean_env, monkeypatch):
    tmp = clean_env
    for d in (tmp / "given", tmp / "env", tmp / "cache/funcnn/tinyshakespeare"):
        d.mkdir(parents=True)
        shutil.copy(SHAKESPEARE, d / "input.txt")
    assert len(fn.data.tiny_shakespeare().vocab) == 65              # the user cache
    monkeypatch.setenv("FUNCNN_DATA", str(tmp / "env"))             # $FUNCNN_DATA itself
    (tmp / "cache/funcnn/tinyshakespeare/input.txt").unlink()
    assert len(fn.data.tiny_shakespeare().vocab) == 65
    (tmp / "env/input.txt").unlink()
    assert len(fn.data.tiny_shakespeare(tmp / "given").vocab) == 65               # path
    assert len(fn.data.tiny_shakespeare(tmp / "given" / "input.txt").vocab) == 65  # the file


def test_tiny_shakespeare_not_found_says_where_and_how(clean_env):
    with pytest.raises(FileNotFoundError) as e:
        fn.data.tiny_shakespeare()
    message = str(e.value)
    for needed in ["$FUNCNN_DATA: not set", str(clean_env / "cache/funcnn/tinyshakespeare"),
                   "tiny_shakespeare(download=True)", "FUNCNN_DATA", "input.txt"]:
        assert needed in message, needed
    assert "gzipped" not in message and "apt-get" not in message
    with pytest.raises(FileNotFoundError, match="the path argument .*no such directory"):
        fn.data.tiny_shakespeare(clean_env / "typo")


def test_tiny_shakespeare_checks_its_hash(clean_env, monkeypatch):
    (clean_env / "env").mkdir()
    write(clean_env / "env", "Not it\n", "input.txt")
    monkeypatch.setenv("FUNCNN_DATA", str(clean_env / "env"))
    with pytest.raises(InputError, match="SHA-256 .* expected 86c4e6aa.*download=True") as e:
        fn.data.tiny_shakespeare()
    assert str(clean_env / "env" / "input.txt") in str(e.value)


# --- tiny Shakespeare: downloaded ---------------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):                 # quiet; records each request instead
        self.server.requests.append(self.path)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A directory served over HTTP on 127.0.0.1, posing as tiny Shakespeare's address: files
    written there are what a download gets. Yields (directory, paths requested)."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_Handler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    monkeypatch.setattr(sources, "TINY_SHAKESPEARE_URL",
                        f"http://127.0.0.1:{httpd.server_address[1]}/data/")
    yield root, httpd.requests
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def serve(root, content: bytes, monkeypatch, sha256=None):
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "input.txt").write_bytes(content)
    monkeypatch.setitem(sources.TINY_SHAKESPEARE_SHA256, "input.txt",
                        sha256 or hashlib.sha256(content).hexdigest())


def test_download_lands_in_the_cache_and_is_found_next_time(clean_env, served, monkeypatch,
                                                            capsys):
    root, requests = served
    serve(root, SAMPLE.encode(), monkeypatch)
    t = fn.data.tiny_shakespeare(download=True)
    assert t.decode(np.concatenate([t.train, t.val])) == SAMPLE
    cache = clean_env / "cache/funcnn/tinyshakespeare"
    assert os.listdir(cache) == ["input.txt"]                       # no temporary file left
    assert (cache / "input.txt").read_bytes() == SAMPLE.encode()
    assert "input.txt" in capsys.readouterr().out
    assert fn.data.tiny_shakespeare().vocab == t.vocab              # found, not fetched again
    assert fn.data.tiny_shakespeare(download=True).vocab == t.vocab
    assert requests == ["/data/input.txt"]


def test_download_into_a_given_path(clean_env, served, monkeypatch):
    root, _ = served
    serve(root, SAMPLE.encode(), monkeypatch)
    fn.data.tiny_shakespeare(clean_env / "mine", download=True)
    assert os.listdir(clean_env / "mine") == ["input.txt"]
    assert not (clean_env / "cache").exists()


def test_download_hash_mismatch_leaves_nothing(clean_env, served, monkeypatch):
    root, _ = served
    serve(root, SAMPLE.encode(), monkeypatch, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(IdxError, match="SHA-256") as e:
        fn.data.tiny_shakespeare(download=True)
    assert "input.txt" in str(e.value) and "nothing was saved" in str(e.value)
    cache = clean_env / "cache/funcnn/tinyshakespeare"
    assert os.listdir(cache) == []                                  # not even a temporary file
    with pytest.raises(FileNotFoundError):
        fn.data.tiny_shakespeare()


def test_download_http_error_names_the_url(clean_env, served):
    with pytest.raises(OSError, match="/data/input.txt failed.*404"):
        fn.data.tiny_shakespeare(download=True)                      # nothing served


# --- windows ------------------------------------------------------------------------------------

TOKENS = np.arange(50, dtype=np.int32) * 3 + 5      # distinct: a window's first id gives its start


def start_of(x):
    return (np.asarray(x)[:, 0] - 5) // 3


def test_windows_shapes_and_next_tokens():
    x, y = fn.data.windows(jax.random.key(0), TOKENS, 64, 7)
    assert x.shape == y.shape == (64, 7) and x.dtype == y.dtype == jnp.int32
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])              # y is x shifted by one
    for row_x, row_y, s in zip(np.asarray(x), np.asarray(y), start_of(x), strict=True):
        np.testing.assert_array_equal(row_x, TOKENS[s:s + 7])       # consecutive, in the data
        np.testing.assert_array_equal(row_y, TOKENS[s + 1:s + 8])


def test_windows_cover_every_start_and_stay_inside():
    t = 5
    x, y = fn.data.windows(jax.random.key(1), TOKENS, 2000, t)
    starts = start_of(x)
    assert set(starts.tolist()) == set(range(len(TOKENS) - t))       # 0 .. m - t - 1, as nanoGPT
    assert int(np.asarray(y).max()) == TOKENS[-1]                   # the last token is a target


def test_same_key_same_windows():
    a = fn.data.windows(jax.random.key(3), TOKENS, 16, 4)
    b = fn.data.windows(jax.random.key(3), TOKENS, 16, 4)
    c = fn.data.windows(jax.random.key(4), TOKENS, 16, 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.slow
def test_windows_inside_scan_match_the_ones_outside():
    keys = jax.random.split(jax.random.key(5), 3)
    tokens = jnp.asarray(TOKENS)

    @jax.jit
    def run(keys):
        return jax.lax.scan(lambda c, k: (c, fn.data.windows(k, tokens, 4, 6)), 0, keys)[1]

    xs, ys = run(keys)
    for i in range(3):
        x, y = fn.data.windows(jax.random.split(jax.random.key(5), 3)[i], TOKENS, 4, 6)
        np.testing.assert_array_equal(xs[i], x)
        np.testing.assert_array_equal(ys[i], y)


@pytest.mark.parametrize("tokens, n, t, error, match", [
    (TOKENS.astype(np.float32), 2, 3, InputTypeError, "tokens must be int"),
    (TOKENS.reshape(5, 10), 2, 3, InputTypeError, "one sequence"),
    (TOKENS[:4], 2, 4, InputError, "fewer than a window of t \\+ 1 = 5"),
    (TOKENS, 0, 3, InputError, "n must be >= 1"),
    (TOKENS, 2, 0, InputError, "t must be >= 1"),
])
def test_windows_refuse_bad_arguments(tokens, n, t, error, match):
    with pytest.raises(error, match=match):
        fn.data.windows(jax.random.key(0), tokens, n, t)


def test_windows_need_a_key():
    with pytest.raises(InputTypeError, match="key"):
        fn.data.windows(0, TOKENS, 2, 3)
