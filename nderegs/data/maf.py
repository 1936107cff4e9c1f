"""The tabular density benchmarks of MAF (Papamakarios, Pavlakou, Murray, "Masked
Autoregressive Flow for Density Estimation", NeurIPS 2017), as FFJORD, RNODE and
TayNODE use them: POWER (6 dimensions), GAS (8), HEPMASS (21), MINIBOONE (43) and
BSDS300 (63). Nothing is downloaded: `path` is a folder the user fills.

Two layouts are read, in this order:

1. Preprocessed splits: `train`, `validation` (or `val`) and `test` as `.npy`, `.txt`
   or `.csv` (whitespace- or comma-separated numbers) in `path/<name>/` or `path`
   itself; used as they are.
2. MAF's release (the `data/` folder of its archive, or `path/<name>/` of it),
   preprocessed here as MAF does:
   - POWER: `power/data.npy`; columns 1 and 3 dropped, uniform dequantisation noise,
     shuffled with seed 42;
   - GAS: `gas/ethylene_CO.txt`, the release's pandas pickle written out as text (e.g.
     `pd.read_pickle("ethylene_CO.pickle").to_csv("ethylene_CO.txt", index=False)`;
     the pickle itself is not read, nderegs has no pandas dependency); the columns
     Time, Meth and Eth dropped, then one of every pair of columns correlated above
     0.98. The UCI file of the same name is read too (its first three columns are
     dropped), but it is not MAF's set: MAF's pickle is a 25 % sample of its rows, and
     the UCI rows are in time order, so its test split is the end of the recording;
   - HEPMASS: `hepmass/1000_train.csv` and `1000_test.csv`; signal rows only, the
     label column and the features with a value repeated more than 5 times dropped;
   - MINIBOONE: `miniboone/data.npy`;
   - BSDS300: `BSDS300/BSDS300.hdf5` (its `train`/`validation`/`test` datasets; needs
     `h5py`, the `maf` extra).

   The last 10 % is the test set and the last 10 % of the rest the validation set;
   everything is standardised with the training and validation mean and sd (GAS and
   BSDS300 as released).

The validation split is read (and checked) but not used: training runs a fixed number
of epochs and reports the test negative log-likelihood.
"""

from __future__ import annotations

from collections import Counter
import os
from pathlib import Path
import re

import numpy as np

from ._checks import MissingExtra
from .containers import DensityData

#: Name -> (folder in MAF's release, dimension after preprocessing).
MAF_DATASETS: dict[str, tuple[str, int]] = {
    "power": ("power", 6),
    "gas": ("gas", 8),
    "hepmass": ("hepmass", 21),
    "miniboone": ("miniboone", 43),
    "bsds300": ("BSDS300", 63),
}
_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
_SUFFIXES = (".npy", ".txt", ".csv")


def load_maf(name: str, path: str | os.PathLike[str]) -> DensityData:
    """The MAF tabular set `name` (see the module docstring for the files read)."""
    if name not in MAF_DATASETS:
        raise ValueError(f"unknown tabular data set {name!r}; accepted: {', '.join(MAF_DATASETS)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"MAF data set {name!r}: {str(root)!r} is not a folder. Pass the folder that "
            f"holds {MAF_DATASETS[name][0]}/ (MAF's data/ folder), or one with "
            "train/validation/test .npy files, as task.data.path=..."
        )
    folder, dim = MAF_DATASETS[name]
    candidates = [root / folder, root / name, root]
    for directory in candidates:
        splits = _preprocessed_splits(directory)
        if splits is not None:
            train, validation, test = (_read_table(splits[s]) for s in _SPLIT_NAMES)
            return _checked(name, dim, train, validation, test, directory)
    raw = next((d for d in candidates if _raw_files(name, d)), None)
    if raw is None:
        expected = ", ".join(str(f) for f in _raw_names(name))
        raise FileNotFoundError(
            f"MAF data set {name!r}: no files found under {str(root)!r}. Expected "
            f"train/validation/test (.npy, .txt or .csv) in {folder}/ or in the folder itself, "
            f"or MAF's release files ({expected}) in {folder}/."
        )
    train, validation, test = _RAW_READERS[name](raw)
    return _checked(name, dim, train, validation, test, raw)


def _preprocessed_splits(directory: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for split, stems in _SPLIT_NAMES.items():
        files = [directory / f"{s}{x}" for s in stems for x in _SUFFIXES]
        existing = [f for f in files if f.is_file()]
        if existing:
            found[split] = existing[0]
    if not found:
        return None
    missing = [split for split in _SPLIT_NAMES if split not in found]
    if missing:
        names = ", ".join(f"{'/'.join(_SPLIT_NAMES[m])}{{{','.join(_SUFFIXES)}}}" for m in missing)
        raise FileNotFoundError(
            f"{str(directory)!r} holds {', '.join(sorted(found))} but not {', '.join(missing)} "
            f"(expected {names})."
        )
    return found


def _raw_names(name: str) -> list[str]:
    return {
        "power": ["data.npy"],
        "gas": ["ethylene_CO.txt"],
        "hepmass": ["1000_train.csv", "1000_test.csv"],
        "miniboone": ["data.npy"],
        "bsds300": ["BSDS300.hdf5"],
    }[name]


def _raw_files(name: str, directory: Path) -> bool:
    if name == "gas" and (directory / "ethylene_CO.pickle").is_file():
        if not (directory / "ethylene_CO.txt").is_file():
            raise ValueError(
                f"MAF data set 'gas': {str(directory / 'ethylene_CO.pickle')!r} is a pandas "
                "pickle, which nderegs does not read (no pandas dependency). Write it out "
                "once as text next to it: pd.read_pickle('ethylene_CO.pickle')"
                ".to_csv('ethylene_CO.txt', index=False)."
            )
    return all((directory / f).is_file() for f in _raw_names(name))


def _read_table(file: Path) -> np.ndarray:
    try:
        if file.suffix == ".npy":
            table = np.load(file, allow_pickle=False)
        else:
            header, delimiter = _text_layout(file)
            table = np.loadtxt(file, delimiter=delimiter, skiprows=int(header is not None), ndmin=2)
    except (ValueError, OSError) as e:
        raise ValueError(f"cannot read {str(file)!r} as a table of numbers: {e}") from None
    return np.asarray(table, dtype=np.float64)


def _text_layout(file: Path) -> tuple[list[str] | None, str | None]:
    """(the header's column names, or None without a header; the delimiter: "," or
    None for whitespace), from the first data line (a header may use another one)."""
    with open(file) as handle:
        first, second = handle.readline(), handle.readline()
    header = None if _is_numeric_row(first) else first
    data_line = second if header is not None else first
    delimiter = "," if "," in data_line else None
    if header is None:
        return None, delimiter
    return [name.strip() for name in header.strip().split(delimiter)], delimiter


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.replace(",", " ").split()]
    except ValueError:
        return False
    return True


def _split(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF's split: last 10 % test, last 10 % of the rest validation."""
    num_test = int(0.1 * data.shape[0])
    test, rest = data[data.shape[0] - num_test :], data[: data.shape[0] - num_test]
    num_validation = int(0.1 * rest.shape[0])
    return rest[: rest.shape[0] - num_validation], rest[rest.shape[0] - num_validation :], test


def _standardise(train, validation, test):
    both = np.concatenate([train, validation])
    mean, sd = both.mean(0), both.std(0)
    return tuple((x - mean) / sd for x in (train, validation, test))


def _power(directory: Path):
    data = _read_table(directory / "data.npy")
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    n = data.shape[0]
    voltage_noise = 0.01 * rng.rand(n, 1)  # drawn in MAF's order
    active_power_noise = 0.001 * rng.rand(n, 1)
    sub_metering_noise = rng.rand(n, 3)
    noise = np.hstack([active_power_noise, voltage_noise, sub_metering_noise, np.zeros((n, 1))])
    return _standardise(*_split(data + noise))


#: GAS's columns that are not sensor readings: MAF's "Time", "Meth", "Eth"; the UCI
#: file's "Time (seconds)", "CO conc (ppm)", "Ethylene conc (ppm)".
_GAS_DROPPED = re.compile(r"(?i)^(time|meth|eth|co)\b")


def _gas(directory: Path):
    file = directory / "ethylene_CO.txt"
    names, _ = _text_layout(file)
    data = _read_table(file)
    if names is not None and len(names) == data.shape[1]:
        keep = [i for i, n in enumerate(names) if not _GAS_DROPPED.match(n.strip('"'))]
    else:  # the UCI column order: time, CO, ethylene, 16 sensors
        keep = list(range(3, data.shape[1]))
    data = data[:, keep]
    while True:
        correlated = np.corrcoef(data, rowvar=False) > 0.98
        counts = correlated.sum(axis=1)
        if not np.any(counts > 1):
            break
        data = np.delete(data, int(np.flatnonzero(counts > 1)[0]), axis=1)
    data = (data - data.mean(0)) / data.std(0)
    return _split(data)


def _hepmass(directory: Path):
    train = _read_table(directory / "1000_train.csv")
    test = _read_table(directory / "1000_test.csv")
    if test.shape[1] == train.shape[1] + 1:  # MAF: "the data set is messed up"
        test = test[:, :-1]
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"MAF data set 'hepmass' from {str(directory)!r}: 1000_train.csv has "
            f"{train.shape[1]} columns, 1000_test.csv {test.shape[1]}; they must match."
        )
    train, test = train[train[:, 0] == 1, 1:], test[test[:, 0] == 1, 1:]
    mean, sd = train.mean(0), train.std(0)
    train, test = (train - mean) / sd, (test - mean) / sd
    # MAF drops a feature whose smallest value occurs more than 5 times.
    keep = [i for i, column in enumerate(train.T) if sorted(Counter(column).items())[0][1] <= 5]
    train, test = train[:, keep], test[:, keep]
    num_validation = int(0.1 * train.shape[0])
    return train[: train.shape[0] - num_validation], train[train.shape[0] - num_validation :], test


def _miniboone(directory: Path):
    return _standardise(*_split(_read_table(directory / "data.npy")))


def _bsds300(directory: Path):
    try:
        import h5py
    except ImportError:
        raise MissingExtra(
            "Reading BSDS300.hdf5 needs h5py: pip install 'nderegs[maf]' (or give "
            "train/validation/test .npy files)."
        ) from None
    file = directory / "BSDS300.hdf5"
    try:
        with h5py.File(file, "r") as f:
            return tuple(
                np.asarray(f[s], dtype=np.float64) for s in ("train", "validation", "test")
            )
    except (OSError, KeyError) as e:
        raise ValueError(
            f"cannot read {str(file)!r} as MAF's BSDS300 file (HDF5 with train, validation "
            f"and test datasets): {e}"
        ) from None


_RAW_READERS = {
    "power": _power,
    "gas": _gas,
    "hepmass": _hepmass,
    "miniboone": _miniboone,
    "bsds300": _bsds300,
}


def _checked(name, dim, train, validation, test, source: Path) -> DensityData:
    for split, x in (("train", train), ("validation", validation), ("test", test)):
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(
                f"MAF data set {name!r} from {str(source)!r}: the {split} split must be a "
                f"non-empty 2-D table (samples x {dim} features); got shape {x.shape}."
            )
        if x.shape[1] != dim:
            raise ValueError(
                f"MAF data set {name!r} from {str(source)!r}: the {split} split has "
                f"{x.shape[1]} features; {name} has {dim} after MAF's preprocessing."
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"MAF data set {name!r} from {str(source)!r}: the {split} split has NaN or "
                "infinite values."
            )
    return DensityData(name=name, x_train=train.astype(np.float32), x_test=test.astype(np.float32))
