"""The data set of the accuracy and training studies: scikit-learn's handwritten digits.

1797 8 × 8 images in 10 classes, shipped inside scikit-learn (no download). One fixed, seeded,
stratified split is shared by every study, so accuracies of different studies are comparable.
Pixels (0..16 in the file) are scaled to [0, 1].
"""

from typing import NamedTuple

import numpy as np

__all__ = ["Digits", "SPLIT_SEED", "TEST_FRACTION", "digits"]

SPLIT_SEED = 20261124
TEST_FRACTION = 0.3


class Digits(NamedTuple):
    """`x_*`: float64 (n, 64) in [0, 1]; `y_*`: int64 labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def images_train(self):
        return self.x_train.reshape(-1, 1, 8, 8)

    @property
    def images_test(self):
        return self.x_test.reshape(-1, 1, 8, 8)


def digits(seed=SPLIT_SEED, test_fraction=TEST_FRACTION):
    """The stratified split: in every class, `round(test_fraction · count)` images go to the test
    set, drawn with `np.random.default_rng(seed)`; both sets keep the file's order."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie strictly between 0 and 1, not {test_fraction!r}")
    from sklearn.datasets import load_digits  # imported here: only the studies need scikit-learn

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(y.size, dtype=bool)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        take = int(round(test_fraction * members.size))
        test[rng.choice(members, size=take, replace=False)] = True
    return Digits(x[~test], y[~test], x[test], y[test])
