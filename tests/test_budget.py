"""The first error-budget row (studies/budget.py): a short run, its bookkeeping, and the
properties the report relies on."""

import json

import numpy as np
import pytest

from studies import budget
from hdl.config import LDPU_PRESETS, NMPU_PRESETS, NMPUConfig


@pytest.fixture(scope="module")
def rows():
    ldpu = LDPU_PRESETS["paper"]
    return {tag: budget.compare(NMPU_PRESETS[tag], ldpu, 40, seed=3) for tag in ("paper", "exp")}


def test_histograms_account_for_every_value(rows):
    for per_cfg in rows.values():
        assert [r["counts"] for r in per_cfg] == ["uniform", "realistic"]
        for r in per_cfg:
            assert r["values"] == 40 * 256
            assert sum(r["nmpu_minus_ldpu"]["histogram"].values()) == r["values"]


def test_fp16_path_close_to_float(rows):
    """FP16 parameters, counts and intermediates: the LDPU lands at most 2 LSB from the exactly
    rounded value (t = sp·P + o is rounded to a quarter LSB above 256), almost always within 1."""
    for per_cfg in rows.values():
        for r in per_cfg:
            assert r["ldpu_minus_float"]["max_abs"] <= 2
            assert r["ldpu_minus_float"]["share_within_1"] >= 0.999
            assert r["ldpu_minus_float"]["rms"] < 0.5


def test_per_column_exponent_shrinks_the_nmpu_error(rows):
    for paper, exp in zip(rows["paper"], rows["exp"]):
        assert exp["nmpu_minus_float"]["rms"] < paper["nmpu_minus_float"]["rms"]
        assert exp["nmpu_rel_scale_err_max"] <= paper["nmpu_rel_scale_err_max"]


def test_realistic_counts_fill_the_adc_range():
    rng = np.random.default_rng(1)
    g = np.ones(8)
    p, n = budget.counts("realistic", 500, 8, 4095, g, g, rng)
    assert p.min() >= 0 and max(p.max(), n.max()) <= 4095
    assert np.quantile(np.concatenate([p.ravel(), n.ravel()]), 0.999) >= 4000


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="`kind` must be 'uniform' or 'realistic'"):
        budget.counts("gaussian", 1, 1, 7, np.ones(1), np.ones(1), rng)
    with pytest.raises(ValueError, match="same columns and adc_bits"):
        budget.compare(NMPU_PRESETS["tiny"], LDPU_PRESETS["paper"], 1, 0)
    with pytest.raises(ValueError, match="dual-count"):
        budget.compare(NMPUConfig(input_mode="signed"), LDPU_PRESETS["paper"], 1, 0)


def test_main_writes_the_report(tmp_path, capsys):
    budget.main(["--vectors", "5", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "error_budget.json").read_text())
    assert len(doc["rows"]) == 4 and (tmp_path / "error_budget.md").read_text().startswith("# Error")
    with pytest.raises(SystemExit):
        budget.main(["--vectors", "0", "--out", str(tmp_path)])
