"""Overhead of `nderegs.solve` over plain `diffrax.diffeqsolve`, measured side by side.

A neural vector field (time-dependent tanh MLP, 64 wide) on a batch solved as one
system, Tsit5, rtol = atol = 1e-6. Prints, for the forward solve and for
value-and-grad of a loss (task loss + λ·R_E + λ·R_S against the task loss alone), and
for value-and-grad with the backward pass counted (`nderegs.BackwardCount`) against
the same without: compile time of each, and the wall-clock of each over interleaved
repeats, and the NFE of both (nderegs' count against a run-time count for diffrax).

The ratio is the median of paired ratios: each repeat runs the two back to back (which
goes first alternating) and divides their times, so that a drift of the shared
machine's speed, which moves both of a pair alike, cancels, and the median drops the
pairs a burst of load hit. The middle half of the pairs' ratios and the ratio of the
fastest of each are shown beside it. (The ratio of the fastest, used before, did not
repeat: 1.042 and 1.068 for value-and-grad in two runs back to back; each minimum is
one lucky run.)

    python benchmarks/overhead.py [--batch 256] [--t1 100] [--repeats 200]
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


def _timed(fn, *args, calls=1):
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / calls


def _compare(name, plain, ours, args, repeats, labels=("diffrax", "nderegs")):
    """The ratio ours/plain: the median over `repeats` pairs run back to back (which goes
    first alternating; a sample of several calls where one is short) of each pair's own
    ratio, so that a drift of the machine's speed between pairs cancels; beside it, the
    middle half of the pairs' ratios and the ratio of the fastest of each."""
    compile_plain = _timed(plain, *args)
    compile_ours = _timed(ours, *args)
    # Each sample at least ~25 ms (several calls of a short solve): timer and scheduler
    # jitter then weigh little against it.
    calls = max(1, round(0.025 / _timed(plain, *args)))
    plain_times, our_times = [], []
    for i in range(repeats):
        if i % 2 == 0:
            plain_times.append(_timed(plain, *args, calls=calls))
            our_times.append(_timed(ours, *args, calls=calls))
        else:
            our_times.append(_timed(ours, *args, calls=calls))
            plain_times.append(_timed(plain, *args, calls=calls))
    ratios = sorted(o / p for o, p in zip(our_times, plain_times))
    paired = statistics.median(ratios)
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    p, o = min(plain_times), min(our_times)
    print(
        f"{name:<22} {labels[0]} {p * 1e3:7.2f} ms  {labels[1]} {o * 1e3:7.2f} ms (fastest)  "
        f"ratio {paired:5.3f} (middle half of the pairs {q1:5.3f}-{q3:5.3f}; of the fastest "
        f"{o / p:5.3f})   compile {compile_plain:5.2f} s / {compile_ours:5.2f} s"
    )
    return paired


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--t1", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=200)
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
        f"Tsit5, rtol=atol={opts.tol:g}, {opts.repeats} pairs (median of the pairs' ratios)"
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
