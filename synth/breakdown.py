"""Area by block: the same mapping as the flow, with the hierarchy kept.

The flow flattens before mapping (optimisation across block boundaries, honest totals); this
run keeps Amaranth's module hierarchy, maps each module with the same ABC script, and reports
the area of every top-level block kind (`lane0`..`lane63` -> `lane`, with the split into its own
sub-blocks) and of the top module's own cells (parameter memory, framing, counters). Its total
differs from the flat run's by the optimisation across boundaries (a few per cent); shares are
what it is for.

    python -m synth.breakdown --unit nmpu --preset paper
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from synth import flow

__all__ = ["module_areas", "group_blocks", "breakdown", "main"]

_SCRIPT = """\
read_verilog {verilog}
hierarchy -check -top {top}
synth -top {top} -noabc
delete t:$scopeinfo
setattr -unset init w:*
dfflibmap -liberty {liberty}
abc -liberty {liberty} -constr abc.constr -script abc.script
opt_clean
tee -q -o stat.json stat -json -liberty {liberty}
"""


def _name(s):
    return str(s).lstrip("\\")


def module_areas(stat, lib):
    """Module -> (own library-cell area, own flip-flop area, {child module: instances})."""
    out = {}
    for mod, data in stat["modules"].items():
        counts = data.get("num_cells_by_type") or {}
        if isinstance(counts, list):
            counts = dict(counts)
        own = ff = 0.0
        children = {}
        for cell, n in counts.items():
            cell = _name(cell)
            if cell in lib.areas:
                own += lib.areas[cell] * n
                if cell in lib.sequential:
                    ff += lib.areas[cell] * n
            elif not cell.startswith("$"):
                children[cell] = children.get(cell, 0) + int(n)
            else:
                raise flow.UnmappedCellError(f"module {_name(mod)}: unmapped cell {cell} x{n}")
        out[_name(mod)] = (own, ff, children)
    return out


def _total(areas, mod, memo):
    if mod not in memo:
        own, ff, children = areas[mod]
        tot, tff = own, ff
        for child, n in children.items():
            ct, cf = _total(areas, child, memo)
            tot, tff = tot + n * ct, tff + n * cf
        memo[mod] = (tot, tff)
    return memo[mod]


def _local(child, parent):
    return (child[len(parent) + 1:] if child.startswith(parent + ".") else child).split(".")[0]


def _kinds(children, parent):
    """Child module -> block kind: `lane0`..`lane63` -> `lane` (numbered siblings are one kind;
    a lone `to_int8` keeps its digits)."""
    locals_ = {c: _local(c, parent) for c in children}
    stem = {c: re.sub(r"\d+$", "", n) or n for c, n in locals_.items()}
    count = {}
    for s in stem.values():
        count[s] = count.get(s, 0) + 1
    return {c: (stem[c] if count[stem[c]] > 1 else locals_[c]) for c in children}


def group_blocks(areas, top):
    """{'blocks': {kind: {area, ff_area, instances, parts: {sub-kind: area}}}, 'top_own': ...}."""
    memo = {}
    total, total_ff = _total(areas, top, memo)
    own, own_ff, children = areas[top]
    blocks = {}
    kinds = _kinds(children, top)
    for child, n in children.items():
        kind = kinds[child]
        area, ff = _total(areas, child, memo)
        b = blocks.setdefault(kind, {"area_um2": 0.0, "ff_area_um2": 0.0, "instances": 0,
                                     "parts": {}})
        b["area_um2"] += n * area
        b["ff_area_um2"] += n * ff
        b["instances"] += n
        c_own, _, grand = areas[child]
        b["parts"]["(own)"] = b["parts"].get("(own)", 0.0) + n * c_own
        grand_kinds = _kinds(grand, child)
        for g, m in grand.items():
            gk = grand_kinds[g]
            b["parts"][gk] = b["parts"].get(gk, 0.0) + n * m * _total(areas, g, memo)[0]
    blocks = dict(sorted(blocks.items(), key=lambda kv: -kv[1]["area_um2"]))
    return {"total_um2": total, "ff_area_um2": total_ff, "top_own_um2": own,
            "top_own_ff_um2": own_ff, "blocks": blocks}


def breakdown(unit, cfg, tools, out_dir=flow.DEFAULT_OUT, period_ns=flow.DEFAULT_PERIOD_NS):
    """Hierarchical mapping of one unit in <run>/hier; returns group_blocks(...) plus timing."""
    from hdl.export import module_name, write
    run_dir = Path(out_dir) / f"{unit}_{cfg.tag}" / "hier"
    run_dir.mkdir(parents=True, exist_ok=True)
    v_path, _ = write(unit, cfg, run_dir)
    top = module_name(unit, cfg)
    lib = tools.liberty
    flow.stage(run_dir, Path(v_path), tools, period_ns)
    (run_dir / "stat.json").unlink(missing_ok=True)
    (run_dir / "hier.ys").write_text(_SCRIPT.format(verilog=v_path.name, top=top,
                                                    liberty=lib.path.name))
    t0 = time.monotonic()
    proc = subprocess.run([*tools.yosys, "-q", "-l", "yosys.log", "-s", "hier.ys"], cwd=run_dir,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (run_dir / "stat.json").is_file():
        raise flow.FlowError(f"{top}: hierarchical Yosys run failed (exit {proc.returncode}); "
                             f"log {run_dir / 'yosys.log'}:\n{flow._tail(run_dir / 'yosys.log')}")
    stat = json.loads((run_dir / "stat.json").read_text())
    result = group_blocks(module_areas(stat, lib), top)
    result.update(unit=unit, preset=cfg.tag, yosys_s=round(time.monotonic() - t0, 1),
                  verilog_sha256=hashlib.sha256(Path(v_path).read_bytes()).hexdigest())
    (run_dir / "breakdown.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def load(unit, tag, out_dir=flow.DEFAULT_OUT):
    path = Path(out_dir) / f"{unit}_{tag}" / "hier" / "breakdown.json"
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", required=True)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--out", type=Path, default=flow.DEFAULT_OUT)
    args = ap.parse_args(argv)
    (unit, cfg), = flow._configs([args.unit], [args.preset])
    tools = flow.Tools.setup(args.out)
    r = breakdown(unit, cfg, tools, args.out)
    print(f"{unit} {cfg.tag}: {r['total_um2']:,.0f} um2 hierarchical "
          f"({r['yosys_s']:.0f} s); top's own cells {r['top_own_um2']:,.0f} um2")
    for kind, b in r["blocks"].items():
        parts = ", ".join(f"{k} {v / b['area_um2']:.0%}" for k, v in
                          sorted(b["parts"].items(), key=lambda kv: -kv[1]) if v)
        print(f"  {kind:12} x{b['instances']:<4} {b['area_um2']:>12,.0f} um2 "
              f"({b['area_um2'] / r['total_um2']:.1%})  {parts}")


if __name__ == "__main__":
    sys.exit(main())
