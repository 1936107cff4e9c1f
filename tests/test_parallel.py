"""Data-parallel training (`parallel.devices`, `parallel.distributed`).

The multi-device checks run `parallel_worker.py` in subprocesses with forced CPU devices
(and two processes over jax.distributed's CPU collectives), so this process keeps one
device."""

import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import numpy as np
import pytest
from tiny import TINY

from nderegs.config import ConfigError, load_config
from nderegs.train import train

pytestmark = pytest.mark.xdist_group("parallel")

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("parallel_worker.py")
CONFIG = ROOT / "configs" / "digits.yaml"


def _env(devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    # (with the suite's own XLA flags, see conftest.py)
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = flags.strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


def _run_worker(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(*processes: subprocess.Popen, timeout: float = 600) -> None:
    """Wait for the processes; if one fails, stop the others (which would otherwise wait
    for it in a collective) and show its output."""
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            assert process.returncode == 0, output[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


@pytest.fixture(scope="module")
def four_device_step(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("parallel")
    _finish(_run_worker([str(root / "step.json"), str(root / "runs")], _env(4)))
    return {**json.loads((root / "step.json").read_text()), "runs": root / "runs"}


def test_data_parallel_gradient_is_the_mean_of_the_shards(four_device_step):
    result = four_device_step
    reference = result["reference"]
    assert result["devices"] == 4 and result["dtype"] == "float64"
    np.testing.assert_allclose(result["loss"], reference["loss"], rtol=1e-12)
    # The training step (plain SGD) applies the mean of the shards' gradients: its
    # updated weights are the reference's, to 1e-10 of the largest step (the gradient's
    # largest component times lr), as float64 sums in another order give.
    steps = np.subtract(reference["updated"], reference["initial"])
    assert np.max(np.abs(steps)) > 1e-3
    atol = 1e-10 * np.max(np.abs(steps))
    np.testing.assert_allclose(result["updated"], reference["updated"], rtol=0, atol=atol)


def test_each_device_reports_its_own_shards_nfe(four_device_step):
    assert four_device_step["nfe"] == four_device_step["reference"]["nfe"]
    assert len(four_device_step["nfe"]) == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_four_device_result(four_device_step, tmp_path):
    out = tmp_path / "step.json"
    address = f"localhost:{_free_port()}"
    processes = [
        _run_worker(
            [str(out), str(tmp_path / "runs")],
            _env(
                2,
                JAX_COORDINATOR_ADDRESS=address,
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            ),
        )
        for i in range(2)
    ]
    _finish(*processes)
    result = json.loads(out.read_text())
    assert result["processes"] == 2 and result["devices"] == 4
    single = four_device_step
    assert result["nfe"] == single["nfe"]
    np.testing.assert_allclose(result["loss"], single["loss"], rtol=1e-12)
    atol = 1e-10 * np.max(np.abs(np.subtract(single["updated"], single["reference"]["initial"])))
    np.testing.assert_allclose(result["updated"], single["updated"], rtol=0, atol=atol)
    # Training into an existing run directory: process 0 refuses, the other stops too
    # (rather than waiting for process 0 in the first collective).
    outcomes = {p.name[-1]: p.read_text() for p in tmp_path.glob("step.json.again*")}
    assert outcomes == {"0": "FileExistsError", "1": "ProcessStopped"}
    # train() itself on two processes: the same epochs as on one with four devices.
    assert len(result["metrics"]) == 2
    # The NFE budget (target 10, under every solve) raised λ after the first epoch.
    lambdas = [row["coefficient_error"] for row in result["metrics"]]
    assert lambdas[1] > lambdas[0] == pytest.approx(0.1)
    for row, expected in zip(result["metrics"], single["metrics"]):
        for key in (
            "test_accuracy",
            "test_nfe",
            "test_nfe_max",
            "train_nfe",
            "train_nfe_max",
            "coefficient_error",
        ):
            assert row[key] == expected[key], key
        np.testing.assert_allclose(row["train_loss"], expected["train_loss"], rtol=1e-5)


def test_a_batch_that_does_not_split_is_evaluated_whole(four_device_step):
    assert four_device_step["ragged"] == four_device_step["ragged_reference"]


def test_short_training_on_four_devices_matches_one(four_device_step):
    results = four_device_step["short_training"]
    runs = four_device_step["runs"]
    one, four = results["1"], results["all"]
    assert (
        "optim.batch_size=66 does not split evenly over parallel.devices=4"
        in (results["indivisible_batch_error"])
    )
    assert (one["devices"], four["devices"]) == (1, 4)
    assert four["test_nfe_max"] >= four["test_nfe"]
    assert one["test_nfe_max"] == one["test_nfe"]
    # Each device solves a quarter of the batch with its own steps: the
    # numbers differ from one device's, the accuracy must not by much.
    assert one["test_metric"] > 0.6
    assert abs(four["test_metric"] - one["test_metric"]) < 0.08
    metrics = (runs / "devices-all" / "metrics.jsonl").read_text().splitlines()
    assert all("train_nfe_max" in json.loads(row) for row in metrics)
    # A run started on one device goes on on four.
    resumed = results["resumed"]
    assert resumed["devices"] == 4 and resumed["epochs"] == 2
    assert resumed["resumed_changes"] == [{"parallel.devices": [1, "all"]}]
    rows = (runs / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_devices_all_on_one_device_is_the_plain_run(tmp_path, tiny_runs):
    plain_dir = tiny_runs.finished("method=error")  # the suite's shared tiny run
    plain = json.loads((plain_dir / "summary.json").read_text())
    every_config = load_config(CONFIG, [*TINY, "method=error", "parallel.devices=all"])
    every = train(every_config, run_dir=tmp_path / "all")
    assert every is not None
    assert every["devices"] == 1 and every["processes"] == 1
    for key in ("test_metric", "test_nfe", "test_nfe_max", "train_metric", "train_step_bytes"):
        assert every[key] == plain[key], key
    rows = [
        (run / "metrics.jsonl").read_text().splitlines()[-1]
        for run in (plain_dir, tmp_path / "all")
    ]
    first, second = (json.loads(r) for r in rows)
    first.pop("train_seconds"), second.pop("train_seconds")
    assert first == second


def test_more_devices_than_available_is_a_config_error(tmp_path):
    config = load_config(CONFIG, [*TINY, "parallel.devices=2"])
    with pytest.raises(ConfigError, match=r"parallel.devices.*only 1 device"):
        train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["0", "two", "true", "-1"])
def test_bad_device_counts_are_rejected(value):
    with pytest.raises(ConfigError, match="parallel.devices.*positive number of devices, or all"):
        load_config(CONFIG, [f"parallel.devices={value}"])
