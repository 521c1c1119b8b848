"""cocotb regression of the generated FP16 baseline Verilog on Icarus and Verilator: every
LDPU preset and one random valid LDPU config run verif/tb_ldpu.py (the NMPU's post-processing
bench with the LDPU's golden model), every FP16Outer preset and one random config
verif/tb_fp16outer.py."""

import os

import pytest

from hdl.config import FP16_OUTER_PRESETS, LDPU_PRESETS
from verif.configs import random_fp16outer_configs, random_ldpu_configs
from verif.runner import SIMULATORS, run_bench

from .conftest import run_seed

REGRESS = os.environ.get("TB_REGRESS") == "1"
CASES = ([("ldpu", c) for c in list(LDPU_PRESETS.values()) + random_ldpu_configs(run_seed(), 1)]
         + [("fp16outer", c) for c in list(FP16_OUTER_PRESETS.values())
            + random_fp16outer_configs(run_seed(), 1)])


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("unit, cfg", CASES, ids=lambda v: v if isinstance(v, str) else v.tag)
def test_baseline_scenarios(unit, cfg, sim, seed):
    extra = {"TB_SCALE": "4"} if REGRESS else {}
    summary = run_bench(unit, cfg, sim, seed, extra_env=extra, name="scenarios")
    print(f"{unit} {cfg.tag} on {sim}: {summary['tests']} cocotb tests, {summary['values']} values "
          f"checked in {summary['wall_s']} s")
