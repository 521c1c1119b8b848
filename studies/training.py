"""The mixed-precision training study: every outer-product mode of golden/essop_step.py (FP32
SGD in software, mixed precision with the exact float outer product, ESSOP fast at each
bitstream length, ESSOP exact at one) over several seeds of the digits MLP on PCM pairs, paired
by seed; the report (build/report/training.{json,md,png}) and `python -m studies.training`.

The model it runs (the device, the pair, the outer product in its modes, the network, `train`,
`training_step`, `rtl_vectors`, `tile_batch`) is golden/essop_step.py; its names are re-exported
here, so `studies.training.train` is `golden.essop_step.train`.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from golden.essop_step import *  # noqa: F401,F403 (the model's names, re-exported)
from golden.essop_step import BLS, TrainConfig, log2_of_bl, train
from golden.essop_step import __all__ as _MODEL

__all__ = [*_MODEL, "study", "write_report", "main"]

ROOT = Path(__file__).resolve().parent.parent


# -- the study -------------------------------------------------------------------------------------

def _stats(values):
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def study(tcfg: TrainConfig, seeds, bls=BLS, progress=None, extra_exact_bl=None):
    """Every mode over `seeds`: fp32, mixed precision with the float outer product, ESSOP fast at
    each BL (and ESSOP exact at `extra_exact_bl`, if given). Returns the report dict."""
    from golden.data import digits

    data = digits()
    runs = [("fp32", None), ("float", None)] + [("fast", bl) for bl in bls]
    if extra_exact_bl:
        runs.append(("exact", extra_exact_bl))
    t0 = time.perf_counter()
    results = []
    for mode, bl in runs:
        per_seed = [train(tcfg, mode, data, s, bl=bl, progress=progress) for s in seeds]
        finals = [100 * r["final"] for r in per_seed]
        curves = np.array([[100 * a for a in r["acc"]] for r in per_seed])
        mean, std = _stats(finals)
        results.append({"key": _key(mode, bl), "mode": mode, "bl": bl, "acc_mean": mean,
                        "acc_std": std, "acc_per_seed": finals,
                        "curve_mean": curves.mean(axis=0).tolist(),
                        "curve_std": curves.std(axis=0).tolist(),
                        "pulses_mean": float(np.mean([r["pulses"] for r in per_seed])),
                        "refreshes_mean": float(np.mean([r["refreshes"] for r in per_seed])),
                        "products_per_readout": (sum(r["products"] for r in per_seed)
                                                 / sum(r["readouts"] for r in per_seed))
                        if mode == "exact" else None,
                        "wall_s": float(sum(r["wall_s"] for r in per_seed))})
    ref = next(r for r in results if r["mode"] == "float")
    for r in results:  # paired by seed: same initial weights, sample order and device draws
        r["diff_mean"], r["diff_std"] = _stats(np.subtract(r["acc_per_seed"], ref["acc_per_seed"]))
    ok = [r["bl"] for r in results if r["mode"] == "fast" and r["acc_mean"] >= ref["acc_mean"] - 0.5]
    cfg_dict = dataclasses.asdict(tcfg)
    return {"config": cfg_dict, "eta": tcfg.eta, "eps": tcfg.eps, "seeds": list(seeds),
            "epochs": tcfg.epochs, "train_size": int(len(data.y_train)),
            "test_size": int(len(data.y_test)), "results": results,
            "reference": "float", "smallest_bl_within_0p5": min(ok) if ok else None,
            "bl32_within_0p5": 32 in ok, "wall_s": time.perf_counter() - t0}


def _key(mode, bl):
    return mode if bl is None else f"{mode}_bl{bl}"


LABELS = {"fp32": "FP32 SGD (software)", "float": "mixed precision, exact outer product",
          "fast": "mixed precision, ESSOP fast", "exact": "mixed precision, ESSOP exact"}


def _essop_label(essop):
    """A report's words for TrainConfig.essop as stored (a preset name, or a config's dict)."""
    return f"preset `{essop}`" if isinstance(essop, str) else f"config `{essop.get('name')}`"


def write_report(report, out):
    """training.json, training.md and training.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    c = report["config"]
    lines = ["# Mixed-precision training with ESSOP on the digits (golden model)", "",
             f"MLP 64 → {c['hidden']} → 10 (ReLU), mini-batch {c['batch']}, η = 2^−{c['lr_shift']}"
             f" = {report['eta']:g} (halved after {', '.join(f'{100 * f:g} %' for f in c['lr_decay'])}"
             f" of the epochs), ε = {report['eps']:.4g}, {report['epochs']} epochs, seeds "
             f"{report['seeds']}; ESSOP {_essop_label(c['essop'])}; forward pass "
             f"{'through the analog tile model' if c['analog'] else 'in float'}. "
             f"Train {report['train_size']} / test {report['test_size']} images.", "",
             "| mode | BL | test accuracy % (mean ± std) | − reference (paired) | per seed | pulses "
             "| refreshes | wall s |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {LABELS[r['mode']]} | {r['bl'] or '–'} | {r['acc_mean']:.2f} ± "
                     f"{r['acc_std']:.2f} | {r['diff_mean']:+.2f} ± {r['diff_std']:.2f} | "
                     f"{', '.join(f'{a:.1f}' for a in r['acc_per_seed'])} | "
                     f"{r['pulses_mean']:.0f} | {r['refreshes_mean']:.0f} | {r['wall_s']:.1f} |")
    ref = next(r for r in report["results"] if r["mode"] == "float")
    bl = report["smallest_bl_within_0p5"]
    lines += ["", "Pulses and refreshes: per run (mean over seeds), both layers. The paired difference "
                  "is per seed against the reference (same initial weights, sample order, device "
                  "and ADC draws).",
              "", f"Reference: mixed precision with the exact outer product, "
                  f"{ref['acc_mean']:.2f} %. Smallest ESSOP BL whose mean is within 0.5 points of "
                  f"it (or above): {bl if bl else 'none'}; BL = 32 "
                  f"{'meets' if report['bl32_within_0p5'] else 'misses'} the goal.",
              f"Total wall time {report['wall_s']:.0f} s."]
    for r in report["results"]:
        if r.get("products_per_readout"):
            lines += ["", f"ESSOP exact at BL {r['bl']}: up to {c['acc']} products per read-out "
                          f"(`acc`), {r['products_per_readout']:.2f} per read-out on average "
                          f"(groups of one E and one tile, golden.essop.group_flags)."]
    (out / "training.md").write_text("\n".join(lines) + "\n")
    _plot(report, out / "training.png")


def _plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in report["results"]:
        label = LABELS[r["mode"]] + (f", BL {r['bl']}" if r["bl"] else "")
        style = {"fp32": "k--", "float": "k-"}.get(r["mode"], "-")
        ax.plot(range(len(r["curve_mean"])), r["curve_mean"], style, label=label, lw=1.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%, mean over seeds)")
    ax.set_ylim(80, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Mixed-precision training with ESSOP on the digits: "
                                             "FP32 baseline, exact outer product, ESSOP per BL.")
    ap.add_argument("--quick", action="store_true", help="few epochs and seeds (well under a minute)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 2)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--exact-bl", type=int, default=None,
                    help="also run ESSOP exact mode (bit-exact, slow) at this BL")
    ap.add_argument("--acc", type=int, default=1,
                    help="exact mode: up to this many products per ESSOP read-out (default 1)")
    ap.add_argument("--out", default=str(ROOT / "build" / "report"))
    args = ap.parse_args(argv)
    try:
        tcfg = TrainConfig(acc=args.acc)
    except ValueError as e:
        sys.exit(f"--acc: {e}")
    if args.quick:
        tcfg = dataclasses.replace(tcfg, epochs=3)
    if args.epochs is not None:
        tcfg = dataclasses.replace(tcfg, epochs=args.epochs)
    n_seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    if n_seeds < 1:
        sys.exit("--seeds must be at least 1")
    bls = (8, 32, 128) if args.quick else BLS
    if args.exact_bl is not None:
        try:
            log2_of_bl(tcfg.essop_cfg, args.exact_bl)
        except ValueError as e:
            sys.exit(f"--exact-bl: {e}")
    report = study(tcfg, list(range(1, n_seeds + 1)), bls=bls, extra_exact_bl=args.exact_bl,
                   progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    report["quick"] = bool(args.quick)
    write_report(report, args.out)
    print(Path(args.out, "training.md").read_text())


if __name__ == "__main__":
    main()
