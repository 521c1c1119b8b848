"""The NMPU: fixed-point near-memory post-processing, `lanes` columns per clock.

Stages are small combinational components of one lane; `Lane` puts pipeline registers between
them, and `NMPU` instantiates `lanes` of them, frames the stream and holds the parameters. Golden model: `golden.nmpu` (one function per stage).
"""

from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .common import check_unit_args, clamp_counter, framing, param_memory, postproc_signature
from .config import CLAMP_GROUP, NMPUConfig, RoundMode

__all__ = ["input_layout", "output_layout", "param_layout", "layer_layout", "Products",
           "Accumulate", "ShiftAmounts", "Compress", "Activate", "Lane", "NMPU"]


# -- payloads --------------------------------------------------------------------------------------

def input_layout(cfg: NMPUConfig):
    """One input beat: `lanes` columns of counts (and residuals) plus the `last` flag."""
    fields = {}
    if cfg.dual:
        fields["p"] = data.ArrayLayout(unsigned(cfg.adc_bits), cfg.lanes)
        fields["n"] = data.ArrayLayout(unsigned(cfg.adc_bits), cfg.lanes)
    else:
        fields["x"] = data.ArrayLayout(signed(cfg.adc_bits + 1), cfg.lanes)
    if cfg.residual:
        fields["res"] = data.ArrayLayout(signed(cfg.out_bits), cfg.lanes)
    fields["last"] = unsigned(1)
    return data.StructLayout(fields)


def output_layout(cfg: NMPUConfig):
    return data.StructLayout({"y": data.ArrayLayout(signed(cfg.out_bits), cfg.lanes),
                              "last": unsigned(1)})


def param_layout(cfg: NMPUConfig):
    """One column's parameter word; field order and widths are `cfg.word_fields`."""
    shapes = {"sp": unsigned(cfg.scale_bits), "sn": unsigned(cfg.scale_bits),
              "o": signed(cfg.offset_bits), "e": unsigned(cfg.exp_bits)}
    return data.StructLayout({name: shapes[name] for name, _ in cfg.word_fields})


def layer_layout(cfg: NMPUConfig):
    """Per-layer registers. `round_mode` keeps its raw code so a reserved value can be flagged.
    A `static_layer` config has no `shift`, `pre_cut` or `round_mode`: they are constants."""
    fields = {} if cfg.static_layer else {
        "shift": unsigned(cfg.shift_bits), "pre_cut": unsigned(cfg.shift_bits),
        "round_mode": unsigned(cfg.round_bits)}
    fields |= {"relu_mid": unsigned(1), "relu_out": unsigned(1)}
    if cfg.residual:
        fields["residual_en"] = unsigned(1)
    return data.StructLayout(fields)


# -- stages of one lane (combinational) ------------------------------------------------------------
#
# Each lane is its own set of small modules with its own signals: a datapath written over wide
# arrays makes event-driven simulators re-evaluate every lane whenever any lane changes.

class Products(wiring.Component):
    """Branch products sp·P and sn·N (`single_scale`: sp·(P − N); signed mode: sp·X), each
    without its `drop_bits` LSBs: the outputs and everything after them are that much narrower
    (a floor, as the golden model). Golden: `golden.nmpu.products`."""

    def __init__(self, cfg: NMPUConfig):
        self.cfg = cfg
        sig = {"sp": In(cfg.scale_bits)}
        if cfg.two_scales:
            sig |= {"sn": In(cfg.scale_bits), "pn": Out(cfg.product_bits),
                    "pp": Out(cfg.product_bits)}
        else:
            sig |= {"pp": Out(signed(cfg.product_bits))}
        if cfg.dual:
            sig |= {"p": In(cfg.adc_bits), "n": In(cfg.adc_bits)}
        else:
            sig |= {"x": In(signed(cfg.adc_bits + 1))}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.cfg, self.cfg.drop_bits
        if cfg.two_scales:
            m.d.comb += [self.pp.eq((self.sp * self.p) >> d), self.pn.eq((self.sn * self.n) >> d)]
        elif cfg.dual:  # one scale: subtract the counts first, one signed product
            m.d.comb += self.pp.eq((self.sp * (self.p - self.n)) >> d)
        else:
            m.d.comb += self.pp.eq((self.sp * self.x) >> d)
        return m


class Accumulate(wiring.Component):
    """acc = (pp − pn) << scale_align + o << offset_align, at its exact width `acc_bits`.
    Golden: `golden.nmpu.accumulate`."""

    def __init__(self, cfg: NMPUConfig):
        self.cfg = cfg
        sig = {"o": In(signed(cfg.offset_bits)), "acc": Out(signed(cfg.acc_bits))}
        if cfg.two_scales:
            sig |= {"pp": In(cfg.product_bits), "pn": In(cfg.product_bits)}
        else:
            sig |= {"pp": In(signed(cfg.product_bits))}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        term = self.pp - self.pn if cfg.two_scales else self.pp
        # The sum's natural width exceeds acc_bits; the config derives acc_bits from the exact
        # value range, so the assignment drops only redundant sign bits.
        m.d.comb += self.acc.eq((term << cfg.scale_align) + (self.o << cfg.offset_align))
        return m


class ShiftAmounts(wiring.Component):
    """s = shift + e and c = min(pre_cut, s). Golden: `golden.nmpu.total_shift`."""

    def __init__(self, cfg: NMPUConfig):
        self.cfg = cfg
        sig = {"shift": In(cfg.shift_bits), "pre_cut": In(cfg.shift_bits),
               "s": Out(cfg.total_shift_bits), "c": Out(cfg.total_shift_bits)}
        if cfg.exp_bits:
            sig["e"] = In(cfg.exp_bits)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        s = self.shift + self.e if self.cfg.exp_bits else self.shift
        m.d.comb += [self.s.eq(s), self.c.eq(Mux(self.pre_cut < s, self.pre_cut, s))]
        return m


class Compress(wiring.Component):
    """y = round((acc >> c) / 2^(s − c)) in `round_mode`. Golden: `golden.nmpu.compress`.

    One barrel shifter: shifting 2·acc right by s yields q = acc >> s and, below it, the round
    bit g = bit s−1 of acc. The sticky bit ORs acc bits c .. s−2, the bits the pre-cut keeps
    below the round bit; bits above the accumulator's width repeat its sign. The rounding adder
    is then a single increment of q. A reserved `round_mode` code rounds like floor (the NMPU
    flags it).
    """

    def __init__(self, cfg: NMPUConfig):
        self.cfg = cfg
        super().__init__({"acc": In(signed(cfg.acc_bits)),
                          "s": In(cfg.total_shift_bits), "c": In(cfg.total_shift_bits),
                          "round_mode": In(cfg.round_bits),
                          "y": Out(signed(cfg.acc_bits))})

    def elaborate(self, platform):
        m = Module()
        width = self.cfg.acc_bits
        acc, s, c = self.acc, self.s, self.c
        u = Signal(signed(width + 1))
        m.d.comb += u.eq(Cat(C(0, 1), acc).as_signed() >> s)
        q, g = u[1:].as_signed(), u[0]
        ones = C((1 << width) - 1, width)
        from_c = (ones << c)[:width]                        # bits i >= c
        below_round = ~(ones << (s - 1)[:len(s)])[:width]  # bits i < s − 1 (s >= 1 where used)
        above = acc[width - 1] & (c >= width) & (s >= c + 2)
        sticky = (acc & from_c & below_round).any() | above
        half_up = self.round_mode == RoundMode.HALF_UP
        half_even = self.round_mode == RoundMode.HALF_EVEN
        inc = (c < s) & g & (half_up | (half_even & (sticky | q[0])))
        # q + inc fits acc_bits: inc is only set when s >= 1, which halves the range first.
        m.d.comb += self.y.eq(q + inc)
        return m


class Activate(wiring.Component):
    """ReLU, residual add, ReLU, saturation to `out_bits` with a clamp flag.
    Golden: `golden.nmpu.relu`, `residual`, `relu`, `saturate`."""

    def __init__(self, cfg: NMPUConfig):
        self.cfg = cfg
        sig = {"y": In(signed(cfg.acc_bits)), "relu_mid": In(1), "relu_out": In(1),
               "z": Out(signed(cfg.out_bits)), "clamped": Out(1)}
        if cfg.residual:
            sig |= {"res": In(signed(cfg.out_bits)), "residual_en": In(1)}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lo, hi = cfg.out_range
        y = Mux(self.relu_mid & (self.y < 0), 0, self.y)
        if cfg.residual:
            y = Mux(self.residual_en, y + self.res, y)
        y = Mux(self.relu_out & (y < 0), 0, y)
        m.d.comb += [self.z.eq(Mux(y > hi, hi, Mux(y < lo, lo, y))),
                     self.clamped.eq((y > hi) | (y < lo))]
        return m


class Lane(wiring.Component):
    """One column datapath: the stages with their pipeline registers, advancing on `advance`.

    Inputs arrive at stage 0 (counts, residual, parameter word) or at the stage that uses them
    (`shift`/`pre_cut` at stage 1 with per-column exponents, else `s`/`c` at stage 2;
    `round_mode` at stage 2; ReLU and residual flags at stage 3). `z` and `clamped` are the
    output register.
    """

    def __init__(self, cfg: NMPUConfig):
        self.cfg = cfg
        sig = {"advance": In(1), "word": In(param_layout(cfg)),
               "round_mode": In(cfg.round_bits), "relu_mid": In(1), "relu_out": In(1),
               "z": Out(signed(cfg.out_bits)), "clamped": Out(1)}
        if cfg.dual:
            sig |= {"p": In(cfg.adc_bits), "n": In(cfg.adc_bits)}
        else:
            sig |= {"x": In(signed(cfg.adc_bits + 1))}
        if cfg.residual:
            sig |= {"res": In(signed(cfg.out_bits)), "residual_en": In(1)}
        if cfg.exp_bits:
            sig |= {"shift": In(cfg.shift_bits), "pre_cut": In(cfg.shift_bits)}
        else:
            sig |= {"s": In(cfg.total_shift_bits), "c": In(cfg.total_shift_bits)}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.products = products = Products(cfg)
        m.submodules.accumulate = accumulate = Accumulate(cfg)
        m.submodules.compress = compress = Compress(cfg)
        m.submodules.activate = activate = Activate(cfg)

        def stage(value, name):
            reg = Signal(value.shape(), name=name, reset_less=True)
            with m.If(self.advance):
                m.d.sync += reg.eq(value)
            return reg

        # stage 0 -> 1
        m.d.comb += products.sp.eq(self.word.sp)
        if cfg.two_scales:
            m.d.comb += products.sn.eq(self.word.sn)
        if cfg.dual:
            m.d.comb += [products.p.eq(self.p), products.n.eq(self.n)]
        else:
            m.d.comb += products.x.eq(self.x)
        pp1 = stage(products.pp, "pp1")
        pn1 = stage(products.pn, "pn1") if cfg.two_scales else None
        o1 = stage(self.word.o, "o1")
        res1 = stage(self.res, "res1") if cfg.residual else None
        # stage 1 -> 2
        m.d.comb += [accumulate.pp.eq(pp1), accumulate.o.eq(o1)]
        if cfg.two_scales:
            m.d.comb += accumulate.pn.eq(pn1)
        acc2 = stage(accumulate.acc, "acc2")
        if cfg.exp_bits:
            e1 = stage(self.word.e, "e1")
            m.submodules.shift_amounts = amounts = ShiftAmounts(cfg)
            m.d.comb += [amounts.shift.eq(self.shift), amounts.pre_cut.eq(self.pre_cut),
                         amounts.e.eq(e1)]
            s2, c2 = stage(amounts.s, "s2"), stage(amounts.c, "c2")
        else:
            s2, c2 = self.s, self.c
        res2 = stage(res1, "res2") if cfg.residual else None
        # stage 2 -> 3
        m.d.comb += [compress.acc.eq(acc2), compress.s.eq(s2), compress.c.eq(c2),
                     compress.round_mode.eq(self.round_mode)]
        y3 = stage(compress.y, "y3")
        res3 = stage(res2, "res3") if cfg.residual else None
        # stage 3 -> 4: the output register
        m.d.comb += [activate.y.eq(y3), activate.relu_mid.eq(self.relu_mid),
                     activate.relu_out.eq(self.relu_out)]
        if cfg.residual:
            m.d.comb += [activate.res.eq(res3), activate.residual_en.eq(self.residual_en)]
        m.d.comb += [self.z.eq(stage(activate.z, "z4")),
                     self.clamped.eq(stage(activate.clamped, "clamped4"))]
        return m


# -- the unit --------------------------------------------------------------------------------------

class NMPU(wiring.Component):
    """Near-Memory Processing Unit: per-column affine correction of ADC counts, compression with
    rounding, ReLU, residual add, ReLU and saturation to `out_bits`, `lanes` columns per beat.

    Throughput: one beat per clock while `o` is read; `i.ready` falls only while the output is
    held by backpressure. Latency: `LATENCY` clocks from an input handshake to the earliest
    output handshake of that beat. Parameters (`wr`) and layer registers (`layer`) are sampled
    with each accepted beat: a write takes effect for beats accepted after it. Parameters survive
    `rst`. `images` > 1 (a periphery top's image slots) holds that many parameter images: `wr.addr`
    = s·columns + j writes column j of image s, and the `image` port selects the image accepted
    beats read (sampled like `layer`). Status: sticky `frame_error` (see `golden.nmpu.frame`), sticky `reg_error` (a beat
    accepted with a reserved `round_mode`, or a write to a column beyond `columns`), and
    `clamp_count`, which saturates and lags the output register by 1 + `cfg.clamp_stages` clocks
    (a pipelined count beyond 16 lanes); `clear` resets all three. Golden: `golden.nmpu.forward` and `golden.nmpu.frame`.
    """

    LATENCY = 4

    def __init__(self, cfg: NMPUConfig, images=1):
        check_unit_args(self, cfg, NMPUConfig, images)
        self.cfg, self.images = cfg, images
        super().__init__(postproc_signature(cfg, input_layout(cfg), output_layout(cfg),
                                            layer_layout(cfg), param_layout(cfg), images))

    @property
    def latency(self):
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg

        # A global advance: every stage moves when the output register is free or being read.
        valid = [Signal(name=f"valid{k}") for k in range(1, self.LATENCY + 1)]
        advance = ~valid[-1] | self.o.ready
        accept = self.i.valid & advance
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid)] + [b.eq(a) for a, b in zip(valid, valid[1:])]

        def stage(value, name):
            reg = Signal(value.shape(), name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        beat, frame_event = framing(m, accept, self.i.payload.last, cfg.beats)
        words, bad_write = param_memory(m, self.wr, beat, param_layout(cfg), cfg.columns, cfg.lanes,
                                        self.images, getattr(self, "image", None))
        # per-beat controls travel beside the lanes
        layer1 = stage(self.layer, "layer1")
        layer2 = stage(layer1, "layer2")
        layer3 = stage(layer2, "layer3")
        if cfg.static_layer:  # constants: the shifter and the rounding logic fold away
            shift = C(cfg.static_shift, cfg.shift_bits)
            pre_cut = C(cfg.static_pre_cut, cfg.shift_bits)
            round_mode = C(cfg.static_round, cfg.round_bits)
        else:
            shift, pre_cut, round_mode = layer1.shift, layer1.pre_cut, layer2.round_mode
        last4 = stage(stage(stage(stage(self.i.payload.last, "last1"), "last2"), "last3"), "last4")
        if cfg.static_layer and not cfg.exp_bits:  # constants, not registers holding them
            s2 = C(cfg.static_shift, cfg.total_shift_bits)
            c2 = C(min(cfg.static_pre_cut, cfg.static_shift), cfg.total_shift_bits)
        elif not cfg.exp_bits:  # one shift amount for all lanes
            m.submodules.shift_amounts = amounts = ShiftAmounts(cfg)
            m.d.comb += [amounts.shift.eq(shift), amounts.pre_cut.eq(pre_cut)]
            s2, c2 = stage(amounts.s, "s2"), stage(amounts.c, "c2")

        clamped, ys = [], []
        for l in range(cfg.lanes):
            m.submodules[f"lane{l}"] = lane = Lane(cfg)
            m.d.comb += [lane.advance.eq(advance), lane.word.eq(words[l]),
                         lane.round_mode.eq(round_mode),
                         lane.relu_mid.eq(layer3.relu_mid), lane.relu_out.eq(layer3.relu_out)]
            for name in ("p", "n") if cfg.dual else ("x",):
                m.d.comb += getattr(lane, name).eq(self.i.payload[name][l])
            if cfg.residual:
                m.d.comb += [lane.res.eq(self.i.payload.res[l]),
                             lane.residual_en.eq(layer3.residual_en)]
            if cfg.exp_bits:
                m.d.comb += [lane.shift.eq(shift), lane.pre_cut.eq(pre_cut)]
            else:
                m.d.comb += [lane.s.eq(s2), lane.c.eq(c2)]
            clamped.append(lane.clamped)
            ys.append(lane.z)
        # One assignment per wide port: simulators resolve a net driven slice by slice bit by
        # bit on every change of any slice.
        m.d.comb += [self.o.valid.eq(valid[-1]),
                     self.o.payload.eq(Cat(Cat(*ys), last4))]

        clamp_counter(m, self.clamp_count, self.clear, fresh=advance & valid[-2],
                      clamped=Cat(*clamped), stages=cfg.clamp_stages, group=CLAMP_GROUP)
        bad_mode = C(0, 1) if cfg.static_layer else accept & (self.layer.round_mode > max(RoundMode))
        for flag, event in ((self.frame_error, frame_event), (self.reg_error, bad_mode | bad_write)):
            m.d.sync += flag.eq(Mux(self.clear, 0, flag) | event)
        return m
