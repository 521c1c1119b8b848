"""Proof 2: stream properties of a unit under any pattern of `valid` and `ready`.

Every input of the unit (`i.valid`, `i.payload`, `o.ready`, layer registers, parameter writes,
`clear`, ...) is a free solver input at every step; the source does not even have to obey the
stream rules. The harness counts input handshakes (×`per_input` output beats each: `rows` for
ESSOP) and output handshakes, and asserts:

- `flow`: no beat is duplicated or invented (outputs never exceed inputs × `per_input`), and
  none is dropped: once the free input `drain` rises (it stays high; from then on `i.valid` is
  low and `o.ready` high), every owed output beat has appeared within `drain_bound` clocks.
- `hold`: once `o.valid` is high and `o.ready` low, `o.valid` and `o.payload` hold on the next
  clock.

`hold` is a one-transition property and closes by k-induction (an unbounded proof); `flow`
needs the unit's in-flight count as an invariant, which the harness cannot see, so it is a
bounded check (BMC) whose depth must exceed `drain_bound` to exercise the drain.
"""

from amaranth import Module, Mux, Signal, Value, signed
from amaranth.hdl import Assert, Assume
from amaranth.lib.wiring import In

from .common import Harness

__all__ = ["StreamHarness", "free_inputs", "drive_inputs", "assert_flow"]


def free_inputs(dut, drain=False):
    """The harness signature that makes every input port of `dut` a free solver input (one
    port per flattened member, named by its path), plus a `drain` input for flow checks;
    returns (signature members, [(name, dut value)])."""
    inputs, sig = [], {}
    for path, member, value in dut.signature.flatten(dut):
        if member.flow == In:
            name = "__".join(str(p) for p in path)
            sig[name] = In(len(Value.cast(value)))
            inputs.append((name, value))
    if drain:
        sig["drain"] = In(1)
    return sig, inputs


def drive_inputs(m, harness):
    """Add `harness.dut` as a submodule driven from the harness's free inputs; returns it."""
    m.submodules.dut = dut = harness.dut
    for name, value in harness._inputs:
        m.d.comb += Value.cast(value).eq(getattr(harness, name))
    return dut


class StreamHarness(Harness):
    """`make_dut()` builds the unit; `check` is "flow" or "hold"; `assume(m, dut)` may add
    environment assumptions (e.g. a bound on ESSOP's bitstream length for the drain)."""

    def __init__(self, make_dut, check, *, per_input=1, drain_bound=None, count_bits=8,
                 assume=None):
        if check not in ("flow", "hold"):
            raise ValueError(f"`check` must be 'flow' or 'hold', not {check!r}")
        self.dut = make_dut()
        self.check = check
        self.per_input = per_input
        self.drain_bound = drain_bound
        self.count_bits = count_bits
        self.assume = assume
        sig, self._inputs = free_inputs(self.dut, drain=check == "flow")
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        dut = drive_inputs(m, self)
        if self.assume is not None:
            self.assume(m, dut)
        i, o = dut.i, dut.o
        if self.check == "hold":
            stalled = Signal(name="was_stalled")      # init 0: nothing to check at step 0
            payload = Signal(len(Value.cast(o.payload)), name="was_payload")
            m.d.sync += [stalled.eq(o.valid & ~o.ready), payload.eq(o.payload)]
            with m.If(stalled):
                m.d.comb += [Assert(o.valid, "o.valid holds while stalled"),
                             Assert(Value.cast(o.payload) == payload,
                                    "o.payload holds while stalled")]
            return m

        # flow: `owed` = inputs × per_input − outputs so far, one small up/down counter (the
        # difference of two free-running counts is the same number, but much harder for the
        # solver at depth). It cannot wrap: a negative value fails the assertion first, and a
        # unit owes at most what it holds (it stops taking inputs when full), far below
        # 2^(count_bits − 1).
        assert_flow(m, self, i.valid & i.ready, o.valid & o.ready, i.valid, o.ready,
                    self.per_input)
        return m


def assert_flow(m, harness, took, gave, in_valid, out_ready, per_input=1):
    """The `flow` check on `m`: `owed` (inputs taken × per_input − outputs given) never goes
    negative, and once `harness.drain` rises (and stays; `in_valid` low, `out_ready` high) it
    reaches zero within `harness.drain_bound` clocks. `harness.count_bits` sizes the counter."""
    owed = Signal(signed(harness.count_bits), name="owed")
    m.d.sync += owed.eq(owed + Mux(took, per_input, 0) - gave)
    m.d.comb += Assert(owed >= 0, "no output beat without its input (none duplicated)")
    draining = Signal(name="draining")
    waited = Signal(range(harness.drain_bound + 2), name="waited")
    m.d.sync += draining.eq(draining | harness.drain)
    with m.If(draining):
        m.d.comb += Assume(harness.drain)
    with m.If(harness.drain):
        m.d.comb += [Assume(~in_valid), Assume(out_ready)]
        with m.If(waited <= harness.drain_bound):
            m.d.sync += waited.eq(waited + 1)
    with m.If(waited >= harness.drain_bound):
        m.d.comb += Assert(owed == 0, "every owed beat out within drain_bound clocks")
