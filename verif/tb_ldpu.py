"""cocotb test bench of the LDPU, the FP16 post-processing baseline: run by
tests/test_sim_baselines.py.

The LDPU has the NMPU's stream conventions and status outputs, so the bench is the NMPU's
(`verif/postproc.py`) with the LDPU's golden model (`golden.baselines.forward`), FP16 parameters
and registers. Environment (read by verif/bench.py): TB_META, TB_SEED, TB_OUT, TB_SCALE.
"""

import cocotb
import numpy as np

from golden import baselines as gb
from golden import fp16
from hdl.config import LDPUConfig
from verif import postproc
from verif.bench import META, STALLS
from verif.bench import n_items as n_vectors
from verif.postproc import PostProcBench, PostProcModel
from verif.stimulus import FP16_SPECIALS as SPECIALS

CFG = LDPUConfig.from_dict(META["config"])


class LDPUModel(PostProcModel):
    """The LDPU's expectations: `golden.baselines.forward`. The corrupted model swaps the P and
    N counts (the expect-fail test)."""

    layer_names = ("c", "relu_mid", "relu_out", "residual_en")

    def unpack(self, word):
        return gb.unpack(self.cfg, word)

    def compute(self, regs, prm, ins):
        cfg = self.cfg
        if not cfg.residual:
            regs.pop("residual_en")
        if self.corrupt:
            ins = dict(ins, p=ins["n"], n=ins["p"])
        return gb.forward(cfg, gb.LDPULayer(**regs), gb.LDPUParams(**prm), **ins,
                          return_clamped=True)


class LDPUBench(PostProcBench):
    def __init__(self, dut, stalls=("none", "none"), seed_offset=0, corrupt=False, name="ldpu"):
        self.model = LDPUModel(CFG, corrupt=corrupt)
        super().__init__(dut, CFG, stalls, seed_offset, name)

    def pack_params(self, params):
        return gb.pack_params(self.cfg, params)

    def zero_params(self):
        return gb.LDPUParams.zeros(self.cfg)

    # -- stimulus -----------------------------------------------------------------------------

    def fp16_values(self, lo_exp, hi_exp, n, corners=0.0, signed=True):
        """FP16 patterns of magnitude 2^[lo_exp, hi_exp) (random significand and sign), a share
        `corners` of them special (zeros, subnormals, the largest, Inf, NaN)."""
        rng = self.rng
        mag = np.exp2(rng.uniform(lo_exp, hi_exp, n))
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0) if signed else 1.0
        v = fp16.encode(sign * mag)
        return np.where(rng.random(n) < corners, rng.choice(SPECIALS, n), v)

    def random_params(self, corners=0.03):
        """Scales that map full-scale counts to about ±128 before the affine step, offsets of a
        few output units, affine gains near 1."""
        cfg, n = self.cfg, self.cfg.columns
        top = np.log2(160.0 / max(cfg.adc_max, 1))
        return gb.LDPUParams(sp=self.fp16_values(top - 3, top, n, corners, signed=False),
                             sn=self.fp16_values(top - 3, top, n, corners, signed=False),
                             o=self.fp16_values(-2, 5, n, corners),
                             a=self.fp16_values(-1.5, 1.5, n, corners),
                             b=self.fp16_values(-3, 4, n, corners))

    def random_inputs(self, v, corners=0.1):
        cfg, rng = self.cfg, self.rng
        shape = (v, cfg.columns)

        def draw(lo, hi):
            a = rng.integers(lo, hi + 1, shape)
            pick = rng.random(shape)
            return np.where(pick < corners / 2, lo, np.where(pick < corners, hi, a))
        ins = {"p": draw(0, cfg.adc_max), "n": draw(0, cfg.adc_max)}
        if cfg.residual:
            ins["res"] = draw(-128, 127)
        return ins

    def random_layer(self, k=None):
        """Register values; with `k`, the ReLU and residual switches step through every
        combination."""
        rng = self.rng
        bits = [(k >> i) & 1 for i in range(3)] if k is not None else list(rng.integers(0, 2, 3))
        layer = {"c": int(self.fp16_values(-3, 1, 1)[0]), "relu_mid": int(bits[0]),
                 "relu_out": int(bits[1])}
        if self.cfg.residual:
            layer["residual_en"] = int(bits[2])
        return layer

    def useful_layer(self, layer):
        return layer

    def classify_batch(self, b):
        cfg, cov = self.cfg, self.cov
        regs, y, clamped = b["regs"], b["y"], b["clamped"]
        for k in self.layer_fields:
            if k != "c":
                cov.hit_many(k, zip(*np.unique(regs[k], return_counts=True)))
        cols = b["pos"][:, None] * cfg.lanes + np.arange(cfg.lanes)
        cov.hit_many("column", zip(*np.unique(cols, return_counts=True)))
        cov.hit("rail", "low", int((y == -128).sum()))
        cov.hit("rail", "high", int((y == 127).sum()))
        cov.hit("clamp", "counted", int(clamped.sum()))
        special = np.isin(np.stack(list(b["prm"].values())), SPECIALS[5:])   # largest, Inf, NaN
        cov.hit("param", "inf_or_nan_or_largest", int(special.sum()))


def _require_basic(bench):
    bench.cov.require("column", range(bench.cfg.columns))
    for k in bench.layer_fields:
        if k != "c":
            bench.cov.require(k, (0, 1))


# -- scenarios ------------------------------------------------------------------------------------

@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def random_vectors(dut, stalls):
    """Random vectors under every combination of the ReLU and residual switches, new random
    parameters per layer, written while the previous layer streams."""
    bench = LDPUBench(dut, stalls, seed_offset=1)
    await bench.start()
    _require_basic(bench)
    per_layer = max(1, min(3, 64 // bench.cfg.beats))
    for k in range(8 + n_vectors(8)):
        bench.write_params(bench.random_params())
        layer = bench.random_layer(k if k < 8 else None)
        bench.send_vectors(bench.random_inputs(per_layer), [layer] * per_layer)
    await bench.drain()
    await bench.check_status()
    bench.finish(f"random_vectors_{'_'.join(stalls)}", require=stalls == ("none", "none"))


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def corner_classes(dut, stalls):
    """Special FP16 parameters (zeros, subnormals, the largest value, Inf, NaN: overflow,
    Inf − Inf and NaN through every stage), counts on their rails, both int8 rails, and planted
    int8 rounding ties (y = P + 0.5 and − P − 0.5)."""
    bench = LDPUBench(dut, stalls, seed_offset=2)
    cfg = bench.cfg
    await bench.start()
    bench.cov.require("rail", ["low", "high"])
    bench.cov.require("param", ["inf_or_nan_or_largest"])
    n = cfg.columns
    for k in range(4):
        bench.write_params(bench.random_params(corners=0.4))
        layer = bench.random_layer(k)
        vecs = max(2, 32 // cfg.columns)
        bench.send_vectors(bench.random_inputs(vecs, corners=0.8), [layer] * vecs)
        await bench.drain()
    # both int8 rails by construction: ±300 output units, no ReLU
    big = int(fp16.encode(300.0 / cfg.adc_max))
    z = np.zeros(n, np.int64)
    bench.write_params(gb.LDPUParams(sp=z + big, sn=z + big, o=z, a=z + fp16.ONE, b=z))
    await bench.drain()  # the writer runs beside the stream: land the words first
    layer = dict(bench.random_layer(0), residual_en=0) if cfg.residual else bench.random_layer(0)
    hi = (np.arange(2 * n) % 2 == 0).reshape(2, n)
    ins = bench.random_inputs(2, corners=0)
    ins["p"], ins["n"] = np.where(hi, cfg.adc_max, 0), np.where(hi, 0, cfg.adc_max)
    bench.send_vectors(ins, [layer] * 2)
    await bench.drain()
    one, half, zero = fp16.ONE, int(fp16.encode(0.5)), 0
    for sign in (0, 0x8000):      # y = ±(P + 0.5): ties to even in the int8 conversion
        bench.write_params(gb.LDPUParams(sp=np.full(n, one), sn=np.full(n, zero),
                                         o=np.full(n, half), a=np.full(n, one ^ sign),
                                         b=np.full(n, zero)))
        await bench.drain()
        layer = {"c": zero, "relu_mid": 0, "relu_out": 0}
        if cfg.residual:
            layer["residual_en"] = 0
        ins = bench.random_inputs(2, corners=0)
        ins["p"] = np.minimum(ins["p"], 200)
        bench.send_vectors(ins, [layer] * 2)
        await bench.drain()
        bench.cov.hit("event", "ties_planted")
    await bench.drain()
    await bench.check_status()
    bench.finish(f"corner_classes_{'_'.join(stalls)}", require=True)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def param_rewrites(dut, stalls):
    """Parameters rewritten between layers and single columns rewritten mid-vector."""
    await postproc.param_rewrites(LDPUBench(dut, stalls, seed_offset=3), stalls)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def reset_mid_vector(dut, stalls):
    """`rst` in the middle of a vector: in-flight beats dropped, parameters survive."""
    await postproc.reset_mid_vector(LDPUBench(dut, stalls, seed_offset=4), stalls)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def framing_errors(dut, stalls):
    """`last` early, late and missing: sticky flag, resynchronisation, `clear`."""
    await postproc.framing_errors(LDPUBench(dut, stalls, seed_offset=5), stalls)


@cocotb.test()
async def register_errors(dut):
    """A write beyond the last column is dropped and raises `reg_error`; `clear` lowers it."""
    bench = LDPUBench(dut, seed_offset=6)
    await bench.start()
    bench.write_params(bench.random_params())
    await postproc.write_beyond_last_column(bench)
    bench.send_vectors(bench.random_inputs(1), [bench.random_layer()])
    await bench.drain()
    await bench.check_status()
    bench.finish("register_errors")


@cocotb.test()
async def clamp_counter(dut):
    """Saturated outputs are counted once each, the counter saturates, `clear` restarts it."""
    bench = LDPUBench(dut, ("random", "random"), seed_offset=7)
    cfg = bench.cfg
    await bench.start()
    big = int(fp16.encode(300.0))
    z = np.zeros(cfg.columns, np.int64)
    bench.write_params(gb.LDPUParams(sp=z + fp16.ONE, sn=z, o=z + big, a=z + fp16.ONE, b=z))
    await bench.drain()
    layer = {"c": 0, "relu_mid": 0, "relu_out": 0}
    if cfg.residual:
        layer["residual_en"] = 0
    top = (1 << cfg.clamp_count_bits) - 1
    needed = max(2, (top + 1) // cfg.columns + 1) if top < 64 * cfg.columns else 2
    bench.send_vectors(bench.random_inputs(needed, corners=0), [layer] * needed)
    await bench.drain()
    await bench.check_status()
    await bench.pulse("clear")
    await bench.check_status()
    bench.send_vectors(bench.random_inputs(1), [layer])
    await bench.drain()
    await bench.check_status()
    bench.finish("clamp_counter")


@cocotb.test()
async def throughput(dut):
    """K vectors without stalls: K·columns + latency clocks, one value per clock."""
    await postproc.throughput(LDPUBench(dut, seed_offset=8), "ldpu")


@cocotb.test(expect_fail=True)
async def expect_fail_corrupted_model(dut):
    """The checker must be able to fail: the model swaps P and N; this test passes only if the
    scoreboard catches it."""
    bench = LDPUBench(dut, seed_offset=9, corrupt=True)
    cfg = bench.cfg
    await bench.start()
    z = np.zeros(cfg.columns, np.int64)
    scale = int(fp16.encode(100.0 / cfg.adc_max))
    bench.write_params(gb.LDPUParams(sp=z + scale, sn=z + scale, o=z, a=z + fp16.ONE, b=z))
    await bench.drain()
    layer = {"c": 0, "relu_mid": 0, "relu_out": 0}
    if cfg.residual:
        layer["residual_en"] = 0
    ins = bench.random_inputs(8, corners=0)
    ins["n"] = ins["p"] // 4        # P ≠ N wherever P > 0: every such output changes sign
    bench.send_vectors(ins, [layer] * 8)
    await bench.drain()
    bench.finish("expect_fail")
