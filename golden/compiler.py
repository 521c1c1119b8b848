"""Parameter compiler: from a trained network to programmed tiles and NMPU / LDPU register images.

Two steps, as on a chip:

1. `plan` (once per network, no device draws): fold batch norm into a per-channel scale s_j and
   bias c_j; choose the input scale of every layer (int8 codes of the previous layer, or
   round(127·x) for the [0, 1] pixels: the PWM magnitude range) and the output scale (int8
   codes: 127 over a high percentile of the float activations on training data, or a tighter
   clip for 4-bit codes (`act_clip`: a lower percentile or the MSE-optimal clip); tensors joined
   by a residual connection share one scale, because the NMPU adds R in output units); normalise
   each column to its largest |weight| (weights in [−1, 1]); choose the per-column polarity the
   NMPU compiler asks for (a negative scale swaps G+ and G−); split the bias between the NMPU
   offset register (what fits at the shift the scales want, with a factor-2 margin) and analog
   bias rows driven at full input (the rest); choose the ADC LSB of the layer (the 99.99th
   percentile of the line charges on training data, with room for the largest ADC gain); split
   the layer over tiles (balanced row tiles, partial sums through the residual input); give
   every tensor its code width (`out_bits` of the NMPU that writes it: the activation width the
   tiles read, or the wide width of the network's output) and run the layers whose row tiles
   chain partial sums, and the output layer, on the wide NMPU (`wide_cfg`).

2. `ProgrammedNetwork` (once per programming seed): program every tile (`golden.tile.Tile`),
   estimate every line's ADC gains (`Tile.calibrate`), take the global drift reference at
   programming time. `compile(t)` then gives, per tile, α_j (output LSB per ADC count:
   s_out·s_j·wmax_j·lsb/(s_in·g_max), times the polarity, times the drift factor of the tile at
   t), β_j, the estimated gains, and both register images: `golden.nmpu.compile_params` and
   `golden.baselines.compile_params` (their records carry the per-column error report).
   `matrix(path, t)` is the executor `golden.network.run` calls: it reads the tiles and applies
   the post-processing of the path: "float" (ideal: exact α, β, one rounding to int8 at the end,
   row tiles summed in float), "ldpu" (FP16 LDPU golden), "nmpu" (NMPU golden). Every path reads
   the same programmed devices, gains and read noise: their differences are paired.

Output of a layer y_j = relu(α_j·(P_j/ĝp_j − N_j/ĝn_j) + β_j + R_j), int8 codes.

Widths (4-bit activations): the tiles read codes of their `input_bits` (sign + magnitude PWM),
which are the output codes of the activation NMPU (`nmpu_cfg.out_bits`). The logits and the
partial sums of a row-split layer need more: with `wide_cfg` (the same NMPU with a larger
`out_bits`, e.g. 8), the network's output layer writes codes of that width at its own, finer
scale, and every row tile of a row-split layer runs on the wide NMPU, so its partial sums hop at
the wide width (at the layer's output LSB: headroom, no saturation at the activation codes);
the last row tile of a hidden row-split layer is then saturated to the activation codes
(`golden.nmpu.saturate` of the activation config: a wide NMPU whose output is clamped to the
activation width is an activation NMPU with a wide residual input). `wide_cfg` None: every
layer at the activation width, row tiles hopping at activation codes (the narrow chain).
"""

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np

from golden import baselines as gb
from golden import nmpu as gn
from golden import tile as gt
from golden.network import (BN_EPS, MATRIX_OPS, FloatMatrix, MaxPool, Network, check_act_clip,
                            clip_level, layer_rows, run)
from hdl.config import LDPU_PRESETS, NMPU_PRESETS, RoundMode

__all__ = ["fold_bn", "code_max", "LayerPlan", "Plan", "plan", "encode_input", "TileImage",
           "ProgrammedNetwork", "AnalogMatrix", "PATHS", "X_MAX", "round_int8", "compile_tile",
           "post_process", "layer_bound", "layer_reference", "requantise"]

PATHS = ("float", "ldpu", "nmpu")
X_MAX = 127                 # PWM magnitude of the input codes (sign + 7 bits)
OUT_PERCENTILE = 99.99      # of |activation| on training data → int8 code 127
ADC_PERCENTILE = 99.99      # of the line charges → the ADC full scale (÷ the largest gain)
OFFSET_MARGIN = 0.5         # share of the NMPU offset range the digital bias may use
MAX_BIAS_ROWS = 32
RECAL_MODES = ("none", "twin", "moments")
RECAL_SOURCES = ("codes", "counts")
RECAL_IMAGES = 500          # calibration images a recalibration reads (at most)
RECAL_GAIN_RANGE = (0.25, 4.0)   # a column gain estimate outside it is not applied (see `recal`)
_RECAL_STREAM = 0x5EC       # the recalibration reads' own ADC noise stream (per tile and t)


def code_max(bits):
    """Largest magnitude of sign + (bits − 1)-bit codes (8 → 127, 4 → 7)."""
    return (1 << (bits - 1)) - 1


def round_int8(y, x_max=X_MAX):
    """The ideal int8 code of a real value: nearest, ties to even, saturated (to the codes of
    sign + `x_max` magnitude width, [−x_max − 1, x_max], for narrower activations)."""
    return np.clip(np.rint(y), -x_max - 1, x_max).astype(np.int64)


def fold_bn(op, p):
    """(W, scale, bias) with relu(bn(x·W)) = relu(scale·(x·W) + bias) (eval-mode BN)."""
    W = np.asarray(p["W"], dtype=np.float64)
    if W.shape != (op.fan_in, op.c_out):
        raise ValueError(f"layer {op.name!r}: weights of shape {W.shape}, expected "
                         f"{(op.fan_in, op.c_out)}")
    if not np.all(np.isfinite(W)):
        i, j = np.argwhere(~np.isfinite(W))[0]
        raise ValueError(f"layer {op.name!r}: weight [{i}, {j}] is NaN or infinite")
    if op.bn:
        for k in ("gamma", "beta", "mean", "var"):
            a = np.asarray(p[k], dtype=np.float64)
            if a.shape != (op.c_out,):
                raise ValueError(f"layer {op.name!r}: BN `{k}` of shape {a.shape}, expected "
                                 f"{(op.c_out,)}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"layer {op.name!r}: BN `{k}` of channel "
                                 f"{int(np.flatnonzero(~np.isfinite(a))[0])} is NaN or infinite")
        if np.any(p["var"] < 0):
            raise ValueError(f"layer {op.name!r}: BN variance of channel "
                             f"{int(np.flatnonzero(p['var'] < 0)[0])} is negative")
        scale = p["gamma"] / np.sqrt(p["var"] + BN_EPS)
        bias = p["beta"] - p["mean"] * scale
    else:
        scale = np.ones(op.c_out)
        bias = np.asarray(p["b"], dtype=np.float64)
        if bias.shape != (op.c_out,) or not np.all(np.isfinite(bias)):
            raise ValueError(f"layer {op.name!r}: bias must be {op.c_out} finite values")
    return W, scale, bias


# -- plan ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerPlan:
    """Everything about one matrix layer that does not depend on device draws.

    `weights`: (fan_in + bias_rows, c_out) in [−1, 1], polarity applied (the crossbar image);
    `a_unit`: |output LSB per unit of Σ x_code·w| per column (α = a_unit·lsb/g_max);
    `beta_digital`: the bias left to the periphery (output LSB), on the last row tile;
    `row_edges`, `col_edges`: the tile split; `x_ref`: drift-reference inputs (fan_in codes);
    `out_bits`: the code width of the layer's output tensor; `wide`: the layer's tiles run on the
    plan's wide NMPU (row-split layers and the output layer when the plan has one);
    `hop_frac_bits`: the partial sums of a hidden row-split layer run 2^hop_frac_bits finer than
    its output LSB (α and β of its tiles scaled by that; the last output requantised).
    """

    op: object
    s_in: float
    s_out: float
    scale: np.ndarray
    bias: np.ndarray
    wmax: np.ndarray
    polarity: np.ndarray
    weights: np.ndarray
    bias_rows: int
    a_unit: np.ndarray
    beta_digital: np.ndarray
    lsb: float
    split: gt.LayerSplit
    x_ref: np.ndarray
    relu: bool
    g_max: float
    residual: str = None
    out_bits: int = 8
    wide: bool = False
    hop_frac_bits: int = 0

    @property
    def out_max(self):
        """Largest magnitude of the layer's output codes."""
        return code_max(self.out_bits)

    @property
    def alpha(self):
        """α_j for ideal gains and no drift (output LSB per count, ≥ 0: polarity applied)."""
        return self.a_unit * self.lsb / self.g_max


@dataclass(frozen=True)
class Plan:
    net: Network
    tile_cfg: gt.TileConfig
    nmpu_cfg: object
    ldpu_cfg: object
    bias_mode: str
    layers: dict
    input_scale: float
    adc_gain: str = "calibrated"
    wide_cfg: object = None
    drift_comp: str = "tile"
    act_clip: object = None
    recal: str = "none"
    recal_source: str = "codes"
    recal_at: float = None
    recal_x: np.ndarray = field(default=None, compare=False, repr=False)

    @property
    def x_max(self):
        """Largest activation code magnitude: the PWM input range (127 for 8-bit, 7 for 4-bit)."""
        return self.tile_cfg.x_max

    def nmpu_of(self, name):
        """The NMPU config layer `name`'s tiles run on (the wide one for `LayerPlan.wide`)."""
        return self.wide_cfg if self.layers[name].wide else self.nmpu_cfg

    def encode_input(self, x):
        return encode_input(self, x)


def encode_input(plan, x):
    """Network input [0, 1] → PWM codes round(x·x_max) (x_max 127 for 8-bit inputs)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("network input holds NaN or infinity")
    return np.clip(np.rint(x * plan.input_scale), -plan.x_max, plan.x_max).astype(np.int64)


def _scale_groups(cfg):
    """Tensors that must share one output scale (residual sources and their adding layer)."""
    parent = {}

    def find(a):
        while parent.get(a, a) != a:
            a = parent[a]
        return a

    for op in cfg.ops:
        if isinstance(op, MATRIX_OPS) and op.residual is not None:
            parent[find(op.dst)] = find(op.residual)
    return find


def _balanced_split(tile_cfg, rows, cols):
    n_r = -(-rows // tile_cfg.rows)
    n_c = -(-cols // tile_cfg.cols)
    r_edges = tuple(int(round(i * rows / n_r)) for i in range(n_r + 1))
    c_edges = tuple(int(round(i * cols / n_c)) for i in range(n_c + 1))
    return gt.LayerSplit((rows, cols), r_edges, c_edges)


def _free_layer(nmpu_cfg):
    """The config with run-time layer registers: the plan's polarity query (α = ±1) and bias
    caps need the shift the codes allow, not a `static_layer`'s fixed one (which
    `compile_tile` then enforces, naming a column that cannot fit)."""
    if not nmpu_cfg.static_layer:
        return nmpu_cfg
    return dataclasses.replace(nmpu_cfg, static_layer=False, static_shift=0, static_pre_cut=0,
                               static_round=int(RoundMode.HALF_EVEN))


def _nominal_shift_caps(nmpu_cfg, alpha):
    """Per column, the bias (output LSB) the NMPU offset holds at the total shift the scale alone
    allows, times OFFSET_MARGIN (gains and drift move the shift by about one step)."""
    cols = nmpu_cfg.columns
    a = np.zeros(cols)
    a[:alpha.size] = alpha
    c = gn.compile_params(_free_layer(nmpu_cfg), a, 0.0)
    s_tot = np.asarray(c.total_shift, dtype=np.float64)[:alpha.size]
    o_hi = nmpu_cfg.offset_range[1]
    return OFFSET_MARGIN * o_hi * np.exp2(nmpu_cfg.offset_align - s_tot)


def _check_wide(nmpu_cfg, wide_cfg):
    """The wide NMPU is the activation NMPU with a larger `out_bits` (at most the LDPU's 8)."""
    if wide_cfg.out_bits > 8:
        raise ValueError(f"`wide_cfg.out_bits` ({wide_cfg.out_bits}) must be at most 8 (the wide "
                         f"codes also pass the LDPU's int8)")
    if wide_cfg.out_bits < nmpu_cfg.out_bits:
        raise ValueError(f"`wide_cfg.out_bits` ({wide_cfg.out_bits}) must be at least "
                         f"`nmpu_cfg.out_bits` ({nmpu_cfg.out_bits}): the wide path carries the "
                         f"partial sums and logits")
    for f in dataclasses.fields(nmpu_cfg):
        a, b = getattr(nmpu_cfg, f.name), getattr(wide_cfg, f.name)
        if f.name not in ("name", "out_bits") and a != b:
            raise ValueError(f"the wide NMPU must be the activation NMPU with another `out_bits`: "
                             f"`{f.name}` is {b!r} in `wide_cfg` and {a!r} in `nmpu_cfg`")


def _output_tensors(cfg):
    """The network's output tensor and the tensors it is pooled from (no matrix layer between)."""
    out = {cfg.output}
    for op in reversed(cfg.ops):
        if not isinstance(op, MATRIX_OPS) and op.dst in out:
            out.add(op.src)
    return out


def _read_tensors(cfg):
    """The tensors matrix layers read (inputs and residual inputs, not the network input), each
    with the matrix layer's output it holds codes of (through max pools: same scale)."""
    origin = {}
    for op in cfg.ops:
        if isinstance(op, MaxPool):
            origin[op.dst] = origin.get(op.src, op.src)
    out = {}
    for op in cfg.matrix_ops:
        for src in (op.src, op.residual):
            if src not in (None, "x"):
                out[src] = origin.get(src, src)
    return out


def plan(net: Network, x_calib, *, tile_cfg=None, nmpu_cfg=None, ldpu_cfg=None, wide_cfg=None,
         bias_mode="split", calib_vectors=4096, seed=0, adc_gain="calibrated", drift_comp="tile",
         hop_frac_bits=0, act_clip=None, recal="none", recal_source="codes",
         recal_at=None):
    """The `Plan` of `net`, calibrated on the inputs `x_calib` (see the module doc).

    Activations are codes of the tile's `input_bits` (sign + magnitude; 8: int8, 4: [−7, 7]),
    which must be the NMPU's `out_bits`. `wide_cfg`: the NMPU of the network's output layer and
    of every row-split layer's tiles (the activation NMPU with a larger `out_bits`); None: the
    activation NMPU everywhere. `adc_gain`: "calibrated" (every line's gains estimated
    from reference reads, as the chip calibrates) or "fixed" (AnalogNets: one nominal gain,
    the lines' spread left uncorrected). `drift_comp`: "tile" (one global drift factor per tile
    from its reference reads, as the chips do) or "column" (one factor per column from the same
    reads, summed per line: a diagnosis of what a global factor leaves). `hop_frac_bits`: the
    partial sums of hidden row-split layers carry that many bits below the activation LSB (at most
    `wide_cfg.out_bits` − `nmpu_cfg.out_bits`, which keeps them at least as wide as the activation
    range); the last tile's output is requantised by the activation NMPU's own compress (round
    half to even) and saturate steps, an output requantiser the RTL does not have.
    `act_clip`: the activation clip. None (default): every tensor's scale maps the 99.99th
    percentile of its |activation| to the largest code. A percentile p or "mse" (see
    `golden.network.clip_level`, the same function the hardware-aware trainer's `act_clip`
    uses): the hidden tensors' scales come from that clip taken on what the tiles read (each
    layer's input after pooling, and its residual input, as the trainer quantises them), the
    largest over a residual group; the network's output (and what is pooled into it) keeps the
    99.99th percentile.

    `recal`: the per-column recalibration of α and β at every read time t, from the first
    `RECAL_IMAGES` of `x_calib` run through the programmed tiles at t (no labels;
    `ProgrammedNetwork.compile`). "none" (default): the compiled α, β with the drift
    compensation alone. "twin": per column, the least-squares line u ≈ g·z + o of the
    analog pre-activation u (α·(P/ĝp − N/ĝn) + β over the row tiles, before the residual and
    the ReLU) against the float layer z on the same input codes (the digital twin; the weights
    are the compiler's); then α/g and (β − o)/g. "moments": g and o match the mean and standard
    deviation of u to those of the float network's own pre-activation on the same images
    (adaptive batch-norm statistics, Joshi et al., Nature Communications 2020). Layer by layer,
    each layer's inputs from the layers before it as already recalibrated (ideal post-processing
    path, so every path gets the same register images and stays paired). A gain g outside
    `RECAL_GAIN_RANGE` or of a column whose target does not vary is not applied (g = 1; the
    offset still is). `recal_source`: what the fit reads of u. "codes" (default): what the
    layer's NMPU outputs with its ReLU off and no residual from another layer (a row-split
    layer's partial-sum chain stays on), u rounded to its output codes and saturated at their
    range (a calibration pass of the chip as it is); "counts": u itself,
    from the ADC counts (needs a raw count read-out the NMPU does not have). `recal_at`: None
    (default) fits at every read time t; a time (s after programming) fits once, then, and
    applies those gains and offsets at every t on top of that t's drift compensation (a chip
    that recalibrated at `recal_at` and not since)."""
    tile_cfg = gt.TileConfig(name="pcm") if tile_cfg is None else tile_cfg
    nmpu_cfg = NMPU_PRESETS["paper"] if nmpu_cfg is None else nmpu_cfg
    ldpu_cfg = LDPU_PRESETS["paper"] if ldpu_cfg is None else ldpu_cfg
    if bias_mode not in ("split", "digital"):
        raise ValueError(f"`bias_mode` must be 'split' or 'digital', not {bias_mode!r}")
    if adc_gain not in ("calibrated", "fixed"):
        raise ValueError(f"`adc_gain` must be 'calibrated' or 'fixed', not {adc_gain!r}")
    if drift_comp not in ("tile", "column"):
        raise ValueError(f"`drift_comp` must be 'tile' or 'column', not {drift_comp!r}")
    if recal not in RECAL_MODES:
        raise ValueError(f"`recal` must be one of {RECAL_MODES}, not {recal!r}")
    if recal_source not in RECAL_SOURCES:
        raise ValueError(f"`recal_source` must be one of {RECAL_SOURCES}, not {recal_source!r}")
    if recal_at is not None:
        if recal == "none":
            raise ValueError(f"`recal_at` ({recal_at!r}) needs a `recal` mode, not 'none'")
        if isinstance(recal_at, bool) or not isinstance(recal_at, (int, float, np.integer,
                                                                  np.floating)) \
                or not np.isfinite(recal_at) or recal_at < 0:
            raise ValueError(f"`recal_at` must be a finite time >= 0 (s), not {recal_at!r}")
        recal_at = float(recal_at)
    if tile_cfg.cols > nmpu_cfg.columns or tile_cfg.cols > ldpu_cfg.columns:
        raise ValueError(f"the tile has {tile_cfg.cols} lines but the NMPU/LDPU serve "
                         f"{nmpu_cfg.columns}/{ldpu_cfg.columns} columns")
    if tile_cfg.adc_bits != nmpu_cfg.adc_bits or tile_cfg.adc_bits != ldpu_cfg.adc_bits:
        raise ValueError(f"ADC width differs: tile {tile_cfg.adc_bits}, NMPU {nmpu_cfg.adc_bits}, "
                         f"LDPU {ldpu_cfg.adc_bits} bits")
    xm = tile_cfg.x_max  # the activation code range of this plan
    if nmpu_cfg.out_bits > 8:
        raise ValueError(f"the NMPU's `out_bits` ({nmpu_cfg.out_bits}) must be at most 8 (the "
                         f"activation codes also pass the LDPU's int8)")
    if xm != code_max(nmpu_cfg.out_bits):
        raise ValueError(f"the tile's `input_bits` must be {nmpu_cfg.out_bits} (the NMPU's "
                         f"`out_bits`: activations are its output codes), not {tile_cfg.input_bits}")
    wide_cfg = nmpu_cfg if wide_cfg is None else wide_cfg
    _check_wide(nmpu_cfg, wide_cfg)
    check_act_clip(act_clip, "act_clip")
    if isinstance(hop_frac_bits, bool) or not isinstance(hop_frac_bits, (int, np.integer)) \
            or not 0 <= hop_frac_bits <= wide_cfg.out_bits - nmpu_cfg.out_bits:
        raise ValueError(f"`hop_frac_bits` must be an int in [0, `wide_cfg.out_bits` − "
                         f"`nmpu_cfg.out_bits`] = [0, {wide_cfg.out_bits - nmpu_cfg.out_bits}], "
                         f"not {hop_frac_bits!r}")
    cfg = net.cfg
    for op in cfg.matrix_ops:  # validate every layer before the calibration pass uses it
        if op.name not in net.params:
            raise ValueError(f"layer {op.name!r} has no parameters")
        fold_bn(op, net.params[op.name])
    x_calib = np.asarray(x_calib, dtype=np.float64)
    if not np.all(np.isfinite(x_calib)):
        raise ValueError("calibration inputs hold NaN or infinity")
    trace = {}
    run(cfg, x_calib, FloatMatrix(net.params), trace=trace)
    find = _scale_groups(cfg)
    wide_out = _output_tensors(cfg)
    peak = {}
    for name, a in trace.items():
        if name == "x":
            continue
        q = float(np.percentile(np.abs(a), OUT_PERCENTILE))
        g = find(name)
        peak[g] = max(peak.get(g, 0.0), q)
    if act_clip is not None:
        read = _read_tensors(cfg)
        clipped = {}
        for name, origin in read.items():
            if origin not in wide_out:
                q = clip_level(np.abs(trace[name]), nmpu_cfg.out_bits, act_clip)
                g = find(origin)
                clipped[g] = max(clipped.get(g, 0.0), q)
        peak.update(clipped)
    # code widths: the output (and what is pooled into it) at the wide width, the rest at the
    # activation width the tiles read; a residual group shares one scale, so one width
    bits_of = {name: wide_cfg.out_bits if name in wide_out else nmpu_cfg.out_bits
               for name in trace if name != "x"}
    group_bits = {}
    for name, b in bits_of.items():
        b0, first = group_bits.setdefault(find(name), (b, name))
        if b0 != b:
            raise ValueError(f"tensors {first!r} ({b0}-bit codes) and {name!r} ({b}-bit) share one "
                             f"scale through a residual connection: the network output has "
                             f"`wide_cfg.out_bits` ({wide_cfg.out_bits}), activations "
                             f"`nmpu_cfg.out_bits` ({nmpu_cfg.out_bits})")
    for op in cfg.matrix_ops:
        for src in (op.src, op.residual):
            if src not in (None, "x") and bits_of[src] != tile_cfg.input_bits:
                raise ValueError(f"layer {op.name!r} reads {src!r}, {bits_of[src]}-bit codes (the "
                                 f"network output: `wide_cfg.out_bits`), but the tile's "
                                 f"`input_bits` is {tile_cfg.input_bits}")
    s_of = {"x": float(xm)}
    for name in trace:
        if name != "x":
            if peak[find(name)] <= 0:
                raise ValueError(f"tensor {name!r} is zero on the calibration data")
            s_of[name] = code_max(bits_of[name]) / peak[find(name)]
    rng = np.random.default_rng(seed)
    layers = {}
    for op in cfg.ops:
        if not isinstance(op, MATRIX_OPS):
            s_of[op.dst] = s_of[op.src]
            continue
        W, scale, bias = fold_bn(op, net.params[op.name])
        s_in, s_out = s_of[op.src], s_of[op.dst]
        if op.residual is not None and s_of[op.residual] != s_out:
            raise AssertionError("residual scales were not tied")
        wmax = np.abs(W).max(axis=0)
        wmax = np.where(wmax > 0, wmax, 1.0)
        unit = s_out * scale * wmax / s_in               # output LSB per unit of Σ x_code·w
        # polarity from the NMPU compiler (α's sign); the same crossbar serves every path. The
        # activation config stands for the wide one here: `compile_params` (polarity, shift,
        # offset) does not depend on `out_bits`
        alpha_sign = np.zeros(nmpu_cfg.columns)
        alpha_sign[:op.c_out] = np.sign(unit) + (unit == 0)
        polarity = gn.compile_params(_free_layer(nmpu_cfg), alpha_sign, 0.0).polarity[:op.c_out]
        a_unit = np.abs(unit)
        a_unit = np.where(a_unit > 0, a_unit, 1e-12)
        w_main = W / wmax * polarity
        beta = s_out * bias
        # layer inputs on the calibration data, as codes
        src = trace[op.src]
        rows = layer_rows(op, src)
        xc = np.clip(np.rint(rows * s_in), -xm, xm)
        if xc.shape[0] > calib_vectors:
            xc = xc[rng.choice(xc.shape[0], calib_vectors, replace=False)]
        # bias split: the first pass fixes the LSB without bias rows, then the digital cap
        lsb0 = _adc_lsb(tile_cfg, xc, w_main)
        if bias_mode == "digital":
            beta_d = beta.copy()
        else:
            cap = _nominal_shift_caps(nmpu_cfg, a_unit * lsb0 / tile_cfg.g_max)
            beta_d = np.clip(beta, -cap, cap)
        need = (beta - beta_d) / (xm * a_unit)        # Σ w over the bias rows, per column
        n_b = int(np.ceil(np.abs(need).max() - 1e-12)) if np.any(need != 0) else 0
        if n_b > MAX_BIAS_ROWS:
            j = int(np.argmax(np.abs(need)))
            raise ValueError(f"layer {op.name!r}: the bias of column {j} needs {n_b} bias rows "
                             f"(at most {MAX_BIAS_ROWS}); use bias_mode='digital'")
        w_bias = np.repeat((need / max(n_b, 1))[None, :], n_b, axis=0)
        weights = np.concatenate([w_main, w_bias], axis=0)
        weights = np.clip(weights, -1.0, 1.0)
        x_full = np.concatenate([xc, np.full((xc.shape[0], n_b), xm)], axis=1)
        # bias rows only add charge: the LSB grows, α with it, the shift can only drop and the
        # offset range only widen, so the digital part chosen at lsb0 still fits
        lsb = _adc_lsb(tile_cfg, x_full, weights)
        split = _balanced_split(tile_cfg, weights.shape[0], op.c_out)
        x_ref = xc[:32].astype(np.int64)
        layers[op.name] = LayerPlan(
            op=op, s_in=s_in, s_out=s_out, scale=scale, bias=bias, wmax=wmax, polarity=polarity,
            weights=weights, bias_rows=n_b, a_unit=a_unit, beta_digital=beta_d, lsb=lsb,
            split=split, x_ref=x_ref, relu=op.relu, g_max=tile_cfg.g_max, residual=op.residual,
            out_bits=bits_of[op.dst], wide=op.dst in wide_out or split.row_tiles > 1,
            hop_frac_bits=int(hop_frac_bits) if split.row_tiles > 1
            and bits_of[op.dst] < wide_cfg.out_bits else 0)
    for lp in layers.values():
        if lp.residual is not None and lp.split.row_tiles > 1:
            raise ValueError(f"layer {lp.op.name!r} needs both a residual connection and a row "
                             f"split over {lp.split.row_tiles} tiles: the NMPU has one residual "
                             f"input")
    return Plan(net=net, tile_cfg=tile_cfg, nmpu_cfg=nmpu_cfg, ldpu_cfg=ldpu_cfg,
                bias_mode=bias_mode, layers=layers, input_scale=float(xm), adc_gain=adc_gain,
                wide_cfg=wide_cfg, drift_comp=drift_comp, act_clip=act_clip, recal=recal,
                recal_source=recal_source, recal_at=recal_at,
                recal_x=None if recal == "none" else np.array(x_calib[:RECAL_IMAGES], np.float64))


def _adc_lsb(tile_cfg, x_codes, weights):
    """Charge per count so that the ADC_PERCENTILE of the ideal line charges (both polarities)
    reads adc_max at the largest gain."""
    gp = np.maximum(weights, 0.0) * tile_cfg.g_max
    gm = np.maximum(-weights, 0.0) * tile_cfg.g_max
    q = np.concatenate([x_codes @ gp, x_codes @ gm], axis=1)
    full = float(np.percentile(q, ADC_PERCENTILE))
    if full <= 0:
        full = float(q.max()) if q.max() > 0 else tile_cfg.full_scale
    return full * (1.0 + tile_cfg.adc_gain_bound) / tile_cfg.adc_max


# -- programming and compiling at time t -----------------------------------------------------------

@dataclass
class TileImage:
    """One tile's post-processing at time t: real parameters and both register images."""

    alpha: np.ndarray           # output LSB per count (ideal-gain units), drift compensated
    beta: np.ndarray
    gain_p: np.ndarray          # estimated gains
    gain_n: np.ndarray
    drift_factor: float
    nmpu: gn.Compiled
    ldpu: gb.LDPUCompiled
    relu: bool
    residual_en: bool


def _pad(a, n, fill):
    out = np.full(n, fill, dtype=np.float64)
    out[:np.size(a)] = a
    return out


class ProgrammedNetwork:
    """The tiles of a plan, programmed with one seed; gains estimated, drift reference taken."""

    T_PROGRAM = 0.0

    def __init__(self, plan: Plan, seed, *, calibration_reads=8):
        self.plan = plan
        self.seed = int(seed)
        self.tiles = {}
        # a layer's position in the plan: its index in the programming seed tree
        self.layer_index = {name: li for li, name in enumerate(plan.layers)}
        self.gains = {}
        self.ref0 = {}
        for li, (name, lp) in enumerate(plan.layers.items()):
            sp = lp.split
            tiles = [[gt.Tile(plan.tile_cfg, sp.block(lp.weights, r, k),
                              np.random.SeedSequence([self.seed, li, r, k]))
                      for k in range(sp.col_tiles)] for r in range(sp.row_tiles)]
            self.tiles[name] = tiles
            for r in range(sp.row_tiles):
                for k in range(sp.col_tiles):
                    t = tiles[r][k]
                    self.gains[name, r, k] = (
                        _calibrate(t, calibration_reads, lp.lsb) if plan.adc_gain == "calibrated"
                        else (np.ones(t.gain_pos.size), np.ones(t.gain_neg.size)))
                    self.ref0[name, r, k] = self._reference(lp, r, t, self.T_PROGRAM)
        self._images = {}
        self._targets = None        # "moments": the float network's pre-activations (lazy)
        self._fits = {}             # t → {(layer, column tile): (g, o)} of the fit at t
        self.recal_report = {}      # t → per layer: the range of g and the RMS of o at t

    def _ref_inputs(self, lp, r):
        x = np.concatenate([lp.x_ref, np.full((lp.x_ref.shape[0], lp.bias_rows), self.plan.x_max)],
                           axis=1)
        return lp.split.inputs(x, r)

    def _reference(self, lp, r, tile, t):
        x = self._ref_inputs(lp, r)
        for _ in range(8):  # a saturating reference would be biased: halve the inputs
            try:
                return tile.drift_reference(x, t, lsb=lp.lsb,
                                            per_line=self.plan.drift_comp == "column")
            except ValueError:
                x = x // 2
        raise ValueError(f"layer {lp.op.name!r}: drift reference saturates")

    def compile(self, t):
        """{(layer, r, k): TileImage} at time t (cached)."""
        if t in self._images:
            return self._images[t]
        p = self.plan
        images = {}
        for name, lp in p.layers.items():
            sp = lp.split
            for r in range(sp.row_tiles):
                for k in range(sp.col_tiles):
                    tile = self.tiles[name][r][k]
                    cols = sp.cols_of(k)
                    ref = self._reference(lp, r, tile, t)
                    f = _drift_factors(self.ref0[name, r, k], ref)
                    fine = 2.0 ** lp.hop_frac_bits     # exact: a power of two
                    alpha = lp.alpha[cols] * f * fine
                    last = r == sp.row_tiles - 1
                    beta = lp.beta_digital[cols] * fine if last else np.zeros(alpha.size)
                    ep, en = self.gains[name, r, k]
                    images[name, r, k] = compile_tile(p.nmpu_of(name), p.ldpu_cfg, alpha, beta, ep, en,
                                                      float(np.mean(f)), relu=lp.relu and last,
                                                      residual_en=(lp.residual is not None) or r > 0)
        if p.recal != "none" and (p.recal_at is None or p.recal_at == t):
            images = self._recalibrate(images, t)
        elif p.recal != "none":      # fitted at recal_at, applied on top of t's compensation
            fits = self._fits.get(p.recal_at)
            if fits is None:
                self.compile(p.recal_at)
                fits = self._fits[p.recal_at]
            images = dict(images)
            for (name, k), (g, o) in fits.items():
                _correct(p, images, name, k, g, o)
        self._images[t] = images
        return images

    def _recalibrate(self, images, t):
        """`plan(recal=...)`: the images with every column's α and β corrected, layer by layer."""
        p = self.plan
        if p.recal == "moments" and self._targets is None:
            self._targets = {}
            run(p.net.cfg, p.recal_x, _PreActivations(p, self._targets))
        rec = _Recalibrator(self, dict(images), t)
        run(p.net.cfg, encode_input(p, p.recal_x), rec)
        self.recal_report[t] = rec.report
        self._fits[t] = rec.fits
        return rec.images

    def matrix(self, path, t, record=None):
        return AnalogMatrix(self, path, t, record)

    def logits(self, path, t, x, record=None):
        """Output codes of the network on inputs x (floats in [0, 1]) through `path`."""
        return run(self.plan.net.cfg, encode_input(self.plan, x), self.matrix(path, t, record))


class _PreActivations:
    """The float network executor (`golden.network.FloatMatrix`) that records every matrix
    layer's pre-activation (folded BN, before the residual and the ReLU) in output LSB."""

    def __init__(self, plan, out):
        self.plan, self.out, self.float = plan, out, FloatMatrix(plan.net.params)

    def __call__(self, op, rows, residual):
        self.out[op.name] = _pre_activation(self.plan, op, np.asarray(rows, np.float64))
        return self.float(op, rows, residual)


class _Recalibrator:
    """The `golden.network.run` executor of a recalibration at t: per layer it reads the tiles
    (with their own ADC noise stream, so the reads of the test images are those without a
    recalibration), fits every column's gain g and offset o (`plan`, `recal`), rewrites the
    layer's images and hands the recalibrated ideal output to the next layer."""

    def __init__(self, prog, images, t):
        self.prog, self.images, self.t = prog, images, t
        self.report, self.fits = {}, {}

    def rows(self, op, a):
        return _analog_rows(self.prog.plan, op, a)

    def _read(self, tile, x, lp, key):
        keep = tile._adc_rng
        tile._adc_rng = np.random.default_rng(np.random.SeedSequence(
            [self.prog.seed, _RECAL_STREAM, *key, int(round(self.t))]))
        try:
            return tile.read(x, self.t, lsb=lp.lsb, checked=True)
        finally:
            tile._adc_rng = keep

    def __call__(self, op, rows, residual):
        prog, plan = self.prog, self.prog.plan
        lp = plan.layers[op.name]
        sp = lp.split
        fine = 2.0 ** lp.hop_frac_bits
        nm_cfg, ld_cfg = plan.nmpu_of(op.name), plan.ldpu_cfg
        if plan.recal == "twin":    # the float layer on the same codes (bias inputs left out)
            target = _pre_activation(plan, op, rows[:, :op.fan_in] / lp.s_in)
        else:
            target = prog._targets[op.name]
        outs, gains, offsets = [], [], []
        for k in range(sp.col_tiles):
            cols = sp.cols_of(k)
            u = 0.0
            for r in range(sp.row_tiles):
                img = self.images[op.name, r, k]
                pc, nc = self._read(prog.tiles[op.name][r][k], sp.inputs(rows, r), lp,
                                    (prog.layer_index[op.name], r, k))
                u = u + post_process("float", nm_cfg, ld_cfg, _no_relu(img), pc, nc, None) / fine
            z = target[:, cols]
            if plan.recal_source == "codes":  # the NMPU's output codes (ReLU, residual off)
                top = code_max(nm_cfg.out_bits)
                g, o = _fit_column(plan.recal, np.clip(np.rint(u * fine), -top - 1, top) / fine, z)
            else:
                g, o = _fit_column(plan.recal, u, z)
            gains.append(g)
            offsets.append(o)
            self.fits[op.name, k] = (g, o)
            _correct(plan, self.images, op.name, k, g, o)
            y = (u - o) / g + (0 if residual is None else residual[:, cols])
            outs.append(round_int8(np.maximum(y, 0) if lp.relu else y, lp.out_max))
        g, o = np.concatenate(gains), np.concatenate(offsets)
        self.report[op.name] = {"gain_min": float(g.min()), "gain_max": float(g.max()),
                                "offset_rms": float(np.sqrt(np.mean(o ** 2)))}
        return np.concatenate(outs, axis=-1)


def _correct(plan, images, name, k, g, o):
    """Column tile k of layer `name` in `images` with its pre-activation u made (u − o)/g: every
    row tile's α divided by g, the last one's β made (β − o)/g (in its 2^hop_frac_bits finer
    units); the register images recompiled."""
    lp = plan.layers[name]
    rows = lp.split.row_tiles
    fine = 2.0 ** lp.hop_frac_bits
    for r in range(rows):
        img = images[name, r, k]
        beta = (img.beta - o * fine) / g if r == rows - 1 else img.beta
        images[name, r, k] = compile_tile(plan.nmpu_of(name), plan.ldpu_cfg, img.alpha / g, beta,
                                          img.gain_p, img.gain_n, img.drift_factor,
                                          relu=img.relu, residual_en=img.residual_en)


def _fit_column(mode, u, z):
    """Per column (last axis), the gain g and offset o of the analog values u against the
    target z (`plan`, `recal`): "twin" least squares u ≈ g·z + o on paired samples, "moments"
    equal means and standard deviations. g = 1 where it is not finite, outside
    `RECAL_GAIN_RANGE`, or the target or u does not vary."""
    u = np.asarray(u, np.float64).reshape(-1, np.shape(u)[-1])
    z = np.asarray(z, np.float64).reshape(-1, np.shape(z)[-1])
    su, sz = u.std(axis=0), z.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "twin":
            cov = ((u - u.mean(axis=0)) * (z - z.mean(axis=0))).mean(axis=0)
            g = cov / sz ** 2
        else:
            g = su / sz
    lo, hi = RECAL_GAIN_RANGE
    g = np.where(np.isfinite(g) & (g >= lo) & (g <= hi) & (sz > 0) & (su > 0), g, 1.0)
    return g, u.mean(axis=0) - g * z.mean(axis=0)


def _drift_factors(ref0, ref):
    """The drift factor of a tile (scalar references) or of each column (per-line references);
    1 where the reference at t is 0 (nothing to scale)."""
    if np.ndim(ref) == 0:
        return gt.drift_factor(ref0, ref) if ref > 0 else 1.0
    return np.array([gt.drift_factor(a, b) if a > 0 and b > 0 else 1.0
                     for a, b in zip(ref0, ref)])


def _calibrate(tile, reads, lsb):
    """`Tile.calibrate`; a tile using fewer lines than it has calibrates those lines only
    (`Tile.calibrate` broadcasts the gains against all `cols` lines)."""
    c = tile.gain_pos.size
    if c == tile.cfg.cols:
        return tile.calibrate(reads=reads, lsb=lsb)
    cfg = dataclasses.replace(tile.cfg, cols=c)
    return gt.calibrate_gains(cfg, tile.gain_pos, tile.gain_neg, lsb, tile._cal_rng, reads=reads)


def compile_tile(nmpu_cfg, ldpu_cfg, alpha, beta, gain_p, gain_n, factor=1.0, *, relu=False,
                 residual_en=False):
    """Both register images of one tile's columns (padded to the units' column count)."""
    c = np.size(alpha)
    nm = gn.compile_params(nmpu_cfg, _pad(alpha, nmpu_cfg.columns, 0.0),
                           _pad(beta, nmpu_cfg.columns, 0.0), _pad(gain_p, nmpu_cfg.columns, 1.0),
                           _pad(gain_n, nmpu_cfg.columns, 1.0))
    ld = gb.compile_params(ldpu_cfg, _pad(alpha, ldpu_cfg.columns, 0.0),
                           _pad(beta, ldpu_cfg.columns, 0.0), _pad(gain_p, ldpu_cfg.columns, 1.0),
                           _pad(gain_n, ldpu_cfg.columns, 1.0))
    if np.any(nm.polarity[:c] < 0):
        raise AssertionError("tile α must be non-negative: polarity is applied when programming")
    return TileImage(alpha=np.asarray(alpha, float), beta=np.asarray(beta, float),
                     gain_p=np.asarray(gain_p, float), gain_n=np.asarray(gain_n, float),
                     drift_factor=float(factor), nmpu=nm, ldpu=ld, relu=bool(relu),
                     residual_en=bool(residual_en))


def _cut(params, c):
    return type(params)(**{k: (None if v is None else np.asarray(v)[..., :c])
                           for k, v in params.__dict__.items()})


def post_process(path, nmpu_cfg, ldpu_cfg, img: TileImage, p, n, r):
    """One tile's outputs (vectors, c) from counts through `path`; `r` int8 codes or None.
    "float" returns the unrounded real value (the caller rounds once)."""
    c = p.shape[-1]
    rr = np.zeros_like(p) if r is None else r
    if path == "float":
        y = img.alpha * (p / img.gain_p - n / img.gain_n) + img.beta
        if img.residual_en:
            y = y + rr
        return np.maximum(y, 0.0) if img.relu else y
    if path == "nmpu":
        regs = dict(shift=img.nmpu.shift, pre_cut=0, round_mode=RoundMode.HALF_EVEN)
        regs |= gn.static_fields(nmpu_cfg)  # a static layer's constants (same shift by then)
        layer = gn.NMPULayer(**regs, relu_mid=0, relu_out=int(img.relu),
                             residual_en=int(img.residual_en))
        kw = {"r": rr} if nmpu_cfg.residual else {}
        return gn.forward(nmpu_cfg, layer, _cut(img.nmpu.params, c), p=p, n=n, **kw)
    if path == "ldpu":
        layer = gb.LDPULayer(relu_out=int(img.relu), residual_en=int(img.residual_en))
        kw = {"r": rr} if ldpu_cfg.residual else {}
        return gb.forward(ldpu_cfg, layer, _cut(img.ldpu.params, c), p, n, **kw)
    raise ValueError(f"`path` must be one of {PATHS}, not {path!r}")


def layer_bound(nmpu_cfg, img: TileImage, p, n, gain_p=None, gain_n=None):
    """Per value, the quantisation bound (output LSB) of one NMPU tile's output against the real
    value α·(q+ − q−)/lsb + β of its charges, when the true ADC gains are `gain_p`, `gain_n`
    (default: the estimates) and there is no noise: the final rounding (0.5), the ADC floor of
    both counts (α/gp + α/gn), the gain estimate (α·P·|1/ĝp − 1/gp| + likewise N), the scale
    codes (|sp − exact|·P + |sn − exact|·N, at 2^−s) and the offset code."""
    c = p.shape[-1]
    nm = img.nmpu
    gp = img.gain_p if gain_p is None else np.asarray(gain_p, dtype=np.float64)
    gm = img.gain_n if gain_n is None else np.asarray(gain_n, dtype=np.float64)
    s = np.asarray(nm.total_shift, dtype=np.float64)[:c]
    codes = (np.abs(nm.scale_err_p[:c]) * p + np.abs(nm.scale_err_n[:c]) * n) * np.exp2(-s)
    gains = img.alpha * (p * np.abs(1 / img.gain_p - 1 / gp) + n * np.abs(1 / img.gain_n - 1 / gm))
    return (0.5 + img.alpha / gp + img.alpha / gm + gains + codes + np.abs(nm.offset_err[:c])
            + 1e-9)


def _pre_activation(plan, op, x):
    """The float layer's pre-activation (folded BN, before the residual and the ReLU) on inputs
    `x` in float units, in output LSB: s_out·(scale·(x·W) + bias)."""
    W, scale, bias = fold_bn(op, plan.net.params[op.name])
    return plan.layers[op.name].s_out * (scale * (x @ W) + bias)


def layer_reference(plan, op, rows, residual=None):
    """The float layer (folded BN) on the same input codes, in output LSB, real-valued and not
    saturated: s_out·(scale·((rows/s_in)·W) + bias) + R, then the ReLU."""
    y = _pre_activation(plan, op, np.asarray(rows, dtype=np.float64) / plan.layers[op.name].s_in)
    if residual is not None:
        y = y + residual
    return np.maximum(y, 0.0) if op.relu else y


class AnalogMatrix:
    """The `golden.network.run` executor of one path at time t: int8 codes in, int8 codes out.

    With `record` (a dict), per layer it appends the path's output codes and, on the same counts,
    the outputs of every path's post-processing ("float" rounded once) for the error budget."""

    def __init__(self, prog: ProgrammedNetwork, path, t, record=None):
        if path not in PATHS:
            raise ValueError(f"`path` must be one of {PATHS}, not {path!r}")
        self.prog, self.path, self.t, self.record = prog, path, t, record
        self.images = prog.compile(t)
        self.saturated = 0
        self.digests = {}           # layer → digest of the ADC counts this executor read
        self._rows = None           # the last rows `rows` built (read without a second check)

    def rows(self, op, a):
        """The input the tiles of `op` read, from the tensor `a` of int8 codes (`golden.network.run`
        calls this instead of `layer_rows`): the codes clipped to the PWM range [−x_max, x_max]
        and converted to float64 once, before im2col (which only copies them: 9x fewer values
        than its rows; small integers, exact in float64), then the rows with the layer's analog
        bias inputs (x_max) appended in the same array. The tiles read them as checked codes."""
        self._rows = _analog_rows(self.prog.plan, op, a)
        return self._rows

    def __call__(self, op, rows, residual):
        prog = self.prog
        lp = prog.plan.layers[op.name]
        sp = lp.split
        xm = prog.plan.x_max
        if rows is self._rows:      # made by `rows`: float64 codes in range, bias inputs appended
            x = rows
        else:
            x = np.clip(np.asarray(rows, dtype=np.int64), -xm, xm).astype(np.float64)
            x = np.concatenate([x, np.full((x.shape[0], lp.bias_rows), float(xm))], axis=1)
        self._rows = None
        nm_cfg, ld_cfg = prog.plan.nmpu_of(op.name), prog.plan.ldpu_cfg
        hop_max = code_max(nm_cfg.out_bits)    # the partial sums' width
        out_max = lp.out_max
        outs, budget = [], {q: [] for q in PATHS}
        digest = hashlib.sha1()
        for k in range(sp.col_tiles):
            res = None if residual is None else residual[:, sp.cols_of(k)]
            acc_float = 0.0
            partial = {q: None for q in PATHS}
            for r in range(sp.row_tiles):
                tile = prog.tiles[op.name][r][k]
                img = self.images[op.name, r, k]
                # the saturated counts counted per chunk, in the cache (the masks are not kept)
                p, n, count = tile.read(sp.inputs(x, r), self.t, lsb=lp.lsb, checked=True,
                                        count_saturated=True)
                self.saturated += count
                digest.update(p.tobytes())
                digest.update(n.tobytes())
                rr = res if r == 0 else None
                if self.path == "float" or self.record is not None:
                    # ideal: partial sums in float, one rounding at the end
                    part = post_process("float", nm_cfg, ld_cfg, _no_relu(img), p, n, None)
                    acc_float = acc_float + part / 2.0 ** lp.hop_frac_bits
                    if r == sp.row_tiles - 1:
                        y = acc_float + (0 if res is None else res)
                        partial["float"] = round_int8(np.maximum(y, 0) if lp.relu else y, out_max)
                last = r == sp.row_tiles - 1
                for q in ("nmpu", "ldpu"):
                    if q == self.path or self.record is not None:
                        prev = rr if r == 0 else partial[q]
                        partial[q] = post_process(q, nm_cfg, ld_cfg, img, p, n, prev)
                        w = out_max if last and not lp.hop_frac_bits else hop_max
                        if q == "ldpu" and w < X_MAX:  # the int8 output at the code width
                            partial[q] = np.clip(partial[q], -w - 1, w)
                        if last and lp.hop_frac_bits:
                            partial[q] = requantise(prog.plan.nmpu_cfg, partial[q],
                                                    lp.hop_frac_bits)
                        elif q == "nmpu" and last and out_max < hop_max:
                            # a hidden row-split layer: the wide chain's last output clamped
                            # to the activation codes (the activation NMPU's saturation)
                            partial[q] = gn.saturate(prog.plan.nmpu_cfg, partial[q])[0]
            outs.append(partial[self.path])
            if self.record is not None:
                for q in PATHS:
                    budget[q].append(partial[q])
        y = np.concatenate(outs, axis=-1)
        self.digests[op.name] = digest.hexdigest()[:16]
        if self.record is not None:
            self.record.setdefault(op.name, []).append(
                {q: np.concatenate(v, axis=-1) for q, v in budget.items()})
        return y


def _analog_rows(plan, op, a):
    """`AnalogMatrix.rows`: the codes of `a` clipped to the PWM range, as float64, in the rows
    of `op` with its analog bias inputs (x_max) appended."""
    xm = plan.x_max
    codes = np.clip(np.asarray(a, dtype=np.int64), -xm, xm).astype(np.float64)
    return layer_rows(op, codes, extra=plan.layers[op.name].bias_rows, fill=float(xm))


def requantise(act_cfg, y, frac_bits):
    """Codes 2^frac_bits finer than the activation LSB → activation codes: the activation NMPU's
    own compress (round half to even by 2^frac_bits) and saturate steps."""
    y = gn.compress(act_cfg, np.asarray(y, dtype=np.int64), frac_bits, 0, RoundMode.HALF_EVEN)
    return gn.saturate(act_cfg, y)[0]


def _no_relu(img):
    return TileImage(**{**img.__dict__, "relu": False, "residual_en": False})
