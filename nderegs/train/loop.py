"""The training loop: one `eqx.filter_jit` step (task loss + regularizers, optax
update), evaluation, checkpoints, metrics and the run summary.

Timing follows the papers: `train_seconds` sums the wall time of the gradient +
update steps (each waited for), without compilation; `compile_seconds` is the first
call of the step (compilation plus one step on the first batch, whose result is
discarded; a run that takes the compiled step of an earlier run of its process, see
`compiled_steps`, reports what compiling that program took, which it did not pay
again, and its summary says `compiled_step_reused`); `predict_seconds` is the median over repeats of one compiled forward
pass on a test batch.

Memory: `train_step_bytes` is the memory of one compiled training step as XLA plans
it (`memory_analysis()`: arguments + outputs + temporaries − aliased buffers), an upper
bound of its peak. It is a property of the program, so it is noise-free, and it is
where an adjoint's memory shows (RecursiveCheckpointAdjoint stores checkpoints,
BacksolveAdjoint does not).
"""

from collections.abc import Callable
import dataclasses
import logging
import math
from pathlib import Path
import statistics
import sys
import time
from typing import Any, NoReturn

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm
import yaml

from ..config import config_changes, config_to_dict, ConfigError, ExperimentConfig
from ..config.coefficients import ExponentialSchedule, LossBudgetCoefficient
from ..core import BackwardCount, counting_backward
from ..data import iterate_batches, num_batches
from ..parallel import check_same_on_every_process, DataParallel, raise_on_every_process
from ..tasks import AbstractTask, Arrays, count_parameters, Evaluation
from ..tracking import AbstractTracker, make_trackers
from . import compiled_steps
from .run_directory import RunDirectory

#: Status lines ("training ... in DIR", "compiling ...", "nothing left to train"), each
#: at the moment it becomes true; `nderegs train` shows them on stderr. Silent unless a
#: handler is configured (`logging.basicConfig(level=logging.INFO)` shows them).
logger = logging.getLogger("nderegs.train")


class TrainingDiverged(RuntimeError):
    """Training stopped: a non-finite loss or a failed solve. The run directory keeps
    the last good checkpoint."""


def run_dir_name(config: ExperimentConfig) -> Path:
    """`output_dir/name-method-seedN`: where a run of `config` goes by default."""
    slug = config.method.replace("+", "_")
    return Path(config.output_dir) / f"{config.name}-{slug}-seed{config.seed}"


def default_run_dir(config: ExperimentConfig) -> Path:
    """`run_dir_name(config)`, or, if that exists, the first free one of `…-2`, `…-3`,
    ...: a repeated command never writes into an earlier run."""
    base = run_dir_name(config)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _select(keep, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(keep, a, b) if eqx.is_array(a) else a, new, old
    )


def make_train_step(
    task: AbstractTask,
    optimizer: optax.GradientTransformation,
    parallel: DataParallel | None = None,
):
    """`step(model, opt_state, batch, key, coefficient_states, epoch, own_coefficients)
    -> (model, opt_state, loss, aux)`: the method's coefficients evaluated from their
    states at `epoch`, task loss + weighted regularizers, gradient, optax update, in one
    `filter_jit`. `own_coefficients` are the task's own loss weights. A failed solve or a non-finite loss leaves the model and optimizer
    unchanged. With a `parallel` over several devices, the loss and gradient are means
    over the devices' shards and `aux["nfe"]` holds each device's NFE (see
    `DataParallel.mean_over_shards`). `aux["backward_nfe"]` and `aux["backward_vjps"]`
    are the backward pass's evaluations and VJPs (`nderegs.BackwardCount`; NaN where a
    solve of the loss cannot be counted)."""
    value_and_grad = _counting_backward(task)
    if parallel is not None:
        value_and_grad = parallel.mean_over_shards(value_and_grad)

    method = task.regularization

    @eqx.filter_jit
    def train_step(model, opt_state, batch, key, coefficient_states, epoch, own_coefficients):
        coefficients = {**method.coefficient_values(coefficient_states, epoch), **own_coefficients}
        (loss, aux), grads = value_and_grad(model, batch, key, coefficients)
        params = eqx.filter(model, eqx.is_inexact_array)
        # optax's own arithmetic (e.g. Adam's bias correction, int step ** float)
        # relies on standard dtype promotion; ours is strict-clean.
        with jax.numpy_dtype_promotion("standard"):
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_model = eqx.apply_updates(model, updates)
        ok = jnp.isfinite(loss) & aux["successful"]
        return _select(ok, new_model, model), _select(ok, new_opt_state, opt_state), loss, aux

    return train_step


def _counting_backward(task: AbstractTask):
    """`value_and_grad(model, batch, key, coefficients)` of `task.loss`, with the
    backward pass's vector-field evaluations and VJPs (summed over the step's solves)
    in `aux["backward_nfe"]` and `aux["backward_vjps"]`: the gradient of a
    `nderegs.BackwardCount` probe that every solve of the loss reports to."""

    def loss(model_and_probe, batch, key, coefficients):
        model, probe = model_and_probe
        with counting_backward(probe):
            return task.loss(model, batch, key, coefficients)

    with_probe = eqx.filter_value_and_grad(loss, has_aux=True)

    def value_and_grad(model, batch, key, coefficients):
        (value, aux), (grads, count) = with_probe(
            (model, BackwardCount.probe()), batch, key, coefficients
        )
        return (value, {**aux, "backward_nfe": count.nfe, "backward_vjps": count.vjps}), grads

    return value_and_grad


def make_evaluate_step(task: AbstractTask, parallel: DataParallel | None = None):
    """`evaluate(model, batch) -> Evaluation`, compiled, for a (host) batch. With a
    `parallel` over several devices, a batch that splits evenly is evaluated in shards
    (`nfe`: each device's); one that does not (the last, shorter batch of a data set)
    is evaluated whole on every device, exactly as on one."""
    whole = eqx.filter_jit(task.evaluate)
    if parallel is None or not parallel.is_parallel:
        return whole
    sharded = eqx.filter_jit(parallel.sum_over_shards(task.evaluate))

    def evaluate(model, batch) -> Evaluation:
        if batch[0].shape[0] % parallel.num_devices == 0:
            return sharded(model, parallel.shard(batch))
        return whole(model, parallel.replicate(batch))

    return evaluate


def compile_step(step, *args):
    """`(compiled, bytes)`: `step` (an `eqx.filter_jit` function) compiled ahead of
    time for `args`, and the bytes one call needs as XLA plans it (None where the backend gives no
    memory analysis)."""
    compiled = step.lower(*args).compile()
    return compiled, step_memory_bytes(compiled)


def step_memory_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries − aliased buffers of a compiled call."""
    try:
        stats = compiled.compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):  # backend without it
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _nfe_mean_max(nfe) -> tuple[float, float] | None:
    """The mean and max over devices of one step's NFE (a scalar on one device)."""
    if nfe is None:
        return None
    per_device = np.asarray(nfe, dtype=np.float64).reshape(-1)
    return float(per_device.mean()), float(per_device.max())


def _evaluate(evaluate_batch, model, arrays, batch_size):
    """`(metric, nfe mean, nfe max, successful)` over a data set: NFE per batch
    averaged over batches, per device (its mean and max over devices) when sharded."""
    metric_sum = count = 0.0
    nfes, ok = [], True
    for batch in iterate_batches(arrays, batch_size, rng=None, drop_last=False):
        out = evaluate_batch(model, batch)
        metric_sum += float(out.metric_sum)
        count += float(out.count)
        ok = ok and bool(out.successful)
        if (nfe := _nfe_mean_max(out.nfe)) is not None:
            nfes.append(nfe)
    mean_nfe, max_nfe = (
        (float(np.mean([n[0] for n in nfes])), float(np.mean([n[1] for n in nfes])))
        if nfes
        else (None, None)
    )
    return metric_sum / count, mean_nfe, max_nfe, ok


def evaluate_test_set(
    task: AbstractTask,
    model,
    test,
    batch_size: int,
    predict_repeats: int,
    evaluate_batch=None,
    parallel: DataParallel | None = None,
) -> dict:
    """The run's test figures: `test_metric` and `test_nfe` (mean per batch; per
    device, and `test_nfe_max` its max over devices) over the whole set,
    `predict_seconds` (median over `predict_repeats` of one compiled forward pass on the
    first batch) and `predict_batch_size`; `successful` False if a solve failed."""
    evaluate_batch = evaluate_batch or make_evaluate_step(task, parallel)
    eval_model = task.evaluation_model(model)
    metric, nfe, nfe_max, ok = _evaluate(evaluate_batch, eval_model, test, batch_size)
    predict_batch = next(iterate_batches(test, batch_size, rng=None, drop_last=False))
    _timed(evaluate_batch, eval_model, predict_batch)  # compile
    times = [_timed(evaluate_batch, eval_model, predict_batch)[1] for _ in range(predict_repeats)]
    return {
        "test_metric": metric,
        "test_nfe": nfe,
        "test_nfe_max": nfe_max,
        "predict_seconds": statistics.median(times),
        "predict_batch_size": int(predict_batch[0].shape[0]),
        "successful": ok,
    }


def _check_location(run_dir: Path) -> None:
    """A clear `ConfigError` where a new run directory cannot be made: it, or a folder
    above it, is a file."""
    where = "(--run-dir, or output_dir=...)"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(
            f"the run directory {run_dir} is a file; give a directory that does not exist "
            f"yet {where}."
        )
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"cannot make the run directory {run_dir}: {parent} is a file, not a "
                    f"directory {where}."
                )
            return


def _taken(usual: RunDirectory, run_dir: Path) -> str:
    """The status line of a run that goes to `run_dir` because an earlier one holds the
    usual name."""
    how = (
        "finished"
        if usual.is_finished
        else f"not finished: `nderegs train --resume {usual.path}` continues it"
        if usual.has_checkpoint
        else "not a run that can be resumed"
    )
    return (
        f"{usual.path} exists ({how}); this run goes to {run_dir} (--run-dir chooses another place)"
    )


def _solve_failed(config: ExperimentConfig, updates: int, where: str = "a training batch") -> str:
    """Why a solve failed, as far as it is known: it ran out of steps on `where` after
    `updates` optimizer updates of the model."""
    solver, optim = config.solver, config.optim
    limit = (
        f"The ODE solver failed on {where}: it needed more than solver.max_steps="
        f"{solver.max_steps} steps at rtol={solver.rtol:g}, atol={solver.atol:g} (or its "
        "step size collapsed)"
    )
    if updates == 0:
        return (
            f"{limit} before any update, with the initial parameters. Raise "
            "solver.max_steps or loosen solver.rtol/atol"
        )
    if updates < 10:
        return (
            f"{limit} after only {updates} optimizer update(s), so most likely an update "
            f"moved the vector field too far at once (optim.lr={optim.lr:g}); lower optim.lr or set "
            "optim.grad_clip"
        )
    return (
        f"{limit} after {updates} optimizer updates. Either the learned dynamics grew "
        "stiff (regularize, e.g. method=error), or an update moved the field too far "
        f"(lower optim.lr={optim.lr:g}, or set optim.grad_clip); raising solver.max_steps "
        "or loosening the tolerances also lets the solve finish"
    )


def _runtime_error_reason(error: Exception) -> str:
    """The message of an `equinox.EquinoxRuntimeError`, without its debugging advice."""
    marker = "EquinoxRuntimeError: "
    for line in str(error).splitlines():
        if marker in line:
            return line.split(marker, 1)[1]
    return str(error).strip().splitlines()[0]


def train(
    config: ExperimentConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    init_from: str | Path | None = None,
) -> dict | None:
    """Train `config`; write `config.yaml`, `metrics.jsonl`, the checkpoint and
    `summary.json` under the run directory and return the summary.

    `init_from` (a run directory) starts a new run from that run's last weights instead
    of the seed's initialisation: the model's weights only (the optimizer, coefficients
    and epochs start afresh), so a trained flow or classifier continues with any
    method; the summary records where it started (`init_from`). Its model must have
    the same parameters (names and shapes) as this config's, else a `ConfigError` says
    which differ.

    `resume=True` continues the run in `run_dir` from its last checkpoint with the
    same numbers an uninterrupted run gives (per-epoch shuffles and per-step keys are
    functions of the seed, epoch and step). `stop_after_epoch` stops early (as an
    interruption would) and returns None.
    """
    trackers: list[AbstractTracker] = []
    try:
        return _train(config, run_dir, resume, stop_after_epoch, trackers, init_from)
    finally:  # also when training stops with an error or an interrupt
        for tracker in trackers:
            tracker.close()


def _train(
    config: ExperimentConfig,
    run_dir: str | Path | None,
    resume: bool,
    stop_after_epoch: int | None,
    trackers: list[AbstractTracker],
    init_from: str | Path | None = None,
) -> dict | None:
    """`train`, phase by phase: set the run up, prepare its directory, compile, train
    the epochs, then evaluate and summarize; returns the summary (a finished run resumed
    without more epochs: its own), or None where `stop_after_epoch` stopped it.
    `trackers` receives the trackers it opens (`train` closes them)."""
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run directory to continue.")
    if resume and init_from is not None:
        raise ConfigError(
            "--init-from starts a new run from another run's weights; a resumed run "
            "continues from its own checkpoint (drop one of --resume and --init-from)."
        )
    # Before any JAX work: a multi-host run initialises jax.distributed here.
    parallel = config.parallel.build()
    _check_same_config_on_every_process(config)
    # One process writes the run directory.
    directory = RunDirectory(
        run_dir if run_dir is not None else default_run_dir(config),
        writes=jax.process_index() == 0,
    )
    resumed_changes = _resumable_changes(directory, config) if resume else {}
    extended = resume and directory.is_finished
    if extended and "optim.epochs" not in resumed_changes:
        logger.info(
            f"{directory.path} is finished (optim.epochs={config.optim.epochs}): nothing "
            "left to train (optim.epochs=N extends it); its summary follows."
        )
        return directory.read_summary()
    run = _set_up(config, parallel, directory, resume)
    state = _starting_state(run, resume, resumed_changes)
    if init_from is not None:
        state.model, state.progress["init_from"] = _weights_of(run, state.model, init_from)
    _prepare_directory(run, state, resume, extended)
    _announce(run, state, resume, chosen_by_default=run_dir is None)
    state.model, state.opt_state = parallel.replicate((state.model, state.opt_state))
    if run.writes:  # mirrors of metrics.jsonl, each row flushed as it is logged
        trackers += make_trackers(
            config.tracking, directory.path, config_to_dict(config), state.epoch
        )
    steps = _compile(run, state)
    for epoch in range(state.epoch, run.epochs):
        _train_epoch(run, steps, state, epoch, trackers)
        done = state.epoch
        if stop_after_epoch is not None and done >= stop_after_epoch and done < run.epochs:
            return None
    return _summarize(run, steps, state)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What a run is fixed to once set up: its configuration, devices and directory,
    the task and its data, the batch sizes, the optimizer, the key every step's key is
    folded from, and what the loss budgets constrain (`"task_loss"` or `"metric"`)."""

    config: ExperimentConfig
    parallel: DataParallel
    directory: RunDirectory
    task: AbstractTask
    arrays: Arrays
    batch_size: int
    eval_batch_size: int
    steps_per_epoch: int
    optimizer: optax.GradientTransformation
    step_key: jax.Array
    budget_measure: str

    @property
    def epochs(self) -> int:
        return self.config.optim.epochs

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (only the first does)."""
        return self.directory.writes


@dataclasses.dataclass
class _State:
    """Where a run stands after `epoch` epochs: what its checkpoint holds (the model,
    optimizer and coefficient states, and `progress`, the checkpoint's record), the
    metrics rows so far, the training time so far and the epoch of the last checkpoint
    written. The phases update it in place."""

    model: Any
    opt_state: Any
    coefficient_states: dict[str, Any]
    epoch: int
    progress: dict[str, Any]
    rows: list[dict[str, Any]]
    train_seconds: float
    last_checkpoint_epoch: int


@dataclasses.dataclass(frozen=True)
class _Steps:
    """The compiled training step, the evaluation step, and what compiling cost: the
    time (with one step on the first batch) and the training step's memory."""

    train: Callable
    evaluate: Callable[..., Evaluation]
    compile_seconds: float
    train_step_bytes: int | None
    reused: bool


@dataclasses.dataclass
class _EpochFigures:
    """One epoch's figures, gathered as its steps run: the coefficients λ it trains
    with, the sums of its steps' loss, metric and NFE (mean and max over devices), and
    what the coefficients' update reads (every solve's NFE, the budgets' measure of
    every step)."""

    coefficients: dict[str, float]
    sums: dict[str, float] = dataclasses.field(
        default_factory=lambda: {
            "loss": 0.0,
            "metric": 0.0,
            "nfe": 0.0,
            "nfe_max": 0.0,
            "backward_nfe": 0.0,
            "backward_vjps": 0.0,
        }
    )
    nfes: list[np.ndarray] = dataclasses.field(default_factory=list)
    measures: list[float] = dataclasses.field(default_factory=list)


def _check_same_config_on_every_process(config: ExperimentConfig) -> None:
    """A `ConfigError` where the processes of a multi-host run were given different
    configs."""
    try:
        check_same_on_every_process(yaml.safe_dump(config_to_dict(config)), "configs")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _set_up(
    config: ExperimentConfig, parallel: DataParallel, directory: RunDirectory, resume: bool
) -> _Run:
    """The `_Run` of `config`: its task and data built, its batch sizes (the training
    batch clamped to the training set) and its optimizer. Raises `ConfigError` where a
    new run would train nothing or a batch does not split over the devices."""
    if not resume:
        config.check_trains_something()
    task, arrays = config.build()
    n_train = arrays.train[0].shape[0]
    batch_size = min(config.optim.batch_size, n_train)
    eval_batch_size = config.train.eval_batch_size or batch_size
    clamped = (
        f"the batch size {batch_size} (optim.batch_size={config.optim.batch_size} clamped "
        f"to the {n_train} training rows)"
        if batch_size < config.optim.batch_size
        else f"optim.batch_size={batch_size}"
    )
    try:
        parallel.check_batch_size(batch_size, clamped)
        parallel.check_batch_size(eval_batch_size, f"train.eval_batch_size={eval_batch_size}")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return _Run(
        config=config,
        parallel=parallel,
        directory=directory,
        task=task,
        arrays=arrays,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        steps_per_epoch=num_batches(n_train, batch_size, drop_last=True),
        optimizer=config.optim.build(),
        step_key=jax.random.key(config.seed + 1),
        budget_measure=config.loss_budget_measure(),
    )


def _starting_state(run: _Run, resume: bool, resumed_changes: dict) -> _State:
    """The `_State` the run starts from: the initial model, optimizer and coefficient
    states after 0 epochs; or, on `resume`, the run's last checkpoint with its metrics
    rows up to it, `resumed_changes` appended to its progress record. Raises
    `ConfigError` where the checkpoint is past `optim.epochs`."""
    model = run.task.init_model(jax.random.key(run.config.seed))
    opt_state = run.optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    coefficient_states = run.task.regularization.init_coefficients()
    if not resume:
        return _State(
            model,
            opt_state,
            coefficient_states,
            epoch=0,
            progress={"train_seconds": 0.0},
            rows=[],
            train_seconds=0.0,
            last_checkpoint_epoch=0,
        )
    model, opt_state, epoch, progress, coefficient_states = run.directory.load_checkpoint(
        model, opt_state, coefficient_states
    )
    if epoch > run.epochs:
        raise ConfigError(
            f"--resume {run.directory.path}: optim.epochs={run.epochs} is below the {epoch} "
            "epochs the run has already trained."
        )
    rows = [r for r in run.directory.read_metrics() if r["epoch"] <= epoch]
    if resumed_changes:
        history = progress.get("resumed_changes", [])
        progress = {**progress, "resumed_changes": [*history, _jsonable(resumed_changes)]}
    return _State(
        model,
        opt_state,
        coefficient_states,
        epoch=epoch,
        progress=progress,
        rows=rows,
        train_seconds=float(progress.get("train_seconds", 0.0)),
        last_checkpoint_epoch=epoch,
    )


def _weights_of(run: _Run, model: Any, source: str | Path) -> tuple[Any, dict]:
    """`model` with the weights of the run directory `source`'s last checkpoint, and
    the record of where they came from. Raises `ConfigError` where `source` is not a
    run with a checkpoint or its parameters differ from `model`'s (names or shapes)."""
    if not RunDirectory(source).has_checkpoint:
        raise ConfigError(
            f"--init-from {source}: not a run directory with a checkpoint (expected the "
            "directory of an earlier `nderegs train`, holding config.yaml and "
            "checkpoint.eqx)"
        )
    trained, source_config, epoch, _, _ = restore_run(source)
    data_changes = {
        k: v
        for k, v in config_changes(source_config, run.config).items()
        if k == "seed" or k.startswith("task.data.")
    }
    if data_changes:
        differ = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in data_changes.items())
        raise ConfigError(
            f"--init-from {source}: it was trained on other data ({differ}): the seed and "
            "task.data settings pick the data and its split, so its training points could "
            "be in this run's test set. Start from a run of the same seed and data."
        )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    ours = jax.tree_util.tree_flatten_with_path(params)[0]
    theirs = jax.tree_util.tree_flatten_with_path(eqx.filter(trained, eqx.is_inexact_array))[0]
    shapes = lambda leaves: {jax.tree_util.keystr(k): tuple(x.shape) for k, x in leaves}
    here, there = shapes(ours), shapes(theirs)
    if here != there:
        name = next(k for k in [*here, *there] if here.get(k) != there.get(k))
        changed = config_changes(source_config, run.config)
        differ = "; ".join(
            f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items() if k.startswith("task.")
        )
        raise ConfigError(
            f"--init-from {source}: its model does not fit this config's: parameter {name} "
            f"has shape {there.get(name, 'none')} there and {here.get(name, 'none')} here"
            + (f" (the task settings that differ: {differ})" if differ else "")
        )
    weights = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(params), [x for _, x in theirs]
    )
    return eqx.combine(weights, static), {"run": str(source), "epoch": epoch}


def _prepare_directory(run: _Run, state: _State, resume: bool, extended: bool) -> None:
    """Process 0 readies the run directory: a new run's is made and gets the initial
    checkpoint; an `extended` finished run loses its summary; either gets the config and
    the metrics rows so far. If process 0 cannot, every process raises its error."""
    directory, path = run.directory, run.directory.path
    problem = None
    if run.writes:
        try:
            if not resume:
                _check_location(path)
            if extended:
                # The summary describes the shorter run; a new one is written at the end
                # (so an interrupted extension is not mistaken for a finished run).
                directory.summary_file.unlink()
            if not resume:
                if directory.is_started:
                    raise FileExistsError(
                        f"{path} already holds a run; resume it (--resume) or choose "
                        "another output directory."
                    )
                path.mkdir(parents=True, exist_ok=True)
                directory.save_checkpoint(
                    state.model, state.opt_state, 0, state.progress, state.coefficient_states
                )
            directory.write_config(run.config)
            directory.write_metrics(state.rows)
        except Exception as e:  # re-raised below, on every process
            problem = e
    raise_on_every_process(problem)


def _announce(run: _Run, state: _State, resume: bool, chosen_by_default: bool) -> None:
    """The status line of the run starting (or resuming) in its directory, after the
    one saying why it is not in the usual one, where a default directory was taken."""
    config, path = run.config, run.directory.path
    if resume:
        logger.info(
            f"resuming {config.method} on {config.task.name} in {path} after epoch "
            f"{state.epoch} of {run.epochs}"
        )
        return
    if chosen_by_default and path != run_dir_name(config):
        logger.info(_taken(RunDirectory(run_dir_name(config)), path))
    logger.info(f"training {config.method} on {config.task.name} in {path}")


def _own_coefficients(task: AbstractTask, epoch: int) -> dict[str, jax.Array]:
    """The task's own loss weights at `epoch`, as the training step takes them."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in task.loss_coefficients(epoch).items()}


def _step_inputs(run: _Run, state: _State, key: jax.Array, epoch: int) -> tuple:
    """The training step's arguments after the batch, on the devices: the step's key,
    the coefficient states, the epoch and the task's own loss weights at `epoch`."""
    epoch_index = jnp.asarray(epoch, jnp.int32)
    return run.parallel.replicate(
        (key, state.coefficient_states, epoch_index, _own_coefficients(run.task, epoch))
    )


def _stop(run: _Run, state: _State, message: str, epoch: int, step: int) -> NoReturn:
    """Stop training at `step` of (0-based) `epoch`: raise `TrainingDiverged` with
    `message`, naming the last good checkpoint."""
    raise TrainingDiverged(
        f"{message} (epoch {epoch + 1}, step {step}). The last good checkpoint "
        f"(after epoch {state.last_checkpoint_epoch}) is in {run.directory.path}."
    )


def _run_step(run: _Run, state: _State, compiled_step, epoch: int, step: int, batch, key):
    """`((model, opt_state, loss, aux), seconds)`: the compiled training step from
    `state` on a host `batch`, waited for. Raises `TrainingDiverged` where a run-time
    check of the step fails."""
    inputs = _step_inputs(run, state, key, epoch)
    # The batch goes to the devices within the timed call, as a one-device call
    # transfers its host batch itself.
    try:
        return _timed(
            lambda: compiled_step(state.model, state.opt_state, run.parallel.shard(batch), *inputs)
        )
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as e:
        # e.g. a non-finite input to the solve; an ahead-of-time compiled call
        # raises equinox's run-time checks as a plain JaxRuntimeError.
        if "EquinoxRuntimeError: " not in str(e) and not isinstance(e, eqx.EquinoxRuntimeError):
            raise
        reason = _runtime_error_reason(e)
        _stop(run, state, f"Training stopped by a run-time check: {reason}", epoch, step)


def _compile(run: _Run, state: _State) -> _Steps:
    """The run's `_Steps`: the training step compiled ahead of time (which gives its
    memory), or taken from an earlier run of this process that runs the same program
    (see `compiled_steps`; `compile_seconds` is then that program's compilation), then
    run once on the first batch, its result discarded (both timed as
    `compile_seconds`); and the evaluation step."""
    first = next(iterate_batches(run.arrays.train, run.batch_size, rng=None, drop_last=True))
    first_args = (
        state.model,
        state.opt_state,
        run.parallel.shard(first),
        *_step_inputs(run, state, run.step_key, state.epoch),
    )

    def build() -> tuple[Callable, int | None, Callable[..., Evaluation], float]:
        logger.info("compiling the training step (the first one takes a while)...")
        start = time.perf_counter()
        train_step = make_train_step(run.task, run.optimizer, run.parallel)
        compiled, memory = compile_step(train_step, *first_args)
        seconds = time.perf_counter() - start
        return compiled, memory, make_evaluate_step(run.task, run.parallel), seconds

    # Everything the optimizer is built from but the run's length and batch size (the
    # batch's shape is an argument's), and the code of the task's loss and evaluation
    # (a method patched or reloaded since is another program).
    optimizer = run.config.optim.model_dump_json(exclude={"epochs", "batch_size"})
    code = (type(run.task).loss, type(run.task).evaluate)
    key = compiled_steps.fingerprint(
        values=run.task, shapes=first_args, extra=(optimizer, code, run.parallel.devices)
    )
    program, reused = compiled_steps.shared(key, build)
    compiled_step, train_step_bytes, evaluate_batch, compile_seconds = program
    if reused:
        logger.info("the training step is compiled already (an earlier run of this process)")
    _, first_seconds = _run_step(run, state, compiled_step, state.epoch, 0, first, run.step_key)
    return _Steps(
        compiled_step, evaluate_batch, compile_seconds + first_seconds, train_step_bytes, reused
    )


def _train_epoch(
    run: _Run, steps: _Steps, state: _State, epoch: int, trackers: list[AbstractTracker]
) -> None:
    """Train (0-based) `epoch`, then update the coefficients, evaluate and log (every
    `train.eval_every` epochs, and after the last) and save a checkpoint (every
    `train.checkpoint_every` epochs, and after the last); `state` ends after the
    epoch."""
    figures = _train_steps(run, steps, state, epoch)
    _update_coefficients(run, state, figures)
    state.epoch = done = epoch + 1
    if done % run.config.train.eval_every == 0 or done == run.epochs:
        _evaluate_epoch(run, steps, state, figures, trackers)
    if done % run.config.train.checkpoint_every == 0 or done == run.epochs:
        run.directory.save_checkpoint(
            state.model,
            state.opt_state,
            done,
            {**state.progress, "train_seconds": state.train_seconds},
            state.coefficient_states,
        )
        state.last_checkpoint_epoch = done


def _train_steps(run: _Run, steps: _Steps, state: _State, epoch: int) -> _EpochFigures:
    """The steps of (0-based) `epoch` over its shuffle of the training set, each
    updating `state`'s model and optimizer state and adding to its training time;
    returns the epoch's figures. Raises `TrainingDiverged` where a solve fails or the
    loss is not finite."""
    config, task, spe = run.config, run.task, run.steps_per_epoch
    rng = np.random.default_rng([config.seed, epoch])
    batches = iterate_batches(run.arrays.train, run.batch_size, rng=rng, drop_last=True)
    bar = tqdm(
        batches,
        total=spe,
        desc=f"epoch {epoch + 1}/{run.epochs}",
        disable=not (config.train.progress and run.writes),
        leave=False,
    )
    values = task.regularization.coefficient_values(
        state.coefficient_states, jnp.asarray(epoch, jnp.int32)
    )
    figures = _EpochFigures({term: float(v) for term, v in values.items()})
    # The budgets answer the measure their constraint is on: the task loss, or the
    # metric (as its negative where higher is better, so that lower is better).
    metric_sign = -1.0 if task.metric.higher_is_better else 1.0
    sums = figures.sums
    for i, batch in enumerate(bar):
        step = epoch * spe + i
        key = jax.random.fold_in(jax.random.fold_in(run.step_key, epoch), i)
        (state.model, state.opt_state, loss, aux), seconds = _run_step(
            run, state, steps.train, epoch, step, batch, key
        )
        state.train_seconds += seconds
        if not bool(aux["successful"]):
            _stop(run, state, _solve_failed(config, step), epoch, step)
        if not math.isfinite(float(loss)):
            message = (
                f"The training loss became {float(loss)}: lower optim.lr or set optim.grad_clip"
            )
            _stop(run, state, message, epoch, step)
        sums["loss"] += float(loss)
        sums["metric"] += float(aux["metric"])
        nfe, nfe_max = _nfe_mean_max(aux["nfe"]) or (float("nan"), float("nan"))
        sums["nfe"] += nfe
        sums["nfe_max"] += nfe_max
        if aux["nfe"] is not None:
            figures.nfes.append(np.asarray(aux["nfe"], np.float32).reshape(-1))
        for count in ("backward_nfe", "backward_vjps"):
            # NaN where a step solves nothing (a flow-matching step without a method).
            solved = aux["nfe"] is not None
            sums[count] += float(np.mean(aux[count])) if solved else float("nan")
        figures.measures.append(
            float(aux["task_loss"])
            if run.budget_measure == "task_loss"
            else metric_sign * float(aux["metric"])
        )
        bar.set_postfix(
            loss=f"{sums['loss'] / (i + 1):.4f}",
            **{task.metric.name[:3]: f"{sums['metric'] / (i + 1):.4f}"},  # pyright: ignore[reportArgumentType]
            nfe=f"{nfe:.0f}",
        )
    bar.close()
    return figures


def _update_coefficients(run: _Run, state: _State, figures: _EpochFigures) -> None:
    """The coefficients' states after an epoch (from its NFE and budget measures; a few
    scalar operations, run eagerly rather than compiled), and the λ it trained with
    appended to the progress record's history."""
    state.coefficient_states = run.task.regularization.update_coefficients(
        state.coefficient_states,
        nfe=np.concatenate(figures.nfes) if figures.nfes else None,
        loss=np.asarray(figures.measures, np.float32),
    )
    history = state.progress.setdefault("coefficients", {})
    for term, value in figures.coefficients.items():
        history.setdefault(term, []).append(value)


def _evaluate_epoch(
    run: _Run,
    steps: _Steps,
    state: _State,
    figures: _EpochFigures,
    trackers: list[AbstractTracker],
) -> None:
    """The metrics row of the epoch `state` has just completed (its training `figures`
    and the test set evaluated), written to metrics.jsonl, logged to the `trackers` and,
    with a progress bar, shown. Raises `TrainingDiverged` where a test solve fails."""
    config, task, spe = run.config, run.task, run.steps_per_epoch
    done = state.epoch
    test_metric, test_nfe, test_nfe_max, ok = _evaluate(
        steps.evaluate, task.evaluation_model(state.model), run.arrays.test, run.eval_batch_size
    )
    if not ok:
        step = done * spe - 1  # the epoch's last
        _stop(run, state, _solve_failed(config, step + 1, "the test set"), done - 1, step)
    sums = figures.sums
    row = {
        "epoch": done,
        "step": done * spe,
        "train_loss": sums["loss"] / spe,
        # None where the training step computes no metric (a flow-matching step).
        f"train_{task.metric.name}": _finite_or_none(sums["metric"] / spe),
        "train_nfe": _finite_or_none(sums["nfe"] / spe),
        "train_nfe_max": _finite_or_none(sums["nfe_max"] / spe),
        "train_backward_nfe": _finite_or_none(sums["backward_nfe"] / spe),
        "train_backward_vjps": _finite_or_none(sums["backward_vjps"] / spe),
        f"test_{task.metric.name}": test_metric,
        "test_nfe": test_nfe,
        "test_nfe_max": test_nfe_max,
        "train_seconds": state.train_seconds,
        **{f"coefficient_{k}": v for k, v in figures.coefficients.items()},
        **{f"coefficient_{k}": float(v) for k, v in _own_coefficients(task, done - 1).items()},
    }
    state.rows.append(row)
    run.directory.write_metrics(state.rows)
    for tracker in trackers:
        tracker.log(row, done)
    if config.train.progress and run.writes:
        tqdm.write(
            f"epoch {done}/{run.epochs}: loss {row['train_loss']:.4f}, test "
            f"{task.metric.name} {test_metric:.4f}, test NFE {test_nfe}",
            file=sys.stderr,
        )


def _training_cost(rows: list[dict]) -> dict:
    """Forward and backward NFE per training step, means over the run's epochs (None
    where not counted)."""
    cost = {}
    for name in ("train_nfe", "train_backward_nfe", "train_backward_vjps"):
        values = [row[name] for row in rows if row.get(name) is not None]
        cost[name] = float(np.mean(values)) if values and len(values) == len(rows) else None
    return cost


def _summarize(run: _Run, steps: _Steps, state: _State) -> dict:
    """The finished run's summary: the final model evaluated on the training and test
    sets (with its prediction time), the training and compilation costs, the
    coefficients' history and any changes made on resume; written to summary.json
    (with the task's figures, drawn on a single host) and returned."""
    config, task, model = run.config, run.task, state.model
    eval_model = task.evaluation_model(model)
    train_metric, _, _, _ = _evaluate(
        steps.evaluate, eval_model, run.arrays.train, run.eval_batch_size
    )
    test = evaluate_test_set(
        task,
        model,
        run.arrays.test,
        run.eval_batch_size,
        config.train.predict_repeats,
        steps.evaluate,
    )
    solver = config.solver
    summary = {
        "method": config.method,
        "task": config.task.name,
        "data": config.task.data.name,
        **_data_source(run.arrays),
        "seed": config.seed,
        "metric": task.metric.name,
        "train_metric": train_metric,
        "test_metric": test["test_metric"],
        "test_nfe": test["test_nfe"],
        "test_nfe_max": test["test_nfe_max"],
        **_training_cost(state.rows),
        "train_seconds": state.train_seconds,
        "compile_seconds": steps.compile_seconds,
        "compiled_step_reused": steps.reused,
        "train_step_bytes": steps.train_step_bytes,
        "predict_seconds": test["predict_seconds"],
        "predict_batch_size": test["predict_batch_size"],
        "num_params": count_parameters(model),
        "epochs": run.epochs,
        "steps": run.epochs * run.steps_per_epoch,
        "batch_size": run.batch_size,
        "solver": {"name": solver.name, "rtol": solver.rtol, "atol": solver.atol},
        "devices": run.parallel.num_devices,
        "device_kind": run.parallel.devices[0].device_kind,
        "processes": jax.process_count(),
    }
    history = state.progress.get("coefficients", {})
    if history:
        # λ of each term: the last epoch's, the mean over the run, and every epoch's.
        summary["coefficients"] = {
            term: {"final": values[-1], "mean": float(np.mean(values)), "by_epoch": values}
            for term, values in history.items()
        }
    if state.progress.get("init_from"):
        summary["init_from"] = state.progress["init_from"]
    if state.progress.get("resumed_changes"):
        summary["resumed_changes"] = state.progress["resumed_changes"]
    summary.update(task.summary_figures(model, run.arrays, test["test_metric"]))
    if run.writes and jax.process_count() == 1:  # drawing needs the whole model on this host
        figures = task.write_figures(model, run.arrays, run.directory.path)
        summary["figures"] = [f.name for f in figures]
    run.directory.write_summary(summary)
    return summary


def _data_source(arrays: Arrays) -> dict[str, Any]:
    """Where the data came from and the sizes of the split, where the loader says."""
    if not arrays.source:
        return {}
    split = {"train": len(arrays.train[0]), "test": len(arrays.test[0])}
    return {"data_source": arrays.source, "data_split": split}


#: Settings that `--resume` may change: how long the run goes on, how it reports, and
#: on how many devices it goes on (recorded in the summary's `resumed_changes`).
RESUMABLE_CHANGES = (
    "optim.epochs",
    "train.progress",
    "output_dir",
    "parallel.devices",
    "parallel.distributed",
    "tracking",
)
RECORDED_CHANGES = ("optim.epochs", "parallel.devices", "parallel.distributed")


def _jsonable(changes: dict) -> dict:
    return {key: [old, new] for key, (old, new) in changes.items()}


def _resumable_changes(run: RunDirectory, config: ExperimentConfig) -> dict:
    """The settings `config` changes against the run's own config.yaml; raises
    `ConfigError` for any that would change what is trained."""
    saved = run.read_config()
    changes = config_changes(saved, config)
    refused = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ConfigError(
            f"--resume {run.path} continues that run exactly as configured in its "
            f"{run.CONFIG}, but these settings differ: {listed}. Train them as a new run "
            "(another --run-dir); on resume only optim.epochs (how long the run goes on), "
            "parallel.devices/distributed, tracking, train.progress and output_dir may "
            "change."
        )
    if "optim.epochs" in changes:
        # An exponential anneal runs from start to end over optim.epochs: another length
        # would change the coefficients of the epochs still to come.
        # So does a loss budget's warm-up of half the epochs.
        _, read = saved.regularization.build_reading(saved.method, epochs=saved.optim.epochs)
        for field in sorted(set(read.values())):
            section = getattr(saved.regularization, field)
            if isinstance(section, ExponentialSchedule):
                why = "anneals exponentially over"
            elif isinstance(section, LossBudgetCoefficient) and section.warmup is None:
                why = "warms up for half of"
            else:
                continue
            raise ConfigError(
                f"--resume {run.path}: optim.epochs cannot change because "
                f"regularization.{field} {why} the run's {saved.optim.epochs} epochs; "
                "train the longer run as a new run."
            )
    return {k: v for k, v in changes.items() if k in RECORDED_CHANGES}


def load_run(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """`(model, config, epoch)` of the last checkpoint in a run directory, e.g. for
    inference:

        model, config, _ = nderegs.train.load_run("runs/digits-error-seed0")
        logits, h = model.for_evaluation()(x_test)     # h.nfe: the solve's cost

    `overrides` (``"task.data.path=..."``) are applied to the run's config.yaml.
    """
    model, config, epoch, _, _ = restore_run(run_dir, overrides)
    return model, config, epoch


def restore_run(run_dir: str | Path, overrides=()):
    """`(model, config, epoch, task, arrays)` of a run directory's last checkpoint."""
    run = RunDirectory(run_dir)
    config = run.read_config(overrides)
    task, arrays = config.build(references=False)  # no training: no budget reference
    model = task.init_model(jax.random.key(config.seed))
    opt_state = config.optim.build().init(eqx.filter(model, eqx.is_inexact_array))
    states = task.regularization.init_coefficients()
    model, _, epoch, _, _ = run.load_checkpoint(model, opt_state, states)
    return model, config, epoch, task, arrays


#: What `nderegs eval` may change: the data (e.g. a path), how it is batched/timed, and
#: the devices it runs on.
EVAL_OVERRIDES = ("task.data.", "train.eval_batch_size", "train.predict_repeats", "parallel.")


def evaluate_run(run_dir: str | Path, overrides=(), *, write: bool = True) -> dict:
    """Evaluate a run's last checkpoint on its test set (or, with data overrides such as
    ``"task.data.path=..."``, on other data): test metric, NFE and prediction time,
    computed exactly as at the end of training; written to `eval.json` in the run
    directory when `write`."""
    refused = [o for o in overrides if not o.split("=", 1)[0].strip().startswith(EVAL_OVERRIDES)]
    if refused:
        raise ConfigError(
            f"nderegs eval changes only the data and its batching; not {', '.join(refused)}. "
            "Accepted: task.data.<key>=..., train.eval_batch_size=..., "
            "train.predict_repeats=..., parallel.<key>=..."
        )
    config = RunDirectory(run_dir).read_config(overrides)
    parallel = config.parallel.build()
    model, config, epoch, task, arrays = restore_run(run_dir, overrides)
    n_train = arrays.train[0].shape[0]
    batch_size = config.train.eval_batch_size or min(config.optim.batch_size, n_train)
    try:
        parallel.check_batch_size(batch_size, f"the evaluation batch size {batch_size}")
    except ValueError as e:
        raise ConfigError(f"{e} (set train.eval_batch_size=...)") from None
    test = evaluate_test_set(
        task,
        parallel.replicate(model),
        arrays.test,
        batch_size,
        config.train.predict_repeats,
        parallel=parallel,
    )
    figures = {
        "run_dir": str(run_dir),
        "epoch": epoch,
        "method": config.method,
        "data": config.task.data.name,
        "overrides": list(overrides),
        "metric": task.metric.name,
        "num_test": int(arrays.test[0].shape[0]),
        **test,
    }
    if write and jax.process_index() == 0:
        RunDirectory(run_dir).write_eval(figures)
    return figures
