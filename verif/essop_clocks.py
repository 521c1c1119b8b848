"""Measured clocks per ESSOP product at each read-out width R and BL, and with K products
accumulated per read-out (issue 13).

    python -m verif.essop_clocks [--sim icarus] [--cols 2] [--rows-per-beat 1 2 4 8]
    python -m verif.essop_clocks --acc [--sim icarus] [--cols 2]

Runs the cocotb `throughput` scenario of verif/tb_essop.py (which asserts the clocks against
`ESSOPConfig.clocks_per_product` and writes throughput.json) on the generated Verilog of 32-row
engines with counters for BL <= 32, single- and double-buffered, at every R given. The schedule
depends on rows, R, BL and buffering only, so a narrow array (`--cols`, default 2) measures the
32 × 32 schedule at a fraction of the simulation time. Writes build/report/essop_clocks.json
and .md.

`--acc`: the geometries of `paper` (R = 1, single-buffered) and `wide8` (R = 8, double-buffered)
with `acc_max` = 16 and counters for BL <= 8; the scenario measures groups of k = 1, 2, 4, 8, 16
products per read-out at every BL (asserted against `clocks_per_product(log2_bl, k)`). Writes
build/report/essop_clocks_acc.json and .md.
"""

import argparse
import dataclasses
import json
from pathlib import Path

from hdl.config import ESSOPConfig
from verif.runner import SIMULATORS, run_bench

ROOT = Path(__file__).resolve().parent.parent


def configs(rows_per_beat, cols, rows=32, log2_bl_max=5):
    base = ESSOPConfig(name="clocks", rows=rows, cols=cols, log2_bl_max=log2_bl_max)
    return [dataclasses.replace(base, rows_per_beat=r, double_buffer=d)
            for d in (False, True) for r in rows_per_beat]


ACC_GEOMETRIES = {"paper": {"rows_per_beat": 1, "double_buffer": False},
                  "wide8": {"rows_per_beat": 8, "double_buffer": True}}


def acc_configs(cols, acc_max=16, log2_bl_max=3):
    """The read-out schedules of `paper` and `wide8` (32 rows) with K up to `acc_max`."""
    base = ESSOPConfig(name="clocks-acc", rows=32, cols=cols, log2_bl_max=log2_bl_max,
                       acc_max=acc_max)
    return {name: dataclasses.replace(base, **kw) for name, kw in ACC_GEOMETRIES.items()}


def measure(cfgs, sim, seed=1):
    out = []
    for cfg in cfgs:
        summary = run_bench("essop", cfg, sim, seed, testcase="throughput", name="clocks")
        doc = json.loads((Path(summary["log"]).parent / "throughput.json").read_text())
        out.append({"rows": cfg.rows, "cols": cfg.cols, "rows_per_beat": cfg.rows_per_beat,
                    "double_buffer": cfg.double_buffer, "sim": sim, "tag": cfg.tag,
                    "acc_max": cfg.acc_max,
                    "per_bl": {e["bl"]: e["cycles_per_product"] for e in doc["per_bl"]},
                    "per_k": [{"k": e["k"], "bl": e["bl"], "cycles_per_product": e["cycles_per_product"]}
                              for e in doc.get("per_k", [])]})
    return out


def markdown_acc(names, rows, ks=(1, 4, 16), bls=(1, 2, 4, 8)):
    """Clocks per product at each BL and read-out beats per product, per geometry and K."""
    lines = ["| geometry | buffering | R | K (products per read-out) | "
             + " | ".join(f"clocks / product at BL {b}" for b in bls) + " | read-out beats / product |",
             "|---|---|--:|--:|" + "--:|" * (len(bls) + 1)]
    for name, r in zip(names, rows):
        got = {(e["k"], e["bl"]): e["cycles_per_product"] for e in r["per_k"]}
        for k in ks:
            cells = " | ".join(f"{got[(k, b)]:g}" for b in bls)
            lines.append(f"| {name} | {'double' if r['double_buffer'] else 'single'} | "
                         f"{r['rows_per_beat']} | {k} | {cells} | {r['rows'] // r['rows_per_beat'] / k:g} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sim", default="icarus", choices=SIMULATORS)
    ap.add_argument("--cols", type=int, default=2)
    ap.add_argument("--rows-per-beat", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--acc", action="store_true",
                    help="paper and wide8 read-out schedules with K = 1..16 products per read-out")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "report")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.acc:
        cfgs = acc_configs(args.cols)
        rows = measure(cfgs.values(), args.sim)
        text = markdown_acc(list(cfgs), rows)
        (args.out / "essop_clocks_acc.json").write_text(json.dumps(rows, indent=1) + "\n")
        (args.out / "essop_clocks_acc.md").write_text(text)
        print(text)
        return 0
    rows = measure(configs(args.rows_per_beat, args.cols), args.sim)
    (args.out / "essop_clocks.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "essop_clocks.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
