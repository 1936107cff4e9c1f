"""The tiny digits run of the CLI and comparison tests: seconds, not minutes."""

TINY = [
    "task.data.subset=256",
    "optim.batch_size=128",
    "optim.epochs=1",
    "task.model.hidden_size=8",
    "task.model.vf_width=8",
    "solver.rtol=1e-4",
    "solver.atol=1e-4",
    "train.progress=false",
    "train.predict_repeats=2",
]
