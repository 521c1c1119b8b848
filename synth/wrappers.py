"""Area of the periphery wrappers (hdl/periphery.py: NMPU, LDPU and ESSOP tops), apart from the
units they wrap.

    python -m synth.wrappers [--preset nmpu_paper ...]   synthesize the tops (build/synth/periphery_<tag>/)

A top is synthesized by the same flow as the units (`synth.flow.run`); its wrapper area is the
top's area minus the wrapped unit's flat area from the same flow (its row in the PPA report),
and its share is that difference over the unit's area (issue 18's target: at most 10 % of the
NMPU `paper`). `attach` / `markdown` put the rows into the PPA report when the tops' results
exist.
"""

import argparse
import json
from pathlib import Path

from synth import flow

__all__ = ["TARGET_SHARE", "wrapper_rows", "attach", "markdown", "main"]

TARGET_SHARE = 0.10


def wrapper_rows(unit_rows, out_dir=flow.DEFAULT_OUT):
    """One row per periphery preset whose synthesis result exists in out_dir and whose unit has
    a row in `unit_rows` (dicts with unit, preset, area_um2)."""
    from hdl.periphery import PERIPHERY_PRESETS
    rows = []
    for name, cfg in PERIPHERY_PRESETS.items():
        result = Path(out_dir) / f"periphery_{cfg.tag}" / "result.json"
        if not result.is_file():
            continue
        top = json.loads(result.read_text())
        unit = next((r for r in unit_rows if r.get("unit") == cfg.unit
                     and r.get("preset") == cfg.core.tag and "area_um2" in r), None)
        if unit is None or "area_um2" not in top:
            continue
        extra = top["area_um2"] - unit["area_um2"]
        rows.append({"top": name, "unit": cfg.unit, "preset": cfg.core.tag,
                     "top_area_um2": top["area_um2"], "unit_area_um2": unit["area_um2"],
                     "wrapper_area_um2": extra, "wrapper_share": extra / unit["area_um2"],
                     "top_fmax_mhz": top.get("fmax_mhz"), "unit_fmax_mhz": unit.get("fmax_mhz")})
    return rows


def attach(rows, rat, build):
    rat["wrappers"] = wrapper_rows(rows, Path(build) / "synth")


def markdown(rows, rat):
    w = rat.get("wrappers") or []
    if not w:
        return ""
    lines = ["", "## Periphery wrappers (AXI4-Lite registers, job gate, stream framing)", "",
             f"Top area minus the unit's flat area, same flow (`python -m synth.wrappers`); "
             f"target: at most {TARGET_SHARE:.0%} of the unit.", "",
             "| top | unit area mm² | top area mm² | wrapper mm² | share | f_max unit / top MHz |",
             "|---|--:|--:|--:|--:|--:|"]
    for r in w:
        lines.append(f"| {r['top']} | {r['unit_area_um2'] / 1e6:.3f} | {r['top_area_um2'] / 1e6:.3f}"
                     f" | {r['wrapper_area_um2'] / 1e6:.4f} | {r['wrapper_share']:.1%} | "
                     f"{r['unit_fmax_mhz']} / {r['top_fmax_mhz']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from hdl.periphery import PERIPHERY_PRESETS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", choices=sorted(PERIPHERY_PRESETS),
                    help="periphery preset (default: nmpu_paper, ldpu_paper, essop_paper)")
    ap.add_argument("--out", type=Path, default=flow.DEFAULT_OUT)
    args = ap.parse_args(argv)
    tools = flow.Tools.setup(args.out)
    for name in args.preset or ["nmpu_paper", "ldpu_paper", "essop_paper"]:
        row = flow.run("periphery", PERIPHERY_PRESETS[name], tools, out_dir=args.out)
        print(f"periphery {name}: {row['area_um2'] / 1e6:.3f} mm², f_max {row['fmax_mhz']} MHz",
              flush=True)


if __name__ == "__main__":
    main()
