"""NMPUConfig: one test per validation rule, the presets and their derived widths, identity
(`tag`) and export, and the accumulator width checked against brute force.

Expected widths are computed here from the spec with plain Python ints, never read back from the
config's own helpers.
"""

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys

import pytest

from hdl.config import NMPU_PRESETS, NMPUConfig, RoundMode, nmpu_preset

PRESET_NAMES = ["paper", "exp", "serial", "tiny", "precision", "precision256", "precision_serial"]
INT_FIELDS = ["columns", "lanes", "adc_bits", "scale_int", "scale_frac", "offset_int", "offset_frac",
              "out_bits", "exp_bits", "shift_bits", "clamp_count_bits"]


def width_of(lo, hi):
    """Two's complement bits that hold every integer in [lo, hi] (independent of hdl.config)."""
    neg = (-lo - 1).bit_length() if lo < 0 else 0
    pos = hi.bit_length() if hi > 0 else 0
    return 1 + max(neg, pos)


def acc_formula(cfg_fields, sp, o, sn=0, p=0, n=0, x=0):
    """Step 1 of the spec on plain ints: acc = (sp·P − sn·N) << (F − sf) + o << (F − of)."""
    f = max(cfg_fields["scale_frac"], cfg_fields["offset_frac"])
    if cfg_fields["input_mode"] == "dual":
        term = sp * p - sn * n
    else:
        term = sp * x
    return term * 2 ** (f - cfg_fields["scale_frac"]) + o * 2 ** (f - cfg_fields["offset_frac"])


def field_ranges(fields):
    """Inclusive (lo, hi) of every code and input, from the spec's wording."""
    sb = fields["scale_int"] + fields["scale_frac"]
    ob = fields["offset_int"] + fields["offset_frac"]
    a = fields["adc_bits"]
    return dict(sp=(0, 2 ** sb - 1), sn=(0, 2 ** sb - 1), o=(-2 ** (ob - 1), 2 ** (ob - 1) - 1),
                p=(0, 2 ** a - 1), n=(0, 2 ** a - 1), x=(-2 ** a, 2 ** a - 1))


def fields_of(cfg):
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def acc_extremes(fields, exhaustive):
    """(min, max) of acc over every input and parameter value (exhaustive) or over the corners of
    the box (acc is affine in each variable, so the corners hold its extremes)."""
    rng = field_ranges(fields)
    names = ["sp", "sn", "o", "p", "n"] if fields["input_mode"] == "dual" else ["sp", "o", "x"]
    if exhaustive:
        axes = [range(rng[k][0], rng[k][1] + 1) for k in names]
    else:
        axes = [rng[k] for k in names]
    lo = hi = None
    for values in itertools.product(*axes):
        acc = acc_formula(fields, **dict(zip(names, values)))
        lo = acc if lo is None or acc < lo else lo
        hi = acc if hi is None or acc > hi else hi
    return lo, hi


# -- validation rules, one test each -------------------------------------------------------------

@pytest.mark.parametrize("name", ["Paper", "has space", "", "-lead", "_lead", "dot.name", "ü"])
def test_name_format(name):
    with pytest.raises(ValueError, match=r"`name`.*" + re.escape(repr(name))):
        NMPUConfig(name=name)


def test_name_not_a_string():
    with pytest.raises(ValueError, match=r"`name`.*\b5\b"):
        NMPUConfig(name=5)


def test_name_accepts_lower_case_digits_dash_underscore():
    assert NMPUConfig(name="a0_b-c").name == "a0_b-c"
    assert NMPUConfig(name="9").name == "9"


@pytest.mark.parametrize("columns", [0, -4, 4097])
def test_columns_range(columns):
    with pytest.raises(ValueError, match=rf"`columns` must be in \[1, 4096\], not {columns}$"):
        NMPUConfig(columns=columns, lanes=1)


def test_columns_range_edges_accepted():
    assert NMPUConfig(columns=1, lanes=1).beats == 1
    assert NMPUConfig(columns=4096, lanes=64).beats == 64


@pytest.mark.parametrize("lanes", [0, -1, 4097])
def test_lanes_range(lanes):
    with pytest.raises(ValueError, match=rf"`lanes` must be in \[1, 4096\], not {lanes}$"):
        NMPUConfig(lanes=lanes)


@pytest.mark.parametrize("columns, lanes", [(256, 48), (256, 3), (6, 4), (4, 8)])
def test_lanes_must_divide_columns(columns, lanes):
    with pytest.raises(ValueError, match=rf"`lanes` must divide `columns` \({columns}\), not {lanes}$"):
        NMPUConfig(columns=columns, lanes=lanes)


@pytest.mark.parametrize("adc_bits", [0, 25])
def test_adc_bits_range(adc_bits):
    with pytest.raises(ValueError, match=rf"`adc_bits` must be in \[1, 24\], not {adc_bits}$"):
        NMPUConfig(adc_bits=adc_bits)


@pytest.mark.parametrize("mode", ["both", "DUAL", "", None, 1])
def test_input_mode(mode):
    with pytest.raises(ValueError, match=r"`input_mode`.*" + re.escape(repr(mode))):
        NMPUConfig(input_mode=mode)


@pytest.mark.parametrize("field, value, lo, hi", [
    ("scale_int", -1, 0, 24), ("scale_int", 25, 0, 24),
    ("scale_frac", -1, 0, 24), ("scale_frac", 25, 0, 24),
])
def test_scale_int_and_frac_range(field, value, lo, hi):
    with pytest.raises(ValueError, match=rf"`{field}` must be in \[{lo}, {hi}\], not {value}$"):
        NMPUConfig(**{field: value})


@pytest.mark.parametrize("si, sf", [(0, 0), (12, 13), (24, 24), (1, 24)])
def test_scale_total_bits(si, sf):
    with pytest.raises(ValueError, match=rf"`scale_int` \+ `scale_frac` must be 1\.\.24 bits, not {si + sf}$"):
        NMPUConfig(scale_int=si, scale_frac=sf)


def test_scale_total_bits_edges_accepted():
    assert NMPUConfig(scale_int=0, scale_frac=1).scale_bits == 1
    assert NMPUConfig(scale_int=0, scale_frac=24, adc_bits=8, out_bits=16).scale_bits == 24


@pytest.mark.parametrize("value", [0, -1, 33])
def test_offset_int_at_least_one(value):
    # the signed offset's sign bit lives in the integer bits
    with pytest.raises(ValueError, match=rf"`offset_int` must be in \[1, 32\], not {value}$"):
        NMPUConfig(offset_int=value)


@pytest.mark.parametrize("value", [-1, 33])
def test_offset_frac_range(value):
    with pytest.raises(ValueError, match=rf"`offset_frac` must be in \[0, 32\], not {value}$"):
        NMPUConfig(offset_frac=value)


@pytest.mark.parametrize("oi, of", [(20, 13), (1, 32), (32, 1)])
def test_offset_total_bits(oi, of):
    with pytest.raises(ValueError, match=rf"`offset_int` \+ `offset_frac` must be at most 32 bits, not {oi + of}$"):
        NMPUConfig(offset_int=oi, offset_frac=of)


def test_offset_total_bits_edge_accepted():
    cfg = NMPUConfig(offset_int=31, offset_frac=1)
    assert cfg.offset_range == (-2 ** 31, 2 ** 31 - 1)


@pytest.mark.parametrize("value", [1, 0, 33])
def test_out_bits_range(value):
    with pytest.raises(ValueError, match=rf"`out_bits` must be in \[2, 32\], not {value}$"):
        NMPUConfig(out_bits=value)


@pytest.mark.parametrize("value, type_name", [(1, "int"), (0, "int"), ("yes", "str"), (None, "NoneType")])
def test_residual_not_bool(value, type_name):
    with pytest.raises(TypeError, match=rf"`residual` must be a bool, not {type_name}"):
        NMPUConfig(residual=value)


def test_residual_message_names_value():
    with pytest.raises(TypeError, match=r"`residual`.*'yes'"):
        NMPUConfig(residual="yes")


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("bad", [True, 4.0, "4"], ids=["bool", "float", "str"])
def test_int_fields_reject_bool_float_str(field, bad):
    with pytest.raises(TypeError, match=rf"`{field}` must be an int, not {type(bad).__name__} {re.escape(repr(bad))}"):
        NMPUConfig(**{field: bad})


@pytest.mark.parametrize("value", [-1, 7])
def test_exp_bits_range(value):
    with pytest.raises(ValueError, match=rf"`exp_bits` must be in \[0, 6\], not {value}$"):
        NMPUConfig(exp_bits=value)


@pytest.mark.parametrize("value", [0, 6])
def test_shift_bits_range(value):
    with pytest.raises(ValueError, match=rf"`shift_bits` must be in \[1, 5\], not {value}$"):
        NMPUConfig(shift_bits=value)


@pytest.mark.parametrize("value", [0, 65])
def test_clamp_count_bits_range(value):
    with pytest.raises(ValueError, match=rf"`clamp_count_bits` must be in \[1, 64\], not {value}$"):
        NMPUConfig(clamp_count_bits=value)


# Formats that put the accumulator exactly at the int64 guard (62 bits) and one bit beyond it.
AT_GUARD = dict(adc_bits=24, scale_int=24, scale_frac=0, offset_int=1, offset_frac=13, out_bits=32)
BEYOND_GUARD = dict(AT_GUARD, offset_frac=14)


def test_acc_bits_at_guard_accepted():
    fields = dict(fields_of(NMPUConfig()), **AT_GUARD)
    assert width_of(*acc_extremes(fields, exhaustive=False)) == 62
    assert NMPUConfig(**AT_GUARD).acc_bits == 62


@pytest.mark.parametrize("kw", [
    BEYOND_GUARD,
    dict(adc_bits=24, scale_int=24, scale_frac=0, offset_int=1, offset_frac=31, out_bits=32),
    dict(adc_bits=24, scale_int=12, scale_frac=12, offset_int=1, offset_frac=31, out_bits=32,
         input_mode="signed"),
])
def test_acc_bits_beyond_int64_guard(kw):
    fields = dict(fields_of(NMPUConfig()), **kw)
    need = width_of(*acc_extremes(fields, exhaustive=False))
    assert need > 62
    with pytest.raises(ValueError, match=rf"too wide.*accumulator needs {need} bits.*"
                                         rf"adc_bits={kw['adc_bits']}.*at most 62"):
        NMPUConfig(**kw)


@pytest.mark.parametrize("shift_bits, exp_bits, total", [(5, 6, 94), (4, 6, 78), (3, 6, 70)])
def test_max_total_shift_beyond_guard(shift_bits, exp_bits, total):
    with pytest.raises(ValueError, match=rf"`shift_bits` \({shift_bits}\) with `exp_bits` \({exp_bits}\) "
                                         rf"allows shifts up to {total}, beyond.*62"):
        NMPUConfig(shift_bits=shift_bits, exp_bits=exp_bits)


def test_max_total_shift_at_guard_accepted():
    cfg = NMPUConfig(shift_bits=5, exp_bits=5)
    assert cfg.max_total_shift == 31 + 31 == 62


@pytest.mark.parametrize("shift_bits, out_bits, need", [(3, 8, 14), (4, 6, 16), (1, 2, 20)])
def test_shift_bits_too_narrow(shift_bits, out_bits, need):
    # paper formats: the accumulator is 22 bits wide, so shifts must reach 22 - out_bits
    with pytest.raises(ValueError, match=rf"`shift_bits` \({shift_bits}\) is too narrow: shifts up to "
                                         rf"{2 ** shift_bits - 1} .*22-bit.*`out_bits` \({out_bits}\).*"
                                         rf"at least {need}$"):
        NMPUConfig(shift_bits=shift_bits, out_bits=out_bits)


def test_shift_bits_just_wide_enough_accepted():
    # 22-bit accumulator, 7-bit output: shift 15 (4 bits) brings it down exactly
    assert NMPUConfig(shift_bits=4, out_bits=7).max_shift == 15


def test_config_is_frozen():
    cfg = nmpu_preset("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lanes = 32


# -- presets and derived widths ------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_valid_and_rebuild(name):
    cfg = nmpu_preset(name)
    assert cfg is NMPU_PRESETS[name]
    assert cfg.name == name
    assert NMPUConfig(**fields_of(cfg)) == cfg          # validation passes again
    assert cfg.columns % cfg.lanes == 0


def test_preset_set_has_required_names():
    assert set(PRESET_NAMES) <= set(NMPU_PRESETS)


@pytest.mark.parametrize("name, expect", [
    # paper: 8-bit scale × 12-bit count = ±255·4095 at F = 7 (scale_align 0) plus the offset
    # ±128 << 6: [-1052417, 1052353], inside ±2^21 -> 22 bits; word = sp 8 + sn 8 + o 8 = 24
    ("paper", dict(acc_bits=22, word_bits=24, beats=4, frac=7, scale_bits=8, offset_bits=8,
                   max_shift=31, max_total_shift=31, addr_bits=8)),
    # exp adds a 3-bit e field and e up to 7
    ("exp", dict(acc_bits=22, word_bits=27, beats=4, frac=7, scale_bits=8, offset_bits=8,
                 max_shift=31, max_total_shift=38, addr_bits=8)),
    ("serial", dict(acc_bits=22, word_bits=24, beats=256, frac=7, max_shift=31, addr_bits=8)),
    # tiny: ±7·7 = ±49 at F = 2 plus offset [-4, 3] << 1 = [-8, 6]: [-57, 55] -> 7 bits;
    # word = sp 3 + sn 3 + o 3 + e 1 = 10; shifts 0..7, plus e 0..1
    ("tiny", dict(acc_bits=7, word_bits=10, beats=2, frac=2, scale_bits=3, offset_bits=3,
                  max_shift=7, max_total_shift=8, addr_bits=2)),
])
def test_preset_derived_widths(name, expect):
    cfg = nmpu_preset(name)
    for key, value in expect.items():
        assert getattr(cfg, key) == value, key
    derived = cfg.derived()
    for key in set(expect) & set(derived):
        assert derived[key] == expect[key], key


def test_paper_preset_fields_match_spec():
    cfg = nmpu_preset("paper")
    assert (cfg.columns, cfg.lanes, cfg.adc_bits, cfg.input_mode) == (256, 64, 12, "dual")
    assert (cfg.scale_int, cfg.scale_frac, cfg.offset_int, cfg.offset_frac) == (1, 7, 7, 1)
    assert (cfg.out_bits, cfg.residual, cfg.exp_bits) == (8, True, 0)
    assert nmpu_preset("exp") == dataclasses.replace(cfg, name="exp", exp_bits=3)
    assert nmpu_preset("serial") == dataclasses.replace(cfg, name="serial", lanes=1)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_ranges(name):
    cfg = nmpu_preset(name)
    sb, ob = cfg.scale_int + cfg.scale_frac, cfg.offset_int + cfg.offset_frac
    assert cfg.scale_max == 2 ** sb - 1
    assert cfg.offset_range == (-2 ** (ob - 1), 2 ** (ob - 1) - 1)
    assert cfg.out_range == (-2 ** (cfg.out_bits - 1), 2 ** (cfg.out_bits - 1) - 1)
    assert cfg.x_range == (-2 ** cfg.adc_bits, 2 ** cfg.adc_bits - 1)
    assert cfg.adc_max == 2 ** cfg.adc_bits - 1
    assert cfg.e_max == 2 ** cfg.exp_bits - 1
    assert cfg.round_bits == 2 and max(RoundMode) == 2


def test_word_fields_follow_mode_and_exp():
    assert [n for n, _ in nmpu_preset("paper").word_fields] == ["sp", "sn", "o"]
    assert [n for n, _ in nmpu_preset("exp").word_fields] == ["sp", "sn", "o", "e"]
    signed = NMPUConfig(input_mode="signed", exp_bits=2)
    assert signed.word_fields == (("sp", 8), ("o", 8), ("e", 2))
    assert signed.word_bits == 18


# -- accumulator width against brute force -------------------------------------------------------

SMALL_FORMATS = [
    # (adc_bits, scale_int, scale_frac, offset_int, offset_frac)
    (3, 1, 2, 2, 1),   # tiny's formats: F = scale_frac
    (2, 0, 2, 1, 0),   # unsigned fraction-only scale, 1-bit offset [-1, 0]
    (1, 2, 0, 1, 3),   # offset finer than the scale: the product is shifted by 3
    (3, 1, 1, 3, 1),   # same fractions: nothing shifted
    (2, 0, 1, 2, 2),   # 1-bit scale
    (2, 3, 0, 3, 0),   # integer formats
]


def small_configs():
    out = [nmpu_preset("tiny"), dataclasses.replace(nmpu_preset("tiny"), name="tiny-signed",
                                                    input_mode="signed")]
    for a, si, sf, oi, of in SMALL_FORMATS:
        for mode in ("dual", "signed"):
            out.append(NMPUConfig(name="small", columns=2, lanes=1, adc_bits=a, scale_int=si,
                                  scale_frac=sf, offset_int=oi, offset_frac=of, input_mode=mode))
    return out


@pytest.mark.parametrize("cfg", small_configs(), ids=lambda c: f"{c.tag}-{c.input_mode}")
def test_acc_bits_brute_force(cfg):
    lo, hi = acc_extremes(fields_of(cfg), exhaustive=True)
    b = cfg.acc_bits
    assert -2 ** (b - 1) <= lo and hi <= 2 ** (b - 1) - 1, "accumulator does not fit acc_bits"
    assert lo < -2 ** (b - 2) or hi > 2 ** (b - 2) - 1, "acc_bits - 1 would suffice"
    assert cfg.acc_range == (lo, hi)


@pytest.mark.parametrize("name", ["paper", "exp", "serial"])
def test_acc_bits_corners_presets(name):
    cfg = nmpu_preset(name)
    lo, hi = acc_extremes(fields_of(cfg), exhaustive=False)
    assert cfg.acc_range == (lo, hi) == (-255 * 4095 - (128 << 6), 255 * 4095 + (127 << 6))
    assert cfg.acc_bits == width_of(lo, hi) == 22


# -- identity and export -------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESET_NAMES)
def test_tag_of_preset_is_its_name(name):
    cfg = nmpu_preset(name)
    assert cfg.tag == name
    # an equal config built by hand is the preset too
    assert NMPUConfig(**fields_of(cfg)).tag == name


def test_tag_of_custom_is_name_and_hash():
    cfg = NMPUConfig(name="mine", lanes=32)
    assert re.fullmatch(r"mine-[0-9a-f]{8}", cfg.tag)
    assert NMPUConfig(name="mine", lanes=32).tag == cfg.tag
    # a preset's name with other fields is not the preset
    other = dataclasses.replace(nmpu_preset("paper"), lanes=32)
    assert other.tag != "paper" and re.fullmatch(r"paper-[0-9a-f]{8}", other.tag)
    assert NMPUConfig().tag.startswith("custom-")


def test_tag_differs_for_every_field():
    base = NMPUConfig(name="base", columns=8, lanes=2, adc_bits=6, exp_bits=1)
    changes = dict(columns=16, lanes=4, adc_bits=7, input_mode="signed", scale_int=2, scale_frac=6,
                   offset_int=6, offset_frac=2, out_bits=9, residual=False, exp_bits=2,
                   shift_bits=4, clamp_count_bits=16, single_scale=True, drop_bits=2,
                   static_layer=True, static_shift=3, static_pre_cut=1, static_round=0)
    assert set(changes) | {"name"} == {f.name for f in dataclasses.fields(NMPUConfig)}
    tags = {base.tag}
    for field, value in changes.items():
        extra = {"static_layer": True} if field in ("static_shift", "static_pre_cut",
                                                     "static_round") else {}
        tags.add(dataclasses.replace(base, **{field: value}, **extra).tag)
    assert len(tags) == len(changes) + 1


def test_tag_stable_across_processes():
    cfg = NMPUConfig(name="stable", columns=12, lanes=3, residual=False)
    code = ("from hdl.config import NMPUConfig; "
            "print(NMPUConfig(name='stable', columns=12, lanes=3, residual=False).tag)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tags = set()
    for seed in ("1", "2"):  # a tag built on hash() would change with the hash seed
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True,
                             capture_output=True, text=True)
        tags.add(out.stdout.strip())
    assert tags == {cfg.tag}


@pytest.mark.parametrize("cfg", [nmpu_preset(n) for n in PRESET_NAMES]
                         + [NMPUConfig(name="x", columns=6, lanes=3, input_mode="signed", residual=False)],
                         ids=lambda c: c.tag)
def test_to_dict_from_dict_round_trip(cfg):
    d = cfg.to_dict()
    assert d == fields_of(cfg)
    assert NMPUConfig.from_dict(d) == cfg
    assert NMPUConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert NMPUConfig.from_dict(d).tag == cfg.tag


def test_from_dict_rejects_unknown_fields():
    d = dict(nmpu_preset("tiny").to_dict(), lanez=2, bogus=1)
    with pytest.raises(ValueError, match=r"unknown NMPU config field\(s\): bogus, lanez$"):
        NMPUConfig.from_dict(d)


def test_from_dict_validates_and_needs_a_dict():
    with pytest.raises(ValueError, match=r"`lanes` must divide `columns` \(4\), not 3"):
        NMPUConfig.from_dict(dict(nmpu_preset("tiny").to_dict(), lanes=3))
    with pytest.raises(TypeError, match="must be a dict, not list"):
        NMPUConfig.from_dict([("lanes", 2)])


@pytest.mark.parametrize("name", ["nope", "Paper", "", "tiny "])
def test_nmpu_preset_unknown(name):
    with pytest.raises(ValueError, match=rf"unknown NMPU preset {re.escape(repr(name))}; presets: .*paper"):
        nmpu_preset(name)


# -- precision knobs ------------------------------------------------------------------------------

def test_precision_knobs_default_off():
    """The defaults build the unit as before: every preset keeps its widths and word."""
    cfg = nmpu_preset("paper")
    assert (cfg.single_scale, cfg.drop_bits, cfg.static_layer) == (False, 0, False)
    assert (cfg.product_bits, cfg.acc_bits, cfg.word_bits, cfg.term_align) == (20, 22, 24, 0)


def test_single_scale_needs_dual():
    with pytest.raises(ValueError, match="`single_scale` needs `input_mode` 'dual'"):
        NMPUConfig(input_mode="signed", single_scale=True)
    cfg = NMPUConfig(single_scale=True)
    assert [f for f, _ in cfg.word_fields] == ["sp", "o"] and cfg.word_bits == 16
    # one signed product of P − N: ±255·4095 needs 21 bits
    assert cfg.product_range == (-255 * 4095, 255 * 4095) and cfg.product_bits == 21


@pytest.mark.parametrize("field", ["single_scale", "static_layer"])
def test_knob_flags_are_bools(field):
    with pytest.raises(TypeError, match=rf"`{field}` must be a bool, not int 1"):
        NMPUConfig(**{field: 1})


@pytest.mark.parametrize("value", [-1, 20, 24])
def test_drop_bits_range(value):
    # paper: a 20-bit product keeps at least one bit
    with pytest.raises(ValueError, match=rf"`drop_bits` must be in \[0, 19\], not {value}$"):
        NMPUConfig(drop_bits=value)


@pytest.mark.parametrize("fields,largest,kept", [
    # two scales: sp·P ≤ 1·7 is 3 bits, not scale_bits + adc_bits = 4
    (dict(adc_bits=3, scale_int=1, scale_frac=0, drop_bits=3), 7, 3),
    # single scale: |sp·(P − N)| ≤ 3·7
    (dict(adc_bits=3, scale_int=2, scale_frac=0, single_scale=True, drop_bits=5), 21, 5),
    # signed mode: sp·X ≥ 1·(−16)
    (dict(adc_bits=4, input_mode="signed", scale_int=1, scale_frac=0, drop_bits=5), 16, 5)])
def test_drop_bits_must_keep_a_product_bit(fields, largest, kept):
    """Dropping every bit of the largest product would make the counts invisible at the output
    (found by a random config whose products were all floored to 0); the bound is the largest
    product's magnitude, not the sum of the widths."""
    base = dict(name="d", columns=4, lanes=2, offset_int=7, offset_frac=6, shift_bits=4)
    with pytest.raises(ValueError, match=rf"`drop_bits` \({fields['drop_bits']}\) floors away "
                       rf"every bit of the largest product \({largest}: {kept} bits .* at most "
                       rf"{kept - 1}$"):
        NMPUConfig(**base, **fields)
    ok = NMPUConfig(**base, **(fields | {"drop_bits": kept - 1}))
    lo, hi = ok.product_range
    assert max(-lo, hi) >= 1


def test_drop_bits_narrow_the_datapath():
    """Dropped LSBs shrink the product, the grid and the accumulator; the compiler's view of the
    exact term moves with them (term_align = scale_align − drop_bits)."""
    cfg = NMPUConfig(drop_bits=4)
    assert cfg.product_frac == 3 and cfg.frac == 3 and cfg.scale_align == 0
    assert cfg.term_align == -4 and cfg.offset_align == 2
    assert cfg.product_bits == 16 and cfg.acc_bits == 18
    deep = NMPUConfig(drop_bits=9)  # the kept LSB weighs 4 counts: the offset sets the grid
    assert deep.product_frac == -2 and deep.frac == 1 and deep.scale_align == 3
    assert deep.term_align == -6


@pytest.mark.parametrize("field,value", [("static_shift", 31 + 1), ("static_pre_cut", -1),
                                         ("static_round", 3)])
def test_static_fields_range(field, value):
    hi = 2 if field == "static_round" else 31
    with pytest.raises(ValueError, match=rf"`{field}` must be in \[0, {hi}\], not {value}$"):
        NMPUConfig(static_layer=True, **{field: value})


@pytest.mark.parametrize("field,value", [("static_shift", 4), ("static_pre_cut", 1),
                                         ("static_round", 0)])
def test_static_fields_need_static_layer(field, value):
    with pytest.raises(ValueError, match=rf"`{field}` \({value}\) is set but `static_layer` is False"):
        NMPUConfig(**{field: value})


def test_clamp_stages():
    """The clamp count is flat up to 16 lanes, then reduced 8 lanes per registered stage."""
    stages = {lanes: NMPUConfig(columns=4096, lanes=lanes).clamp_stages
              for lanes in (1, 16, 32, 64, 128, 256, 512, 4096)}
    assert stages == {1: 0, 16: 0, 32: 2, 64: 2, 128: 3, 256: 3, 512: 3, 4096: 4}


def test_precision_presets_share_their_widths():
    """`precision` at 64, 256 and 1 lane(s): only the lane count (and the name) differs."""
    base = nmpu_preset("precision")
    assert (base.scale_bits, base.offset_int, base.offset_frac, base.drop_bits, base.shift_bits,
            base.clamp_count_bits, base.lanes) == (6, 5, 1, 6, 4, 16, 64)
    for name, lanes in (("precision256", 256), ("precision_serial", 1)):
        assert nmpu_preset(name) == dataclasses.replace(base, name=name, lanes=lanes)
