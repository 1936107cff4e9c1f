import os

# The suite's cost is XLA compilation. LLVM optimization level 0 compiles the CPU
# programs about a quarter faster (tests/test_train.py + test_solve.py: 201 -> 151 CPU
# seconds, measured with XLA's default emitters) and computes the same IEEE arithmetic
# (XLA enables no fast-math); it is set before jax starts its backend, and the processes
# the tests start inherit it. A level set in XLA_FLAGS wins (e.g.
# XLA_FLAGS=--xla_backend_optimization_level=3, with NDEREGS_TEST_EMITTERS=default, to
# test the programs users run). Which emitters compile: tests/codegen.py.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = flags.strip()

from hypothesis import HealthCheck, settings  # noqa: E402
import jax  # noqa: E402
import pytest  # noqa: E402

# Property-based tests that compile a solve per example (each then solves a vmapped
# batch of variants) run few examples by default; those over precompiled structures a
# multiple of it. `--hypothesis-profile=thorough` runs many.
settings.register_profile(
    "default", max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


def _import_every_nderegs_module():
    """Hypothesis mixes constants it finds in the project's loaded modules into its
    draws: with every nderegs module loaded up front, a derandomized draw does not depend
    on which modules the tests collected or ran before it."""
    import importlib
    import pkgutil

    import nderegs

    for module in pkgutil.walk_packages(nderegs.__path__, "nderegs."):
        importlib.import_module(module.name)


_import_every_nderegs_module()

#: A test still running after `hang_timeout` seconds fails its run, named (tests/hangs.py).
pytest_plugins = ["hangs", "codegen"]

# As diffrax's own tests do: an implicit dtype promotion anywhere in the code under test
# (a float32 state meeting float64 times, an int meeting a float) fails the test.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Run a test in float64 (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield


#: xdist groups whose tests run one after another on one worker for minutes (forced-device
#: subprocesses, a Ray instance): started first, so that they do not end the run alone.
LONG_GROUPS = ("parallel", "sweep")


def pytest_collection_modifyitems(config, items):
    def long_group_first(item):
        marker = item.get_closest_marker("xdist_group")
        group = marker.args[0] if marker is not None and marker.args else None
        return LONG_GROUPS.index(group) if group in LONG_GROUPS else len(LONG_GROUPS)

    items.sort(key=long_group_first)  # stable: the same order on every worker


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The suite's shared tiny runs (tests/tiny.py), in a folder every xdist worker of
    this pytest run sees (the workers' temporary folders share a parent)."""
    from tiny import TinyRuns

    base = tmp_path_factory.getbasetemp()
    under_xdist = "PYTEST_XDIST_WORKER" in os.environ
    return TinyRuns((base.parent if under_xdist else base) / "tiny-runs")


@pytest.fixture(scope="session", autouse=True)
def _xdist_groups_are_honoured(request):
    """Under `--dist loadgroup`, pytest-xdist keeps a group on one worker by suffixing
    the node ids with `@group`. If a pytest/xdist pairing stops doing so, the groups'
    shared fixtures (a Ray instance, multi-process runs) would run on every worker at
    once: every test errors with this message instead."""
    if not getattr(request.config.option, "loadgroup", False):
        return
    for item in request.session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            pytest.fail(
                f"pytest-xdist did not group {item.nodeid} (pytest {pytest.__version__}): "
                "install the versions that pyproject.toml's dev extra names",
                pytrace=False,
            )


def pytest_addoption(parser):
    parser.addoption(
        "--test-costs",
        metavar="PATH",
        default=None,
        help="append each test's wall and CPU seconds (this process and its reaped "
        "subprocesses) to PATH as JSON lines, one per test (the suite budget's profile)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    path = item.config.getoption("--test-costs")
    if path is None:
        yield
        return
    import json
    import resource
    import time

    def cpu():
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall0, cpu0 = time.perf_counter(), cpu()
    yield
    record = {
        "test": item.nodeid,
        "wall": round(time.perf_counter() - wall0, 3),
        "cpu": round(cpu() - cpu0, 3),
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
    }
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
