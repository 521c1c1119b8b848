"""The papers' targets against measured rows (synth/targets.py): met, missed by a factor, the
largest block named, each storage kind on its own."""

from synth import targets


def _rat(entries, storage=None, essop=()):
    return {"nmpu_vs_ldpu": entries, "essop_vs_fp16": list(essop),
            "storage": {"nmpu_vs_ldpu": storage or []}}


BRK = {"nmpu/paper": {"total_um2": 100.0, "top_own_um2": 20.0,
                      "blocks": {"lane": {"area_um2": 70.0}, "frame": {"area_um2": 10.0}}}}


def test_fast_target_met_and_missed_per_storage_kind():
    entries = [{"nmpu": "paper", "ldpu": "paper", "speedup": 48.0, "area_ratio": 0.85},
               {"nmpu": "wide", "ldpu": "paper", "speedup": 150.0, "area_ratio": 0.5}]
    storage = [{"a": "wide", "b": "paper", "area_ratio": {"ff": 0.5, "sram": 1.2}},
               {"a": "paper", "b": "paper", "area_ratio": {"ff": 0.85, "sram": 3.0}}]
    out = targets.evaluate([], _rat(entries, storage), BRK)
    fast = {e["storage"]: e for e in out if "139x" in e["target"]}
    assert fast["sram"]["met"] and fast["sram"]["point"] == "wide"
    assert not fast["ff"]["met"] and fast["ff"]["area_factor_missing"] == 2.0
    # "wide" has no breakdown: the unit's paper breakdown names the largest block
    assert fast["ff"]["largest_block"] == ("nmpu/paper", "lane", 0.7)
    small = {e["storage"]: e for e in out if "7.8x" in e["target"]}
    assert small["sram"]["point"] == "paper" and not small["sram"]["met"]
    assert abs(small["sram"]["area_factor_missing"] - 7.8 / 3.0) < 1e-12
    md = targets.markdown(out)
    assert "| no | 2.00x | lane (70% of nmpu/paper) |" in md


def test_no_point_fast_enough_reports_the_fastest():
    entries = [{"nmpu": "a", "ldpu": "paper", "speedup": 10.0, "area_ratio": 2.0},
               {"nmpu": "b", "ldpu": "paper", "speedup": 50.0, "area_ratio": 0.5}]
    out = targets.evaluate([], _rat(entries), {})
    fast = next(e for e in out if "139x" in e["target"])
    assert fast["point"] == "b" and not fast["met"]
    assert abs(fast["speed_factor_missing"] - 139 / 50) < 1e-12
    assert fast["largest_block"] is None


def test_essop_at_the_training_bl_only():
    essop = [{"essop": "wide", "bl": 8, "reference": True, "area_efficiency_ratio": 1.84},
             {"essop": "wide", "bl": 4, "reference": False, "area_efficiency_ratio": 3.67}]
    out = targets.evaluate([], _rat([], essop=essop), {})
    (e,) = [e for e in out if e["target"].startswith("ESSOP")]
    assert e["point"] == "wide at BL 8" and not e["met"]
    assert abs(e["area_factor_missing"] - 1.94 / 1.84) < 1e-12
    essop[0]["area_efficiency_ratio"] = 2.0
    (e,) = [e for e in targets.evaluate([], _rat([], essop=essop), {}) if "ESSOP" in e["target"]]
    assert e["met"] and "| yes | — |" in targets.markdown([e])
