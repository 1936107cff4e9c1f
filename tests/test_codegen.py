"""tests/codegen.py: a test compiles with XLA's legacy CPU emitters unless it is marked
`bit_identical`, and then with the default ones."""

from codegen import _state, OPTION
import jax
from jax._src import compiler
import jax.numpy as jnp
import pytest


def _overrides_of_compilations(monkeypatch) -> list[list]:
    """The `env_option_overrides` XLA receives for each program compiled now."""
    seen = []
    compile_and_load = compiler.backend_compile_and_load

    def spy(backend, module, devices, options, *rest):
        seen.append(list(options.env_option_overrides))
        return compile_and_load(backend, module, devices, options, *rest)

    monkeypatch.setattr(compiler, "backend_compile_and_load", spy)
    jax.jit(lambda x: x * 3 - 1)(jnp.arange(7.0))  # a program no other test compiles
    jax.clear_caches()  # not reused by a test of the other kind
    assert seen
    return seen


def test_an_unmarked_test_compiles_with_the_legacy_emitters(monkeypatch):
    if not _state["installed"]:
        pytest.skip(f"{OPTION[0]} not set: {_state['why']}")
    assert all(OPTION in overrides for overrides in _overrides_of_compilations(monkeypatch))


@pytest.mark.bit_identical
def test_a_bit_identical_test_compiles_with_the_default_emitters(monkeypatch):
    assert not any(OPTION in overrides for overrides in _overrides_of_compilations(monkeypatch))
