"""Speed of the golden tile model and of the network evaluation.

- Tile MVMs per second: a batch of int8 input vectors through the full tile model
  (`Tile.read`: PWM MVM of both polarities, per-line ADC gains, floor, saturation; the
  conductances at t drawn once and cached, as in the accuracy runs), against a bare float64
  matmul of the same shape (vectors × rows) @ (rows × cols). The tile computes both polarities,
  so it also reports the ratio to the bare matmul of the doubled width (rows × 2·cols).
- Network evaluation: time of one pass over the network's test set per path (float,
  analog + ideal float, analog + FP16 LDPU, analog + NMPU), and of programming a network: the
  digits mlp and cnn (539 test images) and the MNIST mlp and cnn (1000 test images; the MNIST
  cnn without the FP16 LDPU path: one pass of its bit-exact golden takes 32 CPU-s), each the
  float-trained network of `golden.network.load_or_train` (trained once and cached).
- The tile reads of a network evaluation: every `Tile.read` of one analog pass (all layers,
  all tiles, the inputs it really reads, with the arguments the executor gives: float64 codes
  read as checked), replayed, against the bare matmuls of both polarities of the same inputs
  and conductances (the cost floor of the tile model); and the whole NMPU pass (im2col, tile
  reads, NMPU golden, pooling) against the same matmuls.

    OPENBLAS_NUM_THREADS=1 python -m studies.bench [--vectors N] [--repeat R] [--out build/report]
                                                   [--networks mlp cnn mnist_mlp mnist_cnn]

Times are CPU seconds of this process (`time.process_time`), best of the repeats: on a shared
machine other jobs inflate wall time but hardly CPU time; with one BLAS thread (recorded) CPU
time is the single-core time. The load average at the start and the end is recorded.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from golden import compiler as gc
from golden import network as gnet
from golden import tile as gt
from golden.data import load

__all__ = ["best_time", "bench_tile", "bench_network", "bench_network_reads", "main"]


def best_time(fn, repeat):
    """Smallest CPU time of `repeat` calls (seconds)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def bench_network_reads(prog, net, x, t=3600.0, repeat=3):
    """CPU time of every `Tile.read` of one NMPU pass of `net` on inputs x (floats), replayed on
    the recorded inputs, against the bare float64 matmuls x @ [G+ G−] of the same reads."""
    calls = []
    for layer in prog.tiles.values():
        for row in layer:
            for tile in row:
                read = tile.read

                def spy(xx, tt, *a, _read=read, _tile=tile, **kw):
                    calls.append((_tile, np.array(xx, copy=True), tt, kw))
                    return _read(xx, tt, *a, **kw)
                tile.read = spy
    try:
        prog.logits("nmpu", t, x)
    finally:
        for layer in prog.tiles.values():
            for row in layer:
                for tile in row:
                    del tile.read
    stacked = [(np.asarray(xx, dtype=np.float64), np.concatenate(tile.conductances(tt), axis=1))
               for tile, xx, tt, _ in calls]
    t_read = t_mm = np.inf
    for _ in range(repeat):  # interleaved, best of `repeat` each: the load hits both alike
        t_read = min(t_read, best_time(lambda: [tile.read(xx, tt, **kw)
                                                for tile, xx, tt, kw in calls], 1))
        t_mm = min(t_mm, best_time(lambda: [xf @ g2 for xf, g2 in stacked], 1))
    return {"reads": len(calls), "vectors": int(sum(c[1].shape[0] for c in calls)),
            "reads_seconds": t_read, "matmul_2x_seconds": t_mm, "ratio_to_2x_matmul": t_read / t_mm}


def bench_tile(vectors=1024, repeat=7, seed=0, cfg=None):
    cfg = gt.TileConfig(name="pcm") if cfg is None else cfg
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (cfg.rows, cfg.cols))
    tile = gt.Tile(cfg, w, seed)
    x = rng.integers(0, cfg.x_max + 1, (vectors, cfg.rows))
    t = 3600.0
    g_pos, g_neg = tile.conductances(t)
    tile.read(x, t)  # warm up
    xf = x.astype(np.float64)
    g2 = np.concatenate([g_pos, g_neg], axis=1)
    # interleaved, best of `repeat` each: a shared machine's load hits all three alike
    t_tile = t_mm = t_mm2 = np.inf
    for _ in range(repeat):
        t_tile = min(t_tile, best_time(lambda: tile.read(x, t), 1))
        t_mm = min(t_mm, best_time(lambda: xf @ g_pos, 1))
        t_mm2 = min(t_mm2, best_time(lambda: xf @ g2, 1))
    return {"vectors": vectors, "rows": cfg.rows, "cols": cfg.cols,
            "tile_seconds": t_tile, "matmul_seconds": t_mm, "matmul_2x_seconds": t_mm2,
            "tile_mvm_per_s": vectors / t_tile, "matmul_mvm_per_s": vectors / t_mm,
            "ratio_to_matmul": t_tile / t_mm, "ratio_to_2x_matmul": t_tile / t_mm2}


# the paths timed where not all: one FP16 LDPU pass of the MNIST cnn takes 32 CPU-s
BENCH_PATHS = {"mnist_cnn": ("float", "nmpu")}


def bench_network(name, data, t=3600.0, seed=0, repeat=7, paths=gc.PATHS):
    """Times of one network: plan, programming, a pass per path, and the tile reads of an NMPU
    pass (`bench_network_reads`). The plan is calibrated as the accuracy study calibrates it
    (`x_calib` of MNIST, the digits' training images)."""
    net = gnet.load_or_train(name, progress=False)
    t0 = time.perf_counter()
    plan = gc.plan(net, getattr(data, "x_calib", data.x_train))
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    prog = gc.ProgrammedNetwork(plan, seed)
    prog.compile(t)
    t_prog = time.perf_counter() - t0
    out = {"network": name, "data": data.name, "test_images": int(data.y_test.size),
           "plan_seconds": t_plan, "program_and_compile_seconds": t_prog}
    out["float_seconds"] = best_time(lambda: net.logits(data.x_test), 3)
    for path in paths:
        out[f"analog_{path}_seconds"] = best_time(
            lambda: prog.logits(path, t, data.x_test), 2)
    out["tile_reads"] = r = bench_network_reads(prog, net, data.x_test, t, repeat)
    r["nmpu_pass_ratio_to_2x_matmul"] = out["analog_nmpu_seconds"] / r["matmul_2x_seconds"]
    return out


def markdown(doc):
    tb = doc["tile"]
    L = ["# Golden model speed", "",
         f"Tile {tb['rows']} × {tb['cols']}, batch of {tb['vectors']} vectors (best of "
         f"{doc['repeat']}, interleaved; BLAS threads: {doc['blas_threads']}):", "",
         "| what | seconds | MVMs/s | ratio |", "|---|---:|---:|---:|",
         f"| full tile model (`Tile.read`: MVM both polarities + ADC) | {tb['tile_seconds']:.5f} | "
         f"{tb['tile_mvm_per_s']:.0f} | 1 |",
         f"| bare float64 matmul, same shape | {tb['matmul_seconds']:.5f} | "
         f"{tb['matmul_mvm_per_s']:.0f} | tile is {tb['ratio_to_matmul']:.2f}× slower |",
         f"| bare float64 matmul, both polarities (2·cols) | {tb['matmul_2x_seconds']:.5f} | "
         f"{tb['vectors'] / tb['matmul_2x_seconds']:.0f} | tile is {tb['ratio_to_2x_matmul']:.2f}× slower |",
         "", f"Load average (1, 5, 15 min) at the start {_loads(doc['load_start'])}, at the end "
         f"{_loads(doc['load_end'])}.",
         "", "Network evaluation on each network's test set (CPU seconds per pass; — not run):",
         "", "| network | data | images | float | analog + float | analog + FP16 LDPU | "
         "analog + NMPU | program + compile |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    sec = lambda n, k: f"{n[k]:.3f}" if k in n else "—"  # noqa: E731
    for n in doc["networks"]:
        L.append(f"| {n['network']} | {n['data']} | {n['test_images']} | "
                 f"{n['float_seconds']:.3f} | {sec(n, 'analog_float_seconds')} | "
                 f"{sec(n, 'analog_ldpu_seconds')} | "
                 f"{n['analog_nmpu_seconds']:.3f} | {n['program_and_compile_seconds']:.3f} |")
    L += ["", "Tile reads of one analog pass (every `Tile.read` of the NMPU path, replayed) against "
          "the bare matmuls of both polarities of the same reads (target ≤ 1.2x), and the whole "
          "NMPU pass (im2col, reads, NMPU golden, pooling) against the same matmuls:", "",
          "| network | reads | vectors | tile reads (s) | bare 2x matmuls (s) | reads / matmuls | "
          "NMPU pass / matmuls |", "|---|---:|---:|---:|---:|---:|---:|"]
    for n in doc["networks"]:
        r = n["tile_reads"]
        L.append(f"| {n['network']} | {r['reads']} | {r['vectors']} | {r['reads_seconds']:.4f} | "
                 f"{r['matmul_2x_seconds']:.4f} | {r['ratio_to_2x_matmul']:.2f} | "
                 f"{r['nmpu_pass_ratio_to_2x_matmul']:.2f} |")
    return "\n".join(L) + "\n"


def _loads(v):
    return " / ".join(f"{x:.1f}" for x in v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--vectors", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("build/report"))
    ap.add_argument("--networks", nargs="+", default=list(gnet.NETWORKS),
                    choices=list(gnet.NETWORKS))
    args = ap.parse_args(argv)
    if args.vectors < 1 or args.repeat < 1:
        ap.error("--vectors and --repeat must be at least 1")
    doc = {"repeat": args.repeat, "load_start": list(os.getloadavg()),
           "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "default")),
           "tile": bench_tile(args.vectors, args.repeat), "networks": []}
    for name in args.networks:
        doc["networks"].append(bench_network(name, load(gnet.DATASET.get(name, "digits")),
                                             repeat=args.repeat,
                                             paths=BENCH_PATHS.get(name, gc.PATHS)))
    doc["load_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    (args.out / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
