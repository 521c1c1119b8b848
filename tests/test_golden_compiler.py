"""golden/compiler.py: BN folding, the compiled NMPU / LDPU / ideal paths against the float layer
within the quantisation bound (per layer, layers split over tiles, polarity flips), the folded
gain estimates and drift factor, and errors that name the problem. Tiny networks, few epochs."""

import dataclasses

import numpy as np
import pytest

from golden import compiler as gc
from golden import network as gnet
from golden import tile as gt
from golden.network import Dense, TrainConfig
from hdl.config import LDPU_PRESETS, NMPU_PRESETS

from .test_golden_network import TINY_CNN, TINY_MLP

# rows 32 and 8 lines: fc1 (64 + bias rows) spans 3 row tiles, every layer 2 column tiles
SMALL = gt.TileConfig(name="small", rows=32, cols=8)


@pytest.fixture(scope="module")
def data():
    from golden.data import digits
    return digits()


@pytest.fixture(scope="module")
def mlp(data):
    params, _ = gnet.train(TINY_MLP, TrainConfig(epochs=2, seed=3, lr=0.02), data.x_train,
                           data.y_train, progress=False)
    # two channels with a negative BN scale: their columns must be flipped
    params["fc1"]["gamma"][[1, 6]] *= -1
    params["fc1"]["beta"][[1, 6]] = np.abs(params["fc1"]["beta"][[1, 6]]) + 0.5
    return gnet.Network(TINY_MLP, TrainConfig(), params)


@pytest.fixture(scope="module")
def cnn(data):
    params, _ = gnet.train(TINY_CNN, TrainConfig(epochs=1, seed=4, lr=0.02), data.x_train[:300],
                           data.y_train[:300], progress=False)
    return gnet.Network(TINY_CNN, TrainConfig(), params)


def test_fold_bn_equals_unfolded_bn():
    rng = np.random.default_rng(0)
    op = Dense("fc", "x", "y", 5, 4)
    p = {"W": rng.normal(size=(5, 4)), "gamma": np.array([1.5, -0.7, 0.2, 3.0]),
         "beta": rng.normal(size=4), "mean": rng.normal(size=4), "var": rng.uniform(0.1, 2, 4)}
    x = rng.normal(size=(7, 5))
    W, scale, bias = gc.fold_bn(op, p)
    folded = np.maximum(scale * (x @ W) + bias, 0)
    np.testing.assert_allclose(folded, gnet.FloatMatrix({"fc": p})(op, x, None), atol=1e-12)
    assert scale[1] < 0                      # the sign survives: it becomes a polarity flip
    op2 = Dense("fc", "x", "y", 5, 4, bn=False, relu=False)
    q = {"W": p["W"], "b": p["beta"]}
    W, scale, bias = gc.fold_bn(op2, q)
    np.testing.assert_array_equal(scale, 1.0)
    np.testing.assert_array_equal(bias, p["beta"])


def _tile_chain(prog, op, x_codes, residual, t, path, true_gains):
    """One layer through its tiles as `AnalogMatrix` composes them, with the bound of every
    tile and whether a partial sum reached a rail (then the bound does not apply)."""
    lp = prog.plan.layers[op.name]
    sp = lp.split
    x = np.concatenate([np.clip(x_codes, -127, 127),
                        np.full((x_codes.shape[0], lp.bias_rows), 127)], axis=1).astype(np.int64)
    imgs = prog.compile(t)
    ys, bounds, railed = [], [], []
    for k in range(sp.col_tiles):
        prev = None if residual is None else residual[:, sp.cols_of(k)]
        bound = 0.0
        rail = np.zeros((x.shape[0], sp.col_edges[k + 1] - sp.col_edges[k]), dtype=bool)
        for r in range(sp.row_tiles):
            tile = prog.tiles[op.name][r][k]
            img = imgs[op.name, r, k]
            p, n = tile.read(sp.inputs(x, r), t, lsb=lp.lsb)
            prev = gc.post_process(path, prog.plan.nmpu_cfg, prog.plan.ldpu_cfg, img, p, n, prev)
            gp, gm = (tile.gain_pos, tile.gain_neg) if true_gains else (None, None)
            bound = bound + gc.layer_bound(prog.plan.nmpu_cfg, img, p, n, gp, gm)
            if r < sp.row_tiles - 1:
                rail |= np.abs(prev) >= 127
        ys.append(prev)
        bounds.append(bound)
        railed.append(rail)
    return (np.concatenate(ys, axis=1), np.concatenate(bounds, axis=1),
            np.concatenate(railed, axis=1))


@pytest.mark.parametrize("gains", [False, True], ids=["ideal", "adc-gains"])
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_round_trip_within_the_quantisation_bound(request, data, which, gains):
    """Noise off (with `gains`: ADC gain spread on, corrected by the calibration): every layer's
    NMPU output lies within `layer_bound` of the float layer on the same input codes; the LDPU
    within that plus 2 LSB of FP16 rounding (studies/budget.py), the ideal path within it too."""
    net = request.getfixturevalue(which)
    tile_cfg = SMALL.ideal if which == "mlp" else dataclasses.replace(SMALL.ideal, rows=36)
    if gains:
        tile_cfg = dataclasses.replace(tile_cfg, adc_gain_sigma=0.07)
    plan = gc.plan(net, data.x_train, tile_cfg=tile_cfg)
    if which == "mlp":
        assert plan.layers["fc1"].split.row_tiles == 3 and plan.layers["fc1"].split.col_tiles == 2
    else:
        assert plan.layers["fc"].split.row_tiles == 2
    prog = gc.ProgrammedNetwork(plan, 11)
    t = 3600.0
    x = data.x_test[:60]
    trace = {}
    gnet.run(net.cfg, gc.encode_input(plan, x), prog.matrix("nmpu", t), trace=trace)
    checked = 0
    for op in net.cfg.matrix_ops:
        rows = gnet.layer_rows(op, trace[op.src])
        res = None if op.residual is None else trace[op.residual].reshape(rows.shape[0], op.c_out)
        ref = gc.layer_reference(plan, op, rows, res)
        y, bound, rail = _tile_chain(prog, op, rows, res, t, "nmpu", gains)
        np.testing.assert_array_equal(y, trace[op.dst].reshape(y.shape))  # the executor agrees
        ok = ~rail & (np.abs(ref) < 127)
        err = np.abs(y - ref)
        assert np.all(err[ok] <= bound[ok]), (op.name, float((err - bound)[ok].max()))
        assert np.all(np.abs(y - np.clip(ref, -128, 127))[ok] <= bound[ok])
        yl, _, _ = _tile_chain(prog, op, rows, res, t, "ldpu", gains)
        assert np.all(np.abs(yl - ref)[ok] <= bound[ok] + 2.0), op.name
        # the bound is tight enough to matter: a 3 % scale error breaks it somewhere
        assert np.any(np.abs(1.03 * ref - y)[ok] > bound[ok]) or np.abs(ref[ok]).max() < 20
        checked += int(ok.sum())
    assert checked > 1000


def test_polarity_flips(mlp, data):
    plan = gc.plan(mlp, data.x_train, tile_cfg=SMALL.ideal)
    lp = plan.layers["fc1"]
    assert list(np.flatnonzero(lp.polarity < 0)) == [1, 6]
    W = mlp.params["fc1"]["W"]
    np.testing.assert_allclose(lp.weights[:64, 1], -W[:, 1] / np.abs(W[:, 1]).max())
    np.testing.assert_allclose(lp.weights[:64, 0], W[:, 0] / np.abs(W[:, 0]).max())
    assert np.all(lp.alpha > 0)
    # the programmed G+ of a flipped column holds the negative weights
    prog = gc.ProgrammedNetwork(plan, 0)
    tile = prog.tiles["fc1"][0][0]
    g_pos = tile.programmed.target_pos[:, 1]
    np.testing.assert_allclose(g_pos, np.maximum(-W[:g_pos.size, 1] / np.abs(W[:, 1]).max(), 0)
                               * SMALL.g_max)
    # and the NMPU register image of the tile needs no further flip
    img = prog.compile(60.0)["fc1", 0, 0]
    assert np.all(img.nmpu.polarity == 1) and np.all(img.ldpu.polarity == 1)


def test_gain_estimates_and_drift_factor_fold_into_the_scales(mlp, data):
    cfg = dataclasses.replace(SMALL.ideal, drift=True, adc_gain_sigma=0.07)
    plan = gc.plan(mlp, data.x_train, tile_cfg=cfg)
    prog = gc.ProgrammedNetwork(plan, 5)
    early, late = prog.compile(60.0), prog.compile(86400.0)
    for (name, r, k), img in late.items():
        lp = plan.layers[name]
        tile = prog.tiles[name][r][k]
        np.testing.assert_allclose(img.gain_p, tile.gain_pos, rtol=2e-3)
        np.testing.assert_allclose(img.gain_n, tile.gain_neg, rtol=2e-3)
        assert img.drift_factor > early[name, r, k].drift_factor > 1.0
        assert img.drift_factor > 1.3                     # a day of PCM drift
        np.testing.assert_allclose(img.alpha, lp.alpha[lp.split.cols_of(k)] * img.drift_factor)
        c = img.alpha.size
        nm = gc.compile_tile(plan.nmpu_cfg, plan.ldpu_cfg, img.alpha, img.beta, img.gain_p,
                             img.gain_n).nmpu
        np.testing.assert_array_equal(nm.params.sp[:c], img.nmpu.params.sp[:c])
    # the drift-compensated network keeps its accuracy a day later (no other noise)
    acc = gnet.accuracy(prog.logits("nmpu", 86400.0, data.x_test), data.y_test)
    assert acc >= mlp.accuracy(data.x_test, data.y_test) - 0.03


def test_bias_split_between_offset_and_rows(mlp, data):
    split = gc.plan(mlp, data.x_train, tile_cfg=SMALL.ideal)
    digital = gc.plan(mlp, data.x_train, tile_cfg=SMALL.ideal, bias_mode="digital")
    lp, ld = split.layers["fc1"], digital.layers["fc1"]
    assert ld.bias_rows == 0 and lp.bias_rows >= 1
    np.testing.assert_allclose(ld.beta_digital, ld.s_out * gc.fold_bn(TINY_MLP.ops[0], mlp.params["fc1"])[2])
    # the NMPU offset holds the digital part at the chosen shift
    prog = gc.ProgrammedNetwork(split, 0)
    for (name, r, k), img in prog.compile(60.0).items():
        assert np.all(np.abs(img.nmpu.offset_err) <= 2.0 ** (5 - img.nmpu.total_shift) + 1e-12)


def test_register_images_fit_both_units(mlp, data):
    plan = gc.plan(mlp, data.x_train, tile_cfg=SMALL, nmpu_cfg=NMPU_PRESETS["exp"])
    prog = gc.ProgrammedNetwork(plan, 2)
    for img in prog.compile(3600.0).values():
        c = img.alpha.size
        assert np.all(np.abs(img.nmpu.scale_err_p[:c]) <= 0.5)
        assert np.all(np.abs(img.ldpu.scale_err_p[:c]) <= 0.5)
        assert 0 <= img.nmpu.shift <= plan.nmpu_cfg.max_shift
        assert img.nmpu.params.e is not None


def test_errors_name_the_problem(mlp, cnn, data):
    bad = gnet.Network(TINY_MLP, TrainConfig(),
                       {k: {n: v.copy() for n, v in p.items()} for k, p in mlp.params.items()})
    bad.params["fc1"]["W"][3, 2] = np.nan
    with pytest.raises(ValueError, match=r"layer 'fc1': weight \[3, 2\] is NaN"):
        gc.plan(bad, data.x_train[:50], tile_cfg=SMALL)
    bad.params["fc1"]["W"] = np.zeros((63, 12))
    with pytest.raises(ValueError, match=r"layer 'fc1': weights of shape \(63, 12\), expected \(64, 12\)"):
        gc.plan(bad, data.x_train[:50], tile_cfg=SMALL)
    bad.params["fc1"]["W"] = mlp.params["fc1"]["W"]
    bad.params["fc1"]["var"] = np.full(11, 1.0)
    with pytest.raises(ValueError, match=r"layer 'fc1': BN `var` of shape \(11,\)"):
        gc.plan(bad, data.x_train[:50], tile_cfg=SMALL)
    with pytest.raises(ValueError, match="`bias_mode` must be 'split' or 'digital'"):
        gc.plan(mlp, data.x_train[:50], bias_mode="analog")
    with pytest.raises(ValueError, match="ADC width differs"):
        gc.plan(mlp, data.x_train[:50], tile_cfg=dataclasses.replace(SMALL, adc_bits=10))
    with pytest.raises(ValueError, match="`input_bits` must be 8"):
        gc.plan(mlp, data.x_train[:50], tile_cfg=dataclasses.replace(SMALL, input_bits=6))
    with pytest.raises(ValueError, match="the tile has 512 lines but the NMPU/LDPU serve 256/256"):
        gc.plan(mlp, data.x_train[:50], tile_cfg=dataclasses.replace(SMALL, cols=512))
    with pytest.raises(ValueError, match="layer 'c2' needs both a residual connection and a row split"):
        gc.plan(cnn, data.x_train[:50], tile_cfg=dataclasses.replace(SMALL, rows=16))
    plan = gc.plan(mlp, data.x_train[:200], tile_cfg=SMALL, ldpu_cfg=LDPU_PRESETS["paper"])
    prog = gc.ProgrammedNetwork(plan, 0)
    with pytest.raises(ValueError, match="`path` must be one of"):
        prog.matrix("fp32", 60.0)
    with pytest.raises(ValueError, match="network input holds NaN"):
        gc.encode_input(plan, np.full((1, 64), np.nan))
    with pytest.raises(ValueError, match=r"takes inputs of shape \(N, 64\)"):
        prog.logits("nmpu", 60.0, np.zeros((2, 60)))


def test_static_layer_compiles_at_its_fixed_shift(mlp, data):
    """A `static_layer` NMPU: the plan (polarity, bias caps) works from the run-time-layer
    twin, every tile is compiled at the fixed shift and the NMPU path runs with it; a shift no
    column fits is an error naming the column."""
    free = dataclasses.replace(NMPU_PRESETS["paper"], name="free", scale_frac=5, offset_int=5,
                               drop_bits=8)
    plan = gc.plan(mlp, data.x_train, tile_cfg=SMALL, nmpu_cfg=free)
    shifts = [img.nmpu.shift for img in gc.ProgrammedNetwork(plan, 2).compile(3600.0).values()]
    fixed = dataclasses.replace(free, name="fixed", static_layer=True, static_shift=min(shifts))
    plan = gc.plan(mlp, data.x_train, tile_cfg=SMALL, nmpu_cfg=fixed)
    prog = gc.ProgrammedNetwork(plan, 2)
    assert {img.nmpu.shift for img in prog.compile(3600.0).values()} == {min(shifts)}
    x = gc.encode_input(plan, data.x_test[:20])
    assert gnet.run(mlp.cfg, x, prog.matrix("nmpu", 3600.0)).shape == (20, 10)
    too_high = dataclasses.replace(fixed, static_shift=max(shifts) + 1)
    prog = gc.ProgrammedNetwork(gc.plan(mlp, data.x_train, tile_cfg=SMALL, nmpu_cfg=too_high), 2)
    with pytest.raises(ValueError, match=r"column \d+ does not fit at the forced shift"):
        prog.compile(3600.0)


@pytest.mark.parametrize("path", gc.PATHS)
def test_executor_rows_equal_the_plain_rows(cnn, data, path):
    """`golden.network.run` lets the analog executor build its rows (float64 codes converted
    once before im2col, bias inputs appended, read as checked codes); the executor called with
    the plain int64 rows of `layer_rows` (its fallback) gives the same outputs and ADC counts,
    layer by layer, on a CNN whose classifier spans two row tiles."""
    plan = gc.plan(cnn, data.x_train, tile_cfg=dataclasses.replace(SMALL, rows=36, cols=24))
    assert plan.layers["fc"].split.row_tiles == 2
    x = gc.encode_input(plan, data.x_test[:12])
    built = gc.ProgrammedNetwork(plan, 5).matrix(path, 3600.0)
    plain = gc.ProgrammedNetwork(plan, 5).matrix(path, 3600.0)
    trace = {}
    out = gnet.run(cnn.cfg, x, built, trace=trace)
    for op in cnn.cfg.ops:
        if isinstance(op, gnet.MATRIX_OPS):
            rows = gnet.layer_rows(op, trace[op.src])
            assert rows.dtype == np.int64
            res = None if op.residual is None else trace[op.residual].reshape(rows.shape[0], -1)
            y = plain(op, rows, res)
            np.testing.assert_array_equal(y, trace[op.dst].reshape(y.shape))
    assert plain.digests == built.digests and plain.saturated == built.saturated
    np.testing.assert_array_equal(out, trace[cnn.cfg.output])


# -- per-layer widths: 4-bit activations, wide (8-bit) logits and partial sums ---------------------

N4 = dataclasses.replace(NMPU_PRESETS["paper"], name="paper-out4", out_bits=4)
SMALL4 = dataclasses.replace(SMALL, name="small4", input_bits=4)


def test_wide_logits_and_row_split_layers(mlp, data):
    """With `wide_cfg`, the output layer writes 8-bit codes at a scale 127/7 finer and the
    row-split hidden layer runs its tiles on the wide NMPU but hands 4-bit codes to the next
    tile, on every path; without it every layer stays at 4 bits."""
    x_cal = data.x_train[:300]
    narrow = gc.plan(mlp, x_cal, tile_cfg=SMALL4.ideal, nmpu_cfg=N4)
    wide = gc.plan(mlp, x_cal, tile_cfg=SMALL4.ideal, nmpu_cfg=N4, wide_cfg=NMPU_PRESETS["paper"])
    assert [(lp.out_bits, lp.wide) for lp in narrow.layers.values()] == [(4, True), (4, True)]
    assert narrow.nmpu_of("fc1") is N4 and narrow.nmpu_of("fc2") is N4     # wide_cfg None
    assert wide.layers["fc1"].split.row_tiles == 3
    assert [(lp.out_bits, lp.wide) for lp in wide.layers.values()] == [(4, True), (8, True)]
    assert wide.nmpu_of("fc1") is NMPU_PRESETS["paper"]
    assert wide.layers["fc2"].s_out == pytest.approx(narrow.layers["fc2"].s_out * 127 / 7)
    assert wide.layers["fc1"].s_out == narrow.layers["fc1"].s_out
    prog = gc.ProgrammedNetwork(wide, 0)
    x = gc.encode_input(wide, data.x_test[:80])
    for path in gc.PATHS:
        trace = {}
        logits = gnet.run(TINY_MLP, x, prog.matrix(path, 60.0), trace=trace)
        assert trace["h"].min() >= 0 and trace["h"].max() == 7, path    # 4-bit codes, ReLU'd
        assert np.abs(logits).max() > 20 and logits.min() >= -128 and logits.max() <= 127, path


def _cancelling_net(seed=0):
    """64 → 8 (ReLU) → 4 logits whose first layer's two row tiles (32 rows each on SMALL4)
    cancel: tile 0's partial sum is large, the layer's output moderate, so a 4-bit partial sum
    saturates where an 8-bit one does not."""
    rng = np.random.default_rng(seed)
    cfg = gnet.NetConfig("cancel", (64,), (
        Dense("fc", "x", "h", 64, 8, bn=False, relu=True),
        Dense("out", "h", "logits", 8, 4, bn=False, relu=False)))
    w = rng.uniform(0.5, 1.0, (32, 8))
    W = np.concatenate([w, -w * rng.uniform(0.6, 1.0, (32, 8))], axis=0)
    params = {"fc": {"W": W, "b": np.zeros(8)},
              "out": {"W": rng.normal(size=(8, 4)), "b": np.zeros(4)}}
    return gnet.Network(cfg, TrainConfig(), params), rng.uniform(0.0, 1.0, (400, 64))


def test_wide_partial_sums_beat_the_narrow_chain():
    """On the same ideal tiles and input codes, the row-split layer's NMPU output against the
    float layer (output LSB) is far closer with 8-bit partial sums than with partial sums that
    saturate at the 4-bit codes; the logits, at 8 bits, are closer to the float network's."""
    net, x = _cancelling_net()
    errs, logit_errs = {}, {}
    flog = gnet.run(net.cfg, x, gnet.FloatMatrix(net.params))
    for name, wide_cfg in (("narrow", None), ("wide", NMPU_PRESETS["paper"])):
        p = gc.plan(net, x, tile_cfg=SMALL4.ideal, nmpu_cfg=N4, wide_cfg=wide_cfg)
        assert p.layers["fc"].split.row_tiles == 2 and p.layers["fc"].bias_rows == 0
        prog = gc.ProgrammedNetwork(p, 0)
        xin = gc.encode_input(p, x)
        trace = {}
        logits = gnet.run(net.cfg, xin, prog.matrix("nmpu", 60.0), trace=trace)
        op = net.cfg.ops[0]
        ref = gc.round_int8(gc.layer_reference(p, op, xin), 7)
        errs[name] = np.sqrt(np.mean((trace["h"] - ref) ** 2))
        logit_errs[name] = np.sqrt(np.mean((logits / p.layers["out"].s_out - flog) ** 2))
    assert errs["narrow"] > 1.0 and errs["wide"] < 0.5 * errs["narrow"], errs
    assert logit_errs["wide"] < logit_errs["narrow"], logit_errs


def test_width_errors_name_the_fields(mlp, data):
    x = data.x_train[:50]
    kw = dict(tile_cfg=SMALL4, nmpu_cfg=N4)
    with pytest.raises(ValueError, match=r"`wide_cfg.out_bits` \(3\) must be at least "
                                         r"`nmpu_cfg.out_bits` \(4\)"):
        gc.plan(mlp, x, **kw, wide_cfg=dataclasses.replace(N4, out_bits=3))
    with pytest.raises(ValueError, match=r"`wide_cfg.out_bits` \(10\) must be at most 8"):
        gc.plan(mlp, x, **kw, wide_cfg=dataclasses.replace(N4, out_bits=10))
    with pytest.raises(ValueError, match="`lanes` is 32 in `wide_cfg` and 64 in `nmpu_cfg`"):
        gc.plan(mlp, x, **kw, wide_cfg=dataclasses.replace(NMPU_PRESETS["paper"], lanes=32))
    # the output tensor read by a tile, and an 8-bit output tied to a 4-bit tensor by a residual
    rng = np.random.default_rng(1)
    reads = gnet.NetConfig("reads-out", (64,), (
        Dense("fc1", "x", "h", 64, 10), Dense("fc2", "h", "logits", 10, 10, relu=False)),
        output="h")
    tied = gnet.NetConfig("tied", (64,), (
        Dense("fc1", "x", "h", 64, 10), Dense("fc2", "h", "logits", 10, 10, residual="h")))
    for cfg, msg in ((reads, r"layer 'fc2' reads 'h', 8-bit codes .* `input_bits` is 4"),
                     (tied, r"'h' \(4-bit codes\) and 'logits' \(8-bit\) share one scale")):
        params = {op.name: {"W": rng.normal(size=(op.fan_in, op.c_out)),
                            "gamma": np.ones(op.c_out), "beta": np.zeros(op.c_out),
                            "mean": np.zeros(op.c_out), "var": np.ones(op.c_out)}
                  for op in cfg.matrix_ops}
        net = gnet.Network(cfg, TrainConfig(), params)
        with pytest.raises(ValueError, match=msg):
            gc.plan(net, x, **kw, wide_cfg=NMPU_PRESETS["paper"])
        gc.plan(net, x, **kw)          # without the wide path every tensor is 4 bits: fine


def test_column_drift_compensation(mlp, data):
    """`drift_comp="column"`: one factor per column from the same reference reads summed per
    line (their total is the tile's global reference); the columns' factors spread around the
    tile's and average close to it."""
    tile_plan = gc.plan(mlp, data.x_train[:300], tile_cfg=SMALL)
    col_plan = gc.plan(mlp, data.x_train[:300], tile_cfg=SMALL, drift_comp="column")
    year = 365 * 86400.0
    by_tile, by_col = gc.ProgrammedNetwork(tile_plan, 1), gc.ProgrammedNetwork(col_plan, 1)
    tile = by_col.tiles["fc1"][0][0]
    x = by_col._ref_inputs(col_plan.layers["fc1"], 0)
    lsb = col_plan.layers["fc1"].lsb
    lines = tile.drift_reference(x, year, lsb=lsb, per_line=True)
    assert lines.shape == (tile.gain_pos.size,)
    assert lines.sum() == tile.drift_reference(x, year, lsb=lsb)
    a, b = by_tile.compile(year), by_col.compile(year)
    for key, img in b.items():
        f_tile = a[key].alpha / tile_plan.layers[key[0]].alpha[tile_plan.layers[key[0]].split.cols_of(key[2])]
        f_col = img.alpha / col_plan.layers[key[0]].alpha[col_plan.layers[key[0]].split.cols_of(key[2])]
        np.testing.assert_allclose(f_tile, f_tile[0])               # one factor per tile
        assert f_col.std() > 0 and f_col.mean() == pytest.approx(f_tile[0], rel=0.2)
        assert f_tile[0] > 1.05                                      # a year of drift to undo
    with pytest.raises(ValueError, match="`drift_comp` must be 'tile' or 'column'"):
        gc.plan(mlp, data.x_train[:50], tile_cfg=SMALL, drift_comp="layer")


def test_fine_partial_sums_of_a_hidden_row_split_layer():
    """`hop_frac_bits` 3: the hidden row-split layer's partial sums run 8x finer than its output
    LSB and its last output is requantised to 4 bits: closer to the float layer than hops at the
    output LSB (NMPU and FP16 LDPU alike); 4 fractional bits leave no headroom (an error names
    the fields), so does a plan without a wider NMPU."""
    net, x = _cancelling_net()
    errs = {}
    for f in (0, 3):
        p = gc.plan(net, x, tile_cfg=SMALL4.ideal, nmpu_cfg=N4, wide_cfg=NMPU_PRESETS["paper"],
                    hop_frac_bits=f)
        assert p.layers["fc"].hop_frac_bits == f and p.layers["out"].hop_frac_bits == 0
        prog = gc.ProgrammedNetwork(p, 0)
        xin = gc.encode_input(p, x)
        ref = gc.round_int8(gc.layer_reference(p, net.cfg.ops[0], xin), 7)
        for path in ("nmpu", "ldpu"):
            trace = {}
            gnet.run(net.cfg, xin, prog.matrix(path, 60.0), trace=trace)
            assert trace["h"].min() >= 0 and trace["h"].max() <= 7
            errs[f, path] = np.sqrt(np.mean((trace["h"] - ref) ** 2))
    for path in ("nmpu", "ldpu"):
        assert errs[3, path] < 0.7 * errs[0, path], errs
    np.testing.assert_array_equal(gc.requantise(N4, np.array([0, 3, 4, 12, 20, 127]), 3),
                                  [0, 0, 0, 2, 2, 7])       # half to even, then saturated
    for f, wide in ((5, NMPU_PRESETS["paper"]), (1, None)):
        with pytest.raises(ValueError, match=r"`hop_frac_bits` must be an int in \[0, "
                                             r"`wide_cfg.out_bits` − `nmpu_cfg.out_bits`\]"):
            gc.plan(net, x, tile_cfg=SMALL4.ideal, nmpu_cfg=N4, wide_cfg=wide, hop_frac_bits=f)


def test_activation_clip(cnn, data):
    """`act_clip`: the hidden tensors' scales from that clip of what the tiles read (the residual
    group a1, a2: a1 itself and the pooled p that fc reads), the largest over the group; the
    output keeps the 99.99th percentile; None is the 99.99th percentile of every tensor."""
    x_cal = data.x_train[:200]
    trace = {}
    gnet.run(TINY_CNN, x_cal, gnet.FloatMatrix(cnn.params), trace=trace)
    base = gc.plan(cnn, x_cal)
    pct = lambda name, q: np.percentile(np.abs(trace[name]), q)
    peak = max(pct("a1", 99.99), pct("a2", 99.99))
    assert base.act_clip is None and base.layers["c1"].s_out == pytest.approx(127 / peak)
    for clip in (99.0, "mse"):
        p = gc.plan(cnn, x_cal, act_clip=clip)
        want = max(gnet.clip_level(np.abs(trace["a1"]), 8, clip),
                   gnet.clip_level(np.abs(trace["p"]), 8, clip))
        assert p.act_clip == clip
        assert p.layers["c1"].s_out == p.layers["c2"].s_out == pytest.approx(127 / want)
        if clip == 99.0:
            assert p.layers["c1"].s_out > base.layers["c1"].s_out       # a tighter clip
        assert p.layers["fc"].s_out == base.layers["fc"].s_out          # the logits: unchanged
        assert p.layers["c2"].s_in == p.layers["c1"].s_out
    with pytest.raises(ValueError, match="`act_clip` must be None, a percentile in"):
        gc.plan(cnn, x_cal, act_clip=100.5)


def test_fit_column_recovers_gain_and_offset():
    """`_fit_column`: "twin" recovers u = g·z + o by least squares, "moments" matches the means
    and standard deviations; g = 1 (offset still fitted) for a constant target, a constant u, a
    gain outside `RECAL_GAIN_RANGE` or a non-finite one."""
    rng = np.random.default_rng(0)
    z = rng.normal(3.0, 2.0, (4000, 4))
    g_true, o_true = np.array([0.8, 1.0, 1.3, 2.5]), np.array([-2.0, 0.0, 1.5, 4.0])
    u = g_true * z + o_true
    for mode in ("twin", "moments"):
        g, o = gc._fit_column(mode, u, z)
        np.testing.assert_allclose(g, g_true, rtol=1e-9)
        np.testing.assert_allclose(o, o_true, atol=1e-9)
    noisy = u + rng.normal(0, 1.0, u.shape)          # noise: least squares stays unbiased in g
    g, _ = gc._fit_column("twin", noisy, z)
    np.testing.assert_allclose(g, g_true, rtol=0.02)
    g, _ = gc._fit_column("moments", noisy, z)       # moments take the noise for gain
    assert np.all(g > g_true)
    flat = np.column_stack([np.full(100, 2.0), rng.normal(0, 1, 100), rng.normal(0, 1, 100),
                            rng.normal(0, 1, 100)])
    uu = np.column_stack([rng.normal(5, 1, 100), np.full(100, 1.0), 10.0 * flat[:, 2],
                          -flat[:, 3]])
    for mode in ("twin", "moments"):
        g, o = gc._fit_column(mode, uu, flat)
        assert g[0] == 1.0 and o[0] == pytest.approx(uu[:, 0].mean() - 2.0)   # constant target
        assert g[1] == 1.0                                                    # constant u
        assert g[2] == 1.0                                                    # 10x: out of range
    assert gc._fit_column("twin", uu, flat)[0][3] == 1.0                      # negative gain


def test_recalibration_at_read_time(mlp, data):
    """`recal`: per column, α and β refitted at t from the calibration images. The reads of the
    test images keep their ADC noise (the recalibration reads its own stream), the register
    images stay compilable, and on a year of drift the recalibrated layers are closer to the
    float layer than the drift compensation alone, on images the fit never saw; both modes, the
    fit on the NMPU's output codes (default) and on the counts, and the errors name the field."""
    year = 365 * 86400.0
    x_cal, x_test = data.x_train[:300], data.x_test[:200]
    base = gc.plan(mlp, x_cal, tile_cfg=SMALL)
    errs = {}
    for mode, source in (("none", "codes"), ("twin", "codes"), ("moments", "codes"),
                         ("moments", "counts")):
        p = gc.plan(mlp, x_cal, tile_cfg=SMALL, recal=mode, recal_source=source)
        mode = mode if source == "codes" else f"{mode} {source}"
        assert p.layers.keys() == base.layers.keys() and p.recal_source == source
        assert (p.recal_x is None) == (mode == "none")
        prog = gc.ProgrammedNetwork(p, 2)
        m = prog.matrix("float", year)
        trace, ftrace = {}, {}
        gnet.run(mlp.cfg, gc.encode_input(p, x_test), m, trace=trace)
        gnet.run(mlp.cfg, x_test, gnet.FloatMatrix(mlp.params), trace=ftrace)
        errs[mode] = {op.name: float(np.sqrt(np.mean(
            (trace[op.dst] - ftrace[op.dst] * p.layers[op.name].s_out) ** 2)))
            for op in mlp.cfg.matrix_ops}
        if mode == "none":
            digests = dict(m.digests)
        else:
            first = mlp.cfg.matrix_ops[0].name     # the same counts as without a recalibration
            assert m.digests[first] == digests[first]
            rep = prog.recal_report[year]
            assert set(rep) == {op.name for op in mlp.cfg.matrix_ops}
            assert all(gc.RECAL_GAIN_RANGE[0] <= r["gain_min"] <= r["gain_max"]
                       <= gc.RECAL_GAIN_RANGE[1] for r in rep.values())
            for path in ("nmpu", "ldpu"):           # the register images run on every path
                gnet.run(mlp.cfg, gc.encode_input(p, x_test[:20]), prog.matrix(path, year))
    assert errs["moments"] != errs["moments counts"]      # the source reaches the fit
    for mode in ("twin", "moments", "moments counts"):
        total = sum(errs[mode].values())
        assert total < 0.75 * sum(errs["none"].values()), (mode, errs)   # measured: 0.61
    with pytest.raises(ValueError, match="`recal` must be one of"):
        gc.plan(mlp, x_cal[:50], tile_cfg=SMALL, recal="bn")
    with pytest.raises(ValueError, match="`recal_source` must be one of"):
        gc.plan(mlp, x_cal[:50], tile_cfg=SMALL, recal="twin", recal_source="adc")


def test_recalibration_once_applied_later(mlp, data):
    """`recal_at`: the fit is made once, at that time, and the same gains and offsets are applied
    on top of each later read time's drift compensation; bad times are refused by name."""
    year, minute = 365 * 86400.0, 60.0
    x_cal = data.x_train[:300]
    at = gc.ProgrammedNetwork(gc.plan(mlp, x_cal, tile_cfg=SMALL, recal="moments",
                                      recal_at=minute), 2)
    every = gc.ProgrammedNetwork(gc.plan(mlp, x_cal, tile_cfg=SMALL, recal="moments"), 2)
    plain = gc.ProgrammedNetwork(gc.plan(mlp, x_cal, tile_cfg=SMALL), 2)
    late, fresh, base = at.compile(year), every.compile(year), plain.compile(year)
    assert set(at._fits) == {minute}                  # one fit, at 1 min
    assert set(every._fits) == {year}
    for (name, k), (g, o) in at._fits[minute].items():
        lp = at.plan.layers[name]
        last = lp.split.row_tiles - 1
        for r in range(lp.split.row_tiles):
            np.testing.assert_allclose(late[name, r, k].alpha, base[name, r, k].alpha / g)
        np.testing.assert_allclose(late[name, last, k].beta, (base[name, last, k].beta - o) / g)
    assert any(not np.allclose(late[key].alpha, fresh[key].alpha) for key in late)
    assert at.compile(minute) is at.compile(minute)   # the fit's own time: the fitted images
    for bad, match in ((-1.0, "finite time"), (float("nan"), "finite time"), (True, "finite time"),
                       ("1 day", "finite time")):
        with pytest.raises(ValueError, match=f"`recal_at` must be a {match}"):
            gc.plan(mlp, x_cal[:50], tile_cfg=SMALL, recal="twin", recal_at=bad)
    with pytest.raises(ValueError, match="`recal_at` .* needs a `recal` mode"):
        gc.plan(mlp, x_cal[:50], tile_cfg=SMALL, recal_at=60.0)
