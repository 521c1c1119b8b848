"""cocotb regression of the generated NMPU Verilog on Icarus and Verilator.

The `tiny` preset and three random valid configs (drawn from the run's printed seed) run every
scenario of verif/tb_nmpu.py: `tiny` and the first two random configs on Icarus, `tiny` on
Verilator too, all of them on both simulators in `make regress` (the
random configs are drawn anew on every run, config fuzzing draws three more per run for the
Amaranth simulator, and each run costs 10-17 CPU-s); the other presets too in `make regress` (in
`make test` their bulk data goes through the fast path, tests/test_fastpath.py); the `tiny`
preset is also checked exhaustively
(a seed-rotated share of the register settings on Icarus, all of them on both simulators in
`make regress`; all of them through the fast path in `make test`).
"""

import os

import pytest

from hdl.config import NMPU_PRESETS
from verif.configs import random_nmpu_configs
from verif.runner import SIMULATORS, run_bench

from .conftest import per_simulator, run_seed, small_first

REGRESS = os.environ.get("TB_REGRESS") == "1"
# full-size presets: cocotb in `make regress`, their data through the fast path in `make test`
RANDOM = random_nmpu_configs(run_seed(), 3)
# every preset on both simulators (the full-size ones regress-only), the first two random configs
# on Icarus (all three on both simulators in `make regress`: a random config's Verilator build is
# 10-15 CPU-s of a fresh clone, and Verilator lints random configs in tests/test_hdl_nmpu.py)
CASES = list(per_simulator(small_first(NMPU_PRESETS) + RANDOM, regress=lambda sim, cfg: (
    any(cfg is r for r in RANDOM[2:]) or (sim == "verilator" and any(cfg is r for r in RANDOM)))))


@pytest.mark.sim
@pytest.mark.parametrize("cfg, sim", CASES)
def test_nmpu_scenarios(cfg, sim, seed):
    extra = {"TB_SCALE": "6"} if REGRESS else {}
    summary = run_bench("nmpu", cfg, sim, seed, extra_env=extra, name="scenarios")
    print(f"{cfg.tag} on {sim}: {summary['tests']} cocotb tests, {summary['values']} column "
          f"values checked in {summary['wall_s']} s ({summary['values_per_s']:.0f}/s)")


@pytest.mark.sim
@pytest.mark.parametrize("sim", [s if s == "icarus" else pytest.param(s, marks=pytest.mark.regress)
                                 for s in SIMULATORS])
def test_nmpu_exhaustive_tiny(sim, seed):
    # through cocotb: a seed-rotated 1 % of the register settings on Icarus in `make test`, all
    # of them on both simulators in `make regress` (`make test` checks all of them at Verilator
    # speed through the fast path: tests/test_fastpath.py::test_fastpath_exhaustive_tiny)
    share = "1" if REGRESS else "0.01"
    summary = run_bench("nmpu", NMPU_PRESETS["tiny"], sim, seed, testcase="exhaustive",
                        extra_env={"TB_EXHAUSTIVE": "1", "TB_EXHAUSTIVE_SHARE": share},
                        name="exhaustive")
    print(f"tiny exhaustive on {sim}: {summary['values']} column values in {summary['wall_s']} s")
