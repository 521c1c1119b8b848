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
import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden import nmpu as g
from hdl.config import NMPUConfig, RoundMode
from verif.bench import META, OUT, SEED, STALLS, StreamBench
from verif.bench import n_items as n_vectors
from verif.payload import Codec
from verif.streams import _Port, pause_pattern

CFG = NMPUConfig.from_dict(META["config"])
EXHAUSTIVE_SHARE = float(os.environ.get("TB_EXHAUSTIVE_SHARE", "1"))
LAYER_FIELDS = list(META["ports"]["layer"]["fields"])


# -- reference model ------------------------------------------------------------------------------

class NMPUModel:
    """What the unit holds (parameter table, beat position, status) and what it must output.

    Accepted beats are queued with the parameter table of their moment (copied on write) and
    their layer registers; `expectations` runs `golden.nmpu.frame` and `golden.nmpu.forward`
    over the whole queue at once.
    """

    def __init__(self, cfg, corrupt=False):
        self.cfg = cfg
        self.corrupt = corrupt
        z = np.zeros(cfg.columns, dtype=np.int64)
        self.table = {name: z.copy() for name, _ in cfg.word_fields}
        self.reset()

    def reset(self):
        self.position = 0
        self.pending = []
        self.frame_error = False
        self.reg_error = False
        self.clamps = 0

    def write(self, col, word):
        if col >= self.cfg.columns:
            self.reg_error = True
            return
        self.table = {k: v.copy() for k, v in self.table.items()}
        for name, value in g.unpack(self.cfg, word).items():
            self.table[name][col] = value

    def accept(self, fields, layer):
        """One accepted beat: `fields` its payload (arrays over lanes), `layer` its registers."""
        self.pending.append((fields, self.table, layer))

    def expectations(self):
        """(expected output beats, batch arrays for coverage) of every pending beat, in order."""
        if not self.pending:
            return [], None
        cfg, pending = self.cfg, self.pending
        self.pending = []
        pos, err, self.position = g.frame(cfg, [b[0]["last"] for b in pending], start=self.position)
        self.frame_error |= bool(err.any())
        cols = pos[:, None] * cfg.lanes + np.arange(cfg.lanes)
        prm = {name: np.stack([b[1][name][c] for b, c in zip(pending, cols)])
               for name, _ in cfg.word_fields}
        params = g.NMPUParams(sp=prm["sp"], sn=prm.get("sn"), o=prm["o"], e=prm.get("e"))
        regs = {k: np.array([b[2].get(k, 0) for b in pending])[:, None]
                for k in ("shift", "pre_cut", "round_mode", "relu_mid", "relu_out", "residual_en")}
        if (regs["round_mode"] > max(RoundMode)).any():
            self.reg_error = True
        # a reserved round_mode code rounds like floor in the RTL (and raises reg_error)
        regs["round_mode"] = np.where(regs["round_mode"] > max(RoundMode), 0, regs["round_mode"])
        if self.corrupt:
            regs["shift"] = (regs["shift"] + 1) % (cfg.max_shift + 1)
        names = ("p", "n") if cfg.dual else ("x",)
        ins = {k: np.stack([b[0][k] for b in pending]) for k in names}
        if cfg.residual:
            ins["r"] = np.stack([b[0]["res"] for b in pending])
        y, clamped = g.forward(cfg, g.NMPULayer(**regs), params, **ins, return_clamped=True)
        self.clamps += int(clamped.sum())
        out = [{"y": y[k], "last": pending[k][0]["last"], "_info": f"position {pos[k]}"}
               for k in range(len(pending))]
        return out, dict(pos=pos, params=params, regs=regs, ins=ins, y=y, clamped=clamped)


# -- agents ---------------------------------------------------------------------------------------

class ParamWriter:
    """Drives the parameter port from a queue of (column, word); one write per clock."""

    def __init__(self, dut, model, pause):
        self.en, self.addr, self.data = (_Port(getattr(dut, f"wr__{n}")) for n in ("en", "addr", "data"))
        self.model = model
        self.pause = pause
        self.queue = []
        self.current = None
        self.writes = 0

    def drive(self, cycle):
        self.current = None
        if self.queue and not next(self.pause):
            self.current = self.queue.pop(0)
            self.addr.set(self.current[0])
            self.data.set(self.current[1])
        self.en.set(int(self.current is not None))

    def sample(self, cycle):
        if self.current is not None:  # lands at the coming edge, after that edge's beat
            self.model.write(*self.current)
            self.writes += 1


class NMPUBench(StreamBench):
    def __init__(self, dut, stalls=("none", "none"), seed_offset=0, corrupt=False, name="nmpu"):
        self.cfg = CFG
        self.model = NMPUModel(CFG, corrupt=corrupt)
        self.codec_layer = Codec(META["ports"]["layer"])
        self.clamps_base = 0
        self.classify = True
        self.layer_port = _Port(dut.layer)
        # sample order: beats accepted at an edge use the parameters from before that edge
        self.setup(dut, stalls, seed_offset, name, widths={"y": CFG.out_bits, "last": 1},
                   fields=("y", "last"), pulses=("clear", "rst"), agents_before=[])
        self.writer = ParamWriter(dut, self.model, pause_pattern(stalls[0], self.rng))
        self.loop.agents[2:2] = [LayerDriver(self), self.writer]

    def idle_inputs(self):
        self.dut.wr__en.value = 0
        self.dut.layer.value = 0

    def inputs_idle(self):
        return self.source.idle() and not self.writer.queue

    async def start(self):
        await super().start()
        # parameters survive reset (and earlier tests): start from a known table
        self.write_params(g.NMPUParams.zeros(self.cfg))
        await self.drain()
        self.t0 = time.perf_counter()

    # -- stimulus -----------------------------------------------------------------------------

    def layer_value(self, layer):
        return self.codec_layer.encode({k: [layer.get(k, 0)] for k in LAYER_FIELDS})[0]

    def send_vectors(self, inputs, layers, lasts=None):
        """inputs: dict of arrays (V, columns); layers: one register dict per vector (or per
        beat with `lasts` given); lasts: optional per-beat `last` flags to break framing."""
        cfg = self.cfg
        v = len(next(iter(inputs.values())))
        beats = {}
        for k, a in inputs.items():
            beats[k] = np.asarray(a).reshape(v * cfg.beats, cfg.lanes)
        if lasts is None:
            lasts = np.tile(np.arange(cfg.beats) == cfg.beats - 1, v).astype(np.int64)
            per_beat_layers = [layers[k // cfg.beats] for k in range(v * cfg.beats)]
        else:
            per_beat_layers = layers
        beats["last"] = np.asarray(lasts)
        words = self.codec_in.encode(beats)
        layer_words = {}
        for k, word in enumerate(words):
            layer = per_beat_layers[k]
            key = id(layer)
            if key not in layer_words:
                layer_words[key] = self.layer_value(layer)
            fields = {name: beats[name][k] for name in beats}
            self.source.send(word, (layer, layer_words[key], fields))

    def write_params(self, params, cols=None):
        cols = range(self.cfg.columns) if cols is None else cols
        words = g.pack_params(self.cfg, params)
        self.writer.queue.extend((int(c), words[int(c)]) for c in cols)

    def random_params(self, corners=0.15, e_cycle=None):
        """Random codes, a share on the rails; with `e_cycle` = k, column j gets e = (j + k) mod
        (e_max + 1), so e_max + 1 consecutive calls give every column every exponent."""
        cfg, rng = self.cfg, self.rng

        def codes(lo, hi):
            v = rng.integers(lo, hi + 1, cfg.columns)
            pick = rng.random(cfg.columns)
            return np.where(pick < corners / 2, lo, np.where(pick < corners, hi, v))
        return g.NMPUParams(sp=codes(0, cfg.scale_max),
                            sn=codes(0, cfg.scale_max) if cfg.dual else None,
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

    def accepted(self, word, tag, cycle):
        self.model.accept(tag[2], tag[0])

    def settle(self):
        """Turn every accepted beat into an expectation (and coverage)."""
        expected, batch = self.model.expectations()
        for exp in expected:
            self.sb.expect(exp)
        if batch is not None and self.classify:
            self._classify(batch)

    def _classify(self, b):
        """Coverage classes of a batch from the golden steps: registers, ties per mode, columns."""
        cfg, cov = self.cfg, self.cov
        regs, params = b["regs"], b["params"]
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

    def on_pulse(self, name):  # clear
        self.settle()  # counts settle first: clear only when drained
        self.model.frame_error = self.model.reg_error = False
        self.clamps_base = self.model.clamps

    def on_reset(self):
        super().on_reset()
        self.clamps_base = 0

    # -- phases -------------------------------------------------------------------------------

    async def drain(self, timeout=None):
        """Wait until everything queued went in and every expected beat came out."""
        await super().drain(4 * (timeout or 200 + 50 * (len(self.source.queue) + len(self.writer.queue))))

    async def check_status(self):
        """Status outputs against the model (call when drained)."""
        await ClockCycles(self.dut.clk, 2)  # the clamp counter lags the output register
        self.settle()
        top = (1 << self.cfg.clamp_count_bits) - 1
        want = min(self.model.clamps - self.clamps_base, top)
        got = self.dut.clamp_count.value.to_unsigned()
        assert got == want, f"clamp_count: expected {want}, got {got}"
        assert int(self.dut.frame_error.value) == int(self.model.frame_error), \
            f"frame_error: expected {int(self.model.frame_error)}, got {int(self.dut.frame_error.value)}"
        assert int(self.dut.reg_error.value) == int(self.model.reg_error), \
            f"reg_error: expected {int(self.model.reg_error)}, got {int(self.dut.reg_error.value)}"
        self.cov.hit("clamp_count", "saturated" if want == top else "counting")

class LayerDriver:
    """Puts the layer registers of the beat on the bus next to it."""

    def __init__(self, bench):
        self.bench = bench

    def drive(self, cycle):
        cur = self.bench.source.current
        if cur is not None:
            self.bench.layer_port.set(cur[1][1])

    def sample(self, cycle):
        pass


# -- scenarios ------------------------------------------------------------------------------------

def _require_basic(bench, with_registers=True):
    cfg = bench.cfg
    bench.cov.require("column_beat", range(cfg.beats))
    bench.cov.require("column", range(cfg.columns))
    if with_registers:
        bench.cov.require("shift", range(cfg.max_shift + 1))
        bench.cov.require("pre_cut", range(cfg.max_shift + 1))
        bench.cov.require("round_mode", range(3))
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
    # a rail is required where the format can reach it (at shift 0, e 0, with the residual)
    acc_lo, acc_hi = cfg.acc_range
    out_lo, out_hi = cfg.out_range
    reach = (acc_lo + (out_lo if cfg.residual else 0) <= out_lo,
             acc_hi + (out_hi if cfg.residual else 0) >= out_hi)
    bench.cov.require("rail", [name for name, ok in zip(("low", "high"), reach) if ok])
    extremes = []
    for e, sp, sn, o in itertools.product(sorted({0, cfg.e_max}), (0, cfg.scale_max),
                                          (0, cfg.scale_max), cfg.offset_range):
        extremes.append(g.NMPUParams(
            sp=np.full(cfg.columns, sp), sn=np.full(cfg.columns, sn) if cfg.dual else None,
            o=np.full(cfg.columns, o), e=np.full(cfg.columns, e) if cfg.exp_bits else None))
    for k, params in enumerate(extremes):
        await bench.drain()
        bench.write_params(params)
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
    # planted ties: sp = 1, sn = 0, o = 0 and an odd count give acc = odd · 2^scale_align, a
    # tie at s = scale_align + 1 (pre-cut 0), positive and (signed mode) negative
    s_tie = cfg.scale_align + 1
    if s_tie <= cfg.max_shift:
        bench.cov.require("tie_by_mode", ("FLOOR", "HALF_UP", "HALF_EVEN"))
        await bench.drain()
        z = np.zeros(cfg.columns, np.int64)
        bench.write_params(g.NMPUParams(sp=z + 1, sn=z if cfg.dual else None, o=z,
                                        e=z if cfg.exp_bits else None))
        ins = bench.random_inputs(3)
        for name in ("p", "x"):
            if name in ins:
                ins[name] |= 1
                lo, hi = cfg.x_range if name == "x" else (0, cfg.adc_max)
                ins[name] = np.clip(ins[name], lo | 1, hi)
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
    """Parameters rewritten between layers (idle) and single columns rewritten mid-vector."""
    bench = NMPUBench(dut, stalls, seed_offset=3)
    cfg = bench.cfg
    await bench.start()
    for k in range(n_vectors(6)):
        await bench.drain()
        bench.write_params(bench.random_params())  # between layers
        await bench.drain()
        layer = bench.useful_layer(bench.random_layer())
        bench.send_vectors(bench.random_inputs(4), [layer] * 4)
        for _ in range(3 * cfg.beats):  # while streaming: scattered single-column writes
            cols = [int(bench.rng.integers(0, cfg.columns))]
            bench.write_params(bench.random_params(), cols)
        bench.cov.hit("event", "rewrite_while_streaming")
    await bench.drain()
    await bench.check_status()
    bench.finish(f"param_rewrites_{'_'.join(stalls)}")


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def reset_mid_vector(dut, stalls):
    """`rst` in the middle of a vector: in-flight beats are dropped, the beat position restarts
    at 0, parameters survive."""
    bench = NMPUBench(dut, stalls, seed_offset=4)
    cfg = bench.cfg
    await bench.start()
    bench.write_params(bench.random_params())
    for k in range(n_vectors(4)):
        layer = bench.useful_layer(bench.random_layer())
        bench.send_vectors(bench.random_inputs(3), [layer] * 3)
        await ClockCycles(dut.clk, int(bench.rng.integers(1, 3 * cfg.beats + 4)))
        await bench.pulse("rst")
        bench.rebase()
        bench.send_vectors(bench.random_inputs(2), [layer] * 2)
        await bench.drain()
        await bench.check_status()
    bench.finish(f"reset_mid_vector_{'_'.join(stalls)}")


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def framing_errors(dut, stalls):
    """`last` early, late and missing: the sticky flag rises, the unit resynchronises on the
    next `last`, every output still matches the golden framing, `clear` lowers the flag."""
    bench = NMPUBench(dut, stalls, seed_offset=5)
    cfg = bench.cfg
    await bench.start()
    bench.write_params(bench.random_params())
    for k in range(n_vectors(6)):
        layer = bench.useful_layer(bench.random_layer())
        n = 4 * cfg.beats
        lasts = (np.arange(n) % cfg.beats == cfg.beats - 1).astype(np.int64)
        kind = k % 3
        if kind == 0 and cfg.beats > 1:      # early last
            lasts[int(bench.rng.integers(0, cfg.beats - 1))] = 1
        elif kind == 1:                       # missing last
            lasts[cfg.beats - 1] = 0
        else:                                 # random flags
            lasts = (bench.rng.random(n) < 0.4).astype(np.int64)
        _, errors, _ = g.frame(cfg, lasts)
        bench.send_vectors(bench.random_inputs(4), [layer] * n, lasts=lasts)
        # then clean vectors: recovery
        bench.send_vectors(bench.random_inputs(2), [layer] * 2)
        await bench.drain()
        await bench.check_status()
        if errors.any():
            bench.cov.hit("event", "frame_error_seen")
        await bench.pulse("clear")
        await bench.check_status()
    bench.finish(f"framing_errors_{'_'.join(stalls)}")


@cocotb.test()
async def register_errors(dut):
    """A reserved `round_mode` code and a write beyond the last column raise `reg_error`
    (the beat rounds like floor, the write is dropped); `clear` lowers it."""
    bench = NMPUBench(dut, seed_offset=6)
    cfg = bench.cfg
    await bench.start()
    bench.write_params(bench.random_params())
    layer = bench.useful_layer(bench.random_layer())
    layer["round_mode"] = 3
    bench.send_vectors(bench.random_inputs(1), [layer])
    await bench.drain()
    await bench.check_status()
    assert int(dut.reg_error.value) == 1
    await bench.pulse("clear")
    await bench.check_status()
    if cfg.columns < (1 << cfg.addr_bits):
        bench.writer.queue.append((cfg.columns, 0))
        await bench.drain()
        await bench.check_status()
        assert int(dut.reg_error.value) == 1
        await bench.pulse("clear")
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
                          sn=np.zeros(cfg.columns, np.int64) if cfg.dual else None,
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
    """K vectors without stalls take K·beats + latency clocks from the first input handshake
    to the last output handshake; the measured figures go to throughput.json."""
    bench = NMPUBench(dut, seed_offset=8)
    cfg = bench.cfg
    await bench.start()
    bench.write_params(bench.random_params())
    await bench.drain()
    k = 16
    layer = bench.useful_layer(bench.random_layer())
    first = len(bench.accept_cycles)
    out_first = len(bench.out_cycles)
    bench.send_vectors(bench.random_inputs(k), [layer] * k)
    await bench.drain()
    acc_cycles = bench.accept_cycles[first:]
    out_cycles = bench.out_cycles[out_first:]
    clocks = out_cycles[-1] - acc_cycles[0] + 1
    latency = out_cycles[0] - acc_cycles[0]
    result = {"unit": "nmpu", "tag": cfg.tag, "sim": cocotb.SIM_NAME, "vectors": k,
              "beats_per_vector": cfg.beats, "clocks": clocks, "latency": latency,
              "cycles_per_vector": (clocks - latency) / k, "columns": cfg.columns}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    dut._log.info("throughput: %s", result)
    assert latency == META["latency"], f"latency {latency}, the component says {META['latency']}"
    assert clocks == k * cfg.beats + META["latency"], \
        f"{k} vectors took {clocks} clocks, not {k * cfg.beats + META['latency']}"
    bench.finish("throughput")


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
    bench.write_params(g.NMPUParams(sp=z + cfg.scale_max, sn=z if cfg.dual else None, o=z,
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
