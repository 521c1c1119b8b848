"""The model of mixed-precision training on PCM conductance pairs with ESSOP outer products
(spec: design/essop.md, "Mixed-precision training with ESSOP"; tile model: golden/tile.py): the
device, the pair, the outer product, the network, one training run and the training step the
RTL tie-in replays. The study over seeds and bitstream lengths is studies/training.py.

The scheme (Nandakumar et al.'s mixed-precision training): every weight is a pair of PCM devices,
W = α·(G+ − G−) with α = `w_max`/g_max. The forward pass runs through the analog tile model
(PWM-quantised inputs, ADC counts, a digital scale); the backward pass is digital float with the
weights as read from the conductances. The weight update ΔW = η·x·δᵀ (per sample, η = 2^−lr_shift)
goes into a float32 accumulator χ per weight; whole device pulses are sent when |χ| passes the
device step ε: n = trunc(χ/ε), χ −= n·ε, n > 0 potentiates G+, n < 0 potentiates G−. A pair whose
larger conductance passes `refresh_at`·g_max is refreshed: its difference is read, both devices
are reset and the difference is programmed again into one of them.

One function per step: `device_factors`, `mean_step`, `pulse`, `apply_pulses` (the device),
`transfer`, `program_pairs`, `refresh` (the pair), `weight_update` (the outer product in one of
three modes), `PCMLayer` (one layer's pairs, χ and counters), `forward` / `backward` (the MLP),
`train` (one run), `training_step` and `rtl_vectors` (one mini-batch's products, the stimulus
and expectation of verif/tb_training.py), `tile_batch` (the driver's tiling, also the energy
workload of synth/power_workload.py).

Outer-product modes of `weight_update` (x the layer's input activations, d = −δ):
- "float": the exact float64 product η·Σ_b x_b·d_bᵀ;
- "exact": ESSOP bit-exact, `golden.essop.product_stream` over the products in the driver's order
  (sample by sample, and within a sample the tiles of `golden.essop.tile_beats`), the LFSR state
  threaded through the whole run (reseeded once at the start); x and d converted to binary16 with
  `golden.fp16.encode`; the RTL reproduces these counts bit for bit (verif/tb_training.py);
- "fast": `golden.essop.outer_product_fast` on the same tiles (binomial counts from NumPy).
Both ESSOP modes return C·2^E decoded exactly (`golden.essop.decode`), E carrying −lr_shift.

Device model (the spec fixes only its shape; the numbers are chosen here, see docs/training.md).
Conductances in µS. A pulse on a device of conductance G with device factor f changes it by
    ΔG = step · f · (1 − G/g_max) · (1 + c2c·ξ),   ξ ~ N(0, 1) per pulse,
then G is clipped to [0, g_max]: a state-dependent step that shrinks linearly to zero at g_max
(saturation), with cycle-to-cycle spread c2c (relative), and a device-to-device factor f drawn
once per device, log-normal with mean 1 and relative spread `d2d`. ε = α·step, the nominal step
of a fresh device in weight units. Programming (initial weights and refresh) puts |w|/α on one
device of the pair and 0 on the other, plus the programming noise of design/tile.md (σ a
quadratic in G/g_max, clipped at 0) when `program_noise` is on.

Mini-batches. Each sample's outer product is one ESSOP product (or a set of tiles); the B
products of a mini-batch are summed into χ, then the pulses are sent (once per mini-batch).
With accumulation (`TrainConfig.acc` = K > 1, "exact" mode; the engine is the preset with
`acc_max` = K) the driver sends a mini-batch tile by tile, the B samples' products of one tile
in a row ordered by their E (`tile_major`), and lets up to K consecutive products of one E add up in the counters
(`golden.essop.group_flags`: a group never mixes tiles or exponents, so no product is refused);
one read-out per group (`golden.essop.accumulated_stream`). The update is exactly the sum of the
single products' updates sent in that order: the counters add what the single read-outs would
have carried. "fast" mode draws the same sums per product, so K changes nothing there.
Biases are digital (the periphery's per-column offset) and train in float32 in every mode.
"""

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from golden import essop as ge
from golden import fp16
from hdl.config import ESSOPConfig, essop_preset

__all__ = [
    "DeviceConfig", "TrainConfig", "MODES", "BLS",
    "device_factors", "mean_step", "pulse", "apply_pulses", "transfer", "program_noise_sigma",
    "program_pairs", "refresh", "log2_of_bl", "tile_batch", "untile", "tile_major", "weight_update",
    "PCMLayer", "FloatLayer", "TileForward", "Network", "forward", "backward", "accuracy", "train",
    "training_step", "rtl_vectors",
]

BLS = (8, 16, 32, 64, 128)
MODES = ("fp32", "float", "fp16", "exact", "fast")



# -- configs ---------------------------------------------------------------------------------------

def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"`{name}` must be a positive finite number, not {value!r}")


def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"`{name}` must be a non-negative finite number, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """The PCM pulse-update model (see the module docstring). Conductances in µS."""

    g_max: float = 25.0        # the tile's g_max
    step: float = 0.75         # mean step of a fresh device (f = 1) at G = 0: g_max / 33
    c2c: float = 0.5           # relative σ of one pulse's step (cycle to cycle)
    d2d: float = 0.2           # relative σ of a device's mean step (device to device, log-normal)
    refresh_at: float = 0.8    # refresh a pair when max(G+, G−) >= refresh_at·g_max
    program_noise: bool = True

    def __post_init__(self):
        _positive("g_max", self.g_max)
        _positive("step", self.step)
        if self.step >= self.g_max:
            raise ValueError(f"`step` must be below `g_max` ({self.g_max}), not {self.step}")
        _non_negative("c2c", self.c2c)
        _non_negative("d2d", self.d2d)
        if not 0 < self.refresh_at <= 1:
            raise ValueError(f"`refresh_at` must be in (0, 1], not {self.refresh_at!r}")
        if not isinstance(self.program_noise, bool):
            raise TypeError(f"`program_noise` must be a bool, not {self.program_noise!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run's network and schedule. η = 2^−lr_shift; ε = w_max·step/g_max."""

    hidden: int = 32
    epochs: int = 20
    batch: int = 10
    lr_shift: int = 5
    lr_decay: tuple = (0.5, 0.75)   # fractions of the epochs after which lr_shift grows by one
    w_max: float = 1.0         # |W| of a pair with G+ − G− = g_max
    essop: str | ESSOPConfig = "paper"   # ESSOP preset name (hdl/config.py) or a config
    acc: int = 1               # K: products accumulated per read-out in "exact" mode
    analog: bool = True        # forward pass through golden.tile (False: float W as read)
    adc_bits: int = 12         # golden.tile's default
    adc_range: float = 32.0    # ADC full scale in full-scale products (golden.tile.TileConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)

    def __post_init__(self):
        if not isinstance(self.essop, (str, ESSOPConfig)):
            raise TypeError(f"`essop` must be an ESSOP preset name or an ESSOPConfig, not "
                            f"{type(self.essop).__name__} {self.essop!r}")
        for name in ("hidden", "epochs", "batch", "lr_shift", "adc_bits", "acc"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ValueError(f"`{name}` must be a positive int, not {v!r}")
        if self.lr_shift > self.essop_cfg.lr_shift_max:
            raise ValueError(f"`lr_shift` must be at most {self.essop_cfg.lr_shift_max} (the ESSOP "
                             f"register), not {self.lr_shift}")
        if not isinstance(self.lr_decay, tuple) or not all(
                isinstance(f, (int, float)) and 0 < f < 1 for f in self.lr_decay):
            raise ValueError(f"`lr_decay` must be a tuple of fractions in (0, 1), not {self.lr_decay!r}")
        if self.lr_shift + len(self.lr_decay) > self.essop_cfg.lr_shift_max:
            raise ValueError(f"`lr_shift` + len(`lr_decay`) must be at most "
                             f"{self.essop_cfg.lr_shift_max}, not {self.lr_shift + len(self.lr_decay)}")
        _positive("w_max", self.w_max)
        _positive("adc_range", self.adc_range)

    @property
    def essop_cfg(self) -> ESSOPConfig:
        """The preset (or the config given), with counters for `acc` products when `acc` > 1
        (`acc_max` validates it)."""
        cfg = self.essop if isinstance(self.essop, ESSOPConfig) else essop_preset(self.essop)
        return dataclasses.replace(cfg, acc_max=self.acc) if self.acc > cfg.acc_max else cfg

    @property
    def eta(self):
        """The initial learning rate."""
        return 2.0 ** -self.lr_shift

    def lr_shift_at(self, epoch):
        """lr_shift in epoch `epoch` (from 0): one more after each `lr_decay` fraction."""
        return self.lr_shift + sum(epoch >= f * self.epochs for f in self.lr_decay)

    @property
    def alpha(self):
        """Weight per µS of G+ − G−."""
        return self.w_max / self.device.g_max

    @property
    def eps(self):
        """ε, the nominal device step in weight units."""
        return self.alpha * self.device.step


# -- the device ------------------------------------------------------------------------------------

def _rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator, not {type(rng).__name__}")
    return rng


def device_factors(dev: DeviceConfig, shape, rng):
    """Device-to-device factors of the mean step: log-normal, mean 1, relative σ `d2d`."""
    s2 = np.log1p(dev.d2d ** 2)
    return np.exp(_rng(rng).normal(-s2 / 2, np.sqrt(s2), size=shape))


def mean_step(dev: DeviceConfig, g, factor):
    """Expected step of one pulse at conductance g: step·f·(1 − g/g_max), >= 0."""
    return dev.step * factor * np.clip(1.0 - np.asarray(g) / dev.g_max, 0.0, 1.0)


def pulse(dev: DeviceConfig, g, factor, rng):
    """One potentiation pulse on every device of g (µS): the new conductances."""
    g = np.asarray(g, dtype=np.float64)
    noise = 1.0 + dev.c2c * _rng(rng).standard_normal(g.shape)
    return np.clip(g + mean_step(dev, g, factor) * noise, 0.0, dev.g_max)


def apply_pulses(dev: DeviceConfig, g, factor, n, rng):
    """n[i] >= 0 pulses on device i, one after another (each step depends on the state the
    previous one left). Returns the new conductances."""
    n = np.asarray(n)
    if n.shape != np.shape(g):
        raise ValueError(f"`n` must have the shape of `g` {np.shape(g)}, not {n.shape}")
    if n.size and n.min() < 0:
        raise ValueError("`n` must be non-negative pulse counts")
    g = np.array(g, dtype=np.float64)
    factor = np.broadcast_to(factor, g.shape)
    for k in range(int(n.max()) if n.size else 0):  # true sequential state: the device
        hit = n > k
        g[hit] = pulse(dev, g[hit], factor[hit], rng)
    return g


def transfer(chi, eps):
    """n = trunc(χ/ε) pulses per weight and the remainder χ − n·ε (float32)."""
    chi = np.asarray(chi, dtype=np.float32)
    if not np.all(np.isfinite(chi)):
        raise ValueError("`chi` holds NaN or infinity")
    _positive("eps", eps)
    n = np.trunc(chi / np.float32(eps)).astype(np.int64)
    return n, (chi - n.astype(np.float32) * np.float32(eps)).astype(np.float32)


def program_noise_sigma(dev: DeviceConfig, g):
    """σ (µS) of programming a device to g: `golden.tile.prog_noise_sigma` (the public PCM fit of
    design/tile.md) at this g_max."""
    from golden import tile as gt

    return gt.prog_noise_sigma(gt.TileConfig(rows=1, cols=1, g_max=dev.g_max), g)


def program_pairs(dev: DeviceConfig, w_us, rng):
    """Program differences w_us = G+ − G− (µS): |w| on one device, 0 on the other, each with
    programming noise (if on), clipped to [0, g_max]. Returns (g_pos, g_neg)."""
    w = np.asarray(w_us, dtype=np.float64)
    if not np.all(np.isfinite(w)) or (w.size and np.abs(w).max() > dev.g_max):
        raise ValueError(f"`w_us` must be finite and within ±g_max ({dev.g_max})")
    target = np.stack([np.maximum(w, 0.0), np.maximum(-w, 0.0)])
    if dev.program_noise:
        target = target + program_noise_sigma(dev, target) * _rng(rng).standard_normal(target.shape)
    g = np.clip(target, 0.0, dev.g_max)
    return g[0], g[1]


def refresh(dev: DeviceConfig, g_pos, g_neg, rng):
    """Pairs with max(G+, G−) >= refresh_at·g_max: read G+ − G−, reset both, reprogram the
    difference. Returns (g_pos, g_neg, mask of refreshed pairs)."""
    g_pos = np.array(g_pos, dtype=np.float64)
    g_neg = np.array(g_neg, dtype=np.float64)
    mask = np.maximum(g_pos, g_neg) >= dev.refresh_at * dev.g_max
    if mask.any():
        g_pos[mask], g_neg[mask] = program_pairs(dev, g_pos[mask] - g_neg[mask], rng)
    return g_pos, g_neg, mask


# -- the outer product -----------------------------------------------------------------------------

def log2_of_bl(cfg: ESSOPConfig, bl):
    """log2 of a bitstream length: a power of two in [1, 2^log2_bl_max]."""
    if isinstance(bl, bool) or not isinstance(bl, (int, np.integer)) or bl < 1 or bl & (bl - 1) \
            or bl > cfg.bl_max:
        raise ValueError(f"`bl` must be a power of two in [1, {cfg.bl_max}] (ESSOP "
                         f"log2_bl_max {cfg.log2_bl_max}), not {bl!r}")
    return int(bl).bit_length() - 1


def tile_batch(cfg: ESSOPConfig, x_bits, d_bits):
    """`golden.essop.tile_beats` of every sample at once: x (B, M), d (B, N) binary16 patterns
    to xs (B, R·K, rows) and ds (B, R·K, cols), product p = a·K + b of a sample carrying row tile
    a and column tile b, the last tiles padded with +0."""
    x, d = np.asarray(x_bits), np.asarray(d_bits)
    (bsz, m), n = x.shape, d.shape[1]
    r_tiles, k_tiles = -(-m // cfg.rows), -(-n // cfg.cols)
    xp = np.zeros((bsz, r_tiles * cfg.rows), dtype=np.int64)
    xp[:, :m] = x
    dp = np.zeros((bsz, k_tiles * cfg.cols), dtype=np.int64)
    dp[:, :n] = d
    return (np.repeat(xp.reshape(bsz, r_tiles, cfg.rows), k_tiles, axis=1),
            np.tile(dp.reshape(bsz, k_tiles, cfg.cols), (1, r_tiles, 1)))


def untile(cfg: ESSOPConfig, tiles, m, n):
    """Per-product (R·K, rows, cols) values of one layer back to (M, N)."""
    r_tiles, k_tiles = -(-m // cfg.rows), -(-n // cfg.cols)
    t = np.asarray(tiles).reshape(r_tiles, k_tiles, cfg.rows, cfg.cols)
    return t.transpose(0, 2, 1, 3).reshape(r_tiles * cfg.rows, k_tiles * cfg.cols)[:m, :n]


def _finite_fp16(name, v):
    """Float operands to binary16, refusing NaN, infinities and values beyond binary16."""
    v = np.asarray(v, dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"`{name}` holds NaN or infinity (at index {idx}): ESSOP would reject "
                         f"the product")
    bits = fp16.encode(v)
    if fp16.isinf(bits).any():
        raise ValueError(f"`{name}` holds a value beyond binary16 (|v| >= 65520): "
                         f"{np.abs(v).max():.6g}")
    return bits


def weight_update(mode, cfg: ESSOPConfig, x, d, lr_shift, bl=None, rng=None, state=None, acc=1):
    """ΔW = η·Σ_b x_b·d_bᵀ (η = 2^−lr_shift) of a mini-batch x (B, M), d (B, N), float64 (M, N).

    mode "float": exact; "fp16": the FP16 outer-product array's products (x and d rounded to
    binary16, every x_i·d_j rounded once, `golden.baselines.outer_product`), summed in float64;
    "exact": ESSOP bit-exact from LFSR `state` (a pair of states, from
    `golden.essop.reseed` or a previous call), returns (ΔW, new state, counts (B·R·K, rows, cols),
    exponents (B·R·K,)); "fast": ESSOP statistics from `rng`. Returns ΔW for "float" and "fast".
    `acc` > 1 ("exact"; at most `cfg.acc_max`): the products tile by tile, up to `acc` of one E
    per read-out (see the module docstring); the counts and exponents are then the read-outs'
    (G, rows, cols) and (G,).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    if x.ndim != 2 or d.ndim != 2 or x.shape[0] != d.shape[0]:
        raise ValueError(f"`x` and `d` must be (B, M) and (B, N) with the same B, not "
                         f"{x.shape} and {d.shape}")
    if isinstance(lr_shift, bool) or not isinstance(lr_shift, (int, np.integer)) \
            or not 0 <= lr_shift <= cfg.lr_shift_max:
        raise ValueError(f"`lr_shift` must be an int in [0, {cfg.lr_shift_max}], not {lr_shift!r}")
    m, n = x.shape[1], d.shape[1]
    if mode == "float":
        for name, v in (("x", x), ("d", d)):
            if not np.all(np.isfinite(v)):
                raise ValueError(f"`{name}` holds NaN or infinity")
        return np.ldexp(x.T @ d, -int(lr_shift))
    if mode == "fp16":
        from golden import baselines as gb
        from hdl.config import FP16OuterConfig
        arr = FP16OuterConfig(name="train", rows=m, cols=n)
        p = gb.outer_product(arr, _finite_fp16("x", x), _finite_fp16("d", d))    # (B, M, N)
        return np.ldexp(fp16.to_float(p).astype(np.float64).sum(axis=0), -int(lr_shift))
    if mode not in ("exact", "fast"):
        raise ValueError(f"`mode` must be 'float', 'fp16', 'exact' or 'fast', not {mode!r}")
    if isinstance(acc, bool) or not isinstance(acc, (int, np.integer)) or not 1 <= acc <= cfg.acc_max:
        raise ValueError(f"`acc` must be an int in [1, {cfg.acc_max}] (ESSOP acc_max), not {acc!r}")
    log2_bl = log2_of_bl(cfg, bl)
    xs, ds = tile_batch(cfg, _finite_fp16("x", x), _finite_fp16("d", d))
    if mode == "exact" and acc > 1:
        if state is None:
            raise ValueError("mode 'exact' needs the LFSR `state` (golden.essop.reseed)")
        return _accumulated_update(cfg, xs, ds, log2_bl, int(lr_shift), state, int(acc), m, n)
    if mode == "fast":
        res = ge.outer_product_fast(cfg, xs, ds, log2_bl, int(lr_shift), _rng(rng))
    else:
        if state is None:
            raise ValueError("mode 'exact' needs the LFSR `state` (golden.essop.reseed)")
        bsz, t = xs.shape[:2]
        res = ge.product_stream(cfg, xs.reshape(bsz * t, cfg.rows), ds.reshape(bsz * t, cfg.cols),
                                log2_bl, int(lr_shift), *state)
    if res.error.any():
        raise ValueError("ESSOP flagged an error product")  # unreachable after the checks above
    dw_tiles = ge.decode(cfg, res.c, res.exp[..., None, None]).reshape((-1,) + xs.shape[1:2]
                                                                       + (cfg.rows, cfg.cols))
    dw = untile(cfg, dw_tiles.sum(axis=0), m, n)
    if mode == "fast":
        return dw
    return dw, (res.state_x, res.state_d), res.c, res.exp


def tile_major(cfg: ESSOPConfig, xs, ds, log2_bl, lr_shift):
    """A mini-batch's products (B, T, …) in the accumulating driver's order: tile by tile, and
    within a tile the B samples ordered by the E of their product (stable), so that products
    of one E follow each other and can share a read-out. Returns xs (T·B, rows), ds (T·B, cols),
    tile index (T·B,)."""
    bsz, t = xs.shape[:2]
    px, pd = xs.transpose(1, 0, 2).reshape(t * bsz, -1), ds.transpose(1, 0, 2).reshape(t * bsz, -1)
    tiles = np.repeat(np.arange(t), bsz)
    e, _ = ge.product_exponents(cfg, px, pd, log2_bl, lr_shift)
    order = np.lexsort((e, tiles))
    return px[order], pd[order], tiles[order]


def _accumulated_update(cfg, xs, ds, log2_bl, lr_shift, state, acc, m, n):
    """`weight_update` "exact" with up to `acc` products per read-out."""
    px, pd, tiles = tile_major(cfg, xs, ds, log2_bl, lr_shift)
    flags = ge.group_flags(cfg, px, pd, log2_bl, lr_shift, acc, keys=tiles)
    res, flagged = ge.accumulated_stream(cfg, px, pd, flags, log2_bl, lr_shift, *state)
    if res.error.any() or flagged.any():
        raise ValueError("ESSOP flagged a group")  # unreachable: group_flags forms clean groups
    per_tile = np.zeros((xs.shape[1], cfg.rows, cfg.cols))
    np.add.at(per_tile, tiles[flags == 0], ge.decode(cfg, res.c, res.exp[:, None, None]))
    return untile(cfg, per_tile, m, n), (res.state_x, res.state_d), res.c, res.exp


# -- one layer of PCM pairs ------------------------------------------------------------------------

class PCMLayer:
    """A layer's weights (fan_in, fan_out) as conductance pairs, its χ accumulators, device
    factors and counters; `tile` adapts the analog forward pass (None: float W as read)."""

    def __init__(self, tcfg: TrainConfig, w, rng):
        self.tcfg, self.dev = tcfg, tcfg.device
        self.rng = rng
        w = np.asarray(w, dtype=np.float64)
        self.g_pos, self.g_neg = program_pairs(self.dev, np.clip(w / tcfg.alpha, -self.dev.g_max,
                                                                 self.dev.g_max), rng)
        self.f_pos = device_factors(self.dev, w.shape, rng)
        self.f_neg = device_factors(self.dev, w.shape, rng)
        self.chi = np.zeros(w.shape, dtype=np.float32)
        self.pulses = 0
        self.refreshes = 0
        self.tile = None

    @property
    def w(self):
        """The weights as read: α·(G+ − G−)."""
        return self.tcfg.alpha * (self.g_pos - self.g_neg)

    def update(self, dw):
        """χ += ΔW, transfer whole pulses, refresh pairs near g_max."""
        self.chi = (self.chi + np.asarray(dw, dtype=np.float32)).astype(np.float32)
        n, self.chi = transfer(self.chi, self.tcfg.eps)
        if n.any():
            self.g_pos = apply_pulses(self.dev, self.g_pos, self.f_pos, np.maximum(n, 0), self.rng)
            self.g_neg = apply_pulses(self.dev, self.g_neg, self.f_neg, np.maximum(-n, 0), self.rng)
            self.pulses += int(np.abs(n).sum())
        self.g_pos, self.g_neg, mask = refresh(self.dev, self.g_pos, self.g_neg, self.rng)
        self.refreshes += int(mask.sum())
        return n


class FloatLayer:
    """The FP32 software baseline's layer: float32 weights, plain SGD."""

    def __init__(self, w):
        self.w = np.asarray(w, dtype=np.float32)
        self.pulses = self.refreshes = 0
        self.tile = None

    def update(self, dw):
        self.w = (self.w + np.asarray(dw, dtype=np.float32)).astype(np.float32)


# -- the analog forward pass -----------------------------------------------------------------------

class TileForward:
    """y = x·W through golden.tile: per-sample PWM scaling of x to sign + 7 bits (the largest
    |x| of a sample maps to x_max), `mvm`, `adc` with gains drawn once per layer, and a digital
    scale that divides the gains as calibrated (`calibrate_gains`) out and turns counts back into
    x·W units: y = (P/ĝ+ − N/ĝ−)·lsb·(s/x_max)·α."""

    def __init__(self, tcfg: TrainConfig, rows, cols, rng):
        from golden import tile as gt

        self.gt = gt
        self.cfg = gt.TileConfig(rows=rows, cols=cols, g_max=tcfg.device.g_max,
                                 adc_bits=tcfg.adc_bits, adc_range=tcfg.adc_range)
        self.lsb = self.cfg.lsb
        gain_rng, cal_rng, self.rng = rng.spawn(3)
        self.gain_pos, self.gain_neg = gt.adc_gains(self.cfg, gain_rng)
        self.est_pos, self.est_neg = gt.calibrate_gains(self.cfg, self.gain_pos, self.gain_neg,
                                                        self.lsb, cal_rng)
        self.alpha = tcfg.alpha
        self.saturated = 0
        self.reads = 0

    def __call__(self, x, g_pos, g_neg):
        gt, cfg = self.gt, self.cfg
        x = np.asarray(x, dtype=np.float64)
        s = np.abs(x).max(axis=-1, keepdims=True)
        s = np.where(s > 0, s, 1.0)
        x_int = np.rint(x / s * cfg.x_max).astype(np.int64)
        q_pos, q_neg = gt.mvm(cfg, x_int, g_pos, g_neg)
        p, n, sat = gt.adc(cfg, q_pos, q_neg, self.gain_pos, self.gain_neg, self.lsb, rng=self.rng,
                           return_saturated=True)
        self.saturated += sat.count
        self.reads += 2 * p.size
        y = (p / self.est_pos - n / self.est_neg) * self.lsb
        return y * (s / cfg.x_max) * self.alpha


# -- the network -----------------------------------------------------------------------------------

class Network:
    """64 → hidden → 10 MLP with ReLU; weights in `layers` (PCMLayer or FloatLayer), digital
    float32 biases."""

    def __init__(self, tcfg: TrainConfig, mode, seed, n_in=64, n_out=10):
        self.tcfg, self.mode = tcfg, mode
        init = np.random.default_rng([seed, 1])    # the same initial weights in every mode
        sizes = [(n_in, tcfg.hidden), (tcfg.hidden, n_out)]
        ws = [init.normal(0.0, np.sqrt(2.0 / a), size=(a, b)) for a, b in sizes]
        ws = [np.clip(w, -0.9 * tcfg.w_max, 0.9 * tcfg.w_max) for w in ws]
        self.biases = [np.zeros(b, dtype=np.float32) for _, b in sizes]
        if mode == "fp32":
            self.layers = [FloatLayer(w) for w in ws]
            return
        dev_rng = np.random.default_rng([seed, 2])
        self.layers = [PCMLayer(tcfg, w, dev_rng) for w in ws]
        if tcfg.analog:
            adc_rng = np.random.default_rng([seed, 3])
            for layer, (a, b) in zip(self.layers, sizes):
                layer.tile = TileForward(tcfg, a, b, adc_rng)

    def matmul(self, k, x):
        layer = self.layers[k]
        if layer.tile is None:
            return x @ layer.w
        return layer.tile(x, layer.g_pos, layer.g_neg)


def forward(net: Network, x):
    """Returns (pre-activation of the hidden layer, hidden activations, logits)."""
    a = net.matmul(0, x) + net.biases[0]
    h = np.maximum(a, 0.0)
    z = net.matmul(1, h) + net.biases[1]
    return a, h, z


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def backward(net: Network, a, z, y):
    """δ of the logits (softmax cross-entropy) and of the hidden layer, with the weights as read."""
    dz = _softmax(z)
    dz[np.arange(len(y)), y] -= 1.0
    da = (dz @ np.asarray(net.layers[1].w, dtype=np.float64).T) * (a > 0)
    return da, dz


def accuracy(net: Network, x, y):
    return float((forward(net, x)[2].argmax(axis=-1) == y).mean())


# -- one run ---------------------------------------------------------------------------------------

def train(tcfg: TrainConfig, mode, data, seed, bl=None, progress=None, hook=None):
    """Train one network: `mode` "fp32" (software baseline), or mixed precision with the outer
    product "float", "exact" (ESSOP, bit-exact) or "fast" (ESSOP statistics) at bitstream
    length `bl`. `hook(info)` sees every update: a dict of step, layer, x, d (= −δ), dw,
    lr_shift, and in "exact" mode the LFSR state before it and the counts and exponents.
    Returns a dict: test accuracy per epoch (index 0: before training), final accuracy, pulses,
    refreshes, wall time."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, not {mode!r}")
    ecfg = tcfg.essop_cfg
    if mode in ("exact", "fast"):
        log2_of_bl(ecfg, bl)
    t0 = time.perf_counter()
    net = Network(tcfg, mode, seed)
    order_rng = np.random.default_rng([seed, 4])      # the same sample order in every mode
    op_rng = np.random.default_rng([seed, 5])
    seeds = np.random.default_rng([seed, 6]).integers(1, ecfg.lfsr_max + 1, size=2)
    state = ge.reseed(ecfg, int(seeds[0]), int(seeds[1]))
    acc = [accuracy(net, data.x_test, data.y_test)]
    step = readouts = products = 0
    for epoch in range(tcfg.epochs):
        order = order_rng.permutation(len(data.y_train))
        lr_shift = tcfg.lr_shift_at(epoch)
        for start in range(0, len(order), tcfg.batch):
            idx = order[start:start + tcfg.batch]
            x, y = data.x_train[idx], data.y_train[idx]
            a, h, z = forward(net, x)
            da, dz = backward(net, a, z, y)
            for k, (xin, delta) in enumerate(((x, da), (h, dz))):
                d = -delta
                info = None
                if mode == "fp32" or mode == "float":
                    dw = weight_update("float", ecfg, xin, d, lr_shift)
                elif mode == "fp16":
                    dw = weight_update("fp16", ecfg, xin, d, lr_shift)
                elif mode == "fast":
                    dw = weight_update("fast", ecfg, xin, d, lr_shift, bl=bl, rng=op_rng)
                else:
                    before = state
                    dw, state, c, e = weight_update("exact", ecfg, xin, d, lr_shift, bl=bl,
                                                    state=state, acc=tcfg.acc)
                    readouts += len(c)
                    products += len(xin) * -(-xin.shape[1] // ecfg.rows) * -(-d.shape[1] // ecfg.cols)
                    info = {"state": before, "c": c, "exp": e}
                if hook is not None:
                    hook(dict(step=step, layer=k, x=xin, d=d, dw=dw, lr_shift=lr_shift, **(info or {})))
                net.layers[k].update(dw)
                net.biases[k] = (net.biases[k] + np.float32(2.0 ** -lr_shift) * d.sum(axis=0)
                                 ).astype(np.float32)
            step += 1
        acc.append(accuracy(net, data.x_test, data.y_test))
        if progress:
            progress(f"{mode}{'' if bl is None else f' BL {bl}'} seed {seed}: epoch {epoch + 1}/"
                     f"{tcfg.epochs} test accuracy {100 * acc[-1]:.1f} %")
    return {"mode": mode, "bl": bl, "seed": seed, "acc": acc, "final": acc[-1],
            "pulses": sum(la.pulses for la in net.layers),
            "refreshes": sum(la.refreshes for la in net.layers),
            "steps": step, "products": products, "readouts": readouts,
            "wall_s": time.perf_counter() - t0}


def training_step(tcfg: TrainConfig, data, seed, step=3, bl=32):
    """Both layers' updates of mini-batch `step` (in the first epoch) of an ESSOP exact-mode run:
    a list of two dicts (layer 0, layer 1) with x, d = −δ (B, fan_in) and (B, fan_out), the LFSR
    state before the layer's products, the counts (B·R·K, rows, cols) and exponents of those
    products, ΔW and lr_shift: the stimulus and expectation of the RTL tie-in."""
    got = []

    class _Stop(Exception):
        pass

    def hook(info):
        if info["step"] == step:
            got.append(info)
            if info["layer"] == 1:
                raise _Stop

    try:
        train(dataclasses.replace(tcfg, epochs=1), "exact", data, seed, bl=bl, hook=hook)
    except _Stop:
        return got
    raise ValueError(f"`step` {step} is beyond the first epoch")


def rtl_vectors(tcfg: TrainConfig, data, seed, step=3, bl=32):
    """`training_step` as the ESSOP driver sends it, JSON-ready: every product's x and δ tiles
    (binary16 patterns, layer 0's products then layer 1's), the registers, the seeds that load
    the LFSRs with the run's state before layer 0 (in shared mode a state is a valid seed), and
    the counts and exponents the training run computed (`weight_update` "exact")."""
    cfg = tcfg.essop_cfg
    if cfg.per_converter:
        raise ValueError("the RTL tie-in reseeds with the run's LFSR state: shared rng only")
    layers = training_step(tcfg, data, seed, step, bl)
    out = {"essop": cfg.name, "seed": seed, "step": step, "bl": bl, "log2_bl": log2_of_bl(cfg, bl),
           "seeds": [int(v) for v in layers[0]["state"]], "layers": []}
    for info in layers:
        xs, ds = tile_batch(cfg, fp16.encode(info["x"]), fp16.encode(info["d"]))
        out["layers"].append({
            "layer": info["layer"], "m": int(info["x"].shape[1]), "n": int(info["d"].shape[1]),
            "batch": int(info["x"].shape[0]), "lr_shift": int(info["lr_shift"]),
            "xs": xs.reshape(-1, cfg.rows).tolist(), "ds": ds.reshape(-1, cfg.cols).tolist(),
            "c": np.asarray(info["c"]).tolist(), "exp": np.asarray(info["exp"]).tolist(),
            "dw": np.asarray(info["dw"]).tolist()})
    return out
