"""IEEE 754 binary16, exactly, on integers: bit patterns in, fields and significands out.

Pure NumPy. A binary16 pattern is `sign (1) | exponent field (5) | fraction (10)`. No float
arithmetic is used anywhere: every value a finite pattern encodes is `(−1)^sign · sig · 2^(exp −
SCALE)` with the integers returned by `decode`.
"""

import numpy as np

__all__ = ["EXP_BITS", "FRAC_BITS", "BIAS", "EXP_FIELD_MAX", "SCALE", "check_bits", "fields",
           "decode", "nonfinite"]

EXP_BITS = 5
FRAC_BITS = 10
BIAS = 15
EXP_FIELD_MAX = (1 << EXP_BITS) - 1     # 31: infinities and NaNs
SCALE = BIAS + FRAC_BITS                # 25: |v| = sig · 2^(exp − 25)


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
