"""The committed PPA baseline: area and f_max of every unit × preset, with tolerances.

    python -m synth.baseline check [--report build/report/synth.json] [--all]
    python -m synth.baseline update --reason "why the numbers moved"

`check` compares the rows of a synthesis report (`make synth`) against `synth/baseline.json`
and exits non-zero naming every preset whose area or f_max moved past its tolerance, in either
direction (an unexpected improvement is as suspicious as a loss: a dropped stage also makes a
unit smaller and faster); `--all` also fails when a preset of the baseline is missing from the
report. `update` is the deliberate step: it rewrites the baseline from a report holding every
preset of every unit, made with the same tool versions, and records the reason given (and the
git commit) in the file, so the history of the numbers is in `git log -p synth/baseline.json`.
`tests/test_synth_baseline.py` synthesises the tiny presets and checks them against it.
Energy per item (`make power`, build/report/power.json next to the synthesis report) enters
the rows with its own tolerance once `make baseline` records it.
"""

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from synth import flow

__all__ = ["BASELINE", "TOLERANCE", "load", "key", "compare", "make_baseline", "main"]

BASELINE = Path(__file__).resolve().parent / "baseline.json"
# Yosys + ABC + OpenSTA are deterministic for a given netlist and tool version: the tolerances
# allow a tool update's small moves, not a design change (one more 8-bit register in the tiny
# NMPU is 3 % of its area).
TOLERANCE = {"area_rel": 0.01, "fmax_rel": 0.03, "energy_rel": 0.05}
QUANTITIES = (("area_um2", "area_rel", "µm²"), ("fmax_mhz", "fmax_rel", "MHz"))
# Energy per item (synth/power.py, `make power`): a fixed stimulus through a deterministic
# netlist and simulator, so the tolerance only covers tool updates; a baseline made before
# energy was measured has no entry, and `check` says so instead of passing it silently.
ENERGY = ("pj_per_item", "energy_rel", "pJ")


def key(row):
    return f"{row['unit']}/{row['preset']}"


def load(path=BASELINE):
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no PPA baseline at {path}: make one with `make baseline`") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    for field in ("tolerance", "rows"):
        if field not in data:
            raise ValueError(f"{path}: missing `{field}`")
    for name, tol in data["tolerance"].items():
        if not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise ValueError(f"{path}: tolerance `{name}` must be a fraction in (0, 1), not {tol!r}")
    for k, row in data["rows"].items():
        for q, t, _ in QUANTITIES:
            v = row.get(q)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{path}: `{q}` of {k} must be a positive number, not {v!r}")
            if t not in {**data["tolerance"], **row.get("tolerance", {})}:
                raise ValueError(f"{path}: no tolerance `{t}` for {k}")
        if ENERGY[0] in row:
            v = row[ENERGY[0]]
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{path}: `{ENERGY[0]}` of {k} must be a positive number, "
                                 f"not {v!r}")
            if ENERGY[1] not in {**data["tolerance"], **row.get("tolerance", {})}:
                raise ValueError(f"{path}: no tolerance `{ENERGY[1]}` for {k}")
    return data


def compare(rows, baseline, require_all=False, energy=True):
    """Messages, one per quantity outside its tolerance (empty: everything within).
    `energy=False` checks area and timing only (a synthesis run without its gate-level
    energy run, as the fast baseline test of the tiny presets)."""
    problems = []
    seen = set()
    for row in rows:
        k = key(row)
        ref = baseline["rows"].get(k)
        if ref is None:
            continue                     # a config outside the baseline (random, scaling)
        seen.add(k)
        if "error" in row:
            problems.append(f"{k}: synthesis failed: {row['error'].splitlines()[0]}")
            continue
        tol = {**baseline["tolerance"], **ref.get("tolerance", {})}
        checked = QUANTITIES + ((ENERGY,) if energy and ENERGY[0] in ref else ())
        for q, t, unit in checked:
            measured, expected = row.get(q), ref[q]
            if measured is None:
                problems.append(f"{k}: no `{q}` in the report"
                                + (" (run `make power`)" if q == ENERGY[0] else ""))
                continue
            rel = measured / expected - 1.0
            if abs(rel) > tol[t]:
                problems.append(f"{k}: {q} {measured:,.1f} {unit} is {rel:+.2%} from the baseline "
                                f"{expected:,.1f} {unit} (tolerance ±{tol[t]:.1%})")
    if require_all:
        problems += [f"{k}: in the baseline but not in the report" for k in
                     sorted(set(baseline["rows"]) - seen)]
    return problems


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=BASELINE.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def make_baseline(rows, reason, tolerance=None):
    """A baseline dict from report rows holding every preset of every unit."""
    from hdl.export import UNITS
    if not reason or not reason.strip():
        raise ValueError("an update of the baseline needs a reason (--reason)")
    by_key = {key(r): r for r in rows}
    wanted = [f"{u}/{p}" for u, (_, presets, _) in UNITS.items() for p in presets]
    missing = [k for k in wanted if k not in by_key or "error" in by_key[k]]
    if missing:
        raise ValueError("the report lacks (or failed) " + ", ".join(missing)
                         + ": run `make synth` for every preset first")
    versions = {json.dumps(by_key[k].get("tools", {}).get("yosys")) for k in wanted}
    versions |= {json.dumps(by_key[k].get("tools", {}).get("sta")) for k in wanted}
    if len(versions) > 2:
        raise ValueError("the report mixes tool versions; synthesise every preset again")
    first = by_key[wanted[0]]
    return {
        "comment": "PPA baseline of every unit x preset; checked by tests/test_synth_baseline.py "
                   "and `make synth`; change only with `make baseline REASON=...`",
        "updated": date.today().isoformat(),
        "commit": _git_commit(),
        "reason": reason.strip(),
        "tools": {k: first.get("tools", {}).get(k) for k in ("yosys", "sta", "liberty",
                                                             "liberty_sha256")},
        "flow": {k: first.get("flow", {}).get(k) for k in ("period_ns", "driving_cell",
                                                           "load_pf")},
        "tolerance": dict(tolerance or TOLERANCE),
        "rows": {k: {"area_um2": by_key[k]["area_um2"], "fmax_mhz": by_key[k]["fmax_mhz"],
                     "cells": by_key[k]["cells"], "ff_cells": by_key[k]["ff_cells"],
                     **({ENERGY[0]: by_key[k][ENERGY[0]]} if by_key[k].get(ENERGY[0]) else {})}
                 for k in wanted},
    }


def _report_rows(path):
    path = Path(path)
    if not path.is_file():
        sys.exit(f"baseline: no synthesis report at {path}: run `make synth` first")
    rows = json.loads(path.read_text())
    energy = path.with_name("power.json")       # `make power`: energy per item, when measured
    if energy.is_file():
        per_item = {key(r): r[ENERGY[0]] for r in json.loads(energy.read_text())
                    if ENERGY[0] in r}
        rows = [dict(r, **({ENERGY[0]: per_item[key(r)]} if key(r) in per_item else {}))
                for r in rows]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare a synthesis report against the baseline")
    c.add_argument("--report", type=Path, default=flow.REPORT_DIR / "synth.json")
    c.add_argument("--all", action="store_true", help="every baseline preset must be present")
    u = sub.add_parser("update", help="rewrite synth/baseline.json from a full report")
    u.add_argument("--report", type=Path, default=flow.REPORT_DIR / "synth.json")
    u.add_argument("--reason", required=True, help="why the numbers moved (kept in the file)")
    args = ap.parse_args(argv)
    rows = _report_rows(args.report)
    if args.cmd == "check":
        ref = load()
        problems = compare(rows, ref, require_all=args.all)
        if problems:
            print("PPA baseline: moved past the tolerances:\n  " + "\n  ".join(problems)
                  + "\n(if the change is intended: make baseline REASON=\"...\")", file=sys.stderr)
            return 1
        n = sum(1 for r in rows if key(r) in ref["rows"])
        print(f"PPA baseline: {n} preset(s) within tolerance of {BASELINE.name}")
        no_energy = [k for k, r in ref["rows"].items() if ENERGY[0] not in r]
        if no_energy:
            print(f"PPA baseline: energy NOT checked for {len(no_energy)} preset(s) without an "
                  f"energy entry in {BASELINE.name} (record it with `make baseline` after "
                  f"`make synth`)")
        return 0
    try:
        new = make_baseline(rows, args.reason)
    except ValueError as exc:
        sys.exit(f"baseline: {exc}")
    old = load()["rows"] if BASELINE.is_file() else {}
    BASELINE.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n")
    for k, r in new["rows"].items():
        o = old.get(k)
        moved = "" if o is None else (f"  (area {r['area_um2'] / o['area_um2'] - 1:+.2%}, f_max "
                                      f"{r['fmax_mhz'] / o['fmax_mhz'] - 1:+.2%})")
        print(f"  {k:24} {r['area_um2']:>12,.0f} um2 {r['fmax_mhz']:7.1f} MHz{moved}")
    print(f"baseline: wrote {BASELINE} ({len(new['rows'])} presets); commit it with the change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
