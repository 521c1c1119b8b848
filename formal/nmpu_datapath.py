"""Proof 1: the NMPU lane datapath equals the spec for every input, parameter and register value.

The DUT is the chain of the lane's stage components (`Products` → `Accumulate` →
`ShiftAmounts` → `Compress` → `Activate`), wired as `Lane` wires them, with every input free.
The reference (`spec_lane`) is written here from the spec text (design/nmpu.md,
`golden.nmpu`), on purpose unlike `hdl/nmpu.py`: exact arithmetic at a width derived here from
the raw field widths, and rounding by floor division and an explicit remainder compared with
half an LSB, case by case over every (pre-cut, rounding shift) pair, instead of the RTL's barrel
shifter, round bit and sticky mask. One combinational step covers all values: a depth-1 BMC is
a complete proof.
"""

from dataclasses import dataclass

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.hdl import Assert
from amaranth.lib.wiring import In

from hdl.config import NMPUConfig, RoundMode
from hdl.nmpu import Accumulate, Activate, Compress, Products, ShiftAmounts

from .common import Harness, bits_for

__all__ = ["NMPUDatapath", "MUTANTS", "Spec", "spec_lane"]

# Deliberately broken references: each must make the proof FAIL (the proof can fail).
MUTANTS = {
    "ties_to_odd": "half_even rounds ties to the odd neighbour",
    "half_up_ties_down": "half_up rounds ties towards −inf",
    "wrap": "saturation wraps to out_bits instead of clamping",
}


@dataclass
class Spec:
    """The reference's values for one column: the exact accumulator, the total shift, the
    rounded and the floor-shifted compression, the exact value before saturation, the output."""

    acc: Signal
    s: Signal
    rounded: Signal
    floor: Signal
    exact: Signal
    z: Signal


def spec_lane(m, cfg: NMPUConfig, *, p, n, sp, sn, o, e, shift, pre_cut, round_mode, relu_mid,
              relu_out, res=None, residual_en=None, mutant=None, prefix="ref"):
    """Adds the spec of one column to `m` (combinational) and returns its `Spec` values.
    A reserved `round_mode` (3) gives no increment: floor, as docs/nmpu.md defines."""
    if mutant is not None and mutant not in MUTANTS:
        raise ValueError(f"unknown mutant {mutant!r}; mutants: {', '.join(MUTANTS)}")
    # Exact range of every quantity from the raw field widths alone (not cfg.acc_bits), plus
    # a margin: nothing below can overflow, so the reference is exact arithmetic. Dropped
    # product LSBs (`drop_bits` d): each product is floored by 2^d, its fraction is
    # scale_frac − d, and the grid is the finer of that and the offset's (spec text).
    d = cfg.drop_bits
    pf = cfg.scale_frac - d
    grid = max(pf, cfg.offset_frac)
    sa, oa = grid - pf, grid - cfg.offset_frac
    top = ((1 << cfg.scale_bits) - 1) * ((1 << cfg.adc_bits) - 1) << sa
    half_o = 1 << (cfg.offset_bits - 1)
    wide = signed(bits_for(-top - (half_o << oa), top + (half_o << oa)) + 2)
    acc = Signal(wide, name=f"{prefix}_acc")
    if sn is None:  # one scale for both branches: one product of the count difference
        term = (sp * (p - n)) // (1 << d)
    else:
        term = (sp * p) // (1 << d) - (sn * n) // (1 << d)
    m.d.comb += acc.eq(term * (1 << sa) + o * (1 << oa))
    max_shift = (1 << cfg.shift_bits) - 1
    s_max = max_shift + ((1 << cfg.exp_bits) - 1)
    s = Signal(range(s_max + 1), name=f"{prefix}_s")
    c = Signal(range(s_max + 1), name=f"{prefix}_c")
    m.d.comb += [s.eq(shift + e), c.eq(Mux(s <= pre_cut, s, pre_cut))]

    # Compression: t = floor(acc / 2^c), then t / 2^r rounded, r = s − c, one case per pair.
    rounded = Signal(wide, name=f"{prefix}_rounded")
    floor_y = Signal(wide, name=f"{prefix}_floor")
    half_up = round_mode == RoundMode.HALF_UP
    half_even = round_mode == RoundMode.HALF_EVEN
    with m.Switch(c):
        for cv in range(min(s_max, max_shift) + 1):
            with m.Case(cv):
                t = Signal(wide, name=f"{prefix}_t{cv}")
                m.d.comb += t.eq(acc // (1 << cv))
                with m.Switch(s - cv):
                    for rv in range(s_max - cv + 1):
                        with m.Case(rv):
                            q = Signal(wide, name=f"{prefix}_q{cv}_{rv}")
                            rem = Signal(unsigned(rv + 1), name=f"{prefix}_rem{cv}_{rv}")
                            m.d.comb += [q.eq(t // (1 << rv)), rem.eq(t % (1 << rv))]
                            if rv == 0:
                                up = 0
                            else:
                                half = 1 << (rv - 1)
                                above, tie = rem > half, rem == half
                                odd = ~q[0] if mutant == "ties_to_odd" else q[0]
                                up_tie = 0 if mutant == "half_up_ties_down" else half_up
                                up = ((half_up & above) | (up_tie & tie)
                                      | (half_even & (above | (tie & odd))))
                            m.d.comb += [rounded.eq(q + up), floor_y.eq(q)]

    # ReLU, residual, ReLU: exact; then the clamp to out_bits.
    y1 = Signal(wide, name=f"{prefix}_y1")
    y2 = Signal(wide, name=f"{prefix}_y2")
    exact = Signal(wide, name=f"{prefix}_exact")
    m.d.comb += y1.eq(Mux(relu_mid, Mux(rounded > 0, rounded, 0), rounded))
    if cfg.residual:
        m.d.comb += y2.eq(y1 + Mux(residual_en, res, 0))
    else:
        m.d.comb += y2.eq(y1)
    m.d.comb += exact.eq(Mux(relu_out, Mux(y2 > 0, y2, 0), y2))
    lo, hi = -(1 << (cfg.out_bits - 1)), (1 << (cfg.out_bits - 1)) - 1
    z = Signal(signed(cfg.out_bits), name=f"{prefix}_z")
    if mutant == "wrap":
        m.d.comb += z.eq(exact)   # keeps the low out_bits bits
    else:
        m.d.comb += z.eq(Mux(exact > hi, hi, Mux(exact < lo, lo, exact)))
    return Spec(acc=acc, s=s, rounded=rounded, floor=floor_y, exact=exact, z=z)


class NMPUDatapath(Harness):
    def __init__(self, cfg: NMPUConfig, mutant=None):
        if not cfg.dual:
            raise ValueError("the datapath harness is written for dual input mode")
        if mutant is not None and mutant not in MUTANTS:
            raise ValueError(f"unknown mutant {mutant!r}; mutants: {', '.join(MUTANTS)}")
        self.cfg = cfg
        self.mutant = mutant
        sig = {"p": In(cfg.adc_bits), "n": In(cfg.adc_bits), "sp": In(cfg.scale_bits),
               "o": In(signed(cfg.offset_bits)),
               "shift": In(cfg.shift_bits), "pre_cut": In(cfg.shift_bits),
               "round_mode": In(cfg.round_bits), "relu_mid": In(1), "relu_out": In(1)}
        if cfg.two_scales:
            sig["sn"] = In(cfg.scale_bits)
        if cfg.exp_bits:
            sig["e"] = In(cfg.exp_bits)
        if cfg.residual:
            sig |= {"res": In(signed(cfg.out_bits)), "residual_en": In(1)}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        cfg = self.cfg

        # -- the DUT: the lane's stages, chained as `Lane` chains them -------------------------
        m.submodules.products = products = Products(cfg)
        m.submodules.accumulate = accumulate = Accumulate(cfg)
        m.submodules.amounts = amounts = ShiftAmounts(cfg)
        m.submodules.compress = compress = Compress(cfg)
        m.submodules.activate = activate = Activate(cfg)
        if cfg.two_scales:
            m.d.comb += [products.sn.eq(self.sn), accumulate.pn.eq(products.pn)]
        m.d.comb += [products.sp.eq(self.sp), products.p.eq(self.p), products.n.eq(self.n),
                     accumulate.pp.eq(products.pp), accumulate.o.eq(self.o),
                     amounts.shift.eq(self.shift), amounts.pre_cut.eq(self.pre_cut),
                     compress.acc.eq(accumulate.acc), compress.s.eq(amounts.s),
                     compress.c.eq(amounts.c), compress.round_mode.eq(self.round_mode),
                     activate.y.eq(compress.y), activate.relu_mid.eq(self.relu_mid),
                     activate.relu_out.eq(self.relu_out)]
        if cfg.exp_bits:
            m.d.comb += amounts.e.eq(self.e)
        if cfg.residual:
            m.d.comb += [activate.res.eq(self.res), activate.residual_en.eq(self.residual_en)]

        # -- the reference -------------------------------------------------------------------
        ref = spec_lane(m, cfg, p=self.p, n=self.n, sp=self.sp,
                        sn=self.sn if cfg.two_scales else None, o=self.o,
                        e=self.e if cfg.exp_bits else 0, shift=self.shift,
                        pre_cut=self.pre_cut, round_mode=self.round_mode,
                        relu_mid=self.relu_mid, relu_out=self.relu_out,
                        res=self.res if cfg.residual else None,
                        residual_en=self.residual_en if cfg.residual else None,
                        mutant=self.mutant)

        # -- the properties ------------------------------------------------------------------
        # `round_mode` 3 is reserved: the golden model rejects it, the RTL rounds like floor
        # (docs/nmpu.md). The spec assertions exclude it; one assertion pins the documented
        # behaviour.
        lo, hi = cfg.out_range
        spec_mode = self.round_mode <= max(RoundMode)
        m.d.comb += [Assert(accumulate.acc == ref.acc, "accumulator is exact"),
                     Assert(amounts.s == ref.s, "total shift")]
        with m.If(spec_mode):
            m.d.comb += [
                Assert(compress.y == ref.rounded, "compression = spec rounding"),
                Assert(activate.z == ref.z, "output = clamp(exact value)"),
                Assert(activate.clamped == (ref.exact != ref.z), "clamp flag"),
                Assert((ref.exact <= hi) | (activate.z == hi), "no wrap above"),
                Assert((ref.exact >= lo) | (activate.z == lo), "no wrap below"),
            ]
        with m.Else():
            m.d.comb += Assert(compress.y == ref.floor, "reserved round_mode rounds like floor")
        return m
