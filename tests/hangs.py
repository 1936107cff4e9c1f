"""A pytest plugin (loaded by conftest.py): a test still running after `hang_timeout`
seconds has hung. Every thread's traceback is written and its process ends, so the run
fails naming the test instead of running into CI's limit (`hang_timeout = 0`: no limit).

Under pytest-xdist the traceback goes to a file, and the crash report of the worker
(the FAILURES section, which the end of a CI log shows) carries the hung thread's
innermost frames, when the test started and when it was found hung, and the machine's
load and free memory then. Two workers found hung in the same second, their tests
started minutes apart, point at a stalled machine rather than at the code. In one
process the traceback goes to the terminal, as pytest's `faulthandler_timeout` does.
"""

import contextlib
import datetime
import faulthandler
import os
from pathlib import Path
import re
import shutil
import tempfile
import threading
import time
from typing import Any

import pytest

#: Frames of the hung thread shown in the report, innermost first; pytest's own are not.
_FRAMES = 12
_THREAD = re.compile(r"hread (0x[0-9a-f]+) \(most recent call first\):")
_HARNESS = re.compile(r"[/\\](_pytest|pluggy|execnet|xdist)[/\\]")

_folder = pytest.StashKey[Path]()  # the workers' tracebacks, one file each
_stderr = pytest.StashKey[int]()  # the terminal, in one process


def pytest_addoption(parser):
    parser.addini(
        "hang_timeout",
        "seconds after which a running test has hung: its process ends, naming the test "
        "and every thread's traceback (0: no limit)",
        default="900",
    )


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)  # set in an xdist worker only
    if workerinput is not None:
        config.stash[_folder] = Path(workerinput["hang_folder"])
        return
    folder = tempfile.mkdtemp(prefix="pytest-hangs-")
    config.stash[_folder] = Path(folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    # Taken before a test's output is captured.
    stderr = os.dup(2)
    config.stash[_stderr] = stderr
    config.add_cleanup(lambda: os.close(stderr))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput["hang_folder"] = str(node.config.stash[_folder])


def _dump(config, worker: str) -> Path:
    return config.stash[_folder] / f"{worker}.txt"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    timeout = float(item.config.getini("hang_timeout"))
    if timeout <= 0:
        yield
        return
    workerinput = getattr(item.config, "workerinput", None)
    with contextlib.ExitStack() as stack:
        if workerinput is None:
            file: Any = item.config.stash[_stderr]
        else:
            file = stack.enter_context(open(_dump(item.config, workerinput["workerid"]), "w"))
            file.write(f"{threading.get_ident():#018x} {time.time()} {timeout}\n{item.nodeid}\n")
            file.flush()
        faulthandler.dump_traceback_later(timeout, exit=True, file=file)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    meminfo = Path("/proc/meminfo")
    free = re.search(r"MemAvailable:\s+(\d+) kB", meminfo.read_text()) if meminfo.exists() else None
    memory = f"; {int(free[1]) / 2**20:.1f} GiB of memory available" if free else ""
    return f"load average (1, 5, 15 min) {load}{memory}"


def _clock(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def _hang_report(dump: Path, nodeid: str) -> str:
    """What the traceback file of a crashed worker says of the test `nodeid`."""
    header, test, *lines = dump.read_text().splitlines()
    thread, started, timeout = header.split()
    if test != nodeid:
        return f"It ended before the test started; {_machine()} now."
    if not lines:  # no traceback: it did not hang
        return (
            f"It ended {time.time() - float(started):.0f} s after the test started, without "
            f"hanging (a signal, e.g. the OOM killer's, or a crash in native code); "
            f"{_machine()} now."
        )
    threads: dict[str, list[str]] = {}  # faulthandler's thread id -> frames
    frames: list[str] = []
    for line in lines:
        thread_line = _THREAD.search(line)
        if thread_line is not None:
            frames = threads.setdefault(thread_line[1], [])
        elif line.startswith("  ") and not _HARNESS.search(line):
            frames.append(line.strip())
    hung = threads.pop(thread, [])
    others = "; ".join(frames[0] for frames in threads.values() if frames)
    return (
        f"It hung: still running {float(timeout):.0f} s after it started at "
        f"{_clock(float(started))}, found at {_clock(dump.stat().st_mtime)} ({_machine()} "
        f"now). The other Python threads' innermost frames: {others or 'none'}. The test's "
        "thread, innermost frame first:\n" + "\n".join(f"  {f}" for f in hung[:_FRAMES])
    )


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    dump = _dump(report.node.config, report.node.gateway.id)
    if dump.exists():
        report.longrepr = f"{report.longrepr}\n{_hang_report(dump, crashitem)}"
