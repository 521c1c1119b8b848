"""IEEE 754 binary16, exactly, on integers: bit patterns in, bit patterns out.

Pure NumPy. A binary16 pattern is `sign (1) | exponent field (5) | fraction (10)`. Every value a
finite pattern encodes is `(−1)^sign · sig · 2^(exp − SCALE)` with the integers returned by
`decode`. The arithmetic below is the golden model of the FP16 blocks of the baselines (the LDPU's
convert-and-scale and activation blocks, the FP16 outer-product array): the Amaranth blocks must
match it bit for bit. It uses no float arithmetic: significands and exponents are int64 arrays,
every result is rounded once by `round_pack`, and every intermediate is proven (in comments) and
checked to fit int64. Only the conversions to and from Python/NumPy floats (`encode`, `to_float`)
touch floats, and only to move values across that boundary.

Conventions (the hardware matches them bit for bit)
---------------------------------------------------
Rounding. Round to nearest, ties to even, for every operation and conversion. Subnormals are
read and produced (no flush to zero, no denormals-are-zero). A result whose rounded magnitude
reaches 2^16 (i.e. the exact magnitude is >= 65520 = 65504 + half an ulp) is ±Inf; 65519.99…
still rounds to 65504 (0x7BFF).

NaN. Every NaN an arithmetic operation or conversion produces is the one canonical quiet NaN
0x7E00 (sign 0, quiet bit set, payload 0): the hardware emits this single pattern. NaN inputs
(any payload, either sign, quiet or signalling: all are treated alike, no flags are raised)
propagate as 0x7E00. Invalid operations give 0x7E00 too: Inf·0 in `mul`; Inf − Inf in `add`; in
`fma`, Inf·0 (whatever c is, even NaN) and (±Inf)·b + (∓Inf).

Signed zeros (IEEE 754 §6.3, round to nearest). A product's sign is the XOR of the operands'
signs, also for zero and infinite results. An exact zero sum x + y is −0 only if both x and y are
−0, otherwise +0 (so x + (−x) = +0 and (−0) + (−0) = −0). `fma(a, b, c)` likewise: an exact zero
result is −0 only if a·b and c are both −0, otherwise +0 (a·b = +0 and c = +0: +0; exact
cancellation of non-zero a·b and c: +0). A non-zero exact result that rounds to zero (underflow)
keeps its own sign.

`neg` is the IEEE 754 `negate` (§5.5.1): a pure bit operation that flips the sign bit of every
pattern, NaNs included (neg(0x7E00) = 0xFE00). It is wiring in hardware, not arithmetic; it is the
only function here that can return a NaN pattern other than 0x7E00, and only when given a NaN.
Any arithmetic on that pattern gives 0x7E00 again.

`to_int8` rounds to the nearest integer, ties to even, then saturates to [−128, 127]; ±Inf
saturate to the rail of their sign; NaN gives 0. Its flags: `saturated` is set where the rounded
integer lies outside [−128, 127] (so 127.5, which rounds to 128, saturates, while −128.5, which
rounds to −128, does not) and for ±Inf; `nan` where the input is a NaN (then `saturated` is
clear).

`from_uint(n, width)` and `from_int(v, width)` convert integers of 1..32 bits (unsigned, and
two's complement) with one rounding; zero converts to +0; |n| >= 65520 gives ±Inf.

`fma(a, b, c)` is fused: one rounding of the exact a·b + c. `add(a, b)` is the same exact sum with
the product term replaced by `a` (one rounding of the exact a + b); `mul(a, b)` one rounding of
the exact product.

Errors. Patterns must be integer arrays in [0, 0xFFFF] (`check_bits`); floats are refused. Bad
inputs raise TypeError or ValueError naming the argument; nothing wraps silently.
"""

import numpy as np

from golden.checks import ranged as _ranged

__all__ = ["EXP_BITS", "FRAC_BITS", "BIAS", "EXP_FIELD_MAX", "SCALE", "SIG_BITS",
           "POS_INF", "NEG_INF", "NAN", "ONE", "MAX_FINITE", "SIGN_BIT",
           "check_bits", "fields", "decode", "nonfinite", "isnan", "isinf",
           "round_pack", "mul", "add", "fma", "neg", "from_uint", "from_int", "to_int8",
           "encode", "to_float"]

EXP_BITS = 5
FRAC_BITS = 10
BIAS = 15
EXP_FIELD_MAX = (1 << EXP_BITS) - 1     # 31: infinities and NaNs
SCALE = BIAS + FRAC_BITS                # 25: |v| = sig · 2^(exp − 25)
SIG_BITS = FRAC_BITS + 1                # 11: significand precision p, hidden bit included

SIGN_BIT = 1 << 15
POS_INF = EXP_FIELD_MAX << FRAC_BITS    # 0x7C00
NEG_INF = SIGN_BIT | POS_INF            # 0xFC00
NAN = POS_INF | (1 << (FRAC_BITS - 1))  # 0x7E00, the canonical quiet NaN of every result
ONE = BIAS << FRAC_BITS                 # 0x3C00
MAX_FINITE = POS_INF - 1                # 0x7BFF = 65504

# `round_pack` takes significands below 2^SIG_LIMIT_BITS: the rounding shift is clamped to 62
# (a wider numpy shift is undefined), and a clamped shift of 62 must still see the remainder below
# half an ulp, i.e. sig < 2^61.
SIG_LIMIT_BITS = 61
# |exp| bound for `round_pack`: keeps exp + bit length and the packed field far inside int64.
EXP_LIMIT = 1 << 20
# `fma` places the addend at most FMA_WINDOW bits above the product's LSB; a product further
# below is shifted right into a sticky bit. Any value in [24, 49] is exact (see `_sum_terms`).
FMA_WINDOW = 24


# -- patterns and fields ---------------------------------------------------------------------------

def check_bits(name, value):
    """`value` as an int64 array of binary16 patterns (integers in [0, 0xFFFF]).

    Floats are refused rather than converted: pass `a.view(np.uint16)` for an np.float16 array.
    """
    a = np.asarray(value)
    if a.dtype == bool or a.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must be binary16 bit patterns (integers), not {a.dtype}; "
                        f"use .view(np.uint16) on float16 data")
    if a.size and (a.min() < 0 or a.max() > 0xFFFF):
        bad = a[(a < 0) | (a > 0xFFFF)].flat[0]
        raise ValueError(f"`{name}` must hold 16-bit patterns in [0, 65535], found {bad}")
    return a.astype(np.int64)


def fields(bits, name="bits"):
    """(sign, exponent field, fraction) of each pattern, as int64 arrays."""
    b = check_bits(name, bits)
    return b >> 15, (b >> FRAC_BITS) & EXP_FIELD_MAX, b & ((1 << FRAC_BITS) - 1)


def decode(bits, name="bits"):
    """(sign, exp, sig) with |v| = sig · 2^(exp − SCALE) for every finite pattern.

    `exp` is the exponent field with subnormals (and zeros) counted as 1, `sig` the 11-bit
    significand with the hidden bit of normal numbers: sig < 2^11, and sig >= 2^10 exactly for
    normal numbers. For Inf/NaN patterns (see `nonfinite`) the result has no meaning.
    """
    sign, field, frac = fields(bits, name)
    normal = field >= 1
    return sign, np.maximum(field, 1), frac | (normal.astype(np.int64) << FRAC_BITS)


def nonfinite(bits, name="bits"):
    """True where the pattern is an infinity or a NaN (exponent field all ones)."""
    _, field, _ = fields(bits, name)
    return field == EXP_FIELD_MAX


def isnan(bits, name="bits"):
    """True where the pattern is a NaN (any sign and payload)."""
    return (check_bits(name, bits) & ~SIGN_BIT) > POS_INF


def isinf(bits, name="bits"):
    """True where the pattern is +Inf or −Inf."""
    return (check_bits(name, bits) & ~SIGN_BIT) == POS_INF


def _width(name, width):
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, not {type(width).__name__} {width!r}")
    if not 1 <= int(width) <= 32:
        raise ValueError(f"`{name}` must be in [1, 32], not {int(width)}")
    return int(width)


def _fits(name, a, lo, hi):
    """Internal width guard: an intermediate outside its proven range is a bug, never wrapped."""
    if a.size and (a.min() < lo or a.max() > hi):
        raise AssertionError(f"{name} outside its proven range [{lo}, {hi}]: {a.min()}..{a.max()}")
    return a


# -- the one rounding ------------------------------------------------------------------------------

def _bit_length(x):
    """Number of significant bits of each x in [0, 2^62] (0 for 0), by halving, no floats."""
    n = np.zeros(x.shape, dtype=np.int64)
    y = x
    for s in (32, 16, 8, 4, 2, 1):
        big = y >= (np.int64(1) << s)
        n = n + np.where(big, s, 0)
        y = np.where(big, y >> s, y)
    return n + (y > 0)


def _shift_round(x, r, sticky):
    """round((x + δ) / 2^r) to nearest, ties to even, for x in [0, 2^61), r >= 0, 0 <= δ < 1
    with δ > 0 exactly where `sticky`; needs r >= 1 wherever `sticky` (checked by the callers).

    The discarded part is rem + δ with rem = x mod 2^r: above half an ulp if rem > half, or rem =
    half and δ > 0; a tie only if rem = half and δ = 0; below otherwise (rem <= half − 1).
    Shifts are clamped to 62: for r >= 62 the quotient is 0 and rem = x < 2^61 = half, below.
    """
    rc = np.minimum(r, 62)
    q = x >> rc
    rem = x - (q << rc)
    half = np.where(rc > 0, np.int64(1) << np.maximum(rc - 1, 0), 0)
    up = (rc > 0) & ((rem > half) | ((rem == half) & (sticky | ((q & 1) == 1))))
    return q + up


def round_pack(sign, sig, exp, sticky=False):
    """The binary16 pattern nearest (ties to even) to (−1)^sign · (sig + δ) · 2^(exp − SCALE).

    `sig` is an exact integer significand in [0, 2^61), `exp` an integer in [−2^20, 2^20] (any
    scale: it need not be a valid exponent field), 0 <= δ < 1 with δ > 0 exactly where `sticky`
    (bits below sig's LSB that were not kept, all that rounding needs to know of them). Wherever
    `sticky` is set the result must drop at least one bit of sig (sig >= 2^11 or a subnormal
    result), else δ could not be compared with half an ulp: ValueError.

    The result's ulp is 2^(e − SCALE) with e = max(exp + L − 11, 1), L = bit length of sig: the
    normal exponent field of the leading bit, or 1 (the subnormal ulp 2^−24). So r = e − exp bits
    are rounded away (r < 0: shifted in, exact). The rounded significand m (<= 2^11) is packed as
    ((e − 1) << 10) + m: a normal m in [2^10, 2^11) supplies the hidden bit that makes the field
    e, a subnormal m < 2^10 leaves field 0, and a carry to m = 2^11 (also from the largest
    subnormal up to 2^−14) moves the field up by one. A packed magnitude >= 0x7C00 is an
    overflow: ±Inf. sig = 0 without sticky is an exact zero with the given sign: callers choose
    the sign of exact zeros (IEEE's rules differ per operation); rounded-to-zero results keep it.
    """
    sign = _ranged("sign", sign, 0, 1)
    sig = _ranged("sig", sig, 0, (1 << SIG_LIMIT_BITS) - 1)
    exp = _ranged("exp", exp, -EXP_LIMIT, EXP_LIMIT)
    sticky = _ranged("sticky", sticky, 0, 1) != 0
    sign, sig, exp, sticky = np.broadcast_arrays(sign, sig, exp, sticky)
    e = np.maximum(exp + _bit_length(sig) - SIG_BITS, 1)
    r = e - exp                                              # >= −11 (sig = 0: L = 0)
    if np.any(sticky & (r < 1)):
        raise ValueError("`sticky` is set where the result keeps every bit of `sig`: give sig at "
                         "least 12 significant bits (or a subnormal result) so δ can be rounded")
    m = np.where(r >= 0, _shift_round(sig, np.maximum(r, 0), sticky),
                 sig << np.maximum(-r, 0))
    _fits("rounded significand", m, 0, 1 << SIG_BITS)
    mag = ((np.minimum(e, 2 * EXP_FIELD_MAX) - 1) << FRAC_BITS) + m    # e clamped: overflow anyway
    mag = np.where(m == 0, 0, np.minimum(mag, POS_INF))
    return (sign << 15) | mag


# -- operations ------------------------------------------------------------------------------------

def _sum_terms(s_p, e_p, p, s_c, e_c, c):
    """Exact (sign, sig, exp, sticky) of (−1)^s_p·p·2^(e_p − 25) + (−1)^s_c·c·2^(e_c − 25), the
    alignment of `fma` (p a product of significands) and of `add` (p a significand).

    Ranges: p < 2^22 and e_p in [−23, 35] (fma: e_a + e_b − 25 with fields 1..30; add: p < 2^11,
    e_p in [1, 30]); c < 2^11, e_c in [1, 30]. With W = FMA_WINDOW the common exponent is
    e0 = max(min(e_p, e_c), e_c − W), so the addend moves up by e_c − e0 <= W bits and
    (i)   e_p >= e_c: e0 = e_c, p moves up by e_p − e_c <= 34: |sum| < 2^22·2^34 + 2^11 < 2^57;
    (ii)  e_c − W <= e_p < e_c: e0 = e_p, c moves up by <= W: |sum| < 2^(11+W) + 2^22;
    (iii) e_p < e_c − W: e0 = e_c − W, p moves down by d = e0 − e_p > 0 and its lost bits become
          the sticky bit; c·2^W >= 2^W > 2^22 > p >> d, so c's sign wins, |sum| < 2^(11+W) + 2^22,
          and a difference c·2^W − (p >> d) − δ' (δ' the lost part, in (0, 1) when sticky) is
          written as sig = c·2^W − (p >> d) − 1 plus the fraction 1 − δ' > 0: still sticky.
    Cases (i) and (ii) are exact. All sums stay below 2^(11+W) + 2^57 < 2^61 (round_pack's limit)
    for W <= 49, and in case (iii) sig >= 2^W − 2^22 − 1 >= 2^23 for W >= 24, so round_pack drops
    at least 12 bits, as a sticky bit needs. An exact zero (only in (i), (ii)) gets +0 here; the
    callers apply the IEEE sign rule.
    In case (iii) |a·b| < 2^22·2^(e_c − W − 1 − 25) = ulp(c)·2^(21 − W) <= ulp(c)/8, so with
    W = 24 the rounded result is c itself and the sticky bit never changes a result: it keeps
    this stage exact as a stage (a hardware alignment with a narrower window needs it), and the
    tests check it on the stage's own output.
    """
    _fits("product significand", p, 0, (1 << 2 * SIG_BITS) - 1)
    _fits("product exponent", e_p, 2 - SCALE, 2 * (EXP_FIELD_MAX - 1) - SCALE)
    e0 = np.maximum(np.minimum(e_p, e_c), e_c - FMA_WINDOW)
    d = e0 - e_p                                               # < 0: p moves up; > 0: p moves down
    dn = np.clip(d, 0, 62)
    p_al = np.where(d < 0, p << np.maximum(-d, 0), p >> dn)
    sticky = (d > 0) & ((p_al << dn) != p)
    c_al = c << (e_c - e0)
    diff = np.where(s_p == s_c, c_al + p_al, c_al - p_al - sticky)
    _fits("aligned sum", np.abs(diff), 0, (1 << SIG_LIMIT_BITS) - 1)
    sign = np.where(diff < 0, s_p, s_c)        # equal signs: s_c = s_p; else the larger term's
    return np.where(diff == 0, 0, sign), np.abs(diff), e0, sticky


def _finite(bits):
    """Patterns with Inf/NaN replaced by a zero of the same sign: the finite path's operand (its
    result is overwritten by the special-value path)."""
    return np.where((bits & POS_INF) == POS_INF, bits & SIGN_BIT, bits)


def _inf_or_nan(term_inf, term_sign, term_nan, c):
    """Special-value result of `term + c` where the term (a, or a·b) is Inf (`term_inf`, sign
    `term_sign`) or NaN/invalid (`term_nan`): (mask, pattern) of the lanes the finite path must
    not decide."""
    c_nan = isnan(c)
    c_inf = isinf(c)
    c_sign = c >> 15
    nan = term_nan | c_nan | (term_inf & c_inf & (term_sign != c_sign))
    special = nan | term_inf | c_inf
    value = np.where(nan, NAN, np.where(term_inf, (term_sign << 15) | POS_INF, c))
    return special, value


def mul(a, b):
    """a·b rounded once (nearest, ties to even). The exact product of two 11-bit significands
    has < 2^22 and exponent field sum − 25 in [−23, 35]: round_pack takes it directly."""
    a, b = np.broadcast_arrays(check_bits("a", a), check_bits("b", b))
    s = (a ^ b) >> 15
    _, ea, ma = decode(_finite(a))
    _, eb, mb = decode(_finite(b))
    out = round_pack(s, ma * mb, ea + eb - SCALE)
    zero_a = (a & ~SIGN_BIT) == 0
    zero_b = (b & ~SIGN_BIT) == 0
    nan = isnan(a) | isnan(b) | (isinf(a) & zero_b) | (isinf(b) & zero_a)
    inf = isinf(a) | isinf(b)
    return np.where(nan, NAN, np.where(inf, (s << 15) | POS_INF, out))


def add(a, b):
    """a + b rounded once: the `fma` alignment with `a` in place of the product."""
    a, b = np.broadcast_arrays(check_bits("a", a), check_bits("b", b))
    sa, ea, ma = decode(_finite(a))
    sb, eb, mb = decode(_finite(b))
    sign, sig, e0, sticky = _sum_terms(sa, ea, ma, sb, eb, mb)
    sign = np.where((sig == 0) & ~sticky, sa & sb, sign)      # exact zero: −0 only for −0 + −0
    out = round_pack(sign, sig, e0, sticky)
    special, value = _inf_or_nan(isinf(a), a >> 15, isnan(a), b)
    return np.where(special, value, out)


def fma(a, b, c):
    """a·b + c with one rounding of the exact value (see `_sum_terms` for the exact alignment)."""
    a, b, c = np.broadcast_arrays(check_bits("a", a), check_bits("b", b), check_bits("c", c))
    s_p = (a ^ b) >> 15
    _, ea, ma = decode(_finite(a))
    _, eb, mb = decode(_finite(b))
    sc, ec, mc = decode(_finite(c))
    sign, sig, e0, sticky = _sum_terms(s_p, ea + eb - SCALE, ma * mb, sc, ec, mc)
    sign = np.where((sig == 0) & ~sticky, s_p & sc, sign)    # exact zero: −0 only for −0 + −0
    out = round_pack(sign, sig, e0, sticky)
    zero_a = (a & ~SIGN_BIT) == 0
    zero_b = (b & ~SIGN_BIT) == 0
    p_nan = isnan(a) | isnan(b) | (isinf(a) & zero_b) | (isinf(b) & zero_a)
    special, value = _inf_or_nan(isinf(a) | isinf(b), s_p, p_nan, c)
    return np.where(special, value, out)


def neg(a):
    """−a as the IEEE `negate`: the sign bit flipped, NaNs included (a bit operation)."""
    return check_bits("a", a) ^ SIGN_BIT


# -- conversions -----------------------------------------------------------------------------------

def from_uint(n, width):
    """Unsigned `width`-bit integers (width 1..32) to binary16, rounded once; >= 65520 is +Inf."""
    width = _width("width", width)
    n = _ranged("n", n, 0, (1 << width) - 1)
    return round_pack(np.zeros_like(n), n, SCALE)


def from_int(v, width):
    """Two's complement `width`-bit integers (width 1..32) to binary16, rounded once; 0 is +0."""
    width = _width("width", width)
    v = _ranged("v", v, -(1 << (width - 1)), (1 << (width - 1)) - 1)
    return round_pack((v < 0).astype(np.int64), np.abs(v), SCALE)


def to_int8(a, return_flags=False):
    """Round to the nearest integer (ties to even), saturate to [−128, 127]; ±Inf saturate, NaN
    gives 0. With `return_flags`: (values, saturated, nan), see the module docstring.

    |v| = sig · 2^(exp − 25): exp >= 25 is an integer below 2^11·2^5 (shifted left, exact), else
    exp − 25 in [−24, −1] bits are rounded away.
    """
    a = check_bits("a", a)
    sign, exp, sig = decode(_finite(a))
    k = exp - SCALE
    n = np.where(k >= 0, sig << np.maximum(k, 0),
                 _shift_round(sig, np.maximum(-k, 0), np.zeros(a.shape, dtype=bool)))
    v = _fits("rounded integer", np.where(sign == 1, -n, n), -(1 << 16), 1 << 16)
    nan = isnan(a)
    inf = isinf(a)
    v = np.where(inf, np.where(sign == 1, -128, 127), v)    # decode(_finite) kept Inf's sign
    saturated = ((v < -128) | (v > 127) | inf) & ~nan
    out = np.where(nan, 0, np.clip(v, -128, 127))
    return (out, saturated, nan) if return_flags else out


def encode(x):
    """Real numbers (float64, or anything numpy casts to it) to binary16 patterns, nearest, ties
    to even, overflow to ±Inf, every NaN to 0x7E00. The one place a float conversion rounds:
    numpy's float64 → float16 cast is a single correctly rounded conversion."""
    a = np.asarray(x)
    if a.dtype == bool or a.dtype.kind not in "iuf":
        raise TypeError(f"`x` must be real numbers, not {a.dtype}")
    with np.errstate(over="ignore"):
        h = a.astype(np.float64).astype(np.float16)
    bits = h.view(np.uint16).astype(np.int64)
    return np.where(np.isnan(h), NAN, bits)


def to_float(bits):
    """binary16 patterns to float64, exactly (±Inf and NaN as float)."""
    b = check_bits("bits", bits)
    sign, exp, sig = decode(_finite(b))
    mag = np.ldexp(sig.astype(np.float64), (exp - SCALE).astype(np.int32))   # exact: 11 bits
    mag = np.where(isinf(b), np.inf, np.where(isnan(b), np.nan, mag))
    return np.where(sign == 1, -mag, mag)
