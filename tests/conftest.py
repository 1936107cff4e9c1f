import jax
import pytest


@pytest.fixture
def x64():
    """Run a test in float64 (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield
