"""cocotb regression of the generated ESSOP Verilog on Icarus and Verilator: every preset and
two random valid configs (drawn from the run's printed seed) run every scenario of
verif/tb_essop.py on both simulators."""

import os

import pytest

from hdl.config import ESSOP_PRESETS
from verif.configs import random_essop_configs
from verif.runner import SIMULATORS, run_bench

from .conftest import run_seed

REGRESS = os.environ.get("TB_REGRESS") == "1"
CONFIGS = list(ESSOP_PRESETS.values()) + random_essop_configs(run_seed(), 2)


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.tag)
def test_essop_scenarios(cfg, sim, seed):
    extra = {"TB_SCALE": "4"} if REGRESS else {}
    summary = run_bench("essop", cfg, sim, seed, extra_env=extra, name="scenarios")
    print(f"essop {cfg.tag} on {sim}: {summary['tests']} cocotb tests, {summary['values']} counts "
          f"checked in {summary['wall_s']} s")
