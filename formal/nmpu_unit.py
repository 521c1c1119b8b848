"""Proof 1b: the whole NMPU (framing, parameter memories, per-beat layer registers, the
pipeline and its stalls) computes the spec for a beat picked by the solver.

Every input is free at every step: parameter writes to any column at any time, layer registers
that change every clock, `last` anywhere, `clear`, `valid` and `ready` in any pattern. The
harness keeps its own copy of the parameter words (a write lands at the clock edge, after a
beat accepted at the same edge has read the old word) and its own beat position (the spec's
`golden.nmpu.frame`: a beat closes its vector when it carries `last` or is the final beat). When
the free input `pick` is high at an input handshake (once per trace), it captures that beat,
the layer registers and the words of the beat's columns; it counts the beats ahead of it, and
when the picked beat is at the head of the output it asserts every lane equals `spec_lane` of
the captured values, and `last` is the beat's. Outputs are in order (proved by the `flow`
proofs' counts and by this ordering), so the beat at the head after `ahead` earlier outputs is
the picked one. Bounded (BMC): the depth limits how late the picked beat can be.

`word`: every write carries this one parameter word (each column holds 0 or it); "any": one
free word, the same for the whole trace. With write data free at every write the solver does
not get past step 6 in minutes (it must match two multipliers fed through the memory and the
harness's copy for every written history), and a free trace-constant word stops at step 7;
the datapath proof covers every word and value, these proofs the unit's plumbing around it.
"""

from amaranth import Array, Module, Mux, Signal, Value
from amaranth.hdl import Assert, Assume
from amaranth.lib.wiring import In

from hdl.config import NMPUConfig
from hdl.nmpu import NMPU, param_layout

from .common import Harness
from .nmpu_datapath import spec_lane

__all__ = ["NMPUUnit"]


class NMPUUnit(Harness):
    def __init__(self, cfg: NMPUConfig, mutant=None, word=None):
        if not cfg.dual:
            raise ValueError("the unit harness is written for dual input mode")
        self.cfg = cfg
        self.mutant = mutant
        self.word = word
        self.dut = NMPU(cfg)
        self._inputs = []
        sig = {"pick": In(1)}
        for path, member, value in self.dut.signature.flatten(self.dut):
            if member.flow == In:
                name = "__".join(str(p) for p in path)
                sig[name] = In(len(Value.cast(value)))
                self._inputs.append((name, value))
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        cfg = self.cfg
        m.submodules.dut = dut = self.dut
        for name, value in self._inputs:
            m.d.comb += Value.cast(value).eq(getattr(self, name))
        i, o = dut.i, dut.o
        data = Value.cast(dut.wr.data)
        if self.word == "any":      # one free word for the whole trace (columns start at 0)
            prev = Signal(len(data), name="prev_data")
            seen = Signal(name="seen")
            m.d.sync += [prev.eq(data), seen.eq(1)]
            with m.If(seen):
                m.d.comb += Assume(data == prev)
        elif self.word is not None:   # every write carries this word (columns start at 0)
            m.d.comb += Assume(data == self.word)
        accept = i.valid & i.ready
        out = o.valid & o.ready

        # the harness's copy of the parameter words and of the beat position
        words = Array(Signal(param_layout(cfg), name=f"word{j}") for j in range(cfg.columns))
        with m.If(dut.wr.en & (dut.wr.addr < cfg.columns)):
            m.d.sync += words[dut.wr.addr].eq(dut.wr.data)
        pos = Signal(range(cfg.beats), name="pos")
        with m.If(accept):
            m.d.sync += pos.eq(Mux(i.payload.last | (pos == cfg.beats - 1), 0, pos + 1))
        in_flight = Signal(range(64), name="in_flight")
        m.d.sync += in_flight.eq(in_flight + accept - out)

        # The spec of the beat offered now, from the inputs, the layer registers and the
        # harness's words of its columns; captured with the picked beat. Evaluating the spec at
        # the handshake (not later, from captured operands) keeps the two sides on the same
        # solver variables, which is what lets the bounded proof reach useful depths.
        refs = []
        for l in range(cfg.lanes):
            w = Signal(param_layout(cfg), name=f"ref_word{l}")
            m.d.comb += w.eq(words[pos * cfg.lanes + l])
            operands = dict(
                p=i.payload.p[l], n=i.payload.n[l], sp=w.sp, sn=w.sn, o=w.o,
                e=w.e if cfg.exp_bits else 0, shift=dut.layer.shift,
                pre_cut=dut.layer.pre_cut, round_mode=dut.layer.round_mode,
                relu_mid=dut.layer.relu_mid, relu_out=dut.layer.relu_out,
                res=i.payload.res[l] if cfg.residual else None,
                residual_en=dut.layer.residual_en if cfg.residual else None)
            refs.append(spec_lane(m, cfg, mutant=self.mutant, prefix=f"ref{l}", **operands).z)
        # the picked beat
        armed = Signal(name="armed")
        done = Signal(name="done")
        ahead = Signal(range(64), name="ahead")
        cap_last = Signal(name="cap_last")
        cap_z = [Signal(r.shape(), name=f"cap_z{l}") for l, r in enumerate(refs)]
        with m.If(accept & self.pick & ~armed & ~done):
            m.d.sync += [armed.eq(1), ahead.eq(in_flight - out), cap_last.eq(i.payload.last)]
            m.d.sync += [c.eq(r) for c, r in zip(cap_z, refs)]
        head = armed & (ahead == 0)
        with m.If(armed & out):
            with m.If(ahead == 0):
                m.d.sync += [armed.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += ahead.eq(ahead - 1)

        with m.If(head & o.valid):
            m.d.comb += Assert(o.payload.last == cap_last, "last travels with its beat")
            for l in range(cfg.lanes):
                m.d.comb += Assert(o.payload.y[l] == cap_z[l], f"lane {l} = spec")
        return m
