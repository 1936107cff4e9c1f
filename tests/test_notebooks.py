"""The notebooks in notebooks/: each `.ipynb` is in sync with its jupytext `.py` (percent
format, the source of truth) and carries no outputs, and each notebook runs top to bottom
in its smoke setting (`NDEREGS_SMOKE=1`: tiny data, models and epochs).

The execution tests are marked `notebook` (deselect with `-m "not notebook"`). They run
the `.py` source through jupytext -> nbformat -> nbclient, on a Jupyter kernel that is
this interpreter (`sys.executable`), whatever kernel specs the machine has installed.
"""

import json
from pathlib import Path
import sys

import pytest

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ["quickstart", "paper1_global", "paper2_local", "neural_sdes"]
KERNEL_NAME = "python3"


def _cells(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_is_in_sync_with_py_and_has_no_outputs(name):
    py, ipynb = NOTEBOOKS_DIR / f"{name}.py", NOTEBOOKS_DIR / f"{name}.ipynb"
    assert py.exists() and ipynb.exists(), f"missing {py.name} or {ipynb.name}"
    from_py, from_ipynb = jupytext.read(py), jupytext.read(ipynb)
    assert _cells(from_ipynb) == _cells(from_py), (
        f"{ipynb.name} is out of sync with {py.name}: run `jupytext --sync notebooks/{py.name}`"
    )
    assert from_py.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert from_ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    # Committed notebooks carry no outputs, so their diffs stay small.
    for cell in json.loads(ipynb.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{ipynb.name} has outputs: strip them (e.g. `jupytext --to ipynb "
                f"notebooks/{py.name}` or `jupyter nbconvert --clear-output`)"
            )


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A kernel spec manager that only knows one kernel, `python3`, launched with this
    very interpreter, so the notebooks see the same environment (nderegs, JAX) as the
    tests, whether or not the venv is activated and whatever kernels are installed
    system-wide or per user."""
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major} ({sys.executable})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


@pytest.mark.notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_setting(name, kernel_spec_manager, monkeypatch):
    pytest.importorskip("ipykernel")
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    import nbformat

    # The kernel inherits this environment.
    monkeypatch.setenv("NDEREGS_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    # One more cell, to check which interpreter ran the notebook.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable, end='')"))
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_spec_manager)
    assert km.kernel_spec.argv[0] == sys.executable
    client = NotebookClient(
        notebook,
        km=km,
        kernel_name=KERNEL_NAME,
        timeout=600,
        # Run where Jupyter would: in notebooks/ (the notebooks find configs/ from there).
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
    assert notebook.cells[-1].outputs[0]["text"] == sys.executable
