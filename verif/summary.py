"""Collects what the simulation runs left in build/sim (cocotb) and build/fastpath (the fast
path, `verif.fastpath`) into build/report/sim.{json,md}: values checked per second per bench,
simulator and config, latency and cycles per vector measured by the throughput test, and the
merged functional coverage.

    python -m verif.summary
"""

import json
from collections import defaultdict

from verif.coverage import merge
from verif.runner import BUILD

__all__ = ["collect", "rates_by_unit", "main"]


def collect(build=BUILD):
    runs, throughput, coverage = [], [], defaultdict(list)
    found = sorted((build / "sim").glob("*/*/run_*/summary.json"))
    found += sorted((build / "fastpath").glob("*/*/run_*/summary.json"))
    for summary in found:
        run = json.loads(summary.read_text())
        run["run"] = summary.parent.name
        run.setdefault("bench", "cocotb")
        runs.append(run)
        tp = summary.parent / "throughput.json"
        if tp.exists():
            throughput.append(json.loads(tp.read_text()))
        for cov in sorted((summary.parent / "coverage").glob("*.json")):
            coverage[(run["unit"], run["tag"])].append(json.loads(cov.read_text()))
    merged = {f"{u}/{t}": merge(c, f"{u} {t}") for (u, t), c in coverage.items()}
    return runs, throughput, merged


def rates_by_unit(runs):
    """Values and products per second of simulation, summed per unit × config × bench × sim."""
    acc = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for r in runs:
        a = acc[(r["unit"], r["tag"], r["bench"], r["sim"])]
        a[0] += r["values"]
        a[1] += r.get("products", 0)
        a[2] += r["wall_s"]
        a[3] += r.get("cpu_s", 0.0)
    return [{"unit": u, "tag": t, "bench": b, "sim": s, "values": v, "products": p, "wall_s": w,
             "values_per_s": v / w if w else 0.0, "products_per_s": p / w if w else 0.0,
             "cpu_s": c, "values_per_cpu_s": v / c if c else None}
            for (u, t, b, s), (v, p, w, c) in sorted(acc.items())]


def main():
    runs, throughput, merged = collect()
    out = BUILD / "report"
    out.mkdir(parents=True, exist_ok=True)
    rates = rates_by_unit(runs)
    doc = {"runs": runs, "throughput": throughput, "values_per_s": rates,
           "coverage": {k: {"missing": c.missing(), **c.to_dict()} for k, c in merged.items()}}
    (out / "sim.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Simulation summary", "",
             "Values are NMPU column outputs and ESSOP counts, each compared with the golden model.", "",
             "| unit | config | simulator | bench | run | tests | values checked | wall s | values/s |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['unit']} | {r['tag']} | {r['sim']} | {r['bench']} | {r['run']} | "
                     f"{r['tests']} | {r['values']} | {r['wall_s']} | {r['values_per_s']:.0f} |")
    lines += ["", "## Values checked per second, per unit, bench and simulator", "",
              "Summed over the runs: values (and products) over simulation wall seconds (cocotb: "
              "the cocotb run; fast path: the compiled bench, stimulus generation excluded) and, "
              "for the fast path, over the bench's CPU seconds (what a busy machine does not "
              "change).", "",
              "| unit | config | bench | simulator | values | wall s | values/s | products/s | "
              "values/cpu s |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rates:
        cpu = f"{r['values_per_cpu_s']:.0f}" if r["values_per_cpu_s"] else ""
        lines.append(f"| {r['unit']} | {r['tag']} | {r['bench']} | {r['sim']} | {r['values']} | "
                     f"{r['wall_s']:.2f} | {r['values_per_s']:.0f} | "
                     + (f"{r['products_per_s']:.0f}" if r["products"] else "") + f" | {cpu} |")
    totals = defaultdict(lambda: [0, 0.0])
    for r in runs:
        totals[r["sim"]][0] += r["values"]
        totals[r["sim"]][1] += r["wall_s"]
    lines += ["", "| simulator | values checked | simulation wall s | values/s |",
              "|---|---:|---:|---:|"]
    for sim, (values, wall) in sorted(totals.items()):
        lines.append(f"| {sim} | {values} | {wall:.1f} | {values / wall if wall else 0:.0f} |")
    essop_runs = [r for r in runs if r.get("products")]
    if essop_runs:
        lines += ["", "ESSOP outer products checked (every count and exponent of each):", "",
                  "| config | simulator | products | wall s | products/s |", "|---|---|---:|---:|---:|"]
        for r in essop_runs:
            lines.append(f"| {r['tag']} | {r['sim']} | {r['products']} | {r['wall_s']} | "
                         f"{r['products'] / r['wall_s'] if r['wall_s'] else 0:.1f} |")
    lines += ["", "## Throughput (measured, no stalls)", "",
              "| unit | config | simulator | latency (clocks) | clocks for K vectors | K | cycles per vector |",
              "|---|---|---|---:|---:|---:|---:|"]
    for t in throughput:
        if "per_bl" not in t:
            lines.append(f"| {t['unit']} | {t['tag']} | {t['sim']} | {t['latency']} | {t['clocks']} | "
                         f"{t['vectors']} | {t['cycles_per_vector']:g} |")
    essop = [t for t in throughput if "per_bl" in t]
    if essop:
        lines += ["", "ESSOP: clocks per outer product at each bitstream length (measured between "
                  "the first rows of consecutive products; latency = input handshake to first row)",
                  "", "| config | simulator | rows × cols | double-buffered | BL | latency | clocks per product |",
                  "|---|---|---|---|---:|---:|---:|"]
        for t in essop:
            for r in t["per_bl"]:
                lines.append(f"| {t['tag']} | {t['sim']} | {t['rows']} × {t['cols']} | "
                             f"{'yes' if t['double_buffer'] else 'no'} | {r['bl']} | {r['latency']} | "
                             f"{r['cycles_per_product']:g} |")
    lines += ["", "## Functional coverage (merged over all runs and simulators)", ""]
    for key, cov in merged.items():
        lines += ["```", cov.summary(), "```", ""]
    (out / "sim.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:6 + len(runs)]))
    print(f"... full summary: {out / 'sim.md'}")


if __name__ == "__main__":
    main()
