"""Tests of the binary16 golden arithmetic (golden/fp16.py).

Every result is compared bit for bit with an independent oracle:
- numpy float16 for `mul`, `add`, the integer conversions and `to_int8` (numpy computes a float16
  product or sum in float32 and rounds once more to float16; 24 >= 2·11 + 2 bits make that double
  rounding innocuous, so its results are correctly rounded; integers pass exactly through float64
  and then take one correctly rounded float64 → float16 cast);
- MPFR through gmpy2 in an IEEE binary16 context (`gmpy2.ieee(16)`: 11 bits, subnormalize) for
  `fma` and `round_pack`, and as a second oracle for `mul` and `add` in the hard classes. Exact
  values (the class predicates: ties, subnormal, overflow, cancellation) come from a 256-bit MPFR
  context, which holds every a·b + c of binary16 operands exactly.
NaN results compare as "both NaN", and ours must be exactly the canonical 0x7E00.

Operands: uniformly random patterns (seeded with the session seed, tests/conftest.py), exhaustive
sweeps where cheap, all pairs (and random triples) of a reduced set of patterns that holds every
exponent field with edge fractions, and the hard classes of `HARD`: each is drawn from generators
aimed at it, selected by the exact MPFR value (so a class holds what its name says whatever the
generator did) and required to be well populated.
"""

import functools

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpfr

from golden import fp16 as g
from tests.conftest import run_seed

NAN, POS_INF, NEG_INF, ONE, MAX = 0x7E00, 0x7C00, 0xFC00, 0x3C00, 0x7BFF
MIN_NORMAL, MAX_SUB, MIN_SUB = 0x0400, 0x03FF, 0x0001
SNAN, NEG_NAN, NAN_PAYLOAD = 0x7C01, 0xFE00, 0x7FFF

COUNTS = {}  # operand tuples compared per oracle, printed at the end with `pytest -s`


def teardown_module():
    print("\noracle comparisons (operand tuples):",
          "; ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))


def rng_for(tag):
    return np.random.default_rng([run_seed(), sum(map(ord, tag))])


# -- the oracles ---------------------------------------------------------------------------------

def h(bits):
    """Patterns as np.float16 values."""
    return np.asarray(bits, dtype=np.int64).astype(np.uint16).view(np.float16)


def pat(x):
    """float16 values (or exact float64 values, rounded once by numpy's cast) as patterns."""
    with np.errstate(over="ignore"):
        return np.asarray(x).astype(np.float16).view(np.uint16).astype(np.int64)


def np_mul(a, b):
    with np.errstate(all="ignore"):
        return pat(h(a) * h(b))


def np_add(a, b):
    with np.errstate(all="ignore"):
        return pat(h(a) + h(b))


IEEE16 = gmpy2.ieee(16)
assert (IEEE16.precision, IEEE16.emin, IEEE16.emax, IEEE16.subnormalize) == (11, -23, 16, True)
IEEE16_DOWN, IEEE16_UP = gmpy2.ieee(16), gmpy2.ieee(16)
IEEE16_DOWN.round, IEEE16_UP.round = gmpy2.RoundDown, gmpy2.RoundUp
EXACT = gmpy2.context(precision=256)     # a·b + c of binary16 values spans < 100 bits: exact
TWO_M14, HUGE, OVF = mpfr(2.0 ** -14), mpfr(65504.0), mpfr(65520.0)


def mp(bits):
    """Patterns as exact mpfr values (float16 → float64 → mpfr: both steps exact)."""
    return [mpfr(float(v)) for v in h(bits)]


def mp_pat(values):
    """binary16-representable mpfr values back to patterns; refuses anything inexact."""
    f64 = np.array([float(v) for v in values], dtype=np.float64)
    f16 = f64.astype(np.float16)
    same = (f16.astype(np.float64) == f64) | np.isnan(f64)
    assert same.all(), f"oracle value not binary16: {f64[~same][:3]}"
    assert np.array_equal(np.signbit(f16), np.signbit(f64)), "zero sign lost"
    return pat(f16)


def exact_terms(op, a, b, c=None):
    """(term1, term2) of the exact sum an operation rounds: (a·b, c), (a, b) or (a·b, 0)."""
    A, B = mp(a), mp(b)
    if op == "fma":
        return [EXACT.mul(x, y) for x, y in zip(A, B)], mp(c)
    if op == "add":
        return A, B
    return [EXACT.mul(x, y) for x, y in zip(A, B)], [mpfr(0)] * len(A)


def mp_round(op, a, b, c=None, ctx=IEEE16):
    """The MPFR oracle: `op` on patterns in the binary16 context `ctx`, as patterns."""
    A, B = mp(a), mp(b)
    if op == "fma":
        return mp_pat([ctx.fma(x, y, z) for x, y, z in zip(A, B, mp(c))])
    f = ctx.mul if op == "mul" else ctx.add
    return mp_pat([f(x, y) for x, y in zip(A, B)])


def classify(op, a, b, c=None):
    """Class masks of each operand tuple, from the exact value x and its two binary16 neighbours."""
    t1, t2 = exact_terms(op, a, b, c)
    lo_r, hi_r = mp_round(op, a, b, c, IEEE16_DOWN), mp_round(op, a, b, c, IEEE16_UP)
    lo, hi = mp(lo_r), mp(hi_r)
    n = len(t1)
    cls = {k: np.zeros(n, dtype=bool) for k in
           ("tie", "subnormal", "to_min_normal", "underflow_to_zero", "overflow", "below_overflow",
            "cancellation", "exact_zero", "far_apart")}
    near = mp_round(op, a, b, c)
    for i in range(n):
        if not (gmpy2.is_finite(t1[i]) and gmpy2.is_finite(t2[i])):
            continue
        x = EXACT.add(t1[i], t2[i])
        ax = EXACT.abs(x)
        big = max(EXACT.abs(t1[i]), EXACT.abs(t2[i]))
        cls["tie"][i] = (lo[i] != hi[i] and gmpy2.is_finite(hi[i]) and gmpy2.is_finite(lo[i])
                         and EXACT.sub(x, lo[i]) == EXACT.sub(hi[i], x))
        cls["subnormal"][i] = 0 < ax < TWO_M14
        cls["to_min_normal"][i] = 0 < ax < TWO_M14 and (near[i] & 0x7FFF) == MIN_NORMAL
        cls["underflow_to_zero"][i] = ax > 0 and (near[i] & 0x7FFF) == 0
        cls["overflow"][i] = ax >= OVF
        cls["below_overflow"][i] = HUGE < ax < OVF
        cls["exact_zero"][i] = x == 0 and big > 0
        cls["cancellation"][i] = (t1[i] != 0 and t2[i] != 0 and gmpy2.is_signed(t1[i])
                                  != gmpy2.is_signed(t2[i]) and EXACT.mul_2exp(ax, 8) <= big)
        small = min(EXACT.abs(t1[i]), EXACT.abs(t2[i]))
        cls["far_apart"][i] = small > 0 and EXACT.mul_2exp(small, 24) < big
    return cls


def assert_same(got, want, what, *operands, oracle):
    """Bit-exact comparison; NaN: `want` any NaN, `got` exactly 0x7E00. Reports the first miss."""
    got = np.asarray(got)
    want = np.broadcast_to(np.asarray(want, dtype=np.int64), got.shape)
    assert got.dtype == np.int64, f"{what}: result dtype {got.dtype}, not int64"
    want_nan = (want & 0x7FFF) > POS_INF
    ok = np.where(want_nan, got == NAN, got == want)
    key = f"{oracle}: {what}"
    COUNTS[key] = COUNTS.get(key, 0) + got.size
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[0]
        ops = ", ".join(f"{int(np.broadcast_to(o, got.shape).flat[i]):#06x}" for o in operands)
        raise AssertionError(f"{what}({ops}) = {int(got.flat[i]):#06x}, {oracle} says "
                             f"{int(want.flat[i]):#06x} ({(~ok).sum()} of {ok.size} differ)")


# -- operand sets --------------------------------------------------------------------------------

def finite(rng, n, *, fields=(0, 30), sparse=False, sign=None):
    """Random finite patterns with exponent fields in `fields` (inclusive). `sparse`: the
    significand ends in t zeros after its last one, t uniform in 0..10 (short products and sums,
    so ties and exact results are frequent)."""
    frac = rng.integers(0, 1 << 10, n)
    if sparse:
        t = rng.integers(0, 11, n)
        frac = ((frac >> t << t) | (1 << t)) & 0x3FF
    f = np.clip(np.broadcast_to(fields[0], n) if fields[0] == fields[1]
                else rng.integers(fields[0], fields[1] + 1, n), 0, 30)
    s = rng.integers(0, 2, n) if sign is None else np.full(n, sign)
    return (s << 15) | (f << 10) | frac


def field_of(bits):
    return (np.asarray(bits) >> 10) & 0x1F


def reduced_set():
    """Every exponent field (zeros, subnormals, normals, Inf, NaN) with 16 edge fractions, both
    signs: 1024 patterns."""
    fracs = np.array([0, 1, 2, 3, 0x155, 0x1FF, 0x200, 0x201, 0x2AA, 0x3FD, 0x3FE, 0x3FF, 0x100,
                      0x0FF, 0x300, 0x001 << 5])
    f = np.arange(32)[:, None]
    one = ((f << 10) | fracs[None, :]).ravel()
    return np.concatenate([one, one | 0x8000])


SPECIALS = np.array([0x0000, 0x8000, MIN_SUB, 0x8001, MAX_SUB, 0x83FF, MIN_NORMAL, 0x8400, ONE,
                     0xBC00, 0x3800, 0x4000, MAX, 0xFBFF, POS_INF, NEG_INF, NAN, SNAN, NEG_NAN,
                     NAN_PAYLOAD, 0xFFFF, 0x7D55])


def near_boundary_products(rng, n, field_sum):
    """a·b just below a power of two: ma·mb in [2^21 − 2048 − ma, 2^21), fields summing to
    `field_sum` (15: just below 2^−14, the largest subnormal's rounding window; 45: just below
    2^16, around the overflow threshold 65520)."""
    ma = rng.integers(1024, 2048, 4 * n)
    mb = ((1 << 21) - 1 - rng.integers(0, 2048, 4 * n)) // ma
    ok = (mb >= 1024) & (mb < 2048)
    ma, mb = ma[ok][:n], mb[ok][:n]
    lo = max(1, field_sum - 30)
    fa = rng.integers(lo, field_sum - lo + 1, ma.size)
    fb = field_sum - fa
    s = rng.integers(0, 2, (2, ma.size))
    return ((s[0] << 15) | (fa << 10) | (ma - 1024), (s[1] << 15) | (fb << 10) | (mb - 1024))


def ulp_scaled(rng, n, c, k_range, sparse=True):
    """a, b with a·b ≈ 2^k · ulp(c), k uniform in `k_range`: sums that land within a few ulps
    of c (k small), or far below it (k << 0: the sticky path) or far above (k >> 0)."""
    a = finite(rng, n, fields=(1, 30), sparse=sparse)
    k = rng.integers(k_range[0], k_range[1] + 1, n)
    # a·b ≈ 2^(fa + fb − 30 + 1) (both significands near 1.5), ulp(c) = 2^(max(fc, 1) − 25)
    fb = np.maximum(field_of(c), 1) - 25 + k + 29 - field_of(a)
    ok = (fb >= 0) & (fb <= 30)
    b = finite(rng, n, sparse=sparse)
    b = (b & 0x83FF) | (np.clip(fb, 0, 30) << 10)
    return a[ok], b[ok], c[ok]


@functools.cache
def pool(op):
    """Operand tuples for the hard classes of `op`, with their class masks."""
    rng = rng_for("pool-" + op)
    n = 6000
    parts = []
    if op in ("mul", "fma"):
        for fs in (15, 14, 16, 45, 44):
            a, b = near_boundary_products(rng, n // 2, fs)
            parts.append((a, b))
        for lo in (-22, -10, 0, 20):     # products below and of subnormal size, of every size
            a = finite(rng, n, fields=(0, 30), sparse=True)
            fb = np.clip(lo + rng.integers(0, 16, n) + 15 - field_of(a), 0, 30)
            b = (finite(rng, n, sparse=True) & 0x83FF) | (fb << 10)
            parts.append((a, b))
        parts.append((finite(rng, n, fields=(0, 30)), finite(rng, n, fields=(0, 30))))
    if op == "mul":
        a, b = (np.concatenate(x) for x in zip(*parts))
        return (a, b), classify("mul", a, b)
    if op == "add":
        for sparse in (False, True):
            a = finite(rng, n, sparse=sparse)
            b = finite(rng, n, sparse=sparse)
            b = (b & 0x83FF) | (np.clip(field_of(a) + rng.integers(-12, 13, n), 0, 30) << 10)
            parts.append((a, b))
            near = np.clip((a ^ 0x8000) + rng.integers(-3, 4, n), 0, 0xFFFF)   # −a ± 3 ulps
            near = np.where(g.nonfinite(near), a ^ 0x8000, near)
            parts.append((a, near))
        a = finite(rng, n, fields=(0, 2))                   # subnormal and tiny sums
        parts.append((a, finite(rng, n, fields=(0, 2))))
        a = finite(rng, n, fields=(29, 30), sign=0)         # sums near 65504 .. 65536
        parts.append((a, finite(rng, n, fields=(18, 26), sign=0)))
        a = (MAX - rng.integers(0, 2, n)) | rng.integers(0, 2, n) << 15       # ±65504, ±65472
        parts.append((a, (a & 0x8000) | finite(rng, n, fields=(14, 18), sign=0)))  # + 0.5 .. 32
        a, b = finite(rng, n, fields=(26, 30)), finite(rng, n, fields=(0, 3))   # 2^24 apart
        parts += [(a, b), (b, a)]
        parts.append((finite(rng, n, fields=(30, 30)), finite(rng, n, fields=(15, 30))))
        a, b = (np.concatenate(x) for x in zip(*parts))
        return (a, b), classify("add", a, b)
    # fma: c for every product above, plus addends placed against the product
    triples = []
    for a, b in parts:
        p = np_mul(a, b)
        m = a.size
        cancel = p ^ 0x8000
        cancel = np.clip(cancel + rng.integers(-2, 3, m), 0, 0xFFFF)       # −a·b ± 2 ulps
        cancel = np.where(g.nonfinite(cancel), p ^ 0x8000, cancel)
        triples.append((a, b, cancel))
        triples.append((a, b, finite(rng, m, fields=(0, 30), sparse=True)))
    for c_fields, k in (((0, 2), (-3, 2)), ((1, 30), (-3, 2)), ((29, 30), (-3, 2)),
                        ((0, 30), (-45, -12)), ((0, 30), (12, 40))):
        c = finite(rng, 2 * n, fields=c_fields, sparse=True)
        triples.append(ulp_scaled(rng, 2 * n, c, k))
    c = np.repeat([MAX_SUB, 0x83FF, MAX, 0xFBFF, 0x7BFE, 0x03FE], n // 2)
    triples.append(ulp_scaled(rng, c.size, c, (-3, 1), sparse=False))
    c = np.repeat([MAX_SUB, 0x83FF], n)                 # a·b of c's sign, 1/2 .. 2 ulps
    a, b, c = ulp_scaled(rng, c.size, c, (-1, -1), sparse=False)
    triples.append((a, b ^ ((a ^ b ^ c) & 0x8000), c))
    a, b, c = (np.concatenate(x) for x in zip(*triples))
    return (a, b, c), classify("fma", a, b, c)


# Hard classes with the minimum number of operand tuples each must hold (well below what the
# generators give for any seed). Sums of binary16 values below 2^−14 are exact (multiples of
# 2^−24), so `add` has no subnormal ties, no round-up to 2^−14 and no underflow to zero.
HARD = {
    "mul": dict(tie=800, subnormal=2000, to_min_normal=200, underflow_to_zero=300, overflow=500,
                below_overflow=150),
    "add": dict(tie=1000, subnormal=2000, overflow=300, below_overflow=1000, cancellation=2000,
                exact_zero=500, far_apart=500),
    "fma": dict(tie=1000, subnormal=2000, to_min_normal=200, underflow_to_zero=200, overflow=300,
                below_overflow=300, cancellation=3000, exact_zero=500, far_apart=3000),
}


# -- hand-worked cases ---------------------------------------------------------------------------

HAND = [
    # (function, operands, expected, why)
    ("mul", (0x3C01, 0x3C01), 0x3C02, "(1+2^-10)^2 = 1 + 2^-9 + 2^-20: below half an ulp"),
    ("mul", (0x3E00, 0x3C01), 0x3E02, "1.5·(1+2^-10) = 1.5 + 1.5·2^-10: tie, 0x3E01 odd -> 0x3E02"),
    ("mul", (0x3E00, 0x3C03), 0x3E04, "1.5·(1+3·2^-10) = 1.5 + 4.5·2^-10: tie, 4 is even"),
    ("mul", (0x0400, 0x3BFF), 0x0400, "2^-14·(1−2^-11) = 1023.5·2^-24: tie, up to 2^-14"),
    ("mul", (0x0400, 0x3BFE), 0x03FF, "2^-14·(1−2^-10) = 1023·2^-24: largest subnormal, exact"),
    ("mul", (0x0001, 0x3800), 0x0000, "2^-24·0.5 = 2^-25: tie between 0 and 2^-24, to 0"),
    ("mul", (0x0001, 0x3A00), 0x0001, "2^-24·0.75: above half, up to 2^-24"),
    ("mul", (0x8001, 0x3800), 0x8000, "−2^-25 rounds to −0: the sign stays"),
    ("mul", (0x0003, 0x3800), 0x0002, "3·2^-25 = 1.5 ulp: tie, 1 odd -> 2"),
    ("mul", (0x67FF, 0x5000), 0x7BFF, "2047·32 = 65504, exact"),
    ("mul", (0x7BFF, 0x3C00), 0x7BFF, "65504·1"),
    ("mul", (0x7BFF, 0x3C01), POS_INF, "65504·(1+2^-10) = 65567.97: > 65520"),
    ("mul", (0x7955, 0x4200), POS_INF, "43680·3 = 131040: overflow"),
    ("mul", (0x6555, 0x5200), POS_INF, "1365·48 = 65520: tie between 65504 and 2^16, even: Inf"),
    ("mul", (0x8000, 0x3C00), 0x8000, "−0·1 = −0"),
    ("mul", (0x8000, 0x8000), 0x0000, "−0·−0 = +0"),
    ("mul", (POS_INF, 0x0000), NAN, "Inf·0 invalid"),
    ("mul", (NEG_INF, 0x8001), POS_INF, "−Inf·−2^-24 = +Inf"),
    ("mul", (SNAN, ONE), NAN, "signalling NaN: canonical quiet NaN"),
    ("mul", (0xFFFF, ONE), NAN, "negative NaN with payload: canonical"),
    ("add", (0x3C00, 0xBC00), 0x0000, "1 + (−1) = +0"),
    ("add", (0x8000, 0x8000), 0x8000, "(−0) + (−0) = −0"),
    ("add", (0x8000, 0x0000), 0x0000, "(−0) + (+0) = +0"),
    ("add", (0x8001, 0x0001), 0x0000, "−2^-24 + 2^-24 = +0"),
    ("add", (0x3C00, 0x1000), 0x3C00, "1 + 2^-11: tie, 0x3C00 even"),
    ("add", (0x3C01, 0x1000), 0x3C02, "1+2^-10 + 2^-11: tie, 0x3C01 odd -> up"),
    ("add", (0x3C00, 0x1001), 0x3C01, "1 + 2^-11(1+2^-10): above half, up"),
    ("add", (0x3C00, 0x8C00), 0x3C00, "1 − 2^-12: tie between 1 − 2^-11 (odd) and 1 (even)"),
    ("add", (0x7BFF, 0x4BFF), 0x7BFF, "65504 + 15.992: 65519.99 < 65520"),
    ("add", (0x7BFF, 0x4C00), POS_INF, "65504 + 16 = 65520: tie, to even 2^16: Inf"),
    ("add", (0x03FF, 0x0001), 0x0400, "largest subnormal + 2^-24 = 2^-14, exact"),
    ("add", (POS_INF, NEG_INF), NAN, "Inf − Inf invalid"),
    ("add", (NEG_INF, NEG_INF), NEG_INF, "−Inf + −Inf"),
    ("add", (NEG_INF, MAX), NEG_INF, "−Inf + finite"),
    ("fma", (0x3C00, 0x3C00, 0x1000), 0x3C00, "1·1 + 2^-11: tie, even"),
    ("fma", (0x3C01, 0x3C01, 0xBC00), 0x1800, "(1+2^-10)^2 − 1 = 2^-9 + 2^-20: tie, to 2^-9"),
    ("fma", (0x3C01, 0x3C03, 0xBC00), 0x1C01, "(1+2^-10)(1+3·2^-10) − 1 = 2^-8 + 0.75·2^-18: up;"
     " mul then add would give 2^-8"),
    ("fma", (0x3C01, 0x3C01, 0xBC02), 0x0010, "(1+2^-10)^2 − (1+2^-9) = 2^-20 = 16·2^-24, exact"),
    ("fma", (0x0001, 0x0001, 0x8000), 0x0000, "2^-48 + (−0): positive, rounds to +0"),
    ("fma", (0x8001, 0x0001, 0x0000), 0x8000, "−2^-48 + 0 rounds to −0: keeps its sign"),
    ("fma", (0x8000, 0x3C00, 0x8000), 0x8000, "(−0)·1 + (−0) = −0"),
    ("fma", (0x8000, 0x3C00, 0x0000), 0x0000, "(−0)·1 + (+0) = +0"),
    ("fma", (0x0000, 0x3C00, 0x8000), 0x0000, "(+0)·1 + (−0) = +0"),
    ("fma", (0x3C00, 0x3C00, 0xBC00), 0x0000, "1·1 − 1 = +0"),
    ("fma", (0xBC00, 0x3C00, 0x3C00), 0x0000, "−1·1 + 1 = +0"),
    ("fma", (0x0001, 0x0001, 0x3C00), 0x3C00, "1 + 2^-48: sticky, below half"),
    ("fma", (0x8001, 0x0001, 0x3C00), 0x3C00, "1 − 2^-48: sticky in a subtraction, nearest 1"),
    ("fma", (0x8001, 0x0001, 0x3C01), 0x3C01, "1+2^-10 − 2^-48: nearest is 1+2^-10"),
    ("fma", (0x0001, 0x0001, 0x3C00 | 0x0001), 0x3C01, "1+2^-10 + 2^-48"),
    ("fma", (0x1000, 0x3C00, 0x3C00), 0x3C00, "2^-11 + 1: tie -> even"),
    ("fma", (0x1000, 0x3C01, 0x3C00), 0x3C01, "2^-11(1+2^-10) + 1: above the tie"),
    ("fma", (0x0400, 0x3BFF, 0x0000), 0x0400, "1023.5·2^-24: up to 2^-14"),
    ("fma", (0x5C00, 0x4C00, 0x7BFF), POS_INF, "256·16 + 65504 = 69600: overflow"),
    ("fma", (0x3C00, 0x4BFF, 0x7BFF), 0x7BFF, "15.99 + 65504 < 65520"),
    ("fma", (0x3C00, 0x4C00, 0x7BFF), POS_INF, "16 + 65504 = 65520: Inf"),
    ("fma", (0x7BFF, 0x4000, 0xFBFF), 0x7BFF, "65504·2 − 65504: the product alone would be Inf"),
    ("fma", (POS_INF, 0x0000, NAN), NAN, "Inf·0 + NaN"),
    ("fma", (POS_INF, 0x0000, 0x3C00), NAN, "Inf·0 + 1 invalid"),
    ("fma", (0x0000, NEG_INF, POS_INF), NAN, "0·(−Inf) + Inf invalid"),
    ("fma", (POS_INF, 0x3C00, NEG_INF), NAN, "Inf·1 − Inf invalid"),
    ("fma", (POS_INF, 0xBC00, NEG_INF), NEG_INF, "Inf·(−1) − Inf = −Inf"),
    ("fma", (0x3C00, 0x3C00, NEG_INF), NEG_INF, "finite + −Inf"),
    ("fma", (0x7BFF, 0x7BFF, NEG_INF), NEG_INF, "a·b beyond binary16 but finite: −Inf"),
    ("fma", (NAN_PAYLOAD, 0x0000, POS_INF), NAN, "NaN anywhere"),
]


@pytest.mark.parametrize("name, operands, expected, why", HAND,
                         ids=[f"{n}-{'-'.join(f'{o:04x}' for o in ops)}" for n, ops, _, _ in HAND])
def test_hand(name, operands, expected, why):
    got = getattr(g, name)(*operands)
    assert int(got) == expected, f"{name}{tuple(hex(o) for o in operands)} = {int(got):#06x}: {why}"
    got = np.atleast_1d(got)
    # the hand value itself is checked against the oracles, so a slip in the table cannot hide
    ops = [np.array([o]) for o in operands]
    assert_same(got, mp_round(name, *ops), name, *operands, oracle="mpfr")
    if name != "fma":
        ref = np_mul if name == "mul" else np_add
        assert_same(got, ref(*ops), name, *operands, oracle="numpy")


def test_oracles_are_binary16():
    """The oracles themselves round to 11 bits with subnormals (a misconfigured context would
    make every comparison vacuous)."""
    assert mp_round("fma", np.array([ONE]), np.array([ONE]), np.array([0x1000]))[0] == ONE
    assert mp_round("fma", np.array([ONE]), np.array([0x3C01]), np.array([0x1000]))[0] == 0x3C02
    assert mp_round("mul", np.array([0x0003]), np.array([0x3800]))[0] == 0x0002   # 1.5 ulp sub
    assert mp_round("mul", np.array([0x0001]), np.array([0x3A00]))[0] == 0x0001   # 0.75 ulp
    assert mp_round("add", np.array([MAX]), np.array([0x4C00]))[0] == POS_INF
    assert np_add(np.array([ONE]), np.array([0x1000]))[0] == ONE
    assert np_mul(np.array([0x0003]), np.array([0x3800]))[0] == 0x0002


# -- mul and add against numpy ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mul", "add"])
def test_every_pattern_against_random(name):
    """All 65536 patterns as `a` against 48 random `b` each (and swapped)."""
    rng = rng_for("sweep-" + name)
    fn, ref = (g.mul, np_mul) if name == "mul" else (g.add, np_add)
    a = np.arange(1 << 16)
    for _ in range(48):
        b = rng.integers(0, 1 << 16, a.size)
        assert_same(fn(a, b), ref(a, b), name, a, b, oracle="numpy")
        assert_same(fn(b, a), ref(b, a), name, b, a, oracle="numpy")


@pytest.mark.parametrize("name", ["mul", "add"])
def test_all_pairs_of_reduced_set(name):
    r = reduced_set()
    a, b = np.meshgrid(r, r, indexing="ij")
    fn, ref = (g.mul, np_mul) if name == "mul" else (g.add, np_add)
    assert_same(fn(a, b), ref(a, b), name, a, b, oracle="numpy")


def test_special_operands_all_pairs():
    """Zeros, edge finite values, ±Inf and NaNs of every kind in all pairs; no NaN result other
    than 0x7E00, and the signed-zero rules."""
    a, b = np.meshgrid(SPECIALS, SPECIALS, indexing="ij")
    for name, fn, ref in (("mul", g.mul, np_mul), ("add", g.add, np_add)):
        got = fn(a, b)
        assert_same(got, ref(a, b), name, a, b, oracle="numpy")
        assert_same(got, mp_round(name, a.ravel(), b.ravel()).reshape(a.shape), name, a, b,
                    oracle="mpfr")
    zero = (a & 0x7FFF) == 0
    both = zero & ((b & 0x7FFF) == 0)
    assert (g.mul(a, b)[both] == (a ^ b)[both] & 0x8000).all()                 # sign XOR
    assert (g.add(a, b)[both] == (a & b)[both]).all()                          # −0 only for −0 + −0
    finite_ = ~g.nonfinite(a)
    assert (g.add(a, a ^ 0x8000)[finite_] == 0).all()                          # x + (−x) = +0


@pytest.mark.parametrize("name, cls", [(op, c) for op in ("mul", "add") for c in HARD[op]])
def test_hard_class_mul_add(name, cls):
    (a, b), classes = pool(name)
    sel = classes[cls]
    assert sel.sum() >= HARD[name][cls], f"only {sel.sum()} {cls} cases for {name}"
    a, b = a[sel], b[sel]
    got = getattr(g, name)(a, b)
    assert_same(got, (np_mul if name == "mul" else np_add)(a, b), name, a, b, oracle="numpy")
    assert_same(got, mp_round(name, a, b), name, a, b, oracle="mpfr")


def test_mul_products_ending_in_a_half():
    """Products whose low 11 of 22 bits are exactly 100…0: ma = odd·2^t, mb = odd'·2^(10 − t)
    make ma·mb = odd·odd'·2^10 (≥ 2^21 kept), an exact tie at every normal exponent."""
    rng = rng_for("ties-mul")
    n = 40000
    t = rng.integers(0, 11, n)
    ma = (rng.integers(1 << 10, 1 << 11, n) >> t | 1) << t
    mb = (rng.integers(1 << 10, 1 << 11, n) >> (10 - t) | 1) << (10 - t)
    keep = (ma < 2048) & (mb < 2048) & (ma * mb >= 1 << 21)
    ma, mb = ma[keep], mb[keep]
    assert (((ma * mb) & 0x7FF) == 0x400).all() and ma.size > 5000
    fa = rng.integers(1, 31, ma.size)
    fb = np.clip(30 - fa + rng.integers(-14, 1, ma.size), 1, 30)     # normal results mostly
    s = rng.integers(0, 2, (2, ma.size))
    a = (s[0] << 15) | (fa << 10) | (ma & 0x3FF)
    b = (s[1] << 15) | (fb << 10) | (mb & 0x3FF)
    assert classify("mul", a[:3000], b[:3000])["tie"].sum() > 2000
    assert_same(g.mul(a, b), np_mul(a, b), "mul", a, b, oracle="numpy")


# -- fma against MPFR ----------------------------------------------------------------------------

def test_fma_random():
    rng = rng_for("fma-random")
    a, b, c = rng.integers(0, 1 << 16, (3, 60000))
    assert_same(g.fma(a, b, c), mp_round("fma", a, b, c), "fma", a, b, c, oracle="mpfr")


def test_fma_random_triples_of_reduced_set():
    rng = rng_for("fma-reduced")
    a, b, c = rng.choice(reduced_set(), (3, 60000))
    assert_same(g.fma(a, b, c), mp_round("fma", a, b, c), "fma", a, b, c, oracle="mpfr")


def test_fma_special_operands_all_triples():
    a, b, c = (x.ravel() for x in np.meshgrid(SPECIALS, SPECIALS, SPECIALS, indexing="ij"))
    got = g.fma(a, b, c)
    assert_same(got, mp_round("fma", a, b, c), "fma", a, b, c, oracle="mpfr")
    zero = lambda x: (x & 0x7FFF) == 0                                          # noqa: E731
    both = zero(a) | zero(b)
    both &= zero(c) & ~g.nonfinite(a) & ~g.nonfinite(b)
    s_p = (a ^ b) & 0x8000
    assert (got[both] == (s_p & c)[both]).all()        # −0 only when a·b and c are both −0


@pytest.mark.parametrize("cls", list(HARD["fma"]))
def test_hard_class_fma(cls):
    (a, b, c), classes = pool("fma")
    sel = classes[cls]
    assert sel.sum() >= HARD["fma"][cls], f"only {sel.sum()} {cls} cases for fma"
    a, b, c = a[sel], b[sel], c[sel]
    assert_same(g.fma(a, b, c), mp_round("fma", a, b, c), "fma", a, b, c, oracle="mpfr")


def test_fma_alignment_is_exact_up_to_the_sticky_bit():
    """The alignment step of `fma` alone (golden `_sum_terms`, a hardware stage of its own):
    (sign, sig, e0, sticky) must bracket the exact a·b + c as sig·2^(e0−25) <= |x| <
    (sig+1)·2^(e0−25), with `sticky` set exactly when |x| is not sig·2^(e0−25). Whether the
    sticky bit is right cannot show in a rounded result (the product it summarises is below a
    quarter ulp of c), so it is checked here, on the far-apart and cancelling triples."""
    (a, b, c), classes = pool("fma")
    sel = (classes["far_apart"] | classes["cancellation"] | classes["tie"]) & ~(
        g.nonfinite(a) | g.nonfinite(b) | g.nonfinite(c))
    a, b, c = a[sel], b[sel], c[sel]
    _, ea, ma = g.decode(a)
    _, eb, mb = g.decode(b)
    sc, ec, mc = g.decode(c)
    sign, sig, e0, sticky = g._sum_terms((a ^ b) >> 15, ea + eb - g.SCALE, ma * mb, sc, ec, mc)
    assert sticky.sum() > 1000
    t1, t2 = exact_terms("fma", a, b, c)
    for i in range(a.size):
        x = EXACT.add(t1[i], t2[i])
        v = EXACT.mul_2exp(mpfr(int(sig[i]), 256), int(e0[i]) - g.SCALE)
        ulp = EXACT.mul_2exp(mpfr(1), int(e0[i]) - g.SCALE)
        ax = EXACT.abs(x)
        ok = v <= ax < EXACT.add(v, ulp) and bool(sticky[i]) == (ax != v)
        ok = ok and (x == 0 or bool(sign[i]) == gmpy2.is_signed(x))
        assert ok, (f"alignment of ({a[i]:#06x}, {b[i]:#06x}, {c[i]:#06x}): sign {sign[i]} sig "
                    f"{sig[i]} e0 {e0[i]} sticky {sticky[i]}, exact {x}")
    COUNTS["mpfr: fma alignment"] = COUNTS.get("mpfr: fma alignment", 0) + a.size


def test_fma_is_fused():
    """fma differs from add(mul(a, b), c) exactly where the product's rounding matters; here is
    a class where it always does: (1+2^-10)^2 − 1."""
    rng = rng_for("fused")
    k = rng.integers(1, 1 << 10, 2000)
    a = 0x3C00 | k                                   # 1 + k·2^-10
    c = np.full(a.size, 0xBC00)                      # −1
    got = g.fma(a, a, c)
    assert_same(got, mp_round("fma", a, a, c), "fma", a, a, c, oracle="mpfr")
    assert (got != g.add(g.mul(a, a), c)).sum() > 500


def test_fma_with_zero_addend_and_unit_factor_match_mul_and_add():
    """fma(a, b, −0) is a·b (−0 is the identity of addition), fma(a, 1, c) is a + c."""
    rng = rng_for("fma-identity")
    a, b = rng.integers(0, 1 << 16, (2, 200000))
    assert_same(g.fma(a, b, 0x8000), np_mul(a, b), "fma(·,·,−0)", a, b, oracle="numpy")
    assert_same(g.fma(a, ONE, b), np_add(a, b), "fma(·,1,·)", a, b, oracle="numpy")


# -- round_pack ----------------------------------------------------------------------------------

def test_round_pack_against_mpfr():
    """(−1)^s · (sig + δ) · 2^(exp − 25) for significands of 0..60 bits, scales from far below
    the subnormals to far above the overflow, δ = d/256 with d > 0 exactly when sticky. A third
    of the significands end in 100…0 just below the rounding position (ties unless sticky)."""
    rng = rng_for("round-pack")
    n = 40000
    bits = rng.integers(0, 61, n)
    sig = rng.integers(0, 1 << 62, n) >> (62 - bits)
    target = rng.integers(-30, 19, n)                                      # log2 of the value
    exp = target - bits + 25
    dropped = np.maximum(bits - 11, 1 - exp)                 # bits below a binary16 ulp
    tie = (rng.random(n) < 0.3) & (dropped >= 1) & (dropped <= 60)
    cut = np.where(tie, dropped, 0)
    sig = np.where(tie, (sig >> cut << cut) | (np.int64(1) << np.maximum(cut - 1, 0)), sig)
    sticky = rng.random(n) < 0.5
    sticky &= (sig >= 1 << 11) | (exp <= 0)                               # δ must be rounded away
    d = np.where(sticky, rng.integers(1, 256, n), 0)
    s = rng.integers(0, 2, n)
    exact = [EXACT.mul_2exp(mpfr(int(si) << 8 | int(di), 256), int(e) - 25 - 8)
             for si, e, di in zip(sig, exp, d)]
    exact = [EXACT.minus(x) if ss else x for ss, x in zip(s, exact)]       # −0 for a zero
    got = g.round_pack(s, sig, exp, sticky)
    assert_same(got, mp_pat([IEEE16.plus(x) for x in exact]), "round_pack", s, sig, exp, sticky,
                oracle="mpfr")
    ties = [IEEE16_UP.plus(x) != IEEE16_DOWN.plus(x) and
            EXACT.sub(x, IEEE16_DOWN.plus(x)) == EXACT.sub(IEEE16_UP.plus(x), x) for x in exact]
    assert sum(ties) > 2500
    assert (g.round_pack(s, 0, exp) == s << 15).all()                      # exact zeros keep sign


def test_round_pack_refuses_unroundable_sticky():
    with pytest.raises(ValueError, match="`sticky`"):
        g.round_pack(0, 1 << 10, 5, True)          # 11-bit normal result keeps every bit
    g.round_pack(0, 1 << 11, 5, True)              # 12 bits: one is rounded away
    g.round_pack(0, 3, 0, True)                    # subnormal result: bits below 2^-24 dropped


# -- conversions ---------------------------------------------------------------------------------

def test_from_uint_every_12_bit_count():
    """The LDPU's ADC counts: all 4096; above 2048 every odd count is a tie (2049 -> 2048,
    2051 -> 2052)."""
    n = np.arange(1 << 12)
    got = g.from_uint(n, 12)
    assert_same(got, pat(n.astype(np.float64)), "from_uint", n, oracle="numpy")
    assert got[2049] == 0x6800 and got[2051] == 0x6802 and got[4095] == 0x6C00


@pytest.mark.parametrize("width", [1, 5, 11, 16, 17, 24, 32])
def test_from_uint_widths(width):
    rng = rng_for(f"uint{width}")
    n = np.concatenate([np.arange(min(1 << width, 1 << 16)),
                        rng.integers(0, 1 << width, 100000), [(1 << width) - 1]])
    assert_same(g.from_uint(n, width), pat(n.astype(np.float64)), "from_uint", n, oracle="numpy")


def test_from_uint_overflow_threshold():
    """65504 + half an ulp (16) = 65520 is the first integer that rounds to Inf."""
    n = np.arange(65500, 65600)
    got = g.from_uint(n, 17)
    assert (got[n <= 65519] <= MAX).all() and (got[n >= 65520] == POS_INF).all()
    assert g.from_uint(65519, 16) == MAX and g.from_uint(65520, 16) == POS_INF
    assert g.from_uint((1 << 32) - 1, 32) == POS_INF


@pytest.mark.parametrize("width", [1, 2, 8, 12, 16, 32])
def test_from_int(width):
    rng = rng_for(f"int{width}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = np.concatenate([np.arange(max(lo, -40000), min(hi, 40000) + 1),
                        rng.integers(lo, hi + 1, 100000), [lo, hi]])
    got = g.from_int(v, width)
    assert_same(got, pat(v.astype(np.float64)), "from_int", v, oracle="numpy")
    assert (got[v == 0] == 0).all()                                     # zero is +0


def test_from_int_ties_and_overflow():
    v = np.array([2049, -2049, 2051, -2051, 65519, -65519, 65520, -65520, -(1 << 31)])
    assert list(g.from_int(v, 32)) == [0x6800, 0xE800, 0x6802, 0xE802, MAX, 0xFBFF, POS_INF,
                                       NEG_INF, NEG_INF]


def test_to_int8_every_pattern():
    a = np.arange(1 << 16)
    f = h(a).astype(np.float64)
    with np.errstate(invalid="ignore"):
        r = np.rint(f)                                  # ties to even
        want = np.where(np.isnan(f), 0, np.clip(r, -128, 127)).astype(np.int64)
        sat = ~np.isnan(f) & ((r < -128) | (r > 127))
    got, saturated, nan = g.to_int8(a, return_flags=True)
    COUNTS["numpy: to_int8"] = COUNTS.get("numpy: to_int8", 0) + a.size
    assert got.dtype == np.int64 and np.array_equal(got, want), \
        f"to_int8 differs at {a[got != want][:5]}"
    assert np.array_equal(saturated, sat) and np.array_equal(nan, np.isnan(f))
    assert np.array_equal(g.to_int8(a), got)


def test_to_int8_hand():
    x = g.encode(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 126.5, 127.5, -128.5, -129.0, 1e4,
                           np.inf, -np.inf, np.nan, -0.0, 0.49951171875]))
    v, sat, nan = g.to_int8(x, return_flags=True)
    assert list(v) == [0, 2, 2, 0, -2, 126, 127, -128, -128, 127, 127, -128, 0, 0, 0]
    assert list(sat) == [0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0]
    assert list(nan) == [0] * 12 + [1, 0, 0]


def test_encode_and_to_float():
    a = np.arange(1 << 16)
    f = g.to_float(a)
    ref = h(a).astype(np.float64)
    assert np.array_equal(f, ref, equal_nan=True) and np.array_equal(np.signbit(f), np.signbit(ref))
    back = g.encode(f)
    assert_same(back, a, "encode∘to_float", a, oracle="numpy")
    assert (back[g.isnan(a)] == NAN).all()
    # midpoints of neighbours (exact in float64) round to the even one
    fin = a[(a & 0x7FFF) < MAX]
    mid = (g.to_float(fin) + g.to_float(fin + 1)) / 2
    want = np.where(fin & 1, fin + 1, fin)
    assert_same(g.encode(mid), want, "encode(midpoint)", fin, oracle="numpy")
    assert list(g.encode([65519.99, 65520.0, -65520.0, -0.0, 2.0 ** -26, 3 * 2.0 ** -26])) == \
        [MAX, POS_INF, NEG_INF, 0x8000, 0x0000, 0x0001]


def test_neg_flips_the_sign_bit_only():
    a = np.arange(1 << 16)
    assert np.array_equal(g.neg(a), a ^ 0x8000) and np.array_equal(g.neg(g.neg(a)), a)
    assert g.neg(NAN) == 0xFE00                                   # a bit operation, NaN included
    assert g.mul(g.neg(NAN), ONE) == NAN                          # arithmetic canonicalises it


def test_results_are_int64_and_broadcast():
    a = np.arange(6).reshape(2, 3) + ONE
    for out in (g.mul(a, ONE), g.add(a, np.zeros(3, dtype=np.uint16)), g.fma(a, ONE, 0),
                g.neg(a), g.to_int8(a), g.from_uint(a, 16), g.from_int(a, 17)):
        assert out.dtype == np.int64 and out.shape == (2, 3)
    assert np.array_equal(g.fma(a, ONE, 0), a)


# -- input validation ----------------------------------------------------------------------------

BAD = [
    (lambda: g.mul(np.array([1.0]), 0), TypeError, "`a`"),
    (lambda: g.mul(0, np.array([0x10000])), ValueError, "`b`"),
    (lambda: g.add(-1, 0), ValueError, "`a`"),
    (lambda: g.add(0, np.array([True])), TypeError, "`b`"),
    (lambda: g.fma(0, 0, [70000]), ValueError, "`c`"),
    (lambda: g.fma(0, np.float16(1), 0), TypeError, "`b`"),
    (lambda: g.neg(-1), ValueError, "`a`"),
    (lambda: g.to_int8(np.array([0.5])), TypeError, "`a`"),
    (lambda: g.to_int8(65536), ValueError, "`a`"),
    (lambda: g.to_float(np.array([1.0])), TypeError, "`bits`"),
    (lambda: g.encode(np.array([1 + 1j])), TypeError, "`x`"),
    (lambda: g.encode(np.array(["1"])), TypeError, "`x`"),
    (lambda: g.from_uint(5, 0), ValueError, "`width`"),
    (lambda: g.from_uint(5, 33), ValueError, "`width`"),
    (lambda: g.from_uint(5, 12.0), TypeError, "`width`"),
    (lambda: g.from_uint(5, True), TypeError, "`width`"),
    (lambda: g.from_uint(4096, 12), ValueError, "`n`"),
    (lambda: g.from_uint(-1, 12), ValueError, "`n`"),
    (lambda: g.from_uint(np.array([1.5]), 12), ValueError, "`n`"),
    (lambda: g.from_uint(np.array(["1"]), 12), TypeError, "`n`"),
    (lambda: g.from_int(128, 8), ValueError, "`v`"),
    (lambda: g.from_int(-129, 8), ValueError, "`v`"),
    (lambda: g.from_int(0, 0), ValueError, "`width`"),
    (lambda: g.from_int(np.array([0.25]), 8), ValueError, "`v`"),
    (lambda: g.round_pack(0, 1 << 61, 0), ValueError, "`sig`"),
    (lambda: g.round_pack(2, 1, 0), ValueError, "`sign`"),
    (lambda: g.round_pack(0, -1, 0), ValueError, "`sig`"),
    (lambda: g.round_pack(0, 1, 1 << 21), ValueError, "`exp`"),
]


@pytest.mark.parametrize("call, exc, name", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_inputs(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
