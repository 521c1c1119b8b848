"""Stream properties of a periphery top (hdl/periphery.py) with every input free.

All inputs of the top (both streams, all five AXI4-Lite channels, so any register write, start,
clear or refused access at any clock) are free solver inputs. As formal/streams.py does for the
units, the harness counts input handshakes on `s_axis` and output handshakes on `m_axis` and
asserts:

- `flow`: no beat invented or duplicated (outputs never exceed inputs × `per_input`: the
  ESSOP top's read-out beats per product), and none lost: once the
  free input `drain` rises (then stays; `s_axis_tvalid` low, `m_axis_tready` high) every owed
  output beat has left within `drain_bound` clocks: the job gate, the output counter and the
  register block never swallow a beat the unit produced or hold one back;
- `hold`: while `m_axis_tvalid & ~m_axis_tready`, tvalid, tdata and tlast hold (the AXI4-Stream
  rule), by k-induction.
"""

from amaranth import Module, Signal, Value
from amaranth.hdl import Assert

from .common import Harness
from .streams import assert_flow, drive_inputs, free_inputs

__all__ = ["PeripheryStreamHarness"]


class PeripheryStreamHarness(Harness):
    def __init__(self, make_dut, check, *, drain_bound=None, count_bits=8, per_input=1):
        if check not in ("flow", "hold"):
            raise ValueError(f"`check` must be 'flow' or 'hold', not {check!r}")
        self.dut = make_dut()
        self.check, self.drain_bound, self.count_bits = check, drain_bound, count_bits
        self.per_input = per_input
        sig, self._inputs = free_inputs(self.dut, drain=check == "flow")
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        dut = drive_inputs(m, self)
        if self.check == "hold":
            stalled = Signal(name="was_stalled")
            held = Signal(len(dut.m_axis_tdata) + 1, name="was_beat")
            m.d.sync += [stalled.eq(dut.m_axis_tvalid & ~dut.m_axis_tready),
                         held.eq(Value.cast(dut.m_axis_tdata) | (dut.m_axis_tlast
                                                                 << len(dut.m_axis_tdata)))]
            with m.If(stalled):
                m.d.comb += [Assert(dut.m_axis_tvalid, "m_axis_tvalid holds while stalled"),
                             Assert((Value.cast(dut.m_axis_tdata) | (dut.m_axis_tlast
                                                                     << len(dut.m_axis_tdata)))
                                    == held, "m_axis tdata and tlast hold while stalled")]
            return m
        assert_flow(m, self, dut.s_axis_tvalid & dut.s_axis_tready,
                    dut.m_axis_tvalid & dut.m_axis_tready, self.s_axis_tvalid, self.m_axis_tready,
                    self.per_input)
        return m
