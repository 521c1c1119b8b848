"""The mutation harness (verif/mutate.py, verif/mutants.toml) and the coverage-closure report
can fail: the catalogue is valid against the current source, two mutants run end to end and
are killed, the unmutated tree passes the same selections, and a missing coverage bin fails
`verif.coverage_report`.

The full mutation run (every mutant, `python -m verif.mutate`) is not part of `make test`; see
docs/mutation.md.
"""

import json

import pytest

from verif import coverage_report, mutate

# Fast killers: a stage test of the NMPU and the LFSR matrix test of ESSOP.
END_TO_END = ("nmpu-round-no-increment", "essop-lfsr-tap")


@pytest.fixture(scope="module")
def catalogue():
    return mutate.load()


def test_catalogue_is_valid(catalogue):
    """At least 40 mutants with unique ids and known units, over all the HDL files, each
    pattern found exactly once in the current source (load() checks it and names the mutant)."""
    ids = [m.id for m in catalogue.mutants]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)
    assert {m.unit for m in catalogue.mutants} <= set(mutate.UNITS)
    assert {m.unit for m in catalogue.mutants} >= {"nmpu", "essop", "ldpu", "fp16outer"}
    assert {m.file for m in catalogue.mutants} >= {"hdl/nmpu.py", "hdl/essop.py", "hdl/fp16.py",
                                                   "hdl/baselines.py", "hdl/common.py"}
    for m in catalogue.mutants:
        assert mutate.ROOT.joinpath(m.file).read_text().count(m.find) == 1, m.id
        assert m.description and m.invocations(catalogue.selections), m.id
    for m in END_TO_END:
        assert m in ids


def test_catalogue_errors_name_the_mutant(tmp_path):
    base = ('[[mutant]]\nid = "bad-one"\nunit = "nmpu"\nfile = "hdl/nmpu.py"\n'
            'replace = "x"\ndescription = "d"\ntests = ["tests/test_hdl_nmpu.py"]\n')
    for find, msg in (('find = "no such text in the file"\n', "matches 0 times"),
                      ('find = "cfg"\n', "exactly once")):
        path = tmp_path / "m.toml"
        path.write_text(base + find)
        with pytest.raises(mutate.CatalogueError, match=f"'bad-one'.*{msg}"):
            mutate.load(path)
    path.write_text(base.replace('"nmpu"', '"gpu"') + 'find = "LATENCY = 4"\n')
    with pytest.raises(mutate.CatalogueError, match="'bad-one'.*unknown unit"):
        mutate.load(path)
    path.write_text((base + 'find = "LATENCY = 4"\n') * 2)
    with pytest.raises(mutate.CatalogueError, match="'bad-one'.*duplicate"):
        mutate.load(path)


@pytest.mark.regress      # 90 s in make test; `make mutate` runs the same runner on every mutant
def test_mutants_killed_end_to_end(tmp_path, catalogue):
    """Two mutants through the runner (copies, baseline, report): both killed, and the baseline
    of their selections (the unmutated tree) passed, or run() would have raised."""
    code = mutate.main(["--only", *END_TO_END, "--work", str(tmp_path / "work"),
                        "--report", str(tmp_path / "report")])
    doc = json.loads((tmp_path / "report" / "mutation.json").read_text())
    assert {r["id"]: r["status"] for r in doc["mutants"]} == dict.fromkeys(END_TO_END, "killed")
    assert doc["totals"]["kill_rate"] == 1.0 and code == 0
    assert "Mutation score" in (tmp_path / "report" / "mutation.md").read_text()
    # the working tree was not touched
    for m in catalogue.mutants:
        if m.id in END_TO_END:
            assert mutate.ROOT.joinpath(m.file).read_text().count(m.find) == 1


@pytest.mark.regress   # beside the end-to-end run it vouches for (make mutate checks it too)
def test_unmutated_tree_is_not_killed(tmp_path, catalogue):
    """The same selections on a plain copy pass: a mutant's kill is the mutant's doing."""
    tree = mutate.make_tree(tmp_path / "plain")
    for mid in END_TO_END:
        m = next(m for m in catalogue.mutants if m.id == mid)
        for args in m.invocations(catalogue.selections)[:1]:
            outcome, _ = mutate.run_selection(tree, args, 1, 300, tmp_path / "plain.log")
            assert outcome == "pass", (tmp_path / "plain.log").read_text()[-3000:]
    ok, text = mutate.elaborate(tree, ["nmpu", "essop"], 1)
    assert ok, text


def test_coverage_report_fails_on_a_missing_bin(tmp_path, capsys):
    """One run whose coverage requires a bin it never hit: reported by name, exit status 1;
    once hit, closed and 0."""
    run = tmp_path / "sim" / "icarus" / "nmpu_tiny" / "run_x"
    (run / "coverage").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(
        {"unit": "nmpu", "tag": "tiny", "sim": "icarus", "tests": 1, "failed": [], "wall_s": 1,
         "values": 1, "values_per_s": 1, "products": 0}))
    cov = {"name": "x", "hits": {"rail": {"high": 2}}, "required": {"rail": ["high", "low"]}}
    (run / "coverage" / "a.json").write_text(json.dumps(cov))
    assert coverage_report.main(["--build", str(tmp_path)]) == 1
    doc = json.loads((tmp_path / "report" / "coverage.json").read_text())
    assert doc["configs"]["nmpu/tiny"]["missing"] == {"rail": ["low"]}
    assert "`rail`: low" in (tmp_path / "report" / "coverage.md").read_text()
    cov["hits"]["rail"]["low"] = 1
    (run / "coverage" / "b.json").write_text(json.dumps(cov))
    assert coverage_report.main(["--build", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "report" / "coverage.json").read_text())["totals"]["closed"]
