"""Execute the notebooks from their jupytext `.py` sources.

    python notebooks/execute.py [NAME ...]           # full setting: writes notebooks/NAME.ipynb
    python notebooks/execute.py --smoke [NAME ...]   # smoke setting: checks only, writes nothing

The committed `.ipynb` are those of the **full setting**: their tables and figures are
the committed results under `experiments/results/`, read back from the run directories
there; only the quickstart, a few small demonstrations and the two spiral-SDE runs drawn
in neural_sdes compute live (about three minutes for the four notebooks on 2 CPU cores).
The **smoke setting** (`NDEREGS_SMOKE=1`: the same cells, plus tiny training runs through
the same code) is what the tests execute (`python -m pytest -m notebook`); it never
writes a notebook, here or in the tests. A notebook with a failed cell is not written
either.

The kernel is this interpreter (`sys.executable`), whatever kernels the machine has, and
runs in notebooks/ as Jupyter would, with figures inline (`MPLBACKEND` is not passed on)
and the setting fixed here, whatever the caller's environment says: `NDEREGS_SMOKE` is
set to "1" or "0", and `NDEREGS_RETRAIN` (retraining rows of the committed tables, several
minutes per notebook) is not passed on. notebooks/ is on the kernel's `PYTHONPATH`, so a
notebook imports `committed.py` (the paper notebooks' shared helpers) as in Jupyter, also
when it runs elsewhere (the tests run it from another folder). stderr (library warnings)
is not stored.
"""

from __future__ import annotations

import argparse
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


def kernel_environment(smoke: bool) -> dict[str, str]:
    """This process's environment with the setting fixed: `NDEREGS_SMOKE` "1" or "0",
    no `NDEREGS_RETRAIN`, no `MPLBACKEND` (so that ipykernel's inline backend draws the
    figures into the notebook), and notebooks/ first on `PYTHONPATH` (`import committed`
    from any working directory)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NDEREGS_RETRAIN", "MPLBACKEND")}
    env["NDEREGS_SMOKE"] = "1" if smoke else "0"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(NOTEBOOKS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def execute(
    name: str,
    *,
    smoke: bool,
    write: bool = False,
    specs=None,
    cwd=None,
    timeout: int = 900,
):
    """Run notebook `name` top to bottom in `cwd` (default: notebooks/, as Jupyter
    would), in the smoke or the full setting; returns the executed notebook. With
    `write` (full setting only), stores it, outputs included, in
    `notebooks/<name>.ipynb`, unless a cell failed."""
    from jupyter_client.manager import KernelManager
    import jupytext
    from nbclient import NotebookClient

    if smoke and write:
        raise ValueError("the committed notebooks hold the full setting: a smoke run writes nothing")
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
            client.execute(env=kernel_environment(smoke))
        finally:
            if km.has_kernel:  # a kernel we started ourselves is ours to stop
                km.shutdown_kernel(now=True)
    if write and not errors(notebook):  # a failed run leaves the committed notebook alone
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"notebooks to execute (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--smoke", action="store_true",
                        help="execute the smoke setting and only report (writes nothing)")
    opts = parser.parse_args(argv)
    if unknown := [n for n in opts.names if n not in NOTEBOOKS]:
        parser.error(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(NOTEBOOKS)}")
    failures = 0
    for name in opts.names or NOTEBOOKS:
        executed = execute(name, smoke=opts.smoke, write=not opts.smoke)
        failed = errors(executed)
        failures += bool(failed)
        if opts.smoke or failed:
            where = "nothing written"
        else:
            where = f"wrote notebooks/{name}.ipynb"
        print(f"{name}: {'FAILED ' + str(failed[0].get('ename')) if failed else 'ok'}; {where}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
