"""PhysioNet/Computing in Cardiology Challenge 2012 ICU records, from the raw text files.

Reads the ``set-a`` (or ``set-b``/``set-c``) layout: one ``<RecordID>.txt`` per
patient, a CSV with header ``Time,Parameter,Value`` where ``Time`` is ``HH:MM``
elapsed since ICU admission, e.g.::

    Time,Parameter,Value
    00:00,RecordID,132539
    00:00,Age,54
    00:00,Gender,0
    00:00,Height,-1
    00:00,ICUType,4
    00:00,Weight,-1
    00:07,GCS,15
    00:37,HR,73

The general descriptors recorded at 00:00 are static and left out of the
series. Weight is both a descriptor (its 00:00 row) and a time series (later
rows), as in the challenge's own description. A value of -1 marks "missing".
"""

from __future__ import annotations

from collections import Counter
import math
import os
from pathlib import Path
import re
import warnings

import numpy as np

from ._checks import check_float, check_fraction, check_int, check_seed
from ._scaling import masked_channel_stats, standardize
from ._split import split_indices
from .containers import TimeSeriesData

# The 37 time-series variables of the challenge, in the order of its description:
# 36 lab/vital measurements, then Weight (whose later rows are time-varying).
PHYSIONET_PARAMETERS: tuple[str, ...] = (
    "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine",
    "DiasABP", "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg",
    "MAP", "MechVent", "Na", "NIDiasABP", "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH",
    "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT",
    "Urine", "WBC", "Weight",
)  # fmt: skip
STATIC_DESCRIPTORS: frozenset[str] = frozenset({"RecordID", "Age", "Gender", "Height", "ICUType"})
MISSING_VALUE = -1.0
_HEADER = "Time,Parameter,Value"
_TIME_PATTERN = re.compile(r"(\d+):([0-5]\d)", re.ASCII)  # hours may exceed 23
_CHANNEL = {name: index for index, name in enumerate(PHYSIONET_PARAMETERS)}


def load_physionet(
    path: str | os.PathLike[str],
    quantization_hours: float = 1.0,
    max_hours: float = 48.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_patients: int | None = None,
) -> TimeSeriesData:
    """Load PhysioNet 2012 patient records as binned, standardised, masked series.

    Args:
        path: directory of per-patient ``<RecordID>.txt`` files (e.g. ``set-a/``).
        quantization_hours: width of the time bins; measurements of a parameter
            falling in the same bin are averaged.
        max_hours: length of the window after admission; later rows are ignored
            (a row at exactly ``max_hours`` goes into the last bin).
        test_fraction: fraction of patients (at least one) held out for testing.
        seed: seed of the random patient split.
        max_patients: if given, read only the first this many files in RecordID order.

    Returns:
        ``TimeSeriesData`` named ``"physionet"`` with ``T = ceil(max_hours /
        quantization_hours)`` bins whose times are the bin starts divided by
        ``max_hours`` (so in ``[0, 1)``), and ``D = 37`` channels named as in
        :data:`PHYSIONET_PARAMETERS`. Values are standardised per channel with the
        mean and population std of the observed training bins (std 1 for channels
        with fewer than two distinct training values); mask is 1 where the bin
        had at least one measurement. Patients with no measurement in the window
        are dropped (with a warning), as are rows with unknown parameter names
        (one warning with their counts).

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no ``*.txt`` files.
        NotADirectoryError: ``path`` is a file.
        ValueError: a file has the wrong header or an unparsable line (the
            message names the file and line number), or bad arguments.
    """
    quantization_hours = check_float(
        "quantization_hours", quantization_hours, low=0.0, low_inclusive=False
    )
    max_hours = check_float("max_hours", max_hours, low=quantization_hours)
    test_fraction = check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(check_seed(seed))
    files = _patient_files(Path(path))
    if max_patients is not None:
        files = files[: check_int("max_patients", max_patients, minimum=1)]

    # Tolerance so that e.g. 18 min / 0.1 h lands in bin 3 despite float rounding.
    num_bins = math.ceil(max_hours / quantization_hours - 1e-9)
    sums = np.zeros((len(files), num_bins, len(PHYSIONET_PARAMETERS)))
    counts = np.zeros_like(sums)
    unknown: Counter[str] = Counter()
    for patient, file in enumerate(files):
        for minutes, parameter, value in _read_patient(file):
            channel = _channel_of(parameter, minutes, value, unknown)
            hours = minutes / 60.0
            if channel is None or hours > max_hours:
                continue
            time_bin = min(int(hours / quantization_hours + 1e-9), num_bins - 1)
            sums[patient, time_bin, channel] += value
            counts[patient, time_bin, channel] += 1

    if unknown:
        listed = ", ".join(f"{name} ({count})" for name, count in sorted(unknown.items()))
        warnings.warn(
            f"load_physionet skipped {unknown.total()} rows with unknown parameters: {listed}",
            stacklevel=2,
        )
    observed = counts.sum(axis=(1, 2)) > 0
    if not observed.all():
        empty = [files[i].name for i in np.flatnonzero(~observed)]
        warnings.warn(
            f"load_physionet dropped {len(empty)} patients with no measurement in the first "
            f"{max_hours} hours: {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}",
            stacklevel=2,
        )
    if observed.sum() < 2:
        raise ValueError(
            f"{path}: need at least 2 patients with measurements to split into train and test, "
            f"found {int(observed.sum())}"
        )
    sums, counts = sums[observed], counts[observed]
    mask = counts > 0
    values = np.divide(sums, counts, out=np.zeros_like(sums), where=mask)

    train, test = split_indices(len(values), test_fraction, rng)
    mean, std = masked_channel_stats(values[train], mask[train])
    return TimeSeriesData(
        name="physionet",
        times=(np.arange(num_bins) * quantization_hours / max_hours).astype(np.float32),
        values_train=standardize(values[train], mask[train], mean, std),
        mask_train=mask[train].astype(np.float32),
        values_test=standardize(values[test], mask[test], mean, std),
        mask_test=mask[test].astype(np.float32),
        channel_names=PHYSIONET_PARAMETERS,
    )


def _patient_files(directory: Path) -> list[Path]:
    """The directory's ``*.txt`` files, numeric RecordIDs in numeric order."""
    if not directory.exists():
        raise FileNotFoundError(
            f"PhysioNet directory {directory} does not exist; expected a folder of per-patient "
            "<RecordID>.txt files such as the challenge's set-a/"
        )
    if not directory.is_dir():
        raise NotADirectoryError(
            f"PhysioNet path {directory} is a file; expected a folder of per-patient "
            "<RecordID>.txt files such as the challenge's set-a/"
        )
    files = [file for file in directory.glob("*.txt") if file.is_file()]
    if not files:
        raise FileNotFoundError(f"PhysioNet directory {directory} holds no *.txt patient files")
    return sorted(files, key=lambda f: (0, int(f.stem), "") if f.stem.isdigit() else (1, 0, f.stem))


def _channel_of(parameter: str, minutes: int, value: float, unknown: Counter[str]) -> int | None:
    """Channel index of a row, or None if the row is missing/static/unknown."""
    if value == MISSING_VALUE or parameter in STATIC_DESCRIPTORS:
        return None
    if parameter == "Weight" and minutes == 0:
        return None  # the admission weight is a descriptor, not a measurement
    channel = _CHANNEL.get(parameter)
    if channel is None:
        unknown[parameter] += 1
    return channel


def _read_patient(file: Path) -> list[tuple[int, str, float]]:
    """Parse one patient file into ``(minutes since admission, parameter, value)`` rows."""
    try:
        text = file.read_bytes().decode("utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as error:
        raise ValueError(f"{file}: not a UTF-8/ASCII text file ({error})") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != _HEADER:
        found = repr(lines[0].strip()) if lines else "an empty file"
        raise ValueError(f"{file}, line 1: expected the header {_HEADER!r}, found {found}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            rows.append(_parse_row(line, file, number))
    return rows


def _parse_row(line: str, file: Path, number: int) -> tuple[int, str, float]:
    def fail(reason: str) -> ValueError:
        return ValueError(f"{file}, line {number}: {reason}: {line.strip()!r}")

    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 3:
        raise fail(f"expected 3 comma-separated fields (Time,Parameter,Value), got {len(fields)}")
    time, parameter, value_text = fields
    clock = _TIME_PATTERN.fullmatch(time)
    if clock is None:
        raise fail("time must be HH:MM elapsed since admission")
    if not parameter:
        raise fail("empty parameter name")
    try:
        value = float(value_text)
    except ValueError:
        raise fail("value is not a number") from None
    if not math.isfinite(value):
        raise fail("value must be finite")
    return int(clock[1]) * 60 + int(clock[2]), parameter, value
