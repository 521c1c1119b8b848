"""`verif.fastpath`: the Verilator-compiled bench replays the golden stimulus of every unit with
random stalls on both sides and passes; it fails, naming the beat, the lane and the expected
and received values and leaving an FST of the failing window, on one flipped expected value
and on a planted RTL mutant (from verif/mutants.toml); Icarus runs the same stimulus through the
Verilog bench and leaves a VCD on a failure. The stimulus is the golden data of
`verif.vectors`, the cocotb benches' generators.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hdl.export import UNITS
from verif import fastpath as fp
from verif import vectors as vv

TINY = [(u, "tiny") for u in ("nmpu", "essop", "ldpu", "fp16outer")]
STALLS = re.compile(r"stalls: (\d+) input gaps, (\d+) clocks input held by i__ready, "
                    r"(\d+) clocks output held by o__ready")
COUNT = {"nmpu": 40, "essop": 12, "ldpu": 6, "fp16outer": 24}


@pytest.mark.sim
@pytest.mark.parametrize("unit, preset", TINY, ids=[u for u, _ in TINY])
def test_fastpath_verilator(unit, preset, seed):
    cfg = UNITS[unit][1][preset]
    s = fp.check(unit, cfg, "verilator", COUNT[unit], seed, ("none", "random", "bursty"),
                 name="test")
    log = open(s["log"]).read()
    assert log.count("PASS") == 3, log
    stalls = [tuple(map(int, m)) for m in STALLS.findall(log)]
    # no stalls: no gaps, o__ready always high (i__ready may still push back: ESSOP is busy)
    # with stalls: the output held in each mode, input gaps in at least one of them (a short
    # bursty run of 12 ESSOP products can draw no gap at all)
    assert stalls[0][::2] == (0, 0) and all(o > 0 for _, _, o in stalls[1:]), log
    assert sum(g for g, _, _ in stalls[1:]) > 0, log
    # every value of every expected beat, once per stall mode
    m = json.loads((Path(s["log"]).parent / "fast.json").read_text())
    per_item = cfg.rows if unit in ("essop", "fp16outer") else cfg.beats
    assert m["out_beats"] == COUNT[unit] * per_item
    assert s["values"] == 3 * m["values"] and m["values"] % m["out_beats"] == 0


# every other preset of every unit (the cocotb runs of these are regress-only): golden data with
# random stalls on both sides through the Verilog bench in Icarus in `make test` (an Icarus
# compile costs seconds where a Verilator build of a full-size preset costs minutes), bulk data
# with random and bursty stalls through the Verilator bench in `make regress`
PRESETS = [(u, p) for u in ("nmpu", "essop", "ldpu", "fp16outer") for p in UNITS[u][1] if p != "tiny"]
PRESET_COUNT = {"verilator": {"nmpu": 200, "essop": 24, "ldpu": 24, "fp16outer": 64},
                "icarus": {"nmpu": 24, "essop": 4, "ldpu": 4, "fp16outer": 8}}
PRESET_STALLS = {"verilator": ("random", "bursty"), "icarus": ("random",)}


def _preset_param(unit, preset):
    """An NMPU of more than 64 lanes (`precision256`: `precision` with four times the lanes, the
    same lane arithmetic; its elaboration alone takes minutes) only in `make regress`."""
    big = unit == "nmpu" and UNITS[unit][1][preset].lanes > 64
    return pytest.param(unit, preset, id=f"{unit}-{preset}",
                        marks=[pytest.mark.regress] if big else [])


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.regress)])
@pytest.mark.parametrize("unit, preset", [_preset_param(u, p) for u, p in PRESETS])
def test_fastpath_presets(unit, preset, sim, seed):
    cfg = UNITS[unit][1][preset]
    stalls = PRESET_STALLS[sim]
    s = fp.check(unit, cfg, sim, PRESET_COUNT[sim][unit], seed, stalls, name="presets")
    log = open(s["log"]).read()
    assert log.count("PASS") == len(stalls) and s["values"] > 0, log
    print(f"{unit} {preset} on {sim}: {s['values']} values in {s['wall_s']} s of simulation "
          f"({s['values_per_s']:.0f}/s)")


def _exhaustive_size(cfg):
    """(register settings, input combinations per column) of a dual-input NMPU's exhaustive
    stimulus, counted from the config: shift x pre-cut x 3 round modes x 2 ReLU switches (x 2
    residual switches), P x N (x residual)."""
    res = cfg.residual
    settings = (cfg.max_shift + 1) ** 2 * 3 * 2 * 2 * (2 if res else 1)
    combos = (cfg.adc_max + 1) ** 2 * ((cfg.out_range[1] - cfg.out_range[0] + 1) if res else 1)
    return settings, combos


@pytest.mark.sim
def test_fastpath_exhaustive_tiny(seed):
    """The NMPU `tiny` exhaustive check at Verilator speed: every layer register setting x every
    input combination in every column (the cocotb bench's `exhaustive` test, which runs all of
    them in `make regress` and a seed-rotated share in `make test`), one random parameter image
    per seed, random stalls."""
    cfg = UNITS["nmpu"][1]["tiny"]
    s = fp.check("nmpu", cfg, "verilator", 10**9, seed, ("random",), name="exhaustive",
                 kind="exhaustive")
    settings, combos = _exhaustive_size(cfg)
    assert s["values"] == settings * combos * cfg.columns, s
    print(f"tiny exhaustive on the fast path: {s['values']} column values, golden "
          f"{s['golden_s']} s, simulation {s['wall_s']} s")


def test_exhaustive_stimulus_covers_every_setting():
    """The exhaustive generator: every register setting once, each column sees every input
    combination under each, one parameter image; a share takes evenly spread settings; a unit
    without such stimulus is named."""
    cfg = UNITS["nmpu"][1]["tiny"]
    build_dir, meta = fp.build("nmpu", cfg, "icarus")
    from verif.payload import Codec
    layer = Codec(meta["ports"]["layer"])
    vec = vv.draw("nmpu", cfg, meta["ports"], 10**9, 3, "exhaustive")
    # the register value of every beat pair (the settings change per vector) and the inputs of
    # the first setting's vectors: decoding only those keeps the check at a second
    regs = layer.decode(vec.regs["layer"][::2])
    n_settings, per = _exhaustive_size(cfg)
    settings = np.unique(np.stack([regs[f] for f in layer.fields], -1), axis=0)
    assert len(settings) == n_settings
    ins = Codec(meta["ports"]["i__payload"]).decode(vec.inputs[:per * cfg.beats])
    first = np.stack([ins[k].reshape(per, cfg.columns) for k in ("p", "n", "res")], -1)
    for col in range(cfg.columns):
        assert len({tuple(v) for v in first[:, col]}) == per
    assert len(vec.writes) == cfg.columns
    part = vv.draw("nmpu", cfg, meta["ports"], 96, 3, "exhaustive")
    assert len(part.inputs) == 96 * per * cfg.beats
    with pytest.raises(ValueError, match="no `exhaustive` stimulus for essop: it has random"):
        vv.draw("essop", UNITS["essop"][1]["tiny"], {}, 1, 3, "exhaustive")


def test_bulk_plan_sizes():
    """`make regress`'s bulk check reaches the sizes of issue 16 and shards them."""
    plan = fp.bulk_plan()
    items = {u: sum(p[2] for p in plan if p[0] == u) for u in fp.BULK}
    cols = {u: UNITS[u][1][fp.BULK[u][0]].columns for u in ("nmpu", "ldpu")}
    assert items["nmpu"] * cols["nmpu"] >= 10**8 and items["ldpu"] * cols["ldpu"] >= 10**7
    assert items["essop"] >= 10**6 and items["fp16outer"] >= 10**6
    assert all(p[2] <= fp.BULK[p[0]][2] for p in plan)
    assert len({(p[0], p[3]) for p in plan}) == len(plan)     # one seed per shard
    assert {p[4] for p in plan} == set(fp.BULK_STALLS)
    small = fp.bulk_plan(["essop"], scale=1e-6)
    assert [p[2] for p in small] == [1]


def _flip(folder, beat, word=0, bit=0):
    """Flip one bit of the expected beat `beat` in out.bin."""
    out = np.fromfile(folder / "out.bin", dtype="<u4")
    n_out = int(re.search(r"n_out (\d+)", (folder / "fast.txt").read_text()).group(1))
    words = out.size // n_out
    out[beat * words + word] ^= np.uint32(1 << bit)
    out.tofile(folder / "out.bin")


@pytest.mark.sim
def test_fastpath_catches_flipped_value(seed):
    """One expected bit flipped (lane 0 of beat 7): FAIL with beat, clock, lane and values in
    hex, nonzero exit status; the driver's error names the log and an FST of the window."""
    unit, cfg = "nmpu", UNITS["nmpu"][1]["tiny"]
    s = fp.check(unit, cfg, "verilator", 10, seed, ("random",), name="flip")
    build_dir, meta = fp.build(unit, cfg)
    folder = build_dir / "run_flip"
    _flip(folder, 7)
    ok, out, _ = fp.replay(build_dir, folder, seed, "random", 8, wave=False)
    assert not ok and s["values"], out
    m = re.search(r"FAIL beat 7 \(clock (\d+)\): expected ([0-9a-f]+), got ([0-9a-f]+)", out)
    assert m, out
    assert int(m.group(2), 16) ^ int(m.group(3), 16) == 1, out
    lane0 = [n for n, o, w in fp._fields(meta["ports"]["o__payload"]) if o == 0][0]
    assert re.search(rf"  {re.escape(lane0)}: expected [0-9a-f]+, got [0-9a-f]+", out), out
    assert out.strip().splitlines()[-1] == "FAIL 1 of 20 beats differ, the first is beat 7", out
    with pytest.raises(AssertionError) as err:
        fp.check(unit, cfg, "verilator", 10, seed, ("random",), name="flip", reuse=True)
    fst = folder / "fail.fst"
    text = str(err.value)
    assert f"log: {folder / 'sim.log'}" in text and "FAIL beat 7 (clock" in text, text
    assert f"waveform: {fst} (clocks " in text and fst.stat().st_size > 100, text


# mutants of verif/mutants.toml the fast path must kill on FP16Outer `tiny`: the first that
# still applies to the tree (a stall-only fault: the x rows shift while o__ready is low)
MUTANTS = ("outer-shift-stalled", "outer-columns-swapped")


@pytest.mark.sim
def test_fastpath_catches_rtl_mutant(tmp_path, seed):
    """A catalogue mutant applied to a copy of the tree: its Verilog fails the fast path at a
    named beat; the unmutated Verilog passes the same stimulus."""
    import tomllib
    from types import SimpleNamespace

    from verif import mutate

    entries = {m["id"]: m for m in tomllib.loads(mutate.CATALOGUE.read_text())["mutant"]}
    usable = [entries[i] for i in MUTANTS if i in entries
              and (mutate.ROOT / entries[i]["file"]).read_text().count(entries[i]["find"]) == 1]
    assert usable, f"none of the mutants {MUTANTS} applies to the tree any more"
    m = SimpleNamespace(**usable[0])
    tree = mutate.make_tree(tmp_path / "tree", mutant=m)
    code = ("import sys; from hdl.export import write; from hdl.config import fp16_outer_preset; "
            "write('fp16outer', fp16_outer_preset('tiny'), sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "v")], cwd=tree,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "v" / "fp16outer_tiny.v").read_text()
    cfg = UNITS["fp16outer"][1]["tiny"]
    with pytest.raises(AssertionError, match=r"FAIL beat \d+ \(clock \d+\): expected"):
        fp.check("fp16outer", cfg, "verilator", 24, seed, ("random",), name="mutant",
                 variant="mutant", verilog=text, wave=False)
    fp.check("fp16outer", cfg, "verilator", 24, seed, ("random",), name="mutant")


@pytest.mark.sim
def test_fastpath_icarus_fails_with_vcd(seed):
    """The same golden stimulus under Icarus (the Verilog bench, seeded stalls): passes, and
    with one expected line flipped fails with the beat and a VCD of the window."""
    unit, cfg = "fp16outer", UNITS["fp16outer"][1]["tiny"]
    s = fp.check(unit, cfg, "icarus", 6, seed, ("random",), name="test")
    assert s["values"] == 6 * cfg.rows * cfg.cols
    folder = fp.BUILD / "icarus" / f"{unit}_{cfg.tag}" / "run_test"
    lines = (folder / "out.hex").read_text().splitlines()
    lines[5] = f"{int(lines[5], 16) ^ 4:0{len(lines[5])}x}"
    (folder / "out.hex").write_text("\n".join(lines) + "\n")
    with pytest.raises(AssertionError) as err:
        fp.check(unit, cfg, "icarus", 6, seed, ("random",), name="test", reuse=True)
    out = str(err.value)
    assert re.search(r"FAIL beat 4 \(clock \d+\): expected", out), out
    vcd = folder / "fail.vcd"
    assert f"waveform: {vcd}" in out and "$enddefinitions" in vcd.read_text(), out


def test_fastpath_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="`sim` must be one of"):
        fp.build("nmpu", UNITS["nmpu"][1]["tiny"], "xcelium")
    with pytest.raises(ValueError, match="`count` must be at least 1, not 0"):
        vv.draw("nmpu", UNITS["nmpu"][1]["tiny"], {}, 0, 1)


@pytest.mark.sim
@pytest.mark.parametrize("sim", [
    "icarus", pytest.param("verilator", marks=pytest.mark.regress)])  # a traced build: regress
def test_cocotb_failure_leaves_waveform(sim, seed):
    """A cocotb run that fails (one output beat arrives with a flipped bit, planted by
    TB_PLANT_MISMATCH) replays the failed test on a traced build: an FST beside the log, named
    in the error."""
    from verif.runner import BUILD, run_bench

    cfg = UNITS["nmpu"][1]["tiny"]
    with pytest.raises(AssertionError) as err:
        run_bench("nmpu", cfg, sim, seed, testcase=["random_vectors/stalls=1"],
                  extra_env={"TB_PLANT_MISMATCH": "3"}, name="planted")
    out = BUILD / "sim" / sim / "nmpu_tiny" / "run_planted"
    wave = out / "fail.fst"
    text = str(err.value)
    assert f"log: {out / 'sim.log'}" in text, text
    assert f"waveform of random_vectors/stalls=1: {wave}" in text, text
    assert wave.stat().st_size > 100
    assert "first mismatch at output beat 3" in (out / "sim.log").read_text()
