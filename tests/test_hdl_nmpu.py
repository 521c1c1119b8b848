"""Fast checks of the NMPU stages and unit in Amaranth's own simulator, against the golden model.

The cocotb regression (tests/test_sim_nmpu.py) checks the generated Verilog; these tests point
at a single stage when something breaks.
"""

import dataclasses
import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import nmpu as g
from hdl.config import NMPU_PRESETS, NMPUConfig, RoundMode, nmpu_preset
from hdl.export import lint, module_name, write
from hdl.nmpu import NMPU, Accumulate, Activate, Compress, Products, ShiftAmounts, layer_layout
from verif import blocksim
from verif.configs import random_nmpu_configs
from verif.runner import setup_tools

from .conftest import regress_only, run_seed

SIGNED = NMPUConfig(name="signed", columns=6, lanes=3, adc_bits=5, input_mode="signed",
                    scale_int=2, scale_frac=3, offset_int=4, offset_frac=4, out_bits=5,
                    exp_bits=2, shift_bits=4)
NO_RES = NMPUConfig(name="nores", columns=4, lanes=4, adc_bits=6, residual=False, shift_bits=4)
# The stage logic is the same in every lane: the presets' formats on two lanes keep the
# Python simulator fast without losing a case.
PAPER2 = dataclasses.replace(nmpu_preset("paper"), name="paper2", columns=4, lanes=2)
EXP2 = dataclasses.replace(nmpu_preset("exp"), name="exp2", columns=4, lanes=2)
# precision knobs: one scale for both branches with dropped product LSBs (also below the
# accumulator's grid: product_frac < 0), and dual scales with drops on the signed input
SINGLE = NMPUConfig(name="single", columns=4, lanes=2, adc_bits=5, single_scale=True, drop_bits=5,
                    scale_int=1, scale_frac=4, offset_int=4, offset_frac=1, out_bits=4,
                    shift_bits=4)
DROP2 = dataclasses.replace(PAPER2, name="drop2", drop_bits=4)
DROPS = dataclasses.replace(SIGNED, name="drops", drop_bits=2)
CONFIGS = [nmpu_preset("tiny"), EXP2, SIGNED, NO_RES, SINGLE, DROP2, DROPS]


def run_comb(component, cases, check):
    """Drive each case ({port: value}, keys starting with '_' are bookkeeping) into a
    combinational stage and call check(case, get) with get(port) -> int."""
    async def bench(ctx):
        for case in cases:
            for name, value in case.items():
                if not name.startswith("_"):
                    ctx.set(getattr(component, name), int(value))
            check(case, lambda name: ctx.get(getattr(component, name)))
    sim = Simulator(component)
    sim.add_testbench(bench)
    sim.run()


def draw(rng, lo, hi, n, corners=0.1):
    """n values in [lo, hi], a share of them on the rails."""
    v = rng.integers(lo, hi + 1, n)
    pick = rng.random(n)
    return np.where(pick < corners / 2, lo, np.where(pick < corners, hi, v))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.tag)
def test_products_and_accumulate(cfg):
    rng = np.random.default_rng(1)
    n = 300
    cols = dict(sp=draw(rng, 0, cfg.scale_max, n), o=draw(rng, *cfg.offset_range, n))
    if cfg.two_scales:
        cols |= dict(sn=draw(rng, 0, cfg.scale_max, n))
    if cfg.dual:
        cols |= dict(p=draw(rng, 0, cfg.adc_max, n), n=draw(rng, 0, cfg.adc_max, n))
    else:
        cols |= dict(x=draw(rng, *cfg.x_range, n))
    want_pp, want_pn = g.products(cfg, cols["sp"], cols.get("sn"), p=cols.get("p"),
                                  n=cols.get("n"), x=cols.get("x"))
    want_acc = g.accumulate(cfg, want_pp, want_pn, cols["o"])
    names = [k for k in ("sp", "sn", "p", "n", "x") if k in cols]
    got = []
    run_comb(Products(cfg), [{k: cols[k][i] for k in names} for i in range(n)],
             lambda case, get: got.append((get("pp"), get("pn") if cfg.two_scales else 0)))
    got = np.array(got)
    np.testing.assert_array_equal(got[:, 0], want_pp)
    if cfg.two_scales:
        np.testing.assert_array_equal(got[:, 1], want_pn)
    acc = []
    cases = [dict(pp=want_pp[i], o=cols["o"][i], **({"pn": want_pn[i]} if cfg.two_scales else {}))
             for i in range(n)]
    run_comb(Accumulate(cfg), cases, lambda case, get: acc.append(get("acc")))
    np.testing.assert_array_equal(acc, want_acc)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.tag)
def test_shift_amounts(cfg):
    cases = [dict(shift=sh, pre_cut=pc, **({"e": e} if cfg.exp_bits else {}))
             for sh, pc, e in itertools.product(range(cfg.max_shift + 1), range(cfg.max_shift + 1),
                                                range(cfg.e_max + 1))]

    def check(case, get):
        s = int(g.total_shift(cfg, case["shift"], case.get("e")))
        assert (get("s"), get("c")) == (s, min(case["pre_cut"], s)), case
    run_comb(ShiftAmounts(cfg), cases, check)


def compress_cases(cfg, accs, shifts, pre_cuts, modes):
    return [dict(acc=a, s=s, c=min(pc, s), round_mode=mode, _pre_cut=pc)
            for a, s, pc, mode in zip(accs, shifts, pre_cuts, modes)]


def check_compress(cfg):
    def check(case, get):
        mode = case["round_mode"] if case["round_mode"] <= max(RoundMode) else RoundMode.FLOOR
        want = int(g.compress(cfg, case["acc"], case["s"], case["_pre_cut"], mode))
        assert get("y") == want, (case, get("y"), want)
    return check


def test_compress_exhaustive_tiny():
    """Every accumulator value under every total shift, pre-cut and rounding mode (and the
    reserved mode code, which must round like floor): 32,544 cases, one per clock through the
    stage's generated Verilog in Icarus (verif/blocksim.py: 1 CPU-s, against 11 in Amaranth's
    simulator; `test_compress_random` keeps the stage in Amaranth's simulator)."""
    cfg = nmpu_preset("tiny")
    lo, hi = cfg.acc_range
    acc, s, pc, mode = np.array(list(itertools.product(
        range(lo, hi + 1), range(cfg.max_total_shift + 1), range(cfg.max_shift + 1),
        range(4)))).T
    got = blocksim.run(Compress(cfg), dict(acc=acc, s=s, c=np.minimum(pc, s), round_mode=mode),
                       ["y"])["y"][1:]
    want = g.compress(cfg, acc, s, pc, np.where(mode <= max(RoundMode), mode, RoundMode.FLOOR))
    bad = np.flatnonzero(got != want)
    assert len(acc) == 32544 and not bad.size, (
        f"{bad.size} cases differ, the first: acc {acc[bad[0]]}, s {s[bad[0]]}, pre-cut "
        f"{pc[bad[0]]}, mode {mode[bad[0]]}: RTL {got[bad[0]]}, golden {want[bad[0]]}")


@pytest.mark.parametrize("cfg", [PAPER2, EXP2, SIGNED], ids=lambda c: c.tag)
def test_compress_random(cfg):
    rng = np.random.default_rng(2)
    n = 3000
    lo, hi = cfg.acc_range
    s = rng.integers(0, cfg.max_total_shift + 1, n)
    acc = rng.integers(lo, hi + 1, n)
    # plant exact ties, and values one below and above them: acc = k·2^s + 2^(s−1) + {−1, 0, 1}
    planted = (rng.integers(-8, 8, n) << s) + np.where(s > 0, 1 << np.maximum(s - 1, 0), 0) \
        + rng.integers(-1, 2, n)
    plant = (rng.random(n) < 0.4) & (planted >= lo) & (planted <= hi)
    acc = np.where(plant, planted, acc)
    acc[:4] = [lo, hi, lo, hi]
    s[:4] = [0, 0, cfg.max_total_shift, cfg.max_total_shift]
    cases = compress_cases(cfg, acc, s, rng.integers(0, cfg.max_shift + 1, n), rng.integers(0, 3, n))
    run_comb(Compress(cfg), cases, check_compress(cfg))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.tag)
def test_activate(cfg):
    rng = np.random.default_rng(3)
    n = 600
    lo, hi = cfg.acc_range
    y = rng.integers(lo, hi + 1, n) >> rng.integers(0, cfg.acc_bits, n)
    cols = dict(y=y, relu_mid=rng.integers(0, 2, n), relu_out=rng.integers(0, 2, n))
    if cfg.residual:
        cols |= dict(res=draw(rng, *cfg.out_range, n), residual_en=rng.integers(0, 2, n))
    want = g.relu(cols["y"], cols["relu_mid"])
    if cfg.residual:
        want = g.residual(cfg, want, cols["res"], cols["residual_en"])
    want, clamped = g.saturate(cfg, g.relu(want, cols["relu_out"]))
    got = []
    run_comb(Activate(cfg), [{k: v[i] for k, v in cols.items()} for i in range(n)],
             lambda case, get: got.append((get("z"), get("clamped"))))
    got = np.array(got)
    np.testing.assert_array_equal(got[:, 0], want)
    np.testing.assert_array_equal(got[:, 1], clamped)
    assert clamped.any() and (~clamped).any()


def test_unit_stream_tiny():
    """The whole unit in Amaranth's simulator: a stream of random vectors with input and output
    stalls, parameter writes between beats, latency and clamp count."""
    cfg = nmpu_preset("tiny")
    dut = NMPU(cfg)
    rng = np.random.default_rng(4)
    n_beats = 400
    beats = []
    for k in range(n_beats):
        beats.append(dict(p=rng.integers(0, cfg.adc_max + 1, cfg.lanes),
                          n=rng.integers(0, cfg.adc_max + 1, cfg.lanes),
                          res=rng.integers(cfg.out_range[0], cfg.out_range[1] + 1, cfg.lanes),
                          last=int(k % cfg.beats == cfg.beats - 1)))
    layers = [g.NMPULayer(shift=int(rng.integers(0, cfg.max_shift + 1)),
                          pre_cut=int(rng.integers(0, cfg.max_shift + 1)),
                          round_mode=int(rng.integers(0, 3)), relu_mid=int(rng.integers(0, 2)),
                          relu_out=int(rng.integers(0, 2)), residual_en=int(rng.integers(0, 2)))
              for _ in range(n_beats)]
    table = g.NMPUParams.zeros(cfg)
    table = {k: np.array(v) for k, v in vars(table).items() if v is not None}
    expected, got, clamps = [], [], [0]
    first_out = {}

    async def bench(ctx):
        cycle = 0
        sent = 0
        pending_write = None
        while len(got) < n_beats:
            # parameter write on some cycles
            if rng.random() < 0.3:
                col = int(rng.integers(0, cfg.columns))
                word = dict(sp=int(rng.integers(0, cfg.scale_max + 1)),
                            sn=int(rng.integers(0, cfg.scale_max + 1)),
                            o=int(rng.integers(cfg.offset_range[0], cfg.offset_range[1] + 1)),
                            e=int(rng.integers(0, cfg.e_max + 1)))
                ctx.set(dut.wr.en, 1)
                ctx.set(dut.wr.addr, col)
                ctx.set(dut.wr.data, g.unpack(cfg, g.pack(cfg, **word)))
                pending_write = (col, word)
            else:
                ctx.set(dut.wr.en, 0)
                pending_write = None
            valid = sent < n_beats and rng.random() < 0.8
            ctx.set(dut.i.valid, int(valid))
            if valid:
                b = beats[sent]
                for name in ("p", "n", "res"):
                    for lane in range(cfg.lanes):
                        ctx.set(dut.i.payload[name][lane], int(b[name][lane]))
                ctx.set(dut.i.payload.last, b["last"])
                L = layers[sent]
                ctx.set(dut.layer, {"shift": L.shift, "pre_cut": L.pre_cut, "round_mode": L.round_mode,
                                    "relu_mid": L.relu_mid, "relu_out": L.relu_out,
                                    "residual_en": L.residual_en})
            ready = rng.random() < 0.7
            ctx.set(dut.o.ready, int(ready))
            accepted = valid and ctx.get(dut.i.ready)
            out_ok = ctx.get(dut.o.valid) and ready
            if out_ok:
                got.append([ctx.get(dut.o.payload.y[lane]) for lane in range(cfg.lanes)])
                first_out.setdefault(len(got) - 1, cycle)
            if accepted:
                b, L = beats[sent], layers[sent]
                pos = sent % cfg.beats
                cols = slice(pos * cfg.lanes, (pos + 1) * cfg.lanes)
                prm = g.NMPUParams(sp=table["sp"][cols], sn=table["sn"][cols], o=table["o"][cols],
                                   e=table["e"][cols])
                y, cl = g.forward(cfg, L, prm, p=b["p"], n=b["n"], r=b["res"], return_clamped=True)
                expected.append(list(y))
                clamps[0] += int(cl.sum())
                if sent == 0:
                    first_out["accept0"] = cycle
                sent += 1
            if pending_write:
                col, word = pending_write
                for k in table:
                    table[k][col] = word[k]
            await ctx.tick()
            cycle += 1
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(3 + cfg.clamp_stages)
        assert ctx.get(dut.clamp_count) == min(clamps[0], (1 << cfg.clamp_count_bits) - 1)
        assert ctx.get(dut.frame_error) == 0
        assert ctx.get(dut.reg_error) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == expected
    assert first_out[0] - first_out["accept0"] >= dut.latency


def test_latency_and_throughput_tiny():
    """Back-to-back beats with the output always ready: one beat per clock, fixed latency."""
    cfg = nmpu_preset("tiny")
    dut = NMPU(cfg)
    n_beats = 20
    out_cycles, in_cycles = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(n_beats + 10):
            valid = cycle < n_beats
            ctx.set(dut.i.valid, int(valid))
            ctx.set(dut.i.payload.last, int(cycle % cfg.beats == cfg.beats - 1))
            if valid and ctx.get(dut.i.ready):
                in_cycles.append(cycle)
            if ctx.get(dut.o.valid):
                out_cycles.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert in_cycles == list(range(n_beats))
    assert out_cycles == [c + dut.latency for c in in_cycles]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_wrong_config_type():
    with pytest.raises(TypeError, match="NMPUConfig"):
        NMPU({"columns": 4})


# the full-size presets (`precision256`'s elaboration alone takes minutes) in `make regress`; the
# main job (`make`) lints every preset too (`aimc generate --all --lint`)
@pytest.mark.parametrize("cfg", [regress_only(c, c.name != "tiny") for c in NMPU_PRESETS.values()]
                         + random_nmpu_configs(run_seed(), 3)
                         + [SIGNED, NO_RES, dataclasses.replace(NO_RES, name="onebeat", columns=4)],
                         ids=lambda c: c.tag)
def test_verilog_lint_clean(cfg, tmp_path):
    """`verilator --lint-only -Wall`, with only the waivers listed in hdl/export.py."""
    setup_tools()
    v_path, j_path = write("nmpu", cfg, tmp_path)
    ok, text = lint(v_path, module_name("nmpu", cfg))
    assert ok, text


@pytest.mark.parametrize("lanes,stages,group,bits", [(5, 0, 8, 6), (5, 3, 2, 6), (6, 1, 8, 4),
                                                     (9, 4, 2, 5)])
def test_clamp_counter_pipelined(lanes, stages, group, bits):
    """The clamp-event count, flat and pipelined (`hdl.common.clamp_counter`), against a clock
    model: a beat's flags arrive `stages` clocks late and are counted exactly once, the count
    saturates, `clear` restarts it and events still in the tree count after it."""
    from amaranth import Module, Signal
    from hdl.common import clamp_counter

    m = Module()
    clamped, fresh, clear = Signal(lanes), Signal(), Signal()
    count = Signal(bits)
    clamp_counter(m, count, clear, fresh, clamped, stages=stages, group=group)
    rng = np.random.default_rng(run_seed() + lanes + 10 * stages)
    n = 300
    flags = rng.integers(0, 1 << lanes, n)
    fresh_v = rng.random(n) < 0.7
    clear_v = rng.random(n) < 0.03
    top = (1 << bits) - 1
    # clock model: events of clock k (flags at k, fresh at k − 1) enter the add at k + stages
    arrive = np.zeros(n + stages + 1, np.int64)
    for k in range(1, n):
        if fresh_v[k - 1]:
            arrive[k + stages] += bin(int(flags[k])).count("1")
    want, c = [], 0
    for k in range(n):
        want.append(c)
        c = min((0 if clear_v[k] else c) + int(arrive[k]), top)
    got = []

    async def bench(ctx):
        for k in range(n):
            ctx.set(clamped, int(flags[k]))
            ctx.set(fresh, bool(fresh_v[k]))
            ctx.set(clear, bool(clear_v[k]))
            got.append(ctx.get(count))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
    assert top in want  # saturation reached


# A tiny instance of the precision knobs: small enough to check the changed arithmetic
# (products, dropped LSBs, one scale, the accumulator on the coarser grid) for every value.
TINY_KNOBS = [dataclasses.replace(nmpu_preset("tiny"), name="tiny-single", single_scale=True,
                                  drop_bits=2),
              dataclasses.replace(nmpu_preset("tiny"), name="tiny-drop", drop_bits=3)]


@pytest.mark.parametrize("cfg", TINY_KNOBS, ids=lambda c: c.name)
def test_products_and_accumulate_exhaustive_knobs(cfg):
    """Every (sp, sn, P, N, o) of a tiny knob config through `Products` → `Accumulate`, against
    the golden steps (which test_golden_nmpu checks against plain integer floors)."""
    names = ["sp"] + (["sn"] if cfg.two_scales else []) + ["p", "n", "o"]
    ranges = dict(sp=(0, cfg.scale_max), sn=(0, cfg.scale_max), p=(0, cfg.adc_max),
                  n=(0, cfg.adc_max), o=cfg.offset_range)
    grid = np.array(list(itertools.product(*(range(ranges[k][0], ranges[k][1] + 1)
                                             for k in names))))
    cols = {k: grid[:, i] for i, k in enumerate(names)}
    want_pp, want_pn = g.products(cfg, cols["sp"], cols.get("sn"), p=cols["p"], n=cols["n"])
    want = g.accumulate(cfg, want_pp, want_pn, cols["o"])

    from amaranth import Module
    m = Module()
    m.submodules.products = products = Products(cfg)
    m.submodules.accumulate = accumulate = Accumulate(cfg)
    m.d.comb += accumulate.pp.eq(products.pp)
    if cfg.two_scales:
        m.d.comb += accumulate.pn.eq(products.pn)
    got = []

    async def bench(ctx):
        for i in range(len(grid)):
            for k in names:
                if k == "o":
                    ctx.set(accumulate.o, int(cols[k][i]))
                else:
                    ctx.set(getattr(products, k), int(cols[k][i]))
            got.append(ctx.get(accumulate.acc))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(got, want)


# Static layers: one with per-column exponents (shift + e through the stage registers), one
# without (constant s and c: the shifter folds away), both with a rounding mode other than floor.
STATIC = [dataclasses.replace(nmpu_preset("tiny"), name="tiny-static", static_layer=True,
                              static_shift=2, static_pre_cut=1, static_round=1),
          dataclasses.replace(SINGLE, name="single-static", static_layer=True, static_shift=3,
                              static_pre_cut=1, static_round=2)]


@pytest.mark.parametrize("cfg", STATIC, ids=lambda c: c.name)
def test_unit_stream_static(cfg):
    """The whole unit with a static layer: random beats with stalls and writes, against the
    golden model at the config's fixed shift, pre-cut and mode (the fuzz bench)."""
    from .test_fuzz_configs import simulate_nmpu
    assert "shift" not in {name for name, _ in layer_layout(cfg)}
    simulate_nmpu(cfg, n_beats=160)
