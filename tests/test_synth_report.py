"""The PPA report (synth/report.py), the area breakdown grouping (synth/breakdown.py) and the
scaling study's fit (studies/scaling.py), on small made-up inputs with known answers."""

import json

import pytest

from studies import scaling
from synth import breakdown, report, storage


def _synth_row(unit, preset, area, fmax, **config):
    return {"unit": unit, "preset": preset, "area_um2": area, "nand2_eq": area / 24, "cells": 10,
            "ff_cells": 2, "ff_share": 0.25, "fmax_mhz": fmax, "critical_start": "a",
            "critical_end": "b", "tools": {"yosys": "Yosys 0.70"}, "config": config}


def _throughput(build, sim, unit, tag, doc):
    d = build / "sim" / sim / f"{unit}_{tag}" / "run_scenarios"
    d.mkdir(parents=True)
    (d / "throughput.json").write_text(json.dumps(doc))


def _essop_doc(sim, per_bl):
    return {"unit": "essop", "sim": sim,
            "per_bl": [{"bl": bl, "cycles_per_product": c, "latency": 3 + bl} for bl, c in per_bl]}


@pytest.fixture(autouse=True)
def arrays(monkeypatch):
    """The storage columns' arrays at a known area (8 µm² a flip-flop bit, 5 a latch bit) instead
    of a Yosys run per array, so no tools are set up in the test's build folder (a Liberty
    download each): tests/test_synth_storage.py synthesises real ones."""
    def measure(style, depth, width, tools, out_dir):
        per_bit = {"ff": 8.0, "latch": 5.0}[style]
        return {"style": style, "depth": depth, "width": width,
                "area_um2": per_bit * depth * width, "cells": {},
                "latch_cells": depth * width if style == "latch" else 0,
                "ff_cells": depth * width if style == "ff" else 0}
    monkeypatch.setattr(storage, "measure_array", measure)
    monkeypatch.setattr(storage.flow.Tools, "setup", classmethod(lambda cls, *a, **k: "tools"))


@pytest.fixture
def build(tmp_path):
    b = tmp_path / "build"
    (b / "report").mkdir(parents=True)
    rows = [_synth_row("nmpu", "paper", 2e6, 200.0, columns=256),
            _synth_row("ldpu", "paper", 4e6, 250.0, columns=256),
            _synth_row("essop", "paper", 3e6, 240.0, rows=32, cols=32),
            _synth_row("fp16outer", "paper", 1e6, 250.0, rows=32, cols=32),
            {"unit": "nmpu", "preset": "exp", "error": "Yosys failed"}]
    (b / "report" / "synth.json").write_text(json.dumps(rows))
    for sim in ("Icarus Verilog", "Verilator"):
        s = sim.split()[0].lower()
        _throughput(b, s, "nmpu", "paper", {"sim": sim, "cycles_per_vector": 4.0, "latency": 4})
        _throughput(b, s, "ldpu", "paper", {"sim": sim, "cycles_per_vector": 256.0, "latency": 33})
        _throughput(b, s, "essop", "paper", _essop_doc(sim, [(8, 40.0), (32, 64.0)]))
        _throughput(b, s, "fp16outer", "paper", {"sim": sim, "cycles_per_vector": 32.0,
                                                 "latency": 4})
    return b


def test_rows_ratios_and_outputs(build):
    (build / "report" / "training.json").write_text(json.dumps({"smallest_bl_within_0p5": 32, "quick": False}))
    doc = report.write(build, run_breakdown=False)
    rows = {(r["unit"], r["preset"]): r for r in doc["rows"]}
    nmpu = rows["nmpu", "paper"]
    for field in ("unit", "preset", "area_um2", "nand2_eq", "cells", "ff_share", "fmax_mhz",
                  "cycles_per_item", "items_per_s", "items_per_s_per_mm2", "tools", "config"):
        assert field in nmpu
    assert nmpu["items_per_s"] == pytest.approx(200e6 / 4)
    assert nmpu["items_per_s_per_mm2"] == pytest.approx(200e6 / 4 / 2.0)
    assert nmpu["values_per_s"] == pytest.approx(200e6 / 4 * 256)
    assert "error" in rows["nmpu", "exp"]
    (e,) = doc["ratios"]["nmpu_vs_ldpu"]
    assert e["speedup"] == pytest.approx((200 / 4) / (250 / 256))
    assert e["area_ratio"] == pytest.approx(2.0)
    assert e["area_efficiency_ratio"] == pytest.approx(e["speedup"] * 2.0)
    es = {x["bl"]: x for x in doc["ratios"]["essop_vs_fp16"]}
    assert es[32]["reference"] and not es[8]["reference"]
    # ESSOP at BL 32: 240 MHz / 64 per 3 mm²; FP16: 250 MHz / 32 per 1 mm²
    assert es[32]["area_efficiency_ratio"] == pytest.approx((240 / 64 / 3) / (250 / 32 / 1))
    assert rows["essop", "paper"]["cycles_per_item"] == 64.0
    md = (build / "report" / "ppa.md").read_text()
    assert "**← training BL**" in md and "synthesis failed" in md
    assert (build / "report" / "ppa.png").stat().st_size > 1000
    saved = json.loads((build / "report" / "ppa.json").read_text())
    assert saved["reference_bl"] == 32
    # the storage columns: the flip-flop arrays swapped for latch arrays at the stand-in areas
    st = storage.storage_of("nmpu", storage._config("nmpu", nmpu["config"]))
    assert nmpu["storage"]["area_um2"]["latch"] == pytest.approx(
        2e6 - st.arrays * 3.0 * st.depth * st.width)


def test_missing_throughput_is_not_invented(build, tmp_path):
    for f in (build / "sim").glob("*/ldpu_paper/run_scenarios/throughput.json"):
        f.unlink()
    doc = report.write(build, run_breakdown=False)
    ldpu = [r for r in doc["rows"] if r["unit"] == "ldpu"][0]
    assert ldpu["cycles_per_item"] is None and ldpu["items_per_s"] is None
    (e,) = doc["ratios"]["nmpu_vs_ldpu"]
    assert "speedup" not in e and e["area_ratio"] == pytest.approx(2.0)
    assert doc["reference_bl"] is None and "make train" in doc["reference_bl_source"]


def test_simulators_that_disagree_are_flagged(build):
    f = build / "sim" / "verilator" / "nmpu_paper" / "run_scenarios" / "throughput.json"
    f.write_text(json.dumps({"sim": "Verilator", "cycles_per_vector": 5.0, "latency": 4}))
    tp = report.throughput(build, "nmpu", "paper")
    assert tp["disagree"] and "5.0" in tp["disagree"]
    f = build / "sim" / "verilator" / "essop_paper" / "run_scenarios" / "throughput.json"
    f.write_text(json.dumps(_essop_doc("Verilator", [(8, 41.0), (32, 64.0)])))
    assert report.throughput(build, "essop", "paper")["disagree"]


def test_no_synthesis_report_is_named(tmp_path):
    with pytest.raises(SystemExit, match="make synth"):
        report.write(tmp_path, run_breakdown=False)


def test_breakdown_groups_numbered_blocks():
    class Lib:
        areas = {"NAND2X1": 24.0, "DFFPOSX1": 96.0}
        sequential = frozenset({"DFFPOSX1"})
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"NAND2X1": 2, "DFFPOSX1": 1, "\\top.lane0": 1,
                                        "\\top.lane1": 1, "\\top.to_int8": 1}},
        "\\top.lane0": {"num_cells_by_type": {"NAND2X1": 1, "\\top.lane0.mul": 1}},
        "\\top.lane1": {"num_cells_by_type": {"NAND2X1": 1, "\\top.lane1.mul": 1}},
        "\\top.lane0.mul": {"num_cells_by_type": {"DFFPOSX1": 1}},
        "\\top.lane1.mul": {"num_cells_by_type": {"DFFPOSX1": 1}},
        "\\top.to_int8": {"num_cells_by_type": {"NAND2X1": 3}}}}
    g = breakdown.group_blocks(breakdown.module_areas(stat, Lib), "top")
    assert g["total_um2"] == 2 * 24 + 96 + 2 * (24 + 96) + 3 * 24
    assert g["top_own_um2"] == 2 * 24 + 96
    assert set(g["blocks"]) == {"lane", "to_int8"}
    lane = g["blocks"]["lane"]
    assert lane["instances"] == 2 and lane["area_um2"] == 2 * 120
    assert lane["parts"] == {"(own)": 48.0, "mul": 192.0} and lane["ff_area_um2"] == 192
    stat["modules"]["\\top.to_int8"]["num_cells_by_type"]["$_AND_"] = 1
    with pytest.raises(breakdown.flow.UnmappedCellError, match="to_int8"):
        breakdown.module_areas(stat, Lib)


def test_scaling_fit_and_points():
    k, c = scaling.fit_slope([1, 4, 16, 64], [3.0 * w ** 0.9 for w in (1, 4, 16, 64)])
    assert k == pytest.approx(0.9) and c == pytest.approx(3.0)
    with pytest.raises(ValueError, match="two points"):
        scaling.fit_slope([4, 4], [1.0, 2.0])
    pts = scaling.points()
    nmpu = [p for p in pts if p[0] == "nmpu"]
    assert [p[3] for p in nmpu] == [1, 4, 16, 64, 256]
    assert {p[1].name for p in nmpu} >= {"serial", "paper"}      # presets reused where equal
    sizes = {p[1].rows for p in pts if p[0] == "essop"}
    assert sizes == {8, 16, 32, 64}
    assert {p[4] for p in pts if p[0] == "essop" and p[1].rows == 32} == {8, 16, 32, 64, 128}
    assert all(p[1].rows <= 16 for p in scaling.points(quick=True) if p[0] == "essop")


def test_essop_sized_for_bl_uses_measured_clocks(build):
    cfg = {"rows": 32, "cols": 32}
    (build / "report" / "scaling.json").write_text(json.dumps({"rows": [
        {"unit": "essop", "preset": "a32-bl8", "bl_max": 8, "area_um2": 1.5e6, "fmax_mhz": 240.0,
         "config": dict(cfg, log2_bl_max=3)},
        {"unit": "essop", "preset": "a16-bl8", "bl_max": 8, "area_um2": 0.5e6, "fmax_mhz": 260.0,
         "config": {"rows": 16, "cols": 16}},                       # other geometry: left out
        {"unit": "essop", "preset": "a32-bl64", "bl_max": 64, "area_um2": 2e6, "fmax_mhz": 240.0,
         "config": cfg}]}))                                         # BL never measured: left out
    doc = report.write(build, run_breakdown=False)
    (e,) = doc["ratios"]["essop_sized_vs_fp16"]
    assert e["bl"] == 8 and e["cycles_per_item"] == 40.0
    assert e["area_efficiency_ratio"] == pytest.approx((240 / 40 / 1.5) / (250 / 32 / 1))
    assert "counters sized" in (build / "report" / "ppa.md").read_text()


def test_scaling_linear_fit():
    a, b = scaling.fit_linear([1, 4, 16, 64], [1000.0 + 50.0 * w for w in (1, 4, 16, 64)])
    assert a == pytest.approx(1000.0) and b == pytest.approx(50.0)
    with pytest.raises(ValueError, match="two points"):
        scaling.fit_linear([3], [1.0])
