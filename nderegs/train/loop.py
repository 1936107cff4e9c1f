"""The training loop: one `eqx.filter_jit` step (task loss + regularizers, optax
update), evaluation, checkpoints, metrics and the run summary.

Timing follows the papers: `train_seconds` sums the wall time of the gradient +
update steps (each waited for), without compilation; `compile_seconds` is the first
call of the step (compilation plus one step on the first batch, whose result is
discarded); `predict_seconds` is the median over repeats of one compiled forward
pass on a test batch.

Memory: `train_step_bytes` is the memory of one compiled training step as XLA plans
it (`memory_analysis()`: arguments + outputs + temporaries − aliased buffers), an upper
bound of its peak. It is a property of the program, so it is noise-free, and it is
where an adjoint's memory shows (RecursiveCheckpointAdjoint stores checkpoints,
BacksolveAdjoint does not).
"""

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
from ..data import iterate_batches, num_batches
from ..parallel import check_same_on_every_process, DataParallel, raise_on_every_process
from ..tasks import AbstractTask, count_parameters, Evaluation
from ..tracking import AbstractTracker, make_trackers
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
    `DataParallel.mean_over_shards`)."""
    value_and_grad = eqx.filter_value_and_grad(task.loss, has_aux=True)
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
) -> dict | None:
    """Train `config`; write `config.yaml`, `metrics.jsonl`, the checkpoint and
    `summary.json` under the run directory and return the summary.

    `resume=True` continues the run in `run_dir` from its last checkpoint with the
    same numbers an uninterrupted run gives (per-epoch shuffles and per-step keys are
    functions of the seed, epoch and step). `stop_after_epoch` stops early (as an
    interruption would) and returns None.
    """
    trackers: list[AbstractTracker] = []
    try:
        return _train(config, run_dir, resume, stop_after_epoch, trackers)
    finally:  # also when training stops with an error or an interrupt
        for tracker in trackers:
            tracker.close()


def _train(
    config: ExperimentConfig,
    run_dir: str | Path | None,
    resume: bool,
    stop_after_epoch: int | None,
    trackers: list[AbstractTracker],
) -> dict | None:
    if resume and run_dir is None:
        raise ValueError("resume=True needs the run directory to continue.")
    # Before any JAX work: a multi-host run initialises jax.distributed here.
    parallel = config.parallel.build()
    writes = jax.process_index() == 0  # one process writes the run directory
    try:
        check_same_on_every_process(yaml.safe_dump(config_to_dict(config)), "configs")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    chosen_by_default = run_dir is None
    run = RunDirectory(run_dir if run_dir is not None else default_run_dir(config), writes=writes)
    run_dir = run.path
    resumed_changes = _resumable_changes(run, config) if resume else {}
    extended = resume and run.is_finished
    if extended and "optim.epochs" not in resumed_changes:
        logger.info(
            f"{run_dir} is finished (optim.epochs={config.optim.epochs}): nothing left to "
            "train (optim.epochs=N extends it); its summary follows."
        )
        return run.read_summary()
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
    steps_per_epoch = num_batches(n_train, batch_size, drop_last=True)
    epochs = config.optim.epochs

    model = task.init_model(jax.random.key(config.seed))
    optimizer = config.optim.build()
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    method = task.regularization
    coefficient_states = method.init_coefficients()
    step_key = jax.random.key(config.seed + 1)

    if resume:
        model, opt_state, start_epoch, progress, coefficient_states = run.load_checkpoint(
            model, opt_state, coefficient_states
        )
        if start_epoch > epochs:
            raise ConfigError(
                f"--resume {run_dir}: optim.epochs={epochs} is below the {start_epoch} "
                "epochs the run has already trained."
            )
        rows = [r for r in run.read_metrics() if r["epoch"] <= start_epoch]
        if resumed_changes:
            history = progress.get("resumed_changes", [])
            progress = {**progress, "resumed_changes": [*history, _jsonable(resumed_changes)]}
    else:
        start_epoch, rows = 0, []
        progress: dict[str, Any] = {"train_seconds": 0.0}
    # Process 0 prepares the run directory; if it cannot, every process stops.
    problem = None
    if writes:
        try:
            if not resume:
                _check_location(run_dir)
            if extended:
                # The summary describes the shorter run; a new one is written at the end
                # (so an interrupted extension is not mistaken for a finished run).
                run.summary_file.unlink()
            if not resume:
                if run.is_started:
                    raise FileExistsError(
                        f"{run_dir} already holds a run; resume it (--resume) or choose "
                        "another output directory."
                    )
                run_dir.mkdir(parents=True, exist_ok=True)
                run.save_checkpoint(model, opt_state, 0, progress, coefficient_states)
            run.write_config(config)
            run.write_metrics(rows)
        except Exception as e:  # re-raised below, on every process
            problem = e
    raise_on_every_process(problem)
    if resume:
        logger.info(
            f"resuming {config.method} on {config.task.name} in {run_dir} after epoch "
            f"{start_epoch} of {epochs}"
        )
    else:
        if chosen_by_default and run_dir != run_dir_name(config):
            logger.info(_taken(RunDirectory(run_dir_name(config)), run_dir))
        logger.info(f"training {config.method} on {config.task.name} in {run_dir}")
    model, opt_state = parallel.replicate((model, opt_state))

    train_step = make_train_step(task, optimizer, parallel)
    evaluate_batch = make_evaluate_step(task, parallel)

    def own_coefficients(epoch: int) -> dict:
        return {k: jnp.asarray(v, jnp.float32) for k, v in task.loss_coefficients(epoch).items()}

    def step_inputs(key, epoch: int):
        epoch_index = jnp.asarray(epoch, jnp.int32)
        return parallel.replicate((key, coefficient_states, epoch_index, own_coefficients(epoch)))

    # A few scalar operations once per epoch: run eagerly rather than compiled.
    update_coefficients = method.update_coefficients
    # The budgets answer the measure their constraint is on: the task loss, or the
    # metric (as its negative where higher is better, so that lower is better).
    measure = config.loss_budget_measure()
    metric_sign = -1.0 if task.metric.higher_is_better else 1.0

    last_checkpoint_epoch = start_epoch
    # Mirrors of metrics.jsonl (each row flushed as it is logged; closed by `train`).
    if writes:
        trackers += make_trackers(config.tracking, run_dir, config_to_dict(config), start_epoch)

    def stop(message: str, epoch: int, step: int) -> NoReturn:
        raise TrainingDiverged(
            f"{message} (epoch {epoch + 1}, step {step}). The last good checkpoint "
            f"(after epoch {last_checkpoint_epoch}) is in {run_dir}."
        )

    # Compile ahead of time (which gives the step's memory), then run once on the
    # first batch, discarding the result.
    first = next(iterate_batches(arrays.train, batch_size, rng=None, drop_last=True))
    first_args = (model, opt_state, parallel.shard(first), *step_inputs(step_key, start_epoch))
    logger.info("compiling the training step (the first one takes a while)...")
    start = time.perf_counter()
    compiled_step, train_step_bytes = compile_step(train_step, *first_args)
    compile_seconds = time.perf_counter() - start

    def run_step(epoch, step, model, opt_state, batch, *args):
        # The batch goes to the devices within the timed call, as a one-device call
        # transfers its host batch itself.
        try:
            return _timed(lambda: compiled_step(model, opt_state, parallel.shard(batch), *args))
        except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as e:
            # e.g. a non-finite input to the solve; an ahead-of-time compiled call
            # raises equinox's run-time checks as a plain JaxRuntimeError.
            if "EquinoxRuntimeError: " not in str(e) and not isinstance(e, eqx.EquinoxRuntimeError):
                raise
            reason = _runtime_error_reason(e)
            stop(f"Training stopped by a run-time check: {reason}", epoch, step)

    _, first_seconds = run_step(
        start_epoch, 0, model, opt_state, first, *step_inputs(step_key, start_epoch)
    )
    compile_seconds += first_seconds
    train_seconds = float(progress.get("train_seconds", 0.0))
    solver = config.solver

    for epoch in range(start_epoch, epochs):
        rng = np.random.default_rng([config.seed, epoch])
        batches = iterate_batches(arrays.train, batch_size, rng=rng, drop_last=True)
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not (config.train.progress and writes),
            leave=False,
        )
        sums = {"loss": 0.0, "metric": 0.0, "nfe": 0.0, "nfe_max": 0.0}
        # What the coefficients' update reads: every solve's NFE, and the measure.
        epoch_nfes: list[np.ndarray] = []
        epoch_measures: list[float] = []
        epoch_lambdas = {
            term: float(v)
            for term, v in method.coefficient_values(
                coefficient_states, jnp.asarray(epoch, jnp.int32)
            ).items()
        }
        for i, batch in enumerate(bar):
            step = epoch * steps_per_epoch + i
            key = jax.random.fold_in(jax.random.fold_in(step_key, epoch), i)
            (model, opt_state, loss, aux), seconds = run_step(
                epoch, step, model, opt_state, batch, *step_inputs(key, epoch)
            )
            train_seconds += seconds
            if not bool(aux["successful"]):
                stop(_solve_failed(config, step), epoch, step)
            if not math.isfinite(float(loss)):
                stop(
                    f"The training loss became {float(loss)}: lower optim.lr or set "
                    "optim.grad_clip",
                    epoch,
                    step,
                )
            sums["loss"] += float(loss)
            sums["metric"] += float(aux["metric"])
            nfe, nfe_max = _nfe_mean_max(aux["nfe"]) or (float("nan"), float("nan"))
            sums["nfe"] += nfe
            sums["nfe_max"] += nfe_max
            if aux["nfe"] is not None:
                epoch_nfes.append(np.asarray(aux["nfe"], np.float32).reshape(-1))
            epoch_measures.append(
                float(aux["task_loss"])
                if measure == "task_loss"
                else metric_sign * float(aux["metric"])
            )
            bar.set_postfix(
                loss=f"{sums['loss'] / (i + 1):.4f}",
                **{task.metric.name[:3]: f"{sums['metric'] / (i + 1):.4f}"},  # pyright: ignore[reportArgumentType]
                nfe=f"{nfe:.0f}",
            )
        bar.close()

        coefficient_states = update_coefficients(
            coefficient_states,
            nfe=np.concatenate(epoch_nfes) if epoch_nfes else None,
            loss=np.asarray(epoch_measures, np.float32),
        )
        history = progress.setdefault("coefficients", {})
        for term, value in epoch_lambdas.items():
            history.setdefault(term, []).append(value)
        done = epoch + 1
        if done % config.train.eval_every == 0 or done == epochs:
            test_metric, test_nfe, test_nfe_max, ok = _evaluate(
                evaluate_batch, task.evaluation_model(model), arrays.test, eval_batch_size
            )
            if not ok:
                stop(_solve_failed(config, step + 1, "the test set"), epoch, step)
            row = {
                "epoch": done,
                "step": done * steps_per_epoch,
                "train_loss": sums["loss"] / steps_per_epoch,
                f"train_{task.metric.name}": sums["metric"] / steps_per_epoch,
                "train_nfe": sums["nfe"] / steps_per_epoch,
                "train_nfe_max": sums["nfe_max"] / steps_per_epoch,
                f"test_{task.metric.name}": test_metric,
                "test_nfe": test_nfe,
                "test_nfe_max": test_nfe_max,
                "train_seconds": train_seconds,
                **{f"coefficient_{k}": v for k, v in epoch_lambdas.items()},
                **{f"coefficient_{k}": float(v) for k, v in own_coefficients(epoch).items()},
            }
            rows.append(row)
            run.write_metrics(rows)
            for tracker in trackers:
                tracker.log(row, done)
            if config.train.progress and writes:
                tqdm.write(
                    f"epoch {done}/{epochs}: loss {row['train_loss']:.4f}, test "
                    f"{task.metric.name} {test_metric:.4f}, test NFE {test_nfe}",
                    file=sys.stderr,
                )
        if done % config.train.checkpoint_every == 0 or done == epochs:
            run.save_checkpoint(
                model,
                opt_state,
                done,
                {**progress, "train_seconds": train_seconds},
                coefficient_states,
            )
            last_checkpoint_epoch = done
        if stop_after_epoch is not None and done >= stop_after_epoch and done < epochs:
            return None

    eval_model = task.evaluation_model(model)
    train_metric, _, _, _ = _evaluate(evaluate_batch, eval_model, arrays.train, eval_batch_size)
    test = evaluate_test_set(
        task, model, arrays.test, eval_batch_size, config.train.predict_repeats, evaluate_batch
    )
    summary = {
        "method": config.method,
        "task": config.task.name,
        "data": config.task.data.name,
        "seed": config.seed,
        "metric": task.metric.name,
        "train_metric": train_metric,
        "test_metric": test["test_metric"],
        "test_nfe": test["test_nfe"],
        "test_nfe_max": test["test_nfe_max"],
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "train_step_bytes": train_step_bytes,
        "predict_seconds": test["predict_seconds"],
        "predict_batch_size": test["predict_batch_size"],
        "num_params": count_parameters(model),
        "epochs": epochs,
        "steps": epochs * steps_per_epoch,
        "batch_size": batch_size,
        "solver": {"name": solver.name, "rtol": solver.rtol, "atol": solver.atol},
        "devices": parallel.num_devices,
        "device_kind": parallel.devices[0].device_kind,
        "processes": jax.process_count(),
    }
    history = progress.get("coefficients", {})
    if history:
        # λ of each term: the last epoch's, the mean over the run, and every epoch's.
        summary["coefficients"] = {
            term: {"final": values[-1], "mean": float(np.mean(values)), "by_epoch": values}
            for term, values in history.items()
        }
    if progress.get("resumed_changes"):
        summary["resumed_changes"] = progress["resumed_changes"]
    if writes and jax.process_count() == 1:  # drawing needs the whole model on this host
        figures = task.write_figures(model, arrays, run.path)
        summary["figures"] = [f.name for f in figures]
    run.write_summary(summary)
    return summary


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
            if section.kind == "exponential":
                why = "anneals exponentially over"
            elif section.kind == "loss_budget" and section.warmup is None:
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
