from hypothesis import HealthCheck, settings
import jax
import pytest

# Property-based tests compile a solve per example (each example then solves a
# vmapped batch of variants): few in the default run, `--hypothesis-profile=thorough`
# for many.
settings.register_profile(
    "default", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")

# As diffrax's own tests do: an implicit dtype promotion anywhere in the code under test
# (a float32 state meeting float64 times, an int meeting a float) fails the test.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Run a test in float64 (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield
