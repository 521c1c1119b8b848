"""cocotb regression of the generated FP16 baseline Verilog on Icarus and Verilator: the LDPU
`tiny` preset and one random valid LDPU config run verif/tb_ldpu.py (the NMPU's post-processing
bench with the LDPU's golden model), FP16Outer `tiny` and one random config
verif/tb_fp16outer.py; the other presets too in `make regress` (in `make test` their bulk data
goes through the fast path, tests/test_fastpath.py)."""

import os

import pytest

from hdl.config import FP16_OUTER_PRESETS, LDPU_PRESETS
from verif.configs import random_fp16outer_configs, random_ldpu_configs
from verif.runner import SIMULATORS, run_bench

from .conftest import run_seed

REGRESS = os.environ.get("TB_REGRESS") == "1"
# full-size presets: cocotb in `make regress`, their data through the fast path in `make test`
CASES = ([pytest.param("ldpu", c, marks=pytest.mark.regress) if c.name != "tiny" else ("ldpu", c)
          for c in LDPU_PRESETS.values()]
         + [("ldpu", c) for c in random_ldpu_configs(run_seed(), 1)]
         + [pytest.param("fp16outer", c, marks=pytest.mark.regress) if c.name != "tiny"
            else ("fp16outer", c) for c in FP16_OUTER_PRESETS.values()]
         + [("fp16outer", c) for c in random_fp16outer_configs(run_seed(), 1)])


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("unit, cfg", CASES, ids=lambda v: v if isinstance(v, str) else v.tag)
def test_baseline_scenarios(unit, cfg, sim, seed):
    extra = {"TB_SCALE": "4"} if REGRESS else {}
    summary = run_bench(unit, cfg, sim, seed, extra_env=extra, name="scenarios")
    print(f"{unit} {cfg.tag} on {sim}: {summary['tests']} cocotb tests, {summary['values']} values "
          f"checked in {summary['wall_s']} s")
