"""The `aimc` command (aimc/cli.py, aimc/schema.py) and the `--config` path of hdl.export.

main() runs in-process (one subprocess test of the installed entry point); simulation and
synthesis run on `tiny` presets only, one cheap cocotb test and one tiny synthesis.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from aimc import cli, schema
from hdl import config as hdl_config
from hdl import export
from hdl.export import UNITS


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files_under(path):
    path = Path(path)
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def subcommands():
    action = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


# -- help and presets ---------------------------------------------------------------------------

def test_subcommands_are_the_documented_ones():
    assert set(subcommands()) == {"presets", "schema", "generate", "sim", "synth", "report",
                                  "explore"}


@pytest.mark.parametrize("command", [None, *subcommands()])
def test_help_of_every_subcommand(capsys, command):
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0
    if command == "explore":        # the search's own parser (studies/explore.py) answers
        assert out.startswith("usage: ") and "--trials" in out
        return
    assert out.startswith(f"usage: aimc {command or ''}".rstrip())
    if command in ("generate", "sim", "synth"):
        assert "CONFIG" in out and "--unit" in out and "--preset" in out


def test_no_subcommand_is_a_usage_error(capsys):
    code, _, err = run(capsys)
    assert code == cli.EXIT_INPUT and "COMMAND" in err


@pytest.mark.parametrize("argv", [["presets", "--bogus"], ["explore", "--bogus"]])
def test_unknown_option_is_a_usage_error(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == cli.EXIT_INPUT and "unrecognized arguments: --bogus" in err


def test_presets_json_lists_every_preset_with_its_derived_widths(capsys):
    code, out, _ = run(capsys, "presets", "--json")
    assert code == 0
    rows = {(r["unit"], r["preset"]): r for r in json.loads(out)}
    units = cli._units()        # the four units and the periphery tops of hdl.export
    assert set(units) >= set(UNITS)
    assert set(rows) == {(u, p) for u, (_, presets, _) in units.items() for p in presets}
    for (u, p), r in rows.items():
        cfg = units[u][1][p]
        assert r["derived"] == json.loads(json.dumps(cfg.derived()))
        assert r["config"] == cfg.to_dict()
    assert rows[("nmpu", "paper")]["description"] == "the defaults"
    assert rows[("nmpu", "serial")]["description"] == "lanes=1"


def test_presets_text_and_unknown_unit(capsys):
    code, out, _ = run(capsys, "presets", "--unit", "essop")
    assert code == 0 and "essop (ESSOP):" in out and "nmpu" not in out
    assert all(f"  {p} " in out for p in UNITS["essop"][1])
    code, _, err = run(capsys, "presets", "--unit", "xpu")
    assert code == cli.EXIT_INPUT and "unknown unit 'xpu'" in err and "nmpu" in err


# -- the schema ----------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", sorted(UNITS))
def test_schema_has_every_field_and_takes_every_preset(unit):
    sch = schema.unit_schema(unit)
    jsonschema.Draft202012Validator.check_schema(sch)
    fields = [f.name for f in dataclasses.fields(UNITS[unit][0])]
    assert list(sch["properties"]) == ["unit", *fields]
    for f in dataclasses.fields(UNITS[unit][0]):
        assert sch["properties"][f.name]["default"] == f.default
    validator = jsonschema.Draft202012Validator(sch)
    for cfg in UNITS[unit][1].values():
        assert not list(validator.iter_errors({"unit": unit, **cfg.to_dict()}))
    other = next(u for u in sorted(UNITS) if u != unit)
    assert list(validator.iter_errors({"unit": other}))


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_schema_ranges_are_the_configs_own(unit):
    """Every published bound is where the config itself starts refusing the field."""
    cls = UNITS[unit][0]
    props = schema.unit_schema(unit)["properties"]
    bounded = [(k, p) for k, p in props.items() if "minimum" in p or "maximum" in p]
    assert bounded, f"no integer ranges published for {unit}"
    for name, p in bounded:
        bad = [p["minimum"] - 1] if "minimum" in p else []
        bad += [p["maximum"] + 1] if "maximum" in p else []
        for value in bad:
            with pytest.raises(ValueError, match=f"`{name}` must be in \\["):
                cls(**{name: value})


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_schema_takes_random_valid_configs(unit, seed):
    """The schema never refuses a config the dataclass takes (bounds that depend on other
    fields are left to the dataclass)."""
    from verif import configs
    validator = jsonschema.Draft202012Validator(schema.unit_schema(unit))
    for cfg in getattr(configs, f"random_{unit}_configs")(seed, 25):
        assert not [e.message for e in validator.iter_errors({"unit": unit, **cfg.to_dict()})]


def test_schema_picks_up_a_new_field_and_its_range(monkeypatch):
    base = UNITS["nmpu"][0]

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithKnobs(base):
        knob: int = 3
        per_lane: int = 0

        def __post_init__(self):
            super().__post_init__()
            hdl_config._check_int("knob", self.knob, 1, 9)
            hdl_config._check_int("per_lane", self.per_lane, 0, self.lanes - 1)

    monkeypatch.setitem(UNITS, "nmpu", (WithKnobs, {}, UNITS["nmpu"][2]))
    schema.unit_schema.cache_clear()
    try:
        props = schema.unit_schema("nmpu")["properties"]
    finally:
        schema.unit_schema.cache_clear()
    assert props["knob"] == {"type": "integer", "default": 3, "minimum": 1, "maximum": 9,
                             "examples": []}
    assert props["per_lane"]["minimum"] == 0 and "maximum" not in props["per_lane"]
    assert "depends on other fields" in props["per_lane"]["description"]
    assert hdl_config._check_int.__name__ == "_check_int"      # the watch is undone


def test_schema_command_writes_one_file_per_unit(capsys, tmp_path):
    code, out, _ = run(capsys, "schema", "--out", tmp_path / "s")
    assert code == 0
    for unit in UNITS:
        path = tmp_path / "s" / f"{unit}.schema.json"
        assert json.loads(path.read_text()) == schema.unit_schema(unit)
        assert str(path) in out
    code, out, _ = run(capsys, "schema", "--unit", "ldpu", "--print")
    assert code == 0 and json.loads(out)["properties"]["unit"] == {
        "const": "ldpu", "description": "the unit this file configures"}


# -- bad input: a message naming file, field and range; nothing written ------------------------

BAD = [
    ("unknown_field.json", '{"unit": "nmpu", "lanes": 2, "rows": 4}',
     ["unknown_field.json", "unknown NMPU field(s) 'rows'", "fields: unit, name, columns"]),
    ("out_of_range.toml", 'unit = "nmpu"\nadc_bits = 30\n',
     ["out_of_range.toml", "field `adc_bits` must be in [1, 24], not 30"]),
    ("wrong_type.json", '{"unit": "essop", "rows": "4", "double_buffer": 1}',
     ["wrong_type.json", 'field `rows` must be an integer, not string "4"',
      "field `double_buffer` must be a boolean, not integer 1"]),
    ("float.toml", 'unit = "ldpu"\ncolumns = 4.0\n',
     ["float.toml", "`columns` must be an int, not float 4.0"]),  # JSON Schema: 4.0 is an integer
    ("malformed.json", '{"unit": "nmpu", "lanes": 2',
     ["malformed.json", "malformed JSON", "line 1 column"]),
    ("malformed.toml", 'unit = "nmpu"\nlanes = = 2\n',
     ["malformed.toml", "malformed TOML", "line 2"]),
    ("unknown_unit.json", '{"unit": "xpu"}',
     ["unknown_unit.json", "field `unit` must be one of essop, fp16outer, ldpu, nmpu", '"xpu"']),
    ("no_unit.json", '{"lanes": 2}', ["no_unit.json", "no `unit` field"]),
    ("cross_field.toml", 'unit = "nmpu"\ncolumns = 256\nlanes = 48\n',
     ["cross_field.toml", "`lanes` must divide `columns` (256), not 48"]),
    ("list.json", '[1, 2]', ["list.json", "one object/table", "not a list"]),
    ("suffix.yaml", 'unit: nmpu', ["suffix.yaml", "must end in .json or .toml"]),
]


@pytest.mark.parametrize("name,text,messages", BAD, ids=[b[0] for b in BAD])
def test_bad_config_file_is_named_and_nothing_is_written(capsys, tmp_path, name, text, messages):
    path = tmp_path / name
    path.write_text(text)
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "generate", path, "--out", out_dir, "--json")
    assert code == cli.EXIT_INPUT
    assert out == ""
    for m in messages:
        assert m in err
    assert not out_dir.exists()


def test_config_file_for_a_top_is_refused(capsys, tmp_path):
    tops = getattr(export, "TOPS", {})
    if not tops:
        pytest.skip("no periphery tops registered in hdl.export")
    top = sorted(tops)[0]
    path = tmp_path / "top.json"
    path.write_text(json.dumps({"unit": top}))
    code, _, err = run(capsys, "generate", path, "--out", tmp_path / "out")
    assert code == cli.EXIT_INPUT and f"{top!r} is built from its presets" in err
    assert not (tmp_path / "out").exists()


def test_file_for_another_unit(capsys, tmp_path):
    path = tmp_path / "essop.toml"
    path.write_text('unit = "essop"\nrows = 4\n')
    code, _, err = run(capsys, "generate", path, "--unit", "nmpu", "--out", tmp_path / "out")
    assert code == cli.EXIT_INPUT
    assert f"{path}: this is a file for unit 'essop', not 'nmpu'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["generate", "--unit", "xpu"], "--unit: unknown unit 'xpu'; units: essop, fp16outer"),
    (["generate", "--unit", "nmpu", "--preset", "huge"],
     "unknown nmpu preset(s) huge; presets: paper"),
    (["generate"], "say what to build"),
    (["generate", "--all", "--preset", "tiny"], "--all takes no --preset"),
    (["sim", "--unit", "nmpu"], "--unit nmpu needs --preset NAME"),
    (["sim", "--unit", "nmpu", "--preset", "tiny", "--preset", "paper"], "one config"),
    (["synth", "--unit", "ldpu", "--preset", "nope"], "unknown ldpu preset(s) nope"),
    (["sim", "missing.toml"], "missing.toml: cannot read"),
])
def test_bad_names_are_usage_errors(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, *(["--out", tmp_path / "o"] if argv[0] == "generate" else []))
    assert code == cli.EXIT_INPUT
    assert message in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["sim", "synth"])
def test_sim_and_synth_check_the_file_before_running(capsys, tmp_path, command):
    path = tmp_path / "bad.json"
    path.write_text('{"unit": "nmpu", "lanes": 0}')
    code, _, err = run(capsys, command, path)
    assert code == cli.EXIT_INPUT
    assert "bad.json: field `lanes` must be in [1, 4096], not 0" in err


# -- generate ------------------------------------------------------------------------------------

def test_generate_tiny_presets_json(capsys, tmp_path):
    out_dir = tmp_path / "v"
    code, out, _ = run(capsys, "generate", "--all", "--preset", "tiny", "--out", out_dir)
    assert code == cli.EXIT_INPUT       # --all means every preset; --unit picks units
    argv = ["generate", "--preset", "tiny", "--out", out_dir, "--json"]
    for u in ("nmpu", "essop", "ldpu", "fp16outer"):
        argv += ["--unit", u]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    doc = json.loads(out)
    assert [r["unit"] for r in doc["results"]] == ["nmpu", "essop", "ldpu", "fp16outer"]
    assert sorted(doc["written"]) == sorted(str(p) for p in files_under(out_dir))
    for r in doc["results"]:
        meta = json.loads(Path(r["json"]).read_text())
        assert meta["module"] == r["module"] and meta["config"] == UNITS[r["unit"]][1]["tiny"].to_dict()


def test_generate_config_file_and_lint(capsys, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('unit = "nmpu"\nname = "mine"\ncolumns = 8\nlanes = 4\nadc_bits = 4\n'
                    'out_bits = 6\nexp_bits = 1\n')
    out_dir = tmp_path / "v"
    code, out, err = run(capsys, "generate", path, "--lint", "--out", out_dir)
    assert code == 0, err
    cfg = UNITS["nmpu"][0](name="mine", columns=8, lanes=4, adc_bits=4, out_bits=6, exp_bits=1)
    v_path = out_dir / f"nmpu_{cfg.tag}.v"
    assert "lint clean" in out
    assert out.splitlines()[-2:] == [f"  {v_path}", f"  {v_path.with_suffix('.json')}"]
    assert json.loads(v_path.with_suffix(".json").read_text())["config"] == cfg.to_dict()
    # the same fields as JSON give the same config, hence the same tag
    (tmp_path / "mine.json").write_text(json.dumps({"unit": "nmpu", **cfg.to_dict()}))
    code, out, _ = run(capsys, "generate", tmp_path / "mine.json", "--out", out_dir, "--json")
    assert code == 0 and json.loads(out)["results"][0]["tag"] == cfg.tag


def test_generate_lists_what_the_writer_puts_beside_the_verilog(capsys, tmp_path, monkeypatch):
    """Files a writer adds for a config (a periphery top's FuseSoC core, register map) are
    listed with the Verilog; older files of other configs are not."""
    write = export.write
    (tmp_path / "fp16outer_paper.v").write_text("// an older file of another config\n")

    def write_with_extras(unit, cfg, out_dir):
        paths = write(unit, cfg, out_dir)
        (Path(out_dir) / f"{unit}_{cfg.tag}.core").write_text("CAPI=2:\n")
        (Path(out_dir) / f"{unit}_{cfg.tag}_regs").mkdir(exist_ok=True)
        return paths
    monkeypatch.setattr(export, "write", write_with_extras)
    code, out, _ = run(capsys, "generate", "--unit", "fp16outer", "--preset", "tiny", "--out",
                       tmp_path, "--json")
    assert code == 0
    assert sorted(json.loads(out)["written"]) == [
        str(tmp_path / f"fp16outer_tiny{s}") for s in (".core", ".json", ".v", "_regs")]


def test_generate_reports_a_lint_failure(capsys, tmp_path, monkeypatch):
    """A failing lint is exit 1 with Verilator's text (a planted failure: the checker can fail)."""
    monkeypatch.setattr(export, "lint", lambda v, m: (False, "%Warning-PLANTED: planted"))
    code, out, err = run(capsys, "generate", "--unit", "fp16outer", "--preset", "tiny", "--lint",
                         "--out", tmp_path)
    assert code == cli.EXIT_FAILED
    assert "LINT FAILED" in out and "PLANTED" in err and "1 file(s) failed lint" in err


# -- hdl.export --config (issue 19: a file for one unit wrote Verilog for the others) -----------

def test_export_config_writes_only_the_files_unit(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"unit": "fp16outer", "name": "mine", "rows": 2, "cols": 2}))
    export.main(["--config", str(path), "--out", str(tmp_path / "v")])
    tag = UNITS["fp16outer"][0](name="mine", rows=2, cols=2).tag
    assert [p.name for p in files_under(tmp_path / "v")] == [f"fp16outer_{tag}.json",
                                                             f"fp16outer_{tag}.v"]


def test_export_bad_config_writes_nothing(tmp_path):
    path = tmp_path / "nmpu.json"
    path.write_text(json.dumps({"unit": "nmpu", "rows": 4}))
    with pytest.raises(SystemExit, match="unknown NMPU field\\(s\\) 'rows'"):
        export.main(["--config", str(path), "--out", str(tmp_path / "v")])
    assert not (tmp_path / "v").exists()


# -- sim, synth, report on tiny presets ----------------------------------------------------------

def test_sim_tiny_on_icarus(capsys):
    code, out, err = run(capsys, "sim", "--unit", "fp16outer", "--preset", "tiny", "--sim",
                         "icarus", "--seed", 7, "--testcase", "throughput", "--json")
    assert code == 0, err
    doc = json.loads(out)
    (r,) = doc["results"]
    assert r["passed"] and r["sim"] == "icarus" and r["tests"] >= 1 and r["values"] > 0
    assert r["seed"] == 7 and Path(r["log"]).is_file()


def test_sim_failure_is_exit_1(capsys, monkeypatch):
    import verif.runner

    def failing(unit, cfg, sim, seed, testcase=None):
        raise AssertionError(f"{unit} {cfg.tag} on {sim}: 1 of 3 cocotb tests failed: planted")
    monkeypatch.setattr(verif.runner, "run_bench", failing)
    code, out, err = run(capsys, "sim", "--unit", "nmpu", "--preset", "tiny", "--sim", "both")
    assert code == cli.EXIT_FAILED
    assert out.count("FAILED: nmpu tiny on") == 2 and "simulation failed on icarus, verilator" in err


def test_synth_and_report_tiny(capsys, tmp_path):
    build = tmp_path / "build"
    code, out, err = run(capsys, "synth", "--unit", "nmpu", "--preset", "tiny", "--json",
                         "--out", build / "synth", "--report", build / "report")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["synth"]["unit"] == "nmpu" and doc["synth"]["preset"] == "tiny"
    assert doc["synth"]["area_um2"] > 0 and doc["synth"]["fmax_mhz"] > 0
    assert doc["ppa"]["area_um2"] == doc["synth"]["area_um2"]
    rows = json.loads((build / "report" / "synth.json").read_text())
    assert [(r["unit"], r["preset"]) for r in rows] == [("nmpu", "tiny")]
    code, out, err = run(capsys, "report", "--build", build, "--no-breakdown")
    assert code == 0, err
    assert (build / "report" / "ppa.md").is_file() and "ppa.json" in out


def test_report_without_synthesis(capsys, tmp_path):
    code, _, err = run(capsys, "report", "--build", tmp_path, "--no-breakdown")
    assert code == cli.EXIT_INPUT and "no synthesis report" in err
    assert files_under(tmp_path) == []


# -- the installed entry point -------------------------------------------------------------------

def test_installed_entry_point(tmp_path):
    exe = Path(sys.executable).with_name("aimc")
    assert exe.is_file(), "the aimc console script is not installed: pip install -e '.[dev]'"
    proc = subprocess.run([str(exe), "presets", "--json", "--unit", "nmpu"], capture_output=True,
                          text=True, cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert {r["preset"] for r in json.loads(proc.stdout)} == set(UNITS["nmpu"][1])
    bad = tmp_path / "bad.toml"
    bad.write_text('unit = "ldpu"\nadc_bits = 16\n')
    proc = subprocess.run([str(exe), "generate", str(bad)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == cli.EXIT_INPUT
    assert "bad.toml: field `adc_bits` must be in [1, 15], not 16" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]
