"""cocotb regression of the generated FP16 baseline Verilog on Icarus and Verilator: the LDPU
`tiny` preset (and, in `make regress`, one random valid LDPU config) runs verif/tb_ldpu.py (the
NMPU's post-processing bench with the LDPU's golden model), FP16Outer `tiny` and one random
config (on Verilator in `make regress` only) verif/tb_fp16outer.py; the other presets too in
`make regress` (in `make test` their bulk data goes through the fast path,
tests/test_fastpath.py)."""

import os

import pytest

from hdl.config import FP16_OUTER_PRESETS, LDPU_PRESETS
from verif.configs import random_fp16outer_configs, random_ldpu_configs
from verif.runner import run_bench

from .conftest import per_simulator, run_seed

REGRESS = os.environ.get("TB_REGRESS") == "1"


def _cases():
    """(unit, cfg, sim) cases: FP16Outer `tiny` on both simulators and a random FP16Outer
    config on Icarus (on Verilator in `make regress`: its build is 10 CPU-s of a fresh clone);
    the LDPU's `tiny` on Icarus, its random config (16 CPU-s; config fuzzing simulates a
    random LDPU config per run in the Amaranth simulator, 9 in `make regress`) and both on
    Verilator in `make regress` only: in `make test` the LDPU reaches Verilator through the
    fast path (tests/test_fastpath.py: `tiny`, every output beat under three stall modes), and its
    bench's protocol, reset and error scenarios are the NMPU's (tb_ldpu runs tb_nmpu's
    scenarios with the LDPU's golden model), which run on Verilator in `make test`; the LDPU
    `tiny` model is the largest cocotb Verilator build of the suite (32 CPU-s). Full-size
    presets in `make regress` only (their data goes through the fast path in `make test`)."""
    configs = ([("ldpu", c) for c in LDPU_PRESETS.values()]
               + [("ldpu", c) for c in random_ldpu_configs(run_seed(), 1)]
               + [("fp16outer", c) for c in FP16_OUTER_PRESETS.values()]
               + [("fp16outer", c) for c in random_fp16outer_configs(run_seed(), 1)])
    return per_simulator(configs, regress=lambda sim, unit, cfg: (
        cfg.name not in ("tiny", "rand") or (unit, sim) == ("ldpu", "verilator")
        or (unit, cfg.name) == ("ldpu", "rand") or (cfg.name, sim) == ("rand", "verilator")))


@pytest.mark.sim
@pytest.mark.parametrize("unit, cfg, sim", list(_cases()))
def test_baseline_scenarios(unit, cfg, sim, seed):
    extra = {"TB_SCALE": "4"} if REGRESS else {}
    summary = run_bench(unit, cfg, sim, seed, extra_env=extra, name="scenarios")
    print(f"{unit} {cfg.tag} on {sim}: {summary['tests']} cocotb tests, {summary['values']} values "
          f"checked in {summary['wall_s']} s")
