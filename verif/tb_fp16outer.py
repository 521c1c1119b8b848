"""cocotb test bench of the FP16 outer-product array, the baseline ESSOP replaces: run by
tests/test_sim_baselines.py.

One product per input beat {x: rows patterns, d: cols patterns}; `rows` output beats {p: one
row x_i·δ_j, last}; every pattern checked against `golden.baselines.outer_product` (numpy's
float16 multiply, canonical NaN). Environment (read by verif/bench.py): TB_META, TB_SEED,
TB_OUT, TB_SCALE.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden import baselines as gb
from golden import fp16
from hdl.config import FP16OuterConfig
from verif.bench import META, OUT, STALLS, StreamBench, n_items
from verif.stimulus import FP16_CLASSES as CLASSES
from verif.stimulus import fp16_operands

CFG = FP16OuterConfig.from_dict(META["config"])


class FP16OuterBench(StreamBench):
    outputs_per_item = CFG.rows

    def __init__(self, dut, stalls=("none", "none"), seed_offset=0, corrupt=False, name="fp16outer"):
        self.cfg = CFG
        self.corrupt = corrupt
        self.setup(dut, stalls, seed_offset, name, widths={"p": 16, "last": 1},
                   fields=("p", "last"), pulses=("rst",), agents_before=[])
        self.model = self  # nothing persists between products: reset has nothing to clear

    def reset(self):
        pass

    def send(self, xs, ds, label=None):
        words = self.codec_in.encode({"x": xs, "d": ds})
        for k, word in enumerate(words):
            self.source.send(word, (xs[k], ds[k], label))

    def accepted(self, word, tag, cycle):
        x, d, label = tag
        p = gb.outer_product(self.cfg, x, d)
        if self.corrupt:
            p = p ^ 1    # the last significand bit of every product
        for i in range(self.cfg.rows):
            self.sb.expect({"p": p[i], "last": int(i == self.cfg.rows - 1)})
        cov = self.cov
        if label:
            cov.hit("class", label)
        nan, inf = fp16.isnan(p), fp16.isinf(p)
        _, field, frac = fp16.fields(p)
        cov.hit("result", "nan", int(nan.sum()))
        cov.hit("result", "inf", int(inf.sum()))
        cov.hit("result", "subnormal", int(((field == 0) & (frac != 0)).sum()))
        cov.hit("result", "zero", int(((field == 0) & (frac == 0)).sum()))
        cov.hit("result", "normal", int(((field > 0) & (field < 31)).sum()))

    def on_output(self, cycle):
        self.cov.hit("row", (self.sink.received - 1 - self.received_base) % self.cfg.rows)

    def vectors(self, count, n, kind="random"):
        return fp16_operands(self.rng, count, n, kind)

    async def drain(self, timeout=None):
        await super().drain(timeout or 200 + 4 * (self.cfg.rows + 8) * (len(self.source.queue) + 2))


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def products(dut, stalls):
    """Products of every operand class (random, subnormal, overflow, ties, Inf/NaN/zero) in
    every pairing, then random ones; every row bit-exact."""
    bench = FP16OuterBench(dut, stalls, seed_offset=1)
    cfg = bench.cfg
    await bench.start()
    bench.cov.require("class", [f"{a}x{b}" for a in CLASSES for b in CLASSES])
    bench.cov.require("row", range(cfg.rows))
    bench.cov.require("result", ["nan", "inf", "subnormal", "zero", "normal"])
    for a in CLASSES:
        for b in CLASSES:
            bench.send(bench.vectors(1, cfg.rows, a), bench.vectors(1, cfg.cols, b), f"{a}x{b}")
        await bench.drain()
    k = n_items(8)
    bench.send(bench.vectors(k, cfg.rows), bench.vectors(k, cfg.cols))
    await bench.drain()
    bench.finish(f"products_{'_'.join(stalls)}", require=True)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS[:2])
async def reset_mid_product(dut, stalls):
    """`rst` while rows are issuing: in-flight rows are dropped, the next product is whole."""
    bench = FP16OuterBench(dut, stalls, seed_offset=2)
    cfg = bench.cfg
    await bench.start()
    for _ in range(n_items(3)):
        bench.send(bench.vectors(3, cfg.rows), bench.vectors(3, cfg.cols))
        await ClockCycles(dut.clk, int(bench.rng.integers(1, 3 * cfg.rows + 8)))
        await bench.pulse("rst")
        bench.rebase()
        bench.send(bench.vectors(2, cfg.rows), bench.vectors(2, cfg.cols))
        await bench.drain()
    bench.finish(f"reset_mid_product_{'_'.join(stalls)}")


@cocotb.test()
async def throughput(dut):
    """K products without stalls: `rows` clocks per product (measured between the first rows of
    consecutive products) and the latency to the first row; figures to throughput.json."""
    bench = FP16OuterBench(dut, seed_offset=3)
    cfg = bench.cfg
    await bench.start()
    k = 8
    bench.send(bench.vectors(k, cfg.rows), bench.vectors(k, cfg.cols))
    await bench.drain()
    firsts = bench.out_cycles[::cfg.rows]
    period = np.diff(firsts)
    latency = firsts[0] - bench.accept_cycles[0]
    clocks = bench.out_cycles[-1] - bench.accept_cycles[0] + 1
    result = {"unit": "fp16outer", "tag": cfg.tag, "sim": cocotb.SIM_NAME, "vectors": k,
              "clocks": int(clocks), "latency": int(latency), "rows": cfg.rows, "cols": cfg.cols,
              "cycles_per_vector": float(period.mean()) if len(period) else float(cfg.rows)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    dut._log.info("throughput: %s", result)
    assert latency == META["latency"], f"latency {latency}, the component says {META['latency']}"
    assert (period == cfg.rows).all(), f"clocks between products {list(period)}, not {cfg.rows}"
    bench.finish("throughput")


@cocotb.test(expect_fail=True)
async def expect_fail_corrupted_model(dut):
    """The checker must be able to fail: the model flips the last bit of every product."""
    bench = FP16OuterBench(dut, seed_offset=4, corrupt=True)
    cfg = bench.cfg
    await bench.start()
    bench.send(bench.vectors(2, cfg.rows), bench.vectors(2, cfg.cols))
    await bench.drain()
    bench.finish("expect_fail")
