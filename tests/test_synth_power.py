"""Energy from switching activity (synth/power.py): the Liberty reader, the energy of a netlist
counted by hand, the cross-check against OpenSTA's report_power, and the gate-level run of a
tiny preset whose outputs must equal the golden model's."""

import dataclasses
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from synth import flow, power

# A library whose tables are flat, so that every energy below is countable by hand.
HAND_LIB = """
library(hand) {
  time_unit : "1ns";
  voltage_unit : "1V";
  leakage_power_unit : "1nW";
  capacitive_load_unit (1,pf);
  nom_voltage : 2.0;
  power_lut_template(e1) {
    variable_1 : input_transition_time;
    index_1 ("0.0, 1.0");
  }
  power_lut_template(e2) {
    variable_1 : total_output_net_capacitance;
    variable_2 : input_transition_time;
    index_1 ("0.0, 1.0");
    index_2 ("0.0, 1.0");
  }
  cell (INVX1) {
    area : 1;
    cell_leakage_power : 10;
    pin(A) { direction : input; capacitance : 0.01; }
    pin(Y) {
      direction : output;
      function : "(!A)";
      internal_power() {
        related_pin : "A";
        rise_power(e2) { index_1 ("0.0, 1.0"); index_2 ("0.0, 1.0");
                         values ("0.1, 0.1", "0.1, 0.1"); }
        fall_power(e2) { index_1 ("0.0, 1.0"); index_2 ("0.0, 1.0");
                         values ("0.2, 0.2", \\
                                 "0.2, 0.2"); }
      }
    }
  }
  cell (DFFPOSX1) {
    area : 4;
    cell_leakage_power : 20;
    ff (DS0000,P0002) { next_state : "D"; clocked_on : "CLK"; }
    pin(CLK) {
      direction : input; capacitance : 0.03; clock : true;
      internal_power() {
        rise_power(e1) { index_1 ("0.0, 1.0"); values ("0.05, 0.05"); }
        fall_power(e1) { index_1 ("0.0, 1.0"); values ("0.07, 0.07"); }
      }
    }
    pin(D) {
      direction : input; capacitance : 0.02;
      internal_power() {
        rise_power(e1) { index_1 ("0.0, 1.0"); values ("0.01, 0.01"); }
        fall_power(e1) { index_1 ("0.0, 1.0"); values ("0.03, 0.03"); }
      }
    }
    pin(Q) {
      direction : output; function : "DS0000";
      internal_power() {
        related_pin : "CLK";
        rise_power(e2) { index_1 ("0.0, 1.0"); index_2 ("0.0, 1.0");
                         values ("0.3, 0.3", "0.3, 0.3"); }
        fall_power(e2) { index_1 ("0.0, 1.0"); index_2 ("0.0, 1.0");
                         values ("0.4, 0.4", "0.4, 0.4"); }
      }
    }
  }
}
"""

HAND_NETLIST = """
module hand(clk, a, q);
  input clk;
  input a;
  output q;
  wire n1;
  INVX1 u1 (.A(a), .Y(n1));
  DFFPOSX1 \\blk.r1  (.CLK(clk), .D(n1), .Q(q));
endmodule
"""


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    (d / "hand.lib").write_text(HAND_LIB)
    (d / "hand.v").write_text(HAND_NETLIST)
    lib = power.load_power_lib(d / "hand.lib")
    net = power.parse_netlist(d / "hand.v")
    return lib, net


def _ids(net):
    return {name: ids[0] for name, _, _, ids, _ in net.wires}


def test_hand_netlist_energy_counted_by_hand(hand):
    lib, net = hand
    assert lib.voltage == 2.0 and lib.energy_pj == 1.0 and lib.leakage_w == 1e-9
    model = power.Model.build(lib, net, port_load_pf=0.01)
    ids = _ids(net)
    rises, falls = np.zeros(net.nets), np.zeros(net.nets)
    for name, r, f in (("a", 3, 2), ("n1", 2, 3), ("q", 2, 2), ("clk", 7, 7)):
        rises[ids[name]], falls[ids[name]] = r, f
    e = model.energy(rises, falls, clocks=10, period_ns=5.0)
    c = e["classes"]
    v2 = 4.0
    # the input port drives INVX1.A (10 fF): 5 transitions of 1/2 C V^2
    assert c["inputs"] == pytest.approx(0.5 * 0.01 * v2 * 5)
    # INVX1: 2 rises x 0.1 + 3 falls x 0.2 internal; n1 drives D (20 fF)
    assert c["logic"] == pytest.approx(2 * 0.1 + 3 * 0.2 + 0.5 * 0.02 * v2 * 5)
    # flip-flop: D pin 2 x 0.01 + 3 x 0.03, Q 2 x 0.3 + 2 x 0.4, q drives the 10 fF port load
    assert c["flip-flops"] == pytest.approx(2 * 0.01 + 3 * 0.03 + 2 * 0.3 + 2 * 0.4
                                            + 0.5 * 0.01 * v2 * 4)
    # ideal clock, 10 clocks: CLK pin charged and discharged (C V^2) + 0.05 + 0.07 internal;
    # the clock net's own counted transitions are ignored
    assert c["clock"] == pytest.approx(10 * (0.03 * v2 + 0.05 + 0.07))
    # 30 nW for 10 clocks of 5 ns = 1.5e-15 J
    assert c["leakage"] == pytest.approx(30e-9 * 50e-9 * 1e12)
    assert e["total"] == pytest.approx(sum(c.values()))
    assert e["ff_by_block"] == {"q": pytest.approx(c["flip-flops"])}
    assert e["split"]["internal"] + e["split"]["switching"] == pytest.approx(
        e["total"] - c["leakage"])


def test_no_toggles_cost_clock_and_leakage_only(hand):
    lib, net = hand
    model = power.Model.build(lib, net)
    zero = np.zeros(net.nets)
    e = model.energy(zero, zero, clocks=4, period_ns=5.0)["classes"]
    assert e["flip-flops"] == e["logic"] == e["inputs"] == 0.0
    assert e["clock"] == pytest.approx(4 * (0.03 * 4.0 + 0.12))
    assert e["leakage"] > 0
    assert model.idle_per_clock(5.0) == pytest.approx((e["clock"] + e["leakage"]) / 4)


def test_table_interpolates_and_extrapolates_linearly():
    t = power.Table(("load", "slew"), (np.array([0.0, 1.0]), np.array([0.0, 2.0])),
                    np.array([[1.0, 3.0], [5.0, 7.0]]))
    assert t.at(load=0.5, slew=1.0) == pytest.approx(4.0)
    assert t.at(load=2.0, slew=0.0) == pytest.approx(9.0)      # beyond the index: linear
    assert t.at(load=0.0, slew=-2.0) == pytest.approx(-1.0)


# A VCD as the zero-delay run writes it (1 ps ticks, clock period 10 ns: rising edges at 5, 15,
# 25 ... ns): the bench's handshakes, the netlist's nets (n1, the 2-bit port `a`) and a net of an
# inlined cell model (pwi_: not in the netlist, skipped).
HAND_VCD = """$timescale 1ps $end
$scope module tb_hand $end
$var reg 1 ! clk $end
$var reg 1 " i__valid $end
$var wire 1 # i__ready $end
$var wire 1 $ o__valid $end
$var reg 1 % o__ready $end
$upscope $end
$scope module tb_hand $end
$scope module dut $end
$var wire 1 ! clk $end
$var wire 2 & a [1:0] $end
$var wire 1 ' n1 $end
$var wire 1 ( q $end
$var wire 1 ) pwi_u1_x $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
x"
x#
x$
x%
bxx &
x'
x(
$end
#5000
1!
0"
1#
0$
1%
b00 &
0'
0(
#10000
0!
1"
#15000
1!
b01 &
1'
#20000
0!
#25000
1!
b10 &
0'
1(
1$
0"
#30000
0!
#35000
1!
b11 &
1'
0(
0$
#40000
0!
#45000
1!
b00 &
0'
"""
# Rising edge k is at 10 k + 5 ns; a handshake at edge k is seen in the values before its changes.
# Input handshakes at edges 1 and 2, the output handshake at edge 3: the window [1, 3) holds the
# changes at 15 and 25 ns, not those at 5 ns (before) or at 35 and 45 ns (after).


def test_vcd_activity_counts_transitions_of_the_window(tmp_path):
    hand_net = power.parse_netlist(_write(tmp_path, "h2.v", HAND_NETLIST.replace(
        "input a;", "input [1:0] a;").replace(".A(a)", ".A(a[0])")))
    path = _write(tmp_path, "a.vcd", HAND_VCD)
    act = power.read_vcd(path, hand_net, "tb_hand")
    assert (act.start, act.stop, act.clocks) == (1, 3, 2)
    assert act.flags[:5].tolist() == [[False, False], [True, False], [True, False],
                                      [False, True], [False, False]]
    ids = {name: ids for name, _, _, ids, _ in hand_net.wires}
    # 15 ns: a 00 -> 01, n1 0 -> 1; 25 ns: a 01 -> 10, n1 1 -> 0, q 0 -> 1
    assert act.rises[ids["a"]].tolist() == [1, 1] and act.falls[ids["a"]].tolist() == [1, 0]
    assert (act.rises[ids["n1"][0]], act.falls[ids["n1"][0]]) == (1, 1)
    assert (act.rises[ids["q"][0]], act.falls[ids["q"][0]]) == (1, 0)
    # o__valid held high over 35 ns: the last output handshake at edge 4, the window [1, 4)
    # also holds 35 ns: a 10 -> 11, n1 0 -> 1, q 1 -> 0
    late = HAND_VCD.replace("#35000\n1!\nb11 &\n1'\n0(\n0$", "#35000\n1!\nb11 &\n1'\n0(")
    act = power.read_vcd(_write(tmp_path, "b.vcd", late), hand_net, "tb_hand")
    assert (act.start, act.stop) == (1, 4)
    assert act.rises[ids["a"]].tolist() == [2, 1] and act.falls[ids["a"]].tolist() == [1, 0]
    assert (act.rises[ids["n1"][0]], act.falls[ids["n1"][0]]) == (2, 1)
    assert (act.rises[ids["q"][0]], act.falls[ids["q"][0]]) == (1, 1)
    with pytest.raises(power.PowerError, match="wires not dumped"):
        power.read_vcd(_write(tmp_path, "c.vcd", HAND_VCD.replace("$var wire 1 ( q $end\n", "")),
                       hand_net, "tb_hand")
    with pytest.raises(power.PowerError, match="no input or no output handshake"):
        power.read_vcd(_write(tmp_path, "d.vcd", HAND_VCD.replace("1$", "0$")), hand_net,
                       "tb_hand")


def test_port_declared_twice_keeps_one_net_per_bit(tmp_path):
    """Yosys declares every port twice (`input [1:0] a;` and `wire [1:0] a;`): each bit is
    one net, read by the cells and counted as an input (the bits were once merged into one)."""
    text = HAND_NETLIST.replace("input a;", "input [1:0] a;\n  wire [1:0] a;").replace(
        ".A(a)", ".A(a[1])")
    net = power.parse_netlist(_write(tmp_path, "p.v", text))
    a = [w for w in net.wires if w[0] == "a"]
    assert len(a) == 1 and len(set(a[0][3])) == 2
    assert set(a[0][3]) <= net.inputs
    assert net.cells[0][2]["A"] == a[0][3][1]
    with pytest.raises(power.PowerError, match="declared as"):
        power.parse_netlist(_write(tmp_path, "q.v", text.replace("wire [1:0] a;",
                                                                 "wire [2:0] a;")))


def test_inlined_cell_models(osu, tmp_path):
    """The cell models expanded into primitives: a flip-flop is one udp_dff with Q as its
    output (the unused inverted output dropped, the output buffer merged), a NAND one nand
    (and + not merged), an AOI keeps its internal net under the instance's prefix."""
    models = (flow.DEFAULT_OUT / "tech" / power.MODELS_FILE).read_text()
    cells, udps = power.cell_primitives(models)
    assert cells["DFFPOSX1"][1] == [("udp_dff", ["Q", "D", "CLK", "1'B0", "1'B0",
                                                 "pwi_notifier"])]
    assert cells["NAND2X1"][1] == [("nand", ["Y", "A", "B"])]
    assert [p for p, _ in cells["AOI21X1"][1]] == ["and", "nor"]
    assert any("primitive udp_dff" in u for u in udps)
    text = power.inline_cells("module m(a, b, c, y);\n  input a;\n  input b;\n  input c;\n"
                              "  output y;\n  AOI21X1 u1 (.A(a), .B(b), .C(c), .Y(y));\n"
                              "endmodule\n", models)
    assert "  and g1 (pwi_u1_I0_out, a, b);" in text and "  nor g2 (y, pwi_u1_I0_out, c);" in text
    assert "  wire pwi_u1_I0_out;" in text
    with pytest.raises(power.PowerError, match="NAND9"):
        power.inline_cells("module m(a);\n  input a;\n  NAND9 u (.A(a));\nendmodule\n", models)


def test_liberty_and_netlist_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.lib"
    bad.write_text(HAND_LIB.replace("capacitive_load_unit (1,pf);", ""))
    with pytest.raises(power.PowerError, match="capacitive_load_unit"):
        power.load_power_lib(bad)
    v = tmp_path / "bad.v"
    v.write_text(HAND_NETLIST.replace("wire n1;", ""))
    with pytest.raises(power.PowerError, match="undeclared net 'n1'"):
        power.parse_netlist(v)
    lib = power.load_power_lib(_write(tmp_path, "h.lib", HAND_LIB))
    v.write_text(HAND_NETLIST.replace("INVX1 u1", "NAND9 u1"))
    with pytest.raises(power.PowerError, match="NAND9"):
        power.Model.build(lib, power.parse_netlist(v))


def _write(d, name, text):
    (d / name).write_text(text)
    return d / name


def test_osu_library_units_and_tables(osu):
    lib = osu
    assert lib.voltage == pytest.approx(1.8)
    assert lib.energy_pj == 1.0 and lib.cap_pf == 1.0 and lib.leakage_w == 1e-9
    dff = lib.cells["DFFPOSX1"]
    assert dff.sequential and dff.pins["CLK"].clock
    assert dff.pins["CLK"].cap == pytest.approx(0.0279235)
    rel, rise, fall = dff.pins["Q"].power[0]
    assert rel == "CLK" and rise.variables == ("load", "slew")
    assert rise.at(load=0.005, slew=0.06) == pytest.approx(0.040752)      # a table point


@pytest.fixture(scope="module")
def osu():
    return power.library(flow.DEFAULT_OUT)


# Cells driven straight from input ports: OpenSTA's slews there are 0 and its activities are
# exact (no probabilistic propagation), so both calculations see the same transitions.
STA_NETLIST = """
module xcheck(clk, a, b, c, y1, y2, y3);
  input clk; input a; input b; input c;
  output y1; output y2; output y3;
  INVX1 u1 (.A(a), .Y(y1));
  BUFX2 u2 (.A(b), .Y(y2));
  INVX4 u3 (.A(c), .Y(y3));
endmodule
"""
STA_SCRIPT = """
read_liberty {lib}
read_verilog xcheck.v
link_design xcheck
create_clock -name clk -period 10 [get_ports clk]
set_load 0.01 [all_outputs]
set_power_activity -input -activity 5e7 -duty 0.5
report_power -instances [get_cells *] -digits 10
"""


def test_liberty_energy_matches_opensta(osu, tmp_path):
    """OpenSTA 2.0.17 (Debian) reads `set_power_activity -activity` as transitions per second
    and charges rise *and* fall internal energy on every transition: its internal power is
    twice ours (rise energy per rise, fall energy per fall), its switching power equal."""
    sta = flow.find_sta()
    (tmp_path / "xcheck.v").write_text(STA_NETLIST)
    (tmp_path / "p.tcl").write_text(STA_SCRIPT.format(lib=osu.path))
    out = subprocess.run([sta, "-no_init", "-no_splash", "-exit", "p.tcl"], cwd=tmp_path,
                         capture_output=True, text=True).stdout
    sta_rows = {m.group(5): (float(m.group(1)), float(m.group(2)))
                for m in re.finditer(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(u\d)\s*$", out, re.M)}
    assert set(sta_rows) == {"u1", "u2", "u3"}, out
    net = power.parse_netlist(tmp_path / "xcheck.v")
    # undriven ports: zero slew in OpenSTA
    model = power.Model.build(osu, net, port_load_pf=0.01, input_slew_ns=0.0)
    clocks = 1e8                                # one second of a 10 ns clock
    ids = _ids(net)
    for inst, (inp, outp) in {"u1": ("a", "y1"), "u2": ("b", "y2"), "u3": ("c", "y3")}.items():
        r, f = np.zeros(net.nets), np.zeros(net.nets)
        # activity 5e7 / s = 0.5 transitions per clock, as many rises as falls
        r[ids[inp]] = f[ids[inp]] = r[ids[outp]] = f[ids[outp]] = 0.25 * clocks
        e = model.energy(r, f, clocks, 10.0)
        internal = e["split"]["internal"] - e["classes"]["clock"]
        switching = e["classes"]["logic"] - internal
        sta_int, sta_sw = sta_rows[inst]
        assert sta_int * 1e12 == pytest.approx(2 * internal, rel=1e-4), inst
        assert sta_sw * 1e12 == pytest.approx(switching, rel=1e-4), inst


def test_gate_level_tiny_nmpu_equals_golden(osu, tmp_path):
    """Synthesis, gate-level run against the golden vectors, energy: the tiny NMPU."""
    from hdl.export import UNITS
    tools = flow.Tools.setup(flow.DEFAULT_OUT)
    cfg = UNITS["nmpu"][1]["tiny"]
    synth_dir = tmp_path / "synth"
    flow.run("nmpu", cfg, tools, out_dir=synth_dir)
    (synth_dir / "tech").mkdir()
    models = power.cell_models(flow.DEFAULT_OUT / "tech")
    shutil.copyfile(models, synth_dir / "tech" / power.MODELS_FILE)
    row = power.measure("nmpu", cfg, osu, synth_dir, tmp_path / "power", count=4)
    assert row["gate_level"]["result"] == f"PASS {row['gate_level']['beats_checked']} beats"
    assert row["gate_level"]["beats_checked"] == 4 * cfg.beats
    c = row["classes_pj"]
    assert all(v > 0 for v in c.values()), c
    assert row["pj_per_item"] > 0 and row["items_per_uj"] == pytest.approx(1e6 / row["pj_per_item"])
    assert row["window_clocks"] >= 4 * cfg.beats
    # the clock alone costs the idle energy; a busy clock costs more
    assert row["pj_per_clock"] > row["idle_pj_per_clock"] > 0
    # the run with cell delays: every transition counted, at least the sampled ones
    g = row["glitch"]
    assert g["result"] == row["gate_level"]["result"]
    assert g["transitions_all"] >= g["transitions_functional"] > 0
    assert 0.0 <= g["glitch_share_data"] < 1.0
    saved = json.loads((tmp_path / "power" / f"nmpu_{cfg.tag}" / "power.json").read_text())
    assert saved["pj_per_item"] == row["pj_per_item"]
    # `make power`'s path: the run on an engine worker gives the same energy; a run without a
    # netlist comes back as a row with its error, not as an exception that ends the others
    from engine.executor import Engine
    other = dataclasses.replace(cfg, name="no_netlist")
    with Engine(workers=1, progress=False) as eng:
        rows = list(power.run_all([("nmpu", other), ("nmpu", cfg)], osu, synth_dir,
                                  tmp_path / "engine", count=4, engine=eng))
    by = {r["preset"]: r for r in rows}
    assert set(by) == {cfg.tag, other.tag}
    assert by[cfg.tag]["pj_per_item"] == row["pj_per_item"] and by[cfg.tag]["cpu_s"] > 0
    assert "no mapped netlist" in by[other.tag]["error"]


def test_baseline_checks_energy_with_its_own_tolerance():
    from synth import baseline
    ref = {"tolerance": dict(baseline.TOLERANCE),
           "rows": {"nmpu/paper": {"area_um2": 1000.0, "fmax_mhz": 200.0, "pj_per_item": 50.0},
                    "ldpu/paper": {"area_um2": 900.0, "fmax_mhz": 100.0}}}
    row = {"unit": "nmpu", "preset": "paper", "area_um2": 1000.0, "fmax_mhz": 200.0}
    assert baseline.compare([dict(row, pj_per_item=51.0)], ref) == []
    moved = baseline.compare([dict(row, pj_per_item=56.0)], ref)
    assert len(moved) == 1 and "pj_per_item" in moved[0] and "nmpu/paper" in moved[0]
    missing = baseline.compare([row], ref)
    assert missing == ["nmpu/paper: no `pj_per_item` in the report (run `make power`)"]
    # a baseline row without energy does not check it (`check` prints that it did not)
    ldpu = {"unit": "ldpu", "preset": "paper", "area_um2": 900.0, "fmax_mhz": 100.0}
    assert baseline.compare([ldpu], ref) == []


@pytest.mark.regress
def test_real_layer_window_same_counts_for_nmpu_and_ldpu():
    """The NMPU and LDPU windows of the paper presets: the last row tile of the MNIST MLP's
    fc1 through golden.compiler (its outputs checked against post_process inside), the same
    ADC counts for both units, the parameter image written first. Regress only: it needs the
    trained MNIST MLP (trained on first use, minutes)."""
    from hdl.export import UNITS, port_map
    from synth import power_workload as pw
    digests = {}
    for unit in ("nmpu", "ldpu"):
        _, presets, component = UNITS[unit]
        cfg = presets["paper"]
        vec, what = pw.layer_window(unit, cfg, port_map(component(cfg)), 2)
        assert len(vec.inputs) == len(vec.outputs) == 2 * cfg.beats
        assert len(vec.writes) == cfg.columns
        assert what.startswith(f"{pw.REAL_NETWORK} {pw.REAL_LAYER}")
        digests[unit] = re.search(r"crc32 ([0-9a-f]{8})", what).group(1)
    assert digests["nmpu"] == digests["ldpu"]
