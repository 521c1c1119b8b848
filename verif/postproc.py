"""The bench parts shared by the post-processing units (the NMPU and the FP16 LDPU): the same
stream conventions (`lanes` columns per beat, `beats` beats per vector framed by `last`), a
parameter port `wr` with one word per column, per-layer registers `layer` beside each beat, and
the status outputs `frame_error`, `reg_error`, `clamp_count` with `clear`.

A unit bench subclasses `PostProcModel` (its golden `forward`) and `PostProcBench` (its random
parameters, inputs and layers, its coverage classes); the scenarios below that need nothing
else are shared: each unit's tb module wraps them as its own cocotb tests.
"""

import json
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden.nmpu import frame
from verif.bench import META, OUT, StreamBench, n_items
from verif.payload import Codec
from verif.streams import _Port, pause_pattern

__all__ = ["PostProcModel", "ParamWriter", "LayerDriver", "PostProcBench", "param_rewrites",
           "reset_mid_vector", "framing_errors", "write_beyond_last_column", "throughput"]


class PostProcModel:
    """What the unit holds (parameter table, beat position, status) and what it must output.

    Accepted beats are queued with the parameter table of their moment (copied on write) and
    their layer registers; `expectations` frames the queue (`golden.nmpu.frame`, the same for
    every unit with `beats`) and computes it in one call of the subclass's `compute`.
    """

    layer_names = ()          # the layer register fields the golden model reads

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

    def unpack(self, word):
        raise NotImplementedError

    def compute(self, regs, prm, ins):
        """(y, clamped) of a batch: regs {name: (B, 1)}, prm {word field: (B, lanes)}, ins
        {p, n | x, r: (B, lanes)}."""
        raise NotImplementedError

    def write(self, col, word):
        if col >= self.cfg.columns:
            self.reg_error = True
            return
        self.table = {k: v.copy() for k, v in self.table.items()}
        for name, value in self.unpack(word).items():
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
        pos, err, self.position = frame(cfg, [b[0]["last"] for b in pending], start=self.position)
        self.frame_error |= bool(err.any())
        cols = pos[:, None] * cfg.lanes + np.arange(cfg.lanes)
        prm = {name: np.stack([b[1][name][c] for b, c in zip(pending, cols)])
               for name, _ in cfg.word_fields}
        regs = {k: np.array([b[2].get(k, 0) for b in pending])[:, None] for k in self.layer_names}
        names = ("p", "n") if cfg.dual else ("x",)
        ins = {k: np.stack([b[0][k] for b in pending]) for k in names}
        if cfg.residual:
            ins["r"] = np.stack([b[0]["res"] for b in pending])
        y, clamped = self.compute(regs, prm, ins)
        self.clamps += int(clamped.sum())
        out = [{"y": y[k], "last": pending[k][0]["last"], "_info": f"position {pos[k]}"}
               for k in range(len(pending))]
        return out, dict(pos=pos, prm=prm, regs=regs, ins=ins, y=y, clamped=clamped)


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


class LayerDriver:
    """Puts the layer registers of the beat on offer on the bus next to it."""

    def __init__(self, bench):
        self.bench = bench

    def drive(self, cycle):
        cur = self.bench.source.current
        if cur is not None:
            self.bench.layer_port.set(cur[1][1])

    def sample(self, cycle):
        pass


class PostProcBench(StreamBench):
    """Subclasses set `model` before calling `__init__` here and provide `pack_params(params)`,
    `zero_params()`, `random_params(...)`, `random_inputs(v, corners)`, `random_layer(k)`,
    `useful_layer(layer)` and `classify_batch(batch)`."""

    def __init__(self, dut, cfg, stalls, seed_offset, name):
        self.cfg = cfg
        self.codec_layer = Codec(META["ports"]["layer"])
        self.layer_fields = list(META["ports"]["layer"]["fields"])
        self.clamps_base = 0
        self.classify = True
        self.layer_port = _Port(dut.layer)
        self.setup(dut, stalls, seed_offset, name, widths={"y": cfg.out_bits, "last": 1},
                   fields=("y", "last"), pulses=("clear", "rst"), agents_before=[])
        self.writer = ParamWriter(dut, self.model, pause_pattern(stalls[0], self.rng))
        # sample order: beats accepted at an edge use the parameters from before that edge
        self.loop.agents[2:2] = [LayerDriver(self), self.writer]

    def idle_inputs(self):
        self.dut.wr__en.value = 0
        self.dut.layer.value = 0

    def inputs_idle(self):
        return self.source.idle() and not self.writer.queue

    async def start(self):
        await super().start()
        # parameters survive reset (and earlier tests): start from a known table
        self.write_params(self.zero_params())
        await self.drain()
        self.t0 = time.perf_counter()

    # -- stimulus -----------------------------------------------------------------------------

    def layer_value(self, layer):
        return self.codec_layer.encode({k: [layer.get(k, 0)] for k in self.layer_fields})[0]

    def send_vectors(self, inputs, layers, lasts=None):
        """inputs: dict of arrays (V, columns); layers: one register dict per vector (or per
        beat with `lasts` given); lasts: optional per-beat `last` flags to break framing."""
        cfg = self.cfg
        v = len(next(iter(inputs.values())))
        beats = {k: np.asarray(a).reshape(v * cfg.beats, cfg.lanes) for k, a in inputs.items()}
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
        words = self.pack_params(params)
        self.writer.queue.extend((int(c), words[int(c)]) for c in cols)

    # -- monitors -----------------------------------------------------------------------------

    def accepted(self, word, tag, cycle):
        self.model.accept(tag[2], tag[0])

    def settle(self):
        """Turn every accepted beat into an expectation (and coverage)."""
        expected, batch = self.model.expectations()
        for exp in expected:
            self.sb.expect(exp)
        if batch is not None and self.classify:
            self.classify_batch(batch)

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
        # the clamp counter lags the output register (by more with a pipelined count)
        await ClockCycles(self.dut.clk, 2 + getattr(self.cfg, "clamp_stages", 0))
        self.settle()
        top = (1 << self.cfg.clamp_count_bits) - 1
        want = min(self.model.clamps - self.clamps_base, top)
        value = self.dut.clamp_count.value  # a 1-bit port reads as a Logic, not a LogicArray
        got = value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)
        assert got == want, f"clamp_count: expected {want}, got {got}"
        assert int(self.dut.frame_error.value) == int(self.model.frame_error), \
            f"frame_error: expected {int(self.model.frame_error)}, got {int(self.dut.frame_error.value)}"
        assert int(self.dut.reg_error.value) == int(self.model.reg_error), \
            f"reg_error: expected {int(self.model.reg_error)}, got {int(self.dut.reg_error.value)}"
        self.cov.hit("clamp_count", "saturated" if want == top else "counting")


# -- scenarios every post-processing unit runs (wrapped as cocotb tests by the tb modules) --------

async def param_rewrites(bench, stalls):
    """Parameters rewritten between layers (idle) and single columns rewritten mid-vector."""
    cfg = bench.cfg
    await bench.start()
    for _ in range(n_items(6)):
        await bench.drain()
        bench.write_params(bench.random_params())  # between layers
        await bench.drain()
        layer = bench.useful_layer(bench.random_layer())
        bench.send_vectors(bench.random_inputs(4), [layer] * 4)
        for _ in range(3 * min(cfg.beats, 16)):  # while streaming: scattered single-column writes
            cols = [int(bench.rng.integers(0, cfg.columns))]
            bench.write_params(bench.random_params(), cols)
        bench.cov.hit("event", "rewrite_while_streaming")
    await bench.drain()
    await bench.check_status()
    bench.finish(f"param_rewrites_{'_'.join(stalls)}")


async def reset_mid_vector(bench, stalls):
    """`rst` in the middle of a vector: in-flight beats are dropped, the beat position restarts
    at 0, parameters survive."""
    cfg = bench.cfg
    await bench.start()
    bench.write_params(bench.random_params())
    for _ in range(n_items(4)):
        layer = bench.useful_layer(bench.random_layer())
        bench.send_vectors(bench.random_inputs(3), [layer] * 3)
        await ClockCycles(bench.dut.clk, int(bench.rng.integers(1, 3 * cfg.beats + 4)))
        await bench.pulse("rst")
        bench.rebase()
        bench.send_vectors(bench.random_inputs(2), [layer] * 2)
        await bench.drain()
        await bench.check_status()
    bench.finish(f"reset_mid_vector_{'_'.join(stalls)}")


async def framing_errors(bench, stalls):
    """`last` early, late and missing: the sticky flag rises, the unit resynchronises on the
    next `last`, every output still matches the golden framing, `clear` lowers the flag."""
    cfg = bench.cfg
    await bench.start()
    bench.write_params(bench.random_params())
    for k in range(n_items(6)):
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
        _, errors, _ = frame(cfg, lasts)
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


async def write_beyond_last_column(bench):
    """A write to an address beyond the last column is dropped and raises `reg_error`; `clear`
    lowers it (only where the address port has such codes). The bench must be started."""
    cfg = bench.cfg
    if cfg.columns < (1 << cfg.addr_bits):
        bench.writer.queue.append((cfg.columns, 0))
        await bench.drain()
        await bench.check_status()
        assert int(bench.dut.reg_error.value) == 1
        bench.cov.hit("event", "write_beyond_last_column")
        await bench.pulse("clear")
        await bench.check_status()


async def throughput(bench, unit):
    """K vectors without stalls take K·beats + latency clocks from the first input handshake
    to the last output handshake; the measured figures go to throughput.json."""
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
    result = {"unit": unit, "tag": cfg.tag, "sim": cocotb.SIM_NAME, "vectors": k,
              "beats_per_vector": cfg.beats, "clocks": clocks, "latency": latency,
              "cycles_per_vector": (clocks - latency) / k, "columns": cfg.columns}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    bench.dut._log.info("throughput: %s", result)
    assert latency == META["latency"], f"latency {latency}, the component says {META['latency']}"
    assert clocks == k * cfg.beats + META["latency"], \
        f"{k} vectors took {clocks} clocks, not {k * cfg.beats + META['latency']}"
    bench.finish("throughput")
