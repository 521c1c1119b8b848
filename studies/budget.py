"""First row of the per-stage error budget: the NMPU against the FP16 LDPU on the same column.

For one layer of per-column float parameters y_j = α_j·(P/gain_p,j − N/gain_n,j) + β_j (in int8
output units), the NMPU gets the register image of `golden.nmpu.compile_params` and the LDPU the
FP16 rounding of the same values (`golden.baselines.compile_params`); both golden models then
process the same ADC counts, and the float reference rounds the exact value to int8 (ties to
even, saturated). Reported: the distribution of NMPU − LDPU in output LSBs, and each path's
error against the reference, on two kinds of counts:

- `uniform`: P and N uniform over the ADC range (every code equally likely);
- `realistic`: counts of a simulated crossbar column: 256 PWM inputs in [0, 1] (a quarter of
  them zero, as after a ReLU) times conductances uniform in [0, 1] on each polarity, the sum
  scaled so that the 99.9th percentile fills the ADC range, times the column's ADC gain.

α_j is log-normal around the value that maps a typical P − N difference to ±64 output units,
β_j normal with a standard deviation of 8 output units, gains 1 ± 5 %. All α_j > 0 (a negative α
is the same column with G+ and G− swapped, which the tile model of the accuracy issue handles).

    python -m studies.budget [--vectors N] [--seed S] [--out build/report]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from golden import baselines as gb
from golden import nmpu as gn
from hdl.config import LDPU_PRESETS, NMPU_PRESETS

__all__ = ["layer_parameters", "counts", "reference", "compare", "main"]


def layer_parameters(columns, adc_max, rng):
    """(alpha, beta, gain_p, gain_n) of one layer, as described in the module docstring."""
    gain_p = rng.uniform(0.95, 1.05, columns)
    gain_n = rng.uniform(0.95, 1.05, columns)
    # a typical |P − N| is a fifth of the ADC range: map it to about ±64 output units
    alpha = 64.0 / (0.2 * adc_max) * np.exp(rng.normal(0.0, 0.5, columns))
    beta = rng.normal(0.0, 8.0, columns)
    return alpha, beta, gain_p, gain_n


def counts(kind, vectors, columns, adc_max, gain_p, gain_n, rng):
    """(P, N), each (vectors, columns), of the given kind (see the module docstring)."""
    if kind == "uniform":
        return (rng.integers(0, adc_max + 1, (vectors, columns)),
                rng.integers(0, adc_max + 1, (vectors, columns)))
    if kind != "realistic":
        raise ValueError(f"`kind` must be 'uniform' or 'realistic', not {kind!r}")
    rows = 256
    x = rng.uniform(0.0, 1.0, (vectors, rows)) * (rng.random((vectors, rows)) >= 0.25)
    g_pos = rng.uniform(0.0, 1.0, (rows, columns))
    g_neg = rng.uniform(0.0, 1.0, (rows, columns))
    i_pos, i_neg = x @ g_pos, x @ g_neg
    full = np.quantile(np.concatenate([i_pos.ravel(), i_neg.ravel()]), 0.999)
    p = np.clip(np.floor(i_pos / full * adc_max * gain_p), 0, adc_max).astype(np.int64)
    n = np.clip(np.floor(i_neg / full * adc_max * gain_n), 0, adc_max).astype(np.int64)
    return p, n


def reference(alpha, beta, gain_p, gain_n, p, n):
    """The float reference: the exact value rounded to int8 (ties to even), saturated."""
    y = alpha * (p / gain_p - n / gain_n) + beta
    return np.clip(np.rint(y), -128, 127).astype(np.int64)


def _histogram(d):
    values, hits = np.unique(d, return_counts=True)
    return {int(v): int(h) for v, h in zip(values, hits)}


def _stats(d):
    d = np.asarray(d, dtype=np.float64)
    return {"mean": float(d.mean()), "rms": float(np.sqrt((d ** 2).mean())),
            "max_abs": int(np.abs(d).max()), "share_exact": float((d == 0).mean()),
            "share_within_1": float((np.abs(d) <= 1).mean())}


def compare(nmpu_cfg, ldpu_cfg, vectors, seed):
    """One row per count kind: the NMPU − LDPU difference distribution and both paths' errors
    against the float reference, in output LSBs. The same seed gives the same parameters and
    counts for every NMPU config."""
    if nmpu_cfg.columns != ldpu_cfg.columns or nmpu_cfg.adc_bits != ldpu_cfg.adc_bits:
        raise ValueError("the NMPU and LDPU configs must have the same columns and adc_bits")
    if not nmpu_cfg.dual:
        raise ValueError("the budget compares the dual-count (P, N) NMPU with the LDPU")
    rng = np.random.default_rng(seed)
    cols, adc_max = nmpu_cfg.columns, nmpu_cfg.adc_max
    alpha, beta, gain_p, gain_n = layer_parameters(cols, adc_max, rng)
    nm = gn.compile_params(nmpu_cfg, alpha, beta, gain_p, gain_n)
    ld = gb.compile_params(ldpu_cfg, alpha, beta, gain_p, gain_n)
    nmpu_layer = gn.NMPULayer(shift=nm.shift, pre_cut=0, round_mode=2, relu_mid=0, relu_out=0,
                              residual_en=0)
    ldpu_layer = gb.LDPULayer(c=0, relu_mid=0, relu_out=0, residual_en=0)
    rows = []
    for kind in ("uniform", "realistic"):
        p, n = counts(kind, vectors, cols, adc_max, gain_p, gain_n, rng)
        kw = {"r": np.zeros_like(p)} if nmpu_cfg.residual else {}
        y_nmpu = gn.forward(nmpu_cfg, nmpu_layer, nm.params, p=p, n=n, **kw)
        y_ldpu = gb.forward(ldpu_cfg, ldpu_layer, ld.params, p, n,
                            **({"r": np.zeros_like(p)} if ldpu_cfg.residual else {}))
        y_ref = reference(alpha, beta, gain_p, gain_n, p, n)
        diff = y_nmpu - y_ldpu
        rows.append({"nmpu": nmpu_cfg.tag, "counts": kind, "values": int(diff.size),
                     "nmpu_shift": int(nm.shift),
                     "nmpu_rel_scale_err_max": float(np.abs(nm.rel_scale_err_p).max()),
                     "nmpu_minus_ldpu": {**_stats(diff), "histogram": _histogram(diff)},
                     "nmpu_minus_float": _stats(y_nmpu - y_ref),
                     "ldpu_minus_float": _stats(y_ldpu - y_ref)})
    return rows


def _markdown(rows, ldpu_tag, seed):
    lines = ["# Error budget, first row: NMPU vs FP16 LDPU on the same column parameters", "",
             f"LDPU preset `{ldpu_tag}`, seed {seed}; differences in int8 output LSBs (see "
             "`studies/budget.py` for the parameters and counts). `paper` has one shift per "
             "layer, `exp` a 3-bit per-column exponent on top.", "",
             "| NMPU | counts | values | path | mean | RMS | max abs | exact | within ±1 |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for name, key in (("NMPU − LDPU", "nmpu_minus_ldpu"), ("NMPU − float", "nmpu_minus_float"),
                          ("LDPU − float", "ldpu_minus_float")):
            s = r[key]
            lines.append(f"| {r['nmpu']} | {r['counts']} | {r['values']} | {name} | {s['mean']:+.4f} | "
                         f"{s['rms']:.4f} | {s['max_abs']} | {100 * s['share_exact']:.2f} % | "
                         f"{100 * s['share_within_1']:.2f} % |")
    lines += ["", "NMPU − LDPU histograms (difference: count), and the NMPU's largest relative "
              "scale-code error:", ""]
    for r in rows:
        h = r["nmpu_minus_ldpu"]["histogram"]
        lines.append(f"- {r['nmpu']}, {r['counts']} (shift {r['nmpu_shift']}, scale error up to "
                     f"{100 * r['nmpu_rel_scale_err_max']:.1f} %): "
                     + ", ".join(f"{k:+d}: {v}" for k, v in sorted(h.items())))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vectors", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--out", type=Path, default=Path("build/report"))
    args = ap.parse_args(argv)
    if args.vectors < 1:
        ap.error(f"--vectors must be at least 1, not {args.vectors}")
    ldpu_cfg = LDPU_PRESETS["paper"]
    nmpu_cfgs = [NMPU_PRESETS["paper"], NMPU_PRESETS["exp"]]
    rows = [r for cfg in nmpu_cfgs for r in compare(cfg, ldpu_cfg, args.vectors, args.seed)]
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"nmpu": {c.tag: c.to_dict() for c in nmpu_cfgs}, "ldpu": ldpu_cfg.to_dict(),
           "seed": args.seed, "rows": rows}
    (args.out / "error_budget.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = _markdown(rows, ldpu_cfg.tag, args.seed)
    (args.out / "error_budget.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
