"""ESSOP: the stochastic-computing outer-product engine (spec: design/essop.md).

A product goes through three register stages (`S1` accept, `S2` block maxima, `S3` magnitudes
and exponent), then counts for BL = 2^log2_bl clocks in the `rows` × `cols` array of up/down
counters, then leaves as `rows` output beats, one row of counts each. Golden: `golden.essop`
(`reseed`, `outer_product`, `product_stream`); every convention of the golden model's docstring
(LFSR bit order, r_t as the top state bits, converter seeds, error products) is built here.
"""

from typing import NamedTuple

from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import ESSOPConfig

__all__ = ["FP16", "input_layout", "output_layout", "leap_rows", "Leap", "LFSR", "BlockMax",
           "Magnitudes", "Row", "ESSOP"]

FP16 = 16
_FRAC = 10
_EXP_FIELD_MAX = 31
_BIAS_M1 = 14          # e_v = E_max − 14


# -- payloads --------------------------------------------------------------------------------------

def input_layout(cfg: ESSOPConfig):
    """One product: x (`rows` binary16 patterns) and δ (`cols` patterns); with `acc_max` > 1
    also `acc`, the framing flag of a group (1: add into the counters, no read-out yet)."""
    fields = {"x": data.ArrayLayout(unsigned(FP16), cfg.rows),
              "d": data.ArrayLayout(unsigned(FP16), cfg.cols)}
    if cfg.accumulates:
        fields["acc"] = unsigned(1)
    return data.StructLayout(fields)


def output_layout(cfg: ESSOPConfig):
    """One read-out beat: `rows_per_beat` rows of counts (row-major: the beat's first row in
    c[0 : cols]), the product's (group's) exponent E, its error flag, and `last` on its final
    beat."""
    return data.StructLayout({"c": data.ArrayLayout(signed(cfg.count_bits),
                                                    cfg.rows_per_beat * cfg.cols),
                              "exp": signed(cfg.exp_bits), "error": unsigned(1),
                              "last": unsigned(1)})


# -- GF(2) matrices as row masks (pure Python; golden.essop has its own NumPy version) -------------

def _step_rows(n, poly):
    """One Fibonacci step: new bit 0 is the XOR of old bits n−1−k for c_k = 1, new bit i takes
    old bit i−1."""
    rows = [0] * n
    for k in range(n):
        if poly >> k & 1:
            rows[0] |= 1 << (n - 1 - k)
    for i in range(1, n):
        rows[i] = 1 << (i - 1)
    return rows


def _mat_mul(a, b):
    """(a·b) over GF(2), each matrix a list of row masks."""
    out = []
    for row in a:
        acc, j = 0, 0
        while row >> j:
            if row >> j & 1:
                acc ^= b[j]
            j += 1
        out.append(acc)
    return out


def leap_rows(n, poly, k):
    """A^k, the k-step transition of the n-bit LFSR with polynomial `poly`, as n row masks:
    new state bit i is the XOR of the old bits set in mask i."""
    result = [1 << i for i in range(n)]
    base = _step_rows(n, poly)
    while k:
        if k & 1:
            result = _mat_mul(result, base)
        base = _mat_mul(base, base)
        k >>= 1
    return result


def _apply_rows(rows, value):
    return sum((bin(value & mask).count("1") & 1) << i for i, mask in enumerate(rows))


# -- random numbers --------------------------------------------------------------------------------

class Leap(wiring.Component):
    """A fixed XOR network: `o` = M·`i` over GF(2), M given as row masks (combinational)."""

    def __init__(self, rows):
        self.rows = list(rows)
        n = len(self.rows)
        super().__init__({"i": In(n), "o": Out(n)})

    def elaborate(self, platform):
        m = Module()
        bits = []
        for mask in self.rows:
            taps = [self.i[j] for j in range(len(self.rows)) if mask >> j & 1]
            bits.append(Cat(*taps).xor() if taps else C(0, 1))
        m.d.comb += self.o.eq(Cat(*bits))
        return m


class LFSR(wiring.Component):
    """A leap-forward Fibonacci LFSR: `mag_bits` steps per clock while `run`.

    `r` is the clock's random number, the top `mag_bits` bits of the state in use; with `load`
    the state in use is `seed` through the converter's seed network (`offset` steps along the
    sequence), so a product can start from a fresh seed on its first clock. `run` and `load`
    together: r from the loaded state, which then leaps. `load` alone: the state is loaded.
    The power-on state is that of seed 1. Golden: `golden.essop.lfsr_leap`, `converter_seeds`.
    """

    def __init__(self, cfg: ESSOPConfig, poly, offset=0):
        self.cfg = cfg
        self.poly = poly
        self.offset = offset
        n = cfg.lfsr_width
        self.seed_rows = leap_rows(n, poly, offset)
        self.leap_rows = leap_rows(n, poly, cfg.mag_bits)
        super().__init__({"seed": In(n), "load": In(1), "run": In(1), "r": Out(cfg.mag_bits)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n = cfg.lfsr_width
        state = Signal(n, name="state", init=_apply_rows(self.seed_rows, 1))
        if self.offset:
            m.submodules.seed_net = seed_net = Leap(self.seed_rows)
            m.d.comb += seed_net.i.eq(self.seed)
            seeded = seed_net.o
        else:
            seeded = self.seed
        m.submodules.leap = leap = Leap(self.leap_rows)
        used = Signal(n, name="used")
        m.d.comb += [used.eq(Mux(self.load, seeded, state)), leap.i.eq(used),
                     self.r.eq(used[n - cfg.mag_bits:])]
        with m.If(self.run):
            m.d.sync += state.eq(leap.o)
        with m.Elif(self.load):
            m.d.sync += state.eq(used)
        return m


# -- block normalisation ---------------------------------------------------------------------------

def _exp_field(bits):
    """Exponent field with zeros and subnormals counted as 1."""
    field = bits[_FRAC:_FRAC + 5]
    return Mux(field == 0, 1, field)


class BlockMax(wiring.Component):
    """Step 1a of one vector: E_max, the largest exponent field (subnormals and zeros as 1), and
    `error` when an element is Inf or NaN (field 31). Combinational: a balanced max tree."""

    def __init__(self, count):
        self.count = count
        super().__init__({"v": In(data.ArrayLayout(unsigned(FP16), count)),
                          "e_max": Out(5), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        terms = []
        for k in range(self.count):
            e = Signal(5, name=f"e{k}")
            m.d.comb += e.eq(_exp_field(self.v[k]))
            terms.append(e)
        level = 0
        while len(terms) > 1:
            nxt = []
            for k in range(0, len(terms) - 1, 2):
                a, b = terms[k], terms[k + 1]
                mx = Signal(5, name=f"max{level}_{k // 2}")
                m.d.comb += mx.eq(Mux(a > b, a, b))
                nxt.append(mx)
            terms = nxt + (terms[-1:] if len(terms) % 2 else [])
            level += 1
        m.d.comb += [self.e_max.eq(terms[0]), self.error.eq(self.e_max == _EXP_FIELD_MAX)]
        return m


class Magnitudes(wiring.Component):
    """Step 1b of one vector: q_k = floor(sig_k · 2^(m − 11 − (E_max − exp_k))), the significand
    shifted right by the distance of its exponent from the block's, and the sign bits.
    Golden: `golden.essop.normalise`. Combinational: one barrel shifter per element."""

    def __init__(self, cfg: ESSOPConfig, count):
        self.cfg = cfg
        self.count = count
        super().__init__({"v": In(data.ArrayLayout(unsigned(FP16), count)), "e_max": In(5),
                          "q": Out(data.ArrayLayout(unsigned(cfg.mag_bits), count)),
                          "s": Out(count)})

    def elaborate(self, platform):
        m = Module()
        mag = self.cfg.mag_bits
        # sig·2^pad keeps every bit of q when m > 11; the shift drops the bits below q's LSB
        pad = max(0, mag - 11)
        lo = 11 + pad - mag
        qs, signs = [], []
        for k in range(self.count):
            v = self.v[k]
            field = v[_FRAC:_FRAC + 5]
            sig = Cat(C(0, pad), v[:_FRAC], field != 0) if pad else Cat(v[:_FRAC], field != 0)
            diff = Signal(5, name=f"diff{k}")
            shifted = Signal(11 + pad, name=f"shifted{k}")
            m.d.comb += [diff.eq(self.e_max - _exp_field(v)), shifted.eq(sig >> diff)]
            qs.append(shifted[lo:lo + mag])
            signs.append(v[FP16 - 1])
        m.d.comb += [self.q.eq(Cat(*qs)), self.s.eq(Cat(*signs))]
        return m


# -- the array -------------------------------------------------------------------------------------

class Row(wiring.Component):
    """One row of the array: `cols` signed up/down counters and, double-buffered, their shadow
    registers. While `count`, unit j steps by ±1 when `bx & bd[j]` (−1 when `sx ^ sd[j]`).
    Read-out shifts the rows up (`shift` loads `below`, the read-out registers of the row
    `rows_per_beat` further down):
    single-buffered the counters themselves shift, and the zeros shifted in from below leave the
    bank clear for the next product; double-buffered, `transfer` moves the counters' next value
    into the shadow and clears the counters in the same clock. Golden: `golden.essop.accumulate`.
    """

    def __init__(self, cfg: ESSOPConfig):
        self.cfg = cfg
        counts = data.ArrayLayout(signed(cfg.count_bits), cfg.cols)
        sig = {"bx": In(1), "sx": In(1), "bd": In(cfg.cols), "sd": In(cfg.cols), "count": In(1),
               "shift": In(1), "below": In(counts), "out": Out(counts)}
        if cfg.double_buffer:
            sig["transfer"] = In(1)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        outs = []
        for j in range(cfg.cols):
            c = Signal(signed(cfg.count_bits), name=f"c{j}")
            step = Signal(name=f"step{j}")
            nxt = Signal(signed(cfg.count_bits), name=f"next{j}")
            # |C| <= K·BL <= acc_max·bl_max: count_bits holds every value, so ±1 never wraps
            m.d.comb += [step.eq(self.count & self.bx & self.bd[j]),
                         nxt.eq(Mux(step, Mux(self.sx ^ self.sd[j], c - 1, c + 1), c))]
            if cfg.double_buffer:
                s = Signal(signed(cfg.count_bits), name=f"s{j}")
                with m.If(self.transfer):
                    m.d.sync += [c.eq(0), s.eq(nxt)]
                with m.Else():
                    m.d.sync += c.eq(nxt)
                    with m.If(self.shift):
                        m.d.sync += s.eq(self.below[j])
                outs.append(s)
            else:
                with m.If(self.shift):
                    m.d.sync += c.eq(self.below[j])
                with m.Else():
                    m.d.sync += c.eq(nxt)
                outs.append(c)
        m.d.comb += self.out.eq(Cat(*outs))
        return m


# -- the unit --------------------------------------------------------------------------------------

class ESSOP(wiring.Component):
    """Stochastic outer product C = Σ_t bx_t ⊗ bd_t of one x (`rows`) and one δ (`cols`) per
    input beat, with the exponent E = e_x + e_δ − log2_bl − lr_shift.

    Registers `log2_bl`, `lr_shift`, `seed_x`, `seed_d` are sampled with each accepted product
    and travel with it. A `reseed` pulse applies to the next product accepted at or after it:
    that product's first clock loads the LFSRs from the seeds it carries. Rejected products
    (Inf/NaN in x or δ, `log2_bl` > `log2_bl_max`, or a reseed with a zero seed): one clock, no
    counts, no LFSR step, read out as `rows` zero rows with E = 0 and `error` (a valid reseed
    they carry is still applied); the last two also set the sticky `reg_error` (`clear` resets
    it). `busy`: a product is in flight or a reseed is pending.

    Read-out: `rows_per_beat` (R) rows per beat, rows/R beats per product, the array shifting up
    by R rows per beat. Timing: a product accepted into an idle engine counts `LATENCY` clocks
    later for BL clocks; its first beat is offered on the clock after its last count (`latency`
    = `LATENCY` + BL to the first output beat). Single-buffered, the next product counts once
    the read-out has emptied the array: BL + rows/R clocks per product. Double-buffered,
    read-out overlaps counting: max(BL, rows/R) clocks per product. `o` backpressure stalls counting (LFSRs and
    counters hold) only when no bank is free, so no count is ever lost.

    Accumulation (`acc_max` = K > 1): a product with `acc` = 1 adds into the counters without a
    read-out; the product with `acc` = 0 (or the K-th of the group) hands the sum to the
    read-out, as one product would. Products of a group count back to back, so K products cost
    K·BL clocks and one read-out. A product whose E differs from the group's first counted one
    is skipped like a rejected product (one clock, no counts, no LFSR step); it, a rejected
    product and a K-th product with `acc` = 1 make the group read out with `error` and E = 0,
    and the first and the last also set `reg_error`. `busy` stays high while a group is open.
    Golden: `golden.essop.reseed`, `product_stream`, `accumulated_stream` (`group_add`).
    """

    LATENCY = 3

    def __init__(self, cfg: ESSOPConfig):
        if not isinstance(cfg, ESSOPConfig):
            self._MustUse__silence = True  # never elaborated: do not warn about it
            raise TypeError(f"ESSOP needs an ESSOPConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(input_layout(cfg))),
            "o": Out(stream.Signature(output_layout(cfg))),
            "log2_bl": In(cfg.log2_bl_bits),
            "lr_shift": In(cfg.lr_shift_bits),
            "seed_x": In(cfg.lfsr_width),
            "seed_d": In(cfg.lfsr_width),
            "reseed": In(1),
            "clear": In(1),
            "busy": Out(1),
            "reg_error": Out(1),
        })

    @property
    def latency(self):
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg

        # -- S1..S3: accept, block maxima, magnitudes; each stage moves when the next is free
        valid = [Signal(name=f"valid{k}") for k in (1, 2, 3)]
        release = Signal(name="release")          # S3's product leaves the array this clock
        adv3 = ~valid[2] | release
        adv2 = ~valid[1] | adv3
        adv1 = ~valid[0] | adv2
        accept = self.i.valid & adv1
        m.d.comb += self.i.ready.eq(adv1)
        for v, adv, src in ((valid[0], adv1, self.i.valid), (valid[1], adv2, valid[0]),
                            (valid[2], adv3, valid[1])):
            with m.If(adv):
                m.d.sync += v.eq(src)

        def stage(value, adv, name):
            reg = Signal(value.shape(), name=name, reset_less=True)
            with m.If(adv):
                m.d.sync += reg.eq(value)
            return reg

        def travel(value, name, upto=3):
            """A control value carried beside its product from S1 to stage `upto`."""
            reg = value
            for k, adv in list(enumerate((adv1, adv2, adv3), 1))[:upto]:
                reg = stage(reg, adv, f"{name}{k}")
            return reg

        # S1: registers sampled with the beat, and their validity
        pending = Signal(name="reseed_pending")
        reseed = self.reseed | pending
        m.d.sync += pending.eq(reseed & ~accept)
        seeds_ok = (self.seed_x != 0) & (self.seed_d != 0)
        bad_regs = Signal(name="bad_regs")
        m.d.comb += bad_regs.eq(reseed & ~seeds_ok)
        if (1 << cfg.log2_bl_bits) - 1 > cfg.log2_bl_max:  # the register can hold a bad value
            m.d.comb += bad_regs.eq((self.log2_bl > cfg.log2_bl_max) | (reseed & ~seeds_ok))
        x1 = stage(self.i.payload.x, adv1, "x1")
        d1 = stage(self.i.payload.d, adv1, "d1")
        log2_bl2 = travel(self.log2_bl, "log2_bl", upto=2)
        lr_shift2 = travel(self.lr_shift, "lr_shift", upto=2)
        load3 = travel(reseed & seeds_ok, "load")
        seed_x3 = travel(self.seed_x, "seed_x")
        seed_d3 = travel(self.seed_d, "seed_d")
        bad1 = stage(bad_regs, adv1, "bad1")
        error_set = accept & bad_regs
        if cfg.accumulates:
            acc3 = travel(self.i.payload.acc, "acc")
            group_flag = Signal(name="group_flag")    # a mismatch or an over-long group (S3)
            error_set = error_set | group_flag
        m.d.sync += self.reg_error.eq(Mux(self.clear, 0, self.reg_error) | error_set)

        # S1 -> S2: block maxima and the Inf/NaN check
        m.submodules.max_x = max_x = BlockMax(cfg.rows)
        m.submodules.max_d = max_d = BlockMax(cfg.cols)
        m.d.comb += [max_x.v.eq(x1), max_d.v.eq(d1)]
        x2, d2 = stage(x1, adv2, "x2"), stage(d1, adv2, "d2")
        emax_x2 = stage(max_x.e_max, adv2, "emax_x2")
        emax_d2 = stage(max_d.e_max, adv2, "emax_d2")
        err2 = stage(bad1 | max_x.error | max_d.error, adv2, "err2")

        # S2 -> S3: magnitudes, signs, E and the count-length mask 2^log2_bl − 1
        m.submodules.mag_x = mag_x = Magnitudes(cfg, cfg.rows)
        m.submodules.mag_d = mag_d = Magnitudes(cfg, cfg.cols)
        m.d.comb += [mag_x.v.eq(x2), mag_x.e_max.eq(emax_x2),
                     mag_d.v.eq(d2), mag_d.e_max.eq(emax_d2)]
        qx3, sx3 = stage(mag_x.q, adv3, "qx3"), stage(mag_x.s, adv3, "sx3")
        qd3, sd3 = stage(mag_d.q, adv3, "qd3"), stage(mag_d.s, adv3, "sd3")
        ex, ed = Signal(signed(cfg.ev_bits), name="ex"), Signal(signed(cfg.ev_bits), name="ed")
        e = Signal(signed(cfg.exp_bits), name="e")
        # e_v = E_max − 14 fits ev_bits for every finite E_max (1..30); an Inf/NaN block's
        # wrapped value is never used (the product reports E = 0)
        m.d.comb += [ex.eq(emax_x2 - _BIAS_M1), ed.eq(emax_d2 - _BIAS_M1),
                     e.eq(ex + ed - log2_bl2 - lr_shift2)]
        e3 = stage(e, adv3, "e3")
        err3 = stage(err2, adv3, "err3")
        t_bits = max(1, cfg.log2_bl_max)  # a 0-bit counter would be an empty Verilog vector
        mask = Signal(t_bits, name="bl_mask")
        m.d.comb += mask.eq((C(1, t_bits + 1) << log2_bl2) - 1)
        mask3 = stage(mask, adv3, "mask3")

        # -- the engine: count BL clocks, then hand the bank to the read-out
        # rows_left counts read-out beats (rows_per_beat rows each)
        rows_left = Signal(range(cfg.readout_beats + 1), name="rows_left")
        ro_exp = Signal(signed(cfg.exp_bits), name="ro_exp")
        ro_err = Signal(name="ro_err")
        beat_out = self.o.valid & self.o.ready
        t = Signal(t_bits, name="t")
        if cfg.accumulates:
            group = self._group(m, e3, err3, acc3)
            skip, ends = group.skip, group.ends
        else:
            skip, ends = err3, None
        last_clock = skip | (t == mask3)
        if cfg.double_buffer:
            # the shadow is free now, or its final row leaves on this clock
            bank_free, can_finish = 1, (rows_left == 0) | ((rows_left == 1) & self.o.ready)
        else:
            bank_free, can_finish = rows_left == 0, 1
        go = Signal(name="go")
        count = Signal(name="count")
        finishing = last_clock if ends is None else last_clock & ends
        m.d.comb += [go.eq(valid[2] & bank_free & (~finishing | can_finish)),
                     count.eq(go & ~skip), release.eq(go & last_clock)]
        if ends is None:
            readout = release
            with m.If(release):
                m.d.sync += [t.eq(0), rows_left.eq(cfg.readout_beats), ro_exp.eq(Mux(err3, 0, e3)),
                             ro_err.eq(err3)]
            with m.Else():
                with m.If(go):
                    m.d.sync += t.eq(t + 1)
                with m.If(beat_out):
                    m.d.sync += rows_left.eq(rows_left - 1)
        else:
            # a product inside a group releases S3 without a read-out
            readout = release & ends
            m.d.comb += [group.release.eq(release), group_flag.eq(release & group.flag)]
            with m.If(release):
                m.d.sync += t.eq(0)
            with m.Elif(go):
                m.d.sync += t.eq(t + 1)
            with m.If(readout):
                m.d.sync += [rows_left.eq(cfg.readout_beats),
                             ro_exp.eq(Mux(group.bad, 0, group.exp)), ro_err.eq(group.bad)]
            with m.Elif(beat_out):
                m.d.sync += rows_left.eq(rows_left - 1)
        load = go & (t == 0) & load3

        # random numbers and comparators
        rx, rd = self._lfsrs(m, load, count, seed_x3, seed_d3)
        bd = Signal(cfg.cols, name="bd")
        m.d.comb += bd.eq(Cat(*[rd[j] < qd3[j] for j in range(cfg.cols)]))

        # the array, rows shifting up towards the output by rows_per_beat rows per beat
        rows = []
        for i in range(cfg.rows):
            m.submodules[f"row{i}"] = row = Row(cfg)
            m.d.comb += [row.bx.eq(rx[i] < qx3[i]), row.sx.eq(sx3[i]), row.bd.eq(bd),
                         row.sd.eq(sd3), row.count.eq(count), row.shift.eq(beat_out)]
            if cfg.double_buffer:
                m.d.comb += row.transfer.eq(readout)
            rows.append(row)
        step = cfg.rows_per_beat
        for upper, lower in zip(rows, rows[step:]):
            m.d.comb += upper.below.eq(lower.out)
        for row in rows[cfg.rows - step:-1]:
            m.d.comb += row.below.eq(0)
        m.d.comb += rows[-1].below.eq(0)
        head = Cat(*[row.out for row in rows[:step]])

        busy = [*valid, rows_left != 0, pending] + ([group.open] if cfg.accumulates else [])
        m.d.comb += [self.o.valid.eq(rows_left != 0),
                     self.o.payload.eq(Cat(head, ro_exp, ro_err, rows_left == 1)),
                     self.busy.eq(Cat(*busy).any())]
        return m

    def _lfsrs(self, m, load, run, seed_x, seed_d):
        """The random numbers of every x and δ converter: shared mode, one LFSR per operand
        (the same r for every converter); per_converter, one LFSR each."""
        cfg = self.cfg
        out = []
        for name, poly, seed, count, stride in (("x", cfg.poly_x, seed_x, cfg.rows, cfg.seed_stride_x),
                                                ("d", cfg.poly_d, seed_d, cfg.cols, cfg.seed_stride_d)):
            k = count if cfg.per_converter else 1
            rs = []
            for i in range(k):
                m.submodules[f"lfsr_{name}{i}" if cfg.per_converter else f"lfsr_{name}"] = lfsr = \
                    LFSR(cfg, poly, i * stride)
                m.d.comb += [lfsr.seed.eq(seed), lfsr.load.eq(load), lfsr.run.eq(run)]
                rs.append(lfsr.r)
            out.append(rs if cfg.per_converter else rs * count)
        return out

    def _group(self, m, e3, err3, acc3):
        """The group state beside the counters (`acc_max` > 1): the E of the group's first
        counted product, whether it has one, its products so far and its error. Returns the
        S3 product's view of it: `skip` (not counted: rejected, or E mismatch), `ends` (its
        release reads the group out: `acc` = 0 or the K-th product), `flag` (raises
        `reg_error`), `bad` and `exp` (the read-out's error and E), `open` (the counters hold
        part of a group), and the `release` input."""
        cfg = self.cfg
        g_has = Signal(name="g_has")
        g_exp = Signal(signed(cfg.exp_bits), name="g_exp")
        g_err = Signal(name="g_err")
        g_n = Signal(range(cfg.acc_max), name="g_n")
        mismatch = Signal(name="mismatch")
        ends = Signal(name="ends")
        overlong = Signal(name="overlong")
        view = _GroupView(skip=Signal(name="skip"), ends=ends, flag=Signal(name="flag"),
                          bad=Signal(name="group_bad"), exp=Signal(signed(cfg.exp_bits), name="group_exp"),
                          release=Signal(name="group_release"), open=Signal(name="group_open"))
        m.d.comb += [mismatch.eq(g_has & ~err3 & (e3 != g_exp)),
                     view.skip.eq(err3 | mismatch),
                     ends.eq(~acc3 | (g_n == cfg.acc_max - 1)),
                     overlong.eq(acc3 & (g_n == cfg.acc_max - 1)),
                     view.flag.eq(mismatch | overlong),
                     view.bad.eq(g_err | view.skip | overlong),
                     view.exp.eq(Mux(g_has, g_exp, e3))]
        with m.If(view.release):
            with m.If(ends):
                m.d.sync += [g_has.eq(0), g_err.eq(0), g_n.eq(0)]
            with m.Else():
                m.d.sync += [g_has.eq(g_has | ~view.skip), g_exp.eq(view.exp), g_err.eq(view.bad),
                             g_n.eq(g_n + 1)]
        m.d.comb += view.open.eq(g_n != 0)
        return view


class _GroupView(NamedTuple):
    skip: Signal
    ends: Signal
    flag: Signal
    bad: Signal
    exp: Signal
    release: Signal
    open: Signal
