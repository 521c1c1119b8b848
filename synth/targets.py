"""The papers' targets against the measured rows: met or not, by how much, and what keeps a
missed one away (design/README.md, "Published numbers we hold ourselves to").

Each half of a claim is checked on its own, as the design brief asks:
- NMPU fast: a point ≥ 139x the LDPU `paper`'s vectors/s whose area is ≤ 1.0x the LDPU's;
- NMPU small: a point ≥ 7.8x smaller than the LDPU `paper` at ≥ 1.0x its vectors/s;
- ESSOP: ≥ 1.94x the FP16 array's products/s/mm² at the training BL (measured clocks).
The NMPU halves are judged in every storage kind (flip-flops as synthesised, latch array, SRAM
macro: synth/storage.py), each ratio within one kind. A missed target names the best point,
the factor still missing, and the largest block of that point where its per-block breakdown
exists (synth/breakdown.py), else the largest block of the nearest preset that has one.
"""

__all__ = ["TARGETS", "evaluate", "markdown"]

TARGETS = {"nmpu_speedup": 139.0, "nmpu_area_ratio": 7.8, "essop_area_efficiency": 1.94}


def _largest_block(brk, unit, preset):
    """(key, block, share) of the largest block in the breakdown of unit/preset, or of the
    same unit's first preset that has one; None without any."""
    keys = [f"{unit}/{preset}"] + sorted(k for k in brk if k.startswith(f"{unit}/"))
    for key in keys:
        b = brk.get(key) or {}
        if b.get("blocks"):
            parts = {name: v["area_um2"] for name, v in b["blocks"].items()}
            parts["top-level cells (parameter memory, framing, status)"] = b.get("top_own_um2", 0.0)
            name, area = max(parts.items(), key=lambda t: t[1])
            total = b.get("total_um2") or sum(parts.values())
            return key, name, area / total if total else None
    return None


def _nmpu(rat, speed_min, area_min, which):
    """The best NMPU point for one half: among points with speed-up ≥ speed_min, the largest
    area ratio (LDPU / NMPU) per storage kind; if none is fast enough, the fastest point."""
    entries = [e for e in rat.get("nmpu_vs_ldpu", []) if e.get("speedup") is not None]
    storage = {(s["a"], s["b"]): s for s in (rat.get("storage") or {}).get("nmpu_vs_ldpu", [])}
    out = []
    kinds = sorted({k for s in storage.values() for k in s["area_ratio"]}) or ["ff"]
    for kind in kinds:
        def area(e):
            s = storage.get((e["nmpu"], e["ldpu"]))
            return s["area_ratio"][kind] if s else (e["area_ratio"] if kind == "ff" else None)
        fast = [e for e in entries if e["speedup"] >= speed_min and area(e) is not None]
        if fast:
            best = max(fast, key=area)
        elif entries:
            best = max(entries, key=lambda e: e["speedup"])
        else:
            continue
        a = area(best)
        met = best["speedup"] >= speed_min and a is not None and a >= area_min
        out.append({"target": which, "storage": kind, "point": best["nmpu"],
                    "speedup": best["speedup"], "area_ratio": a, "met": met,
                    "speed_factor_missing": max(speed_min / best["speedup"], 1.0),
                    "area_factor_missing": (max(area_min / a, 1.0) if a else None)})
    return out


def evaluate(rows, rat, brk):
    """The target table: one entry per target (and storage kind for the NMPU halves)."""
    out = _nmpu(rat, TARGETS["nmpu_speedup"], 1.0, "NMPU ≥ 139x faster at ≤ 1.0x the area")
    out += _nmpu(rat, 1.0, TARGETS["nmpu_area_ratio"], "NMPU ≥ 7.8x smaller at ≥ 1.0x the speed")
    ref = [e for e in rat.get("essop_vs_fp16", []) if e.get("reference")]
    if ref:
        best = max(ref, key=lambda e: e["area_efficiency_ratio"])
        r = best["area_efficiency_ratio"]
        out.append({"target": "ESSOP ≥ 1.94x the FP16 array's products/s/mm² at the training BL",
                    "storage": "ff", "point": f"{best['essop']} at BL {best['bl']}",
                    "area_efficiency_ratio": r, "met": r >= TARGETS["essop_area_efficiency"],
                    "area_factor_missing": max(TARGETS["essop_area_efficiency"] / r, 1.0)})
    for e in out:
        if not e["met"]:
            unit, preset = ("essop", e["point"].split()[0]) if e["target"].startswith("ESSOP") \
                else ("nmpu", e["point"])
            e["largest_block"] = _largest_block(brk, unit, preset)
    return out


def markdown(targets):
    lines = ["", "## The papers' targets, measured", "",
             "Each half of a claim on its own (`synth/targets.py`); NMPU ratios against the LDPU "
             "`paper`, each within one storage kind; a missed target shows the factor still "
             "missing and the largest block of the best point.", "",
             "| target | storage | best point | measured | met | missing factor | largest block |",
             "|---|---|---|---|---|--:|---|"]
    for e in targets:
        if "speedup" in e:
            measured = f"{e['speedup']:.1f}x speed, {e['area_ratio']:.2f}x smaller" \
                if e["area_ratio"] is not None else f"{e['speedup']:.1f}x speed"
            miss = max(e["speed_factor_missing"], e["area_factor_missing"] or 1.0)
        else:
            measured = f"{e['area_efficiency_ratio']:.2f}x"
            miss = e["area_factor_missing"]
        lb = e.get("largest_block")
        block = "—" if e["met"] or not lb else \
            f"{lb[1]} ({lb[2]:.0%} of {lb[0]})" if lb[2] is not None else f"{lb[1]} ({lb[0]})"
        lines.append(f"| {e['target']} | {e['storage']} | {e['point']} | {measured} | "
                     f"{'yes' if e['met'] else 'no'} | {'—' if e['met'] else f'{miss:.2f}x'} | "
                     f"{block} |")
    return "\n".join(lines + [""])
