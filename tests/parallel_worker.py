"""Run in a subprocess by test_parallel.py, with forced CPU devices (and, for the
multi-process test, jax.distributed's environment variables), so the test suite itself
keeps one device.

    python tests/parallel_worker.py OUT.json RUNS    one training step (float64) and, in a
                                                     single process, short runs on 1 and on
                                                     all devices under RUNS
"""

import json
from pathlib import Path
import sys

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from tiny import TINY  # noqa: E402

from nderegs.config import ConfigError, load_config  # noqa: E402
from nderegs.data import iterate_batches  # noqa: E402
from nderegs.parallel import DataParallel, initialize_distributed, ProcessStopped  # noqa: E402
from nderegs.train import train  # noqa: E402
from nderegs.train.loop import make_evaluate_step, make_train_step  # noqa: E402

#: A small digits step with the global error regularizer (gradients through the
#: solver) and STEER (a random end time: a key per device) at a tight tolerance. Plain
#: SGD: the updated weights are the weights minus lr times the gradient, so comparing
#: them compares the gradients (Adam's first step is about lr·sign(g)).
STEP = [
    "optim.name=sgd",
    "optim.momentum=0",
    "optim.lr=0.5",
    "task.data.subset=256",
    "optim.batch_size=64",
    "task.model.hidden_size=8",
    "task.model.vf_width=8",
    "solver.rtol=1e-7",
    "solver.atol=1e-7",
    "method=error+steer",
    "regularization.error.start=0.1",
]


def _leaves(tree) -> list[float]:
    return [float(v) for x in jax.tree_util.tree_leaves(tree) for v in np.ravel(x)]


def one_step(out: str, run_root: str) -> None:
    initialize_distributed(False)  # from the environment, when set
    config = load_config("configs/digits.yaml", STEP)
    task, arrays = config.build()
    model = task.init_model(jax.random.key(0))
    batch = next(iterate_batches(arrays.train, config.optim.batch_size, rng=None, drop_last=True))
    batch = (batch[0].astype(np.float64), batch[1])
    key = jax.random.key(7)
    coefficients = {"error": jnp.asarray(0.1)}
    parallel = DataParallel(jax.devices())
    n = parallel.num_devices

    placed_model = parallel.replicate(model)
    inputs = (parallel.shard(batch), *parallel.replicate((key, coefficients)))
    optimizer = config.optim.build()
    opt_state = parallel.replicate(optimizer.init(eqx.filter(model, eqx.is_inexact_array)))
    step = make_train_step(task, optimizer, parallel)
    step_inputs = parallel.replicate(
        (task.regularization.init_coefficients(), jnp.asarray(0, jnp.int32), {})
    )
    new_model, _, loss, aux = step(placed_model, opt_state, inputs[0], inputs[1], *step_inputs)
    updated = eqx.filter(new_model, eqx.is_inexact_array)

    result = {
        "devices": n,
        "processes": jax.process_count(),
        "loss": float(loss),
        "nfe": [int(v) for v in np.asarray(aux["nfe"])],
        "updated": _leaves(updated),
        "dtype": str(jax.tree_util.tree_leaves(updated)[0].dtype),
    }
    # A batch that does not split over the devices is evaluated whole, as on one device.
    ragged = tuple(x[: n + 2] for x in batch)
    evaluate = make_evaluate_step(task, parallel)
    evaluation = evaluate(placed_model, ragged)
    result["ragged"] = [
        float(evaluation.metric_sum),
        float(evaluation.count),
        int(np.asarray(evaluation.nfe)),
    ]
    # Training through train(): two epochs on every device.
    run_config = load_config("configs/digits.yaml", [*TRAIN, "parallel.devices=all"])
    train(run_config, run_dir=f"{out}.run")
    if jax.process_index() == 0:
        rows = Path(f"{out}.run", "metrics.jsonl").read_text().splitlines()
        result["metrics"] = [json.loads(r) for r in rows]
    # Again into the same directory: process 0 refuses, and every process stops.
    try:
        train(run_config, run_dir=f"{out}.run")
        outcome = "trained"
    except (FileExistsError, ProcessStopped) as e:
        outcome = type(e).__name__
    Path(f"{out}.again{jax.process_index()}").write_text(outcome)
    if jax.process_count() == 1:
        single = eqx.filter_jit(task.evaluate)(model, ragged)
        result["ragged_reference"] = [
            float(single.metric_sum),
            float(single.count),
            int(np.asarray(single.nfe)),
        ]
        # Independently: each shard's own one-device solve and gradient, then their mean.
        value_and_grad = eqx.filter_value_and_grad(task.loss, has_aux=True)
        size = batch[0].shape[0] // n
        shard_results = [
            eqx.filter_jit(value_and_grad)(
                model,
                tuple(x[i * size : (i + 1) * size] for x in batch),
                jax.random.fold_in(key, i),
                coefficients,
            )
            for i in range(n)
        ]
        mean_grads = jax.tree_util.tree_map(lambda *g: sum(g) / n, *[g for _, g in shard_results])
        updates, _ = optimizer.update(
            mean_grads,
            optimizer.init(eqx.filter(model, eqx.is_inexact_array)),
            eqx.filter(model, eqx.is_inexact_array),
        )
        result["reference"] = {
            "loss": float(np.mean([float(loss) for (loss, _), _ in shard_results])),
            "nfe": [int(aux["nfe"]) for (_, aux), _ in shard_results],
            "initial": _leaves(eqx.filter(model, eqx.is_inexact_array)),
            "updated": _leaves(eqx.filter(eqx.apply_updates(model, updates), eqx.is_inexact_array)),
        }
        # In the same process (its start-up and compilations shared): short runs on one
        # and on every device.
        result["short_training"] = short_training(run_root)
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump(result, f)


#: Two short epochs through `train` (float32, as `nderegs train` runs), the error
#: coefficient set by an NFE budget (its state updated from every device's solves).
TRAIN = [
    *TINY,
    "optim.batch_size=64",
    "optim.epochs=2",
    "train.predict_repeats=1",
    "method=error",
    "regularization.error={kind: nfe_budget, target: 10}",
]


def short_training(run_root: str) -> dict:
    overrides = [
        "task.data.subset=512",
        "task.data.test_fraction=0.1424",  # 256 test digits: evaluation batches of 64 only
        "optim.batch_size=64",
        "optim.epochs=4",
        "task.model.hidden_size=16",
        "task.model.vf_width=16",
        "solver.rtol=1e-4",
        "solver.atol=1e-4",
        "train.progress=false",
        "train.predict_repeats=1",
    ]
    summaries: dict = {}
    try:
        more = ["optim.batch_size=66", "parallel.devices=all"]
        train(load_config("configs/digits.yaml", [*overrides, *more]), run_dir=f"{run_root}/x")
    except ConfigError as e:
        summaries["indivisible_batch_error"] = str(e)
    for devices in ("1", "all"):
        config = load_config("configs/digits.yaml", [*overrides, f"parallel.devices={devices}"])
        summaries[devices] = train(config, run_dir=f"{run_root}/devices-{devices}")
    # Started on one device, resumed on all of them.
    first = load_config("configs/digits.yaml", [*overrides, "optim.epochs=2"])
    train(first, run_dir=f"{run_root}/resumed", stop_after_epoch=1)
    more = load_config(
        "configs/digits.yaml", [*overrides, "optim.epochs=2", "parallel.devices=all"]
    )
    summaries["resumed"] = train(more, run_dir=f"{run_root}/resumed", resume=True)
    return summaries


if __name__ == "__main__":
    one_step(sys.argv[1], sys.argv[2])
