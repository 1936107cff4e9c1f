"""The one tiny digits setting of the suite (seconds, not minutes), and the tiny runs
trained once per pytest run.

256 training and 256 test digits in batches of 128, so training and every evaluation
(train and test sets) each compile one program: no shorter last batch, no second shape.
"""

import contextlib
import fcntl
import hashlib
import io
from pathlib import Path
import shutil

TINY = [
    "task.data.subset=256",
    "task.data.test_fraction=0.1424",  # ceil(0.1424 · 1797) = 256 test digits
    "optim.batch_size=128",
    "optim.epochs=1",
    "task.model.hidden_size=8",
    "task.model.vf_width=8",
    "solver.rtol=1e-4",
    "solver.atol=1e-4",
    "train.progress=false",
    "train.predict_repeats=2",
]


#: The suite's tiny CNF run on a 2-D toy density (configs/cnf_2d.yaml).
TINY_CNF = [
    "task.data.num_train=256",
    "task.data.num_test=128",
    "task.model.width=8",
    "optim.batch_size=128",
    "optim.epochs=1",
    "train.progress=false",
    "train.predict_repeats=1",
]


class TinyRuns:
    """Tiny runs trained once per pytest run and shared by every test and xdist worker
    (the `tiny_runs` fixture of conftest.py).

    `finished(*overrides)` is the run directory of `nderegs train` with TINY and
    `overrides`, trained by whichever process asks first while the others wait (a file
    lock); `output(*overrides)` that command's stdout and stderr; `copy(directory,
    *overrides)` a private copy to change. The shared directory is never changed.
    """

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _slot(self, overrides: tuple[str, ...]) -> Path:
        return self.root / hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:16]

    def finished(self, *overrides: str) -> Path:
        from nderegs.cli import main

        slot = self._slot(overrides)
        with open(f"{slot}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (slot / "done").exists():
                shutil.rmtree(slot, ignore_errors=True)  # a half-written try
                slot.mkdir()
                argv = ["train", "--run-dir", str(slot / "run"), *TINY, *overrides]
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(argv)
                assert code == 0, f"nderegs {' '.join(argv)} failed:\n{err.getvalue()}"
                (slot / "stdout").write_text(out.getvalue())
                (slot / "stderr").write_text(err.getvalue())
                (slot / "done").touch()
        return slot / "run"

    def output(self, *overrides: str) -> tuple[str, str]:
        slot = self.finished(*overrides).parent
        return (slot / "stdout").read_text(), (slot / "stderr").read_text()

    def copy(self, directory: Path, *overrides: str) -> Path:
        copy = directory / "run"
        shutil.copytree(self.finished(*overrides), copy)
        return copy
