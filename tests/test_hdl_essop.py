"""Fast checks of the ESSOP blocks and unit in Amaranth's own simulator, against the golden
model. The cocotb regression (tests/test_sim_essop.py) checks the generated Verilog; these tests
point at one block when something breaks.
"""

import dataclasses
import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import essop as g
from hdl.config import ESSOP_LFSR_POLYS, ESSOP_PRESETS, ESSOPConfig, essop_preset
from hdl.essop import ESSOP, LFSR, BlockMax, Magnitudes, leap_rows
from hdl.export import lint, module_name, write
from verif.configs import random_essop_configs
from verif.runner import setup_tools

from .conftest import regress_only, run_seed

TINY = essop_preset("tiny")
# Small arrays in every mode; mag_bits 12 > 11 takes the left-shifting path of the magnitudes.
SMALL = [
    TINY,
    dataclasses.replace(TINY, name="pc-db", rng="per_converter", double_buffer=True),
    ESSOPConfig(name="wide", rows=3, cols=2, mag_bits=12, lfsr_width=13, log2_bl_max=3),
    ESSOPConfig(name="bl1", rows=5, cols=3, mag_bits=2, lfsr_width=5, log2_bl_max=0,
                double_buffer=True, rng="per_converter"),
    # several rows per read-out beat, single- and double-buffered, and all rows in one beat
    dataclasses.replace(TINY, name="r2", rows_per_beat=2),
    dataclasses.replace(TINY, name="r4-db", rows_per_beat=4, double_buffer=True),
    ESSOPConfig(name="r3-db", rows=6, cols=3, mag_bits=3, lfsr_width=8, log2_bl_max=2,
                rows_per_beat=3, double_buffer=True, rng="per_converter"),
]
# Accumulation (K = acc_max products per read-out): single- and double-buffered, R > 1.
ACC = [
    dataclasses.replace(TINY, name="acc3", acc_max=3),
    dataclasses.replace(TINY, name="acc4-r2-db", acc_max=4, rows_per_beat=2, double_buffer=True),
    ESSOPConfig(name="acc2-pc", rows=3, cols=2, mag_bits=4, lfsr_width=6, log2_bl_max=2,
                rng="per_converter", acc_max=2, double_buffer=True, rows_per_beat=3),
]


def fp16_vectors(rng, count, n):
    """Vectors of binary16 patterns: mixed exponents, zeros, subnormals, a few Inf/NaN."""
    field = np.clip(rng.integers(1, 31, (count, 1)) - rng.geometric(0.3, (count, n)) + 1, 0, 30)
    v = field << 10 | rng.integers(0, 1 << 10, (count, n))
    pick = rng.random((count, n))
    v = np.where(pick < 0.05, 0, np.where(pick < 0.1, rng.integers(0, 1 << 10, (count, n)), v))
    v = np.where(rng.random((count, n)) < 0.01, 0x7C00 | rng.integers(0, 1 << 10, (count, n)), v)
    return v | rng.integers(0, 2, (count, n)) << 15


@pytest.mark.parametrize("width", sorted(ESSOP_LFSR_POLYS))
def test_leap_rows_equal_golden_matrix(width):
    """The RTL's pure-Python GF(2) powers against the golden NumPy ones, both polynomials."""
    mag = min(width, 8)
    cfg = ESSOPConfig(rows=3, cols=3, mag_bits=mag, lfsr_width=width)
    for poly in ESSOP_LFSR_POLYS[width]:
        for k in (1, mag, cfg.seed_stride_x, 2 * cfg.seed_stride_x, 12345):
            want = g.leap_matrix(cfg, poly, k)
            got = np.array([[row >> j & 1 for j in range(width)] for row in leap_rows(width, poly, k)])
            np.testing.assert_array_equal(got, want, err_msg=f"poly {poly:#x}, k {k}")


@pytest.mark.parametrize("offset", [0, 1, 37])
def test_lfsr_run_and_load(offset):
    """Random run/load/seed sequences: r and the state follow `lfsr_leap` and the seed network
    `converter_seeds` (offset steps along the sequence)."""
    cfg = essop_preset("paper")
    dut = LFSR(cfg, cfg.poly_x, offset)
    rng = np.random.default_rng(offset)
    ops = [(int(rng.integers(0, 2)), int(rng.integers(0, 2)), int(rng.integers(1, cfg.lfsr_max + 1)))
           for _ in range(300)]
    seeded = lambda s: int(g.converter_seeds(cfg, s, cfg.poly_x, 2, offset)[1]) if offset else s  # noqa: E731
    got, want = [], []
    state = seeded(1)  # power-on state: that of seed 1
    for run, load, seed in ops:
        used = seeded(seed) if load else state
        nxt, r = g.lfsr_leap(cfg, used, cfg.poly_x)
        want.append(int(r))
        state = int(nxt) if run else used

    async def bench(ctx):
        for run, load, seed in ops:
            ctx.set(dut.run, run)
            ctx.set(dut.load, load)
            ctx.set(dut.seed, seed)
            got.append(ctx.get(dut.r))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


@pytest.mark.parametrize("cfg", SMALL[:3], ids=lambda c: c.tag)
def test_block_max_and_magnitudes(cfg):
    """E_max, the Inf/NaN flag, magnitudes and signs against `golden.essop.normalise`."""
    n = 7
    rng = np.random.default_rng(2)
    vs = fp16_vectors(rng, 200, n)
    bm, mg = BlockMax(n), Magnitudes(cfg, n)
    got = []

    async def bench_max(ctx):
        for v in vs:
            ctx.set(bm.v, [int(a) for a in v])
            got.append((ctx.get(bm.e_max), ctx.get(bm.error)))

    sim = Simulator(bm)
    sim.add_testbench(bench_max)
    sim.run()
    want = g.normalise(cfg, vs)
    e_max = np.array([e for e, _ in got])
    np.testing.assert_array_equal([err for _, err in got], want.error)
    ok = ~want.error
    np.testing.assert_array_equal(e_max[ok] - 14, want.e[ok])
    qs, ss = [], []

    async def bench_mag(ctx):
        for v, e in zip(vs[ok], e_max[ok]):
            ctx.set(mg.v, [int(a) for a in v])
            ctx.set(mg.e_max, int(e))
            qs.append([int(q) for q in ctx.get(mg.q)])
            ss.append(ctx.get(mg.s))

    sim = Simulator(mg)
    sim.add_testbench(bench_mag)
    sim.run()
    np.testing.assert_array_equal(qs, want.q[ok])
    np.testing.assert_array_equal([[s >> k & 1 for k in range(n)] for s in ss], want.sign[ok])


def run_stream(cfg, products, ready_p=1.0, seed=0, beats=None, status=None):
    """Drive `products` (x, d, regs, reseed[, acc]) into the unit with random output stalls;
    returns the read-out beats (c, exp, error, last) and the clock of each beat. `beats`: the
    beats to wait for (default one read-out per product); `status`, a dict, receives the final
    `reg_error`."""
    dut = ESSOP(cfg)
    rng = np.random.default_rng(seed)
    rows, accepted, clocks = [], [], []
    total = len(products) * cfg.readout_beats if beats is None else beats

    async def source(ctx):
        for x, d, regs, reseed, *acc in products:
            for name in ("log2_bl", "lr_shift", "seed_x", "seed_d"):
                ctx.set(getattr(dut, name), regs[name])
            ctx.set(dut.reseed, int(reseed))
            ctx.set(dut.i.payload.x, [int(a) for a in x])
            ctx.set(dut.i.payload.d, [int(a) for a in d])
            if cfg.accumulates:
                ctx.set(dut.i.payload.acc, int(acc[0]) if acc else 0)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.reseed, 0)
            accepted.append(1)
        ctx.set(dut.i.valid, 0)

    # a fault that loses or adds beats must fail, not hang: a bound far above any schedule
    limit = 100 + 8 * len(products) * (cfg.bl_max + cfg.rows + 8)

    async def sink(ctx):
        cycle = 0
        while len(rows) < total:
            assert cycle < limit, f"{len(rows)} of {total} beats after {cycle} clocks"
            ready = int(rng.random() < ready_p)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                p = ctx.get(dut.o.payload)
                rows.append(([int(c) for c in p.c], int(p.exp), int(p.error), int(p.last)))
                clocks.append(cycle)
            await ctx.tick()
            cycle += 1
        await ctx.tick().repeat(3)
        assert ctx.get(dut.busy) == 0, "busy after the expected beats (beats left over)"
        if status is not None:
            status["reg_error"] = ctx.get(dut.reg_error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return rows, clocks


def expected_rows(cfg, products, flags=None):
    """The model of the unit's register semantics (see `ESSOP`) over golden `outer_product`,
    grouped by golden `group_add` (products (x, d, regs, reseed[, acc])), read out by golden
    `readout`. `flags`, a list, receives whether each product raised `reg_error`."""
    state = g.reseed(cfg, 1, 1)
    group = g.group_start(cfg)
    rows = []
    for x, d, regs, reseed, *acc in products:
        seeds_ok = regs["seed_x"] and regs["seed_d"]
        bad = regs["log2_bl"] > cfg.log2_bl_max or (reseed and not seeds_ok)
        if reseed and seeds_ok:
            state = g.reseed(cfg, regs["seed_x"], regs["seed_d"])
        if bad:
            c, e, err = np.zeros((cfg.rows, cfg.cols), np.int64), 0, 1
        else:
            res = g.outer_product(cfg, x, d, regs["log2_bl"], regs["lr_shift"], *state)
            c, e, err = res.c, int(res.exp), int(res.error)
            if g.group_admits(cfg, group, e, err):
                state = (res.state_x, res.state_d)
        group, ro, flag = g.group_add(cfg, group, c, e, err, int(acc[0]) if acc else 0)
        if flags is not None:
            flags.append(bad or flag)
        if ro is None:
            continue
        out = g.readout(cfg, *ro)
        rows += [(list(out["c"][b]), int(out["exp"][b]), int(out["error"][b]), int(out["last"][b]))
                 for b in range(cfg.readout_beats)]
    return rows


@pytest.mark.parametrize("cfg", SMALL, ids=lambda c: c.tag)
def test_unit_matches_golden_stream(cfg):
    """A stream of products with reseeds (valid and with a zero seed), Inf/NaN, every log2_bl
    and random output stalls: every read-out beat bit-exact."""
    rng = np.random.default_rng(run_seed())
    products = []
    for k in range(14):
        regs = {"log2_bl": int(rng.integers(0, (1 << cfg.log2_bl_bits))) if k % 7 == 6
                else k % (cfg.log2_bl_max + 1),
                "lr_shift": int(rng.integers(0, cfg.lr_shift_max + 1)),
                "seed_x": int(rng.integers(0 if k == 9 else 1, cfg.lfsr_max + 1)),
                "seed_d": int(rng.integers(1, cfg.lfsr_max + 1))}
        products.append((fp16_vectors(rng, 1, cfg.rows)[0], fp16_vectors(rng, 1, cfg.cols)[0],
                         regs, k % 4 == 1 or k == 9))
    rows, _ = run_stream(cfg, products, ready_p=0.7, seed=run_seed())
    want = expected_rows(cfg, products)
    for k, (a, b) in enumerate(zip(rows, want)):
        assert a == b, f"beat {k} (product {k // cfg.readout_beats}): got {a}, expected {b}"
    assert len(rows) == len(want)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_wrong_config_type():
    with pytest.raises(TypeError, match="ESSOPConfig"):
        ESSOP({"rows": 4})


# the full-size presets in `make regress` (and in `make`'s `aimc generate --all --lint`)
@pytest.mark.parametrize("cfg", [regress_only(c, c.name != "tiny") for c in ESSOP_PRESETS.values()]
                         + random_essop_configs(run_seed(), 4)
                         + SMALL[1:] + ACC, ids=lambda c: c.tag)
def test_verilog_lint_clean(cfg, tmp_path):
    """`verilator --lint-only -Wall`, with only the waivers listed in hdl/export.py."""
    setup_tools()
    v_path, _ = write("essop", cfg, tmp_path)
    ok, text = lint(v_path, module_name("essop", cfg))
    assert ok, text


@pytest.mark.parametrize("cfg", [c for c in SMALL if c.log2_bl_max >= 1], ids=lambda c: c.tag)
def test_clocks_per_product(cfg):
    """Without stalls, consecutive products' first beats are `cfg.clocks_per_product` apart at
    every BL: BL + rows/R single-buffered, max(BL, rows/R) double-buffered."""
    rng = np.random.default_rng(5)
    for log2_bl in range(cfg.log2_bl_max + 1):
        regs = {"log2_bl": log2_bl, "lr_shift": 0, "seed_x": 1, "seed_d": 1}
        products = [(fp16_vectors(rng, 1, cfg.rows)[0] & 0x7BFF, fp16_vectors(rng, 1, cfg.cols)[0]
                     & 0x7BFF, regs, False) for _ in range(4)]
        _, clocks = run_stream(cfg, products)
        period = np.diff(clocks[::cfg.readout_beats])
        assert (period == cfg.clocks_per_product(log2_bl)).all(), \
            f"log2_bl {log2_bl}: clocks between products {list(period)}"


# -- accumulation ----------------------------------------------------------------------------------

def _group_vectors(cfg, rng, x, d):
    """Another product of the same E as (x, d): elements permuted and signs flipped (the block
    maxima stay), some zeroed."""
    x, d = rng.permutation(x), rng.permutation(d)
    x = x ^ (rng.integers(0, 2, x.shape) << 15)
    d = d ^ (rng.integers(0, 2, d.shape) << 15)
    keep_x = (x & 0x7C00) == (x & 0x7C00).max()
    return (np.where(keep_x | (rng.random(x.shape) < 0.7), x, 0),
            np.where(rng.random(d.shape) < 0.8, d, 0) | (d & 0x7C00 == (d & 0x7C00).max()) * d)


def _check_beats(cfg, products, ready_p, seed):
    flags = []
    want = expected_rows(cfg, products, flags)
    status = {}
    rows, _ = run_stream(cfg, products, ready_p=ready_p, seed=seed, beats=len(want), status=status)
    for k, (a, b) in enumerate(zip(rows, want)):
        assert a == b, f"beat {k} (read-out {k // cfg.readout_beats}): got {a}, expected {b}"
    assert len(rows) == len(want)
    assert status["reg_error"] == any(flags), f"reg_error {status['reg_error']}, expected {any(flags)}"
    return want


@pytest.mark.parametrize("cfg", ACC, ids=lambda c: c.tag)
def test_accumulated_groups_match_golden(cfg):
    """Groups of 1..K products of one E (mixed BL where E allows, reseeds inside) alternating
    with full groups holding a fault at every position (an E mismatch, an Inf, a zero seed:
    later products of the group follow it), and an over-long group, under output stalls: every
    read-out beat and `reg_error` against golden `group_add`."""
    rng = np.random.default_rng(run_seed())
    faults = list(itertools.product(("mismatch", "inf", "seed"), range(cfg.acc_max)))
    products = []
    for k in range(2 * len(faults) + 1):
        fault, fault_at = faults[k // 2] if k % 2 else (None, -1)
        x, d = fp16_vectors(rng, 1, cfg.rows)[0] & 0x7BFF, fp16_vectors(rng, 1, cfg.cols)[0] & 0x7BFF
        size = cfg.acc_max if fault or k == 2 * len(faults) else int(rng.integers(1, cfg.acc_max + 1))
        over = k == 2 * len(faults)                # the last group: K products with acc = 1
        regs = {"log2_bl": int(rng.integers(0, cfg.log2_bl_max + 1)),
                "lr_shift": int(rng.integers(0, cfg.lr_shift_max + 1)),
                "seed_x": int(rng.integers(1, cfg.lfsr_max + 1)), "seed_d": int(rng.integers(1, cfg.lfsr_max + 1))}
        for j in range(size):
            gx, gd = _group_vectors(cfg, rng, x, d)
            r = dict(regs)
            if j == fault_at and fault == "mismatch":
                r["log2_bl"] = (r["log2_bl"] + 1) % (cfg.log2_bl_max + 1)
            elif j == fault_at and fault == "inf":
                gx = gx.copy()
                gx[0] = 0x7C00
            elif j == fault_at:
                r["seed_x"] = 0
            products.append((gx, gd, r, j == 1 or r["seed_x"] == 0, int(j < size - 1 or over)))
    products.append((x, d, regs, False, 0))         # closes the group after the over-long one
    _check_beats(cfg, products, 0.7, run_seed())


def test_accumulation_exhaustive_tiny():
    """Every sequence of K + 1 product kinds from clear counters (K = 2, so over-long groups
    too), each kind one of: the group's E, another E, Inf; each with acc 0 or 1; a closing
    product after each sequence. One 1 × 2 engine, with output stalls, against golden."""
    cfg = ESSOPConfig(name="acc-ex", rows=1, cols=2, mag_bits=2, lfsr_width=4, log2_bl_max=1,
                      lr_shift_bits=1, acc_max=2)
    rng = np.random.default_rng(11)
    x, d = np.array([0x3C00]), np.array([0x3A00, 0xB800])
    regs = {"log2_bl": 1, "lr_shift": 0, "seed_x": 3, "seed_d": 5}
    kinds = {"same": (x, d), "other": (x + 0x0400, d), "inf": (np.array([0x7C00]), d)}
    letters = [(k, a) for k in kinds for a in (0, 1)]
    products = []
    for seq in itertools.product(letters, repeat=cfg.acc_max + 1):
        for kind, acc in seq:
            gx, gd = kinds[kind]
            products.append((gx, gd ^ (rng.integers(0, 2, 2) << 15), regs, False, acc))
        products.append((x, d, regs, False, 0))
    want = _check_beats(cfg, products, 0.8, 3)
    errors = sum(r[2] for r in want) // cfg.readout_beats
    assert 0 < errors < len(want) // cfg.readout_beats


@pytest.mark.parametrize("cfg", ACC, ids=lambda c: c.tag)
def test_clocks_per_product_accumulated(cfg):
    """Without stalls, groups of k products' first beats are k · `clocks_per_product(…, k)`
    apart, k = 1 and K: K·BL + rows/R single-buffered, max(K·BL, rows/R) double-buffered."""
    rng = np.random.default_rng(6)
    for k in sorted({1, cfg.acc_max}):
        for log2_bl in range(cfg.log2_bl_max + 1):
            regs = {"log2_bl": log2_bl, "lr_shift": 0, "seed_x": 1, "seed_d": 1}
            x, d = fp16_vectors(rng, 1, cfg.rows)[0] & 0x7BFF, fp16_vectors(rng, 1, cfg.cols)[0] & 0x7BFF
            products = [(x, d, regs, False, int(j % k < k - 1)) for j in range(4 * k)]
            _, clocks = run_stream(cfg, products, beats=4 * cfg.readout_beats)
            period = np.diff(clocks[::cfg.readout_beats])
            assert (period == k * cfg.clocks_per_product(log2_bl, k)).all(), \
                f"k {k}, log2_bl {log2_bl}: clocks between read-outs {list(period)}"


def test_open_group_keeps_busy():
    """Products with acc = 1 leave no read-out and keep `busy` high while the group is open;
    the closing product reads out their sum."""
    cfg = ACC[0]
    x, d = np.full(cfg.rows, 0x3C00), np.full(cfg.cols, 0x3C00)
    regs = {"log2_bl": 2, "lr_shift": 0, "seed_x": 1, "seed_d": 1}
    dut = ESSOP(cfg)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for name, v in regs.items():
            ctx.set(getattr(dut, name), v)
        ctx.set(dut.i.payload.x, [int(a) for a in x])
        ctx.set(dut.i.payload.d, [int(a) for a in d])
        for acc in (1, 1):
            ctx.set(dut.i.payload.acc, acc)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(40):
            assert not ctx.get(dut.o.valid), "a read-out while the group is open"
            await ctx.tick()
        seen["busy_open"] = ctx.get(dut.busy)
        ctx.set(dut.i.payload.acc, 0)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().until(dut.o.valid)
        seen["c"] = [int(c) for c in ctx.get(dut.o.payload.c)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["busy_open"] == 1
    want = expected_rows(cfg, [(x, d, regs, False, 1), (x, d, regs, False, 1), (x, d, regs, False, 0)])
    assert seen["c"] == want[0][0]
