"""The notebooks in notebooks/: each `.ipynb` is in sync with its jupytext `.py` (percent
format, the source of truth) and is committed executed in its **full setting**
(`python notebooks/execute.py`: every code cell executed in order, no error, at least one
figure, no machine-specific path, and every table of committed results it shows equal to
the rows of that table's `comparison.md`); and each notebook runs top to bottom in its
smoke setting (`NDEREGS_SMOKE=1`: tiny data, models and epochs), from a working directory
elsewhere, without writing any notebook.

The execution tests are marked `notebook` and take minutes, so the default run leaves
them out (`-m "not notebook"` in pyproject's addopts); `.ci/run` runs them in a second
step (`python -m pytest -m notebook`). They run `notebooks/execute.py` (jupytext ->
nbclient) on a kernel that is this interpreter. The default run checks, in
milliseconds, the committed `.ipynb` and that every name a notebook (or
notebooks/committed.py, the paper notebooks' shared helpers) takes from nderegs, every
config file and every committed table it reads exists.
"""

import ast
import hashlib
import importlib
import importlib.util
import json
import os
from pathlib import Path
import re
import sys
import tempfile

import pytest

from nderegs.config import configs_dir

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO / "notebooks"
RESULTS = REPO / "experiments" / "results"
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
    # Committed with the outputs of a complete run: every code cell executed, in order,
    # none failed (test_committed_notebook_holds_the_full_setting checks which setting).
    cells = [c for c in json.loads(ipynb.read_text(encoding="utf-8"))["cells"]]
    counts = [c["execution_count"] for c in cells if c["cell_type"] == "code"]
    stale = f"{ipynb.name} is not committed executed: run `python notebooks/execute.py {name}`"
    assert counts == list(range(1, len(counts) + 1)), stale
    failed = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not failed, f"{ipynb.name} holds an error output: {failed[0].get('ename')}"


def _outputs(name):
    """(cell index, output) of every output stored in notebooks/<name>.ipynb."""
    notebook = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))
    return [
        (i, output)
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    ]


def _texts(output) -> list[str]:
    """The text an output shows: a stream's text, a result's or display's text formats."""

    def joined(text):
        return "".join(text) if isinstance(text, list) else text

    if output["output_type"] == "stream":
        return [joined(output["text"])]
    data = output.get("data", {})
    return [joined(v) for k, v in data.items() if k.startswith("text/")]


#: Absolute paths of this machine that a stored output must not show.
MACHINE_PATHS = re.compile(
    "|".join(
        re.escape(p)
        for p in {
            str(REPO),
            tempfile.gettempdir() + "/",
            "/tmp/",
            "/home/",
            "/Users/",
            "/work/",
            sys.prefix,
        }
    )
)


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_committed_notebook_holds_the_full_setting(name):
    """The committed outputs are those of `python notebooks/execute.py NAME` (the full
    setting, figures inline), not of the smoke setting, and name no path of the machine
    that executed them."""
    rerun = f"run `python notebooks/execute.py {name}`"
    outputs = _outputs(name)
    texts = [(i, text) for i, output in outputs for text in _texts(output)]
    first = next((text for _, text in texts if "SMOKE=" in text), "")
    assert "SMOKE=False" in first and not any("SMOKE=True" in t for _, t in texts), (
        f"{name}.ipynb is not committed in its full setting: {rerun}"
    )
    figures = [i for i, output in outputs if "image/png" in output.get("data", {})]
    assert figures, f"{name}.ipynb stores no figure (image/png output): {rerun}"
    stderr = [i for i, o in outputs if o["output_type"] == "stream" and o["name"] == "stderr"]
    assert not stderr, f"{name}.ipynb stores stderr (cells {stderr}): {rerun}"
    paths = [(i, m.group()) for i, text in texts for m in [MACHINE_PATHS.search(text)] if m]
    assert not paths, f"{name}.ipynb shows machine-specific paths (cell, path): {paths}"


def _markdown_table(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(column names, method -> column -> cell) of the first Markdown table in `text`."""
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:  # the first table ends here (a budget's comparison.md has a second)
            break
    if len(lines) < 2:
        return [], {}
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
        rows[cells[columns[0]]] = cells
    return columns, rows


#: A displayed table of committed results names its folder in bold on its first line.
COMMITTED_CAPTION = re.compile(r"^\*\*`experiments/results/([\w/-]+)`\*\*(.*)$", re.M)


def _committed_tables(name):
    """(folder, caption, columns, rows) of every committed table the notebook displays."""
    found = []
    for _, output in _outputs(name):
        markdown = output.get("data", {}).get("text/markdown")
        if markdown is None:
            continue
        markdown = "".join(markdown) if isinstance(markdown, list) else markdown
        if caption := COMMITTED_CAPTION.search(markdown):
            found.append((caption.group(1), caption.group(2), *_markdown_table(markdown)))
    return found


@pytest.mark.parametrize("name", [n for n in runner.NOTEBOOKS if n != "quickstart"])
def test_committed_tables_shown_are_those_of_experiments_results(name):
    """The tables a notebook shows of experiments/results/NAME hold exactly the numbers of
    that folder's comparison.md: every row shown equals its committed row, with the same
    columns; all rows unless the caption says it shows some `rows`."""
    tables = _committed_tables(name)
    assert tables, f"{name}.ipynb shows no table of experiments/results"
    # After experiments/results changes, the notebooks are re-executed to show it.
    rerun = f"(re-run `python notebooks/execute.py {name}` after changing experiments/results)"
    for folder, caption, columns, rows in tables:
        committed_md = RESULTS / folder / "comparison.md"
        assert committed_md.is_file(), f"{name}.ipynb shows {folder}, which has no comparison.md"
        committed_columns, committed_rows = _markdown_table(
            committed_md.read_text(encoding="utf-8")
        )
        assert columns == committed_columns, (
            f"{name}.ipynb shows {folder} with columns {columns}, comparison.md has "
            f"{committed_columns} {rerun}"
        )
        assert rows, f"{name}.ipynb shows an empty table of {folder}"
        for method, row in rows.items():
            assert row == committed_rows.get(method), (
                f"{name}.ipynb: row {method} of {folder} differs from comparison.md:\n"
                f"  shown:     {row}\n  committed: {committed_rows.get(method)}\n{rerun}"
            )
        if " rows" not in caption:
            assert set(rows) == set(committed_rows), (
                f"{name}.ipynb shows {sorted(rows)} of {folder}, comparison.md "
                f"{sorted(committed_rows)} {rerun}"
            )


def test_the_table_check_reads_a_committed_table():
    columns, rows = _markdown_table((RESULTS / "digits" / "comparison.md").read_text("utf-8"))
    assert columns[:3] == ["Method", "Train acc. (%)", "Test acc. (%)"]
    assert "`vanilla`" in rows and rows["`vanilla`"]["NFE ×"] == "1.00"


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


@pytest.mark.parametrize("name", [*runner.NOTEBOOKS, "committed"])
def test_what_a_notebook_uses_of_nderegs_exists(name):
    tree = ast.parse((NOTEBOOKS_DIR / f"{name}.py").read_text(encoding="utf-8"))
    names = _nderegs_names(tree)
    assert names, f"{name}.py uses nothing of nderegs?"
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{name}.py uses {missing}, which nderegs does not have"
    fragments = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    yamls = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.endswith(".yaml")
        and id(node) not in fragments  # f"{table}.yaml": its tables are checked below
    }
    config_dirs = [configs_dir(), REPO / "experiments" / "configs"]
    absent = sorted(y for y in yamls if not any((d / y).is_file() for d in config_dirs))
    assert not absent, (
        f"{name}.py reads {absent}, which neither configs/ nor experiments/configs/ has"
    )
    # The committed comparisons it reads back: committed("NAME") and f"{table}.yaml" loops.
    tables = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "committed"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    missing = sorted(t for t in tables if not (RESULTS / t / "comparison.csv").is_file())
    assert not missing, (
        f"{name}.py reads committed results {missing}, which experiments/results lacks"
    )


def test_the_use_check_catches_a_missing_name():
    tree = ast.parse("import nderegs\nfrom nderegs.train import train, nope\nnderegs.NoSuch(1)")
    names = _nderegs_names(tree)
    assert names == {"nderegs", "nderegs.train.train", "nderegs.train.nope", "nderegs.NoSuch"}
    assert [n for n in sorted(names) if not _resolves(n)] == [
        "nderegs.NoSuch",
        "nderegs.train.nope",
    ]


def test_execute_fixes_the_setting_and_never_writes_a_smoke_run(monkeypatch):
    monkeypatch.setenv("NDEREGS_RETRAIN", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("NDEREGS_SMOKE", "1")
    full = runner.kernel_environment(smoke=False)
    assert (
        full["NDEREGS_SMOKE"] == "0" and "NDEREGS_RETRAIN" not in full and "MPLBACKEND" not in full
    )
    assert runner.kernel_environment(smoke=True)["NDEREGS_SMOKE"] == "1"
    # the paper notebooks' shared helpers (notebooks/committed.py) import from any folder
    assert full["PYTHONPATH"].split(os.pathsep)[0] == str(NOTEBOOKS_DIR)
    with pytest.raises(ValueError, match="smoke run writes nothing"):
        runner.execute("quickstart", smoke=True, write=True)


def _digests():
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in NOTEBOOKS_DIR.glob("*.ipynb")
    }


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    return runner.kernel_spec_manager(tmp_path_factory.mktemp("kernels"))


@pytest.mark.notebook
@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_notebook_runs_in_smoke_setting(name, specs, tmp_path):
    pytest.importorskip("ipykernel")

    assert specs.get_kernel_spec(runner.KERNEL_NAME).argv[0] == sys.executable
    before = _digests()
    # Run from a directory outside the repository: the notebooks find configs/ and
    # experiments/ from the installed package, not the working directory.
    notebook = runner.execute(name, smoke=True, specs=specs, cwd=tmp_path)
    assert not runner.errors(notebook), runner.errors(notebook)
    texts = [
        t
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        for t in _texts(o)
    ]
    assert any("SMOKE=True" in t for t in texts), "the smoke setting did not reach the kernel"
    figures = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert figures, "the smoke run drew no figure inline"
    assert _digests() == before, "executing the smoke setting changed a committed .ipynb"
