"""Data-parallel scaling: training throughput and NFE per device on 1, 2, 4, ... devices.

Weak scaling keeps the batch per device fixed (the global batch grows with the
devices); strong scaling keeps the global batch fixed (each device's shard shrinks).
Each row times `--steps` compiled training steps (compilation excluded) of the config's
task, exactly the step `nderegs train` runs with `parallel.devices=N`, and reports
samples/s, the speed-up and efficiency against one device, and the NFE per device
(mean and max over devices, averaged over the steps; the max sets the wall time).

    python benchmarks/scaling.py [--config configs/digits.yaml] [--devices 1,2,4,8]
        [--per-device-batch 64] [--global-batch 256] [--steps 20] [key=value ...]

On a machine with one CPU the devices are forced (XLA's host-platform device count,
`--cpu-devices`, default 4): they share the same cores, so such a run shows the
overhead of sharding, not a speed-up. On GPUs/TPUs it uses the real devices.
"""

import argparse
import os
import shlex
import sys
import time


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits.yaml")
    parser.add_argument("--devices", default=None, help="comma-separated counts")
    parser.add_argument("--per-device-batch", type=int, default=64)
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--cpu-devices", type=int, default=4, help="forced CPU devices when there is no GPU/TPU"
    )
    parser.add_argument("--output", default=None, help="also write the table here (Markdown)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    # Before jax is imported: forced host devices, for a CPU-only machine.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.cpu_devices}".strip()
        )

    import equinox as eqx
    import jax
    import numpy as np

    from nderegs.config import load_config
    from nderegs.data import iterate_batches
    from nderegs.parallel import DataParallel
    from nderegs.train.loop import make_train_step

    available = jax.devices()
    counts = (
        [int(c) for c in args.devices.split(",")]
        if args.devices
        else [2**k for k in range(len(available).bit_length()) if 2**k <= len(available)]
    )
    if max(counts) > len(available):
        sys.exit(f"--devices {max(counts)}: only {len(available)} available")

    def measure(n: int, batch_size: int) -> dict:
        config = load_config(args.config, [*args.overrides, f"optim.batch_size={batch_size}"])
        task, arrays = config.build()
        parallel = DataParallel(available[:n])
        parallel.check_batch_size(batch_size, f"batch size {batch_size}")
        model = task.init_model(jax.random.key(config.seed))
        optimizer = config.optim.build()
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        model, opt_state = parallel.replicate((model, opt_state))
        step = make_train_step(task, optimizer, parallel)
        # The method's coefficient states at epoch 0, and the task's own weights (e.g.
        # the latent ODE's KL weight).
        own = {k: np.asarray(v, np.float32) for k, v in task.loss_coefficients(0).items()}
        inputs = parallel.replicate(
            (task.regularization.init_coefficients(), np.asarray(0, np.int32), own)
        )
        batches = list(iterate_batches(arrays.train, batch_size, rng=None, drop_last=True))
        if not batches:
            raise SystemExit(f"batch size {batch_size} exceeds the training set")
        key = jax.random.key(0)

        def one(i, model, opt_state):
            batch = parallel.shard(batches[i % len(batches)])
            step_key = parallel.replicate(jax.random.fold_in(key, i))
            return step(model, opt_state, batch, step_key, *inputs)

        jax.block_until_ready(one(0, model, opt_state))  # compile
        nfe_mean, nfe_max = [], []
        start = time.perf_counter()
        for i in range(args.steps):
            model, opt_state, _, aux = one(i, model, opt_state)
            nfe = np.asarray(aux["nfe"], dtype=np.float64).reshape(-1)
            nfe_mean.append(nfe.mean())
            nfe_max.append(nfe.max())
        jax.block_until_ready(model)
        seconds = time.perf_counter() - start
        return {
            "devices": n,
            "global_batch": batch_size,
            "per_device": batch_size // n,
            "samples_per_s": batch_size * args.steps / seconds,
            "nfe_mean": float(np.mean(nfe_mean)),
            "nfe_max": float(np.mean(nfe_max)),
        }

    command = shlex.join(["python", "benchmarks/scaling.py", *(argv or sys.argv[1:])])
    lines = [
        f"Command: `{command}`",
        "",
        f"Data-parallel scaling: {args.config} {' '.join(args.overrides)}; "
        f"{available[0].device_kind} ({available[0].platform}), {len(available)} devices "
        f"available, {args.steps} steps per row, compile excluded.",
        "",
        "Weak scaling: the speed-up is in samples/s at a global batch that grows with the "
        "devices; on forced CPU devices (one machine's cores shared) part of it comes from "
        "the larger batch alone, not from more hardware.",
        "",
        "| scaling | devices | global batch | per device | samples/s | speed-up | "
        "efficiency | NFE/device mean | NFE/device max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for mode in ("weak", "strong"):
        base = None
        for n in counts:
            batch = args.per_device_batch * n if mode == "weak" else args.global_batch
            row = measure(n, batch)
            base = base or row["samples_per_s"]
            speedup = row["samples_per_s"] / base
            # Weak: ideal throughput grows n-fold; strong: likewise for a fixed batch.
            line = (
                f"| {mode} | {n} | {row['global_batch']} | {row['per_device']} | "
                f"{row['samples_per_s']:.0f} | {speedup:.2f} | {speedup / n:.2f} | "
                f"{row['nfe_mean']:.1f} | {row['nfe_max']:.1f} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
