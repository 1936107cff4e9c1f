"""Overhead of `nderegs.solve` over plain `diffrax.diffeqsolve`, measured side by side.

A neural vector field (time-dependent tanh MLP, 64 wide) on a batch solved as one
system, Tsit5, rtol = atol = 1e-6. Prints, for the forward solve and for
value-and-grad of a loss (task loss + λ·R_E + λ·R_S against the task loss alone), and
for value-and-grad with the backward pass counted (`nderegs.BackwardCount`) against
the same without: compile time of each, and the wall-clock of each over interleaved
repeats, and the NFE of both (nderegs' count against a run-time count for diffrax).

The ratio is that of the *fastest* of the repeats of each (the run least disturbed by
the rest of the machine: noise only ever adds time), the pair run alternately so that
a drift in load hits both; the ratio of the medians is shown beside it. Two runs back to
back on the 2-core machine (`--t1 100 --repeats 30`, benchmarks/results/overhead_cpu.md)
repeated the forward and the counting ratios within ±0.3 %, not the value-and-grad one
(1.042, 1.068): the shared machine's speed drifts by more within a run.

    python benchmarks/overhead.py [--batch 256] [--t1 100] [--repeats 30]
"""

import argparse
import statistics
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

import nderegs


class VectorField(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, dim, width, *, key):
        self.mlp = eqx.nn.MLP(dim + 1, dim, width, 2, activation=jnp.tanh, key=key)

    def __call__(self, t, y, args):
        tt = jnp.broadcast_to(t, y.shape[:-1] + (1,))
        return jax.vmap(self.mlp)(jnp.concatenate([y, tt], axis=-1))


def _timed(fn, *args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def _compare(name, plain, ours, args, repeats, labels=("diffrax", "nderegs")):
    compile_plain = _timed(plain, *args)
    compile_ours = _timed(ours, *args)
    plain_times, our_times = [], []
    for i in range(repeats):  # alternating (and which goes first), so drifts hit both
        first, second = (plain, ours) if i % 2 == 0 else (ours, plain)
        a, b = _timed(first, *args), _timed(second, *args)
        plain_times.append(a if i % 2 == 0 else b)
        our_times.append(b if i % 2 == 0 else a)
    p, o = min(plain_times), min(our_times)
    median_ratio = statistics.median(our_times) / statistics.median(plain_times)
    print(
        f"{name:<22} {labels[0]} {p * 1e3:8.2f} ms   {labels[1]} {o * 1e3:8.2f} ms   "
        f"ratio {o / p:5.3f} (of medians {median_ratio:5.3f})   compile "
        f"{compile_plain:5.2f} s / {compile_ours:5.2f} s"
    )
    return o / p


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--t1", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)

    key_model, key_y = jax.random.split(jax.random.key(opts.seed))
    field = VectorField(opts.dim, opts.width, key=key_model)
    y0 = jax.random.normal(key_y, (opts.batch, opts.dim))
    solver = diffrax.Tsit5()
    controller = diffrax.PIDController(rtol=opts.tol, atol=opts.tol)
    term = diffrax.ODETerm(lambda t, y, f: f(t, y, None))
    common = dict(stepsize_controller=controller, max_steps=4096)
    lam = 0.1

    @eqx.filter_jit
    def forward_plain(f, y):
        return diffrax.diffeqsolve(term, solver, 0.0, opts.t1, None, y, f, **common).ys

    @eqx.filter_jit
    def forward_ours(f, y):
        sol, h = nderegs.solve(term, solver, 0.0, opts.t1, None, y, f, **common)
        return sol.ys, h.error, h.stiffness

    @eqx.filter_jit
    def grad_plain(f, y):
        def loss(f):
            ys = diffrax.diffeqsolve(term, solver, 0.0, opts.t1, None, y, f, **common).ys
            return jnp.mean(ys**2)

        return eqx.filter_value_and_grad(loss)(f)

    @eqx.filter_jit
    def grad_ours(f, y):
        def loss(f):
            sol, h = nderegs.solve(term, solver, 0.0, opts.t1, None, y, f, **common)
            return jnp.mean(sol.ys**2) + lam * h.error + lam * h.stiffness

        return eqx.filter_value_and_grad(loss)(f)

    @eqx.filter_jit
    def grad_counted_only(f, y):
        def loss(f_and_probe):
            f, probe = f_and_probe
            sol, h = nderegs.solve(
                term, solver, 0.0, opts.t1, None, y, f, backward_count=probe, **common
            )
            return jnp.mean(sol.ys**2) + lam * h.error + lam * h.stiffness

        return eqx.filter_value_and_grad(loss)((f, nderegs.BackwardCount.probe()))

    @eqx.filter_jit
    def forward_local(f, y):
        sol, h = nderegs.solve(
            term,
            solver,
            0.0,
            opts.t1,
            None,
            y,
            f,
            local="unbiased",
            key=jax.random.key(0),
            **common,
        )
        return sol.ys, h.local_error

    print(
        f"backend {jax.default_backend()}, {jax.device_count()} device(s); batch "
        f"{opts.batch} x dim {opts.dim} as one system, MLP width {opts.width}, "
        f"Tsit5, rtol=atol={opts.tol:g}, {opts.repeats} alternating repeats (fastest of each)"
    )
    _compare("forward", forward_plain, forward_ours, (field, y0), opts.repeats)
    _compare("value_and_grad", grad_plain, grad_ours, (field, y0), opts.repeats)
    _compare("forward+local", forward_plain, forward_local, (field, y0), opts.repeats)
    _compare(
        "value_and_grad counted",
        grad_ours,
        grad_counted_only,
        (field, y0),
        opts.repeats,
        labels=("uncounted", "counted"),
    )
    (_, (_, count)) = grad_counted_only(field, y0)

    calls = []
    counted = diffrax.ODETerm(
        lambda t, y, f: (jax.debug.callback(lambda *_: calls.append(1), t), f(t, y, None))[1]
    )
    sol = diffrax.diffeqsolve(counted, solver, 0.0, opts.t1, None, y0, field, **common)
    jax.block_until_ready(sol.ys)
    _, h = eqx.filter_jit(
        lambda f, y: nderegs.solve(term, solver, 0.0, opts.t1, None, y, f, **common)
    )(field, y0)
    print(
        f"NFE: nderegs {int(h.nfe)}, diffrax (run-time count of vector-field calls) "
        f"{len(calls)}; steps {int(h.num_steps)} ({int(h.num_rejected_steps)} rejected); "
        f"R_E {float(h.error):.4g}, R_S {float(h.stiffness):.4g}; backward pass: "
        f"{float(count.nfe):.0f} evaluations, {float(count.vjps):.0f} VJPs"
    )
    return 0 if int(h.nfe) == len(calls) else 1


if __name__ == "__main__":
    raise SystemExit(main())
