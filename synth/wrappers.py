"""Area and energy of the periphery wrappers (hdl/periphery.py: NMPU, LDPU and ESSOP tops),
apart from the units they wrap.

    python -m synth.wrappers [--preset nmpu_paper ...]   synthesize the tops (build/synth/periphery_<tag>/)
    python -m synth.wrappers --energy [--preset nmpu_tiny]   energy of a synthesized top and its unit

A top is synthesized by the same flow as the units (`synth.flow.run`); its wrapper area is the
top's area minus the wrapped unit's flat area from the same flow (its row in the PPA report),
and its share is that difference over the unit's area (issue 18's target: at most 10 % of the
NMPU `paper`). `attach` / `markdown` put the rows into the PPA report when the tops' results
exist.

Energy (`wrapper_energy`, NMPU and ESSOP tops with one parameter image): the mapped netlists
of the top and of its unit (both from `synth.flow`) run the same job at gate level through
synth/power.py's public steps (`compile_gate`, `run_gate`, `read_vcd`, `Model`). NMPU
(`nmpu_job`): one layer's parameters and registers, then `count` vectors back to back (one
layer for the whole window because a job cannot change LAYER; the unit's own power rows draw
one layer per vector, so they are not reused here). ESSOP (`essop_job`): `count` products at
one BL and learning rate, reseeded before the first (`synth.power_workload.essop_window` with
one lr_shift). The unit gets the job on its own ports (the verif.vectors bench,
`power.write_bench`); the top through AXI4-Lite writes (window, LAYER, IRQ_EN, JOB,
CTRL.start) and AXI4-Stream beats (`top_bench`, a plain Verilog bench that checks every output
beat and tlast against the golden model and the interrupt after the last). Both windows run
from the first input handshake to the last output handshake, charged per item as
synth/power.py does (fill and drain clocks at idle cost); the wrapper's energy per item is the
difference. The bus writes before the stream are per job, not per item: they are left out of
both windows.
"""

import argparse
import json
from pathlib import Path

from synth import flow

__all__ = ["TARGET_SHARE", "wrapper_rows", "attach", "markdown", "layer_workload", "top_bench",
           "window_energy", "wrapper_energy", "main"]

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
    energy = sorted(Path(build, "power", "wrappers").glob("periphery_*.json"))
    rat["wrapper_energy"] = [json.loads(p.read_text()) for p in energy]


def _energy_markdown(rat):
    e = rat.get("wrapper_energy") or []
    if not e:
        return []
    lines = ["", "Energy per item (vector, product), gate level, the same job through the top's "
                 "buses and on the unit's own ports (`python -m synth.wrappers --energy`):", "",
             "| top | unit pJ | top pJ | wrapper pJ | share | period ns |",
             "|---|--:|--:|--:|--:|--:|"]
    for r in e:
        lines.append(f"| {r['top']} | {r['unit_energy']['pj_per_item']:.1f} | "
                     f"{r['top_energy']['pj_per_item']:.1f} | {r['wrapper_pj_per_item']:.1f} | "
                     f"{r['wrapper_share']:.1%} | {r['period_ns']} |")
    return lines


def markdown(rows, rat):
    w = rat.get("wrappers") or []
    if not w:
        return "\n".join(_energy_markdown(rat)[1:]) + "\n" if rat.get("wrapper_energy") else ""
    lines = ["", "## Periphery wrappers (AXI4-Lite registers, job gate, stream framing)", "",
             f"Top area minus the unit's flat area, same flow (`python -m synth.wrappers`); "
             f"target: at most {TARGET_SHARE:.0%} of the unit.", "",
             "| top | unit area mm² | top area mm² | wrapper mm² | share | f_max unit / top MHz |",
             "|---|--:|--:|--:|--:|--:|"]
    for r in w:
        lines.append(f"| {r['top']} | {r['unit_area_um2'] / 1e6:.3f} | {r['top_area_um2'] / 1e6:.3f}"
                     f" | {r['wrapper_area_um2'] / 1e6:.4f} | {r['wrapper_share']:.1%} | "
                     f"{r['unit_fmax_mhz']} / {r['top_fmax_mhz']} |")
    return "\n".join(lines + _energy_markdown(rat)) + "\n"


# -- energy ------------------------------------------------------------------------------------

ENERGY_ITEMS = {"nmpu": 16, "essop": 4}    # items per window (synth.power's counts)
ENERGY_OUT = flow.ROOT / "build" / "power" / "wrappers"


def layer_workload(core, count, seed=1):
    """One NMPU layer for a whole job: random parameters, layer registers (shift chosen so the
    outputs are neither all zero nor all clamped), `count` vectors of counts and residuals;
    returns {words, layer, ins {p, n, res} (count, columns), y, clamped} from the golden model."""
    import numpy as np
    from golden import nmpu as gn
    from hdl.config import NMPUConfig
    if not isinstance(core, NMPUConfig):
        raise ValueError(f"the wrapper energy workload is an NMPU layer, not a "
                         f"{type(core).__name__}")
    rng = np.random.default_rng(seed)
    n = core.columns
    params = gn.NMPUParams(sp=rng.integers(0, core.scale_max + 1, n),
                           sn=rng.integers(0, core.scale_max + 1, n) if core.two_scales else None,
                           o=rng.integers(*core.offset_range, n, endpoint=True),
                           e=rng.integers(0, core.e_max + 1, n) if core.exp_bits else None)
    shape = (count, n)
    ins = {"p": rng.integers(0, core.adc_max + 1, shape), "n": rng.integers(0, core.adc_max + 1,
                                                                             shape),
           "res": rng.integers(*core.out_range, shape, endpoint=True)}
    best = None
    for shift in range(core.max_shift + 1):
        layer = {"shift": shift, "pre_cut": 0, "round_mode": 2, "relu_mid": 0, "relu_out": 0,
                 "residual_en": 1}
        y, clamped = gn.forward(core, gn.NMPULayer(**layer), params, p=ins["p"], n=ins["n"],
                                r=ins["res"], return_clamped=True)
        score = abs(float(np.mean(clamped)) - 0.1)        # some clamping, mostly not
        if best is None or score < best[0]:
            best = (score, layer, y, clamped)
    _, layer, y, clamped = best
    return {"words": [int(w) for w in gn.pack_params(core, params)], "layer": layer, "ins": ins,
            "y": y, "clamped": clamped}


def _unit_vectors(core, ports, wl):
    """The workload on the unit's own ports (a verif.vectors.Vectors, one layer word)."""
    import numpy as np
    from verif.payload import Codec
    from verif.vectors import Vectors
    v = wl["y"].shape[0]
    n = v * core.beats
    last = np.tile(np.arange(core.beats) == core.beats - 1, v).astype(np.int64)
    beats = {k: np.asarray(a).reshape(n, core.lanes) for k, a in wl["ins"].items()}
    layer = Codec(ports["layer"]).encode({f: np.full(n, wl["layer"].get(f, 0), np.int64)
                                          for f in ports["layer"]["fields"]})
    top = (1 << core.clamp_count_bits) - 1
    return Vectors(inputs=Codec(ports["i__payload"]).encode(beats | {"last": last}),
                   outputs=Codec(ports["o__payload"]).encode(
                       {"y": np.asarray(wl["y"]).reshape(n, core.lanes), "last": last}),
                   regs={"layer": layer}, writes=list(enumerate(wl["words"])),
                   status={"frame_error": 0, "reg_error": 0,
                           "clamp_count": min(int(np.sum(wl["clamped"])), top)},
                   clocks=len(wl["words"]) + n, item_clocks=core.beats,
                   golden="golden.nmpu.pack_params, golden.nmpu.forward",
                   summary=f"{v} vectors of one layer (wrapper energy workload)")


def _bus_writes(pcfg, words, layer, items, **pulses):
    """(address, data) of a job on the top: the parameter window (`words`, column by column),
    the LAYER fields, IRQ_EN.done, JOB (`items`), CTRL.start with `pulses` (IMAGE.base stays
    0)."""
    from hdl.periphery import periphery_regmap
    from hdl.regmap import BUS_BITS
    rm = periphery_regmap(pcfg)
    w = rm.window
    writes = []
    for col, word in enumerate(words):
        for k in range(w.words):
            writes.append((w.offset + 4 * (col * w.stride + k),
                           (word >> (BUS_BITS * k)) & ((1 << BUS_BITS) - 1)))
    regs = {}
    for r, f in rm.fields_of("LAYER"):
        regs[r.offset] = regs.get(r.offset, 0) | (int(layer.get(f.name, 0)) << f.lsb)
    writes += sorted(regs.items())
    ctrl = rm.reg("CTRL")
    start = 1 | sum(int(v) << ctrl.field(name).lsb for name, v in pulses.items())
    writes += [(rm.reg("IRQ_EN").offset, 1), (rm.reg("JOB").offset, items),
               (ctrl.offset, start)]
    return writes


def nmpu_job(pcfg, count, seed=1):
    """The NMPU energy job of top `pcfg`: `layer_workload` as the top's bus writes, input and
    output beats [(tdata, tlast)] (the streams' layouts from its export JSON `meta`), and the
    unit's own Vectors."""
    import numpy as np
    from verif.payload import Codec
    core = pcfg.core
    wl = layer_workload(core, count, seed)
    n = count * core.beats
    last = np.tile(np.arange(core.beats) == core.beats - 1, count).astype(np.int64)

    def beats(meta):
        s_axis, m_axis = meta["streams"]["s_axis"], meta["streams"]["m_axis"]
        tdata = Codec(s_axis).encode({k: np.asarray(a).reshape(n, core.lanes)
                                      for k, a in wl["ins"].items() if k in s_axis["fields"]})
        out = Codec(m_axis).encode({"y": np.asarray(wl["y"]).reshape(n, core.lanes)})
        return list(zip(tdata, last)), list(zip(out, last))
    return {"writes": _bus_writes(pcfg, wl["words"], wl["layer"], count), "beats": beats,
            "unit_vectors": lambda ports: _unit_vectors(core, ports, wl), "items": count,
            "item_clocks": core.beats}


def essop_job(pcfg, count, seed=1, log2_bl=2):
    """The ESSOP energy job of top `pcfg`: `count` products of random binary16 x and δ at one
    BL and learning rate, reseeded before the first (`synth.power_workload.essop_window`, the
    unit's Vectors; its seeds go into LAYER and CTRL.reseed on the top), the read-out beats
    from golden.essop."""
    import numpy as np
    from golden import fp16
    from synth import power_workload as pw
    from verif.payload import Codec
    core = pcfg.core
    rng = np.random.default_rng(seed)
    xs = fp16.encode(rng.standard_normal((count, core.rows)) * 2.0 ** rng.integers(-4, 2, (count, 1)))
    ds = fp16.encode(rng.standard_normal((count, core.cols)) * 2.0 ** -10)
    log2_bl = min(log2_bl, core.log2_bl_max)
    lr = min(2, core.lr_shift_max)
    seed_x, seed_d = pw.ESSOP_SEEDS
    layer = {"log2_bl": log2_bl, "lr_shift": lr, "seed_x": seed_x, "seed_d": seed_d}

    def unit_vectors(ports):
        return pw.essop_window(core, ports, xs, ds, log2_bl, np.full(count, lr))

    def beats(meta):
        from hdl.essop import output_layout
        from hdl.export import _shape_map
        vec = unit_vectors({"i__payload": meta["streams"]["s_axis"],
                            "o__payload": _shape_map(output_layout(core))})
        out = Codec(_shape_map(output_layout(core))).decode(vec.outputs)
        tdata = Codec(meta["streams"]["m_axis"]).encode(
            {k: v for k, v in out.items() if k != "last"})
        return [(t, 1) for t in vec.inputs], list(zip(tdata, out["last"]))
    bl = 1 << log2_bl
    return {"writes": _bus_writes(pcfg, [], layer, count, reseed=1), "beats": beats,
            "unit_vectors": unit_vectors, "items": count,
            "item_clocks": bl + core.readout_beats}


_TOP_TB = """// Written by synth/wrappers.py: the wrapper energy workload through {module}'s buses.
// rst for 3 clocks; the AXI4-Lite writes of wr.hex (address, data; each OKAY); the input beats
// of in.hex (tlast, tdata) back to back; every output beat (tlast, tdata) against out.hex; irq
// after the last; the last line is `PASS <n> beats` or `FAIL ...`. Drives change with
// nonblocking assignments at the rising edge; handshakes are the values just before it.
`timescale 1ns/1ps
module tb_{module};
  localparam N_WR = {n_wr}, N_IN = {n_in}, N_OUT = {n_out}, W_IN = {w_in}, W_OUT = {w_out};
  localparam A = {addr_bits}, TIMEOUT = {timeout};
  reg clk = 1'b0;
  reg rst = 1'b1;
  always #5 clk = ~clk;
  reg [A-1:0] awaddr = 0;
  reg [31:0] wdata = 0;
  reg awvalid = 1'b0, wvalid = 1'b0;
  wire awready, wready, bvalid, arready, rvalid;
  wire [1:0] bresp, rresp;
  wire [31:0] rdata;
  reg [W_IN-1:0] s_tdata = 0;
  reg s_tvalid = 1'b0, s_tlast = 1'b0;
  wire s_tready, m_tvalid, m_tlast, irq;
  wire [W_OUT-1:0] m_tdata;
  // the handshakes synth/power.py's window looks for
  wire i__valid = s_tvalid, i__ready = s_tready, o__valid = m_tvalid, o__ready = 1'b1;
  {module} dut (
    .clk(clk), .rst(rst),
    .s_axil_awaddr(awaddr), .s_axil_awvalid(awvalid), .s_axil_awready(awready),
    .s_axil_wdata(wdata), .s_axil_wstrb(4'hf), .s_axil_wvalid(wvalid), .s_axil_wready(wready),
    .s_axil_bresp(bresp), .s_axil_bvalid(bvalid), .s_axil_bready(1'b1),
    .s_axil_araddr({{A{{1'b0}}}}), .s_axil_arvalid(1'b0), .s_axil_arready(arready),
    .s_axil_rdata(rdata), .s_axil_rresp(rresp), .s_axil_rvalid(rvalid), .s_axil_rready(1'b1),
    .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready),
    .s_axis_tlast(s_tlast),
    .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid), .m_axis_tready(1'b1),
    .m_axis_tlast(m_tlast), .irq(irq)
  );
  reg [A+31:0] wr_mem [0:N_WR-1];
  reg [W_IN:0] in_mem [0:N_IN-1];
  reg [W_OUT:0] out_mem [0:N_OUT-1];
  initial begin
    $readmemh("wr.hex", wr_mem);
    $readmemh("in.hex", in_mem);
    $readmemh("out.hex", out_mem);
    repeat (3) @(posedge clk);
    rst <= 1'b0;
  end
  integer cycle = 0, wr_next = 0, in_next = 0, out_n = 0, errors = 0, tail = 0;
  reg waiting_b = 1'b0;
  always @(posedge clk) begin
    cycle = cycle + 1;
    if (cycle == TIMEOUT) begin
      $display("FAIL timeout: %0d writes, %0d of %0d inputs, %0d of %0d outputs", wr_next,
               in_next, N_IN, out_n, N_OUT);
      $finish;
    end
    if (!rst) begin
      if (wr_next < N_WR) begin
        if (awvalid && awready) begin
          awvalid <= 1'b0;
          wvalid <= 1'b0;
          waiting_b <= 1'b1;
        end else if (waiting_b) begin
          if (bvalid) begin
            if (bresp != 2'b00) begin
              $display("FAIL write %0d to %h: bresp %0d", wr_next, wr_mem[wr_next][A+31:32],
                       bresp);
              $finish;
            end
            waiting_b <= 1'b0;
            wr_next = wr_next + 1;
          end
        end else if (!awvalid) begin
          awaddr <= wr_mem[wr_next][A+31:32];
          wdata <= wr_mem[wr_next][31:0];
          awvalid <= 1'b1;
          wvalid <= 1'b1;
        end
      end else begin
        if (s_tvalid && s_tready)
          in_next = in_next + 1;
        s_tvalid <= in_next < N_IN;
        if (in_next < N_IN) begin
          s_tdata <= in_mem[in_next][W_IN-1:0];
          s_tlast <= in_mem[in_next][W_IN];
        end
      end
      if (m_tvalid) begin
        if (out_n >= N_OUT || {{m_tlast, m_tdata}} !== out_mem[out_n]) begin
          if (errors == 0)
            $display("FAIL beat %0d: expected %h, got %h", out_n,
                     out_n < N_OUT ? out_mem[out_n] : 0, {{m_tlast, m_tdata}});
          errors = errors + 1;
        end
        out_n = out_n + 1;
      end
      if (out_n >= N_OUT) begin
        tail = tail + 1;
        if (tail == 8) begin
          if (errors == 0 && irq === 1'b1 && in_next == N_IN) begin
            $display("PASS %0d beats", N_OUT);
          end else begin
            if (errors == 0)
              $display("FAIL irq %b after the last output, %0d inputs", irq, in_next);
          end
          $finish;
        end
      end
    end
  end
endmodule
"""


def _hex(path, values, bits):
    digits = -(-bits // 4)
    Path(path).write_text("".join(f"{int(v):0{digits}x}\n" for v in values))


def top_bench(pcfg, folder, job):
    """The top's bench and vector files for `job` (`nmpu_job`, `essop_job`) in `folder` (its
    Verilog written there too); returns a manifest for synth/power.py's compile_gate."""
    from hdl.export import write
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    v_path, j_path = write("periphery", pcfg, folder)
    meta = json.loads(j_path.read_text())
    ins, outs = job["beats"](meta)
    w_in, w_out = meta["streams"]["s_axis"]["width"], meta["streams"]["m_axis"]["width"]
    writes = job["writes"]
    a_bits = meta["derived"]["addr_bits"]
    _hex(folder / "wr.hex", [(a << 32) | d for a, d in writes], a_bits + 32)
    _hex(folder / "in.hex", [(int(last) << w_in) | int(t) for t, last in ins], w_in + 1)
    _hex(folder / "out.hex", [(int(last) << w_out) | int(t) for t, last in outs], w_out + 1)
    module = meta["module"]
    tb = f"tb_{module}.v"
    (folder / tb).write_text(_TOP_TB.format(
        module=module, n_wr=len(writes), n_in=len(ins), n_out=len(outs), w_in=w_in, w_out=w_out,
        addr_bits=a_bits, timeout=10 * (len(writes) * 4 + len(outs))
        + 2 * job["items"] * job["item_clocks"] + 200))
    return {"module": module, "testbench": tb, "out_beats": len(outs), "in_beats": len(ins),
            "item_clocks": job["item_clocks"], "dir": str(folder)}


def window_energy(folder, manifest, netlist, models, lib, period_ns, items):
    """Gate-level run of the bench in `folder` with the mapped `netlist` (synth/power.py's
    zero-delay run and VCD), energy over its window; per item with the fill and drain clocks
    charged at idle cost, as synth/power.py charges them."""
    from synth import power
    net = power.parse_netlist(netlist)
    sim = power.compile_gate(folder, manifest, netlist, models, net=net)
    last, seconds = power.run_gate(sim, folder)
    act = power.read_vcd(Path(folder) / power.VCD, sim.net, sim.tb, sim.names)
    (Path(folder) / power.VCD).unlink()
    model = power.Model.build(lib, net)
    e = model.energy(act.rises, act.falls, act.clocks, period_ns)
    idle = model.idle_per_clock(period_ns)
    extra = max(0, act.clocks - items * manifest["item_clocks"])
    return {"result": last, "window_clocks": act.clocks, "energy_pj": e["total"],
            "pj_per_item": (e["total"] - extra * idle) / items, "idle_pj_per_clock": idle,
            "classes_pj": e["classes"], "cells": len(net.cells), "sim_s": round(seconds, 2)}


def wrapper_energy(name="nmpu_tiny", synth_dir=flow.DEFAULT_OUT, out_dir=ENERGY_OUT,
                   count=None, seed=1):
    """Energy per item (vector, product) of the top `name` and of its unit on the same job, and
    the wrapper's (their difference); both netlists at the top's synthesized period. Writes and
    returns the row (`out_dir/periphery_<tag>.json`)."""
    from hdl.periphery import PERIPHERY_PRESETS
    from synth import power
    import time
    t0 = time.monotonic()
    pcfg = PERIPHERY_PRESETS[name]
    if pcfg.unit not in ("nmpu", "essop") or pcfg.images != 1:
        raise ValueError(f"wrapper energy needs an NMPU or ESSOP top with one parameter image, "
                         f"not {name} ({pcfg.unit}, {pcfg.images} images)")
    core = pcfg.core
    top_dir = Path(synth_dir) / f"periphery_{pcfg.tag}"
    unit_dir = Path(synth_dir) / f"{pcfg.unit}_{core.tag}"
    for d, how in ((top_dir, f"python -m synth.wrappers --preset {name}"),
                   (unit_dir, f"python -m synth.flow --unit {pcfg.unit} --preset {core.tag}")):
        if not (d / "netlist.v").is_file():
            raise power.PowerError(f"no mapped netlist in {d}: run `{how}` first")
    period = json.loads((top_dir / "result.json").read_text())["min_period_ns"]
    lib = power.library(synth_dir)
    models = power.cell_models(Path(synth_dir) / "tech")
    count = count or ENERGY_ITEMS[pcfg.unit]
    job = (nmpu_job if pcfg.unit == "nmpu" else essop_job)(pcfg, count, seed)
    base = Path(out_dir) / f"periphery_{pcfg.tag}"
    top = window_energy(base / "top", top_bench(pcfg, base / "top", job), top_dir / "netlist.v",
                        models, lib, period, count)
    unit_folder = base / "unit"
    unit_folder.mkdir(parents=True, exist_ok=True)
    from hdl.export import write
    exported = write(pcfg.unit, core, unit_folder)
    ports = json.loads(exported[1].read_text())["ports"]
    manifest = power.write_bench(pcfg.unit, core, unit_folder, job["unit_vectors"](ports),
                                 seed, "wrapper energy workload", exported)
    unit = window_energy(unit_folder, manifest, unit_dir / "netlist.v", models, lib, period,
                         count)
    extra = top["pj_per_item"] - unit["pj_per_item"]
    row = {"top": name, "unit": pcfg.unit, "preset": core.tag, "period_ns": period,
           "item": "vector" if pcfg.unit == "nmpu" else "product", "items": count,
           "top_energy": top, "unit_energy": unit,
           "wrapper_pj_per_item": extra, "wrapper_share": extra / unit["pj_per_item"],
           "wall_s": round(time.monotonic() - t0, 1)}
    (Path(out_dir) / f"periphery_{pcfg.tag}.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


def main(argv=None):
    from hdl.periphery import PERIPHERY_PRESETS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", choices=sorted(PERIPHERY_PRESETS),
                    help="periphery preset (default: nmpu_paper, ldpu_paper, essop_paper)")
    ap.add_argument("--out", type=Path, default=flow.DEFAULT_OUT)
    ap.add_argument("--energy", action="store_true",
                    help="energy per item of a synthesized NMPU or ESSOP top and its unit "
                         "(default presets: nmpu_tiny, essop_tiny)")
    args = ap.parse_args(argv)
    if args.energy:
        for name in args.preset or ["nmpu_tiny", "essop_tiny"]:
            r = wrapper_energy(name, args.out)
            print(f"periphery {name}: {r['top_energy']['pj_per_item']:.2f} pJ per {r['item']}, its "
                  f"unit {r['unit_energy']['pj_per_item']:.2f}: the wrapper {r['wrapper_pj_per_item']:.2f}"
                  f" pJ ({r['wrapper_share']:.1%}), at {r['period_ns']} ns; {r['wall_s']} s",
                  flush=True)
        return
    tools = flow.Tools.setup(args.out)
    for name in args.preset or ["nmpu_paper", "ldpu_paper", "essop_paper"]:
        row = flow.run("periphery", PERIPHERY_PRESETS[name], tools, out_dir=args.out)
        print(f"periphery {name}: {row['area_um2'] / 1e6:.3f} mm², f_max {row['fmax_mhz']} MHz",
              flush=True)


if __name__ == "__main__":
    main()
