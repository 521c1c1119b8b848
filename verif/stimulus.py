"""binary16 operand classes shared by the cocotb benches and the Python-free vectors
(`verif/vectors.py`), so both draw the same stimulus from the same generator calls."""

import numpy as np

__all__ = ["ESSOP_CLASSES", "FP16_CLASSES", "FP16_SPECIALS", "essop_operands", "fp16_operands"]

ESSOP_CLASSES = ("random", "zeros", "subnormal", "largest", "one_nonzero", "wide_range")
FP16_CLASSES = ("random", "subnormal", "overflow", "ties", "special")
# FP16 parameter patterns outside the useful range (zeros, subnormals, the largest, Inf, NaN);
# from index 5 on: the largest, Inf and NaN
FP16_SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                          0x7E00, 0x7C01, 0xFE00])


def essop_operands(rng, count, n, kind="random"):
    """`count` vectors of `n` binary16 patterns of an ESSOP input class, random signs."""
    if kind == "random":  # a block exponent per vector, elements up to 12 octaves below it
        top = rng.integers(1, 31, (count, 1))
        field = np.clip(top - rng.geometric(0.35, (count, n)) + 1, 0, 30)
        frac = rng.integers(0, 1 << 10, (count, n))
        v = field << 10 | frac
        v = np.where(rng.random((count, n)) < 0.08, 0, v)
    elif kind == "zeros":
        v = np.zeros((count, n), np.int64)
    elif kind == "subnormal":
        v = rng.integers(0, 1 << 10, (count, n))
    elif kind == "largest":
        v = np.where(rng.random((count, n)) < 0.5, 0x7BFF, 0x7BFF - rng.integers(0, 4, (count, n)))
    elif kind == "one_nonzero":
        v = np.zeros((count, n), np.int64)
        v[np.arange(count), rng.integers(0, n, count)] = rng.integers(1, 0x7C00, count)
    elif kind == "wide_range":  # one large element, the rest far below it: q mostly 0 or 1
        v = rng.integers(0, 0x0800, (count, n))
        v[np.arange(count), rng.integers(0, n, count)] = rng.integers(0x7000, 0x7C00, count)
    else:
        raise ValueError(f"unknown ESSOP operand class {kind!r}; classes: {', '.join(ESSOP_CLASSES)}")
    return v | (rng.integers(0, 2, (count, n)) << 15)


def fp16_operands(rng, count, n, kind="random"):
    """`count` vectors of `n` binary16 patterns of an FP16-multiplier operand class."""
    sign = rng.integers(0, 2, (count, n)) << 15
    if kind == "random":
        v = rng.integers(0, 0x7C00, (count, n))
    elif kind == "subnormal":     # products below 2^−14: subnormal and underflowing results
        v = rng.integers(0x0001, 0x2000, (count, n))
    elif kind == "overflow":      # products near and beyond 65504
        v = rng.integers(0x5800, 0x7C00, (count, n))
    elif kind == "ties":          # short significands: exact products, some exact ties
        v = (rng.integers(1, 31, (count, n)) << 10) | (rng.integers(0, 32, (count, n)) << 5)
    elif kind == "special":
        v = rng.choice(np.array([0, 0x7C00, 0x7E00, 0x7C01, 0x0001, 0x7BFF, 0x3C00]), (count, n))
    else:
        raise ValueError(f"unknown FP16 operand class {kind!r}; classes: {', '.join(FP16_CLASSES)}")
    return v | sign
