"""cocotb bench of a periphery top (hdl/periphery.py) through cocotbext-axi (and, for a top
with an APB control port, cocotbext-apb's ApbMaster): run by tests/test_sim_periphery.py on
Icarus and Verilator. The tests of the top's unit run (NMPU and
LDPU tops: the layer job below; ESSOP top: the update job further down), the others skip.

The job file (env `TB_JOB`, written by the test from `golden.compiler`) holds one network layer:
per column tile, the chain of row tiles, each with its parameter words, layer fields and the
ADC counts the tile model read, and the layer output the golden path computes from those counts.
The bench programs every tile image through the bus with `sw.driver.Driver`, streams the counts
with the previous tile's hardware output as the residual input (the partial sum), and compares
the last output of each chain with the golden one. Environment as verif/bench.py, plus
  TB_JOB      path of the job JSON

The ESSOP job file holds layers of x and δ (binary16 patterns), their registers and seeds, and
the golden update of each (`golden.essop.tiled_outer_product`: counts, exponents and error flags
per tile, ΔW); the bench runs each through `Driver.outer_product` and compares bit for bit.
"""

import itertools
import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, First, RisingEdge, Timer
from cocotbext.apb import Apb3Bus, ApbMaster
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiResp, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from hdl.regmap import RegModel
from sw.driver import BusError, Driver, DriverError
from verif.bench import META, OUT, SEED
from verif.coverage import Coverage

JOB = json.loads(Path(os.environ["TB_JOB"]).read_text()) if "TB_JOB" in os.environ else None
ROOT_OUT = Path(os.environ["TB_META"]).parent if "TB_META" in os.environ else None
ESSOP = bool(META) and META["config"]["unit"] == "essop"
APB = bool(META) and META["config"].get("bus") == "apb"

# Coverage of the whole bench (cumulative over its tests, written after each): bus responses,
# every kind of refused access, and the job situations.
COV = Coverage(META["module"] if META else "periphery")
COV.require("bus_resp", ["read_OKAY", "read_SLVERR", "write_OKAY", "write_SLVERR"])
REFUSALS = ["unmapped read", "unmapped write", "read of CTRL", "write of GEOMETRY",
            "write of STATUS", "reserved bit", "partial strobe", "unaligned", "JOB while busy",
            "LAYER while busy", "start while busy"]
if ESSOP:
    COV.require("job", ["stalls", "no_stalls", "reset_mid_job", "frame_error",
                        "refused_while_busy", "reseed", "error_product", "training_step"])
    COV.require("refused", REFUSALS + ["reseed while busy"])
else:
    COV.require("job", ["chain_through_residual", "stalls", "no_stalls", "reset_mid_job",
                        "frame_error", "refused_while_busy", "image_switch"])
    COV.require("refused", REFUSALS + ["read of the window", "parameters while busy",
                                       "IMAGE beyond the images", "IMAGE while busy"])


def _cover(test):
    COV.write(OUT / "coverage" / "periphery.json")
    print(COV.summary())


class AxilPort:
    """The driver's bus over cocotbext-axi's AxiLiteMaster: 32-bit words, SLVERR -> BusError."""

    def __init__(self, master):
        self.master = master

    async def raw_write(self, addr, data):
        """A write of the bytes `data` (fewer than 4: a partial strobe) at any address; returns
        whether it was refused."""
        resp = await self.master.write(addr, data)
        return resp.resp == AxiResp.SLVERR

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


class ApbPort:
    """The driver's bus over cocotbext-apb's ApbMaster, PSLVERR -> BusError. The master is
    built without `pslverr` (its 1.1.0 host raises APBSlvErr in its own bus coroutine on an
    unexpected PSLVERR): the port reads PSLVERR itself, in the access phase the master has
    just completed (the requester still holds PSEL and PENABLE until the next edge)."""

    def __init__(self, master, dut):
        self.master, self.dut = master, dut

    async def _completed(self):
        """PSLVERR of the access the master has just sampled, once its closing edge has taken
        it (the master returns in the access phase, before that edge: an AXI4-Lite write
        returns after its B response)."""
        refused = bool(self.dut.s_apb_pslverr.value)
        await RisingEdge(self.dut.clk)
        await Timer(1, unit="ns")
        return refused

    async def raw_write(self, addr, data):
        await self.master.write(addr, int.from_bytes(data, "little"), strb=(1 << len(data)) - 1)
        return await self._completed()

    async def write(self, addr, value):
        await self.master.write(addr, int(value))
        refused = await self._completed()
        COV.hit("bus_resp", f"write_{'SLVERR' if refused else 'OKAY'}")
        if refused:
            raise BusError("write", addr)

    async def read(self, addr):
        data = await self.master.read(addr)
        refused = await self._completed()
        COV.hit("bus_resp", f"read_{'SLVERR' if refused else 'OKAY'}")
        if refused:
            raise BusError("read", addr)
        return int.from_bytes(data, "little")


def _pauses(rng, share):
    """An endless random pause pattern (True = stall) with the given stall share."""
    while True:
        yield bool(rng.random() < share)


class PeripheryBench:
    def __init__(self, dut, stalls=False, seed_offset=0):
        self.dut = dut
        self.rng = np.random.default_rng([SEED, seed_offset])
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst,
                                      byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst,
                                  byte_lanes=1)
        if APB:  # no channels to pause: the APB slave answers in its access phase
            self.apb = ApbMaster(Apb3Bus.from_prefix(dut, "s_apb",
                                                     optional_signals=["penable", "pstrb"]),
                                 dut.clk)
            self.port, channels = ApbPort(self.apb, dut), ()
        else:
            self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
            self.port = AxilPort(self.axil)
            channels = (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                        self.axil.write_if.b_channel, self.axil.read_if.ar_channel,
                        self.axil.read_if.r_channel)
        if stalls:
            for k, ch in enumerate(channels + (self.source, self.sink)):
                ch.set_pause_generator(_pauses(np.random.default_rng([SEED, seed_offset, k]),
                                               0.4))
        model = RegModel.from_file(ROOT_OUT / META["regmap"]["rdl"])
        self.drv = Driver(self.port, model, META)
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

    async def run_tile(self, tile, residual, vectors, image=0, load=True):
        """Program one tile image (with `load`; else only its layer registers: its parameters
        wait in parameter image `image`), stream its counts with `residual` in a job on image
        `image`, return the outputs (vectors, columns) and the output tlast positions."""
        drv = self.drv
        if load:
            await drv.program(tile["words"], tile["layer"], image=image)
        else:
            await drv.write_layer(**tile["layer"])
        await drv.start(vectors, image=image)
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


@cocotb.test(skip=ESSOP)
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


@cocotb.test(expect_fail=True, skip=ESSOP)
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


async def refused_when_idle(tb):
    """Every refusal of an idle top: SLVERR, STATUS.bus_error (and irq with IRQ_EN.error), and
    nothing changed (JOB is checked after each)."""
    dut, drv, bus, model = tb.dut, tb.drv, tb.drv.bus, tb.model
    await drv.write_reg("IRQ_EN", error=1)
    job, (_, job_bits) = drv.job_field, model["JOB"].fields[drv.job_field]
    end = drv.params_base if model.mem else 1 << META["derived"]["addr_bits"]
    job_addr = model.address("JOB")
    await drv.write_reg("JOB", **{job: 1})
    unmapped = [a for a in range(0, end, 4) if a not in {r.address for r in model.regs.values()}]
    assert unmapped, "no unmapped register address to try"
    cases = [
        (bus.read(unmapped[0]), f"read of unmapped {unmapped[0]:#x}", "unmapped read"),
        (bus.write(unmapped[0], 1), f"write of unmapped {unmapped[0]:#x}", "unmapped write"),
        (bus.read(model.address("CTRL")), "read of write-only CTRL", "read of CTRL"),
        (bus.write(model.address("GEOMETRY"), 0), "write of read-only GEOMETRY",
         "write of GEOMETRY"),
        (bus.write(model.address("STATUS"), 0x1f), "write of read-only STATUS",
         "write of STATUS"),
    ]
    if job_bits < 32:
        cases.append((bus.write(job_addr, 1 << job_bits), "reserved bit of JOB", "reserved bit"))
    if model.mem:
        cases += window_refusals(tb)
        # a base beyond the images: the field's range check or its reserved bits
        cases.append((bus.write(model.address("IMAGE"), drv.images), "IMAGE.base = images",
                      "IMAGE beyond the images"))
    for op, what, kind in cases:
        await expect_refused(tb, op, what, kind)
        assert await drv.read_reg("JOB") == {job: 1}, f"{what} changed JOB"
    # partial strobe and unaligned address straight through the master
    for addr, data, what in ((job_addr, b"\x05\x00", "partial strobe"),
                             (job_addr + 1, b"\x05\x00\x00\x00", "unaligned")):
        assert await tb.port.raw_write(addr, data), f"{what}: not refused"
        assert (await drv.status())["bus_error"] and dut.irq.value, f"{what}: no flag or irq"
        assert await drv.read_reg("JOB") == {job: 1}, f"{what} changed JOB"
        await drv.clear()
        COV.hit("refused", what)
    assert not dut.irq.value, "irq stays up after CTRL.clear"


def window_refusals(tb):
    drv, bus = tb.drv, tb.drv.bus
    win = drv.params_base
    n_sub = -(-META["derived"]["core"]["word_bits"] // 32)
    cases = [(bus.read(win), "read of the write-only parameter window", "read of the window")]
    if drv.stride > n_sub:
        cases.append((bus.write(win + 4 * n_sub, 1), "hole in a parameter slot", "window hole"))
    cols_span = drv.images * drv.columns * drv.stride * 4
    if cols_span < win:  # the window is larger than its images' columns
        cases.append((bus.write(win + cols_span, 1), "slot beyond images x columns",
                      "window column"))
    word_bits = META["derived"]["core"]["word_bits"]
    top = word_bits - (n_sub - 1) * 32
    if top < 32:
        cases.append((bus.write(win + 4 * (n_sub - 1), 1 << top),
                      "bit above the parameter word", "window reserved bit"))
    return cases


@cocotb.test(skip=ESSOP)
async def illegal_accesses(dut):
    """Every refused access answers SLVERR, sets STATUS.bus_error (and irq with IRQ_EN.error)
    and changes nothing; writes while a job runs are refused and the job's outputs stay right."""
    tb = PeripheryBench(dut, seed_offset=3)
    drv, bus, model = tb.drv, tb.drv.bus, tb.model
    await tb.reset()
    await refused_when_idle(tb)
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
                     (drv.write_reg("IMAGE", base=drv.images - 1), "IMAGE while busy"),
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


@cocotb.test(skip=ESSOP)
async def layers_on_two_parameter_images(dut):
    """Two row tiles of a chain (two layers of tile images) loaded ahead into parameter images
    0 and 1, then run back to back with no parameter write between the jobs, switched by
    IMAGE.base and LAYER alone (the second with the first's hardware output as its residual),
    then the first again from its untouched image: each equals the golden output bit for bit.
    The driver refuses an image beyond the top's. Random pauses on every channel."""
    tb = PeripheryBench(dut, stalls=True, seed_offset=6)
    drv = tb.drv
    await tb.reset()
    assert drv.images >= 2, f"the top holds {drv.images} parameter image(s)"
    try:
        await drv.start(1, image=drv.images)
    except DriverError:
        pass
    else:
        raise AssertionError(f"the driver started a job on image {drv.images}")
    await drv.write_reg("IRQ_EN", done=1, error=1)
    chain = JOB["chains"][0]
    first, second = chain["tiles"][:2]
    for image, tile in enumerate((first, second)):
        await drv.write_params(tile["words"], image=image)
    vectors = JOB["vectors"]
    y0, _ = await tb.run_tile(first, None, vectors, image=0, load=False)
    check_outputs("layer 0 on image 0", y0, first["y"])
    await drv.clear()
    y1, _ = await tb.run_tile(second, y0, vectors, image=1, load=False)
    check_outputs("layer 1 on image 1", y1, second["y"])
    await drv.clear()
    again, _ = await tb.run_tile(first, None, vectors, image=0, load=False)
    check_outputs("layer 0 again on image 0", again, first["y"])
    st = await drv.status()
    assert st == {"busy": 0, "done": 1, "frame_error": 0, "reg_error": 0, "bus_error": 0}, st
    COV.hit("job", "image_switch")
    _cover("images")


async def reset_while_busy(tb):
    """Reset a top in the middle of its job: afterwards idle, clean status, JOB 0."""
    drv = tb.drv
    assert (await drv.status())["busy"]
    await tb.reset()
    tb.sink.clear()
    st = await drv.status()
    assert st == {"busy": 0, "done": 0, "frame_error": 0, "reg_error": 0, "bus_error": 0}, st
    assert await drv.read_reg("JOB") == {drv.job_field: 0}


@cocotb.test(skip=ESSOP)
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
    await reset_while_busy(tb)
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


@cocotb.test(skip=ESSOP)
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


# -- the ESSOP top: weight updates from x and δ ---------------------------------------------------

class EssopStreams:
    """`send` and `recv` for `Driver.outer_product`: one AXI4-Stream frame per product beat
    (tlast on each), read-out frames checked to be one product each (tlast on its last beat)."""

    def __init__(self, tb):
        self.tb = tb

    async def send(self, beats):
        for b in beats:
            await self.tb.source.send(AxiStreamFrame([b]))

    async def recv(self, n):
        out, per = [], self.tb.drv.out_beats
        while len(out) < n:
            frame = await self.tb.sink.recv()
            assert len(frame.tdata) == per, \
                f"a read-out frame of {len(frame.tdata)} beats after {len(out)}, expected {per}"
            out += list(frame.tdata)
        return out


def check_update(where, got, want):
    for name in ("c", "exp", "error", "dw"):
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.shape == w.shape, f"{where}: {name} of shape {g.shape}, expected {w.shape}"
        bad = np.argwhere(g != w)
        assert not bad.size, (f"{where}: {name} differs first at {tuple(bad[0])}: expected "
                              f"{w[tuple(bad[0])]}, got {g[tuple(bad[0])]} ({len(bad)} "
                              f"mismatches)")


async def run_update(tb, layer):
    seeds = layer["seeds"]
    return await tb.drv.outer_product(layer["x"], layer["d"], layer["log2_bl"], layer["lr_shift"],
                                      seeds, EssopStreams(tb).send, EssopStreams(tb).recv)


@cocotb.test(skip=not ESSOP)
@cocotb.parametrize(stalls=[False, True])
async def essop_updates(dut, stalls):
    """Every layer of the job (a real training step's x and δ, golden random data with an error
    product), its registers and seeds written through the bus: the decoded update equals
    `golden.essop.tiled_outer_product` bit for bit, counts, exponents, error flags and ΔW."""
    tb = PeripheryBench(dut, stalls, seed_offset=10 + int(stalls))
    await tb.reset()
    drv = tb.drv
    await drv.identify()
    await drv.write_reg("IRQ_EN", done=1, error=1)
    for layer in JOB["layers"]:
        got = await run_update(tb, layer)
        await tb.wait_irq()
        check_update(layer["name"], got, layer["expected"])
        st = await drv.status()
        assert st == {"busy": 0, "done": 1, "frame_error": 0, "reg_error": 0, "bus_error": 0}, \
            f"status after {layer['name']}: {st}"
        COV.hit("job", layer["name"])
        if np.any(got["error"]):
            COV.hit("job", "error_product")
        if layer["seeds"] is not None:
            COV.hit("job", "reseed")
        await drv.clear()
    COV.hit("job", "stalls" if stalls else "no_stalls")
    _cover("essop")
    _stats("essop", sum(np.size(layer["expected"]["c"]) for layer in JOB["layers"]))


@cocotb.test(expect_fail=True, skip=not ESSOP)
async def essop_corrupted_expectation_is_caught(dut):
    """The comparison can fail: one expected count moved by one."""
    tb = PeripheryBench(dut, seed_offset=17)
    await tb.reset()
    layer = JOB["layers"][0]
    got = await run_update(tb, layer)
    want = dict(layer["expected"], c=np.array(layer["expected"]["c"]))
    want["c"][0, 0] += 1
    check_update("corrupted", got, want)


@cocotb.test(skip=not ESSOP)
async def essop_illegal_accesses(dut):
    """The idle refusals of every top; while a job runs, JOB, LAYER, start and reseed are
    refused, and the job's update stays right."""
    tb = PeripheryBench(dut, seed_offset=13)
    drv, bus, model = tb.drv, tb.drv.bus, tb.model
    await tb.reset()
    await refused_when_idle(tb)
    layer = JOB["layers"][0]
    beats = drv.product_beats(np.array(layer["x"]), np.array(layer["d"]))
    await drv.write_layer(log2_bl=layer["log2_bl"], lr_shift=layer["lr_shift"],
                          seed_x=layer["seeds"][0], seed_d=layer["seeds"][1])
    await drv.start(len(beats), reseed=1)
    assert (await drv.status())["busy"]
    first_layer = next(r for r in model.regs.values() if r.name.startswith("LAYER"))
    for op, what in ((drv.write_reg("JOB", products=2), "JOB while busy"),
                     (bus.write(first_layer.address, 0), "LAYER while busy"),
                     (drv.write_reg("CTRL", start=1), "start while busy"),
                     (drv.write_reg("CTRL", reseed=1), "reseed while busy")):
        await expect_refused(tb, op, what, what)
    streams = EssopStreams(tb)
    await streams.send(beats)
    got = drv.update(await streams.recv(len(beats) * drv.out_beats), len(layer["x"]),
                     len(layer["d"]))
    check_update("after refused writes during the job", got, layer["expected"])
    st = await drv.status()
    assert st["done"] and not st["busy"] and not st["bus_error"], st
    COV.hit("job", "refused_while_busy")
    _cover("essop_illegal")


@cocotb.test(skip=not ESSOP)
async def essop_reset_in_the_middle_of_a_job(dut):
    """A reset half-way through a job: idle, clean status, JOB and LAYER back to 0; the job
    rerun from its registers and seeds gives the golden update."""
    tb = PeripheryBench(dut, seed_offset=14)
    drv = tb.drv
    await tb.reset()
    layer = JOB["layers"][0]
    beats = drv.product_beats(np.array(layer["x"]), np.array(layer["d"]))
    await drv.write_layer(log2_bl=layer["log2_bl"], lr_shift=layer["lr_shift"],
                          seed_x=layer["seeds"][0], seed_d=layer["seeds"][1])
    await drv.start(len(beats), reseed=1)
    await EssopStreams(tb).send(beats[:len(beats) // 2])
    await tb.source.wait()  # half the products taken, the engine busy with them
    await ClockCycles(dut.clk, 5)
    await reset_while_busy(tb)
    assert set((await drv.read_reg("LAYER0")).values()) == {0}
    got = await run_update(tb, layer)
    check_update("after a reset mid-job", got, layer["expected"])
    assert (await drv.status())["done"]
    COV.hit("job", "reset_mid_job")
    _cover("essop_reset")


@cocotb.test(skip=not ESSOP)
async def essop_missing_tlast(dut):
    """Two products in one frame (the first without tlast): STATUS.frame_error, and the update
    and its read-out framing are still right."""
    tb = PeripheryBench(dut, seed_offset=15)
    drv = tb.drv
    await tb.reset()
    layer = next(la for la in JOB["layers"] if la["seeds"] is not None)
    beats = drv.product_beats(np.array(layer["x"]), np.array(layer["d"]))
    assert len(beats) >= 2, "the reseeded layer needs two products"
    await drv.write_layer(log2_bl=layer["log2_bl"], lr_shift=layer["lr_shift"],
                          seed_x=layer["seeds"][0], seed_d=layer["seeds"][1])
    await drv.start(len(beats), reseed=1)
    await tb.source.send(AxiStreamFrame(beats[:2]))
    streams = EssopStreams(tb)
    await streams.send(beats[2:])
    got = drv.update(await streams.recv(len(beats) * drv.out_beats), len(layer["x"]),
                     len(layer["d"]))
    check_update("with a missing tlast", got, layer["expected"])
    st = await drv.status()
    assert st["frame_error"] and st["done"] and not st["busy"], st
    COV.hit("job", "frame_error")
    _cover("essop_frame")
