"""Amaranth-simulator tests added for mutants of verif/mutants.toml that the fast stage and
stream tests let through or only catch by hanging (the cocotb scenarios catch them too, but
more slowly): sticky status flags and `clear`, backpressure on a full NMPU, FP16Outer's ready
while a product issues, ESSOP's zero-seed
rejection, a reseed pulse between products, the double buffer under long output stalls and
the product period when the next product arrives during counting.

Each test names the mutants it was written for; docs/mutation.md has the catalogue.
"""

import dataclasses

import numpy as np
from amaranth.sim import Simulator

from hdl.baselines import FP16Outer
from hdl.config import essop_preset, fp16_outer_preset, nmpu_preset
from hdl.essop import ESSOP
from hdl.nmpu import NMPU

from .conftest import run_seed
from .test_hdl_essop import expected_rows, fp16_vectors


def simulate(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def test_nmpu_status_flags_sticky_until_clear():
    """frame_error (a `last` on the first beat of a two-beat vector) and reg_error (a beat with
    the reserved round_mode 3) stay set until `clear`, each on its own.
    Mutants: nmpu-error-not-sticky."""
    cfg = nmpu_preset("tiny")
    dut = NMPU(cfg)

    async def beat(ctx, last, mode=0):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.last, last)
        ctx.set(dut.layer.round_mode, mode)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def flags(ctx, clocks, want):
        for _ in range(clocks):
            assert (ctx.get(dut.frame_error), ctx.get(dut.reg_error)) == want
            await ctx.tick()

    async def clear(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        await flags(ctx, 2, (0, 0))
        assert cfg.beats == 2
        await beat(ctx, last=1)              # vector cut short: framing error
        await flags(ctx, 6, (1, 0))
        await beat(ctx, last=0)              # a whole vector: the flag stays
        await beat(ctx, last=1)
        await flags(ctx, 6, (1, 0))
        await clear(ctx)
        await flags(ctx, 4, (0, 0))
        await beat(ctx, last=0, mode=3)      # reserved rounding mode
        await beat(ctx, last=1)
        await flags(ctx, 6, (0, 1))
        await clear(ctx)
        await flags(ctx, 4, (0, 0))

    simulate(dut, bench)


def test_nmpu_ready_falls_when_full():
    """With the output stalled, the unit takes exactly as many beats as it has stages, then
    holds i.ready low; released, it delivers those beats in order. Bounded in clocks, so a
    tied-off ready fails here instead of hanging a stream test.
    Mutants: nmpu-ready-tied."""
    cfg = nmpu_preset("tiny")
    dut = NMPU(cfg)
    got, taken = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for k in range(dut.latency + 4):
            ctx.set(dut.i.payload.last, len(taken) % cfg.beats == cfg.beats - 1)
            ctx.set(dut.i.payload.p, [len(taken) % (cfg.adc_max + 1)] * cfg.lanes)
            if ctx.get(dut.i.ready):
                taken.append(k)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 2):
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload.last))
            await ctx.tick()

    simulate(dut, bench)
    assert taken == list(range(dut.latency))
    assert got == [int(k % cfg.beats == cfg.beats - 1) for k in range(dut.latency)]


def test_outer_ready_once_per_product():
    """FP16Outer offered a product on every clock, output always read: it takes one every
    `rows` clocks (i.ready is low while a product still issues rows), and every row of each
    product leaves. Bounded in clocks. Mutants: outer-ready-busy."""
    cfg = fp16_outer_preset("tiny")
    dut = FP16Outer(cfg)
    n = 5
    taken, lasts = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for clock in range(n * cfg.rows + dut.latency + 2):
            ctx.set(dut.i.valid, len(taken) < n)
            if len(taken) < n and ctx.get(dut.i.ready):
                taken.append(clock)
            if ctx.get(dut.o.valid):
                lasts.append(ctx.get(dut.o.payload.last))
            await ctx.tick()

    simulate(dut, bench)
    assert taken == [k * cfg.rows for k in range(n)]
    assert lasts == [int(k % cfg.rows == cfg.rows - 1) for k in range(n * cfg.rows)]


def drive_essop(cfg, items, ready_p=0.8, seed=0, max_clocks=20000):
    """Products through an ESSOP: items are (x, d, regs, reseed, pulse); `pulse` sends a
    one-clock reseed pulse with no product offered, a few idle clocks before the product (which
    then carries no reseed of its own). Returns the rows read out and reg_error at each
    product's last row (later products may already have been accepted by then). Stops after
    `max_clocks` clocks of the sink."""
    dut = ESSOP(cfg)
    rng = np.random.default_rng(seed)
    rows, errors = [], []
    total = len(items) * cfg.rows

    async def source(ctx):
        for x, d, regs, reseed, pulse in items:
            for name in ("log2_bl", "lr_shift", "seed_x", "seed_d"):
                ctx.set(getattr(dut, name), regs[name])
            if pulse:
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.reseed, 1)
                await ctx.tick()
                ctx.set(dut.reseed, 0)
                await ctx.tick().repeat(3)
            ctx.set(dut.reseed, int(reseed))
            ctx.set(dut.i.payload.x, [int(a) for a in x])
            ctx.set(dut.i.payload.d, [int(a) for a in d])
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.reseed, 0)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        for _ in range(max_clocks):       # bounded: a lost row fails instead of hanging
            if len(rows) == total:
                break
            ready = int(rng.random() < ready_p)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                p = ctx.get(dut.o.payload)
                rows.append(([int(c) for c in p.c], int(p.exp), int(p.error), int(p.last)))
                if p.last:
                    errors.append(ctx.get(dut.reg_error))
            await ctx.tick()

    simulate(dut, source, sink)
    return rows, errors


def essop_items(cfg, rng, specs):
    """(x, d, regs, reseed, pulse) per spec dict (seed_x, seed_d, reseed, pulse)."""
    items = []
    for k, spec in enumerate(specs):
        regs = {"log2_bl": k % (cfg.log2_bl_max + 1), "lr_shift": int(rng.integers(0, cfg.lr_shift_max + 1)),
                "seed_x": spec.get("seed_x", int(rng.integers(1, cfg.lfsr_max + 1))),
                "seed_d": spec.get("seed_d", int(rng.integers(1, cfg.lfsr_max + 1)))}
        items.append((fp16_vectors(rng, 1, cfg.rows)[0], fp16_vectors(rng, 1, cfg.cols)[0], regs,
                       spec.get("reseed", False), spec.get("pulse", False)))
    return items


def check_rows(cfg, rows, items):
    # a pulse before a product is that product's reseed (it applies to the next accepted one)
    want = expected_rows(cfg, [(x, d, regs, reseed or pulse) for x, d, regs, reseed, pulse in items])
    for k, (a, b) in enumerate(zip(rows, want)):
        assert a == b, f"row {k} (product {k // cfg.rows}): got {a}, expected {b}"
    assert len(rows) == len(want)


def test_essop_zero_seed_rejected():
    """A reseed with a zero δ seed (and one with a zero x seed) is an error product with
    reg_error raised, and the LFSRs keep their state for the next product.
    Mutants: essop-seed-d-unchecked."""
    cfg = essop_preset("tiny")
    rng = np.random.default_rng([run_seed(), 81])
    items = essop_items(cfg, rng, [dict(reseed=True), {}, dict(reseed=True, seed_d=0), {},
                                   dict(reseed=True, seed_x=0), {}])
    rows, errors = drive_essop(cfg, items, seed=run_seed())
    check_rows(cfg, rows, items)
    # the rejected products: error set on every row; reg_error raised (and sticky)
    for k in (2, 4):
        assert all(r[2] for r in rows[k * cfg.rows:(k + 1) * cfg.rows]), k
    assert errors[-1] == 1


def test_essop_reseed_pulse_between_products():
    """A one-clock reseed pulse while no product is offered applies to the next accepted
    product, which starts from the seeds it carries. Mutants: essop-reseed-pending."""
    cfg = essop_preset("tiny")
    rng = np.random.default_rng([run_seed(), 82])
    items = essop_items(cfg, rng, [dict(reseed=True), {}, dict(pulse=True), {}, dict(pulse=True)])
    rows, errors = drive_essop(cfg, items, seed=run_seed())
    check_rows(cfg, rows, items)
    assert not any(errors)


def test_essop_double_buffer_under_stalls():
    """Double-buffered, the read-out stalled often and long: a product may finish into the
    shadow bank only once its final row has left, so every row arrives, bit-exact. Bounded in
    clocks. Mutants: essop-double-free."""
    cfg = dataclasses.replace(essop_preset("tiny"), name="tiny-db", double_buffer=True)
    rng = np.random.default_rng([run_seed(), 83])
    items = essop_items(cfg, rng, [dict(reseed=True)] + [{}] * 9)
    rows, _ = drive_essop(cfg, items, ready_p=0.3, seed=run_seed())
    check_rows(cfg, rows, items)


def test_essop_next_product_waits_in_s2():
    """Double-buffered, a product offered while the previous one counts moves up to S2 and
    starts counting on the clock after the previous one's last count: its first row follows
    the previous product's by exactly max(BL, rows) clocks (the docstring's throughput),
    although it arrived after a gap. Mutants: essop-s2-no-bubble-collapse."""
    cfg = dataclasses.replace(essop_preset("tiny"), name="tiny-db", double_buffer=True)
    dut = ESSOP(cfg)
    rng = np.random.default_rng([run_seed(), 84])
    bl = 1 << cfg.log2_bl_max
    firsts = []

    def finite(count):                           # no Inf/NaN: no rejected product
        return [int(v) for v in fp16_vectors(rng, 1, count)[0] & 0x7BFF]

    async def source(ctx):
        ctx.set(dut.log2_bl, cfg.log2_bl_max)
        ctx.set(dut.seed_x, 1)
        ctx.set(dut.seed_d, 1)
        for gap in (0, 6):                       # the first product counts during the gap
            if gap:
                await ctx.tick().repeat(gap)
            ctx.set(dut.i.payload.x, finite(cfg.rows))
            ctx.set(dut.i.payload.d, finite(cfg.cols))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        rows = 0
        for clock in range(3 * bl + 30):
            if ctx.get(dut.o.valid):
                if rows % cfg.rows == 0:
                    firsts.append(clock)
                rows += 1
            await ctx.tick()

    simulate(dut, source, sink)
    assert len(firsts) == 2 and firsts[1] - firsts[0] == max(bl, cfg.rows), firsts
