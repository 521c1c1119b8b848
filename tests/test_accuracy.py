"""studies/accuracy.py: the protocol's tables on a tiny network (2 seeds, 2 times): required
fields, paired differences on shared device draws, per-layer errors, the report files."""

import copy
import dataclasses
import json

import numpy as np
import pytest

from studies import accuracy as ga
from golden import compiler as gc
from golden import network as gnet
from golden import tile as gt
from golden.network import Dense, NetConfig, TrainConfig

TINY = NetConfig("tiny-mlp", (64,), (
    Dense("fc1", "x", "h1", 64, 16),
    Dense("fc2", "h1", "logits", 16, 10, bn=False, relu=False),
))
TIMES = (60.0, 86400.0)


@pytest.fixture(scope="module")
def data():
    from golden.data import digits
    return digits()


@pytest.fixture(scope="module")
def net(data):
    params, _ = gnet.train(TINY, TrainConfig(epochs=3, seed=2, lr=0.02), data.x_train,
                           data.y_train, progress=False)
    return gnet.Network(TINY, TrainConfig(), params)


@pytest.fixture(scope="module")
def result(net, data):
    # noisier than the chip so that the paths differ on a tiny test set
    cfg = gt.TileConfig(name="noisy", prog_noise_scale=3.0)
    return ga.evaluate(net, data, seeds=[0, 1], times=TIMES, tile_cfg=cfg, progress=False)


def test_rows_have_the_required_fields(result):
    rows = ga.summarise(result)
    assert len(rows) == len(TIMES) * len(ga.PATHS)
    assert {(r["t"], r["path"]) for r in rows} == {(t, p) for t in TIMES for p in ga.PATHS}
    for r in rows:
        for key in ("network", "t", "time", "path", "mean", "std", "seeds", "values"):
            assert key in r, key
        assert r["seeds"] == 2 and len(r["values"]) == 2
        assert r["mean"] == pytest.approx(np.mean(r["values"]))
        if r["path"] == "analog_nmpu":
            pd = r["paired_nmpu_minus_ldpu"]
            assert set(pd) >= {"mean", "se", "values"}
        else:
            assert "paired_nmpu_minus_ldpu" not in r
    fl = [r for r in rows if r["path"] == "float"]
    assert all(r["std"] == 0 and r["mean"] == pytest.approx(100 * result["float"]) for r in fl)


def test_paired_difference_is_per_seed(result):
    rows = ga.summarise(result)
    for t in TIMES:
        nm = next(r for r in rows if r["t"] == t and r["path"] == "analog_nmpu")
        ld = next(r for r in rows if r["t"] == t and r["path"] == "analog_ldpu")
        d = np.array(nm["values"]) - np.array(ld["values"])
        pd = nm["paired_nmpu_minus_ldpu"]
        np.testing.assert_allclose(pd["values"], d)
        assert pd["mean"] == pytest.approx(d.mean())
        assert pd["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))


def test_paths_read_the_same_device_draws(result):
    """Within a seed and time every analog path read identical first-layer ADC counts; another
    seed or time reads other counts. Fails if a path programmed its own tiles."""
    runs = result["runs"]
    for seed in result["seeds"]:
        for t in TIMES:
            digests = {r["first_counts"] for r in runs if r["seed"] == seed and r["t"] == t}
            assert len(digests) == 1
    assert len({r["first_counts"] for r in runs}) == len(result["seeds"]) * len(TIMES)


def test_unshared_draws_are_rejected(result):
    bad = copy.deepcopy(result)
    victim = next(r for r in bad["runs"] if r["path"] == "analog_ldpu")
    victim["first_counts"] = "0" * 16
    with pytest.raises(AssertionError, match="did not read the same tiles"):
        ga.summarise(bad)


def test_pairing_beats_independent_draws(net, data):
    """Programming each path with its own seed (what pairing must avoid) gives different first
    layer counts, which the summary refuses."""
    plan = gc.plan(net, data.x_train, tile_cfg=gt.TileConfig(name="pcm"))
    a = gc.ProgrammedNetwork(plan, 0).matrix("nmpu", 60.0)
    b = gc.ProgrammedNetwork(plan, 1).matrix("ldpu", 60.0)
    x = gc.encode_input(plan, data.x_test[:20])
    gnet.run(TINY, x, a)
    gnet.run(TINY, x, b)
    assert a.digests["fc1"] != b.digests["fc1"]
    c = gc.ProgrammedNetwork(plan, 0).matrix("ldpu", 60.0)
    gnet.run(TINY, x, c)
    assert a.digests["fc1"] == c.digests["fc1"]      # same seed: same draws, reproducibly


def test_layer_table_and_budget(result):
    table = ga.layer_table(result)
    assert [(r["layer"], r["path"]) for r in table] == [
        (n, p) for n in ("fc1", "fc2") for p in ("analog_float", "analog_ldpu", "analog_nmpu")]
    for r in table:
        assert r["end_to_end_rms"] > 0 and r["end_to_end_max"] >= r["end_to_end_rms"]
        if r["path"] == "analog_float":
            assert "same_counts_rms" not in r
        else:
            # the periphery's own error is a fraction of an LSB in RMS, a few LSB at worst
            assert 0 < r["same_counts_rms"] < 1.0 and r["same_counts_max"] <= 8
            assert r["same_counts_rms"] < r["end_to_end_rms"]


def test_report_files(tmp_path, monkeypatch, net):
    """`main` on a tiny network writes the JSON, Markdown and both plots."""
    monkeypatch.setitem(gnet.NETWORKS, "tiny-mlp", TINY)
    monkeypatch.setattr(gnet, "load_or_train", lambda name, **kw: net)
    ga.main(["--quick", "--seeds", "2", "--networks", "tiny-mlp", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "accuracy_quick.json").read_text())
    assert doc["quick"] and doc["seeds"] == [0, 1] and doc["times"] == list(ga.QUICK_TIMES)
    assert len(doc["rows"]) == 2 * 4 and doc["wall_seconds"] > 0
    text = (tmp_path / "accuracy_quick.md").read_text()
    assert "| tiny-mlp | 1 day |" in text and "NMPU − FP16" in text
    for png in ("accuracy_quick_vs_time.png", "accuracy_quick_layers.png"):
        assert (tmp_path / png).stat().st_size > 1000
    with pytest.raises(SystemExit):
        ga.main(["--seeds", "0", "--out", str(tmp_path)])


def test_bench_tile_smoke():
    from studies import bench
    r = bench.bench_tile(vectors=16, repeat=1, cfg=gt.TileConfig(name="b", rows=32, cols=16))
    assert r["vectors"] == 16 and r["rows"] == 32 and r["cols"] == 16
    assert r["tile_seconds"] > 0 and r["ratio_to_matmul"] == pytest.approx(
        r["tile_seconds"] / r["matmul_seconds"])


# -- 4-bit activations, fixed ADC gain, the MNIST study's bookkeeping ------------------------------

def _nmpu4():
    from hdl.config import NMPU_PRESETS
    return dataclasses.replace(NMPU_PRESETS["paper"], name="paper-out4", out_bits=4)


def test_4bit_path_codes_and_agreement(net, data):
    """At 4 bits the inputs are PWM codes −7..7, every path's activations 4-bit codes; on an
    ideal tile the NMPU and FP16 paths agree with the ideal float path on most outputs."""
    tile = gt.TileConfig(name="pcm4", input_bits=4).ideal
    plan = gc.plan(net, data.x_train, tile_cfg=tile, nmpu_cfg=_nmpu4())
    assert plan.x_max == 7 and plan.input_scale == 7.0
    x = gc.encode_input(plan, data.x_test[:60])
    assert x.min() >= 0 and x.max() == 7
    prog = gc.ProgrammedNetwork(plan, 0)
    outs = {}
    for path in gc.PATHS:
        trace = {}
        outs[path] = gnet.run(TINY, x, prog.matrix(path, 60.0), trace=trace)
        assert trace["h1"].min() >= 0 and trace["h1"].max() <= 7      # ReLU'd 4-bit codes
        assert outs[path].min() >= -8 and outs[path].max() <= 7
    for path in ("nmpu", "ldpu"):
        assert np.mean(np.abs(outs[path] - outs["float"]) <= 1) > 0.95
    with pytest.raises(ValueError, match="`input_bits` must be 4"):
        gc.plan(net, data.x_train, tile_cfg=gt.TileConfig(name="pcm"), nmpu_cfg=_nmpu4())
    with pytest.raises(ValueError, match="`input_bits` must be 8"):
        gc.plan(net, data.x_train, tile_cfg=tile)


def test_fixed_adc_gain_skips_calibration(net, data):
    cal = gc.ProgrammedNetwork(gc.plan(net, data.x_train), 0)
    fixed = gc.ProgrammedNetwork(gc.plan(net, data.x_train, adc_gain="fixed"), 0)
    for key, (gp, gn_) in fixed.gains.items():
        assert np.all(gp == 1.0) and np.all(gn_ == 1.0)
        assert not np.allclose(cal.gains[key][0], 1.0)
    with pytest.raises(ValueError, match="`adc_gain` must be 'calibrated' or 'fixed'"):
        gc.plan(net, data.x_train, adc_gain="per-layer")


def test_seeds_at_reads_a_subset(net, data):
    r = ga.evaluate(net, data, seeds=[0, 1, 2], times=TIMES, seeds_at={86400.0: [0, 1, 2],
                    60.0: [1]}, progress=False, budget=False)
    got = sorted({(x["seed"], x["t"]) for x in r["runs"]})
    assert got == [(0, 86400.0), (1, 60.0), (1, 86400.0), (2, 86400.0)]
    rows = ga.summarise(r)
    assert {x["t"]: x["seeds"] for x in rows if x["path"] == "analog_nmpu"} == {60.0: 1, 86400.0: 3}
    with pytest.raises(ValueError, match="`seeds_at` names times"):
        ga.evaluate(net, data, seeds=[0], times=TIMES, seeds_at={3600.0: [0]}, progress=False)


def test_paired_and_unpaired_differences():
    d = ga._paired({0: 98.0, 1: 97.0, 2: 99.0}, {0: 97.5, 1: 97.0, 2: 98.0, 3: 50.0})
    assert d["seeds"] == 3 and d["mean"] == pytest.approx(0.5)
    assert d["se"] == pytest.approx(np.std([0.5, 0.0, 1.0], ddof=1) / np.sqrt(3))
    u = ga._unpaired({0: 1.0, 1: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert u["mean"] == pytest.approx(2.0) and u["se"] == pytest.approx(np.sqrt(2.0 / 2))


def test_mnist_variants_and_targets(monkeypatch, tmp_path, net, data):
    """The MNIST study on a tiny stand-in (network, data, 2 seeds): every variant runs with its
    own NMPU width and ADC gain, the targets are computed from the per-seed rows, the files land."""
    vs = ga.mnist_variants(["mnist_cnn"], ["paper", "exp"])
    assert [(v.act_bits, v.hat, v.nmpu, v.adc_gain, v.wide) for v in vs] == [
        (8, False, "paper", "calibrated", True), (8, True, "paper", "calibrated", True),
        (4, False, "paper", "calibrated", True), (4, True, "paper", "calibrated", True),
        (4, True, "paper", "fixed", True), (4, True, "paper", "calibrated", False),
        (8, False, "exp", "calibrated", True)]
    assert vs[0].main and vs[0].times == ga.MNIST_TIMES and not any(v.main for v in vs[1:])
    hat = ga.mnist_variants(["mnist_cnn", "mnist_mlp"], ["paper"], main_kind="8hat")
    assert [(v.network, v.act_bits, v.hat) for v in hat if v.main] == [("mnist_cnn", 8, True)]
    fine = ga.mnist_variants(["mnist_mlp"], ["paper"], kinds=("8hat", "4hat", "4hat-narrow"),
                             hop_frac_bits=3)
    assert [v.hop_frac_bits for v in fine] == [0, 3, 0] and fine[1].label.endswith("fine hops 3")
    h14 = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("8hat", "4"), hat_noise=1.4)
    assert h14[0].train_config().hw_noise == 1.4 and "HAT x1.4" in h14[0].label
    assert h14[1].train_config().hw_noise == 0.0           # float-trained stays float-trained
    # --hat-distill-from: the hardware-aware networks learn from the teacher, the others do not
    dist = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("8", "8hat", "4", "4hat"),
                             hat_distill="mnist_cnn")
    tcs = [v.train_config() for v in dist]
    assert [tc.distill_from for tc in tcs] == ["", "mnist_cnn", "", "mnist_cnn"]
    assert (tcs[3].distill_temp, tcs[3].distill_weight) == (ga.DISTILL_TEMP, ga.DISTILL_WEIGHT)
    assert tcs[3].act_bits == 4 and tcs[3].hw_noise == ga.HAT_NOISE
    assert gnet.cache_key(gnet.NETWORKS["mnist_cnn"], tcs[3]) != gnet.cache_key(
        gnet.NETWORKS["mnist_cnn"], vs[3].train_config())
    assert "distilled from mnist_cnn" in dist[3].label and "distilled" not in dist[2].label
    with pytest.raises(ValueError, match="`hat_distill` .* hardware-aware variants only"):
        ga.Variant("mnist_cnn", 4, False, "paper", (ga.DAY,), hat_distill="mnist_cnn").train_config()
    with pytest.raises(ValueError, match="`distill_from` must be"):
        dist_bad = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("8hat",), hat_distill="nope")
        dist_bad[0].train_config()
    with pytest.raises(ValueError, match="`main_kind` must be '8' or '8hat'"):
        ga.mnist_variants(["mnist_cnn"], ["paper"], main_kind="4")
    # 4-bit: the logits and partial sums on the preset at 8 bits, unless narrow
    assert vs[3].wide_cfg() is __import__("hdl.config").config.NMPU_PRESETS["paper"]
    assert vs[5].wide_cfg() is None and vs[0].wide_cfg() is None
    assert vs[5].label.endswith("narrow chain") and not vs[3].label.endswith("chain")
    only = ga.mnist_variants(["mnist_cnn"], ["paper", "exp"], quick=True, kinds=("8", "4hat"))
    assert [(v.act_bits, v.hat) for v in only] == [(8, False), (4, True)]
    assert only[0].times == ga.MNIST_QUICK_TIMES
    assert vs[3].train_config().act_bits == 4 and vs[3].train_config().hw_noise == ga.HAT_NOISE
    assert vs[2].train_config() == gnet.train_config("mnist_cnn")
    assert vs[3].nmpu_cfg().out_bits == 4 and vs[3].tile_cfg().input_bits == 4
    assert vs[0].nmpu_cfg() is __import__("hdl.config").config.NMPU_PRESETS["paper"]

    small = data._replace(x_test=data.x_test[:80], y_test=data.y_test[:80])
    trained = {}

    seeds = []

    def fake_train(name, tcfg=None, **kw):  # the tiny network for every variant
        trained[tcfg.act_bits, tcfg.hw_noise] = True
        seeds.append(tcfg.seed)
        return net

    monkeypatch.setattr(gnet, "load_or_train", fake_train)
    monkeypatch.setattr(ga, "mnist_variants", lambda nets, presets, quick=False, kinds=(), **kw: [
        ga.Variant("tiny", 8, False, "paper", (60.0, 86400.0, ga.YEAR), main=True),
        ga.Variant("tiny", 8, True, "paper", (86400.0,)),
        ga.Variant("tiny", 4, True, "paper", (86400.0,))])
    import golden.data
    monkeypatch.setattr(golden.data, "mnist", lambda: small)
    doc = ga.main(["--suite", "mnist", "--seeds", "3", "--curve-seeds", "2", "--networks", "mlp",
                   "--nmpu-presets", "paper", "--out", str(tmp_path)])
    assert set(trained) == {(0, 0.0), (0, ga.HAT_NOISE), (4, ga.HAT_NOISE)}
    assert set(seeds) == {gnet.TRAIN.seed}
    names = [t["target"].split(":")[0] for t in doc["targets"]]
    assert names == ["MNIST CNN, 20 seeds, t = 1 day", "drift", "tiny"]
    assert "| tiny FP16 LDPU |" in (tmp_path / "accuracy_mnist.md").read_text()
    main_rows = doc["variants"][0]["rows"]
    nm = {r["t"]: r for r in main_rows if r["path"] == "analog_nmpu"}
    assert nm[86400.0]["seeds"] == 3 and nm[60.0]["seeds"] == 2
    t0 = doc["targets"][0]
    assert t0["mean"] == pytest.approx(nm[86400.0]["paired_nmpu_minus_ldpu"]["mean"])
    assert t0["met"] == (abs(t0["mean"]) <= 0.12 and abs(t0["mean"]) + 2 * t0["se"] <= 0.2
                         and t0["image_points"] <= 0.1)
    assert t0["image_points"] == pytest.approx(100 / 80) and not t0["met"]   # 80 images: too few
    csv = (tmp_path / "accuracy_mnist_seeds.csv").read_text().splitlines()
    assert csv[0] == "variant,seed,t,path,accuracy" and len(csv) == 1 + 3 * (3 + 2 + 2 + 2 + 2)
    text = (tmp_path / "accuracy_mnist.md").read_text()
    assert "## Targets" in text and "| tiny 8-bit float-trained NMPU paper | 1 year | 2 |" in text
    assert "by training seed" not in text and "train_seeds" not in doc      # no --train-seeds
    assert (tmp_path / "accuracy_mnist_drift.png").stat().st_size > 1000


def test_mnist_variants_activation_clip():
    """`act_clip` goes to the 4-bit variants only: their compiler clip and, hardware-aware, their
    training quantiser (another cache key); the 8-bit ones keep the 99.99th percentile."""
    vs = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("8hat", "4", "4hat"), act_clip=99.5)
    assert [v.act_clip for v in vs] == [None, 99.5, 99.5]
    assert vs[2].train_config().act_clip == 99.5 and "HAT clip 99.5 NMPU" in vs[2].label
    assert vs[1].train_config() == gnet.train_config("mnist_cnn")     # float-trained
    assert vs[0].train_config() == gnet.train_config("mnist_cnn", hw_noise=ga.HAT_NOISE)
    default = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("4hat",))[0]
    assert default.act_clip == ga.ACT_CLIP_4


def test_bench_network_reads_replays_every_read(net, data):
    from studies import bench
    prog = gc.ProgrammedNetwork(gc.plan(net, data.x_train), 0)
    r = bench.bench_network_reads(prog, net, data.x_test[:30], repeat=1)
    tiles = [t for layer in prog.tiles.values() for row in layer for t in row]
    assert r["reads"] == len(tiles) and r["vectors"] == 30 * len(tiles)
    assert r["reads_seconds"] > 0 and r["matmul_2x_seconds"] > 0
    assert all("read" not in vars(t) for t in tiles)      # the spies are gone


def test_paths_subset_skips_fp16(net, data):
    r = ga.evaluate(net, data, seeds=[0], times=(60.0,), paths=("analog_float", "analog_nmpu"),
                    progress=False, budget=False)
    assert {x["path"] for x in r["runs"]} == {"analog_float", "analog_nmpu"}
    rows = ga.summarise(r)
    assert [x["path"] for x in rows] == ["float", "analog_float", "analog_nmpu"]
    assert "paired_nmpu_minus_ldpu" not in rows[-1]
    assert {x["path"] for x in ga.layer_table(r)} == {"analog_float", "analog_nmpu"}
    with pytest.raises(ValueError, match="`paths` must hold 'analog_nmpu'"):
        ga.evaluate(net, data, seeds=[0], times=(60.0,), paths=("analog_ldpu",), progress=False)


def test_train_seeds_pair_4bit_and_8bit_by_training_seed(monkeypatch, tmp_path, capsys, data):
    """`--train-seeds`: every variant runs once per training seed (the network trained with that
    seed), 4-bit HAT − 8-bit HAT at 1 day is reported per training seed, paired by device seed,
    and pooled (mean ± SE over the training seeds) from the per-seed rows; without the option
    nothing changes; bad seeds are refused naming the option."""
    default = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("8hat", "4hat"))
    assert all(v.train_seed is None and "train seed" not in v.label for v in default)
    seeded = ga.mnist_variants(["mnist_cnn"], ["paper"], kinds=("8hat", "4hat"), train_seed=7)
    assert [v.train_config() for v in seeded] == [
        dataclasses.replace(v.train_config(), seed=7) for v in default]
    assert "HAT train seed 7 clip 99.5 NMPU" in seeded[1].label

    small = data._replace(x_test=data.x_test[:80], y_test=data.y_test[:80])
    nets, asked = {}, []

    def fake_train(name, tcfg=None, **kw):  # a tiny network per training seed and width
        asked.append((tcfg.seed, tcfg.act_bits, tcfg.hw_noise))
        key = tcfg.seed, tcfg.act_bits
        if key not in nets:
            t = TrainConfig(epochs=2, seed=tcfg.seed, lr=0.02, act_bits=tcfg.act_bits)
            params, _ = gnet.train(TINY, t, small.x_train, small.y_train, progress=False)
            nets[key] = gnet.Network(TINY, t, params, {"test_accuracy": 0.9})
        return nets[key]

    monkeypatch.setattr(gnet, "load_or_train", fake_train)
    monkeypatch.setattr(ga, "plots_mnist", lambda doc, out: None)  # tested above; seconds
    import golden.data
    monkeypatch.setattr(golden.data, "mnist", lambda: small)
    argv = ["--suite", "mnist", "--networks", "mnist_cnn", "--variants", "8hat", "4hat",
            "--nmpu-presets", "paper", "--curve-seeds", "2", "--no-fp16", "--no-budget",
            "--out", str(tmp_path)]
    doc = ga.main(argv + ["--train-seeds", "5", "6"])
    capsys.readouterr()
    assert sorted(set(asked)) == [(5, 0, 1.0), (5, 4, 1.0), (6, 0, 1.0), (6, 4, 1.0)]
    assert doc["train_seeds"] == [5, 6] and len(doc["variants"]) == 4
    (g,) = doc["by_train_seed"]
    assert g["network"] == "mnist_cnn" and [x["train_seed"] for x in g["rows"]] == [5, 6]
    rows = [line.split(",") for line in
            (tmp_path / "accuracy_mnist_seeds.csv").read_text().splitlines()[1:]]
    diffs = []
    for x, ts in zip(g["rows"], (5, 6)):
        acc = {(bits, int(seed)): float(a) for label, seed, t, path, a in rows
               for bits in (4, 8) if f"{bits}-bit HAT train seed {ts} " in label
               and t == "86400" and path == "analog_nmpu"}
        d = [acc[4, s] - acc[8, s] for s in (0, 1)]
        assert x["paired"]["mean"] == pytest.approx(np.mean(d), abs=0.006)
        assert x["paired"]["seeds"] == 2 and x["nmpu_4"] == pytest.approx(
            np.mean([acc[4, 0], acc[4, 1]]), abs=0.006)
        diffs.append(x["paired"]["mean"])
    p = g["pooled"]
    assert p["mean"] == pytest.approx(np.mean(diffs))
    assert p["se"] == pytest.approx(abs(diffs[0] - diffs[1]) / 2)
    assert p["train_seeds"] == 2 and p["device_pairs"] == 4 and p["met"] == (p["mean"] >= -1)
    assert p["lo"] == pytest.approx(p["mean"] - 2 * p["se"])
    pooled = doc["targets"][-1]
    assert "paired by training seed" in pooled["target"] and pooled["mean"] == p["mean"]
    per_seed = [t for t in doc["targets"] if t["target"] == "mnist_cnn: 4-bit within 1.0 point "
                "of 8-bit at 1 day, both hardware-aware (NMPU)"]
    assert [("train seed 5" in t["variant"], "train seed 6" in t["variant"]) for t in per_seed] \
        == [(True, False), (False, True)]
    text = (tmp_path / "accuracy_mnist.md").read_text()
    assert "## mnist_cnn: 4-bit HAT − 8-bit HAT at 1 day by training seed" in text
    assert "| **pooled** (2 training seeds, 4 pairs) |" in text
    for bad, says in ((["5", "6", "5"], "seed 5 given twice"), (["-3"], "non-negative integer"),
                      (["x"], "not 'x'")):
        with pytest.raises(SystemExit):
            ga.main(argv + ["--train-seeds", *bad])
        err = capsys.readouterr().err
        assert "--train-seeds" in err and says in err
    with pytest.raises(SystemExit):
        ga.main(["--train-seeds", "1", "--out", str(tmp_path)])
    assert "--train-seeds needs --suite mnist" in capsys.readouterr().err


def test_hat_distill_flag_reaches_the_variants(monkeypatch):
    """`--hat-distill-from` reaches `mnist_variants` (default '': each network's preset)."""
    seen = []

    class Stop(Exception):
        pass

    def record(nets, presets, **kw):
        seen.append(kw["hat_distill"])
        raise Stop

    import golden.data
    monkeypatch.setattr(ga, "mnist_variants", record)
    monkeypatch.setattr(golden.data, "mnist", lambda: None)
    for argv, want in (([], ""), (["--hat-distill-from", "mnist_cnn"], "mnist_cnn")):
        with pytest.raises(Stop):
            ga.main(["--suite", "mnist", "--networks", "mnist_cnn"] + argv)
    assert seen == ["", "mnist_cnn"]


def test_times_flag_restricts_every_variant(monkeypatch):
    """`--times 1d`: every variant reads at the times it has of those; a variant left with none
    is dropped, none left at all is an error, an unknown name is refused."""
    seen = []

    class Stop(Exception):
        pass

    def record(variants, data, **kw):
        seen.append([(v.act_bits, v.hat, v.adc_gain, v.times) for v in variants])
        recal.append((kw["recal"], kw["recal_source"], kw["recal_at"]))
        raise Stop

    recal = []

    import golden.data
    monkeypatch.setattr(ga, "run_variants", record)
    monkeypatch.setattr(golden.data, "mnist", lambda: None)
    with pytest.raises(Stop):
        ga.main(["--suite", "mnist", "--networks", "mnist_cnn", "--nmpu-presets", "paper",
                 "--variants", "8", "4hat", "4hat-fixed", "--times", "1d", "1y"])
    assert seen == [[(8, False, "calibrated", (ga.DAY, ga.YEAR)),
                     (4, True, "calibrated", (ga.DAY, ga.YEAR)), (4, True, "fixed", (ga.DAY,))]]
    with pytest.raises(SystemExit):
        ga.main(["--suite", "mnist", "--networks", "mnist_cnn", "--nmpu-presets", "paper",
                 "--variants", "4hat-fixed", "--times", "1y"])
    with pytest.raises(SystemExit):
        ga.main(["--suite", "mnist", "--times", "2d"])
    assert ga.parse_time("30d") == 30 * ga.DAY
    # the MNIST study recalibrates by default (moments, on the NMPU's codes, at every read time)
    assert recal == [(ga.RECAL_MNIST, "codes", None)] == [("moments", "codes", None)]
    with pytest.raises(Stop):
        ga.main(["--suite", "mnist", "--networks", "mnist_cnn", "--nmpu-presets", "paper",
                 "--variants", "8", "--recal", "none"])
    with pytest.raises(Stop):
        ga.main(["--suite", "mnist", "--networks", "mnist_cnn", "--nmpu-presets", "paper",
                 "--variants", "8", "--recal", "twin", "--recal-source", "counts",
                 "--recal-at", "60"])
    assert recal[1:] == [("none", "codes", None), ("twin", "counts", 60.0)]
    with pytest.raises(SystemExit):
        ga.main(["--suite", "mnist", "--recal", "none", "--recal-at", "60"])


def test_workers_give_the_runs_of_one_process(net, data, result):
    """`workers` 2: the seeds in two forked processes, the runs equal (every field, in seed
    order) to those of one process; bad counts refused by name."""
    cfg = gt.TileConfig(name="noisy", prog_noise_scale=3.0)
    two = ga.evaluate(net, data, seeds=[0, 1], times=TIMES, tile_cfg=cfg, progress=False,
                      workers=2)
    assert len(two["runs"]) == len(result["runs"])
    for a, b in zip(two["runs"], result["runs"]):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], np.ndarray):
                np.testing.assert_array_equal(a[k], b[k])
            else:
                assert a[k] == b[k], k
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="`workers` must be a positive integer"):
            ga.evaluate(net, data, seeds=[0], times=TIMES[:1], tile_cfg=cfg, progress=False,
                        workers=bad)
    with pytest.raises(SystemExit):
        ga.main(["--suite", "mnist", "--workers", "0"])
