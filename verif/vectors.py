"""Golden test vectors and a plain Verilog test bench per unit and config, to replay in Icarus
Verilog without Python (or in any Verilog simulator, against RTL or a netlist).

    python -m verif.vectors [--unit U ...] [--preset P ...] [--count N] [--seed S]
                            [--out DIR] [--run]

For each unit × preset, `DIR/<unit>_<tag>/` (default `build/vectors/`) receives the Verilog and
its JSON (`hdl.export.write`), the stimulus and the expected output beats in `$readmemh` format
(one hex value per line, line k = beat k; a leading `//` line says what the file holds), the
test bench `tb_<unit>_<tag>.v` made from `verif/vectors_tb/tb.v.in` and the port map, a
README.txt with the two commands that run it, and `vectors.json` (seed, counts, files, the
golden functions, the expected status). `--run` replays each folder in Icarus at once.

The expected beats come from the golden functions the cocotb benches check against, called
the same way: `golden.nmpu.forward`, `golden.baselines.forward` (LDPU),
`golden.essop.reseed` / `outer_product` with the LFSR state threaded from product to product,
`golden.baselines.outer_product` (FP16Outer); parameter words from `pack_params`, payloads
packed by `verif.payload.Codec` from the port map.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden import baselines as gb
from golden import essop as ge
from golden import fp16
from golden import nmpu as gn
from hdl.export import UNITS, write
from verif.payload import Codec
from verif.stimulus import FP16_CLASSES, FP16_SPECIALS, essop_operands, fp16_operands

__all__ = ["DEFAULT_COUNT", "Vectors", "GENERATORS", "KINDS", "draw", "write_replay", "generate", "compile_tb",
           "run_tb", "main"]

# vectors (NMPU, LDPU) or products (ESSOP, FP16Outer) per replay: each preset runs in seconds
DEFAULT_COUNT = {"nmpu": 8, "essop": 4, "ldpu": 2, "fp16outer": 8}
TEMPLATE = Path(__file__).with_name("vectors_tb") / "tb.v.in"
STREAM_PORTS = ("i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready")
WRITE_PORTS = ("wr__en", "wr__addr", "wr__data")
IDLE_PORTS = ("clear",)             # inputs the replay holds low
ESSOP_POWER_ON_SEEDS = (1, 1)       # the LFSR states after reset (as verif/tb_essop.py)
ESSOP_SHORT_LOG2_BL = 3             # BL up to 8 in the replay: short products


@dataclass
class Vectors:
    """One replay, as the integers the ports carry (payloads packed by the port map)."""

    inputs: list                    # i__payload of each input beat
    outputs: list                   # expected o__payload of each output beat
    regs: dict = field(default_factory=dict)     # input port -> value per input beat, on its port
                                                 # while the beat is on offer
    pulses: dict = field(default_factory=dict)   # 1-bit input -> per input beat: 1 raises it on
                                                 # the beat's first clock on offer
    writes: list = field(default_factory=list)   # (wr__addr, wr__data) written before streaming
    status: dict = field(default_factory=dict)   # output port -> value once the stream drained
    clocks: int = 0                 # clocks of writes and stream without stalls (the timeout)
    item_clocks: int = 1            # clocks of one vector or product (the tail after the last)
    golden: str = ""                # the golden functions the outputs come from
    summary: str = ""               # what the stimulus is, one line


# -- stimulus, the way the cocotb benches draw it --------------------------------------------------

def _draw(rng, lo, hi, shape, corners):
    """Integers in [lo, hi], a share `corners` of them on the two rails."""
    v = rng.integers(lo, hi + 1, shape)
    pick = rng.random(shape)
    return np.where(pick < corners / 2, lo, np.where(pick < corners, hi, v))


def _postproc_beats(cfg, ports, ins, regs, y, clamped, words):
    """NMPU and LDPU: vectors (V, columns) into `beats` beats of `lanes` columns framed by
    `last` (positions from `golden.nmpu.frame`, as the benches frame them: the framing repeats
    every vector, so two vectors' worth is checked), the layer word of each beat from the
    per-vector registers `regs` ({field: (V, 1)}; a field of the port missing there is 0),
    the parameter writes and the status after the run."""
    beats_per, v = cfg.beats, len(next(iter(regs.values())))
    n = v * beats_per
    beats = {k: np.asarray(a).reshape(n, cfg.lanes) for k, a in ins.items()}
    beats["last"] = np.tile(np.arange(beats_per) == beats_per - 1, v).astype(np.int64)
    head = beats["last"][:2 * beats_per]
    pos, err, _ = gn.frame(cfg, head)
    assert not err.any() and (pos == np.arange(len(head)) % beats_per).all()
    layer_fields = list(ports["layer"]["fields"])
    layer = Codec(ports["layer"]).encode(
        {f: np.repeat(np.asarray(regs[f]).reshape(v), beats_per) if f in regs
         else np.zeros(n, np.int64) for f in layer_fields})
    out = {"y": np.asarray(y).reshape(n, cfg.lanes), "last": beats["last"]}
    top = (1 << cfg.clamp_count_bits) - 1
    return Vectors(inputs=Codec(ports["i__payload"]).encode(beats),
                   outputs=Codec(ports["o__payload"]).encode(out),
                   regs={"layer": layer}, writes=list(enumerate(words)),
                   status={"frame_error": 0, "reg_error": 0,
                           "clamp_count": min(int(np.sum(clamped)), top)},
                   clocks=len(words) + n, item_clocks=cfg.beats)


def _nmpu_params(cfg, rng, corners):
    """A random NMPU parameter image, a share `corners` of each field on its rails."""
    n = cfg.columns
    return gn.NMPUParams(
        sp=_draw(rng, 0, cfg.scale_max, n, corners),
        sn=_draw(rng, 0, cfg.scale_max, n, corners) if cfg.dual else None,
        o=_draw(rng, *cfg.offset_range, n, corners),
        e=_draw(rng, 0, cfg.e_max, n, corners) if cfg.exp_bits else None)


def _nmpu_beats(cfg, ports, ins, regs, params):
    """The NMPU's beats of inputs `ins` under per-vector registers `regs` (`golden.nmpu.forward`)."""
    y, clamped = gn.forward(cfg, gn.NMPULayer(**regs), params, p=ins.get("p"), n=ins.get("n"),
                            x=ins.get("x"), r=ins.get("res"), return_clamped=True)
    vec = _postproc_beats(cfg, ports, ins, regs, y, clamped, gn.pack_params(cfg, params))
    vec.golden = "golden.nmpu.pack_params, golden.nmpu.forward"
    return vec


def nmpu_vectors(cfg, ports, rng, count):
    """Random parameters (a share on their rails), `count` vectors of counts and residuals (a
    share on the rails), one layer per vector: round modes in turn, shifts where the outputs
    are neither all zero nor all clamped (as `NMPUBench.useful_layer`), random switches."""
    shape = (count, cfg.columns)
    params = _nmpu_params(cfg, rng, 0.15)
    if cfg.dual:
        ins = {k: _draw(rng, 0, cfg.adc_max, shape, 0.1) for k in ("p", "n")}
    else:
        ins = {"x": _draw(rng, *cfg.x_range, shape, 0.1)}
    if cfg.residual:
        ins["res"] = _draw(rng, *cfg.out_range, shape, 0.1)
    lo = min(cfg.max_shift, max(0, cfg.acc_bits - cfg.out_bits - 3))
    layers = []
    for k in range(count):
        layer = {"shift": int(rng.integers(lo, min(cfg.max_shift, lo + 6) + 1)),
                 "pre_cut": int(rng.integers(0, cfg.max_shift + 1)), "round_mode": k % 3,
                 "relu_mid": int(rng.integers(0, 2)), "relu_out": int(rng.integers(0, 2))}
        if cfg.residual:
            layer["residual_en"] = int(rng.integers(0, 2))
        layers.append(layer)
    regs = {k: np.array([layer[k] for layer in layers])[:, None] for k in layers[0]}
    vec = _nmpu_beats(cfg, ports, ins, regs, params)
    vec.summary = (f"{count} vectors of {cfg.columns} columns in {cfg.beats} beats, one layer "
                   f"register word per vector, {cfg.columns} parameter words written first")
    return vec


def ldpu_vectors(cfg, ports, rng, count):
    """FP16 parameters as `LDPUBench.random_params` draws them (3 % special patterns: zeros,
    subnormals, the largest, Inf, NaN), counts and residuals with a share on the rails, one
    layer per vector (random c and switches)."""
    n, shape = cfg.columns, (count, cfg.columns)

    def fp(lo_exp, hi_exp, size, corners=0.0, signed=True):
        mag = np.exp2(rng.uniform(lo_exp, hi_exp, size))
        sign = np.where(rng.random(size) < 0.5, -1.0, 1.0) if signed else 1.0
        v = fp16.encode(sign * mag)
        return np.where(rng.random(size) < corners, rng.choice(FP16_SPECIALS, size), v)

    top = np.log2(160.0 / max(cfg.adc_max, 1))
    params = gb.LDPUParams(sp=fp(top - 3, top, n, 0.03, signed=False),
                           sn=fp(top - 3, top, n, 0.03, signed=False),
                           o=fp(-2, 5, n, 0.03), a=fp(-1.5, 1.5, n, 0.03), b=fp(-3, 4, n, 0.03))
    ins = {k: _draw(rng, 0, cfg.adc_max, shape, 0.1) for k in ("p", "n")}
    if cfg.residual:
        ins["res"] = _draw(rng, -128, 127, shape, 0.1)
    layers = []
    for _ in range(count):
        layer = {"c": int(fp(-3, 1, 1)[0]), "relu_mid": int(rng.integers(0, 2)),
                 "relu_out": int(rng.integers(0, 2))}
        if cfg.residual:
            layer["residual_en"] = int(rng.integers(0, 2))
        layers.append(layer)
    regs = {k: np.array([layer[k] for layer in layers])[:, None] for k in layers[0]}
    y, clamped = gb.forward(cfg, gb.LDPULayer(**regs), params, p=ins["p"], n=ins["n"],
                            r=ins.get("res"), return_clamped=True)
    vec = _postproc_beats(cfg, ports, ins, regs, y, clamped, gb.pack_params(cfg, params))
    vec.golden = "golden.baselines.pack_params, golden.baselines.forward"
    vec.summary = (f"{count} vectors of {cfg.columns} columns, one column per beat, one layer "
                   f"register word per vector, {cfg.columns} parameter words written first")
    return vec


def essop_vectors(cfg, ports, rng, count):
    """`count` products with BL = 1, 2, 4, 8 in turn and lr_shift stepping; `reseed` with new
    seeds on the first product and again halfway, while earlier products are still in flight.
    The LFSR state carries from each product to the next, as in the engine."""
    xs, ds = essop_operands(rng, count, cfg.rows), essop_operands(rng, count, cfg.cols)
    short = min(ESSOP_SHORT_LOG2_BL, cfg.log2_bl_max)
    state = ge.reseed(cfg, *ESSOP_POWER_ON_SEEDS)
    seeds = ESSOP_POWER_ON_SEEDS
    regs = {"log2_bl": [], "lr_shift": [], "seed_x": [], "seed_d": []}
    reseeds, c, exp, error = [], [], [], []
    for k in range(count):
        reseed = k in (0, count // 2)
        if reseed:
            seeds = tuple(int(s) for s in rng.integers(1, cfg.lfsr_max + 1, 2))
            state = ge.reseed(cfg, *seeds)
        log2_bl, lr_shift = k % (short + 1), (5 * k + 1) % (cfg.lr_shift_max + 1)
        res = ge.outer_product(cfg, xs[k], ds[k], log2_bl, lr_shift, *state)
        assert not res.error
        state = (res.state_x, res.state_d)
        for name, value in zip(regs, (log2_bl, lr_shift, *seeds)):
            regs[name].append(value)
        reseeds.append(int(reseed))
        c.append(res.c)
        exp.append(int(res.exp))
        error.append(int(res.error))
    # rows / R read-out beats of R rows each per product (golden.essop.readout)
    beats = ge.readout(cfg, np.stack(c), np.array(exp), np.array(error))
    out = {name: np.asarray(v).reshape(-1) for name, v in beats.items() if name != "c"}
    out["c"] = beats["c"].reshape(count * cfg.readout_beats, cfg.rows_per_beat * cfg.cols)
    bl = 1 << short
    return Vectors(inputs=Codec(ports["i__payload"]).encode({"x": xs, "d": ds}),
                   outputs=Codec(ports["o__payload"]).encode(out), regs=regs,
                   pulses={"reseed": reseeds}, status={"reg_error": 0, "busy": 0},
                   clocks=count * (bl + cfg.readout_beats), item_clocks=bl + cfg.readout_beats,
                   golden="golden.essop.reseed, golden.essop.outer_product, golden.essop.readout",
                   summary=(f"{count} products of {cfg.rows} x {cfg.cols}, BL up to {bl}, "
                            f"{cfg.readout_beats} read-out beats of {cfg.rows_per_beat} row(s) "
                            f"each, reseeded on product"
                            + (f"s 0 and {count // 2}" if count > 1 else " 0")))


def fp16outer_vectors(cfg, ports, rng, count):
    """`count` products, operand classes in turn (random, subnormal, overflow, ties, Inf/NaN
    and zeros), x and δ of different classes."""
    k = len(FP16_CLASSES)
    xs = np.concatenate([fp16_operands(rng, 1, cfg.rows, FP16_CLASSES[i % k]) for i in range(count)])
    ds = np.concatenate([fp16_operands(rng, 1, cfg.cols, FP16_CLASSES[(3 * i + 1) % k])
                         for i in range(count)])
    p = gb.outer_product(cfg, xs, ds)
    last = np.tile(np.arange(cfg.rows) == cfg.rows - 1, count).astype(np.int64)
    out = {"p": p.reshape(count * cfg.rows, cfg.cols), "last": last}
    return Vectors(inputs=Codec(ports["i__payload"]).encode({"x": xs, "d": ds}),
                   outputs=Codec(ports["o__payload"]).encode(out),
                   clocks=count * cfg.rows, item_clocks=cfg.rows,
                   golden="golden.baselines.outer_product",
                   summary=(f"{count} products of {cfg.rows} x {cfg.cols}, {cfg.rows} rows each, "
                            f"operand classes {', '.join(FP16_CLASSES)} in turn"))


def nmpu_exhaustive_vectors(cfg, ports, rng, count):
    """The cocotb bench's `exhaustive` test as one replay: every input value of a column (P and
    N, or X; and the residual) under `count` layer register settings (all of them when `count`
    reaches their number; else evenly spread from a seed-drawn start), each column of a vector
    seeing every combination, with one random parameter image (30 % of it on the rails) drawn
    from the seed. A `static_layer` config has only its switches to set."""
    params = _nmpu_params(cfg, rng, 0.3)
    if cfg.dual:
        grids, names = [np.arange(cfg.adc_max + 1)] * 2, ["p", "n"]
    else:
        grids, names = [np.arange(cfg.x_range[0], cfg.x_range[1] + 1)], ["x"]
    if cfg.residual:
        grids.append(np.arange(cfg.out_range[0], cfg.out_range[1] + 1))
        names.append("res")
    combos = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, len(grids))
    n_combo = len(combos)
    fixed = gn.static_fields(cfg)
    axes = {"shift": range(cfg.max_shift + 1), "pre_cut": range(cfg.max_shift + 1),
            "round_mode": range(3)}
    axes = {k: ([fixed[k]] if k in fixed else list(v)) for k, v in axes.items()}
    axes.update(relu_mid=(0, 1), relu_out=(0, 1), residual_en=(0, 1) if cfg.residual else (0,))
    grid = np.stack(np.meshgrid(*map(np.asarray, axes.values()), indexing="ij"), -1)
    settings = grid.reshape(-1, len(axes))
    if count < len(settings):
        step = len(settings) / count
        start = int(rng.integers(0, len(settings)))
        settings = settings[(start + (np.arange(count) * step).astype(np.int64)) % len(settings)]
    # column j of a vector takes combination (v + j·stride) mod C: every column sees every one
    stride = max(1, n_combo // cfg.columns)
    idx = (np.arange(n_combo)[:, None] + stride * np.arange(cfg.columns)[None, :]) % n_combo
    ins = {name: np.tile(combos[idx, f], (len(settings), 1)) for f, name in enumerate(names)}
    per_vector = np.repeat(settings, n_combo, axis=0)
    regs = {k: per_vector[:, i][:, None] for i, k in enumerate(axes)}
    if not cfg.residual:
        regs.pop("residual_en")
    vec = _nmpu_beats(cfg, ports, ins, regs, params)
    vec.summary = (f"{len(settings)} layer register settings x {n_combo} input combinations per "
                   f"column ({len(per_vector)} vectors of {cfg.columns} columns), one parameter image")
    return vec


GENERATORS = {"nmpu": nmpu_vectors, "essop": essop_vectors, "ldpu": ldpu_vectors,
              "fp16outer": fp16outer_vectors}
# other kinds of stimulus, by unit: `draw(..., kind=...)`
KINDS = {"random": GENERATORS, "exhaustive": {"nmpu": nmpu_exhaustive_vectors}}


# -- the test bench --------------------------------------------------------------------------------

def _rng(width):
    return "" if width == 1 else f"[{width - 1}:0] "


def _check_ports(meta, vec, v_text):
    """Every input port of the module is driven on purpose: a stream port, the parameter port,
    a register beside each beat, a pulse, or held low. A new port fails here, not silently."""
    ports = meta["ports"]
    header = re.search(rf"module {re.escape(meta['module'])}\s*\(([^)]*)\)", v_text)
    names = {p.strip() for p in header.group(1).split(",")}
    if names != set(ports) | {"clk", "rst"}:
        raise ValueError(f"{meta['module']}: Verilog ports {sorted(names)} differ from the port "
                         f"map {sorted(ports)} plus clk, rst")
    driven = {*STREAM_PORTS, *WRITE_PORTS, *IDLE_PORTS, *vec.regs, *vec.pulses}
    for name, port in ports.items():
        if port["direction"] == "input" and name not in driven:
            raise ValueError(f"{meta['module']}: input port `{name}` has no stimulus in "
                             "verif/vectors.py")
    for name in (*vec.regs, *vec.pulses, *vec.status):
        if name not in ports:
            raise ValueError(f"{meta['module']}: no port `{name}` in the port map")
    for name in vec.pulses:
        if ports[name]["width"] != 1:
            raise ValueError(f"{meta['module']}: pulse port `{name}` is not 1 bit wide")


def _field_lines(port):
    """Verilog lines that print the fields of an output beat that differ (offsets from the port
    map; arrays element by element)."""
    lines = []
    for name, f in port["fields"].items():
        if "length" in f:
            w = f["elem"]["width"]
            parts = [(f"{name}[{i}]", f["offset"] + i * w, w) for i in range(f["length"])]
        else:
            parts = [(name, f["offset"], f["width"])]
        for label, lo, w in parts:
            sel = f"[{lo}]" if w == 1 else f"[{lo + w - 1}:{lo}]"
            lines.append(f'      if (want{sel} !== got{sel}) '
                         f'$display("  {label}: expected %h, got %h", want{sel}, got{sel});')
    return lines


def render_tb(meta, vec, tb_file):
    """The test bench text: `verif/vectors_tb/tb.v.in` filled in from the port map."""
    ports = meta["ports"]
    writes = bool(vec.writes)
    decls, connect = [], ["    .clk(clk),", "    .rst(rst),"]
    for name, port in ports.items():
        connect.append(f"    .{name}({name}),")
        if name in STREAM_PORTS:
            continue
        if port["direction"] == "input":
            decls.append(f"  reg  {_rng(port['width'])}{name} = {port['width']}'d0;")
        else:
            decls.append(f"  wire {_rng(port['width'])}{name};")
    connect[-1] = connect[-1].rstrip(",")
    mems, reads, on_offer = [], [], []
    for name in (*vec.regs, *vec.pulses):
        mems.append(f"  reg {_rng(ports[name]['width'])}{name}_mem [0:N_IN-1];")
        reads.append(f'    $readmemh("{name}.hex", {name}_mem);')
        on_offer.append(f"          {name} <= {name}_mem[in_next];")
    if writes:
        mems.append("`ifdef TB_PARAM_WRITES")
        for name in ("addr", "data"):
            mems.append(f"  reg {_rng(ports['wr__' + name]['width'])}wr_{name}_mem [0:N_WR-1];")
            reads.append(f'    $readmemh("wr_{name}.hex", wr_{name}_mem);')
        mems.append("`endif")
    # a file with too few lines leaves its last entries x: say so before anything runs
    checks = [("in.hex", "in_mem", "N_IN"), ("out.hex", "out_mem", "N_OUT")]
    checks += [(f"{name}.hex", f"{name}_mem", "N_IN") for name in (*vec.regs, *vec.pulses)]
    if writes:
        checks += [("wr_addr.hex", "wr_addr_mem", "N_WR"), ("wr_data.hex", "wr_data_mem", "N_WR")]
    file_checks = []
    for file, mem, n in checks:
        file_checks += [f"    if (^{mem}[{n}-1] === 1'bx) begin",
                        f'      $display("FAIL {file}: fewer than %0d values", {n});',
                        "      bad_files = bad_files + 1;", "    end"]
    status = []
    for name, value in vec.status.items():
        want = f"{ports[name]['width']}'h{value:x}"
        status += [f"      if ({name} !== {want}) begin",
                   f'        $display("FAIL status {name}: expected %h, got %h", {want}, {name});',
                   "        status_bad = status_bad + 1;",
                   "      end"]
    latency = int(meta["latency"])
    nominal = vec.clocks + latency + 64
    fill = {
        "MODULE": meta["module"], "TB_FILE": tb_file, "DUT_FILE": meta["verilog"],
        "SUMMARY": vec.summary,
        "DEFINES": "`define TB_PARAM_WRITES" if writes else "",
        "N_IN": len(vec.inputs), "N_OUT": len(vec.outputs), "N_WR": len(vec.writes),
        "W_IN": ports["i__payload"]["width"], "W_OUT": ports["o__payload"]["width"],
        "TIMEOUT": 4 * nominal + 2000, "TAIL": latency + 2 * vec.item_clocks + 16,
        "FILL": 2 * (latency + vec.item_clocks) + 16,
        "DECLS": "\n".join(decls), "CONNECT": "\n".join(connect), "MEMS": "\n".join(mems),
        "READS": "\n".join(reads), "ON_OFFER": "\n".join(on_offer),
        "PULSES_LOW": "\n".join(f"      {name} <= 1'b0;" for name in vec.pulses),
        "FIELDS": "\n".join(_field_lines(ports["o__payload"])), "STATUS": "\n".join(status),
        "FILE_CHECKS": "\n".join(file_checks),
    }
    for key in ("N_IN", "N_OUT", "N_WR", "W_IN", "W_OUT", "TIMEOUT", "TAIL", "FILL"):
        fill[key] = f"{fill[key]};".ljust(9)   # the comments after them line up
    text = TEMPLATE.read_text()
    for key, value in fill.items():
        text = text.replace(f"@{key}@", str(value))
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"unfilled template fields {left}"
    return re.sub(r"\n{3,}", "\n\n", text)


# -- files -----------------------------------------------------------------------------------------

def _write_hex(path, values, width, what):
    digits = (width + 3) // 4
    lines = [f"// {what} ({width} bits), one per line: line k = beat k"]
    lines += [f"{int(v):0{digits}x}" for v in values]
    path.write_text("\n".join(lines) + "\n")


def _layout(port):
    """One line per field: bits, offset, element count (for the README)."""
    out = []
    for name, f in port.get("fields", {}).items():
        if "length" in f:
            e = f["elem"]
            kind = "signed" if e["signed"] else "unsigned"
            out.append(f"    {name}: {f['length']} x {e['width']} bits {kind} from bit "
                       f"{f['offset']} (element i at {f['offset']} + {e['width']}·i)")
        else:
            kind = "signed" if f["signed"] else "unsigned"
            bits = f"{f['width']} bit{'s' * (f['width'] > 1)}"
            out.append(f"    {name}: {bits} {kind} at bit {f['offset']}")
    return out


def _readme(meta, vec, files, tb_file, seed):
    ports = meta["ports"]
    wrap = textwrap.TextWrapper(width=96).fill
    listing = dict(files)
    listing[meta["verilog"]] = "the unit (Amaranth's Verilog: ports clk, rst and the port map)"
    listing[Path(meta["verilog"]).with_suffix(".json").name] = \
        "config, derived widths, latency, port map with field offsets"
    listing[tb_file] = "the test bench (how it drives, stalls and checks: its header)"
    listing["vectors.json"] = "what was generated, for tools"
    col = max(map(len, listing)) + 2
    lines = [wrap(f"Golden test vectors for {meta['module']} ({meta['unit']}, config "
                  f"`{meta['tag']}`), written by `python -m verif.vectors` (seed {seed}): "
                  f"{vec.summary}. Expected outputs from {vec.golden}."), "",
             "Replay in Icarus Verilog 11 or newer, in this folder:", "",
             f"    iverilog -g2012 -o sim {tb_file} {meta['verilog']}", "    vvp sim", "",
             wrap(f"The last line is `PASS {len(vec.outputs)} beats`, or `FAIL ...` with a nonzero "
                  "exit status: the first output beat that differs is printed with its number, "
                  "the expected and the received payload in hex, and the fields that differ. "
                  "`vvp sim +nostall` replays without the stall pattern; compile with -DNO_FATAL "
                  "for a simulator without $fatal (then grep for FAIL)."), "",
             "Files (the .hex ones: one hex value per line as $readmemh reads them, after a "
             "leading // line;", "line k = beat k):"]
    lines += [f"  {name:<{col}}{what}" for name, what in listing.items()]
    lines += ["", f"i__payload ({ports['i__payload']['width']} bits), fields from bit 0 up:",
              *_layout(ports["i__payload"]),
              f"o__payload ({ports['o__payload']['width']} bits):", *_layout(ports["o__payload"])]
    for name in vec.regs:
        if ports[name].get("fields"):
            lines += [f"{name} ({ports[name]['width']} bits):", *_layout(ports[name])]
    if vec.writes:
        lines += [f"wr__data ({ports['wr__data']['width']} bits), written to column wr__addr:",
                  *_layout(ports["wr__data"])]
    if vec.status:
        lines += ["", "After the last beat the bench also checks "
                  + ", ".join(f"{k} = {v}" for k, v in vec.status.items()) + "."]
    return "\n".join(lines) + "\n"


def draw(unit, cfg, ports, count, seed, kind="random"):
    """The golden stimulus and expected beats of `count` vectors or products of one config,
    from `seed` (the same for every consumer: the Verilog bench here, the fast path); `kind`
    "exhaustive" (NMPU) takes `count` register settings instead (see its generator)."""
    if count < 1:
        raise ValueError(f"`count` must be at least 1, not {count}")
    if unit not in KINDS.get(kind, {}):
        have = sorted(k for k, units in KINDS.items() if unit in units)
        raise ValueError(f"no `{kind}` stimulus for {unit}: it has {', '.join(have)}")
    stream = f"{unit}_{cfg.tag}" + ("" if kind == "random" else f"_{kind}")
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode())])
    return KINDS[kind][unit](cfg, ports, rng, count)


def write_replay(meta, vec, folder):
    """The .hex files of `vec` and the Verilog bench into `folder` (which holds the unit's
    Verilog); returns (the bench's file name, {file: what it holds})."""
    folder = Path(folder)
    ports = meta["ports"]
    files = {}

    def put(name, values, width, what):
        _write_hex(folder / name, values, width, what)
        files[name] = f"{what} ({len(values)} lines, {width} bit{'s' * (width > 1)})"

    put("in.hex", vec.inputs, ports["i__payload"]["width"], "i__payload of each input beat")
    for name, values in vec.regs.items():
        put(f"{name}.hex", values, ports[name]["width"], f"`{name}` beside each input beat")
    for name, values in vec.pulses.items():
        put(f"{name}.hex", values, 1, f"1: `{name}` pulsed on the beat's first clock on offer")
    if vec.writes:
        put("wr_addr.hex", [a for a, _ in vec.writes], ports["wr__addr"]["width"],
            "wr__addr of each parameter write, before streaming")
        put("wr_data.hex", [d for _, d in vec.writes], ports["wr__data"]["width"],
            "wr__data of each parameter write")
    put("out.hex", vec.outputs, ports["o__payload"]["width"],
        "expected o__payload of each output beat")
    tb_file = f"tb_{meta['unit']}_{meta['tag']}.v"
    (folder / tb_file).write_text(render_tb(meta, vec, tb_file))
    return tb_file, files


def generate(unit, cfg, out_dir, count=None, seed=1):
    """Write the replay folder `out_dir/<unit>_<tag>/` for one config; returns its manifest
    (the contents of vectors.json, with the folder under "dir")."""
    count = DEFAULT_COUNT[unit] if count is None else count
    if count < 1:
        raise ValueError(f"`count` must be at least 1, not {count}")
    folder = Path(out_dir) / f"{unit}_{cfg.tag}"
    v_path, j_path = write(unit, cfg, folder)
    meta = json.loads(j_path.read_text())
    vec = draw(unit, cfg, meta["ports"], count, seed)
    _check_ports(meta, vec, v_path.read_text())
    tb_file, files = write_replay(meta, vec, folder)
    (folder / "README.txt").write_text(_readme(meta, vec, files, tb_file, seed))
    manifest = {"unit": unit, "tag": cfg.tag, "module": meta["module"], "seed": seed,
                "count": count, "in_beats": len(vec.inputs), "out_beats": len(vec.outputs),
                "param_writes": len(vec.writes), "latency": meta["latency"],
                "golden": vec.golden, "summary": vec.summary, "status": vec.status,
                "testbench": tb_file, "verilog": meta["verilog"], "files": files}
    (folder / "vectors.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return dict(manifest, dir=str(folder))


# -- replay ----------------------------------------------------------------------------------------

def compile_tb(folder, generation="2012"):
    """`iverilog -g<generation> -o sim tb_<unit>_<tag>.v <unit>_<tag>.v` in the folder;
    returns the process."""
    folder = Path(folder)
    m = json.loads((folder / "vectors.json").read_text())
    if shutil.which("iverilog") is None:
        raise RuntimeError("iverilog not found on PATH")
    cmd = ["iverilog", f"-g{generation}", "-o", "sim", m["testbench"], m["verilog"]]
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True)


def run_tb(folder, *plusargs):
    """`vvp sim` in the folder (compiled by `compile_tb`); returns the process."""
    return subprocess.run(["vvp", "-n", "sim", *plusargs], cwd=folder, capture_output=True,
                          text=True)


def _replay(folder):
    t0 = time.perf_counter()
    proc = compile_tb(folder)
    if proc.returncode:
        return False, f"compile failed:\n{proc.stdout}{proc.stderr}", time.perf_counter() - t0
    proc = run_tb(folder)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    ok = proc.returncode == 0 and last.startswith("PASS")
    return ok, last if ok else proc.stdout + proc.stderr, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", choices=sorted(UNITS), action="append")
    ap.add_argument("--preset", action="append", help="preset name (default: every preset)")
    ap.add_argument("--count", type=int, help="vectors or products per replay (default: "
                    + ", ".join(f"{u} {n}" for u, n in DEFAULT_COUNT.items()) + ")")
    ap.add_argument("--seed", type=int, default=1, help="seed of the stimulus (default 1)")
    ap.add_argument("--out", type=Path, default=Path("build/vectors"))
    ap.add_argument("--run", action="store_true", help="replay each folder in Icarus")
    args = ap.parse_args(argv)
    units = args.unit or list(UNITS)
    jobs = []
    for unit in units:
        presets = UNITS[unit][1]
        jobs += [(unit, presets[n]) for n in (args.preset or presets) if n in presets]
    unknown = [n for n in args.preset or () if not any(n in UNITS[u][1] for u in units)]
    if unknown:
        sys.exit(f"unknown preset(s) {', '.join(unknown)} for {', '.join(units)}")
    failed = 0
    for unit, cfg in jobs:
        m = generate(unit, cfg, args.out, args.count, args.seed)
        line = (f"{m['dir']}: {m['in_beats']} input beats, {m['out_beats']} output beats"
                + (f", {m['param_writes']} parameter writes" if m["param_writes"] else ""))
        if args.run:
            ok, text, secs = _replay(m["dir"])
            failed += not ok
            line += f"  {text if ok else 'REPLAY FAILED'} ({secs:.1f} s)"
            if not ok:
                print(text)
        print(line, flush=True)
    print(f"replay one: cd {args.out}/<unit>_<tag> && iverilog -g2012 -o sim tb_<unit>_<tag>.v "
          f"<unit>_<tag>.v && vvp sim   (see README.txt there)")
    if failed:
        sys.exit(f"{failed} replay(s) failed")


if __name__ == "__main__":
    main()
