"""The binary16 blocks of hdl/fp16.py in Amaranth's simulator, bit for bit against
`golden.fp16` (and, as a second opinion, numpy's float16 and MPFR through gmpy2).

Every block is streamed: one operand set per enabled clock, `en` toggling in bursts (full rate,
sparse, long stalls) with junk on the inputs while it is low. The bench checks that a stalled
clock changes no output, and pairs the k-th output with the k-th accepted operand set, so a lost,
duplicated or early result fails as surely as a wrong one. Operands: random patterns plus the
hard classes of each operation (exact ties, subnormal results, the largest subnormal rounding to
the smallest normal, the overflow boundary, massive cancellation, signed zeros, Inf, NaN and
invalid operations); the conversions of 12-bit counts, of int8 and of every binary16 pattern to
int8 are exhaustive.
"""

from fractions import Fraction

import gmpy2
import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from golden import fp16 as g
from hdl.export import lint
from hdl.fp16 import FP16FMA, FP16Mul, FP16ToInt8, IntToFP16, UIntToFP16
from verif import blocksim
from verif.runner import setup_tools

from .conftest import run_seed

NAN = 0x7E00
SPECIALS = np.array([
    0x0000, 0x8000,                  # ±0
    0x7C00, 0xFC00,                  # ±Inf
    0x7E00, 0xFE00, 0x7C01, 0xFFFF,  # NaNs: canonical, negative, signalling, all ones
    0x0001, 0x8001,                  # ±smallest subnormal
    0x03FF, 0x83FF,                  # ±largest subnormal
    0x0400, 0x8400,                  # ±smallest normal
    0x3C00, 0xBC00,                  # ±1
    0x7BFF, 0xFBFF,                  # ±65504
    0x3555,                          # 1/3
])


def make_rng(salt):
    return np.random.default_rng([run_seed(), salt])


# -- the streaming bench ---------------------------------------------------------------------------

def en_bursts(rng, n):
    """An `en` pattern of at least n ones: bursts of 16..80 clocks at full rate, at 80 %, at
    30 %, and long stalls."""
    out, ones = [], 0
    while ones < n:
        rate = rng.choice([1.0, 0.8, 0.3, 0.0], p=[0.35, 0.35, 0.2, 0.1])
        burst = rng.random(int(rng.integers(16, 81))) < rate
        out += burst.tolist()
        ones += int(burst.sum())
    return out


def stream(dut, operands, outputs, rng):
    """Feed operands (port name → int array, one set per enabled clock) through `dut`; return
    the outputs (port name → int64 array) paired with their operand sets.

    While `en` is low the inputs carry random junk and no output may change."""
    n = len(next(iter(operands.values())))
    latency = dut.LATENCY
    pattern = en_bursts(rng, n + latency)
    ins = [(getattr(dut, name), [int(v) for v in values]) for name, values in operands.items()]
    junk = []
    for port, _ in ins:
        lo = -(1 << (len(port) - 1)) if port.shape().signed else 0
        junk.append((port, [int(v) for v in rng.integers(lo, lo + (1 << len(port)), len(pattern))]))
    outs = [getattr(dut, name) for name in outputs]
    got = {name: [] for name in outputs}

    async def bench(ctx):
        fed = edges = 0
        before = [ctx.get(port) for port in outs]
        for clock, en in enumerate(pattern):
            ctx.set(dut.en, int(en))
            if en and fed < n:
                for port, values in ins:
                    ctx.set(port, values[fed])
                fed += 1
            else:
                for port, values in junk:
                    ctx.set(port, values[clock])
            await ctx.tick()
            now = [ctx.get(port) for port in outs]
            if en:
                edges += 1
                if latency <= edges < n + latency:
                    for name, value in zip(outputs, now):
                        got[name].append(value)
            else:
                assert now == before, f"clock {clock}: output changed while `en` was low"
            before = now
        assert edges >= n + latency

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return {name: np.array(values, dtype=np.int64) for name, values in got.items()}


def stream_verilog(dut, operands, outputs, rng):
    """`stream` through the block's generated Verilog in Icarus (verif/blocksim.py): the same
    `en` pattern, junk while `en` is low and the same checks, at a few µs per clock instead of
    the Python simulator's millisecond (the bulk sets: 2^16 conversions, the multiply and FMA
    classes)."""
    n = len(next(iter(operands.values())))
    latency = dut.LATENCY
    pattern = np.array(en_bursts(rng, n + latency), dtype=bool)
    fed = np.cumsum(pattern) - pattern          # operand sets fed before each clock
    feed = pattern & (fed < n)
    ins = {"en": pattern.astype(np.int64)}
    for name, values in operands.items():
        port = getattr(dut, name)
        lo = -(1 << (len(port) - 1)) if port.shape().signed else 0
        junk = rng.integers(lo, lo + (1 << len(port)), len(pattern))
        ins[name] = np.where(feed, np.asarray(values, dtype=np.int64)[np.minimum(fed, n - 1)],
                             junk)
    seen = blocksim.run(dut, ins, outputs)      # before the first edge, then after each
    edges = np.cumsum(pattern)                  # enabled edges up to and including each clock
    assert edges[-1] >= n + latency
    keep = pattern & (edges >= latency) & (edges < n + latency)
    for name in outputs:
        held = ~pattern & (seen[name][1:] != seen[name][:-1])
        assert not held.any(), f"clock {int(np.argmax(held))}: `{name}` changed while `en` was low"
    return {name: seen[name][1:][keep] for name in outputs}


def check(what, operands, got, want, limit=8):
    """Bit-exact comparison; the message lists the first mismatches with their operands in hex."""
    got, want = np.asarray(got, dtype=np.int64), np.asarray(want, dtype=np.int64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    bad = np.flatnonzero(got != want)
    if bad.size:
        lines = [f"{what}: {bad.size} of {want.size} differ"]
        for i in bad[:limit]:
            ops = " ".join(f"{k}={int(v[i]):#06x}" for k, v in operands.items())
            lines.append(f"  #{i}: {ops}: got {int(got[i]):#06x}, want {int(want[i]):#06x}")
        pytest.fail("\n".join(lines))


# -- independent oracles (for the golden model's second opinion) -----------------------------------

def canon(h):
    """float16 array → patterns, every NaN as 0x7E00."""
    h = np.asarray(h, dtype=np.float16)
    return np.where(np.isnan(h), NAN, h.view(np.uint16).astype(np.int64))


def as_f16(bits):
    return np.asarray(bits, dtype=np.uint16).view(np.float16)


def numpy_mul(a, b):
    # The exact product of two binary16 values fits float32, so numpy rounds it once.
    with np.errstate(all="ignore"):
        return canon(as_f16(a) * as_f16(b))


def mpfr_fma(a, b, c):
    ctx = gmpy2.ieee(16)
    out = []
    with gmpy2.context(ctx):
        for x, y, z in zip(*(as_f16(v).astype(np.float64) for v in (a, b, c))):
            r = gmpy2.fma(gmpy2.mpfr(float(x)), gmpy2.mpfr(float(y)), gmpy2.mpfr(float(z)))
            out.append(float(r))
    return canon(np.array(out))


# -- operand classes -------------------------------------------------------------------------------

def finite(rng, n, field_lo=0, field_hi=30, sign=None):
    """Random finite patterns with exponent fields in [field_lo, field_hi]."""
    s = rng.integers(0, 2, n) if sign is None else np.full(n, sign)
    return (s << 15) | (rng.integers(field_lo, field_hi + 1, n) << 10) | rng.integers(0, 1024, n)


def exact_value(bits):
    """The exact rational value of finite patterns (Python Fractions)."""
    sign, exp, sig = g.decode(bits)
    return [(-1) ** int(s) * Fraction(int(m)) * Fraction(2) ** (int(e) - 25)
            for s, e, m in zip(sign, exp, sig)]


def is_tie(values):
    """Exact values (Fractions) lying exactly halfway between two binary16 neighbours."""
    out = []
    for v in values:
        v = abs(v)
        if v == 0:
            out.append(False)
            continue
        e = v.numerator.bit_length() - v.denominator.bit_length()   # floor(log2 v) or one more
        if Fraction(2) ** e > v:
            e -= 1
        ulp = Fraction(2) ** (max(e, -14) - 10)                     # subnormals: 2^−24
        out.append((v / ulp).denominator == 2)
    return np.array(out, dtype=bool)


def nudge(bits, k):
    """The pattern k finite steps away in magnitude (same sign), staying finite."""
    mag = np.clip((bits & 0x7FFF) + k, 0, 0x7BFF)
    return (bits & 0x8000) | mag


def product_ties(rng, m, low_share):
    """Operand pairs whose exact product is a tie, from m candidates; significands with trailing
    zeros make ties common. A share of them is scaled to results near and below 2^−14."""
    a = finite(rng, m, 1, 30) & ~(rng.integers(0, 2, m) * 0x3F)
    b = finite(rng, m, 1, 30) & ~(rng.integers(0, 2, m) * 0x0F)
    low = rng.random(m) < low_share
    a = np.where(low, (a & 0x83FF) | (rng.integers(0, 12, m) << 10), a)
    keep = g.fields(a)[1] + g.fields(b)[1] <= 44                    # no overflow
    a, b = a[keep], b[keep]
    tie = is_tie([x * y for x, y in zip(exact_value(a), exact_value(b))])
    return a[tie], b[tie]


def mul_cases(rng):
    """(a, b, class) operand sets for the multiplier."""
    cases = {}
    cases["random"] = (rng.integers(0, 1 << 16, 10000), rng.integers(0, 1 << 16, 10000))
    a, b = product_ties(rng, 8000, low_share=0.4)
    cases["ties"] = (a, b)
    # Subnormal results (and subnormal operands).
    n = 1500
    cases["subnormal"] = (finite(rng, n, 0, 14), finite(rng, n, 0, 8))
    # The largest subnormal rounding up to the smallest normal: products near 2^−14.
    a = finite(rng, 400, 5, 20)
    b = g.encode(2.0 ** -14 / g.to_float(a))
    b = np.concatenate([nudge(b, k) for k in (-2, -1, 0, 1, 2)])
    cases["min_normal"] = (np.tile(a, 5), b)
    # The overflow boundary: products near 65504, 65520 and 65536.
    a = finite(rng, 400, 15, 29)
    b = g.encode(65520.0 / g.to_float(a))
    b = np.concatenate([nudge(b, k) for k in (-2, -1, 0, 1, 2)])
    cases["overflow"] = (np.tile(a, 5), b)
    # Signed zeros, infinities, NaNs, Inf·0: every pair of special values, and each against
    # random finite values.
    sa, sb = np.meshgrid(SPECIALS, SPECIALS)
    r = finite(rng, len(SPECIALS) * 8)
    cases["specials"] = (np.concatenate([sa.ravel(), np.repeat(SPECIALS, 8), r]),
                         np.concatenate([sb.ravel(), r, np.repeat(SPECIALS, 8)]))
    return cases


def fma_cases(rng):
    """(a, b, c) operand sets for the fused multiply-add."""
    cases = {}
    n = 5000
    cases["random"] = tuple(rng.integers(0, 1 << 16, n) for _ in range(3))
    # Finite operands whose product and addend overlap (exponents within ±14 of each other).
    a, b = finite(rng, n, 1, 30), finite(rng, n, 1, 30)
    fp = g.fields(a)[1] + g.fields(b)[1] - 15
    fc = np.clip(fp + rng.integers(-14, 15, n), 0, 30)
    c = (rng.integers(0, 2, n) << 15) | (fc << 10) | rng.integers(0, 1024, n)
    cases["overlap"] = (a, b, c)
    # Massive cancellation: c = −round(a·b) and a few ulps around it, including subnormal
    # products; the exact difference is then tiny and must be normalised over the full width.
    a, b = finite(rng, 300, 0, 30), finite(rng, 300, 0, 30)
    p = g.mul(a, b)
    ok = ~g.nonfinite(p)
    a, b, p = a[ok], b[ok], p[ok]
    c = np.concatenate([nudge(p ^ 0x8000, k) for k in (-2, -1, 0, 1, 2)])
    # The deepest cancellation: (1 + i·2^−10)(1 + j·2^−10) − (1 + (i + j)·2^−10) = i·j·2^−20,
    # about 20 bits below both terms, at random scales and signs.
    k = 300
    i, j = rng.integers(1, 9, k), rng.integers(1, 9, k)
    field_a = rng.integers(1, 30, k)
    field_b = np.clip(rng.integers(1, 31, k), 16 - field_a, 45 - field_a)  # product field 1..30
    sign_a, sign_b = rng.integers(0, 2, k), rng.integers(0, 2, k)
    deep = ((sign_a << 15) | (field_a << 10) | i, (sign_b << 15) | (field_b << 10) | j,
            ((sign_a ^ sign_b ^ 1) << 15) | ((field_a + field_b - 15) << 10) | (i + j))
    cases["cancel"] = (np.concatenate([np.tile(a, 5), deep[0]]),
                       np.concatenate([np.tile(b, 5), deep[1]]), np.concatenate([c, deep[2]]))
    # Ties: c plus an odd multiple of half its ulp (a = m/2 with m odd, b = ulp(c) =
    # 2^(exp_c − 25)), filtered exactly (a carry into the next binade is no tie).
    m = 2000
    c = finite(rng, m, 0, 29)
    a = (rng.integers(0, 2, m) << 15) | g.encode(rng.integers(0, 64, m) + 0.5)
    b = (rng.integers(0, 2, m) << 15) | g.encode(2.0 ** (np.maximum(g.fields(c)[1], 1) - 25))
    pick = rng.random(m) < 0.5      # half of them from random few-bit operands instead
    a = np.where(pick, finite(rng, m, 1, 30) & ~0x7F, a)
    b = np.where(pick, finite(rng, m, 1, 30) & ~0x1F, b)
    exact = [x * y + z for x, y, z in zip(exact_value(a), exact_value(b), exact_value(c))]
    tie = is_tie(exact)
    cases["ties"] = (a[tie][:800], b[tie][:800], c[tie][:800])
    # A product that is an exact tie, plus an addend of either sign more than two bits below
    # the product's LSB: only the alignment's sticky bit can break the tie (exp_c <= es − 28).
    a, b = product_ties(rng, 16000, low_share=0)
    es = g.fields(a)[1] + g.fields(b)[1]
    a, b, es = a[es >= 30], b[es >= 30], es[es >= 30]
    c = (rng.integers(0, 2, len(a)) << 15) | (rng.integers(0, es - 27) << 10) \
        | rng.integers(1, 1024, len(a))
    cases["tie_sticky"] = (a, b, c)
    # Subnormal results: small products and small addends of either sign.
    n = 1500
    cases["subnormal"] = (finite(rng, n, 0, 12), finite(rng, n, 0, 10), finite(rng, n, 0, 2))
    # Around 2^−14: the largest subnormal plus a half ulp (a tie, rounds to even: up) and
    # neighbours; products of the form 2^−25·(1 ± a few ulps).
    x = g.encode(np.array([2.0 ** -12, 2.0 ** -11, 2.0 ** -10]))
    y = g.encode(np.array([2.0 ** -13, 2.0 ** -14, 2.0 ** -15]))
    a = np.concatenate([nudge(x, k) for k in (-2, -1, 0, 1, 2)])
    b = np.concatenate([nudge(y, k) for k in (-2, -1, 0, 1, 2)])
    c = np.array([0x03FF, 0x03FE, 0x0400, 0x0401, 0x83FF, 0x8400])
    A, B, C = np.meshgrid(a, b, c)
    cases["min_normal"] = (A.ravel(), B.ravel(), C.ravel())
    # The overflow boundary: 65504 plus products near 16 (65520 is a tie, rounds to Inf), and
    # products beyond 65504 that a negative addend brings back into range (fused: finite).
    p16 = g.encode(np.array([16.0, 8.0, 32.0]))
    a = np.concatenate([nudge(p16, k) for k in (-1, 0, 1)])
    b = np.array([0x3C00, 0x3BFF, 0x3C01])
    c = np.array([0x7BFF, 0x7BFE, 0xFBFF, 0x7800])
    A, B, C = np.meshgrid(a, b, c)
    k = 300
    field_a = rng.integers(16, 31, k)
    field_b = 46 - field_a - rng.integers(0, 2, k)                     # a·b in [2^15, 2^18)
    big_a = (field_a << 10) | rng.integers(0, 1024, k)
    big_b = (rng.integers(0, 2, k) << 15) | (field_b << 10) | rng.integers(0, 1024, k)
    big_c = finite(rng, k, 28, 30) | ((big_b >> 15) ^ 1) << 15         # opposite sign
    cases["overflow"] = (np.concatenate([A.ravel(), big_a]), np.concatenate([B.ravel(), big_b]),
                         np.concatenate([C.ravel(), big_c]))
    # Signed zeros: zero products and zero addends of every sign, exact cancellation of
    # representable products, and zero plus non-zero.
    z = np.array([0x0000, 0x8000])
    small = g.encode(np.array([1.5, -3.0, 0.25, 2.0 ** -24]))
    ops = np.concatenate([z, small])
    A, B, C = np.meshgrid(ops, ops, np.concatenate([z, small]))
    A, B, C = A.ravel(), B.ravel(), C.ravel()
    exact_c = g.mul(A, B) ^ 0x8000                                     # c = −a·b, exact
    # A zero times a large factor plus a small addend: the sum is the addend, exactly.
    k = 200
    zero = rng.integers(0, 2, k) << 15
    large, small = finite(rng, k, 20, 30), finite(rng, k, 0, 10)
    swap = rng.random(k) < 0.5
    cases["zeros"] = (np.concatenate([A, A, np.where(swap, large, zero)]),
                      np.concatenate([B, B, np.where(swap, zero, large)]),
                      np.concatenate([C, exact_c, small]))
    # Inf, NaN and invalid operations: all triples of a smaller special set, and specials
    # against random finite values.
    sp = np.array([0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFC01, 0x3C00, 0xC400, 0x0001])
    A, B, C = np.meshgrid(sp, sp, sp)
    k = 300
    pos = rng.integers(0, 3, k)
    rnd = [finite(rng, k) for _ in range(3)]
    for i in range(3):
        rnd[i] = np.where(pos == i, rng.choice(SPECIALS, k), rnd[i])
    cases["specials"] = tuple(np.concatenate([X.ravel(), r]) for X, r in zip((A, B, C), rnd))
    return cases


# -- the conversions -------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [12, 4, 1])
def test_uint_to_fp16_exhaustive(width):
    """Every `width`-bit count, against golden.from_uint and numpy's float16 cast."""
    n = np.arange(1 << width)
    got = stream(UIntToFP16(width), {"a": n}, ["y"], make_rng(width))["y"]
    want = g.from_uint(n, width)
    check(f"UIntToFP16({width})", {"a": n}, got, want)
    check("golden vs numpy", {"a": n}, want, canon(n.astype(np.float16)))
    if width == 12:
        assert got[2049] == 0x6800 and got[2051] == 0x6802          # ties to even


def uint_cases(rng, width, count):
    hi = (1 << width) - 1
    # Ties: an 11-bit significand, then a one and zeros below it (and those values ± 1).
    shift = rng.integers(1, max(2, width - 11), count)
    ties = ((rng.integers(1024, 2048, count) << 1 | 1) << (shift - 1)) & hi
    return np.concatenate([
        rng.integers(0, hi + 1, count), ties, np.clip(ties + rng.integers(-1, 2, count), 0, hi),
        np.arange(65488, 65536) if width >= 16 else [],
        rng.integers(0, 1 << min(width, 14), count // 2),
        [0, 1, 2047, 2048, 2049, 2050, 2051, 4095, 4097, 4098, 4099, hi],
    ]).astype(np.int64) & hi


@pytest.mark.parametrize("width", [16, 20])
def test_uint_to_fp16_wide(width):
    """Wide counts: ties, the overflow boundary (65504, 65519 → 65504; 65520 up → Inf)."""
    rng = make_rng(100 + width)
    n = uint_cases(rng, width, 600)
    got = stream(UIntToFP16(width), {"a": n}, ["y"], rng)["y"]
    want = g.from_uint(n, width)
    check(f"UIntToFP16({width})", {"a": n}, got, want)
    with np.errstate(over="ignore"):
        check("golden vs numpy", {"a": n}, want, canon(n.astype(np.float64).astype(np.float16)))
    assert g.from_uint(np.array([65519, 65520]), width).tolist() == [0x7BFF, 0x7C00]
    assert {0x7BFF, 0x7C00} <= set(got.tolist())


@pytest.mark.parametrize("width", [8, 2, 1])
def test_int_to_fp16_exhaustive(width):
    v = np.arange(-(1 << (width - 1)), 1 << (width - 1))
    got = stream(IntToFP16(width), {"a": v}, ["y"], make_rng(200 + width))["y"]
    want = g.from_int(v, width)
    check(f"IntToFP16({width})", {"a": v & ((1 << width) - 1)}, got, want)
    check("golden vs numpy", {"a": v}, want, canon(v.astype(np.float16)))


def test_int_to_fp16_wide():
    """17-bit two's complement: ties and ±65504 .. ±65536 on both signs."""
    width = 17
    rng = make_rng(217)
    mag = uint_cases(rng, 16, 400)
    v = np.concatenate([mag, -mag, [-(1 << 16)]])
    got = stream(IntToFP16(width), {"a": v}, ["y"], rng)["y"]
    want = g.from_int(v, width)
    check(f"IntToFP16({width})", {"a": v & ((1 << width) - 1)}, got, want)
    with np.errstate(over="ignore"):
        check("golden vs numpy", {"a": v}, want, canon(v.astype(np.float64).astype(np.float16)))


def test_fp16_to_int8_exhaustive():
    """Every binary16 pattern: value, `saturated` and `nan` against golden.to_int8, and the
    value against numpy's rint and clip."""
    a = np.arange(1 << 16)
    got = stream_verilog(FP16ToInt8(), {"a": a}, ["y", "saturated", "nan"], make_rng(300))
    want, sat, nan = g.to_int8(a, return_flags=True)
    check("FP16ToInt8 value", {"a": a}, got["y"], want)
    check("FP16ToInt8 saturated", {"a": a}, got["saturated"], sat)
    check("FP16ToInt8 nan", {"a": a}, got["nan"], nan)
    f = as_f16(a).astype(np.float64)
    with np.errstate(invalid="ignore"):
        ref = np.where(np.isnan(f), 0, np.clip(np.nan_to_num(np.rint(f), posinf=127, neginf=-128),
                                               -128, 127))
    check("golden vs numpy", {"a": a}, want, ref)
    # 127.5 rounds to 128 and saturates; −128.5 rounds to −128 and does not.
    i = g.encode(np.array([127.5, -128.5, 126.5, -0.5, 0.5, 1.5]))
    assert got["y"][i].tolist() == [127, -128, 126, 0, 0, 2]
    assert got["saturated"][i].tolist() == [1, 0, 0, 0, 0, 0]


# -- multiply and fused multiply-add ---------------------------------------------------------------

def test_mul():
    """FP16Mul on every class of `mul_cases`, against golden.mul and numpy's float16 multiply."""
    rng = make_rng(400)
    cases = mul_cases(rng)
    assert len(cases["ties"][0]) >= 300
    names = list(cases)
    a = np.concatenate([cases[k][0] for k in names])
    b = np.concatenate([cases[k][1] for k in names])
    order = rng.permutation(len(a))          # classes interleaved: no state may leak
    a, b = a[order], b[order]
    got = stream_verilog(FP16Mul(), {"a": a, "b": b}, ["y"], rng)["y"]
    want = g.mul(a, b)
    check("FP16Mul", {"a": a, "b": b}, got, want)
    check("golden vs numpy", {"a": a, "b": b}, want, numpy_mul(a, b))
    cls = np.concatenate([np.full(len(cases[k][0]), i) for i, k in enumerate(names)])[order]
    # The classes reach what they are meant to: subnormal and Inf results, and ties.
    mag = want & 0x7FFF
    assert ((mag > 0) & (mag < 0x0400))[cls == names.index("subnormal")].sum() > 300
    assert (mag == 0x0400)[cls == names.index("min_normal")].any()
    assert (mag == 0x7C00)[cls == names.index("overflow")].any()
    assert (mag == 0x7BFF)[cls == names.index("overflow")].any()


def test_fma():
    """FP16FMA on every class of `fma_cases`, against golden.fma and MPFR (gmpy2)."""
    rng = make_rng(500)
    cases = fma_cases(rng)
    assert len(cases["ties"][0]) >= 300
    names = list(cases)
    ops = [np.concatenate([cases[k][i] for k in names]) for i in range(3)]
    order = rng.permutation(len(ops[0]))
    a, b, c = (x[order] for x in ops)
    got = stream_verilog(FP16FMA(), {"a": a, "b": b, "c": c}, ["y"], rng)["y"]
    want = g.fma(a, b, c)
    check("FP16FMA", {"a": a, "b": b, "c": c}, got, want)
    check("golden vs MPFR", {"a": a, "b": b, "c": c}, want, mpfr_fma(a, b, c))
    cls = np.concatenate([np.full(len(cases[k][0]), i) for i, k in enumerate(names)])[order]
    mag = want & 0x7FFF
    in_cls = {k: cls == i for i, k in enumerate(names)}
    assert ((mag > 0) & (mag < 0x0400))[in_cls["subnormal"]].sum() > 300
    assert ((mag > 0) & (mag < 0x0400))[in_cls["cancel"]].any()
    assert (want == 0x8000)[in_cls["zeros"]].any() and (want == 0)[in_cls["zeros"]].any()
    assert (mag == 0x7C00)[in_cls["overflow"]].any()
    assert ((mag < 0x7C00) & ((g.mul(a, b) & 0x7FFF) == 0x7C00))[in_cls["overflow"]].any()
    assert (want == NAN)[in_cls["specials"]].any()


# -- Verilog ---------------------------------------------------------------------------------------

BLOCKS = {"uint12_to_fp16": lambda: UIntToFP16(12), "uint20_to_fp16": lambda: UIntToFP16(20),
          "int8_to_fp16": lambda: IntToFP16(8), "fp16_mul": FP16Mul, "fp16_fma": FP16FMA,
          "fp16_to_int8": FP16ToInt8}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_verilog_lint_clean(name, tmp_path):
    """Each block converts to Verilog and passes `verilator --lint-only -Wall` with only the
    waivers of hdl/export.py."""
    setup_tools()
    path = tmp_path / f"{name}.v"
    path.write_text(verilog.convert(BLOCKS[name](), name=name, emit_src=False))
    ok, text = lint(path, name)
    assert ok, text


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("width", [0, -3, 12.0, True])
def test_rejects_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        UIntToFP16(width)


@pytest.mark.filterwarnings("ignore:.*created but never used")  # the refused blocks
def test_blocksim_matches_python_simulator_and_refuses_bad_input():
    """The Icarus replay of a block (verif/blocksim.py) sees what Amaranth's simulator sees,
    clock for clock, stalls included; an operand wider than its port is refused by name."""
    rng = make_rng(600)
    a = rng.integers(0, 1 << 16, 300)
    py = stream(FP16ToInt8(), {"a": a}, ["y", "saturated", "nan"], make_rng(601))
    vl = stream_verilog(FP16ToInt8(), {"a": a}, ["y", "saturated", "nan"], make_rng(601))
    for name in py:
        np.testing.assert_array_equal(vl[name], py[name], err_msg=name)
    with pytest.raises(ValueError, match=r"input `a` \(16 bits\) out of range: \[0, 65536\]"):
        blocksim.run(FP16ToInt8(), {"en": [1, 1], "a": [0, 1 << 16]}, ["y"])
    with pytest.raises(ValueError, match=r"FP16ToInt8 has no port `b`"):
        blocksim.run(FP16ToInt8(), {"en": [1], "b": [0]}, ["y"])
