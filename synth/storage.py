"""Parameter storage of every unit, and its area three ways (design/ppa.md "Storage: one rule for
every unit"; numbers and sources in docs/ppa.md).

    python -m synth.storage [--build build]      # measures the arrays, writes storage.json/.md

The rule, the same for every unit: a unit's *parameter storage* is the memory that holds its
per-column parameters (written by software, read every beat). NMPU: `columns` words of
`cfg.word_fields` bits, one memory of columns / lanes words per lane; LDPU: `columns` words of
five binary16 values (5 × 16 bits); ESSOP and the FP16 outer-product array hold none (their
registers are ports of the unit: the register file sits outside, as for the NMPU's and LDPU's
layer registers, which no unit counts). Counters, pipeline registers and read-out banks are
datapath, not storage, and stay flip-flops in every column.

Area is reported in three separate kinds, never mixed inside one ratio:
- `ff`: the unit as synthesised (`make synth`): the memories are flip-flops with write enables
  and a read multiplexer (Amaranth `Memory` mapped by Yosys `memory_map`);
- `latch`: the same unit with each memory replaced by a latch array of the same geometry. Yosys
  maps latches onto the library's LATCH cell (`dfflibmap` maps `$_DLATCH_P_`); the array is
  synthesised here, both styles side by side, at the unit's own depth × width, and the unit's
  area changes by the difference (arrays × (flip-flop array − latch array));
- `sram`: the memories as one SRAM macro per unit (all lanes read the same address each beat,
  so the macro is `depth` rows of `lanes × word bits`), area from a cited 0.18 µm 6T bit cell
  and a stated periphery model (`SRAM`), replacing the flip-flop arrays the same way.
"""

import argparse
import dataclasses
import hashlib
import json
import math
import re
import subprocess
from pathlib import Path

from synth import flow

__all__ = ["SRAM", "Storage", "storage_of", "sram_area_um2", "array_verilog", "measure_array",
           "attach", "markdown", "main"]

ROOT = Path(__file__).resolve().parent.parent

# 6T bit cell of a 0.18 µm logic process: 5.59 µm² (Intel's 180 nm generation, S. Yang et al.,
# "A high performance 180 nm generation logic technology", IEDM 1998, Table 1). OSU018 is a
# scalable-CMOS (lambda-rule) library whose cells are larger than a foundry's own, so this cell
# is an optimistic (small) SRAM figure next to the measured flip-flops and latches.
# Periphery (a stated model, not a measurement): a row decoder and word-line driver strip of
# `row_strip_um` beside the array, a column strip (precharge, sense amplifier, write driver) of
# `col_strip_um` below it, and a fixed control block (address/data latches, timing).
SRAM = {"cell_um2": 5.59, "cell_aspect": 2.0, "row_strip_um": 30.0, "col_strip_um": 40.0,
        "control_um2": 5000.0,
        "source": "6T cell 5.59 um^2: S. Yang et al., IEDM 1998 (Intel 180 nm logic technology); "
                  "periphery: stated model (decoder strip 30 um, column strip 40 um, control "
                  "5000 um^2)"}


@dataclasses.dataclass(frozen=True)
class Storage:
    """A unit's parameter memories: `arrays` memories of `depth` words × `width` bits each
    (flip-flop or latch form), read together at one address (one SRAM macro of depth rows ×
    arrays · width columns)."""

    unit: str
    arrays: int
    depth: int
    width: int

    @property
    def bits(self):
        return self.arrays * self.depth * self.width


def storage_of(unit, cfg):
    """The parameter storage of one unit × config (see the module docstring for the rule)."""
    if unit == "nmpu":
        return Storage(unit, cfg.lanes, cfg.columns // cfg.lanes, sum(b for _, b in cfg.word_fields))
    if unit == "ldpu":
        return Storage(unit, 1, cfg.columns, sum(b for _, b in cfg.word_fields))
    if unit in ("essop", "fp16outer"):
        return Storage(unit, 0, 0, 0)
    raise ValueError(f"no storage rule for unit {unit!r}")


def sram_area_um2(rows, cols, model=SRAM):
    """One SRAM macro of `rows` words × `cols` bits: cell array plus the periphery model."""
    if rows < 1 or cols < 1:
        raise ValueError(f"an SRAM macro needs rows and cols >= 1, not {rows} x {cols}")
    h = math.sqrt(model["cell_um2"] / model["cell_aspect"])     # cell height, width = aspect·h
    w = model["cell_aspect"] * h
    array_w, array_h = cols * w, rows * h
    return ((array_w + model["row_strip_um"]) * (array_h + model["col_strip_um"])
            + model["control_um2"])


# -- the measured arrays ---------------------------------------------------------------------------

def array_verilog(style, depth, width):
    """A memory of `depth` × `width` bits with one write port (registered address, data and enable,
    as the units' write ports are driven from registers) and one combinational read port, in
    flip-flop or latch form. The latch form is the classic latch register file: the write data is
    registered, and each word's latches open during the clock's high phase when the registered
    write enable selects it; the per-word enable passes a low-phase latch first (a latch-based
    clock gate), so it cannot glitch while the word is open."""
    if style not in ("ff", "latch"):
        raise ValueError(f"`style` must be 'ff' or 'latch', not {style!r}")
    a = max(1, (depth - 1).bit_length())
    head = (f"module mem_{style} (input clk, input we, input [{a - 1}:0] wa, "
            f"input [{width - 1}:0] wd, input [{a - 1}:0] ra, output [{width - 1}:0] rd);\n"
            f"  reg [{width - 1}:0] mem [0:{depth - 1}];\n"
            f"  assign rd = mem[{'ra' if depth > 1 else '0'}];\n")
    wa = "wa" if depth > 1 else "0"     # one word: a register, the address unused
    if style == "ff":
        body = f"  always @(posedge clk) if (we) mem[{wa}] <= wd;\n"
        return head + body + "endmodule\n"
    # each word its own latch register (not a Verilog memory), read through the same mux
    head = head.replace(f"  reg [{width - 1}:0] mem [0:{depth - 1}];",
                        f"  wire [{width - 1}:0] mem [0:{depth - 1}];")
    body = (f"  reg [{width - 1}:0] wd_q;\n  reg [{depth - 1}:0] en_q, gate;\n"
            f"  always @(posedge clk) begin wd_q <= wd; en_q <= we ? {depth}'d1 << {wa} : "
            f"{depth}'d0; end\n"
            "  always @* if (!clk) gate = en_q;\n  genvar k;\n"
            f"  generate for (k = 0; k < {depth}; k = k + 1) begin : w\n"
            f"    reg [{width - 1}:0] q;\n"
            "    always @* if (clk & gate[k]) q = wd_q;\n"
            "    assign mem[k] = q;\n  end endgenerate\n")
    return head + body + "endmodule\n"


_YS = """read_verilog {src}
synth -flatten -top {top} -noabc
delete t:$scopeinfo
setattr -unset init w:*
dfflibmap -liberty {liberty}
abc -liberty {liberty} -constr abc.constr -script abc.script
opt_clean
tee -q -o stat.json stat -json -liberty {liberty}
"""


def measure_array(style, depth, width, tools, out_dir):
    """Area (µm²) and cell counts of one `array_verilog` synthesised by the flow's mapping (the
    same ABC script and Liberty file as `make synth`); cached by the Verilog text."""
    src = array_verilog(style, depth, width)
    run = Path(out_dir) / f"{style}_{depth}x{width}"
    cache = run / "result.json"
    key = hashlib.sha256((src + json.dumps(flow.flow_settings()) + json.dumps(tools.versions))
                         .encode()).hexdigest()
    if cache.is_file():
        doc = json.loads(cache.read_text())
        if doc.get("key") == key:
            return doc
    run.mkdir(parents=True, exist_ok=True)
    (run / "array.v").write_text(src)
    flow.stage(run, run / "array.v", tools)
    (run / "array.ys").write_text(_YS.format(src="array.v", top=f"mem_{style}",
                                             liberty=tools.liberty.path.name))
    subprocess.run([*tools.yosys, "-q", "-l", "yosys.log", "-s", "array.ys"], cwd=run, check=True,
                   capture_output=True)
    stat = json.loads((run / "stat.json").read_text())
    top = stat["modules"][f"\\mem_{style}"] if f"\\mem_{style}" in stat["modules"] else \
        next(iter(stat["modules"].values()))
    cells = {re.sub(r"^\\", "", k): v for k, v in top["num_cells_by_type"].items()}
    lib = tools.liberty
    doc = {"key": key, "style": style, "depth": depth, "width": width,
           "area_um2": sum(lib.areas[c] * n for c, n in cells.items()), "cells": cells,
           "latch_cells": sum(n for c, n in cells.items() if c in lib.latches),
           "ff_cells": sum(n for c, n in cells.items() if c in lib.sequential and c not in lib.latches)}
    cache.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


# -- the three kinds per unit ----------------------------------------------------------------------

KINDS = ("ff", "latch", "sram")


def _config(unit, cfg_dict):
    from hdl.export import UNITS
    return UNITS[unit][0].from_dict(cfg_dict)


def unit_storage(unit, cfg, area_ff_um2, tools, out_dir):
    """{bits, arrays, depth, width, area_um2: {ff, latch, sram}, arrays_um2: {ff, latch}} of one
    unit whose synthesised (flip-flop) area is `area_ff_um2`."""
    st = storage_of(unit, cfg)
    out = {"bits": st.bits, "arrays": st.arrays, "depth": st.depth, "width": st.width}
    if not st.bits:
        out["area_um2"] = dict.fromkeys(KINDS, area_ff_um2)
        out["note"] = "no parameter storage: the three kinds are the same unit"
        return out
    ff = measure_array("ff", st.depth, st.width, tools, out_dir)
    lat = measure_array("latch", st.depth, st.width, tools, out_dir)
    if not lat["latch_cells"]:
        raise RuntimeError(f"{unit}: the latch array mapped to no latch cell: {lat['cells']}")
    sram = sram_area_um2(st.depth, st.arrays * st.width)
    out["arrays_um2"] = {"ff": ff["area_um2"], "latch": lat["area_um2"]}
    out["sram_macro_um2"] = sram
    out["area_um2"] = {"ff": area_ff_um2,
                       "latch": area_ff_um2 - st.arrays * (ff["area_um2"] - lat["area_um2"]),
                       "sram": area_ff_um2 - st.arrays * ff["area_um2"] + sram}
    return out


def attach(rows, rat, build, tools=None):
    """Adds `storage` to every PPA row (bits, area of each kind, items / s / mm² of each kind)
    and `rat['storage']`: the NMPU/LDPU and ESSOP/FP16 ratios computed within each kind."""
    out_dir = Path(build) / "synth" / "storage"
    try:
        tools = tools or flow.Tools.setup(Path(build) / "synth", install=False)
    except Exception as exc:     # no Yosys / Liberty here: the report says so
        rat["storage"] = {"error": f"storage arrays not measured: {exc}"}
        return
    for r in rows:
        if "error" in r or not r.get("config"):
            continue
        st = unit_storage(r["unit"], _config(r["unit"], r["config"]), r["area_um2"], tools, out_dir)
        ips = r.get("items_per_s")
        st["items_per_s_per_mm2"] = {k: (ips / (a / 1e6) if ips else None)
                                     for k, a in st["area_um2"].items()}
        r["storage"] = st
    rat["storage"] = {"sram_model": SRAM, "nmpu_vs_ldpu": [], "essop_vs_fp16": []}
    for e in rat.get("nmpu_vs_ldpu", []):
        n, ld = _row(rows, "nmpu", e["nmpu"]), _row(rows, "ldpu", e["ldpu"])
        if n and ld and "storage" in n and "storage" in ld:
            rat["storage"]["nmpu_vs_ldpu"].append(_within(e["nmpu"], e["ldpu"], n, ld))
    fp = _row(rows, "fp16outer", "paper")
    for r in rows:
        if r["unit"] == "essop" and fp and "storage" in r and "storage" in fp:
            rat["storage"]["essop_vs_fp16"].append(_within(r["preset"], fp["preset"], r, fp))


def _row(rows, unit, preset):
    return next((r for r in rows if r["unit"] == unit and r["preset"] == preset
                 and "error" not in r), None)


def _within(a_name, b_name, a, b):
    """Ratios of unit a against unit b, each computed inside one storage kind: area b ÷ a (how
    many times smaller a is) and items / s / mm² a ÷ b."""
    sa, sb = a["storage"], b["storage"]
    e = {"a": a_name, "b": b_name, "area_ratio": {}, "area_efficiency_ratio": {}}
    for k in KINDS:
        e["area_ratio"][k] = sb["area_um2"][k] / sa["area_um2"][k]
        ea, eb = sa["items_per_s_per_mm2"][k], sb["items_per_s_per_mm2"][k]
        e["area_efficiency_ratio"][k] = ea / eb if (ea and eb) else None
    return e


def _f(x, spec, dash="—"):
    return dash if x is None else format(x, spec)


def markdown(rows, rat):
    """The storage section of ppa.md."""
    st = rat.get("storage")
    if not st:
        return ""
    lines = ["", "## Parameter storage, three ways (flip-flops, latch array, SRAM macro)", ""]
    if "error" in st:
        return "\n".join(lines + [st["error"], ""])
    m = st["sram_model"]
    lines += ["Storage bits by one rule for every unit (`synth/storage.py`): NMPU columns × word "
              "bits, LDPU columns × 5 × 16, ESSOP and the FP16 array none. Each column is the "
              "whole unit with its memories in that form: flip-flops as synthesised; latch "
              "arrays of the same geometry (measured, mapped onto LATCH); one SRAM macro "
              f"({m['source']}). Ratios are computed within one kind, never across kinds.", "",
              "| unit | preset | storage bits | area mm² (FF) | area mm² (latch) | "
              "area mm² (SRAM) | items / s / mm² (FF) | (latch) | (SRAM) |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        s = r.get("storage")
        if not s:
            continue
        a, e = s["area_um2"], s["items_per_s_per_mm2"]
        lines.append(f"| {r['unit']} | {r['preset']} | {s['bits']:,} | {a['ff'] / 1e6:.3f} | "
                     f"{a['latch'] / 1e6:.3f} | {a['sram'] / 1e6:.3f} | {_f(e['ff'], '.3g')} | "
                     f"{_f(e['latch'], '.3g')} | {_f(e['sram'], '.3g')} |")
    for key, title in (("nmpu_vs_ldpu", "NMPU against the LDPU"),
                       ("essop_vs_fp16", "ESSOP against the FP16 array")):
        if not st[key]:
            continue
        lines += ["", f"{title}, within each kind:", "",
                  "| unit | against | area ratio (against ÷ unit) FF | latch | SRAM | "
                  "area-efficiency ratio (unit ÷ against) FF | latch | SRAM |", "|---|---|--:|--:|--:|--:|--:|--:|"]
        for e in st[key]:
            ar, er = e["area_ratio"], e["area_efficiency_ratio"]
            lines.append(f"| {e['a']} | {e['b']} | {ar['ff']:.2f}x | {ar['latch']:.2f}x | "
                         f"{ar['sram']:.2f}x | {_f(er['ff'], '.2f')}x | {_f(er['latch'], '.2f')}x"
                         f" | {_f(er['sram'], '.2f')}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", default="nmpu")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--build", type=Path, default=ROOT / "build")
    args = ap.parse_args(argv)
    from hdl.export import UNITS
    cfg = UNITS[args.unit][1][args.preset]
    tools = flow.Tools.setup(args.build / "synth")
    st = storage_of(args.unit, cfg)
    print(f"{args.unit} {args.preset}: {st.bits} storage bits ({st.arrays} arrays of "
          f"{st.depth} x {st.width})")
    if st.bits:
        for style in ("ff", "latch"):
            doc = measure_array(style, st.depth, st.width, tools, args.build / "synth" / "storage")
            print(f"  {style} array: {doc['area_um2']:.0f} um^2 ({doc['area_um2'] / (st.depth * st.width):.1f}"
                  f" per bit), cells {doc['cells']}")
        print(f"  SRAM macro {st.depth} x {st.arrays * st.width}: "
              f"{sram_area_um2(st.depth, st.arrays * st.width):.0f} um^2")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
