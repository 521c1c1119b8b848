"""Tests of the FP16 baselines' golden model (golden/baselines.py).

The LDPU is compared, stage by stage and end to end, with `ref_ldpu` below: a per-element
reading of design/baselines.md written without golden.fp16: numpy float16 for the conversions of
the counts and of the residual (a correctly rounded float64 → float16 cast of an exact integer),
MPFR through gmpy2 in an IEEE binary16 context (11 bits, subnormalize) for every fused
multiply-add, values rather than bits for the ReLU (negative numbers, −0 and −Inf become +0, NaN
passes), and np.rint (ties to even) for the int8 conversion. Results compare as patterns, NaN as
the canonical 0x7E00. The FP16 outer-product array is compared with numpy's float16 multiply.

Stimulus is drawn with the session seed (tests/conftest.py) in classes aimed at the hard cases
(realistic, to_int8 ties, signed zeros, overflow to Inf and Inf − Inf, random patterns); every
class the spec singles out is counted in the reference's results and required to occur.
"""

import math

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpfr

from golden import baselines as gb
from golden import nmpu
from hdl.config import FP16OuterConfig, LDPUConfig, fp16_outer_preset, ldpu_preset
from tests.conftest import run_seed

NAN, POS_INF, NEG_INF, ONE, MAX = 0x7E00, 0x7C00, 0xFC00, 0x3C00, 0x7BFF
NEG_ZERO, HALF, QUARTER, MINUS_ONE, MINUS_HALF = 0x8000, 0x3800, 0x3400, 0xBC00, 0xB800
PAPER, TINY = ldpu_preset("paper"), ldpu_preset("tiny")
NORES = LDPUConfig(name="nores", columns=4, adc_bits=5, residual=False)
SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00,
                     0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x7FFF, ONE, MINUS_ONE, HALF, MINUS_HALF])
FIELDS = ("sp", "sn", "o", "a", "b")
LAYER = ("c", "relu_mid", "relu_out", "residual_en")


def rng_for(tag):
    return np.random.default_rng([run_seed(), sum(map(ord, tag))])


def f16(x):
    """Real values (exactly representable, or rounded once by numpy's cast) as patterns."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float64).astype(np.float16).view(np.uint16).astype(np.int64)


def h(bits):
    return np.asarray(bits, dtype=np.int64).astype(np.uint16).view(np.float16)


# -- the independent reference -------------------------------------------------------------------

CTX = gmpy2.ieee(16)
assert (CTX.precision, CTX.emin, CTX.emax, CTX.subnormalize) == (11, -23, 16, True)


def mpv(bits):
    """One pattern as an exact mpfr (float16 → float64 → mpfr, both exact)."""
    return mpfr(float(h(bits)))


def mp_bits(v):
    """A binary16 mpfr value as its pattern (NaN: 0x7E00); refuses anything not binary16."""
    x = float(v)
    if math.isnan(x):
        return NAN
    y = np.float16(x)
    assert float(y) == x and math.copysign(1, float(y)) == math.copysign(1, x), f"not binary16: {x}"
    return int(np.array(y).view(np.uint16))


def ref_relu(z, enable):
    """Spec: negative values (−Inf included) and −0 become +0; positive values and NaN pass."""
    if enable and not gmpy2.is_nan(z) and (z < 0 or (z == 0 and gmpy2.is_signed(z))):
        return mpfr(0)
    return z


def ref_to_int8(z):
    """Spec: round to nearest even (np.rint), saturate; ±Inf saturate; NaN is 0 and flagged."""
    x = float(z)
    if math.isnan(x):
        return 0, False, True
    if math.isinf(x):
        return (127 if x > 0 else -128), True, False
    k = int(np.rint(x))
    return min(max(k, -128), 127), not -128 <= k <= 127, False


def ref_element(adc_bits, p, n, r, sp, sn, o, a, b, c, relu_mid, relu_out, residual_en):
    """One column of one vector as design/baselines.md states it; every stage as a pattern."""
    assert 0 <= p < 2 ** adc_bits and 0 <= n < 2 ** adc_bits and -128 <= r <= 127
    P = mpfr(float(np.float16(float(p))))          # numpy: one correctly rounded conversion
    N = mpfr(float(np.float16(float(n))))
    t = CTX.fma(mpv(sp), P, mpv(o))
    y = CTX.fma(-mpv(sn), N, t)                    # −sn: the sign flipped, exact
    z = CTX.fma(mpv(a), y, mpv(b))
    z_mid = ref_relu(z, relu_mid)
    R = mpfr(float(np.float16(float(r))))
    z_res = CTX.fma(mpv(c), R, z_mid) if residual_en else z_mid
    z_out = ref_relu(z_res, relu_out)
    out, sat, nan = ref_to_int8(z_out)
    return dict(P16=mp_bits(P), N16=mp_bits(N), t=mp_bits(t), y=mp_bits(y), z=mp_bits(z),
                z_mid=mp_bits(z_mid), z_res=mp_bits(z_res), z_out=mp_bits(z_out), out=out,
                sat=sat, nan=nan)


def ref_ldpu(cfg, case):
    """`ref_element` over the broadcast arrays of `case` (inputs, params, registers)."""
    names = ("p", "n", "r", *FIELDS, *LAYER)
    arrays = np.broadcast_arrays(*(np.asarray(case[k]) for k in names))
    flat = [a.ravel() for a in arrays]
    rows = [ref_element(cfg.adc_bits, *(int(x[i]) for x in flat)) for i in range(flat[0].size)]
    shape = arrays[0].shape
    return {k: np.array([row[k] for row in rows]).reshape(shape) for k in rows[0]}


# -- stimulus ------------------------------------------------------------------------------------

def draw_counts(rng, cfg, shape, corners=0.15):
    top = cfg.adc_max
    extra = [0, top, 1] + ([2049, 2050, 2051, 4093] if top >= 4095 else [])
    a = rng.integers(0, top + 1, shape)
    return np.where(rng.random(shape) < corners, rng.choice(extra, shape), a)


def logmag(rng, lo, hi, shape, signed=True):
    s = np.where(rng.random(shape) < 0.5, -1.0, 1.0) if signed else 1.0
    return f16(s * np.exp2(rng.uniform(lo, hi, shape)))


def draw_case(rng, cfg, vectors, kind):
    """Inputs, params and registers of `vectors` × `columns` elements (every field per element:
    the golden model broadcasts registers, so this is the widest use). `kind` picks the class."""
    shape = (vectors, cfg.columns)
    pick = lambda *vals: rng.choice(np.array(vals), shape)
    mix = lambda v, share=0.15: np.where(rng.random(shape) < share, rng.choice(SPECIALS, shape), v)
    top = np.log2(160.0 / cfg.adc_max)
    if kind == "realistic":       # the bench's ranges, a few corners
        prm = dict(sp=mix(logmag(rng, top - 3, top, shape, False), 0.05),
                   sn=mix(logmag(rng, top - 3, top, shape, False), 0.05),
                   o=mix(logmag(rng, -2, 5, shape)), a=mix(logmag(rng, -1.5, 1.5, shape)),
                   b=mix(logmag(rng, -3, 4, shape)))
        c = mix(logmag(rng, -3, 1, shape), 0.2)
    elif kind == "ties":          # quarter and half units: many exact .5 before the int8 step
        prm = dict(sp=pick(HALF, QUARTER, ONE, 0x3A00), sn=pick(0, HALF, QUARTER),
                   o=f16(rng.integers(-600, 600, shape) / 4),
                   a=pick(ONE, MINUS_ONE, HALF, 0x4000), b=f16(rng.integers(-300, 300, shape) / 2))
        c = pick(ONE, HALF, MINUS_HALF, MINUS_ONE, 0, NEG_ZERO)
    elif kind == "zeros":         # signed zeros everywhere: −0 reaches the ReLUs
        z = lambda: pick(0, NEG_ZERO, 0, NEG_ZERO, ONE, MINUS_ONE)
        prm = dict(sp=z(), sn=z(), o=z(), a=z(), b=pick(0, NEG_ZERO))
        c = pick(0, NEG_ZERO, ONE, MINUS_ONE)
    elif kind == "overflow":      # products beyond 65504: ±Inf, Inf − Inf, Inf·0
        big = lambda: logmag(rng, 9, 16.5, shape)
        prm = dict(sp=big(), sn=big(), o=mix(logmag(rng, 0, 16.5, shape), 0.3),
                   a=mix(logmag(rng, -2, 10, shape), 0.2), b=mix(logmag(rng, 0, 16.5, shape), 0.3))
        c = mix(logmag(rng, 0, 16, shape), 0.3)
    elif kind == "patterns":      # any 16 bits
        prm = {k: rng.integers(0, 1 << 16, shape) for k in FIELDS}
        c = rng.integers(0, 1 << 16, shape)
    else:
        raise ValueError(kind)
    case = dict(prm, c=c, p=draw_counts(rng, cfg, shape), n=draw_counts(rng, cfg, shape),
                r=np.where(rng.random(shape) < 0.15, rng.choice([-128, 127, 0, -1], shape),
                           rng.integers(-128, 128, shape)),
                relu_mid=rng.integers(0, 2, shape), relu_out=rng.integers(0, 2, shape),
                residual_en=rng.integers(0, 2, shape) if cfg.residual else np.zeros(shape, int))
    return case


KINDS = ("realistic", "ties", "zeros", "overflow", "patterns")


def draw_all(cfg, tag, vectors_per_kind):
    rng = rng_for(tag)
    cases = [draw_case(rng, cfg, vectors_per_kind, k) for k in KINDS]
    return {k: np.concatenate([c[k] for c in cases]) for k in cases[0]}


def golden_stages(cfg, case):
    """Every stage of the golden model on `case`, composed by hand as `forward` does."""
    prm = gb.LDPUParams(**{k: case[k] for k in FIELDS})
    P16, N16 = gb.convert(cfg, case["p"], case["n"])
    y = gb.scale(prm, P16, N16)
    z = gb.affine(prm, y)
    z_mid = gb.relu(z, case["relu_mid"])
    layer = gb.LDPULayer(c=case["c"], residual_en=case["residual_en"])
    z_res = gb.residual(layer, z_mid, case["r"]) if cfg.residual else z_mid
    z_out = gb.relu(z_res, case["relu_out"])
    out, sat, nan = gb.output(z_out)
    return dict(P16=P16, N16=N16, y=y, z=z, z_mid=z_mid, z_res=z_res, z_out=z_out, out=out,
                sat=sat, nan=nan)


def forward_case(cfg, case, **kw):
    layer = gb.LDPULayer(**{k: case[k] for k in LAYER if k != "residual_en" or cfg.residual})
    prm = gb.LDPUParams(**{k: case[k] for k in FIELDS})
    r = case["r"] if cfg.residual else None
    return gb.forward(cfg, layer, prm, p=case["p"], n=case["n"], r=r, **kw)


def first_miss(what, got, want, case):
    bad = np.flatnonzero(np.asarray(got).ravel() != np.asarray(want).ravel())
    if not bad.size:
        return
    i = bad[0]
    ctx = ", ".join(f"{k}={int(np.asarray(v).ravel()[i]):#x}" for k, v in case.items())
    raise AssertionError(f"{what}: golden {int(np.asarray(got).ravel()[i]):#06x}, reference "
                         f"{int(np.asarray(want).ravel()[i]):#06x} ({bad.size} differ) at {ctx}")


def coverage(cfg, case, ref):
    """Counts of the hard classes in the reference's results."""
    def frac_half(bits):
        v = h(bits).astype(np.float64)
        with np.errstate(invalid="ignore"):
            return np.isfinite(v) & (np.abs(v - np.trunc(v)) == 0.5)
    res = case["residual_en"] == 1
    return {
        "nan output": int(ref["nan"].sum()),
        "saturated high": int((ref["sat"] & (ref["out"] == 127)).sum()),
        "saturated low": int((ref["sat"] & (ref["out"] == -128)).sum()),
        "to_int8 tie": int(frac_half(ref["z_out"]).sum()),
        "y = ±Inf": int(((ref["y"] & 0x7FFF) == POS_INF).sum()),
        "y = NaN (Inf − Inf, Inf·0)": int((ref["y"] == NAN).sum()),
        "−0 into an enabled ReLU": int(((ref["z"] == NEG_ZERO) & (case["relu_mid"] == 1)).sum()
                                       + ((ref["z_res"] == NEG_ZERO) & (case["relu_out"] == 1)).sum()),
        "−Inf into an enabled ReLU": int(((ref["z"] == NEG_INF) & (case["relu_mid"] == 1)).sum()),
        "residual −128/127": int((res & np.isin(case["r"], (-128, 127))).sum()),
        "residual c < 0": int((res & ((case["c"] >> 15) == 1) & ((case["c"] & 0x7FFF) != 0)).sum()),
        "residual c = ±0": int((res & ((case["c"] & 0x7FFF) == 0)).sum()),
        "count rounded in conversion": int((h(ref["P16"]).astype(float) != case["p"]).sum()),
    }


MIN_COVERAGE = {"paper": dict.fromkeys(
    ["nan output", "saturated high", "saturated low", "to_int8 tie", "y = ±Inf",
     "y = NaN (Inf − Inf, Inf·0)", "−0 into an enabled ReLU", "−Inf into an enabled ReLU",
     "residual −128/127", "residual c < 0", "residual c = ±0", "count rounded in conversion"], 50),
    "tiny": dict.fromkeys(
    ["nan output", "saturated high", "saturated low", "to_int8 tie", "y = ±Inf",
     "y = NaN (Inf − Inf, Inf·0)", "−0 into an enabled ReLU", "−Inf into an enabled ReLU",
     "residual −128/127", "residual c < 0", "residual c = ±0"], 50)}


# -- LDPU against the reference ------------------------------------------------------------------

@pytest.mark.parametrize("cfg, vectors", [(PAPER, 40), (TINY, 1500)], ids=lambda x: getattr(x, "tag", x))
def test_forward_and_stages_match_reference(cfg, vectors):
    case = draw_all(cfg, f"forward-{cfg.tag}", vectors)
    ref = ref_ldpu(cfg, case)
    got = golden_stages(cfg, case)
    for k in ("P16", "N16", "y", "z", "z_mid", "z_res", "z_out", "out", "sat", "nan"):
        first_miss(k, got[k], ref[k], case)
    y, clamped = forward_case(cfg, case, return_clamped=True)
    first_miss("forward", y, ref["out"], case)
    first_miss("clamped", clamped, ref["sat"] | ref["nan"], case)
    assert y.dtype == np.int64 and y.shape == case["p"].shape
    cov = coverage(cfg, case, ref)
    low = {k: cov[k] for k, m in MIN_COVERAGE[cfg.tag].items() if cov[k] < m}
    assert not low, f"hard classes too rare: {low} (all: {cov})"
    print(f"\n{cfg.tag}: {case['p'].size} elements; classes: {cov}")


def test_scale_intermediate_t_matches_reference():
    """t = fma(sp, P16, o) on its own (`scale` returns only y): with sn = +0 the second FMA adds
    −0·N16 = −0, which leaves every t unchanged (−0 + ±0 = ±0), so y = t."""
    rng = rng_for("t")
    for kind in KINDS:
        case = draw_case(rng, PAPER, 4, kind)
        case["sn"] = np.zeros_like(case["sn"])
        ref = ref_ldpu(PAPER, case)
        first_miss(f"t ({kind})", golden_stages(PAPER, case)["y"], ref["t"], case)


def test_per_beat_registers_broadcast():
    """The scoreboard's layout: registers of shape (beats, 1), params of shape (columns,)."""
    rng = rng_for("beats")
    cfg = PAPER
    V = 4
    full = draw_case(rng, cfg, V, "realistic")
    for k in LAYER:
        full[k] = np.broadcast_to(full[k][:, :1], full[k].shape)
    for k in FIELDS:
        full[k] = np.broadcast_to(full[k][:1], full[k].shape)
    ref = ref_ldpu(cfg, full)
    layer = gb.LDPULayer(**{k: full[k][:, :1] for k in LAYER})
    prm = gb.LDPUParams(**{k: full[k][0] for k in FIELDS})
    y, clamped = gb.forward(cfg, layer, prm, p=full["p"], n=full["n"], r=full["r"],
                            return_clamped=True)
    first_miss("forward", y, ref["out"], full)
    first_miss("clamped", clamped, ref["sat"] | ref["nan"], full)


# -- stages by hand ------------------------------------------------------------------------------

def test_convert_by_hand():
    # 2049 is a tie between 2048 and 2050 (ulp 2): even 2048; 2051 ties to 2052; 4095 → 4096
    P16, N16 = gb.convert(PAPER, [0, 1, 2048, 2049, 2050, 2051, 4095], [7, 0, 0, 0, 0, 0, 0])
    assert P16.tolist() == [0x0000, 0x3C00, 0x6800, 0x6800, 0x6801, 0x6802, 0x6C00]
    assert N16.tolist() == [0x4700] + [0] * 6
    assert gb.convert(TINY, 7, 0)[0] == 0x4700


def test_scale_by_hand():
    prm = gb.LDPUParams(sp=HALF, sn=QUARTER, o=ONE)
    # t = 0.5·100 + 1 = 51, y = −0.25·40 + 51 = 41
    assert gb.scale(prm, f16(100), f16(40)) == f16(41)
    # fused: sp = 1 + 2^-10, P = 2047, o = −2047: t = 2047·2^-10 = 1.9990234375 (0x3FFF) exactly;
    # rounding the product first (2048.999 → 2048) would give 1.0
    fused = gb.LDPUParams(sp=0x3C01, sn=0, o=f16(-2047))
    assert gb.scale(fused, f16(2047), f16(5)) == 0x3FFF
    # the second FMA is fused too: y = −(1 + 2^-10)·2047 + 2047 = −1.9990234375
    second = gb.LDPUParams(sp=ONE, sn=0x3C01, o=0)
    assert gb.scale(second, f16(2047), f16(2047)) == 0xBFFF
    # fused, so no product overflows alone: sp = sn = 65504, P = N = 4096: t = +Inf (the sum
    # rounds to Inf), then −65504·4096 + Inf = +Inf: a finite product does not cancel Inf
    huge = gb.LDPUParams(sp=MAX, sn=MAX, o=0)
    assert gb.scale(huge, f16(4096), f16(4096)) == POS_INF
    # Inf − Inf: sn = +Inf makes the second product −Inf: NaN
    assert gb.scale(gb.LDPUParams(sp=MAX, sn=POS_INF, o=0), f16(4096), f16(1)) == NAN
    # Inf·0: sn = Inf, N = 0
    assert gb.scale(gb.LDPUParams(sp=ONE, sn=POS_INF, o=0), f16(1), 0) == NAN
    # −0: sp = −0, o = −0 give t = −0; −sn·N = −0 (sn = +0): y = −0
    assert gb.scale(gb.LDPUParams(sp=NEG_ZERO, sn=0, o=NEG_ZERO), f16(3), f16(3)) == NEG_ZERO
    # sn = +0, t = +0: −0 + +0 = +0
    assert gb.scale(gb.LDPUParams(sp=0, sn=0, o=0), f16(3), f16(3)) == 0


def test_affine_by_hand():
    prm = gb.LDPUParams(sp=0, a=0x4000, b=MINUS_ONE)
    assert gb.affine(prm, f16(41)) == f16(81)           # 2·41 − 1
    assert gb.affine(prm, POS_INF) == POS_INF
    assert gb.affine(gb.LDPUParams(sp=0, a=0, b=0), POS_INF) == NAN   # 0·Inf
    assert gb.affine(gb.LDPUParams(sp=0, a=ONE, b=0), NEG_ZERO) == 0  # −0 + +0 = +0


RELU_IN = [0x0000, 0x8000, 0x3C00, 0xBC00, 0x7C00, 0xFC00, 0x7E00, 0x0001, 0x8001, 0xFBFF, 0x7BFF]
RELU_ON = [0x0000, 0x0000, 0x3C00, 0x0000, 0x7C00, 0x0000, 0x7E00, 0x0001, 0x0000, 0x0000, 0x7BFF]


def test_relu_by_hand():
    assert gb.relu(RELU_IN, 1).tolist() == RELU_ON
    assert gb.relu(RELU_IN, 0).tolist() == RELU_IN
    per = gb.relu([0x8000, 0x8000], [0, 1]).tolist()
    assert per == [0x8000, 0x0000]
    # the relu as a bit operation: any pattern with the sign bit set, a negative NaN included
    assert gb.relu(0xFE00, 1) == 0


def test_residual_by_hand():
    on = gb.LDPULayer(c=ONE, residual_en=1)
    assert gb.residual(on, f16(5), -128) == f16(-123)
    assert gb.residual(on, f16(5), 127) == f16(132)
    neg = gb.LDPULayer(c=MINUS_HALF, residual_en=1)
    assert gb.residual(neg, f16(5), 127) == f16(-58.5)      # −0.5·127 + 5
    assert gb.residual(neg, f16(5), -128) == f16(69)
    zero = gb.LDPULayer(c=0, residual_en=1)
    assert gb.residual(zero, f16(5), 100) == f16(5)
    assert gb.residual(zero, NEG_ZERO, 100) == 0            # +0 + −0 = +0
    assert gb.residual(gb.LDPULayer(c=NEG_ZERO, residual_en=1), NEG_ZERO, 100) == NEG_ZERO
    # fused: c = 1 + 2^-10, R = 127, z = −127: one rounding of 127·2^-10 = 0.1240234375
    fused = gb.LDPULayer(c=0x3C01, residual_en=1)
    assert gb.residual(fused, f16(-127), 127) == f16(127 / 1024)
    off = gb.LDPULayer(c=NAN, residual_en=0)
    assert gb.residual(off, f16(5), -128) == f16(5)         # disabled: z, whatever c and R


@pytest.mark.parametrize("value, want, sat", [
    (2.5, 2, False), (3.5, 4, False), (-0.5, 0, False), (-2.5, -2, False), (126.5, 126, False),
    (127.0, 127, False), (127.5, 127, True), (128.0, 127, True), (-128.0, -128, False),
    (-128.5, -128, False), (-129.0, -128, True), (65504.0, 127, True), (-65504.0, -128, True),
    (np.inf, 127, True), (-np.inf, -128, True), (0.4995, 0, False), (2 ** -24, 0, False),
])
def test_output_by_hand(value, want, sat):
    y, s, n = gb.output(f16(value))
    assert (int(y), bool(s), bool(n)) == (want, sat, False)


def test_output_nan():
    y, s, n = gb.output([NAN, 0x7C01, 0xFE00])
    assert y.tolist() == [0, 0, 0] and not s.any() and n.all()


def test_forward_by_hand():
    cfg = PAPER
    prm = gb.LDPUParams(sp=HALF, sn=QUARTER, o=ONE, a=0x4000, b=MINUS_ONE)
    # y = 0.5·100 − 0.25·40 + 1 = 41, z = 81; with residual −128 (c = 1): −47, relu_out: 0
    assert gb.forward(cfg, gb.LDPULayer(), prm, p=100, n=40) == 81
    assert gb.forward(cfg, gb.LDPULayer(residual_en=1), prm, p=100, n=40, r=-128) == -47
    assert gb.forward(cfg, gb.LDPULayer(residual_en=1, relu_out=1), prm, p=100, n=40, r=-128) == 0
    # relu_mid on a negative z, then the residual: 0 + 100
    assert gb.forward(cfg, gb.LDPULayer(residual_en=1, relu_mid=1), prm, p=0, n=4095, r=100) == 100
    # Inf: saturated (counted); Inf − Inf (sn = Inf): NaN → 0, counted; −Inf cut by relu_mid:
    # 0, not counted
    ident = dict(a=ONE, b=0)
    y, cl = gb.forward(cfg, gb.LDPULayer(), gb.LDPUParams(sp=MAX, sn=0, o=0, **ident),
                       p=4095, n=0, return_clamped=True)
    assert (int(y), bool(cl)) == (127, True)
    y, cl = gb.forward(cfg, gb.LDPULayer(), gb.LDPUParams(sp=MAX, sn=POS_INF, o=0, **ident),
                       p=4095, n=4095, return_clamped=True)
    assert (int(y), bool(cl)) == (0, True)
    minus_inf = gb.LDPUParams(sp=0, sn=MAX, o=0, **ident)
    y, cl = gb.forward(cfg, gb.LDPULayer(relu_mid=1), minus_inf, p=0, n=4095, return_clamped=True)
    assert (int(y), bool(cl)) == (0, False)
    y, cl = gb.forward(cfg, gb.LDPULayer(), minus_inf, p=0, n=4095, return_clamped=True)
    assert (int(y), bool(cl)) == (-128, True)


def test_zero_params_give_zero():
    # t = +0·P + +0 = +0, y = −0·N + +0 = +0, z = +0·(+0) + +0 = +0
    cfg = TINY
    z = gb.LDPUParams.zeros(cfg)
    assert all(getattr(z, k).shape == (cfg.columns,) and not getattr(z, k).any() for k in FIELDS)
    p = np.arange(8)[:, None] + np.zeros(cfg.columns, dtype=int)
    y, cl = gb.forward(cfg, gb.LDPULayer(), z, p=p, n=p[::-1], return_clamped=True)
    assert not y.any() and not cl.any()


def test_residual_disabled_ignores_r():
    rng = rng_for("disabled")
    case = draw_case(rng, PAPER, 3, "realistic")
    case["residual_en"] = np.zeros_like(case["residual_en"])
    y1 = forward_case(PAPER, case)
    y2 = gb.forward(PAPER, gb.LDPULayer(**{k: case[k] for k in LAYER}),
                    gb.LDPUParams(**{k: case[k] for k in FIELDS}), p=case["p"], n=case["n"])
    case["r"] = rng.integers(-128, 128, case["r"].shape)
    assert (y1 == y2).all() and (forward_case(PAPER, case) == y1).all()


def test_config_without_residual():
    rng = rng_for("nores")
    case = draw_case(rng, NORES, 200, "realistic")
    assert not case["residual_en"].any()
    ref = ref_ldpu(NORES, case)
    y, cl = forward_case(NORES, case, return_clamped=True)
    first_miss("forward (no residual)", y, ref["out"], case)
    first_miss("clamped (no residual)", cl, ref["sat"] | ref["nan"], case)
    prm = gb.LDPUParams(sp=ONE)
    with pytest.raises(ValueError, match=r"no residual path: pass no `r`"):
        gb.forward(NORES, gb.LDPULayer(), prm, p=1, n=1, r=0)
    with pytest.raises(ValueError, match=r"`residual_en` is set but the config has no residual"):
        gb.forward(NORES, gb.LDPULayer(residual_en=1), prm, p=1, n=1)
    assert gb.forward(NORES, gb.LDPULayer(residual_en=0), prm, p=3, n=1) == 3


# -- errors --------------------------------------------------------------------------------------

def call(layer=None, params=None, cfg=PAPER, **ins):
    ins = {"p": 1, "n": 1, **ins}
    return gb.forward(cfg, layer or gb.LDPULayer(), params or gb.LDPUParams(sp=ONE), **ins)


@pytest.mark.parametrize("kw, msg", [
    (dict(p=4096), r"`p` must be in \[0, 4095\], found 4096"),
    (dict(p=-1), r"`p` must be in \[0, 4095\], found -1"),
    (dict(n=[0, 5000]), r"`n` must be in \[0, 4095\], found 5000"),
    (dict(r=128, layer=gb.LDPULayer(residual_en=1)), r"`r` must be in \[-128, 127\], found 128"),
    (dict(r=-129), r"`r` must be in \[-128, 127\], found -129"),
    (dict(p=1.5), r"`p` holds non-integer values"),
    (dict(layer=gb.LDPULayer(c=0x10000)), r"`c` must hold 16-bit patterns in \[0, 65535\], found 65536"),
    (dict(layer=gb.LDPULayer(c=-1)), r"`c` must hold 16-bit patterns in \[0, 65535\], found -1"),
    (dict(layer=gb.LDPULayer(relu_mid=2)), r"`relu_mid` must be in \[0, 1\], found 2"),
    (dict(layer=gb.LDPULayer(relu_out=-1)), r"`relu_out` must be in \[0, 1\], found -1"),
    (dict(layer=gb.LDPULayer(residual_en=[0, 3])), r"`residual_en` must be in \[0, 1\], found 3"),
    (dict(layer=gb.LDPULayer(residual_en=1)), r"`residual_en` is set but no residual input `r`"),
    (dict(params=gb.LDPUParams(sp=0x10000)), r"`sp` must hold 16-bit patterns in \[0, 65535\]"),
    (dict(params=gb.LDPUParams(sp=0, sn=-2)), r"`sn` must hold 16-bit patterns in \[0, 65535\], found -2"),
    (dict(params=gb.LDPUParams(sp=0, o=70000)), r"`o` must hold 16-bit"),
    (dict(params=gb.LDPUParams(sp=0, a=[1, 2, 65536])), r"`a` must hold 16-bit"),
    (dict(params=gb.LDPUParams(sp=0, b=1 << 20)), r"`b` must hold 16-bit"),
    (dict(p=None), r"takes both counts `p` and `n`"),
    (dict(p=np.ones((2, 256), int), params=gb.LDPUParams(sp=np.zeros(255, int))),
     r"`sp` of shape \(255,\) does not broadcast against the other inputs \(shape \(2, 256\)\)"),
    (dict(p=np.ones(4, int), n=np.ones(5, int)), r"`n` of shape \(5,\) does not broadcast"),
    (dict(p=np.ones(4, int), layer=gb.LDPULayer(relu_mid=np.zeros((3, 1), int), c=np.ones(2, int))),
     r"`c` of shape \(2,\) does not broadcast"),
])
def test_forward_rejects_bad_inputs(kw, msg):
    with pytest.raises(ValueError, match=msg):
        call(**kw)


def test_float_patterns_are_refused():
    with pytest.raises(TypeError, match=r"`sp` must be binary16 bit patterns"):
        call(params=gb.LDPUParams(sp=np.float16(1.0)))
    with pytest.raises(TypeError, match=r"`c` must be binary16 bit patterns"):
        call(layer=gb.LDPULayer(c=1.0))


def test_stage_errors_name_the_field():
    with pytest.raises(ValueError, match=r"`p` must be in \[0, 7\], found 8"):
        gb.convert(TINY, 8, 0)
    with pytest.raises(ValueError, match=r"`relu enable` must be in \[0, 1\], found 2"):
        gb.relu(0, 2)
    with pytest.raises(ValueError, match=r"`r` must be in \[-128, 127\], found 200"):
        gb.residual(gb.LDPULayer(residual_en=0), 0, 200)
    with pytest.raises(ValueError, match=r"`z` must hold 16-bit"):
        gb.output(1 << 16)
    with pytest.raises(ValueError, match=r"`P16` must hold 16-bit"):
        gb.scale(gb.LDPUParams(sp=0), -1, 0)


# -- framing: the NMPU's ---------------------------------------------------------------------------

def test_frame_is_the_nmpus_with_one_lane():
    assert gb.frame is nmpu.frame
    last = np.zeros(2 * TINY.columns, dtype=int)
    last[TINY.columns - 1::TINY.columns] = 1
    pos, err, nxt = gb.frame(TINY, last)
    assert pos.tolist() == [0, 1, 2, 3] * 2 and not err.any() and nxt == 0
    pos, err, nxt = gb.frame(PAPER, [0, 0, 1, 0], start=0)
    assert pos.tolist() == [0, 1, 2, 0] and err.tolist() == [False, False, True, False] and nxt == 1


# -- parameter words -----------------------------------------------------------------------------

def test_pack_by_hand():
    w = gb.pack(PAPER, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005)
    assert w == 1 | 2 << 16 | 3 << 32 | 4 << 48 | 5 << 64
    assert gb.pack(PAPER, sp=ONE, sn=0, o=0, a=0, b=0xFFFF) == ONE | 0xFFFF << 64
    assert gb.unpack(TINY, 0xABCD << 64 | 0x1234 << 48 | NAN << 32 | 0x8000 << 16 | 0x7C00) == \
        dict(sp=0x7C00, sn=0x8000, o=NAN, a=0x1234, b=0xABCD)
    assert [n for n, _ in PAPER.word_fields] == list(FIELDS) and PAPER.word_bits == 80


@pytest.mark.parametrize("cfg", [PAPER, TINY], ids=lambda c: c.tag)
def test_pack_params_round_trip(cfg):
    rng = rng_for(f"pack-{cfg.tag}")
    prm = gb.LDPUParams(**{k: rng.integers(0, 1 << 16, cfg.columns) for k in FIELDS})
    prm.b[:2] = [0, 0xFFFF]
    words = gb.pack_params(cfg, prm)
    assert len(words) == cfg.columns and all(isinstance(w, int) for w in words)
    for j, w in enumerate(words):
        assert w == sum(int(getattr(prm, k)[j]) << (16 * i) for i, k in enumerate(FIELDS))
        assert 0 <= w < 1 << 80
    back = gb.unpack_params(cfg, words)
    assert all((getattr(back, k) == getattr(prm, k)).all() for k in FIELDS)


def test_pack_params_broadcasts_scalars():
    words = gb.pack_params(TINY, gb.LDPUParams(sp=ONE, sn=HALF))
    assert words == [ONE | HALF << 16 | ONE << 48] * 4


def test_pack_rejects_bad_fields():
    with pytest.raises(ValueError, match=r"`o` must hold 16-bit patterns in \[0, 65535\], found 65536"):
        gb.pack(PAPER, 0, 0, 1 << 16, 0, 0)
    with pytest.raises(ValueError, match=r"`a` must hold 16-bit patterns in \[0, 65535\], found -1"):
        gb.pack(PAPER, 0, 0, 0, -1, 0)
    with pytest.raises(TypeError, match=r"`sp` must be binary16 bit patterns"):
        gb.pack(PAPER, 1.0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"`sn` must be one pattern"):
        gb.pack(PAPER, 0, [1, 2], 0, 0, 0)
    with pytest.raises(ValueError, match=r"`b` must hold one pattern per column \(256\) or one for "
                                         r"all, not shape \(255,\)"):
        gb.pack_params(PAPER, gb.LDPUParams(sp=0, b=np.zeros(255, int)))
    with pytest.raises(ValueError, match=r"`sp` must hold 16-bit"):
        gb.pack_params(PAPER, gb.LDPUParams(sp=np.full(256, 1 << 16)))


def test_unpack_rejects_bad_words():
    with pytest.raises(ValueError, match=r"must be in \[0, 2\^80\), not 1208925819614629174706176"):
        gb.unpack(PAPER, 1 << 80)
    with pytest.raises(ValueError, match=r"not -1"):
        gb.unpack(PAPER, -1)
    with pytest.raises(TypeError, match=r"a parameter word must be an integer, not float"):
        gb.unpack(PAPER, 2.0)
    with pytest.raises(TypeError, match=r"not bool"):
        gb.unpack(PAPER, True)
    with pytest.raises(ValueError, match=r"need 4 parameter words, not 3"):
        gb.unpack_params(TINY, [0] * 3)


# -- parameter compiler --------------------------------------------------------------------------

def realistic_layer(rng, cfg):
    c = cfg.columns
    alpha = np.where(rng.random(c) < 0.5, -1, 1) * 10 ** rng.uniform(-2.5, -1.3, c) * 4095 / cfg.adc_max
    return dict(alpha=alpha, beta=rng.uniform(-20, 20, c), gain_p=rng.uniform(0.8, 1.25, c),
                gain_n=rng.uniform(0.8, 1.25, c))


U = 2.0 ** -11    # unit roundoff of binary16


@pytest.mark.parametrize("cfg", [PAPER, TINY], ids=lambda c: c.tag)
def test_compile_reproduces_the_layer(cfg):
    rng = rng_for(f"compile-{cfg.tag}")
    lay = realistic_layer(rng, cfg)
    comp = gb.compile_params(cfg, **lay)
    a, b, gp, gn = lay["alpha"], lay["beta"], lay["gain_p"], lay["gain_n"]
    # the register image: correctly rounded α/gain, β; the activation affine the identity
    assert (comp.params.sp == f16(a / gp)).all() and (comp.params.sn == f16(a / gn)).all()
    assert (comp.params.o == f16(b)).all()
    assert (comp.params.a == ONE).all() and (comp.params.b == 0).all()
    assert (comp.polarity == 1).all()
    # the LDPU's y against the exact α·(P/gain_p − N/gain_n) + β, within FP16 rounding:
    # rounded sp, sn, o, P16, N16 (each relative U) and the two FMA roundings (U of |t|, |y|)
    V = 64 if cfg.columns > 4 else 2000
    p = draw_counts(rng, cfg, (V, cfg.columns))
    n = draw_counts(rng, cfg, (V, cfg.columns))
    y = h(gb.scale(comp.params, *gb.convert(cfg, p, n))).astype(np.float64)
    tp, tn = a * p / gp, a * n / gn
    exact = tp - tn + b
    bound = (2 * U + U * U) * (np.abs(tp) + np.abs(tn)) + U * (np.abs(b) + np.abs(tp + b) + np.abs(exact))
    bound = bound * (1 + 4 * U) + 2.0 ** -23
    err = np.abs(y - exact)
    assert (err <= bound).all(), f"worst {np.max(err / bound):.3f} of the bound"
    assert np.max(err / bound) > 0.05          # the bound is not vacuous
    out = gb.forward(cfg, gb.LDPULayer(), comp.params, p=p, n=n)
    assert np.abs(out - np.clip(np.rint(exact), -128, 127)).max() <= 1


@pytest.mark.parametrize("cfg", [PAPER, TINY], ids=lambda c: c.tag)
def test_compile_error_report(cfg):
    rng = rng_for(f"compile-err-{cfg.tag}")
    lay = realistic_layer(rng, cfg)
    comp = gb.compile_params(cfg, **lay)
    a, b, gp, gn = lay["alpha"], lay["beta"], lay["gain_p"], lay["gain_n"]
    for got, want, err, rel in ((comp.params.sp, a / gp, comp.scale_err_p, comp.rel_scale_err_p),
                                (comp.params.sn, a / gn, comp.scale_err_n, comp.rel_scale_err_n)):
        real = h(got).astype(np.float64)
        assert np.allclose(rel, (real - want) / want, rtol=1e-12, atol=0)
        assert (np.abs(rel) <= U).all() and (np.abs(err) <= 0.5).all()
        ulp = np.exp2(np.floor(np.log2(np.abs(want))) - 10)
        assert np.allclose(err, (real - want) / ulp, rtol=1e-9, atol=1e-12)
        assert np.abs(err).max() > 0.1         # errors are reported, not zeros
    assert np.allclose(comp.offset_err, h(comp.params.o).astype(float) - b, rtol=0, atol=0)
    assert (np.abs(comp.offset_err) <= U * np.abs(b)).all()
    assert (comp.rel_a_err == 0).all() and (comp.b_err == 0).all()
    # signed scales: a negative α is a negative pattern, no polarity flip
    assert ((comp.params.sp >> 15) == (a < 0)).all() and (comp.polarity == 1).all()


def test_compile_separate_batch_norm():
    cfg = TINY
    comp = gb.compile_params(cfg, [0.5, -0.25, 1.0, 0.1], [1.0, -2.0, 0.0, 3.3], gain_p=2.0,
                             gain_n=[1.0, 2.0, 4.0, 0.5], bn_scale=[1.5, -2.0, 0.3, 1.0],
                             bn_bias=[0.0, 1.0, -0.5, 2.0])
    assert comp.params.sp.tolist() == f16([0.25, -0.125, 0.5, 0.05]).tolist()
    assert comp.params.sn.tolist() == f16([0.5, -0.125, 0.25, 0.2]).tolist()
    assert comp.params.a.tolist() == f16([1.5, -2.0, 0.3, 1.0]).tolist()
    assert comp.params.b.tolist() == f16([0.0, 1.0, -0.5, 2.0]).tolist()
    assert comp.rel_a_err[2] == (float(np.float16(0.3)) - 0.3) / 0.3 and comp.rel_a_err[0] == 0
    # p = 6, n = 2, column 0: y = 0.25·6 − 0.5·2 + 1 = 1.5, z = 1.5·1.5 = 2.25 → 2
    assert gb.forward(cfg, gb.LDPULayer(), comp.params, p=[6, 6, 6, 6], n=2)[0] == 2


def test_compile_tiny_scale_reports_minus_one():
    comp = gb.compile_params(TINY, [1e-9, 0.0, 0.5, 2 ** -24], 0.0)
    assert comp.params.sp.tolist() == [0, 0, HALF, 1]
    assert comp.rel_scale_err_p.tolist() == [-1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("arg", ["alpha", "beta", "gain_p", "gain_n", "bn_scale", "bn_bias"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_compile_nan_names_column(arg, bad):
    cfg = PAPER
    kw = dict(alpha=np.full(cfg.columns, 0.01), beta=np.zeros(cfg.columns),
              gain_p=np.ones(cfg.columns), gain_n=np.ones(cfg.columns),
              bn_scale=np.ones(cfg.columns), bn_bias=np.zeros(cfg.columns))
    kw[arg][3] = bad
    with pytest.raises(ValueError, match=rf"`{arg}` of column 3 is NaN or infinite"):
        gb.compile_params(cfg, **kw)


@pytest.mark.parametrize("arg", ["gain_p", "gain_n"])
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_compile_non_positive_gain(arg, bad):
    gains = np.ones(TINY.columns)
    gains[2] = bad
    with pytest.raises(ValueError, match=rf"`{arg}` of column 2 must be positive"):
        gb.compile_params(TINY, 0.1, 0.0, **{arg: gains})


@pytest.mark.parametrize("kw, msg", [
    (dict(alpha=[0.1, 0.1, 70000.0, 0.1], beta=0.0), r"`sp` of column 2 \(70000\) overflows FP16"),
    (dict(alpha=0.1, beta=0.0, gain_n=[1, 1, 1, 1e-6]), r"`sn` of column 3 \(100000\) overflows FP16"),
    (dict(alpha=0.1, beta=[0, -65520.0, 0, 0]), r"`o` of column 1 \(-65520\) overflows FP16"),
    (dict(alpha=0.1, beta=0.0, bn_scale=[1e5, 1, 1, 1]), r"`a` of column 0 \(100000\) overflows"),
    (dict(alpha=0.1, beta=0.0, bn_bias=[0, 0, 0, 1e6]), r"`b` of column 3 \(1e\+06\) overflows"),
    (dict(alpha=np.zeros(3), beta=0.0), r"`alpha` must hold one value per column \(4\)"),
])
def test_compile_refuses_unrepresentable(kw, msg):
    with pytest.raises(ValueError, match=msg):
        gb.compile_params(TINY, **kw)


def test_compile_largest_finite_is_accepted():
    # 65519.99 rounds to 65504, not Inf
    comp = gb.compile_params(TINY, 0.1, [65519.0, -65504.0, 0.0, 0.0])
    assert comp.params.o[:2].tolist() == [MAX, 0xFBFF]


# -- FP16 outer-product array --------------------------------------------------------------------

def np_outer(x, d):
    with np.errstate(all="ignore"):
        return h(x)[..., :, None] * h(d)[..., None, :]


def assert_outer(got, x, d):
    want = np_outer(x, d)
    assert got.shape == want.shape and got.dtype == np.int64
    nan = np.isnan(want)
    assert (got[nan] == NAN).all(), "NaN products must be the canonical 0x7E00"
    same = got[~nan] == want[~nan].view(np.uint16).astype(np.int64)
    if not same.all():
        i = np.flatnonzero(~same)[0]
        raise AssertionError(f"{(~same).sum()} products differ; first: "
                             f"{int(got[~nan][i]):#06x} vs numpy {int(want[~nan].view(np.uint16)[i]):#06x}")


@pytest.mark.parametrize("cfg", [fp16_outer_preset("paper"), fp16_outer_preset("tiny"),
                                 FP16OuterConfig(name="odd", rows=3, cols=5)], ids=lambda c: c.tag)
def test_outer_product_matches_numpy(cfg):
    rng = rng_for(f"outer-{cfg.tag}")
    B = 40
    sign = lambda s: rng.integers(0, 2, s) << 15
    x = rng.integers(0, 1 << 16, (B, cfg.rows))
    d = rng.integers(0, 1 << 16, (B, cfg.cols))
    assert_outer(gb.outer_product(cfg, x, d), x, d)
    # subnormal and underflowing products, overflow, specials
    xs = rng.integers(0x0001, 0x2400, (B, cfg.rows)) | sign((B, cfg.rows))
    ds = rng.integers(0x0001, 0x3C00, (B, cfg.cols)) | sign((B, cfg.cols))
    got = gb.outer_product(cfg, xs, ds)
    assert_outer(got, xs, ds)
    assert ((got & 0x7C00) == 0).any() and ((got & 0x7FFF) == 0).any()  # subnormal, zero results
    xo = rng.integers(0x5800, 0x7C00, (B, cfg.rows)) | sign((B, cfg.rows))
    got = gb.outer_product(cfg, xo, np.flip(xo[:, :1], 0) + np.zeros((B, cfg.cols), int))
    assert_outer(got, xo, np.flip(xo[:, :1], 0) + np.zeros((B, cfg.cols), int))
    assert ((got & 0x7FFF) == POS_INF).any()
    sx = rng.choice(SPECIALS, (B, cfg.rows))
    sd = rng.choice(SPECIALS, (B, cfg.cols))
    got = gb.outer_product(cfg, sx, sd)
    assert_outer(got, sx, sd)
    assert (got == NAN).any()


def test_outer_product_exhaustive_x():
    """Every pattern as an x operand (tiny: 4 rows), against random δ."""
    cfg = fp16_outer_preset("tiny")
    rng = rng_for("outer-all")
    x = np.arange(1 << 16).reshape(-1, cfg.rows)
    d = rng.integers(0, 1 << 16, (x.shape[0], cfg.cols))
    assert_outer(gb.outer_product(cfg, x, d), x, d)


def test_outer_product_by_hand_and_broadcast():
    cfg = fp16_outer_preset("tiny")
    p = gb.outer_product(cfg, [ONE, 0x4000, 0, POS_INF], [ONE, NEG_ZERO, 0x7E01, 1])
    assert p.tolist() == [[ONE, NEG_ZERO, NAN, 1], [0x4000, NEG_ZERO, NAN, 2],
                          [0, NEG_ZERO, NAN, 0], [POS_INF, NAN, NAN, POS_INF]]
    d = np.full((5, 4), HALF)
    assert gb.outer_product(cfg, [ONE] * 4, d).shape == (5, 4, 4)
    assert (gb.outer_product(cfg, [ONE] * 4, d) == HALF).all()


@pytest.mark.parametrize("x, d, exc, msg", [
    ([ONE] * 3, [ONE] * 4, ValueError,
     r"`x_bits` must have the 4 rows on its last axis, not shape \(3,\)"),
    ([ONE] * 4, np.ones((2, 5), int), ValueError,
     r"`d_bits` must have the 4 cols on its last axis, not shape \(2, 5\)"),
    (ONE, [ONE] * 4, ValueError, r"`x_bits` must have the 4 rows on its last axis, not shape \(\)"),
    (np.ones((2, 4), int), np.ones((3, 4), int), ValueError,
     r"leading shapes of `x_bits` \(2,\) and `d_bits` \(3,\) do not broadcast"),
    ([ONE, ONE, ONE, 1 << 16], [ONE] * 4, ValueError,
     r"`x_bits` must hold 16-bit patterns in \[0, 65535\], found 65536"),
    ([ONE] * 4, [1.0] * 4, TypeError, r"`d_bits` must be binary16 bit patterns"),
])
def test_outer_product_rejects_bad_inputs(x, d, exc, msg):
    with pytest.raises(exc, match=msg):
        gb.outer_product(fp16_outer_preset("tiny"), x, d)
