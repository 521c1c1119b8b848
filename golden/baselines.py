"""Golden model of the FP16 baselines (design/baselines.md): the LDPU, the FP16 post-processing
unit the NMPU replaces, and the FP16 outer-product array ESSOP replaces.

Built only from the exact binary16 operations of `golden.fp16` (bit patterns as int64 arrays, no
float arithmetic), so its conventions are that module's: round to nearest even everywhere,
subnormals in and out, overflow to ±Inf, every NaN an operation produces is 0x7E00, the IEEE
signs of zeros, `neg` a pure sign flip. Floats appear only in the parameter compiler, which turns
real numbers into register patterns with `fp16.encode`.

LDPU, per column j of one vector (one function per hardware stage; `forward` composes them):

1. `convert`:  P16 = fp16(P), N16 = fp16(N) (unsigned `adc_bits` counts, rounded to nearest even:
   counts above 2048 are not all exact in FP16, as on the chip).
2. `scale`:    t = fma(sp, P16, o), y = fma(−sn, N16, t): two fused multiply-adds, two roundings
   (−sn is `fp16.neg`, wiring).
3. `affine`:   z = fma(a, y, b) (folded batch norm).
4. `relu`:     with `relu_mid`, a pattern with the sign bit set becomes +0 (0x0000), anything
   else passes. A bit operation: −0 → +0, −Inf → +0; the canonical NaN 0x7E00 has sign 0 and
   passes (then converts to 0 with the `nan` flag).
5. `residual`: with `residual_en`, z = fma(c, fp16(R), z), R the int8 residual, c the per-layer
   FP16 scale (one rounding of c·R + z).
6. `relu` again with `relu_out`.
7. `output`:   `fp16.to_int8`: round to nearest even, saturate to [−128, 127], ±Inf to its rail,
   NaN to 0. The unit's clamp counter counts every output that is not the exactly rounded value
   of z: saturated or NaN (`clamped = saturated | nan`).

Parameters and registers are scalars or arrays that broadcast against the inputs `(..., columns)`
(the scoreboard passes one register set per beat, shape `(beats, 1)`). The LDPU's stream framing
is the NMPU's with `lanes` 1 and `beats` = `columns`: `frame` is `golden.nmpu.frame`.
"""

from dataclasses import dataclass

import numpy as np

from golden import fp16
from golden.checks import join_word as _join_word
from golden.checks import ranged as _ranged
from golden.checks import split_word as _split_word
from golden.nmpu import frame
from hdl.config import FP16OuterConfig, LDPUConfig

__all__ = [
    "LDPULayer", "LDPUParams", "LDPUCompiled",
    "check_layer", "check_params",
    "convert", "scale", "affine", "relu", "residual", "output",
    "forward", "frame", "pack", "unpack", "pack_params", "unpack_params", "compile_params",
    "outer_product",
]

# int8 residual and output: the LDPU's widths are fixed (LDPUConfig.out_bits = 8)
R_BITS = 8
R_RANGE = (-128, 127)


# -- records ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LDPULayer:
    """Per-layer registers, static while a vector streams. Fields may be arrays (one per beat).

    `c`: FP16 pattern of the residual scale (default 1.0: R added in output units, like the
    NMPU's y + R); `relu_mid`, `relu_out`, `residual_en`: 0/1 switches.
    """

    c: object = fp16.ONE
    relu_mid: object = False
    relu_out: object = False
    residual_en: object = False


@dataclass(frozen=True)
class LDPUParams:
    """Per-column FP16 parameter patterns: `sp`, `sn`, `o` of the convert-and-scale block,
    `a`, `b` of the activation block's affine (default a = 1.0, b = +0: identity). Arrays with
    the columns on the last axis."""

    sp: object
    sn: object = 0
    o: object = 0
    a: object = fp16.ONE
    b: object = 0

    @classmethod
    def zeros(cls, cfg):
        """All five words +0 (0x0000) in every column: the parameter memory after reset."""
        z = np.zeros(cfg.columns, dtype=np.int64)
        return cls(sp=z, sn=z, o=z, a=z, b=z)


PARAM_NAMES = ("sp", "sn", "o", "a", "b")


# -- checks ----------------------------------------------------------------------------------------

def check_layer(cfg: LDPUConfig, layer: LDPULayer):
    """The layer registers as int64 arrays, validated against `cfg`."""
    residual_en = _ranged("residual_en", layer.residual_en, 0, 1)
    if not cfg.residual and residual_en.any():
        raise ValueError("`residual_en` is set but the config has no residual path (`residual` False)")
    return dict(
        c=fp16.check_bits("c", layer.c),
        relu_mid=_ranged("relu_mid", layer.relu_mid, 0, 1),
        relu_out=_ranged("relu_out", layer.relu_out, 0, 1),
        residual_en=residual_en,
    )


def check_params(cfg: LDPUConfig, params: LDPUParams):
    """The five parameter patterns as int64 arrays (each a binary16 pattern in [0, 0xFFFF])."""
    return {name: fp16.check_bits(name, getattr(params, name)) for name in PARAM_NAMES}


# -- LDPU stages -----------------------------------------------------------------------------------

def convert(cfg: LDPUConfig, p, n):
    """Stage 1: the two unsigned counts to FP16, rounded to nearest even. Returns (P16, N16)."""
    p = _ranged("p", p, 0, cfg.adc_max)
    n = _ranged("n", n, 0, cfg.adc_max)
    return fp16.from_uint(p, cfg.adc_bits), fp16.from_uint(n, cfg.adc_bits)


def scale(params: LDPUParams, P16, N16):
    """Stage 2, the convert-and-scale block's FMAs: t = fma(sp, P16, o), y = fma(−sn, N16, t)."""
    sp, sn, o = (fp16.check_bits(k, getattr(params, k)) for k in ("sp", "sn", "o"))
    t = fp16.fma(sp, fp16.check_bits("P16", P16), o)
    return fp16.fma(fp16.neg(sn), fp16.check_bits("N16", N16), t)


def affine(params: LDPUParams, y):
    """Stage 3: z = fma(a, y, b)."""
    a, b = fp16.check_bits("a", params.a), fp16.check_bits("b", params.b)
    return fp16.fma(a, fp16.check_bits("y", y), b)


def relu(z, enable):
    """Stages 4 and 6: where `enable` and z's sign bit is set, +0; else z (a bit operation:
    −0 and −Inf give +0, 0x7E00 passes; a NaN with the sign bit, which no stage produces,
    would give +0)."""
    z = fp16.check_bits("z", z)
    enable = _ranged("relu enable", enable, 0, 1)
    return np.where((enable != 0) & ((z & fp16.SIGN_BIT) != 0), 0, z)


def residual(layer: LDPULayer, z, r):
    """Stage 5: where `residual_en`, fma(c, fp16(R), z) with R the int8 residual; else z."""
    z = fp16.check_bits("z", z)
    c = fp16.check_bits("c", layer.c)
    enable = _ranged("residual_en", layer.residual_en, 0, 1)
    r = _ranged("r", r, *R_RANGE)
    return np.where(enable != 0, fp16.fma(c, fp16.from_int(r, R_BITS), z), z)


def output(z):
    """Stage 7: `fp16.to_int8` with its flags: (y, saturated, nan)."""
    return fp16.to_int8(fp16.check_bits("z", z), return_flags=True)


def _common_shape(named):
    """The broadcast shape of every (name, array); a field that does not fit is named."""
    shape = ()
    for name, a in named:
        try:
            shape = np.broadcast_shapes(shape, np.shape(a))
        except ValueError:
            raise ValueError(f"`{name}` of shape {np.shape(a)} does not broadcast against the "
                             f"other inputs (shape {shape})") from None
    return shape


def forward(cfg: LDPUConfig, layer: LDPULayer, params: LDPUParams, p=None, n=None, r=None,
            return_clamped=False):
    """The LDPU on arrays of any shape (usually `(..., columns)`); parameters and registers
    broadcast against the inputs. Returns the int8 outputs (and, with `return_clamped`, the mask
    the clamp counter counts: saturated or NaN).

    `r` (int8) is required when `residual_en` is set anywhere, optional otherwise; a config
    without the residual path takes no `r`.
    """
    if p is None or n is None:
        raise ValueError("the LDPU takes both counts `p` and `n`")
    regs = check_layer(cfg, layer)
    prm = check_params(cfg, params)
    _common_shape([("p", p), ("n", n), ("r", 0 if r is None else r), *prm.items(), *regs.items()])
    prm = LDPUParams(**prm)
    P16, N16 = convert(cfg, p, n)
    z = affine(prm, scale(prm, P16, N16))
    z = relu(z, regs["relu_mid"])
    if cfg.residual:
        if r is None:
            if regs["residual_en"].any():
                raise ValueError("`residual_en` is set but no residual input `r` was given")
            r = 0
        z = residual(LDPULayer(c=regs["c"], residual_en=regs["residual_en"]), z, r)
    elif r is not None:
        raise ValueError("the config has no residual path: pass no `r`")
    z = relu(z, regs["relu_out"])
    y, saturated, nan = output(z)
    return (y, saturated | nan) if return_clamped else y


# -- parameter words -------------------------------------------------------------------------------

def pack(cfg: LDPUConfig, sp, sn, o, a, b):
    """One column's parameter-port word: the five FP16 patterns of `cfg.word_fields`, least
    significant first (sp | sn << 16 | o << 32 | a << 48 | b << 64)."""
    values = {"sp": sp, "sn": sn, "o": o, "a": a, "b": b}
    checked = {}
    for name, _ in cfg.word_fields:
        v = fp16.check_bits(name, values[name])
        if v.size != 1:
            raise ValueError(f"`{name}` must be one pattern, not shape {v.shape}")
        checked[name] = int(v.reshape(()))
    return _join_word(cfg.word_fields, checked)


def unpack(cfg: LDPUConfig, word):
    """Inverse of `pack`: a dict of the word's five patterns."""
    return _split_word(cfg.word_fields, word, cfg.word_bits)


def pack_params(cfg: LDPUConfig, params: LDPUParams):
    """Words for every column (a list of Python ints: a word has 80 bits)."""
    prm = check_params(cfg, params)
    cols = {}
    for name, v in prm.items():
        try:
            cols[name] = np.broadcast_to(v, (cfg.columns,))
        except ValueError:
            raise ValueError(f"`{name}` must hold one pattern per column ({cfg.columns}) or one "
                             f"for all, not shape {v.shape}") from None
    return [pack(cfg, *(cols[k][j] for k in PARAM_NAMES)) for j in range(cfg.columns)]


def unpack_params(cfg: LDPUConfig, words):
    if len(words) != cfg.columns:
        raise ValueError(f"need {cfg.columns} parameter words, not {len(words)}")
    fields = [unpack(cfg, w) for w in words]
    return LDPUParams(**{k: np.array([f[k] for f in fields], dtype=np.int64) for k in PARAM_NAMES})


# -- parameter compiler ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LDPUCompiled:
    """FP16 register image of one layer and the error each column incurs (the analogue of
    `golden.nmpu.Compiled`; the LDPU has no shift to choose).

    `params`: the patterns; `polarity`: all +1 (FP16 scales carry their sign, so a negative α
    needs no swap of G+ and G−; kept so both compilers' results read alike). Errors, realised
    (the FP16 value) minus exact, per column: `scale_err_p`, `scale_err_n` in ulps of the exact
    value (|·| <= 0.5; an ulp is 2^(e − 10) for 2^e <= |x| < 2^(e+1), 2^−24 below 2^−14);
    `rel_scale_err_p/n` relative (0 where the exact scale is 0; −1 where a tiny scale rounds to
    zero); `offset_err`: o − β in output units; `rel_a_err`, `b_err`: the activation affine's.
    """

    params: LDPUParams
    polarity: np.ndarray
    scale_err_p: np.ndarray
    scale_err_n: np.ndarray
    rel_scale_err_p: np.ndarray
    rel_scale_err_n: np.ndarray
    offset_err: np.ndarray
    rel_a_err: np.ndarray
    b_err: np.ndarray


def _floats(name, value, shape):
    a = np.asarray(value, dtype=np.float64)
    try:
        a = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"`{name}` must hold one value per column ({shape[0]}) or one for all, "
                         f"not shape {a.shape}") from None
    if not np.all(np.isfinite(a)):
        j = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"`{name}` of column {j} is NaN or infinite")
    return a.astype(np.float64)


def _ulp(x):
    """The binary16 ulp at each exact real x (2^−24 in the subnormal range)."""
    _, e = np.frexp(np.abs(x))                      # |x| = m·2^e, m in [0.5, 1): binade e − 1
    return np.exp2(np.maximum(e - 1, -14) - fp16.FRAC_BITS)


def compile_params(cfg: LDPUConfig, alpha, beta, gain_p=1.0, gain_n=None, bn_scale=None,
                   bn_bias=None):
    """FP16 register image for y_j = α_j·(I+ − I−) + β_j from ADC counts P = gain_p·I+,
    N = gain_n·I− (the float parameters `golden.nmpu.compile_params` takes).

    The split the chip uses: the convert-and-scale block computes y = sp·P − sn·N + o with
    sp = α/gain_p, sn = α/gain_n, o = β; the activation block's affine is the identity
    (a = 1, b = 0) unless a separate batch norm z = bn_scale·y + bn_bias is given (then
    a = bn_scale, b = bn_bias; the NMPU takes the same layer folded: α·bn_scale,
    β·bn_scale + bn_bias). Each value is rounded once to FP16 with `fp16.encode` (the float64
    quotient α/gain is rounded first, but 53 >= 2·11 + 2 bits make that double rounding
    innocuous: the pattern is the correctly rounded quotient). α may be negative (signed FP16
    scales). Raises ValueError naming the column for NaN/Inf inputs, non-positive gains, and
    values that overflow FP16 (|x| >= 65520: never silently Inf).
    """
    cols = (cfg.columns,)
    alpha = _floats("alpha", alpha, cols)
    beta = _floats("beta", beta, cols)
    gp = _floats("gain_p", gain_p, cols)
    gn = _floats("gain_n", gp if gain_n is None else gain_n, cols)
    for name, g in (("gain_p", gp), ("gain_n", gn)):
        if np.any(g <= 0):
            raise ValueError(f"`{name}` of column {int(np.flatnonzero(g <= 0)[0])} must be positive")
    a_want = _floats("bn_scale", 1.0 if bn_scale is None else bn_scale, cols)
    b_want = _floats("bn_bias", 0.0 if bn_bias is None else bn_bias, cols)
    with np.errstate(over="ignore"):
        exact = dict(sp=alpha / gp, sn=alpha / gn, o=beta, a=a_want, b=b_want)
    bits, real = {}, {}
    for name, x in exact.items():
        bits[name] = fp16.encode(x)
        bad = np.flatnonzero(fp16.isinf(bits[name]))
        if bad.size:
            j = int(bad[0])
            raise ValueError(f"`{name}` of column {j} ({x[j]:.6g}) overflows FP16 (|x| >= 65520) "
                             f"(alpha={alpha[j]:.6g}, beta={beta[j]:.6g})")
        real[name] = fp16.to_float(bits[name])

    def rel(name):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(exact[name] != 0, (real[name] - exact[name]) / exact[name], 0.0)

    return LDPUCompiled(
        params=LDPUParams(**bits),
        polarity=np.ones(cols, dtype=np.int64),
        scale_err_p=(real["sp"] - exact["sp"]) / _ulp(exact["sp"]),
        scale_err_n=(real["sn"] - exact["sn"]) / _ulp(exact["sn"]),
        rel_scale_err_p=rel("sp"), rel_scale_err_n=rel("sn"),
        offset_err=real["o"] - exact["o"],
        rel_a_err=rel("a"), b_err=real["b"] - exact["b"],
    )


# -- FP16 outer-product array ----------------------------------------------------------------------

def outer_product(cfg: FP16OuterConfig, x_bits, d_bits):
    """p_ij = x_i·δ_j, one rounding each (`fp16.mul`: numpy's float16 product, NaN canonical).

    `x_bits` (..., rows) and `d_bits` (..., cols) are binary16 patterns whose leading shapes
    broadcast; the result is (..., rows, cols). Row i is the array's output beat i.
    """
    x = fp16.check_bits("x_bits", x_bits)
    d = fp16.check_bits("d_bits", d_bits)
    for name, a, size, what in (("x_bits", x, cfg.rows, "rows"), ("d_bits", d, cfg.cols, "cols")):
        if a.ndim < 1 or a.shape[-1] != size:
            raise ValueError(f"`{name}` must have the {size} {what} on its last axis, not shape "
                             f"{a.shape}")
    try:
        np.broadcast_shapes(x.shape[:-1], d.shape[:-1])
    except ValueError:
        raise ValueError(f"leading shapes of `x_bits` {x.shape[:-1]} and `d_bits` {d.shape[:-1]} "
                         f"do not broadcast") from None
    return fp16.mul(x[..., :, None], d[..., None, :])
