"""A pytest plugin (loaded by conftest.py): which XLA CPU emitters the tests compile with.

XLA compilation is most of the suite's time, and on CPU most of that is XLA's fusion
emitters (its default). Its legacy emitters compile the same programs in about half the
time (a tiny digits run's compilations: 2.3-2.8 s -> 1.3 s). Within one program the two
compute the same operations, but how the legacy emitters emit an operation depends on
what it is fused with, so two programs that compute one thing (`nderegs.solve` and
`diffrax.diffeqsolve`) can differ in the last bit, which they have not, in these tests,
with the default emitters. So the tests compile with the legacy emitters, except those
marked `bit_identical`: they compare two different programs exactly (values, or the
step counts that follow from them), and compile with the default emitters (at the
suite's optimization level, see conftest.py). A test that compares with a result
compiled in another test (the shared tiny runs) must not be marked.

The option reaches XLA per compilation (appended to the `env_option_overrides` of every
compilation of this process, through `jax._src.compiler.get_compile_options`), not
through XLA_FLAGS: the processes the tests start (forced-device workers, the CLI)
compile with the default emitters, and an XLA without the option stops no test.
Where the option is not set, tests/test_codegen.py's unmarked test is skipped and says
why (`-rs`; so does pytest's header without `-q` and xdist).
`NDEREGS_TEST_EMITTERS=default` compiles every test with the default emitters.
"""

from collections.abc import Callable
import functools
import os
from typing import Any

import jax
import pytest

from nderegs.train import compiled_steps

#: XLA's option, and its value for the legacy emitters.
OPTION = ("xla_cpu_use_fusion_emitters", False)

_state = {"installed": False, "legacy": False, "why": ""}


def _install() -> None:
    """Give every compilation `OPTION` while `_state["legacy"]`, where this jax and
    XLA take it (else `_state["why"]` says why not)."""
    if os.environ.get("NDEREGS_TEST_EMITTERS") == "default":
        _state["why"] = "NDEREGS_TEST_EMITTERS=default"
        return
    try:
        if jax.default_backend() != "cpu":
            _state["why"] = f"the {jax.default_backend()} backend's compiler has no such option"
            return
        from jax._src import compiler

        original: Callable[..., Any] = compiler.get_compile_options
        jax.jit(lambda x: x + 1, compiler_options=dict([OPTION])).lower(1.0).compile()
    except Exception as e:  # an XLA without the option, or a jax without the hook
        _state["why"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        return

    @functools.wraps(original)
    def get_compile_options(*args: Any, **kwargs: Any) -> Any:
        options = original(*args, **kwargs)
        if _state["legacy"]:
            options.env_option_overrides = [*options.env_option_overrides, OPTION]
        return options

    compiler.get_compile_options = get_compile_options
    _state.update(installed=True, legacy=True)


def pytest_configure(config):
    # Not in an xdist controller: it compiles nothing (and would start a backend).
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        _install()


def pytest_report_header(config):
    if getattr(config.option, "numprocesses", None):
        return "XLA CPU emitters: legacy where each worker's XLA has the option (tests/codegen.py)"
    if _state["installed"]:
        return "XLA CPU emitters: legacy (fast to compile); default for bit_identical tests"
    return f"XLA CPU emitters: default ({OPTION[0]} not set: {_state['why']})"


def pytest_collection_modifyitems(config, items):
    # The bit_identical tests one after another: each switch of emitters clears the
    # caches (below).
    items.sort(key=lambda item: item.get_closest_marker("bit_identical") is not None)


@pytest.fixture(autouse=True)
def _emitters_for_the_test(request):
    """The legacy emitters, or the defaults for a `bit_identical` test. On a switch, no
    program compiled before (jax's caches, the runs' shared training steps) is reused."""
    if not _state["installed"]:
        return
    legacy = request.node.get_closest_marker("bit_identical") is None
    if legacy != _state["legacy"]:
        jax.clear_caches()
        compiled_steps.clear()
        _state["legacy"] = legacy
