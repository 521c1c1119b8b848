"""ESSOPConfig: one test per validation rule, the presets and their derived widths, identity
(`tag`) and export, and the count and exponent widths checked against brute force.

Expected widths are computed here from the spec with plain Python ints, never read back from the
config's own helpers. Primitivity of the LFSR polynomials is proven in test_golden_essop.py.
"""

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys

import pytest

from hdl.config import ESSOP_LFSR_POLYS, ESSOP_PRESETS, NMPU_PRESETS, ESSOPConfig, essop_preset

PRESET_NAMES = ["paper", "per_converter", "tiny", "double", "wide", "wide8"]
INT_FIELDS = ["rows", "cols", "mag_bits", "lfsr_width", "log2_bl_max", "lr_shift_bits",
              "rows_per_beat"]
# binary16: exponent fields 1..30 are finite (0 = subnormal/zero counts as 1, 31 = Inf/NaN)
EV_LO, EV_HI = 1 - 14, 30 - 14


def width_of(lo, hi):
    """Two's complement bits that hold every integer in [lo, hi] (independent of hdl.config)."""
    neg = (-lo - 1).bit_length() if lo < 0 else 0
    pos = hi.bit_length() if hi > 0 else 0
    return 1 + max(neg, pos)


def fields_of(cfg):
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def reciprocal(poly, n):
    return sum(1 << (n - k) for k in range(n + 1) if poly >> k & 1)


# -- validation rules, one test each -------------------------------------------------------------

@pytest.mark.parametrize("name", ["Paper", "has space", "", "-lead", "_lead", "dot.name", "ü"])
def test_name_format(name):
    with pytest.raises(ValueError, match=r"`name`.*" + re.escape(repr(name))):
        ESSOPConfig(name=name)


def test_name_not_a_string():
    with pytest.raises(ValueError, match=r"`name`.*\b5\b"):
        ESSOPConfig(name=5)


@pytest.mark.parametrize("field", ["rows", "cols"])
@pytest.mark.parametrize("value", [0, -1, 1025])
def test_rows_cols_range(field, value):
    with pytest.raises(ValueError, match=rf"`{field}` must be in \[1, 1024\], not {value}$"):
        ESSOPConfig(**{field: value})


def test_rows_cols_edges_accepted():
    assert ESSOPConfig(rows=1, cols=1024).cols == 1024
    assert ESSOPConfig(rows=1024, cols=1).rows == 1024


@pytest.mark.parametrize("value", [0, 17, -3])
def test_mag_bits_range(value):
    with pytest.raises(ValueError, match=rf"`mag_bits` must be in \[1, 16\], not {value}$"):
        ESSOPConfig(mag_bits=value, lfsr_width=24)


def test_mag_bits_edges_accepted():
    assert ESSOPConfig(mag_bits=1, lfsr_width=4).q_max == 1
    assert ESSOPConfig(mag_bits=16, lfsr_width=16).q_max == 65535


@pytest.mark.parametrize("value", [0, 1, 3, 33, 64, -16])
def test_lfsr_width_needs_table_polynomials(value):
    with pytest.raises(ValueError, match=rf"`lfsr_width` must be a width with primitive polynomials "
                                         rf"in the table \(4\.\.32\), not {value}$"):
        ESSOPConfig(lfsr_width=value, mag_bits=1)


@pytest.mark.parametrize("mag_bits, lfsr_width", [(8, 7), (9, 8), (16, 15), (5, 4)])
def test_lfsr_width_at_least_mag_bits(mag_bits, lfsr_width):
    with pytest.raises(ValueError, match=rf"`lfsr_width` must be at least `mag_bits` \({mag_bits}\).*"
                                         rf"fresh bits, not {lfsr_width}$"):
        ESSOPConfig(mag_bits=mag_bits, lfsr_width=lfsr_width)


def test_lfsr_width_equal_to_mag_bits_accepted():
    assert ESSOPConfig(mag_bits=8, lfsr_width=8).lfsr_max == 255


@pytest.mark.parametrize("value", [-1, 11])
def test_log2_bl_max_range(value):
    with pytest.raises(ValueError, match=rf"`log2_bl_max` must be in \[0, 10\], not {value}$"):
        ESSOPConfig(log2_bl_max=value)


def test_log2_bl_max_edges_accepted():
    assert ESSOPConfig(log2_bl_max=0).bl_max == 1
    assert ESSOPConfig(log2_bl_max=10).bl_max == 1024


@pytest.mark.parametrize("value", ["Shared", "per-converter", "", None, 1, "both"])
def test_rng(value):
    with pytest.raises(ValueError, match=r"`rng` must be 'shared' or 'per_converter', not "
                                         + re.escape(repr(value)) + "$"):
        ESSOPConfig(rng=value)


@pytest.mark.parametrize("value, type_name", [(1, "int"), (0, "int"), ("yes", "str"), (None, "NoneType")])
def test_double_buffer_not_bool(value, type_name):
    with pytest.raises(TypeError, match=rf"`double_buffer` must be a bool, not {type_name} "
                                        + re.escape(repr(value))):
        ESSOPConfig(double_buffer=value)


@pytest.mark.parametrize("value", [0, 7])
def test_lr_shift_bits_range(value):
    with pytest.raises(ValueError, match=rf"`lr_shift_bits` must be in \[1, 6\], not {value}$"):
        ESSOPConfig(lr_shift_bits=value)


@pytest.mark.parametrize("rows, value", [(32, 0), (32, 33), (4, -1), (1, 2)])
def test_rows_per_beat_range(rows, value):
    with pytest.raises(ValueError, match=rf"`rows_per_beat` must be in \[1, {rows}\], not {value}$"):
        ESSOPConfig(rows=rows, rows_per_beat=value)


@pytest.mark.parametrize("rows, value", [(32, 3), (32, 12), (6, 4), (7, 2)])
def test_rows_per_beat_divides_rows(rows, value):
    with pytest.raises(ValueError, match=rf"`rows_per_beat` must divide `rows` \({rows}\), not {value}$"):
        ESSOPConfig(rows=rows, rows_per_beat=value)


@pytest.mark.parametrize("rows, value, beats", [(32, 1, 32), (32, 8, 4), (32, 32, 1), (6, 3, 2),
                                                (1, 1, 1)])
def test_rows_per_beat_accepted_and_beats(rows, value, beats):
    cfg = ESSOPConfig(rows=rows, rows_per_beat=value)
    assert cfg.readout_beats == beats == cfg.derived()["readout_beats"]


@pytest.mark.parametrize("double, log2_bl, beats, clocks", [
    (False, 3, 4, 8 + 4), (True, 3, 4, 8), (True, 1, 4, 4), (True, 4, 32, 32), (False, 0, 32, 33)])
def test_clocks_per_product(double, log2_bl, beats, clocks):
    cfg = ESSOPConfig(rows_per_beat=32 // beats, double_buffer=double)
    assert cfg.clocks_per_product(log2_bl) == clocks


@pytest.mark.parametrize("field, value, width", [("rows", 16, 4), ("cols", 16, 4), ("rows", 256, 8),
                                                 ("cols", 1024, 9)])
def test_per_converter_needs_a_seed_per_converter(field, value, width):
    with pytest.raises(ValueError, match=rf"`{field}` \({value}\) must be at most 2\^`lfsr_width` − 1 "
                                         rf"\({2 ** width - 1}\) with rng 'per_converter'"):
        ESSOPConfig(**dict(dict(rows=1, cols=1), **{field: value}), lfsr_width=width, mag_bits=1,
                    rng="per_converter")


def test_per_converter_edge_accepted_and_shared_unaffected():
    cfg = ESSOPConfig(rows=15, cols=15, lfsr_width=4, mag_bits=2, rng="per_converter")
    assert (cfg.seed_stride_x, cfg.seed_stride_d) == (1, 1)
    assert ESSOPConfig(rows=1024, cols=1024, lfsr_width=4, mag_bits=2).lfsrs == 2


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("bad", [True, 4.0, "4"], ids=["bool", "float", "str"])
def test_int_fields_reject_bool_float_str(field, bad):
    with pytest.raises(TypeError, match=rf"`{field}` must be an int, not {type(bad).__name__} "
                                        rf"{re.escape(repr(bad))}"):
        ESSOPConfig(**{field: bad})


def test_config_is_frozen():
    cfg = essop_preset("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rows = 16


# -- the polynomial table ------------------------------------------------------------------------

def test_polynomial_table_covers_4_to_32():
    assert sorted(ESSOP_LFSR_POLYS) == list(range(4, 33))


@pytest.mark.parametrize("n", sorted(ESSOP_LFSR_POLYS))
def test_polynomial_table_entries(n):
    px, pd = ESSOP_LFSR_POLYS[n]
    for p in (px, pd):
        assert p >> n == 1 and p & 1, f"{p:#x} is not of degree {n} with a constant term"
    assert px != pd
    if n > 4:  # width 4 has exactly two primitive polynomials, reciprocals of each other
        assert pd != reciprocal(px, n)
    cfg = ESSOPConfig(lfsr_width=n, mag_bits=min(n, 8))
    assert (cfg.poly_x, cfg.poly_d) == (px, pd)


# -- presets and derived widths ------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_valid_and_rebuild(name):
    cfg = essop_preset(name)
    assert cfg is ESSOP_PRESETS[name]
    assert cfg.name == name
    assert ESSOPConfig(**fields_of(cfg)) == cfg


def test_preset_set_has_required_names():
    assert set(PRESET_NAMES) <= set(ESSOP_PRESETS)


def test_preset_fields_match_spec():
    paper = essop_preset("paper")
    assert (paper.rows, paper.cols, paper.mag_bits, paper.lfsr_width, paper.log2_bl_max) == (32, 32, 8, 16, 7)
    assert (paper.rng, paper.double_buffer) == ("shared", False)
    assert essop_preset("per_converter") == dataclasses.replace(paper, name="per_converter",
                                                                rng="per_converter")
    assert essop_preset("double") == dataclasses.replace(paper, name="double", double_buffer=True)
    tiny = essop_preset("tiny")
    assert (tiny.rows, tiny.cols, tiny.mag_bits, tiny.lfsr_width, tiny.log2_bl_max) == (4, 4, 3, 8, 4)
    # issue 13: 32 × 32, 8 rows per beat, counters for BL <= 16, double-buffered
    assert essop_preset("wide") == dataclasses.replace(paper, name="wide", rows_per_beat=8,
                                                       log2_bl_max=4, double_buffer=True)
    # the same with counters for BL <= 8, the training BL
    assert essop_preset("wide8") == dataclasses.replace(paper, name="wide8", rows_per_beat=8,
                                                        log2_bl_max=3, double_buffer=True)
    assert all(essop_preset(n).rows_per_beat == 1 for n in PRESET_NAMES
               if n not in ("wide", "wide8"))


@pytest.mark.parametrize("name, expect", [
    # BL <= 128: C in [-128, 128] -> 9 bits; E in [2·(−13) − 7 − 31, 2·16] = [−64, 32] -> 7 bits;
    # e_v in [−13, 16] -> 6 bits; log2_bl 0..7 -> 3 bits; 65535 // 32 = 2047
    ("paper", dict(q_max=255, bl_max=128, count_bits=9, exp_bits=7, ev_bits=6, log2_bl_bits=3,
                   lr_shift_max=31, lfsr_max=65535, lfsrs=2, counter_banks=1, seed_stride_x=2047,
                   seed_stride_d=2047)),
    ("per_converter", dict(q_max=255, bl_max=128, count_bits=9, exp_bits=7, lfsrs=64,
                           counter_banks=1)),
    ("double", dict(count_bits=9, exp_bits=7, lfsrs=2, counter_banks=2)),
    # BL <= 16: C in [-16, 16] -> 6 bits; E in [−26 − 4 − 31, 32] = [−61, 32] -> 7 bits;
    # 32 rows / 8 per beat = 4 beats
    ("wide", dict(count_bits=6, exp_bits=7, lfsrs=2, counter_banks=2, readout_beats=4,
                  bl_max=16, log2_bl_bits=3)),
    # BL <= 8: C in [-8, 8] -> 5 bits; log2_bl 0..3 -> 2 bits
    ("wide8", dict(count_bits=5, lfsrs=2, counter_banks=2, readout_beats=4, bl_max=8,
                   log2_bl_bits=2)),
    # BL <= 16: C in [-16, 16] -> 6 bits; E in [−26 − 4 − 3, 32] = [−33, 32] -> 7 bits;
    # log2_bl 0..4 -> 3 bits; 255 // 4 = 63
    ("tiny", dict(q_max=7, bl_max=16, count_bits=6, exp_bits=7, ev_bits=6, log2_bl_bits=3,
                  lr_shift_max=3, lfsr_max=255, lfsrs=2, seed_stride_x=63, seed_stride_d=63)),
])
def test_preset_derived_widths(name, expect):
    cfg = essop_preset(name)
    derived = cfg.derived()
    for key, value in expect.items():
        assert getattr(cfg, key) == value, key
        assert derived[key] == value, key


def test_derived_ranges():
    cfg = essop_preset("paper")
    assert cfg.count_range == (-128, 128)
    assert cfg.ev_range == (EV_LO, EV_HI) == (-13, 16)
    assert cfg.exp_range == (-64, 32)
    d = cfg.derived()
    assert d["exp_range"] == [-64, 32] and d["count_range"] == [-128, 128]
    assert d["poly_x"] == ESSOP_LFSR_POLYS[16][0] and d["poly_d"] == ESSOP_LFSR_POLYS[16][1]
    json.dumps(d)  # exportable as is


SMALL = [
    dict(log2_bl_max=0, lr_shift_bits=1), dict(log2_bl_max=3, lr_shift_bits=2),
    dict(log2_bl_max=10, lr_shift_bits=6), dict(log2_bl_max=4, lr_shift_bits=3),
]


@pytest.mark.parametrize("kw", SMALL, ids=lambda kw: f"bl{kw['log2_bl_max']}-lr{kw['lr_shift_bits']}")
def test_exp_bits_brute_force(kw):
    cfg = ESSOPConfig(**kw)
    es = {ex + ed - lb - lr for ex, ed, lb, lr in itertools.product(
        range(EV_LO, EV_HI + 1), range(EV_LO, EV_HI + 1), range(kw["log2_bl_max"] + 1),
        range(2 ** kw["lr_shift_bits"]))}
    es.add(0)  # an error product reports E = 0
    b = cfg.exp_bits
    assert -2 ** (b - 1) <= min(es) and max(es) <= 2 ** (b - 1) - 1, "E does not fit exp_bits"
    assert min(es) < -2 ** (b - 2) or max(es) > 2 ** (b - 2) - 1, "exp_bits - 1 would suffice"
    assert cfg.exp_range == (min(es), max(es))


@pytest.mark.parametrize("log2_bl_max", range(11))
def test_count_bits_brute_force(log2_bl_max):
    cfg = ESSOPConfig(log2_bl_max=log2_bl_max)
    bl = 2 ** log2_bl_max
    counts = range(-bl, bl + 1)  # every clock may step the counter by −1 or +1
    assert cfg.count_bits == width_of(min(counts), max(counts))
    assert cfg.count_range == (-bl, bl)


def test_ev_bits_brute_force():
    assert essop_preset("paper").ev_bits == width_of(EV_LO, EV_HI) == 6


@pytest.mark.parametrize("rows, width", [(1, 16), (32, 16), (3, 8), (7, 4), (100, 12)])
def test_seed_strides(rows, width):
    cfg = ESSOPConfig(rows=rows, cols=max(1, rows // 2), lfsr_width=width, mag_bits=4)
    assert cfg.seed_stride_x == (2 ** width - 1) // rows
    assert cfg.seed_stride_d == (2 ** width - 1) // max(1, rows // 2)
    assert (rows - 1) * cfg.seed_stride_x < 2 ** width - 1   # distinct starting points


# -- identity and export -------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESET_NAMES)
def test_tag_of_preset_is_its_name(name):
    cfg = essop_preset(name)
    assert cfg.tag == name
    assert ESSOPConfig(**fields_of(cfg)).tag == name


def test_tag_of_custom_is_name_and_hash():
    cfg = ESSOPConfig(name="mine", rows=8)
    assert re.fullmatch(r"mine-[0-9a-f]{8}", cfg.tag)
    assert ESSOPConfig(name="mine", rows=8).tag == cfg.tag
    other = dataclasses.replace(essop_preset("paper"), rows=16)
    assert other.tag != "paper" and re.fullmatch(r"paper-[0-9a-f]{8}", other.tag)
    assert ESSOPConfig().tag.startswith("custom-")
    # an NMPU preset's name is not an ESSOP preset
    assert "exp" in NMPU_PRESETS and ESSOPConfig(name="exp").tag.startswith("exp-")


def test_tag_differs_for_every_field():
    base = ESSOPConfig(name="base", rows=8, cols=8, mag_bits=4, lfsr_width=8, log2_bl_max=5)
    changes = dict(rows=9, cols=7, mag_bits=5, lfsr_width=9, log2_bl_max=6, rng="per_converter",
                   double_buffer=True, lr_shift_bits=4, rows_per_beat=2, acc_max=4)
    assert set(changes) | {"name"} == {f.name for f in dataclasses.fields(ESSOPConfig)}
    tags = {base.tag}
    for field, value in changes.items():
        tags.add(dataclasses.replace(base, **{field: value}).tag)
    assert len(tags) == len(changes) + 1


def test_tag_stable_across_processes():
    cfg = ESSOPConfig(name="stable", rows=12, rng="per_converter")
    code = ("from hdl.config import ESSOPConfig; "
            "print(ESSOPConfig(name='stable', rows=12, rng='per_converter').tag)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tags = set()
    for seed in ("1", "2"):  # a tag built on hash() would change with the hash seed
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True,
                             capture_output=True, text=True)
        tags.add(out.stdout.strip())
    assert tags == {cfg.tag}


@pytest.mark.parametrize("cfg", [essop_preset(n) for n in PRESET_NAMES]
                         + [ESSOPConfig(name="x", rows=3, cols=5, mag_bits=2, lfsr_width=5,
                                        rng="per_converter", double_buffer=True)],
                         ids=lambda c: c.tag)
def test_to_dict_from_dict_round_trip(cfg):
    d = cfg.to_dict()
    assert d == fields_of(cfg)
    assert ESSOPConfig.from_dict(d) == cfg
    assert ESSOPConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert ESSOPConfig.from_dict(d).tag == cfg.tag


def test_from_dict_rejects_unknown_fields():
    d = dict(essop_preset("tiny").to_dict(), rowz=2, bogus=1, exp_bits=7)
    # exp_bits is derived, never written: it is not a field
    with pytest.raises(ValueError, match=r"unknown ESSOP config field\(s\): bogus, exp_bits, rowz$"):
        ESSOPConfig.from_dict(d)


def test_from_dict_validates_and_needs_a_dict():
    with pytest.raises(ValueError, match=r"`lfsr_width` must be at least `mag_bits` \(5\).*not 4$"):
        ESSOPConfig.from_dict(dict(essop_preset("tiny").to_dict(), lfsr_width=4, mag_bits=5))
    with pytest.raises(TypeError, match="must be a dict, not list"):
        ESSOPConfig.from_dict([("rows", 2)])


@pytest.mark.parametrize("name", ["nope", "Paper", "", "tiny ", "exp"])
def test_essop_preset_unknown(name):
    with pytest.raises(ValueError, match=rf"unknown ESSOP preset {re.escape(repr(name))}; presets: .*paper"):
        essop_preset(name)


# -- accumulation (acc_max) ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -1, 1025])
def test_acc_max_range(value):
    with pytest.raises(ValueError, match=rf"`acc_max` must be in \[1, 1024\], not {value}$"):
        ESSOPConfig(acc_max=value)


@pytest.mark.parametrize("bad", [True, 2.0, "4", None])
def test_acc_max_type(bad):
    with pytest.raises(TypeError, match="`acc_max` must be an int"):
        ESSOPConfig(acc_max=bad)


@pytest.mark.parametrize("log2_bl_max, acc_max", [(0, 1), (3, 4), (3, 16), (7, 3), (10, 1024)])
def test_count_bits_with_accumulation(log2_bl_max, acc_max):
    """The counters hold every sum of K products: |C| <= K·bl_max, and no bit more."""
    cfg = ESSOPConfig(log2_bl_max=log2_bl_max, acc_max=acc_max)
    top = acc_max << log2_bl_max
    assert cfg.count_range == (-top, top)
    assert cfg.count_bits == width_of(-top, top)
    assert cfg.accumulates == (acc_max > 1)


@pytest.mark.parametrize("double, beats, log2_bl, k, clocks", [
    (False, 32, 3, 1, 40), (False, 32, 3, 4, 16), (False, 32, 3, 16, 10), (False, 32, 3, 3, 56 / 3),
    (True, 4, 3, 1, 8), (True, 4, 3, 16, 8), (True, 32, 0, 4, 8), (True, 32, 0, 32, 1)])
def test_clocks_per_product_in_groups(double, beats, log2_bl, k, clocks):
    cfg = ESSOPConfig(rows_per_beat=32 // beats, double_buffer=double, acc_max=32)
    assert cfg.clocks_per_product(log2_bl, k) == clocks


def test_clocks_per_product_group_beyond_acc_max():
    with pytest.raises(ValueError, match=r"`k` must be in \[1, 4\], not 5$"):
        ESSOPConfig(acc_max=4).clocks_per_product(3, 5)
