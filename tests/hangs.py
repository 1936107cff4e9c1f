"""A pytest plugin (loaded by conftest.py): a test still running after `hang_timeout`
seconds has hung. Every thread's traceback is written and its process ends, so the run
fails at once instead of running into CI's limit (`hang_timeout = 0`: no limit). It
replaces pytest's `faulthandler_timeout`, whose one timer it uses: setting both is an
error.

In one process the traceback goes to the terminal, as with `faulthandler_timeout`.
Under pytest-xdist it goes to a file that the controlling process prints to its stderr
when the worker dies, and the worker's crash report (the FAILURES section, which the end
of a CI log shows) carries a summary: how long the test ran, when it was found hung,
the machine's load and free memory then, the other Python threads' innermost frames,
and the hung thread's innermost frames and the test's own. Two workers found hung in
the same second, their tests started minutes apart, point at a stalled machine rather
than at the code.
"""

import contextlib
import datetime
import faulthandler
import os
from pathlib import Path
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

import pytest

#: Frames of the hung thread shown in the report, innermost first; pytest's own are not.
_FRAMES = 12
# faulthandler's thread line; Python 3.14 adds the thread's name in brackets.
_THREAD = re.compile(r"hread (0x[0-9a-f]+)(?: \[.*\])? \(most recent call first\):")
_HARNESS = re.compile(r'[/\\](_pytest|pluggy|execnet|xdist)[/\\]|File "<string>"')

_folder = pytest.StashKey[Path]()  # the workers' tracebacks, one file each
_stderr = pytest.StashKey[int]()  # the terminal, in one process


def pytest_addoption(parser):
    parser.addini(
        "hang_timeout",
        "seconds after which a running test has hung: its process ends with every "
        "thread's traceback (0: no limit)",
        type="float",
        default=900.0,
    )


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)  # set in an xdist worker only
    if workerinput is not None:
        config.stash[_folder] = Path(workerinput["hang_folder"])
        return
    try:
        faulthandler_timeout = float(config.getini("faulthandler_timeout") or 0)
    except ValueError:  # -p no:faulthandler
        faulthandler_timeout = 0.0
    if config.getini("hang_timeout") > 0 and faulthandler_timeout > 0:
        raise pytest.UsageError(
            "faulthandler_timeout and hang_timeout (tests/hangs.py) would share "
            "faulthandler's one timer: set hang_timeout only (0 for no limit)"
        )
    # pytest's global capture is suspended while plugins configure: this is the terminal.
    stderr = os.dup(2)
    config.stash[_stderr] = stderr
    config.add_cleanup(lambda: os.close(stderr))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    config = node.config
    if _folder not in config.stash:  # the first worker
        folder = tempfile.mkdtemp(prefix="pytest-hangs-")
        config.stash[_folder] = Path(folder)
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    node.workerinput["hang_folder"] = str(config.stash[_folder])


def _dump(config, worker: str) -> Path:
    return config.stash[_folder] / f"{worker}.txt"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    timeout = item.config.getini("hang_timeout")
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


# As pytest's faulthandler plugin: no limit while a debugger holds the test.
@pytest.hookimpl(tryfirst=True)
def pytest_enter_pdb():
    faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(tryfirst=True)
def pytest_exception_interact():
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
        return f"It ended between tests (the last it ran: {test}); {_machine()} now."
    if not lines:  # no traceback: it did not hang
        return (
            f"It ended {time.time() - float(started):.0f} s after the test started, without "
            "hanging: a signal (e.g. the OOM killer's) or a crash in native code, whose "
            f"traceback pytest's faulthandler wrote to stderr above; {_machine()} now."
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
    shown = hung[:_FRAMES]
    path, *_, function = nodeid.split("::")
    function = re.split(r"[\[@]", function)[0]  # no parameters, no xdist group
    # The test function's own line, where it is deeper.
    own = [f for f in hung[_FRAMES:] if f'{path}", line' in f and f.endswith(f" in {function}")]
    shown += ["..."] + own if own else []
    others = "; ".join(frames[0] for frames in threads.values() if frames)
    found = dump.stat().st_mtime
    return (
        f"It hung: still running {found - float(started):.0f} s after it started at "
        f"{_clock(float(started))} (hang_timeout {float(timeout):g} s), found at "
        f"{_clock(found)} ({_machine()} now). The other Python threads' innermost frames: "
        f"{others or 'none'}. The test's thread, innermost frame first:\n"
        + "\n".join(f"  {f}" for f in shown)
    )


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    worker = report.node.gateway.id
    try:
        dump = _dump(report.node.config, worker)
        if not dump.exists():
            return
        _, _, *traceback = dump.read_text().splitlines()
        if traceback:  # the whole dump, as a worker's stderr would have shown it
            sys.stderr.write(f"[{worker}] every thread when it hung:\n" + "\n".join(traceback))
            sys.stderr.write("\n")
        summary = _hang_report(dump, crashitem)
    except Exception as error:  # never lose xdist's own report to this plugin
        summary = f"(tests/hangs.py could not read {worker}'s traceback file: {error!r})"
    report.longrepr = f"{report.longrepr}\n{summary}"
