"""golden/network.py: op-list networks, im2col, backward against finite differences, training,
the cache, and input errors. Tiny networks only (the full ones train for minutes)."""

import dataclasses
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


def test_im2col_and_layer_rows_append_constant_columns():
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, size=(2, 3, 4, 2)).astype(np.float64)
    rows = gnet.im2col(x, extra=2, fill=7.0)
    np.testing.assert_array_equal(rows[:, :18], gnet.im2col(x))
    np.testing.assert_array_equal(rows[:, 18:], 7.0)
    dense = Dense("fc", "x", "y", 24, 5)
    rows = gnet.layer_rows(dense, x, extra=1, fill=7.0)
    np.testing.assert_array_equal(rows, np.c_[x.reshape(2, 24), [7.0, 7.0]])


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


def test_run_lets_an_executor_build_its_rows():
    """An executor with `rows(op, a)` gets the rows it built (the analog executor's float64 codes
    with bias inputs); without it, `layer_rows`."""
    rng = np.random.default_rng(4)
    params = gnet.init_params(TINY_CNN, rng)
    built = []

    class Rows(gnet.FloatMatrix):
        def rows(self, op, a):
            built.append(gnet.layer_rows(op, a))
            return built[-1]

        def __call__(self, op, rows, residual):
            assert rows is built[-1]
            return super().__call__(op, rows, residual)

    x = rng.random((3, 64))
    np.testing.assert_array_equal(gnet.run(TINY_CNN, x, Rows(params)),
                                  gnet.run(TINY_CNN, x, gnet.FloatMatrix(params)))
    assert len(built) == 3


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


# -- MNIST networks, augmentation, hardware-aware training -----------------------------------------

def test_train_config_keys_of_earlier_networks_unchanged():
    """Fields added later leave the cache key of a config that does not use them as it was
    (the digits networks stay cached); using one makes another key."""
    assert gnet.cache_key(gnet.NETWORKS["mlp"], gnet.TRAIN) == "25f78a9bdd177a70"
    assert gnet.cache_key(gnet.NETWORKS["cnn"], gnet.train_config("cnn")) == "f45cd601b15a5090"
    assert set(TrainConfig().to_dict()) == {"seed", "epochs", "batch", "lr", "weight_decay",
                                            "weight_noise", "bn_momentum"}
    keys = {gnet.cache_key(TINY_MLP, TrainConfig(**kw)) for kw in
            ({}, {"hw_noise": 1.0}, {"act_bits": 4}, {"augment_shift": 1}, {"float32": True},
             {"act_bits": 4, "act_clip": 99.9}, {"act_bits": 4, "act_clip": "mse"})}
    assert len(keys) == 7
    # the 4-bit hardware-aware MNIST CNN of the studies keeps its key without `act_clip`
    tc = gnet.train_config("mnist_cnn", hw_noise=1.0, act_bits=4)
    assert tc.act_clip is None and "act_clip" not in tc.to_dict()
    assert gnet.cache_key(gnet.NETWORKS["mnist_cnn"], tc) == "f8017edf0b8bae64"


@pytest.mark.parametrize("kw, match", [
    ({"act_bits": 1}, "`act_bits` must be 0"),
    ({"act_bits": -4}, "`act_bits` must be a non-negative int"),
    ({"adc_bits": 0}, "`adc_bits` must be in"),
    ({"hw_noise": float("nan")}, "`hw_noise` must be a finite number"),
    ({"augment_shift": 1.5}, "`augment_shift` must be a non-negative int"),
    ({"image_shape": (28, 28)}, "`image_shape` must be"),
    ({"batch": 1}, "`batch` >= 2"),
    ({"act_clip": 99.9}, "`act_clip` .* needs `act_bits` > 0"),
    ({"act_bits": 4, "act_clip": 40.0}, "`act_clip` must be None, a percentile in"),
    ({"act_bits": 4, "act_clip": "aciq"}, "`act_clip` must be None, a percentile in"),
])
def test_train_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_augment_translates_with_zero_fill():
    rng = np.random.default_rng(0)
    x = rng.random((40, 6 * 5 * 2))
    out = gnet.augment(x, (6, 5, 2), 2, np.random.default_rng(1))
    r = np.random.default_rng(1)
    dy = r.integers(0, 5, 40) - 2
    dx = r.integers(0, 5, 40) - 2
    img, got = x.reshape(40, 6, 5, 2), out.reshape(40, 6, 5, 2)
    for i in range(40):  # plain loops: pixel (y, x) comes from (y + dy, x + dx) or is 0
        for yy in range(6):
            for xx in range(5):
                sy, sx = yy + dy[i], xx + dx[i]
                want = img[i, sy, sx] if 0 <= sy < 6 and 0 <= sx < 5 else 0.0
                assert np.all(got[i, yy, xx] == want)
    assert np.array_equal(gnet.augment(x, (6, 5, 2), 0, rng), x)
    with pytest.raises(ValueError, match="`augment_shift` and `augment_affine` need an"):
        gnet.train(TINY_MLP, TrainConfig(epochs=1, augment_shift=1), x[:, :64], np.zeros(40, int),
                   progress=False)


def test_affine_sample_and_distort():
    """The identity returns the batch; a transpose and a quarter turn move whole pixels; half
    scale samples between pixels (bilinear: the mean of four); double scale reads zeros beyond
    the border. `distort` draws I + U(±a) per entry; `augment_affine` is validated and needs an
    image shape."""
    rng = np.random.default_rng(3)
    x = rng.random((3, 5 * 5 * 2)).astype(np.float32)
    img = x.reshape(3, 5, 5, 2)

    def warp(A):
        return gnet.affine_sample(x, (5, 5, 2), np.tile(np.asarray(A, float), (3, 1, 1)))

    assert np.array_equal(warp(np.eye(2)), x) and warp(np.eye(2)).dtype == np.float32
    assert np.array_equal(warp([[0, 1], [1, 0]]).reshape(img.shape), img.transpose(0, 2, 1, 3))
    assert np.allclose(warp([[0, -1], [1, 0]]).reshape(img.shape), np.rot90(img, -1, axes=(1, 2)))
    half = warp(0.5 * np.eye(2)).reshape(img.shape)
    assert np.allclose(half[:, 0, 0], img[:, 1, 1])
    assert np.allclose(half[:, 1, 1], img[:, 1:3, 1:3].mean(axis=(1, 2)))
    double = warp(2.0 * np.eye(2)).reshape(img.shape)
    assert np.all(double[:, 0, 0] == 0) and np.allclose(double[:, 2, 2], img[:, 2, 2])
    r = np.random.default_rng(1)
    A = np.eye(2) + r.uniform(-0.2, 0.2, (3, 2, 2))
    assert np.array_equal(gnet.distort(x, (5, 5, 2), 0.2, np.random.default_rng(1)),
                          gnet.affine_sample(x, (5, 5, 2), A))
    for bad, says in ((0.5, "`augment_affine` must be < 0.5"), (-0.1, "`augment_affine` must be a "
                                                                      "finite number >= 0")):
        with pytest.raises(ValueError, match=says):
            TrainConfig(augment_affine=bad)
    with pytest.raises(ValueError, match="`augment_shift` and `augment_affine` need an"):
        gnet.train(TINY_MLP, TrainConfig(epochs=1, augment_affine=0.1, image_shape=(8, 4, 1)),
                   rng.random((8, 64)), np.zeros(8, int), progress=False)
    key = gnet.cache_key(TINY_MLP, TrainConfig())
    assert gnet.cache_key(TINY_MLP, TrainConfig(augment_affine=0.1)) != key
    assert "augment_affine" not in TrainConfig().to_dict()


def test_quantise_codes():
    a = np.linspace(-2.0, 2.0, 1001)
    q = gnet.quantise_codes(a, 4, scale=3.5)          # x_max 7: codes −7..7 at 1/3.5
    codes = q * 3.5
    assert np.allclose(codes, np.rint(codes)) and codes.min() == -7 and codes.max() == 7
    inside = np.abs(a) <= 2.0
    assert np.all(np.abs(q - a)[inside] <= 0.5 / 3.5 + 1e-12)
    # default scale: the 99.99th percentile of |a| maps to x_max
    a = np.arange(10001) / 10000.0                      # 99.99th percentile 0.9999
    c8 = gnet.quantise_codes(a, 8) * 127 / 0.9999
    assert np.allclose(c8, np.rint(c8)) and c8.max() == pytest.approx(127)


def test_clip_level_percentile_and_mse():
    """A percentile clip is that percentile; the "mse" clip is the best of its geometric grid by
    the squared quantisation error (brute force here), well below the 99.99th percentile of a
    ReLU'd normal at 4 bits, and the quantiser uses it."""
    rng = np.random.default_rng(2)
    a = np.maximum(rng.normal(size=8000), 0.0)
    assert gnet.clip_level(a, 4) == pytest.approx(np.percentile(a, 99.99))
    assert gnet.clip_level(a, 4, 99.0) == pytest.approx(np.percentile(a, 99.0))
    v = a[a > 0]

    def err(c, bits):
        s = ((1 << (bits - 1)) - 1) / c
        return np.sum((np.minimum(np.rint(v * s), (1 << (bits - 1)) - 1) / s - v) ** 2)

    grid = v.max() * np.geomspace(1 / 64, 1.0, gnet.MSE_GRID)
    c4 = gnet.clip_level(a, 4, "mse")
    assert c4 == pytest.approx(grid[np.argmin([err(c, 4) for c in grid])])
    assert 2.0 < c4 < 3.0 < 3.5 < gnet.clip_level(a, 4)       # 99.99th percentile: 3.7σ
    assert gnet.clip_level(a, 8, "mse") > c4                  # finer codes: a wider clip pays
    assert gnet.clip_level(np.zeros(5), 4, "mse") == 0.0
    q = gnet.quantise_codes(a, 4, clip="mse")
    assert np.allclose(q, np.clip(np.rint(a * 7 / c4), -7, 7) * c4 / 7)


def test_hw_perturb_is_the_tile_fit():
    """At G = 0 only the programming noise: 0.26348 µS of 25; at full scale and 1 day programming
    noise, the drift spread and read noise in quadrature (the constants of design/tile.md)."""
    import math
    s = gnet.hw_perturb(np.array([[0.0], [2.0]]), np.array([2.0]), t=86400.0).ravel()
    assert s[0] == pytest.approx(0.26348 / 25.0)
    prog = 0.26348 + 1.9650 - 1.1731
    drift = 25.0 * 0.008 * math.log((86400.0 + 20.0) / 20.0)
    read = 25.0 * 0.0088 * math.sqrt(math.log((86400.0 + 250e-9) / (2 * 250e-9)))
    assert s[1] == pytest.approx(math.sqrt(prog ** 2 + drift ** 2 + read ** 2) / 25.0)


def test_hardware_aware_4bit_training_learns_float32(data):
    """Hardware-aware training with 4-bit activations and ADC quantisation, in float32, learns
    the tiny MLP; the parameters come back as float64, reproducibly."""
    tcfg = TrainConfig(epochs=3, seed=3, lr=0.02, hw_noise=1.0, act_bits=4, float32=True)
    a, _ = gnet.train(TINY_MLP, tcfg, data.x_train, data.y_train, progress=False)
    b, _ = gnet.train(TINY_MLP, tcfg, data.x_train, data.y_train, progress=False)
    assert a["fc1"]["W"].dtype == np.float64 and np.array_equal(a["fc1"]["W"], b["fc1"]["W"])
    acc = gnet.accuracy(gnet.run(TINY_MLP, data.x_test, gnet.FloatMatrix(a)), data.y_test)
    assert acc > 0.8


def test_adc_quantise_straight_through():
    """The ADC quantisation of training changes the forward value by at most one step per
    polarity and leaves the weight gradient the plain one of the quantised output."""
    rng = np.random.default_rng(5)
    rows, W = rng.random((30, 12)), rng.normal(size=(12, 4))
    z = rows @ W
    zq = gnet._adc_quantise(rows, W, z, 6)
    step = max((rows @ np.maximum(W, 0)).max(), (rows @ np.maximum(-W, 0)).max()) * 1.21 / 63
    assert np.all(np.abs(zq - z) <= step + 1e-12) and not np.allclose(zq, z)
    assert np.allclose(gnet._adc_quantise(rows, W, z, 24), z, atol=1e-5)


def test_mnist_networks_span_tiles():
    """The MNIST CNN's classifier spans more than 4 tiles of 256 rows (partial sums chained
    through the residual input), its residual layer fits one row tile with room for bias rows;
    the MLP's first layer spans 4."""
    from golden import tile as gt
    cfg = gt.TileConfig(name="pcm")
    cnn, mlp = gnet.NETWORKS["mnist_cnn"], gnet.NETWORKS["mnist_mlp"]
    fc = next(op for op in cnn.matrix_ops if op.name == "fc")
    assert gt.split_layer(cfg, (fc.fan_in, fc.c_out)).row_tiles > 4
    res = [op for op in cnn.matrix_ops if op.residual is not None]
    assert res and all(op.fan_in + 32 <= cfg.rows for op in res)
    assert gt.split_layer(cfg, (784, 256)).row_tiles == 4 and mlp.matrix_ops[0].fan_in == 784
    assert gnet.DATASET["mnist_cnn"] == gnet.DATASET["mnist_mlp"] == "mnist"
    assert cnn.input_shape == (28, 28, 1)


def test_train_seed_option(tmp_path, monkeypatch, capsys, data):
    """`--train-seed` sets `TrainConfig.seed`: another seed trains other weights under another
    cache key, the same seed retrained gives identical weights, no option keeps the default seed
    (the cached networks' key); bad values are refused naming the option."""
    monkeypatch.setitem(gnet.NETWORKS, "tiny-mlp", TINY_MLP)
    monkeypatch.setitem(gnet.TRAIN_CONFIGS, "tiny-mlp", TrainConfig(epochs=2, lr=0.02))
    import golden.data
    monkeypatch.setattr(golden.data, "load", lambda name: data)     # the digits, loaded once

    def train(*extra):
        """The file the command wrote: (stem, seed in its metadata, fc1 weights)."""
        before = set(tmp_path.glob("*.npz"))
        gnet.main(["--networks", "tiny-mlp", "--cache", str(tmp_path), *extra])
        (path,) = set(tmp_path.glob("*.npz")) - before
        with np.load(path) as z:
            w = z["fc1/W"]
        return path.stem, json.loads(path.with_suffix(".json").read_text())["train"]["seed"], w

    k3, s3, w3 = train("--train-seed", "3")
    k4, s4, w4 = train("--train-seed", "4")
    kd, sd, _ = train()
    assert (s3, s4, sd) == (3, 4, 20261129)
    assert len({k3, k4, kd}) == 3 and not np.array_equal(w3, w4)
    assert kd == f"tiny-mlp-{gnet.cache_key(TINY_MLP, TrainConfig(epochs=2, lr=0.02))}"
    gnet.main(["--networks", "tiny-mlp", "--cache", str(tmp_path), "--train-seed", "3",
               "--retrain"])                               # trained again, same file
    assert len(list(tmp_path.glob("*.npz"))) == 3
    with np.load(tmp_path / f"{k3}.npz") as z:
        assert np.array_equal(z["fc1/W"], w3)
    for bad, says in (("-1", "non-negative integer, not -1"), ("x", "not 'x'"),
                      ("1.5", "not '1.5'")):
        with pytest.raises(SystemExit):
            gnet.main(["--networks", "tiny-mlp", "--cache", str(tmp_path), "--train-seed", bad])
        err = capsys.readouterr().err
        assert "--train-seed" in err and says in err
    # the MNIST CNN keeps the default seed and its cached key; another seed is another key
    cnn = gnet.NETWORKS["mnist_cnn"]
    assert gnet.train_config("mnist_cnn").seed == 20261129
    for seed, same in ((None, True), (20261129, True), (1, False)):
        extra = {} if seed is None else {"seed": seed}
        key = gnet.cache_key(cnn, gnet.train_config("mnist_cnn", hw_noise=1.0, act_bits=4, **extra))
        assert (key == "f8017edf0b8bae64") == same


# -- knowledge distillation ------------------------------------------------------------------------

TINY_TEACHER = NetConfig("tiny-teacher", (8, 8, 1), TINY_CNN.ops)


@pytest.mark.parametrize("kw, match", [
    ({"distill_from": "no-such-net"}, "`distill_from` must be '' .* not 'no-such-net'"),
    ({"distill_from": 3}, "`distill_from` must be ''"),
    ({"distill_from": "cnn", "distill_temp": 0.0}, "`distill_temp` must be > 0, not 0.0"),
    ({"distill_from": "cnn", "distill_temp": float("inf")}, "`distill_temp` must be a finite"),
    ({"distill_from": "cnn", "distill_weight": 1.5}, r"`distill_weight` must be in \[0, 1\]"),
    ({"distill_from": "cnn", "distill_weight": True}, "`distill_weight` must be a finite number"),
    ({"distill_temp": 2.0}, "`distill_temp` .* need `distill_from`"),
    ({"distill_weight": 0.9}, "`distill_weight` .* need `distill_from`"),
    ({"augment_mixup": -0.5}, "`augment_mixup` must be a finite number >= 0"),
    ({"augment_mixup": 0.4}, r"`augment_mixup` \(0.4\) needs `distill_from`"),
    ({"distill_from": "cnn", "augment_mixup": 0.4}, "needs `distill_from` and `distill_weight` 1"),
])
def test_distill_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_distill_loss_gradient_and_zero_at_the_teacher():
    """T²·KL: zero (and zero gradient) when the student's logits equal the teacher's up to a
    constant per row, positive otherwise; its gradient matches central differences."""
    rng = np.random.default_rng(7)
    s, t = rng.normal(size=(5, 10)), 3.0 * rng.normal(size=(5, 10))
    loss, d = gnet.distill_loss(s, t, 3.0)
    assert loss > 0
    h = 1e-6
    for i, j in ((0, 0), (2, 7), (4, 9), (1, 3)):
        sp, sm = s.copy(), s.copy()
        sp[i, j] += h
        sm[i, j] -= h
        num = (gnet.distill_loss(sp, t, 3.0)[0] - gnet.distill_loss(sm, t, 3.0)[0]) / (2 * h)
        assert d[i, j] == pytest.approx(num, rel=1e-5, abs=1e-9)
    loss0, d0 = gnet.distill_loss(t + 5.0, t, 3.0)
    assert loss0 == pytest.approx(0.0, abs=1e-12) and np.allclose(d0, 0.0, atol=1e-15)


def test_distill_cache_key(monkeypatch):
    """Off, the key is the one before the option existed (the MLP trained on labels, the preset
    before distillation, stays cached); a teacher, another temperature, another weight, another
    teacher preset: each another key. The MNIST MLP preset is the distilled one."""
    mlp = gnet.NETWORKS["mnist_mlp"]
    labels = TrainConfig(epochs=30, batch=64, lr=2e-3, augment_shift=2, image_shape=(28, 28, 1),
                         float32=True)
    assert gnet.cache_key(mlp, labels) == "4f937bc13a8bd02e"
    assert gnet.cache_key(gnet.NETWORKS["mnist_cnn"], gnet.train_config("mnist_cnn")) \
        == "7e73e367621374e6"
    for name in ("distill_from", "distill_temp", "distill_weight", "distill_key",
                 "augment_affine", "augment_mixup"):
        assert name not in labels.to_dict()

    def key(**kw):
        return gnet.cache_key(mlp, dataclasses.replace(labels, **kw))

    keys = {key(), key(distill_from="mnist_cnn"), key(distill_from="mnist_cnn", distill_temp=8.0),
            key(distill_from="mnist_cnn", distill_weight=0.9),
            key(distill_from="mnist_cnn", distill_weight=1.0),
            key(distill_from="mnist_cnn", distill_weight=1.0, augment_mixup=0.5)}
    assert len(keys) == 6
    d = dataclasses.replace(labels, distill_from="mnist_cnn").to_dict()
    assert d["distill_key"] == "7e73e367621374e6"
    preset = gnet.train_config("mnist_mlp")
    assert preset == dataclasses.replace(labels, epochs=150, distill_from="mnist_cnn",
                                         distill_temp=4.0, distill_weight=0.9)
    assert gnet.cache_key(mlp, preset) == "415007cfccdf972a"
    # another teacher preset (here a longer schedule) is another teacher: another student key
    before = key(distill_from="mnist_cnn")
    monkeypatch.setitem(gnet.TRAIN_CONFIGS, "mnist_cnn", gnet.train_config("mnist_cnn", epochs=31))
    assert key(distill_from="mnist_cnn") != before
    assert gnet.cache_key(mlp, preset) != "415007cfccdf972a"


def test_distilled_student_learns_from_the_teacher(data):
    """A teacher trained on shifted labels (y + 1 mod 10) and a student distilled from it with
    weight 1 (the true labels unused): the student's soft loss falls and it predicts the
    teacher's classes, not the labels'. With weight 0 the teacher is ignored: the weights of
    plain training, bit for bit (distillation draws no random numbers)."""
    x, y = data.x_train, data.y_train
    wrong = (y + 1) % 10
    tparams, _ = gnet.train(TINY_TEACHER, TrainConfig(epochs=4, seed=1, lr=0.02), x, wrong,
                            progress=False)
    teacher = gnet.Network(TINY_TEACHER, TrainConfig(), tparams)
    as_cnn = dataclasses.replace(teacher, cfg=dataclasses.replace(TINY_TEACHER, name="cnn"))
    t_pred = np.argmax(teacher.logits(data.x_test), axis=1)
    assert np.mean(t_pred == (data.y_test + 1) % 10) > 0.8
    tcfg = TrainConfig(epochs=4, seed=2, lr=0.02, distill_from="cnn", distill_weight=1.0,
                       distill_temp=2.0)
    params, hist = gnet.train(TINY_MLP, tcfg, x, y, progress=False, teacher=as_cnn)
    assert hist[-1]["soft_loss"] < 0.5 * hist[0]["soft_loss"]
    pred = np.argmax(gnet.run(TINY_MLP, data.x_test, gnet.FloatMatrix(params)), axis=1)
    assert np.mean(pred == t_pred) > 0.8 and np.mean(pred == data.y_test) < 0.2
    # on mixed images (mixup) too: the teacher's classes, learnt from its soft targets alone
    mixed, _ = gnet.train(TINY_MLP, dataclasses.replace(tcfg, augment_mixup=0.4), x, y,
                          progress=False, teacher=as_cnn)
    pred = np.argmax(gnet.run(TINY_MLP, data.x_test, gnet.FloatMatrix(mixed)), axis=1)
    assert np.mean(pred == t_pred) > 0.8
    assert not np.array_equal(mixed["fc1"]["W"], params["fc1"]["W"])
    plain, _ = gnet.train(TINY_MLP, TrainConfig(epochs=2, seed=2, lr=0.02), x, y, progress=False)
    zero, _ = gnet.train(TINY_MLP, TrainConfig(epochs=2, seed=2, lr=0.02, distill_from="cnn",
                                               distill_weight=0.0), x, y, progress=False,
                         teacher=as_cnn)
    np.testing.assert_array_equal(plain["fc1"]["W"], zero["fc1"]["W"])


def test_distill_teacher_trained_on_the_same_split_and_mismatch_refused(tmp_path, monkeypatch,
                                                                          data):
    """load_or_train trains (and caches) the teacher on the split it was given, then the student;
    a teacher of another data set, input shape or class count, or one that is itself distilled,
    is refused by name; train() without the teacher is refused."""
    monkeypatch.setitem(gnet.NETWORKS, "tiny-teacher", TINY_TEACHER)
    monkeypatch.setitem(gnet.TRAIN_CONFIGS, "tiny-teacher", TrainConfig(epochs=2, seed=1, lr=0.02))
    tcfg = TrainConfig(epochs=2, seed=2, lr=0.02, distill_from="tiny-teacher", distill_weight=0.7)
    seen = []
    real_train = gnet.train

    def spy(cfg, tc, x, y, **kw):
        seen.append((cfg.name, x))
        return real_train(cfg, tc, x, y, **kw)

    monkeypatch.setattr(gnet, "train", spy)
    net = gnet.load_or_train(TINY_MLP, tcfg, data=data, cache_dir=tmp_path, progress=False)
    assert [name for name, _ in seen] == ["tiny-teacher", "tiny-mlp"]
    assert all(x is data.x_train for _, x in seen)
    assert net.info["test_accuracy"] > 0.8 and net.info["final_soft_loss"] > 0
    teacher_key = gnet.cache_key(TINY_TEACHER, TrainConfig(epochs=2, seed=1, lr=0.02))
    assert sorted(p.stem for p in tmp_path.glob("*.npz")) == sorted(
        [f"tiny-mlp-{gnet.cache_key(TINY_MLP, tcfg)}", f"tiny-teacher-{teacher_key}"])
    meta = json.loads((tmp_path / f"tiny-mlp-{gnet.cache_key(TINY_MLP, tcfg)}.json").read_text())
    assert meta["train"]["distill_from"] == "tiny-teacher"
    # mismatches, each named
    monkeypatch.setitem(gnet.DATASET, "tiny-teacher", "mnist")
    with pytest.raises(ValueError, match="teacher 'tiny-teacher' is trained on 'mnist', the "
                                         "student 'tiny-mlp' on 'digits'"):
        gnet.load_or_train(TINY_MLP, tcfg, data=data, cache_dir=tmp_path, retrain=True)
    monkeypatch.setitem(gnet.DATASET, "tiny-teacher", "digits")
    monkeypatch.setitem(gnet.DATASET, "tiny-mlp", "mnist")
    with pytest.raises(ValueError, match="teacher 'tiny-teacher' is trained on 'digits'"):
        gnet.load_or_train(TINY_MLP, tcfg, data=data, cache_dir=tmp_path, retrain=True)
    with pytest.raises(ValueError, match=r"teacher 'mnist_cnn' takes inputs of shape "
                                         r"\(28, 28, 1\), the student 'tiny-mlp' \(64,\)"):
        gnet.check_teacher(TINY_MLP, tcfg, gnet.NETWORKS["mnist_cnn"])
    monkeypatch.setitem(gnet.DATASET, "tiny-mlp", "digits")
    # flat 784 values against the CNN's (28, 28, 1) image: the same inputs, accepted
    gnet.check_teacher(gnet.NETWORKS["mnist_mlp"], gnet.train_config("mnist_mlp"),
                       gnet.NETWORKS["mnist_cnn"])
    few = NetConfig("tiny-few", (8, 8, 1), TINY_CNN.ops[:-1] + (
        Dense("fc", "p", "logits", 48, 5, bn=False, relu=False),))
    with pytest.raises(ValueError, match="teacher 'tiny-few' has 5 outputs, the student "
                                         "'tiny-mlp' 10"):
        gnet.check_teacher(TINY_MLP, tcfg, few)
    monkeypatch.setitem(gnet.TRAIN_CONFIGS, "tiny-teacher", TrainConfig(distill_from="cnn"))
    with pytest.raises(ValueError, match="the teacher 'tiny-teacher' is itself distilled"):
        gnet.cache_key(TINY_MLP, tcfg)
    with pytest.raises(ValueError, match="needs the trained teacher"):
        real_train(TINY_MLP, tcfg, data.x_train, data.y_train, progress=False)


def test_distill_command_line(monkeypatch, capsys):
    """`--distill-from '' --epochs 30` is the MNIST MLP trained on labels (the key of the preset
    before distillation); `--distill-temp` reaches the config; a bad teacher is refused naming
    the field."""
    seen = []

    def fake(name, tcfg, **kw):
        seen.append((name, tcfg))
        return gnet.Network(gnet.NETWORKS[name], tcfg, {}, {
            "test_accuracy": 0.5, "train_accuracy": 0.5, "calib_accuracy": 0.5,
            "train_seconds": 0.0})

    monkeypatch.setattr(gnet, "load_or_train", fake)
    gnet.main(["--networks", "mnist_mlp", "--distill-from", "", "--epochs", "30"])
    assert gnet.cache_key(gnet.NETWORKS["mnist_mlp"], seen[-1][1]) == "4f937bc13a8bd02e"
    assert "calibration 50.00 %" in capsys.readouterr().out
    gnet.main(["--networks", "mnist_mlp", "--distill-temp", "8"])
    assert seen[-1][1] == gnet.train_config("mnist_mlp", distill_temp=8.0)
    with pytest.raises(SystemExit):
        gnet.main(["--networks", "mnist_mlp", "--distill-from", "nope"])
    assert "`distill_from` must be ''" in capsys.readouterr().err
