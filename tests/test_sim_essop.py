"""cocotb regression of the generated ESSOP Verilog on Icarus and Verilator: the `tiny` preset
runs every scenario of verif/tb_essop.py on both simulators; a random valid config (drawn from
the run's printed seed; a second one in `make regress`) and `tiny` with accumulation (K = 4
products per read-out, 2 rows per beat, double-buffered) on Icarus (on Verilator too in `make
regress`); the other presets too in `make regress` (in `make test` their bulk data goes through
the fast path, tests/test_fastpath.py)."""

import dataclasses
import os

import pytest

from hdl.config import ESSOP_PRESETS
from verif.configs import random_essop_configs
from verif.runner import run_bench

from .conftest import per_simulator, run_seed, small_first

REGRESS = os.environ.get("TB_REGRESS") == "1"
# full-size presets: cocotb in `make regress`, their data through the fast path in `make test`
TINY_ACC = dataclasses.replace(ESSOP_PRESETS["tiny"], name="tiny-acc", acc_max=4, rows_per_beat=2,
                               double_buffer=True)
# two random configs per seed: the first in make test, the second in make regress (the config
# space is fuzzed at elaboration in tests/test_fuzz_configs.py on every run)
_RANDOM = random_essop_configs(run_seed(), 2)
CONFIGS = (small_first(ESSOP_PRESETS) + [TINY_ACC, _RANDOM[0]]
           + [pytest.param(_RANDOM[1], marks=pytest.mark.regress, id=_RANDOM[1].tag)])


# CONFIGS on both simulators; on Verilator `tiny-acc` and the random config regress-only (a
# random config's Verilator build is 10-15 CPU-s of a fresh clone; `tiny` keeps the unit on
# Verilator in make test, and the random config runs on Icarus)
CASES = list(per_simulator(CONFIGS, regress=lambda sim, cfg: (
    sim == "verilator" and (cfg is TINY_ACC or cfg is _RANDOM[0]))))


@pytest.mark.sim
@pytest.mark.parametrize("cfg, sim", CASES)
def test_essop_scenarios(cfg, sim, seed):
    extra = {"TB_SCALE": "4"} if REGRESS else {}
    summary = run_bench("essop", cfg, sim, seed, extra_env=extra, name="scenarios")
    print(f"essop {cfg.tag} on {sim}: {summary['tests']} cocotb tests, {summary['values']} counts "
          f"checked in {summary['wall_s']} s")
