"""Mutation testing of the HDL: does the test suite notice a small fault?

Each mutant of the catalogue (`verif/mutants.toml`) replaces one exact piece of source text in
hdl/ by a faulty one (an operator, a constant, a dropped rounding increment, a tied-off enable, a
bypassed register, swapped lanes ...). The runner applies it to a copy of the source tree in
`build/mutate/<id>/` (the working tree is never touched, so mutants run in parallel), checks
that the mutated units still elaborate, then runs the mutant's pytest selection there:

    killed    a selection fails (or hangs past its timeout: `timeout`, counted as killed)
    error     the mutant does not elaborate (killed by elaboration, reported apart)
    survived  every selection passes: the tests do not see the fault

Before the mutants, every selection they use runs once on an unmutated copy (`_baseline`): it
must pass, or the harness could not tell a mutant from a broken test. Its time sets the
selections' timeouts. Mutants marked `equivalent = "reason"` (no test can see them: the fault
does not change any output) are listed with their reason and left out of the kill rate.

    python -m verif.mutate [--only ID ...] [--jobs N] [--list] [--keep]

Writes `build/report/mutation.json` and `mutation.md`; the exit status is 1 when the kill rate
is below --min-rate (0.95), 2 when the catalogue or the harness is broken.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ROOT", "CATALOGUE", "UNITS", "Mutant", "CatalogueError", "load", "make_tree",
           "run_selection", "run_mutant", "run", "main"]

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "verif" / "mutants.toml"
# What a mutant copy needs to run the tests: the packages and the pytest set-up.
TREE = ("hdl", "golden", "verif", "tests", "formal", "synth", "pyproject.toml")
# unit of a mutant -> the units whose tiny presets must still elaborate
UNITS = {"nmpu": ("nmpu",), "essop": ("essop",), "ldpu": ("ldpu",), "fp16outer": ("fp16outer",),
         "fp16": ("ldpu", "fp16outer"), "common": ("nmpu", "ldpu")}
FIELDS = {"id", "unit", "file", "find", "replace", "description", "tests", "equivalent", "timeout"}
STATUSES = ("killed", "timeout", "error", "survived", "equivalent")


class CatalogueError(ValueError):
    """The catalogue is malformed or a mutant's pattern does not match exactly once."""


@dataclass(frozen=True)
class Mutant:
    id: str
    unit: str
    file: str
    find: str
    replace: str
    description: str
    tests: tuple            # names of [selection] entries or pytest node ids, tried in order
    equivalent: str = ""
    timeout: float = 0.0    # seconds per selection; 0: from the baseline

    def invocations(self, selections):
        """The pytest argument lists to run, in order: each named selection on its own,
        consecutive explicit node ids together."""
        out, nodes = [], None
        for t in self.tests:
            if t in selections:
                out.append(tuple(selections[t]))
                nodes = None
            elif nodes is None:
                nodes = [t]
                out.append((t,))
            else:
                nodes.append(t)
                out[-1] = tuple(nodes)
        return out


@dataclass
class Catalogue:
    mutants: list
    selections: dict = field(default_factory=dict)


def load(path=CATALOGUE, root=ROOT):
    """Read and validate the catalogue: known fields and units, unique ids, every `find`
    present exactly once in its file of `root`, a different `replace`, known test selections.
    Raises CatalogueError naming the mutant."""
    doc = tomllib.loads(Path(path).read_text())
    selections = {k: list(v) for k, v in doc.get("selection", {}).items()}
    for name, args in selections.items():
        if not args or not all(isinstance(a, str) for a in args):
            raise CatalogueError(f"selection {name!r}: a non-empty list of pytest arguments")
    mutants, seen = [], set()
    for k, entry in enumerate(doc.get("mutant", [])):
        mid = entry.get("id", f"#{k}")
        where = f"mutant {mid!r}"
        unknown = set(entry) - FIELDS
        if unknown:
            raise CatalogueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        missing = {"id", "unit", "file", "find", "replace", "description", "tests"} - set(entry)
        if missing:
            raise CatalogueError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
        if mid in seen:
            raise CatalogueError(f"{where}: duplicate id")
        seen.add(mid)
        if not mid.replace("-", "").replace("_", "").isalnum():
            raise CatalogueError(f"{where}: id must be letters, digits, '-' or '_'")
        if entry["unit"] not in UNITS:
            raise CatalogueError(f"{where}: unknown unit {entry['unit']!r}; units: {', '.join(UNITS)}")
        if entry["find"] == entry["replace"]:
            raise CatalogueError(f"{where}: `replace` equals `find`")
        src = Path(root) / entry["file"]
        if not src.is_file():
            raise CatalogueError(f"{where}: no file {entry['file']}")
        hits = src.read_text().count(entry["find"])
        if hits != 1:
            raise CatalogueError(f"{where}: `find` must match exactly once in {entry['file']}, "
                                 f"matches {hits} times: {entry['find']!r}")
        tests = entry["tests"]
        if isinstance(tests, str):
            tests = [tests]
        if not tests:
            raise CatalogueError(f"{where}: no tests")
        for t in tests:
            if t not in selections and not t.startswith("tests/"):
                raise CatalogueError(f"{where}: {t!r} is neither a selection nor a tests/ node id")
        mutants.append(Mutant(id=mid, unit=entry["unit"], file=entry["file"], find=entry["find"],
                              replace=entry["replace"], description=entry["description"],
                              tests=tuple(tests), equivalent=entry.get("equivalent", ""),
                              timeout=float(entry.get("timeout", 0))))
    return Catalogue(mutants, selections)


def make_tree(dest, root=ROOT, mutant=None):
    """A fresh copy of the source tree in `dest` (no build/, no caches), with `mutant` applied."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in TREE:
        src = Path(root) / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    if mutant is not None:
        path = dest / mutant.file
        text = path.read_text()
        if text.count(mutant.find) != 1:
            raise CatalogueError(f"mutant {mutant.id!r}: `find` does not match exactly once")
        path.write_text(text.replace(mutant.find, mutant.replace))
    return dest


def _env(tree, seed):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["TB_SEED"] = str(seed)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


# Elaborates the tiny preset of each given unit and variants of it that take the other
# branches of the generator (double buffer, per-converter LFSRs, one scale block, signed input,
# no residual). A mutant that breaks this is reported as `error` (killed by elaboration). Run
# in the copy's own interpreter.
_ELABORATE = """
import dataclasses, sys
from amaranth.back import rtlil
import hdl, hdl.export
assert hdl.__file__.startswith(sys.argv[1]), f"imported {hdl.__file__}, not the copy's"
VARIANTS = {"nmpu": [dict(input_mode="signed", residual=False, exp_bits=0)],
            "essop": [dict(double_buffer=True, rng="per_converter")],
            "ldpu": [dict(scale_blocks=1, residual=False)], "fp16outer": [dict(rows=1)]}
for unit in sys.argv[2:]:
    cfg_cls, presets, cls = hdl.export.UNITS[unit]
    tiny = presets["tiny"]
    for fields in [{}] + VARIANTS[unit]:
        rtlil.convert(cls(dataclasses.replace(tiny, **fields)), name=unit)
"""


def elaborate(tree, units, seed, timeout=300):
    """(ok, output) of elaborating the tiny presets of `units` (and their variants) in `tree`."""
    cmd = [sys.executable, "-c", _ELABORATE, str(tree), *units]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=_env(tree, seed), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "elaboration timed out"
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def run_selection(tree, args, seed, timeout, log):
    """Run pytest with `args` in `tree`; returns (outcome, seconds) with outcome 'pass',
    'fail' (a test failed or did not collect), 'timeout', or 'harness' (no tests, bad args)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "--no-header", *args]
    t0 = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=tree, env=_env(tree, seed), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)    # the session of this pytest only (simulators included)
            proc.wait()
            out.write(f"\n[mutate] timed out after {timeout:.0f} s\n")
            return "timeout", time.perf_counter() - t0
    dt = time.perf_counter() - t0
    # pytest: 0 passed, 1 tests failed, 2 interrupted (a collection error), 3 internal error,
    # 4 usage error, 5 no tests collected
    return {0: "pass", 1: "fail", 2: "fail", 3: "fail"}.get(rc, "harness"), dt


def run_mutant(m, cat, work, seed, timeouts, keep=False):
    """Apply `m` to a copy in work/<id> and run it; returns its result dict."""
    tree = work / m.id
    t0 = time.perf_counter()
    make_tree(tree, mutant=m)
    log = tree / "mutate.log"
    log.write_text(f"mutant {m.id}: {m.description}\n{m.file}: {m.find!r} -> {m.replace!r}\n")
    result = {"id": m.id, "unit": m.unit, "file": m.file, "description": m.description,
              "status": "survived", "killed_by": None, "log": str(log)}
    ok, text = elaborate(tree, UNITS[m.unit], seed)
    if not ok:
        with open(log, "a") as out:
            out.write(f"[mutate] does not elaborate:\n{text}\n")
        result.update(status="error", killed_by="elaboration", detail=text.strip().splitlines()[-1:])
    else:
        for args in m.invocations(cat.selections):
            outcome, _ = run_selection(tree, args, seed, m.timeout or timeouts[args], log)
            if outcome == "harness":
                result.update(status="harness", killed_by=" ".join(args))
                break
            if outcome in ("fail", "timeout"):
                result.update(status="killed" if outcome == "fail" else "timeout",
                              killed_by=" ".join(args))
                break
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not keep:
        for name in TREE:     # keep the log (and the simulator logs under build/)
            p = tree / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return result


def baseline(cat, mutants, work, seed, jobs, log=print, engine=None):
    """Run every selection the mutants use on an unmutated copy, on the engine (a local cluster
    of `jobs` workers unless `engine` is given); returns {args: timeout}.
    Raises RuntimeError when one does not pass (the harness could not fail a mutant)."""
    needed = []
    for m in mutants:
        for args in m.invocations(cat.selections):
            if args not in needed:
                needed.append(args)
    tree = make_tree(work / "_baseline")
    logf = tree / "mutate.log"
    ok, text = elaborate(tree, sorted({u for us in UNITS.values() for u in us}), seed)
    if not ok:
        raise RuntimeError(f"the unmutated tree does not elaborate:\n{text}")
    timeouts = {}
    with _engine(engine, jobs) as eng:
        for out in eng.map(run_selection, needed, args=lambda a: (tree, a, seed, 1800, logf),
                           mem_gb=MUTANT_MEM_GB):
            if not out.ok:
                raise RuntimeError(f"baseline {' '.join(out.item)}: {out.error}")
            args, (outcome, dt) = out.item, out.value
            log(f"  baseline {outcome:<8} {dt:6.1f} s  {' '.join(args)}")
            if outcome != "pass":
                raise RuntimeError(f"selection {' '.join(args)!r} does not pass on the unmutated "
                                   f"tree ({outcome}); see {logf}")
            # generous: a loaded machine, and a mutant's build of its own simulator model
            timeouts[args] = max(120.0, 4 * dt)
    return timeouts


# Memory one mutant's test run may need on a worker (engine resource `MEM`, GB).
MUTANT_MEM_GB = 1.0


class _engine:
    """The given engine, or a local one of `jobs` workers for the duration of a `with`."""

    def __init__(self, engine, jobs):
        self.given, self.jobs, self.eng = engine, jobs, engine

    def __enter__(self):
        if self.eng is None:
            from engine.executor import Engine
            self.eng = Engine(workers=max(1, self.jobs), progress=False)
        return self.eng

    def __exit__(self, *exc):
        if self.given is None:
            self.eng.close()


def run(cat, mutants, work, seed, jobs=1, keep=False, log=print, engine=None):
    """Baseline, then every mutant (equivalent ones are listed, not run), on the engine (a local
    cluster of `jobs` worker processes unless `engine` is given). Returns the results."""
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    active = [m for m in mutants if not m.equivalent]
    with _engine(engine, jobs) as eng:
        return _run(cat, mutants, active, work, seed, keep, log, eng)


def _run(cat, mutants, active, work, seed, keep, log, eng):
    timeouts = baseline(cat, active, work, seed, 1, log, eng) if active else {}
    results = [{"id": m.id, "unit": m.unit, "file": m.file, "description": m.description,
                "status": "equivalent", "reason": m.equivalent, "seconds": 0.0}
               for m in mutants if m.equivalent]
    done = 0
    for out in eng.map(run_mutant, active, args=lambda m: (m, cat, work, seed, timeouts, keep),
                       mem_gb=MUTANT_MEM_GB):
        if not out.ok:
            raise RuntimeError(f"mutant {out.item.id}: {out.error}")
        r = out.value
        done += 1
        log(f"  [{done:>3}/{len(active)}] {r['status']:<9} {r['seconds']:6.1f} s  {r['id']}"
            + (f"  ({r['killed_by']})" if r["killed_by"] else ""))
        results.append(r)
    order = {m.id: k for k, m in enumerate(mutants)}
    return sorted(results, key=lambda r: order[r["id"]])


def tally(results):
    """Counts and kill rate (killed, timeouts and elaboration errors over non-equivalent)."""
    n = {s: sum(r["status"] == s for r in results) for s in (*STATUSES, "harness")}
    scored = len(results) - n["equivalent"]
    caught = n["killed"] + n["timeout"] + n["error"]
    return dict(n, total=len(results), scored=scored, caught=caught,
                kill_rate=round(caught / scored, 4) if scored else 1.0)


def report(results, out_dir, seed, wall, jobs, subset):
    out_dir.mkdir(parents=True, exist_ok=True)
    total = tally(results)
    units = {}
    for unit in UNITS:
        rs = [r for r in results if r["unit"] == unit]
        if rs:
            units[unit] = tally(rs)
    doc = {"seed": seed, "wall_s": round(wall, 1), "jobs": jobs, "subset": subset,
           "totals": total, "units": units, "mutants": results}
    (out_dir / "mutation.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Mutation score", "",
             f"{total['caught']} of {total['scored']} mutants killed: **{100 * total['kill_rate']:.1f} %** "
             f"({total['killed']} by a failing test, {total['timeout']} by a hang past the timeout, "
             f"{total['error']} by elaboration); {total['survived']} survived, "
             f"{total['equivalent']} equivalent (not counted). "
             f"Seed TB_SEED={seed}, {jobs} job(s), {wall / 60:.1f} min wall"
             + (" (a subset: --only)." if subset else "."), "",
             "| unit | mutants | killed | timeout | elaboration | survived | equivalent | kill rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for unit, t in units.items():
        lines.append(f"| {unit} | {t['total']} | {t['killed']} | {t['timeout']} | {t['error']} | "
                     f"{t['survived']} | {t['equivalent']} | {100 * t['kill_rate']:.1f} % |")
    lines.append(f"| **all** | {total['total']} | {total['killed']} | {total['timeout']} | "
                 f"{total['error']} | {total['survived']} | {total['equivalent']} | "
                 f"**{100 * total['kill_rate']:.1f} %** |")
    surv = [r for r in results if r["status"] in ("survived", "harness")]
    lines += ["", "## Survivors", ""]
    lines += [f"- `{r['id']}` ({r['unit']}, {r['file']}): {r['description']}"
              + (" — HARNESS ERROR" if r["status"] == "harness" else "") for r in surv] or ["none"]
    eq = [r for r in results if r["status"] == "equivalent"]
    lines += ["", "## Equivalent mutants (not counted)", ""]
    lines += [f"- `{r['id']}` ({r['unit']}): {r['description']} — {r['reason']}" for r in eq] or ["none"]
    lines += ["", "## Every mutant", "", "| id | unit | status | killed by | s | fault |",
              "|---|---|---|---|---:|---|"]
    for r in results:
        lines.append(f"| `{r['id']}` | {r['unit']} | {r['status']} | {r.get('killed_by') or ''} | "
                     f"{r['seconds']} | {r['description']} |")
    (out_dir / "mutation.md").write_text("\n".join(lines) + "\n")
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", action="extend", metavar="ID", help="run these mutants")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run in parallel")
    ap.add_argument("--list", action="store_true", help="validate and list the catalogue")
    ap.add_argument("--keep", action="store_true", help="keep the mutated copies")
    ap.add_argument("--catalogue", type=Path, default=CATALOGUE)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "mutate")
    ap.add_argument("--report", type=Path, default=ROOT / "build" / "report")
    ap.add_argument("--min-rate", type=float, default=0.95, help="fail below this kill rate")
    args = ap.parse_args(argv)
    try:
        cat = load(args.catalogue)
    except CatalogueError as exc:
        print(f"{args.catalogue}: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for m in cat.mutants:
            tag = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
            print(f"{m.id:<28} {m.unit:<10} {m.file:<16} {m.description}{tag}")
        print(f"{len(cat.mutants)} mutants, catalogue valid")
        return 0
    mutants = cat.mutants
    if args.only:
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            print(f"unknown mutant(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in args.only]
    seed = int(os.environ.get("TB_SEED", "20261124"))
    print(f"seed: TB_SEED={seed}; {len(mutants)} mutants, {args.jobs} job(s); work in {args.work}",
          flush=True)
    t0 = time.perf_counter()
    try:
        results = run(cat, mutants, args.work, seed, args.jobs, args.keep,
                      log=lambda s: print(s, flush=True))
    except RuntimeError as exc:
        print(f"harness error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    total = report(results, args.report, seed, wall, args.jobs, bool(args.only))
    print(f"{total['caught']}/{total['scored']} killed ({100 * total['kill_rate']:.1f} %), "
          f"{total['survived']} survived, {total['equivalent']} equivalent, {wall:.0f} s; "
          f"report: {args.report / 'mutation.md'}")
    if total["harness"]:
        return 2
    return 1 if total["kill_rate"] < args.min_rate else 0


if __name__ == "__main__":
    sys.exit(main())
