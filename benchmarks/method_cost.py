"""Training-step cost of each regularization method relative to vanilla, side by side.

The digits classifier of `configs/digits.yaml` at one tolerance, the same initial
model and the same batches for every method; the compiled training steps (gradient +
update) are timed interleaved, round-robin over methods, so machine-load drifts hit
all of them alike. Prints the median step time, its ratio to vanilla and the NFE of
the forward solve in the step.

    python benchmarks/method_cost.py [--repeats 30] [key=value config overrides]
"""

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from nderegs.config import load_config
from nderegs.data import iterate_batches
from nderegs.train import make_train_step

METHODS = [
    "vanilla",
    "error",
    "stiffness",
    "error+stiffness",
    "local-error",
    "local-error-biased",
    "local-stiffness",
    "steer",
    "steer+error",
    "rnode",
    "taynode",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config (default: digits)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", type=int, default=4, help="distinct batches cycled")
    parser.add_argument("overrides", nargs="*")
    opts = parser.parse_args(argv)

    steps = {}
    for method in opts.methods.split(","):
        config = load_config(opts.config, [*opts.overrides, f"method={method}"])
        task, arrays = config.build()
        model = task.init_model(jax.random.key(config.seed))
        optimizer = config.optim.build()
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        # The config's coefficients at epoch 0 (a step's cost does not depend on λ).
        own = {k: jnp.asarray(v) for k, v in task.loss_coefficients(0).items()}
        coefficients = (task.regularization.init_coefficients(), jnp.asarray(0, jnp.int32), own)
        steps[method] = (make_train_step(task, optimizer), model, opt_state, coefficients)

    batches = list(
        iterate_batches(arrays.train, config.optim.batch_size, rng=None, drop_last=True)
    )[: opts.batches]
    key = jax.random.key(0)
    times = {m: [] for m in steps}
    nfes = {m: [] for m in steps}
    compile_seconds = {}
    for m, (step, model, opt_state, coefficients) in steps.items():
        start = time.perf_counter()
        jax.block_until_ready(step(model, opt_state, batches[0], key, *coefficients))
        compile_seconds[m] = time.perf_counter() - start
    for r in range(opts.repeats):
        batch = batches[r % len(batches)]
        for m, (step, model, opt_state, coefficients) in steps.items():
            start = time.perf_counter()
            out = jax.block_until_ready(
                step(model, opt_state, batch, jax.random.fold_in(key, r), *coefficients)
            )
            times[m].append(time.perf_counter() - start)
            nfes[m].append(float(out[3]["nfe"]))

    print(
        f"backend {jax.default_backend()}; config {opts.config or 'digits (default)'} "
        f"{' '.join(opts.overrides)}; batch {config.optim.batch_size}, "
        f"rtol={config.solver.rtol:g} atol={config.solver.atol:g}; median of "
        f"{opts.repeats} interleaved steps (same initial model and batches)"
    )
    base = statistics.median(times["vanilla"]) if "vanilla" in times else None
    print(f"{'method':<20} {'step ms':>9} {'x vanilla':>10} {'NFE':>6} {'compile s':>10}")
    for m in steps:
        med = statistics.median(times[m])
        ratio = f"{med / base:10.2f}" if base else f"{'n/a':>10}"
        print(
            f"{m:<20} {med * 1e3:9.2f} {ratio} {statistics.mean(nfes[m]):6.1f} "
            f"{compile_seconds[m]:10.2f}"
        )


if __name__ == "__main__":
    main()
