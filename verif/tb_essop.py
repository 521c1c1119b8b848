"""cocotb test bench of ESSOP, for any config: run by tests/test_sim_essop.py.

The bench reads the port map JSON that `hdl.export` wrote (env `TB_META`), drives the product
stream with the registers of each product beside it, pulses `reseed`, `clear` and `rst`, and
checks every read-out beat (`rows_per_beat` rows of counts, exponent, error, last) against
`golden.essop` (`readout`) through the in-order scoreboard; the model threads the LFSR state from product to product exactly as the
engine does. Environment (read by verif/bench.py): TB_META, TB_SEED, TB_OUT, TB_SCALE.
"""

import json
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden import essop as g
from hdl.config import ESSOPConfig
from verif.bench import META, OUT, STALLS, StreamBench
from verif.bench import n_items as n_products
from verif.stimulus import ESSOP_CLASSES as CLASSES
from verif.stimulus import essop_operands
from verif.streams import _Port

CFG = ESSOPConfig.from_dict(META["config"])
REGISTERS = ("log2_bl", "lr_shift", "seed_x", "seed_d")
POWER_ON_SEEDS = (1, 1)   # the LFSRs after reset hold the states of seeds 1 and 1


# -- reference model ------------------------------------------------------------------------------

class ESSOPModel:
    """The engine's LFSR states, pending reseed, `reg_error` and open group (`acc_max` > 1);
    one expected read-out per accepted beat that ends a group (every beat when `acc_max` is 1),
    computed at acceptance (the state is sequential)."""

    def __init__(self, cfg, corrupt=False):
        self.cfg = cfg
        self.corrupt = corrupt
        self.reset()

    def reset(self):
        self.state = g.reseed(self.cfg, *POWER_ON_SEEDS)
        self.pending = False
        self.reg_error = False
        self.group = g.group_start(self.cfg)
        self.readout = None     # (C, E, error) of the last group read out

    def accept(self, x, d, regs, acc=0):
        """One accepted product with the register values of its clock and its `acc` flag.
        Returns (expected beats: none while its group stays open, the golden Product or None
        for a rejected one, whether it was rejected)."""
        cfg = self.cfg
        reseed, self.pending = self.pending, False
        seeds_ok = regs["seed_x"] != 0 and regs["seed_d"] != 0
        bad = regs["log2_bl"] > cfg.log2_bl_max or (reseed and not seeds_ok)
        self.reg_error |= bad
        if reseed and seeds_ok:
            self.state = g.reseed(cfg, regs["seed_x"], regs["seed_d"])
        if bad:
            c = np.zeros((cfg.rows, cfg.cols), np.int64)
            res, e, err = None, 0, 1
        else:
            sx, sd = self.state
            if self.corrupt:  # one LFSR clock out of step: the checker must notice
                sx = g.lfsr_leap(cfg, sx, cfg.poly_x)[0]
            res = g.outer_product(cfg, x, d, regs["log2_bl"], regs["lr_shift"], sx, sd)
            c, e, err = res.c, int(res.exp), int(res.error)
            if g.group_admits(cfg, self.group, e, err):
                self.state = (res.state_x, res.state_d)
        self.group, ro, flag = g.group_add(cfg, self.group, c, e, err, acc)
        self.reg_error |= flag
        self.readout = ro
        if ro is None:
            return [], res, bad
        out = g.readout(cfg, *ro)
        beats = [{name: out[name][b] for name in ("c", "exp", "error", "last")}
                 for b in range(cfg.readout_beats)]
        return beats, res, bad


# -- agents ---------------------------------------------------------------------------------------

class Registers:
    """Puts the registers of the beat on offer on their ports (they are sampled with it); a
    beat sent with `reseed` also pulses `reseed` on its first clock on offer."""

    def __init__(self, dut, bench):
        self.ports = {name: _Port(getattr(dut, name)) for name in REGISTERS}
        self.bench = bench

    def drive(self, cycle):
        bench = self.bench
        cur = bench.source.current
        if cur is not None:
            for name, port in self.ports.items():
                port.set(cur[1]["regs"][name])
            if cur[1]["regs"].get("reseed") and not cur[1].get("pulsed"):
                cur[1]["pulsed"] = True
                bench.controls.ports["reseed"].set(1)  # Controls lowers it on the next drive
                bench.model.pending = True
                bench.cov.hit("reseed", "with_its_beat")

    def sample(self, cycle):
        pass


class ESSOPBench(StreamBench):
    outputs_per_item = CFG.readout_beats

    def __init__(self, dut, stalls=("none", "none"), seed_offset=0, corrupt=False, name="essop"):
        self.cfg = CFG
        self.model = ESSOPModel(CFG, corrupt=corrupt)
        self.products = []        # golden Product (or None) per accepted beat since start/reset
        self.owed = 0             # read-out beats expected since start/reset
        self.seeds = dict(zip(("seed_x", "seed_d"), POWER_ON_SEEDS))
        # order: a reseed pulse on the clock of an acceptance applies to that beat
        self.setup(dut, stalls, seed_offset, name,
                   widths={"c": CFG.count_bits, "exp": CFG.exp_bits, "error": 1, "last": 1},
                   fields=("c", "exp", "error", "last"), pulses=("reseed", "clear", "rst"),
                   agents_before=[Registers(dut, self)])

    def idle_inputs(self):
        for name in REGISTERS:
            getattr(self.dut, name).value = 0

    # -- stimulus -----------------------------------------------------------------------------

    def send(self, xs, ds, regs, label=None, acc=None):
        """Products xs (P, rows), ds (P, cols) of binary16 patterns; `regs` one dict per product
        (or one for all) with log2_bl and lr_shift (seeds default to the last ones sent); `acc`
        their group flags (P,) (default 0: one read-out each); a `label` is counted in the
        coverage group "class" when the product is accepted."""
        xs, ds = np.atleast_2d(xs), np.atleast_2d(ds)
        regs = [regs] * len(xs) if isinstance(regs, dict) else regs
        acc = np.zeros(len(xs), np.int64) if acc is None else np.asarray(acc, np.int64)
        fields = {"x": xs, "d": ds}
        if self.cfg.accumulates:
            fields["acc"] = acc
        elif acc.any():
            raise ValueError("`acc` flags need a config with `acc_max` > 1")
        words = self.codec_in.encode(fields)
        for k, word in enumerate(words):
            r = {**self.seeds, **regs[k]}  # the seed registers keep their last values
            self.seeds = {name: r[name] for name in ("seed_x", "seed_d")}
            self.source.send(word, {"x": xs[k], "d": ds[k], "regs": r, "label": label,
                                    "acc": int(acc[k])})

    def vectors(self, count, n, kind="random"):
        """`count` vectors of `n` binary16 patterns of a class (`verif.stimulus`)."""
        return essop_operands(self.rng, count, n, kind)

    def random_regs(self, k=None):
        """Register values; with `k`, log2_bl and lr_shift cycle through every value."""
        cfg, rng = self.cfg, self.rng
        if k is None:
            return {"log2_bl": int(rng.integers(0, cfg.log2_bl_max + 1)),
                    "lr_shift": int(rng.integers(0, cfg.lr_shift_max + 1))}
        return {"log2_bl": k % (cfg.log2_bl_max + 1), "lr_shift": (5 * k + 1) % (cfg.lr_shift_max + 1)}

    def random_seed(self):
        return int(self.rng.integers(1, self.cfg.lfsr_max + 1))

    # -- monitors -----------------------------------------------------------------------------

    def accepted(self, word, tag, cycle):
        group = self.model.group
        rows, res, bad = self.model.accept(tag["x"], tag["d"], tag["regs"], tag["acc"])
        for row in rows:
            self.sb.expect(row)
        self.owed += len(rows)
        self.products.append(res)
        if tag["label"]:
            self.cov.hit("class", tag["label"])
        self._classify(tag, rows, res, bad)
        if self.cfg.accumulates:
            self._classify_group(tag, group, res, bad)

    def _classify_group(self, tag, before, res, bad):
        """Coverage of the group logic: group sizes read out, each way a group can fail, and
        read-outs beyond one product's count range."""
        cov, model = self.cov, self.model
        rejected = bad or res is None or bool(res.error)
        if not rejected and not g.group_admits(self.cfg, before, res.exp, res.error):
            cov.hit("group", "exp_mismatch")
        elif rejected and before.products:
            cov.hit("group", "rejected_inside")
        if model.readout is None:
            return
        c, _, err = model.readout
        if tag["acc"]:
            cov.hit("group", "overlong")
        size = before.products + 1
        cov.hit("group_size", "1" if size == 1 else "K" if size == self.cfg.acc_max else "inner")
        if not err and size > 1:
            cov.hit("group", "clean_sum")
            cov.hit("group", "beyond_one_bl", int((np.abs(c) > self.cfg.bl_max).sum()))

    def _classify(self, tag, rows, res, bad):
        cfg, cov = self.cfg, self.cov
        regs = tag["regs"]
        if bad:
            cov.hit("error", "bad_log2_bl" if regs["log2_bl"] > cfg.log2_bl_max else "zero_seed")
            return
        if res.error:
            for name in ("x", "d"):
                v = np.asarray(tag[name])
                inf = ((v & 0x7FFF) == 0x7C00).any()
                nan = ((v & 0x7FFF) > 0x7C00).any()
                cov.hit("error", f"inf_{name}", int(inf))
                cov.hit("error", f"nan_{name}", int(nan))
            return
        cov.hit("log2_bl", regs["log2_bl"])
        cov.hit("lr_shift", regs["lr_shift"])
        bl = 1 << regs["log2_bl"]
        c = res.c
        cov.hit("count", "plus_bl", int((c == bl).sum()))
        cov.hit("count", "minus_bl", int((c == -bl).sum()))
        cov.hit("count", "zero", int((c == 0).sum()))
        cov.hit("count", "inner", int(((c != 0) & (abs(c) != bl)).sum()))

    def on_output(self, cycle):
        self.cov.hit("beat", (self.sink.received - 1 - self.received_base) % self.cfg.readout_beats)

    def on_pulse(self, name):
        if name == "clear":
            self.model.reg_error = False
        elif name == "reseed":
            self.model.pending = True
            held = self.source.current is not None
            self.cov.hit("reseed", "with_beat_on_offer" if held else "idle_input")

    # -- phases -------------------------------------------------------------------------------

    async def drain(self, timeout=None):
        """Wait until every queued product went in and every read-out it closed came out (one
        per product when `acc_max` is 1)."""
        per = self.cfg.bl_max + self.cfg.readout_beats + 8
        timeout = timeout or 200 + 4 * per * (len(self.source.queue) + 2)
        await self.loop.wait_until(self.inputs_idle, timeout, "the input queue to empty")
        await self.loop.wait_until(lambda: self.sink.received - self.received_base >= self.owed,
                                   timeout, "the read-outs of all accepted products")
        await ClockCycles(self.dut.clk, 2)
        self.flush_outputs()
        self.sb.check_done()

    def rebase(self):
        super().rebase()
        self.owed = 0

    async def check_status(self, pending=None):
        """`reg_error` and `busy` against the model (call when drained)."""
        await ClockCycles(self.dut.clk, 1)
        assert int(self.dut.reg_error.value) == int(self.model.reg_error), \
            f"reg_error: expected {int(self.model.reg_error)}, got {int(self.dut.reg_error.value)}"
        busy = int(self.model.pending if pending is None else pending)
        assert int(self.dut.busy.value) == busy, f"busy: expected {busy}, got {int(self.dut.busy.value)}"

    def finish(self, test_name, require=False):
        products = self.sb.matched // self.cfg.readout_beats
        wall = time.perf_counter() - self.t0
        super().finish(test_name, require, products=products,
                       products_per_s=products / wall if wall else 0.0)


# -- scenarios ------------------------------------------------------------------------------------

@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def random_vectors(dut, stalls):
    """Random products over every `log2_bl` and `lr_shift` value, reseeded now and then; the
    LFSR state carries from each product to the next."""
    bench = ESSOPBench(dut, stalls, seed_offset=1)
    cfg = bench.cfg
    await bench.start()
    bench.cov.require("log2_bl", range(cfg.log2_bl_max + 1))
    bench.cov.require("lr_shift", range(cfg.lr_shift_max + 1))
    bench.cov.require("beat", range(cfg.readout_beats))
    sweep = max(cfg.log2_bl_max + 1, cfg.lr_shift_max + 1)
    for k in range(sweep + n_products(6)):
        regs = bench.random_regs(k) if k < sweep else bench.random_regs()
        if k % 5 == 0:
            regs.update(seed_x=bench.random_seed(), seed_d=bench.random_seed(), reseed=True)
        bench.send(bench.vectors(1, cfg.rows), bench.vectors(1, cfg.cols), regs)
        if k % 5 == 4:
            await bench.drain()
    await bench.drain()
    await bench.check_status()
    bench.finish(f"random_vectors_{'_'.join(stalls)}", require=stalls == ("none", "none"))


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def corner_classes(dut, stalls):
    """Zeros, subnormals, the largest values, mixed signs, one non-zero element and very wide
    ranges, in every pairing of x and δ classes, at short and long bitstreams."""
    bench = ESSOPBench(dut, stalls, seed_offset=2)
    cfg = bench.cfg
    await bench.start()
    # every pairing without stalls; under stalls (which change timing, not arithmetic) the
    # pairings of each class with itself and a random partner
    pairs = [(a, b) for a in CLASSES for b in CLASSES]
    if stalls != ("none", "none"):
        pairs = [(a, a) for a in CLASSES] + [(a, str(bench.rng.choice(CLASSES))) for a in CLASSES]
    bench.cov.require("class", {f"{a}x{b}" for a, b in pairs})
    bench.cov.require("count", ["plus_bl", "minus_bl"])
    regs = {"seed_x": bench.random_seed(), "seed_d": bench.random_seed()}
    bench.send(bench.vectors(1, cfg.rows), bench.vectors(1, cfg.cols),
               dict(regs, reseed=True, **bench.random_regs()))
    for k, (a, b) in enumerate(pairs):
        for log2_bl in sorted({0, cfg.log2_bl_max}):
            bench.send(bench.vectors(1, cfg.rows, a), bench.vectors(1, cfg.cols, b),
                       dict(regs, log2_bl=log2_bl, lr_shift=int(bench.rng.integers(0, cfg.lr_shift_max + 1))),
                       label=f"{a}x{b}")
        if k % 6 == 5:
            await bench.drain()
    # counts of ±BL need every clock to hit: full-scale magnitudes at BL = 1 (mixed signs),
    # until the golden model has seen both (with mag_bits = 1 a clock hits with odds 1/4)
    signs = (np.arange(cfg.rows)[:, None] + np.arange(cfg.cols)[None, :]) % 2
    for _ in range(64):
        if all(bench.cov.hits["count"][b] for b in ("plus_bl", "minus_bl")):
            break
        x = np.full(cfg.rows, 0x7BFF) | (signs[:, 0] << 15)
        d = np.full(cfg.cols, 0x7BFF) | (signs[0] << 15)
        if cfg.rows == cfg.cols == 1:  # one unit: the sign by chance
            d = d | (int(bench.rng.integers(0, 2)) << 15)
        bench.send(x, d, dict(regs, log2_bl=0, lr_shift=0))
        await bench.drain()
    await bench.drain()
    await bench.check_status()
    bench.finish(f"corner_classes_{'_'.join(stalls)}", require=True)



@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def reseeds(dut, stalls):
    """`reseed` while idle (pending until the next product: `busy`), with a beat on offer, twice
    in a row, and mid-stream with products in flight; the same seeds repeat the same counts."""
    bench = ESSOPBench(dut, stalls, seed_offset=3)
    cfg = bench.cfg
    await bench.start()
    bench.cov.require("reseed", ["idle_input", "with_beat_on_offer", "with_its_beat"])
    xs, ds = bench.vectors(2, cfg.rows), bench.vectors(2, cfg.cols)
    regs = {"log2_bl": min(3, cfg.log2_bl_max), "lr_shift": 0,
            "seed_x": bench.random_seed(), "seed_d": bench.random_seed()}
    first = len(bench.products)
    for _ in range(2):  # the same seeds twice: the same two products twice
        await bench.pulse("reseed")
        await bench.check_status(pending=True)
        bench.send(xs, ds, regs)
        await bench.drain()
        await bench.check_status()
    a, b = bench.products[first:first + 2], bench.products[first + 2:first + 4]
    assert all(np.array_equal(p.c, q.c) for p, q in zip(a, b)), "the same seeds gave other counts"
    for k in range(n_products(6)):
        regs = dict(bench.random_regs(), seed_x=bench.random_seed(), seed_d=bench.random_seed())
        # five products: with three in the engine's stages, the others wait on offer
        bench.send(bench.vectors(5, cfg.rows), bench.vectors(5, cfg.cols),
                   [dict(regs, reseed=k % 3 == 0)] + [regs] * 4)
        await ClockCycles(dut.clk, int(bench.rng.integers(0, (1 << regs["log2_bl"]) + cfg.rows)))
        await bench.pulse("reseed")
        if k % 2:
            await bench.pulse("reseed")  # a second pulse before the beat: one reseed
    bench.send(bench.vectors(1, cfg.rows), bench.vectors(1, cfg.cols), bench.random_regs())
    await bench.drain()
    await bench.check_status()
    bench.finish(f"reseeds_{'_'.join(stalls)}", require=stalls == ("none", "none"))


def same_exponent(rng, x, d):
    """Another product with the block maxima of (x, d), so the same E at the same registers:
    elements permuted, signs flipped, some zeroed (never all the largest ones)."""
    x = rng.permutation(x) ^ (rng.integers(0, 2, x.size) << 15)
    d = rng.permutation(d) ^ (rng.integers(0, 2, d.size) << 15)
    top_x, top_d = (x & 0x7C00) == (x & 0x7C00).max(), (d & 0x7C00) == (d & 0x7C00).max()
    return (np.where(top_x | (rng.random(x.size) < 0.7), x, 0),
            np.where(top_d | (rng.random(d.size) < 0.7), d, 0))


def full_scale_seeds(cfg, rng, budget=1 << 22):
    """Seeds (seed_x, seed_d) of the largest count of a full-scale product (every x and δ
    0x7BFF) at the longest BL, searched over random seed pairs in golden `outer_product` (at most
    about `budget` stream bits), and whether a group of K such products, each reseeded to them,
    sums beyond one product's range ±bl_max. A full-scale stream is 1 with probability
    1 − 2^−m (`mag_bits` = m), so at m = 1 a product of random seeds counts about BL/4 and a
    group of K <= 4 of them seldom passes BL; with the searched seeds every accumulating config
    of `verif.configs.random_essop_configs` does (seeds 0-199: 243 configs)."""
    pairs = int(np.clip(budget // (cfg.rows * cfg.cols * cfg.bl_max), 16, 1024))
    sx = rng.integers(1, cfg.lfsr_max + 1, pairs)
    sd = rng.integers(1, cfg.lfsr_max + 1, pairs)
    res = g.outer_product(cfg, np.full(cfg.rows, 0x7BFF), np.full(cfg.cols, 0x7BFF),
                          cfg.log2_bl_max, 0, *g.reseed(cfg, sx, sd))
    best = int(np.abs(res.c).max(axis=(-2, -1)).argmax())
    return int(sx[best]), int(sd[best]), cfg.acc_max * int(np.abs(res.c[best]).max()) > cfg.bl_max


@cocotb.test(skip=not CFG.accumulates)
@cocotb.parametrize(stalls=STALLS)
async def accumulation(dut, stalls):
    """Groups of 1..K products of one E (`acc_max` = K > 1) at every BL, reseeds inside them,
    and now and then a fault: a product of another E, an Inf, a zero seed, an over-long group.
    Every read-out against golden `group_add`; `reg_error`, `busy` and `clear`."""
    bench = ESSOPBench(dut, stalls, seed_offset=10)
    cfg, rng = bench.cfg, bench.rng
    await bench.start()
    bench.cov.require("group_size", ["1", "K"] + (["inner"] if cfg.acc_max > 2 else []))
    # the full-scale groups at the end read out sums beyond one product's range wherever the
    # config admits them (`full_scale_seeds`): then the bin is required
    seed_x, seed_d, beyond = full_scale_seeds(cfg, rng)
    bench.cov.require("group", ["exp_mismatch", "rejected_inside", "overlong", "clean_sum"]
                      + (["beyond_one_bl"] if beyond else []))
    faults = ("mismatch", "inf", "zero_seed", "overlong")
    for k in range(max(2 * len(faults), n_products(12))):
        x = bench.vectors(1, cfg.rows)[0] & 0x7BFF       # finite: faults come only from below
        d = bench.vectors(1, cfg.cols)[0] & 0x7BFF
        regs = dict(bench.random_regs(), seed_x=bench.random_seed(), seed_d=bench.random_seed())
        # clean groups of every size 1..K; full groups with a fault, first inside them, then
        # at other positions (later products of the group follow it)
        fault = faults[(k // 2) % len(faults)] if k % 2 else None
        size = cfg.acc_max if fault else 1 + (k // 2) % cfg.acc_max
        at = (k // (2 * len(faults)) + 1) % size
        xs, ds, rs, acc = [], [], [], []
        for j in range(size):
            gx, gd = same_exponent(rng, x, d)
            r = dict(regs, reseed=j == 1)
            if j == at and fault == "mismatch":
                r["lr_shift"] = (r["lr_shift"] + 1) % (cfg.lr_shift_max + 1)
            elif j == at and fault == "inf":
                gx[int(rng.integers(0, cfg.rows))] = 0x7C00
            elif j == at and fault == "zero_seed":
                r.update(reseed=True, seed_x=0)
            xs.append(gx), ds.append(gd), rs.append(r), acc.append(int(j < size - 1))
        if fault == "overlong":
            # K products with acc = 1: the K-th ends the group; one more closes the next
            acc = [1] * cfg.acc_max + [0]
            more = [same_exponent(rng, x, d) for _ in range(cfg.acc_max + 1 - size)]
            xs += [m[0] for m in more]
            ds += [m[1] for m in more]
            rs += [dict(regs)] * len(more)
        bench.send(np.stack(xs), np.stack(ds), rs, acc=acc)
        if k % 3 == 2 or fault:
            await bench.drain()
            await bench.check_status()
            if bench.model.reg_error:
                await bench.pulse("clear")
                await bench.check_status()
    # full-scale groups of K at the longest BL, both signs, every product reseeded to the seeds
    # of the largest count: sums beyond one product's range, towards the counters' ±K·bl_max
    regs = {"log2_bl": cfg.log2_bl_max, "lr_shift": 0, "seed_x": seed_x, "seed_d": seed_d,
            "reseed": True}
    for sign in (0, 0x8000):
        x, d = np.full((cfg.acc_max, cfg.rows), 0x7BFF), np.full((cfg.acc_max, cfg.cols), 0x7BFF | sign)
        bench.send(x, d, regs, acc=[1] * (cfg.acc_max - 1) + [0])
    await bench.drain()
    await bench.check_status()
    bench.finish(f"accumulation_{'_'.join(stalls)}", require=stalls == ("none", "none"))


@cocotb.test()
async def tiled_layer(dut):
    """A layer larger than the array, sent tile by tile in the driver's order: the counts
    reassembled from the read-out equal `golden.essop.tiled_outer_product` of the layer."""
    bench = ESSOPBench(dut, ("random", "random"), seed_offset=4)
    cfg = bench.cfg
    await bench.start()
    m, n = 2 * cfg.rows + max(1, cfg.rows // 3), cfg.cols + max(1, cfg.cols // 2)
    x, d = bench.vectors(1, m)[0], bench.vectors(1, n)[0]
    seeds = (bench.random_seed(), bench.random_seed())
    log2_bl = min(4, cfg.log2_bl_max)
    xs, ds = g.tile_beats(cfg, x, d)
    got_from = bench.sink.received
    regs = {"log2_bl": log2_bl, "lr_shift": 2 % (cfg.lr_shift_max + 1), "seed_x": seeds[0],
            "seed_d": seeds[1]}
    bench.send(xs, ds, [dict(regs, reseed=True)] + [regs] * (len(xs) - 1))
    words = []
    bench.sink.on_beat = lambda w, c: (words.append(w), bench._output(w, c))
    await bench.drain()
    want = g.tiled_outer_product(cfg, x, d, log2_bl, 2 % (cfg.lr_shift_max + 1),
                                 *g.reseed(cfg, *seeds))
    rows = bench.codec_out.decode(words)
    tiles = rows["c"].reshape(len(xs), cfg.rows, cfg.cols)
    r_tiles, k_tiles = want.exp.shape
    c = tiles.reshape(r_tiles, k_tiles, cfg.rows, cfg.cols).transpose(0, 2, 1, 3)
    c = c.reshape(r_tiles * cfg.rows, k_tiles * cfg.cols)[:m, :n]
    assert bench.sink.received - got_from == len(xs) * cfg.readout_beats
    assert np.array_equal(c, want.c), "reassembled layer differs from tiled_outer_product"
    assert np.array_equal(rows["exp"][::cfg.readout_beats].reshape(r_tiles, k_tiles), want.exp)
    bench.cov.hit("event", "tiled_layer")
    bench.finish("tiled_layer")


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def error_products(dut, stalls):
    """Inf and NaN in x or δ (and, where the register can hold one, `log2_bl` above the maximum;
    a reseed with a zero seed): zero rows with `error`, E = 0, no LFSR step, so the products
    that follow match a stream without the bad one; `reg_error` and `clear`."""
    bench = ESSOPBench(dut, stalls, seed_offset=5)
    cfg = bench.cfg
    await bench.start()
    kinds = ["inf_x", "nan_x", "inf_d", "nan_d", "zero_seed"]
    if (1 << cfg.log2_bl_bits) - 1 > cfg.log2_bl_max:
        kinds.append("bad_log2_bl")
    bench.cov.require("error", kinds)
    for k in range(max(len(kinds), n_products(8))):
        kind = kinds[k % len(kinds)]
        regs = bench.random_regs()
        x, d = bench.vectors(1, cfg.rows), bench.vectors(1, cfg.cols)
        bad = {"inf": 0x7C00, "nan": 0x7C00 | int(bench.rng.integers(1, 1 << 10))}
        if kind in ("inf_x", "nan_x"):
            x[0, int(bench.rng.integers(0, cfg.rows))] = bad[kind[:3]] | int(bench.rng.integers(0, 2)) << 15
        elif kind in ("inf_d", "nan_d"):
            d[0, int(bench.rng.integers(0, cfg.cols))] = bad[kind[:3]] | int(bench.rng.integers(0, 2)) << 15
        elif kind == "zero_seed":
            regs.update(seed_x=0, seed_d=bench.random_seed(), reseed=True)
            if k % 2:
                regs.update(seed_x=bench.random_seed(), seed_d=0)
        else:
            regs["log2_bl"] = int(bench.rng.integers(cfg.log2_bl_max + 1, 1 << cfg.log2_bl_bits))
        good = bench.vectors(2, cfg.rows), bench.vectors(2, cfg.cols)
        bench.send(good[0][:1], good[1][:1], bench.random_regs())
        bench.send(x, d, regs)
        bench.send(good[0][1:], good[1][1:], bench.random_regs())  # recovery
        await bench.drain()
        await bench.check_status()
        if bench.model.reg_error:
            await bench.pulse("clear")
            await bench.check_status()
    bench.finish(f"error_products_{'_'.join(stalls)}", require=True)


@cocotb.test()
@cocotb.parametrize(stalls=STALLS)
async def reset_mid_product(dut, stalls):
    """`rst` while products count or read out: they are dropped, the LFSRs return to their
    power-on states, counting restarts from a clear array."""
    bench = ESSOPBench(dut, stalls, seed_offset=6)
    cfg = bench.cfg
    await bench.start()
    for _ in range(n_products(3)):
        regs = dict(bench.random_regs(), seed_x=bench.random_seed(), seed_d=bench.random_seed())
        bench.send(bench.vectors(3, cfg.rows), bench.vectors(3, cfg.cols),
                   [dict(regs, reseed=True), regs, regs])
        await ClockCycles(dut.clk, int(bench.rng.integers(1, 3 * ((1 << regs["log2_bl"]) + cfg.rows) + 6)))
        await bench.pulse("rst")
        bench.rebase()
        bench.send(bench.vectors(2, cfg.rows), bench.vectors(2, cfg.cols), bench.random_regs())
        await bench.drain()
        await bench.check_status()
    bench.finish(f"reset_mid_product_{'_'.join(stalls)}")


@cocotb.test()
async def statistics(dut):
    """The engine's counts over many seeds for one pair of vectors: the mean of C·2^E is within
    5 standard errors (binomial, shrinking as 1/sqrt(trials)) of the exact product of the
    quantised inputs, per unit."""
    bench = ESSOPBench(dut, seed_offset=7)
    cfg = bench.cfg
    await bench.start()
    trials = n_products(48)
    log2_bl = min(4, cfg.log2_bl_max)
    x, d = bench.vectors(1, cfg.rows), bench.vectors(1, cfg.cols)
    first = len(bench.products)
    for _ in range(trials):
        bench.send(x, d, {"log2_bl": log2_bl, "lr_shift": 0, "seed_x": bench.random_seed(),
                          "seed_d": bench.random_seed(), "reseed": True})
    await bench.drain()
    products = bench.products[first:]
    est = np.mean([g.decode(cfg, p.c, p.exp) for p in products], axis=0)
    exact = g.quantised_product(cfg, x[0], d[0])
    nx, nd = g.normalise(cfg, x[0]), g.normalise(cfg, d[0])
    p = nx.q[:, None] * nd.q[None, :] / float(1 << 2 * cfg.mag_bits)
    unit = np.ldexp(1.0, int(nx.e + nd.e) - log2_bl)          # 2^E at lr_shift 0
    stderr = unit * np.sqrt((1 << log2_bl) * p * (1 - p) / trials)
    # the LFSR's 2^-n deficit per clock, and a floor of half a count for units with p near 0
    bound = 5 * stderr + unit * (0.5 / np.sqrt(trials) + (1 << log2_bl) / cfg.lfsr_max)
    worst = float(np.max(np.abs(est - exact) / bound))
    dut._log.info("statistics: %d trials, worst |mean − exact| = %.2f of the bound", trials, worst)
    assert worst <= 1, f"mean of C·2^E off the exact product by {worst:.2f} bounds"
    bench.finish("statistics")


@cocotb.test()
async def throughput(dut):
    """For every BL: K products without stalls. The clocks between the first beats of
    consecutive products are measured (BL + rows/R single-buffered, max(BL, rows/R) double-
    buffered, R = `rows_per_beat`: `cfg.clocks_per_product`) and the latency to the first beat
    (`LATENCY` + BL); with `acc_max` > 1 also groups of k products (k = 1, 2, 4, … and
    `acc_max`): the clocks between read-outs, per product (`clocks_per_product(log2_bl, k)`);
    figures to throughput.json."""
    bench = ESSOPBench(dut, seed_offset=8)
    cfg = bench.cfg
    await bench.start()
    k = 6
    rows = []
    for log2_bl in range(cfg.log2_bl_max + 1):
        bl = 1 << log2_bl
        acc0, out0 = len(bench.accept_cycles), len(bench.out_cycles)
        bench.send(bench.vectors(k, cfg.rows), bench.vectors(k, cfg.cols),
                   {"log2_bl": log2_bl, "lr_shift": 0})
        await bench.drain()
        acc, out = bench.accept_cycles[acc0:], bench.out_cycles[out0:]
        firsts = out[::cfg.readout_beats]
        period = np.diff(firsts)
        latency = firsts[0] - acc[0]
        steady = float(period.mean())
        want = cfg.clocks_per_product(log2_bl)
        rows.append({"log2_bl": log2_bl, "bl": bl, "products": k, "latency": int(latency),
                     "cycles_per_product": steady, "expected": want,
                     "clocks_total": int(out[-1] - acc[0] + 1)})
        assert latency == META["latency"] + bl, f"BL {bl}: latency {latency}, not {META['latency']} + BL"
        assert (period == want).all(), f"BL {bl}: clocks between products {list(period)}, not {want}"
    per_k = []
    ks = sorted({1 << j for j in range(cfg.acc_max.bit_length()) if 1 << j <= cfg.acc_max}
                | {cfg.acc_max}) if cfg.accumulates else []
    for group in ks:
        for log2_bl in range(cfg.log2_bl_max + 1):
            out0 = len(bench.out_cycles)
            x, d = bench.vectors(1, cfg.rows)[0] & 0x7BFF, bench.vectors(1, cfg.cols)[0] & 0x7BFF
            acc = [int(j % group < group - 1) for j in range(k * group)]
            bench.send(np.tile(x, (k * group, 1)), np.tile(d, (k * group, 1)),
                       {"log2_bl": log2_bl, "lr_shift": 0}, acc=acc)
            await bench.drain()
            period = np.diff(bench.out_cycles[out0:][::cfg.readout_beats])
            want = cfg.clocks_per_product(log2_bl, group)
            per_k.append({"k": group, "log2_bl": log2_bl, "bl": 1 << log2_bl, "groups": k,
                          "cycles_per_product": float(period.mean()) / group, "expected": want})
            assert (period == group * want).all(), \
                f"k {group}, BL {1 << log2_bl}: clocks between read-outs {list(period)}, not {group * want}"
    result = {"unit": "essop", "tag": cfg.tag, "sim": cocotb.SIM_NAME, "rows": cfg.rows,
              "cols": cfg.cols, "rows_per_beat": cfg.rows_per_beat, "acc_max": cfg.acc_max,
              "double_buffer": cfg.double_buffer, "per_bl": rows, "per_k": per_k,
              "latency": META["latency"], "vectors": k, "clocks": rows[-1]["clocks_total"],
              "cycles_per_vector": rows[-1]["cycles_per_product"]}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    dut._log.info("throughput: %s", rows)
    bench.finish("throughput")


@cocotb.test(expect_fail=True)
async def expect_fail_corrupted_model(dut):
    """The checker must be able to fail: the model runs the x LFSR one clock ahead; this test
    passes only if the scoreboard catches it."""
    bench = ESSOPBench(dut, seed_offset=9, corrupt=True)
    cfg = bench.cfg
    await bench.start()
    # On a small array a clock's shift can leave the counts unchanged: send products until the
    # honest and the corrupted model (run ahead on the same beats) disagree on one, so that a
    # DUT matching the golden model must fail the check.
    honest, corrupt = ESSOPModel(cfg), ESSOPModel(cfg, corrupt=True)
    regs = {"log2_bl": cfg.log2_bl_max, "lr_shift": 0, "seed_x": 1, "seed_d": 1}
    for _ in range(512):
        x, d = bench.vectors(1, cfg.rows)[0], bench.vectors(1, cfg.cols)[0]
        bench.send(x, d, regs)
        want, bad = honest.accept(x, d, regs)[0], corrupt.accept(x, d, regs)[0]
        if any((a["c"] != b["c"]).any() for a, b in zip(want, bad)):
            break
    else:
        raise RuntimeError("no stimulus found on which the corrupted model differs")
    await bench.drain()
    bench.finish("expect_fail")
