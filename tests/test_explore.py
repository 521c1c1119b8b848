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
    assert sp["lanes"] == (1, 2, 4, 8, 16, 32, 64)
    assert sp["shift_bits"] == (4, 5) and sp["clamp_count_bits"] == (16, 24, 32)
    assert "input_mode" not in sp and "residual" not in sp       # no evaluator prices them
    assert ex.space("nmpu", wide=True)["lanes"] == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    # the issue-13 presets are points of the space (256 lanes: with wide lanes only)
    for name, wide in (("precision", False), ("precision_serial", False), ("serial", False),
                       ("precision256", True)):
        p, sw = NMPU_PRESETS[name], ex.space("nmpu", wide=wide)
        assert all(getattr(p, f) in v for f, v in sw.items()), name
        assert all(getattr(p, f) == getattr(base, f) for f in ex.HELD["nmpu"] - {"name"}), name


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
        self.acc_cache = self.synth_cache = self.energy_cache = Cache("/nonexistent")
        self.eng = type("E", (), {"where": "nowhere"})()

    def evaluate(self, cfgs):
        out = []
        for c, err in cfgs:
            self.calls += 1
            if c is None:
                out.append({"status": "invalid", "error": err, "tag": None, "config": None,
                            "seconds": 0.0, "values": list(ex.WORST.values()),
                            "constraints": [1e6] * 2})
                continue
            loss = max(0.0, 12 - c.adc_bits) * 0.6 + max(0.0, 7 - c.scale_frac) * 0.3
            area = (c.adc_bits + c.scale_frac) * 1000.0 * c.lanes
            ok = loss <= self.acc_limit
            out.append({"status": "ok" if ok else "accuracy_fail", "tag": c.tag,
                        "config": c.to_dict(), "seconds": 0.0, "acc_loss_pp": loss,
                        "paired_pp": 0.0, "fmax_mhz": 200.0 if ok else None,
                        "values": [loss, area if ok else 1e12, area / 100 if ok else 1e12,
                                   2e8 * c.lanes if ok else 0.0],
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
    md = (tmp_path / "report" / "explore.md").read_text()
    assert "## Front" in md and "pJ/vector" in md
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
    # the fake's loss is monotone in the widths, without noise: the monotone sampler finds
    # more of its front than NSGA-II (6 of 11 against 4; TPE finds 9-10 on this plateau-shaped
    # fake)
    assert q["mean_share"]["monotone"] > q["mean_share"]["NSGA-II"]
    # the frontier sampler's model of the loss finds all 11 (TPE 9-10)
    assert q["mean_share"]["frontier"] == 1.0 > q["mean_share"]["TPE (multivariate)"]
    assert len(q["table"]) == 98 and q["resolution_pp"] == pytest.approx(0.3)
    again = ex.quality(None, fake, seeds=(1,), table=q["table"], samplers={}, log=lambda s: None)
    assert fake.calls == 98 and again["exhaustive_front"] == q["exhaustive_front"]
    study = ex.search("nmpu", 2, None, batch=2, evaluator=fake, storage=tmp_path / "j",
                      sp={"adc_bits": (11, 12)}, log=lambda s: None)
    ex.write_reports("nmpu", study, fake, 1.0, tmp_path, extra={"quality": q})
    assert "| NSGA-II |" in (tmp_path / "explore.md").read_text()
    ex.write_quality(q, tmp_path)
    assert "| monotone | 55% | [6, 6] |" in (tmp_path / "explore_quality.md").read_text()
    # the table's protocol is recorded and read back with the saved table
    assert q["protocol"] == fake.protocol
    rows, protocol = ex._load_table(tmp_path / "explore_quality.json")
    assert rows == q["table"] and protocol == fake.protocol
    assert ex._load_table(None) == (None, None)
    assert len(ex.QUALITY_PROTOCOL["seeds"]) == 8 and len(ex.PROTOCOL["seeds"]) == 2
    assert {k: v for k, v in ex.QUALITY_PROTOCOL.items() if k != "seeds"} == {
        k: v for k, v in ex.PROTOCOL.items() if k != "seeds"}


# -- the monotone sampler (studies/monotone.py) ----------------------------------------------------

def _synthetic(shape=(7, 6, 3)):
    """A noise-free monotone problem: loss falls with every width until it saturates (as the
    accuracy does once a width suffices), cost grows with each."""
    import itertools
    names = ["a", "b", "c"][:len(shape)]
    space = {n: tuple(range(k)) for n, k in zip(names, shape)}
    loss = {p: 10.0 / (1 + min(p[0], 4)) + 6.0 / (1 + min(p[1], 3))
            + (3.0 / (1 + min(p[2], 1)) if len(p) > 2 else 0)
            for p in itertools.product(*space.values())}
    cost = {p: 3 * p[0] + 2 * p[1] + sum(p[2:]) for p in loss}
    return space, loss, cost


def _front(points, loss, cost):
    ks = list(points)
    return {ks[i] for i in ex.pareto([(loss[k], cost[k]) for k in ks], (1, 1))}


def test_monotone_finds_the_whole_front_in_fewer_evaluations_than_exhaustive():
    from studies.monotone import MonotoneSearch
    space, loss, cost = _synthetic()
    true = _front(loss, loss, cost)
    for seed in (1, 2):
        ms = MonotoneSearch(space, {n: 1 for n in space}, cost=lambda d: cost[tuple(d.values())],
                            seed=seed)
        done = {}
        while ms.margin == 0:       # exact monotonicity: stops when nothing can be on the front
            p = ms.propose(done)
            assert p not in done
            done[p] = loss[p]
        done.popitem()              # the proposal that needed a margin
        assert _front(done, loss, cost) == true
        # 91 of the 126 points: the widest (it bounds all) and every point cheaper than the
        # knee (the cheapest point at the saturated loss), none costlier
        assert len(done) < len(loss) and max(cost[p] for p in list(done)[1:]) <= min(
            cost[p] for p in loss if loss[p] == min(loss.values())), len(done)


def test_monotone_never_proposes_a_point_twice_and_then_stops():
    import optuna
    from studies.monotone import MonotoneSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, loss, cost = _synthetic((3, 4, 2))
    sampler = MonotoneSampler(space, {"a": 1, "b": 1}, seed=5)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.enqueue_trial({"a": 0, "b": 0, "c": 1})            # a preset keeps its values
    seen = []
    while len(seen) < len(loss):
        batch = [study.ask() for _ in range(5)]              # asked together, told later
        for t in batch:
            p = tuple(t.suggest_categorical(n, list(v)) for n, v in space.items())
            seen.append(p)
        for t, p in zip(batch, seen[-5:]):
            study.tell(t, [loss[p], cost[p]])
    assert seen[0] == (0, 0, 1)
    assert len(set(seen[:len(loss)])) == len(loss)
    assert sampler.search.propose({p: loss[p] for p in loss}) is None


def test_monotone_respects_the_accuracy_limit():
    """A point narrower than an evaluated point over the limit is never proposed while any
    other point is left, and a bad direction table is refused."""
    import random
    from studies.monotone import MonotoneSearch
    space, loss, cost = _synthetic()
    rng = random.Random(7)
    for trial in range(40):
        ms = MonotoneSearch(space, {n: 1 for n in space}, limit=4.0, seed=trial)
        done = {p: loss[p] for p in rng.sample(sorted(loss), 12)}
        over = [q for q, v in done.items() if v > 4.0]
        p = ms.propose(done)
        if ms.margin == 0:
            assert not any(ms.below(p, q) for q in over), (p, over)
    with pytest.raises(ValueError, match="direction of `a` must be"):
        MonotoneSearch(space, {"a": 2})


def test_monotone_is_a_sampler_of_the_search(tmp_path):
    fake = Fake(acc_limit=3.0)
    sp = {k: ex.space("nmpu")[k] for k in ("lanes", "adc_bits", "scale_frac")}
    study = ex.search("nmpu", 12, None, batch=4, evaluator=fake, storage=tmp_path / "j", sp=sp,
                      sampler="monotone", log=lambda s: None)
    recs = ex.records(study)
    proposed = [r["tag"] for r in recs if not r.get("preset")]
    assert len(recs) == 12 and ex.front(recs)
    # never a point twice, nor a preset's point (presets may share a point in this subspace)
    assert len(set(proposed)) == len(proposed)
    assert not set(proposed) & {r["tag"] for r in recs if r.get("preset")}
    with pytest.raises(ValueError, match="`sampler` must be one of nsga2, monotone"):
        ex.make_sampler("cmaes", "nmpu", sp)


# -- the frontier sampler (studies/frontier.py) ---------------------------------------------------

def test_nondominated_matches_pareto_with_ties_senses_and_failed_points():
    import numpy as np
    from studies.frontier import nondominated
    rng = np.random.default_rng(3)
    for k, senses in ((2, (1, 1)), (3, (1, -1, 1))):
        for _ in range(30):
            n = 30
            v = rng.integers(0, 6, (n, k)).astype(float)     # many ties, as image counts
            v[rng.random(n) < 0.1, rng.integers(k)] = np.nan  # failed points
            ok = [i for i in range(n) if not np.isnan(v[i]).any()]
            want = {ok[i] for i in ex.pareto([tuple(v[i]) for i in ok], senses)}
            assert set(np.flatnonzero(nondominated(v[None], senses)[0])) == want
    two = nondominated(np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [2.0, 1.0]]]), (1, 1))
    assert two.tolist() == [[True, True], [True, False]]


def _noisy(shape=(7, 7, 2), seed=0):
    """A U-shaped loss in `a` with an interaction of `a` and `b`, and noise quantised to an
    image: the structure of the measured quality table (docs/explore.md), which monotone
    priors get wrong."""
    import itertools
    import numpy as np
    rng = np.random.default_rng(seed)
    space = {n: tuple(range(k)) for n, k in zip("abc", shape)}
    loss = {p: round((0.4 * (p[0] - 3) ** 2 + 3.0 * max(0, p[0] - p[1] + 1) - 0.5 * p[2]
                      + rng.normal(0, 0.3)) * 4) / 4
            for p in itertools.product(*space.values())}
    cost = {p: 2 * p[0] + p[1] + p[2] for p in loss}
    return space, loss, cost


def test_frontier_beats_random_on_a_structured_noisy_problem():
    """On a 98-point problem with a third of the evaluations, the model-based proposals find
    more of the front than random choice (seeded: the same figures on every run)."""
    import random
    from studies.frontier import FrontierSearch
    space, loss, cost = _noisy()
    true = _front(loss, loss, cost)
    got, rnd = [], []
    for seed in (1, 2, 3):
        fs = FrontierSearch(space, lambda d: cost[tuple(d.values())], seed=seed, draws=256)
        done = {}
        while len(done) < 32:
            p = fs.propose(done)
            assert p not in done and p in loss
            done[p] = loss[p]
        assert min(done, key=lambda p: (cost[p], p)) == min(loss, key=lambda p: (cost[p], p))
        got.append(len(_front(done, loss, cost) & true))
        pick = random.Random(seed).sample(sorted(loss), 32)
        rnd.append(len(_front(pick, loss, cost) & true))
    assert sum(got) > sum(rnd) + 3, (got, rnd, len(true))
    assert fs.last_scores and all(0 <= v <= 1 for v in fs.last_scores.values())


def test_frontier_sampler_in_ask_tell_never_repeats_and_refuses_bad_settings():
    import optuna
    from studies.frontier import FrontierSampler, FrontierSearch
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, loss, cost = _noisy((3, 3, 2))
    sampler = FrontierSampler(space, lambda d: cost[tuple(d.values())], seed=4, draws=64)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    seen = []
    while len(seen) < len(loss):
        batch = [study.ask() for _ in range(4)]              # asked together, told later
        for t in batch:
            seen.append(tuple(t.suggest_categorical(n, list(v)) for n, v in space.items()))
        for t, p in zip(batch, seen[-4:]):
            if p == (2, 2, 1):
                study.tell(t, state=optuna.trial.TrialState.FAIL)   # a failed point
            else:
                study.tell(t, [loss[p], cost[p]])
    assert len(set(seen[:len(loss)])) == len(loss)
    assert sampler.search.propose({p: loss[p] for p in loss}) is None
    with pytest.raises(ValueError, match="with a known `cost` the objectives are"):
        FrontierSearch(space, lambda d: 0, senses=(1, 1, -1))
    with pytest.raises(ValueError, match="`senses` must be"):
        FrontierSearch(space, None, senses=(1, 2))
    with pytest.raises(ValueError, match="`n_init` must be at least 1"):
        FrontierSearch(space, lambda d: 0, n_init=0)
    with pytest.raises(ValueError, match="`warp` must be one of yeo-johnson, none"):
        FrontierSearch(space, lambda d: 0, warp="log")
    with pytest.raises(ValueError, match="enumerates its space"):
        FrontierSearch({"a": range(100), "b": range(100)}, lambda d: 0)
    FrontierSearch({"a": range(100), "b": range(100)}, None)     # modelled cost: a pool


def test_frontier_is_a_sampler_of_the_full_search(tmp_path):
    """Every objective modelled (as in the full search, where area, energy and items/s are
    measured): on the stand-in's 343-point subspace, whose 4-objective front is known by
    enumeration, 40 trials of the frontier sampler find more than twice NSGA-II's share of it,
    with fewer accuracy failures (seeded: the same figures on every run; 21-23 against 8-10 of
    35 measured for seeds 1-2)."""
    import itertools
    fake = Fake(acc_limit=1.5)
    sp = {k: ex.space("nmpu")[k] for k in ("lanes", "adc_bits", "scale_frac")}
    pts = [dict(zip(sp, v)) for v in itertools.product(*sp.values())]
    every = [dict(r, params=p, feasible=all(c <= 0 for c in r["constraints"])) for p, r in
             zip(pts, fake.evaluate([(ex.config_of("nmpu", p), None) for p in pts]))]
    key = lambda r: tuple(r["params"][k] for k in sp)        # noqa: E731
    true = {key(r) for r in ex.front(every)}
    got = {}
    for sampler in ("frontier", "nsga2"):
        study = ex.search("nmpu", 40, None, batch=4, evaluator=fake,
                          storage=tmp_path / f"{sampler}.j", sp=sp, sampler=sampler,
                          log=lambda s: None)
        recs = ex.records(study)
        got[sampler] = (len({key(r) for r in ex.front(recs)} & true),
                        sum(r["status"] != "ok" for r in recs))
    assert got["frontier"][0] > 2 * got["nsga2"][0] and got["frontier"][1] < got["nsga2"][1], got


def test_frontier_pools_a_space_too_large_to_enumerate():
    """Past `enumerate_max` the candidates are a random pool and the front's neighbours:
    proposals stay in the space, never repeat, and the search ends (None) once the pool finds
    nothing new."""
    import numpy as np
    from studies.frontier import FrontierSearch
    space, loss, cost = _noisy((3, 3, 2))
    fs = FrontierSearch(space, None, seed=2, draws=32, pool=8, enumerate_max=5)
    done = {}
    while True:
        p = fs.propose(done)
        if p is None:
            break
        assert p in loss and p not in done
        done[p] = (loss[p], cost[p])
    assert len(done) >= len(loss) - 2
    assert fs.last_scores and all(0 <= v <= 1 for v in fs.last_scores.values())
    assert np.isfinite(list(fs.last_scores.values())).all()


class InProcess:
    """The engine's map run in this process, with its cache rule (a hit is not run; a new
    result is stored), for the Evaluator's logic; `calls` counts the functions run."""
    where = "in process"

    def __init__(self):
        self.calls = []

    def map(self, fn, items, *, args=None, label=None, cache=None, key=None, keep=None, **_):
        from engine.executor import Outcome
        for i, item in enumerate(items):
            k = key(item) if cache is not None and key is not None else None
            hit = cache.get(k) if k is not None else None
            if hit is not None:
                yield Outcome(i, item, hit, None, 0.0, True, k)
                continue
            self.calls.append(fn.__name__)
            try:
                v = fn(*(args(item) if args else (item,)))
            except Exception as exc:        # noqa: BLE001 - as the engine reports it
                yield Outcome(i, item, None, f"{type(exc).__name__}: {exc}", 0.5)
                continue
            if k is not None and (keep is None or keep(v)):
                cache.put(k, v)
            yield Outcome(i, item, v, None, 0.5, False, k)


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
                                  "fmax_mhz": 40.0 if cfg.adc_bits == 10 else 200.0,
                                  "netlist_sha256": "ab" * 32, "min_period_ns": 5.0}
    monkeypatch.setattr(flow, "run_all", run_all)
    energized = []
    monkeypatch.setattr(ex, "energy_task", lambda unit, c, row, tools, work: (
        energized.append(c["adc_bits"]) or {"pj_per_item": 10.0 * c["adc_bits"]}))
    ev = ex.Evaluator("nmpu", InProcess(), acc_limit=1.0, min_fmax=50.0, work=tmp_path)
    ev._tools = object()
    pts = [ex.config_of("nmpu", {"adc_bits": b, "lanes": n})
           for b, n in ((6, 16), (8, 16), (10, 16), (10, 8), (12, 16))]
    recs = ev.evaluate([(c, None) for c in pts] + [(None, "`lanes` must divide ...")])
    status = [r["status"] for r in recs]
    assert status == ["accuracy_fail", "ok", "slow", "failed", "failed", "invalid"]
    assert synthesised == [8, 10, 10]                 # the 2 pp point was never synthesised
    assert energized == [8]                           # nor the slow and failed ones measured
    ok = recs[1]
    assert ok["values"] == [0.5, 8000.0, 80.0, 200.0 * 1e6 * 16 / 256]     # vectors/s
    assert max(ok["constraints"]) <= 0
    assert recs[0]["values"][0] == 2.0 and recs[0]["constraints"][0] > 0
    assert recs[2]["constraints"][1] == 10.0          # 40 MHz against 50
    assert recs[3]["error"] == "Yosys failed" and min(recs[3]["constraints"]) >= 1e6
    assert "ZeroDivisionError" in recs[4]["error"] and recs[4]["values"] == list(ex.WORST.values())
    assert min(recs[5]["constraints"]) > 0           # invalid: infeasible too


def test_points_no_evaluator_prices_are_refused_before_any_stage(monkeypatch, tmp_path):
    """`input_mode` 'signed' (the tile model has no signed-count tile) and `residual` False (the
    energy workload chains row tiles through the residual input) are refused by name before
    the accuracy run, so neither costs an evaluation, let alone a synthesis."""
    ev, eng, rows = _energy_setup(monkeypatch, tmp_path)
    pts = [ex.config_of("nmpu", {"input_mode": "signed"}),
           ex.config_of("nmpu", {"residual": False}), ex.config_of("nmpu", {"adc_bits": 8})]
    recs = ev.evaluate([(c, None) for c in pts])
    assert [r["status"] for r in recs] == ["unsupported", "unsupported", "ok"]
    assert "`input_mode` 'signed'" in recs[0]["error"] and "`residual` False" in recs[1]["error"]
    # the reference, then the third point's accuracy and energy only
    assert eng.calls == ["<lambda>", "<lambda>", "energy_task"] and len(rows) == 1
    for r in recs[:2]:
        assert r["values"] == list(ex.WORST.values()) and min(r["constraints"]) >= 1e6
    assert ex.unsupported("nmpu", NMPU_PRESETS["paper"]) is None
    assert ex.unsupported("essop", None) is None


def test_search_enqueues_paper_and_precision_first(tmp_path):
    fake = Fake(acc_limit=100.0)
    study = ex.search("nmpu", 5, None, batch=5, evaluator=fake, storage=tmp_path / "j",
                      log=lambda s: None)
    presets = [r.get("preset") for r in ex.records(study)]
    assert presets == ["paper", "precision", "exp", "serial", "precision_serial"]
    study = ex.search("nmpu", 2, None, batch=2, evaluator=fake, storage=tmp_path / "w",
                      sp=ex.space("nmpu", wide=True), log=lambda s: None)
    presets = [t.user_attrs.get("preset") for t in study.get_trials(deepcopy=False)]
    assert presets[:2] == ["paper", "precision"] and "precision256" in presets   # 2 run, 4 wait


def test_moved_studies_keep_their_old_names_for_a_release():
    """The studies left golden/ and synth/ (issue 15's layout): the old module names are the
    very modules under studies/, and the accuracy cache key covers the study's source."""
    import importlib
    for old, new in [("golden.accuracy", "studies.accuracy"),
                     ("golden.training", "studies.training"), ("golden.bench", "studies.bench"),
                     ("golden.budget", "studies.budget"), ("synth.scaling", "studies.scaling")]:
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


def _energy_setup(monkeypatch, tmp_path, sha="ab" * 32, pj=42.0):
    """An Evaluator on InProcess with synthesis and the energy run replaced by stand-ins;
    returns (evaluator, engine, the energy calls' rows)."""
    from synth import flow
    monkeypatch.setattr(ex, "reference_task", lambda protocol: [0.9])
    monkeypatch.setattr(ex, "accuracy_task", lambda c, p, ref: {
        "acc_loss_pp": 0.1, "paired_pp": 0.0, "acc_nmpu": 0.9, "acc_fp16_ref": 0.9,
        "acc_ldpu_same_adc": 0.9})

    def run_all(items, tools, out_dir, engine=None, cache=None):
        for unit, cfg in items:
            yield unit, cfg, {"area_um2": 1.0, "fmax_mhz": 100.0, "min_period_ns": 10.0,
                              "netlist_sha256": sha, "tools": {"yosys": "0"}}
    monkeypatch.setattr(flow, "run_all", run_all)
    rows = []

    def energy_task(unit, c, row, tools, work):
        rows.append(row)
        return {"pj_per_item": pj, "workload_name": "stand-in"}
    monkeypatch.setattr(ex, "energy_task", energy_task)
    eng = InProcess()
    ev = ex.Evaluator("nmpu", eng, acc_limit=1.0, min_fmax=50.0, work=tmp_path)
    ev._tools = object()
    return ev, eng, rows


def test_energy_is_the_fourth_objective_cached_by_netlist_and_workload(monkeypatch, tmp_path):
    """Energy per item runs on the synthesised points, is cached under the netlist's hash and
    the workload, re-runs when either changes, and a failed energy run fails the point."""
    cfg = ex.config_of("nmpu", {"adc_bits": 8})
    ev, eng, rows = _energy_setup(monkeypatch, tmp_path)
    (r,) = ev.evaluate([(cfg, None)])
    assert r["status"] == "ok" and ex.value(r, "pj_per_item") == 42.0 and len(rows) == 1
    assert rows[0]["netlist_sha256"] == "ab" * 32
    assert [k for k, _ in ex.OBJECTIVES] == ["acc_loss_pp", "area_um2", "pj_per_item",
                                             "items_per_s"]
    (r,) = ev.evaluate([(cfg, None)])                     # resumed: a hit, nothing re-run
    assert r["cached_energy"] and len(rows) == 1 and ev.energy_cache.hits == 1
    assert r["seconds"] == 0.0                            # a hit costs nothing here
    ev2, _, rows2 = _energy_setup(monkeypatch, tmp_path, sha="cd" * 32)   # another netlist
    ev2.evaluate([(cfg, None)])
    assert len(rows2) == 1
    k = ev.energy_key(cfg, {"netlist_sha256": "ab" * 32, "min_period_ns": 10.0})
    assert k != ev.energy_key(cfg, {"netlist_sha256": "ab" * 32, "min_period_ns": 8.0})
    from synth import power
    monkeypatch.setitem(power.POWER_COUNT, "nmpu", 99)    # another workload
    assert k != ev.energy_key(cfg, {"netlist_sha256": "ab" * 32, "min_period_ns": 10.0})
    ev3, _, _ = _energy_setup(monkeypatch, tmp_path / "other")
    monkeypatch.setattr(ex, "energy_task", lambda *a: 1 / 0)
    (r,) = ev3.evaluate([(cfg, None)])
    assert r["status"] == "failed" and r["error"].startswith("energy: ZeroDivisionError")
    assert r["values"][1:] == list(ex.WORST.values())[1:] and min(r["constraints"]) >= 1e6


def test_energy_task_uses_the_netlist_it_finds_or_synthesises_again(monkeypatch, tmp_path):
    """On a worker: the netlist left by the synthesis is used when its hash is the row's;
    otherwise the flow runs again there and must give the same netlist."""
    import hashlib
    from synth import flow, power
    cfg = ex.config_of("nmpu", {"adc_bits": 8})
    run_dir = tmp_path / "synth" / f"nmpu_{cfg.tag}"
    run_dir.mkdir(parents=True)
    text = b"module m; endmodule\n"
    (run_dir / "netlist.v").write_bytes(text)
    row = {"netlist_sha256": hashlib.sha256(text).hexdigest(), "flow": {"period_ns": 4.0},
           "min_period_ns": 7.0}
    measured, again = [], []
    monkeypatch.setattr(power, "library", lambda d: "lib")
    monkeypatch.setattr(power, "measure", lambda unit, c, lib, sd, od, **kw: measured.append(
        (c.tag, lib, json.loads((sd / f"nmpu_{c.tag}" / "result.json").read_text()))) or {
        "pj_per_item": 5.0, "items_per_uj": 2e5, "item": "vector", "workload_name": "w"})
    monkeypatch.setattr(flow, "_worker_tools", lambda tools, d: tools)

    def run(unit, c, tools, out_dir, period_ns):
        again.append(period_ns)
        (run_dir / "netlist.v").write_bytes(text)
        return {"netlist_sha256": hashlib.sha256(text).hexdigest()}
    monkeypatch.setattr(flow, "run", run)
    out = ex.energy_task("nmpu", cfg.to_dict(), row, None, tmp_path)
    assert out["pj_per_item"] == 5.0 and not again
    assert measured[0][2]["min_period_ns"] == 7.0        # the row's f_max sets the period
    (run_dir / "netlist.v").unlink()                      # synthesised on another machine
    ex.energy_task("nmpu", cfg.to_dict(), row, None, tmp_path)
    assert again == [4.0] and len(measured) == 2
    with pytest.raises(power.PowerError, match="not deterministic"):
        ex.energy_task("nmpu", cfg.to_dict(), dict(row, netlist_sha256="0" * 64), None, tmp_path)


def test_essop_space_and_objectives_with_stand_ins(monkeypatch, tmp_path):
    """ESSOP: knobs from ESSOPConfig (the 32 x 32 array held), accuracy from the training study
    at the point's largest BL against FP16 training, products/s from clocks per product."""
    from hdl.config import ESSOP_PRESETS
    from synth import flow
    sp = ex.space("essop")
    assert {"mag_bits", "lfsr_width", "log2_bl_max", "rng", "double_buffer",
            "rows_per_beat"} <= set(sp)
    assert not {"rows", "cols", "acc_max", "name"} & set(sp)
    calls = []

    def finals(cfg, protocol, mode, bl=None):
        calls.append((cfg.name, mode, bl))
        if mode in ("fp16", "float"):
            return [0.97, 0.96] if mode == "fp16" else [0.975, 0.965]
        return [0.97 - 0.002 * (8 - cfg.mag_bits)] * 2       # fewer magnitude bits, less accurate
    monkeypatch.setattr(ex, "_train_finals", finals)

    def run_all(items, tools, out_dir, engine=None, cache=None):
        for unit, cfg in items:
            yield unit, cfg, {"area_um2": 100.0 * cfg.mag_bits, "fmax_mhz": 320.0,
                              "min_period_ns": 3.125, "netlist_sha256": "ef" * 32}
    monkeypatch.setattr(flow, "run_all", run_all)
    monkeypatch.setattr(ex, "energy_task", lambda unit, c, row, tools, work: {
        "pj_per_item": 1000.0 + c["log2_bl_max"]})
    ev = ex.Evaluator("essop", InProcess(), acc_limit=1.0, min_fmax=50.0, work=tmp_path)
    ev._tools = object()
    assert ev.protocol == ex.ESSOP_PROTOCOL and ev.protocol["reference"] == "fp16"
    cfgs = [ex.config_of("essop", {"mag_bits": 8, "log2_bl_max": 3}),
            ex.config_of("essop", {"mag_bits": 4, "log2_bl_max": 5, "double_buffer": True})]
    recs = ev.evaluate([(c, None) for c in cfgs])
    assert calls[:2] == [("paper", "fp16", None), ("paper", "float", None)]   # the reference
    assert ("x", "exact", 8) in calls and ("x", "exact", 32) in calls        # at the largest BL
    a, b = recs
    assert a["status"] == "ok" and ex.value(a, "acc_loss_pp") == pytest.approx(-0.5)
    assert a["paired_pp"] == pytest.approx(0.0, abs=1e-9) and a["bl"] == 8
    assert b["status"] == "ok" and ex.value(b, "acc_loss_pp") == pytest.approx(0.3)
    # products/s: f_max over clocks per product (single-buffered BL 8: 8 + 32 read-out beats)
    assert ex.value(a, "items_per_s") == pytest.approx(320e6 / 40)
    assert ex.value(b, "items_per_s") == pytest.approx(320e6 / 32)       # double: max(32, 32)
    assert ex.value(b, "pj_per_item") == 1005.0
    # the search starts from today's 32 x 32 presets
    study = ex.search("essop", 5, None, batch=5, evaluator=ev, storage=tmp_path / "j",
                      log=lambda s: None)
    presets = {r.get("preset") for r in ex.records(study)}
    assert {"paper", "double", "wide", "wide8", "per_converter"} <= presets
    assert "tiny" not in presets
    ex.write_reports("essop", study, ev, 1.0, tmp_path / "report")
    md = (tmp_path / "report" / "explore.md").read_text()
    assert "pJ/product" in md and "ESSOP−exact products" in md and "FP16 outer-product" in md
    assert ESSOP_PRESETS["paper"].clocks_per_product(3) == 40


def test_essop_quality_is_refused():
    with pytest.raises(SystemExit):
        ex.main(["--unit", "essop", "--quality"])


def test_verification_reads_the_measured_clocks(monkeypatch, tmp_path):
    """verify_task returns the clocks per item the bench's throughput scenario measured, next to
    the model's, and the report lists them."""
    from verif import runner
    (tmp_path / "throughput.json").write_text(json.dumps({"cycles_per_vector": 4.0}))
    monkeypatch.setattr(runner, "run_bench", lambda unit, cfg, sim, seed: {
        "tests": 9, "wall_s": 1.0, "log": str(tmp_path / "sim.log")})
    cfg = ex.config_of("nmpu", {"lanes": 64})
    v = ex.verify_task("nmpu", cfg.to_dict(), "icarus", 1)
    assert v["clocks_per_item"] == 4.0 and v["clocks_per_item_model"] == 256 / 64
    study = ex.search("nmpu", 2, None, batch=2, evaluator=Fake(), storage=tmp_path / "j",
                      sp={"adc_bits": (11, 12)}, log=lambda s: None)
    tag = ex.records(study)[0]["tag"]
    ex.write_reports("nmpu", study, Fake(), 1.0, tmp_path,
                     extra={"verified": [dict(v, tag=tag, ok=True)]})
    md = (tmp_path / "explore.md").read_text()
    assert "## Verified front points" in md
    assert f"| {tag} | icarus | pass | 9 | 4 | 4.0 | 50.0 |" in md
    # an invalid trial (no config, no tag) in the history does not stop the table
    study = ex.search("nmpu", 1, None, batch=1, evaluator=Fake(), storage=tmp_path / "j2",
                      sp={"lanes": (48,)}, log=lambda s: None)
    assert ex.records(study)[0]["status"] == "invalid"
    ex.write_reports("nmpu", study, Fake(), 1.0, tmp_path / "inv",
                     extra={"verified": [dict(v, tag=tag, ok=True)]})


def test_a_cached_synthesis_costs_no_seconds(monkeypatch, tmp_path):
    """A resumed point reports the time spent now, not the cached run's synthesis wall time."""
    from synth import flow
    ev, _, _ = _energy_setup(monkeypatch, tmp_path)

    def run_all(items, tools, out_dir, engine=None, cache=None):
        from engine.cache import key
        for unit, cfg in items:             # as Engine.map: look up, then yield
            k = key(tag=cfg.tag)
            row = cache.get(k) or {"area_um2": 1.0, "fmax_mhz": 100.0, "wall_s": 60.0,
                                   "min_period_ns": 10.0, "netlist_sha256": "ab" * 32}
            cache.put(k, row)
            yield unit, cfg, row
    monkeypatch.setattr(flow, "run_all", run_all)
    cfg = ex.config_of("nmpu", {"adc_bits": 8})
    (first,) = ev.evaluate([(cfg, None)])
    (again,) = ev.evaluate([(cfg, None)])
    assert first["seconds"] == 61.0 and not first["cached_synth"]   # + 0.5 s accuracy, energy
    assert again["seconds"] == 0.0 and again["cached_synth"]


def test_energy_starts_as_each_synthesis_returns(monkeypatch, tmp_path):
    """No stage barrier: a point's energy run is handed to the engine as soon as its synthesis
    returns, before the next synthesis result is taken."""
    from synth import flow
    ev, _, _ = _energy_setup(monkeypatch, tmp_path)
    events = []

    def run_all(items, tools, out_dir, engine=None, cache=None):
        for unit, cfg in items:
            events.append(("synth", cfg.adc_bits))
            yield unit, cfg, {"area_um2": 1.0, "fmax_mhz": 100.0, "min_period_ns": 10.0,
                              "netlist_sha256": "ab" * 32}
    monkeypatch.setattr(flow, "run_all", run_all)
    monkeypatch.setattr(ex, "energy_task", lambda unit, c, row, tools, work: (
        events.append(("energy", c["adc_bits"])) or {"pj_per_item": 1.0}))
    cfgs = [ex.config_of("nmpu", {"adc_bits": b}) for b in (8, 9, 10)]
    recs = ev.evaluate([(c, None) for c in cfgs])
    assert [r["status"] for r in recs] == ["ok"] * 3
    assert events == [("synth", 8), ("energy", 8), ("synth", 9), ("energy", 9),
                      ("synth", 10), ("energy", 10)]
