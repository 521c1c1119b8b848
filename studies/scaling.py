"""Scaling study: how area and f_max grow with the work each unit does per clock.

    python -m studies.scaling [--jobs N] [--quick] [--report DIR]

Runs the synthesis flow (synth/flow.py, same tools, same script, same clock target) on:
- the NMPU `paper` preset with 1, 4, 16, 64 and 256 lanes (256 columns; work per clock =
  lanes columns), and
- ESSOP arrays of 8 × 8, 16 × 16, 32 × 32 and 64 × 64 units with a maximal bitstream length
  BL = 8 .. 128 (`log2_bl_max` 3..7; work per clock = rows · cols AND-and-count units); the
  64 × 64 array only at BL 8 and 128 (each such run takes about 15 minutes here).
A point whose config equals a preset's (lanes 64 = `paper`, 32 × 32 at BL 128 = `paper`) reuses
that preset's run when its result is present. Results: `build/report/scaling.json` (one row per
point with area, NAND2 eq, flip-flop share and f_max), `scaling.md` with the fitted slopes
(least squares of log area on log work: area ∝ work^k), and `scaling.png`. `--quick` stops at
the small points (NMPU lanes ≤ 16, ESSOP ≤ 16 × 16) for a test of the machinery.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from hdl.config import ESSOP_PRESETS, NMPU_PRESETS
from synth import flow

__all__ = ["points", "fit_slope", "run", "write", "main"]

NMPU_LANES = (1, 4, 16, 64, 256)
ESSOP_SIZES = (8, 16, 32, 64)
ESSOP_LOG2_BL = (3, 4, 5, 6, 7)
ESSOP_LARGE_LOG2_BL = (3, 7)      # the 64 × 64 array: the two ends of the BL range


def points(quick=False):
    """[(unit, config, study, work, bl_max)] of the study, presets substituted where equal."""
    out = []
    paper = NMPU_PRESETS["paper"]
    for lanes in NMPU_LANES:
        if quick and lanes > 16:
            continue
        cfg = dataclasses.replace(paper, name=f"lanes{lanes}", lanes=lanes)
        out.append(("nmpu", _preset_or(cfg, NMPU_PRESETS), "nmpu_lanes", lanes, None))
    base = ESSOP_PRESETS["paper"]
    for size in ESSOP_SIZES:
        if quick and size > 16:
            continue
        for k in (ESSOP_LARGE_LOG2_BL if size == 64 else ESSOP_LOG2_BL):
            cfg = dataclasses.replace(base, name=f"a{size}-bl{2 ** k}", rows=size, cols=size,
                                      log2_bl_max=k)
            out.append(("essop", _preset_or(cfg, ESSOP_PRESETS), "essop_size", size * size, 2 ** k))
    return out


def _preset_or(cfg, presets):
    """The preset whose fields (other than its name) equal cfg's, else cfg."""
    mine = {k: v for k, v in cfg.to_dict().items() if k != "name"}
    for preset in presets.values():
        if {k: v for k, v in preset.to_dict().items() if k != "name"} == mine:
            return preset
    return cfg


def fit_slope(work, values):
    """k and c of values ≈ c · work^k (least squares in log-log); needs two distinct works."""
    w = np.log(np.asarray(work, dtype=float))
    v = np.log(np.asarray(values, dtype=float))
    if w.size < 2 or np.ptp(w) == 0:
        raise ValueError("a slope needs at least two points of different work")
    k, log_c = np.polyfit(w, v, 1)
    return float(k), float(np.exp(log_c))


def fit_linear(work, values):
    """a and b of values ≈ a + b · work (least squares): the fixed cost and the cost of one more
    unit of work."""
    w = np.asarray(work, dtype=float)
    if w.size < 2 or np.ptp(w) == 0:
        raise ValueError("a line needs at least two points of different work")
    b, a = np.polyfit(w, np.asarray(values, dtype=float), 1)
    return float(a), float(b)


def _cached(unit, cfg, out_dir):
    path = Path(out_dir) / f"{unit}_{cfg.tag}" / "result.json"
    if path.is_file():
        row = json.loads(path.read_text())
        if row.get("config") == cfg.to_dict() and "area_um2" in row:
            return row
    return None


def run(pts, tools, jobs=1, out_dir=flow.DEFAULT_OUT, reuse=True, engine=None):
    """Synthesise every point (reusing a finished run of the same config); returns the rows."""
    rows, todo = [], []
    for unit, cfg, study, work, bl in pts:
        row = _cached(unit, cfg, out_dir) if reuse else None
        if row is None:
            todo.append((unit, cfg, study, work, bl))
        else:
            rows.append(_row(row, study, work, bl, reused=True))
    # the largest first, so that the long runs overlap the short ones
    todo.sort(key=lambda p: -p[3])
    point = {(unit, cfg.tag): (study, work, bl) for unit, cfg, study, work, bl in todo}
    for unit, cfg, row in flow.run_all([(p[0], p[1]) for p in todo], tools, out_dir, jobs=jobs,
                                      engine=engine):
        study, work, bl = point[unit, cfg.tag]
        if "error" in row:
            rows.append(dict(row, study=study, work=work))
            continue
        print(f"  {unit:6} {cfg.tag:24} {row['area_um2']:>12,.0f} um2  f_max "
              f"{flow._fmt(row['fmax_mhz'], '6.1f')} MHz  {row['wall_s']:.0f} s", flush=True)
        rows.append(_row(row, study, work, bl, reused=False))
    return sorted(rows, key=lambda r: (r["study"], r["work"], r.get("bl_max") or 0))


def _row(result, study, work, bl, reused):
    keep = ("unit", "preset", "area_um2", "nand2_eq", "cells", "ff_cells", "ff_share", "fmax_mhz",
            "critical_start", "critical_end", "wall_s", "config", "tools")
    row = {k: result.get(k) for k in keep}
    row.update(study=study, work=work, bl_max=bl, reused=reused)
    return row


def slopes(rows):
    """Fitted exponents of area (and NAND2 eq) against work, per study and per BL."""
    fits = []
    ok = [r for r in rows if "error" not in r]
    groups = {}
    for r in ok:
        groups.setdefault((r["study"], r["bl_max"]), []).append(r)
    for (study, bl), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        if len({r["work"] for r in rs}) < 2:
            continue
        k, c = fit_slope([r["work"] for r in rs], [r["area_um2"] for r in rs])
        kf, _ = fit_slope([r["work"] for r in rs], [max(r["fmax_mhz"], 1e-9) for r in rs])
        fixed, marginal = fit_linear([r["work"] for r in rs], [r["area_um2"] for r in rs])
        fits.append({"study": study, "bl_max": bl, "points": len(rs), "area_exponent": k,
                     "area_um2_per_unit_work": c, "fmax_exponent": kf,
                     "fixed_area_um2": fixed, "marginal_area_um2": marginal})
    # ESSOP: area against BL at each size (the counters grow with log2 BL)
    for size_sq in sorted({r["work"] for r in ok if r["study"] == "essop_size"}):
        rs = [r for r in ok if r["study"] == "essop_size" and r["work"] == size_sq]
        if len(rs) >= 2:
            k, _ = fit_slope([r["bl_max"] for r in rs], [r["area_um2"] for r in rs])
            fits.append({"study": "essop_bl", "size": int(round(size_sq ** 0.5)),
                         "points": len(rs), "area_exponent_vs_bl": k})
    return fits


def write(rows, report_dir=flow.REPORT_DIR):
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    fits = slopes(rows)
    (report_dir / "scaling.json").write_text(json.dumps({"rows": rows, "fits": fits}, indent=1)
                                             + "\n")
    lines = ["# Scaling study: area and f_max against the work per clock", "",
             "Same flow as `make synth` (Yosys + ABC onto OSU 0.18 µm, OpenSTA, 4 ns target). "
             "Work per clock: NMPU lanes (columns corrected per clock); ESSOP rows × cols counting "
             "units. Fitted: area ≈ c · work^k (least squares in log-log). Generated by "
             "`make scaling`.", "",
             "| unit | point | work | BL max | area µm² | NAND2 eq | FF share | f_max MHz | "
             "area per unit of work µm² |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['unit']} | {r['preset']} | {r['work']} | | failed: "
                         f"{r['error'][:60]} | | | | |")
            continue
        lines.append(f"| {r['unit']} | {r['preset']} | {r['work']} | {r['bl_max'] or ''} | "
                     f"{r['area_um2']:,.0f} | {r['nand2_eq']:,.0f} | {r['ff_share']:.1%} | "
                     f"{flow._fmt(r['fmax_mhz'], '.0f')} | {r['area_um2'] / r['work']:,.0f} |")
    lines += ["", "Two fits of the same points: the power law's exponent k (1: cost grows as the "
                  "work; below 1: a fixed part — parameter memory, converters, control — is being "
                  "shared), and a line a + b · work: b is the area of one more lane (NMPU) or "
                  "counting unit (ESSOP), a the part that does not grow.", "",
              "| fit | points | area exponent k | f_max exponent | fixed area a mm² | "
              "area per unit of work b µm² |", "|---|--:|--:|--:|--:|--:|"]
    for f in fits:
        if f["study"] == "essop_bl":
            lines.append(f"| ESSOP {f['size']} × {f['size']}: area vs BL max | {f['points']} | "
                         f"{f['area_exponent_vs_bl']:.3f} | | | |")
        else:
            what = ("NMPU: area vs lanes" if f["study"] == "nmpu_lanes"
                    else f"ESSOP at BL {f['bl_max']}: area vs rows·cols")
            lines.append(f"| {what} | {f['points']} | {f['area_exponent']:.3f} | "
                         f"{f['fmax_exponent']:+.3f} | {f['fixed_area_um2'] / 1e6:.3f} | "
                         f"{f['marginal_area_um2']:,.0f} |")
    (report_dir / "scaling.md").write_text("\n".join(lines) + "\n")
    _plot(rows, report_dir / "scaling.png")
    return fits


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if "error" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for study, label in (("nmpu_lanes", "NMPU (work = lanes)"),):
        rs = [r for r in ok if r["study"] == study]
        if rs:
            axes[0].loglog([r["work"] for r in rs], [r["area_um2"] / 1e6 for r in rs], "o-",
                           label=label)
    for bl in sorted({r["bl_max"] for r in ok if r["study"] == "essop_size"}):
        rs = [r for r in ok if r["study"] == "essop_size" and r["bl_max"] == bl]
        axes[0].loglog([r["work"] for r in rs], [r["area_um2"] / 1e6 for r in rs], "s--",
                       label=f"ESSOP BL {bl} (work = rows·cols)")
    axes[0].set_xlabel("work per clock")
    axes[0].set_ylabel("area (mm², OSU 0.18 µm)")
    axes[0].grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    for study, marker in (("nmpu_lanes", "o-"),):
        rs = [r for r in ok if r["study"] == study]
        if rs:
            axes[1].semilogx([r["work"] for r in rs], [r["fmax_mhz"] for r in rs], marker,
                             label="NMPU")
    for bl in sorted({r["bl_max"] for r in ok if r["study"] == "essop_size"}):
        rs = [r for r in ok if r["study"] == "essop_size" and r["bl_max"] == bl]
        axes[1].semilogx([r["work"] for r in rs], [r["fmax_mhz"] for r in rs], "s--",
                         label=f"ESSOP BL {bl}")
    axes[1].set_xlabel("work per clock")
    axes[1].set_ylabel("f_max (MHz)")
    axes[1].grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", "-j", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="only the small points")
    ap.add_argument("--no-reuse", action="store_true", help="synthesise every point again")
    ap.add_argument("--out", type=Path, default=flow.DEFAULT_OUT)
    ap.add_argument("--report", type=Path, default=flow.REPORT_DIR)
    ap.add_argument("--scheduler", help="tcp://host:port of a dask scheduler (default: "
                                        "AIMC_SCHEDULER, else --jobs local worker processes)")
    args = ap.parse_args(argv)
    try:
        tools = flow.Tools.setup(args.out)
    except flow.ToolMissing as exc:
        sys.exit(f"scaling: {exc}")
    pts = points(args.quick)
    print(f"scaling: {len(pts)} points, {args.jobs} in parallel", flush=True)
    t0 = time.monotonic()
    engine = None
    if args.scheduler:
        from engine.executor import Engine
        engine = Engine(args.jobs, args.scheduler, progress=False)
    try:
        rows = run(pts, tools, args.jobs, args.out, reuse=not args.no_reuse, engine=engine)
    finally:
        if engine is not None:
            engine.close()
    fits = write(rows, args.report)
    for f in fits:
        print("  fit:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in f.items()})
    print(f"scaling: {time.monotonic() - t0:.0f} s; {args.report}/scaling.json, scaling.md, "
          f"scaling.png")
    if any("error" in r for r in rows):
        sys.exit("scaling: some points failed")


if __name__ == "__main__":
    main()
