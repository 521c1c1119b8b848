"""Design-space exploration: a multi-objective search over the knobs of a unit, on the engine.

    python -m studies.explore [--unit nmpu] [--trials N] [--batch B] [--scheduler tcp://h:p]
                              [--workers W] [--seed S] [--acc-limit PP] [--min-fmax MHZ]
                              [--verify K] [--sampler frontier|nsga2|monotone] [--wide-lanes]
                              [--quality [--quality-seeds N] [--quality-runs N]
                                         [--quality-table JSON]]
                              [--fresh] [--out build/report]

The search space is read from the unit's config dataclass (hdl/config.py), not from a list:
every field of the base preset takes part except those held on purpose (`HELD`: identity,
the tile size, the output width, a static layer's per-network values, and the two modes no
evaluator can price: a signed-count input and a unit without the residual input); a bool takes both
values, a str its known options (`OPTIONS`, else the values the presets use), an int the range
of `RANGES` or, for a field nobody listed yet, the base value ± 2 (so a knob added to the
config tomorrow is searched tomorrow). Points the config rejects are infeasible trials with the
config's own message.

Objectives (the frontier sampler by default, studies/frontier.py, or NSGA-II or the monotone
sampler; Optuna's ask/tell in this driver, a JournalStorage file so that a run resumes where it
stopped), the same four for each unit, an item being an NMPU vector (of
`columns` outputs) or an ESSOP product (32 x 32):
- accuracy loss in percentage points against the FP16 chip. NMPU: the tile model's quick
  digits protocol (studies.accuracy.evaluate on the `mlp` network, PROTOCOL's seeds and drift
  times), the NMPU point on a tile with its ADC width against the FP16 LDPU on the 12-bit tile
  of the chip (`paper`), same seeds; the paired NMPU − LDPU difference at the point's own ADC
  is recorded too. ESSOP: the training study's final accuracy (studies.training, ESSOP_PROTOCOL:
  bit-exact outer products at the point's largest BL) against mixed-precision training with
  the FP16 outer-product array's products, same seeds; the paired difference to exact float
  outer products is recorded too;
- area (µm², synth.flow on OSU 0.18 µm);
- energy per item (pJ): synth.power.measure, a gate-level run of the point's mapped netlist
  over the unit's workload (the MNIST MLP's fc1 for a 256-column NMPU, x/δ tiles of a real
  training step for ESSOP at its largest BL), its outputs checked against the golden model;
- items per second (`throughput`): NMPU f_max x lanes / columns; ESSOP f_max / clocks per
  product at its largest BL (`clocks_per_product`, the schedule the cocotb `throughput`
  scenario measures and asserts).

Cheap objectives first: accuracy runs first; a point whose loss exceeds `--acc-limit` is not
synthesised and is infeasible (constraint), as is a failed point or one below `--min-fmax`;
only the synthesised points that meet `--min-fmax` get the gate-level energy run.
Every evaluation is cached on the driver (engine/cache.py): accuracy under the config, the
protocol and the golden model's source; synthesis under synth.flow.cache_key (config, flow,
tools with the Liberty hash, Verilog); energy under the netlist's SHA-256, the clock period,
the tools, the workload and the source of the power model and of the workload's makers. The
front's first K points are then verified by cocotb (golden vs RTL) on Icarus and Verilator.

Reports: build/report/explore.{json,md,png}: the front (table and plots: accuracy loss vs area,
vs energy, vs items/s; today's presets and the paper's point marked), the search history, wall
times, cache hit rates. `--quality` measures the search against an exhaustive front on an enumerable
subspace (QUALITY_SPACE, about 100 points; build/report/explore_quality.{json,md}).
"""

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

from engine.cache import Cache, key
from engine.executor import Engine

__all__ = ["HELD", "OPTIONS", "RANGES", "PROTOCOL", "QUALITY_PROTOCOL", "ESSOP_PROTOCOL",
           "OBJECTIVES", "space", "config_of", "accuracy_task", "essop_accuracy_task", "energy_task", "throughput",
           "value", "Evaluator", "pareto", "search", "quality", "main"]

ROOT = Path(__file__).resolve().parent.parent
REPORT_DIR = ROOT / "build" / "report"
WORK = ROOT / "build" / "explore"

BASE = {"nmpu": "paper", "essop": "paper"}
# Fields not searched. NMPU: identity, the tile it serves, the output width, a static layer's
# per-network constants (chosen by the compiler per layer, not a hardware knob), the int8
# activations the networks are trained for, and two modes no evaluator can price:
# - `input_mode` 'signed' (one signed count X per column) needs a tile whose ADC converts the
#   difference of the two lines; the tile model of the accuracy study (and the chip's tile)
#   converts P and N separately, so the accuracy evaluator cannot run such a point, and
#   subtracting the two counts digitally is `single_scale` (searched), not another tile;
# - `residual` False removes the input that chains a row-split layer's partial sums from tile
#   to tile: the energy workload (MNIST MLP fc1, 4 row tiles) and every network wider than one
#   tile's rows need it; the digits MLP of the accuracy protocol fits one tile and would not
#   notice, so such a point would pass accuracy, be synthesised, and fail its energy run.
# `Evaluator` refuses either before any evaluation (`unsupported`), should a caller search them.
# ESSOP: identity; the 32 x 32 array (the training study's tiling and the FP16 array's size: a
# product of another size is another item); the lr_shift register (the schedule needs
# 2^5 - 1); acc_max (K > 1 changes the products per read-out, which depend on the driver's
# grouping, not on the point alone).
HELD = {"nmpu": {"name", "columns", "input_mode", "residual", "out_bits", "static_layer",
                 "static_shift", "static_pre_cut", "static_round"},
        "essop": {"name", "rows", "cols", "lr_shift_bits", "acc_max"}}
OPTIONS = {"input_mode": ("dual", "signed"), "rng": ("shared", "per_converter")}
# NMPU lanes: 1 (the LDPU's schedule, `serial`) to 64 (`paper`); a narrow unit synthesises
# faster than `paper`. 128 and 256 (`precision256`: 15.6 mm², 2.4x `paper`'s cells) only with
# `--wide-lanes` (WIDE_LANES): one such synthesis costs as much as two or three of `paper`.
# shift_bits 4..5: `precision`'s 4 and `paper`'s 5; 3 bits reach a 7-bit shift, enough only for
# accumulators of 15 bits or fewer (`precision`'s exactly), so half of the random points with 3
# are invalid, a sixth of the trials lost for one mux stage per lane. clamp_count_bits 16..32:
# `precision`'s 16 and `paper`'s 32; a narrower counter only saturates sooner, a loss (of the
# clamp statistics on long layers) that no objective of the search measures.
RANGES = {"nmpu": {"adc_bits": tuple(range(6, 13)), "lanes": (1, 2, 4, 8, 16, 32, 64),
                   "scale_frac": tuple(range(3, 10)), "offset_int": tuple(range(4, 9)),
                   "offset_frac": tuple(range(0, 4)), "exp_bits": (0, 1, 2, 3),
                   "drop_bits": tuple(range(0, 7)), "shift_bits": (4, 5),
                   "clamp_count_bits": (16, 24, 32)},
          "essop": {"mag_bits": tuple(range(4, 11)), "lfsr_width": (8, 10, 12, 16, 20, 24),
                    "log2_bl_max": tuple(range(2, 8)), "rows_per_beat": (1, 2, 4, 8, 16, 32)}}
WIDE_LANES = {"nmpu": {"lanes": (128, 256)}}
# The presets enqueued first, in this order (then the others that fit the space, in the
# config's order): the paper's point and the issue-13 `precision` preset.
FIRST = {"nmpu": ("paper", "precision")}
# The quick digits protocol of the accuracy study, for one evaluation.
PROTOCOL = {"network": "mlp", "seeds": [0, 1], "times": [60.0, 86400.0], "ref_adc_bits": 12}
# The search-quality measurement's protocol: the same, over 8 programming seeds. Its exhaustive
# front is the yardstick, so it must rank points by their knobs, not by which test images two
# device draws happened to flip (with 2 seeds 3 of its 10 front points were such records); 4x
# the seeds halve the noise of a loss for 4x the cost of an evaluation (8 s against 2 s), which
# the 98-point table can afford and the 32-trial search (accuracy 3 % of its time) need not.
QUALITY_PROTOCOL = dict(PROTOCOL, seeds=list(range(8)))
# ESSOP: the training study (studies/training.py: digits MLP on PCM pairs, its 20 epochs),
# bit-exact outer products at the point's largest BL (its counters are sized for it: a smaller
# BL on the same counters is a dominated point), against mixed-precision training with the
# FP16 outer-product array's products, same seeds.
ESSOP_PROTOCOL = {"study": "training", "seeds": [1, 2], "epochs": 20, "mode": "exact",
                  "reference": "fp16"}
PROTOCOLS = {"nmpu": PROTOCOL, "essop": ESSOP_PROTOCOL}
# The reference and point evaluators of each unit (names: looked up when called)
ACC_TASKS = {"nmpu": ("reference_task", "accuracy_task"),
             "essop": ("essop_reference_task", "essop_accuracy_task")}
# The enumerable subspace of the search-quality measurement: 7 x 7 x 2 = 98 points.
QUALITY_SPACE = {"adc_bits": tuple(range(6, 13)), "scale_frac": tuple(range(3, 10)),
                 "offset_frac": (0, 1)}
# The knobs along which the accuracy loss is, in expectation, non-increasing: +1 where a larger
# value is the more accurate (a wider ADC, more fraction bits of a scale or offset), -1 where a
# smaller one is (fewer dropped bits). The `monotone` sampler (studies/monotone.py) bounds a
# point's loss by the evaluated points wider than it in all of these with the other knobs equal.
# A prior, not a measurement: the 8-seed quality table (docs/explore.md) has 8-9-bit ADCs ahead
# of 10-12-bit ones by about 0.1 pp, and at scale_frac 3 the loss grows with adc_bits.
MONOTONE = {"nmpu": {"adc_bits": 1, "scale_int": 1, "scale_frac": 1, "offset_int": 1,
                     "offset_frac": 1, "drop_bits": -1},
            "essop": {"mag_bits": 1, "log2_bl_max": 1}}
SAMPLERS = ("nsga2", "monotone", "frontier")
SAMPLER_WORDS = {"nsga2": "NSGA-II", "monotone": "The monotone sampler",
                 "frontier": "The frontier sampler"}
# Penalty values of an infeasible point (Optuna needs finite numbers to rank it).
WORST = {"acc_loss_pp": 100.0, "area_um2": 1e12, "pj_per_item": 1e12, "items_per_s": 0.0}


def _units():
    from hdl.export import UNITS
    return UNITS


def base_config(unit):
    if unit not in BASE:
        raise SystemExit(f"studies.explore: unit {unit!r} has no search yet; units: "
                         f"{', '.join(BASE)}")
    return _units()[unit][1][BASE[unit]]


def space(unit, wide=False):
    """{field: candidate values} of every searched field, read from the config dataclass;
    `wide`: WIDE_LANES added to their fields' ranges."""
    base = base_config(unit)
    presets = _units()[unit][1].values()
    out = {}
    for f in dataclasses.fields(base):
        if f.name in HELD.get(unit, ()):
            continue
        v = getattr(base, f.name)
        if isinstance(v, bool):
            values = (False, True)
        elif isinstance(v, int):
            values = RANGES.get(unit, {}).get(f.name) or tuple(range(max(0, v - 2), v + 3))
        elif isinstance(v, str):
            values = OPTIONS.get(f.name) or tuple(sorted({getattr(p, f.name) for p in presets}))
        else:
            continue      # floats, tuples: not knobs of the RTL
        if wide and f.name in WIDE_LANES.get(unit, {}):
            values = tuple(values) + WIDE_LANES[unit][f.name]
        if len(values) > 1:
            out[f.name] = tuple(values)
    return out


def unsupported(unit, cfg):
    """Why no evaluator can price the point `cfg` (a message naming the field), or None: the
    modes HELD for that reason, checked before any evaluation so that a search given them
    spends no accuracy run, synthesis or energy run on them."""
    if unit != "nmpu":
        return None
    if cfg.input_mode != "dual":
        return (f"`input_mode` {cfg.input_mode!r}: the accuracy evaluator's tile model delivers "
                f"P and N counts ('dual') only; a signed-count tile is not modelled")
    if not cfg.residual:
        return ("`residual` False: the energy workload (MNIST MLP fc1, row tiles chained "
                "through the residual input, `residual_en`) needs the residual input")
    return None


def config_of(unit, params):
    """The config of a point (ValueError/TypeError from the config's own checks)."""
    return dataclasses.replace(base_config(unit), name="x", **params)


def _source_hash(*paths):
    """SHA-256 (16 hex digits) of the Python source under `paths` (folders or files, relative to
    the repository), each file named by its path, so that a file moved between folders is a
    different key."""
    h = hashlib.sha256()
    for path in paths:
        p = ROOT / path
        for f in (sorted(p.glob("*.py")) if p.is_dir() else [p]):
            h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


# The code an accuracy evaluation runs: the golden models and the accuracy study that drives
# them (studies/accuracy.py left golden/ in the layout move; without it here, a change of the
# study would not re-run cached points).
ACCURACY_SOURCES = ("golden", "studies/accuracy.py")
ACCURACY_SOURCES_OF = {"nmpu": ACCURACY_SOURCES, "essop": ("golden",)}  # essop_step.train
# The code an energy evaluation runs besides the netlist: the power model, the workload and the
# golden functions and study that make the workload's vectors and expected outputs.
ENERGY_SOURCES = ("synth/power.py", "synth/power_workload.py", "verif/vectors.py",
                  "verif/payload.py", "golden")
POWER_SEED = 1
ENERGY_MEM_GB = 1.0         # the gate-level run of a 256-column NMPU: Icarus image + VCD counts


# -- evaluators (run on engine workers) --------------------------------------------------------

def _tile_accuracy(nmpu_cfg, protocol):
    """{path: accuracy per (seed, t)} of studies.accuracy.evaluate for one NMPU config, with the
    tile's and the LDPU's ADC width set to the NMPU's."""
    import numpy as np
    from studies import accuracy as ga
    from golden import network as gnet
    from golden import tile as gt
    from golden.data import load
    from hdl.config import LDPU_PRESETS

    net = gnet.load_or_train(protocol["network"], progress=False)
    data = load(gnet.DATASET.get(protocol["network"], "digits"))
    bits = nmpu_cfg.adc_bits
    r = ga.evaluate(net, data, seeds=protocol["seeds"], times=protocol["times"],
                    nmpu_cfg=nmpu_cfg, ldpu_cfg=dataclasses.replace(LDPU_PRESETS["paper"],
                                                                    adc_bits=bits),
                    tile_cfg=gt.TileConfig(name="pcm", adc_bits=bits), progress=False,
                    budget=False)
    return {p: np.array([x["accuracy"] for x in r["runs"] if x["path"] == p])
            for p in ("analog_nmpu", "analog_ldpu")}


def reference_task(protocol):
    """The FP16 chip's accuracy per (seed, t): the LDPU on the tile with `ref_adc_bits` ADCs."""
    from hdl.config import NMPU_PRESETS
    cfg = dataclasses.replace(NMPU_PRESETS["paper"], adc_bits=protocol["ref_adc_bits"])
    return [float(a) for a in _tile_accuracy(cfg, protocol)["analog_ldpu"]]


def accuracy_task(cfg_dict, protocol, reference):
    """Accuracy of the NMPU `cfg_dict` on the tile model against the FP16 `reference` (same
    seeds and times): {acc_nmpu, acc_ldpu_same_adc, acc_fp16_ref, acc_loss_pp, paired_pp}."""
    import numpy as np
    from hdl.config import NMPUConfig
    mine = _tile_accuracy(NMPUConfig.from_dict(cfg_dict), protocol)
    ref = np.asarray(reference)
    return {"acc_nmpu": float(mine["analog_nmpu"].mean()),
            "acc_ldpu_same_adc": float(mine["analog_ldpu"].mean()),
            "acc_fp16_ref": float(ref.mean()),
            "acc_loss_pp": float(100 * (ref - mine["analog_nmpu"]).mean()),
            "paired_pp": float(100 * (mine["analog_ldpu"] - mine["analog_nmpu"]).mean())}


def _train_finals(essop_cfg, protocol, mode, bl=None):
    """Final test accuracies, one per seed of `protocol`, of the training study's run in
    `mode` with the ESSOP config `essop_cfg` (the outer products' engine and tiling)."""
    from golden import essop_step as tr
    from golden.data import digits
    tcfg = tr.TrainConfig(essop=essop_cfg, epochs=protocol["epochs"])
    data = digits()
    return [float(tr.train(tcfg, mode, data, s, bl=bl)["final"]) for s in protocol["seeds"]]


def essop_reference_task(protocol):
    """The FP16 chip's training, per seed: with the FP16 outer-product array's products
    (`reference`) and with exact float64 outer products (the training study's reference)."""
    from hdl.config import ESSOP_PRESETS
    base = ESSOP_PRESETS[BASE["essop"]]
    return {"fp16": _train_finals(base, protocol, protocol["reference"]),
            "float": _train_finals(base, protocol, "float")}


def essop_accuracy_task(cfg_dict, protocol, reference):
    """The training study's final accuracy with ESSOP `cfg_dict` at its largest BL against
    FP16 training (same seeds): {acc_essop, acc_fp16_ref, acc_float, acc_loss_pp, paired_pp
    (ESSOP - exact float products), bl}."""
    import numpy as np
    from hdl.config import ESSOPConfig
    cfg = ESSOPConfig.from_dict(cfg_dict)
    mine = np.array(_train_finals(cfg, protocol, protocol["mode"], bl=cfg.bl_max))
    fp16, flt = np.array(reference["fp16"]), np.array(reference["float"])
    return {"acc_essop": float(mine.mean()), "acc_fp16_ref": float(fp16.mean()),
            "acc_float": float(flt.mean()), "acc_loss_pp": float(100 * (fp16 - mine).mean()),
            "paired_pp": float(100 * (mine - flt).mean()), "bl": cfg.bl_max}


def throughput(unit, cfg, fmax_mhz):
    """Items per second at f_max: NMPU vectors (`columns` / `lanes` clocks each), ESSOP
    products at its largest BL (`clocks_per_product`, the schedule the cocotb `throughput`
    scenario measures and asserts, verif/essop_clocks.py)."""
    f = (fmax_mhz or 0) * 1e6
    if unit == "nmpu":
        return f * cfg.lanes / cfg.columns
    if unit == "essop":
        return f / cfg.clocks_per_product(cfg.log2_bl_max)
    raise ValueError(f"no throughput model for unit {unit!r}")


def verify_task(unit, cfg_dict, sim, seed):
    """cocotb golden-vs-RTL bench of one config on one simulator (run_bench raises on a
    mismatch or when no test ran: the engine reports it as the point's error)."""
    from verif.runner import run_bench
    cfg = _units()[unit][0].from_dict(cfg_dict)
    s = run_bench(unit, cfg, sim, seed)
    out = {"sim": sim, "tests": s.get("tests"), "wall_s": s.get("wall_s")}
    # the bench's `throughput` scenario measured the clocks per item (and asserted them)
    tp = Path(s["log"]).parent / "throughput.json"
    if tp.is_file():
        out["clocks_per_item"] = json.loads(tp.read_text())["cycles_per_vector"]
        out["clocks_per_item_model"] = (cfg.clocks_per_product(cfg.log2_bl_max) if unit == "essop"
                                        else cfg.columns / cfg.lanes)
    return out


_POWER_LIBS = {}


def energy_task(unit, cfg_dict, row, tools, work):
    """Energy per item of one synthesised point, on an engine worker: synth.power.measure over
    the unit's workload with the point's mapped netlist. The netlist is the one the synthesis
    left in `work`/synth when it is there and its SHA-256 is the row's; otherwise (the synthesis
    ran on another machine, or its folder was cleaned) the flow runs again here and must give
    the same netlist. Returns {pj_per_item, items_per_uj, ...} (ESSOP: per BL too)."""
    from synth import flow, power
    cfg = _units()[unit][0].from_dict(cfg_dict)
    synth_dir = Path(work) / "synth"
    run_dir = synth_dir / f"{unit}_{cfg.tag}"
    netlist = run_dir / "netlist.v"
    want = row["netlist_sha256"]
    if not (netlist.is_file() and hashlib.sha256(netlist.read_bytes()).hexdigest() == want):
        again = flow.run(unit, cfg, flow._worker_tools(tools, synth_dir), synth_dir,
                         row["flow"]["period_ns"])
        if again["netlist_sha256"] != want:
            raise power.PowerError(f"{unit} {cfg.tag}: the synthesis run again here gave another "
                                   f"netlist ({again['netlist_sha256'][:12]}, the cached row's "
                                   f"{want[:12]}): the flow is not deterministic on this worker")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text(json.dumps(row, indent=1) + "\n")   # f_max: the period
    if str(synth_dir) not in _POWER_LIBS:
        _POWER_LIBS[str(synth_dir)] = power.library(synth_dir)
    r = power.measure(unit, cfg, _POWER_LIBS[str(synth_dir)], synth_dir, Path(work) / "power",
                      seed=POWER_SEED, glitches=False)
    for sim in (Path(work) / "power" / f"{unit}_{cfg.tag}").rglob("psim"):
        sim.unlink()            # the compiled bench: tens of MB per point, not needed again
    out = {k: r.get(k) for k in ("pj_per_item", "items_per_uj", "item", "workload_name",
                                 "period_ns", "gate_level_beats", "clocks_per_item", "wall_s")}
    if "per_bl" in r:
        out["per_bl"] = [{"bl": p["bl"], "pj_per_item": p["pj_per_item"]} for p in r["per_bl"]]
    return out


# -- Pareto --------------------------------------------------------------------------------------

def dominates(a, b, senses):
    """a dominates b: no worse in every objective (senses: +1 minimise, -1 maximise), better in
    one."""
    no_worse = all(s * x <= s * y for x, y, s in zip(a, b, senses))
    return no_worse and any(s * x < s * y for x, y, s in zip(a, b, senses))


def pareto(points, senses):
    """Indices of the non-dominated points among [(values...)] (duplicates all kept)."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p, senses) for j, q in enumerate(points) if j != i)]


# -- the search ----------------------------------------------------------------------------------

OBJECTIVES = (("acc_loss_pp", "minimize"), ("area_um2", "minimize"), ("pj_per_item", "minimize"),
              ("items_per_s", "maximize"))
_AT = {name: j for j, (name, _) in enumerate(OBJECTIVES)}


def value(r, name):
    """Objective `name` of a record (its entry in r["values"])."""
    return r["values"][_AT[name]]


class Evaluator:
    """The cached, cheap-first evaluation of points on the engine."""

    def __init__(self, unit, eng, protocol=None, acc_limit=1.0, min_fmax=50.0, work=WORK,
                 synth=True):
        self.unit, self.eng, self.protocol = unit, eng, dict(protocol or PROTOCOLS[unit])
        self.acc_limit, self.min_fmax, self.work, self.synth = acc_limit, min_fmax, Path(work), synth
        self.acc_cache = Cache(self.work / "cache" / "accuracy")
        self.synth_cache = Cache(self.work / "cache" / "synth")
        self.energy_cache = Cache(self.work / "cache" / "energy")
        self.golden = _source_hash(*ACCURACY_SOURCES_OF[unit])
        self.energy_code = _source_hash(*ENERGY_SOURCES)
        self._tools = None

    def acc_key(self, cfg):
        return key(kind="accuracy", unit=self.unit, config=cfg.to_dict(), protocol=self.protocol,
                   golden=self.golden)

    def reference(self):
        """The FP16 reference accuracies (one cached task per protocol)."""
        if getattr(self, "_ref", None) is None:
            k = key(kind="reference", protocol=self.protocol, golden=self.golden)
            task = globals()[ACC_TASKS[self.unit][0]]
            out = next(self.eng.map(task, [self.protocol], cache=self.acc_cache,
                                    key=lambda _: k, label=lambda _: "FP16 reference"))
            if not out.ok:
                raise RuntimeError(f"the FP16 reference failed: {out.error}")
            self._ref = out.value
        return self._ref

    def energy_key(self, cfg, row):
        """The energy cache key: the mapped netlist (its SHA-256), the clock period it is run
        at (leakage and idle clocks), the tools, the workload and the code that makes it."""
        from synth import power
        from synth import power_workload as pw
        return key(kind="energy", unit=self.unit, config=cfg.to_dict(),
                   netlist=row["netlist_sha256"], period_ns=row.get("min_period_ns"),
                   tools=row.get("tools"), code=self.energy_code,
                   workload={"name": pw.workload_name(self.unit, cfg), "seed": POWER_SEED,
                             "count": power.POWER_COUNT[self.unit]})

    @property
    def tools(self):
        if self._tools is None:
            from synth import flow
            self._tools = flow.Tools.setup(flow.DEFAULT_OUT)
        return self._tools

    def evaluate(self, cfgs, on_done=None):
        """[(cfg or None, error)] -> [record]; records carry values, constraints and status."""
        cfgs = [(c, e) if c is None or not (why := unsupported(self.unit, c)) else (c, why)
                for c, e in cfgs]
        recs = [{"config": c.to_dict() if c else None, "tag": c.tag if c else None,
                 "status": "invalid" if c is None else "unsupported" if e else "pending",
                 "error": e, "seconds": 0.0} for c, e in cfgs]
        todo = [i for i, r in enumerate(recs) if r["status"] == "pending"]
        ref = self.reference()
        for out in self.eng.map(globals()[ACC_TASKS[self.unit][1]], todo,
                                args=lambda i: (cfgs[i][0].to_dict(), self.protocol, ref),
                                cache=self.acc_cache, key=lambda i: self.acc_key(cfgs[i][0]),
                                label=lambda i: f"{self.unit} {cfgs[i][0].tag} accuracy"):
            r = recs[out.item]
            r["seconds"] += out.seconds
            if out.ok:
                r.update(out.value, cached_accuracy=out.cached)
                r["status"] = "accuracy_fail" if out.value["acc_loss_pp"] > self.acc_limit \
                    else "pending"
            else:
                r.update(status="failed", error=out.error.strip().splitlines()[0])
        passing = [i for i in todo if recs[i]["status"] == "pending"]
        if passing and self.synth:
            from synth import flow
            by_tag = {cfgs[i][0].tag: i for i in passing}
            hits0 = self.synth_cache.hits

            def synthesised():
                """The synthesis results as they arrive, recorded; yields the points that met
                f_max, whose energy run the engine then starts at once (no stage barrier)."""
                seen = hits0
                for _, cfg, row in flow.run_all([(self.unit, cfgs[i][0]) for i in by_tag.values()],
                                                self.tools, self.work / "synth", engine=self.eng,
                                                cache=self.synth_cache):
                    r = recs[by_tag[cfg.tag]]
                    # the engine looks a point up just before it yields a hit: a hit moved the
                    # count
                    cached, seen = self.synth_cache.hits > seen, self.synth_cache.hits
                    if "error" in row:
                        r.update(status="failed", error=row["error"].splitlines()[0])
                        continue
                    r.update(area_um2=row["area_um2"], fmax_mhz=row["fmax_mhz"],
                             items_per_s=throughput(self.unit, cfg, row["fmax_mhz"]),
                             synth_s=row.get("wall_s"), cached_synth=cached)
                    if not cached:          # a cached row's wall_s is the run that made it
                        r["seconds"] += row.get("wall_s") or 0
                    r["status"] = "ok" if (row["fmax_mhz"] or 0) >= self.min_fmax else "slow"
                    if r["status"] == "ok":
                        yield by_tag[cfg.tag], cfg, row
            self._energy(recs, synthesised(), total=len(by_tag))
            self.synth_hits = self.synth_cache.hits - hits0
        elif passing:        # accuracy only (--no-synth): area, energy, throughput not measured
            for i in passing:
                recs[i].update(status="ok", area_um2=0.0, pj_per_item=0.0, items_per_s=0.0)
        for r in recs:
            ok = r["status"] == "ok"
            r["values"] = [r.get(k) if ok or (k == "acc_loss_pp" and k in r) else WORST[k]
                           for k, _ in OBJECTIVES]
            acc_c = r.get("acc_loss_pp", WORST["acc_loss_pp"]) - self.acc_limit
            fmax_c = self.min_fmax - r["fmax_mhz"] if r.get("fmax_mhz") else 1e6
            r["constraints"] = [acc_c if r["status"] not in ("failed", "unsupported") else 1e6,
                                fmax_c if ok or r["status"] == "slow" else 1e6]
        return recs


    def _energy(self, recs, rows, total=None):
        """Energy per item of the synthesised points that met f_max (an iterable of (index,
        cfg, row), consumed as it comes), cached; a point whose energy run fails is failed."""
        def ready():
            for i, cfg, row in rows:
                if not row.get("netlist_sha256"):     # a row cached before the flow recorded it
                    net = self.work / "synth" / f"{self.unit}_{cfg.tag}" / "netlist.v"
                    if not net.is_file():
                        recs[i].update(status="failed", error="energy: the cached synthesis "
                                       "row has no netlist hash and its netlist is gone (run "
                                       "once with an empty build/explore/cache/synth)")
                        continue
                    row = dict(row, netlist_sha256=hashlib.sha256(net.read_bytes()).hexdigest())
                yield i, cfg, row
        for out in self.eng.map(energy_task, ready(), mem_gb=ENERGY_MEM_GB, total=total,
                                args=lambda t: (self.unit, t[1].to_dict(), t[2], self.tools,
                                                self.work),
                                cache=self.energy_cache, key=lambda t: self.energy_key(t[1], t[2]),
                                label=lambda t: f"{self.unit} {t[1].tag} energy"):
            r = recs[out.item[0]]
            r["seconds"] += out.seconds
            if out.ok:
                r.update(pj_per_item=out.value["pj_per_item"], energy=out.value,
                         cached_energy=out.cached)
            else:
                r.update(status="failed", error="energy: " + out.error.strip().splitlines()[0])


def _digest(doc):
    """8 hex digits naming a study by its space and objectives."""
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:8]


def _suggest(trial, sp):
    return {f: trial.suggest_categorical(f, list(v)) for f, v in sp.items()}


def make_sampler(name, unit, sp, *, batch=8, seed=1, acc_limit=None):
    """The search's sampler: `nsga2` (NSGA-II, population max(4, batch)), `monotone`
    (studies/monotone.py on MONOTONE[unit]: a point narrower in every width than an evaluated
    point over the accuracy limit, or than one that a narrower evaluated point already matches,
    is not proposed; the cheapest of the rest comes first) or `frontier` (studies/frontier.py:
    one GP per objective, the candidates most often on the feasible front of joint posterior
    draws; the presets and max(4, batch) spread points first)."""
    import optuna
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(4, batch), seed=seed)
    if name == "monotone":
        from studies.monotone import MonotoneSampler
        return MonotoneSampler(sp, MONOTONE.get(unit, {}), loss_index=_AT["acc_loss_pp"],
                               limit=acc_limit, seed=seed, unknown=WORST["acc_loss_pp"])
    if name == "frontier":
        from studies.frontier import FrontierSampler
        return FrontierSampler(sp, None, senses=[1 if d == "minimize" else -1
                                                 for _, d in OBJECTIVES],
                               loss_index=_AT["acc_loss_pp"], limit=acc_limit, seed=seed,
                               unknown=WORST["acc_loss_pp"],
                               worst=tuple(WORST[k] for k, _ in OBJECTIVES),
                               n_init=max(4, batch), draws=128, pool=256)
    raise ValueError(f"`sampler` must be one of {', '.join(SAMPLERS)}, not {name!r}")


def search(unit, trials, eng, *, batch=8, seed=1, evaluator=None, storage=None, sp=None,
           fresh=False, sampler="nsga2", log=print):
    """Ask/tell over `sp` (default: space(unit)) with `sampler` (make_sampler); returns the
    study."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sp = sp or space(unit)
    storage = Path(storage or WORK / f"{unit}.journal")
    storage.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        storage.unlink(missing_ok=True)
    sampler = make_sampler(sampler, unit, sp, batch=batch, seed=seed,
                           acc_limit=getattr(evaluator, "acc_limit", None))
    study = optuna.create_study(
        study_name=f"{unit}-{_digest([sp, OBJECTIVES])}",
        storage=JournalStorage(JournalFileBackend(str(storage))), sampler=sampler,
        directions=[d for _, d in OBJECTIVES], load_if_exists=True)
    done = [t for t in study.trials if t.state.is_finished()]
    if not done:          # today's presets first, so that the front is measured against them
        first = FIRST.get(unit, ())
        for name, p in sorted(_units()[unit][1].items(), key=lambda kv: (
                first.index(kv[0]) if kv[0] in first else len(first))):
            params = {f: getattr(p, f) for f in sp}
            if all(params[f] in sp[f] for f in sp) and all(
                    getattr(p, f) == getattr(base_config(unit), f) for f in HELD.get(unit, ())
                    if f != "name"):
                study.enqueue_trial(params, user_attrs={"preset": name})
    k = len(done)
    if k:
        log(f"explore: resuming {study.study_name} at trial {k}/{trials} ({storage})")
    while k < trials:
        asked = [study.ask() for _ in range(min(batch, trials - k))]
        cfgs = []
        for t in asked:
            try:
                cfgs.append((config_of(unit, _suggest(t, sp)), None))
            except (ValueError, TypeError) as exc:
                cfgs.append((None, str(exc)))
        t0 = time.perf_counter()
        recs = evaluator.evaluate(cfgs)
        for t, r in zip(asked, recs):
            k += 1
            for a in ("status", "tag", "error", "config", "constraints", "acc_nmpu", "acc_essop",
                      "acc_fp16_ref", "acc_float", "paired_pp", "fmax_mhz", "energy", "seconds"):
                if r.get(a) is not None:
                    t.set_user_attr(a, r[a])
            # feasible when every constraint is <= 0: accuracy loss within the limit, f_max
            # at least the minimum (a failed or invalid point violates both)
            t.set_constraint("accuracy", r["constraints"][0])
            t.set_constraint("fmax", r["constraints"][1])
            study.tell(t, r["values"])
            log(f"[{k}/{trials}] {unit} {r['tag'] or t.params} {r['status']} "
                f"{r['seconds']:.1f} s" + (f" ({r['error'][:100]})" if r.get("error") else ""))
        log(f"explore: batch of {len(asked)} in {time.perf_counter() - t0:.1f} s")
    return study


def records(study):
    out = []
    for t in study.trials:
        if not t.state.is_finished() or t.values is None:
            continue
        a = dict(t.user_attrs)
        out.append({"number": t.number, "params": t.params, "values": list(t.values),
                    "feasible": all(c <= 0 for c in a.get("constraints", [1])), **a})
    return out


def front(recs):
    ok = [r for r in recs if r["feasible"]]
    senses = [1 if d == "minimize" else -1 for _, d in OBJECTIVES]
    seen, out = set(), []
    for i in pareto([r["values"] for r in ok], senses):
        if ok[i]["tag"] not in seen:
            seen.add(ok[i]["tag"])
            out.append(ok[i])
    return sorted(out, key=lambda r: value(r, "area_um2"))


# -- search quality on an enumerable subspace -----------------------------------------------------

def _bits(cfg):
    """The cheap cost of the quality measurement: datapath bits per lane (ADC input, scale,
    offset and accumulator widths), monotone in the lane's area."""
    return cfg.adc_bits + cfg.scale_bits + cfg.offset_bits + cfg.acc_bits


def quality_table(evaluator):
    """The exhaustive pass over QUALITY_SPACE with the accuracy evaluator (no synthesis):
    [{knob: value, ..., "acc_loss_pp": loss}] of every point it evaluated."""
    import itertools
    names = list(QUALITY_SPACE)
    points = [dict(zip(names, v)) for v in itertools.product(*QUALITY_SPACE.values())]
    was, evaluator.synth = evaluator.synth, False
    try:
        recs = evaluator.evaluate([(config_of(evaluator.unit, p), None) for p in points])
    finally:
        evaluator.synth = was
    return [dict(p, acc_loss_pp=r["acc_loss_pp"]) for p, r in zip(points, recs)
            if r["status"] in ("ok", "accuracy_fail")]


def _resolution(losses):
    """The smallest difference between two distinct losses of a table (one test image of the
    protocol, as measured), 0 if all are equal."""
    v = sorted({round(x, 9) for x in losses})
    return min((b - a for a, b in zip(v, v[1:])), default=0.0)


def quality_samplers(batch=6, step=None):
    """{name: seed -> Optuna sampler} compared by the search-quality measurement."""
    import optuna
    from studies.frontier import FrontierSampler
    from studies.monotone import MonotoneSampler
    cost = lambda p: _bits(config_of("nmpu", p))      # noqa: E731 (known without evaluation)
    return {"NSGA-II": lambda s: optuna.samplers.NSGAIISampler(population_size=batch, seed=s),
            "TPE (multivariate)": lambda s: optuna.samplers.TPESampler(
                seed=s, n_startup_trials=batch, multivariate=True),
            "monotone": lambda s: MonotoneSampler(QUALITY_SPACE, MONOTONE["nmpu"], cost=cost,
                                                  seed=s, step=step or 0.05),
            "frontier": lambda s: FrontierSampler(QUALITY_SPACE, cost, seed=s),
            # as in the full search: the cost modelled too, not known
            "frontier, cost modelled": lambda s: FrontierSampler(QUALITY_SPACE, None, seed=s)}


def quality(eng, evaluator, *, budget_share=1 / 3, seeds=(1, 2, 3, 4, 5), batch=6, table=None,
            samplers=None, protocol=None, log=print):
    """Exhaustive front of QUALITY_SPACE (accuracy loss, datapath bits) against each sampler's
    front with a third of the evaluations, several seeds. The table is evaluated with
    `evaluator`'s protocol (main gives it QUALITY_PROTOCOL); `table`: the exhaustive pass's
    values (quality_table's rows) instead of evaluating, `protocol` the one they were measured
    with (for the report). Returns the report dict.

    A front point counts as found when the search evaluated that very point (the exact
    figure, the target's); `eps_share` counts it found when the search evaluated a point that
    costs no more and loses at most one test image more (the resolution of the table), reported
    beside the exact figure."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = list(QUALITY_SPACE)
    t0 = time.perf_counter()
    rows = quality_table(evaluator) if table is None else table
    wall_exhaustive = time.perf_counter() - t0
    value = {tuple(r[n] for n in names): (r["acc_loss_pp"], _bits(config_of("nmpu", {
        n: r[n] for n in names}))) for r in rows}
    keys = list(value)
    true = {keys[i] for i in pareto([value[k] for k in keys], (1, 1))}
    eps = _resolution(v for v, _ in value.values())
    points = math.prod(len(v) for v in QUALITY_SPACE.values())
    budget = int(points * budget_share)
    runs = []
    samplers = quality_samplers(batch, step=eps or None) if samplers is None else samplers
    for sampler, make in samplers.items():
        for s in seeds:
            # the budget counts distinct points: a point asked again comes from the cache
            study = optuna.create_study(directions=["minimize", "minimize"], sampler=make(s))
            seen, asks = {}, 0
            while len(seen) < budget and asks < 50 * budget:
                asks += 1
                t = study.ask()
                p = tuple(t.suggest_categorical(n, list(QUALITY_SPACE[n])) for n in names)
                if p not in value:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                    continue
                seen[p] = value[p]
                study.tell(t, list(value[p]))
            ks = list(seen)
            found = {ks[i] for i in pareto([seen[k] for k in ks], (1, 1))}
            near = {k for k in true if any(seen[f][1] <= value[k][1] and seen[f][0] <= value[k][0]
                                           + eps + 1e-9 for f in seen)}
            runs.append({"sampler": sampler, "seed": s, "evaluations": len(seen), "asks": asks,
                         "front_found": len(found & true), "share": len(found & true) / len(true),
                         "eps_found": len(near), "eps_share": len(near) / len(true)})
            log(f"quality: {sampler} seed {s}: {len(found & true)}/{len(true)} of the exhaustive "
                f"front in {len(seen)} evaluations ({asks} asks); within one test image "
                f"({eps:.3f} pp): {len(near)}/{len(true)}")
    return {"space": {k: list(v) for k, v in QUALITY_SPACE.items()}, "points": points,
            "protocol": protocol if table is not None else getattr(evaluator, "protocol", None),
            "evaluated": len(value), "exhaustive_front": [dict(zip(names, k)) | {
                "acc_loss_pp": value[k][0], "datapath_bits": value[k][1]} for k in sorted(true)],
            "table": [dict(zip(names, k)) | {"acc_loss_pp": v[0], "datapath_bits": v[1]}
                      for k, v in sorted(value.items())],
            "resolution_pp": eps, "budget": budget, "runs": runs,
            "mean_share": {k: sum(r["share"] for r in runs if r["sampler"] == k) / len(seeds)
                           for k in samplers},
            "mean_eps_share": {k: sum(r["eps_share"] for r in runs if r["sampler"] == k)
                               / len(seeds) for k in samplers},
            "exhaustive_wall_s": round(wall_exhaustive, 1) if table is None else None,
            "accuracy_cache_hits": evaluator.acc_cache.hits if table is None else None}


# -- reports -------------------------------------------------------------------------------------

def _item(unit):
    return {"nmpu": "vector", "essop": "product"}.get(unit, "item")


PAIRED = {"nmpu": "NMPU−LDPU same ADC", "essop": "ESSOP−exact products"}


def _protocol_words(unit, p):
    if unit == "essop":
        return (f"final test accuracy of the training study (digits MLP on PCM pairs, "
                f"{p['epochs']} epochs, seeds {p['seeds']}), ESSOP {p['mode']} at the point's "
                f"largest BL, loss against training with the FP16 outer-product array's products")
    return (f"`{p['network']}` on the tile model, seeds {p['seeds']}, t = {p['times']} s, loss "
            f"against the FP16 LDPU on the {p['ref_adc_bits']}-bit tile")


def write_reports(unit, study, evaluator, wall, out=REPORT_DIR, extra=None):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recs = records(study)
    fr = front(recs)
    caches = {"accuracy": evaluator.acc_cache, "synth": evaluator.synth_cache,
              "energy": getattr(evaluator, "energy_cache", None)}
    doc = {"unit": unit, "objectives": [list(o) for o in OBJECTIVES], "space":
           {k: list(v) for k, v in space(unit).items()}, "protocol": evaluator.protocol,
           "acc_limit_pp": evaluator.acc_limit, "min_fmax_mhz": evaluator.min_fmax,
           "trials": len(recs), "feasible": sum(r["feasible"] for r in recs),
           "front": fr, "history": recs, "wall_s": round(wall, 1), "where": evaluator.eng.where,
           "cache": {f"{k}_{what}": (getattr(c, attr) if c is not None else 0)
                     for k, c in caches.items()
                     for what, attr in (("hit_rate", "hit_rate"), ("hits", "hits"),
                                        ("misses", "misses"))}}
    doc.update(extra or {})
    (out / "explore.json").write_text(json.dumps(doc, indent=1) + "\n")
    sp, item, cache = doc["space"], _item(unit), doc["cache"]
    lines = [f"# Design-space exploration: {unit.upper()}", "",
             f"{SAMPLER_WORDS[doc.get('sampler', 'nsga2')]} over {len(sp)} knobs read from the "
             f"config ({', '.join(sp)}); "
             f"{doc['trials']} trials, {doc['feasible']} feasible; accuracy loss limit "
             f"{evaluator.acc_limit} pp, f_max ≥ {evaluator.min_fmax} MHz; {doc['where']}; "
             f"{wall / 60:.1f} min. Accuracy: {_protocol_words(unit, evaluator.protocol)}. "
             f"Energy per {item}: gate-level run of the mapped netlist (synth/power.py). "
             f"Cache hit rate: accuracy {cache['accuracy_hit_rate']:.0%}, synthesis "
             f"{cache['synth_hit_rate']:.0%}, energy {cache['energy_hit_rate']:.0%}. "
             f"Generated by `make explore`.", "",
             "## Front", "",
             f"| # | preset | acc loss pp | {PAIRED[unit]} pp | area µm² | pJ/{item} | "
             f"f_max MHz | {item}s/s (M) | config (searched fields) |",
             "|--:|---|--:|--:|--:|--:|--:|--:|---|"]
    for r in fr:
        c = r.get("config") or {}
        lines.append(f"| {r['number']} | {r.get('preset', '')} | {value(r, 'acc_loss_pp'):.2f} | "
                     f"{r.get('paired_pp', float('nan')):.2f} | {value(r, 'area_um2'):,.0f} | "
                     f"{value(r, 'pj_per_item'):,.1f} | {r.get('fmax_mhz') or 0:.0f} | "
                     f"{value(r, 'items_per_s') / 1e6:,.0f} | "
                     + ", ".join(f"{k}={c.get(k)}" for k in sp) + " |")
    presets = [r for r in recs if r.get("preset")]
    if presets:
        lines += ["", "## Today's presets", "", f"| preset | status | acc loss pp | area µm² | "
                  f"pJ/{item} | {item}s/s (M) | on the front |", "|---|---|--:|--:|--:|--:|---|"]
        tags = {r["tag"] for r in fr}
        for r in presets:
            lines.append(f"| {r['preset']} | {r.get('status')} | {value(r, 'acc_loss_pp'):.2f} | "
                         f"{value(r, 'area_um2'):,.0f} | {value(r, 'pj_per_item'):,.1f} | "
                         f"{value(r, 'items_per_s') / 1e6:,.0f} | "
                         f"{'yes' if r['tag'] in tags else 'no'} |")
    if doc.get("verified"):
        lines += ["", "## Verified front points", "", "cocotb golden-vs-RTL bench; its "
                  f"`throughput` scenario measures the clocks per {item} (no stalls).", "",
                  f"| point | simulator | result | tests | clocks/{item} measured | model | "
                  f"{item}s/s at f_max (M), measured clocks |", "|---|---|---|--:|--:|--:|--:|"]
        fmax = {r["tag"]: r.get("fmax_mhz") for r in recs if r.get("tag")}   # not invalid ones
        for v in doc["verified"]:
            c = v.get("clocks_per_item")
            rate = fmax.get(v["tag"]) / c if c and fmax.get(v["tag"]) else None
            lines.append(f"| {v['tag']} | {v['sim']} | {'pass' if v['ok'] else 'FAILED'} | "
                         f"{v.get('tests', '')} | {'' if c is None else f'{c:g}'} | "
                         f"{v.get('clocks_per_item_model', '')} | "
                         f"{'' if rate is None else f'{rate:,.1f}'} |")
    if "quality" in doc:
        lines += quality_lines(doc["quality"])
    lines += ["", "## History", "", f"| # | status | acc loss pp | area µm² | pJ/{item} | "
              f"f_max MHz | s |", "|--:|---|--:|--:|--:|--:|--:|"]
    for r in recs:
        lines.append(f"| {r['number']} | {r.get('status')} | {value(r, 'acc_loss_pp'):.2f} | "
                     f"{value(r, 'area_um2'):,.0f} | {value(r, 'pj_per_item'):,.1f} | "
                     f"{r.get('fmax_mhz') or 0:.0f} | {r.get('seconds', 0):.0f} |")
    (out / "explore.md").write_text("\n".join(lines) + "\n")
    _plot(recs, fr, out / "explore.png", item)
    return doc


def quality_lines(q):
    """The search-quality section of a report (Markdown lines)."""
    lines = ["", "## Search quality", "", f"Exhaustive front: {len(q['exhaustive_front'])} "
             f"of {q['points']} points ({q['evaluated']} evaluated); each search gets "
             f"{q['budget']} distinct evaluations. Found: the search evaluated that point (the "
             f"target: at least 90 %); within one test image: it evaluated a point that costs no "
             f"more and loses at most {q.get('resolution_pp', 0):.3f} pp more."
             + (f" Accuracy: {_protocol_words('nmpu', q['protocol'])}." if q.get("protocol")
                else ""), "",
             "| sampler | mean share of the front found | found per seed | within one test "
             "image | per seed |", "|---|--:|---|--:|---|"]
    for name, share in q["mean_share"].items():
        runs = [r for r in q["runs"] if r["sampler"] == name]
        lines.append(f"| {name} | {share:.0%} | {[r['front_found'] for r in runs]} | "
                     f"{q.get('mean_eps_share', {}).get(name, 0):.0%} | "
                     f"{[r.get('eps_found') for r in runs]} |")
    return lines


def write_quality(q, out=REPORT_DIR):
    """build/report/explore_quality.{json,md}: the search-quality measurement alone."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "explore_quality.json").write_text(json.dumps(q, indent=1) + "\n")
    (out / "explore_quality.md").write_text("\n".join(
        ["# Search quality: NMPU, QUALITY_SPACE"] + quality_lines(q)[2:]) + "\n")


def _plot(recs, fr, path, item="item"):
    """Accuracy loss against each cost objective: the feasible points, the points of the
    search's (four-objective) front, the two-objective front of each panel as a line, and
    today's presets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = (("area_um2", f"area (mm², OSU 0.18 µm)", 1e-6, 1),
              ("pj_per_item", f"energy per {item} (pJ)", 1.0, 1),
              ("items_per_s", f"{item}s per second (G)", 1e-9, -1))
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2))
    ok = [r for r in recs if r["feasible"]]
    for ax, (name, xlabel, scale, sense) in zip(axes, panels):
        xy = [(value(r, name) * scale, value(r, "acc_loss_pp")) for r in ok]
        ax.scatter([x for x, _ in xy], [y for _, y in xy], s=12, color="0.6",
                   label="feasible points")
        ax.scatter([value(r, name) * scale for r in fr], [value(r, "acc_loss_pp") for r in fr],
                   s=30, color="C0", label="front (all objectives)")
        two = sorted({xy[i] for i in pareto(xy, (sense, 1))})
        ax.plot([x for x, _ in two], [y for _, y in two], "-", color="C0", lw=1,
                label="front of this pair")
        for r in recs:
            if r.get("preset") and r["feasible"]:
                marker = "*" if r["preset"] == "paper" else "s"
                ax.plot(value(r, name) * scale, value(r, "acc_loss_pp"), marker, ms=11,
                        color="C3", label=f"preset {r['preset']}" + (
                            " (the paper's point)" if r["preset"] == "paper" else ""))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy loss vs FP16 (pp)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _load_table(path):
    """(rows, protocol) of a saved exhaustive table: the `quality` of an explore.json, an
    explore_quality.json, or a bare list of rows (protocol None); (None, None) without a path."""
    if path is None:
        return None, None
    doc = json.loads(Path(path).read_text())
    q = (doc.get("quality") or doc) if isinstance(doc, dict) else {"table": doc}
    rows = q.get("table")
    if not rows or any(not {*QUALITY_SPACE, "acc_loss_pp"} <= set(r) for r in rows):
        raise SystemExit(f"{path}: not a quality table (rows with {', '.join(QUALITY_SPACE)} "
                         f"and acc_loss_pp)")
    return rows, q.get("protocol")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", default="nmpu", choices=["nmpu", "essop"])
    ap.add_argument("--trials", type=int, default=32, help="evaluations (default 32)")
    ap.add_argument("--batch", type=int, default=8, help="points asked per generation")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes")
    ap.add_argument("--scheduler", help="tcp://host:port of a dask scheduler (or AIMC_SCHEDULER)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--acc-limit", type=float, default=1.0, help="max accuracy loss, pp")
    ap.add_argument("--min-fmax", type=float, default=50.0, help="min f_max, MHz")
    ap.add_argument("--verify", type=int, default=2, help="front points verified by cocotb")
    ap.add_argument("--sampler", default="frontier", choices=SAMPLERS,
                    help="frontier (default: studies/frontier.py), nsga2 or monotone "
                         "(studies/monotone.py)")
    ap.add_argument("--quality", action="store_true", help="also the search-quality measurement")
    ap.add_argument("--quality-table", type=Path, metavar="JSON",
                    help="score the samplers on a saved exhaustive table (the `quality.table` "
                         "of an explore.json, or a list of its rows) instead of evaluating it")
    ap.add_argument("--quality-seeds", type=int, default=len(QUALITY_PROTOCOL["seeds"]),
                    help="programming seeds of the quality table's protocol (default "
                         f"{len(QUALITY_PROTOCOL['seeds'])}; the search's own: "
                         f"{len(PROTOCOL['seeds'])})")
    ap.add_argument("--quality-runs", type=int, default=5,
                    help="searches per sampler in the quality measurement (seeds 1..N, "
                         "default 5)")
    ap.add_argument("--wide-lanes", action="store_true",
                    help="NMPU lanes up to 256 (WIDE_LANES; `precision256` among the presets): "
                         "one such synthesis costs two or three of `paper`")
    ap.add_argument("--no-synth", action="store_true", help="accuracy only (no synthesis)")
    ap.add_argument("--fresh", action="store_true", help="start the study again")
    ap.add_argument("--journal", type=Path, help="the study's journal (build/explore/<unit>.journal)")
    ap.add_argument("--out", type=Path, default=REPORT_DIR)
    args = ap.parse_args(argv)
    if args.quality_seeds < 1 or args.quality_runs < 1:
        ap.error("--quality-seeds and --quality-runs must be at least 1")
    if args.trials < (0 if args.quality else 1) or args.batch < 1:
        ap.error("--trials and --batch must be at least 1 (--trials 0: --quality alone)")
    base_config(args.unit)        # a unit without a search stops here, saying why
    if args.quality_table and not args.quality:
        ap.error("--quality-table is an input of --quality")
    if args.quality and args.unit != "nmpu":
        ap.error("--quality measures the NMPU search (QUALITY_SPACE); not for --unit "
                 f"{args.unit}")
    t0 = time.perf_counter()
    qprotocol = dict(QUALITY_PROTOCOL, seeds=list(range(args.quality_seeds)))
    runs = tuple(range(1, args.quality_runs + 1))
    table, table_protocol = _load_table(args.quality_table)
    if args.trials == 0 and table:     # scoring a saved table needs no engine
        q = quality(None, Evaluator(args.unit, None), table=table, protocol=table_protocol,
                    seeds=runs)
        write_quality(q, args.out)
        print(f"explore: search quality in {time.perf_counter() - t0:.1f} s; "
              f"{args.out}/explore_quality.json, explore_quality.md")
        return
    with Engine(args.workers, args.scheduler, progress=False) as eng:
        print(f"explore: {args.unit}, {args.trials} trials, batches of {args.batch}; {eng.where}",
              flush=True)
        ev = Evaluator(args.unit, eng, acc_limit=args.acc_limit, min_fmax=args.min_fmax,
                       synth=not args.no_synth)
        extra = {"sampler": args.sampler}
        # the quality table's own evaluator: its protocol, accuracy only
        qev = Evaluator(args.unit, eng, protocol=qprotocol, acc_limit=args.acc_limit,
                        synth=False) if args.quality else None
        if args.trials == 0:        # --quality alone
            write_quality(quality(eng, qev, seeds=runs), args.out)
            print(f"explore: search quality in {time.perf_counter() - t0:.1f} s; "
                  f"{args.out}/explore_quality.json, explore_quality.md")
            return
        sp = space(args.unit, wide=args.wide_lanes)
        extra["space"] = {k: list(v) for k, v in sp.items()}
        study = search(args.unit, args.trials, eng, batch=args.batch, seed=args.seed,
                       evaluator=ev, storage=args.journal, fresh=args.fresh,
                       sampler=args.sampler, sp=sp)
        if args.quality:
            extra["quality"] = quality(eng, qev, table=table, protocol=table_protocol,
                                       seeds=runs)
            write_quality(extra["quality"], args.out)
        fr = front(records(study))
        if args.verify and fr:
            extra["verified"] = []
            todo = [(r, sim) for r in fr[:args.verify] for sim in ("icarus", "verilator")]
            for out in eng.map(verify_task, todo, args=lambda x: (args.unit, x[0]["config"],
                                                                  x[1], args.seed),
                               label=lambda x: f"verify {x[0]['tag']} {x[1]}"):
                r, sim = out.item
                extra["verified"].append({"tag": r["tag"], "sim": sim, "ok": out.ok,
                                          "error": out.error, **(out.value or {})})
                print(f"  verify {r['tag']} {sim}: {'pass' if out.ok else 'FAILED'}", flush=True)
        doc = write_reports(args.unit, study, ev, time.perf_counter() - t0, args.out, extra)
    print(f"explore: {doc['trials']} trials, {len(doc['front'])} on the front, "
          f"{doc['wall_s'] / 60:.1f} min; {args.out}/explore.json, explore.md, explore.png")
    if any(not v["ok"] for v in extra.get("verified", [])):
        sys.exit("explore: a front point failed its cocotb verification")


if __name__ == "__main__":
    main()
