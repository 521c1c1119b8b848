"""cocotb tie-in of mixed-precision training and the ESSOP Verilog: run by
tests/test_sim_training.py.

The x and δ vectors of a real training step (both layers of one mini-batch of an ESSOP exact-mode
run of `golden.essop_step`, tiled in the driver's order) come from a JSON file (env
`TB_TRAIN_VECTORS`, written by the pytest from `golden.essop_step.rtl_vectors`). The bench reseeds the
engine with the run's LFSR state before the step, sends every product in order (layer 0's, then
layer 1's, the state continuing as in training) and checks:
- every read-out row against `golden.essop` through the in-order scoreboard of verif/tb_essop.py;
- the counts and exponents, reassembled per product, bit for bit against those the training run
  computed (`weight_update` "exact"), and the ΔW decoded from them against the run's ΔW.
Environment: TB_META, TB_SEED, TB_OUT (verif/bench.py) and TB_TRAIN_VECTORS.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np

from golden import essop as g
from golden import essop_step as gt
from verif.tb_essop import CFG, ESSOPBench

VECTORS = json.loads(Path(os.environ["TB_TRAIN_VECTORS"]).read_text()) \
    if "TB_TRAIN_VECTORS" in os.environ else None
# the counts and exponents the unstalled `training_step` read, for the expect-fail check of the
# comparison (which then needs no run of its own: a quarter of the bench's time)
READ = {}


async def run_step(dut, stalls, corrupt=False, name="training_step"):
    """Send the step's products; return (bench, counts (P, rows, cols), exponents (P,)) read."""
    v = VECTORS
    assert v is not None, "TB_TRAIN_VECTORS is not set"
    assert v["essop"] == CFG.name, f"vectors for ESSOP preset {v['essop']}, engine {CFG.name}"
    bench = ESSOPBench(dut, stalls, seed_offset=20, corrupt=corrupt, name=name)
    await bench.start()
    words = []
    bench.sink.on_beat = lambda w, c: (words.append(w), bench._output(w, c))
    seeds = {"seed_x": v["seeds"][0], "seed_d": v["seeds"][1]}
    first = True
    for layer in v["layers"]:
        xs, ds = np.array(layer["xs"], np.int64), np.array(layer["ds"], np.int64)
        regs = dict(seeds, log2_bl=v["log2_bl"], lr_shift=layer["lr_shift"])
        bench.send(xs, ds, [dict(regs, reseed=first)] + [regs] * (len(xs) - 1))
        first = False
    await bench.drain()
    await bench.check_status()
    rows = bench.codec_out.decode(words)
    c = rows["c"].reshape(-1, CFG.rows, CFG.cols)
    e = rows["exp"][::CFG.readout_beats]
    assert not rows["error"].any(), "an error product in a training step"
    return bench, c, e


def check_against_run(v, c, e, corrupt=False):
    """The counts and exponents read, per layer, against the training run's; ΔW decoded from
    them against the run's ΔW. `corrupt` changes one expected count (the check must then fail)."""
    start = 0
    for layer in v["layers"]:
        want_c = np.array(layer["c"], np.int64)
        want_e = np.array(layer["exp"], np.int64)
        if corrupt:
            want_c[-1, -1, 0] += 1
        got_c, got_e = c[start:start + len(want_c)], e[start:start + len(want_c)]
        start += len(want_c)
        bad = np.argwhere(got_c != want_c)
        assert not bad.size, (f"layer {layer['layer']}: {len(bad)} counts differ from the training "
                              f"run's, first at product/row/col {tuple(bad[0])}: RTL "
                              f"{got_c[tuple(bad[0])]}, training {want_c[tuple(bad[0])]}")
        assert np.array_equal(got_e, want_e), f"layer {layer['layer']}: exponents differ"
        # ΔW of the mini-batch from the RTL's counts equals the run's (sum over the samples)
        dw_tiles = g.decode(CFG, got_c, got_e[:, None, None])
        dw_tiles = dw_tiles.reshape(layer["batch"], -1, CFG.rows, CFG.cols).sum(axis=0)
        dw = gt.untile(CFG, dw_tiles, layer["m"], layer["n"])
        assert np.array_equal(dw, np.array(layer["dw"])), f"layer {layer['layer']}: ΔW differs"
    assert start == len(c), f"{len(c)} products read, {start} expected"


@cocotb.test()
@cocotb.parametrize(stalls=[("none", "none"), ("random", "random")])
async def training_step(dut, stalls):
    """A real training step's outer products: the RTL's counts equal the training run's."""
    bench, c, e = await run_step(dut, stalls, name=f"training_step_{'_'.join(stalls)}")
    if stalls == ("none", "none"):
        READ.update(c=c, e=e)
    check_against_run(VECTORS, c, e)
    bench.cov.hit("event", "training_step")
    bench.finish(f"training_step_{'_'.join(stalls)}")


@cocotb.test(expect_fail=True)
async def expect_fail_corrupted_run_counts(dut):
    """The comparison with the training run must be able to fail: one expected count is off by
    one (on what the unstalled `training_step` read; the step runs here only when that test
    did not run)."""
    if READ:
        c, e = READ["c"], READ["e"]
    else:
        bench, c, e = await run_step(dut, ("none", "none"), name="expect_fail_run")
        bench.finish("expect_fail_run")
    check_against_run(VECTORS, c, e, corrupt=True)


@cocotb.test(expect_fail=True)
async def expect_fail_corrupted_model(dut):
    """The checker must be able to fail: the scoreboard's model runs the x LFSR one clock ahead
    on the same training step."""
    bench, _, _ = await run_step(dut, ("none", "none"), corrupt=True, name="expect_fail")
    bench.finish("expect_fail")
