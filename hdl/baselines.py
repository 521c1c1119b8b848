"""The FP16 baselines (spec: design/baselines.md), built from the pipelined blocks of `hdl.fp16`:
the LDPU, the FP16 post-processing unit the NMPU replaces, and the FP16 outer-product array that
ESSOP replaces. Golden: `golden.baselines` on top of `golden.fp16`.
"""

from amaranth import C, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import check_unit_args, clamp_counter, framing, param_memory, postproc_signature
from .config import FP16OuterConfig, LDPUConfig
from .fp16 import FP16FMA, FP16Mul, FP16ToInt8, IntToFP16, UIntToFP16

__all__ = ["ldpu_input_layout", "ldpu_output_layout", "ldpu_param_layout", "ldpu_layer_layout",
           "ScaleBlock", "Activation", "LDPU", "outer_input_layout", "outer_output_layout",
           "FP16Outer"]

FP16 = 16
SIGN = 1 << 15


def _delay(m, value, stages, en, name):
    """`value` through `stages` registers that load when `en` is 1; the last one is returned
    (`value` itself for 0 stages). Datapath registers: no reset (valid bits travel apart)."""
    value = Value.cast(value)
    for k in range(1, stages + 1):
        reg = Signal(value.shape(), name=f"{name}{k}", reset_less=True)
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value


def _relu(x, on):
    """ReLU on a binary16 pattern, a bit operation: sign bit set (−0, negatives, a negative
    NaN) → +0."""
    return Mux(on & x[15], 0, x)


# -- LDPU payloads ---------------------------------------------------------------------------------

def ldpu_input_layout(cfg: LDPUConfig):
    """One input beat: one column's counts (and int8 residual) plus `last`, as the NMPU's with
    one lane."""
    fields = {"p": data.ArrayLayout(unsigned(cfg.adc_bits), 1),
              "n": data.ArrayLayout(unsigned(cfg.adc_bits), 1)}
    if cfg.residual:
        fields["res"] = data.ArrayLayout(signed(cfg.out_bits), 1)
    fields["last"] = unsigned(1)
    return data.StructLayout(fields)


def ldpu_output_layout(cfg: LDPUConfig):
    return data.StructLayout({"y": data.ArrayLayout(signed(cfg.out_bits), 1),
                              "last": unsigned(1)})


def ldpu_param_layout(cfg: LDPUConfig):
    """One column's five binary16 words, least significant first (`cfg.word_fields`)."""
    return data.StructLayout({name: unsigned(bits) for name, bits in cfg.word_fields})


def ldpu_layer_layout(cfg: LDPUConfig):
    """Per-layer registers: the ReLU switches, and with a residual input its switch and the
    binary16 scale `c`."""
    fields = {"relu_mid": unsigned(1), "relu_out": unsigned(1)}
    if cfg.residual:
        fields |= {"residual_en": unsigned(1), "c": unsigned(FP16)}
    return data.StructLayout(fields)


# -- LDPU blocks -----------------------------------------------------------------------------------

class ScaleBlock(wiring.Component):
    """Convert and scale one column: y = fma(−sn, fp16(N), fma(sp, fp16(P), o)).

    Stage 1 (loads on `take`): P's conversion and the registers of N, sp, −sn and o. The rest
    (loads on `en`): the first FMA (sp·P + o, 5 stages) with N's conversion in its last stage,
    then the second FMA. N travels unconverted (`adc_bits` < 16 bits) until its conversion.
    A full-rate block has take = en; a half-rate block loads stage 1 with each of its beats and
    moves the rest every second clock (see `LDPU`). Latency `LATENCY` loads of `en` after the
    `take` that brought the operands (the first of them may coincide with that `take`).
    Golden: `golden.fp16.from_uint`, `fma`, `neg`.
    """

    LATENCY = UIntToFP16.LATENCY + 2 * FP16FMA.LATENCY

    def __init__(self, adc_bits):
        self.adc_bits = adc_bits
        super().__init__({"take": In(1), "en": In(1), "p": In(adc_bits), "n": In(adc_bits),
                          "sp": In(FP16), "sn": In(FP16), "o": In(FP16), "y": Out(FP16)})

    def elaborate(self, platform):
        m = Module()
        # Stage 1 is one register stage: all of it loads on `take`.
        assert UIntToFP16.LATENCY == 1
        m.submodules.conv_p = conv_p = UIntToFP16(self.adc_bits)
        m.submodules.conv_n = conv_n = UIntToFP16(self.adc_bits)
        m.submodules.fma_p = fma_p = FP16FMA()
        m.submodules.fma_n = fma_n = FP16FMA()
        m.d.comb += [conv_p.en.eq(self.take), conv_p.a.eq(self.p)]
        sp1 = _delay(m, self.sp, 1, self.take, "sp")
        o1 = _delay(m, self.o, 1, self.take, "o")
        msn1 = _delay(m, self.sn ^ SIGN, 1, self.take, "msn")    # −sn: a sign flip
        n1 = _delay(m, self.n, 1, self.take, "n")
        m.d.comb += [fma_p.en.eq(self.en), fma_p.a.eq(sp1), fma_p.b.eq(conv_p.y), fma_p.c.eq(o1)]
        # N's conversion ends with the first FMA, −sn waits for the second.
        n_late = _delay(m, n1, FP16FMA.LATENCY - UIntToFP16.LATENCY, self.en, "n_d")
        msn_late = _delay(m, msn1, FP16FMA.LATENCY, self.en, "msn_d")
        m.d.comb += [conv_n.en.eq(self.en), conv_n.a.eq(n_late),
                     fma_n.en.eq(self.en), fma_n.a.eq(msn_late), fma_n.b.eq(conv_n.y),
                     fma_n.c.eq(fma_p.y), self.y.eq(fma_n.y)]
        return m


class Activation(wiring.Component):
    """Affine z = fma(a, y, b), ReLU if `relu_mid`, residual z = fma(c, fp16(res), z), ReLU if
    `relu_out`, conversion to int8 (nearest even, saturating; NaN → 0) with the clamp flag
    `saturated | nan`. Every input arrives with its `y`; the block delays the late ones.

    The residual FMA always runs: a disabled residual comes with c = +0 (see `LDPU`). The int8
    residual travels unconverted until the stage before its FMA. Latency `LATENCY` =
    `stages(residual)`, one value per enabled clock. Golden: `golden.fp16.fma`,
    `from_int`, `to_int8`.
    """

    @staticmethod
    def stages(residual):
        return FP16FMA.LATENCY * (2 if residual else 1) + FP16ToInt8.LATENCY

    def __init__(self, residual):
        self.residual = residual
        self.LATENCY = self.stages(residual)
        sig = {"en": In(1), "y": In(FP16), "a": In(FP16), "b": In(FP16), "relu_mid": In(1),
               "relu_out": In(1), "z": Out(signed(8)), "clamped": Out(1)}
        if residual:
            sig |= {"c": In(FP16), "res": In(signed(8))}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        en = self.en
        m.submodules.fma_affine = affine = FP16FMA()
        m.submodules.to_int8 = to_int8 = FP16ToInt8()
        m.d.comb += [affine.en.eq(en), affine.a.eq(self.a), affine.b.eq(self.y),
                     affine.c.eq(self.b)]
        relu_mid = _delay(m, self.relu_mid, FP16FMA.LATENCY, en, "relu_mid")
        z = _relu(affine.y, relu_mid)
        if self.residual:
            m.submodules.conv_res = conv_res = IntToFP16(8)
            m.submodules.fma_res = fma_res = FP16FMA()
            res = _delay(m, self.res, FP16FMA.LATENCY - IntToFP16.LATENCY, en, "res")
            c = _delay(m, self.c, FP16FMA.LATENCY, en, "c")
            m.d.comb += [conv_res.en.eq(en), conv_res.a.eq(res),
                         fma_res.en.eq(en), fma_res.a.eq(c), fma_res.b.eq(conv_res.y),
                         fma_res.c.eq(z)]
            z = fma_res.y
        relu_out = _delay(m, self.relu_out, self.LATENCY - FP16ToInt8.LATENCY, en, "relu_out")
        m.d.comb += [to_int8.en.eq(en), to_int8.a.eq(_relu(z, relu_out)),
                     self.z.eq(to_int8.y), self.clamped.eq(to_int8.saturated | to_int8.nan)]
        return m


# -- the LDPU --------------------------------------------------------------------------------------

class LDPU(wiring.Component):
    """Local digital processing unit, FP16: per column y = fma(−sn, N, fma(sp, P, o)) from the
    converted counts, z = fma(a, y, b), ReLU, z = fma(c, fp16(res), z), ReLU, int8. One column
    per beat, one beat per clock while `o` is read. Golden: `golden.baselines.forward`.

    Interface, framing and status as the NMPU's with one lane: parameters (`wr`: the five
    binary16 words of a column) and layer registers (`layer`) are sampled with each accepted
    beat, so a write lands for beats accepted after it; sticky `frame_error`, sticky `reg_error`
    (a write to a column >= `columns`; with `images` > 1 image slots, as the NMPU's, an address
    >= images · columns), saturating `clamp_count` of outputs whose conversion
    saturated or met a NaN, lagging the output register by one clock; `clear` resets all three.
    Global stall: every register moves when the output register is free or read.

    `cfg.scale_blocks` = 1: one convert-and-scale block at full rate. = 2 (the chip's structure):
    two blocks take alternate accepted beats (`turn` flips per accepted beat) and run at half
    rate: each block's stage 1 loads when it takes a beat, the rest of the block moves on every
    second advance (`phase` flips per advance; block k moves when phase = k). Order is kept by a
    fixed schedule, not by handshakes: a beat accepted at advance t into block k loads its stage
    1 at t; the block's next move e is t + 1 or t + 2, the first advance with phase = k, and its
    stage 1 still holds the beat then (block k's next beat comes at t + 2 or later, and loads at
    that edge, after the move has read it). The block's output register then holds the result
    from e + 2·(D − 2) to the block's next move e + 2·(D − 1) (D = `ScaleBlock.LATENCY` stages),
    an interval that always contains advance t + 2·D − 1: there a merge register takes it, picked
    by the beat's `turn` travelling beside it. Every beat thus reaches the activation block a
    fixed 2·D advances after its acceptance: no two collide, none overtakes another. The merge
    register keeps the 2:1 multiplexer out of the affine FMA's multiplier stage.

    Per-beat controls (valid, last, the merge select, the layer fields and a, b) travel in
    shift registers beside the datapath. A disabled residual enters as c = +0: fma(+0, r, z) = z
    for every z but −0 (→ +0 or −0), which both ReLU and the int8 conversion map to 0, so the
    outputs and flags are those of skipping the FMA, without a 5-stage bypass.

    Latency `LATENCY` clocks from an input handshake to the output: 22 with one block, 33 with
    two (the half-rate blocks take two clocks per stage), 5 fewer without the residual.
    """

    def __init__(self, cfg: LDPUConfig, images=1):
        check_unit_args(self, cfg, LDPUConfig, images)
        self.cfg, self.images = cfg, images
        # Advances from acceptance to the activation block's first register.
        self.scale_latency = ScaleBlock.LATENCY * cfg.scale_blocks
        self.LATENCY = self.scale_latency + Activation.stages(cfg.residual)
        super().__init__(postproc_signature(cfg, ldpu_input_layout(cfg), ldpu_output_layout(cfg),
                                            ldpu_layer_layout(cfg), ldpu_param_layout(cfg),
                                            images))

    @property
    def latency(self):
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        valid = [Signal(name=f"valid{k}") for k in range(1, self.LATENCY + 1)]
        # Named wires: an expression would be re-emitted at each of its many uses.
        advance, accept = Signal(name="advance"), Signal(name="accept")
        m.d.comb += [advance.eq(~valid[-1] | self.o.ready), accept.eq(self.i.valid & advance),
                     self.i.ready.eq(advance)]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid)] + [b.eq(a) for a, b in zip(valid, valid[1:])]

        payload = self.i.payload
        beat, frame_event = framing(m, accept, payload.last, cfg.beats)
        (word,), bad_write = param_memory(m, self.wr, beat, ldpu_param_layout(cfg),
                                          cfg.columns, 1, self.images, getattr(self, "image", None))

        def scale_block(name, take, en):
            m.submodules[name] = block = ScaleBlock(cfg.adc_bits)
            m.d.comb += [block.take.eq(take), block.en.eq(en),
                         block.p.eq(payload.p[0]), block.n.eq(payload.n[0]),
                         block.sp.eq(word.sp), block.sn.eq(word.sn), block.o.eq(word.o)]
            return block.y

        if cfg.scale_blocks == 1:
            y = scale_block("scale", advance, advance)
        else:
            turn = Signal(name="turn")      # the block of the next accepted beat
            phase = Signal(name="phase")    # the block that moves at this advance
            with m.If(accept):
                m.d.sync += turn.eq(~turn)
            with m.If(advance):
                m.d.sync += phase.eq(~phase)
            ys = [scale_block(f"scale{k}", accept & (turn == k), advance & (phase == k))
                  for k in range(2)]
            pick = _delay(m, turn, self.scale_latency - 1, advance, "pick")
            y = _delay(m, Mux(pick, ys[1], ys[0]), 1, advance, "merged")

        m.submodules.act = act = Activation(cfg.residual)
        ahead = self.scale_latency
        m.d.comb += [
            act.en.eq(advance), act.y.eq(y),
            act.a.eq(_delay(m, word.a, ahead, advance, "a")),
            act.b.eq(_delay(m, word.b, ahead, advance, "b")),
            act.relu_mid.eq(_delay(m, self.layer.relu_mid, ahead, advance, "relu_mid")),
            act.relu_out.eq(_delay(m, self.layer.relu_out, ahead, advance, "relu_out")),
        ]
        if cfg.residual:
            c = Mux(self.layer.residual_en, self.layer.c, 0)
            m.d.comb += [act.c.eq(_delay(m, c, ahead, advance, "c")),
                         act.res.eq(_delay(m, payload.res[0], ahead, advance, "res"))]
        last = _delay(m, payload.last, self.LATENCY, advance, "last")
        # One assignment per wide port (see hdl/nmpu.py).
        m.d.comb += [self.o.valid.eq(valid[-1]), self.o.payload.eq(Cat(act.z, last))]

        clamp_counter(m, self.clamp_count, self.clear, fresh=advance & valid[-2],
                      clamped=act.clamped)
        for flag, event in ((self.frame_error, frame_event), (self.reg_error, bad_write)):
            m.d.sync += flag.eq(Mux(self.clear, 0, flag) | event)
        return m


# -- the FP16 outer-product array ------------------------------------------------------------------

def outer_input_layout(cfg: FP16OuterConfig):
    """One product: x (`rows` binary16 patterns) and δ (`cols` patterns), as ESSOP's input."""
    return data.StructLayout({"x": data.ArrayLayout(unsigned(FP16), cfg.rows),
                              "d": data.ArrayLayout(unsigned(FP16), cfg.cols)})


def outer_output_layout(cfg: FP16OuterConfig):
    """One row x_i·δ_j (j = 0 … cols − 1), `last` on the product's final row."""
    return data.StructLayout({"p": data.ArrayLayout(unsigned(FP16), cfg.cols),
                              "last": unsigned(1)})


class FP16Outer(wiring.Component):
    """FP16 outer-product array: `cols` pipelined FP16 multipliers produce one row x_i·δ_j
    (j = 0 … cols − 1) per clock, rows i = 0 … rows − 1 in order, `last` on the final row.

    An accepted product is held in operand registers: δ in place, x in a shift register whose
    head feeds every multiplier (no `rows`-to-1 multiplexer in the multiplier stage). The next
    product is accepted while the last row of the current one issues, so products follow each
    other without a gap: `rows` clocks per product while `o` is read. Global stall on `o`
    backpressure. Latency `LATENCY` clocks from the input handshake to the product's first row
    (the operand register, then the multiplier's stages). Golden: `golden.fp16.mul`.
    """

    LATENCY = 1 + FP16Mul.LATENCY

    def __init__(self, cfg: FP16OuterConfig):
        if not isinstance(cfg, FP16OuterConfig):
            self._MustUse__silence = True  # never elaborated: do not warn about it
            raise TypeError(f"FP16Outer needs an FP16OuterConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        super().__init__({"i": In(stream.Signature(outer_input_layout(cfg))),
                          "o": Out(stream.Signature(outer_output_layout(cfg)))})

    @property
    def latency(self):
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        valid = [Signal(name=f"valid{k}") for k in range(1, FP16Mul.LATENCY + 1)]
        advance, accept = Signal(name="advance"), Signal(name="accept")
        m.d.comb += advance.eq(~valid[-1] | self.o.ready)
        with m.If(advance):
            m.d.sync += [b.eq(a) for a, b in zip(valid, valid[1:])]

        # `active`: a product sits in the operand registers; row `row` issues at this advance.
        active = Signal(name="active")
        if cfg.rows > 1:
            row = Signal(range(cfg.rows), name="row")
            final = row == cfg.rows - 1
        else:
            final = C(1, 1)
        free = ~active | final
        m.d.comb += [self.i.ready.eq(advance & free), accept.eq(self.i.valid & self.i.ready)]
        with m.If(advance):
            m.d.sync += valid[0].eq(active)
            with m.If(free):
                m.d.sync += active.eq(self.i.valid)
                if cfg.rows > 1:
                    m.d.sync += row.eq(0)
            if cfg.rows > 1:
                with m.Else():
                    m.d.sync += row.eq(row + 1)

        payload = self.i.payload
        xs = [Signal(FP16, name=f"x{k}", reset_less=True) for k in range(cfg.rows)]
        ds = [Signal(FP16, name=f"d{j}", reset_less=True) for j in range(cfg.cols)]
        with m.If(accept):
            m.d.sync += [x.eq(payload.x[k]) for k, x in enumerate(xs)]
            m.d.sync += [d.eq(payload.d[j]) for j, d in enumerate(ds)]
        with m.Elif(advance):
            m.d.sync += [x.eq(nxt) for x, nxt in zip(xs, xs[1:])]

        ps = []
        for j in range(cfg.cols):
            m.submodules[f"mul{j}"] = mul = FP16Mul()
            m.d.comb += [mul.en.eq(advance), mul.a.eq(xs[0]), mul.b.eq(ds[j])]
            ps.append(mul.y)
        last = _delay(m, active & final, FP16Mul.LATENCY, advance, "last")
        m.d.comb += [self.o.valid.eq(valid[-1]), self.o.payload.eq(Cat(*ps, last))]
        return m
