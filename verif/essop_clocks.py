"""Measured clocks per ESSOP product at each read-out width R and BL (issue 13).

    python -m verif.essop_clocks [--sim icarus] [--cols 2] [--rows-per-beat 1 2 4 8]

Runs the cocotb `throughput` scenario of verif/tb_essop.py (which asserts the clocks against
`ESSOPConfig.clocks_per_product` and writes throughput.json) on the generated Verilog of 32-row
engines with counters for BL <= 32, single- and double-buffered, at every R given. The schedule
depends on rows, R, BL and buffering only, so a narrow array (`--cols`, default 2) measures the
32 × 32 schedule at a fraction of the simulation time. Writes build/report/essop_clocks.json
and .md.
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


def measure(cfgs, sim, seed=1):
    out = []
    for cfg in cfgs:
        summary = run_bench("essop", cfg, sim, seed, testcase="throughput", name="clocks")
        doc = json.loads((Path(summary["log"]).parent / "throughput.json").read_text())
        out.append({"rows": cfg.rows, "cols": cfg.cols, "rows_per_beat": cfg.rows_per_beat,
                    "double_buffer": cfg.double_buffer, "sim": sim, "tag": cfg.tag,
                    "per_bl": {e["bl"]: e["cycles_per_product"] for e in doc["per_bl"]}})
    return out


def markdown(rows, bls=(8, 16, 32)):
    lines = ["| buffering | R (rows per beat) | beats per product | "
             + " | ".join(f"clocks / product at BL {b}" for b in bls) + " |",
             "|---|--:|--:|" + "--:|" * len(bls)]
    for r in rows:
        cells = " | ".join(f"{r['per_bl'].get(b, float('nan')):.0f}" for b in bls)
        lines.append(f"| {'double' if r['double_buffer'] else 'single'} | {r['rows_per_beat']} | "
                     f"{r['rows'] // r['rows_per_beat']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sim", default="icarus", choices=SIMULATORS)
    ap.add_argument("--cols", type=int, default=2)
    ap.add_argument("--rows-per-beat", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "report")
    args = ap.parse_args(argv)
    rows = measure(configs(args.rows_per_beat, args.cols), args.sim)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "essop_clocks.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "essop_clocks.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
