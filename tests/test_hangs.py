"""tests/hangs.py: a hung test ends its run naming the test and the line it waits on."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

_HANGING = """
import time


def test_passes():
    pass


def test_sleeps():
    time.sleep(60)  # the line it waits on
"""

# The hung line 16 frames below the test's own: the report shows both.
_DEEP = """
import time


def deep(n):
    return deep(n - 1) if n else time.sleep(60)


def test_recurses():
    deep(15)
"""

# A worker that dies without hanging; one whose traceback file is unreadable.
_DIES = """
import os
from pathlib import Path


def test_dies(request):
    worker = request.config.workerinput
    if {garbled}:
        (Path(worker["hang_folder"]) / (worker["workerid"] + ".txt")).write_text("")
    os.kill(os.getpid(), 9)
"""


def _pytest(tmp_path: Path, *args: str, test: str = _HANGING) -> subprocess.CompletedProcess[str]:
    """pytest on `test` (by default a test that sleeps past a 2-second `hang_timeout`),
    with only tests/hangs.py and pytest-xdist loaded (no jax: seconds, not a minute)."""
    (tmp_path / "test_hanging.py").write_text(test)
    (tmp_path / "pytest.ini").write_text("[pytest]\nhang_timeout = 2\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    command = [sys.executable, "-m", "pytest", "-p", "hangs", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        [*command, "test_hanging.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_hung_worker_s_crash_report_names_the_line_and_the_machine(tmp_path):
    result = _pytest(tmp_path, "-n", "1", "--max-worker-restart=0")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "worker 'gw0' crashed while running 'test_hanging.py::test_sleeps'" in out
    # The report itself (not only the worker's stderr) carries the hung thread's frames.
    report = out[out.index("FAILURES") :]
    assert "It hung: still running 2 s after it started at" in report
    assert "(hang_timeout 2 s)" in report
    assert 'test_hanging.py", line 10 in test_sleeps' in report
    assert "load average (1, 5, 15 min)" in report
    assert "1 failed, 1 passed" in out
    # The whole traceback, as the worker's stderr used to show it.
    assert "[gw0] every thread when it hung:\nTimeout (0:00:02)!" in result.stderr


def test_the_report_keeps_the_test_s_own_line_below_a_deep_stack(tmp_path):
    result = _pytest(tmp_path, "-n", "1", test=_DEEP)
    # The report alone: the full traceback is on stderr, and on CI (CI=true) pytest's short
    # summary repeats the report's whole message.
    report = result.stdout.split("FAILURES")[-1].split("short test summary info")[0]
    assert report.count("in deep") == 12  # the innermost frames
    assert '...\n  File "' in report and 'test_hanging.py", line 10 in test_recurses' in report


@pytest.mark.parametrize(
    "garbled, says",
    [
        (False, "s after the test started, without hanging: a signal"),
        (True, "(tests/hangs.py could not read gw0's traceback file: ValueError("),
    ],
)
def test_a_worker_that_dies_otherwise_keeps_xdist_s_report(tmp_path, garbled, says):
    result = _pytest(tmp_path, "-n", "1", test=_DIES.format(garbled=garbled))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "worker 'gw0' crashed while running 'test_hanging.py::test_dies'" in out
    assert says in out and "INTERNALERROR" not in out


def test_a_hang_in_one_process_writes_every_thread_s_traceback(tmp_path):
    result = _pytest(tmp_path, "-p", "no:xdist")
    assert result.returncode == 1
    assert "Timeout (0:00:02)!" in result.stderr
    assert 'test_hanging.py", line 10 in test_sleeps' in result.stderr


@pytest.mark.parametrize("args", [("-p", "no:xdist"), ("-n", "1")])
def test_no_limit_with_a_hang_timeout_of_zero(tmp_path, args):
    test = "import time\n\n\ndef test_sleeps():\n    time.sleep(3)\n"
    result = _pytest(tmp_path, "-o", "hang_timeout=0", *args, test=test)
    assert result.returncode == 0, result.stdout + result.stderr


def test_faulthandler_timeout_beside_it_is_refused(tmp_path):
    # Both would arm faulthandler's one timer, each cancelling the other's.
    result = _pytest(tmp_path, "-p", "no:xdist", "-o", "faulthandler_timeout=1")
    assert result.returncode == 4  # pytest's usage error
    assert "faulthandler_timeout and hang_timeout" in result.stderr
