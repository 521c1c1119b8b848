"""cocotb test bench of the NMPU, for any config: run by tests/test_sim_nmpu.py.

The bench reads the port map JSON that `hdl.export` wrote (env `TB_META`), drives the input
stream, the parameter port, the layer registers, `clear` and `rst`, and checks every output
beat with `golden.nmpu.forward` through an in-order scoreboard. Environment:
  TB_META     path of the `<unit>_<tag>.json` written with the Verilog
  TB_SEED     seed of every random choice (printed)
  TB_OUT      folder for stats, coverage and throughput JSON
  TB_SCALE    multiplies the number of vectors per scenario (regressions use > 1)
  TB_EXHAUSTIVE_SHARE  fraction of the register settings the exhaustive test covers
"""

import itertools
import os

import cocotb
import numpy as np

from golden import nmpu as g
from hdl.config import NMPUConfig, RoundMode
from verif import postproc
from verif.bench import META, SEED, STALLS
from verif.bench import n_items as n_vectors
from verif.postproc import PostProcBench, PostProcModel

CFG = NMPUConfig.from_dict(META["config"])
EXHAUSTIVE_SHARE = float(os.environ.get("TB_EXHAUSTIVE_SHARE", "1"))
LAYER_FIELDS = list(META["ports"]["layer"]["fields"])


# -- reference model ------------------------------------------------------------------------------

class NMPUModel(PostProcModel):
    """The NMPU's expectations: `golden.nmpu.forward`; a reserved `round_mode` raises reg_error
    and rounds like floor, as the RTL does."""

    layer_names = ("shift", "pre_cut", "round_mode", "relu_mid", "relu_out", "residual_en")

    def unpack(self, word):
        return g.unpack(self.cfg, word)

    def compute(self, regs, prm, ins):
        cfg = self.cfg
        params = g.NMPUParams(sp=prm["sp"], sn=prm.get("sn"), o=prm["o"], e=prm.get("e"))
        for k, v in g.static_fields(cfg).items():  # no register: the bench's value is not driven
            regs[k] = np.full_like(regs["relu_mid"], v)
        if (regs["round_mode"] > max(RoundMode)).any():
            self.reg_error = True
        regs["round_mode"] = np.where(regs["round_mode"] > max(RoundMode), 0, regs["round_mode"])
        if self.corrupt and not cfg.static_layer:
            regs["shift"] = (regs["shift"] + 1) % (cfg.max_shift + 1)
        y, clamped = g.forward(cfg, g.NMPULayer(**regs), params, **ins, return_clamped=True)
        if self.corrupt and cfg.static_layer:  # no shift to corrupt: flip the output LSB
            y = y ^ 1
        return y, clamped


class NMPUBench(PostProcBench):
    def __init__(self, dut, stalls=("none", "none"), seed_offset=0, corrupt=False, name="nmpu"):
        self.model = NMPUModel(CFG, corrupt=corrupt)
        super().__init__(dut, CFG, stalls, seed_offset, name)

    def pack_params(self, params):
        return g.pack_params(self.cfg, params)

    def zero_params(self):
        return g.NMPUParams.zeros(self.cfg)

    # -- stimulus -----------------------------------------------------------------------------

    def random_params(self, corners=0.15, e_cycle=None):
        """Random codes, a share on the rails; with `e_cycle` = k, column j gets e = (j + k) mod
        (e_max + 1), so e_max + 1 consecutive calls give every column every exponent."""
        cfg, rng = self.cfg, self.rng

        def codes(lo, hi):
            v = rng.integers(lo, hi + 1, cfg.columns)
            pick = rng.random(cfg.columns)
            return np.where(pick < corners / 2, lo, np.where(pick < corners, hi, v))
        return g.NMPUParams(sp=codes(0, cfg.scale_max),
                            sn=codes(0, cfg.scale_max) if cfg.two_scales else None,
                            o=codes(*cfg.offset_range),
                            e=None if not cfg.exp_bits else codes(0, cfg.e_max) if e_cycle is None
                            else (np.arange(cfg.columns) + e_cycle) % (cfg.e_max + 1))

    def random_inputs(self, v, corners=0.1):
        cfg, rng = self.cfg, self.rng
        shape = (v, cfg.columns)

        def draw(lo, hi):
            a = rng.integers(lo, hi + 1, shape)
            pick = rng.random(shape)
            return np.where(pick < corners / 2, lo, np.where(pick < corners, hi, a))
        ins = {"p": draw(0, cfg.adc_max), "n": draw(0, cfg.adc_max)} if cfg.dual else {"x": draw(*cfg.x_range)}
        if cfg.residual:
            ins["res"] = draw(*cfg.out_range)
        return ins

    def random_layer(self, k=None):
        """Register values; with `k`, register values cycle so every value of every register
        comes up within a few dozen vectors."""
        cfg, rng = self.cfg, self.rng
        pick = (lambda n: k % n) if k is not None else (lambda n: int(rng.integers(0, n)))
        layer = {"shift": pick(cfg.max_shift + 1),
                 "pre_cut": int(rng.integers(0, cfg.max_shift + 1)),
                 "round_mode": pick(3), "relu_mid": int(rng.integers(0, 2)),
                 "relu_out": int(rng.integers(0, 2))}
        if k is not None:  # stride 7 is odd: it visits every pre_cut value in max_shift + 1 steps
            layer["pre_cut"] = (7 * k + 3) % (cfg.max_shift + 1)
        if cfg.residual:
            layer["residual_en"] = int(rng.integers(0, 2))
        return layer

    def useful_layer(self, layer):
        """Pull a random shift towards the range where outputs are neither all 0 nor clamped."""
        lo = max(0, self.cfg.acc_bits - self.cfg.out_bits - 3)
        layer = dict(layer)
        if self.rng.random() < 0.6:
            layer["shift"] = int(self.rng.integers(lo, min(self.cfg.max_shift, lo + 6) + 1))
        return layer

    # -- monitors -----------------------------------------------------------------------------

    def classify_batch(self, b):
        """Coverage classes of a batch from the golden steps: registers, ties per mode, columns."""
        cfg, cov = self.cfg, self.cov
        regs, prm = b["regs"], b["prm"]
        params = g.NMPUParams(sp=prm["sp"], sn=prm.get("sn"), o=prm["o"], e=prm.get("e"))
        for k in LAYER_FIELDS:
            cov.hit_many(k, zip(*np.unique(regs[k], return_counts=True)))
        cov.hit_many("column_beat", zip(*np.unique(b["pos"], return_counts=True)))
        cols = b["pos"][:, None] * cfg.lanes + np.arange(cfg.lanes)
        cov.hit_many("column", zip(*np.unique(cols, return_counts=True)))
        acc = g.affine(cfg, g.NMPUParams(sp=params.sp, sn=params.sn, o=params.o),
                       **{k: v for k, v in b["ins"].items() if k != "r"})
        s = g.total_shift(cfg, regs["shift"], params.e)
        c = np.minimum(regs["pre_cut"], s)
        r = s - c
        rem = (acc >> c) & ((np.int64(1) << r) - 1)
        tie = (r > 0) & (rem == np.where(r > 0, np.int64(1) << np.maximum(r - 1, 0), -1))
        for mode in range(3):
            cov.hit("tie_by_mode", RoundMode(mode).name, int((tie & (regs["round_mode"] == mode)).sum()))
        if cfg.exp_bits:
            cov.hit_many("e", zip(*np.unique(params.e, return_counts=True)))
        cov.hit("pre_cut_ge_shift", "yes", int((regs["pre_cut"] >= regs["shift"]).sum()))
        lo, hi = cfg.out_range
        y, clamped = b["y"], b["clamped"]
        cov.hit("rail", "low", int((y == lo).sum()))
        cov.hit("rail", "high", int((y == hi).sum()))
        cov.hit("clamp", "low", int((clamped & (y == lo)).sum()))
        cov.hit("clamp", "high", int((clamped & (y == hi)).sum()))

# -- scenarios ------------------------------------------------------------------------------------

def _require_basic(bench, with_registers=True):
    cfg = bench.cfg
    bench.cov.require("column_beat", range(cfg.beats))
    bench.cov.require("column", range(cfg.columns))
    if with_registers and not cfg.static_layer:  # a static layer's are constants, no registers
        bench.cov.require("shift", range(cfg.max_shift + 1))
        bench.cov.require("pre_cut", range(cfg.max_shift + 1))
        bench.cov.require("round_mode", range(3))
    if with_registers:
        bench.cov.require("relu_mid", (0, 1))
        bench.cov.require("relu_out", (0, 1))
        if cfg.residual:
            bench.cov.require("residual_en", (0, 1))
        if cfg.exp_bits:
            bench.cov.require("e", range(cfg.e_max + 1))


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def random_vectors(dut, stalls):
    """Random vectors over all register values, new random parameters per layer, written
    while the previous layer still streams."""
    bench = NMPUBench(dut, stalls, seed_offset=1)
    await bench.start()
    _require_basic(bench)
    cfg = bench.cfg
    # the first max_shift + 1 layers step every register through all of its values (coverage
    # closes by construction, and the check below proves the DUT saw them); then random layers
    # pulled towards shifts where outputs are neither all zero nor all clamped
    sweep = cfg.max_shift + 1
    per_layer = max(1, min(3, 64 // cfg.beats))  # long vectors (serial): fewer per layer
    for k in range(sweep + n_vectors(16)):
        if k % 4 == 0 or k <= cfg.e_max:
            bench.write_params(bench.random_params(e_cycle=k))
        else:  # partial rewrites keep parameter traffic from dominating wide configs
            cols = bench.rng.choice(cfg.columns, min(cfg.columns, 2 * cfg.lanes), replace=False)
            bench.write_params(bench.random_params(), cols)
        layer = bench.random_layer(k) if k < sweep else bench.useful_layer(bench.random_layer())
        bench.send_vectors(bench.random_inputs(per_layer), [layer] * per_layer)
    await bench.drain()
    await bench.check_status()
    bench.finish(f"random_vectors_{'_'.join(stalls)}", require=stalls == ("none", "none"))


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def corner_classes(dut, stalls):
    """Rails of every input, scales and offsets at their extremes, planted rounding ties."""
    bench = NMPUBench(dut, stalls, seed_offset=2)
    cfg = bench.cfg
    await bench.start()
    # a rail is required where the format can reach it (at shift 0, or the static shift, e 0,
    # with the residual): bounds that rounding cannot move away from the rail
    s0 = cfg.static_shift if cfg.static_layer else 0
    acc_lo, acc_hi = -((-cfg.acc_range[0]) >> s0), cfg.acc_range[1] >> s0
    out_lo, out_hi = cfg.out_range
    reach = (acc_lo + (out_lo if cfg.residual else 0) <= out_lo,
             acc_hi + (out_hi if cfg.residual else 0) >= out_hi)
    bench.cov.require("rail", [name for name, ok in zip(("low", "high"), reach) if ok])
    extremes = []
    for e, sp, sn, o in itertools.product(sorted({0, cfg.e_max}), (0, cfg.scale_max),
                                          (0, cfg.scale_max), cfg.offset_range):
        extremes.append(g.NMPUParams(
            sp=np.full(cfg.columns, sp), sn=np.full(cfg.columns, sn) if cfg.two_scales else None,
            o=np.full(cfg.columns, o), e=np.full(cfg.columns, e) if cfg.exp_bits else None))
    for k, params in enumerate(extremes):
        await bench.drain()
        bench.write_params(params)
        await bench.drain()
        n_vec = max(2, 32 // cfg.columns)  # enough rail values for narrow configs too
        ins = bench.random_inputs(n_vec, corners=0.9)
        for mode in range(3):
            for shift in sorted({0, 1, cfg.max_shift // 2, cfg.max_shift}):
                layer = {"shift": shift, "pre_cut": int(bench.rng.integers(0, cfg.max_shift + 1)),
                         "round_mode": mode,
                         # ReLUs only in the last mode, so every extreme can reach both rails
                         "relu_mid": int(mode == 2 and k % 2 == 0),
                         "relu_out": int(mode == 2 and k % 2 == 1)}
                if cfg.residual:
                    layer["residual_en"] = 1
                bench.send_vectors(ins, [layer] * n_vec)
    # planted ties: sn = 0, o = 0 and a count whose kept product (sp·count floored by
    # 2^drop_bits) is odd give acc = odd · 2^scale_align, a tie at s = scale_align + 1 (pre-cut
    # 0), positive and (signed mode) negative; sp = 2^drop_bits keeps the count itself, or the
    # largest scale where that does not fit (then some counts still keep an odd product: the
    # config refuses drop_bits that floor every product away)
    # (a static layer has one shift and one mode: its rounding is proven by the exhaustive
    # compression check and the formal datapath proof, which take the same block)
    s_tie = cfg.scale_align + 1
    if s_tie <= cfg.max_shift and not cfg.static_layer:
        bench.cov.require("tie_by_mode", ("FLOOR", "HALF_UP", "HALF_EVEN"))
        await bench.drain()
        z = np.zeros(cfg.columns, np.int64)
        sp = min(1 << cfg.drop_bits, cfg.scale_max)
        bench.write_params(g.NMPUParams(sp=z + sp, sn=z if cfg.two_scales else None, o=z,
                                        e=z if cfg.exp_bits else None))
        await bench.drain()  # the writer runs beside the stream (and pauses): land it first
        ins = bench.random_inputs(3)
        name = "p" if cfg.dual else "x"
        lo, hi = cfg.x_range if name == "x" else (0, cfg.adc_max)
        counts = np.arange(lo, hi + 1)
        odd = counts[(counts * sp >> cfg.drop_bits) & 1 == 1]
        assert len(odd), f"no count keeps an odd product at sp = {sp}, drop_bits {cfg.drop_bits}"
        ins[name] = bench.rng.choice(odd, ins[name].shape)
        if cfg.dual:
            ins["n"][:] = 0
        for mode in range(3):
            layer = {"shift": s_tie, "pre_cut": 0, "round_mode": mode, "relu_mid": 0, "relu_out": 0}
            if cfg.residual:
                layer["residual_en"] = 0
            bench.send_vectors(ins, [layer] * 3)
    await bench.drain()
    await bench.check_status()
    bench.finish(f"corner_classes_{'_'.join(stalls)}", require=True)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def param_rewrites(dut, stalls):
    """Parameters rewritten between layers and single columns rewritten mid-vector."""
    await postproc.param_rewrites(NMPUBench(dut, stalls, seed_offset=3), stalls)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def reset_mid_vector(dut, stalls):
    """`rst` in the middle of a vector: in-flight beats dropped, parameters survive."""
    await postproc.reset_mid_vector(NMPUBench(dut, stalls, seed_offset=4), stalls)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def framing_errors(dut, stalls):
    """`last` early, late and missing: sticky flag, resynchronisation, `clear`."""
    await postproc.framing_errors(NMPUBench(dut, stalls, seed_offset=5), stalls)


@cocotb.test()
async def register_errors(dut):
    """A reserved `round_mode` code and a write beyond the last column raise `reg_error`
    (the beat rounds like floor, the write is dropped); `clear` lowers it."""
    bench = NMPUBench(dut, seed_offset=6)
    await bench.start()
    bench.write_params(bench.random_params())
    if not bench.cfg.static_layer:  # a static layer has no round-mode register
        layer = bench.useful_layer(bench.random_layer())
        layer["round_mode"] = 3
        bench.send_vectors(bench.random_inputs(1), [layer])
        await bench.drain()
        await bench.check_status()
        assert int(dut.reg_error.value) == 1
        await bench.pulse("clear")
        await bench.check_status()
    await postproc.write_beyond_last_column(bench)
    bench.send_vectors(bench.random_inputs(1), [bench.random_layer()])
    await bench.drain()
    await bench.check_status()
    bench.finish("register_errors")


@cocotb.test()
async def clamp_counter(dut):
    """Many clamped values: the counter counts each once, saturates, and `clear` restarts it."""
    bench = NMPUBench(dut, ("random", "random"), seed_offset=7)
    cfg = bench.cfg
    await bench.start()
    params = g.NMPUParams(sp=np.full(cfg.columns, cfg.scale_max),
                          sn=np.zeros(cfg.columns, np.int64) if cfg.two_scales else None,
                          o=np.full(cfg.columns, cfg.offset_range[1]),
                          e=np.zeros(cfg.columns, np.int64) if cfg.exp_bits else None)
    bench.write_params(params)
    layer = {"shift": 0, "pre_cut": 0, "round_mode": 0, "relu_mid": 0, "relu_out": 0}
    if cfg.residual:
        layer["residual_en"] = 0
    bench.send_vectors(bench.random_inputs(2), [layer] * 2)
    await bench.drain()
    await bench.check_status()
    top = (1 << cfg.clamp_count_bits) - 1
    needed = max(0, (top + 1) // cfg.columns + 1)
    if needed <= 64:  # narrow counters: drive it into saturation
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
    """K vectors without stalls: K·beats + latency clocks (to throughput.json)."""
    await postproc.throughput(NMPUBench(dut, seed_offset=8), "nmpu")


@cocotb.test(expect_fail=True)
async def expect_fail_corrupted_model(dut):
    """The checker must be able to fail: the model adds one to `shift`; this test passes only
    if the scoreboard catches it."""
    bench = NMPUBench(dut, seed_offset=9, corrupt=True)
    cfg = bench.cfg
    await bench.start()
    # full-scale codes at a shift where outputs span their range, so that one more bit of
    # shift changes most outputs (a corruption the stimulus cannot hide)
    z = np.zeros(cfg.columns, np.int64)
    bench.write_params(g.NMPUParams(sp=z + cfg.scale_max, sn=z if cfg.two_scales else None, o=z,
                                    e=z if cfg.exp_bits else None))
    term_max = max(abs(t) for t in cfg.term_range) << cfg.scale_align
    shift = min(cfg.max_shift, max(0, term_max.bit_length() - (cfg.out_bits - 1)))
    layer = {"shift": shift, "pre_cut": 0, "round_mode": 0,
             "relu_mid": 0, "relu_out": 0}
    if cfg.residual:
        layer["residual_en"] = 0
    bench.send_vectors(bench.random_inputs(32), [layer] * 32)
    await bench.drain()
    bench.finish("expect_fail")


@cocotb.test(skip=os.environ.get("TB_EXHAUSTIVE", "0") != "1")
async def exhaustive(dut):
    """Every input value of a column (P, N or X, and R) under every register setting, each
    column of the vector seeing every value. TB_EXHAUSTIVE_SHARE < 1 takes an evenly spread,
    seed-rotated subset of the settings."""
    bench = NMPUBench(dut, seed_offset=10)
    bench.classify = False  # coverage here is by construction: every setting, every value
    cfg = bench.cfg
    await bench.start()
    if cfg.dual:
        grids = [np.arange(cfg.adc_max + 1), np.arange(cfg.adc_max + 1)]
        names = ["p", "n"]
    else:
        grids, names = [np.arange(cfg.x_range[0], cfg.x_range[1] + 1)], ["x"]
    if cfg.residual:
        grids.append(np.arange(cfg.out_range[0], cfg.out_range[1] + 1))
        names.append("res")
    combos = np.array(list(itertools.product(*grids)))  # (C, fields)
    n_combo = len(combos)
    settings = list(itertools.product(
        range(cfg.max_shift + 1), range(cfg.max_shift + 1), range(3), (0, 1), (0, 1),
        (0, 1) if cfg.residual else (0,)))
    step = max(1, int(round(1 / EXHAUSTIVE_SHARE)))
    chosen = settings[SEED % step::step]
    dut._log.info("exhaustive: %d input combinations x %d of %d register settings", n_combo,
                  len(chosen), len(settings))
    bench.cov.require("settings", range(len(chosen)))
    # every column sees every combination: column j takes combination (v + j·stride) mod C
    stride = max(1, n_combo // cfg.columns)
    idx = (np.arange(n_combo)[:, None] + stride * np.arange(cfg.columns)[None, :]) % n_combo
    for i, (shift, pre_cut, mode, rm, ro, re_) in enumerate(chosen):
        if i % 8 == 0:
            bench.write_params(bench.random_params(corners=0.3))
        layer = {"shift": shift, "pre_cut": pre_cut, "round_mode": mode, "relu_mid": rm, "relu_out": ro}
        if cfg.residual:
            layer["residual_en"] = re_
        ins = {name: combos[idx, f] for f, name in enumerate(names)}
        bench.send_vectors(ins, [layer] * n_combo)
        bench.cov.hit("settings", i)
        if len(bench.source.queue) > 4096:
            await bench.loop.wait_until(lambda: len(bench.source.queue) < 1024, 10**7, "the source")
    await bench.drain()
    await bench.check_status()
    bench.finish("exhaustive", require=True)
