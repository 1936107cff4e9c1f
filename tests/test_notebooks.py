"""The notebooks in notebooks/: each `.ipynb` is in sync with its jupytext `.py` (percent
format, the source of truth) and is committed executed (outputs of the smoke setting,
no errors), and each notebook runs top to bottom in its smoke setting
(`NDEREGS_SMOKE=1`: tiny data, models and epochs), from a working directory elsewhere.

The execution tests are marked `notebook` and take minutes, so the default run leaves
them out (`-m "not notebook"` in pyproject's addopts); `.ci/run` runs them in a second
step (`python -m pytest -m notebook`). They run `notebooks/execute.py` (jupytext ->
nbclient) on a kernel that is this interpreter. The default run checks, in
milliseconds, that every name a notebook takes from nderegs and every config file it
reads exists.
"""

import ast
import importlib
import importlib.util
import json
from pathlib import Path
import sys

import pytest

from nderegs.config import configs_dir

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("execute_notebooks", NOTEBOOKS_DIR / "execute.py")
assert _spec is not None and _spec.loader is not None
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)


def _cells(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_ipynb_is_in_sync_with_py_and_committed_executed(name):
    jupytext = pytest.importorskip("jupytext")
    py, ipynb = NOTEBOOKS_DIR / f"{name}.py", NOTEBOOKS_DIR / f"{name}.ipynb"
    assert py.exists() and ipynb.exists(), f"missing {py.name} or {ipynb.name}"
    from_py, from_ipynb = jupytext.read(py), jupytext.read(ipynb)
    assert _cells(from_ipynb) == _cells(from_py), (
        f"{ipynb.name} is out of sync with {py.name}: run `python notebooks/execute.py {name}`"
    )
    assert from_py.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert from_ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    # Committed with the outputs of a complete smoke run: every code cell executed, in
    # order, none failed.
    cells = [c for c in json.loads(ipynb.read_text(encoding="utf-8"))["cells"]]
    counts = [c["execution_count"] for c in cells if c["cell_type"] == "code"]
    stale = f"{ipynb.name} is not committed executed: run `python notebooks/execute.py {name}`"
    assert counts == list(range(1, len(counts) + 1)), stale
    failed = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not failed, f"{ipynb.name} holds an error output: {failed[0].get('ename')}"


def _nderegs_names(tree: ast.Module) -> set[str]:
    """Dotted names the notebook takes from nderegs: `from nderegs.x import y` gives
    `nderegs.x.y`; `nderegs.A.b` in the code gives `nderegs.A.b`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nderegs":
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "nderegs"}
        elif isinstance(node, ast.Attribute):
            parts, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "nderegs":
                names.add(".".join(["nderegs", *reversed(parts)]))
    return names


def _resolves(dotted: str) -> bool:
    """Whether `dotted` is a module of nderegs or an attribute reached from one."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        missing = object()
        found = getattr(obj, part, missing)
        if found is missing:
            try:
                found = importlib.import_module(".".join(parts[: i + 1]))
            except ModuleNotFoundError:
                return False
        obj = found
    return True


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_what_a_notebook_uses_of_nderegs_exists(name):
    tree = ast.parse((NOTEBOOKS_DIR / f"{name}.py").read_text(encoding="utf-8"))
    names = _nderegs_names(tree)
    assert names, f"{name}.py uses nothing of nderegs?"
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{name}.py uses {missing}, which nderegs does not have"
    yamls = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.endswith(".yaml")
    }
    absent = sorted(y for y in yamls if not (configs_dir() / y).is_file())
    assert not absent, f"{name}.py reads {absent}, which configs/ does not have"


def test_the_use_check_catches_a_missing_name():
    tree = ast.parse("import nderegs\nfrom nderegs.train import train, nope\nnderegs.NoSuch(1)")
    names = _nderegs_names(tree)
    assert names == {"nderegs", "nderegs.train.train", "nderegs.train.nope", "nderegs.NoSuch"}
    assert [n for n in sorted(names) if not _resolves(n)] == [
        "nderegs.NoSuch",
        "nderegs.train.nope",
    ]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    return runner.kernel_spec_manager(tmp_path_factory.mktemp("kernels"))


@pytest.mark.notebook
@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_notebook_runs_in_smoke_setting(name, specs, monkeypatch, tmp_path):
    pytest.importorskip("ipykernel")

    monkeypatch.setenv("NDEREGS_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert specs.get_kernel_spec(runner.KERNEL_NAME).argv[0] == sys.executable
    # Run from a directory outside the repository: the notebooks find configs/ from
    # the installed package, not the working directory.
    notebook = runner.execute(name, write=False, specs=specs, cwd=tmp_path)
    assert not runner.errors(notebook), runner.errors(notebook)
