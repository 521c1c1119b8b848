"""Tests of mixed-precision training with ESSOP: the model (golden/essop_step.py) and the study
(studies/training.py).

The device model (step statistics against the formulas of the module docstring, saturation,
refresh), the pulse transfer (exact truncation, no lost χ), the outer-product modes (float, ESSOP
exact against golden.essop, ESSOP exact against fast in mean and variance with 1/sqrt(trials)
bounds), a short training run, the report files, and bad input. Every random choice comes from
np.random.default_rng with a fixed seed.
"""

import dataclasses
import json

import numpy as np
import pytest

from golden import essop as ge
from golden import essop_step as T
from golden import fp16
from golden.data import digits
from hdl.config import essop_preset
from studies import training as S

PAPER = essop_preset("paper")
TINY = essop_preset("tiny")
DEV = T.DeviceConfig()
K = 5.0  # standard errors allowed


@pytest.fixture(scope="module")
def data():
    return digits()


# -- device model ----------------------------------------------------------------------------------

def test_device_factors_mean_one_and_spread():
    n = 200_000
    f = T.device_factors(DEV, n, np.random.default_rng(1))
    assert f.min() > 0
    assert abs(f.mean() - 1) < K * DEV.d2d / np.sqrt(n)
    assert abs(f.std() / DEV.d2d - 1) < 0.02


def test_step_statistics():
    """At G = 0, one pulse on fresh devices: mean `step`, variance step²·(E f²·(1 + c2c²) − 1)
    over devices and cycles; at G = g_max/2 the mean halves."""
    rng = np.random.default_rng(2)
    n = 100_000
    f = T.device_factors(DEV, n, rng)
    for g0, scale in ((0.0, 1.0), (DEV.g_max / 2, 0.5)):
        g = np.full(n, g0)
        dg = T.pulse(DEV, g, f, rng) - g
        mean = DEV.step * scale
        var = mean ** 2 * ((1 + DEV.d2d ** 2) * (1 + DEV.c2c ** 2) - 1)
        # clipping at 0 removes a small tail (ξ < −1/c2c, 2.3 % at c2c = 0.5): allow it
        clip = mean * 0.02
        assert abs(dg.mean() - mean) < K * np.sqrt(var / n) + clip, (g0, dg.mean(), mean)
        assert abs(dg.var() / var - 1) < 0.1, (g0, dg.var(), var)
    # one device's steps spread only cycle to cycle: relative σ c2c
    one = np.full(n, 1.3)
    dg = T.pulse(DEV, np.zeros(n), one, rng)
    assert abs(dg.std() / dg.mean() - DEV.c2c) < 0.05


def test_mean_step_is_state_dependent_and_device_specific():
    g = np.array([0.0, 5.0, 12.5, 25.0])
    assert np.allclose(T.mean_step(DEV, g, 1.0), DEV.step * (1 - g / DEV.g_max))
    assert np.allclose(T.mean_step(DEV, g, 2.0), 2 * DEV.step * (1 - g / DEV.g_max))


def test_saturation_towards_g_max():
    rng = np.random.default_rng(3)
    g = np.zeros(2000)
    f = T.device_factors(DEV, g.shape, rng)
    means = []
    for _ in range(300):
        g = T.pulse(DEV, g, f, rng)
        means.append(g.mean())
        assert g.max() <= DEV.g_max and g.min() >= 0
    steps = np.diff(means)
    assert (steps > 0).all()                      # the mean rises with every pulse…
    assert steps[-1] < 0.01 * steps[0]            # …ever more slowly
    assert means[-1] > 0.99 * DEV.g_max           # towards g_max
    # without spread, 1 − G/g_max shrinks by exactly (1 − step/g_max) per pulse
    quiet = dataclasses.replace(DEV, c2c=0.0, d2d=0.0)
    g = T.apply_pulses(quiet, np.zeros(1), 1.0, np.array([40]), rng)
    assert np.isclose(g[0], DEV.g_max * (1 - (1 - DEV.step / DEV.g_max) ** 40))


def test_apply_pulses_counts_and_order():
    quiet = dataclasses.replace(DEV, c2c=0.0, d2d=0.0)
    rng = np.random.default_rng(4)
    n = np.array([0, 1, 2, 5])
    g = T.apply_pulses(quiet, np.zeros(4), 1.0, n, rng)
    want = DEV.g_max * (1 - (1 - DEV.step / DEV.g_max) ** n)
    assert np.allclose(g, want)
    with pytest.raises(ValueError, match="non-negative"):
        T.apply_pulses(quiet, np.zeros(2), 1.0, np.array([1, -1]), rng)


def test_refresh_resets_and_reprograms():
    rng = np.random.default_rng(5)
    exact = dataclasses.replace(DEV, program_noise=False)
    gp = np.array([21.0, 3.0, 24.0, 10.0])
    gn = np.array([18.0, 2.0, 5.0, 20.5])
    p, n, mask = T.refresh(exact, gp, gn, rng)
    assert mask.tolist() == [True, False, True, True]
    assert np.array_equal(p - n, gp - gn)                      # the difference survives
    assert np.array_equal(p[~mask], gp[~mask]) and np.array_equal(n[~mask], gn[~mask])
    assert np.array_equal(np.minimum(p, n)[mask], [0.0, 0.0, 0.0])   # one device reset to 0
    assert (np.maximum(p, n) < exact.refresh_at * exact.g_max).all()
    # with programming noise: the difference is kept up to the noise of golden.tile's fit
    m = 20_000
    gp, gn = np.full(m, 22.0), np.full(m, 14.0)
    p, n, mask = T.refresh(DEV, gp, gn, rng)
    assert mask.all()
    sigma = np.hypot(T.program_noise_sigma(DEV, 8.0), T.program_noise_sigma(DEV, 0.0))
    diff = p - n
    # clamping the off device at 0 biases the difference by at most E|N(0, σ0)| / 2
    assert abs(diff.mean() - 8.0) < K * sigma / np.sqrt(m) + T.program_noise_sigma(DEV, 0.0) * 0.4
    assert 0.7 * sigma < diff.std() < 1.1 * sigma


def test_program_pairs_matches_tile_programming_noise():
    from golden import tile

    cfg = tile.TileConfig(rows=1, cols=1)
    g = np.linspace(0, 25, 6)
    assert np.allclose(T.program_noise_sigma(DEV, g), tile.prog_noise_sigma(cfg, g))


# -- transfer --------------------------------------------------------------------------------------

def test_transfer_truncates_towards_zero():
    eps = 0.03
    chi = np.array([0.0, 0.99, 1.0, 2.5, -0.99, -1.0, -2.5, 7.25], dtype=np.float32) * np.float32(eps)
    n, rem = T.transfer(chi, eps)
    assert n.tolist() == [0, 0, 1, 2, 0, -1, -2, 7]
    assert rem.dtype == np.float32
    assert np.all(np.abs(rem) < eps) and np.all(rem * chi >= 0)   # the remainder keeps χ's sign
    assert np.allclose(rem, chi - n * np.float32(eps), atol=1e-9)


def test_no_lost_chi_and_pulses_on_the_right_device(data):
    """Random updates through a PCMLayer: Σ ΔW = Σ n·ε + χ per weight (to float32 rounding);
    positive n potentiates only G+, negative only G−."""
    tcfg = T.TrainConfig()
    rng = np.random.default_rng(6)
    layer = T.PCMLayer(tcfg, rng.normal(0, 0.2, (12, 7)), np.random.default_rng(7))
    total = np.zeros((12, 7))
    sent = np.zeros((12, 7), dtype=np.int64)
    count = 0
    eps = tcfg.eps
    for _ in range(400):
        dw = rng.normal(0, eps / 3, (12, 7)) + eps / 20
        gp, gn = layer.g_pos.copy(), layer.g_neg.copy()
        refreshes = layer.refreshes
        n = layer.update(dw)
        if layer.refreshes == refreshes:   # no refresh: only the pulsed devices moved
            assert np.array_equal(layer.g_pos[n <= 0], gp[n <= 0])
            assert np.array_equal(layer.g_neg[n >= 0], gn[n >= 0])
        total += dw.astype(np.float32)
        sent += n
        count += int(np.abs(n).sum())
    assert layer.pulses == count > 0
    bound = 400 * np.finfo(np.float32).eps * (np.abs(total).max() + eps) * 4
    assert np.abs(sent * np.float32(eps) + layer.chi - total).max() < bound
    assert np.all(np.abs(layer.chi) < eps)


def test_refresh_happens_in_a_layer():
    tcfg = T.TrainConfig()
    layer = T.PCMLayer(tcfg, np.zeros((4, 4)), np.random.default_rng(8))
    for _ in range(200):  # push both devices up: alternating signs
        layer.update(np.full((4, 4), 1.01 * tcfg.eps))
        layer.update(np.full((4, 4), -1.01 * tcfg.eps))
    assert layer.refreshes > 0
    assert np.maximum(layer.g_pos, layer.g_neg).max() < DEV.g_max


# -- outer products --------------------------------------------------------------------------------

def test_tile_batch_matches_tile_beats():
    rng = np.random.default_rng(9)
    x = fp16.encode(rng.random((3, 70)))
    d = fp16.encode(rng.normal(size=(3, 40)))
    xs, ds = T.tile_batch(PAPER, x, d)
    for b in range(3):
        want = ge.tile_beats(PAPER, x[b], d[b])
        assert np.array_equal(xs[b], want[0]) and np.array_equal(ds[b], want[1])
    c = rng.integers(-5, 5, size=(xs.shape[1], PAPER.rows, PAPER.cols))
    want = ge.tile_map(PAPER, np.zeros((3, 2)), 70, 40)  # shape check of untile
    assert T.untile(PAPER, c, 70, 40).shape == want.shape


def test_float_update_is_exact():
    rng = np.random.default_rng(10)
    x, d = rng.random((4, 9)), rng.normal(size=(4, 5))
    assert np.array_equal(T.weight_update("float", PAPER, x, d, 3), (x.T @ d) / 8)


def test_exact_update_matches_golden_essop():
    """weight_update "exact" on a mini-batch equals tiled_outer_product sample by sample, the
    LFSR state threaded from one sample to the next."""
    rng = np.random.default_rng(11)
    x, d = rng.random((3, 40)), rng.normal(0, 0.1, (3, 37))
    state = ge.reseed(PAPER, 123, 4567)
    dw, st, c, e = T.weight_update("exact", PAPER, x, d, 4, bl=16, state=state)
    want, s = np.zeros((40, 37)), state
    for b in range(3):
        r = ge.tiled_outer_product(PAPER, fp16.encode(x[b]), fp16.encode(d[b]), 4, 4, *s)
        s = (r.state_x, r.state_d)
        want += ge.decode(PAPER, r.c, ge.tile_map(PAPER, r.exp, 40, 37))
    assert np.array_equal(dw, want)
    assert (int(st[0]), int(st[1])) == (int(s[0]), int(s[1]))
    assert c.shape == (3 * 2 * 2, PAPER.rows, PAPER.cols) and e.shape == (12,)


@pytest.mark.parametrize("acc", [2, 4, 16])
def test_accumulated_update_is_the_sum_of_single_products(acc, data):
    """A mini-batch update through accumulated read-outs (K = acc) equals the sum of the single
    products' updates sent in the same order (tile by tile, the samples of a tile by E, each
    product read out alone): bit-exact ΔW and the same LFSR state after; fewer read-outs than products."""
    cfg = dataclasses.replace(PAPER, acc_max=16)
    info = T.training_step(T.TrainConfig(), data, 1, step=2, bl=8)[1]
    x, d = info["x"], info["d"]                               # 10 samples, 32 -> 10
    state = ge.reseed(cfg, 321, 654)
    dw, st, c, e = T.weight_update("exact", cfg, x, d, 5, bl=8, state=state, acc=acc)
    xs, ds = T.tile_batch(cfg, fp16.encode(x), fp16.encode(d))
    px, pd, tiles = T.tile_major(cfg, xs, ds, 3, 5)
    pe = ge.product_exponents(cfg, px, pd, 3, 5)[0]
    assert all((np.diff(pe[tiles == t]) >= 0).all() for t in range(xs.shape[1]))  # E in order
    singles = ge.product_stream(cfg, px, pd, 3, 5, *state)
    per_tile = np.zeros((xs.shape[1], cfg.rows, cfg.cols))
    np.add.at(per_tile, tiles, ge.decode(cfg, singles.c, singles.exp[:, None, None]))
    assert np.array_equal(dw, T.untile(cfg, per_tile, *dw.shape))
    assert (int(st[0]), int(st[1])) == (int(singles.state_x), int(singles.state_d))
    assert len(c) == len(e) < len(px) and np.abs(c).max() <= acc * 8
    one, *_ = T.weight_update("exact", cfg, x, d, 5, bl=8, state=state)   # sample by sample
    assert np.abs(dw - one).max() < np.abs(one).max()                  # another LFSR order only


def test_fp16_update_rounds_each_product_once():
    """The FP16 outer-product array's update: operands and every product rounded to binary16,
    summed over the mini-batch; within FP16 rounding of the exact update."""
    rng = np.random.default_rng(11)
    x, d = rng.random((4, 9)), rng.normal(size=(4, 5)) * 1e-2
    got = T.weight_update("fp16", PAPER, x, d, 3)
    xb, db = fp16.to_float(fp16.encode(x)), fp16.to_float(fp16.encode(d))
    want = (xb[:, :, None] * db[:, None, :]).astype(np.float16).astype(np.float64).sum(0) / 8
    assert np.array_equal(got, want)
    # three roundings (x, d, the product), each within 2^-11 of the value, per term
    bound = 3 * 2.0 ** -11 * (np.abs(x).T @ np.abs(d)) / 8
    assert np.all(np.abs(got - (x.T @ d) / 8) <= bound)


def test_training_config_takes_an_essop_config(data):
    """TrainConfig.essop: a preset name or an ESSOPConfig (the design-space search's points)."""
    mine = dataclasses.replace(PAPER, name="x", mag_bits=6, lfsr_width=10)
    assert T.TrainConfig(essop=mine).essop_cfg is mine
    assert T.TrainConfig(essop="wide8").essop_cfg == essop_preset("wide8")
    assert T.TrainConfig(essop=mine, acc=4).essop_cfg.acc_max == 4
    with pytest.raises(TypeError, match="`essop` must be an ESSOP preset name or an ESSOPConfig"):
        T.TrainConfig(essop=3)
    with pytest.raises(ValueError, match="`lr_shift` must be at most 3"):
        T.TrainConfig(essop=dataclasses.replace(mine, lr_shift_bits=2))
    tcfg = T.TrainConfig(essop=mine, epochs=1, hidden=8)
    r = T.train(dataclasses.replace(tcfg, epochs=0), "fp16", data, 1)
    assert r["steps"] == 0 and r["final"] == r["acc"][0]
    report = S.study(dataclasses.replace(tcfg, epochs=0), [1], bls=())
    assert report["config"]["essop"]["mag_bits"] == 6


def test_accumulation_in_training_config():
    assert T.TrainConfig(acc=16).essop_cfg.acc_max == 16
    assert T.TrainConfig().essop_cfg == PAPER
    with pytest.raises(ValueError, match="`acc` must be a positive int"):
        T.TrainConfig(acc=0)
    with pytest.raises(ValueError, match=r"`acc_max` must be in \[1, 1024\]"):
        T.TrainConfig(acc=2048)
    x, d = np.ones((2, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match=r"`acc` must be an int in \[1, 1\]"):
        T.weight_update("exact", PAPER, x, d, 3, bl=8, state=ge.reseed(PAPER, 1, 1), acc=4)


@pytest.mark.parametrize("bl", [8, 32])
def test_exact_and_fast_same_moments(bl, data):
    """Over T trials (exact: one reseed per trial; fast: one rng draw per trial) of the outer
    product of a real training step's x and δ: per-weight means within K·sqrt(SE_e² + SE_f²) plus
    the LFSR's deficit; total variance within 10 % (the LFSR's variance deviation, below 7 %,
    see golden/essop.py) plus K standard errors."""
    info = T.training_step(T.TrainConfig(), data, 1, step=2, bl=bl)[0]
    x, d = info["x"][:1], info["d"][:1]
    trials = 300
    seeds = np.random.default_rng(12).integers(1, PAPER.lfsr_max + 1, size=(trials, 2))
    ex = np.stack([T.weight_update("exact", PAPER, x, d, 5, bl=bl, state=ge.reseed(PAPER, *s))[0]
                   for s in seeds])
    rng = np.random.default_rng(13)
    fa = np.stack([T.weight_update("fast", PAPER, x, d, 5, bl=bl, rng=rng) for _ in range(trials)])
    exact = T.weight_update("float", PAPER, x, d, 5)
    unit = np.abs(exact).max() / 2 ** 8 / bl * 4  # a generous count unit for the deficit term
    se = np.sqrt((ex.var(0) + fa.var(0)) / trials)
    deficit = bl / PAPER.lfsr_max * unit + 0.5 * unit / np.sqrt(trials)
    worst = np.max(np.abs(ex.mean(0) - fa.mean(0)) / (K * se + deficit))
    assert worst <= 1, worst
    ve, vf = ex.var(0).sum(), fa.var(0).sum()
    assert abs(ve / vf - 1) < 0.1 + K * np.sqrt(2 / trials), (ve, vf)
    # both estimate the product of the 8-bit magnitudes, which is near the float product
    xs, ds = T.tile_batch(PAPER, fp16.encode(x), fp16.encode(d))
    q = T.untile(PAPER, ge.quantised_product(PAPER, xs[0], ds[0], 5), *exact.shape)
    assert np.all(np.abs(fa.mean(0) - q) <= K * np.sqrt(fa.var(0) / trials) + 1e-12)
    assert np.abs(q - exact).max() < 0.04 * np.abs(exact).max()


def test_moments_test_detects_a_wrong_bl(data):
    """The variance check of the test above is sharp enough to see BL 8 against BL 32."""
    info = T.training_step(T.TrainConfig(), data, 1, step=2)[0]
    x, d = info["x"][:1], info["d"][:1]
    rng = np.random.default_rng(14)
    v8 = np.stack([T.weight_update("fast", PAPER, x, d, 5, bl=8, rng=rng) for _ in range(200)]).var(0).sum()
    v32 = np.stack([T.weight_update("fast", PAPER, x, d, 5, bl=32, rng=rng) for _ in range(200)]).var(0).sum()
    assert abs(v8 / v32 - 1) > 0.1 + K * np.sqrt(2 / 200)


# -- training --------------------------------------------------------------------------------------

def test_short_training_improves_accuracy(data):
    tcfg = T.TrainConfig(epochs=1)
    r = T.train(tcfg, "fast", data, 1, bl=32)
    assert r["acc"][0] < 0.3 and r["acc"][-1] > 0.85, r["acc"]
    assert r["pulses"] > 0 and r["steps"] == -(-len(data.y_train) // tcfg.batch)
    base = T.train(tcfg, "fp32", data, 1)
    assert base["acc"][-1] > 0.85 and base["pulses"] == 0


def test_forward_through_tile_tracks_float(data):
    net = T.Network(T.TrainConfig(), "float", 1)
    x = data.x_test[:50]
    y_tile = net.matmul(0, x)
    y_float = x @ net.layers[0].w
    err = np.sqrt(np.mean((y_tile - y_float) ** 2)) / np.sqrt(np.mean(y_float ** 2))
    assert err < 0.01, err          # ADC quantisation and calibrated gains only
    assert net.layers[0].tile.saturated == 0


def test_report_files(tmp_path, data):
    tcfg = T.TrainConfig(epochs=1, hidden=16)
    report = S.study(tcfg, [1, 2], bls=(32,))
    S.write_report(report, tmp_path)
    got = json.loads((tmp_path / "training.json").read_text())
    assert [r["key"] for r in got["results"]] == ["fp32", "float", "fast_bl32"]
    assert all(len(r["acc_per_seed"]) == 2 and len(r["curve_mean"]) == 2 for r in got["results"])
    assert "Smallest ESSOP BL" in (tmp_path / "training.md").read_text()
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_lr_schedule():
    tcfg = T.TrainConfig(epochs=8, lr_shift=5)
    assert [tcfg.lr_shift_at(e) for e in range(8)] == [5, 5, 5, 5, 6, 6, 7, 7]


# -- bad input -------------------------------------------------------------------------------------

def test_nan_in_delta_raises():
    x, d = np.ones((1, 4)), np.array([[0.1, np.nan, 0.2]])
    for mode, kw in (("fast", dict(bl=32, rng=np.random.default_rng(0))),
                     ("exact", dict(bl=32, state=ge.reseed(PAPER, 1, 1))), ("float", {})):
        with pytest.raises(ValueError, match="`d` holds NaN or infinity"):
            T.weight_update(mode, PAPER, x, d, 5, **kw)
    with pytest.raises(ValueError, match="beyond binary16"):
        T.weight_update("fast", PAPER, x, np.array([[1e5, 0, 0]]), 5, bl=32, rng=np.random.default_rng(0))


@pytest.mark.parametrize("bl", [0, 3, 12, 256, 32.0, True])
def test_bad_bl_raises(bl):
    with pytest.raises(ValueError, match="`bl` must be a power of two in \\[1, 128\\]"):
        T.weight_update("fast", PAPER, np.ones((1, 4)), np.ones((1, 3)), 5, bl=bl,
                        rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="power of two in \\[1, 16\\]"):
        T.log2_of_bl(TINY, 32)


def test_bad_arguments_raise(data):
    with pytest.raises(ValueError, match="`mode`"):
        T.weight_update("stochastic", PAPER, np.ones((1, 4)), np.ones((1, 3)), 5)
    with pytest.raises(ValueError, match="`lr_shift`"):
        T.weight_update("float", PAPER, np.ones((1, 4)), np.ones((1, 3)), 32)
    with pytest.raises(ValueError, match="same B"):
        T.weight_update("float", PAPER, np.ones((2, 4)), np.ones((1, 3)), 5)
    with pytest.raises(ValueError, match="needs the LFSR `state`"):
        T.weight_update("exact", PAPER, np.ones((1, 4)), np.ones((1, 3)), 5, bl=8)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        T.train(T.TrainConfig(epochs=1), "sgd", data, 1)
    with pytest.raises(ValueError, match="`bl`"):
        T.train(T.TrainConfig(epochs=1), "fast", data, 1, bl=48)
    with pytest.raises(ValueError, match="`refresh_at`"):
        T.DeviceConfig(refresh_at=1.5)
    with pytest.raises(ValueError, match="`step` must be below"):
        T.DeviceConfig(step=30.0)
    with pytest.raises(ValueError, match="`lr_shift`"):
        T.TrainConfig(lr_shift=31)
    with pytest.raises(ValueError, match="`chi` holds NaN"):
        T.transfer(np.array([np.nan]), 0.1)
