"""Pipelined IEEE 754 binary16 arithmetic: the building blocks of the FP16 baselines.

Every block is a `wiring.Component` with an `en` input: all of its registers advance together
when `en` is 1 and hold when it is 0 (the baseline units stall globally). `LATENCY` is the
number of register stages: the output shows f(inputs) `LATENCY` enabled clocks after the inputs
were applied. Operands and results are binary16 bit patterns.

Arithmetic rules (those of `golden.fp16`): round to nearest, ties to even; subnormals in and out;
overflow to ±Inf; NaN in → NaN out, invalid operations → NaN, and every NaN result is the
canonical 0x7E00. Zero signs follow IEEE round-to-nearest (x + (−x) = +0).

Notation in the comments: a finite pattern is `sig · 2^(exp − 25)` with the 11-bit significand
`sig` (hidden bit included) and `exp` = the exponent field, 1 for subnormals. Packing writes a
rounded 11-bit significand window with its biased exponent; the window's top bit is the hidden
bit, so a window whose top bit is clear is a subnormal (exponent field 0), and a rounding carry out
of the window steps the exponent field, into Inf (0x7C00) from the largest finite value.

Stage budget: the 11×11 significand multiply, about 3.6 ns on OSU 0.18 µm cells, sets the clock;
every other stage holds one wide adder, or a leading-zero count, or a barrel shift with its small
exponent arithmetic, or a round-and-pack, and stays below that. Measured per stage (register to
register, clock-to-Q and setup included; Yosys `synth -noabc`, ABC `&dch; &nf` with buffering and
sizing, OpenSTA): FP16Mul 3.6 | 2.5 | 2.8 ns, FP16FMA 3.6 | 3.4 | 3.7 | 2.1 | 3.0 ns,
UIntToFP16(12) 2.5, UIntToFP16(20) 3.2, IntToFP16(8) 1.8, FP16ToInt8 2.3 ns.
"""

from amaranth import C, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CANONICAL_NAN", "INF", "UIntToFP16", "IntToFP16", "FP16Mul", "FP16FMA", "FP16ToInt8"]

CANONICAL_NAN = 0x7E00
INF = 0x7C00          # +Inf; the sign bit is added on top
FRAC_BITS = 10
SIG_BITS = 11         # significand with its hidden bit
BIAS = 15
EXP_INF = 31          # exponent field of Inf and NaN


# -- combinational helpers -------------------------------------------------------------------------

class _Decoded:
    """Fields and classes of a binary16 pattern (see the module notation), as named wires."""

    def __init__(self, p, bits, name):
        field, frac = bits[FRAC_BITS:15], bits[:FRAC_BITS]
        normal = p.wire(field.any(), f"{name}_normal")
        some_frac = p.wire(frac.any(), f"{name}_frac")
        self.sign = bits[15]
        # exp = max(field, 1): only bit 0 changes, and only for the zero field.
        self.exp = p.wire(Cat(field[0] | ~normal, field[1:]), f"{name}_exp")
        self.sig = p.wire(Cat(frac, normal), f"{name}_sig")
        self.zero = ~normal & ~some_frac
        special = field.all()
        self.inf = p.wire(special & ~some_frac, f"{name}_inf")
        self.nan = p.wire(special & some_frac, f"{name}_nan")


def _lzc(p, value, name):
    """Leading zeros of `value` (len(value) when it is zero).

    A balanced tree of 2:1 merges (depth log2 of the width) rather than a priority chain. The
    value is padded at the bottom with zeros to a power of two, which keeps the count.
    """
    width = len(value)
    if width == 1:
        return ~value[0]
    n = 1 << (width - 1).bit_length()
    padded = p.wire(Cat(C(0, n - width), value), f"{name}_in")

    def tree(lo, hi):       # (all zero, count mod (hi − lo)) of padded[lo:hi]
        if hi - lo == 2:
            return ~padded[lo:hi].any(), ~padded[lo + 1]
        mid = (lo + hi) // 2
        zero_lo, count_lo = tree(lo, mid)
        zero_hi, count_hi = tree(mid, hi)
        zero_hi = p.wire(zero_hi, f"{name}_z{mid}_{hi}")
        count = Cat(Mux(zero_hi, count_lo, count_hi), zero_hi)
        return zero_hi & zero_lo, p.wire(count, f"{name}_c{lo}_{hi}")

    zero, count = tree(0, n)
    return p.wire(Mux(zero, width, count), name)


def _ones(width):
    return C((1 << width) - 1, width)


def _sticky_below(value, amount):
    """OR of the bits of `value` below bit `amount`: what `value >> amount` shifts out.

    A mask decoded from `amount` beside the barrel shifter, so the sticky bit costs no delay
    after the shift."""
    width = len(value)
    return (value & ~(_ones(width) << amount)[:width]).any()


def _round_pack(sig, guard, sticky, exp, can_overflow):
    """Round an 11-bit significand window to nearest even and pack |result| (15 bits).

    `exp` is the biased exponent the window has when its top bit is set; with the top bit clear
    the window is a subnormal (or zero) and the exponent field is 0. The rounding increment is
    added to the packed pattern, so a carry out of the fraction steps the exponent field,
    from the largest subnormal into the smallest normal and from 65504's binade into Inf.
    `can_overflow`: `exp` may exceed 30 before rounding, so a field of 31 or more means Inf.
    """
    inc = guard & (sticky | sig[0])
    field = Mux(sig[SIG_BITS - 1], exp, 0)
    mag = Cat(sig[:FRAC_BITS], field) + inc
    if can_overflow:
        return Mux(mag[FRAC_BITS:] >= EXP_INF, INF, mag[:15])
    return mag[:15]


class _Pipe:
    """Pipeline registers of one block (each `reg` is loaded only when `en` is 1), and named
    wires for values used more than once (an expression is re-emitted at each use)."""

    def __init__(self, m, en):
        self.m, self.en = m, en

    def wire(self, value, name):
        value = Value.cast(value)
        wire = Signal(value.shape(), name=name)
        self.m.d.comb += wire.eq(value)
        return wire

    def reg(self, value, name):
        value = Value.cast(value)
        # No reset: the units track valid data themselves; a datapath register needs none.
        reg = Signal(value.shape(), name=name, reset_less=True)
        with self.m.If(self.en):
            self.m.d.sync += reg.eq(value)
        return reg


def _signature(**ports):
    return wiring.Signature({"en": In(1), **ports})


# -- integer → binary16 ----------------------------------------------------------------------------

class _IntegerToFP16(wiring.Component):
    """An unsigned (`SIGNED` False) or two's complement `width`-bit integer `a` → binary16 `y`."""

    SIGNED = False
    # Count, shift and round of a 12- to 20-bit integer take about as long as one 11×11
    # multiply (the stage that sets the clock of the FP16 units): one stage suffices.
    LATENCY = 1

    def __init__(self, width):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            self._MustUse__silence = True     # never elaborated: do not warn about it
            raise ValueError(f"`width` must be an int >= 1, not {width!r}")
        self.width = width
        shape = signed(width) if self.SIGNED else unsigned(width)
        super().__init__(_signature(a=In(shape), y=Out(16)))

    def elaborate(self, platform):
        m = Module()
        p = _Pipe(m, self.en)
        width = self.width
        # The magnitude needs `width` bits in both cases (|−2^(w−1)| = 2^(w−1)).
        if self.SIGNED:
            sign = self.a[-1]
            mag = p.wire(Mux(sign, -self.a, self.a)[:width], "mag")
        else:
            sign, mag = C(0, 1), self.a
        # Normalise: the leading one to the top of a window at least a significand wide (so a
        # narrow integer needs no rounding logic at all). A leading one at bit k of the
        # magnitude has the biased exponent BIAS + k = BIAS + width − 1 − lz.
        window = max(width, SIG_BITS)
        lz = _lzc(p, mag, "lz")
        top = BIAS + width - 1
        norm = p.wire((Cat(C(0, window - width), mag) << lz)[:window], "norm")
        exp = (top - lz)[:top.bit_length()]
        # Round and pack. A zero input leaves a zero window, which packs to zero.
        sig = norm[window - SIG_BITS:]
        guard = norm[window - SIG_BITS - 1] if window > SIG_BITS else C(0, 1)
        sticky = norm[:window - SIG_BITS - 1].any() if window > SIG_BITS + 1 else C(0, 1)
        mag_bits = _round_pack(sig, guard, sticky, exp, can_overflow=top > EXP_INF - 1)
        m.d.comb += self.y.eq(p.reg(Cat(mag_bits, sign), "y1"))
        return m


class UIntToFP16(_IntegerToFP16):
    """Unsigned `width`-bit integer `a` → binary16 `y`, round to nearest even (2049 → 2048,
    2051 → 2052); values from 65520 up → +Inf.

    One stage: leading-zero count, normalising shift, round and pack.
    Latency 1, one conversion per enabled clock. Golden: `golden.fp16.from_uint`.
    """

    SIGNED = False


class IntToFP16(_IntegerToFP16):
    """Signed two's complement `width`-bit integer `a` → binary16 `y`, round to nearest even.

    One stage: magnitude, leading-zero count, normalising shift, round and pack.
    Latency 1, one conversion per enabled clock. Golden: `golden.fp16.from_int`.
    """

    SIGNED = True


# -- multiply --------------------------------------------------------------------------------------

class FP16Mul(wiring.Component):
    """y = a·b in binary16, one rounding (to nearest even), as numpy's float16 multiply except
    that every NaN result is 0x7E00.

    Stage 1: the 11×11 significand product and, beside it from the exponents and the leading
    zeros of the two significands, the normalising shift and the result exponent.
    Stage 2: the shift with its sticky bit, and the one-bit normalisation. Stage 3: round, pack.
    Latency 3, one product per enabled clock. Golden: `golden.fp16.mul`.
    """

    LATENCY = 3

    def __init__(self):
        super().__init__(_signature(a=In(16), b=In(16), y=Out(16)))

    def elaborate(self, platform):
        m = Module()
        p = _Pipe(m, self.en)
        a, b = _Decoded(p, self.a, "a"), _Decoded(p, self.b, "b")
        # Stage 1. The product P = sig_a·sig_b (22 bits) is worth P·2^(exp_a + exp_b − 50). Its
        # leading one sits at bit 20 − lz_a − lz_b or one above (counting a zero significand as
        # 1: its product is zero anyway), so the shift is known without counting P's zeros.
        # We keep V = P·2^(11 − r), whose leading one lands at bit 21 or 22, with
        #   r = max(10 − lz_a − lz_b, 26 − exp_a − exp_b),
        # the second term stopping the shift at the subnormal boundary (the window's LSB worth
        # 2^−24; the leading one then lies lower). r lies in [0, 24]: the first term is negative
        # only if both significands are subnormal, and then the second is 24. e1, the biased
        # exponent of V's bit 21, lies in [1, 46].
        es = p.wire(a.exp + b.exp, "es")
        lzs = p.wire(_lzc(p, a.sig | 1, "lz_a") + _lzc(p, b.sig | 1, "lz_b"), "lzs")
        normal_shift = 10 - lzs
        tiny_shift = 26 - es
        tiny = p.wire(tiny_shift > normal_shift, "tiny")     # both signed
        r1 = p.reg(Mux(tiny, tiny_shift, normal_shift)[:5], "r1")
        e1 = p.reg(Mux(tiny, 1, es - BIAS - lzs)[:6], "e1")
        prod1 = p.reg(a.sig * b.sig, "prod1")
        sign1 = p.reg(a.sign ^ b.sign, "sign1")
        nan1 = p.reg(a.nan | b.nan | (a.inf & b.zero) | (b.inf & a.zero), "nan1")
        inf1 = p.reg(a.inf | b.inf, "inf1")
        # Stage 2: Z = V >> 10 (13 bits: V's bits 22..10) and the sticky OR of V's bits below;
        # a leading one at bit 22 moves the window up one bit and the exponent by one.
        scaled = Cat(C(0, 1), prod1)
        z = p.wire((scaled >> r1)[:13], "z")
        up = z[12]
        sig2 = p.reg(Mux(up, z[2:13], z[1:12]), "sig2")
        guard2 = p.reg(Mux(up, z[1], z[0]), "guard2")
        sticky2 = p.reg(_sticky_below(scaled, r1) | (up & z[0]), "sticky2")
        exp2 = p.reg(e1 + up, "exp2")
        sign2, nan2, inf2 = p.reg(sign1, "sign2"), p.reg(nan1, "nan2"), p.reg(inf1, "inf2")
        # Stage 3: round and pack.
        mag = _round_pack(sig2, guard2, sticky2, exp2, can_overflow=True)
        y = Mux(nan2, CANONICAL_NAN, Cat(Mux(inf2, INF, mag), sign2))
        m.d.comb += self.y.eq(p.reg(y, "y3"))
        return m


# -- fused multiply-add ----------------------------------------------------------------------------

class FP16FMA(wiring.Component):
    """y = a·b + c in binary16 with one rounding (to nearest even) of the exact result.

    Stage 1: the significand product, and beside it the alignment of c against the product
    (a right shift with its sticky bit). Stage 2: the 40-bit add or subtract. Stage 3: magnitude
    (conditional negation) and leading-zero count. Stage 4: normalising shift, limited at the
    subnormal boundary, and the sticky bit. Stage 5: round and pack.
    Latency 5, one result per enabled clock. Golden: `golden.fp16.fma`.
    """

    LATENCY = 5

    # The extended window (bit 0 is a sticky bit, bit j ≥ 1 has weight 2^(j − 3) product LSBs):
    # the product at bits 3..24, c's LSB at bit 27 at most, so c's MSB at 37 and a carry at 38.
    PRODUCT_AT = 3      # two guard bits below the product's LSB, then the sticky bit
    C_TOP_LSB = 27      # c at least 2 bits above the product's MSB (bit 24)
    WIDTH = 39          # bits 0..38; the sum carries a sign bit beyond

    def __init__(self):
        super().__init__(_signature(a=In(16), b=In(16), c=In(16), y=Out(16)))

    def elaborate(self, platform):
        m = Module()
        p = _Pipe(m, self.en)
        a, b, c = (_Decoded(p, x, n) for x, n in ((self.a, "a"), (self.b, "b"), (self.c, "c")))
        width = self.WIDTH
        sign_p = a.sign ^ b.sign

        # Stage 1. The product P·2^(es − 50), es = exp_a + exp_b, sits at a fixed place; c is
        # shifted right by t = es − exp_c − 1 from its highest place, where its LSB is 2 bits
        # above the product's MSB. Clamping t at 0 (c far above the product, or a zero product)
        # keeps the product's bits in the window although it is then worth less than they say:
        # it lies wholly below a quarter of c's LSB, so for rounding it only says "non-zero",
        # and it says that either way. c's bits shifted below the window become a sticky bit;
        # that happens only when c is more than 2 bits below the product's LSB, and then the
        # product is at least 2^10 LSBs (one factor is normal), |c| < 2^8 of them, so the result
        # is normal and rounds at 2 guard bits below the product's LSB or above: the window
        # keeps exactly those two guard bits (a zero product is clamped instead). Window bit 38
        # has the biased exponent top = es, or exp_c + 1 when clamped.
        es = p.wire(a.exp + b.exp, "es")
        t = es - c.exp - 1
        clamp = p.wire(a.zero | b.zero | (t < 0), "clamp")   # t is signed
        t = p.wire(Mux(clamp, 0, t)[:6], "t")
        placed = Cat(C(0, self.C_TOP_LSB - 1), c.sig)       # window bits 1..37, as bits 0..36
        c_ext = Cat(_sticky_below(placed, t), (placed >> t)[:len(placed)])
        sub = p.wire(sign_p ^ c.sign, "sub")
        # For a subtraction c is stored inverted (p − c = p + ~c + 1): `sub` is known early.
        c1 = p.reg(c_ext ^ sub.replicate(len(c_ext)), "c1")
        prod1 = p.reg(a.sig * b.sig, "prod1")
        # The limit of the normalising shift, lim = top − 1 in [1, 59], keeps the exponent >= 1.
        lim1 = p.reg(Mux(clamp, c.exp, es - 1)[:6], "lim1")
        sub1 = p.reg(sub, "sub1")
        sign1 = p.reg(sign_p, "sign1")
        # An exact zero sum is −0 only when both terms are zeros of negative sign.
        zsign1 = p.reg(sign_p & c.sign, "zsign1")
        prod_inf = a.inf | b.inf
        nan1 = p.reg(a.nan | b.nan | c.nan | (a.inf & b.zero) | (b.inf & a.zero)
                     | (prod_inf & c.inf & sub), "nan1")
        inf1 = p.reg(prod_inf | c.inf, "inf1")
        isign1 = p.reg(Mux(prod_inf, sign_p, c.sign), "isign1")

        # Stage 2: the exact sum (up to the sticky bit) in two's complement, one adder.
        # |sum| < 2^38 + 2^25, so 40 bits hold it with its sign.
        p_ext = Cat(C(0, self.PRODUCT_AT), prod1)
        addend = Cat(c1, sub1.replicate(width + 1 - len(c1)))
        sum2 = p.reg((p_ext + addend + sub1)[:width + 1].as_signed(), "sum2")
        lim2, sign2, zsign2 = p.reg(lim1, "lim2"), p.reg(sign1, "sign2"), p.reg(zsign1, "zsign2")
        nan2, inf2, isign2 = p.reg(nan1, "nan2"), p.reg(inf1, "inf2"), p.reg(isign1, "isign2")

        # Stage 3: magnitude and its leading zeros (massive cancellation can leave any number).
        # Beside the count, from masks decoded from `lim`: whether the leading one lies too low
        # for a normal result (lz > lim: the result is subnormal and the shift stops at lim),
        # and the sticky bit for that shift (mag's bits below 27 − lim).
        neg = sum2[-1]
        mag = p.wire(Mux(neg, -sum2, sum2)[:width], "mag")
        mag3 = p.reg(mag, "mag3")
        lz3 = p.reg(_lzc(p, mag, "lz"), "lz3")
        normal_range = Cat(_ones(width - 1) >> lim2, C(0, 1))        # bits below 38 − lim
        tiny3 = p.reg(~(mag & ~normal_range).any(), "tiny3")
        low = width - SIG_BITS - 1                                   # 27: sticky bits 26..0
        tiny_sticky3 = p.reg((mag[:low] & (_ones(low) >> lim2)).any(), "tiny_sticky3")
        sign3 = p.reg(Mux(mag == 0, zsign2, sign2 ^ neg), "sign3")
        lim3 = p.reg(lim2, "lim3")
        nan3, inf3, isign3 = p.reg(nan2, "nan3"), p.reg(inf2, "inf3"), p.reg(isign2, "isign3")

        # Stage 4: shift the leading one to bit 38, or only as far as the subnormal boundary.
        # The significand window is then bits 38..28, the guard bit 27, the sticky bits 26..0
        # (taken beside the shift: mag's bits below 27 − sh). The exponent of a normal result
        # is top − lz = lim + 1 − lz; a subnormal one ignores it.
        sh = p.wire(Mux(tiny3, lim3, lz3), "sh")
        win4 = p.reg((mag3 << sh)[low:width], "win4")
        sticky4 = p.reg(Mux(tiny3, tiny_sticky3, (mag3[:low] & (_ones(low) >> lz3)).any()),
                        "sticky4")
        exp4 = p.reg((lim3 + 1 - lz3)[:6], "exp4")
        sign4 = p.reg(Mux(inf3, isign3, sign3), "sign4")
        nan4, inf4 = p.reg(nan3, "nan4"), p.reg(inf3, "inf4")

        # Stage 5: round and pack.
        mag5 = _round_pack(win4[1:], win4[0], sticky4, exp4, can_overflow=True)
        y = Mux(nan4, CANONICAL_NAN, Cat(Mux(inf4, INF, mag5), sign4))
        m.d.comb += self.y.eq(p.reg(y, "y5"))
        return m


# -- binary16 → int8 -------------------------------------------------------------------------------

class FP16ToInt8(wiring.Component):
    """binary16 `a` → int8 `y`, rounded to nearest even and saturated to [−128, 127]; ±Inf
    saturate, NaN gives 0. Flags: `saturated` (the rounded value, or an infinity, lay outside
    the int8 range) and `nan`.

    One stage: the right shift of the significand to the integer point with guard and sticky
    bits, then round, sign and saturate in one adder (together about one multiply's delay).
    Latency 1, one conversion per enabled clock. Golden: `golden.fp16.to_int8`.
    """

    LATENCY = 1

    def __init__(self):
        super().__init__(_signature(a=In(16), y=Out(signed(8)), saturated=Out(1), nan=Out(1)))

    def elaborate(self, platform):
        m = Module()
        p = _Pipe(m, self.en)
        a = _Decoded(p, self.a, "a")
        # |a| = sig·2^(exp − 25). Exponents up to 22 (|a| < 256) shift right by 25 − exp >= 3,
        # leaving an 8-bit integer part q with the guard bit below it; from 23 up |a| >= 256
        # saturates. Below 14 (|a| < 0.5) the shift empties q and the guard bit.
        scaled = Cat(C(0, 1), a.sig)                       # one extra bit catches the guard
        amount = p.wire((25 - a.exp)[:5], "amount")
        shifted = p.wire((scaled >> amount)[:9], "shifted")
        q, guard, sign = shifted[1:], shifted[0], a.sign
        inc = p.wire(guard & (_sticky_below(scaled, amount) | q[0]), "inc")
        # n = q + inc, then ±n in one adder: −n = ~q + (1 − inc). n leaves the range above 127
        # (positive) or 128 (negative); q's 8 bits hold every n short of 256.
        signed_n = (Mux(sign, ~q, q) + (inc ^ sign))[:8]
        over_pos = q[7] | (q[:7].all() & inc)
        over_neg = q[7] & (q[:7].any() | inc)
        sat = p.wire((a.exp >= 23) | a.inf | Mux(sign, over_neg, over_pos), "sat")
        y = Mux(a.nan, 0, Mux(sat, Mux(sign, -128, 127), signed_n))
        m.d.comb += [self.y.eq(p.reg(y, "y1")),
                     self.saturated.eq(p.reg(sat & ~a.nan, "saturated1")),
                     self.nan.eq(p.reg(a.nan, "nan1"))]
        return m
