"""What every unit's cocotb bench shares: clock and reset, the input source and output sink with
pause patterns, batched decoding of output beats into the in-order scoreboard, draining,
one-clock control pulses, resets mid-stream, and the per-test statistics and coverage files.

A unit's bench subclasses `StreamBench` and supplies the model, the agents beside the stream
(registers, parameter writers) and a few hooks; `verif/tb_<unit>.py` holds only what is
particular to the unit.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from verif import relax_gc
from verif.coverage import Coverage
from verif.payload import Codec
from verif.scoreboard import Scoreboard
from verif.streams import ClockLoop, StreamSink, StreamSource, _Port, pause_pattern

relax_gc()   # the bench's Python per clock: fewer collector passes (verif/__init__.py)

__all__ = ["META", "SEED", "OUT", "SCALE", "STALLS", "n_items", "Pulses", "StreamBench"]

META = json.loads(Path(os.environ["TB_META"]).read_text()) if "TB_META" in os.environ else None
SEED = int(os.environ.get("TB_SEED", "1"))
OUT = Path(os.environ.get("TB_OUT", "."))
SCALE = float(os.environ.get("TB_SCALE", "1"))
# tests of the failure path only: output beat k (counted over the run) arrives with bit 0 flipped
PLANT = int(os.environ.get("TB_PLANT_MISMATCH", "-1"))
STALLS = [("none", "none"), ("random", "none"), ("none", "random"), ("bursty", "bursty")]


def n_items(base):
    """A scenario's item count, scaled by TB_SCALE (regressions use > 1)."""
    return max(1, int(round(base * SCALE)))


class Pulses:
    """One-clock pulses of single-bit control inputs (`rst` among them), applied at the next
    drive; `on_pulse(name)` runs in the sample phase of the pulse's clock."""

    def __init__(self, dut, bench, names):
        self.ports = {name: _Port(getattr(dut, name)) for name in names}
        self.bench = bench
        self.pulse = None

    def drive(self, cycle):
        for name, port in self.ports.items():
            port.set(int(self.pulse == name))
        self.bench.sink.hold = self.pulse == "rst"  # no handshakes on the reset edge
        if self.pulse == "rst":
            self.bench.source.reset()

    def sample(self, cycle):
        if self.pulse == "rst":
            self.bench.on_reset()
        elif self.pulse is not None:
            self.bench.on_pulse(self.pulse)
        self.pulse = None


class StreamBench:
    """Source on `i`, sink on `o`, scoreboard, coverage and a clock loop over `agents`.

    Subclasses set `model`, call `setup(...)` from `__init__`, and may override the hooks:
    `idle_inputs()` (extra inputs to zero before reset), `inputs_idle()` (nothing left to send),
    `settle()` (turn accepted items into expectations before outputs are compared),
    `on_output(cycle)`, `on_pulse(name)`, `on_reset()`.
    """

    outputs_per_item = 1     # output beats per accepted input beat

    def setup(self, dut, stalls, seed_offset, name, widths, fields, pulses, agents_before,
              agents_after=()):
        self.dut = dut
        self.rng = np.random.default_rng([SEED, seed_offset])
        self.codec_in = Codec(META["ports"]["i__payload"])
        self.codec_out = Codec(META["ports"]["o__payload"])
        self.sb = Scoreboard(name, widths)
        self.fields = list(fields)
        self.cov = Coverage(META["module"])
        self.received_base = self.accepted_base = 0  # moved by rebase() after a reset
        self.accept_cycles, self.out_cycles = [], []
        self._pending_out = []
        in_pause, out_pause = stalls
        self.source = StreamSource(dut, "i", pause_pattern(in_pause, self.rng), on_accept=self._accepted)
        self.sink = StreamSink(dut, "o", pause_pattern(out_pause, self.rng), on_beat=self._output)
        self.controls = Pulses(dut, self, pulses)
        self.loop = ClockLoop(dut.clk, [self.controls, self.source, *agents_before, self.sink,
                                        *agents_after])

    # -- hooks ----------------------------------------------------------------------------------

    def idle_inputs(self):
        pass

    def inputs_idle(self):
        return self.source.idle()

    def settle(self):
        pass

    def accepted(self, payload, tag, cycle):
        raise NotImplementedError

    def on_output(self, cycle):
        pass

    def on_pulse(self, name):
        pass

    def on_reset(self):
        self.flush_outputs()
        self.model.reset()
        self.sb.flush()
        self.cov.hit("event", "reset_mid_stream")

    # -- mechanics ------------------------------------------------------------------------------

    async def start(self):
        """Clock, inputs idle, three clocks of reset, then the clock loop."""
        dut = self.dut
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        for port in self.controls.ports.values():
            port.set(0)
        self.idle_inputs()
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        self.loop.start()
        await RisingEdge(dut.clk)
        self.t0 = time.perf_counter()

    def _accepted(self, payload, tag, cycle):
        self.accept_cycles.append(cycle)
        self.accepted(payload, tag, cycle)

    def _output(self, word, cycle):
        if len(self.out_cycles) == PLANT:
            word ^= 1
        self.out_cycles.append(cycle)
        self.on_output(cycle)
        self._pending_out.append(word)
        if len(self._pending_out) >= 64:
            self.flush_outputs()

    def flush_outputs(self):
        """Compare the output beats received so far, in one batch."""
        if not self._pending_out:
            return
        self.settle()
        decoded = self.codec_out.decode(self._pending_out)
        self._pending_out = []
        self.sb.got_batch({f: decoded[f] for f in self.fields})

    async def drain(self, timeout):
        """Wait until everything queued went in and every expected beat came out; then the
        scoreboard must be empty."""
        await self.loop.wait_until(self.inputs_idle, timeout, "the input queue to empty")
        want = lambda: (self.source.accepted - self.accepted_base) * self.outputs_per_item  # noqa: E731
        await self.loop.wait_until(lambda: self.sink.received - self.received_base >= want(),
                                   timeout, "the outputs of all accepted beats")
        await ClockCycles(self.dut.clk, 2)
        self.flush_outputs()
        self.sb.check_done()

    def rebase(self):
        """After a reset: beats in flight are gone; count from here."""
        self.received_base = self.sink.received
        self.accepted_base = self.source.accepted

    async def pulse(self, what):
        self.controls.pulse = what
        await self.loop.wait_until(lambda: self.controls.pulse is None, 10, f"the {what} pulse")
        await RisingEdge(self.dut.clk)

    def finish(self, test_name, require=False, **extra):
        """Stop, check nothing is left, write stats (values checked per second) and coverage;
        with `require`, every required coverage bin must have been hit."""
        self.loop.stop()
        self.cov.hit("stall", "input_held", self.source.held)
        self.cov.hit("stall", "output_held", self.sink.held)
        self.flush_outputs()
        self.sb.check_done()
        wall = time.perf_counter() - self.t0
        stats = {"test": test_name, "values": self.sb.values, "beats": self.sb.matched,
                 "wall_s": wall, "values_per_s": self.sb.values / wall if wall else 0.0,
                 "sim": cocotb.SIM_NAME, "seed": SEED, **extra}
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / "stats.jsonl", "a") as f:
            f.write(json.dumps(stats) + "\n")
        self.cov.write(OUT / "coverage" / f"{test_name}.json")
        self.dut._log.info("%s: %d values in %d beats checked, %.0f values/s %s\n%s", test_name,
                           self.sb.values, self.sb.matched, stats["values_per_s"],
                           json.dumps(extra) if extra else "", self.cov.summary())
        if require:
            missing = self.cov.missing()
            assert not missing, f"coverage bins not hit: {missing}"
