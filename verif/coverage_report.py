"""Functional coverage closure: every required bin of every unit × config, merged over all the
simulation runs in build/sim (both simulators, every scenario), into build/report/coverage.json
and coverage.md.

    python -m verif.coverage_report [--build DIR] [--out DIR]

Per unit × config and per group: required bins hit / required, the missing bins by name, and
the bins hit in groups that require none (information only). The exit status is 1 when any
required bin is missing (the regression must close every bin) or when there are no runs at all.
Runs are collected and merged by `verif.summary.collect` (`verif.coverage.merge`).
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from verif.runner import BUILD
from verif.summary import collect

__all__ = ["closure", "write", "main"]


def closure(merged, runs):
    """{key: per-config closure} from the merged coverage of `verif.summary.collect`."""
    n_runs = Counter(f"{r['unit']}/{r['tag']}" for r in runs)
    sims = {}
    for r in runs:
        sims.setdefault(f"{r['unit']}/{r['tag']}", set()).add(r["sim"])
    out = {}
    for key, cov in sorted(merged.items()):
        unit, tag = key.split("/", 1)
        groups = {}
        for group in sorted(set(cov.hits) | set(cov.required)):
            hit = {b for b, c in cov.hits.get(group, {}).items() if c}
            req = cov.required.get(group, set())
            groups[group] = {"required": len(req), "required_hit": len(req & hit),
                             "missing": sorted(req - hit), "bins_hit": len(hit),
                             "hits": int(sum(cov.hits.get(group, {}).values()))}
        required = sum(g["required"] for g in groups.values())
        got = sum(g["required_hit"] for g in groups.values())
        out[key] = {"unit": unit, "tag": tag, "runs": n_runs[key], "sims": sorted(sims.get(key, ())),
                    "required": required, "required_hit": got,
                    "missing": {g: v["missing"] for g, v in groups.items() if v["missing"]},
                    "groups": groups}
    return out


def write(configs, out_dir):
    """coverage.json and coverage.md in out_dir; returns the totals."""
    out_dir.mkdir(parents=True, exist_ok=True)
    required = sum(c["required"] for c in configs.values())
    hit = sum(c["required_hit"] for c in configs.values())
    missing = sum(len(b) for c in configs.values() for b in c["missing"].values())
    totals = {"configs": len(configs), "required": required, "required_hit": hit,
              "missing": missing, "closed": bool(configs) and missing == 0}
    (out_dir / "coverage.json").write_text(json.dumps({"totals": totals, "configs": configs},
                                                      indent=1) + "\n")
    lines = ["# Functional coverage closure", "",
             f"{hit} of {required} required bins hit over {len(configs)} unit × config pairs "
             f"(merged over every run and simulator in build/sim): "
             + ("**closed**." if totals["closed"] else f"**{missing} missing**."), "",
             "| unit | config | runs | simulators | required bins hit | missing |",
             "|---|---|---:|---|---:|---:|"]
    for c in configs.values():
        n_missing = sum(len(b) for b in c["missing"].values())
        lines.append(f"| {c['unit']} | {c['tag']} | {c['runs']} | {', '.join(c['sims'])} | "
                     f"{c['required_hit']}/{c['required']} | {n_missing or ''} |")
    if missing:
        lines += ["", "## Missing bins", ""]
        for c in configs.values():
            for group, bins in c["missing"].items():
                shown = ", ".join(bins[:20]) + (f" … ({len(bins)} in all)" if len(bins) > 20 else "")
                lines.append(f"- {c['unit']} {c['tag']}, `{group}`: {shown}")
    lines += ["", "## Per group", "",
              "Required groups: bins hit / required. Groups without required bins: bins seen "
              "(information only).", ""]
    for c in configs.values():
        lines += [f"### {c['unit']} {c['tag']}", "", "| group | required hit | bins seen | hits | missing |",
                  "|---|---:|---:|---:|---|"]
        for group, g in c["groups"].items():
            req = f"{g['required_hit']}/{g['required']}" if g["required"] else "–"
            miss = ", ".join(g["missing"][:8]) + (" …" if len(g["missing"]) > 8 else "")
            lines.append(f"| {group} | {req} | {g['bins_hit']} | {g['hits']} | {miss} |")
        lines.append("")
    (out_dir / "coverage.md").write_text("\n".join(lines) + "\n")
    return totals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", type=Path, default=BUILD, help="the build folder holding sim/")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default BUILD/report)")
    args = ap.parse_args(argv)
    runs, _, merged = collect(args.build)
    totals = write(closure(merged, runs), args.out or args.build / "report")
    out = args.out or args.build / "report"
    print(f"coverage: {totals['required_hit']}/{totals['required']} required bins over "
          f"{totals['configs']} unit × config pairs; {totals['missing']} missing; "
          f"report: {out / 'coverage.md'}")
    if not totals["configs"]:
        print(f"no simulation runs with coverage under {args.build / 'sim'}", file=sys.stderr)
        return 1
    return 0 if totals["closed"] else 1


if __name__ == "__main__":
    sys.exit(main())
