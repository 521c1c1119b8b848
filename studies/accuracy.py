"""The accuracy protocol of design/tile.md: float, analog + ideal float, analog + FP16 LDPU and
analog + NMPU post-processing of the digits networks, over programming seeds and drift times.

For each network (`golden.network`), compiled once (`golden.compiler.plan`), every programming
seed programs the tiles once (`ProgrammedNetwork`: devices, drift exponents, ADC gains and their
calibration); at every time t the three analog paths read those same tiles (same conductances,
same read noise), so their per-seed differences are paired. Paths:

- `float`: the trained network in float64 (deterministic);
- `analog_float`: tiles + ideal post-processing (exact α, β from the same calibration, one
  rounding to int8 per layer, row tiles summed in float);
- `analog_ldpu`: tiles + the FP16 LDPU golden (`golden.baselines.forward`);
- `analog_nmpu`: tiles + the NMPU golden (`golden.nmpu.forward`).

Per layer it also reports the error of each path against the float reference in output LSB,
two ways: `end_to_end` (the path's int8 activations against the float network's activations
times the output scale: analog and digital errors, accumulated over the layers) and
`same_counts` (on the ADC counts of the NMPU run, each post-processing against the exactly
rounded ideal value: the digital periphery's own error).

    python -m studies.accuracy [--quick] [--seeds N] [--nmpu paper|exp] [--out build/report]
    python -m studies.accuracy --suite mnist --networks mnist_cnn --variants 8hat 4hat \
        --train-seeds 20261129 1 2 3 --curve-seeds 10 --no-fp16 --no-budget
"""

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden import compiler as gc
from golden import network as gnet
from golden import tile as gt
from golden.data import digits
from hdl.config import LDPU_PRESETS, NMPU_PRESETS

__all__ = ["TIMES", "QUICK_TIMES", "MNIST_TIMES", "PATHS", "evaluate", "summarise", "markdown",
           "plots", "main", "Variant", "mnist_variants", "run_variants", "targets",
           "markdown_mnist", "main_mnist", "by_train_seed"]

DAY = 86400.0
YEAR = 365 * DAY
TIMES = (60.0, 3600.0, DAY, 30 * DAY)
QUICK_TIMES = (60.0, DAY)
MNIST_TIMES = (60.0, 3600.0, DAY, 30 * DAY, YEAR)
MNIST_QUICK_TIMES = (60.0, DAY, YEAR)
TIME_LABELS = {60.0: "1 min", 3600.0: "1 h", DAY: "1 day", 30 * DAY: "30 days", YEAR: "1 year"}
PATHS = ("float", "analog_float", "analog_ldpu", "analog_nmpu")
_ANALOG = {"analog_float": "float", "analog_ldpu": "ldpu", "analog_nmpu": "nmpu"}


TIME_NAMES = {"1min": 60.0, "1h": 3600.0, "1d": DAY, "30d": 30 * DAY, "1y": YEAR}


def parse_time(text):
    """A read time of the MNIST curve by name (1min, 1h, 1d, 30d, 1y), for --times."""
    if text not in TIME_NAMES:
        raise argparse.ArgumentTypeError(f"a time must be one of {', '.join(TIME_NAMES)}, not "
                                         f"{text!r}")
    return TIME_NAMES[text]


def _label(t):
    return TIME_LABELS.get(float(t), f"{t:g} s")


def _err_stats(d):
    d = np.asarray(d, dtype=np.float64).ravel()
    return {"rms": float(np.sqrt(np.mean(d * d))) if d.size else 0.0,
            "max_abs": float(np.abs(d).max()) if d.size else 0.0}


def evaluate(net, data, *, seeds, times, nmpu_cfg=None, ldpu_cfg=None, tile_cfg=None,
             bias_mode="split", progress=True, budget=True, adc_gain="calibrated",
             seeds_at=None, label=None, paths=None, wide_cfg=None, drift_comp="tile",
             hop_frac_bits=0, act_clip=None, recal="none", recal_source="codes",
             recal_at=None, workers=1):
    """Raw results of one network: {"plan": ..., "float": acc, "runs": [per seed × t × path]}.

    The plan is calibrated on `data.x_calib` (the MNIST calibration images; the digits' training
    images). `adc_gain`: "calibrated" or "fixed"; `wide_cfg`: the NMPU of the logits and of the
    row-split layers' partial sums; `drift_comp`: "tile" or "column"; `hop_frac_bits`: the
    finer partial sums of hidden row-split layers; `act_clip`: the activation clip (None: the
    99.99th percentile; a percentile or "mse"); `recal`: the per-column recalibration at every
    read time ("none", "twin", "moments") and what its fit reads (`recal_source`: "codes",
    "counts") and when it fits (`recal_at`: None, at every read time; a time, once then)
    (`golden.compiler.plan`).
    `seeds_at`: optional
    {t: seeds} reading only those seeds at t (e.g. 20 seeds at 1 day, 5 on the rest of the
    curve); every seed is programmed once whatever times it reads. `label` names the run in the
    progress lines. `paths`: the analog paths run (default all three; the NMPU path always):
    leaving out "analog_ldpu" (the bit-exact FP16 golden is 80 % of the time) drops the paired
    NMPU − FP16 difference. `workers` > 1: the programming seeds run in that many processes
    (forked; each seed's draws are its own, so the runs are those of one process, in seed order).

    Every run: seed, t, path, accuracy, correct (per test image, for pairing), saturated (ADC
    clamps), layers (end-to-end error per layer), first_counts (digest of the first layer's
    counts: equal across paths of one seed and t when the draws are shared). With `budget`, the
    NMPU run of each seed and t also carries `same_counts` (per layer, each post-processing on
    the NMPU run's counts against the exactly rounded ideal value)."""
    plan = gc.plan(net, getattr(data, "x_calib", data.x_train), tile_cfg=tile_cfg,
                   nmpu_cfg=nmpu_cfg, ldpu_cfg=ldpu_cfg, bias_mode=bias_mode, adc_gain=adc_gain,
                   wide_cfg=wide_cfg, drift_comp=drift_comp, hop_frac_bits=hop_frac_bits,
                   act_clip=act_clip, recal=recal, recal_source=recal_source,
                   recal_at=recal_at)
    label = net.cfg.name if label is None else label
    if seeds_at is not None:
        bad = [t for t in seeds_at if t not in times or not set(seeds_at[t]) <= set(seeds)]
        if bad:
            raise ValueError(f"`seeds_at` names times {bad} outside `times` or seeds outside "
                             f"`seeds`")
    reads = [(s, t) for s in seeds for t in times
             if seeds_at is None or s in seeds_at.get(t, seeds)]
    paths = tuple(_ANALOG) if paths is None else tuple(paths)
    if "analog_nmpu" not in paths or not set(paths) <= set(_ANALOG):
        raise ValueError(f"`paths` must hold 'analog_nmpu' and only {tuple(_ANALOG)}, not {paths}")
    cfg = net.cfg
    ftrace = {}
    flog = gnet.run(cfg, data.x_test, gnet.FloatMatrix(net.params), trace=ftrace)
    correct_f = np.argmax(flog, axis=1) == data.y_test
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer, not {workers!r}")
    jobs = [(seed, [t for s, t in reads if s == seed]) for seed in seeds]
    jobs = [(seed, mine) for seed, mine in jobs if mine]
    ctx = _SeedContext(plan, data, ftrace, paths, budget, progress, label, len(reads))
    # each seed's progress count starts after the reads of the seeds before it
    starts = [int(d) for d in np.cumsum([0] + [len(m) for _, m in jobs])[:-1]]
    if workers == 1 or len(jobs) < 2:
        parts = [ctx.runs(seed, mine, done) for (seed, mine), done in zip(jobs, starts)]
    else:
        import concurrent.futures
        import multiprocessing
        global _CONTEXT
        _CONTEXT = ctx      # inherited by the forked workers, not pickled
        try:
            with concurrent.futures.ProcessPoolExecutor(
                    min(workers, len(jobs)), mp_context=multiprocessing.get_context("fork")) as ex:
                parts = list(ex.map(_seed_job, jobs, starts))
        finally:
            _CONTEXT = None
    runs = [run for part in parts for run in part]
    if progress:
        print(f"  {label}: {len(reads)} seed × time points in {time.time() - ctx.t_start:.0f} s",
              file=sys.stderr, flush=True)
    return {"network": cfg.name, "plan": plan, "float": float(correct_f.mean()),
            "float_correct": correct_f, "runs": runs, "seeds": list(seeds), "times": list(times),
            "test_images": int(data.y_test.size)}


_CONTEXT = None     # the `_SeedContext` the forked workers of `evaluate` inherit


def _seed_job(job, done):
    seed, mine = job
    return _CONTEXT.runs(seed, mine, done)


class _SeedContext:
    """What every programming seed of one `evaluate` call reads: the plan, the test images, the
    float network's tensors; `runs` programs one seed and reads it at its times on every path."""

    def __init__(self, plan, data, ftrace, paths, budget, progress, label, total):
        self.plan, self.data, self.ftrace, self.paths = plan, data, ftrace, paths
        self.budget, self.progress, self.label, self.total = budget, progress, label, total
        self.xin = gc.encode_input(plan, data.x_test)
        self.t_start = time.time()

    def runs(self, seed, mine, done):
        plan, data, cfg = self.plan, self.data, self.plan.net.cfg
        first = cfg.matrix_ops[0].name
        out = []
        prog = gc.ProgrammedNetwork(plan, seed)
        for t in mine:
            done += 1
            if self.progress:
                print(f"  {self.label}: seed {seed}, t = {_label(t):>8}  [{done}/{self.total}]  "
                      f"{time.time() - self.t_start:.0f} s", file=sys.stderr, flush=True)
            for path, kind in _ANALOG.items():
                if path not in self.paths:
                    continue
                record = {} if (self.budget and kind == "nmpu") else None
                m = prog.matrix(kind, t, record)
                trace = {}
                logits = gnet.run(cfg, self.xin, m, trace=trace)
                correct = np.argmax(logits, axis=1) == data.y_test
                layers = {}
                for op in cfg.matrix_ops:
                    ref = self.ftrace[op.dst] * plan.layers[op.name].s_out
                    layers[op.name] = _err_stats(trace[op.dst] - ref)
                run = {"seed": int(seed), "t": float(t), "path": path,
                       "accuracy": float(correct.mean()), "correct": correct,
                       "saturated": int(m.saturated), "layers": layers,
                       "first_counts": m.digests[first]}
                if record is not None:
                    same = {}
                    for name, entries in record.items():
                        e = entries[0]
                        ideal = e["float"]
                        same[name] = {"ldpu": _err_stats(e["ldpu"] - ideal),
                                      "nmpu": _err_stats(e["nmpu"] - ideal),
                                      "nmpu_minus_ldpu": _err_stats(e["nmpu"] - e["ldpu"])}
                    run["same_counts"] = same
                out.append(run)
        return out


def _mean_std(v):
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarise(result):
    """Rows (one per time × path) of one network's raw result."""
    rows = []
    runs = result["runs"]
    for t in result["times"]:
        at = [r for r in runs if r["t"] == t]
        present = [p for p in _ANALOG if any(r["path"] == p for r in runs)]
        by = {p: sorted([r for r in at if r["path"] == p], key=lambda r: r["seed"])
              for p in present}
        seeds = [r["seed"] for r in by["analog_nmpu"]]
        rows.append({"network": result["network"], "t": float(t), "time": _label(t),
                     "path": "float", "mean": 100 * result["float"], "std": 0.0,
                     "seeds": len(seeds), "values": [100 * result["float"]] * len(seeds)})
        for p in present:
            vals = [100 * r["accuracy"] for r in by[p]]
            if [r["seed"] for r in by[p]] != seeds:
                raise AssertionError("paths were not run on the same seeds")
            m, s = _mean_std(vals)
            row = {"network": result["network"], "t": float(t), "time": _label(t), "path": p,
                   "mean": m, "std": s, "seeds": len(vals), "values": vals,
                   "adc_saturated_mean": float(np.mean([r["saturated"] for r in by[p]]))}
            if p == "analog_nmpu" and "analog_ldpu" in by:
                pairs = list(zip(by["analog_nmpu"], by["analog_ldpu"]))
                for a, b in pairs:  # pairing: the same seed read the same counts
                    if a["seed"] != b["seed"] or a["first_counts"] != b["first_counts"]:
                        raise AssertionError(f"seed {a['seed']} at t = {t}: NMPU and LDPU runs did "
                                             f"not read the same tiles")
                d = [100 * (a["accuracy"] - b["accuracy"]) for a, b in pairs]
                dm, ds = _mean_std(d)
                row["paired_nmpu_minus_ldpu"] = {
                    "mean": dm, "se": ds / np.sqrt(len(d)) if len(d) > 1 else 0.0,
                    "values": d,
                    "images_differ": float(np.mean([np.sum(a["correct"] != b["correct"])
                                                    for a, b in pairs]))}
            rows.append(row)
    return rows


def layer_table(result, t=None):
    """Per layer × path: end-to-end error (mean over seeds and times of RMS, worst max) and,
    for LDPU and NMPU, the same-counts error, in output LSB; `t`: at that time only."""
    out = []
    runs = [r for r in result["runs"] if t is None or r["t"] == t]
    names = [op.name for op in result["plan"].net.cfg.matrix_ops]
    for name in names:
        for p in _ANALOG:
            rr = [r for r in runs if r["path"] == p]
            if not rr:
                continue
            e2e = [r["layers"][name] for r in rr]
            row = {"network": result["network"], "layer": name, "path": p,
                   "end_to_end_rms": float(np.mean([e["rms"] for e in e2e])),
                   "end_to_end_max": float(np.max([e["max_abs"] for e in e2e]))}
            kind = _ANALOG[p]
            same = [r["same_counts"][name] for r in runs
                    if r["path"] == "analog_nmpu" and "same_counts" in r]
            if same and kind in ("ldpu", "nmpu"):
                row["same_counts_rms"] = float(np.mean([s[kind]["rms"] for s in same]))
                row["same_counts_max"] = float(np.max([s[kind]["max_abs"] for s in same]))
            out.append(row)
    return out


def _plan_summary(plan):
    out = {}
    for name, lp in plan.layers.items():
        out[name] = {"rows": int(lp.weights.shape[0]), "cols": int(lp.weights.shape[1]),
                     "bias_rows": int(lp.bias_rows), "row_tiles": lp.split.row_tiles,
                     "col_tiles": lp.split.col_tiles, "s_in": lp.s_in, "s_out": lp.s_out,
                     "lsb": lp.lsb, "alpha_min": float(lp.alpha.min()),
                     "alpha_max": float(lp.alpha.max()),
                     "flipped_columns": int(np.sum(lp.polarity < 0)),
                     "beta_digital_max": float(np.abs(lp.beta_digital).max()),
                     "out_bits": lp.out_bits, "nmpu": plan.nmpu_of(name).tag}
    return out


def _register_report(result):
    """Per layer: the NMPU shift and the largest relative scale-code errors at each time (first
    seed), the LDPU's largest relative scale error."""
    plan = result["plan"]
    prog = gc.ProgrammedNetwork(plan, result["seeds"][0])
    out = {}
    for t in result["times"]:
        imgs = prog.compile(t)
        for (name, r, k), img in imgs.items():
            c = img.alpha.size
            out.setdefault(name, {})[_label(t) + f" tile {r},{k}"] = {
                "nmpu_shift": int(img.nmpu.shift),
                "nmpu_rel_scale_err_max": float(np.abs(img.nmpu.rel_scale_err_p[:c]).max()),
                "nmpu_offset_err_max": float(np.abs(img.nmpu.offset_err[:c]).max()),
                "ldpu_rel_scale_err_max": float(np.abs(img.ldpu.rel_scale_err_p[:c]).max()),
                "drift_factor": img.drift_factor}
    return out


def markdown(doc):
    L = ["# Accuracy of the analog tile with FP16 (LDPU) and fixed-point (NMPU) post-processing", "",
         f"NMPU preset `{doc['nmpu']}`, LDPU preset `{doc['ldpu']}`, bias mode `{doc['bias_mode']}`, "
         f"recalibration `{doc.get('recal', 'none')}`; "
         f"{doc['test_images']} test images (one image = {100 / doc['test_images']:.3f} points); "
         f"seeds {doc['seeds']}; wall time {doc['wall_seconds']:.0f} s.", "",
         "Accuracy in %, mean ± std over programming seeds; paired NMPU − FP16 difference (points) "
         "with its standard error, on the same device draws.", "",
         "| network | t | float | analog + float | analog + FP16 LDPU | analog + NMPU | NMPU − FP16 (± SE) |",
         "|---|---|---:|---:|---:|---:|---:|"]
    rows = doc["rows"]
    for net in doc["networks"]:
        for t in doc["times"]:
            r = {x["path"]: x for x in rows if x["network"] == net and x["t"] == t}
            pd = r["analog_nmpu"]["paired_nmpu_minus_ldpu"]
            L.append(f"| {net} | {_label(t)} | {r['float']['mean']:.2f} | "
                     + " | ".join(f"{r[p]['mean']:.2f} ± {r[p]['std']:.2f}" for p in _ANALOG)
                     + f" | {pd['mean']:+.3f} ± {pd['se']:.3f} |")
    L += ["", "## Per-layer error against the float reference (output LSB)", "",
          "`end to end`: the path's int8 activations against the float network's (all seeds and "
          "times; analog and digital errors, accumulated). `same counts`: on the ADC counts of "
          "the NMPU run, the post-processing against the exactly rounded ideal value (the "
          "periphery's own error).", "",
          "| network | layer | path | end-to-end RMS | end-to-end max | same-counts RMS | same-counts max |",
          "|---|---|---|---:|---:|---:|---:|"]
    for r in doc["layers"]:
        sc = (f"{r['same_counts_rms']:.4f} | {r['same_counts_max']:.0f}"
              if "same_counts_rms" in r else "– | –")
        L.append(f"| {r['network']} | {r['layer']} | {r['path']} | {r['end_to_end_rms']:.3f} | "
                 f"{r['end_to_end_max']:.0f} | {sc} |")
    L += ["", "## Compiled layers", "",
          "| network | layer | rows (bias rows) × cols | tiles | ADC LSB (µS·steps) | α range (LSB/count) | flipped columns |",
          "|---|---|---|---:|---:|---|---:|"]
    for net, layers in doc["plans"].items():
        for name, p in layers.items():
            L.append(f"| {net} | {name} | {p['rows']} ({p['bias_rows']}) × {p['cols']} | "
                     f"{p['row_tiles']} × {p['col_tiles']} | {p['lsb']:.2f} | "
                     f"{p['alpha_min']:.4f} … {p['alpha_max']:.4f} | {p['flipped_columns']} |")
    return "\n".join(L) + "\n"


def plots(doc, out, stem="accuracy"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = doc["networks"]
    fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for p, marker in zip(PATHS, "os^v"):
            rr = [r for r in doc["rows"] if r["network"] == net and r["path"] == p]
            rr.sort(key=lambda r: r["t"])
            ax.errorbar([r["t"] for r in rr], [r["mean"] for r in rr],
                        yerr=[r["std"] for r in rr], marker=marker, capsize=3, label=p)
        ax.set_xscale("log")
        ax.set_xticks(doc["times"], [_label(t) for t in doc["times"]])
        ax.minorticks_off()
        ax.set_xlabel("time after programming")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(net)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{stem}_vs_time.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 5), squeeze=False)
    for ax, net in zip(axes[0], nets):
        layers = [r for r in doc["layers"] if r["network"] == net]
        names = list(dict.fromkeys(r["layer"] for r in layers))
        x = np.arange(len(names))
        bars = [("analog_float", "end_to_end_rms", "analog+float (end to end)"),
                ("analog_ldpu", "end_to_end_rms", "analog+LDPU (end to end)"),
                ("analog_nmpu", "end_to_end_rms", "analog+NMPU (end to end)"),
                ("analog_ldpu", "same_counts_rms", "LDPU (same counts)"),
                ("analog_nmpu", "same_counts_rms", "NMPU (same counts)")]
        w = 0.8 / len(bars)
        for i, (p, key, label) in enumerate(bars):
            v = [next(r.get(key, 0.0) for r in layers if r["layer"] == n and r["path"] == p)
                 for n in names]
            ax.bar(x + (i - len(bars) / 2 + 0.5) * w, v, w, label=label)
        ax.set_xticks(x, names)
        ax.set_ylabel("RMS error (output LSB)")
        ax.set_title(f"{net}: per-layer error against float")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / f"{stem}_layers.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2 times (for make's report)")
    ap.add_argument("--seeds", type=int, default=None, help="programming seeds (default 20; quick 2)")
    ap.add_argument("--nmpu", default="paper", choices=sorted(NMPU_PRESETS))
    ap.add_argument("--ldpu", default="paper", choices=sorted(LDPU_PRESETS))
    ap.add_argument("--bias", default="split", choices=("split", "digital"))
    ap.add_argument("--networks", nargs="+", default=None, choices=list(gnet.NETWORKS),
                    help="default: the suite's networks")
    ap.add_argument("--suite", default="digits", choices=("digits", "mnist"),
                    help="digits: the quick study of `make`; mnist: the MNIST CNN and MLP at 8- "
                         "and 4-bit activations, with and without hardware-aware training, drift "
                         "to 1 year, NMPU presets side by side (`make accuracy`)")
    ap.add_argument("--nmpu-presets", nargs="+", default=None, choices=sorted(NMPU_PRESETS),
                    help="mnist: the NMPU presets compared (default paper and, when it exists, "
                         "precision)")
    ap.add_argument("--curve-seeds", type=int, default=None,
                    help="mnist: seeds of every point but the main one (default 5; quick 2)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANT_KINDS), choices=VARIANT_KINDS,
                    help="mnist: which variants run (8 = the 8-bit float-trained curve, hat = "
                         "hardware-aware training, 4 = 4-bit activations, fixed = fixed ADC gain, "
                         "presets = further NMPU presets)")
    ap.add_argument("--no-budget", action="store_true",
                    help="mnist: skip the same-counts error budget (halves the time)")
    ap.add_argument("--fp16-main-only", action="store_true",
                    help="mnist: the FP16 LDPU path only in the main variant (the bit-exact FP16 "
                         "golden is 80 %% of the time); the others run float and NMPU")
    ap.add_argument("--no-fp16", action="store_true",
                    help="mnist: no FP16 LDPU path at all (drift and 4-bit studies; no NMPU − FP16)")
    ap.add_argument("--drift-comp", default="tile", choices=("tile", "column"),
                    help="mnist: drift compensation, one factor per tile (the chip's global "
                         "compensation) or per column (a diagnosis)")
    ap.add_argument("--times", nargs="+", type=parse_time, default=None,
                    help="mnist: read only at these times (of 1min 1h 1d 30d 1y; each variant "
                         "keeps those of its own times; a variant left with none is dropped)")
    ap.add_argument("--recal", default=None, choices=gc.RECAL_MODES,
                    help="per-column recalibration of the NMPU's α and β at every read time "
                         "from unlabelled calibration images (golden.compiler.plan): none (the "
                         "global drift compensation alone), twin (least squares against the "
                         "float layer on the same codes) or moments (adaptive batch-norm "
                         f"statistics); default {RECAL_MNIST} for mnist, none for digits")
    ap.add_argument("--recal-source", default="codes", choices=gc.RECAL_SOURCES,
                    help="what the recalibration fits: the NMPU's own output codes with "
                         "ReLU and residual off (codes, the chip as it is) or the values from "
                         "the ADC counts (counts: needs a raw count read-out)")
    ap.add_argument("--recal-at", type=float, default=None, metavar="SECONDS",
                    help="fit the recalibration once, at this time after programming, "
                         "and apply it at every read time (default: fit at every read time)")
    ap.add_argument("--hat-noise", type=float, default=HAT_NOISE,
                    help="mnist: `hw_noise` of the hardware-aware networks (1: the tile's device "
                         "spread at 1 day; 1.4: about that at 1 year)")
    ap.add_argument("--hat-distill-from", default="", metavar="TEACHER",
                    help="mnist: the hardware-aware networks are distilled from this network "
                         f"(its own preset; T {DISTILL_TEMP:g}, weight {DISTILL_WEIGHT:g}); default "
                         "'': each network's preset (the MNIST MLP's distils from mnist_cnn)")
    ap.add_argument("--hop-frac-bits", type=int, default=0,
                    help="mnist: 4-bit wide variants: the partial sums of hidden row-split layers "
                         "that many bits finer than the activation LSB (0..4; requantised at the "
                         "last tile)")
    ap.add_argument("--act-clip", type=gnet.parse_act_clip, default=ACT_CLIP_4,
                    help="mnist: the activation clip of the 4-bit variants, in the compiler and "
                         "in hardware-aware training: a percentile of |a|, 'mse' or 'none' (the "
                         "99.99th percentile of every tensor); default "
                         f"{'none' if ACT_CLIP_4 is None else ACT_CLIP_4}. The 8-bit variants "
                         "keep the 99.99th percentile")
    ap.add_argument("--main", default="8", choices=("8", "8hat"),
                    help="mnist: the CNN variant read with --seeds at 1 day (8: float-trained; "
                         "8hat: hardware-aware)")
    ap.add_argument("--train-seeds", nargs="+", type=gnet.parse_seed, default=None,
                    metavar="SEED",
                    help="mnist: run the variants once per training seed (each network trained "
                         f"with that `TrainConfig.seed`; {gnet.TRAIN.seed} is the default, cached "
                         "one) and report 4-bit HAT − 8-bit HAT at 1 day per training seed and "
                         "pooled, paired by training seed")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes over the programming seeds (each seed's results are those "
                         "of one process; `make accuracy` passes JOBS)")
    ap.add_argument("--out", type=Path, default=Path("build/report"))
    args = ap.parse_args(argv)
    if args.train_seeds is not None:
        if args.suite != "mnist":
            ap.error("--train-seeds needs --suite mnist")
        twice = sorted({s for s in args.train_seeds if args.train_seeds.count(s) > 1})
        if twice:
            ap.error(f"--train-seeds: seed {twice[0]} given twice (each training seed once)")
    n_seeds = args.seeds if args.seeds is not None else (2 if args.quick else 20)
    if n_seeds < 1:
        ap.error(f"--seeds must be at least 1, not {n_seeds}")
    if args.workers < 1:
        ap.error(f"--workers must be at least 1, not {args.workers}")
    if args.recal is None:
        args.recal = RECAL_MNIST if args.suite == "mnist" else "none"
    if args.recal_at is not None and args.recal == "none":
        ap.error(f"--recal-at {args.recal_at:g} needs --recal twin or moments")
    if args.suite == "mnist":
        return main_mnist(args, n_seeds, ap)
    if args.networks is None:
        args.networks = [n for n in gnet.NETWORKS if gnet.DATASET.get(n, "digits") == "digits"]
    times = QUICK_TIMES if args.quick else TIMES
    t0 = time.time()
    data = digits()
    results = []
    for name in args.networks:
        net = gnet.load_or_train(name)
        results.append(evaluate(net, data, seeds=list(range(n_seeds)), times=times,
                                nmpu_cfg=NMPU_PRESETS[args.nmpu], ldpu_cfg=LDPU_PRESETS[args.ldpu],
                                bias_mode=args.bias, workers=args.workers, recal=args.recal,
                                recal_source=args.recal_source, recal_at=args.recal_at))
    doc = {"nmpu": args.nmpu, "ldpu": args.ldpu, "bias_mode": args.bias, "recal": args.recal,
           "quick": args.quick,
           "networks": args.networks, "times": list(times), "seeds": list(range(n_seeds)),
           "test_images": results[0]["test_images"],
           "tile": results[0]["plan"].tile_cfg.to_dict(),
           "rows": [r for res in results for r in summarise(res)],
           "layers": [r for res in results for r in layer_table(res)],
           "plans": {res["network"]: _plan_summary(res["plan"]) for res in results},
           "registers": {res["network"]: _register_report(res) for res in results},
           "networks_info": {res["network"]: res["plan"].net.info for res in results}}
    doc["wall_seconds"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "accuracy_quick" if args.quick else "accuracy"
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    (args.out / f"{stem}.md").write_text(text)
    plots(doc, args.out, stem)
    print(text)


# -- the MNIST study (make accuracy) ---------------------------------------------------------------

TARGET_SEEDS = 20           # the main target is stated over 20 programming seeds
HAT_NOISE = 1.0             # hardware-aware training: the tile's device spread at 1 day, × 1
ACT_CLIP_4 = 99.5           # the 4-bit variants' activation clip (docs/accuracy.md: 99.5 vs 99.99)
DISTILL_TEMP, DISTILL_WEIGHT = 4.0, 0.9   # --hat-distill-from: the MNIST MLP preset's setting
RECAL_MNIST = "moments"     # the MNIST study's recalibration (docs/accuracy.md: drift, main target)


@dataclass(frozen=True)
class Variant:
    """One row group of the MNIST study: a network, its activation width (8: int8 codes; 4: PWM
    inputs of 4 bits and NMPU `out_bits` 4), whether it was trained hardware-aware (noise of the
    tile model, ADC quantisation and, at 4 bits, 4-bit activations during training), the NMPU
    preset, the ADC gain handling, the times it is read at and, below 8 bits, whether the logits
    and the row-split layers' partial sums take the wide (8-bit) NMPU (`wide`) or stay at the
    activation width (the narrow chain), and the activation clip (`act_clip`: None, the 99.99th
    percentile; a percentile or "mse"), the same in the compiler and, for a hardware-aware
    network with activations below 8 bits, in its training quantiser. `train_seed`: the
    network's training seed (`TrainConfig.seed`; None: the network's default, the cached one).
    `hat_distill`: a hardware-aware network is distilled from this teacher (`TrainConfig.
    distill_from` at T = `DISTILL_TEMP`, w = `DISTILL_WEIGHT`; '' keeps the network's preset,
    which for the MNIST MLP already distils from the CNN)."""

    network: str
    act_bits: int
    hat: bool
    nmpu: str
    times: tuple
    adc_gain: str = "calibrated"
    main: bool = False
    wide: bool = True
    hat_noise: float = HAT_NOISE
    hop_frac_bits: int = 0
    act_clip: object = None
    train_seed: int = None
    hat_distill: str = ""

    @property
    def label(self):
        hat = ("HAT" + ("" if self.hat_noise == HAT_NOISE else f" x{self.hat_noise:g}")
               + (f" distilled from {self.hat_distill}" if self.hat_distill else ""))
        return (f"{self.network} {self.act_bits}-bit {hat if self.hat else 'float-trained'} "
                + ("" if self.train_seed is None else f"train seed {self.train_seed} ")
                + ("" if self.act_clip is None else f"clip {self.act_clip} ")
                + f"NMPU {self.nmpu}" + ("" if self.adc_gain == "calibrated" else " fixed-gain")
                + ("" if self.wide or self.act_bits == 8 else " narrow chain")
                + (f" fine hops {self.hop_frac_bits}" if self.hop_frac_bits else ""))

    def train_config(self):
        changes = {}
        if self.hat:
            changes["hw_noise"] = self.hat_noise
            if self.act_bits < 8:
                changes["act_bits"] = self.act_bits
                if self.act_clip is not None:
                    changes["act_clip"] = self.act_clip
            if self.hat_distill:
                changes.update(distill_from=self.hat_distill, distill_temp=DISTILL_TEMP,
                               distill_weight=DISTILL_WEIGHT)
        elif self.hat_distill:
            raise ValueError(f"`hat_distill` ({self.hat_distill!r}) applies to hardware-aware "
                             f"variants only; {self.network} {self.act_bits}-bit is float-trained")
        if self.train_seed is not None:
            changes["seed"] = self.train_seed
        return gnet.train_config(self.network, **changes)

    def nmpu_cfg(self):
        """The NMPU preset, with `out_bits` set to the activation width where it differs."""
        base = NMPU_PRESETS[self.nmpu]
        if base.out_bits == self.act_bits:
            return base
        return dataclasses.replace(base, name=f"{self.nmpu}-out{self.act_bits}",
                                   out_bits=self.act_bits)

    def wide_cfg(self):
        """The NMPU of the logits and partial sums: the preset at 8 output bits (None: the
        activation NMPU everywhere, for 8-bit activations or the narrow chain)."""
        if self.act_bits == 8 or not self.wide:
            return None
        base = NMPU_PRESETS[self.nmpu]
        if base.out_bits == 8:
            return base
        return dataclasses.replace(base, name=f"{self.nmpu}-out8", out_bits=8)

    def tile_cfg(self):
        return gt.TileConfig(name=f"pcm{self.act_bits}", input_bits=self.act_bits,
                             adc_bits=self.nmpu_cfg().adc_bits)

    def ldpu_cfg(self):
        return dataclasses.replace(LDPU_PRESETS["paper"], adc_bits=self.nmpu_cfg().adc_bits)


VARIANT_KINDS = ("8", "8hat", "4", "4hat", "4hat-fixed", "4hat-narrow", "presets")


def mnist_variants(networks, nmpu_presets, *, quick=False, kinds=VARIANT_KINDS, main_kind="8",
                   hat_noise=HAT_NOISE, hop_frac_bits=0, act_clip=ACT_CLIP_4, train_seed=None,
                   hat_distill=""):
    """The study's variants. Per network: 8-bit float-trained on the whole drift curve (the CNN's
    is the main one: the 20-seed point at 1 day; `main_kind` "8hat" makes the hardware-aware
    8-bit CNN the main one instead), 8-bit and 4-bit hardware-aware and 4-bit float-trained at
    1 min / 1 day / 1 year, 4-bit hardware-aware with a fixed ADC gain and with the narrow chain
    (logits and partial sums at 4 bits) at 1 day, and every further NMPU preset on the whole
    curve. `quick`: 1 min / 1 day / 1 year only. `hat_noise`: the hardware-aware networks'
    `hw_noise` (1: the device spread at 1 day; about 1.4: at 1 year); `hop_frac_bits`: the
    4-bit wide variants' finer partial sums of hidden row-split layers; `act_clip`: the clip of
    every 4-bit variant (compiler and hardware-aware training; the 8-bit ones keep the
    99.99th percentile); `train_seed`: every variant's training seed (None: the default);
    `hat_distill`: the hardware-aware networks' teacher ('' for their preset's)."""
    if main_kind not in ("8", "8hat"):
        raise ValueError(f"`main_kind` must be '8' or '8hat', not {main_kind!r}")
    curve = MNIST_QUICK_TIMES if quick else MNIST_TIMES
    short = MNIST_QUICK_TIMES
    first, *others = nmpu_presets
    out = []
    for name in networks:
        cnn = name == "mnist_cnn"
        hat = functools.partial(Variant, hat_noise=hat_noise, hat_distill=hat_distill)
        mine = [("8", Variant(name, 8, False, first, curve, main=cnn and main_kind == "8")),
                ("8hat", hat(name, 8, True, first, short, main=cnn and main_kind == "8hat")),
                ("4", Variant(name, 4, False, first, short)),
                ("4hat", hat(name, 4, True, first, short)),
                ("4hat-fixed", hat(name, 4, True, first, (DAY,), adc_gain="fixed")),
                ("4hat-narrow", hat(name, 4, True, first, (DAY,), wide=False))]
        mine += [("presets", Variant(name, 8, False, p, curve)) for p in others]
        mine = [(kind, dataclasses.replace(v, act_clip=act_clip) if v.act_bits < 8 else v)
                for kind, v in mine]
        mine = [(kind, dataclasses.replace(v, train_seed=train_seed)) for kind, v in mine]
        out += [dataclasses.replace(v, hop_frac_bits=hop_frac_bits)
                if v.act_bits < 8 and v.wide else v for kind, v in mine if kind in kinds]
    return out


def run_variants(variants, data, *, seeds, curve_seeds, progress=True, budget=True,
                 fp16_main_only=False, fp16=True, drift_comp="tile", recal="none",
                 recal_source="codes", recal_at=None, workers=1):
    """evaluate() of every variant: the main variant reads `seeds` at 1 day and `curve_seeds`
    elsewhere, the others `curve_seeds` everywhere; `fp16_main_only`: the FP16 LDPU path in the
    main variant only; `fp16` False: in none; `drift_comp`, `recal`, `recal_source` and
    `recal_at` for every variant, the seeds in `workers` processes (`evaluate`).
    Returns [(variant, result)]."""
    out = []
    for v in variants:
        net = gnet.load_or_train(v.network, v.train_config(), data=data, progress=progress)
        all_seeds = list(range(max(seeds, curve_seeds) if v.main else curve_seeds))
        seeds_at = {t: list(range(seeds if (v.main and t == DAY) else curve_seeds))
                    for t in v.times}
        with_fp16 = fp16 and (v.main or not fp16_main_only)
        res = evaluate(net, data, seeds=all_seeds, times=list(v.times), nmpu_cfg=v.nmpu_cfg(),
                       ldpu_cfg=v.ldpu_cfg(), tile_cfg=v.tile_cfg(), adc_gain=v.adc_gain,
                       wide_cfg=v.wide_cfg(), drift_comp=drift_comp, recal=recal,
                       recal_source=recal_source, recal_at=recal_at, workers=workers,
                       hop_frac_bits=v.hop_frac_bits, act_clip=v.act_clip, seeds_at=seeds_at,
                       label=v.label,
                       progress=progress, budget=budget and (v.main or v.act_bits < 8),
                       paths=None if with_fp16 else ("analog_float", "analog_nmpu"))
        out.append((v, res))
    return out


def _by_seed(result, path, t):
    return {r["seed"]: 100 * r["accuracy"] for r in result["runs"]
            if r["path"] == path and r["t"] == t}


def _paired(a, b):
    """Mean and standard error of the per-seed differences a − b over the seeds both hold."""
    common = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in common])
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return {"mean": float(d.mean()), "se": se, "seeds": len(common)}


def _unpaired(a, b):
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    se = float(np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)) \
        if min(x.size, y.size) > 1 else float("nan")
    return {"mean": float(x.mean() - y.mean()), "se": se, "seeds": [int(x.size), int(y.size)]}


def _find(results):
    return {(v.network, v.train_seed, v.act_bits, v.hat, v.nmpu, v.adc_gain, v.wide): (v, r)
            for v, r in results}


def by_train_seed(results):
    """4-bit HAT − 8-bit HAT at 1 day (the first preset's wide, calibrated variants) per network
    and training seed, and pooled over the training seeds. Per training seed: both networks'
    float accuracy, the NMPU (and ideal post-processing) accuracy at 1 day, and 4 − 8 paired by
    device seed (the same seed numbers; other weights, so not the same conductances) and
    unpaired. Pooled: the mean of the per-training-seed paired differences ± its SE over the
    training seeds (the training draw is the larger part of the spread), with the ±2 SE interval
    and whether the 1-point target holds on the mean and on the whole interval. Only variants
    with an explicit `train_seed` (`--train-seeds`) enter."""
    find = _find(results)
    first = results[0][0].nmpu if results else None
    out = []
    for name in sorted(dict.fromkeys(v.network for v, _ in results)):
        rows = []
        for ts in dict.fromkeys(v.train_seed for v, _ in results if v.network == name):
            a = find.get((name, ts, 4, True, first, "calibrated", True))
            b = find.get((name, ts, 8, True, first, "calibrated", True))
            if ts is None or not (a and b and DAY in a[0].times and DAY in b[0].times):
                continue
            acc = {bits: {p: _by_seed(r, p, DAY) for p in ("analog_float", "analog_nmpu")}
                   for bits, (_, r) in ((4, a), (8, b))}
            rows.append({
                "train_seed": ts, "float_8": 100 * b[1]["float"], "float_4": 100 * a[1]["float"],
                "nmpu_8": float(np.mean(list(acc[8]["analog_nmpu"].values()))),
                "nmpu_4": float(np.mean(list(acc[4]["analog_nmpu"].values()))),
                "paired": _paired(acc[4]["analog_nmpu"], acc[8]["analog_nmpu"]),
                "unpaired": _unpaired(acc[4]["analog_nmpu"], acc[8]["analog_nmpu"]),
                "paired_ideal": _paired(acc[4]["analog_float"], acc[8]["analog_float"])})
        if not rows:
            continue
        d = np.array([x["paired"]["mean"] for x in rows])
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
        mean = float(d.mean())
        out.append({"network": name, "rows": rows, "pooled": {
            "mean": mean, "se": se, "train_seeds": int(d.size),
            "device_pairs": int(sum(x["paired"]["seeds"] for x in rows)),
            "lo": mean - 2 * se, "hi": mean + 2 * se, "min": float(d.min()), "max": float(d.max()),
            "met": bool(mean >= -1.0), "met_2se": bool(np.isfinite(se) and mean - 2 * se >= -1.0)}})
    return out


def targets(results, test_images):
    """The issue's three targets, each with its figure and whether it is met (per training seed
    where `--train-seeds` gave several; the 4-bit one also pooled over them, `by_train_seed`)."""
    find = _find(results)
    out = []
    image = 100.0 / test_images
    for v, r in [(v, r) for v, r in results if v.main]:
        if not _by_seed(r, "analog_ldpu", DAY):
            continue
        d = _paired(_by_seed(r, "analog_nmpu", DAY), _by_seed(r, "analog_ldpu", DAY))
        ok = (abs(d["mean"]) <= 0.12 and abs(d["mean"]) + 2 * d["se"] <= 0.2 and image <= 0.1
              and d["seeds"] >= TARGET_SEEDS)
        out.append({"target": f"MNIST CNN, {TARGET_SEEDS} seeds, t = 1 day: NMPU − FP16 within "
                              f"±0.12 points, ±2 SE inside ±0.2, one image ≤ 0.1 points",
                    "variant": v.label, **d, "image_points": image, "met": bool(ok)})
    first = results[0][0].nmpu if results else None
    for v, r in results:  # drift: the same devices at 1 year and at 1 min, paired per seed
        if v.act_bits == 8 and v.adc_gain == "calibrated" and YEAR in v.times and 60.0 in v.times:
            lo = _paired(_by_seed(r, "analog_nmpu", YEAR), _by_seed(r, "analog_nmpu", 60.0))
            out.append({"target": "drift: accuracy at 1 year within 1 point of 1 minute (NMPU, "
                                  f"drift compensation per {r['plan'].drift_comp}"
                                  + ("" if r["plan"].recal == "none"
                                     else f", recalibration {r['plan'].recal}") + ")",
                        "variant": v.label, **lo,
                        "met": bool(abs(lo["mean"]) <= 1.0)})
    keys = sorted(dict.fromkeys((v.network, v.train_seed) for v, _ in results), key=lambda k: k[0])
    for name, ts in keys:
        a = find.get((name, ts, 4, True, first, "calibrated", True))
        b = find.get((name, ts, 8, True, first, "calibrated", True))
        if a and b:
            d = _unpaired(_by_seed(a[1], "analog_nmpu", DAY), _by_seed(b[1], "analog_nmpu", DAY))
            out.append({"target": f"{name}: 4-bit within 1.0 point of 8-bit at 1 day, both "
                                  f"hardware-aware (NMPU)", "variant": f"{a[0].label} − {b[0].label}",
                        **d, "met": bool(d["mean"] >= -1.0)})
        n = find.get((name, ts, 4, True, first, "calibrated", False))
        if a and n:  # the same network and seeds: the wide path's gain, paired
            d = _paired(_by_seed(a[1], "analog_nmpu", DAY), _by_seed(n[1], "analog_nmpu", DAY))
            out.append({"target": f"{name}: (no target) the wide logits and partial sums against "
                                  f"the narrow chain, 4-bit HAT at 1 day, paired (NMPU)",
                        "variant": f"{a[0].label} − {n[0].label}", **d,
                        "met": bool(d["mean"] >= 0)})
    for g in by_train_seed(results):
        p = g["pooled"]
        out.append({"target": f"{g['network']}: 4-bit within 1.0 point of 8-bit at 1 day, both "
                              f"hardware-aware (NMPU), paired by training seed: mean over "
                              f"{p['train_seeds']} training seeds ± SE over them",
                    "variant": "training seeds " + " ".join(str(x["train_seed"])
                                                            for x in g["rows"]),
                    "mean": p["mean"], "se": p["se"], "seeds": p["train_seeds"],
                    "met": p["met"]})
    return out


def markdown_mnist(doc):
    n = doc["test_images"]
    L = ["# MNIST accuracy of the analog tile: 8- and 4-bit activations, hardware-aware training, "
         "drift to 1 year", "",
         f"{n} test images (one image = {100 / n:.3f} points), 500 calibration images, 3500 "
         f"training images (golden.data.mnist). Seeds: {doc['seeds']} at the main point (CNN, "
         f"8-bit, 1 day), {doc['curve_seeds']} elsewhere. Drift compensation per "
         f"{doc.get('drift_comp', 'tile')}; per-column recalibration: "
         f"{doc.get('recal', 'none')}"
         + ("" if doc.get("recal", "none") == "none" else
            f" (fit on the {doc['recal_source']}, "
            + ("at every read time" if doc.get("recal_at") is None
               else f"once, at t = {doc['recal_at']:g} s") + ")")
         + f". Wall time {doc['wall_seconds']:.0f} s "
         f"(load average {doc['load']}).", "",
         "## Targets", "", "| target | variant | seeds | figure (points) | met |",
         "|---|---|---|---:|---|"]
    for t in doc["targets"]:
        se = f" ± {t['se']:.3f} SE" if np.isfinite(t["se"]) else ""
        L.append(f"| {t['target']} | {t['variant']} | {t['seeds']} | {t['mean']:+.3f}{se} | "
                 f"{'yes' if t['met'] else 'NO'} |")
    L += ["", "## Networks (float, on the test images)", "",
          "| network | training | float test accuracy | train accuracy | seconds to train |",
          "|---|---|---:|---:|---:|"]
    for key, info in doc["networks_info"].items():  # key: "network|training"
        L.append(f"| {key.split('|')[0]} | {key.split('|')[1]} | "
                 f"{100 * info.get('test_accuracy', float('nan')):.2f} % | "
                 f"{100 * info.get('train_accuracy', float('nan')):.2f} % | "
                 f"{info.get('train_seconds', float('nan'))} |")
    L += ["", "## Accuracy (%, mean ± std over seeds) and paired NMPU − FP16 (points ± SE)", "",
          "| variant | t | seeds | float | analog + float | analog + FP16 LDPU | analog + NMPU | "
          "NMPU − FP16 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for var in doc["variants"]:
        for t in var["times"]:
            r = {x["path"]: x for x in var["rows"] if x["t"] == t}
            pd = r["analog_nmpu"].get("paired_nmpu_minus_ldpu")
            L.append(f"| {var['label']} | {_label(t)} | {r['analog_nmpu']['seeds']} | "
                     f"{r['float']['mean']:.2f} | "
                     + " | ".join(f"{r[p]['mean']:.2f} ± {r[p]['std']:.2f}" if p in r else "–"
                                  for p in _ANALOG)
                     + (f" | {pd['mean']:+.3f} ± {pd['se']:.3f} |" if pd else " | – |"))
    for g in doc.get("by_train_seed", []):
        p = g["pooled"]
        L += ["", f"## {g['network']}: 4-bit HAT − 8-bit HAT at 1 day by training seed", "",
              "Float test accuracy of each network (%), NMPU accuracy at 1 day (%, mean over the "
              "device seeds), 4 − 8 in points: paired by device seed number (± SE over the device "
              "seeds), unpaired, and paired on the ideal post-processing.", "",
              "| training seed | float 8-bit HAT | float 4-bit HAT | NMPU 8-bit HAT | "
              "NMPU 4-bit HAT | 4 − 8 paired | 4 − 8 unpaired | ideal: 4 − 8 paired |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for x in g["rows"]:
            L.append(f"| {x['train_seed']} | {x['float_8']:.2f} | {x['float_4']:.2f} | "
                     f"{x['nmpu_8']:.2f} | {x['nmpu_4']:.2f} | "
                     + " | ".join(f"{x[k]['mean']:+.2f} ± {x[k]['se']:.2f}"
                                  for k in ("paired", "unpaired", "paired_ideal")) + " |")
        se = f" ± {p['se']:.2f}" if np.isfinite(p["se"]) else ""
        L += [f"| **pooled** ({p['train_seeds']} training seeds, {p['device_pairs']} pairs) | "
              f"{np.mean([x['float_8'] for x in g['rows']]):.2f} | "
              f"{np.mean([x['float_4'] for x in g['rows']]):.2f} | "
              f"{np.mean([x['nmpu_8'] for x in g['rows']]):.2f} | "
              f"{np.mean([x['nmpu_4'] for x in g['rows']]):.2f} | **{p['mean']:+.2f}{se}** | | |",
              "", f"Pooled: mean of the per-training-seed paired differences ± SE over the "
              f"training seeds; ±2 SE [{p['lo']:+.2f}, {p['hi']:+.2f}], per training seed "
              f"{p['min']:+.2f} … {p['max']:+.2f}. Target (within 1.0 point): "
              f"{'met' if p['met'] else 'missed'} on the mean, "
              f"{'inside' if p['met_2se'] else 'not inside'} with the whole ±2 SE interval."]
    L += ["", "## Drift curve (NMPU path unless noted; %, mean over seeds)", ""]
    curve = [v for v in doc["variants"]
             if v["act_bits"] == 8 and not v["hat"] and v["adc_gain"] == "calibrated"]
    if curve:
        times = curve[0]["times"]
        L += ["| path | " + " | ".join(_label(t) for t in times) + " |",
              "|---|" + "---:|" * len(times)]
        for v in curve:
            paths = (("float", "float"), ("analog_ldpu", "FP16 LDPU"), ("analog_nmpu", "NMPU")) \
                if v is curve[0] or v["network"] != curve[0]["network"] else (("analog_nmpu", "NMPU"),)
            for p, name in paths:
                vals = {x["t"]: x["mean"] for x in v["rows"] if x["path"] == p}
                L.append(f"| {v['network']} {name}" + (f" {v['nmpu']}" if p == "analog_nmpu" else "")
                         + " | " + " | ".join(f"{vals[t]:.2f}" if t in vals else "–" for t in times)
                         + " |")
    L += ["", "## Per-layer error against float by time (NMPU path, output LSB RMS, mean over "
          "seeds)", ""]
    for v in doc["variants"]:
        by_t = v.get("layers_by_time", {})
        if len(by_t) < 2:
            continue
        names = [x["layer"] for x in next(iter(by_t.values())) if x["path"] == "analog_nmpu"]
        L += [f"{v['label']}:", "", "| layer | " + " | ".join(by_t) + " |",
              "|---|" + "---:|" * len(by_t)]
        for name in names:
            L.append(f"| {name} | " + " | ".join(
                f"{x['end_to_end_rms']:.2f}" for rows in by_t.values() for x in rows
                if x["layer"] == name and x["path"] == "analog_nmpu") + " |")
        L.append("")
    L += ["", "Per-seed accuracies: `accuracy_mnist_seeds.csv`; per-layer errors and plans: "
          "`accuracy_mnist.json`.", ""]
    return "\n".join(L)


def plots_mnist(doc, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({v["network"] for v in doc["variants"]})
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.2), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for v in [v for v in doc["variants"] if v["network"] == net and len(v["times"]) > 1]:
            paths = ["analog_nmpu"] + (["float", "analog_ldpu"] if v["main"] or (
                v["act_bits"] == 8 and not v["hat"] and v["nmpu"] == doc["nmpu_presets"][0]) else [])
            for p in paths:
                rr = sorted([x for x in v["rows"] if x["path"] == p], key=lambda x: x["t"])
                name = {"float": "float", "analog_ldpu": "FP16 LDPU"}.get(p, v["label"].split(" ", 1)[1])
                ax.errorbar([x["t"] for x in rr], [x["mean"] for x in rr],
                            yerr=[x["std"] for x in rr], marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("time after programming (s)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(net)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_mnist_drift.png", dpi=120)
    plt.close(fig)


def main_mnist(args, n_seeds, ap):
    """`--suite mnist`: the variants, the targets, the report files."""
    from golden.data import mnist

    presets = args.nmpu_presets or (["paper"] + (["precision"] if "precision" in NMPU_PRESETS else []))
    curve_seeds = args.curve_seeds if args.curve_seeds is not None else (2 if args.quick else 5)
    if curve_seeds < 1:
        ap.error(f"--curve-seeds must be at least 1, not {curve_seeds}")
    networks = args.networks or [n for n in gnet.NETWORKS if gnet.DATASET.get(n) == "mnist"]
    t0 = time.time()
    data = mnist()
    variants = [v for ts in (args.train_seeds or [None])
                for v in mnist_variants(networks, presets, quick=args.quick, kinds=args.variants,
                                        main_kind=args.main, hat_noise=args.hat_noise,
                                        hop_frac_bits=args.hop_frac_bits, act_clip=args.act_clip,
                                        train_seed=ts, hat_distill=args.hat_distill_from)]
    if args.times:
        variants = [dataclasses.replace(v, times=tuple(t for t in v.times if t in args.times))
                    for v in variants]
        variants = [v for v in variants if v.times]
        if not variants:
            ap.error(f"--times {' '.join(_label(t) for t in args.times)}: no variant reads then")
    print(f"accuracy (mnist): {len(variants)} variants, {n_seeds} / {curve_seeds} seeds",
          file=sys.stderr, flush=True)
    results = run_variants(variants, data, seeds=n_seeds, curve_seeds=curve_seeds,
                           budget=not args.no_budget, fp16_main_only=args.fp16_main_only,
                           fp16=not args.no_fp16, drift_comp=args.drift_comp, recal=args.recal,
                           recal_source=args.recal_source, recal_at=args.recal_at,
                           workers=args.workers)
    doc = {"suite": "mnist", "quick": args.quick, "seeds": n_seeds, "curve_seeds": curve_seeds,
           "drift_comp": args.drift_comp, "recal": args.recal,
           "recal_source": args.recal_source, "recal_at": args.recal_at,
           "nmpu_presets": presets, "test_images": int(data.y_test.size),
           "targets": targets(results, int(data.y_test.size)),
           "networks_info": {}, "variants": []}
    if args.train_seeds:
        doc["train_seeds"] = list(args.train_seeds)
        doc["by_train_seed"] = by_train_seed(results)
    for v, r in results:
        tc = v.train_config()
        hat = "HAT" + (f" x{tc.hw_noise:g}" if tc.hw_noise != HAT_NOISE else "")
        doc["networks_info"][f"{v.network}|{hat if v.hat else 'float'}"
                             f"{' act4' if tc.act_bits else ''}"
                             f"{'' if tc.act_clip is None else f' clip {tc.act_clip}'}"
                             f"{'' if v.train_seed is None else f' seed {v.train_seed}'}"
                             f"{f' distilled from {tc.distill_from}' if v.hat and v.hat_distill else ''}"] = \
            r["plan"].net.info
        doc["variants"].append({
            "label": v.label, "network": v.network, "act_bits": v.act_bits, "hat": v.hat,
            "nmpu": v.nmpu, "adc_gain": v.adc_gain, "main": v.main, "times": list(v.times),
            "act_clip": v.act_clip, "train_seed": v.train_seed,
            "train": tc.to_dict(), "nmpu_cfg": v.nmpu_cfg().tag, "wide": v.wide,
            "wide_cfg": None if v.wide_cfg() is None else v.wide_cfg().tag,
            "tile": v.tile_cfg().to_dict(),
            "rows": summarise(r), "layers": layer_table(r),
            "layers_by_time": {_label(t): layer_table(r, t) for t in v.times},
            "plan": _plan_summary(r["plan"])})
    doc["wall_seconds"] = time.time() - t0
    doc["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy_mnist.json").write_text(json.dumps(doc, indent=1) + "\n")
    with open(args.out / "accuracy_mnist_seeds.csv", "w") as f:
        f.write("variant,seed,t,path,accuracy\n")
        for v, r in results:
            for x in r["runs"]:
                f.write(f"{v.label},{x['seed']},{x['t']:g},{x['path']},{100 * x['accuracy']:.2f}\n")
    text = markdown_mnist(doc)
    (args.out / "accuracy_mnist.md").write_text(text)
    plots_mnist(doc, args.out)
    print(text)
    return doc

if __name__ == "__main__":
    main()
