"""Where a training step's time goes: forward solve, backward pass, optimiser update.

For each method on the digits classifier (`configs/digits.yaml`, or `--config`), three
programs of the same task, model and batches are compiled: the loss alone (the forward
solve and the loss), its value and gradient, and the whole training step of
`nderegs train` (value and gradient, the backward-pass count, the optax update). Timed
round-robin over programs and methods, so that drifts in machine load hit all alike; the
fastest of the repeats of each is kept (noise only ever adds time). Then

    forward = t(loss),  backward = t(value_and_grad) − t(loss),
    update = t(step) − t(value_and_grad),

each also as a fraction of the step. The split is one of separately compiled programs,
not of one trace: XLA may fuse the step's parts differently, so the parts can differ
from a profiler's split by a little, and a part near zero can come out slightly negative.
The table also gives the forward and backward NFE of the step and, per NFE, the forward
and backward time. Every method starts from the same initial model, so the NFE are
(nearly) equal and the table shows what each method's own terms cost per step, not the
NFE a trained model saves (for that, the comparison tables' forward and backward NFE
columns). Prints a Markdown table whose header names the command.

    python benchmarks/step_breakdown.py [--repeats 20] [--methods vanilla,error,...] [overrides]
"""

import argparse
import platform
import shlex
import sys
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
    "steer",
    "rnode",
    "taynode",
]


def _programs(config_path, overrides, method):
    """(name -> (compiled function, arguments)) of one method's three programs."""
    config = load_config(config_path, [*overrides, f"method={method}"])
    task, arrays = config.build()
    model = task.init_model(jax.random.key(config.seed))
    optimizer = config.optim.build()
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    states = task.regularization.init_coefficients()
    epoch = jnp.asarray(0, jnp.int32)
    own = {k: jnp.asarray(v) for k, v in task.loss_coefficients(0).items()}
    coefficients = {**task.regularization.coefficient_values(states, epoch), **own}
    batch = next(iter(iterate_batches(arrays.train, config.optim.batch_size, rng=None)))
    key = jax.random.key(0)
    loss = eqx.filter_jit(lambda m, b, k, c: task.loss(m, b, k, c)[0])
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(task.loss, has_aux=True))
    step = make_train_step(task, optimizer)
    return config, {
        "loss": (loss, (model, batch, key, coefficients)),
        "value_and_grad": (value_and_grad, (model, batch, key, coefficients)),
        "step": (step, (model, opt_state, batch, key, states, epoch, own)),
    }


def _seconds(fn, args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config (default: digits)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("overrides", nargs="*")
    opts = parser.parse_args(argv)

    methods = opts.methods.split(",")
    programs, config = {}, None
    for method in methods:
        config, programs[method] = _programs(opts.config, opts.overrides, method)
    counts = {}
    for method in methods:  # compile, untimed; the step's counts
        for name, (fn, args) in programs[method].items():
            _, out = _seconds(fn, args)
            if name == "step":
                aux = out[3]
                counts[method] = (float(aux["nfe"]), float(aux["backward_nfe"]))
    fastest = {(m, n): float("inf") for m in methods for n in programs[m]}
    for _ in range(opts.repeats):
        for method in methods:
            for name, (fn, args) in programs[method].items():
                seconds, _ = _seconds(fn, args)
                fastest[method, name] = min(fastest[method, name], seconds)

    assert config is not None
    command = "python benchmarks/step_breakdown.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"# Training-step time by part ({jax.default_backend()})\n")
    print(f"Command: `{command.strip()}`  ")
    print(
        f"Machine: {jax.devices()[0].device_kind}, {platform.platform()}; JAX {jax.__version__}  "
    )
    print(
        f"Task: {opts.config or 'configs/digits.yaml'}, batch {config.optim.batch_size}, "
        f"{config.solver.name} rtol={config.solver.rtol:g} atol={config.solver.atol:g}, "
        f"adjoint {config.solver.adjoint.name}; the initial model; fastest of {opts.repeats} "
        "round-robin repeats\n"
    )
    print(
        "| method | step (ms) | forward (ms) | backward (ms) | update (ms) | forward % | "
        "backward % | forward NFE | backward NFE | forward µs/NFE | backward µs/NFE |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for method in methods:
        loss, grad, step = (fastest[method, n] for n in ("loss", "value_and_grad", "step"))
        forward, backward, update = loss, grad - loss, step - grad
        nfe, backward_nfe = counts[method]
        print(
            f"| `{method}` | {step * 1e3:.2f} | {forward * 1e3:.2f} | {backward * 1e3:.2f} | "
            f"{update * 1e3:.2f} | {100 * forward / step:.0f} | {100 * backward / step:.0f} | "
            f"{nfe:.0f} | {backward_nfe:.0f} | {1e6 * forward / nfe:.1f} | "
            f"{1e6 * backward / backward_nfe:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
