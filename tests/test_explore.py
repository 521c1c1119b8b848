"""The design-space search (studies/explore.py): its space is read from the config dataclass,
the Pareto filter, NSGA-II ask/tell with a journal that resumes, the cheap-first constraints,
the search-quality measurement and the reports, on a fake evaluator (no engine, no tools: the
real evaluators are the accuracy study and synth.flow, tested where they live)."""

import dataclasses
import json

import pytest

from hdl.config import NMPU_PRESETS, NMPUConfig
from studies import explore as ex


def test_space_follows_the_dataclass():
    sp = ex.space("nmpu")
    base = NMPU_PRESETS["paper"]
    for f in dataclasses.fields(NMPUConfig):
        v = getattr(base, f.name)
        if f.name in ex.HELD["nmpu"] or not isinstance(v, (bool, int, str)):
            assert f.name not in sp
        else:            # every other knob is searched, a new one included
            assert f.name in sp, f.name
            assert v in sp[f.name] or f.name in ex.RANGES["nmpu"]
            if isinstance(v, bool):
                assert sp[f.name] == (False, True)
    assert sp["input_mode"] == ("dual", "signed") and sp["lanes"] == (8, 16, 32, 64)


def test_space_picks_up_a_new_field(monkeypatch):
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Grown(NMPUConfig):
        brand_new_bits: int = 4
    monkeypatch.setattr(ex, "base_config", lambda unit: Grown(name="paper"))
    assert ex.space("nmpu")["brand_new_bits"] == (2, 3, 4, 5, 6)


def test_invalid_point_names_the_field():
    with pytest.raises(ValueError, match="`lanes` must divide `columns`"):
        ex.config_of("nmpu", {"lanes": 48})
    with pytest.raises(SystemExit, match="unit 'fp16outer' has no search yet"):
        ex.space("fp16outer")


def test_pareto():
    pts = [(1, 5), (2, 2), (3, 3), (5, 1), (2, 2), (0, 9)]
    assert ex.pareto(pts, (1, 1)) == [0, 1, 3, 4, 5]
    assert ex.pareto([(1, 5), (2, 9)], (1, -1)) == [0, 1]      # maximise the second
    assert ex.dominates((1, 1), (1, 2), (1, 1)) and not ex.dominates((1, 2), (1, 2), (1, 1))


class Fake:
    """A deterministic stand-in with the Evaluator's interface: loss falls with the ADC and
    scale bits, area grows with them and the lanes, throughput with the lanes."""

    unit = "nmpu"

    def __init__(self, acc_limit=3.0):
        from engine.cache import Cache
        self.acc_limit, self.min_fmax, self.synth, self.calls = acc_limit, 50.0, True, 0
        self.protocol = {"network": "fake", "seeds": [0], "times": [60.0], "ref_adc_bits": 12}
        self.acc_cache = self.synth_cache = Cache("/nonexistent")
        self.eng = type("E", (), {"where": "nowhere"})()

    def evaluate(self, cfgs):
        out = []
        for c, err in cfgs:
            self.calls += 1
            if c is None:
                out.append({"status": "invalid", "error": err, "tag": None, "config": None,
                            "seconds": 0.0, "values": [100.0, 1e12, 0.0], "constraints": [1e6] * 2})
                continue
            loss = max(0.0, 12 - c.adc_bits) * 0.6 + max(0.0, 7 - c.scale_frac) * 0.3
            area = (c.adc_bits + c.scale_frac) * 1000.0 * c.lanes
            ok = loss <= self.acc_limit
            out.append({"status": "ok" if ok else "accuracy_fail", "tag": c.tag,
                        "config": c.to_dict(), "seconds": 0.0, "acc_loss_pp": loss,
                        "paired_pp": 0.0, "fmax_mhz": 200.0 if ok else None,
                        "values": [loss, area if ok else 1e12, 2e8 * c.lanes if ok else 0.0],
                        "constraints": [loss - self.acc_limit, -150.0 if ok else 1e6]})
        return out


def test_search_resumes_from_its_journal_and_marks_presets(tmp_path):
    sp = {k: ex.space("nmpu")[k] for k in ("lanes", "adc_bits", "scale_frac")}
    fake, lines = Fake(), []
    study = ex.search("nmpu", 6, None, batch=3, evaluator=fake, storage=tmp_path / "j",
                      sp=sp, log=lines.append)
    assert fake.calls == 6 and len(study.trials) == 6
    assert [ln.split()[0] for ln in lines if ln.startswith("[")] == [f"[{k}/6]" for k in range(1, 7)]
    recs = ex.records(study)
    assert any(r.get("preset") == "paper" for r in recs)        # today's preset enqueued first
    study = ex.search("nmpu", 10, None, batch=3, evaluator=fake, storage=tmp_path / "j",
                      sp=sp, log=lines.append)
    assert fake.calls == 10 and len(study.trials) == 10         # only the 4 new trials ran
    assert any("resuming" in ln for ln in lines)
    recs = ex.records(study)
    fr = ex.front(recs)
    assert fr and all(r["feasible"] for r in fr)
    infeasible = [r for r in recs if r["status"] == "accuracy_fail"]
    assert all(not r["feasible"] for r in infeasible)
    doc = ex.write_reports("nmpu", study, fake, 1.0, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "explore.json").read_text())["trials"] == 10
    assert "## Front" in (tmp_path / "report" / "explore.md").read_text()
    assert (tmp_path / "report" / "explore.png").stat().st_size > 1000
    assert len(doc["front"]) == len(fr)


def test_quality_measures_against_the_exhaustive_front(tmp_path):
    fake = Fake(acc_limit=100.0)
    q = ex.quality(None, fake, seeds=(1, 2), log=lambda s: None)
    assert q["points"] == q["evaluated"] == 98 and q["budget"] == 32
    # the exhaustive front of the fake: loss and bits trade off along adc_bits/scale_frac
    assert q["exhaustive_front"] and all(0 <= r["share"] <= 1 for r in q["runs"])
    nsga = [r for r in q["runs"] if r["sampler"] == "NSGA-II"]
    assert len(nsga) == 2 and all(r["evaluations"] == 32 for r in nsga)
    assert q["mean_share"]["NSGA-II"] == pytest.approx(sum(r["share"] for r in nsga) / 2)
    study = ex.search("nmpu", 2, None, batch=2, evaluator=fake, storage=tmp_path / "j",
                      sp={"adc_bits": (11, 12)}, log=lambda s: None)
    ex.write_reports("nmpu", study, fake, 1.0, tmp_path, extra={"quality": q})
    assert "| NSGA-II |" in (tmp_path / "explore.md").read_text()


class InProcess:
    """The engine's map, run in this process without cache (for the Evaluator's logic)."""
    where = "in process"

    def map(self, fn, items, *, args=None, label=None, **_):
        from engine.executor import Outcome
        for i, item in enumerate(items):
            try:
                yield Outcome(i, item, fn(*(args(item) if args else (item,))), None, 0.5)
            except Exception as exc:        # noqa: BLE001 - as the engine reports it
                yield Outcome(i, item, None, f"{type(exc).__name__}: {exc}", 0.5)


def test_evaluator_cheap_first_and_constraints(monkeypatch, tmp_path):
    """Accuracy first; only points within the limit are synthesised; f_max below the minimum,
    a failed synthesis and a failed accuracy run are infeasible with penalty values."""
    from synth import flow
    loss = {6: 2.0, 8: 0.5, 10: 0.2, 12: 0.0}
    monkeypatch.setattr(ex, "reference_task", lambda protocol: [0.9])
    monkeypatch.setattr(ex, "accuracy_task", lambda c, p, ref: (
        {"acc_loss_pp": loss[c["adc_bits"]], "paired_pp": 0.0, "acc_nmpu": 0.9,
         "acc_fp16_ref": 0.9, "acc_ldpu_same_adc": 0.9} if c["adc_bits"] != 12
        else 1 / 0))
    synthesised = []

    def run_all(items, tools, out_dir, engine=None, cache=None):
        for unit, cfg in items:
            synthesised.append(cfg.adc_bits)
            if cfg.adc_bits == 10 and cfg.lanes == 8:
                yield unit, cfg, {"unit": unit, "preset": cfg.tag, "error": "Yosys failed\nlog"}
            else:
                yield unit, cfg, {"area_um2": 1000.0 * cfg.adc_bits, "wall_s": 3.0,
                                  "fmax_mhz": 40.0 if cfg.adc_bits == 10 else 200.0}
    monkeypatch.setattr(flow, "run_all", run_all)
    ev = ex.Evaluator("nmpu", InProcess(), acc_limit=1.0, min_fmax=50.0, work=tmp_path)
    ev._tools = object()
    pts = [ex.config_of("nmpu", {"adc_bits": b, "lanes": n})
           for b, n in ((6, 16), (8, 16), (10, 16), (10, 8), (12, 16))]
    recs = ev.evaluate([(c, None) for c in pts] + [(None, "`lanes` must divide ...")])
    status = [r["status"] for r in recs]
    assert status == ["accuracy_fail", "ok", "slow", "failed", "failed", "invalid"]
    assert synthesised == [8, 10, 10]                 # the 2 pp point was never synthesised
    ok = recs[1]
    assert ok["values"] == [0.5, 8000.0, 200.0 * 1e6 * 16] and max(ok["constraints"]) <= 0
    assert recs[0]["values"][0] == 2.0 and recs[0]["constraints"][0] > 0
    assert recs[2]["constraints"][1] == 10.0          # 40 MHz against 50
    assert recs[3]["error"] == "Yosys failed" and min(recs[3]["constraints"]) >= 1e6
    assert "ZeroDivisionError" in recs[4]["error"] and recs[4]["values"] == list(ex.WORST.values())
    assert min(recs[5]["constraints"]) > 0           # invalid: infeasible too


def test_moved_studies_keep_their_old_names_for_a_release():
    """The studies left golden/ and synth/ (issue 15's layout): the old module names are the
    very modules under studies/, and the accuracy cache key covers the study's source."""
    import importlib
    for old, new in [("golden.accuracy", "studies.accuracy"), ("golden.training", "studies.training"),
                     ("golden.bench", "studies.bench"), ("golden.budget", "studies.budget"),
                     ("synth.scaling", "studies.scaling")]:
        assert importlib.import_module(old) is importlib.import_module(new), old
    assert "studies/accuracy.py" in ex.ACCURACY_SOURCES
    assert ex._source_hash("golden") != ex._source_hash(*ex.ACCURACY_SOURCES)


def test_old_command_runs_the_moved_study():
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "golden.budget", "--help"], capture_output=True,
                       text=True, cwd=ex.ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "studies.budget" in p.stderr and "--vectors" in p.stdout
