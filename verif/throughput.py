"""The measured clocks per item of every preset that the PPA report needs.

`make test` runs the full cocotb matrix only for the `tiny` presets and random configs (the
other presets' data goes through the fast path), so the `throughput` scenarios of the full-size
presets, whose `throughput.json` the PPA report reads (synth/report.py), run here: one cocotb
`throughput` testcase per unit × preset × simulator, skipped where a run of the current Verilog
already measured it.

    python -m verif.throughput [--unit U ...] [--preset P ...] [--sim icarus|verilator ...] [--jobs N]

`make` runs it on Icarus before the PPA report; `--sim verilator --sim icarus` measures on both
(the report flags a disagreement).
"""

import argparse
import json
import sys

from hdl.export import UNITS

from .runner import BUILD, SIMULATORS, prepare, run_bench

__all__ = ["measured", "pending", "measure", "main"]


def measured(unit, cfg, sim):
    """The throughput.json of a run on the current build of (unit, cfg, sim), or None.

    `prepare` rebuilds (and so removes every earlier run) when the Verilog changed, so a file
    found after it belongs to the Verilog written now."""
    build_dir, _ = prepare(unit, cfg, sim)
    files = sorted(build_dir.glob("run_*/throughput.json"))
    return json.loads(files[0].read_text()) if files else None


def pending(units, presets, sims):
    """(unit, cfg, sim) triples with no measurement of the current Verilog; presets=None: all."""
    out = []
    for unit in units:
        table = UNITS[unit][1]
        names = [p for p in (presets or table) if p in table]
        for name in names:
            for sim in sims:
                if measured(unit, table[name], sim) is None:
                    out.append((unit, table[name], sim))
    return out


def _one(unit, cfg, sim, seed):
    summary = run_bench(unit, cfg, sim, seed, testcase="throughput", name="throughput")
    doc = measured(unit, cfg, sim)
    if doc is None:
        raise RuntimeError(f"{unit}/{cfg.tag} on {sim}: the throughput scenario wrote no "
                           f"throughput.json (log: {summary.get('log')})")
    return doc


def measure(todo, seed=1, jobs=2):
    """Run the throughput scenario of every triple on the sweep engine; returns
    {(unit, tag, sim): throughput doc}; raises RuntimeError naming every failed run."""
    from engine.executor import Engine

    results, errors = {}, []
    if not todo:
        return results
    with Engine(workers=min(jobs, len(todo))) as eng:
        for out in eng.map(_one, todo, args=lambda t: (*t, seed),
                           label=lambda t: f"{t[0]}/{t[1].tag} {t[2]} throughput"):
            unit, cfg, sim = out.item
            if out.ok:
                results[(unit, cfg.tag, sim)] = out.value
            else:
                errors.append(f"{unit}/{cfg.tag} on {sim}: {out.error}")
    if errors:
        raise RuntimeError("throughput scenario failed: " + "; ".join(errors))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", action="append", choices=sorted(UNITS), help="default: every unit")
    ap.add_argument("--preset", action="append", help="default: every preset of each unit")
    ap.add_argument("--sim", action="append", choices=SIMULATORS, help="default: icarus")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    units = args.unit or sorted(UNITS)
    if args.preset:
        known = {p for u in units for p in UNITS[u][1]}
        unknown = sorted(set(args.preset) - known)
        if unknown:
            sys.exit(f"unknown preset(s) {', '.join(unknown)} for {', '.join(units)}")
    todo = pending(units, args.preset, args.sim or ["icarus"])
    print(f"throughput: {len(todo)} scenario(s) to run"
          + "".join(f"\n  {u}/{c.tag} on {s}" for u, c, s in todo))
    try:
        results = measure(todo, args.seed, args.jobs)
    except RuntimeError as exc:
        print(f"throughput: {exc}", file=sys.stderr)
        return 1
    print(f"throughput: {len(results)} measured into {BUILD / 'sim'}/<sim>/<unit>_<tag>/run_throughput/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
