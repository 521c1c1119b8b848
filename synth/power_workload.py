"""Workloads of the energy measurement (synth/power.py): the items each unit is simulated on.

- ESSOP and the FP16 outer-product array: x and δ tiles of a real training step
  (`golden.essop_step.training_step`: mini-batch 3 of the first epoch of an ESSOP exact-mode run
  of the digits MLP, both layers, tiled in the driver's order by `golden.essop_step.tile_batch`),
  cached under `build/power/workloads/`. ESSOP runs one window per BL (1 .. BL max for the
  presets of `EVERY_BL`, the training BL 8 and BL max for the others), its LFSR
  state carried from product to product as in the engine; expected counts and exponents from
  `golden.essop.reseed` / `outer_product`, FP16 products from `golden.baselines.outer_product`.
- NMPU and LDPU: a real layer of the accuracy study (`layer_window`): layer fc1 of the MNIST MLP
  (784 -> 256: four row tiles of 196 + bias rows, one 256-column tile wide), compiled by
  `golden.compiler.plan` for the unit's preset, its tiles programmed with seed 0 and read at
  1 day (`golden.compiler.ProgrammedNetwork`, the tile model's devices, drift, read noise and
  ADC), the first test images. The window is the last row tile: its ADC counts, its parameter
  image and layer register (`golden.compiler.compile_tile`, as the driver writes them), the
  three tiles before it as the residual input (their outputs through the same unit), expected
  outputs from the unit's golden forward, checked against `golden.compiler.post_process` (the
  path studies/accuracy.py runs). The compiler plans a layer only onto a unit at least as
  wide as the layer's outputs: the presets narrower than 256 columns (tiny: 4) run the golden
  random stimulus of `verif.vectors` instead (random parameter images, ADC counts with a
  share on the rails), and say so in their workload.

Every workload comes as a `verif.vectors.Vectors` (stimulus + the golden expected beats), so the
same plain Verilog bench replays it against the netlist.
"""

import json
import zlib
from pathlib import Path

import numpy as np

from golden import baselines as gb
from golden import essop as ge
from verif import vectors as vv
from verif.payload import Codec

__all__ = ["training_tiles", "essop_window", "fp16outer_window", "layer_window", "workloads",
           "workload_name"]

CACHE = Path(__file__).resolve().parent.parent / "build" / "power" / "workloads"
TRAIN_SEED, TRAIN_STEP, TRAIN_BL = 1, 3, 32     # the step the RTL tie-in also replays
ESSOP_SEEDS = (0x2B, 0x5A)                      # LFSR seeds loaded before the first product


def training_tiles(essop_name, rows, cols, cache=CACHE):
    """x and δ tiles (binary16 patterns, (P, rows) and (P, cols)) of a real training step of
    the ESSOP preset `essop_name` (its array geometry), cached as JSON."""
    from golden import essop_step as gt
    from golden import fp16
    from golden.data import digits
    path = Path(cache) / f"training_{essop_name}_{rows}x{cols}_s{TRAIN_SEED}_t{TRAIN_STEP}.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        return (np.array(doc["xs"], np.int64), np.array(doc["ds"], np.int64),
                np.array(doc["lr_shift"], np.int64), doc["source"])
    tcfg = gt.TrainConfig(essop=essop_name)
    cfg = tcfg.essop_cfg
    if (cfg.rows, cfg.cols) != (rows, cols):
        raise ValueError(f"ESSOP preset {essop_name} is {cfg.rows} x {cfg.cols}, not "
                         f"{rows} x {cols}")
    layers = gt.training_step(tcfg, digits(), TRAIN_SEED, TRAIN_STEP, TRAIN_BL)
    xs, ds, lrs = [], [], []
    for info in layers:
        x, d = gt.tile_batch(cfg, fp16.encode(info["x"]), fp16.encode(info["d"]))
        xs.append(np.asarray(x).reshape(-1, rows))
        ds.append(np.asarray(d).reshape(-1, cols))
        lrs.append(np.full(len(xs[-1]), int(info["lr_shift"])))
    xs, ds, lrs = np.concatenate(xs), np.concatenate(ds), np.concatenate(lrs)
    source = (f"x and δ of training step {TRAIN_STEP} (both layers, seed {TRAIN_SEED}, ESSOP "
              f"exact mode at BL {TRAIN_BL}) of golden.essop_step on the digits MLP")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"source": source, "xs": xs.tolist(), "ds": ds.tolist(),
                                "lr_shift": lrs.tolist()}) + "\n")
    return xs, ds, lrs, source


def _spread(n_total, count):
    """`count` product indices spread over a step's products (both layers, all tiles)."""
    return np.unique(np.linspace(0, n_total - 1, count).round().astype(int))


def essop_window(cfg, ports, xs, ds, log2_bl, lr_shift):
    """ESSOP products of xs[k] ⊗ ds[k] back to back at one BL, reseeded before the first,
    the LFSR state carried on; expected beats from golden.essop."""
    state = ge.reseed(cfg, *ESSOP_SEEDS)
    regs = {"log2_bl": [], "lr_shift": [], "seed_x": [], "seed_d": []}
    c, exp, error = [], [], []
    for k in range(len(xs)):
        res = ge.outer_product(cfg, xs[k], ds[k], log2_bl, int(lr_shift[k]), *state)
        state = (res.state_x, res.state_d)
        for name, value in zip(regs, (log2_bl, int(lr_shift[k]), *ESSOP_SEEDS)):
            regs[name].append(value)
        c.append(res.c)
        exp.append(int(res.exp))
        error.append(int(res.error))
    # rows / R read-out beats of R rows each per product (golden.essop.readout)
    beats = ge.readout(cfg, np.stack(c), np.array(exp), np.array(error))
    out = {name: np.asarray(v).reshape(-1) for name, v in beats.items() if name != "c"}
    out["c"] = beats["c"].reshape(len(xs) * cfg.readout_beats, cfg.rows_per_beat * cfg.cols)
    bl = 1 << log2_bl
    return vv.Vectors(inputs=Codec(ports["i__payload"]).encode({"x": xs, "d": ds}),
                      outputs=Codec(ports["o__payload"]).encode(out), regs=regs,
                      pulses={"reseed": [1] + [0] * (len(xs) - 1)},
                      status={"reg_error": 0, "busy": 0},
                      clocks=len(xs) * (bl + cfg.readout_beats),
                      item_clocks=bl + cfg.readout_beats,
                      golden="golden.essop.reseed, golden.essop.outer_product, "
                             "golden.essop.readout",
                      summary=(f"{len(xs)} products of {cfg.rows} x {cfg.cols} at BL {bl}, "
                               f"{cfg.readout_beats} read-out beats of {cfg.rows_per_beat} "
                               f"row(s), back to back"))


def fp16outer_window(cfg, ports, xs, ds):
    p = gb.outer_product(cfg, xs, ds)
    last = np.tile(np.arange(cfg.rows) == cfg.rows - 1, len(xs)).astype(np.int64)
    out = {"p": p.reshape(len(xs) * cfg.rows, cfg.cols), "last": last}
    return vv.Vectors(inputs=Codec(ports["i__payload"]).encode({"x": xs, "d": ds}),
                      outputs=Codec(ports["o__payload"]).encode(out),
                      clocks=len(xs) * cfg.rows, item_clocks=cfg.rows,
                      golden="golden.baselines.outer_product",
                      summary=f"{len(xs)} products of {cfg.rows} x {cfg.cols}, back to back")


REAL_NETWORK, REAL_LAYER = "mnist_mlp", "fc1"   # 784 -> 256: a full tile wide, 4 row tiles
REAL_SEED, REAL_T = 0, 86400.0                  # programming seed, read time (1 day)
REAL_COLUMNS = 256      # the layer's outputs: a narrower preset (tiny) gets golden random vectors


def _partner(unit, cfg):
    """The other post-processing unit the compiler plans with (`plan` compiles both images):
    the paper preset at this unit's columns and ADC width."""
    import dataclasses
    from hdl.config import LDPU_PRESETS, NMPU_PRESETS
    if unit == "nmpu":
        return cfg, dataclasses.replace(LDPU_PRESETS["paper"], name="power_partner",
                                        columns=cfg.columns, adc_bits=cfg.adc_bits)
    return dataclasses.replace(NMPU_PRESETS["paper"], name="power_partner", columns=cfg.columns,
                               adc_bits=cfg.adc_bits), cfg


def layer_window(unit, cfg, ports, count):
    """(Vectors, description): `count` test images through the last row tile of the real
    layer (see the module doc) on the NMPU or LDPU `cfg`."""
    from golden import compiler as gc
    from golden import network as gnet
    from golden import nmpu as gn
    from golden import tile as gt
    from golden.data import load
    from hdl.config import RoundMode
    nm_cfg, ld_cfg = _partner(unit, cfg)
    tile_cfg = gt.TileConfig(name="pcm", adc_bits=cfg.adc_bits, input_bits=nm_cfg.out_bits)
    data = load(gnet.DATASET[REAL_NETWORK])
    net = gnet.load_or_train(REAL_NETWORK, progress=False)
    plan = gc.plan(net, data.x_calib, tile_cfg=tile_cfg, nmpu_cfg=nm_cfg, ldpu_cfg=ld_cfg)
    prog = gc.ProgrammedNetwork(plan, REAL_SEED)
    images = prog.compile(REAL_T)
    lp = plan.layers[REAL_LAYER]
    sp = lp.split
    if count > data.x_test.shape[0]:
        raise ValueError(f"`count` {count} is more than the {data.x_test.shape[0]} test images")
    x = gc.encode_input(plan, data.x_test[:count])
    x = np.concatenate([x, np.full((count, lp.bias_rows), plan.x_max, dtype=np.int64)], axis=1)
    c = sp.col_edges[1] - sp.col_edges[0]
    pad = lambda a: np.pad(np.asarray(a, np.int64), ((0, 0), (0, cfg.columns - a.shape[1])))  # noqa: E731
    prev = None
    for r in range(sp.row_tiles):
        img = images[REAL_LAYER, r, 0]
        p, n, sat = prog.tiles[REAL_LAYER][r][0].read(sp.inputs(x, r), REAL_T, lsb=lp.lsb,
                                                      return_saturated=True)
        res = prev
        prev = gc.post_process(unit, nm_cfg, ld_cfg, img, p, n, prev)
    r_in = pad(res) if res is not None else np.zeros((count, cfg.columns), np.int64)
    pf, nf = pad(p), pad(n)
    if unit == "nmpu":
        regs = dict(shift=img.nmpu.shift, pre_cut=0, round_mode=int(RoundMode.HALF_EVEN))
        regs |= gn.static_fields(cfg)
        layer = dict(regs, relu_mid=0, relu_out=int(img.relu), residual_en=int(img.residual_en))
        y, clamped = gn.forward(cfg, gn.NMPULayer(**layer), img.nmpu.params, p=pf, n=nf,
                                return_clamped=True, **({"r": r_in} if cfg.residual else {}))
        words = gn.pack_params(cfg, img.nmpu.params)
        golden = "golden.nmpu.pack_params, golden.nmpu.forward"
    else:
        layer = dict(c=int(gb.LDPULayer().c), relu_mid=0, relu_out=int(img.relu),
                     residual_en=int(img.residual_en))
        y, clamped = gb.forward(cfg, gb.LDPULayer(**layer), img.ldpu.params, pf, nf,
                                 return_clamped=True, **({"r": r_in} if cfg.residual else {}))
        words = gb.pack_params(cfg, img.ldpu.params)
        golden = "golden.baselines.pack_params, golden.baselines.forward"
    if not np.array_equal(y[:, :c], prev):
        raise AssertionError(f"{unit} {cfg.tag}: the window's golden outputs differ from "
                             "golden.compiler.post_process (the accuracy study's path)")
    ins = {"p": pf, "n": nf} | ({"res": r_in} if cfg.residual else {})
    summary = (f"{count} test images through row tile {sp.row_tiles}/{sp.row_tiles} of "
               f"{REAL_NETWORK} {REAL_LAYER} ({c} of {cfg.columns} columns), "
               f"{cfg.columns} parameter words written first")
    vec = _layer_vectors(cfg, ports, ins, layer, y, clamped, words,
                         f"golden.compiler (post_process) / {golden}", summary)
    digest = zlib.crc32(pf.tobytes() + nf.tobytes())
    what = (f"{REAL_NETWORK} {REAL_LAYER} (accuracy study): last of its {sp.row_tiles} row tiles "
            f"({tile_cfg.cols}-line tile, {tile_cfg.adc_bits}-bit ADC, {c} columns used), seed "
            f"{REAL_SEED} at 1 day, test images 0..{count - 1}; ADC counts (crc32 {digest:08x}, "
            f"{int(sat.count)} saturated), compiled parameter image and layer register, residual "
            f"= the first {sp.row_tiles - 1} tiles through the same unit")
    return vec, what


def _layer_vectors(cfg, ports, ins, layer, y, clamped, words, golden, summary):
    """NMPU / LDPU vectors (V, columns) as the replay's beats: `beats` beats of `lanes`
    columns each, `last` on a vector's final beat, the one layer register word beside every
    beat, the parameter words written first, the status after the run (the beat layout of
    `verif.vectors`' generators, kept here so this window does not lean on their helpers)."""
    v = len(y)
    n = v * cfg.beats
    beats = {k: np.asarray(a).reshape(n, cfg.lanes) for k, a in ins.items()}
    beats["last"] = np.tile(np.arange(cfg.beats) == cfg.beats - 1, v).astype(np.int64)
    fields = ports["layer"]["fields"]
    word = Codec(ports["layer"]).encode({f: np.full(n, layer.get(f, 0), np.int64)
                                         for f in fields})
    top = (1 << cfg.clamp_count_bits) - 1
    return vv.Vectors(inputs=Codec(ports["i__payload"]).encode(beats),
                      outputs=Codec(ports["o__payload"]).encode(
                          {"y": np.asarray(y).reshape(n, cfg.lanes), "last": beats["last"]}),
                      regs={"layer": word}, writes=list(enumerate(words)),
                      status={"frame_error": 0, "reg_error": 0,
                              "clamp_count": min(int(np.sum(clamped)), top)},
                      clocks=len(words) + n, item_clocks=cfg.beats, golden=golden,
                      summary=summary)


RECORD_PRESET = "paper"     # the ESSOP preset the training step is recorded with (32 x 32)


def workloads(unit, cfg, ports, count, seed):
    """[(label, items, Vectors, description)] of one unit x preset: label None for a single
    window, `bl<BL>` for each ESSOP BL."""
    if unit in ("essop", "fp16outer"):
        from hdl.config import ESSOP_PRESETS
        rec = ESSOP_PRESETS[RECORD_PRESET]
        xs, ds, lrs, source = training_tiles(RECORD_PRESET, rec.rows, rec.cols)
        pick = _spread(len(xs), count)
        # a smaller array takes the first rows of x and cols of δ of each recorded tile
        xs, ds = xs[pick][:, :cfg.rows], ds[pick][:, :cfg.cols]
        what = f"{source}; {len(pick)} of its {rec.rows} x {rec.cols} tile products"
        if (cfg.rows, cfg.cols) != (rec.rows, rec.cols):
            what += f", cut to their first {cfg.rows} x {cfg.cols} elements"
        lr_max = getattr(cfg, "lr_shift_max", None)
        if lr_max is not None and (lrs[pick] > lr_max).any():
            what += f"; lr_shift {sorted(set(lrs[pick].tolist()))} run at this preset's largest, {lr_max}"
        lrs = np.minimum(lrs[pick], lr_max) if lr_max is not None else lrs[pick]
        if unit == "fp16outer":
            return _single(fp16outer_window(cfg, ports, xs, ds), len(xs), what)
        bls = _bls(unit, cfg)
        what += f"; BL {', '.join(str(1 << b) for b in bls)}, one run each"
        return [(f"bl{1 << b}", len(xs), essop_window(cfg, ports, xs, ds, b, lrs), what)
                for b in bls]
    if unit not in ("nmpu", "ldpu"):
        raise ValueError(f"no power workload for unit {unit!r}")
    if cfg.columns >= REAL_COLUMNS:
        vec, what = layer_window(unit, cfg, ports, count)
        return _single(vec, count, what)
    # golden.compiler plans a layer only onto units at least as wide as its outputs
    rng = np.random.default_rng([seed, zlib.crc32(f"{unit}_{cfg.tag}".encode())])
    vec = vv.GENERATORS[unit](cfg, ports, rng, count)
    return _single(vec, count, f"golden random stimulus of verif.vectors (narrower than the "
                               f"real layer's {REAL_COLUMNS} outputs): {vec.summary}")


def _single(vec, items, what):
    return [(None, items, vec, what)]


# ESSOP presets measured at every BL (the papers' ratio at every BL); the others at the
# training BL and their largest (each BL is a gate-level run of its own: `make power` time)
EVERY_BL = ("paper", "wide", "wide8", "tiny")
TRAINING_BL = 8     # docs/ppa.md: the smallest BL within 0.5 points of exact outer products


def _bls(unit, cfg):
    """log2 of the BLs ESSOP preset `cfg` is measured at."""
    if cfg.name in EVERY_BL:
        return list(range(cfg.log2_bl_max + 1))
    return sorted({min(TRAINING_BL.bit_length() - 1, cfg.log2_bl_max), cfg.log2_bl_max})


def workload_name(unit, cfg):
    """The workload of (unit, cfg) in a few words, for the report's tables."""
    if unit in ("essop", "fp16outer"):
        return "training x/δ"
    if cfg.columns >= REAL_COLUMNS:
        return f"{REAL_NETWORK} {REAL_LAYER}"
    return "golden random"
