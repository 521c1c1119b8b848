"""Golden model of the analog tile: PCM crossbar, PWM inputs, CCO ADCs (design/tile.md).

One function per hardware stage, each taking its own `np.random.Generator`:

1. `program`:  weights in [-1, 1] → target conductances |w|·g_max on the polarity of the sign,
   programming noise σ(G) (quadratic public PCM fit), clamp at 0, drift exponents ν per device.
2. `drift`:    conductances at time t: G·((t + t0)/t0)^−ν plus the 1/f read noise accumulated
   (and frozen) at t.
3. `mvm`:      PWM integration: line charges q+ = Σ x·G+, q− = Σ x·G− (µS × input steps), kept
   apart; 1-phase or 4-phase (input signs separated) mode.
4. `adc`:      counts floor(gain·q/lsb + noise), saturated to [0, 2^adc_bits − 1] and reported.
   `adc_gains` draws the per-line, per-polarity gains.

Around them: `int_matmul` (exact integer matmul at BLAS speed, with a proven 2^53 guard),
`calibrate_gains` (reference-charge reads, as the chip calibrates its ADCs), the global drift
compensation (`drift_reference`, `drift_factor`), the splitting of layers larger than a tile
(`split_layer`, `compose_row_tiles`, `sum_row_tiles`), and `Tile`, which composes the stages
with one seeded stream per stage. docs/tile.md gives the choices where the spec is silent.

Units: conductances in µS, time in s, charges in µS × input steps (one step is one PWM unit
pulse at the read voltage; the physical charge is that times V_read · t_step, a constant the
model never needs), ADC counts as int64.
"""

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from golden.checks import ints as _ints

__all__ = [
    "TileConfig", "Programmed", "Saturation", "LayerSplit", "Tile",
    "PROG_NOISE_COEFFS", "PROG_NOISE_G_MAX",
    "prog_noise_sigma", "drift_nu_stats", "read_noise_sigma",
    "target_conductances", "program", "drift", "adc_gains", "mvm", "adc", "int_matmul",
    "calibration_charges", "calibrate_gains", "drift_reference", "drift_factor",
    "split_layer", "compose_row_tiles", "sum_row_tiles", "tile_layer",
]

# Programming noise: σ(G) = c0 + c1·(G/g_max) + c2·(G/g_max)^2 in µS, fitted at g_max = 25 µS
# (public PCM fit, also aihwkit's PCMLikeNoiseModel). At another g_max it scales with g_max.
PROG_NOISE_COEFFS = (0.26348, 1.9650, -1.1731)
PROG_NOISE_G_MAX = 25.0
# Drift exponent fit: mean and σ of ν as functions of ln(G/g_max), clipped (spec, public fit).
NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)        # slope, intercept, lower, upper clip
NU_SIGMA = (-0.0125, -0.0059, 0.008, 0.045)
# 1/f read noise: relative σ = Q_s(G)·sqrt(ln((t + t_read)/(2·t_read))), with the public fit
# Q_s = min(0.0088 / max((G/g_max)^0.65, 1e-3), 0.2) (the spec gives only the time dependence).
READ_NOISE_Q = (0.0088, 0.65, 1e-3, 0.2)
# G/g_max below this counts as this in ln(G/g_max) (a device programmed to 0).
G_REL_FLOOR = 1e-7
# Every integer of magnitude <= 2^53 is a float64: the exactness bound of `int_matmul`.
FLOAT64_EXACT = 2 ** 53

# stage numbers in a Tile's seed tree (docs/tile.md, "Reproducibility")
_PROGRAM, _DRIFT, _GAINS, _ADC_NOISE, _CALIBRATION = range(5)
_LAYER = 100


# -- config ----------------------------------------------------------------------------------------

def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, not {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"`{name}` must be in [{lo}, {hi}], not {value}")


def _check_choice(name, value, choices):
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, not {value!r}")


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool, not {type(value).__name__} {value!r}")


def _check_float(name, value, lo=None, hi=None, lo_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, not {type(value).__name__} {value!r}")
    value = value.item() if isinstance(value, (np.integer, np.floating)) else value
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, not {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ValueError(f"`{name}` must be {'>' if lo_open else '>='} {lo}, not {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"`{name}` must be <= {hi}, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class TileConfig:
    """One analog tile: crossbar size, devices, input and ADC widths, and the noise switches.

    `g_max`: conductance of a device at weight ±1 (µS); `devices`: PCM devices per polarity, each
    programmed to the same target (the polarity's conductance is their sum). `input_bits`: sign
    plus (input_bits − 1)-bit PWM magnitude. `phases`: 1 (each input's sign sets its read
    polarity) or 4 (positive and negative inputs in separate phases, see `mvm`).
    `adc_range`: the ADC's full scale, as a number of full-scale products (one polarity at
    `devices`·g_max driven by the largest input for the whole read); `lsb` is the charge per
    ADC count that follows. Noise switches: `programming_noise`, `drift`, `read_noise` (bools),
    `adc_gain_sigma` (0: all gains 1), `output_noise` (σ in ADC LSB, 0: off); the `*_scale`
    fields scale the published noise fits. `t0`: drift reference time, `t_read`: read duration (s).
    """

    name: str = "custom"
    rows: int = 256
    cols: int = 256
    g_max: float = 25.0
    devices: int = 1
    input_bits: int = 8
    adc_bits: int = 12
    phases: int = 1
    adc_range: float = 64.0
    programming_noise: bool = True
    prog_noise_scale: float = 1.0
    drift: bool = True
    read_noise: bool = True
    read_noise_scale: float = 1.0
    adc_gain_sigma: float = 0.07
    adc_gain_bound: float = 0.21
    output_noise: float = 0.0
    t0: float = 20.0
    t_read: float = 250e-9

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"`name` must be a non-empty str, not {self.name!r}")
        _check_int("rows", self.rows, 1, 4096)
        _check_int("cols", self.cols, 1, 4096)
        _check_float("g_max", self.g_max, 0.0, 1e6, lo_open=True)
        _check_choice("devices", self.devices, (1, 2))
        # 16 bits keeps x·G sums of integer-coded conductances far inside the int_matmul bound
        _check_int("input_bits", self.input_bits, 2, 16)
        _check_int("adc_bits", self.adc_bits, 1, 24)
        _check_choice("phases", self.phases, (1, 4))
        _check_float("adc_range", self.adc_range, 0.0, None, lo_open=True)
        for flag in ("programming_noise", "drift", "read_noise"):
            _check_bool(flag, getattr(self, flag))
        _check_float("prog_noise_scale", self.prog_noise_scale, 0.0)
        _check_float("read_noise_scale", self.read_noise_scale, 0.0)
        _check_float("adc_gain_sigma", self.adc_gain_sigma, 0.0)
        # a gain must stay positive: the bound is below 100 %
        _check_float("adc_gain_bound", self.adc_gain_bound, 0.0, 0.99)
        if self.adc_gain_sigma > 0 and self.adc_gain_bound == 0:
            raise ValueError(f"`adc_gain_bound` must be > 0 when `adc_gain_sigma` is "
                             f"{self.adc_gain_sigma} (a gain spread needs room)")
        _check_float("output_noise", self.output_noise, 0.0)
        _check_float("t0", self.t0, 0.0, None, lo_open=True)
        _check_float("t_read", self.t_read, 0.0, None, lo_open=True)

    # derived values
    @property
    def x_max(self):
        """Largest input magnitude: 2^(input_bits − 1) − 1."""
        return (1 << (self.input_bits - 1)) - 1

    @property
    def adc_max(self):
        """Largest ADC count: 2^adc_bits − 1."""
        return (1 << self.adc_bits) - 1

    @property
    def full_scale(self):
        """Charge of one full-scale product: `devices`·g_max·x_max (µS × steps)."""
        return self.devices * self.g_max * self.x_max

    @property
    def lsb(self):
        """Default charge per ADC count: adc_range · full_scale / adc_max."""
        return self.adc_range * self.full_scale / self.adc_max

    @property
    def ideal(self):
        """The same tile with every noise source off (drift too)."""
        return TileConfig(**{**asdict(self), "programming_noise": False, "drift": False,
                             "read_noise": False, "adc_gain_sigma": 0.0, "output_noise": 0.0})

    def to_dict(self):
        return asdict(self)

    @property
    def tag(self):
        return (f"{self.name}-{self.rows}x{self.cols}-d{self.devices}-p{self.phases}"
                f"-a{self.adc_bits}")


# -- input checks ----------------------------------------------------------------------------------

def _floats(name, value):
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be numbers, not {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` holds NaN or infinity")
    return a


def _generator(name, rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`{name}` must be a np.random.Generator, not {type(rng).__name__}")
    return rng


def _time(name, t):
    _check_float(name, t, 0.0)
    return float(t)


def _weights(cfg, weights):
    w = _floats("weights", weights)
    if w.ndim != 2 or w.shape[0] > cfg.rows or w.shape[1] > cfg.cols or 0 in w.shape:
        raise ValueError(f"`weights` must be 2-D with at most ({cfg.rows}, {cfg.cols}) (rows, cols), "
                         f"not shape {w.shape}")
    if w.size and np.abs(w).max() > 1.0:
        bad = w[np.abs(w) > 1.0].flat[0]
        raise ValueError(f"`weights` must lie in [-1, 1], found {float(bad)!r}")
    return w


def _inputs(cfg, x, rows):
    # an int64 array is used as it is (the MVM only reads it); anything else is checked and
    # converted by `ints`
    if not (isinstance(x, np.ndarray) and x.dtype == np.int64):
        x = _ints("x", x)
    if x.ndim not in (1, 2) or x.shape[-1] != rows:
        raise ValueError(f"`x` must have shape (rows,) or (vectors, rows) with rows = {rows}, "
                         f"not {x.shape}")
    if x.size and (x.max() > cfg.x_max or x.min() < -cfg.x_max):
        bad = x[np.abs(x) > cfg.x_max].flat[0]
        raise ValueError(f"`x` must be in [{-cfg.x_max}, {cfg.x_max}] (input_bits "
                         f"{cfg.input_bits}: sign + magnitude), found {bad}")
    return x


def _checked_codes(x, rows):
    # `Tile.read(..., checked=True)`: float64 codes the caller has checked (integers in range);
    # only the cheap checks here, none that passes over the values
    if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
        raise TypeError(f"`x` with checked=True must be a float64 array of codes, not "
                        f"{type(x).__name__} {getattr(x, 'dtype', '')}")
    if x.ndim not in (1, 2) or x.shape[-1] != rows:
        raise ValueError(f"`x` must have shape (rows,) or (vectors, rows) with rows = {rows}, "
                         f"not {x.shape}")
    return x


# -- device fits -----------------------------------------------------------------------------------

def prog_noise_sigma(cfg, g):
    """σ of the programming noise (µS) of devices with target conductance `g` (µS)."""
    r = np.asarray(g, dtype=np.float64) / cfg.g_max
    c0, c1, c2 = PROG_NOISE_COEFFS
    sigma = (c0 + c1 * r + c2 * r * r) * (cfg.g_max / PROG_NOISE_G_MAX)
    return cfg.prog_noise_scale * np.maximum(sigma, 0.0)


def drift_nu_stats(cfg, g):
    """(mean, σ) of the normal that ν is drawn from, for target conductances `g` (µS)."""
    lg = np.log(np.maximum(np.asarray(g, dtype=np.float64) / cfg.g_max, G_REL_FLOOR))
    a, b, lo, hi = NU_MEAN
    mean = np.clip(a * lg + b, lo, hi)
    a, b, lo, hi = NU_SIGMA
    return mean, np.clip(a * lg + b, lo, hi)


def read_noise_sigma(cfg, g, t):
    """Relative σ of the 1/f read noise accumulated at time `t` for target conductances `g`.
    Zero for t <= t_read (the log term is taken as 0 there)."""
    t = _time("t", t)
    q0, expo, floor_, cap = READ_NOISE_Q
    r = np.asarray(g, dtype=np.float64) / cfg.g_max
    q = np.minimum(q0 / np.maximum(r ** expo, floor_), cap)
    return cfg.read_noise_scale * q * math.sqrt(max(math.log((t + cfg.t_read) / (2 * cfg.t_read)), 0.0))


# -- stage 1: programming --------------------------------------------------------------------------

@dataclass(frozen=True)
class Programmed:
    """A programmed crossbar. `target_pos/neg`, `g_pos/neg`: (rows, cols) conductance of each
    polarity (the sum over its devices), target and as programmed; `dev_pos/neg`: (devices,
    rows, cols) programmed device conductances; `nu_pos/neg`: (devices, rows, cols) drift
    exponents; `dev_target_pos/neg`: (rows, cols) target of each device (µS)."""

    dev_target_pos: np.ndarray
    dev_target_neg: np.ndarray
    dev_pos: np.ndarray
    dev_neg: np.ndarray
    nu_pos: np.ndarray
    nu_neg: np.ndarray

    @property
    def target_pos(self):
        return self.dev_target_pos * self.dev_pos.shape[0]

    @property
    def target_neg(self):
        return self.dev_target_neg * self.dev_neg.shape[0]

    @property
    def g_pos(self):
        return self.dev_pos.sum(axis=0)

    @property
    def g_neg(self):
        return self.dev_neg.sum(axis=0)

    @property
    def shape(self):
        return self.dev_target_pos.shape


def target_conductances(cfg, weights):
    """Per-device targets (g_pos, g_neg): |w|·g_max on the polarity of w's sign, 0 on the other."""
    w = _weights(cfg, weights)
    return np.where(w > 0, w, 0.0) * cfg.g_max, np.where(w < 0, -w, 0.0) * cfg.g_max


def program(cfg, weights, rng):
    """Stage 1: program `weights` ((r, c), r <= rows, c <= cols, in [-1, 1]).

    Every device of a polarity targets |w|·g_max (the off polarity targets 0); programming noise
    N(0, σ(G)) is added to every device (the devices at 0 too) and the result clamped at 0.
    ν ~ |N(mean(G), σ(G))| per device, from the target G. `rng` is split into two child streams
    (noise, ν), so switching the programming noise off leaves the ν draws unchanged.
    """
    tp, tn = target_conductances(cfg, weights)
    noise_rng, nu_rng = _generator("rng", rng).spawn(2)
    shape = (cfg.devices,) + tp.shape
    targets = np.stack([np.broadcast_to(tp, shape), np.broadcast_to(tn, shape)])
    if cfg.programming_noise:
        g = targets + prog_noise_sigma(cfg, targets) * noise_rng.standard_normal(targets.shape)
        g = np.maximum(g, 0.0)
    else:
        g = targets.copy()
    mean, sigma = drift_nu_stats(cfg, targets)
    nu = np.abs(mean + sigma * nu_rng.standard_normal(targets.shape))
    return Programmed(dev_target_pos=tp, dev_target_neg=tn, dev_pos=g[0], dev_neg=g[1],
                      nu_pos=nu[0], nu_neg=nu[1])


# -- stage 2: drift and read noise -----------------------------------------------------------------

def drift(cfg, programmed, t, rng):
    """Stage 2: (g_pos, g_neg) (rows, cols) at `t` seconds after programming.

    Each device: G·((t + t0)/t0)^−ν (with `drift`), then G + |G|·σ_rel·z with σ_rel from
    `read_noise_sigma` of its target (with `read_noise`), clamped at 0; then summed over the
    devices of a polarity. The read noise is one draw per call: frozen for every MVM at `t`.
    """
    t = _time("t", t)
    p = programmed
    g = np.stack([p.dev_pos, p.dev_neg])
    if cfg.drift:
        nu = np.stack([p.nu_pos, p.nu_neg])
        g = g * ((t + cfg.t0) / cfg.t0) ** (-nu)
    if cfg.read_noise:
        targets = np.broadcast_to(np.stack([p.dev_target_pos, p.dev_target_neg])[:, None], g.shape)
        z = _generator("rng (read noise)", rng).standard_normal(g.shape)
        g = np.maximum(g + np.abs(g) * read_noise_sigma(cfg, targets, t) * z, 0.0)
    g = g.sum(axis=1)
    return g[0], g[1]


# -- stage 3: MVM ----------------------------------------------------------------------------------

def int_matmul(a, b, *, fallback=False):
    """Exact a @ b of integer matrices at BLAS speed.

    The product runs in float64. Guard: every partial sum of row i, column j is bounded in
    magnitude by B = min(max_i Σ_k |a_ik| · max|b|, max|a| · max_j Σ_k |b_kj|); when B <= 2^53
    every partial sum, in any summation order, is an integer a float64 holds exactly, so the
    result is exact. Otherwise raises ValueError, or with `fallback` computes in int64 (numpy's
    non-BLAS integer matmul), which needs B < 2^63 (else ValueError).
    """
    a = _ints("a", a)
    b = _ints("b", b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"int_matmul needs 2-D (m, k) and (k, n) arrays, not {a.shape} and {b.shape}")
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    amax, bmax = int(np.abs(a).max()), int(np.abs(b).max())
    k = a.shape[1]
    if amax * k >= 2 ** 63 or bmax * k >= 2 ** 63:
        raise ValueError(f"int_matmul: row or column sums of |a| (max {amax}) or |b| (max {bmax}) "
                         f"over k = {k} exceed int64")
    row_l1 = int(np.abs(a).sum(axis=1).max())
    col_l1 = int(np.abs(b).sum(axis=0).max())
    bound = min(row_l1 * bmax, amax * col_l1)
    if bound <= FLOAT64_EXACT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    if not fallback:
        raise ValueError(f"int_matmul: sums may reach {bound} > 2^53, beyond exact float64 "
                         f"(pass fallback=True for int64)")
    if bound >= 2 ** 63:
        raise ValueError(f"int_matmul: sums may reach {bound}, beyond int64")
    return a @ b


def _mat(x, g):
    """x @ g: exact through `int_matmul` when g holds integer codes, float64 BLAS otherwise."""
    if g.dtype.kind in "iu":
        return int_matmul(x, g)
    return x.astype(np.float64) @ g


def mvm(cfg, x, g_pos, g_neg):
    """Stage 3: line charges (q_pos, q_neg), each (vectors, cols) (or (cols,) for a 1-D x).

    x: integers in [−x_max, x_max], shape (vectors, rows) or (rows,); g_pos, g_neg: any
    conductance arrays (rows, cols) (µS; integer dtype = integer codes, then the result is exact
    int64). One unit PWM step at G contributes G to the line's charge.

    phases 1: each input drives its row for |x| steps with the polarity of its sign, so
      q_pos = x @ G+ and q_neg = x @ G− (a negative input subtracts charge; a line whose charge
      ends negative reads 0 at the ADC, reported as saturation low). Exact for x >= 0.
    phases 4: with x = x⁺ − x⁻ (both >= 0), q_pos = x⁺ @ G+ + x⁻ @ G− and
      q_neg = x⁺ @ G− + x⁻ @ G+: every phase integrates a non-negative charge, and
      q_pos − q_neg = x @ (G+ − G−) for signed inputs. Equal to phases 1 for x >= 0.
    """
    gp = np.asarray(g_pos)
    gn = np.asarray(g_neg)
    if gp.ndim != 2 or gp.shape != gn.shape:
        raise ValueError(f"`g_pos` and `g_neg` must be 2-D (rows, cols) of one shape, not "
                         f"{gp.shape} and {gn.shape}")
    if gp.dtype.kind not in "iuf" or gn.dtype.kind not in "iuf":
        raise TypeError(f"conductances must be numbers, not {gp.dtype} and {gn.dtype}")
    if gp.dtype.kind != gn.dtype.kind:  # one int and one float: compute both in float
        gp, gn = gp.astype(np.float64), gn.astype(np.float64)
    if gp.dtype.kind == "f" and not (np.all(np.isfinite(gp)) and np.all(np.isfinite(gn))):
        raise ValueError("`g_pos` or `g_neg` holds NaN or infinity")
    x = _inputs(cfg, x, gp.shape[0])
    x2 = np.atleast_2d(x)
    cols = gp.shape[1]
    if cfg.phases == 1:
        q = _mat(x2, np.concatenate([gp, gn], axis=1))
    else:
        xs = np.concatenate([np.maximum(x2, 0), np.maximum(-x2, 0)], axis=1)
        q = _mat(xs, np.block([[gp, gn], [gn, gp]]))
    q_pos, q_neg = q[:, :cols], q[:, cols:]
    if x.ndim == 1:
        return q_pos[0], q_neg[0]
    return q_pos, q_neg


# -- stage 4: ADC ----------------------------------------------------------------------------------

def adc_gains(cfg, rng):
    """Stage 4a: (gain_pos, gain_neg), each (cols,): 1 + σ·z, z standard normal truncated to
    |σ·z| <= bound (redrawn, not clipped: no mass piles up on the bounds)."""
    z = _generator("rng", rng).standard_normal((2, cfg.cols))
    if cfg.adc_gain_sigma == 0:
        return np.ones(cfg.cols), np.ones(cfg.cols)
    limit = cfg.adc_gain_bound / cfg.adc_gain_sigma
    out = np.abs(z) > limit
    while out.any():  # rejection rounds, each vectorised over the lines still out of bounds
        z[out] = rng.standard_normal(int(out.sum()))
        out = np.abs(z) > limit
    g = 1.0 + cfg.adc_gain_sigma * z
    return g[0], g[1]


class Saturation(NamedTuple):
    """Where the ADC clamped: boolean masks like the counts (high: above adc_max, low: below 0)."""

    high_pos: np.ndarray
    low_pos: np.ndarray
    high_neg: np.ndarray
    low_neg: np.ndarray

    @property
    def count(self):
        return int(sum(int(np.count_nonzero(m)) for m in self))

    @property
    def any(self):
        return self.count > 0


def adc(cfg, q_pos, q_neg, gain_pos, gain_neg, lsb, rng=None, *, return_saturated=False):
    """Stage 4b: counts P = floor(gain_pos·q_pos/lsb + σ·z), N likewise, saturated to
    [0, adc_max]. σ = `cfg.output_noise` (ADC LSB at the ADC input); it needs `rng`.
    Gains broadcast against the last (column) axis; `lsb` (charge per count) is a positive
    scalar or broadcasts likewise. Returns (P, N) int64, plus a `Saturation` with
    `return_saturated`."""
    qp, qn = _floats("q_pos", q_pos), _floats("q_neg", q_neg)
    if qp.shape != qn.shape:
        raise ValueError(f"`q_pos` and `q_neg` must have one shape, not {qp.shape} and {qn.shape}")
    gp, gn = _floats("gain_pos", gain_pos), _floats("gain_neg", gain_neg)
    lsb = _floats("lsb", lsb)
    for name, v in (("gain_pos", gp), ("gain_neg", gn), ("lsb", lsb)):
        if np.any(v <= 0):
            raise ValueError(f"`{name}` must be positive, found {float(v[v <= 0].flat[0])!r}")
    if cfg.output_noise > 0 and rng is None:
        raise ValueError(f"`output_noise` is {cfg.output_noise}: `adc` needs an `rng`")
    z = (rng.standard_normal((2,) + np.broadcast_shapes(qp.shape, gp.shape, lsb.shape))
         if cfg.output_noise > 0 else None)
    counts, masks = [], []
    # in place on one temporary per polarity: the same operations in the same order as
    # floor(gain·q/lsb + σ·z), so the counts are those of the plain expression, bit for bit
    for k, (g, q) in enumerate(((gp, qp), (gn, qn))):
        v = g * q
        np.divide(v, lsb, out=v)
        if z is not None:
            v += cfg.output_noise * z[k]
        np.floor(v, out=v)
        if return_saturated:
            masks += [v > cfg.adc_max, v < 0]
        np.clip(v, 0, cfg.adc_max, out=v)
        counts.append(v.astype(np.int64))
    if return_saturated:
        return counts[0], counts[1], Saturation(*masks)
    return counts[0], counts[1]


def _stacked(cfg, gp, gn):
    """The matrix of `mvm`'s one matmul for float conductances; None for integer codes."""
    if gp.dtype.kind != "f":
        return None
    if cfg.phases == 1:
        return np.concatenate([gp, gn], axis=1)
    return np.block([[gp, gn], [gn, gp]])


def _positive(name, v):
    v = _floats(name, v)
    if np.any(v <= 0):
        raise ValueError(f"`{name}` must be positive, found {float(v[v <= 0].flat[0])!r}")
    return v


def _positive_scalar(name, v):
    """A positive finite scalar as a float: the common float taken without numpy's per-call
    overhead (20 µs, a tenth of a short read), anything else through `_positive`."""
    if isinstance(v, float) and v > 0 and math.isfinite(v):
        return float(v)
    return _positive(name, v)


READ_CHUNK = 256  # least vectors per matmul of `Tile.read`
READ_CHUNK_VALUES = 1 << 15  # charges per chunk (256 KiB of float64: the chunk stays in L2)


def _chunk_vectors(width):
    """Vectors per chunk of `_read_stacked` for charges `width` wide: READ_CHUNK_VALUES charges,
    at least READ_CHUNK vectors (narrow layers take longer chunks: fewer passes of the ADC's
    small in-place operations)."""
    return max(READ_CHUNK, READ_CHUNK_VALUES // max(width, 1))


def _chunk_edges(n, width):
    """Edges of `_read_stacked`'s chunks of n vectors (lengths differ by at most one) and the
    length of the longest."""
    chunks = max(n // _chunk_vectors(width), 1)
    return [i * n // chunks for i in range(chunks + 1)], -(-n // chunks)


def _read_stacked(cfg, x, g2, gain_rows, lsb, rng, return_saturated, *, g2_nonneg=False,
                  chunks=None):
    """MVM and ADC of both polarities side by side: charges x @ g2 (vectors, 2·cols), then
    gain·q/lsb (+ output noise), floor and saturation, as `adc` computes them, with
    `gain_rows` [gain_pos, gain_neg] repeated on at least as many rows as the longest chunk
    ((>= chunk, 2·cols), the gains of every charge of a chunk) and a positive float lsb.

    Faster than `mvm` then `adc`, with the same counts: one matmul per chunk of v to 2·v − 1
    vectors, v = `_chunk_vectors` >= READ_CHUNK (every chunk large enough for the BLAS kernel the
    whole batch uses, so each charge is the same dot product), the ADC in place on the chunk
    while it is in the cache. The gains are multiplied as a chunk-shaped array (the same
    products; numpy's loop over a short broadcast row costs twice as much). With v = gain·q/lsb:
    the high rail is v >= adc_max + 1 (floor(v) > adc_max), the low rail v < 0 (floor(v) < 0);
    the rails' values are set to adc_max and 0 (`copyto` where the masks hold: 2 cheap passes
    instead of `clip`'s NaN-aware one), which leaves every other v in [0, adc_max + 1), where
    floor is the truncation toward 0 of the float → int32 cast (adc_max < 2^24; numpy's float →
    int64 cast is a slow scalar loop here, float → int32 → int64 two fast ones): the counts of
    floor then clip to [0, adc_max]. The low rail is not computed where no charge can be
    negative: without output noise, non-negative conductances (`g2_nonneg`) and inputs give
    sums of non-negative products, so q >= 0 and v >= 0 (−0.0 is not < 0); the inputs are
    checked when that pass is no longer than the rail's (x no wider than the charges). The
    output noise is drawn as `adc` draws it ((2, vectors, cols), all positive lines first).
    `chunks`: `_chunk_edges` of the read, when the caller has them. Returns P, N (views of one
    int64 array) and, with `return_saturated`, a `Saturation` of views; with
    `return_saturated="count"` the number of saturated counts instead (an int: the masks stay
    per chunk, in the cache, and are counted there)."""
    if cfg.output_noise > 0 and rng is None:
        raise ValueError(f"`output_noise` is {cfg.output_noise}: `adc` needs an `rng`")
    n, width = x.shape[0], g2.shape[1]
    cols = width // 2
    z = rng.standard_normal((2, n, cols)) if cfg.output_noise > 0 else None
    lows = (z is not None or not g2_nonneg or x.shape[1] > width
            or (x.size > 0 and x.min() < 0))
    c = np.empty((n, width), dtype=np.int64)
    edges, longest = _chunk_edges(n, width) if chunks is None else chunks
    if gain_rows.shape[0] < longest or gain_rows.shape[1] != width:
        raise ValueError(f"`gain_rows` must be at least ({longest}, {width}), not "
                         f"{gain_rows.shape}")
    buf = np.empty((longest, width))
    ibuf = np.empty((longest, width), dtype=np.int32)
    masks = return_saturated is True
    if masks:
        high = np.empty((n, width), dtype=bool)
        low = np.empty((n, width), dtype=bool) if lows else np.zeros((n, width), dtype=bool)
    else:
        hbuf = np.empty((longest, width), dtype=bool)
        lbuf = np.empty((longest, width), dtype=bool)
    count = 0
    top, amax = float(cfg.adc_max + 1), float(cfg.adc_max)
    for s, e in zip(edges[:-1], edges[1:]):  # loops over chunks of vectors only
        q, qi = buf[:e - s], ibuf[:e - s]
        # float64 codes are read as they are (a view), anything else converted per chunk
        np.matmul(np.ascontiguousarray(x[s:e], dtype=np.float64), g2, out=q)
        np.multiply(gain_rows[:e - s], q, out=q)
        np.divide(q, lsb, out=q)
        if z is not None:
            q[:, :cols] += cfg.output_noise * z[0, s:e]
            q[:, cols:] += cfg.output_noise * z[1, s:e]
        h, lo = (high[s:e], low[s:e]) if masks else (hbuf[:e - s], lbuf[:e - s])
        np.greater_equal(q, top, out=h)
        np.copyto(q, amax, where=h)
        if lows:
            np.less(q, 0.0, out=lo)
            np.copyto(q, 0.0, where=lo)
        if return_saturated == "count":
            count += np.count_nonzero(h) + (np.count_nonzero(lo) if lows else 0)
        qi[...] = q
        c[s:e] = qi
    out = (c[:, :cols], c[:, cols:])
    if masks:
        out += (Saturation(high[:, :cols], low[:, :cols], high[:, cols:], low[:, cols:]),)
    elif return_saturated == "count":
        out += (int(count),)
    return out


# -- calibration and drift compensation ------------------------------------------------------------

def calibration_charges(cfg, lsb, levels=(0.2, 0.8)):
    """The reference charges of `calibrate_gains`: level · adc_max · lsb / (1 + adc_gain_bound),
    so a line at the largest gain still reads inside the range."""
    lv = _floats("levels", levels)
    if lv.ndim != 1 or lv.size < 2 or np.any(lv <= 0) or np.any(lv > 1) or np.unique(lv).size != lv.size:
        raise ValueError(f"`levels` must be at least two distinct values in (0, 1], not {levels!r}")
    return lv * cfg.adc_max * float(np.max(lsb)) / (1.0 + cfg.adc_gain_bound)


def calibrate_gains(cfg, gain_pos, gain_neg, lsb, rng, *, reads=8, levels=(0.2, 0.8)):
    """Estimate every line's gains as the chip does: inject known reference charges into both
    polarities of every line (`calibration_charges`), read each `reads` times through `adc` (with
    its output noise, from `rng`), and fit the slope of mean count against charge by least
    squares: ĝ = Σ(q − q̄)(P̄ − mean) / Σ(q − q̄)² · lsb. The slope ignores the floor's constant
    half-count bias. Returns (est_pos, est_neg), each (cols,).

    Error: at most about (1 + 3·output_noise·sqrt(2/reads)) / ΔP relative, ΔP the count span of
    the levels (≈ 0.6·adc_max·gain/(1 + bound): 6e-4 for 12 bits and no noise).
    """
    _check_int("reads", reads, 1, 1 << 20)
    lsb = float(np.max(_floats("lsb", lsb)))
    q = calibration_charges(cfg, lsb, levels)
    cols = np.broadcast_shapes(np.shape(gain_pos), np.shape(gain_neg)) or (cfg.cols,)
    ref = np.broadcast_to(np.repeat(q, reads)[:, None], (q.size * reads,) + cols)
    p, n, sat = adc(cfg, ref, ref, gain_pos, gain_neg, lsb, rng, return_saturated=True)
    if sat.any:
        raise ValueError(f"calibration reads saturated {sat.count} times: lower `levels` {levels!r}")
    qc = q - q.mean()
    out = []
    for c in (p, n):
        mean = c.reshape(q.size, reads, -1).mean(axis=1)
        slope = (qc[:, None] * (mean - mean.mean(axis=0))).sum(axis=0) / (qc * qc).sum()
        out.append(slope * lsb)
    return out[0], out[1]


def drift_reference(cfg, x_ref, g_pos, g_neg, gain_pos, gain_neg, lsb, rng=None, *,
                    per_line=False):
    """The global drift reference: Σ |P − N| over every line and reference vector of the counts
    the reference inputs `x_ref` give (a float); `per_line`: the sum per line instead (an array,
    for a per-column compensation). Raises when a read saturates (the reference would be
    biased): choose a smaller `x_ref`."""
    qp, qn = mvm(cfg, x_ref, g_pos, g_neg)
    p, n, sat = adc(cfg, qp, qn, gain_pos, gain_neg, lsb, rng, return_saturated=True)
    if sat.any:
        raise ValueError(f"the drift reference read saturated {sat.count} counts: scale `x_ref` down")
    if per_line:
        return np.abs(p - n).reshape(-1, p.shape[-1]).sum(axis=0).astype(np.float64)
    return float(np.abs(p - n).sum())


def drift_factor(ref_programmed, ref_now):
    """One global factor that brings reads at time t back to programming time:
    ref_programmed / ref_now (multiply every column's scale α_j by it)."""
    _check_float("ref_programmed", ref_programmed, 0.0, None, lo_open=True)
    _check_float("ref_now", ref_now, 0.0, None, lo_open=True)
    return float(ref_programmed) / float(ref_now)


# -- layers larger than a tile ---------------------------------------------------------------------

class LayerSplit(NamedTuple):
    """Which block of a (rows, cols) layer goes to which tile: tile (r, k) holds weight rows
    row_edges[r]:row_edges[r + 1] and columns col_edges[k]:col_edges[k + 1]. Full tiles first,
    the remainder in the last row and column tile."""

    shape: tuple
    row_edges: tuple
    col_edges: tuple

    @property
    def row_tiles(self):
        return len(self.row_edges) - 1

    @property
    def col_tiles(self):
        return len(self.col_edges) - 1

    def rows_of(self, r):
        return slice(self.row_edges[r], self.row_edges[r + 1])

    def cols_of(self, k):
        return slice(self.col_edges[k], self.col_edges[k + 1])

    def block(self, weights, r, k):
        """The weights of tile (r, k)."""
        return np.asarray(weights)[self.rows_of(r), self.cols_of(k)]

    def inputs(self, x, r):
        """The inputs of row tile r (the last axis of x cut to its rows)."""
        return np.asarray(x)[..., self.rows_of(r)]


def split_layer(cfg, shape):
    """The `LayerSplit` of a layer of `shape` (rows, cols) (or of a weight array) over tiles of
    cfg.rows × cfg.cols."""
    if hasattr(shape, "shape"):
        shape = np.shape(shape)
    if len(shape) != 2:
        raise ValueError(f"a layer must be 2-D (rows, cols), not shape {tuple(shape)}")
    rows, cols = (int(s) for s in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"a layer needs at least one row and column, not shape {(rows, cols)}")
    edges = lambda n, step: tuple(list(range(0, n, step)) + [n])  # noqa: E731
    return LayerSplit((rows, cols), edges(rows, cfg.rows), edges(cols, cfg.cols))


def compose_row_tiles(split, step):
    """Compose per-tile reads into the layer's output, as the NMPUs do in hardware.

    For every column tile k, row tiles are read in order: `res = step(r, k, res)`, where `res`
    is None for the first row tile and otherwise the previous tile's output in output units
    (vectors, width of k), which `step` adds through the NMPU residual input (R); `step` returns
    this tile's output (vectors, width). Returns the last row tile's outputs side by side:
    (vectors, layer cols)."""
    outs = []
    for k in range(split.col_tiles):  # loops over tiles only
        res = None
        for r in range(split.row_tiles):
            res = np.asarray(step(r, k, res))
            width = split.col_edges[k + 1] - split.col_edges[k]
            if res.shape[-1] != width:
                raise ValueError(f"`step` returned {res.shape[-1]} columns for tile ({r}, {k}), "
                                 f"not {width}")
        outs.append(res)
    return np.concatenate(outs, axis=-1)


def sum_row_tiles(split, per_tile):
    """The ideal composition: per_tile[r][k] (vectors, width of k) summed over r, the column tiles
    side by side: (vectors, layer cols)."""
    return np.concatenate([sum(np.asarray(per_tile[r][k]) for r in range(split.row_tiles))
                           for k in range(split.col_tiles)], axis=-1)


# -- the composed tile -----------------------------------------------------------------------------

def _seed_sequence(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    _check_int("seed", seed, 0, 2 ** 128 - 1)
    return np.random.SeedSequence(int(seed))


class Tile:
    """One programmed tile: the stages composed, each with its own stream of the seed's tree.

    Stream of stage s: SeedSequence(seed, spawn_key=(s,)) (a tile of a layer: its own spawn key
    plus (s,)); the drift stage adds the bits of t, so the read noise at t is one fixed draw
    whatever other times were read before. Programming and gains are drawn at construction; the
    ADC output noise is one running stream (reproducible for the same sequence of reads).
    """

    def __init__(self, cfg, weights, seed):
        if not isinstance(cfg, TileConfig):
            raise TypeError(f"`cfg` must be a TileConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        self.seed = _seed_sequence(seed)
        self.programmed = program(cfg, weights, self._rng(_PROGRAM))
        self.gain_pos, self.gain_neg = adc_gains(cfg, self._rng(_GAINS))
        if self.programmed.shape[1] < cfg.cols:  # a smaller layer uses the first columns' ADCs
            c = self.programmed.shape[1]
            self.gain_pos, self.gain_neg = self.gain_pos[:c], self.gain_neg[:c]
        self._adc_rng = self._rng(_ADC_NOISE)
        self._cal_rng = self._rng(_CALIBRATION)
        self._cache = {}
        self._gains = None          # (key, gain rows) of `_gain_rows`

    def _rng(self, stage, *extra):
        ss = np.random.SeedSequence(self.seed.entropy, spawn_key=self.seed.spawn_key + (stage,) + extra)
        return np.random.default_rng(ss)

    @property
    def lsb(self):
        return self.cfg.lsb

    def conductances(self, t):
        """(g_pos, g_neg) at t (cached per t)."""
        return self._state(t)[:2]

    def _state(self, t):
        """(g_pos, g_neg, stacked, nonneg) at t, cached per t; `stacked` is the one matrix of
        `mvm`'s single matmul ([G+ G−], or [[G+ G−], [G− G+]] in 4 phases), built once per t;
        `nonneg`: no conductance is negative."""
        t = _time("t", t)
        if t not in self._cache:
            bits = int(np.float64(t).view(np.uint64))
            gp, gn = drift(self.cfg, self.programmed, t, self._rng(_DRIFT, bits))
            g2 = _stacked(self.cfg, gp, gn)
            self._cache[t] = (gp, gn, g2, g2 is not None and bool(g2.min() >= 0))
        return self._cache[t]

    def _gain_rows(self, rows):
        """[gain_pos, gain_neg] repeated on at least `rows` rows: the chunk-shaped gains of
        `_read_stacked`, built once and rebuilt only for more rows or when the gains change
        (their bytes are the key: a cheaper comparison than the arrays')."""
        key = (self.gain_pos.tobytes(), self.gain_neg.tobytes())
        kept = self._gains
        if kept is None or kept[1].shape[0] < rows or kept[0] != key:
            g = np.concatenate([self.gain_pos, self.gain_neg])
            kept = self._gains = (key, np.broadcast_to(g, (rows, g.size)).copy())
        return kept[1]

    def charges(self, x, t):
        return mvm(self.cfg, x, *self.conductances(t))

    def read(self, x, t, *, lsb=None, return_saturated=False, checked=False,
             count_saturated=False):
        """ADC counts (P, N) for inputs x at time t (and the `Saturation` with return_saturated,
        or the number of saturated counts, an int, with count_saturated: `Saturation.count`
        without the masks, which a read that only counts need not keep).

        Equal, bit for bit, to `adc(cfg, *mvm(cfg, x, *conductances(t)), gain_pos, gain_neg,
        lsb, rng)`, computed faster: one matmul of both polarities into one (vectors, 2·cols)
        array on the matrix cached per t, and the ADC in place on it (`_read_stacked`: the same
        rounding of every value). P and N are the two halves of one int64 array (views).

        `checked=True`: x is a float64 array of codes the caller has already checked (integers
        in [−x_max, x_max]; e.g. the compiler's executor checks and converts a layer's tensor
        once, before im2col, which only copies values): read neither passes over x to check it
        nor converts it (the cost of those passes is a fifth of the matmul's on a conv layer).
        The counts are the same as with the int64 codes."""
        if return_saturated and count_saturated:
            raise ValueError("`return_saturated` and `count_saturated` exclude each other")
        gp, gn, g2, nonneg = self._state(t)
        lsb = self.lsb if lsb is None else lsb
        x = _checked_codes(x, gp.shape[0]) if checked else _inputs(self.cfg, x, gp.shape[0])
        if g2 is None or not (isinstance(lsb, float) or np.ndim(lsb) == 0):
            # integer codes or per-column LSBs: the plain stages
            qp, qn = mvm(self.cfg, x, gp, gn)
            out = adc(self.cfg, qp, qn, self.gain_pos, self.gain_neg, lsb, self._adc_rng,
                      return_saturated=return_saturated or count_saturated)
            return out[:2] + (out[2].count,) if count_saturated else out
        lsb = _positive_scalar("lsb", lsb)
        x2 = np.atleast_2d(x)
        if self.cfg.phases == 4:
            x2 = np.concatenate([np.maximum(x2, 0), np.maximum(-x2, 0)], axis=1)
        chunks = _chunk_edges(x2.shape[0], g2.shape[1])
        out = _read_stacked(self.cfg, x2, g2, self._gain_rows(chunks[1]), lsb, self._adc_rng,
                            "count" if count_saturated else bool(return_saturated),
                            g2_nonneg=nonneg, chunks=chunks)
        if x.ndim == 1:
            out = (out[0][0], out[1][0]) + ((Saturation(*(m[0] for m in out[2])),)
                                            if return_saturated else out[2:])
        return out

    def calibrate(self, *, reads=8, levels=(0.2, 0.8), lsb=None):
        """Gain estimates (est_pos, est_neg) from reference reads (`calibrate_gains`)."""
        return calibrate_gains(self.cfg, self.gain_pos, self.gain_neg,
                               self.lsb if lsb is None else lsb, self._cal_rng,
                               reads=reads, levels=levels)

    def drift_reference(self, x_ref, t, *, lsb=None, per_line=False):
        """`drift_reference` of this tile at time t."""
        return drift_reference(self.cfg, x_ref, *self.conductances(t), self.gain_pos,
                               self.gain_neg, self.lsb if lsb is None else lsb, self._adc_rng,
                               per_line=per_line)


def tile_layer(cfg, weights, seed):
    """A layer of any size on tiles: (split, tiles) with tiles[r][k] the `Tile` of block (r, k),
    seeded by SeedSequence(seed, spawn_key=(100, r, k)) (independent tiles, reproducible)."""
    w = _floats("weights", weights)
    split = split_layer(cfg, w)
    root = _seed_sequence(seed)
    tiles = [[Tile(cfg, split.block(w, r, k),
                   np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key + (_LAYER, r, k)))
              for k in range(split.col_tiles)] for r in range(split.row_tiles)]
    return split, tiles
