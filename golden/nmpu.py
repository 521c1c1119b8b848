"""Golden model of the NMPU: the specification in executable form.

One function per hardware step, each exact on np.int64 and each checking that its inputs and
outputs fit the widths the config declares. `forward` composes them; the cocotb scoreboard, the
network evaluation and the parameter compiler all call these functions, and no other code in
the project implements this arithmetic.

Every function is elementwise and broadcasts: inputs are arrays of any shape, usually
`(..., columns)`; parameters and layer registers are scalars or arrays that broadcast against
them (the scoreboard passes one register set per beat this way).
"""

from dataclasses import dataclass, field

import numpy as np

from golden.checks import check_range as _check_range
from golden.checks import ints as _ints
from golden.checks import join_word as _join_word
from golden.checks import split_word as _split_word
from golden.checks import ranged as _ranged
from hdl.config import NMPUConfig, RoundMode


__all__ = [
    "NMPULayer", "NMPUParams", "Compiled",
    "check_layer", "check_params", "static_fields",
    "products", "accumulate", "affine", "total_shift", "compress", "relu", "residual", "saturate",
    "forward", "frame", "pack", "unpack", "pack_params", "unpack_params", "compile_params",
]


# -- records ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NMPULayer:
    """Per-layer registers, static while a vector streams. Fields may be arrays (one per beat)."""

    shift: object = 0
    pre_cut: object = 0
    round_mode: object = RoundMode.HALF_EVEN
    relu_mid: object = False
    relu_out: object = False
    residual_en: object = False


@dataclass(frozen=True)
class NMPUParams:
    """Per-column parameter codes: scales `sp`, `sn` (None in signed mode), offset `o`, extra
    shift `e` (None when `exp_bits` is 0). Arrays with the columns on the last axis."""

    sp: object
    sn: object = None
    o: object = 0
    e: object = None

    @classmethod
    def zeros(cls, cfg):
        z = np.zeros(cfg.columns, dtype=np.int64)
        return cls(sp=z, sn=z if cfg.two_scales else None, o=z, e=z if cfg.exp_bits else None)


# -- checks ----------------------------------------------------------------------------------------

def static_fields(cfg: NMPUConfig):
    """The layer fields a `static_layer` config fixes at elaboration ({} otherwise): callers
    build their `NMPULayer` with them."""
    if not cfg.static_layer:
        return {}
    return dict(shift=cfg.static_shift, pre_cut=cfg.static_pre_cut, round_mode=cfg.static_round)


def check_layer(cfg: NMPUConfig, layer: NMPULayer):
    """The layer registers as int64 arrays, validated against `cfg`. A `static_layer` config
    takes only its fixed shift, pre-cut and round mode (there are no registers to set)."""
    for name, value in static_fields(cfg).items():
        got = _ints(name, getattr(layer, name))
        if got.size and np.any(got != value):
            bad = got[got != value].flat[0]
            raise ValueError(f"`{name}` is fixed at {value} by the config's `static_layer`, not {bad}")
    residual_en = _ranged("residual_en", layer.residual_en, 0, 1)
    if not cfg.residual and residual_en.any():
        raise ValueError("`residual_en` is set but the config has no residual path (`residual` False)")
    valid_modes = sorted(int(m) for m in RoundMode)
    mode = _ints("round_mode", layer.round_mode)
    if mode.size and not np.isin(mode, valid_modes).all():
        bad = mode[~np.isin(mode, valid_modes)].flat[0]
        raise ValueError(f"`round_mode` must be one of {valid_modes} (floor, half_up, half_even), "
                         f"not {bad}")
    return dict(
        shift=_ranged("shift", layer.shift, 0, cfg.max_shift),
        pre_cut=_ranged("pre_cut", layer.pre_cut, 0, cfg.max_shift),
        round_mode=mode,
        relu_mid=_ranged("relu_mid", layer.relu_mid, 0, 1),
        relu_out=_ranged("relu_out", layer.relu_out, 0, 1),
        residual_en=residual_en,
    )


def check_params(cfg: NMPUConfig, params: NMPUParams):
    """The parameter codes as int64 arrays, validated against `cfg`."""
    if cfg.two_scales and params.sn is None:
        raise ValueError("dual input mode needs `sn`")
    if not cfg.two_scales and params.sn is not None:
        raise ValueError("signed input mode has no `sn`" if not cfg.dual else
                         "`single_scale` has no `sn`: one scale `sp` serves both branches")
    if cfg.exp_bits == 0 and params.e is not None and np.any(_ints("e", params.e)):
        raise ValueError("`e` is set but the config has no per-column exponent (`exp_bits` 0)")
    out = dict(
        sp=_ranged("sp", params.sp, 0, cfg.scale_max),
        sn=_ranged("sn", params.sn, 0, cfg.scale_max) if cfg.two_scales else None,
        o=_ranged("o", params.o, *cfg.offset_range),
        e=_ranged("e", params.e if params.e is not None else 0, 0, cfg.e_max),
    )
    return out


# -- steps -----------------------------------------------------------------------------------------

def products(cfg: NMPUConfig, sp, sn=None, p=None, n=None, x=None):
    """Branch products as the adder takes them, each floored by 2^drop_bits (the dropped LSBs
    are not built): (sp·P, sn·N) in dual mode, (sp·(P − N), None) with `single_scale`,
    (sp·X, None) in signed mode."""
    sp = _ranged("sp", sp, 0, cfg.scale_max)
    d = cfg.drop_bits
    if cfg.dual:
        if p is None or n is None or x is not None:
            raise ValueError("dual input mode takes `p` and `n`, not `x`")
        p = _ranged("p", p, 0, cfg.adc_max)
        n = _ranged("n", n, 0, cfg.adc_max)
        if cfg.single_scale:
            if sn is not None:
                raise ValueError("`single_scale` has no `sn`")
            return (sp * (p - n)) >> d, None
        sn = _ranged("sn", sn, 0, cfg.scale_max)
        return (sp * p) >> d, (sn * n) >> d
    if x is None or p is not None or n is not None:
        raise ValueError("signed input mode takes `x`, not `p` and `n`")
    x = _ranged("x", x, *cfg.x_range)
    return (sp * x) >> d, None


def accumulate(cfg: NMPUConfig, pp, pn, o):
    """acc = (pp − pn) << (F − scale_frac) + o << (F − offset_frac), exact."""
    pp = _ints("pp", pp)
    term = pp if pn is None else pp - _ints("pn", pn)
    _check_range("scaled input term", term, *cfg.term_range)
    o = _ranged("o", o, *cfg.offset_range)
    acc = (term << cfg.scale_align) + (o << cfg.offset_align)
    return _check_range("acc", acc, *cfg.acc_range)


def affine(cfg: NMPUConfig, params: NMPUParams, p=None, n=None, x=None):
    """Step 1: the exact accumulator of both branches and the offset."""
    pp, pn = products(cfg, params.sp, params.sn, p=p, n=n, x=x)
    return accumulate(cfg, pp, pn, params.o)


def total_shift(cfg: NMPUConfig, shift, e=None):
    """s = shift + e."""
    shift = _ranged("shift", shift, 0, cfg.max_shift)
    e = _ranged("e", 0 if e is None else e, 0, cfg.e_max)
    return shift + e


def compress(cfg: NMPUConfig, acc, s, pre_cut, round_mode):
    """Step 2: y = round((acc >> c) / 2^(s − c)) with c = min(pre_cut, s).

    The c lowest bits are cut by a floor shift, then the remaining r = s − c bits are rounded
    away in `round_mode`. With r = 0 every mode is the floor shift.
    """
    acc = _check_range("acc", _ints("acc", acc), *cfg.acc_range)
    s = _ranged("s", s, 0, cfg.max_total_shift)
    pre_cut = _ranged("pre_cut", pre_cut, 0, cfg.max_shift)
    mode = _ints("round_mode", round_mode)
    c = np.minimum(pre_cut, s)
    t = acc >> c
    r = s - c
    q = t >> r
    rem = t - (q << r)                       # 0 <= rem < 2^r
    half = np.where(r > 0, np.left_shift(1, np.maximum(r - 1, 0)), 0)
    above = (r > 0) & (rem > half)
    tie = (r > 0) & (rem == half)
    up = np.where(mode == RoundMode.HALF_UP, above | tie,
                  np.where(mode == RoundMode.HALF_EVEN, above | (tie & (q & 1 == 1)), False))
    y = q + up.astype(np.int64)
    lo, hi = cfg.acc_range
    return _check_range("compressed value", y, lo, hi)


def relu(y, enable):
    """Steps 3 and 5: max(y, 0) where `enable`."""
    y = _ints("y", y)
    return np.where(_ints("relu enable", enable) != 0, np.maximum(y, 0), y)


def residual(cfg: NMPUConfig, y, r, enable):
    """Step 4: y + R where `enable` (R in output units, signed `out_bits`)."""
    y = _ints("y", y)
    r = _ranged("r", r, *cfg.out_range)
    return np.where(_ints("residual_en", enable) != 0, y + r, y)


def saturate(cfg: NMPUConfig, y):
    """Step 6: clamp to signed `out_bits`. Returns (y, clamped mask)."""
    y = _ints("y", y)
    lo, hi = cfg.out_range
    out = np.clip(y, lo, hi)
    return out, out != y


def forward(cfg: NMPUConfig, layer: NMPULayer, params: NMPUParams, *, p=None, n=None, x=None,
            r=None, return_clamped=False):
    """The NMPU on arrays of any shape (usually `(..., columns)`); parameters and registers
    broadcast against the inputs. Returns y (and the clamp mask with `return_clamped`)."""
    regs = check_layer(cfg, layer)
    prm = check_params(cfg, params)
    acc = affine(cfg, NMPUParams(sp=prm["sp"], sn=prm["sn"], o=prm["o"]), p=p, n=n, x=x)
    s = total_shift(cfg, regs["shift"], prm["e"])
    y = compress(cfg, acc, s, regs["pre_cut"], regs["round_mode"])
    y = relu(y, regs["relu_mid"])
    if cfg.residual:
        if r is None:
            if regs["residual_en"].any():
                raise ValueError("`residual_en` is set but no residual input `r` was given")
            r = 0
        y = residual(cfg, y, r, regs["residual_en"])
    elif r is not None:
        raise ValueError("the config has no residual path: pass no `r`")
    y = relu(y, regs["relu_out"])
    y, clamped = saturate(cfg, y)
    return (y, clamped) if return_clamped else y


def frame(cfg: NMPUConfig, last, start=0):
    """Beat positions and framing errors of a sequence of accepted beats.

    The unit counts beats; beat b of a vector carries columns b·lanes .. b·lanes + lanes − 1.
    A beat closes its vector when it carries `last` or is beat `beats − 1`; the position then
    returns to 0 (a `last` resynchronises). It is a framing error when the two disagree: a
    `last` before beat `beats − 1`, or beat `beats − 1` without `last`.

    Returns (positions, errors, next start).
    """
    last = _ranged("last", last, 0, 1).ravel()
    _check_range("start", np.asarray([start]), 0, cfg.beats - 1)
    pos = np.empty(last.shape, dtype=np.int64)
    err = np.zeros(last.shape, dtype=bool)
    b = int(start)
    for k, flag in enumerate(last):  # true sequential state: the beat counter
        pos[k] = b
        final = b == cfg.beats - 1
        err[k] = bool(flag) != final
        b = 0 if (flag or final) else b + 1
    return pos, err, b


# -- parameter words -------------------------------------------------------------------------------

def pack(cfg: NMPUConfig, sp, sn=None, o=0, e=None):
    """One column's parameter-port word: fields of `cfg.word_fields`, least significant first,
    the offset in two's complement."""
    values = {"sp": sp, "sn": sn, "o": o, "e": e}
    ranges = {"sp": (0, cfg.scale_max), "sn": (0, cfg.scale_max), "o": cfg.offset_range,
              "e": (0, cfg.e_max)}
    checked = {}
    for name, _ in cfg.word_fields:
        if values[name] is None:
            raise ValueError(f"`{name}` is needed by this config's parameter word")
        checked[name] = int(_ranged(name, values[name], *ranges[name]))
    for name, v in values.items():
        if name not in checked and v is not None:
            if int(v) != 0:
                raise ValueError(f"`{name}` is not part of this config's parameter word")
    return _join_word(cfg.word_fields, checked)


def unpack(cfg: NMPUConfig, word):
    """Inverse of `pack`: a dict of the word's fields (the offset sign-extended)."""
    out = _split_word(cfg.word_fields, word, cfg.word_bits)
    bits = dict(cfg.word_fields)["o"]
    if out["o"] >> (bits - 1):
        out["o"] -= 1 << bits
    return out


def pack_params(cfg: NMPUConfig, params: NMPUParams):
    """Words for every column (a list of Python ints: a word may exceed 64 bits)."""
    prm = check_params(cfg, params)
    cols = {k: np.broadcast_to(v, (cfg.columns,)) for k, v in prm.items() if v is not None}
    return [pack(cfg, cols["sp"][j], cols["sn"][j] if cfg.two_scales else None, cols["o"][j],
                 cols["e"][j] if cfg.exp_bits else None) for j in range(cfg.columns)]


def unpack_params(cfg: NMPUConfig, words):
    if len(words) != cfg.columns:
        raise ValueError(f"need {cfg.columns} parameter words, not {len(words)}")
    fields = [unpack(cfg, w) for w in words]
    col = {name: np.array([f[name] for f in fields], dtype=np.int64) for name, _ in cfg.word_fields}
    return NMPUParams(sp=col["sp"], sn=col.get("sn"), o=col["o"], e=col.get("e"))


# -- parameter compiler ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiled:
    """Register image of one layer and the error each column incurs.

    `shift`: the layer's shift register; `params`: the codes; `polarity`: +1, or −1 where the
    column's weights must be programmed with G+ and G− swapped (negative α). Errors:
    `scale_err_p`, `scale_err_n`: code minus exact code (|·| <= 0.5); `rel_scale_err_p/n`:
    relative error of the realised scale; `offset_err`: realised minus wanted bias in output units.
    """

    shift: int
    params: NMPUParams
    polarity: np.ndarray
    scale_err_p: np.ndarray
    scale_err_n: np.ndarray
    rel_scale_err_p: np.ndarray
    rel_scale_err_n: np.ndarray
    offset_err: np.ndarray
    total_shift: np.ndarray = field(repr=False, default=None)


def _floats(name, value, shape):
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        j = int(np.flatnonzero(~np.isfinite(np.broadcast_to(a, shape)))[0])
        raise ValueError(f"`{name}` of column {j} is NaN or infinite")
    return np.broadcast_to(a, shape).astype(np.float64)


def _largest_shift(value, limit):
    """Per element: the largest integer k with round(value · 2^k) <= limit (k = +inf when value
    is 0). `value` >= 0."""
    k = np.full(value.shape, np.inf)
    nz = value > 0
    est = np.floor(np.log2((limit + 0.5) / value[nz]))
    # log2 can be off by one ulp at powers of two: settle on the exact integer condition
    est = np.where(np.round(value[nz] * np.exp2(est)) > limit, est - 1, est)
    est = np.where(np.round(value[nz] * np.exp2(est + 1)) <= limit, est + 1, est)
    k[nz] = est
    return k


def compile_params(cfg: NMPUConfig, alpha, beta, gain_p=1.0, gain_n=None, shift=None):
    """Register image for y_j = α_j·(I+ − I−) + β_j from ADC counts P = gain_p·I+, N = gain_n·I−.

    α_j: the column's scale (folded BN × weight scale × drift compensation), β_j its bias in
    output units; `gain_p`, `gain_n`: per-column ADC gains of the two polarities (signed mode: one
    gain, `gain_n` unused). Chooses the largest layer `shift` (and per-column `e`) for which every
    column's scale and offset codes fit, so the codes use their range best; `shift` may be forced.
    A negative α is served by swapping the column's polarity (returned in `polarity`).
    With `single_scale` one code serves both branches: the scale of the mean inverse gain
    (|α|·(1/gp + 1/gn)/2), its error against each branch's exact code in `scale_err_p/n`. A
    `static_layer` config forces its `static_shift`. Raises ValueError naming the column when a
    scale or offset cannot be represented at all.
    """
    cols = (cfg.columns,)
    alpha = _floats("alpha", alpha, cols)
    beta = _floats("beta", beta, cols)
    gp = _floats("gain_p", gain_p, cols)
    gn = _floats("gain_n", gp if gain_n is None else gain_n, cols)
    for name, g in (("gain_p", gp), ("gain_n", gn)):
        if np.any(g <= 0):
            raise ValueError(f"`{name}` of column {int(np.flatnonzero(g <= 0)[0])} must be positive")
    polarity = np.where(alpha < 0, -1, 1).astype(np.int64)
    mag = np.abs(alpha)
    if cfg.static_layer:
        if shift is not None and int(shift) != cfg.static_shift:
            raise ValueError(f"`shift` is fixed at {cfg.static_shift} by the config's "
                             f"`static_layer`, not {shift}")
        shift = cfg.static_shift
    # y = acc · 2^-s with acc ≈ (sp·P − sn·N) · 2^term_align + o · 2^offset_align (the floor of
    # dropped product LSBs aside), so at total shift s the exact codes are
    # sp = |α|/gp · 2^(s − term_align), o = β · 2^(s − offset_align).
    unit_p = mag / gp * 2.0 ** -cfg.term_align
    unit_n = (mag / gn if cfg.dual else np.zeros(cols)) * 2.0 ** -cfg.term_align
    # one code for both branches: the mean inverse gain (the residual mismatch is an error)
    unit_s = (unit_p + unit_n) / 2 if cfg.single_scale else unit_p
    unit_o = np.abs(beta) * 2.0 ** -cfg.offset_align
    o_lo, o_hi = cfg.offset_range
    o_limit = np.where(beta < 0, -o_lo, o_hi)
    s_scale = _largest_shift(unit_s if cfg.single_scale else np.maximum(unit_p, unit_n),
                             cfg.scale_max)
    s_off = np.full(cols, np.inf)
    nz = unit_o > 0
    for lim in (o_hi, -o_lo):
        sel = nz & (o_limit == lim)
        s_off[sel] = _largest_shift(unit_o[sel], lim)
    s_col = np.minimum(s_scale, s_off)
    for j in np.flatnonzero(s_col < 0):
        what = "scale" if s_scale[j] < 0 else "offset"
        raise ValueError(f"the {what} of column {int(j)} is too large for the code range even at "
                         f"shift 0 (alpha={alpha[j]:.6g}, beta={beta[j]:.6g})")
    s_col = np.minimum(s_col, cfg.max_total_shift)
    if shift is None:
        shift = int(min(np.min(s_col), cfg.max_shift))
    else:
        shift = int(_ranged("shift", shift, 0, cfg.max_shift))
        if np.any(s_col < shift):
            j = int(np.flatnonzero(s_col < shift)[0])
            raise ValueError(f"column {j} does not fit at the forced shift {shift} (at most {int(s_col[j])})")
    e = np.minimum(s_col - shift, cfg.e_max).astype(np.int64)
    s_tot = shift + e
    exact_p = unit_p * np.exp2(s_tot)
    exact_n = unit_n * np.exp2(s_tot)
    exact_o = np.sign(beta) * unit_o * np.exp2(s_tot)
    sp = np.round((unit_s if cfg.single_scale else unit_p) * np.exp2(s_tot)).astype(np.int64)
    sn = sp if cfg.single_scale else np.round(exact_n).astype(np.int64)
    o = np.round(exact_o).astype(np.int64)
    for name, codes, lo, hi in (("sp", sp, 0, cfg.scale_max), ("sn", sn, 0, cfg.scale_max),
                                ("o", o, o_lo, o_hi)):
        bad = np.flatnonzero((codes < lo) | (codes > hi))
        if bad.size:  # cannot happen by construction; never clamp
            raise AssertionError(f"compiler produced `{name}` out of range in column {int(bad[0])}")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_p = np.where(exact_p > 0, (sp - exact_p) / exact_p, 0.0)
        rel_n = np.where(exact_n > 0, (sn - exact_n) / exact_n, 0.0)
    params = NMPUParams(sp=sp, sn=sn if cfg.two_scales else None, o=o,
                        e=e if cfg.exp_bits else None)
    check_params(cfg, params)
    return Compiled(
        shift=shift, params=params, polarity=polarity,
        scale_err_p=sp - exact_p, scale_err_n=(sn - exact_n) if cfg.dual else np.zeros(cols),
        rel_scale_err_p=rel_p, rel_scale_err_n=rel_n if cfg.dual else np.zeros(cols),
        offset_err=(o - exact_o) * np.exp2(cfg.offset_align - s_tot),
        total_shift=s_tot,
    )
