"""Checkpoints: the model and optimizer state after a completed epoch.

Each file is written to a temporary name and then renamed over the old one, so an
interrupted or failing run always leaves the last good checkpoint readable.
"""

import json
import os
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp


CHECKPOINT = "checkpoint.eqx"
PROGRESS = "checkpoint.json"


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, model, opt_state, epoch: int, progress: dict) -> None:
    """Store (model, opt_state) after `epoch` completed epochs, with `progress`
    (JSON-able bookkeeping such as accumulated training seconds)."""
    run_dir = Path(run_dir)
    state = (model, opt_state, jnp.asarray(epoch, jnp.int32))
    _replace_atomically(run_dir / CHECKPOINT, lambda p: eqx.tree_serialise_leaves(p, state))
    text = json.dumps({**progress, "epoch": epoch}, indent=2)
    _replace_atomically(run_dir / PROGRESS, lambda p: p.write_text(text))


def load_checkpoint(run_dir: Path, model_like, opt_state_like):
    """(model, opt_state, epoch, progress) from `run_dir`; the templates give the
    structure (a freshly initialised model and optimizer state)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint in {run_dir} (looked for {CHECKPOINT}).")
    like = (model_like, opt_state_like, jnp.asarray(0, jnp.int32))
    model, opt_state, epoch = eqx.tree_deserialise_leaves(path, like)
    progress = {}
    if (run_dir / PROGRESS).exists():
        progress = json.loads((run_dir / PROGRESS).read_text())
    return model, opt_state, int(epoch), progress
