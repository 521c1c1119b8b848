"""Tests of the NMPU golden model (golden/nmpu.py).

Hand-worked cases carry their arithmetic in comments; the property tests compare `forward`
against `ref_nmpu` below, a plain-Python-int reading of docs/nmpu.md written without looking at
the golden code (Fraction for the rounding, Python's // for every floor).
"""

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from golden import nmpu as g
from hdl.config import NMPUConfig, RoundMode, nmpu_preset

FLOOR, HALF_UP, HALF_EVEN = 0, 1, 2  # the spec's numbering of `round_mode`
MODES = (FLOOR, HALF_UP, HALF_EVEN)
PRESETS = [nmpu_preset(n) for n in ("paper", "exp", "serial", "tiny")]

PROP = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])

# acc = sp·P − sn·N + o (integer formats: F = 0, nothing aligned); 13-bit accumulator
# [-3953, 3952]; shift 0..7 plus e 0..1, so the largest total shift is 8.
HAND = NMPUConfig(name="hand", columns=4, lanes=2, adc_bits=8, scale_int=4, scale_frac=0,
                  offset_int=8, offset_frac=0, out_bits=8, residual=True, exp_bits=1, shift_bits=3)
# acc = sp·X + 2·o (scale (2,2), offset (4,1): F = 2, the offset moved up by 1); no residual path.
SIGNED = NMPUConfig(name="hand-signed", columns=2, lanes=1, adc_bits=8, input_mode="signed",
                    scale_int=2, scale_frac=2, offset_int=4, offset_frac=1, out_bits=8,
                    residual=False, shift_bits=4)
# 62-bit accumulator and total shifts up to 62: the int64 guard of the config, reached exactly.
GUARD = NMPUConfig(name="guard", columns=2, lanes=1, adc_bits=24, scale_int=24, scale_frac=0,
                   offset_int=1, offset_frac=13, out_bits=32, exp_bits=5, shift_bits=5)


# -- the independent reference -------------------------------------------------------------------

def spec_ranges(cfg):
    """Inclusive ranges of every code, input and register, from the spec's wording."""
    sb = cfg.scale_int + cfg.scale_frac
    ob = cfg.offset_int + cfg.offset_frac
    return dict(sp=(0, 2 ** sb - 1), sn=(0, 2 ** sb - 1), o=(-2 ** (ob - 1), 2 ** (ob - 1) - 1),
                e=(0, 2 ** cfg.exp_bits - 1), p=(0, 2 ** cfg.adc_bits - 1),
                n=(0, 2 ** cfg.adc_bits - 1), x=(-2 ** cfg.adc_bits, 2 ** cfg.adc_bits - 1),
                r=(-2 ** (cfg.out_bits - 1), 2 ** (cfg.out_bits - 1) - 1),
                shift=(0, 2 ** cfg.shift_bits - 1))


def ref_acc(cfg, sp, sn, o, p=0, n=0, x=0):
    f = max(cfg.scale_frac, cfg.offset_frac)
    term = sp * p - sn * n if cfg.input_mode == "dual" else sp * x
    return term * 2 ** (f - cfg.scale_frac) + o * 2 ** (f - cfg.offset_frac)


def ref_round(t, r, mode):
    """round(t / 2^r) in `mode`, on exact rationals."""
    v = Fraction(t, 2 ** r)
    if mode == FLOOR:
        return math.floor(v)
    if mode == HALF_UP:
        return math.floor(v + Fraction(1, 2))
    return round(v)  # Fraction.__round__ rounds half to even


def ref_compress(acc, s, pre_cut, mode):
    c = min(pre_cut, s)
    t = acc // 2 ** c  # the c lowest bits cut, no rounding
    return ref_round(t, s - c, mode)


def ref_nmpu(cfg, *, sp, sn, o, e, shift, pre_cut, mode, relu_mid, relu_out, residual_en,
             p=0, n=0, x=0, r=0):
    """One column of the spec on Python ints: returns (y, clamped)."""
    y = ref_compress(ref_acc(cfg, sp, sn, o, p, n, x), shift + e, pre_cut, mode)
    if relu_mid:
        y = max(y, 0)
    if residual_en:
        y = y + r
    if relu_out:
        y = max(y, 0)
    lo, hi = -2 ** (cfg.out_bits - 1), 2 ** (cfg.out_bits - 1) - 1
    out = min(max(y, lo), hi)
    return out, out != y


# -- helpers for the hand cases ------------------------------------------------------------------

def hand_inputs(acc):
    """sp, sn, P, N, o of HAND that make its accumulator `acc` (= sp·P − sn·N + o)."""
    if acc >= 0:
        p = min(acc // 15, 255)
        return 15, 0, p, 0, acc - 15 * p
    n = min(-acc // 15, 255)
    return 0, 15, 0, n, acc + 15 * n


def hand_forward(acc, s, mode, pre_cut=0, r=None, **regs):
    """forward() on HAND with every column at accumulator `acc` and total shift `s`."""
    sp, sn, p, n, o = hand_inputs(acc)
    shift, e = min(s, 7), s - min(s, 7)
    col = lambda v: np.full(HAND.columns, v, dtype=np.int64)
    params = g.NMPUParams(sp=col(sp), sn=col(sn), o=col(o), e=col(e))
    layer = g.NMPULayer(shift=shift, pre_cut=pre_cut, round_mode=mode, **regs)
    assert (g.affine(HAND, params, p=col(p), n=col(n)) == acc).all()
    y, clamped = g.forward(HAND, layer, params, p=col(p), n=col(n),
                           r=None if r is None else col(r), return_clamped=True)
    assert y.shape == clamped.shape == (HAND.columns,)
    assert (y == y[0]).all() and (clamped == clamped[0]).all()
    return int(y[0]), bool(clamped[0])


# -- hand-worked cases ---------------------------------------------------------------------------

def test_affine_paper_by_hand():
    cfg = nmpu_preset("paper")
    col = lambda v: np.full(cfg.columns, v)
    # sp = 128 (1.0), sn = 64 (0.5), o = −3 (−1.5); F = 7 so the offset moves up by 6:
    # acc = 128·100 − 64·40 + (−3)·64 = 12800 − 2560 − 192 = 10048 = 78.5 · 2^7
    prm = g.NMPUParams(sp=col(128), sn=col(64), o=col(-3))
    assert (g.affine(cfg, prm, p=col(100), n=col(40)) == 10048).all()
    # 78.5 at shift 7: floor 78, half_up 79, half_even 78 (78 is even)
    for mode, want in ((FLOOR, 78), (HALF_UP, 79), (HALF_EVEN, 78)):
        y = g.forward(cfg, g.NMPULayer(shift=7, round_mode=mode), prm, p=col(100), n=col(40))
        assert (y == want).all()
    # the rails of the accumulator: ±255·4095 plus 127·64 or −128·64
    top = g.NMPUParams(sp=col(255), sn=col(255), o=col(127))
    bot = g.NMPUParams(sp=col(255), sn=col(255), o=col(-128))
    assert (g.affine(cfg, top, p=col(4095), n=col(0)) == 1044225 + 8128).all()
    assert (g.affine(cfg, bot, p=col(0), n=col(4095)) == -1044225 - 8192).all()


# (acc, s, floor, half_up, half_even); pre_cut 0
ROUNDING = [
    # ties at s = 1 (x.5)
    (5, 1, 2, 3, 2),        # 2.5
    (7, 1, 3, 4, 4),        # 3.5
    (1, 1, 0, 1, 0),        # 0.5
    (3, 1, 1, 2, 2),        # 1.5
    (-5, 1, -3, -2, -2),    # −2.5
    (-7, 1, -4, -3, -4),    # −3.5
    (-1, 1, -1, 0, 0),      # −0.5
    (-3, 1, -2, -1, -2),    # −1.5
    # ties at s = 2 and 3 (remainder 2^(s−1))
    (6, 2, 1, 2, 2),        # 1.5
    (10, 2, 2, 3, 2),       # 2.5
    (-6, 2, -2, -1, -2),    # −1.5
    (-10, 2, -3, -2, -2),   # −2.5
    (4, 3, 0, 1, 0),        # 0.5
    (12, 3, 1, 2, 2),       # 1.5
    (20, 3, 2, 3, 2),       # 2.5
    (-4, 3, -1, 0, 0),      # −0.5
    (-12, 3, -2, -1, -2),   # −1.5
    (-20, 3, -3, -2, -2),   # −2.5
    # ties at the largest total shift, 8 = shift 7 + e 1
    (128, 8, 0, 1, 0),      # 0.5
    (384, 8, 1, 2, 2),      # 1.5
    (640, 8, 2, 3, 2),      # 2.5
    (-128, 8, -1, 0, 0),    # −0.5
    (-384, 8, -2, -1, -2),  # −1.5
    # not ties
    (5, 2, 1, 1, 1),        # 1.25
    (7, 2, 1, 2, 2),        # 1.75
    (-5, 2, -2, -1, -1),    # −1.25
    (-7, 2, -2, -2, -2),    # −1.75
    (9, 3, 1, 1, 1),        # 1.125
    (13, 3, 1, 2, 2),       # 1.625
    (-9, 3, -2, -1, -1),    # −1.125
    (-13, 3, -2, -2, -2),   # −1.625
    (8, 2, 2, 2, 2),        # exact
    (-8, 2, -2, -2, -2),    # exact
    # shift 0: nothing to round
    (100, 0, 100, 100, 100),
    (-100, 0, -100, -100, -100),
    (0, 3, 0, 0, 0),
    # the largest shift: small magnitudes give 0 or −1 as the mode implies
    (1, 8, 0, 0, 0),        # 1/256
    (-1, 8, -1, 0, 0),      # −1/256: floor −1, the rounding modes 0
    (127, 8, 0, 0, 0),      # 0.496
    (129, 8, 0, 1, 1),      # 0.504
    (-127, 8, -1, 0, 0),    # −0.496
    (-129, 8, -1, -1, -1),  # −0.504
    (3952, 8, 15, 15, 15),  # top of the accumulator: 15.4375
    (-3953, 8, -16, -15, -15),  # bottom: −15.44
]


@pytest.mark.parametrize("acc, s, want_floor, want_up, want_even", ROUNDING)
def test_rounding_by_hand(acc, s, want_floor, want_up, want_even):
    for mode, want in zip(MODES, (want_floor, want_up, want_even)):
        assert int(g.compress(HAND, acc, s, 0, mode)) == want, RoundMode(mode).name
        assert hand_forward(acc, s, mode) == (want, False), RoundMode(mode).name


def test_rounding_modes_vectorised():
    # the whole table in one call per mode, and all three modes in one broadcast call
    acc = np.array([c[0] for c in ROUNDING])
    s = np.array([c[1] for c in ROUNDING])
    want = np.array([c[2:] for c in ROUNDING])
    for k, mode in enumerate(MODES):
        assert (g.compress(HAND, acc, s, 0, mode) == want[:, k]).all()
    got = g.compress(HAND, acc[:, None], s[:, None], 0, np.array(MODES)[None, :])
    assert (got == want).all()


# (acc, s, mode, y, clamped) at the two rails of the signed 8-bit output [−128, 127]
SATURATION = [
    (1000, 2, HALF_EVEN, 127, True),    # 250
    (-1000, 2, HALF_EVEN, -128, True),  # −250
    (508, 2, FLOOR, 127, False),        # 127 exactly: no clamp
    (512, 2, FLOOR, 127, True),         # 128
    (-512, 2, FLOOR, -128, False),      # −128 exactly
    (-516, 2, FLOOR, -128, True),       # −129
    (510, 2, FLOOR, 127, False),        # 127.5: floor 127
    (510, 2, HALF_UP, 127, True),       # 127.5 up to 128, clamped
    (510, 2, HALF_EVEN, 127, True),     # 127.5: 127 odd, so 128, clamped
    (-514, 2, FLOOR, -128, True),       # −128.5: floor −129, clamped
    (-514, 2, HALF_UP, -128, False),    # up to −128
    (-514, 2, HALF_EVEN, -128, False),  # −129 odd, so −128
    (3952, 0, HALF_EVEN, 127, True),    # shift 0, top of the accumulator
    (-3953, 0, HALF_UP, -128, True),    # shift 0, bottom
]


@pytest.mark.parametrize("acc, s, mode, want, clamped", SATURATION)
def test_saturation_rails(acc, s, mode, want, clamped):
    assert hand_forward(acc, s, mode) == (want, clamped)


def test_saturate_step():
    y, mask = g.saturate(HAND, np.array([200, -200, 127, -128, 128, -129, 0]))
    assert y.tolist() == [127, -128, 127, -128, 127, -128, 0]
    assert mask.tolist() == [True, True, False, False, True, True, False]


# (acc, s, pre_cut): pre_cut >= s cuts everything, so every mode is floor(acc / 2^s)
@pytest.mark.parametrize("acc, s, pre_cut, want", [
    (7, 1, 1, 3),        # 3.5 -> 3 even in half_up / half_even
    (-7, 1, 1, -4),      # −3.5 -> −4
    (5, 1, 7, 2),        # 2.5 -> 2
    (-5, 2, 5, -2),      # −1.25 -> −2
    (13, 3, 3, 1),       # 1.625 -> 1
    (-13, 3, 7, -2),     # −1.625 -> −2
    (43, 4, 4, 2),       # 2.6875 -> 2 (half_up would give 3 without the cut)
    (100, 0, 7, 100),    # s = 0
])
def test_pre_cut_at_least_shift_is_floor(acc, s, pre_cut, want):
    for mode in MODES:
        assert hand_forward(acc, s, mode, pre_cut=pre_cut) == (want, False)


# (acc, s, pre_cut, floor, half_up, half_even): the c = pre_cut lowest bits are cut by floor,
# the r = s − c remaining bits rounded; the sticky bits below are lost
@pytest.mark.parametrize("acc, s, pre_cut, want", [
    # 21 = 0b10101, s 3: 2.625 -> 2, 3, 3 without a cut;
    # pre_cut 1: t = 0b1010 = 10, r = 2: 2.5 is a tie, 2 even -> half_even 2 (not 3)
    (21, 3, 0, (2, 3, 3)),
    (21, 3, 1, (2, 3, 2)),
    # 43 = 0b101011, s 4: 2.6875; pre_cut 2: t = 10, r 2: 2.5 tie -> half_even 2;
    # pre_cut 3: t = 5, r 1: 2.5 tie -> half_even 2
    (43, 4, 0, (2, 3, 3)),
    (43, 4, 2, (2, 3, 2)),
    (43, 4, 3, (2, 3, 2)),
    # −27, s 3: −3.375 -> −4, −3, −3; pre_cut 1: t = floor(−13.5) = −14, r 2: −3.5 is a tie,
    # −4 even -> half_even −4 (not −3)
    (-27, 3, 0, (-4, -3, -3)),
    (-27, 3, 1, (-4, -3, -4)),
    # 11 = 0b1011, s 3, pre_cut 1: t = 0b101 = 5, r 2: 1.25, no tie -> 1, 1, 1 as without the cut
    (11, 3, 1, (1, 1, 1)),
    # −128 at s 8 (shift 7, e 1), pre_cut 7: t = −1, r 1: −0.5 -> −1, 0, 0
    (-128, 8, 7, (-1, 0, 0)),
    # −129 at s 8, pre_cut 7: t = floor(−1.0078) = −2, r 1: −1 exactly -> −1 in every mode
    (-129, 8, 7, (-1, -1, -1)),
])
def test_pre_cut_below_shift(acc, s, pre_cut, want):
    for mode, w in zip(MODES, want):
        assert hand_forward(acc, s, mode, pre_cut=pre_cut) == (w, False), RoundMode(mode).name


def test_compress_exhaustive_tiny():
    """Every accumulator value × total shift × pre_cut × mode of the tiny preset."""
    cfg = nmpu_preset("tiny")
    lo, hi = -57, 55  # tiny: ±7·7 + [−4, 3]·2
    acc, s, pc, mode = np.meshgrid(np.arange(lo, hi + 1), np.arange(0, 9), np.arange(0, 8),
                                   np.array(MODES), indexing="ij")
    got = g.compress(cfg, acc, s, pc, mode)
    want = np.vectorize(ref_compress, otypes=[np.int64])(acc, s, pc, mode)
    assert (got == want).all()


def test_exp_preset_e_adds_to_shift():
    cfg = nmpu_preset("exp")
    j = np.arange(cfg.columns)
    e = j % 8
    col = lambda v: np.full(cfg.columns, v)
    prm = g.NMPUParams(sp=col(128), sn=col(0), o=col(0), e=e)
    # acc = 128·3 = 384 = 3·2^7; at shift 7 the column sees 3 / 2^e:
    # e 0: 3; e 1: 1.5 (tie); e 2: 0.75; e 3: 0.375; e 4..7: below 0.25
    by_e = {FLOOR: [3, 1, 0, 0, 0, 0, 0, 0], HALF_UP: [3, 2, 1, 0, 0, 0, 0, 0],
            HALF_EVEN: [3, 2, 1, 0, 0, 0, 0, 0]}
    for mode, want in by_e.items():
        y = g.forward(cfg, g.NMPULayer(shift=7, round_mode=mode), prm, p=col(3), n=col(0))
        assert (y == np.array(want)[e]).all(), RoundMode(mode).name
    # the largest total shift, 31 + 7 = 38: a negative accumulator gives −1 only in floor mode
    prm = g.NMPUParams(sp=col(0), sn=col(128), o=col(0), e=col(7))
    for mode, want in ((FLOOR, -1), (HALF_UP, 0), (HALF_EVEN, 0)):
        y = g.forward(cfg, g.NMPULayer(shift=31, round_mode=mode), prm, p=col(0), n=col(3))
        assert (y == want).all()
    assert (g.total_shift(cfg, 31, col(7)) == 38).all()
    with pytest.raises(ValueError, match=r"`e` must be in \[0, 7\], found 8"):
        g.forward(cfg, g.NMPULayer(shift=0), g.NMPUParams(sp=col(0), sn=col(0), o=col(0), e=col(8)),
                  p=col(0), n=col(0))


# (relu_mid, relu_out, R, want) for y = −5 (acc −20 at s 2) before the activation steps
@pytest.mark.parametrize("y0, relu_mid, relu_out, r, want", [
    (-5, 0, 0, 3, -2),    # −5 + 3
    (-5, 1, 0, 3, 3),     # relu_mid first: 0 + 3
    (-5, 0, 1, 3, 0),     # relu_out after the residual: max(−2, 0)
    (-5, 1, 1, 3, 3),
    (-5, 0, 0, -7, -12),
    (-5, 1, 0, -7, -7),   # 0 − 7: relu_mid does not act after the residual
    (-5, 0, 1, -7, 0),
    (-5, 1, 1, -7, 0),
    (5, 0, 0, -7, -2),
    (5, 1, 0, -7, -2),
    (5, 0, 1, -7, 0),
    (5, 1, 1, -7, 0),
])
def test_relu_residual_order(y0, relu_mid, relu_out, r, want):
    acc = 4 * y0
    assert hand_forward(acc, 2, HALF_EVEN, r=r, relu_mid=relu_mid, relu_out=relu_out,
                        residual_en=1) == (want, False)


def test_residual_disabled_ignores_r_and_relu_without_residual():
    assert hand_forward(-20, 2, FLOOR, r=100) == (-5, False)
    assert hand_forward(-20, 2, FLOOR, relu_mid=1) == (0, False)
    assert hand_forward(-20, 2, FLOOR, relu_out=1) == (0, False)
    assert hand_forward(20, 2, FLOOR, relu_mid=1, relu_out=1) == (5, False)


def test_residual_saturates_only_at_the_end():
    # 100 + 100 = 200 -> 127; −100 − 100 = −200 -> −128
    assert hand_forward(400, 2, FLOOR, r=100, residual_en=1) == (127, True)
    assert hand_forward(-400, 2, FLOOR, r=-100, residual_en=1) == (-128, True)
    # 250 is beyond the rail before the residual, but 250 − 128 = 122 is not: no clamp
    assert hand_forward(1000, 2, FLOOR, r=-128, residual_en=1) == (122, False)
    # relu_out after a negative sum: no clamp at −128, just 0
    assert hand_forward(-1000, 2, FLOOR, r=-128, residual_en=1, relu_out=1) == (0, False)


def test_step_functions():
    assert g.relu(np.array([-3, 0, 4]), 1).tolist() == [0, 0, 4]
    assert g.relu(np.array([-3, 0, 4]), 0).tolist() == [-3, 0, 4]
    assert g.residual(HAND, np.array([1, 2]), np.array([-128, 127]), 1).tolist() == [-127, 129]
    assert g.residual(HAND, np.array([1, 2]), np.array([-128, 127]), 0).tolist() == [1, 2]
    pp, pn = g.products(HAND, 15, 7, p=255, n=3)
    assert (int(pp), int(pn)) == (3825, 21)
    pp, pn = g.products(SIGNED, 15, None, x=-256)
    assert int(pp) == -3840 and pn is None
    assert int(g.accumulate(SIGNED, np.int64(-3840), None, -16)) == -3840 - 32
    assert g.accumulate(HAND, np.array([3825, 0]), np.array([0, 3825]), np.array([127, -128])).tolist() == [
        3952, -3953]
    with pytest.raises(ValueError, match=r"`acc`|`scaled input term`"):
        g.accumulate(HAND, np.array([3826]), np.array([0]), 0)


def test_accumulate_takes_plain_ints():
    # signed mode: 15·(−256) + (−16)·2 = −3872
    assert int(g.accumulate(SIGNED, -3840, None, -16)) == -3872
    assert g.accumulate(HAND, [3825, 0], [0, 3825], [127, -128]).tolist() == [3952, -3953]


def test_signed_mode_by_hand():
    cfg = SIGNED
    col = lambda v: np.full(cfg.columns, v)

    def run(sp, x, o, shift, mode):
        prm = g.NMPUParams(sp=col(sp), o=col(o))
        y, cl = g.forward(cfg, g.NMPULayer(shift=shift, round_mode=mode), prm, x=col(x),
                          return_clamped=True)
        return int(y[0]), bool(cl[0])

    # sp 6 = 1.5, X −7, o 3 = 1.5: acc = 6·(−7) + 3·2 = −36 = −9.0 · 2^2
    assert int(g.affine(cfg, g.NMPUParams(sp=6, o=3), x=-7)) == -36
    assert [run(6, -7, 3, 2, m) for m in MODES] == [(-9, False)] * 3
    # shift 3: −4.5 -> −5, −4, −4; shift 4: −2.25 -> −3, −2, −2
    assert [run(6, -7, 3, 3, m)[0] for m in MODES] == [-5, -4, -4]
    assert [run(6, -7, 3, 4, m)[0] for m in MODES] == [-3, -2, -2]
    # the bottom: 15·(−256) − 16·2 = −3872, / 16 = −242 -> −128, clamped
    assert run(15, -256, -16, 4, HALF_EVEN) == (-128, True)
    # the top: 15·255 + 15·2 = 3855, / 32 = 120.47 -> 120
    assert [run(15, 255, 15, 5, m) for m in MODES] == [(120, False)] * 3


def test_signed_mode_rejects_dual_inputs():
    cfg = SIGNED
    z = np.zeros(cfg.columns, dtype=np.int64)
    prm = g.NMPUParams(sp=z, o=z)
    with pytest.raises(ValueError, match="signed input mode takes `x`"):
        g.forward(cfg, g.NMPULayer(), prm, p=z, n=z)
    with pytest.raises(ValueError, match="signed input mode has no `sn`"):
        g.forward(cfg, g.NMPULayer(), g.NMPUParams(sp=z, sn=z, o=z), x=z)
    with pytest.raises(ValueError, match="no residual path"):
        g.forward(cfg, g.NMPULayer(), prm, x=z, r=z)
    with pytest.raises(ValueError, match=r"`x` must be in \[-256, 255\], found -257"):
        g.forward(cfg, g.NMPULayer(), prm, x=z - 257)
    with pytest.raises(ValueError, match=r"`x` must be in \[-256, 255\], found 256"):
        g.forward(cfg, g.NMPULayer(), prm, x=z + 256)


# -- error cases ---------------------------------------------------------------------------------

def hand_call(**over):
    """forward() on HAND with valid defaults, some replaced by `over`."""
    z = np.zeros(HAND.columns, dtype=np.int64)
    args = dict(sp=z + 1, sn=z + 1, o=z, e=z, p=z + 3, n=z + 2, r=z, shift=2, pre_cut=0,
                round_mode=HALF_EVEN, relu_mid=0, relu_out=0, residual_en=1)
    args.update(over)
    prm = g.NMPUParams(sp=args["sp"], sn=args["sn"], o=args["o"], e=args["e"])
    layer = g.NMPULayer(shift=args["shift"], pre_cut=args["pre_cut"], round_mode=args["round_mode"],
                        relu_mid=args["relu_mid"], relu_out=args["relu_out"],
                        residual_en=args["residual_en"])
    return g.forward(HAND, layer, prm, p=args["p"], n=args["n"], r=args["r"])


def test_hand_call_defaults_are_valid():
    # (1·3 − 1·2) / 4 = 0.25 -> 0, plus R 0
    assert (hand_call() == 0).all()
    assert (hand_call(p=1000 // 8 * np.ones(4, int), sp=8 * np.ones(4, int), shift=0) == 127).all()


@pytest.mark.parametrize("field, value, msg", [
    ("p", -1, r"`p` must be in \[0, 255\], found -1"),
    ("p", 256, r"`p` must be in \[0, 255\], found 256"),
    ("n", -1, r"`n` must be in \[0, 255\], found -1"),
    ("n", 256, r"`n` must be in \[0, 255\], found 256"),
    ("r", 128, r"`r` must be in \[-128, 127\], found 128"),
    ("r", -129, r"`r` must be in \[-128, 127\], found -129"),
    ("sp", 16, r"`sp` must be in \[0, 15\], found 16"),
    ("sp", -1, r"`sp` must be in \[0, 15\], found -1"),
    ("sn", 16, r"`sn` must be in \[0, 15\], found 16"),
    ("o", 128, r"`o` must be in \[-128, 127\], found 128"),
    ("o", -129, r"`o` must be in \[-128, 127\], found -129"),
    ("e", 2, r"`e` must be in \[0, 1\], found 2"),
    ("e", -1, r"`e` must be in \[0, 1\], found -1"),
    ("shift", 8, r"`shift` must be in \[0, 7\], found 8"),
    ("shift", -1, r"`shift` must be in \[0, 7\], found -1"),
    ("pre_cut", 8, r"`pre_cut` must be in \[0, 7\], found 8"),
    ("round_mode", 3, r"`round_mode` must be one of \[0, 1, 2\].*not 3"),
    ("round_mode", -1, r"`round_mode` must be one of \[0, 1, 2\].*not -1"),
    ("relu_mid", 2, r"`relu_mid` must be in \[0, 1\], found 2"),
    ("relu_out", -1, r"`relu_out` must be in \[0, 1\], found -1"),
    ("residual_en", 2, r"`residual_en` must be in \[0, 1\], found 2"),
])
def test_out_of_range_raises_naming_field(field, value, msg):
    arr = np.zeros(HAND.columns, dtype=np.int64)
    if field in ("p", "n", "r", "sp", "sn", "o", "e"):
        arr[2] = value  # one bad column among good ones
        value = arr
    with pytest.raises(ValueError, match=msg):
        hand_call(**{field: value})


@pytest.mark.parametrize("field", ["p", "n", "r", "sp", "o"])
@pytest.mark.parametrize("bad, msg", [(np.nan, "NaN or infinity"), (np.inf, "NaN or infinity"),
                                      (1.5, "non-integer"), (-0.25, "non-integer")])
def test_nan_and_fractional_inputs_raise(field, bad, msg):
    arr = np.ones(HAND.columns)
    arr[1] = bad
    with pytest.raises(ValueError, match=rf"`{field}` holds {msg}"):
        hand_call(**{field: arr})


def test_integral_floats_are_accepted():
    ints = hand_call(p=np.array([3, 4, 5, 6]), sp=np.array([1, 2, 3, 4]))
    floats = hand_call(p=np.array([3.0, 4.0, 5.0, 6.0]), sp=np.array([1.0, 2.0, 3.0, 4.0]))
    assert (ints == floats).all() and ints.dtype == np.int64


def test_non_numeric_input_raises_type_error():
    with pytest.raises(TypeError, match="`p` must be integers"):
        hand_call(p=np.array(["1", "2", "3", "4"]))


def test_residual_en_without_residual_path():
    cfg = NMPUConfig(name="nores", columns=4, lanes=2, adc_bits=6, residual=False, shift_bits=4)
    z = np.zeros(cfg.columns, dtype=np.int64)
    with pytest.raises(ValueError, match=r"`residual_en` is set but the config has no residual path"):
        g.forward(cfg, g.NMPULayer(residual_en=1), g.NMPUParams.zeros(cfg), p=z, n=z)
    # per-beat registers: one beat with residual_en set is enough
    with pytest.raises(ValueError, match=r"`residual_en` is set"):
        g.forward(cfg, g.NMPULayer(residual_en=np.array([[0], [1]])), g.NMPUParams.zeros(cfg),
                  p=np.zeros((2, 4), int), n=np.zeros((2, 4), int))
    assert (g.forward(cfg, g.NMPULayer(), g.NMPUParams.zeros(cfg), p=z, n=z) == 0).all()


def test_missing_r_with_residual_en():
    with pytest.raises(ValueError, match=r"`residual_en` is set but no residual input `r`"):
        hand_call(r=None)
    assert (hand_call(r=None, residual_en=0) == 0).all()


def test_dual_mode_input_errors():
    z = np.zeros(HAND.columns, dtype=np.int64)
    with pytest.raises(ValueError, match="dual input mode takes `p` and `n`"):
        g.forward(HAND, g.NMPULayer(), g.NMPUParams.zeros(HAND), x=z)
    with pytest.raises(ValueError, match="dual input mode takes `p` and `n`"):
        g.forward(HAND, g.NMPULayer(), g.NMPUParams.zeros(HAND), p=z)
    with pytest.raises(ValueError, match="dual input mode needs `sn`"):
        g.forward(HAND, g.NMPULayer(), g.NMPUParams(sp=z, o=z), p=z, n=z)
    paper = nmpu_preset("paper")
    zp = np.zeros(paper.columns, dtype=np.int64)
    with pytest.raises(ValueError, match=r"`e` is set but the config has no per-column exponent"):
        g.forward(paper, g.NMPULayer(), g.NMPUParams(sp=zp, sn=zp, o=zp, e=zp + 1), p=zp, n=zp)


@pytest.mark.parametrize("field", ["o", "r"])
def test_huge_unsigned_value_is_rejected_not_wrapped(field):
    # np.asarray(2**64 - 1) is uint64; astype(int64) wraps it to −1, which is inside both ranges
    with pytest.raises(ValueError, match=rf"`{field}`"):
        hand_call(**{field: 2 ** 64 - 1})


# -- property test against the reference ---------------------------------------------------------

@st.composite
def configs(draw):
    lanes = draw(st.integers(1, 3))
    kw = dict(name="prop", columns=lanes * draw(st.integers(1, 3)), lanes=lanes,
              adc_bits=draw(st.integers(1, 12)), input_mode=draw(st.sampled_from(["dual", "signed"])),
              scale_int=draw(st.integers(0, 3)), scale_frac=draw(st.integers(0, 5)),
              offset_int=draw(st.integers(1, 5)), offset_frac=draw(st.integers(0, 5)),
              out_bits=draw(st.integers(2, 10)), residual=draw(st.booleans()),
              exp_bits=draw(st.integers(0, 3)), shift_bits=draw(st.integers(1, 5)))
    try:
        cfg = NMPUConfig(**kw)
    except ValueError:
        assume(False)
    return cfg


def draw_ints(data, lo, hi, shape):
    n = int(np.prod(shape))
    return np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                    dtype=np.int64).reshape(shape)


@PROP
@given(data=st.data())
def test_forward_matches_reference(data):
    cfg = data.draw(configs())
    rg = spec_ranges(cfg)
    k, c = data.draw(st.integers(1, 3)), cfg.columns
    dual = cfg.input_mode == "dual"
    sp = draw_ints(data, *rg["sp"], (c,))
    sn = draw_ints(data, *rg["sn"], (c,)) if dual else None
    o = draw_ints(data, *rg["o"], (c,))
    e = draw_ints(data, *rg["e"], (c,)) if cfg.exp_bits else None
    if dual:
        ins = dict(p=draw_ints(data, *rg["p"], (k, c)), n=draw_ints(data, *rg["n"], (k, c)))
    else:
        ins = dict(x=draw_ints(data, *rg["x"], (k, c)))
    if cfg.residual:
        ins["r"] = draw_ints(data, *rg["r"], (k, c))
    # one register set per vector (row), or one for all
    rows = k if data.draw(st.booleans()) else 1
    regs = dict(shift=draw_ints(data, *rg["shift"], (rows, 1)),
                pre_cut=draw_ints(data, *rg["shift"], (rows, 1)),
                round_mode=np.array(data.draw(st.lists(st.sampled_from(MODES), min_size=rows,
                                                       max_size=rows))).reshape(rows, 1),
                relu_mid=draw_ints(data, 0, 1, (rows, 1)),
                relu_out=draw_ints(data, 0, 1, (rows, 1)),
                residual_en=draw_ints(data, 0, 1 if cfg.residual else 0, (rows, 1)))
    layer = g.NMPULayer(**{name: (v if rows > 1 else int(v[0, 0])) for name, v in regs.items()})
    prm = g.NMPUParams(sp=sp, sn=sn, o=o, e=e)
    y, clamped = g.forward(cfg, layer, prm, return_clamped=True, **ins)
    assert y.shape == clamped.shape == (k, c)
    for i in range(k):
        reg = {name: int(v[min(i, rows - 1), 0]) for name, v in regs.items()}
        for j in range(c):
            want = ref_nmpu(cfg, sp=int(sp[j]), sn=int(sn[j]) if dual else 0, o=int(o[j]),
                            e=int(e[j]) if cfg.exp_bits else 0, shift=reg["shift"],
                            pre_cut=reg["pre_cut"], mode=reg["round_mode"],
                            relu_mid=reg["relu_mid"], relu_out=reg["relu_out"],
                            residual_en=reg["residual_en"],
                            **{name: int(v[i, j]) for name, v in ins.items()})
            assert (int(y[i, j]), bool(clamped[i, j])) == want, (i, j, reg)
            # what the draws reach (shown by --hypothesis-show-statistics)
            s_tot = reg["shift"] + (int(e[j]) if cfg.exp_bits else 0)
            cut = min(reg["pre_cut"], s_tot)
            acc = ref_acc(cfg, int(sp[j]), int(sn[j]) if dual else 0, int(o[j]),
                          **{name: int(v[i, j]) for name, v in ins.items() if name != "r"})
            if s_tot > cut and (acc // 2 ** cut) % 2 ** (s_tot - cut) == 2 ** (s_tot - cut - 1):
                event(f"tie, {'negative' if acc < 0 else 'positive'}, mode {reg['round_mode']}")
            if 0 < cut < s_tot:
                event("pre_cut inside the shift")
            if want[1]:
                event("clamped")


@PROP
@given(data=st.data())
def test_compress_near_ties(data):
    """The rounding step on accumulators placed at, just below and just above a tie, with random
    bits under the pre_cut, on random configs."""
    cfg = data.draw(configs())
    max_shift = 2 ** cfg.shift_bits - 1
    s = data.draw(st.integers(1, max_shift + 2 ** cfg.exp_bits - 1))
    if data.draw(st.integers(0, 4)):  # mostly pre_cut < s, so r bits are left to round
        pre_cut = data.draw(st.integers(0, min(s - 1, max_shift)))
    else:
        pre_cut = data.draw(st.integers(min(s, max_shift), max_shift))
    mode = data.draw(st.sampled_from(MODES))
    c = min(pre_cut, s)
    r = s - c
    lo, hi = cfg.acc_range
    q = data.draw(st.integers(lo // 2 ** s - 1, hi // 2 ** s + 1))
    d = data.draw(st.sampled_from([0, 0, -1, 1]))  # half the draws on the tie
    low = data.draw(st.integers(0, 2 ** c - 1))
    acc = (q * 2 ** r + (2 ** (r - 1) if r else 0) + d) * 2 ** c + low
    assume(lo <= acc <= hi)
    event(f"{'tie' if d == 0 and r else 'near'}, {'negative' if acc < 0 else 'positive'}, "
          f"mode {mode}")
    assert int(g.compress(cfg, acc, s, pre_cut, mode)) == ref_compress(acc, s, pre_cut, mode)


@PROP
@given(acc=st.integers(*GUARD.acc_range), s=st.integers(0, GUARD.max_total_shift),
       pre_cut=st.integers(0, GUARD.max_shift), mode=st.sampled_from(MODES))
def test_compress_at_int64_guard(acc, s, pre_cut, mode):
    # 62-bit accumulators and shifts up to 62 stay exact on int64
    assert int(g.compress(GUARD, acc, s, pre_cut, mode)) == ref_compress(acc, s, pre_cut, mode)


@PROP
@given(sp=st.integers(0, 2 ** 24 - 1), sn=st.integers(0, 2 ** 24 - 1), o=st.integers(-2 ** 13, 2 ** 13 - 1),
       p=st.integers(0, 2 ** 24 - 1), n=st.integers(0, 2 ** 24 - 1), shift=st.integers(0, 31),
       e=st.integers(0, 31), mode=st.sampled_from(MODES))
def test_forward_at_int64_guard(sp, sn, o, p, n, shift, e, mode):
    acc = g.affine(GUARD, g.NMPUParams(sp=sp, sn=sn, o=o), p=p, n=n)
    assert int(acc) == ref_acc(GUARD, sp, sn, o, p, n)
    y, cl = g.forward(GUARD, g.NMPULayer(shift=shift, round_mode=mode),
                      g.NMPUParams(sp=sp, sn=sn, o=o, e=e), p=p, n=n, return_clamped=True)
    want = ref_nmpu(GUARD, sp=sp, sn=sn, o=o, e=e, shift=shift, pre_cut=0, mode=mode, relu_mid=0,
                    relu_out=0, residual_en=0, p=p, n=n)
    assert (int(y), bool(cl)) == want


# -- framing -------------------------------------------------------------------------------------

THREE = NMPUConfig(name="three", columns=6, lanes=2, adc_bits=4, shift_bits=4)  # 3 beats


def frame_list(cfg, last, start=0):
    pos, err, nxt = g.frame(cfg, np.array(last, dtype=np.int64), start)
    return pos.tolist(), err.tolist(), nxt


def test_frame_correct():
    assert frame_list(THREE, [0, 0, 1, 0, 0, 1]) == ([0, 1, 2, 0, 1, 2], [False] * 6, 0)
    assert frame_list(nmpu_preset("tiny"), [0, 1] * 3) == ([0, 1] * 3, [False] * 6, 0)


def test_frame_early_last_resyncs():
    # last on beat 1 of 3: error, and the next beat starts a new vector
    assert frame_list(THREE, [0, 1, 0, 0, 1]) == (
        [0, 1, 0, 1, 2], [False, True, False, False, False], 0)
    # last on beat 0
    assert frame_list(THREE, [1, 0, 0, 1]) == ([0, 0, 1, 2], [True, False, False, False], 0)


def test_frame_missing_last():
    # beat 2 without last: error, the counter wraps; the next vector is framed correctly
    assert frame_list(THREE, [0, 0, 0, 0, 0, 1]) == (
        [0, 1, 2, 0, 1, 2], [False, False, True, False, False, False], 0)
    # a five-beat "vector": the missing last, then a last on beat 1, both errors;
    # the following vector is in step again
    assert frame_list(THREE, [0, 0, 0, 0, 1, 0, 0, 1]) == (
        [0, 1, 2, 0, 1, 0, 1, 2], [False, False, True, False, True, False, False, False], 0)


def test_frame_start_and_partial():
    # continuing a vector at beat 2 of 3, then an unfinished one
    assert frame_list(THREE, [1, 0, 0], start=2) == ([2, 0, 1], [False, False, False], 2)
    assert frame_list(THREE, [], start=1) == ([], [], 1)


def test_frame_single_beat_vectors():
    one = NMPUConfig(name="one", columns=4, lanes=4, adc_bits=4, shift_bits=4)
    assert frame_list(one, [1, 0, 1]) == ([0, 0, 0], [False, True, False], 0)


def test_frame_rejects_bad_values():
    with pytest.raises(ValueError, match=r"`last` must be in \[0, 1\], found 2"):
        g.frame(THREE, [0, 2])
    with pytest.raises(ValueError, match=r"`start` must be in \[0, 2\], found 3"):
        g.frame(THREE, [0], start=3)


def ref_frame(beats, last, start):
    """Position = beats since the vector opened; it closes on `last` or when the position reaches
    beats − 1; an error whenever exactly one of the two happens."""
    pos, err = [], []
    opened, offset = 0, start  # index of the vector's first beat, its starting position
    for k, flag in enumerate(last):
        here = offset + (k - opened)
        pos.append(here)
        full = here == beats - 1
        err.append(bool(flag) ^ full)
        if flag or full:
            opened, offset = k + 1, 0
    return pos, err, offset + (len(last) - opened)


@PROP
@given(lanes=st.integers(1, 3), beats=st.integers(1, 5),
       last=st.lists(st.integers(0, 1), max_size=40), data=st.data())
def test_frame_matches_counter(lanes, beats, last, data):
    cfg = NMPUConfig(name="f", columns=lanes * beats, lanes=lanes, adc_bits=4, shift_bits=4)
    start = data.draw(st.integers(0, beats - 1))
    assert frame_list(cfg, last, start) == ref_frame(beats, last, start)


# -- parameter words -----------------------------------------------------------------------------

SIGNED_EXP = NMPUConfig(name="signed-exp", columns=8, lanes=4, input_mode="signed", exp_bits=2)
WORD_CONFIGS = PRESETS + [SIGNED_EXP]


def ref_word(cfg, sp, sn, o, e):
    """{sp, sn, o, e} least significant first; the offset in two's complement."""
    sb, ob = cfg.scale_int + cfg.scale_frac, cfg.offset_int + cfg.offset_frac
    word, pos = sp, sb
    if cfg.input_mode == "dual":
        word += sn << pos
        pos += sb
    word += (o % 2 ** ob) << pos
    pos += ob
    if cfg.exp_bits:
        word += e << pos
        pos += cfg.exp_bits
    return word, pos


def test_pack_by_hand():
    paper, exp = nmpu_preset("paper"), nmpu_preset("exp")
    assert g.pack(paper, 1, 2, -1) == 0xFF_02_01
    assert g.pack(paper, 255, 0, -128) == 0x80_00_FF
    assert g.pack(exp, 0, 0, 0, 7) == 7 << 24
    assert g.unpack(exp, (5 << 24) | (0x7F << 16) | (3 << 8) | 200) == dict(sp=200, sn=3, o=127, e=5)
    assert g.unpack(paper, 0x80_00_00) == dict(sp=0, sn=0, o=-128)


@PROP
@given(cfg=st.sampled_from(WORD_CONFIGS), data=st.data())
def test_pack_unpack_round_trip(cfg, data):
    rg = spec_ranges(cfg)
    dual = cfg.input_mode == "dual"
    sp = data.draw(st.integers(*rg["sp"]))
    sn = data.draw(st.integers(*rg["sn"])) if dual else None
    o = data.draw(st.integers(*rg["o"]))
    e = data.draw(st.integers(*rg["e"])) if cfg.exp_bits else None
    word = g.pack(cfg, sp, sn, o, e)
    want, bits = ref_word(cfg, sp, sn or 0, o, e or 0)
    assert word == want and 0 <= word < 2 ** bits and bits == cfg.word_bits
    fields = dict(sp=sp, o=o)
    if dual:
        fields["sn"] = sn
    if cfg.exp_bits:
        fields["e"] = e
    assert g.unpack(cfg, word) == fields


@pytest.mark.parametrize("cfg", WORD_CONFIGS, ids=lambda c: c.tag)
def test_pack_params_round_trip(cfg):
    rng = np.random.default_rng(7)
    rg = spec_ranges(cfg)
    dual = cfg.input_mode == "dual"
    c = cfg.columns
    draw = lambda name: rng.integers(rg[name][0], rg[name][1] + 1, c)
    prm = g.NMPUParams(sp=draw("sp"), sn=draw("sn") if dual else None, o=draw("o"),
                       e=draw("e") if cfg.exp_bits else None)
    prm.o[:2] = rg["o"]  # both ends of the offset, the negative end included
    words = g.pack_params(cfg, prm)
    assert len(words) == c
    for j, w in enumerate(words):
        assert w == ref_word(cfg, int(prm.sp[j]), int(prm.sn[j]) if dual else 0, int(prm.o[j]),
                             int(prm.e[j]) if cfg.exp_bits else 0)[0]
    back = g.unpack_params(cfg, words)
    assert (back.sp == prm.sp).all() and (back.o == prm.o).all()
    assert (back.o < 0).any()
    assert back.sn is None if not dual else (back.sn == prm.sn).all()
    assert back.e is None if not cfg.exp_bits else (back.e == prm.e).all()


def test_pack_params_broadcasts_scalars():
    tiny = nmpu_preset("tiny")
    words = g.pack_params(tiny, g.NMPUParams(sp=7, sn=1, o=-4, e=1))
    # tiny: sp 3 bits, sn 3, o 3, e 1: 7 | 1 << 3 | 0b100 << 6 | 1 << 9
    assert words == [7 | 1 << 3 | 4 << 6 | 1 << 9] * 4


@pytest.mark.parametrize("preset, kw, msg", [
    ("paper", dict(sp=256, sn=0, o=0), r"`sp` must be in \[0, 255\], found 256"),
    ("paper", dict(sp=-1, sn=0, o=0), r"`sp` must be in \[0, 255\], found -1"),
    ("paper", dict(sp=0, sn=256, o=0), r"`sn` must be in \[0, 255\], found 256"),
    ("paper", dict(sp=0, sn=0, o=128), r"`o` must be in \[-128, 127\], found 128"),
    ("paper", dict(sp=0, sn=0, o=-129), r"`o` must be in \[-128, 127\], found -129"),
    ("exp", dict(sp=0, sn=0, o=0, e=8), r"`e` must be in \[0, 7\], found 8"),
    ("exp", dict(sp=0, sn=0, o=0), r"`e` is needed"),
    ("paper", dict(sp=0, o=0), r"`sn` is needed"),
    ("paper", dict(sp=0, sn=0, o=0, e=1), r"`e` is not part"),
    ("tiny", dict(sp=8, sn=0, o=0, e=0), r"`sp` must be in \[0, 7\], found 8"),
    ("tiny", dict(sp=0, sn=0, o=-5, e=0), r"`o` must be in \[-4, 3\], found -5"),
    ("tiny", dict(sp=0, sn=0, o=0, e=2), r"`e` must be in \[0, 1\], found 2"),
    ("tiny", dict(sp=0.5, sn=0, o=0, e=0), r"`sp` holds non-integer"),
])
def test_pack_rejects_out_of_range(preset, kw, msg):
    with pytest.raises(ValueError, match=msg):
        g.pack(nmpu_preset(preset), **kw)


def test_pack_rejects_sn_in_signed_mode():
    with pytest.raises(ValueError, match=r"`sn` is not part"):
        g.pack(SIGNED_EXP, 1, 1, 0, 0)


def test_unpack_rejects_bad_words():
    paper = nmpu_preset("paper")
    with pytest.raises(ValueError, match=r"parameter word must be in \[0, 2\^24\), not 16777216"):
        g.unpack(paper, 2 ** 24)
    with pytest.raises(ValueError, match=r"not -1"):
        g.unpack(paper, -1)
    with pytest.raises(ValueError, match=r"need 256 parameter words, not 255"):
        g.unpack_params(paper, [0] * 255)
    with pytest.raises(ValueError, match=r"`o` must be in \[-128, 127\], found 128"):
        g.pack_params(paper, g.NMPUParams(sp=0, sn=0, o=np.full(256, 128)))


def test_unpack_rejects_fractional_word():
    with pytest.raises((ValueError, TypeError)):
        g.unpack(nmpu_preset("paper"), 2.7)  # read as word 2: sp = 2


# -- parameter compiler --------------------------------------------------------------------------

SIGNED_C = NMPUConfig(name="csigned", columns=16, lanes=4, input_mode="signed", exp_bits=2)
COMPILE_CONFIGS = PRESETS + [SIGNED_C]


def layer_problem(cfg, rng, wide_beta=False):
    """Per-column α, β and gains of a plausible layer for `cfg`: |α|·full count is up to half the
    output range; a zero α, a negative α and a zero β are always present.

    The offset code sits on the accumulator grid, F − offset_frac bits above its LSB, so at the
    shift that fills the scale codes it spans only a few output units (paper: 127·2^6 / 2^13,
    about ±1). `wide_beta` draws |β| up to a quarter of the output range, which makes the
    offsets set the shift; otherwise |β| stays within 40 % of what fits at the scale-set shift.
    """
    c = cfg.columns
    full = 2 ** cfg.adc_bits - 1
    alpha = rng.uniform(0.02, 1.0, c) * 2 ** (cfg.out_bits - 2) / full
    alpha *= np.where(rng.random(c) < 0.35, -1, 1)
    alpha[rng.random(c) < 0.1] = 0.0
    alpha[0], alpha[1] = 0.0, -abs(alpha[1]) - 1e-3
    gp = rng.uniform(0.8, 1.25, c)
    gn = rng.uniform(0.8, 1.25, c)
    if wide_beta:
        amp = 2.0 ** (cfg.out_bits - 3)
    else:
        f = max(cfg.scale_frac, cfg.offset_frac)
        sa, oa = f - cfg.scale_frac, f - cfg.offset_frac
        # largest s with max |α|/g · 2^(s − sa) <= scale_max: the shift the scales alone allow
        s_scale = math.floor(math.log2((2 ** (cfg.scale_int + cfg.scale_frac) - 1)
                                       / np.max(np.abs(alpha) / np.minimum(gp, gn)))) + sa
        s_scale = min(s_scale, 2 ** cfg.shift_bits - 1)
        amp = 0.4 * (2 ** (cfg.offset_int + cfg.offset_frac - 1) - 1) * 2.0 ** (oa - s_scale)
    beta = rng.uniform(-1, 1, c) * amp
    beta[2 % c] = 0.0
    return alpha, beta, gp, gn


def exact_codes(cfg, alpha, beta, gp, gn, s_tot):
    """Real-valued codes at total shift s_tot: y = acc·2^−s with acc = (sp·P − sn·N)·2^(F−sf) +
    o·2^(F−of), so sp = |α|/gp · 2^(s − F + sf), o = β · 2^(s − F + of)."""
    f = max(cfg.scale_frac, cfg.offset_frac)
    sa, oa = f - cfg.scale_frac, f - cfg.offset_frac
    return (np.abs(alpha) / gp * 2.0 ** (s_tot - sa), np.abs(alpha) / gn * 2.0 ** (s_tot - sa),
            beta * 2.0 ** (s_tot - oa))


def fits(cfg, alpha, beta, gp, gn, s_tot):
    """Per column: do the rounded codes at total shift s_tot fit their ranges?"""
    rg = spec_ranges(cfg)
    xp, xn, xo = exact_codes(cfg, alpha, beta, gp, gn, s_tot)
    ok = (np.round(xp) <= rg["sp"][1]) & (np.round(xo) >= rg["o"][0]) & (np.round(xo) <= rg["o"][1])
    if cfg.input_mode == "dual":
        ok &= np.round(xn) <= rg["sn"][1]
    return ok


@pytest.mark.parametrize("cfg", COMPILE_CONFIGS, ids=lambda c: c.tag)
@pytest.mark.parametrize("seed, wide_beta", [(1, False), (2, False), (3, True), (4, True)])
def test_compile_codes_and_errors(cfg, seed, wide_beta):
    rng = np.random.default_rng(seed)
    alpha, beta, gp, gn = layer_problem(cfg, rng, wide_beta)
    dual = cfg.input_mode == "dual"
    comp = g.compile_params(cfg, alpha, beta, gp, gn if dual else None)
    prm, rg = comp.params, spec_ranges(cfg)
    f = max(cfg.scale_frac, cfg.offset_frac)
    oa = f - cfg.offset_frac
    e = np.zeros(cfg.columns, dtype=np.int64) if prm.e is None else np.asarray(prm.e)
    assert (prm.e is None) == (cfg.exp_bits == 0) and (prm.sn is None) == (not dual)
    s_tot = comp.shift + e
    assert (comp.total_shift == s_tot).all()
    assert 0 <= comp.shift <= rg["shift"][1]
    # codes in range
    assert rg["sp"][0] <= prm.sp.min() and prm.sp.max() <= rg["sp"][1]
    assert rg["o"][0] <= prm.o.min() and prm.o.max() <= rg["o"][1]
    assert rg["e"][0] <= e.min() and e.max() <= rg["e"][1]
    if dual:
        assert 0 <= prm.sn.min() and prm.sn.max() <= rg["sn"][1]
    # code errors: at most half a code LSB, and as reported
    xp, xn, xo = exact_codes(cfg, alpha, beta, gp, gn, s_tot)
    assert np.abs(prm.sp - xp).max() <= 0.5 + 1e-9
    np.testing.assert_allclose(comp.scale_err_p, prm.sp - xp, atol=1e-9)
    if dual:
        assert np.abs(prm.sn - xn).max() <= 0.5 + 1e-9
        np.testing.assert_allclose(comp.scale_err_n, prm.sn - xn, atol=1e-9)
    assert np.abs(comp.scale_err_p).max() <= 0.5 and np.abs(comp.scale_err_n).max() <= 0.5
    nz = xp > 0
    np.testing.assert_allclose(comp.rel_scale_err_p[nz], (prm.sp[nz] - xp[nz]) / xp[nz], atol=1e-12)
    assert (comp.rel_scale_err_p[~nz] == 0).all()
    half_lsb = 0.5 * 2.0 ** (oa - s_tot)  # half an offset LSB in output units
    np.testing.assert_allclose(comp.offset_err, (prm.o - xo) * 2.0 ** (oa - s_tot), atol=1e-12)
    assert (np.abs(comp.offset_err) <= half_lsb + 1e-12).all()
    # polarity: −1 exactly where α < 0
    assert (comp.polarity == np.where(alpha < 0, -1, 1)).all()
    assert (prm.sp[alpha == 0] == 0).all()
    # the shift is the largest that fits: one more overflows some column
    assert fits(cfg, alpha, beta, gp, gn, s_tot).all()
    if comp.shift < rg["shift"][1]:
        assert not fits(cfg, alpha, beta, gp, gn, np.full(cfg.columns, comp.shift + 1)).all()
    # and each column's e is the largest that fits, unless at e_max
    grow = e < rg["e"][1]
    assert not fits(cfg, alpha, beta, gp, gn, s_tot + 1)[grow].any()


def test_compile_exp_octaves_get_their_own_e():
    cfg = nmpu_preset("exp")
    k = np.arange(cfg.columns) % 8
    alpha = 0.5 * 2.0 ** -k
    comp = g.compile_params(cfg, alpha, 0.0)
    # 0.5·2^8 = 128 fits 8 bits, 0.5·2^9 = 256 does not: shift 8; α/2^k takes e = k to fill the code
    assert comp.shift == 8
    assert (comp.params.e == k).all()
    assert (comp.params.sp == 128).all() and (comp.params.sn == 128).all()
    assert (comp.scale_err_p == 0).all()
    # not powers of two: 0.3·2^9 = 153.6 fits, 0.3·2^10 = 307 does not
    comp = g.compile_params(cfg, 0.3 * 2.0 ** -k, 0.0)
    assert comp.shift == 9 and (comp.params.e == k).all()
    assert (comp.params.sp == 154).all()  # round(153.6)
    # without the exponent (paper) the small columns lose code bits instead
    comp = g.compile_params(nmpu_preset("paper"), 0.3 * 2.0 ** -k, 0.0)
    assert comp.shift == 9 and comp.params.e is None
    assert (comp.params.sp == np.round(153.6 / 2.0 ** k)).all()


def test_compile_e_capped_at_e_max():
    cfg = nmpu_preset("exp")
    alpha = np.full(cfg.columns, 0.5)
    alpha[3] = 0.5 * 2.0 ** -10  # ten octaves down: e stops at 7, the code at 128 / 8 = 16
    comp = g.compile_params(cfg, alpha, 0.0)
    assert comp.shift == 8 and comp.params.e[3] == 7 and comp.params.sp[3] == 16
    assert (np.delete(comp.params.e, 3) == 0).all()


@pytest.mark.parametrize("cfg", COMPILE_CONFIGS, ids=lambda c: c.tag)
@pytest.mark.parametrize("mode", [HALF_EVEN, FLOOR])
def test_compile_end_to_end(cfg, mode):
    """forward() with the compiled codes approximates y = α·(I+ − I−) + β.

    With exact codes xp, xn, xo and the integer codes sp, sn, o, before compression
      acc·2^−s − y_true = ((sp − xp)·P − (sn − xn)·N)·2^(sa−s) + (o − xo)·2^(oa−s),
    bounded by 0.5·(P + N)·2^(sa−s) + 0.5·2^(oa−s); the compression adds at most 0.5 (half_even)
    or 1 (floor); saturation is a clamp of both sides, which does not increase the distance.
    """
    rng = np.random.default_rng(11)
    alpha, beta, gp, gn = layer_problem(cfg, rng)
    dual = cfg.input_mode == "dual"
    comp = g.compile_params(cfg, alpha, beta, gp, gn if dual else None)
    k, c, full = 64, cfg.columns, 2 ** cfg.adc_bits - 1
    s_tot = comp.shift + (0 if comp.params.e is None else comp.params.e)
    sa = max(cfg.scale_frac, cfg.offset_frac) - cfg.scale_frac
    oa = max(cfg.scale_frac, cfg.offset_frac) - cfg.offset_frac
    pos = comp.polarity > 0
    layer = g.NMPULayer(shift=comp.shift, round_mode=mode)
    if dual:
        p = rng.integers(0, full + 1, (k, c))
        n = rng.integers(0, full + 1, (k, c))
        # the crossbar puts I+ on the P line, or I− where the polarity is swapped
        i_plus = np.where(pos, p / gp, n / gn)
        i_minus = np.where(pos, n / gn, p / gp)
        y = g.forward(cfg, layer, comp.params, p=p, n=n)
        mag = p + n
    else:
        x = rng.integers(-full - 1, full + 1, (k, c))
        i_plus = np.where(pos, x / gp, -x / gp)  # X = gain·(I+ − I−), sign swapped likewise
        i_minus = 0.0
        y = g.forward(cfg, layer, comp.params, x=x)
        mag = np.abs(x)
    want = alpha * (i_plus - i_minus) + beta
    lo, hi = -2 ** (cfg.out_bits - 1), 2 ** (cfg.out_bits - 1) - 1
    code_err = 0.5 * mag * 2.0 ** (sa - s_tot) + 0.5 * 2.0 ** (oa - s_tot)
    bound = code_err + (0.5 if mode == HALF_EVEN else 1.0)
    err = np.abs(y - np.clip(want, lo, hi))
    assert (err <= bound + 1e-9).all(), float((err - bound).max())
    assert np.mean((want > lo) & (want < hi)) > 0.9  # mostly inside the rails: not a vacuous test
    if cfg.out_bits >= 8:
        assert code_err.max() < 1.0  # the codes carry the scale: under one output LSB of error


def test_compile_negative_alpha_flips_polarity_only():
    cfg = nmpu_preset("paper")
    alpha = np.linspace(-0.05, 0.05, cfg.columns)
    alpha[alpha == 0] = 0.01
    beta = np.linspace(-3, 3, cfg.columns)
    a = g.compile_params(cfg, alpha, beta, 1.1, 0.9)
    b = g.compile_params(cfg, np.abs(alpha), beta, 1.1, 0.9)
    assert (a.polarity == np.sign(alpha)).all() and (b.polarity == 1).all()
    assert a.shift == b.shift and (a.params.sp == b.params.sp).all() and (a.params.o == b.params.o).all()


def test_compile_forced_shift():
    cfg = nmpu_preset("paper")
    alpha = np.full(cfg.columns, 0.02)
    # sp = 0.02·2^s: 163.84 at s 13 fits, 327.68 at 14 does not; o = 0.5·2^(s − 6): 64 at 13
    auto = g.compile_params(cfg, alpha, 0.5)
    assert auto.shift == 13 and (auto.params.sp == 164).all() and (auto.params.o == 64).all()
    low = g.compile_params(cfg, alpha, 0.5, shift=10)
    assert low.shift == 10 and (low.params.sp == 20).all() and (low.params.o == 8).all()  # 20.48, 8
    with pytest.raises(ValueError, match=r"column 0 does not fit at the forced shift 14"):
        g.compile_params(cfg, alpha, 0.5, shift=14)
    # β = 1 needs o = 2^(s − 6) <= 127: the offset, not the scale, caps the shift at 12
    assert g.compile_params(cfg, alpha, 1.0).shift == 12


def test_compile_offset_out_of_range_names_column():
    cfg = nmpu_preset("paper")
    beta = np.zeros(cfg.columns)
    beta[5] = 10000.0  # 10000 / 2^6 = 156 > 127 even at shift 0
    with pytest.raises(ValueError, match=r"offset of column 5 is too large"):
        g.compile_params(cfg, 0.0, beta)
    # the offset code is 8-bit two's complement: β = −8192 is code −128 (fits), +8192 is +128
    beta[5] = 0.0
    beta[3] = -8192.0
    comp = g.compile_params(cfg, 0.0, beta)
    assert comp.shift == 0 and comp.params.o[3] == -128
    beta[3] = 8192.0
    with pytest.raises(ValueError, match=r"offset of column 3"):
        g.compile_params(cfg, 0.0, beta)
    beta[3] = 8160.0  # 127.5 rounds (to even) to 128: does not fit
    with pytest.raises(ValueError, match=r"offset of column 3"):
        g.compile_params(cfg, 0.0, beta)
    beta[3] = 8159.0  # 127.48 -> 127
    assert g.compile_params(cfg, 0.0, beta).params.o[3] == 127


def test_compile_scale_out_of_range_names_column():
    cfg = nmpu_preset("paper")
    alpha = np.full(cfg.columns, 0.01)
    alpha[9] = 300.0  # round(300) > 255 even at shift 0
    with pytest.raises(ValueError, match=r"scale of column 9 is too large"):
        g.compile_params(cfg, alpha, 0.0)


@pytest.mark.parametrize("arg", ["alpha", "beta", "gain_p", "gain_n"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_compile_nan_names_column(arg, bad):
    cfg = nmpu_preset("paper")
    kw = dict(alpha=np.full(cfg.columns, 0.01), beta=np.zeros(cfg.columns),
              gain_p=np.ones(cfg.columns), gain_n=np.ones(cfg.columns))
    kw[arg][3] = bad
    with pytest.raises(ValueError, match=rf"`{arg}` of column 3 is NaN or infinite"):
        g.compile_params(cfg, **kw)


@pytest.mark.parametrize("arg", ["gain_p", "gain_n"])
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_compile_non_positive_gain(arg, bad):
    cfg = nmpu_preset("tiny")
    gains = np.ones(cfg.columns)
    gains[2] = bad
    with pytest.raises(ValueError, match=rf"`{arg}` of column 2 must be positive"):
        g.compile_params(cfg, 0.1, 0.0, **{arg: gains})


# -- precision knobs ------------------------------------------------------------------------------

KNOBS = [NMPUConfig(name="d4", drop_bits=4), NMPUConfig(name="s1", single_scale=True, drop_bits=5),
         NMPUConfig(name="sx", input_mode="signed", drop_bits=3, scale_frac=5),
         NMPUConfig(name="d9", single_scale=True, drop_bits=9, scale_frac=5, offset_int=5)]


@pytest.mark.parametrize("cfg", KNOBS, ids=lambda c: c.name)
def test_dropped_products_floor_like_python(cfg):
    """Products with `drop_bits` LSBs floored away, against plain Python integers (// floors),
    and the accumulator on the coarser grid."""
    rng = np.random.default_rng(11)
    n = 400
    sp = rng.integers(0, cfg.scale_max + 1, n)
    o = rng.integers(cfg.offset_range[0], cfg.offset_range[1] + 1, n)
    d = 2 ** cfg.drop_bits
    if cfg.dual:
        p, q = rng.integers(0, cfg.adc_max + 1, (2, n))
        sn = None if cfg.single_scale else rng.integers(0, cfg.scale_max + 1, n)
        pp, pn = g.products(cfg, sp, sn, p=p, n=q)
        if cfg.single_scale:
            want = [int(a) * (int(b) - int(c)) // d for a, b, c in zip(sp, p, q)]
            assert pn is None
        else:
            want = [int(a) * int(b) // d - int(c) * int(e) // d for a, b, c, e in zip(sp, p, sn, q)]
            pp = pp - pn
    else:
        x = rng.integers(cfg.x_range[0], cfg.x_range[1] + 1, n)
        pp, _ = g.products(cfg, sp, x=x)
        want = [int(a) * int(b) // d for a, b in zip(sp, x)]
    assert pp.tolist() == want
    acc = g.accumulate(cfg, pp, None, o)
    assert acc.tolist() == [w * 2 ** cfg.scale_align + int(k) * 2 ** cfg.offset_align
                            for w, k in zip(want, o)]


def test_single_scale_has_no_sn():
    cfg = NMPUConfig(single_scale=True)
    with pytest.raises(ValueError, match="`single_scale` has no `sn`"):
        g.check_params(cfg, g.NMPUParams(sp=1, sn=1, o=0))
    with pytest.raises(ValueError, match="`single_scale` has no `sn`"):
        g.products(cfg, 1, 1, p=1, n=1)
    assert [f for f, _ in cfg.word_fields] == ["sp", "o"]
    assert g.unpack(cfg, g.pack(cfg, sp=200, o=-3)) == {"sp": 200, "o": -3}


def test_static_layer_fixes_shift_round_and_pre_cut():
    cfg = NMPUConfig(static_layer=True, static_shift=9, static_pre_cut=2, static_round=1)
    assert g.static_fields(cfg) == dict(shift=9, pre_cut=2, round_mode=1)
    prm = g.NMPUParams(sp=np.full(cfg.columns, 200), sn=np.zeros(cfg.columns, np.int64), o=0)
    p = np.arange(cfg.columns) * 16
    y = g.forward(cfg, g.NMPULayer(**g.static_fields(cfg)), prm, p=p, n=0 * p)
    free = dataclasses.replace(cfg, static_layer=False, static_shift=0, static_pre_cut=0,
                               static_round=2)
    assert (y == g.forward(free, g.NMPULayer(shift=9, pre_cut=2, round_mode=1), prm,
                           p=p, n=0 * p)).all()
    for field, bad in (("shift", 8), ("pre_cut", 0), ("round_mode", 2)):
        with pytest.raises(ValueError, match=rf"`{field}` is fixed at \d by the config's "
                                             rf"`static_layer`, not {bad}"):
            g.forward(cfg, g.NMPULayer(**(g.static_fields(cfg) | {field: bad})), prm, p=p, n=p)


def test_compile_single_scale_and_static():
    """One code for both branches at the mean inverse gain, its error against each branch's
    exact code reported; a static layer forces its shift (or names the column that cannot fit)."""
    cfg = NMPUConfig(single_scale=True, drop_bits=4)
    rng = np.random.default_rng(5)
    alpha = rng.uniform(0.01, 0.03, cfg.columns)
    gp, gn_ = rng.uniform(0.9, 1.1, (2, cfg.columns))
    c = g.compile_params(cfg, alpha, 0.0, gp, gn_)
    assert c.params.sn is None
    exact = alpha * (1 / gp + 1 / gn_) / 2 * 2.0 ** (c.total_shift - cfg.term_align)
    assert np.all(np.abs(c.params.sp - exact) <= 0.5)
    np.testing.assert_allclose(c.scale_err_p, c.params.sp - alpha / gp * 2.0 ** (c.total_shift - cfg.term_align))
    st = dataclasses.replace(cfg, static_layer=True, static_shift=c.shift - 1)
    assert g.compile_params(st, alpha, 0.0, gp, gn_).shift == c.shift - 1
    with pytest.raises(ValueError, match=r"`shift` is fixed at \d+ by the config's `static_layer`"):
        g.compile_params(st, alpha, 0.0, gp, gn_, shift=c.shift)
    high = dataclasses.replace(st, static_shift=c.shift + 1)
    with pytest.raises(ValueError, match="does not fit at the forced shift"):
        g.compile_params(high, alpha, 0.0, gp, gn_)
