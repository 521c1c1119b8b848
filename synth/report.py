"""The PPA report: area, timing and measured throughput of every unit side by side, and the
ratios the papers quote.

    python -m synth.report [--no-breakdown] [--build build]

Inputs, all from earlier steps (nothing is assumed or re-derived from a formula):
- `build/report/synth.json` (`make synth`): area, cells, flip-flop share, f_max per unit × preset;
- `build/sim/<sim>/<unit>_<tag>/run_*/throughput.json` (the cocotb `throughput` scenarios of
  `make test` / `make sim`): clocks per 256-value vector (NMPU, LDPU) and per outer product
  (ESSOP at every BL, FP16 array); the simulators must agree, or the row says they do not;
- `build/report/training.json` (`make train`), when present: the smallest BL whose training
  accuracy stays within 0.5 points of exact outer products, at which the ESSOP ratio is marked;
- per-block areas of the paper presets (`synth.breakdown`, run here when missing or stale);
- `build/report/power.json` (`make power`), when present: energy per item from gate-level
  switching activity, the NMPU / LDPU and ESSOP / FP16 energy ratios (`synth.power.attach`).

Outputs: `build/report/ppa.json` (one row per unit × preset with unit, preset, area_um2,
nand2_eq, cells, ff_share, fmax_mhz, cycles_per_item, items_per_s, items_per_s_per_mm2, tool
versions and config; plus the ratios and breakdowns), `ppa.md`, `ppa.png`.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from synth import breakdown as bd
from synth import flow
from synth import power
from synth import storage
from synth import targets
from synth import wrappers

__all__ = ["throughput", "ppa_rows", "ratios", "write", "main"]

ROOT = Path(__file__).resolve().parent.parent
ITEM = {"nmpu": "vector", "ldpu": "vector", "essop": "product", "fp16outer": "product"}
# the presets whose area is broken down by block (the ones the ratios compare)
BREAKDOWN = (("nmpu", "paper"), ("nmpu", "serial"), ("ldpu", "paper"), ("essop", "paper"),
             ("fp16outer", "paper"))
PAPER = {"nmpu_speedup": 139.0, "nmpu_area_ratio": 7.8, "essop_area_efficiency_gain": 0.937}


def throughput(build, unit, tag):
    """Measured clocks per item of one unit × preset: {'sims': [...], 'cycles': c or None,
    'per_bl': {bl: c} (ESSOP), 'latency': clocks, 'disagree': message or None}."""
    files = sorted(Path(build, "sim").glob(f"*/{unit}_{tag}/run_*/throughput.json"))
    docs = [json.loads(f.read_text()) for f in files]
    out = {"sims": sorted({d.get("sim", "?") for d in docs}), "cycles": None, "per_bl": {},
           "latency": None, "disagree": None, "files": [str(f.relative_to(build)) for f in files]}
    if not docs:
        return out
    if unit == "essop":
        tables = [{int(e["bl"]): float(e["cycles_per_product"]) for e in d["per_bl"]} for d in docs]
        lat = [{int(e["bl"]): int(e["latency"]) for e in d["per_bl"]} for d in docs]
        if any(t != tables[0] for t in tables):
            out["disagree"] = "the simulators measured different clocks per product"
        out["per_bl"] = tables[0]
        out["latency_per_bl"] = lat[0]
    else:
        cycles = {float(d["cycles_per_vector"]) for d in docs}
        if len(cycles) > 1:
            out["disagree"] = f"the simulators measured {sorted(cycles)} clocks per {ITEM[unit]}"
        out["cycles"] = float(docs[0]["cycles_per_vector"])
        out["latency"] = int(docs[0]["latency"])
    return out


def reference_bl(build):
    """(BL, source) at which the ESSOP ratio is quoted."""
    path = Path(build, "report", "training.json")
    if path.is_file():
        doc = json.loads(path.read_text())
        bl = doc.get("smallest_bl_within_0p5")
        if doc.get("quick"):
            return None, "training report is a --quick run: run `make train`"
        if bl:
            return int(bl), "training report (smallest BL within 0.5 points of exact outer products)"
        return None, "training report holds no sufficient BL"
    return None, "no training report (run `make train`)"


def _per(rate, area_um2):
    return None if rate is None else rate / (area_um2 / 1e6)


def ppa_rows(synth_rows, build, ref_bl=None):
    rows = []
    for s in synth_rows:
        if "error" in s:
            rows.append({"unit": s["unit"], "preset": s["preset"], "error": s["error"]})
            continue
        unit, tag = s["unit"], s["preset"]
        tp = throughput(build, unit, tag)
        f_hz = s["fmax_mhz"] * 1e6 if s.get("fmax_mhz") else None
        row = {"unit": unit, "preset": tag, "item": ITEM.get(unit, "item"),
               "area_um2": s["area_um2"], "area_mm2": s["area_um2"] / 1e6,
               "nand2_eq": s["nand2_eq"], "cells": s["cells"], "ff_cells": s["ff_cells"],
               "ff_share": s["ff_share"], "fmax_mhz": s["fmax_mhz"],
               "critical_path": f"{s['critical_start']} → {s['critical_end']}",
               "sims": tp["sims"], "throughput_files": tp["files"],
               "throughput_disagreement": tp["disagree"],
               "tools": s.get("tools"), "config": s.get("config")}
        if unit == "essop":
            per_bl = []
            for bl, c in sorted(tp["per_bl"].items()):
                ips = f_hz / c if f_hz else None
                per_bl.append({"bl": bl, "cycles_per_item": c, "items_per_s": ips,
                               "items_per_s_per_mm2": _per(ips, s["area_um2"]),
                               "latency": tp["latency_per_bl"][bl]})
            row["per_bl"] = per_bl
            at = [p for p in per_bl if p["bl"] == ref_bl]
            row["reference_bl"] = ref_bl
            row["cycles_per_item"] = at[0]["cycles_per_item"] if at else None
        else:
            row["cycles_per_item"] = tp["cycles"]
            row["latency"] = tp["latency"]
        c = row["cycles_per_item"]
        row["items_per_s"] = f_hz / c if (f_hz and c) else None
        row["items_per_s_per_mm2"] = _per(row["items_per_s"], s["area_um2"])
        if unit in ("nmpu", "ldpu") and row["items_per_s"] is not None:
            columns = (s.get("config") or {}).get("columns")
            row["values_per_s"] = row["items_per_s"] * columns if columns else None
        rows.append(row)
    return rows


def _get(rows, unit, preset):
    for r in rows:
        if r["unit"] == unit and r["preset"] == preset and "error" not in r:
            return r
    return None


def ratios(rows, ref_bl):
    """The papers' comparisons, from the rows (None where an input is missing)."""
    out = {"nmpu_vs_ldpu": [], "essop_vs_fp16": []}
    ldpu = _get(rows, "ldpu", "paper")
    for r in rows:
        if r["unit"] != "nmpu" or "error" in r or ldpu is None:
            continue
        if (r.get("config") or {}).get("columns") != (ldpu.get("config") or {}).get("columns"):
            continue
        e = {"nmpu": r["preset"], "ldpu": ldpu["preset"], "area_ratio": ldpu["area_um2"] / r["area_um2"]}
        if r["items_per_s"] and ldpu["items_per_s"]:
            e["speedup"] = r["items_per_s"] / ldpu["items_per_s"]
            e["clock_speedup"] = ldpu["cycles_per_item"] / r["cycles_per_item"]
            e["area_efficiency_ratio"] = r["items_per_s_per_mm2"] / ldpu["items_per_s_per_mm2"]
        out["nmpu_vs_ldpu"].append(e)
    fp16 = _get(rows, "fp16outer", "paper")
    for r in rows:
        if r["unit"] != "essop" or "error" in r or fp16 is None or not fp16["items_per_s"]:
            continue
        same = all((r.get("config") or {}).get(k) == (fp16.get("config") or {}).get(k)
                   for k in ("rows", "cols"))
        if not same:
            continue
        for p in r["per_bl"]:
            if p["items_per_s_per_mm2"] is None:
                continue
            ratio = p["items_per_s_per_mm2"] / fp16["items_per_s_per_mm2"]
            out["essop_vs_fp16"].append({
                "essop": r["preset"], "fp16": fp16["preset"], "bl": p["bl"],
                "reference": p["bl"] == ref_bl, "area_ratio": r["area_um2"] / fp16["area_um2"],
                "throughput_ratio": p["items_per_s"] / fp16["items_per_s"],
                "area_efficiency_ratio": ratio, "area_efficiency_gain": ratio - 1.0})
    return out


def sized_essop(rows, build):
    """ESSOP arrays with counters sized for each BL (the scaling study's `log2_bl_max` points of
    the paper preset's geometry) against the FP16 array. Their clocks per product are the
    paper preset's measurement at that BL: the schedule depends on rows, BL and buffering only,
    and the counter width changes none of them (the RTL's timing is the same generator code)."""
    path = Path(build, "report", "scaling.json")
    paper, fp16 = _get(rows, "essop", "paper"), _get(rows, "fp16outer", "paper")
    if not path.is_file() or paper is None or fp16 is None or not fp16["items_per_s_per_mm2"]:
        return []
    measured = {p["bl"]: p["cycles_per_item"] for p in paper["per_bl"]}
    geometry = {k: (paper.get("config") or {}).get(k) for k in ("rows", "cols", "mag_bits",
                                                                "lfsr_width", "rng",
                                                                "double_buffer")}
    out = []
    for r in json.loads(path.read_text())["rows"]:
        cfg = r.get("config") or {}
        if (r.get("unit") != "essop" or "error" in r or r.get("bl_max") not in measured
                or any(cfg.get(k) != v for k, v in geometry.items())):
            continue
        bl = r["bl_max"]
        ips = r["fmax_mhz"] * 1e6 / measured[bl]
        eff = ips / (r["area_um2"] / 1e6)
        out.append({"bl": bl, "preset": r["preset"], "area_um2": r["area_um2"],
                    "fmax_mhz": r["fmax_mhz"], "cycles_per_item": measured[bl],
                    "items_per_s": ips, "items_per_s_per_mm2": eff,
                    "area_efficiency_ratio": eff / fp16["items_per_s_per_mm2"]})
    return sorted(out, key=lambda e: e["bl"])


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else None


def breakdowns(synth_rows, run=True, out_dir=flow.DEFAULT_OUT):
    """Per-block areas of the BREAKDOWN presets: cached when made from the same Verilog as the
    flat run, otherwise mapped again (about as long as the flat run) when `run`."""
    from hdl.export import UNITS, module_name
    result, tools = {}, None
    for unit, preset in BREAKDOWN:
        if not any(r["unit"] == unit and r["preset"] == preset and "error" not in r
                   for r in synth_rows):
            continue
        cfg = UNITS[unit][1][preset]
        flat = Path(out_dir) / f"{unit}_{cfg.tag}" / f"{module_name(unit, cfg)}.v"
        cached = bd.load(unit, cfg.tag, out_dir)
        if cached and cached.get("verilog_sha256") == _sha(flat):
            result[f"{unit}/{preset}"] = cached
        elif run:
            tools = tools or flow.Tools.setup(out_dir)
            print(f"ppa: area breakdown of {unit} {preset} (hierarchical mapping)", flush=True)
            result[f"{unit}/{preset}"] = bd.breakdown(unit, cfg, tools, out_dir)
    return result


def _f(x, spec, dash="—"):
    return dash if x is None else format(x, spec)


def _markdown(rows, rat, brk, ref_bl, ref_src, sized=()):
    lines = ["# PPA: area, timing and measured throughput, every unit in one flow", "",
             "Yosys + ABC onto the OSU 0.18 µm cells, OpenSTA (4 ns target; f_max = 1 / (period − "
             "worst slack)); clocks per item measured by the cocotb `throughput` scenarios (both "
             "simulators). An item is a 256-value vector (NMPU, LDPU) or one 32 × 32 outer "
             "product (ESSOP, FP16 array). Generated by `python -m synth.report` (`make synth`, "
             "`make`).", "",
             "| unit | preset | area mm² | NAND2 eq | FF share | f_max MHz | clocks / item | "
             "items / s | items / s / mm² | critical path |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['unit']} | {r['preset']} | synthesis failed | | | | | | | |")
            continue
        c = r["cycles_per_item"]
        note = ""
        if r["unit"] == "essop":
            note = f" (BL {ref_bl})" if c is not None else " (see per BL)"
        if r["throughput_disagreement"]:
            note += " ⚠ " + r["throughput_disagreement"]
        lines.append(
            f"| {r['unit']} | {r['preset']} | {r['area_mm2']:.3f} | {r['nand2_eq']:,.0f} | "
            f"{r['ff_share']:.0%} | {_f(r['fmax_mhz'], '.0f')} | {_f(c, '.0f', 'not measured')}"
            f"{note} | {_f(r['items_per_s'], '.3g')} | {_f(r['items_per_s_per_mm2'], '.3g')} | "
            f"`{r['critical_path']}` |")
    lines += ["", "## NMPU against the FP16 LDPU (the NMPU paper: 139x faster, 7.8x smaller)", "",
              "| NMPU | LDPU | clocks / vector (NMPU vs LDPU) | speed-up (at each f_max) | "
              "area ratio (LDPU / NMPU) | vectors / s / mm² ratio |", "|---|---|---|--:|--:|--:|"]
    for e in rat["nmpu_vs_ldpu"]:
        n = _get(rows, "nmpu", e["nmpu"])
        ld = _get(rows, "ldpu", e["ldpu"])
        lines.append(f"| {e['nmpu']} | {e['ldpu']} | {_f(n['cycles_per_item'], '.0f')} vs "
                     f"{_f(ld['cycles_per_item'], '.0f')} | {_f(e.get('speedup'), '.1f')}x | "
                     f"{e['area_ratio']:.2f}x | {_f(e.get('area_efficiency_ratio'), '.1f')}x |")
    lines += ["", "## ESSOP against the FP16 multiplier array (the ESSOP paper: 93.7 % better "
                  "area efficiency)", "",
              f"Reference BL: {ref_bl if ref_bl else 'none'} ({ref_src}). Area efficiency = "
              "outer products per second per mm²; ratio > 1: ESSOP better.", "",
              "| ESSOP | BL | clocks / product | products / s | area ratio (ESSOP / FP16) | "
              "area-efficiency ratio | better by |", "|---|--:|--:|--:|--:|--:|--:|"]
    for e in rat["essop_vs_fp16"]:
        r = _get(rows, "essop", e["essop"])
        p = [p for p in r["per_bl"] if p["bl"] == e["bl"]][0]
        mark = " **← training BL**" if e["reference"] else ""
        lines.append(f"| {e['essop']} | {e['bl']}{mark} | {p['cycles_per_item']:.0f} | "
                     f"{p['items_per_s']:.3g} | {e['area_ratio']:.2f} | "
                     f"{e['area_efficiency_ratio']:.3f} | {e['area_efficiency_gain']:+.1%} |")
    fp = _get(rows, "fp16outer", "paper")
    if fp:
        lines.append(f"\nFP16 array `paper`: {fp['cycles_per_item']:.0f} clocks per product, "
                     f"{_f(fp['items_per_s'], '.3g')} products / s, {fp['area_mm2']:.3f} mm².")
    if sized:
        lines += ["", "ESSOP 32 × 32 with counters sized for the BL it runs (`log2_bl_max` = "
                      "log2 BL; areas and f_max from the scaling study, `make scaling`; clocks "
                      "per product from the `paper` preset's measurement at that BL, as the "
                      "schedule does not depend on the counter width):", "",
                  "| BL max | area mm² | f_max MHz | clocks / product | area-efficiency ratio |",
                  "|--:|--:|--:|--:|--:|"]
        for e in sized:
            mark = " **← training BL**" if e["bl"] == ref_bl else ""
            lines.append(f"| {e['bl']}{mark} | {e['area_um2'] / 1e6:.3f} | {e['fmax_mhz']:.0f} | "
                         f"{e['cycles_per_item']:.0f} | {e['area_efficiency_ratio']:.3f} |")
    if brk:
        lines += ["", "## Where the area goes (hierarchical mapping of the same Verilog)", "",
                  "Blocks by kind (`lane0`..`lane63` → `lane`), with their largest parts; `top` "
                  "holds the unit's own logic: parameter memory, framing, status counters, "
                  "read-out. The hierarchical total differs from the flat run by the optimisation "
                  "across block boundaries.", "",
                  "| unit / preset | block | instances | area mm² | share | flip-flop share | "
                  "largest parts |", "|---|---|--:|--:|--:|--:|---|"]
        for k, b in brk.items():
            tot = b["total_um2"]
            lines.append(f"| {k} | top (own cells) | 1 | {b['top_own_um2'] / 1e6:.3f} | "
                         f"{b['top_own_um2'] / tot:.0%} | "
                         f"{b['top_own_ff_um2'] / max(b['top_own_um2'], 1):.0%} | |")
            for kind, blk in b["blocks"].items():
                parts = ", ".join(f"{n} {v / blk['area_um2']:.0%}" for n, v in
                                  sorted(blk["parts"].items(), key=lambda kv: -kv[1])[:4]
                                  if v >= 0.005 * blk["area_um2"])
                lines.append(f"| {k} | {kind} | {blk['instances']} | {blk['area_um2'] / 1e6:.3f} "
                             f"| {blk['area_um2'] / tot:.0%} | "
                             f"{blk['ff_area_um2'] / blk['area_um2']:.0%} | {parts} |")
            lines.append(f"| {k} | **total (hierarchical)** | | {tot / 1e6:.3f} | | "
                         f"{b['ff_area_um2'] / tot:.0%} | |")
    return "\n".join(lines) + "\n"


def _plot(rows, rat, brk, ref_bl, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if "error" not in r and r["preset"] != "tiny"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))
    ax = axes[0]
    labels = [f"{r['unit']}\n{r['preset']}" for r in ok]
    ax.bar(labels, [r["area_mm2"] for r in ok], color="0.75", label="total (flat)")
    ax.bar(labels, [r["area_mm2"] * r["ff_share"] for r in ok], color="tab:blue",
           label="flip-flops")
    ax.set_ylabel("area (mm², OSU 0.18 µm)")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    ax.set_title("area")
    ax = axes[1]
    vec = [r for r in ok if r["unit"] in ("nmpu", "ldpu") and r["items_per_s_per_mm2"]]
    ax.bar([f"{r['unit']}\n{r['preset']}" for r in vec], [r["items_per_s_per_mm2"] for r in vec],
           color=["tab:green" if r["unit"] == "nmpu" else "tab:red" for r in vec])
    ax.set_yscale("log")
    ax.set_ylabel("256-value vectors / s / mm²")
    ax.set_title("post-processing area efficiency")
    ax = axes[2]
    for preset in sorted({e["essop"] for e in rat["essop_vs_fp16"]}):
        es = [e for e in rat["essop_vs_fp16"] if e["essop"] == preset]
        ax.semilogx([e["bl"] for e in es], [e["area_efficiency_ratio"] for e in es], "o-",
                    base=2, label=f"ESSOP {preset}")
    sized = rat.get("essop_sized_vs_fp16") or []
    if sized:
        ax.semilogx([e["bl"] for e in sized], [e["area_efficiency_ratio"] for e in sized], "s--",
                    base=2, label="ESSOP counters sized for BL")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1 + PAPER["essop_area_efficiency_gain"], color="0.5", ls=":",
               label="ESSOP paper (+93.7 %)")
    if ref_bl:
        ax.axvline(ref_bl, color="tab:purple", ls="--", label=f"training BL {ref_bl}")
    ax.set_xlabel("BL")
    ax.set_ylabel("area efficiency / FP16 array")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("ESSOP vs FP16 multiplier array")
    power.plot_panel(axes[3], rows, rat, ref_bl)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(build=ROOT / "build", run_breakdown=True):
    build = Path(build)
    report = build / "report"
    synth_json = report / "synth.json"
    if not synth_json.is_file():
        raise SystemExit(f"ppa: no synthesis report at {synth_json}: run `make synth` first")
    synth_rows = json.loads(synth_json.read_text())
    ref_bl, ref_src = reference_bl(build)
    rows = ppa_rows(synth_rows, build, ref_bl)
    rat = ratios(rows, ref_bl)
    power.attach(rows, rat, build, ref_bl)
    storage.attach(rows, rat, build)
    wrappers.attach(rows, rat, build)  # periphery tops: wrapper area apart from the unit's
    brk = breakdowns(synth_rows, run_breakdown, build / "synth")
    rat["essop_sized_vs_fp16"] = sized_essop(rows, build)
    rat["targets"] = targets.evaluate(rows, rat, brk)
    doc = {"rows": rows, "ratios": rat, "breakdown": brk, "reference_bl": ref_bl,
           "reference_bl_source": ref_src, "paper_claims": PAPER}
    (report / "ppa.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (report / "ppa.md").write_text(_markdown(rows, rat, brk, ref_bl, ref_src,
                                             rat["essop_sized_vs_fp16"])
                                    + power.markdown(rows, rat, ref_bl)
                                    + storage.markdown(rows, rat)
                                    + wrappers.markdown(rows, rat)
                                    + targets.markdown(rat["targets"]))
    _plot(rows, rat, brk, ref_bl, report / "ppa.png")
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", type=Path, default=ROOT / "build")
    ap.add_argument("--no-breakdown", action="store_true",
                    help="use cached per-block areas only; never map again")
    args = ap.parse_args(argv)
    doc = write(args.build, not args.no_breakdown)
    missing = [f"{r['unit']}/{r['preset']}" for r in doc["rows"]
               if "error" not in r and r["cycles_per_item"] is None and r["unit"] != "essop"]
    for e in doc["ratios"]["nmpu_vs_ldpu"]:
        print(f"ppa: NMPU {e['nmpu']} vs LDPU {e['ldpu']}: speed-up {_f(e.get('speedup'), '.1f')}x, "
              f"area ratio {e['area_ratio']:.2f}x, area efficiency "
              f"{_f(e.get('area_efficiency_ratio'), '.1f')}x")
    for e in doc["ratios"]["essop_vs_fp16"]:
        if e["reference"]:
            print(f"ppa: ESSOP {e['essop']} vs FP16 array at BL {e['bl']}: area efficiency "
                  f"{e['area_efficiency_ratio']:.3f}x ({e['area_efficiency_gain']:+.1%})")
    if missing:
        print("ppa: no simulated throughput for " + ", ".join(missing)
              + " (run `make test` or `make sim` first)", file=sys.stderr)
    print(f"ppa: {args.build / 'report'}/ppa.json, ppa.md, ppa.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
