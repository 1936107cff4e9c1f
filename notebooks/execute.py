"""Execute the notebooks from their jupytext `.py` sources and store the outputs in the
paired `.ipynb`, so that the committed notebooks show what they compute.

    python notebooks/execute.py [NAME ...]          # smoke setting (NDEREGS_SMOKE=1)
    NDEREGS_SMOKE=0 python notebooks/execute.py     # the full setting (minutes each)

The kernel is this interpreter (`sys.executable`), whatever kernels the machine has, and
runs in notebooks/ as Jupyter would; stderr (library warnings) is not stored. The test
suite runs `execute(name, write=False)`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys
import tempfile

NOTEBOOKS_DIR = Path(__file__).resolve().parent
NOTEBOOKS = ("quickstart", "paper1_global", "paper2_local", "neural_sdes")
KERNEL_NAME = "python3"


def kernel_spec_manager(directory: Path):
    """A kernel spec manager that knows one kernel, `python3`, launched with this very
    interpreter (so the notebook sees the same nderegs and JAX)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = directory / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major} ({sys.executable})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(directory)], ensure_native_kernel=False)


def execute(name: str, *, write: bool = True, specs=None, cwd=None, timeout: int = 900):
    """Run notebook `name` top to bottom in `cwd` (default: notebooks/, as Jupyter
    would); returns the executed notebook (and with `write`, stores it, outputs
    included, in `notebooks/<name>.ipynb`)."""
    from jupyter_client.manager import KernelManager
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    with tempfile.TemporaryDirectory() as tmp:
        manager = specs or kernel_spec_manager(Path(tmp))
        km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=manager)
        client = NotebookClient(
            notebook,
            km=km,
            kernel_name=KERNEL_NAME,
            timeout=timeout,
            resources={"metadata": {"path": str(cwd or NOTEBOOKS_DIR)}},
        )
        try:
            client.execute()
        finally:
            if km.has_kernel:  # a kernel we started ourselves is ours to stop
                km.shutdown_kernel(now=True)
    if write:
        notebook.metadata.pop("widgets", None)
        jupytext.write(_without_stderr(notebook), NOTEBOOKS_DIR / f"{name}.ipynb")
    return notebook


def _without_stderr(notebook):
    """A copy without the stderr streams (library warnings that name this machine's
    paths); results, errors and displays are kept."""
    import copy

    clean = copy.deepcopy(notebook)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")
            ]
    return clean


def errors(notebook) -> list:
    """The error outputs of an executed notebook."""
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


if __name__ == "__main__":
    os.environ.setdefault("NDEREGS_SMOKE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in sys.argv[1:] or NOTEBOOKS:
        executed = execute(name)
        failed = errors(executed)
        print(f"{name}: {'FAILED ' + str(failed[0].get('ename')) if failed else 'ok'}")
