"""`nderegs` command line: `nderegs train [CONFIG] [key=value ...] [--resume RUN_DIR]`
and `nderegs compare [CONFIG] --methods A,B --seeds N [--output-dir DIR] [key=value ...]`."""

import argparse
import json
from pathlib import Path
import shlex
import sys

from .config import ConfigError, load_config


def _train(opts) -> int:
    from .train import RunDirectory, train, TrainingDiverged

    try:
        if opts.resume is not None:
            run_dir = Path(opts.resume)
            if opts.config is not None:
                # `nderegs train --resume DIR a=b`: the first override lands in CONFIG.
                opts.overrides.insert(0, opts.config)
            run = RunDirectory(run_dir)
            if not run.has_config:
                raise ConfigError(
                    f"--resume {run_dir}: no {run.CONFIG} there (is it a run directory?)"
                )
            config = load_config(run.config_file, opts.overrides)
        else:
            config = load_config(opts.config, opts.overrides)
            run_dir = opts.run_dir
        summary = train(config, run_dir=run_dir, resume=opts.resume is not None)
    except ConfigError as e:
        print(f"nderegs train: configuration error: {e}", file=sys.stderr)
        return 2
    except (
        TrainingDiverged,
        FileExistsError,
        FileNotFoundError,
        NotImplementedError,
        ValueError,
    ) as e:
        print(f"nderegs train: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in _comma_list(text)]
    except ValueError:
        message = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _compare(opts, argv) -> int:
    from .report import normalize_methods, run_comparison, write_report

    seeds = opts.seed_list if opts.seed_list is not None else opts.seeds
    try:
        methods = normalize_methods(_comma_list(opts.methods))
        result = run_comparison(
            opts.config, methods, seeds, opts.overrides, output_dir=opts.output_dir
        )
    except ConfigError as e:
        print(f"nderegs compare: configuration error: {e}", file=sys.stderr)
        return 2
    command = shlex.join(["nderegs", *argv])
    files = write_report(result, result.output_dir, command)
    print(f"\nTable: {files['markdown']} and {files['csv']}")
    print(f"Plots: {files['nfe_plot']} and {files['metric_plot']}\n")
    print(files["markdown"].read_text())
    failed = len(result.failures)
    if failed:
        print(f"nderegs compare: {failed} of {len(result.runs)} runs failed", file=sys.stderr)
    return 1 if failed else 0


def _add_compare_parser(commands) -> None:
    p = commands.add_parser(
        "compare",
        help="train several methods x seeds and write the comparison table and plots",
        description="Train every method with every seed (sequentially; finished runs are "
        "reused, interrupted ones resumed) and write comparison.md, comparison.csv, "
        "nfe_over_training.png and metric_vs_prediction_time.png, e.g. `nderegs compare "
        "configs/digits.yaml --methods vanilla,error,stiffness --seeds 3 optim.epochs=10`. "
        "Exit status: 0 all runs succeeded, 1 some failed, 2 configuration error.",
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: digits)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")
    p.add_argument(
        "--methods", required=True, help="comma-separated methods, e.g. vanilla,error,stiffness"
    )
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (default 3)")
    seeds.add_argument(
        "--seed-list", type=_seed_list, metavar="S,S,...", help="explicit seeds, e.g. 0,4,7"
    )
    p.add_argument(
        "--output-dir", help="where runs, table and plots go (default: <output_dir>/compare-<name>)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="nderegs", description="Train neural ODEs that are cheap to solve."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "train",
        help="train one configuration",
        description="Train from a YAML config (default: the digits classifier) with "
        "dotted overrides, e.g. `nderegs train configs/digits.yaml method=error "
        "regularization.error.start=0.5`.",
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: digits)")
    p.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument(
        "--run-dir", help="where to write the run (default: output_dir/NAME-METHOD-seedN)"
    )
    _add_compare_parser(commands)
    argv = sys.argv[1:] if argv is None else list(argv)
    opts, extra = parser.parse_known_args(argv)
    if extra:
        # `compare` takes key=value overrides after its options too.
        if opts.command != "compare" or not all("=" in x and not x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        opts.overrides.extend(extra)
    if opts.config is not None and "=" in opts.config and not Path(opts.config).exists():
        opts.overrides.insert(0, opts.config)
        opts.config = None
    if opts.command == "train":
        return _train(opts)
    if opts.command == "compare":
        return _compare(opts, argv)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
