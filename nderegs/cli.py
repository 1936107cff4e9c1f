"""`nderegs` command line: `nderegs train`, `compare`, `sweep` and `eval`.

Exit status: 0 success, 1 a run failed (diverged, bad data, unwritable directory, ...),
2 a configuration or usage error, 130 interrupted (Ctrl-C). Errors are one paragraph on
stderr; progress and the run directory go to stderr too, so that stdout holds only the
result (the JSON summary of `train`/`eval`, the table of `compare`).
"""

import argparse
import json
import logging
from pathlib import Path
import shlex
import sys

import yaml

from . import __version__
from .config import (
    config_to_dict,
    ConfigError,
    configs_dir,
    load_config,
    METHOD_COMPONENTS,
)
from .config.tasks import TASKS


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _epilog() -> str:
    lines = [
        "methods: '+'-joined components of " + ", ".join(METHOD_COMPONENTS),
        "  (e.g. error+stiffness, local-error, taynode)",
        "tasks (task.name): " + ", ".join(TASKS),
    ]
    try:
        directory = configs_dir()
    except FileNotFoundError:  # installed without the repository's configs/
        pass
    else:
        configs = ", ".join(sorted(p.name for p in directory.glob("*.yaml")))
        lines.append(f"bundled configs (in {directory}): {configs}")
    lines.append("without CONFIG: the digits classifier (scikit-learn's digits, offline)")
    return "\n".join(lines)


def _unwritable(error: OSError, command: str) -> str:
    where = error.filename or "the output directory"
    return (
        f"nderegs {command}: cannot write {where} ({error.strerror or error}). Choose a "
        "writable place with --run-dir / --output-dir or output_dir=..."
    )


class _StatusLines(logging.Handler):
    """The training loop's status lines (`nderegs.train`'s log), on stderr as they
    happen."""

    def __init__(self, command: str):
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        _say(f"nderegs {self.command}: {record.getMessage()}")


def _train(opts) -> int:
    import jax

    from .data import MissingExtra
    from .parallel import ProcessStopped
    from .train import default_run_dir, RunDirectory, train, TrainingDiverged

    run_dir = None
    # The loop's status lines, on stderr, for this command only (the logger's level
    # and propagation are restored after it).
    logger = logging.getLogger("nderegs.train")
    status, level, propagate = _StatusLines("train"), logger.level, logger.propagate
    logger.addHandler(status)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        if opts.resume is not None:
            run_dir = Path(opts.resume)
            config = RunDirectory(run_dir).read_config(opts.overrides)
        else:
            config = load_config(opts.config, opts.overrides)
        if opts.print_config:
            print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
            return 0
        chosen = run_dir or (Path(opts.run_dir) if opts.run_dir else None)
        # Without --run-dir the loop picks the default itself (and says so when an earlier
        # run holds the usual name); this is the same directory, for the messages here.
        run_dir = chosen or default_run_dir(config)
        summary = train(
            config, run_dir=chosen, resume=opts.resume is not None, init_from=opts.init_from
        )
    except ConfigError as e:
        _say(f"nderegs train: configuration error: {e}")
        return 2
    except KeyboardInterrupt:
        if run_dir is not None and RunDirectory(run_dir).has_checkpoint:
            _say(
                f"\nnderegs train: interrupted. {run_dir} keeps the checkpoint of the last "
                f"completed epoch; continue with `nderegs train --resume {run_dir}`."
            )
        else:
            _say("\nnderegs train: interrupted before the first checkpoint; nothing to resume.")
        return 130
    except PermissionError as e:
        _say(_unwritable(e, "train"))
        return 1
    except (
        TrainingDiverged,
        OSError,
        NotImplementedError,
        ValueError,
        ProcessStopped,
        MissingExtra,  # an optional extra the data need (e.g. nderegs[mnist])
    ) as e:
        _say(f"nderegs train: {e}")
        return 1
    finally:
        logger.removeHandler(status)
        logger.setLevel(level)
        logger.propagate = propagate
    if jax.process_index() == 0:  # one report per multi-host run
        _say(f"nderegs train: done; run directory {run_dir} (summary.json, metrics.jsonl)")
        print(json.dumps(summary, indent=2))
    return 0


def _eval(opts) -> int:
    from .data import MissingExtra
    from .train import evaluate_run

    try:
        figures = evaluate_run(opts.run_dir, opts.overrides, write=not opts.no_write)
    except ConfigError as e:
        _say(f"nderegs eval: configuration error: {e}")
        return 2
    except KeyboardInterrupt:
        _say("\nnderegs eval: interrupted; nothing was written.")
        return 130
    except PermissionError as e:
        _say(_unwritable(e, "eval") + " (or pass --no-write)")
        return 1
    except (OSError, ValueError, MissingExtra) as e:
        _say(f"nderegs eval: {e}")
        return 1
    if not opts.no_write:
        _say(f"nderegs eval: written to {Path(opts.run_dir) / 'eval.json'}")
    print(json.dumps(figures, indent=2))
    return 0


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        message = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _backend(opts):
    from .runners import make_backend

    return make_backend(
        opts.backend,
        workers=opts.workers,
        address=opts.address,
        cpus_per_trial=opts.cpus_per_trial,
        gpus_per_trial=opts.gpus_per_trial,
    )


def _on_backend(opts, command: str, work):
    """`work(backend)` -> `(result, files)` with the backend the options describe (made
    on demand, closed at the end), or the exit status of what stopped it."""
    made = []

    def backend():
        made.append(_backend(opts))
        return made[-1]

    try:
        return work(backend)
    except (ConfigError, ImportError) as e:
        _say(f"nderegs {command}: configuration error: {e}")
        return 2
    except KeyboardInterrupt:
        _say(
            f"\nnderegs {command}: interrupted. Finished runs are kept; the same command "
            "continues where it stopped."
        )
        return 130
    except PermissionError as e:
        _say(_unwritable(e, command))
        return 1
    finally:
        for b in made:
            b.close()


def _failed(command: str, failed: int, total: int) -> int:
    if failed:
        _say(f"nderegs {command}: {failed} of {total} runs failed")
    return 1 if failed else 0


def _compare(opts, argv) -> int:
    from .report import normalize_methods, run_comparison, split_entries, write_report

    def work(backend):
        methods = normalize_methods(split_entries(opts.methods))
        result = run_comparison(
            opts.config, methods, opts.seeds, opts.overrides, opts.output_dir, backend=backend()
        )
        return result, write_report(result, result.output_dir, shlex.join(["nderegs", *argv]))

    outcome = _on_backend(opts, "compare", work)
    if isinstance(outcome, int):
        return outcome
    result, files = outcome
    _say(f"\nTable: {files['markdown']} and {files['csv']}")
    _say(f"Plots: {files['nfe_plot']} and {files['metric_plot']}\n")
    if "density_plot" in files:
        _say(f"Learned densities: {files['density_plot']}\n")
    print(files["markdown"].read_text())
    return _failed("compare", len(result.failures), len(result.runs))


def _add_compare_parser(commands) -> None:
    p = commands.add_parser(
        "compare",
        help="train several methods x seeds and write the comparison table and plots",
        description="Train every method with every seed (--workers at a time, locally or on "
        "Ray; finished runs are "
        "reused, interrupted ones resumed) and write comparison.md, comparison.csv, "
        "nfe_over_training.png and metric_vs_prediction_time.png, e.g. `nderegs compare "
        "configs/digits.yaml --methods vanilla,error,stiffness --seeds 3 optim.epochs=10`. "
        "Exit status: 0 all runs succeeded, 1 some failed, 2 configuration error.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--methods",
        required=True,
        help="comma-separated methods, e.g. vanilla,error,stiffness; a row may carry its "
        "own overrides: 'local-error[solver.adjoint=backsolve,regularization.local_gradient="
        "trajectory]' (quote it in the shell)",
    )
    _add_runs_arguments(p, "compare", "run", "runs, table and plots")


def _add_runs_arguments(p, command: str, run: str, outputs: str) -> None:
    """What `compare` and `sweep` share: the config and the overrides of every `run`, the
    seeds, the folder of the runs and `outputs`, and where the runs execute."""
    from .runners import BACKENDS, backends_help

    p.add_argument("config", nargs="?", help="YAML config file (default: digits)")
    p.add_argument("overrides", nargs="*", help=f"key=value overrides applied to every {run}")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (default 3)")
    seeds.add_argument(
        "--seed-list",
        type=_seed_list,
        dest="seeds",
        metavar="S,S,...",
        help="explicit seeds, e.g. 0,4,7",
    )
    p.add_argument(
        "--output-dir", help=f"where {outputs} go (default: <output_dir>/{command}-<name>)"
    )
    p.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        default="local",
        help=f"where runs execute (default local). {backends_help()}",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs at a time: local processes, or the CPUs of a local Ray instance / "
        "--cpus-per-trial (default 1)",
    )
    p.add_argument("--address", help="a Ray cluster's address (--backend ray), e.g. auto")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="Ray resources per run")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="Ray resources per run")


def _sweep(opts, argv) -> int:
    from .report import normalize_methods, report_header, run_sweep, split_entries, write_sweep

    def work(backend):
        methods = normalize_methods(split_entries(opts.methods))
        result = run_sweep(
            opts.config,
            methods,
            opts.grid or [],
            opts.seeds,
            opts.overrides,
            output_dir=opts.output_dir,
            backend=backend(),
        )
        header = report_header(result, shlex.join(["nderegs", *argv]))
        return result, write_sweep(result, result.output_dir, header)

    outcome = _on_backend(opts, "sweep", work)
    if isinstance(outcome, int):
        return outcome
    result, files = outcome
    _say(f"\nTrials: {files['csv']}; fronts: {files['pareto']}, {files['plot']}")
    _say(f"Tuned table: {files['tuned']}\n")
    print(files["pareto"].read_text())
    return _failed("sweep", len(result.failures), len(result.trials))


def _add_sweep_parser(commands) -> None:
    p = commands.add_parser(
        "sweep",
        help="train methods x coefficient grids x seeds; Pareto fronts of NFE vs metric",
        description="Train every method over its grid of settings and seeds (each trial an "
        "ordinary run; finished trials are reused, failed ones recorded) and write "
        "sweep.csv, pareto.md, pareto.png and tuned.md, e.g. `nderegs sweep "
        "configs/digits.yaml --methods vanilla,error --grid "
        "error:regularization.error.start=0.1,0.3,1,3 --seeds 3`. Exit status: 0 all "
        "trials succeeded, 1 some failed, 2 configuration error.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--methods", required=True, help="comma-separated methods, as for compare")
    p.add_argument(
        "--grid",
        action="append",
        metavar="[METHOD:]KEY=V1,V2,...",
        help="a grid over a config key, for every method or (METHOD:) one; repeatable, the "
        "settings are the product",
    )
    _add_runs_arguments(p, "sweep", "trial", "trials and results")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nderegs",
        description="Train neural differential equations that are cheap to solve.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nderegs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "train",
        help="train one configuration",
        description="Train from a YAML config (default: the digits classifier) with "
        "dotted overrides, e.g. `nderegs train configs/digits.yaml method=error "
        "regularization.error.start=0.5`. The run directory is printed at the start and "
        "the end; stdout holds only the JSON summary (progress and status go to stderr). "
        "Without --run-dir a run goes to output_dir/NAME-METHOD-seedN; if that exists, to "
        "the first free NAME-METHOD-seedN-2, -3, ... (said on stderr): a repeated command "
        "never writes into an earlier run; --resume continues one.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: digits)")
    p.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run exactly as configured (only optim.epochs=N, to "
        "extend it, and train.progress may be overridden)",
    )
    p.add_argument(
        "--run-dir", help="where to write the run (default: output_dir/NAME-METHOD-seedN)"
    )
    p.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="start this new run from the weights of a trained run (its last checkpoint; "
        "the model's parameters must match), e.g. to fine-tune a flow-matching model with "
        "method=error; the summary records it",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration (YAML) and exit without training",
    )
    _add_compare_parser(commands)
    _add_sweep_parser(commands)
    e = commands.add_parser(
        "eval",
        help="evaluate a trained run: test metric, NFE and prediction time",
        description="Load RUN_DIR's last checkpoint and evaluate it on its test set as at "
        "the end of training (or on other data: task.data.path=..., task.data.name=...); "
        "prints the figures and writes RUN_DIR/eval.json.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("overrides", nargs="*", help="task.data.* / train.eval_batch_size overrides")
    e.add_argument("--no-write", action="store_true", help="do not write eval.json")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    opts, extra = parser.parse_known_args(argv)
    if extra:
        # key=value overrides may also follow the options (`--run-dir D a=b`).
        if not all("=" in x and not x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        opts.overrides.extend(extra)
    config = getattr(opts, "config", None)
    if config is not None and "=" in config and not Path(config).exists():
        # `nderegs train a=b` / `nderegs train --resume DIR a=b`: no CONFIG given.
        opts.overrides.insert(0, config)
        opts.config = None
    if opts.command == "train":
        if opts.resume is not None and opts.config is not None:
            parser.error("--resume takes the run's own config.yaml; do not pass CONFIG too")
        return _train(opts)
    if opts.command == "compare":
        return _compare(opts, argv)
    if opts.command == "sweep":
        return _sweep(opts, argv)
    if opts.command == "eval":
        return _eval(opts)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
