"""`verif.vectors`: golden vectors and a plain Verilog test bench per config. The replay passes
in Icarus with every beat checked and backpressure on both sides, and fails (beat number,
nonzero exit status) when one expected line is wrong or a file is short.

One test per config builds, compiles and runs it once (pass, no-stall pass, corrupted line),
so the configs spread over xdist workers without building twice.
"""

import json
import re

import numpy as np
import pytest

from hdl.export import UNITS, write
from verif import vectors

CASES = [("nmpu", "tiny"), ("essop", "tiny"), ("ldpu", "tiny"), ("fp16outer", "tiny"),
         ("fp16outer", "paper")]
# the full-size case in make regress (make test replays fp16outer `paper` through the same
# Icarus bench in tests/test_fastpath.py::test_fastpath_presets)
REGRESS = {("fp16outer", "paper")}
STALLS = re.compile(r"stalls: (\d+) input gaps, (\d+) clocks input held by i__ready, "
                    r"(\d+) clocks output held by o__ready")


def _data_lines(path):
    """(all lines, indices of the value lines) of a $readmemh file."""
    lines = path.read_text().splitlines()
    return lines, [k for k, line in enumerate(lines) if line and not line.startswith("//")]


@pytest.mark.sim
@pytest.mark.parametrize("unit, preset", [
    pytest.param(u, p, id=f"{u}-{p}", marks=[pytest.mark.regress] if (u, p) in REGRESS else [])
    for u, p in CASES])
def test_replay_icarus(unit, preset, tmp_path):
    m = vectors.generate(unit, UNITS[unit][1][preset], tmp_path)
    folder = tmp_path / f"{unit}_{preset}"
    cfg = UNITS[unit][1][preset]
    n = m["out_beats"]   # vectors of `beats` beats, or products of `rows` beats
    per_item = cfg.rows if unit in ("essop", "fp16outer") else cfg.beats
    assert n == vectors.DEFAULT_COUNT[unit] * per_item
    proc = vectors.compile_tb(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # as generated: every beat matches, the status outputs too, and the outputs were held back
    proc = vectors.run_tb(folder)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.strip().splitlines()[-1] == f"PASS {n} beats", out
    assert "FAIL" not in out
    gaps, in_held, out_held = map(int, STALLS.search(out).groups())
    assert gaps > 0 and out_held > 0, out
    if unit in ("nmpu", "fp16outer"):   # enough beats to outrun the unit's buffers
        assert in_held > 0, out
    proc = vectors.run_tb(folder, "+nostall")
    assert proc.returncode == 0 and proc.stdout.strip().endswith(f"PASS {n} beats"), proc.stdout

    # one expected beat off by one bit: FAIL with its number, a nonzero exit status
    out_hex = folder / "out.hex"
    good = out_hex.read_text()
    lines, data = _data_lines(out_hex)
    assert len(data) == n
    beat = n // 2
    k = data[beat]
    lines[k] = f"{int(lines[k], 16) ^ 1:0{len(lines[k])}x}"
    out_hex.write_text("\n".join(lines) + "\n")
    proc = vectors.run_tb(folder)
    out = proc.stdout
    assert proc.returncode != 0, out
    assert re.search(rf"FAIL beat {beat} \(clock \d+\): expected {lines[k]}, got ", out), out
    assert f"FAIL 1 of {n} beats differ, the first is beat {beat}" in out, out
    assert "PASS" not in out

    # a short expected file is reported before anything runs
    out_hex.write_text("\n".join(good.splitlines()[:-1]) + "\n")
    proc = vectors.run_tb(folder)
    assert proc.returncode != 0, proc.stdout
    assert f"FAIL out.hex: fewer than {n} values" in proc.stdout, proc.stdout


def test_cli_files_and_determinism(tmp_path):
    """The command line writes the folder a newcomer needs; the same seed gives the same files,
    another seed other stimulus."""
    args = ["--unit", "nmpu", "--preset", "tiny", "--count", "3", "--out"]
    vectors.main([*args, str(tmp_path / "a")])
    vectors.main([*args, str(tmp_path / "b")])
    vectors.main([*args, str(tmp_path / "c"), "--seed", "2"])
    a, b, c = (tmp_path / x / "nmpu_tiny" for x in "abc")
    names = {p.name for p in a.iterdir()}
    assert names == {"nmpu_tiny.v", "nmpu_tiny.json", "tb_nmpu_tiny.v", "README.txt",
                     "vectors.json", "in.hex", "layer.hex", "wr_addr.hex", "wr_data.hex", "out.hex"}
    cfg = UNITS["nmpu"][1]["tiny"]
    for name, lines in (("in.hex", 3 * cfg.beats), ("layer.hex", 3 * cfg.beats),
                        ("out.hex", 3 * cfg.beats), ("wr_data.hex", cfg.columns)):
        assert len(_data_lines(a / name)[1]) == lines, name
    for name in ("in.hex", "layer.hex", "out.hex", "wr_data.hex", "tb_nmpu_tiny.v"):
        assert (a / name).read_text() == (b / name).read_text(), name
    assert (a / "in.hex").read_text() != (c / "in.hex").read_text()
    readme = (a / "README.txt").read_text()
    assert "iverilog -g2012 -o sim tb_nmpu_tiny.v nmpu_tiny.v" in readme and "vvp sim" in readme
    m = json.loads((a / "vectors.json").read_text())
    assert (m["in_beats"], m["out_beats"], m["param_writes"]) == (6, 6, 4)
    assert "golden.nmpu.forward" in m["golden"]
    tb = (a / "tb_nmpu_tiny.v").read_text()
    assert "`timescale 1ns/1ps" in tb and "$finish" in tb and "$fatal" in tb
    assert not re.search(r"@[A-Z_]+@", tb)


def test_unknown_input_port_is_refused(tmp_path):
    """A port the generator has no stimulus for stops generation instead of floating."""
    cfg = UNITS["fp16outer"][1]["tiny"]
    v_path, j_path = write("fp16outer", cfg, tmp_path)
    meta = json.loads(j_path.read_text())
    meta["ports"]["mode"] = {"direction": "input", "width": 2, "signed": False}
    head = f"module {meta['module']}("
    text = v_path.read_text().replace(head, head + "mode, ")
    vec = vectors.GENERATORS["fp16outer"](cfg, meta["ports"], np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match="`mode` has no stimulus"):
        vectors._check_ports(meta, vec, text)

