"""`nderegs` command line: `nderegs train [CONFIG] [key=value ...] [--resume RUN_DIR]`."""

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, load_config


def _train(opts) -> int:
    from .train import CONFIG, train, TrainingDiverged

    try:
        if opts.resume is not None:
            run_dir = Path(opts.resume)
            if opts.config is not None:
                # `nderegs train --resume DIR a=b`: the first override lands in CONFIG.
                opts.overrides.insert(0, opts.config)
            if not (run_dir / CONFIG).exists():
                raise ConfigError(f"--resume {run_dir}: no {CONFIG} there (is it a run directory?)")
            config = load_config(run_dir / CONFIG, opts.overrides)
        else:
            config = load_config(opts.config, opts.overrides)
            run_dir = opts.run_dir
        summary = train(config, run_dir=run_dir, resume=opts.resume is not None)
    except ConfigError as e:
        print(f"nderegs train: configuration error: {e}", file=sys.stderr)
        return 2
    except (TrainingDiverged, FileExistsError, FileNotFoundError, NotImplementedError, ValueError) as e:
        print(f"nderegs train: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


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
    p.add_argument("--run-dir", help="where to write the run (default: output_dir/NAME-METHOD-seedN)")
    opts = parser.parse_args(argv)
    if opts.config is not None and "=" in opts.config and not Path(opts.config).exists():
        opts.overrides.insert(0, opts.config)
        opts.config = None
    if opts.command == "train":
        return _train(opts)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
