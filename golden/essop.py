"""Golden model of ESSOP, the stochastic outer-product engine (spec: design/essop.md).

One function per hardware step, exact on np.int64; the unit functions compose them. Step 1
`normalise`, step 2 `lfsr_leap` (clock by clock: `random_sequence`), step 3 `bitstreams`, step 4
`accumulate`, step 5 `exponent`; `outer_product` is one product, `product_stream` a sequence of
them as the `i` stream delivers them, `tiled_outer_product` a layer larger than the array;
`readout` is the `o` stream of a product (`rows_per_beat` rows per beat). Accumulation (K
products per read-out, `acc_max` > 1): `group_add` is the counters' group step, `accumulated_stream`
a stream of products with `acc` flags, `group_flags` the driver's choice of those flags.
`outer_product_fast` is the statistical stand-in for training runs; `decode` turns (C, E) into
ΔW.

Conventions (the RTL matches them bit for bit)
----------------------------------------------
LFSR. An n-bit Fibonacci LFSR (n = `lfsr_width`) with polynomial p(x) = x^n + c_{n−1}·x^{n−1} +
… + c_1·x + 1, written as an int with bit k = c_k. The state is an int, bit 0 the LSB. One step
shifts left: bit n−1 (the MSB) is the output bit and leaves, every other bit moves up one place,
and the new bit 0 is the feedback f = XOR of state bit n−1−k over every k < n with c_k = 1
(`feedback_taps`). Read as a sequence a_0, a_1, …: the state holds the next n output bits, MSB
first, and a_{j+n} = Σ_k c_k·a_{j+k} (mod 2), the recurrence of p.

Leap. One clock advances `mag_bits` = m steps through the XOR network `leap_matrix(cfg, poly, m)`.
The clock's random number r_t is the m bits shifted out during that clock, the first one as MSB:
the top m bits of the state at the start of the clock, `state >> (n − m)`. In hardware r_t is a
slice of the state register. Consecutive r_t are consecutive, disjoint m-bit windows of the
sequence (fresh bits, since n >= m).

Order of use. Clock t = 0 … BL−1 of a product takes rx_t and rd_t from the states s_t, then every
LFSR leaps once; a product leaves each LFSR BL leaps (BL·m steps) further on, and the next product
continues from there. `rng = "shared"`: one x LFSR (polynomial `cfg.poly_x`) feeds rx_t to all
`rows` converters, one δ LFSR (`cfg.poly_d`) feeds rd_t to all `cols` converters.
`rng = "per_converter"`: x converter i has its own LFSR with `poly_x` (δ converter j: `poly_d`),
and its state is an array axis of length `rows` (`cols`). `reseed` loads x converter i with
A^(i·stride_x)·seed_x, the state i·stride_x steps further along the same sequence (stride_x =
(2^n − 1) // rows, `cfg.seed_stride_x`; δ alike): a fixed invertible XOR network per converter,
so the seeds are non-zero and spread evenly over the period.

Error products. Inf or NaN anywhere in x or δ: C = 0, E = 0, error = 1, and no LFSR advances, so
the products that follow are exactly those of a stream without the bad beat.

Other choices the spec leaves open, fixed here: zeros and subnormals both count as exponent field
1 in E_max, so an all-zero vector has e_v = −13 and q = 0 (all-zero counts, no special case, the
LFSRs advance as usual); the sign of a zero (−0) is kept but cannot matter, as its q is 0.

Statistics. With uniformly random non-zero seeds, each r_t is uniform over the 2^n − 1 non-zero
states' top bits, so P(r_t < q) = (q·2^(n−m) − 1)/(2^n − 1) for q >= 1, i.e. q/2^m − (1 −
q/2^m)/(2^n − 1): unbiased up to that 2^−n deficit. `outer_product_fast` draws per unit
C = ±Binomial(BL, qx·qd/2^(2m)): the same per-unit mean as the exact mode (up to the deficit) and
the binomial variance BL·p·(1−p), which the exact mode matches only approximately: two m-bit
windows r_t, r_t' of an n = 2m bit LFSR are not always independent, and over all seeds the
`paper` preset's variance lies within 6.6 % of binomial on the statistical tests' operands (computed
exactly in tests/test_golden_essop.py). Per unit these moments are the same in both rng modes (a
unit sees one x and one δ converter, each with a uniformly distributed state). The fast mode does
not reproduce the correlations between units that share a row or column random number: its units
are independent.

Groups (`acc_max` = K > 1). Each product carries a flag `acc`: 1 adds its counts into the
counters and keeps them for the next product, 0 ends the group and reads the sum out (one
read-out of `rows` / R beats per group). A group shares one exponent: the E of its first counted
product. A later product whose E differs is not counted (no counts, no LFSR step, like a
rejected product) and makes the group an error group; so does a rejected product in it, and a
group that reaches K products with `acc` = 1 on the K-th (it ends there: the counters hold
|C| <= K·bl_max only). An error group reads out E = 0, error = 1 and the counts of its counted
products (to be discarded: the flag, never the counts, says what happened). A mismatch and an
over-long group also raise the sticky `reg_error` (`Group.flagged`). With K = 1 every group is
one product and this is the single-product stream above.

Batches. Inputs may carry leading batch axes (independent products, e.g. one per seed), never a
time axis: a sequence of products is `product_stream`, which threads the LFSR state.
"""

import functools
from typing import NamedTuple

import numpy as np

from golden import fp16
from golden.checks import check_range as _check_range
from golden.checks import ranged as _ranged
from hdl.config import ESSOPConfig


__all__ = [
    "Normalised", "Product", "TiledProduct",
    "feedback_taps", "lfsr_step", "leap_matrix", "gf2_apply", "lfsr_leap", "random_sequence",
    "converter_seeds", "reseed", "check_state", "check_registers",
    "normalise", "bitstreams", "accumulate", "exponent",
    "outer_product", "product_stream", "tile_beats", "tiled_outer_product", "tile_map",
    "outer_product_fast", "quantised_product", "decode", "readout",
    "Group", "group_start", "group_admits", "group_add", "accumulated_stream", "product_exponents",
    "group_flags",
]


# -- records ---------------------------------------------------------------------------------------

class Normalised(NamedTuple):
    """Step 1 of one vector: sign bits, `mag_bits` magnitudes q, block exponent e_v, error."""

    sign: np.ndarray
    q: np.ndarray
    e: np.ndarray
    error: np.ndarray


class Product(NamedTuple):
    """One product (or a batch or stream of them): counts C (…, rows, cols), exponent E, error
    flag, and the LFSR states after it (None from `outer_product_fast`)."""

    c: np.ndarray
    exp: np.ndarray
    error: np.ndarray
    state_x: np.ndarray
    state_d: np.ndarray


class TiledProduct(NamedTuple):
    """A layer's product: counts C (M, N), and per tile (row tile, col tile) E and error."""

    c: np.ndarray
    exp: np.ndarray
    error: np.ndarray
    state_x: np.ndarray
    state_d: np.ndarray


# -- checks ----------------------------------------------------------------------------------------

def _register(name, value, lo, hi):
    """A scalar register value as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, not {type(value).__name__} {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"`{name}` must be in [{lo}, {hi}], not {int(value)}")
    return int(value)


def check_registers(cfg: ESSOPConfig, log2_bl, lr_shift):
    """The `log2_bl` and `lr_shift` registers as ints, validated against `cfg`."""
    return (_register("log2_bl", log2_bl, 0, cfg.log2_bl_max),
            _register("lr_shift", lr_shift, 0, cfg.lr_shift_max))


def _poly(cfg: ESSOPConfig, poly):
    if isinstance(poly, (bool, np.bool_)) or not isinstance(poly, (int, np.integer)):
        raise TypeError(f"`poly` must be an int, not {type(poly).__name__} {poly!r}")
    poly = int(poly)
    n = cfg.lfsr_width
    if poly >> n != 1 or not poly & 1:
        raise ValueError(f"`poly` must have degree `lfsr_width` ({n}) and a constant term "
                         f"(bits {n} and 0 set), not {poly:#x}")
    return poly


def _state(cfg: ESSOPConfig, state, name="state"):
    """LFSR states for the raw step functions: any n-bit value (0 is a fixed point, allowed
    here; registers and products refuse it)."""
    return _ranged(name, state, 0, cfg.lfsr_max)


def check_state(cfg: ESSOPConfig, name, state, count=1):
    """LFSR state(s) of one operand: non-zero n-bit values; in per_converter mode with a last axis
    of `count` converters (or 1, broadcast)."""
    s = _ranged(name, state, 1, cfg.lfsr_max)
    if cfg.per_converter and (s.ndim == 0 or s.shape[-1] not in (1, count)):
        raise ValueError(f"`{name}` needs a last axis of {count} converter states with rng "
                         f"'per_converter', not shape {s.shape}")
    return s


def _batch_of(cfg: ESSOPConfig, state):
    return state.shape[:-1] if cfg.per_converter else state.shape


# -- step 2: random numbers ------------------------------------------------------------------------

def feedback_taps(cfg: ESSOPConfig, poly):
    """Mask of the state bits XORed into the feedback: bit n−1−k for every c_k = 1, k < n."""
    poly = _poly(cfg, poly)
    n = cfg.lfsr_width
    return sum(1 << (n - 1 - k) for k in range(n) if poly >> k & 1)


def _parity(a):
    return np.bitwise_count(a).astype(np.int64) & 1


def lfsr_step(cfg: ESSOPConfig, state, poly):
    """One Fibonacci step of every state: (new state, output bit = the old MSB)."""
    s = _state(cfg, state)
    taps = feedback_taps(cfg, poly)
    n = cfg.lfsr_width
    return ((s << 1) & cfg.lfsr_max) | _parity(s & taps), s >> (n - 1)


def _step_matrix(n, poly):
    """A[i, j] = 1 when new state bit i takes old state bit j."""
    a = np.zeros((n, n), dtype=np.int64)
    a[np.arange(1, n), np.arange(n - 1)] = 1
    for k in range(n):
        if poly >> k & 1:
            a[0, n - 1 - k] = 1
    return a


def _byte_tables(matrix):
    """Per 8 input bits, the XOR of the images of every input value: the matrix applied to a
    state is the XOR of one table entry per byte (GF(2) linearity)."""
    m = np.asarray(matrix, dtype=np.int64)
    n_out, n_in = m.shape
    images = (m << np.arange(n_out)[:, None]).sum(axis=0)   # image of input bit j, as an int
    tables = []
    for lo in range(0, n_in, 8):
        chunk = images[lo:lo + 8]
        v = np.arange(1 << chunk.size)
        bits = (v[:, None] >> np.arange(chunk.size)) & 1
        tables.append((lo, chunk.size, np.bitwise_xor.reduce(bits * chunk, axis=1)))
    return tables


@functools.lru_cache(maxsize=256)
def _leap(n, poly, k):
    """A^k as a read-only 0/1 matrix, and its byte tables."""
    result = np.eye(n, dtype=np.int64)
    base = _step_matrix(n, poly)
    while k:
        if k & 1:
            result = (result @ base) & 1
        base = (base @ base) & 1
        k >>= 1
    matrix = result.astype(np.uint8)
    matrix.setflags(write=False)
    return matrix, _byte_tables(matrix)


def _apply_tables(tables, s):
    out = np.zeros(s.shape, dtype=np.int64)
    for lo, width, table in tables:
        out ^= table[(s >> lo) & ((1 << width) - 1)]
    return out


def leap_matrix(cfg: ESSOPConfig, poly, k):
    """The k-step state transition A^k over GF(2), an (n, n) uint8 matrix (read-only): new state
    bit i is the XOR of the old state bits j with M[i, j] = 1. With k = `mag_bits` it is the
    leap-forward network of one clock."""
    poly = _poly(cfg, poly)
    k = _register("k", k, 0, np.iinfo(np.int64).max)
    return _leap(cfg.lfsr_width, poly, k)[0]


def gf2_apply(matrix, state):
    """Every state (an int array, bit 0 = LSB) multiplied by a 0/1 matrix over GF(2)."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.size == 0 or not np.isin(m, (0, 1)).all():
        raise ValueError(f"`matrix` must be a 2-D 0/1 array, not {m.shape} {m.dtype}")
    s = _ranged("state", state, 0, (1 << m.shape[1]) - 1)
    return _apply_tables(_byte_tables(m), s)


def lfsr_leap(cfg: ESSOPConfig, state, poly):
    """One clock of every LFSR: `mag_bits` steps at once. Returns (new state, r_t) with r_t the
    `mag_bits` bits shifted out, first one as MSB: the top bits of the old state."""
    s = _state(cfg, state)
    poly = _poly(cfg, poly)
    tables = _leap(cfg.lfsr_width, poly, cfg.mag_bits)[1]
    return _apply_tables(tables, s), s >> (cfg.lfsr_width - cfg.mag_bits)


def random_sequence(cfg: ESSOPConfig, state, poly, log2_bl):
    """BL = 2^log2_bl clocks of every LFSR: (r of shape state.shape + (BL,), state after)."""
    s = _state(cfg, state)
    poly = _poly(cfg, poly)
    log2_bl = _register("log2_bl", log2_bl, 0, cfg.log2_bl_max)
    tables = _leap(cfg.lfsr_width, poly, cfg.mag_bits)[1]
    r = np.empty(s.shape + (1 << log2_bl,), dtype=np.int64)
    shift = cfg.lfsr_width - cfg.mag_bits
    for t in range(r.shape[-1]):  # true sequential state: the LFSR
        r[..., t] = s >> shift
        s = _apply_tables(tables, s)
    return r, s


def converter_seeds(cfg: ESSOPConfig, seed, poly, count, stride):
    """States of `count` converters loaded from one seed: converter i gets A^(i·stride)·seed.
    Shape seed.shape + (count,)."""
    s = _state(cfg, seed, "seed")
    poly = _poly(cfg, poly)
    count = _register("count", count, 1, cfg.lfsr_max)
    stride = _register("stride", stride, 0, cfg.lfsr_max)
    tables = _leap(cfg.lfsr_width, poly, stride)[1]
    out = np.empty(s.shape + (count,), dtype=np.int64)
    for i in range(count):
        out[..., i] = s
        s = _apply_tables(tables, s)
    return out


def reseed(cfg: ESSOPConfig, seed_x, seed_d):
    """The `reseed` command: LFSR states from the `seed_x` and `seed_d` registers (non-zero
    n-bit values; arrays give a batch of engines). Shared mode: the seeds themselves;
    per_converter: `converter_seeds` of each (a last axis of rows / cols converters)."""
    sx = _ranged("seed_x", seed_x, 1, cfg.lfsr_max)
    sd = _ranged("seed_d", seed_d, 1, cfg.lfsr_max)
    if not cfg.per_converter:
        return sx, sd
    return (converter_seeds(cfg, sx, cfg.poly_x, cfg.rows, cfg.seed_stride_x),
            converter_seeds(cfg, sd, cfg.poly_d, cfg.cols, cfg.seed_stride_d))


# -- step 1: block normalisation -------------------------------------------------------------------

def normalise(cfg: ESSOPConfig, fp16_bits, name="v"):
    """Vectors of binary16 patterns (last axis) to signs, `mag_bits` magnitudes and e_v.

    E_max is the largest exponent field (subnormals and zeros count as 1), e_v = E_max − 14, and
    q_i = floor(|v_i|·2^(m − e_v)) = sig_i shifted right by 11 − m + (E_max − exp_i) (left when
    that is negative, m > 11). A vector holding Inf or NaN gets error True, e_v 0 and zero
    signs and magnitudes.
    """
    bits = fp16.check_bits(name, fp16_bits)
    if bits.ndim == 0 or bits.shape[-1] == 0:
        raise ValueError(f"`{name}` must be vectors (a non-empty last axis), not shape {bits.shape}")
    sign, exp, sig = fp16.decode(bits, name)
    error = fp16.nonfinite(bits, name).any(axis=-1)
    e_max = exp.max(axis=-1)
    e_v = e_max - (fp16.BIAS - 1)
    shift = (fp16.SCALE - cfg.mag_bits + e_v)[..., None] - exp       # right shift, may be < 0
    q = np.where(shift >= 0, sig >> np.maximum(shift, 0), sig << np.maximum(-shift, 0))
    q = np.where(error[..., None], 0, q)
    sign = np.where(error[..., None], 0, sign)
    e_v = np.where(error, 0, e_v)
    _check_range("q", q, 0, cfg.q_max)
    _check_range("e_v", e_v[~error], *cfg.ev_range)
    return Normalised(sign=sign, q=q, e=e_v, error=error)


# -- steps 3 to 5 ----------------------------------------------------------------------------------

def bitstreams(cfg: ESSOPConfig, q, r):
    """b_k,t = (r_t < q_k): shape (…, k, BL). Shared mode: r (…, BL) serves every converter;
    per_converter: r (…, k, BL), one row per converter."""
    q = _ranged("q", q, 0, cfg.q_max)
    r = _ranged("r", r, 0, cfg.q_max)
    if cfg.per_converter:
        if r.ndim < 2 or r.shape[-2] != q.shape[-1]:
            raise ValueError(f"per_converter `r` needs shape (…, {q.shape[-1]}, BL), not {r.shape}")
        return r < q[..., None]
    return r[..., None, :] < q[..., None]


def accumulate(cfg: ESSOPConfig, bx, bd, sign_x, sign_d):
    """C_ij = Σ_t (bx_i,t AND bd_j,t)·(−1)^(sign_x_i XOR sign_d_j); |C| <= BL."""
    bx = _ranged("bx", bx, 0, 1)
    bd = _ranged("bd", bd, 0, 1)
    if bx.shape[-1] != bd.shape[-1] or bx.shape[-1] > cfg.bl_max:
        raise ValueError(f"`bx` and `bd` must have the same BL <= {cfg.bl_max} on the last axis, "
                         f"not {bx.shape[-1]} and {bd.shape[-1]}")
    # sums of at most 2^10 products of 0/1 values: exact in float64, where the BLAS is 7x faster
    hits = np.matmul(bx.astype(np.float64), np.swapaxes(bd, -1, -2).astype(np.float64))
    hits = hits.astype(np.int64)
    negative = _ranged("sign_x", sign_x, 0, 1)[..., :, None] ^ _ranged("sign_d", sign_d, 0, 1)[..., None, :]
    c = np.where(negative == 1, -hits, hits)
    return _check_range("C", c, -bx.shape[-1], bx.shape[-1])


def exponent(cfg: ESSOPConfig, e_x, e_d, log2_bl, lr_shift):
    """E = e_x + e_δ − log2_bl − lr_shift."""
    log2_bl, lr_shift = check_registers(cfg, log2_bl, lr_shift)
    e = (_ranged("e_x", e_x, *cfg.ev_range) + _ranged("e_d", e_d, *cfg.ev_range)
         - log2_bl - lr_shift)
    return _check_range("E", e, *cfg.exp_range)


# -- the unit --------------------------------------------------------------------------------------

def _operands(cfg: ESSOPConfig, x_bits, d_bits, state_x=None, state_d=None):
    """Inputs (and states) broadcast to one batch shape."""
    x = fp16.check_bits("x_bits", x_bits)
    d = fp16.check_bits("d_bits", d_bits)
    for name, a, n, field in (("x_bits", x, cfg.rows, "rows"), ("d_bits", d, cfg.cols, "cols")):
        if a.ndim == 0 or a.shape[-1] != n:
            raise ValueError(f"`{name}` must have `{field}` ({n}) elements on its last axis, "
                             f"not shape {a.shape}")
    shapes = [x.shape[:-1], d.shape[:-1]]
    if state_x is not None:
        state_x = check_state(cfg, "state_x", state_x, cfg.rows)
        state_d = check_state(cfg, "state_d", state_d, cfg.cols)
        shapes += [_batch_of(cfg, state_x), _batch_of(cfg, state_d)]
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"batch shapes of x_bits, d_bits (and the states) do not broadcast: "
                         f"{shapes}") from None
    out = [np.broadcast_to(x, batch + (cfg.rows,)), np.broadcast_to(d, batch + (cfg.cols,))]
    if state_x is not None:
        extra = ((cfg.rows,), (cfg.cols,)) if cfg.per_converter else ((), ())
        out += [np.broadcast_to(state_x, batch + extra[0]).copy(),
                np.broadcast_to(state_d, batch + extra[1]).copy()]
    return out


def outer_product(cfg: ESSOPConfig, x_bits, d_bits, log2_bl, lr_shift, state_x, state_d):
    """One product, bit-exact: x (…, rows) and δ (…, cols) binary16 patterns, the registers, and
    the LFSR states before it (from `reseed` or the previous product). Returns a `Product`."""
    log2_bl, lr_shift = check_registers(cfg, log2_bl, lr_shift)
    x, d, sx, sd = _operands(cfg, x_bits, d_bits, state_x, state_d)
    nx = normalise(cfg, x, "x_bits")
    nd = normalise(cfg, d, "d_bits")
    error = nx.error | nd.error
    rx, sx_next = random_sequence(cfg, sx, cfg.poly_x, log2_bl)
    rd, sd_next = random_sequence(cfg, sd, cfg.poly_d, log2_bl)
    c = accumulate(cfg, bitstreams(cfg, nx.q, rx), bitstreams(cfg, nd.q, rd), nx.sign, nd.sign)
    e = exponent(cfg, np.where(error, 0, nx.e), np.where(error, 0, nd.e), log2_bl, lr_shift)
    hold = error[..., None] if cfg.per_converter else error
    return Product(c=np.where(error[..., None, None], 0, c), exp=np.where(error, 0, e), error=error,
                   state_x=np.where(hold, sx, sx_next), state_d=np.where(hold, sd, sd_next))


def product_stream(cfg: ESSOPConfig, xs, ds, log2_bl, lr_shift, state_x, state_d):
    """Products in order, the LFSR state threaded from each to the next: xs (P, …, rows), ds
    (P, …, cols). Returns a `Product` with a leading axis P and the final states."""
    xs = fp16.check_bits("xs", xs)
    ds = fp16.check_bits("ds", ds)
    if xs.ndim < 2 or ds.ndim < 2 or xs.shape[0] != ds.shape[0]:
        raise ValueError(f"`xs` and `ds` must be (P, …, rows) and (P, …, cols) with the same P, "
                         f"not {xs.shape} and {ds.shape}")
    out = []
    for p in range(xs.shape[0]):  # true sequential state: the LFSRs
        res = outer_product(cfg, xs[p], ds[p], log2_bl, lr_shift, state_x, state_d)
        state_x, state_d = res.state_x, res.state_d
        out.append(res)
    return Product(c=np.stack([r.c for r in out]), exp=np.stack([r.exp for r in out]),
                   error=np.stack([r.error for r in out]), state_x=state_x, state_d=state_d)


def tile_beats(cfg: ESSOPConfig, x_bits, d_bits):
    """A layer's x (M) and δ (N) as the driver sends them: row tiles outer, column tiles inner.

    Product p = a·K + b carries x[a·rows : (a+1)·rows] and δ[b·cols : (b+1)·cols], with
    R = ceil(M / rows) row tiles and K = ceil(N / cols) column tiles; the last tiles are padded
    with +0 (0x0000), which neither counts nor raises a tile's E_max. Returns (xs (R·K, rows),
    ds (R·K, cols)).
    """
    x = fp16.check_bits("x_bits", x_bits)
    d = fp16.check_bits("d_bits", d_bits)
    if x.ndim != 1 or d.ndim != 1 or not x.size or not d.size:
        raise ValueError(f"`x_bits` and `d_bits` must be non-empty vectors, not {x.shape} and {d.shape}")
    r_tiles, k_tiles = -(-x.size // cfg.rows), -(-d.size // cfg.cols)
    xt = np.zeros(r_tiles * cfg.rows, dtype=np.int64)
    xt[:x.size] = x
    dt = np.zeros(k_tiles * cfg.cols, dtype=np.int64)
    dt[:d.size] = d
    return (np.repeat(xt.reshape(r_tiles, cfg.rows), k_tiles, axis=0),
            np.tile(dt.reshape(k_tiles, cfg.cols), (r_tiles, 1)))


def tiled_outer_product(cfg: ESSOPConfig, x_bits, d_bits, log2_bl, lr_shift, state_x, state_d):
    """A layer larger than the array: `tile_beats`, then `product_stream` (each tile normalised
    on its own blocks, the LFSRs continuing from tile to tile). Returns a `TiledProduct`: C of
    shape (M, N), E and error per tile (R, K), the final states."""
    x = fp16.check_bits("x_bits", x_bits)
    d = fp16.check_bits("d_bits", d_bits)
    xs, ds = tile_beats(cfg, x, d)
    res = product_stream(cfg, xs, ds, log2_bl, lr_shift, state_x, state_d)
    r_tiles, k_tiles = -(-x.size // cfg.rows), -(-d.size // cfg.cols)
    c = (res.c.reshape(r_tiles, k_tiles, cfg.rows, cfg.cols).transpose(0, 2, 1, 3)
         .reshape(r_tiles * cfg.rows, k_tiles * cfg.cols)[:x.size, :d.size])
    return TiledProduct(c=c, exp=res.exp.reshape(r_tiles, k_tiles),
                        error=res.error.reshape(r_tiles, k_tiles),
                        state_x=res.state_x, state_d=res.state_d)


def tile_map(cfg: ESSOPConfig, per_tile, m, n):
    """A per-tile array (R, K) spread over the (M, N) weights it covers."""
    a = np.asarray(per_tile)
    return np.repeat(np.repeat(a, cfg.rows, axis=0), cfg.cols, axis=1)[:m, :n]


# -- statistical mode, expectation, read-out -------------------------------------------------------

def outer_product_fast(cfg: ESSOPConfig, x_bits, d_bits, log2_bl, lr_shift, rng):
    """Statistical stand-in for `outer_product`: per unit C = ±Binomial(BL, qx·qd / 2^(2m)),
    drawn independently from `rng` (a np.random.Generator). Same normalisation, E and error
    handling; no LFSR state (the returned states are None)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator, not {type(rng).__name__}")
    log2_bl, lr_shift = check_registers(cfg, log2_bl, lr_shift)
    x, d = _operands(cfg, x_bits, d_bits)
    nx = normalise(cfg, x, "x_bits")
    nd = normalise(cfg, d, "d_bits")
    error = nx.error | nd.error
    p = (nx.q[..., :, None] * nd.q[..., None, :]) / float(1 << (2 * cfg.mag_bits))  # exact
    hits = rng.binomial(1 << log2_bl, p).astype(np.int64)
    negative = nx.sign[..., :, None] ^ nd.sign[..., None, :]
    c = np.where(error[..., None, None], 0, np.where(negative == 1, -hits, hits))
    e = exponent(cfg, np.where(error, 0, nx.e), np.where(error, 0, nd.e), log2_bl, lr_shift)
    return Product(c=c, exp=np.where(error, 0, e), error=error, state_x=None, state_d=None)


def quantised_product(cfg: ESSOPConfig, x_bits, d_bits, lr_shift=0):
    """What C·2^E estimates: sign·qx_i·qd_j·2^(e_x + e_δ − 2m − lr_shift), float64 (exact), zero
    for an error product. (The spec states it for η = 1; E carries −lr_shift, so η is in.)"""
    lr_shift = _register("lr_shift", lr_shift, 0, cfg.lr_shift_max)
    x, d = _operands(cfg, x_bits, d_bits)
    nx = normalise(cfg, x, "x_bits")
    nd = normalise(cfg, d, "d_bits")
    error = nx.error | nd.error
    prod = nx.q[..., :, None] * nd.q[..., None, :]
    prod = np.where((nx.sign[..., :, None] ^ nd.sign[..., None, :]) == 1, -prod, prod)
    e = (nx.e + nd.e - 2 * cfg.mag_bits - lr_shift)[..., None, None]
    return np.where(error[..., None, None], 0.0, np.ldexp(prod.astype(np.float64), e))


def decode(cfg: ESSOPConfig, c, e):
    """ΔW = C·2^E as float64 (exact: |C| <= acc_max·bl_max <= 2^20 and E within `exp_range`);
    E broadcasts. A group's read-out decodes like a product's: C·2^E is the sum of its
    products' C_k·2^E."""
    c = _ranged("C", c, *cfg.count_range)
    e = _ranged("E", e, *cfg.exp_range)
    return np.ldexp(c.astype(np.float64), e)



def readout(cfg: ESSOPConfig, c, exp, error):
    """The read-out beats of products: counts C (…, rows, cols), E and error (…) become
    `readout_beats` = rows / R beats per product, R = `rows_per_beat` rows each, row-major (the
    beat's first row in c[…, 0 : cols]). Returns a dict of beat arrays with a last axis of
    beats: c (…, beats, R·cols), exp, error and last (1 on a product's final beat)."""
    c = _ranged("C", c, *cfg.count_range)
    if c.shape[-2:] != (cfg.rows, cfg.cols):
        raise ValueError(f"`c` must end in (rows, cols) = ({cfg.rows}, {cfg.cols}), not {c.shape}")
    exp = _ranged("E", exp, *cfg.exp_range)
    error = _ranged("error", error, 0, 1)
    beats = cfg.readout_beats
    lead = c.shape[:-2]
    last = (np.arange(beats) == beats - 1).astype(np.int64)
    return {"c": c.reshape(lead + (beats, cfg.rows_per_beat * cfg.cols)),
            "exp": np.broadcast_to(np.asarray(exp)[..., None], lead + (beats,)),
            "error": np.broadcast_to(np.asarray(error)[..., None], lead + (beats,)),
            "last": np.broadcast_to(last, lead + (beats,))}


# -- accumulation: K products per read-out ---------------------------------------------------------

class Group(NamedTuple):
    """The counters between read-outs: counts C (rows, cols) of the products counted so far, E
    of the first counted one (None before it), products taken (counted or not), error."""

    c: np.ndarray
    exp: object
    products: int
    error: bool


def group_start(cfg: ESSOPConfig):
    """Clear counters: the state after reset and after every read-out."""
    return Group(c=np.zeros((cfg.rows, cfg.cols), dtype=np.int64), exp=None, products=0, error=False)


def group_admits(cfg: ESSOPConfig, group: Group, exp, error):
    """Whether a product with exponent `exp` and error flag `error` is counted into `group`: it
    is not rejected, and it is the group's first counted product or has the group's E."""
    return not error and (group.exp is None or int(exp) == group.exp)


def group_add(cfg: ESSOPConfig, group: Group, c, exp, error, acc):
    """One product (its counts, E and error as `outer_product` gives them) into `group`, with
    its `acc` flag. Returns (the group after it, the read-out (C, E, error) or None while the
    group stays open, whether the product raised `reg_error`: an E mismatch or a K-th product
    with `acc` = 1)."""
    acc = _register("acc", acc, 0, 1)
    if acc and not cfg.accumulates:
        raise ValueError("`acc` must be 0 with `acc_max` 1: the engine has no `acc` flag")
    admitted = group_admits(cfg, group, exp, error)
    mismatch = not error and not admitted
    c = _ranged("C", c, -cfg.bl_max, cfg.bl_max)
    total = group.c + c if admitted else group.c
    taken = group.products + 1
    overlong = bool(acc) and taken == cfg.acc_max
    bad = group.error or bool(error) or mismatch or overlong
    first = group.exp if group.exp is not None else (int(exp) if admitted else None)
    if acc and not overlong:
        return Group(c=total, exp=first, products=taken, error=bad), None, mismatch
    total = _check_range("C", total, *cfg.count_range)
    return group_start(cfg), (total, 0 if bad else first, int(bad)), mismatch or overlong


def accumulated_stream(cfg: ESSOPConfig, xs, ds, acc, log2_bl, lr_shift, state_x, state_d):
    """Products in order with their `acc` flags (P,), the LFSR state threaded through the
    counted ones: one read-out per group. Returns (a `Product` with a leading axis of groups
    and the final states, the `reg_error` flag of each group (G,) bool). The last flag must be 0
    (a group still open holds no read-out)."""
    xs = fp16.check_bits("xs", xs)
    ds = fp16.check_bits("ds", ds)
    acc = _ranged("acc", acc, 0, 1)
    if xs.ndim != 2 or ds.ndim != 2 or not len(xs) or acc.shape != xs.shape[:1] \
            or ds.shape[0] != xs.shape[0]:
        raise ValueError(f"`xs`, `ds` and `acc` must be (P, rows), (P, cols) and (P,) with the "
                         f"same P >= 1, not {xs.shape}, {ds.shape} and {acc.shape}")
    if acc[-1]:
        raise ValueError("the last product's `acc` must be 0: its group would never be read out")
    group, out, flagged = group_start(cfg), [], []
    raised = False
    for p in range(xs.shape[0]):  # true sequential state: the LFSRs and the counters
        res = outer_product(cfg, xs[p], ds[p], log2_bl, lr_shift, state_x, state_d)
        if group_admits(cfg, group, res.exp, res.error):
            state_x, state_d = res.state_x, res.state_d
        group, ro, flag = group_add(cfg, group, res.c, res.exp, res.error, int(acc[p]))
        raised |= flag
        if ro is not None:
            out.append(ro)
            flagged.append(raised)
            raised = False
    return (Product(c=np.stack([o[0] for o in out]), exp=np.array([o[1] for o in out], np.int64),
                    error=np.array([o[2] for o in out], bool), state_x=state_x, state_d=state_d),
            np.array(flagged, bool))


def product_exponents(cfg: ESSOPConfig, xs, ds, log2_bl, lr_shift):
    """E of each product as the engine will form it, and whether it will be rejected for Inf or
    NaN (E = 0 then), from the inputs alone: what a driver knows before sending. Returns
    (E (P,), error (P,))."""
    log2_bl, lr_shift = check_registers(cfg, log2_bl, lr_shift)
    nx, nd = normalise(cfg, xs, "xs"), normalise(cfg, ds, "ds")
    if nx.e.ndim != 1 or nx.e.shape != nd.e.shape:
        raise ValueError(f"`xs` and `ds` must be (P, rows) and (P, cols) with the same P, not "
                         f"{np.shape(xs)} and {np.shape(ds)}")
    error = nx.error | nd.error
    return np.where(error, 0, nx.e + nd.e - log2_bl - lr_shift), error


def group_flags(cfg: ESSOPConfig, xs, ds, log2_bl, lr_shift, k, keys=None):
    """The driver's `acc` flags for products in order: runs of consecutive products with the
    same E (and the same `keys` entry, e.g. the weight tile they update) of at most k products
    form a group, so no product is ever refused for a mismatch; a product that would be
    rejected (Inf/NaN) stands alone. Returns acc (P,) int64."""
    k = _register("k", k, 1, cfg.acc_max)
    e, error = product_exponents(cfg, xs, ds, log2_bl, lr_shift)
    keys = np.zeros(e.shape, np.int64) if keys is None else np.asarray(keys)
    if keys.shape != e.shape:
        raise ValueError(f"`keys` must have one entry per product ({e.size}), not shape {keys.shape}")
    acc = np.zeros(e.shape, np.int64)
    size = 1
    for p in range(e.size - 1):
        if size < k and not error[p] and not error[p + 1] and e[p] == e[p + 1] \
                and keys[p] == keys[p + 1]:
            acc[p], size = 1, size + 1
        else:
            size = 1
    return acc
