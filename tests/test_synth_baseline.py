"""The committed PPA baseline (synth/baseline.json) and its check.

The tiny preset of every unit is synthesised here and must sit within the baseline's tolerances;
`make synth` checks every preset the same way (`python -m synth.baseline check --all`).
"""

import copy
import json

import pytest

from hdl.export import UNITS
from synth import baseline, flow

from .conftest import regress_only
from .test_synth_flow import FLOW_UNITS


@pytest.fixture(scope="module")
def tools():
    return flow.Tools.setup(flow.DEFAULT_OUT)


@pytest.fixture(scope="module")
def ref():
    return baseline.load()


def test_baseline_covers_every_preset(ref):
    wanted = {f"{u}/{p}" for u, (_, presets, _) in UNITS.items() for p in presets}
    assert set(ref["rows"]) == wanted
    assert ref["reason"] and ref["tools"]["yosys"].startswith("Yosys")
    assert ref["flow"]["period_ns"] == flow.DEFAULT_PERIOD_NS


# the LDPU's tiny is 21 k cells (a minute of Yosys and ABC): make regress; make synth checks
# every preset against the baseline anyway. The NMPU's and ESSOP's tiny flows are checked against
# the baseline where they run already (tests/test_synth_flow.py::test_tiny_preset): here in
# make regress only, not synthesised twice in make test.
@pytest.mark.parametrize("unit", [regress_only(u, u == "ldpu" or u in FLOW_UNITS) for u in UNITS])
def test_tiny_preset_matches_baseline(unit, tools, ref, tmp_path):
    row = flow.run(unit, UNITS[unit][1]["tiny"], tools, out_dir=tmp_path)
    # area and timing (the tiny presets' energy is in the baseline too, but its gate-level run
    # belongs to `make synth`; without it the check names the missing energy)
    assert baseline.compare([row], ref, energy=False) == []
    assert any(baseline.ENERGY[0] in p for p in baseline.compare([row], ref))
    # a design change of a few per cent is outside the tolerance
    moved = dict(row, area_um2=row["area_um2"] * 1.03)
    assert baseline.compare([moved], ref, energy=False)


def _ref_and_row():
    ref = {"tolerance": dict(baseline.TOLERANCE),
           "rows": {"nmpu/paper": {"area_um2": 1000.0, "fmax_mhz": 200.0},
                    "essop/paper": {"area_um2": 500.0, "fmax_mhz": 250.0,
                                    "tolerance": {"fmax_rel": 0.10}}}}
    row = {"unit": "nmpu", "preset": "paper", "area_um2": 1000.0, "fmax_mhz": 200.0}
    return ref, row


@pytest.mark.parametrize("field,factor,flagged", [
    ("area_um2", 1.009, False), ("area_um2", 1.011, True), ("area_um2", 0.98, True),
    ("fmax_mhz", 1.029, False), ("fmax_mhz", 0.96, True), ("fmax_mhz", 1.05, True)])
def test_compare_flags_moves_in_both_directions(field, factor, flagged):
    ref, row = _ref_and_row()
    problems = baseline.compare([dict(row, **{field: row[field] * factor})], ref)
    assert bool(problems) == flagged
    if flagged:
        assert "nmpu/paper" in problems[0] and field in problems[0]


def test_per_row_tolerance_and_missing_rows():
    ref, _ = _ref_and_row()
    essop = {"unit": "essop", "preset": "paper", "area_um2": 500.0, "fmax_mhz": 230.0}
    assert baseline.compare([essop], ref) == []          # its own 10 % f_max tolerance
    assert baseline.compare([essop], ref, require_all=True) == [
        "nmpu/paper: in the baseline but not in the report"]
    failed = {"unit": "essop", "preset": "paper", "error": "Yosys failed\nlog"}
    assert baseline.compare([failed], ref) == ["essop/paper: synthesis failed: Yosys failed"]
    other = {"unit": "nmpu", "preset": "rand-1234", "area_um2": 1.0, "fmax_mhz": 1.0}
    assert baseline.compare([other], ref) == []          # configs outside the baseline


def test_update_needs_every_preset_and_a_reason(ref):
    rows = [{"unit": k.split("/")[0], "preset": k.split("/")[1], **v,
             "tools": {"yosys": "Yosys 0.70", "sta": "OpenSTA 2.0.17"}, "flow": {}}
            for k, v in ref["rows"].items()]
    with pytest.raises(ValueError, match="reason"):
        baseline.make_baseline(rows, " ")
    with pytest.raises(ValueError, match="nmpu/tiny"):
        baseline.make_baseline([r for r in rows if r["preset"] != "tiny" or r["unit"] != "nmpu"],
                               "test")
    new = baseline.make_baseline(rows, "test")
    assert new["rows"]["nmpu/paper"]["area_um2"] == ref["rows"]["nmpu/paper"]["area_um2"]
    assert baseline.compare(rows, new, require_all=True) == []


def test_malformed_baseline_is_named(tmp_path, ref):
    bad = copy.deepcopy(ref)
    bad["rows"]["nmpu/paper"]["fmax_mhz"] = None
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="fmax_mhz.*nmpu/paper"):
        baseline.load(path)
    bad = copy.deepcopy(ref)
    bad["tolerance"]["area_rel"] = 2
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="area_rel"):
        baseline.load(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        baseline.load(path)
    with pytest.raises(FileNotFoundError, match="make baseline"):
        baseline.load(tmp_path / "none.json")
