"""Suite-wide settings: key reuse is an error, silent rank broadcasting is an error, and an
`x64` fixture turns float64 on for one test and restores the setting after it."""
import jax
import pytest


def pytest_configure(config):
    jax.config.update("jax_debug_key_reuse", True)          # a key used twice fails the test
    jax.config.update("jax_numpy_rank_promotion", "raise")  # as equinox's tests do


@pytest.fixture
def x64():
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture
def compiles():
    """compiles() -> how many XLA programs were compiled since the test started."""
    import jax.monitoring
    count = [0]
    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1
    jax.monitoring.register_event_duration_secs_listener(listen)
    yield lambda: count[0]
    jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture
def keys():
    """A fresh key per draw: keys(7) -> 7 keys from seed 0 (fresh objects, never reused)."""
    def make(n, seed=0):
        return list(jax.random.split(jax.random.key(seed), n))
    return make
