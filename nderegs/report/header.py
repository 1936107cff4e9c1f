"""The provenance a comparison's files open with (and a sweep's): one `Key: value` line
each for the command that made the runs, the machine, the date and the seeds, e.g.

```text
Command: `nderegs compare experiments/configs/digits.yaml --seeds 3 ...`
Machine: 2 CPU cores, Linux-...; JAX 0.10.2, backend cpu, devices: cpu:0 (cpu)
Date (UTC): 2026-11-30T03:27:42+00:00
Seeds: 0, 1, 2; runs in experiments/results/digits
```

`ReportHeader` is the one place that knows this format: `ReportHeader.lines` writes it
(comparison.md as above; comparison.csv the same lines after `# `, the command without
backticks) and `ReportHeader.parse` reads it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, UTC
import os
from pathlib import Path
import platform

#: The keys of the header lines, in their order.
COMMAND, MACHINE, DATE, SEEDS = "Command", "Machine", "Date (UTC)", "Seeds"
#: What separates the seeds from the folder of the runs on the `Seeds` line.
_RUNS_IN = "; runs in "


def machine_description() -> str:
    """CPU cores, OS platform, and JAX's version, backend and devices."""
    import jax

    devices = ", ".join(f"{d} ({d.device_kind})" for d in jax.devices())
    return (
        f"{os.cpu_count()} CPU cores, {platform.platform()}; JAX {jax.__version__}, "
        f"backend {jax.default_backend()}, devices: {devices}"
    )


@dataclass(frozen=True)
class ReportHeader:
    """Where a comparison's (or a sweep's) runs come from: the command line that made
    them, the machine (`machine_description`), when (UTC, to the second), their seeds and
    the folder they were written to, as recorded then (the folder may have moved since).

    Example:
        ```python
        header = ReportHeader.now("nderegs compare ...", seeds=(0, 1, 2), runs_in="runs/cmp")
        assert ReportHeader.parse(header.lines()) == header
        print(header)  # the four lines, as comparison.csv has them after its `# `
        ```
    """

    command: str
    machine: str
    date: datetime
    seeds: tuple[int, ...]
    runs_in: Path

    @classmethod
    def now(cls, command: str, seeds: Sequence[int], runs_in: str | os.PathLike) -> ReportHeader:
        """The header of runs made now, on this machine, by `command`."""
        return cls(
            command=command,
            machine=machine_description(),
            date=datetime.now(UTC).replace(microsecond=0),
            seeds=tuple(seeds),
            runs_in=Path(runs_in),
        )

    def lines(self, markdown: bool = True) -> list[str]:
        """The `Key: value` lines; with `markdown` the command is in backticks (as
        comparison.md shows it), without, as written (comparison.csv)."""
        command = f"`{self.command}`" if markdown else self.command
        return [
            f"{COMMAND}: {command}",
            f"{MACHINE}: {self.machine}",
            f"{DATE}: {self.date.isoformat(timespec='seconds')}",
            f"{SEEDS}: {', '.join(map(str, self.seeds))}{_RUNS_IN}{self.runs_in}",
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines(markdown=False))

    @classmethod
    def parse(cls, lines: Iterable[str], source: str | os.PathLike = "the header") -> ReportHeader:
        """The header of `lines` as `lines()` writes them (with or without the backticks;
        other lines are passed over). Raises `ValueError`, naming `source`, when a key is
        missing or its value cannot be read."""
        values: dict[str, str] = {}
        for line in lines:
            key, separator, value = line.partition(": ")
            if separator and key in (COMMAND, MACHINE, DATE, SEEDS):
                values.setdefault(key, value)
        missing = [k for k in (COMMAND, MACHINE, DATE, SEEDS) if k not in values]
        if missing:
            raise ValueError(f"{source} has no {', '.join(missing)} line")
        command = values[COMMAND]
        if len(command) > 1 and command[0] == command[-1] == "`":
            command = command[1:-1]
        seeds, _, runs_in = values[SEEDS].partition(_RUNS_IN)
        try:
            return cls(
                command=command,
                machine=values[MACHINE],
                date=datetime.fromisoformat(values[DATE]),
                seeds=tuple(int(s) for s in seeds.split(",")),
                runs_in=Path(runs_in),
            )
        except ValueError as e:
            raise ValueError(f"{source}: cannot read its header ({e})") from None
