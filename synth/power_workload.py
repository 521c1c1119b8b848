"""Workloads of the energy measurement (synth/power.py): the items each unit is simulated on.

- ESSOP and the FP16 outer-product array: x and δ tiles of a real training step
  (`golden.training.training_step`: mini-batch 3 of the first epoch of an ESSOP exact-mode run
  of the digits MLP, both layers, tiled in the driver's order by `golden.training.tile_batch`),
  cached under `build/power/workloads/`. ESSOP runs one window per BL (1 .. BL max), its LFSR
  state carried from product to product as in the engine; expected counts and exponents from
  `golden.essop.reseed` / `outer_product`, FP16 products from `golden.baselines.outer_product`.
- NMPU and LDPU: the golden stimulus of `verif.vectors` (random parameter images and ADC
  counts with a share on the rails, one layer register word per vector).

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

__all__ = ["training_tiles", "essop_window", "fp16outer_window", "workloads"]

CACHE = Path(__file__).resolve().parent.parent / "build" / "power" / "workloads"
TRAIN_SEED, TRAIN_STEP, TRAIN_BL = 1, 3, 32     # the step the RTL tie-in also replays
ESSOP_SEEDS = (0x2B, 0x5A)                      # LFSR seeds loaded before the first product


def training_tiles(essop_name, rows, cols, cache=CACHE):
    """x and δ tiles (binary16 patterns, (P, rows) and (P, cols)) of a real training step of
    the ESSOP preset `essop_name` (its array geometry), cached as JSON."""
    from golden import fp16
    from golden import training as gt
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
              f"exact mode at BL {TRAIN_BL}) of golden.training on the digits MLP")
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
        exp += [int(res.exp)] * cfg.rows
        error += [int(res.error)] * cfg.rows
    last = np.tile(np.arange(cfg.rows) == cfg.rows - 1, len(xs)).astype(np.int64)
    out = {"c": np.concatenate(c), "exp": exp, "error": error, "last": last}
    bl = 1 << log2_bl
    return vv.Vectors(inputs=Codec(ports["i__payload"]).encode({"x": xs, "d": ds}),
                      outputs=Codec(ports["o__payload"]).encode(out), regs=regs,
                      pulses={"reseed": [1] + [0] * (len(xs) - 1)},
                      status={"reg_error": 0, "busy": 0},
                      clocks=len(xs) * (bl + cfg.rows), item_clocks=bl + cfg.rows,
                      golden="golden.essop.reseed, golden.essop.outer_product",
                      summary=(f"{len(xs)} products of {cfg.rows} x {cfg.cols} at BL {bl}, "
                               "back to back"))


def fp16outer_window(cfg, ports, xs, ds):
    p = gb.outer_product(cfg, xs, ds)
    last = np.tile(np.arange(cfg.rows) == cfg.rows - 1, len(xs)).astype(np.int64)
    out = {"p": p.reshape(len(xs) * cfg.rows, cfg.cols), "last": last}
    return vv.Vectors(inputs=Codec(ports["i__payload"]).encode({"x": xs, "d": ds}),
                      outputs=Codec(ports["o__payload"]).encode(out),
                      clocks=len(xs) * cfg.rows, item_clocks=cfg.rows,
                      golden="golden.baselines.outer_product",
                      summary=f"{len(xs)} products of {cfg.rows} x {cfg.cols}, back to back")


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
            return [(None, len(xs), fp16outer_window(cfg, ports, xs, ds), what)]
        return [(f"bl{1 << b}", len(xs), essop_window(cfg, ports, xs, ds, b, lrs), what)
                for b in range(cfg.log2_bl_max + 1)]
    rng = np.random.default_rng([seed, zlib.crc32(f"{unit}_{cfg.tag}".encode())])
    vec = vv.GENERATORS[unit](cfg, ports, rng, count)
    return [(None, count, vec, f"golden random stimulus of verif.vectors: {vec.summary}")]
