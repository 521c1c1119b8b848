"""Configuration fuzzing: random valid configs of every unit must generate lint-clean Verilog
and match the golden model in a short Amaranth simulation; random invalid ones must be refused
with a ValueError or TypeError that names the field.

Hypothesis draws the configs from the run's seed (TB_SEED, see conftest.py; every drawn config
is printed, `pytest -s` shows them). A few examples per unit by default (3; the LDPU 1, the
periphery 1), anew every run; FUZZ_EXAMPLES=N draws N per unit (the LDPU three fifths of N,
the periphery half): `make regress` draws 15. FUZZ_INVALID=N the invalid ones.
"""

import os
import re
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, assume, given, note, seed, settings
from hypothesis import strategies as st

from golden import baselines as gb
from golden import nmpu as gn
from hdl.baselines import LDPU
from hdl.config import ESSOP_LFSR_POLYS, ESSOPConfig, FP16OuterConfig, LDPUConfig, NMPUConfig
from hdl.export import lint, module_name, write
from hdl.nmpu import NMPU, layer_layout
from verif.runner import setup_tools

from .conftest import run_seed
from .test_hdl_baselines import LDPUBench, make_beats, outer_operands, random_word, run_outer
from .test_hdl_essop import expected_rows, fp16_vectors, run_stream

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
# an LDPU config costs twice an NMPU one (a pipelined FP16 datapath per column in the Amaranth
# simulator: 3.8 CPU-s an example against 1.8): three fifths as many
LDPU_EXAMPLES = max(1, EXAMPLES * 3 // 5)
INVALID = int(os.environ.get("FUZZ_INVALID", "60"))


def fuzz_settings(examples):
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


def shown(unit, cfg):
    """Print the drawn config (and attach it to a failure report)."""
    text = f"fuzz {unit}: {cfg!r} (tag {cfg.tag}, TB_SEED={run_seed()})"
    print(text)
    note(text)


def lint_clean(unit, cfg, tmp_path):
    setup_tools()
    v_path, _ = write(unit, cfg, tmp_path / cfg.tag)
    ok, text = lint(v_path, module_name(unit, cfg))
    assert ok, f"{cfg!r}:\n{text}"


def rng_for(cfg):
    return np.random.default_rng([run_seed(), zlib.crc32(cfg.tag.encode())])


def build(cls, fields):
    """The config, or reject the draw when the config itself refuses it (never a second rule
    set: validity is the config's)."""
    try:
        return cls(name="fuzz", **fields)
    except ValueError:
        assume(False)


# -- valid configs (small, so the Verilog and the simulation stay small) -------------------------

@st.composite
def nmpu_configs(draw):
    lanes = draw(st.sampled_from([1, 2, 3, 4]))
    return build(NMPUConfig, dict(
        columns=lanes * draw(st.integers(1, 3)), lanes=lanes, adc_bits=draw(st.integers(1, 8)),
        input_mode=draw(st.sampled_from(["dual", "signed"])),
        scale_int=draw(st.integers(0, 2)), scale_frac=draw(st.integers(1, 4)),
        offset_int=draw(st.integers(1, 5)), offset_frac=draw(st.integers(0, 4)),
        out_bits=draw(st.integers(2, 8)), residual=draw(st.booleans()),
        exp_bits=draw(st.integers(0, 2)), shift_bits=draw(st.integers(4, 5)),
        clamp_count_bits=draw(st.integers(1, 12)),
        single_scale=draw(st.booleans()), drop_bits=draw(st.integers(0, 4)),
        **draw(st.one_of(st.just({}), st.fixed_dictionaries(dict(
            static_layer=st.just(True), static_shift=st.integers(0, 15),
            static_pre_cut=st.integers(0, 15), static_round=st.integers(0, 2)))))))


@st.composite
def essop_configs(draw):
    mag = draw(st.integers(1, 12))
    rows = draw(st.integers(1, 4))
    return build(ESSOPConfig, dict(
        rows=rows, cols=draw(st.integers(1, 4)), mag_bits=mag,
        rows_per_beat=draw(st.sampled_from([r for r in range(1, rows + 1) if rows % r == 0])),
        lfsr_width=draw(st.sampled_from([w for w in sorted(ESSOP_LFSR_POLYS) if mag <= w <= 16])),
        log2_bl_max=draw(st.integers(0, 3)), rng=draw(st.sampled_from(["shared", "per_converter"])),
        double_buffer=draw(st.booleans()), lr_shift_bits=draw(st.integers(1, 4)),
        acc_max=draw(st.sampled_from([1, 1, 2, 3, 5]))))


@st.composite
def ldpu_configs(draw):
    return build(LDPUConfig, dict(
        columns=draw(st.integers(1, 5)), adc_bits=draw(st.integers(1, 15)),
        residual=draw(st.booleans()), clamp_count_bits=draw(st.integers(1, 16)),
        scale_blocks=draw(st.integers(1, 2))))


@st.composite
def outer_configs(draw):
    return build(FP16OuterConfig, dict(rows=draw(st.integers(1, 4)), cols=draw(st.integers(1, 4))))


# -- short simulations against the golden model ---------------------------------------------------

def simulate_nmpu(cfg, n_beats=120):
    """Random vectors (rails included) with input gaps, output stalls, parameter writes and
    random layer registers per beat: every output, the clamp count and no status flag."""
    dut = NMPU(cfg)
    rng = rng_for(cfg)
    words = [name for name, _ in cfg.word_fields]
    table = {k: np.zeros(cfg.columns, np.int64) for k in words}

    def draw_counts(lo, hi):
        v = rng.integers(lo, hi + 1, cfg.lanes)
        return np.where(rng.random(cfg.lanes) < 0.15, rng.choice([lo, hi], cfg.lanes), v)

    beats = []
    for k in range(n_beats):
        b = dict(last=int(k % cfg.beats == cfg.beats - 1))
        if cfg.dual:
            b |= dict(p=draw_counts(0, cfg.adc_max), n=draw_counts(0, cfg.adc_max))
        else:
            b |= dict(x=draw_counts(*cfg.x_range))
        if cfg.residual:
            b["res"] = draw_counts(*cfg.out_range)
        layer = dict(shift=int(rng.integers(0, cfg.max_shift + 1)),
                     pre_cut=int(rng.integers(0, cfg.max_shift + 1)),
                     round_mode=int(rng.integers(0, 3)), relu_mid=int(rng.integers(0, 2)),
                     relu_out=int(rng.integers(0, 2)))
        if cfg.residual:
            layer["residual_en"] = int(rng.integers(0, 2))
        layer |= gn.static_fields(cfg)  # a static layer's fields are constants, not ports
        b["layer"] = layer
        beats.append(b)
    ranges = dict(sp=(0, cfg.scale_max), sn=(0, cfg.scale_max), o=cfg.offset_range, e=(0, cfg.e_max))
    inputs = ("p", "n") if cfg.dual else ("x",)
    port_layer = {name for name, _ in layer_layout(cfg)}
    expected, got, clamps = [], [], [0]

    async def bench(ctx):
        sent = 0
        while len(got) < n_beats:
            write = None
            if rng.random() < 0.3:
                write = (int(rng.integers(0, cfg.columns)),
                         {k: int(rng.integers(ranges[k][0], ranges[k][1] + 1)) for k in words})
                ctx.set(dut.wr.addr, write[0])
                ctx.set(dut.wr.data, write[1])
            ctx.set(dut.wr.en, write is not None)
            valid = sent < n_beats and rng.random() < 0.8
            ctx.set(dut.i.valid, valid)
            if valid:
                b = beats[sent]
                for name in inputs + (("res",) if cfg.residual else ()):
                    for lane in range(cfg.lanes):
                        ctx.set(dut.i.payload[name][lane], int(b[name][lane]))
                ctx.set(dut.i.payload.last, b["last"])
                ctx.set(dut.layer, {k: v for k, v in b["layer"].items() if k in port_layer})
            ready = rng.random() < 0.7
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.o.valid) and ready:
                got.append([ctx.get(dut.o.payload.y[lane]) for lane in range(cfg.lanes)])
            if valid and ctx.get(dut.i.ready):
                b = beats[sent]
                cols = slice(sent % cfg.beats * cfg.lanes, (sent % cfg.beats + 1) * cfg.lanes)
                prm = gn.NMPUParams(**{k: table[k][cols] for k in words})
                y, cl = gn.forward(cfg, gn.NMPULayer(**b["layer"]), prm,
                                   **{k: b[k] for k in inputs},
                                   r=b["res"] if cfg.residual else None, return_clamped=True)
                expected.append([int(v) for v in y])
                clamps[0] += int(cl.sum())
                sent += 1
            if write is not None:
                for k in words:
                    table[k][write[0]] = write[1][k]
            await ctx.tick()
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.wr.en, 0)
        await ctx.tick().repeat(3 + cfg.clamp_stages)
        assert ctx.get(dut.clamp_count) == min(clamps[0], (1 << cfg.clamp_count_bits) - 1)
        assert (ctx.get(dut.frame_error), ctx.get(dut.reg_error)) == (0, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    bad = [k for k, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not bad, f"beat {bad[0]}: got {got[bad[0]]}, expected {expected[bad[0]]}"
    assert len(got) == len(expected) == n_beats


def simulate_essop(cfg, n_products=6):
    """Products with reseeds, every log2_bl (an out-of-range one too), Inf/NaN operands and
    output stalls, in groups of random `acc` flags where `acc_max` > 1 (mostly mismatching E:
    random operands): every read-out beat of counts, E, error and last, and `reg_error`
    (`tests/test_hdl_essop.py` bench)."""
    rng = rng_for(cfg)
    products = []
    for k in range(n_products):
        regs = {"log2_bl": int(rng.integers(0, 1 << cfg.log2_bl_bits)) if k == n_products - 1
                else k % (cfg.log2_bl_max + 1),
                "lr_shift": int(rng.integers(0, cfg.lr_shift_max + 1)),
                "seed_x": int(rng.integers(1, cfg.lfsr_max + 1)),
                "seed_d": int(rng.integers(1, cfg.lfsr_max + 1))}
        acc = int(cfg.accumulates and k < n_products - 1 and rng.random() < 0.6)
        x, d = fp16_vectors(rng, 1, cfg.rows)[0], fp16_vectors(rng, 1, cfg.cols)[0]
        if k and products[-1][4] and rng.random() < 0.5:   # inside a group: the same E again
            x, d, regs = products[-1][0], products[-1][1], dict(products[-1][2])
        products.append((x, d, regs, k % 3 == 1, acc))
    flags = []
    want = expected_rows(cfg, products, flags)
    status = {}
    rows, _ = run_stream(cfg, products, ready_p=0.7, seed=int(rng.integers(1 << 30)),
                         beats=len(want), status=status)
    assert status["reg_error"] == any(flags)
    for k, (a, b) in enumerate(zip(rows, want)):
        assert a == b, f"beat {k} (product {k // cfg.readout_beats}): got {a}, expected {b}"
    assert len(rows) == len(want)


def simulate_ldpu(cfg):
    """Vectors with input gaps, output stalls and parameter writes (`tests/test_hdl_baselines.py`
    bench): every output, `last`, the clamp count and no status flag."""
    rng = rng_for(cfg)
    dut = LDPU(cfg)
    bench = LDPUBench(cfg, dut)
    n_beats = max(40, 6 * cfg.columns)
    beats = make_beats(cfg, rng, n_beats)

    async def testbench(ctx):
        for col in range(cfg.columns):
            await bench.step(ctx, write=(col, random_word(cfg, rng)))
        sent = 0
        while len(bench.got) < n_beats:
            write = (int(rng.integers(0, cfg.columns)), random_word(cfg, rng)) \
                if rng.random() < 0.15 else None
            beat = beats[sent] if sent < n_beats and rng.random() < 0.8 else None
            if await bench.step(ctx, write, beat, bool(rng.random() < 0.7)):
                sent += 1
        await bench.step(ctx, ready=False)
        await bench.step(ctx, ready=False)
        want, want_last, clamps = bench.expected()
        assert ctx.get(dut.clamp_count) == min(clamps, (1 << cfg.clamp_count_bits) - 1)
        assert (ctx.get(dut.frame_error), ctx.get(dut.reg_error)) == (0, 0)
        assert bench.got == want
        assert bench.out_last == want_last

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def simulate_outer(cfg):
    """Products with special operands under input gaps and output stalls: every row against
    `golden.baselines.outer_product`, `last` on each product's final row."""
    rng = rng_for(cfg)
    products = outer_operands(cfg, rng, 20)
    rows, lasts, _, _, _ = run_outer(cfg, products, rng, p_valid=0.7, p_ready=0.7)
    want = gb.outer_product(cfg, np.array([x for x, _ in products]),
                            np.array([d for _, d in products])).reshape(-1, cfg.cols)
    np.testing.assert_array_equal(rows, want)
    assert lasts == [int(k % cfg.rows == cfg.rows - 1) for k in range(len(rows))]


# -- the valid-config properties --------------------------------------------------------------------

@seed(run_seed())
@fuzz_settings(EXAMPLES)
@given(cfg=nmpu_configs())
def test_fuzz_nmpu(cfg, tmp_path):
    shown("nmpu", cfg)
    lint_clean("nmpu", cfg, tmp_path)
    simulate_nmpu(cfg)


@seed(run_seed())
@fuzz_settings(EXAMPLES)
@given(cfg=essop_configs())
def test_fuzz_essop(cfg, tmp_path):
    shown("essop", cfg)
    lint_clean("essop", cfg, tmp_path)
    simulate_essop(cfg)


@seed(run_seed())
@fuzz_settings(LDPU_EXAMPLES)
@given(cfg=ldpu_configs())
def test_fuzz_ldpu(cfg, tmp_path):
    shown("ldpu", cfg)
    lint_clean("ldpu", cfg, tmp_path)
    simulate_ldpu(cfg)


@seed(run_seed())
@fuzz_settings(EXAMPLES)
@given(cfg=outer_configs())
def test_fuzz_fp16outer(cfg, tmp_path):
    shown("fp16outer", cfg)
    lint_clean("fp16outer", cfg, tmp_path)
    simulate_outer(cfg)


# -- invalid configs: refused, naming the field ------------------------------------------------------

WRONG_TYPES = st.sampled_from([None, "4", 2.5, True, [1]])


def out_of(lo, hi):
    """Integers outside [lo, hi], or values that are not ints at all."""
    return st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1), WRONG_TYPES)


# field -> values the config must refuse (whatever the other fields are)
INVALID_FIELDS = {
    NMPUConfig: dict(
        columns=out_of(1, 4096), lanes=out_of(1, 4096), adc_bits=out_of(1, 24),
        input_mode=st.text(max_size=6).filter(lambda s: s not in ("dual", "signed")),
        scale_int=out_of(0, 24), scale_frac=out_of(0, 24), offset_int=out_of(1, 32),
        offset_frac=out_of(0, 32), out_bits=out_of(2, 32), residual=st.sampled_from([0, 1, "yes", None]),
        exp_bits=out_of(0, 6), shift_bits=out_of(1, 5), clamp_count_bits=out_of(1, 64),
        single_scale=st.sampled_from([0, 1, "yes", None]), drop_bits=out_of(0, 19),
        static_layer=st.sampled_from([0, 1, "yes", None]), static_shift=out_of(0, 31),
        static_pre_cut=out_of(0, 31), static_round=out_of(0, 2),
        name=st.sampled_from(["", "Upper", "has space", "-lead", 7])),
    ESSOPConfig: dict(
        rows=out_of(1, 1024), cols=out_of(1, 1024), mag_bits=out_of(1, 16),
        lfsr_width=st.one_of(st.integers(max_value=min(ESSOP_LFSR_POLYS) - 1),
                             st.integers(min_value=max(ESSOP_LFSR_POLYS) + 1), WRONG_TYPES),
        log2_bl_max=out_of(0, 10), rng=st.sampled_from(["", "Shared", "per-converter", None]),
        double_buffer=st.sampled_from([0, 1, "no", None]), lr_shift_bits=out_of(1, 6),
        rows_per_beat=st.one_of(out_of(1, 32), st.sampled_from([3, 5, 6, 7, 12, 24])),
        acc_max=out_of(1, 1024), name=st.sampled_from(["", "Upper", "has space", 7])),
    LDPUConfig: dict(
        columns=out_of(1, 4096), adc_bits=out_of(1, 15), residual=st.sampled_from([0, 1, "yes", None]),
        clamp_count_bits=out_of(1, 64), scale_blocks=out_of(1, 2),
        name=st.sampled_from(["", "Upper", "has space", 7])),
    FP16OuterConfig: dict(rows=out_of(1, 1024), cols=out_of(1, 1024),
                          name=st.sampled_from(["", "Upper", "has space", 7])),
}


@st.composite
def invalid_configs(draw, cls):
    field = draw(st.sampled_from(sorted(INVALID_FIELDS[cls])))
    return cls, field, draw(INVALID_FIELDS[cls][field])


@pytest.mark.parametrize("cls", list(INVALID_FIELDS), ids=lambda c: c.__name__)
def test_fuzz_invalid_configs(cls):
    """One field out of its range or of the wrong type, the others at their defaults: a
    ValueError or TypeError whose message names the field in backquotes."""
    @seed(run_seed())
    @fuzz_settings(INVALID)
    @given(case=invalid_configs(cls))
    def check(case):
        cls, field, value = case
        note(f"{cls.__name__}({field}={value!r})")
        with pytest.raises((ValueError, TypeError)) as info:
            cls(**{field: value})
        assert re.search(rf"`{field}`", str(info.value)), (field, value, str(info.value))
    check()


# -- periphery tops (hdl/periphery.py, issue 18) --------------------------------------------------

@st.composite
def periphery_configs(draw):
    from hdl.periphery import PeripheryConfig
    unit = draw(st.sampled_from(["nmpu", "ldpu", "essop"]))
    core = draw({"nmpu": nmpu_configs, "ldpu": ldpu_configs, "essop": essop_configs}[unit]())
    images = 1 if unit == "essop" else draw(st.integers(1, 5))
    return build(PeripheryConfig, dict(unit=unit, core=core, job_bits=draw(st.integers(1, 32)),
                                       images=images, bus=draw(st.sampled_from(["axil", "apb"]))))


@seed(run_seed())
@fuzz_settings(max(1, EXAMPLES // 2))
@given(cfg=periphery_configs())
def test_fuzz_periphery(cfg, tmp_path):
    """A random top: its compiled SystemRDL equals the register map description, and the
    Verilog (with the unit inside) lints clean."""
    from hdl.periphery import periphery_regmap
    from hdl.regmap import RegModel
    shown("periphery", cfg)
    lint_clean("periphery", cfg, tmp_path)
    rm = periphery_regmap(cfg)
    import json
    out = tmp_path / cfg.tag
    meta = json.loads((out / f"periphery_{cfg.tag}.json").read_text())
    model = RegModel.from_file(out / meta["regmap"]["rdl"])
    assert {n: (r.address, r.fields) for n, r in model.regs.items()} == {
        r.name: (r.offset, {f.name: (f.lsb, f.width) for f in r.fields}) for r in rm.regs}
    if rm.window is None:  # ESSOP: no parameter memory
        assert model.mem is None and cfg.unit == "essop"
    else:
        assert model.mem[1:3] == (rm.window.offset, rm.window.entries * rm.window.stride)
        assert rm.window.entries == cfg.images * cfg.core.columns
        assert (1 << model["IMAGE"].fields["base"][1]) >= cfg.images


@pytest.mark.parametrize("field,value", [("job_bits", 0), ("job_bits", 33), ("job_bits", 2.0),
                                         ("unit", "fp16outer"), ("core", "paper"),
                                         ("images", 0), ("images", 257), ("images", 2.0),
                                         ("images", True), ("bus", "ahb")])
def test_fuzz_invalid_periphery(field, value):
    from hdl.periphery import PeripheryConfig
    with pytest.raises((ValueError, TypeError)) as info:
        PeripheryConfig(**{field: value})
    assert re.search(rf"`{field}`", str(info.value)), (field, value, str(info.value))
