"""golden/network.py: op-list networks, im2col, backward against finite differences, training,
the cache, and input errors. Tiny networks only (the full ones train for minutes)."""

import json

import numpy as np
import pytest

from golden import network as gnet
from golden.network import Conv, Dense, MaxPool, NetConfig, TrainConfig

TINY_MLP = NetConfig("tiny-mlp", (64,), (
    Dense("fc1", "x", "h", 64, 12),
    Dense("fc2", "h", "logits", 12, 10, bn=False, relu=False),
))
TINY_CNN = NetConfig("tiny-cnn", (8, 8, 1), (
    Conv("c1", "x", "a1", 1, 3),
    Conv("c2", "a1", "a2", 3, 3, residual="a1"),
    MaxPool("pool", "a2", "p", 2),
    Dense("fc", "p", "logits", 48, 10, bn=False, relu=False),
))


def _loss(cfg, params, x, y):
    logits, _ = gnet.forward_train(cfg, params, x)
    return gnet.cross_entropy(logits, y)[0]


@pytest.mark.parametrize("cfg", [TINY_MLP, TINY_CNN], ids=lambda c: c.name)
def test_backward_matches_finite_differences(cfg):
    """Every trainable parameter of every layer, a few entries each, central differences."""
    rng = np.random.default_rng(1)
    params = gnet.init_params(cfg, rng)
    for p in params.values():  # move BN away from the identity so its gradient is exercised
        if "gamma" in p:
            p["gamma"] = rng.uniform(0.5, 1.5, p["gamma"].shape)
            p["beta"] = rng.normal(0, 0.3, p["beta"].shape)
    x = rng.random((6, 64))
    y = rng.integers(0, 10, 6)
    logits, cache = gnet.forward_train(cfg, params, x)
    _, d = gnet.cross_entropy(logits, y)
    grads = gnet.backward(cfg, params, cache, d)
    assert set(grads) == {op.name for op in cfg.matrix_ops}
    h = 1e-6
    for op in cfg.matrix_ops:
        for k, g in grads[op.name].items():
            a = params[op.name][k]
            assert g.shape == a.shape
            for _ in range(4):
                idx = tuple(int(rng.integers(0, s)) for s in a.shape)
                old = a[idx]
                a[idx] = old + h
                lp = _loss(cfg, params, x, y)
                a[idx] = old - h
                lm = _loss(cfg, params, x, y)
                a[idx] = old
                num = (lp - lm) / (2 * h)
                assert abs(g[idx] - num) <= 1e-6 + 1e-4 * abs(num), (op.name, k, idx, g[idx], num)


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 6, 3))
    c = rng.normal(size=(2 * 5 * 6, 27))
    assert np.isclose(np.sum(gnet.im2col(x) * c), np.sum(x * gnet.col2im(c, x.shape)))


def test_im2col_conv_equals_direct_convolution():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 2))
    W = rng.normal(size=(9 * 2, 3))
    out = (gnet.im2col(x) @ W).reshape(2, 4, 4, 3)
    k = W.reshape(3, 3, 2, 3)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    direct = np.zeros_like(out)
    for i in range(4):
        for j in range(4):
            direct[:, i, j] = np.einsum("nabc,abco->no", xp[:, i:i + 3, j:j + 3], k)
    np.testing.assert_allclose(out, direct, atol=1e-12)


@pytest.fixture(scope="module")
def data():
    from golden.data import digits
    return digits()


def test_training_learns_and_cache_hits(tmp_path, data):
    tcfg = TrainConfig(epochs=4, seed=5, lr=0.02)
    net = gnet.load_or_train(TINY_MLP, tcfg, data=data, cache_dir=tmp_path, progress=False)
    assert net.info["test_accuracy"] > 0.8          # a tiny MLP, 4 epochs
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("tiny-mlp-")
    assert files[0].endswith(".json") and files[1].endswith(".npz")
    meta = json.loads((tmp_path / files[0]).read_text())
    assert meta["code"] == gnet.CODE_VERSION and meta["train"]["epochs"] == 4
    # the second call loads: same parameters, no new files
    again = gnet.load_or_train(TINY_MLP, tcfg, data=data, cache_dir=tmp_path, progress=False)
    for op in TINY_MLP.matrix_ops:
        np.testing.assert_array_equal(net.params[op.name]["W"], again.params[op.name]["W"])
    assert again.info["test_accuracy"] == net.info["test_accuracy"]
    # another training setting is another key
    assert gnet.cache_key(TINY_MLP, tcfg) != gnet.cache_key(TINY_MLP, TrainConfig(epochs=5, seed=5))
    assert gnet.cache_key(TINY_MLP, tcfg) != gnet.cache_key(TINY_CNN, tcfg)


def test_training_is_reproducible(data):
    tcfg = TrainConfig(epochs=1, seed=9)
    a, _ = gnet.train(TINY_CNN, tcfg, data.x_train[:200], data.y_train[:200], progress=False)
    b, _ = gnet.train(TINY_CNN, tcfg, data.x_train[:200], data.y_train[:200], progress=False)
    c, _ = gnet.train(TINY_CNN, TrainConfig(epochs=1, seed=10), data.x_train[:200],
                      data.y_train[:200], progress=False)
    np.testing.assert_array_equal(a["c2"]["W"], b["c2"]["W"])
    assert not np.array_equal(a["c2"]["W"], c["c2"]["W"])


def test_run_with_an_executor_sees_every_matrix_op():
    rng = np.random.default_rng(4)
    params = gnet.init_params(TINY_CNN, rng)
    seen = []

    def spy(op, rows, residual):
        seen.append((op.name, rows.shape, None if residual is None else residual.shape))
        return gnet.FloatMatrix(params)(op, rows, residual)

    x = rng.random((3, 64))
    out = gnet.run(TINY_CNN, x, spy)
    assert seen == [("c1", (3 * 64, 9), None), ("c2", (3 * 64, 27), (3 * 64, 3)),
                    ("fc", (3, 48), None)]
    np.testing.assert_array_equal(out, gnet.run(TINY_CNN, x, gnet.FloatMatrix(params)))


def test_bad_networks_and_inputs():
    with pytest.raises(ValueError, match="reads 'h' before any op writes it"):
        NetConfig("bad", (64,), (Dense("fc", "h", "logits", 64, 10),))
    with pytest.raises(ValueError, match="op name 'fc' used twice"):
        NetConfig("bad", (64,), (Dense("fc", "x", "h", 64, 10), Dense("fc", "h", "logits", 10, 10)))
    with pytest.raises(ValueError, match="no op writes the output 'logits'"):
        NetConfig("bad", (64,), (Dense("fc", "x", "h", 64, 10),))
    params = gnet.init_params(TINY_MLP, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"takes inputs of shape \(N, 64\), not \(2, 63\)"):
        gnet.run(TINY_MLP, np.zeros((2, 63)), gnet.FloatMatrix(params))
    with pytest.raises(ValueError, match="needs NHWC input with 2 channels"):
        bad = NetConfig("bad", (8, 8, 1), (Conv("c", "x", "a", 2, 3),
                                           Dense("fc", "a", "logits", 192, 10)))
        gnet.run(bad, np.zeros((1, 64)), gnet.FloatMatrix(gnet.init_params(bad, np.random.default_rng(0))))
