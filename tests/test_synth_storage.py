"""synth/storage.py: the storage rule of every unit, the SRAM macro model, the measured
flip-flop and latch arrays (Yosys onto the OSU 0.18 µm cells), and ratios kept within one kind."""

import math

import pytest

from hdl.config import ESSOP_PRESETS, FP16_OUTER_PRESETS, LDPU_PRESETS, NMPU_PRESETS
from synth import flow
from synth import storage as st


@pytest.fixture(scope="session")
def tools():
    return flow.Tools.setup(flow.DEFAULT_OUT)


@pytest.mark.parametrize("name", sorted(NMPU_PRESETS))
def test_nmpu_storage_is_columns_times_word_bits(name):
    cfg = NMPU_PRESETS[name]
    s = st.storage_of("nmpu", cfg)
    word = sum(b for _, b in cfg.word_fields)
    assert s.bits == cfg.columns * word
    assert (s.arrays, s.depth, s.width) == (cfg.lanes, cfg.columns // cfg.lanes, word)


@pytest.mark.parametrize("name", sorted(LDPU_PRESETS))
def test_ldpu_storage_is_five_fp16_words_per_column(name):
    cfg = LDPU_PRESETS[name]
    s = st.storage_of("ldpu", cfg)
    assert s.bits == cfg.columns * 5 * 16
    assert (s.arrays, s.depth, s.width) == (1, cfg.columns, 80)


def test_essop_and_fp16_array_hold_no_parameters():
    for unit, presets in (("essop", ESSOP_PRESETS), ("fp16outer", FP16_OUTER_PRESETS)):
        for cfg in presets.values():
            assert st.storage_of(unit, cfg).bits == 0


def test_unknown_unit_is_named():
    with pytest.raises(ValueError, match="'bogus'"):
        st.storage_of("bogus", None)


def test_sram_model_by_hand():
    # 4 rows × 8 columns of a 5.59 µm² cell, aspect 2: h = sqrt(5.59 / 2), w = 2h
    h = math.sqrt(5.59 / 2)
    want = (8 * 2 * h + 30) * (4 * h + 40) + 5000
    assert st.sram_area_um2(4, 8) == pytest.approx(want)
    # more bits never cost less, and a bit costs more than the cell alone
    assert st.sram_area_um2(64, 256) > st.sram_area_um2(32, 256) > 32 * 256 * 5.59
    with pytest.raises(ValueError, match="rows and cols >= 1"):
        st.sram_area_um2(0, 8)


def test_array_verilog_styles():
    assert "posedge clk) if (we) mem[wa]" in st.array_verilog("ff", 4, 8)
    assert "always @* if (clk & gate[k]) q = wd_q" in st.array_verilog("latch", 4, 8)
    assert "mem[0]" in st.array_verilog("ff", 1, 8)       # one word: no address
    with pytest.raises(ValueError, match="`style`"):
        st.array_verilog("sram", 4, 8)


def test_latch_array_maps_to_latch_cells_and_is_smaller(tools, tmp_path):
    """The latch form really is latches (the library's LATCH cell, one per bit) and costs less
    than the flip-flop form of the same geometry; the flip-flop form holds no latch."""
    ff = st.measure_array("ff", 4, 8, tools, tmp_path)
    lat = st.measure_array("latch", 4, 8, tools, tmp_path)
    assert ff["latch_cells"] == 0 and ff["ff_cells"] >= 32
    assert lat["latch_cells"] >= 32
    assert lat["area_um2"] < ff["area_um2"]
    # cached: the same Verilog is not synthesised again
    assert st.measure_array("ff", 4, 8, tools, tmp_path) == ff


def test_ratios_stay_within_one_kind():
    """An NMPU row and an LDPU row: every ratio is taken inside one kind (planted: a mixed ratio
    would use the NMPU's latch area against the LDPU's flip-flop area)."""
    n = {"storage": {"area_um2": {"ff": 4.0, "latch": 2.0, "sram": 1.0},
                     "items_per_s_per_mm2": {"ff": 10.0, "latch": 20.0, "sram": 40.0}}}
    ld = {"storage": {"area_um2": {"ff": 8.0, "latch": 6.0, "sram": 5.0},
                      "items_per_s_per_mm2": {"ff": 1.0, "latch": 4.0 / 3.0, "sram": 1.6}}}
    e = st._within("paper", "paper", n, ld)
    assert e["area_ratio"] == {"ff": 2.0, "latch": 3.0, "sram": 5.0}
    assert e["area_efficiency_ratio"]["ff"] == pytest.approx(10.0)
    assert e["area_efficiency_ratio"]["latch"] == pytest.approx(15.0)
    assert e["area_efficiency_ratio"]["sram"] == pytest.approx(25.0)
    assert e["area_ratio"]["latch"] != 8.0 / 2.0    # not LDPU flip-flops over NMPU latches


def test_unit_storage_substitutes_the_arrays(tools, tmp_path):
    """Latch and SRAM columns replace each array's flip-flop area and nothing else; a unit
    without storage has three equal columns."""
    cfg = NMPU_PRESETS["tiny"]
    s = st.storage_of("nmpu", cfg)
    got = st.unit_storage("nmpu", cfg, 1e6, tools, tmp_path)
    ff = st.measure_array("ff", s.depth, s.width, tools, tmp_path)["area_um2"]
    lat = st.measure_array("latch", s.depth, s.width, tools, tmp_path)["area_um2"]
    assert got["area_um2"]["latch"] == pytest.approx(1e6 - s.arrays * (ff - lat))
    assert got["area_um2"]["sram"] == pytest.approx(
        1e6 - s.arrays * ff + st.sram_area_um2(s.depth, s.arrays * s.width))
    e = st.unit_storage("essop", ESSOP_PRESETS["tiny"], 123.0, tools, tmp_path)
    assert e["bits"] == 0 and set(e["area_um2"].values()) == {123.0}
