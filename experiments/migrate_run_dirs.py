"""One-off: rewrite run directories written before the config redesign in today's layout.

Runs of that unreleased layout (issue #25: the 45 run directories of
experiments/results/latent_ode, spiral_sde and digits_sde) differ from today's in two
files, and nowhere else. Rewritten, they read with today's code alone, so the code that
read their layout could go:

- `config.yaml`: `task` was a name, the data set and model sizes were top-level
  `data`/`model` sections, the KL warm-up was `regularization.kl_anneal_epochs`, the
  Brownian tree's tolerance `solver.brownian_tol`, and keys a choice does not take (an
  SGD momentum under Adam, a constant schedule's `end`) were written out. It is
  rewritten as the resolved config of the same experiment, as training writes it
  today (`save_config(load_config(old))`), and checked to load as the same
  `ExperimentConfig`.
- `metrics.jsonl`: a coefficient's column was `coef_<term>`, today `coefficient_<term>`.
  Only those keys are renamed, in the text: every number stays as it was written.

Summaries, tables, figures and every other file are left alone; a directory already in
today's layout is not touched, so running this twice changes nothing.

It reads the old layout with the reader this commit removes (`nderegs/config/legacy.py`),
so it needs the code of the commit before, 9f0f314, rather than a copy of that reader
here; the committed run directories were migrated with it, which is all it was for:

    git worktree add /tmp/nderegs-9f0f314 9f0f314
    PYTHONPATH=/tmp/nderegs-9f0f314 python experiments/migrate_run_dirs.py [ROOT ...]

ROOT (default: experiments/results) is searched for run directories (folders holding a
`config.yaml`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import re
import sys
from typing import Any

import yaml

try:
    from nderegs.config import legacy  # pyright: ignore  # gone since the migration
except ImportError:
    sys.exit(
        "migrate_run_dirs.py reads the old layout with nderegs/config/legacy.py, which this "
        "checkout no longer has: run it with the code of commit 9f0f314 (see its docstring)."
    )
from nderegs.config import load_config, save_config
from nderegs.train.run_directory import RunDirectory

#: `"coef_<term>":` as a key of a metrics.jsonl row (a value is never a quoted key).
_OLD_COLUMN = re.compile(r'"coef_([^"]*)":')


def _migrate_config(run: RunDirectory) -> bool:
    old: Any = yaml.safe_load(run.config_file.read_text(encoding="utf-8"))
    if not legacy.is_legacy(old):
        return False
    config = load_config(run.config_file)
    save_config(config, run.config_file)
    assert load_config(run.config_file) == config, f"{run.config_file} reads back otherwise"
    assert not legacy.is_legacy(yaml.safe_load(run.config_file.read_text(encoding="utf-8")))
    return True


def _migrate_metrics(run: RunDirectory) -> bool:
    if not run.metrics_file.exists():
        return False
    text = run.metrics_file.read_text(encoding="utf-8")
    new = _OLD_COLUMN.sub(r'"coefficient_\1":', text)
    if new == text:
        return False
    rows = run.read_metrics()  # the old reader renames the columns as this does
    run.metrics_file.write_text(new, encoding="utf-8")
    assert run.read_metrics() == rows, f"{run.metrics_file} reads back otherwise"
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rewrite old-layout run directories.")
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("experiments/results")])
    args = parser.parse_args(argv)
    for root in args.roots:
        for config_file in sorted(root.rglob(RunDirectory.CONFIG)):
            run = RunDirectory(config_file.parent)
            changed = [
                name
                for name, migrate in (
                    (RunDirectory.CONFIG, _migrate_config),
                    (RunDirectory.METRICS, _migrate_metrics),
                )
                if migrate(run)
            ]
            if changed:
                print(f"{run.path}: {', '.join(changed)}")


if __name__ == "__main__":
    main()
