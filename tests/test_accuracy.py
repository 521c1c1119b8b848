"""golden/accuracy.py: the protocol's tables on a tiny network (2 seeds, 2 times): required
fields, paired differences on shared device draws, per-layer errors, the report files."""

import copy
import dataclasses
import json

import numpy as np
import pytest

from golden import accuracy as ga
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
    from golden import bench
    r = bench.bench_tile(vectors=16, repeat=1, cfg=gt.TileConfig(name="b", rows=32, cols=16))
    assert r["vectors"] == 16 and r["rows"] == 32 and r["cols"] == 16
    assert r["tile_seconds"] > 0 and r["ratio_to_matmul"] == pytest.approx(
        r["tile_seconds"] / r["matmul_seconds"])
