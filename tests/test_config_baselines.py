"""LDPUConfig and FP16OuterConfig: one test per validation rule, presets, derived values,
identity (`tag`) and the JSON round trip."""

import dataclasses
import json
import re

import pytest

from hdl.config import (FP16_OUTER_PRESETS, LDPU_PRESETS, FP16OuterConfig, LDPUConfig,
                        fp16_outer_preset, ldpu_preset)


@pytest.mark.parametrize("cls", [LDPUConfig, FP16OuterConfig])
@pytest.mark.parametrize("name", ["Paper", "has space", "", "-lead", "dot.name"])
def test_name_format(cls, name):
    with pytest.raises(ValueError, match=r"`name`.*" + re.escape(repr(name))):
        cls(name=name)


@pytest.mark.parametrize("field, lo, hi", [("columns", 1, 4096), ("adc_bits", 1, 15),
                                           ("clamp_count_bits", 1, 64), ("scale_blocks", 1, 2)])
def test_ldpu_int_ranges(field, lo, hi):
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ValueError, match=rf"`{field}` must be in \[{lo}, {hi}\], not {bad}$"):
            LDPUConfig(**{field: bad})
    assert getattr(LDPUConfig(**{field: hi}), field) == hi
    with pytest.raises(TypeError, match=rf"`{field}` must be an int, not float"):
        LDPUConfig(**{field: float(lo)})
    with pytest.raises(TypeError, match=rf"`{field}` must be an int, not bool"):
        LDPUConfig(**{field: True})


def test_ldpu_residual_must_be_bool():
    with pytest.raises(TypeError, match=r"`residual` must be a bool, not int 1"):
        LDPUConfig(residual=1)


@pytest.mark.parametrize("field", ["rows", "cols"])
def test_outer_ranges(field):
    for bad in (0, 1025):
        with pytest.raises(ValueError, match=rf"`{field}` must be in \[1, 1024\], not {bad}$"):
            FP16OuterConfig(**{field: bad})


def test_ldpu_derived():
    cfg = LDPUConfig(columns=5, adc_bits=12)
    assert (cfg.lanes, cfg.beats, cfg.out_bits, cfg.adc_max) == (1, 5, 8, 4095)
    assert [n for n, _ in cfg.word_fields] == ["sp", "sn", "o", "a", "b"]
    assert cfg.word_bits == 80 and all(b == 16 for _, b in cfg.word_fields)
    assert cfg.addr_bits == 3 and LDPUConfig(columns=1).addr_bits == 1
    assert LDPUConfig(columns=256).addr_bits == 8


def test_presets():
    assert set(LDPU_PRESETS) == {"paper", "lean", "tiny"}
    assert LDPU_PRESETS["paper"].scale_blocks == 2 and LDPU_PRESETS["lean"].scale_blocks == 1
    assert (LDPU_PRESETS["paper"].columns, LDPU_PRESETS["paper"].adc_bits) == (256, 12)
    assert (FP16_OUTER_PRESETS["paper"].rows, FP16_OUTER_PRESETS["paper"].cols) == (32, 32)
    for table in (LDPU_PRESETS, FP16_OUTER_PRESETS):
        for name, cfg in table.items():
            assert cfg.name == name and cfg.tag == name
    assert ldpu_preset("tiny") is LDPU_PRESETS["tiny"]
    assert fp16_outer_preset("paper") is FP16_OUTER_PRESETS["paper"]
    with pytest.raises(ValueError, match="unknown LDPU preset 'nope'; presets: paper, lean, tiny"):
        ldpu_preset("nope")
    with pytest.raises(ValueError, match="unknown FP16Outer preset 'nope'"):
        fp16_outer_preset("nope")


@pytest.mark.parametrize("cfg", list(LDPU_PRESETS.values()) + list(FP16_OUTER_PRESETS.values()),
                         ids=lambda c: f"{type(c).__name__}-{c.tag}")
def test_json_round_trip_and_tag(cfg):
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    other = dataclasses.replace(cfg, name="mine")
    assert re.fullmatch(r"mine-[0-9a-f]{8}", other.tag)
    json.dumps(cfg.derived())


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown LDPU config field"):
        LDPUConfig.from_dict({"columns": 4, "lanes": 2})
    with pytest.raises(ValueError, match="unknown FP16Outer config field"):
        FP16OuterConfig.from_dict({"depth": 3})
