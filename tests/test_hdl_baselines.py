"""The FP16 baselines of hdl/baselines.py (LDPU, FP16 outer-product array) in Amaranth's
simulator, bit for bit against the golden model, under random input gaps and output stalls.

The LDPU benches pair the k-th output with the k-th accepted beat and the parameter word and
layer registers in force at its acceptance (a write in the same clock lands for later beats
only), so a lost, duplicated, reordered or early result fails as surely as a wrong one.
"""

import dataclasses
import os
import zlib

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from golden import baselines as gb
from golden import fp16
from hdl.baselines import FP16Outer, LDPU
from hdl.config import FP16OuterConfig, LDPUConfig, fp16_outer_preset, ldpu_preset
from hdl.export import lint, module_name
from verif.runner import setup_tools

from .conftest import run_seed

WORDS = ("sp", "sn", "o", "a", "b")
SPECIALS = np.array([0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x0001, 0x8001,
                     0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x3800, 0xB800])

TINY = ldpu_preset("tiny")                  # 4 columns of 3-bit counts, 2 blocks
TINY1 = dataclasses.replace(TINY, name="tiny1", scale_blocks=1)
# The paper's formats on few columns (an even and an odd count, so a block's beats are not
# always the same columns).
SMALL = dataclasses.replace(ldpu_preset("paper"), name="small", columns=6, clamp_count_bits=12)
SMALL1 = dataclasses.replace(SMALL, name="small1", scale_blocks=1)
ODD = LDPUConfig(name="odd", columns=5, adc_bits=7, residual=False, clamp_count_bits=10)
ONE = LDPUConfig(name="one", columns=1, adc_bits=5, clamp_count_bits=6)


# beats per LDPU stream test (Amaranth's simulator, six configs): make regress 1000; make test
# 400, enough for every stall mode and parameter writes during vectors (a write every 40 clocks),
# while the cocotb and fast-path runs carry the LDPU's bulk data
LDPU_BEATS = 1000 if os.environ.get("TB_REGRESS") == "1" else 400


def make_rng(salt):
    return np.random.default_rng([run_seed(), salt])


def ldpu_reference(cfg, beats):
    """Outputs and clamp flags of the accepted beats (dict of arrays, one entry per beat: p, n,
    res, the five words and the layer fields): `golden.baselines.forward`."""
    layer = gb.LDPULayer(**{k: beats[k] for k in ("c", "relu_mid", "relu_out", "residual_en")})
    params = gb.LDPUParams(**{k: beats[k] for k in WORDS})
    r = beats["res"] if cfg.residual else None
    return gb.forward(cfg, layer, params, p=beats["p"], n=beats["n"], r=r, return_clamped=True)


def fp16_draw(rng, scale, n, odd=0.06):
    """n binary16 patterns of normal(0, scale) values, a share `odd` of them special or random
    patterns (NaNs, infinities, subnormals, signed zeros)."""
    v = fp16.encode(rng.normal(0, scale, n))
    pick = rng.random(n)
    v = np.where(pick < odd / 2, rng.choice(SPECIALS, n), v)
    return np.where((pick >= odd / 2) & (pick < odd), rng.integers(0, 1 << 16, n), v)


def random_word(cfg, rng, odd=0.06):
    """A column's five words, scaled so outputs spread over the int8 range and beyond."""
    gain = 60 / cfg.adc_max
    return dict(sp=int(fp16_draw(rng, gain, 1, odd)[0]) & 0x7FFF,
                sn=int(fp16_draw(rng, gain, 1, odd)[0]) & 0x7FFF,
                o=int(fp16_draw(rng, 30, 1, odd)[0]), a=int(fp16_draw(rng, 1.5, 1, odd)[0]),
                b=int(fp16_draw(rng, 40, 1, odd)[0]))


def random_layer(cfg, rng):
    layer = dict(relu_mid=int(rng.integers(0, 2)), relu_out=int(rng.integers(0, 2)))
    if cfg.residual:
        layer |= dict(residual_en=int(rng.integers(0, 2)), c=int(fp16_draw(rng, 1, 1)[0]))
    return layer


class LDPUBench:
    """Drives an LDPU clock by clock and keeps the model's parameter table: `step` sets the
    ports of one clock (a write, a beat, `ready`), records the accepted beat with the word and
    layer in force and any output handshake, then applies the write and ticks."""

    def __init__(self, cfg, dut):
        self.cfg, self.dut = cfg, dut
        self.table = [dict.fromkeys(WORDS, 0) for _ in range(cfg.columns)]
        self.accepted, self.got, self.out_last = [], [], []
        self.accept_cycles, self.out_cycles = [], []
        self.cycle = 0
        self.held = None          # the output offered but not taken on the clock before

    async def step(self, ctx, write=None, beat=None, ready=True):
        dut = self.dut
        ctx.set(dut.wr.en, write is not None)
        if write is not None:
            addr, word = write
            ctx.set(dut.wr.addr, addr)
            ctx.set(dut.wr.data, word)
        ctx.set(dut.i.valid, beat is not None)
        if beat is not None:
            ctx.set(dut.i.payload.p[0], beat["p"])
            ctx.set(dut.i.payload.n[0], beat["n"])
            if self.cfg.residual:
                ctx.set(dut.i.payload.res[0], beat["res"])
            ctx.set(dut.i.payload.last, beat["last"])
            ctx.set(dut.layer, beat["layer"])
        ctx.set(dut.o.ready, ready)
        accepted = beat is not None and ctx.get(dut.i.ready)
        out = (ctx.get(dut.o.valid), ctx.get(dut.o.payload.y[0]), ctx.get(dut.o.payload.last))
        assert self.held in (None, out), f"output changed under backpressure at {self.cycle}"
        self.held = out if out[0] and not ready else None
        if out[0] and ready:
            self.got.append(out[1])
            self.out_last.append(out[2])
            self.out_cycles.append(self.cycle)
        if accepted:
            self.accepted.append(dict(beat, **self.table[beat["col"]]))
            self.accept_cycles.append(self.cycle)
        if write is not None and write[0] < self.cfg.columns:
            self.table[write[0]] = dict(write[1])
        await ctx.tick()
        self.cycle += 1
        return accepted

    def expected(self):
        beats = {k: np.array([b[k] for b in self.accepted])
                 for k in ("p", "n", "res", "last", *WORDS)}
        for k in ("relu_mid", "relu_out", "residual_en", "c"):
            beats[k] = np.array([b["layer"].get(k, 0) for b in self.accepted])
        out, clamped = ldpu_reference(self.cfg, beats)
        return out.tolist(), beats["last"].tolist(), int(clamped.sum())


def make_beats(cfg, rng, n):
    """n beats of consecutive columns from column 0: random counts (some on the rails),
    residuals and layer registers."""
    beats = []
    for k in range(n):
        col = k % cfg.columns
        p, n_ = (int(v) for v in rng.integers(0, cfg.adc_max + 1, 2))
        if rng.random() < 0.1:
            p, n_ = rng.choice([0, cfg.adc_max], 2)
        beats.append(dict(col=col, p=int(p), n=int(n_), res=int(rng.integers(-128, 128)),
                          last=int(col == cfg.columns - 1), layer=random_layer(cfg, rng)))
    return beats


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# -- LDPU ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [TINY, TINY1, SMALL, SMALL1, ODD, ONE], ids=lambda c: c.tag)
def test_ldpu_stream(cfg):
    """Vectors with input gaps and output stalls in bursts (free-flowing, light, heavy), parameter
    writes between and during vectors (also to the column being accepted), random layer
    registers and residual switch: every output bit-exact and in order, `last` on each vector's
    final column, the clamp count, no status flag raised."""
    rng = make_rng(zlib.crc32(cfg.tag.encode()))
    dut = LDPU(cfg)
    bench = LDPUBench(cfg, dut)
    n_beats = LDPU_BEATS
    beats = make_beats(cfg, rng, n_beats)

    async def testbench(ctx):
        for col in range(cfg.columns):       # a programmed table to start with
            word = random_word(cfg, rng)
            await bench.step(ctx, write=(col, word))
        sent = 0
        p_valid = p_ready = 1.0
        while len(bench.got) < n_beats:
            if bench.cycle % 40 == 0:
                p_valid, p_ready = [(1.0, 1.0), (0.8, 0.7), (0.4, 0.3), (1.0, 0.5)][rng.integers(4)]
            write = None
            if rng.random() < 0.15:
                col = int(rng.integers(0, cfg.columns))
                if sent < n_beats and rng.random() < 0.3:
                    col = beats[sent]["col"]     # races the beat that reads it
                write = (col, random_word(cfg, rng))
            beat = beats[sent] if sent < n_beats and rng.random() < p_valid else None
            if await bench.step(ctx, write, beat, bool(rng.random() < p_ready)):
                sent += 1
        await bench.step(ctx, ready=False)
        await bench.step(ctx, ready=False)
        want, want_last, clamps = bench.expected()
        assert ctx.get(dut.clamp_count) == min(clamps, (1 << cfg.clamp_count_bits) - 1)
        assert (ctx.get(dut.frame_error), ctx.get(dut.reg_error)) == (0, 0)
        mismatch = [k for k, (a, b) in enumerate(zip(bench.got, want)) if a != b]
        assert not mismatch, (f"beat {mismatch[0]}: got {bench.got[mismatch[0]]}, "
                              f"expected {want[mismatch[0]]}; {len(mismatch)} mismatches")
        assert bench.out_last == want_last
        assert 0 < clamps < n_beats

    run(dut, testbench)
    assert bench.out_cycles[0] - bench.accept_cycles[0] >= dut.latency


@pytest.mark.parametrize("cfg", [SMALL, SMALL1, ODD], ids=lambda c: c.tag)
def test_ldpu_latency_and_throughput(cfg):
    """Back-to-back beats with the output always ready: one value per clock after `LATENCY`."""
    rng = make_rng(5)
    dut = LDPU(cfg)
    bench = LDPUBench(cfg, dut)
    beats = make_beats(cfg, rng, 3 * cfg.columns + 1)

    async def testbench(ctx):
        for col in range(cfg.columns):
            await bench.step(ctx, write=(col, random_word(cfg, rng, odd=0)))
        start = bench.cycle
        for k in range(len(beats) + dut.latency + 3):
            await bench.step(ctx, beat=beats[k] if k < len(beats) else None)
        assert bench.accept_cycles == list(range(start, start + len(beats)))
        assert bench.out_cycles == [c + dut.latency for c in bench.accept_cycles]
        assert bench.got == bench.expected()[0]

    run(dut, testbench)
    assert dut.latency == {(1, True): 22, (2, True): 33, (2, False): 28}[
        (cfg.scale_blocks, cfg.residual)]


@pytest.mark.parametrize("cfg", [SMALL, SMALL1], ids=lambda c: c.tag)
def test_ldpu_status(cfg):
    """frame_error (a `last` too early, a missing one), reg_error (writes to columns >=
    `columns`, which change no parameter), clamp_count (saturated and NaN outputs, saturating at
    its maximum), and `clear` of all three."""
    cfg = dataclasses.replace(cfg, clamp_count_bits=3)
    dut = LDPU(cfg)
    bench = LDPUBench(cfg, dut)
    top = (1 << cfg.clamp_count_bits) - 1
    calm = dict(sp=0x3C00, sn=0x3C00, o=0, a=0x2000, b=0)          # y = P − N, z = y/128
    hot = dict(sp=0x3C00, sn=0, o=0x7000, a=0x3C00, b=0)           # z = 8192 + P: saturates
    nan = dict(calm, a=0x7C00, b=0xFC00)                           # Inf·y − Inf: NaN (or ±Inf)
    layer = dict(relu_mid=0, relu_out=0, residual_en=0, c=0)

    def vector(cols, last_at=None):
        return [dict(col=c, p=3, n=1, res=0, layer=layer,
                     last=int(c == (cfg.columns - 1 if last_at is None else last_at)))
                for c in cols]

    async def drain(ctx):
        for _ in range(dut.latency + 3):
            await bench.step(ctx)

    async def send(ctx, beats):
        for b in beats:
            await bench.step(ctx, beat=b)

    def status(ctx):
        return ctx.get(dut.frame_error), ctx.get(dut.reg_error), ctx.get(dut.clamp_count)

    async def testbench(ctx):
        for col in range(cfg.columns):
            await bench.step(ctx, write=(col, calm))
        await send(ctx, vector(range(cfg.columns)))
        await drain(ctx)
        assert status(ctx) == (0, 0, 0)
        # A vector cut short by `last` on column 1 (the unit restarts at column 0).
        await send(ctx, vector(range(2), last_at=1))
        await drain(ctx)
        assert status(ctx) == (1, 0, 0)
        await bench.step(ctx)
        ctx.set(dut.clear, 1)
        await bench.step(ctx)
        ctx.set(dut.clear, 0)
        assert status(ctx) == (0, 0, 0)
        # A vector without `last` on its final column.
        await send(ctx, vector(range(cfg.columns), last_at=-1))
        await drain(ctx)
        assert status(ctx)[0] == 1
        ctx.set(dut.clear, 1)
        await bench.step(ctx)
        ctx.set(dut.clear, 0)
        # Writes beyond the table: flagged, and no column changes.
        for addr in range(cfg.columns, 1 << cfg.addr_bits):
            await bench.step(ctx, write=(addr, hot))
        assert status(ctx) == (0, 1, 0)
        await send(ctx, vector(range(cfg.columns)))
        await drain(ctx)
        assert status(ctx) == (0, 1, 0)
        ctx.set(dut.clear, 1)
        await bench.step(ctx)
        ctx.set(dut.clear, 0)
        assert status(ctx) == (0, 0, 0)
        # Saturated and NaN outputs count; the count saturates; clear restarts it.
        await bench.step(ctx, write=(0, hot))
        await bench.step(ctx, write=(1, nan))
        await send(ctx, vector(range(cfg.columns)))
        await drain(ctx)
        assert status(ctx) == (0, 0, 2)
        for _ in range(3):
            await send(ctx, vector(range(cfg.columns)))
        await drain(ctx)
        assert status(ctx) == (0, 0, top)
        ctx.set(dut.clear, 1)
        await bench.step(ctx)
        ctx.set(dut.clear, 0)
        assert status(ctx) == (0, 0, 0)
        await send(ctx, vector(range(cfg.columns)))
        await drain(ctx)
        assert status(ctx) == (0, 0, 2)
        want, want_last, _ = bench.expected()
        assert bench.got == want and bench.out_last == want_last

    run(dut, testbench)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_wrong_config_type():
    with pytest.raises(TypeError, match="LDPUConfig"):
        LDPU(fp16_outer_preset("tiny"))
    with pytest.raises(TypeError, match="FP16OuterConfig"):
        FP16Outer(TINY)


# -- FP16 outer-product array ----------------------------------------------------------------------

OUTER = [fp16_outer_preset("tiny"), FP16OuterConfig(name="r3c5", rows=3, cols=5),
         FP16OuterConfig(name="r1c3", rows=1, cols=3)]


def outer_operands(cfg, rng, n):
    """n products: operands of assorted magnitudes (products that overflow, underflow into
    subnormals and vanish) with special and random patterns among them."""
    def draw(size):
        mag = np.exp2(rng.integers(-14, 12, size)) * rng.uniform(0.5, 2, size)
        return fp16_draw(rng, 1, size, odd=0.15) if rng.random() < 0.3 else \
            fp16.encode(mag * rng.choice([-1, 1], size))
    return [(draw(cfg.rows), draw(cfg.cols)) for _ in range(n)]


def run_outer(cfg, products, rng, p_valid, p_ready):
    """Streams `products`; returns (rows of products, last flags, accept and output cycles)."""
    dut = FP16Outer(cfg)
    rows, lasts, accepts, outs = [], [], [], []
    need = len(products) * cfg.rows

    async def testbench(ctx):
        sent = cycle = 0
        held = None
        while len(rows) < need:
            valid = sent < len(products) and rng.random() < p_valid
            ctx.set(dut.i.valid, valid)
            if valid:
                x, d = products[sent]
                ctx.set(dut.i.payload, {"x": [int(v) for v in x], "d": [int(v) for v in d]})
            ready = bool(rng.random() < p_ready)
            ctx.set(dut.o.ready, ready)
            if valid and ctx.get(dut.i.ready):
                accepts.append(cycle)
                sent += 1
            out = (ctx.get(dut.o.valid), ctx.get(dut.o.payload))
            assert held in (None, out), f"output changed under backpressure at {cycle}"
            held = out if out[0] and not ready else None
            if out[0] and ready:
                rows.append([ctx.get(dut.o.payload.p[j]) for j in range(cfg.cols)])
                lasts.append(ctx.get(dut.o.payload.last))
                outs.append(cycle)
            await ctx.tick()
            cycle += 1

    run(dut, testbench)
    return np.array(rows), lasts, accepts, outs, dut


@pytest.mark.parametrize("cfg", OUTER, ids=lambda c: c.tag)
def test_outer_stream(cfg):
    """Products under input gaps and output stalls: every row bit-exact against
    `golden.baselines.outer_product` (`golden.fp16.mul`), in order, `last` on each product's
    final row."""
    rng = make_rng(7)
    products = outer_operands(cfg, rng, 150)
    rows, lasts, _, _, _ = run_outer(cfg, products, rng, p_valid=0.6, p_ready=0.6)
    want = gb.outer_product(cfg, np.array([x for x, _ in products]),
                            np.array([d for _, d in products])).reshape(-1, cfg.cols)
    bad = np.argwhere(rows != want)
    assert not bad.size, (f"row {bad[0][0]} col {bad[0][1]}: got {rows[tuple(bad[0])]:#06x}, "
                          f"expected {want[tuple(bad[0])]:#06x}; {len(bad)} mismatches")
    assert lasts == [int(k % cfg.rows == cfg.rows - 1) for k in range(len(rows))]


@pytest.mark.parametrize("cfg", OUTER, ids=lambda c: c.tag)
def test_outer_throughput(cfg):
    """Back-to-back products, output always ready: a product every `rows` clocks, its first row
    `LATENCY` clocks after its handshake, rows without gaps."""
    rng = make_rng(8)
    products = outer_operands(cfg, rng, 6)
    rows, _, accepts, outs, dut = run_outer(cfg, products, rng, p_valid=1, p_ready=1)
    assert np.diff(accepts).tolist() == [cfg.rows] * (len(products) - 1)
    assert outs == list(range(accepts[0] + dut.latency, accepts[0] + dut.latency + len(outs)))
    assert outs[::cfg.rows] == [a + dut.latency for a in accepts]
    assert dut.latency == 4


# -- Verilog ---------------------------------------------------------------------------------------

# the full-size presets in `make regress` (and in `make`'s `aimc generate --all --lint`)
FULL_SIZE = {"paper": pytest.mark.regress, "lean": pytest.mark.regress, "tiny": ()}


@pytest.mark.parametrize("unit,cfg", [pytest.param("ldpu", ldpu_preset(n), marks=FULL_SIZE[n])
                                      for n in ("paper", "lean", "tiny")]
                         + [("ldpu", ODD), ("ldpu", ONE)]
                         + [pytest.param("fp16outer", fp16_outer_preset(n), marks=FULL_SIZE[n])
                            for n in ("paper", "tiny")]
                         + [("fp16outer", OUTER[2])],
                         ids=lambda v: getattr(v, "tag", v))
def test_verilog_lint_clean(unit, cfg, tmp_path):
    """`verilator --lint-only -Wall`, with only the waivers listed in hdl/export.py."""
    setup_tools()
    dut = LDPU(cfg) if unit == "ldpu" else FP16Outer(cfg)
    name = module_name(unit, cfg)
    v_path = tmp_path / f"{name}.v"
    v_path.write_text(verilog.convert(dut, name=name, emit_src=False))
    ok, text = lint(v_path, name)
    assert ok, text
