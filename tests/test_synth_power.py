"""Energy from switching activity (synth/power.py): the Liberty reader, the energy of a netlist
counted by hand, the cross-check against OpenSTA's report_power, and the gate-level run of a
tiny preset whose outputs must equal the golden model's."""

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


def test_samples_toggles_and_window(tmp_path):
    # 3 nets, bits written as the monitor writes them; x is no transition
    rows = ["00 010", "10 110", "00 0x0", "01 011", "01 111", "00 000"]
    path = tmp_path / "s.txt"
    path.write_text("\n".join(rows) + "\n")
    flags, values = power.read_samples(path, 3)
    first, last = power.window(flags)
    assert (first, last) == (1, 4)
    order = np.array([2, 0, 1])      # character k is net order[k]
    r, f = power.toggles(values, order, 3, first, last)
    # net 2: 1,0,0,1 -> one fall, one rise; net 0: 1,x,1,1 -> none; net 1: 0,0,1,1 -> a rise
    assert list(r) == [0, 1, 1] and list(f) == [0, 0, 1]
    path.write_text("00 01\n")
    with pytest.raises(power.PowerError, match="not 6 characters long"):
        power.read_samples(path, 3)
    with pytest.raises(power.PowerError, match="handshake"):
        power.window(np.zeros((3, 2), dtype=bool))


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
