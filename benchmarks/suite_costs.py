"""Where the test suite's time goes, from the per-test costs pytest records.

    python -m pytest --test-costs costs.jsonl         # one JSON line per test
    python benchmarks/suite_costs.py costs.jsonl [--top 20]
    python benchmarks/suite_costs.py before.jsonl after.jsonl   # side by side, per file

Each line holds a test's wall seconds and its CPU seconds (its process's, and those of
the subprocesses it waited for: forced-device workers, process pools, notebook kernels;
not those of a Ray instance's workers, which are not its children). On a shared
machine the CPU seconds are the steadier figure: wall time also counts waiting for the
cores.
"""

import argparse
from collections import defaultdict
import json
from pathlib import Path


def read_costs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def per_file(costs: list[dict]) -> dict[str, list[float]]:
    """file -> [tests, wall seconds, CPU seconds]."""
    files: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for cost in costs:
        entry = files[cost["test"].split("::")[0]]
        entry[0] += 1
        entry[1] += cost["wall"]
        entry[2] += cost["cpu"]
    return files


def show_one(costs: list[dict], top: int) -> None:
    print(
        f"{len(costs)} tests: {sum(c['wall'] for c in costs):.0f} s wall, "
        f"{sum(c['cpu'] for c in costs):.0f} s CPU (summed over tests)\n"
    )
    print(f"{'tests':>5} {'wall s':>8} {'CPU s':>8}  file")
    for name, (n, wall, cpu) in sorted(per_file(costs).items(), key=lambda kv: -kv[1][2]):
        print(f"{n:5.0f} {wall:8.1f} {cpu:8.1f}  {name}")
    print(f"\nThe {top} costliest tests by CPU seconds:\n{'wall s':>8} {'CPU s':>8}  test")
    for cost in sorted(costs, key=lambda c: -c["cpu"])[:top]:
        print(f"{cost['wall']:8.1f} {cost['cpu']:8.1f}  {cost['test']}")


def show_two(before: list[dict], after: list[dict]) -> None:
    old, new = per_file(before), per_file(after)
    print(f"{'file':<36} {'tests':>11} {'CPU s':>17}")
    for name in sorted(set(old) | set(new), key=lambda n: -old.get(n, [0, 0, 0])[2]):
        a, b = old.get(name, [0, 0.0, 0.0]), new.get(name, [0, 0.0, 0.0])
        print(f"{name:<36} {a[0]:5.0f} {b[0]:5.0f} {a[2]:8.1f} {b[2]:8.1f}")
    total = [sum(c["cpu"] for c in costs) for costs in (before, after)]
    print(f"{'total':<36} {len(before):5d} {len(after):5d} {total[0]:8.1f} {total[1]:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("costs", type=Path, nargs="+", help="one file, or before and after")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if len(args.costs) == 1:
        show_one(read_costs(args.costs[0]), args.top)
    elif len(args.costs) == 2:
        show_two(read_costs(args.costs[0]), read_costs(args.costs[1]))
    else:
        parser.error("give one costs file, or two (before and after)")


if __name__ == "__main__":
    main()
