"""Tests of the analog tile golden model (golden/tile.py).

Statistical tests draw tens of thousands of devices and use bounds of 5 standard errors
(∝ 1/sqrt(n)), so a wrong coefficient fails them while a correct model passes with a false
alarm rate below 1e-6 per check. Exact tests use integer-coded conductances (dyadic weights on
g_max = 32, whose targets are integers) and plain Python integers as the reference.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import tile as T

SMALL = T.TileConfig(rows=32, cols=24)
# weights m/32 on g_max 32: every target conductance is the integer m, every charge an integer
DYADIC = T.TileConfig(rows=32, cols=24, g_max=32.0)


def dyadic_weights(rng, shape):
    return rng.integers(-32, 33, shape) / 32.0


def py_floor_adc(q, gain, lsb, adc_max):
    """Plain Python ADC: (count, high, low) of one value."""
    v = math.floor(gain * q / lsb)
    return min(max(v, 0), adc_max), v > adc_max, v < 0


def folded_normal_mean(mu, sigma):
    """E|X| for X ~ N(mu, sigma²)."""
    phi = math.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi)
    return sigma * 2 * phi + mu * math.erf(mu / (sigma * math.sqrt(2)))


# -- config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, exc, words", [
    ("rows", 0, ValueError, "`rows` must be in [1, 4096], not 0"),
    ("cols", 2.0, TypeError, "`cols` must be an int"),
    ("rows", True, TypeError, "`rows` must be an int"),
    ("g_max", 0.0, ValueError, "`g_max` must be > 0.0, not 0.0"),
    ("g_max", float("nan"), ValueError, "`g_max` must be finite"),
    ("devices", 3, ValueError, "`devices` must be one of (1, 2), not 3"),
    ("input_bits", 1, ValueError, "`input_bits` must be in [2, 16], not 1"),
    ("adc_bits", 25, ValueError, "`adc_bits` must be in [1, 24], not 25"),
    ("phases", 2, ValueError, "`phases` must be one of (1, 4), not 2"),
    ("adc_range", -1.0, ValueError, "`adc_range` must be > 0.0"),
    ("drift", 1, TypeError, "`drift` must be a bool, not int 1"),
    ("adc_gain_sigma", -0.1, ValueError, "`adc_gain_sigma` must be >= 0.0, not -0.1"),
    ("adc_gain_bound", 1.5, ValueError, "`adc_gain_bound` must be <= 0.99, not 1.5"),
    ("adc_gain_bound", 0.0, ValueError, "`adc_gain_bound` must be > 0 when `adc_gain_sigma`"),
    ("output_noise", -1.0, ValueError, "`output_noise` must be >= 0.0"),
    ("t0", 0, ValueError, "`t0` must be > 0.0, not 0"),
    ("t_read", "1", TypeError, "`t_read` must be a number"),
])
def test_config_rejects(field, value, exc, words):
    with pytest.raises(exc) as e:
        T.TileConfig(**{field: value})
    assert words in str(e.value)


def test_config_derived():
    cfg = T.TileConfig()
    assert (cfg.x_max, cfg.adc_max) == (127, 4095)
    assert cfg.lsb == 64.0 * 25.0 * 127 / 4095
    assert T.TileConfig(devices=2, input_bits=4, adc_range=2.0).lsb == 2.0 * 2 * 25.0 * 7 / 4095
    ideal = cfg.ideal
    assert not (ideal.programming_noise or ideal.drift or ideal.read_noise)
    assert ideal.adc_gain_sigma == 0 and ideal.output_noise == 0 and ideal.rows == 256


def test_inputs_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"`weights` must lie in \[-1, 1\], found 1.5"):
        T.program(SMALL, np.full((4, 4), 1.5), rng)
    with pytest.raises(ValueError, match="at most \\(32, 24\\)"):
        T.program(SMALL, np.zeros((33, 4)), rng)
    with pytest.raises(ValueError, match="NaN"):
        T.program(SMALL, np.full((2, 2), np.nan), rng)
    g = np.ones((32, 24))
    with pytest.raises(ValueError, match=r"`x` must be in \[-127, 127\].*found 128"):
        T.mvm(SMALL, np.full((1, 32), 128), g, g)
    with pytest.raises(ValueError, match="non-integer"):
        T.mvm(SMALL, np.full((1, 32), 0.5), g, g)
    with pytest.raises(ValueError, match="rows = 32"):
        T.mvm(SMALL, np.zeros((1, 31), dtype=int), g, g)
    with pytest.raises(ValueError, match="`t` must be >= 0.0, not -1.0"):
        T.drift(SMALL, T.program(SMALL, np.zeros((2, 2)), rng), -1.0, rng)
    with pytest.raises(TypeError, match="`rng \\(read noise\\)` must be a np.random.Generator"):
        T.drift(SMALL, T.program(SMALL, np.zeros((2, 2)), rng), 1.0, None)
    with pytest.raises(ValueError, match="`lsb` must be positive"):
        T.adc(SMALL, g, g, 1.0, 1.0, 0.0)


# -- each stage off alone is ideal -----------------------------------------------------------------

def test_target_conductances_by_hand():
    cfg = T.TileConfig(rows=2, cols=2, g_max=20.0)
    gp, gn = T.target_conductances(cfg, [[0.5, -0.25], [0.0, -1.0]])
    assert np.array_equal(gp, [[10.0, 0.0], [0.0, 0.0]])
    assert np.array_equal(gn, [[0.0, 5.0], [0.0, 20.0]])


@pytest.mark.parametrize("devices", [1, 2])
def test_programming_noise_off_is_target(devices):
    cfg = T.TileConfig(rows=32, cols=24, devices=devices, programming_noise=False)
    w = np.random.default_rng(1).uniform(-1, 1, (32, 24))
    p = T.program(cfg, w, np.random.default_rng(2))
    assert np.array_equal(p.g_pos, devices * np.maximum(w, 0) * 25.0)
    assert np.array_equal(p.g_neg, devices * np.maximum(-w, 0) * 25.0)
    assert np.array_equal(p.g_pos, p.target_pos) and p.nu_pos.shape == (devices, 32, 24)
    noisy = T.program(T.TileConfig(rows=32, cols=24, devices=devices), w, np.random.default_rng(2))
    assert not np.array_equal(noisy.g_pos, p.g_pos)


def test_drift_and_read_noise_off_keep_programmed():
    w = np.random.default_rng(1).uniform(-1, 1, (32, 24))
    p = T.program(SMALL, w, np.random.default_rng(2))
    off = T.TileConfig(rows=32, cols=24, drift=False, read_noise=False)
    gp, gn = T.drift(off, p, 86400.0, np.random.default_rng(3))
    assert np.array_equal(gp, p.g_pos) and np.array_equal(gn, p.g_neg)
    only_drift = T.TileConfig(rows=32, cols=24, read_noise=False)
    assert np.all(T.drift(only_drift, p, 86400.0, None)[0] < p.g_pos + (p.g_pos == 0))
    only_noise = T.TileConfig(rows=32, cols=24, drift=False)
    assert not np.array_equal(T.drift(only_noise, p, 86400.0, np.random.default_rng(3))[0], p.g_pos)
    # at programming time no read noise has accumulated yet
    assert np.array_equal(T.drift(only_noise, p, 0.0, np.random.default_rng(3))[0], p.g_pos)


def test_gains_off_and_output_noise_off():
    cfg = T.TileConfig(rows=4, cols=16, adc_gain_sigma=0.0)
    gp, gn = T.adc_gains(cfg, np.random.default_rng(0))
    assert np.array_equal(gp, np.ones(16)) and np.array_equal(gn, np.ones(16))
    q = np.random.default_rng(1).uniform(0, 5000, (8, 16))
    p1, n1 = T.adc(cfg, q, q, 1.0, 1.0, 2.0)
    assert np.array_equal(p1, np.clip(np.floor(q / 2.0), 0, 4095))
    noisy = T.TileConfig(rows=4, cols=16, output_noise=0.5)
    with pytest.raises(ValueError, match="`output_noise` is 0.5: `adc` needs an `rng`"):
        T.adc(noisy, q, q, 1.0, 1.0, 2.0)
    p2, _ = T.adc(noisy, q, q, 1.0, 1.0, 2.0, np.random.default_rng(2))
    assert not np.array_equal(p1, p2) and np.abs(p2 - p1).max() <= 4


def test_ideal_tile_is_exact_integer_mvm():
    rng = np.random.default_rng(5)
    w = dyadic_weights(rng, (32, 24))
    x = rng.integers(0, 128, (50, 32))
    tile = T.Tile(DYADIC.ideal, w, seed=11)
    p, n = tile.read(x, 3600.0, lsb=4.0)
    codes = (w * 32).astype(np.int64)
    for v in range(0, 50, 7):          # plain Python ints, every column
        for j in range(24):
            sp = sum(int(x[v, i]) * max(int(codes[i, j]), 0) for i in range(32))
            sn = sum(int(x[v, i]) * max(-int(codes[i, j]), 0) for i in range(32))
            assert (p[v, j], n[v, j]) == (min(sp // 4, 4095), min(sn // 4, 4095))


# -- reproducibility and independent streams -------------------------------------------------------

def test_tile_reproducible_from_seed():
    w = np.random.default_rng(1).uniform(-1, 1, (32, 24))
    x = np.random.default_rng(2).integers(0, 64, (20, 32))
    cfg = T.TileConfig(rows=32, cols=24, output_noise=0.3)
    a, b, c = T.Tile(cfg, w, 7), T.Tile(cfg, w, 7), T.Tile(cfg, w, 8)
    b.read(x, 60.0)                    # another time first: the draws at t do not depend on it
    b._adc_rng = b._rng(T._ADC_NOISE)            # restart b's ADC noise stream to compare the reads
    ra, rb, rc = a.read(x, 3600.0), b.read(x, 3600.0), c.read(x, 3600.0)
    assert np.array_equal(ra[0], rb[0]) and np.array_equal(ra[1], rb[1])
    assert not np.array_equal(ra[0], rc[0])
    assert np.array_equal(a.conductances(60.0)[0], b.conductances(60.0)[0])
    assert not np.array_equal(a.conductances(60.0)[0], a.conductances(61.0)[0])


def test_read_noise_draws_differ_between_times():
    """The read noise at each time is its own draw (keyed by t), not one pattern rescaled."""
    cfg = T.TileConfig(rows=64, cols=64, drift=False, programming_noise=False)
    tile = T.Tile(cfg, np.full((64, 64), 0.5), 9)
    z = [(tile.conductances(t)[0] / 12.5 - 1).ravel() for t in (60.0, 3600.0)]
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < 5 / 64


def test_switching_one_noise_off_keeps_other_draws():
    w = np.random.default_rng(1).uniform(-1, 1, (32, 24))
    base = dict(rows=32, cols=24, drift=False)
    on = T.Tile(T.TileConfig(**base), w, 3)
    off = T.Tile(T.TileConfig(**base, programming_noise=False), w, 3)
    assert np.array_equal(on.programmed.nu_pos, off.programmed.nu_pos)
    assert np.array_equal(on.gain_neg, off.gain_neg)
    # the read noise draws: relative deviation from the programmed value, where not clamped
    ok = (on.programmed.g_pos > 0) & (off.programmed.g_pos > 0)
    ron = on.conductances(86400.0)[0][ok] / on.programmed.g_pos[ok] - 1
    roff = off.conductances(86400.0)[0][ok] / off.programmed.g_pos[ok] - 1
    ok = (ron > -1) & (roff > -1)
    assert ok.sum() > 100 and np.allclose(ron[ok], roff[ok], rtol=1e-9, atol=1e-12)
    no_gain = T.Tile(T.TileConfig(**base, adc_gain_sigma=0.0), w, 3)
    assert np.array_equal(no_gain.programmed.dev_pos, on.programmed.dev_pos)
    assert np.array_equal(no_gain.conductances(86400.0)[1], on.conductances(86400.0)[1])
    no_read = T.Tile(T.TileConfig(**base, read_noise=False), w, 3)
    assert np.array_equal(no_read.gain_pos, on.gain_pos)
    assert np.array_equal(no_read.programmed.dev_neg, on.programmed.dev_neg)


# -- device statistics -----------------------------------------------------------------------------

LEVELS = (0.2, 0.5, 0.8, 1.0)


def test_programming_noise_sigma_matches_fit():
    n_per = 256 * 64
    cfg = T.TileConfig(rows=256, cols=64 * len(LEVELS))
    w = np.repeat(np.array(LEVELS), 64)[None, :].repeat(256, axis=0)
    p = T.program(cfg, w, np.random.default_rng(10))
    c0, c1, c2 = 0.26348, 1.9650, -1.1731
    for k, lv in enumerate(LEVELS):
        d = (p.g_pos[:, 64 * k:64 * (k + 1)] - 25.0 * lv).ravel()
        want = c0 + c1 * lv + c2 * lv * lv
        assert abs(d.std() / want - 1) < 5 / math.sqrt(2 * n_per), (lv, d.std(), want)
        assert abs(d.mean()) < 5 * want / math.sqrt(n_per)
    # the devices of the off polarity (target 0): N(0, c0) clamped at 0
    off = p.g_neg.ravel()
    n = off.size
    assert off.min() == 0.0 and abs((off == 0).mean() - 0.5) < 5 * 0.5 / math.sqrt(n)
    assert abs(off.mean() / (c0 / math.sqrt(2 * math.pi)) - 1) < 5 * 1.2 / math.sqrt(n)


def test_programming_noise_scales_with_g_max():
    cfg = T.TileConfig(rows=256, cols=64, g_max=50.0)
    p = T.program(cfg, np.ones((256, 64)), np.random.default_rng(3))
    d = (p.g_pos - 50.0).ravel()
    want = 2 * (0.26348 + 1.9650 - 1.1731)
    assert abs(d.std() / want - 1) < 5 / math.sqrt(2 * d.size)


@pytest.mark.parametrize("lv", (0.0, 0.01, 0.1, 0.5, 1.0))
def test_drift_exponent_per_spec(lv):
    cfg = T.TileConfig(rows=128, cols=128)
    p = T.program(cfg, np.full((128, 128), lv), np.random.default_rng(4))
    r = max(lv, 1e-7)
    mu = min(max(-0.0155 * math.log(r) + 0.0244, 0.049), 0.1)
    sd = min(max(-0.0125 * math.log(r) - 0.0059, 0.008), 0.045)
    nu = p.nu_pos.ravel()
    assert nu.min() >= 0
    assert abs(nu.mean() - folded_normal_mean(mu, sd)) < 5 * sd / math.sqrt(nu.size), (nu.mean(), mu)
    assert abs(nu.std() / sd - 1) < 0.05  # folding shrinks σ by < 3 % at these means


@pytest.mark.parametrize("devices", [1, 2])
def test_drift_law_exact(devices):
    cfg = T.TileConfig(rows=8, cols=8, devices=devices, programming_noise=False, read_noise=False)
    w = np.random.default_rng(6).uniform(-1, 1, (8, 8))
    p = T.program(cfg, w, np.random.default_rng(7))
    t = 30 * 86400.0
    gp, gn = T.drift(cfg, p, t, None)
    for i in range(8):
        for j in range(8):
            want = sum(25.0 * max(w[i, j], 0) * ((t + 20.0) / 20.0) ** -p.nu_pos[d, i, j]
                       for d in range(devices))
            assert math.isclose(gp[i, j], want, rel_tol=1e-12, abs_tol=1e-300)


def test_read_noise_sigma():
    cfg = T.TileConfig(rows=256, cols=128, programming_noise=False, drift=False)
    p = T.program(cfg, np.full((256, 128), 0.5), np.random.default_rng(8))
    t = 3600.0
    g, _ = T.drift(cfg, p, t, np.random.default_rng(9))
    rel = (g / 12.5 - 1).ravel()
    want = 0.0088 / 0.5 ** 0.65 * math.sqrt(math.log((t + 250e-9) / 500e-9))
    assert abs(rel.std() / want - 1) < 5 / math.sqrt(2 * rel.size)
    assert abs(rel.mean()) < 5 * want / math.sqrt(rel.size)


# -- ADC -------------------------------------------------------------------------------------------

def test_adc_gains_truncated():
    cfg = T.TileConfig(rows=1, cols=4096)
    gp, gn = T.adc_gains(cfg, np.random.default_rng(12))
    g = np.concatenate([gp, gn])
    assert np.abs(g - 1).max() <= 0.21 and np.abs(g - 1).max() > 0.19
    b = 3.0
    phi = math.exp(-b * b / 2) / math.sqrt(2 * math.pi)
    want = 0.07 * math.sqrt(1 - 2 * b * phi / math.erf(b / math.sqrt(2)))
    assert abs(g.std() / want - 1) < 5 / math.sqrt(2 * g.size)


def test_adc_floor_and_saturation_against_python():
    cfg = T.TileConfig(rows=1, cols=16, adc_bits=6)
    rng = np.random.default_rng(13)
    lsb = 0.75
    q = rng.uniform(-10, 60, (40, 16))
    q[:5] = rng.integers(-3, 70, (5, 16)) * lsb       # exact multiples of the LSB
    q[5, :] = 63 * lsb                                 # exactly full scale: no saturation
    q[6, :] = 64 * lsb                                 # one count above: saturates
    gp = np.where(np.arange(16) < 4, 1.0, rng.uniform(0.8, 1.2, 16))
    gn = rng.uniform(0.8, 1.2, 16)
    p, n, sat = T.adc(cfg, q, q[::-1], gp, gn, lsb, return_saturated=True)
    assert p.dtype == np.int64
    highs = lows = 0
    for v in range(40):
        for j in range(16):
            cp, hp, lp = py_floor_adc(float(q[v, j]), float(gp[j]), lsb, 63)
            cn, hn, ln = py_floor_adc(float(q[39 - v, j]), float(gn[j]), lsb, 63)
            assert (p[v, j], n[v, j]) == (cp, cn)
            assert (sat.high_pos[v, j], sat.low_pos[v, j], sat.high_neg[v, j], sat.low_neg[v, j]) \
                == (hp, lp, hn, ln)
            highs += hp + hn
            lows += lp + ln
    assert p[5, 0] == 63 and not sat.high_pos[5, 0] and sat.high_pos[6, 0]
    assert highs > 0 and lows > 0 and sat.count == highs + lows


# -- MVM modes and exact integer arithmetic --------------------------------------------------------

def test_four_phase_equals_one_phase_for_non_negative_inputs():
    rng = np.random.default_rng(14)
    gp, gn = rng.integers(0, 33, (2, 32, 24))
    x = rng.integers(0, 128, (30, 32))
    one = T.mvm(SMALL, x, gp, gn)
    four = T.mvm(T.TileConfig(rows=32, cols=24, phases=4), x, gp, gn)
    assert one[0].dtype == np.int64
    assert np.array_equal(one[0], four[0]) and np.array_equal(one[1], four[1])
    assert np.array_equal(one[0], x @ gp) and np.array_equal(one[1], x @ gn)


def test_signed_inputs_one_phase_vs_four_phase():
    rng = np.random.default_rng(15)
    gp, gn = rng.integers(0, 33, (2, 32, 24))
    x = rng.integers(-127, 128, (30, 32))
    qp1, qn1 = T.mvm(SMALL, x, gp, gn)
    cfg4 = T.TileConfig(rows=32, cols=24, phases=4)
    qp4, qn4 = T.mvm(cfg4, x, gp, gn)
    xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
    assert np.array_equal(qp4, xp @ gp + xn @ gn) and np.array_equal(qn4, xp @ gn + xn @ gp)
    assert qp4.min() >= 0 and qn4.min() >= 0
    assert np.array_equal(qp4 - qn4, x @ (gp - gn)) and np.array_equal(qp1 - qn1, x @ (gp - gn))
    assert np.array_equal(qp1, x @ gp) and qp1.min() < 0      # 1-phase: signed line charges
    big = T.TileConfig(rows=32, cols=24, adc_bits=20)
    _, _, sat1 = T.adc(big, qp1, qn1, 1.0, 1.0, 1.0, return_saturated=True)
    _, _, sat4 = T.adc(big, qp4, qn4, 1.0, 1.0, 1.0, return_saturated=True)
    assert sat1.low_pos.any() and sat1.count > 0 and sat4.count == 0


def test_mvm_float_conductances_and_vector_input():
    rng = np.random.default_rng(16)
    gp, gn = rng.uniform(0, 25, (2, 32, 24))
    x = rng.integers(-127, 128, (5, 32))
    qp, qn = T.mvm(SMALL, x, gp, gn)
    assert qp.dtype == np.float64 and np.allclose(qp, x @ gp, rtol=1e-12)
    qp0, qn0 = T.mvm(SMALL, x[0], gp, gn)
    assert qp0.shape == (24,) and np.allclose(qn0, x[0] @ gn, rtol=1e-12)


def test_int_matmul_exact():
    rng = np.random.default_rng(17)
    a = rng.integers(-2 ** 20, 2 ** 20, (40, 300))
    b = rng.integers(-2 ** 20, 2 ** 20, (300, 30))
    assert np.array_equal(T.int_matmul(a, b), a @ b)       # numpy's int64 matmul: no BLAS
    # near the bound: |sums| reach 2^53 − 1 and 2^53 − 2 + ..., all exact
    a = np.array([[2 ** 52, 2 ** 52 - 1], [-(2 ** 52), -(2 ** 52 - 1)]])
    b = np.array([[1, 1], [1, 0]])
    got = T.int_matmul(a, b)
    assert got.tolist() == [[2 ** 53 - 1, 2 ** 52], [-(2 ** 53 - 1), -(2 ** 52)]]
    assert T.int_matmul([[2 ** 52, 2 ** 52]], [[1], [1]]).tolist() == [[2 ** 53]]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(m=st.integers(1, 4), k=st.integers(1, 40), n=st.integers(1, 4), a_bits=st.integers(0, 52),
       seed=st.integers(0, 2 ** 32 - 1))
def test_int_matmul_against_python_ints(m, k, n, a_bits, seed):
    """Magnitudes drawn up to the guard (max|a|·k·max|b| <= 2^53, so the sums can come close to
    2^53): exact against Python ints, and the int64 fallback agrees."""
    rng = np.random.default_rng(seed)
    amax = min(2 ** a_bits, 2 ** 53 // k)
    bmax = max(1, 2 ** 53 // (amax * k))
    a = rng.integers(-amax, amax + 1, (m, k))
    b = rng.integers(-bmax, bmax + 1, (k, n))
    want = [[sum(int(a[i, j]) * int(b[j, c]) for j in range(k)) for c in range(n)] for i in range(m)]
    assert T.int_matmul(a, b).tolist() == want
    assert T.int_matmul(a, b, fallback=True).tolist() == want


def test_int_matmul_guard():
    a = np.array([[2 ** 53, 1]])
    b = np.array([[1], [1]])
    # what the guard prevents: float64 loses the 1
    assert int((a.astype(np.float64) @ b.astype(np.float64))[0, 0]) != 2 ** 53 + 1
    with pytest.raises(ValueError, match=r"may reach 9007199254740993 > 2\^53"):
        T.int_matmul(a, b)
    assert T.int_matmul(a, b, fallback=True).tolist() == [[2 ** 53 + 1]]
    with pytest.raises(ValueError, match="may reach 1208925819614629174706176, beyond int64"):
        T.int_matmul([[2 ** 40]], [[2 ** 40]], fallback=True)
    with pytest.raises(ValueError, match="over k = 2 exceed int64"):
        T.int_matmul([[2 ** 62, 2 ** 62]], [[1], [1]], fallback=True)
    with pytest.raises(ValueError, match=r"\(m, k\) and \(k, n\)"):
        T.int_matmul(np.ones((2, 3), dtype=int), np.ones((2, 3), dtype=int))


# -- calibration and drift compensation ------------------------------------------------------------

@pytest.mark.parametrize("noise, tol", [(0.0, 7e-4), (0.5, 1e-3)])
def test_calibration_recovers_gains(noise, tol):
    cfg = T.TileConfig(rows=256, cols=256, output_noise=noise)
    gp, gn = T.adc_gains(cfg, np.random.default_rng(18))
    ep, en = T.calibrate_gains(cfg, gp, gn, cfg.lsb, np.random.default_rng(19), reads=8)
    assert np.abs(ep / gp - 1).max() < tol and np.abs(en / gn - 1).max() < tol
    assert np.abs(gp - 1).max() > 0.1                     # the gains to recover are not trivial


def test_calibration_charges_leave_room_for_the_largest_gain():
    cfg = T.TileConfig(rows=8, cols=8, adc_bits=10)
    q = T.calibration_charges(cfg, 2.0, levels=(0.25, 1.0))
    # level 1.0 at the largest gain 1.21 reads exactly full scale: 1023 · 2.0 charge
    assert np.allclose(q * 1.21, [0.25 * 1023 * 2.0, 1023 * 2.0], rtol=1e-15)


def test_tile_calibrate_and_reject_saturating_levels():
    tile = T.Tile(T.TileConfig(rows=8, cols=64, output_noise=0.5), np.zeros((8, 64)), 1)
    ep, en = tile.calibrate(reads=4)
    assert np.abs(ep / tile.gain_pos - 1).max() < 2e-3
    narrow = T.Tile(T.TileConfig(rows=8, cols=64), np.zeros((8, 10)), 1)   # uses 10 of 64 ADCs
    ep, en = narrow.calibrate()
    assert ep.shape == (10,) and np.abs(en / narrow.gain_neg - 1).max() < 7e-4
    cfg = T.TileConfig(rows=8, cols=64, adc_gain_bound=0.21)
    with pytest.raises(ValueError, match="calibration reads saturated 64 times"):
        T.calibrate_gains(cfg, 1.3, 1.0, 1.0, None, levels=(0.2, 1.0), reads=1)
    with pytest.raises(ValueError, match="`levels` must be at least two distinct"):
        T.calibrate_gains(cfg, 1.0, 1.0, 1.0, None, levels=(0.5,))


def test_drift_compensation_restores_mean_read():
    cfg = T.TileConfig(rows=256, cols=128)
    rng = np.random.default_rng(20)
    w = rng.uniform(-1, 1, (256, 128))
    tile = T.Tile(cfg, w, 21)
    x = rng.integers(0, 40, (200, 256)) * (rng.random((200, 256)) > 0.3)
    x_ref = np.full((4, 256), 8)
    r0 = tile.drift_reference(x_ref, 0.0)
    mean0 = np.abs(np.subtract(*tile.read(x, 0.0))).mean()
    for t in (3600.0, 86400.0, 30 * 86400.0):
        p, n, sat = tile.read(x, t, return_saturated=True)
        assert sat.count == 0
        mean_t = np.abs(p - n).mean()
        assert mean_t < 0.85 * mean0                       # drift is real
        f = T.drift_factor(r0, tile.drift_reference(x_ref, t))
        assert abs(f * mean_t / mean0 - 1) < 0.02, (t, f, mean_t, mean0)
    with pytest.raises(ValueError, match="saturated"):
        tile.drift_reference(np.full((1, 256), 127), 0.0)
    with pytest.raises(ValueError, match="`ref_now` must be > 0.0"):
        T.drift_factor(1.0, 0.0)


# -- layers larger than a tile ---------------------------------------------------------------------

def test_split_layer_blocks():
    s = T.split_layer(SMALL, (70, 50))
    assert (s.row_edges, s.col_edges) == ((0, 32, 64, 70), (0, 24, 48, 50))
    assert (s.row_tiles, s.col_tiles) == (3, 3)
    w = np.arange(70 * 50).reshape(70, 50)
    assert np.array_equal(s.block(w, 2, 1), w[64:70, 24:48])
    assert T.split_layer(SMALL, np.zeros((32, 24))).row_edges == (0, 32)
    with pytest.raises(ValueError, match="2-D"):
        T.split_layer(SMALL, (3,))


def test_split_recomposes_unsplit_exactly():
    rng = np.random.default_rng(22)
    gp, gn = rng.integers(0, 100, (2, 70, 50))
    x = rng.integers(0, 128, (30, 70))
    cfg = T.TileConfig(rows=32, cols=24, adc_bits=24, adc_gain_sigma=0.0)
    s = T.split_layer(cfg, gp)

    def step(r, k, res):  # one tile's ADC counts, P − N through the NMPU residual input
        qp, qn = T.mvm(cfg, s.inputs(x, r), s.block(gp, r, k), s.block(gn, r, k))
        p, n = T.adc(cfg, qp, qn, 1.0, 1.0, 1.0)
        return p - n + (0 if res is None else res)

    want = x @ (gp - gn)
    assert np.array_equal(T.compose_row_tiles(s, step), want)
    parts = [[np.subtract(*T.mvm(cfg, s.inputs(x, r), s.block(gp, r, k), s.block(gn, r, k)))
              for k in range(3)] for r in range(3)]
    assert np.array_equal(T.sum_row_tiles(s, parts), want)
    # the chain must carry the residual: dropping it keeps only the last row tile
    last_only = T.compose_row_tiles(s, lambda r, k, res: step(r, k, None))
    assert not np.array_equal(last_only, want)


def test_tile_layer_ideal_reads_recompose():
    rng = np.random.default_rng(23)
    w = dyadic_weights(rng, (70, 50))
    x = rng.integers(0, 128, (10, 70))
    cfg = T.TileConfig(rows=32, cols=24, g_max=32.0, adc_bits=24).ideal
    split, tiles = T.tile_layer(cfg, w, 4)
    assert [[t.programmed.shape for t in row] for row in tiles][2] == [(6, 24), (6, 24), (6, 2)]
    y = T.compose_row_tiles(split, lambda r, k, res: np.subtract(
        *tiles[r][k].read(split.inputs(x, r), 60.0, lsb=1.0)) + (0 if res is None else res))
    assert np.array_equal(y, x @ (w * 32).astype(np.int64))
    _, noisy = T.tile_layer(T.TileConfig(rows=32, cols=24), w, 4)
    again = T.tile_layer(T.TileConfig(rows=32, cols=24), w, 4)[1]
    assert np.array_equal(noisy[1][2].programmed.dev_pos, again[1][2].programmed.dev_pos)
    assert not np.array_equal(noisy[0][0].gain_pos, noisy[1][0].gain_pos)   # tiles independent


# -- the fast read: one stacked matmul, ADC in place, chunked --------------------------------------

@pytest.mark.parametrize("phases", [1, 4])
@pytest.mark.parametrize("noise", [0.0, 0.7])
def test_fast_read_equals_the_stages_bit_for_bit(phases, noise):
    """`Tile.read` (stacked matmul per chunk, ADC in place) gives the counts, saturation masks
    and noise draws of `adc(mvm(...))`, for batches below, at and across the chunk size, a 1-D
    input, reads that saturate high and low, and float64 codes read as checked."""
    rng = np.random.default_rng(40 + phases)
    cfg = T.TileConfig(rows=64, cols=40, phases=phases, output_noise=noise)
    tile = T.Tile(cfg, rng.uniform(-1, 1, (64, 40)), 9)
    ref_rng = tile._rng(T._ADC_NOISE)       # a second copy of the tile's ADC noise stream
    lsb = cfg.lsb / 40                      # small: many reads saturate high
    gp, gn = tile.conductances(60.0)
    seen_high = seen_low = 0
    v = T._chunk_vectors(2 * 40)            # vectors per chunk at this width
    for n in (1, 7, T.READ_CHUNK, v, v + 1, 2 * v + 300):
        x = rng.integers(-cfg.x_max, cfg.x_max + 1, (n, 64))
        for fast in (tile.read(x, 60.0, lsb=lsb, return_saturated=True),
                     # float64 codes the caller has checked (the compiler's executor)
                     tile.read(x.astype(np.float64), 60.0, lsb=lsb, return_saturated=True,
                               checked=True)):
            slow = T.adc(cfg, *T.mvm(cfg, x, gp, gn), tile.gain_pos, tile.gain_neg, lsb,
                         ref_rng, return_saturated=True)
            assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1]), n
            assert all(np.array_equal(a, b) for a, b in zip(fast[2], slow[2])), n
        seen_high += int(fast[2].high_pos.sum())
        seen_low += int(fast[2].low_neg.sum() + fast[2].low_pos.sum())
    assert seen_high > 0 and (seen_low > 0 or phases == 4)
    x1 = rng.integers(0, cfg.x_max + 1, 64)
    p1, n1 = tile.read(x1, 60.0)
    p2, n2 = T.adc(cfg, *T.mvm(cfg, x1, gp, gn), tile.gain_pos, tile.gain_neg, cfg.lsb, ref_rng)
    assert p1.shape == (40,) and np.array_equal(p1, p2) and np.array_equal(n1, n2)


def test_fast_read_rails_of_non_negative_inputs_and_of_the_chunk_kernel():
    """The low rail is skipped only where no charge can be negative (non-negative inputs and
    conductances, no output noise): reads of non-negative inputs, narrow (x no wider than the
    charges: the skip) and wide (the rail computed), give the masks of `adc(mvm(...))`, with no
    low rail; `_read_stacked` on conductances with negatives computes it (negative charges from
    non-negative inputs) as `adc` does."""
    rng = np.random.default_rng(17)
    for rows, cols in ((24, 40), (96, 8)):   # x narrower, then wider, than the 2·cols charges
        cfg = T.TileConfig(rows=rows, cols=cols)
        tile = T.Tile(cfg, rng.uniform(-1, 1, (rows, cols)), 3)
        gp, gn = tile.conductances(60.0)
        lsb = cfg.lsb / 30
        for n in (5, 700):
            x = rng.integers(0, cfg.x_max + 1, (n, rows))
            fast = tile.read(x.astype(np.float64), 60.0, lsb=lsb, return_saturated=True,
                             checked=True)
            slow = T.adc(cfg, *T.mvm(cfg, x, gp, gn), tile.gain_pos, tile.gain_neg, lsb,
                         return_saturated=True)
            assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
            assert all(np.array_equal(a, b) for a, b in zip(fast[2], slow[2]))
            assert fast[2].high_pos.any() and not (fast[2].low_pos.any() or fast[2].low_neg.any())
    cfg = T.TileConfig(rows=16, cols=12)
    g2 = rng.uniform(-25.0, 25.0, (16, 24))
    gains = rng.uniform(0.9, 1.1, 24)
    x = rng.integers(0, cfg.x_max + 1, (300, 16))
    rows = np.broadcast_to(gains, (300, 24)).copy()
    p, n, sat = T._read_stacked(cfg, x.astype(np.float64), g2, rows, cfg.lsb / 4, None, True)
    q = x.astype(np.float64) @ g2
    p2, n2, sat2 = T.adc(cfg, q[:, :12], q[:, 12:], gains[:12], gains[12:], cfg.lsb / 4,
                         return_saturated=True)
    assert np.array_equal(p, p2) and np.array_equal(n, n2)
    assert all(np.array_equal(a, b) for a, b in zip(sat, sat2)) and sat.low_pos.any()
    with pytest.raises(ValueError, match="`gain_rows` must be at least"):
        T._read_stacked(cfg, x.astype(np.float64), g2, rows[:10], cfg.lsb, None, True)


def test_fast_read_follows_changed_gains_and_longer_batches():
    """The chunk-shaped gains a tile keeps are rebuilt when its gains change or a batch needs more
    rows; the LSB may be a Python or numpy float."""
    rng = np.random.default_rng(5)
    cfg = T.TileConfig(rows=32, cols=24)
    tile = T.Tile(cfg, rng.uniform(-1, 1, (32, 24)), 2)
    gp, gn = tile.conductances(0.0)
    for n, change in ((10, False), (3000, False), (20, True)):
        if change:
            tile.gain_pos[:5] *= 1.1
        x = rng.integers(-cfg.x_max, cfg.x_max + 1, (n, 32))
        for lsb in (cfg.lsb / 8, np.float64(cfg.lsb / 8)):
            p, m = tile.read(x, 0.0, lsb=lsb)
            p2, m2 = T.adc(cfg, *T.mvm(cfg, x, gp, gn), tile.gain_pos, tile.gain_neg, cfg.lsb / 8)
            assert np.array_equal(p, p2) and np.array_equal(m, m2), (n, change)
    with pytest.raises(ValueError, match="holds NaN"):
        tile.read(x, 0.0, lsb=float("nan"))


@pytest.mark.parametrize("phases, noise", [(1, 0.0), (1, 0.7), (4, 0.0)])
def test_counted_saturation_equals_the_masks_count(phases, noise):
    """`count_saturated` gives the counts of `return_saturated` and `Saturation.count` of its
    masks (two tiles of one seed: the same noise draws), for signed and non-negative inputs, a
    1-D input, integer codes and per-column LSBs (the plain stages); it excludes the masks."""
    rng = np.random.default_rng(8 + phases)
    cfg = T.TileConfig(rows=48, cols=20, phases=phases, output_noise=noise)
    w = rng.uniform(-1, 1, (48, 20))
    a, b = T.Tile(cfg, w, 4), T.Tile(cfg, w, 4)
    lsb = cfg.lsb / 30
    seen = 0
    for x in (rng.integers(-cfg.x_max, cfg.x_max + 1, (600, 48)),
              rng.integers(0, cfg.x_max + 1, (300, 48)), rng.integers(0, cfg.x_max + 1, 48)):
        p, n, sat = a.read(x, 60.0, lsb=lsb, return_saturated=True)
        p2, n2, count = b.read(x.astype(np.float64), 60.0, lsb=lsb, count_saturated=True,
                               checked=True)
        assert np.array_equal(p, p2) and np.array_equal(n, n2)
        assert isinstance(count, int) and count == sat.count
        seen += count
    assert seen > 0
    tile = T.Tile(DYADIC.ideal, dyadic_weights(rng, (32, 24)), 1)
    x = rng.integers(-127, 128, (10, 32))
    for lsb in (0.5, rng.uniform(0.5, 2.0, 24)):
        p, n, sat = tile.read(x, 0.0, lsb=lsb, return_saturated=True)
        p2, n2, count = tile.read(x, 0.0, lsb=lsb, count_saturated=True)
        assert np.array_equal(p, p2) and count == sat.count > 0
    with pytest.raises(ValueError, match="exclude each other"):
        tile.read(x, 0.0, return_saturated=True, count_saturated=True)


def test_fast_read_falls_back_for_integer_codes_and_column_lsbs():
    rng = np.random.default_rng(3)
    tile = T.Tile(DYADIC.ideal, dyadic_weights(rng, (32, 24)), 1)
    x = rng.integers(0, 128, (10, 32))
    col_lsb = rng.uniform(2.0, 6.0, 24)
    gp, gn = tile.conductances(0.0)
    for lsb in (4.0, col_lsb):
        p, n = tile.read(x, 0.0, lsb=lsb)
        p2, n2 = T.adc(DYADIC, *T.mvm(DYADIC, x, gp, gn), 1.0, 1.0, lsb)
        assert np.array_equal(p, p2) and np.array_equal(n, n2)
    with pytest.raises(ValueError, match="`lsb` must be positive"):
        T.Tile(SMALL, np.zeros((32, 24)), 0).read(x, 0.0, lsb=-1.0)
    for lsb in (4.0, col_lsb):   # checked float64 codes take the same fallbacks
        p, n = tile.read(x.astype(np.float64), 0.0, lsb=lsb, checked=True)
        p2, n2 = T.adc(DYADIC, *T.mvm(DYADIC, x, gp, gn), 1.0, 1.0, lsb)
        assert np.array_equal(p, p2) and np.array_equal(n, n2)


def test_checked_read_takes_only_float64_codes_of_the_tile_shape():
    tile = T.Tile(SMALL, np.zeros((32, 24)), 0)
    with pytest.raises(TypeError, match="checked=True must be a float64 array"):
        tile.read(np.zeros((3, 32), dtype=np.int64), 0.0, checked=True)
    with pytest.raises(ValueError, match="rows = 32"):
        tile.read(np.zeros((3, 31)), 0.0, checked=True)
