import jax
import pytest

# As diffrax's own tests do: an implicit dtype promotion anywhere in the code under test
# (a float32 state meeting float64 times, an int meeting a float) fails the test.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Run a test in float64 (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield
