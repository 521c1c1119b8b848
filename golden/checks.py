"""Input checks shared by the golden models: integer arrays, exact ranges, errors that name
the field. NaN, infinities and fractions are errors, never rounded; nothing wraps silently."""

import numpy as np

__all__ = ["ints", "check_range", "ranged", "join_word", "split_word"]


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


def join_word(fields, values):
    """A register word from `values[name]` (checked integers) of `fields` [(name, bits)], least
    significant first; each value is taken modulo 2^bits (two's complement for signed fields)."""
    word, pos = 0, 0
    for name, bits in fields:
        word |= (int(values[name]) & ((1 << bits) - 1)) << pos
        pos += bits
    return word


def split_word(fields, word, word_bits):
    """Inverse of `join_word`: {name: unsigned field value}. `word` must be an integer (not a
    bool) in [0, 2^word_bits)."""
    if isinstance(word, (bool, np.bool_)) or not isinstance(word, (int, np.integer)):
        raise TypeError(f"a parameter word must be an integer, not {type(word).__name__} {word!r}")
    word = int(word)
    if not 0 <= word < (1 << word_bits):
        raise ValueError(f"parameter word must be in [0, 2^{word_bits}), not {word}")
    out, pos = {}, 0
    for name, bits in fields:
        out[name] = (word >> pos) & ((1 << bits) - 1)
        pos += bits
    return out
