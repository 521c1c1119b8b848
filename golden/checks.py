"""Input checks shared by the golden models: integer arrays, exact ranges, errors that name
the field. NaN, infinities and fractions are errors, never rounded; nothing wraps silently."""

import numpy as np

__all__ = ["ints", "check_range", "ranged"]


def ints(name, value):
    """`value` as an int64 array; NaN, infinities and fractions are errors, never rounded."""
    a = np.asarray(value)
    if a.dtype == bool:
        return a.astype(np.int64)
    if a.dtype.kind == "i":
        return a.astype(np.int64)
    if a.dtype.kind == "u":
        if a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"`{name}` holds {a.max()}, beyond int64")
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` holds NaN or infinity")
        if not np.all(a == np.round(a)):
            raise ValueError(f"`{name}` holds non-integer values")
        return a.astype(np.int64)
    raise TypeError(f"`{name}` must be integers, not {a.dtype}")


def check_range(name, a, lo, hi):
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)].flat[0]
        raise ValueError(f"`{name}` must be in [{lo}, {hi}], found {bad}")
    return a


def ranged(name, value, lo, hi):
    return check_range(name, ints(name, value), lo, hi)
