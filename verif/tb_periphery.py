"""cocotb bench of a periphery top (hdl/periphery.py) through cocotbext-axi: run by
tests/test_sim_periphery.py on Icarus and Verilator.

The job file (env `TB_JOB`, written by the test from `golden.compiler`) holds one network layer:
per column tile, the chain of row tiles, each with its parameter words, layer fields and the
ADC counts the tile model read, and the layer output the golden path computes from those counts.
The bench programs every tile image through the bus with `sw.driver.Driver`, streams the counts
with the previous tile's hardware output as the residual input (the partial sum), and compares
the last output of each chain with the golden one. Environment as verif/bench.py, plus
  TB_JOB      path of the job JSON
"""

import itertools
import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, First, RisingEdge, Timer
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiResp, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from hdl.regmap import RegModel
from sw.driver import BusError, Driver
from verif.bench import META, OUT, SEED
from verif.coverage import Coverage

JOB = json.loads(Path(os.environ["TB_JOB"]).read_text()) if "TB_JOB" in os.environ else None
ROOT_OUT = Path(os.environ["TB_META"]).parent if "TB_META" in os.environ else None

# Coverage of the whole bench (cumulative over its tests, written after each): bus responses,
# every kind of refused access, and the job situations.
COV = Coverage(META["module"] if META else "periphery")
COV.require("bus_resp", ["read_OKAY", "read_SLVERR", "write_OKAY", "write_SLVERR"])
COV.require("job", ["chain_through_residual", "stalls", "no_stalls", "reset_mid_job",
                    "frame_error", "refused_while_busy"])
REFUSALS = ["unmapped read", "unmapped write", "read of CTRL", "read of the window",
            "write of GEOMETRY", "write of STATUS", "reserved bit", "partial strobe", "unaligned",
            "JOB while busy", "LAYER while busy", "parameters while busy", "start while busy"]
COV.require("refused", REFUSALS)


def _cover(test):
    COV.write(OUT / "coverage" / "periphery.json")
    print(COV.summary())


class AxilPort:
    """The driver's bus over cocotbext-axi's AxiLiteMaster: 32-bit words, SLVERR -> BusError."""

    def __init__(self, master):
        self.master = master

    async def write(self, addr, value):
        resp = await self.master.write(addr, int(value).to_bytes(4, "little"))
        COV.hit("bus_resp", f"write_{AxiResp(resp.resp).name}")
        if resp.resp != AxiResp.OKAY:
            raise BusError("write", addr)

    async def read(self, addr):
        resp = await self.master.read(addr, 4)
        COV.hit("bus_resp", f"read_{AxiResp(resp.resp).name}")
        if resp.resp != AxiResp.OKAY:
            raise BusError("read", addr)
        return int.from_bytes(resp.data, "little")


def _pauses(rng, share):
    """An endless random pause pattern (True = stall) with the given stall share."""
    while True:
        yield bool(rng.random() < share)


class PeripheryBench:
    def __init__(self, dut, stalls=False, seed_offset=0):
        self.dut = dut
        self.rng = np.random.default_rng([SEED, seed_offset])
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst,
                                      byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst,
                                  byte_lanes=1)
        if stalls:
            for k, ch in enumerate((self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                                    self.axil.write_if.b_channel, self.axil.read_if.ar_channel,
                                    self.axil.read_if.r_channel, self.source, self.sink)):
                ch.set_pause_generator(_pauses(np.random.default_rng([SEED, seed_offset, k]),
                                               0.4))
        model = RegModel.from_file(ROOT_OUT / META["regmap"]["rdl"])
        self.drv = Driver(AxilPort(self.axil), model, META)
        self.model = model

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def wait_irq(self, cycles=20000):
        if not self.dut.irq.value:
            result = await First(RisingEdge(self.dut.irq), ClockCycles(self.dut.clk, cycles))
            assert self.dut.irq.value, f"no interrupt within {cycles} clocks"

    async def run_tile(self, tile, residual, vectors):
        """Program one tile image, stream its counts with `residual`, return the outputs
        (vectors, columns) and the output tlast positions."""
        drv = self.drv
        await drv.program(tile["words"], tile["layer"])
        await drv.start(vectors)
        beats = drv.input_beats(p=np.array(tile["p"]), n=np.array(tile["n"]), r=residual)
        for v in range(vectors):
            await self.source.send(AxiStreamFrame(beats[v * drv.beats:(v + 1) * drv.beats]))
        await self.wait_irq()
        out, lasts = [], []
        while len(out) < vectors * drv.beats:
            frame = await self.sink.recv()
            out += list(frame.tdata)
            lasts.append(len(out))
        return drv.outputs(out), lasts

    async def run_layer(self):
        """Every column tile's chain of row tiles; returns {k: (vectors, c) outputs}."""
        drv = self.drv
        await drv.identify()
        await drv.clear()
        await drv.write_reg("IRQ_EN", done=1, error=1)
        vectors = JOB["vectors"]
        results = {}
        for chain in JOB["chains"]:
            residual = None
            for r, tile in enumerate(chain["tiles"]):
                y, lasts = await self.run_tile(tile, residual, vectors)
                assert lasts == [drv.beats * (v + 1) for v in range(vectors)], \
                    f"output tlast after beats {lasts}"
                check_outputs(f"column tile {chain['k']}, row tile {r}", y, tile["y"])
                if r and tile["layer"].get("residual_en"):
                    COV.hit("job", "chain_through_residual")
                st = await drv.status()
                assert st == {"busy": 0, "done": 1, "frame_error": 0, "reg_error": 0,
                              "bus_error": 0}, f"status after a tile: {st}"
                residual = y
            results[chain["k"]] = y[:, :chain["c"]]
        return results


def check_outputs(where, got, want):
    want = np.asarray(want)
    assert got.shape == want.shape, f"{where}: outputs of shape {got.shape}, expected {want.shape}"
    bad = np.argwhere(got != want)
    assert not bad.size, (f"{where}: first mismatch at vector {bad[0][0]} column {bad[0][1]}: "
                          f"expected {want[tuple(bad[0])]:#x}, got {got[tuple(bad[0])]:#x} "
                          f"({bad.shape[0]} mismatches)")


def check_layer(results, expected):
    for k, want in expected.items():
        check_outputs(f"layer output, column tile {k}", results[int(k)], want)


def _stats(name, values):
    out = Path(os.environ.get("TB_OUT", "."))
    with open(out / "stats.jsonl", "a") as f:
        f.write(json.dumps({"test": name, "values": int(values)}) + "\n")


@cocotb.test()
@cocotb.parametrize(stalls=[False, True])
async def layer_from_compiler_image(dut, stalls):
    """The layer, programmed through the bus tile by tile, equals the golden path bit for bit;
    with `stalls`, random pauses on all five AXI4-Lite channels and both streams."""
    tb = PeripheryBench(dut, stalls, seed_offset=int(stalls))
    await tb.reset()
    results = await tb.run_layer()
    check_layer(results, JOB["expected"])
    want = sum(t["clamped"] for c in JOB["chains"] for t in c["tiles"])
    assert await tb.drv.clamp_count() == want, "clamp count over the layer"
    COV.hit("job", "stalls" if stalls else "no_stalls")
    _cover("layer")
    _stats("layer", sum(np.size(v) for v in JOB["expected"].values()))


@cocotb.test(expect_fail=True)
async def corrupted_expectation_is_caught(dut):
    """The comparison can fail: one expected output moved by one LSB."""
    tb = PeripheryBench(dut, seed_offset=7)
    await tb.reset()
    results = await tb.run_layer()
    expected = {k: np.array(v) for k, v in JOB["expected"].items()}
    k0 = next(iter(expected))
    expected[k0][0, 0] += 1
    check_layer(results, expected)


async def expect_refused(tb, op, what, kind):
    try:
        await op
    except BusError:
        pass
    else:
        raise AssertionError(f"{what}: accepted, expected SLVERR")
    st = await tb.drv.status()
    assert st["bus_error"], f"{what}: STATUS.bus_error not set"
    await tb.drv.clear()
    COV.hit("refused", kind)


@cocotb.test()
async def illegal_accesses(dut):
    """Every refused access answers SLVERR, sets STATUS.bus_error (and irq with IRQ_EN.error)
    and changes nothing; writes while a job runs are refused and the job's outputs stay right."""
    tb = PeripheryBench(dut, seed_offset=3)
    drv, bus, model = tb.drv, tb.drv.bus, tb.model
    await tb.reset()
    await drv.write_reg("IRQ_EN", error=1)
    win = drv.params_base
    n_sub = -(-META["derived"]["core"]["word_bits"] // 32)
    job_addr = model.address("JOB")
    await drv.write_reg("JOB", vectors=1)
    unmapped = [a for a in range(0, win, 4) if a not in {r.address for r in model.regs.values()}]
    assert unmapped, "no unmapped register address to try"
    cases = [
        (bus.read(unmapped[0]), f"read of unmapped {unmapped[0]:#x}", "unmapped read"),
        (bus.write(unmapped[0], 1), f"write of unmapped {unmapped[0]:#x}", "unmapped write"),
        (bus.read(model.address("CTRL")), "read of write-only CTRL", "read of CTRL"),
        (bus.read(win), "read of the write-only parameter window", "read of the window"),
        (bus.write(model.address("GEOMETRY"), 0), "write of read-only GEOMETRY",
         "write of GEOMETRY"),
        (bus.write(model.address("STATUS"), 0x1f), "write of read-only STATUS",
         "write of STATUS"),
    ]
    if model["JOB"].fields["vectors"][1] < 32:
        cases.append((bus.write(job_addr, 1 << model["JOB"].fields["vectors"][1]),
                      "reserved bit of JOB", "reserved bit"))
    if drv.stride > n_sub:
        cases.append((bus.write(win + 4 * n_sub, 1), "hole in a parameter slot", "window hole"))
    cols_span = drv.columns * drv.stride * 4
    if cols_span < win:  # the window is larger than its columns
        cases.append((bus.write(win + cols_span, 1), "column beyond `columns`",
                      "window column"))
    word_bits = META["derived"]["core"]["word_bits"]
    top = word_bits - (n_sub - 1) * 32
    if top < 32:
        cases.append((bus.write(win + 4 * (n_sub - 1), 1 << top),
                      "bit above the parameter word", "window reserved bit"))
    for op, what, kind in cases:
        await expect_refused(tb, op, what, kind)
        assert await drv.read_reg("JOB") == {"vectors": 1}, f"{what} changed JOB"
    # partial strobe and unaligned address straight through the master
    for addr, data, what in ((job_addr, b"\x05\x00", "partial strobe"),
                             (job_addr + 1, b"\x05\x00\x00\x00", "unaligned")):
        resp = await tb.axil.write(addr, data)
        assert resp.resp == AxiResp.SLVERR, f"{what}: {resp.resp}"
        assert (await drv.status())["bus_error"] and dut.irq.value, f"{what}: no flag or irq"
        assert await drv.read_reg("JOB") == {"vectors": 1}, f"{what} changed JOB"
        await drv.clear()
        COV.hit("refused", what)
    assert not dut.irq.value, "irq stays up after CTRL.clear"
    # while a job runs: JOB, LAYER, parameter words and a second start are refused
    chain = JOB["chains"][0]
    tile = chain["tiles"][0]
    await drv.program(tile["words"], tile["layer"])
    vectors = JOB["vectors"]
    await drv.start(vectors)
    assert (await drv.status())["busy"]
    first_layer = next(r for r in model.regs.values() if r.name.startswith("LAYER"))
    for op, what in ((drv.write_reg("JOB", vectors=2), "JOB while busy"),
                     (bus.write(first_layer.address, 0), "LAYER while busy"),
                     (drv.write_params([0], columns=[0]), "parameters while busy"),
                     (drv.write_reg("CTRL", start=1), "start while busy")):
        await expect_refused(tb, op, what, what)
    beats = drv.input_beats(p=np.array(tile["p"]), n=np.array(tile["n"]))
    await tb.source.send(AxiStreamFrame(beats))
    out = []
    while len(out) < vectors * drv.beats:
        out += list((await tb.sink.recv()).tdata)
    check_outputs("after refused writes during the job", drv.outputs(out), tile["y"])
    st = await drv.status()
    assert st["done"] and not st["busy"] and not st["bus_error"], st
    COV.hit("job", "refused_while_busy")
    _cover("illegal")


@cocotb.test()
async def reset_in_the_middle_of_a_job(dut):
    """A reset half-way through a job: the top is idle with clean status; the parameters survive
    (the unit's memory has no reset), so re-writing LAYER and JOB alone reruns the tile right."""
    tb = PeripheryBench(dut, seed_offset=4)
    drv = tb.drv
    await tb.reset()
    chain = JOB["chains"][0]
    tile = chain["tiles"][0]
    vectors = JOB["vectors"]
    await drv.program(tile["words"], tile["layer"])
    await drv.start(vectors)
    beats = drv.input_beats(p=np.array(tile["p"]), n=np.array(tile["n"]))
    half = len(beats) // 2
    await tb.source.send(AxiStreamFrame(beats[:half]))
    await ClockCycles(dut.clk, half + 3)
    assert (await drv.status())["busy"]
    await tb.reset()
    tb.sink.clear()
    st = await drv.status()
    assert st == {"busy": 0, "done": 0, "frame_error": 0, "reg_error": 0, "bus_error": 0}, st
    assert await drv.read_reg("JOB") == {"vectors": 0}
    await drv.write_layer(**tile["layer"])
    await drv.start(vectors)
    for v in range(vectors):
        await tb.source.send(AxiStreamFrame(beats[v * drv.beats:(v + 1) * drv.beats]))
    out = []
    while len(out) < vectors * drv.beats:
        out += list((await tb.sink.recv()).tdata)
    check_outputs("after a reset mid-job", drv.outputs(out), tile["y"])
    assert (await drv.status())["done"]
    COV.hit("job", "reset_mid_job")
    _cover("reset")


@cocotb.test()
async def malformed_tlast(dut):
    """An input tlast on the wrong beat: STATUS.frame_error, yet the job ends after its beats
    and the output tlast still closes every vector."""
    tb = PeripheryBench(dut, seed_offset=5)
    drv = tb.drv
    if drv.beats < 2:
        return  # every beat closes a vector: a wrong tlast is a missing one, covered below
    await tb.reset()
    tile = JOB["chains"][0]["tiles"][0]
    vectors = JOB["vectors"]
    await drv.program(tile["words"], tile["layer"])
    await drv.start(vectors)
    beats = drv.input_beats(p=np.array(tile["p"]), n=np.array(tile["n"]))
    await tb.source.send(AxiStreamFrame(beats[:1]))          # tlast on beat 0
    await tb.source.send(AxiStreamFrame(beats[1:]))
    lasts, n = [], 0
    while n < vectors * drv.beats:
        n += len((await tb.sink.recv()).tdata)
        lasts.append(n)
    assert lasts == [drv.beats * (v + 1) for v in range(vectors)], lasts
    st = await drv.status()
    assert st["frame_error"] and st["done"] and not st["busy"], st
    COV.hit("job", "frame_error")
    _cover("frame")
