"""Shared pytest set-up: one printed seed per run for every random choice of the suite.

The seed comes from TB_SEED (the Makefile sets it from the clock and prints it); without it a
fixed default keeps plain `pytest` reproducible. The controller process fixes it in the
environment before xdist starts workers, so all workers draw the same random configs.

Tests marked `regress` run only in `make regress` (TB_REGRESS=1) or when a `-m` expression asks
for them; `make test` deselects them. `regress_only(value)` marks one parameter so: the cocotb
runs of the full-size presets, whose bulk data the fast path checks in `make test`
(tests/test_fastpath.py).
"""

import os

import pytest

DEFAULT_SEED = 20261124


def run_seed():
    return int(os.environ.setdefault("TB_SEED", str(DEFAULT_SEED)))


def pytest_configure(config):
    run_seed()
    from verif import relax_gc
    relax_gc()      # fewer garbage-collector passes in every test process (verif/__init__.py)


def pytest_report_header(config):
    return (f"seed: TB_SEED={run_seed()} (random configs and stimulus; replay with "
            f"`make test SEED={run_seed()}`)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TB_REGRESS") == "1" or config.getoption("markexpr"):
        return
    drop = [item for item in items if item.get_closest_marker("regress")]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not item.get_closest_marker("regress")]


def regress_only(value, when=True):
    """`value` as a parameter that runs only in `make regress` (if `when`)."""
    return pytest.param(value, marks=pytest.mark.regress) if when else value


def small_first(presets, small="tiny"):
    """A unit's presets for a cocotb matrix: `small` in `make test`, the others regress-only."""
    return [regress_only(cfg, name != small) for name, cfg in presets.items()]


def per_simulator(entries, regress=lambda sim, *values: False):
    """A cocotb matrix: each entry (a config, a tuple of values, or a `pytest.param` of them) once
    per simulator, with the id `<values>-<sim>` (a config by its tag); regress-only where the
    entry is, or where `regress(sim, *values)` says so."""
    from verif.runner import SIMULATORS
    for entry in entries:
        if hasattr(entry, "values"):
            values, marks = tuple(entry.values), list(entry.marks)
        else:
            values, marks = (entry if isinstance(entry, tuple) else (entry,)), []
        name = "-".join(v if isinstance(v, str) else v.tag for v in values)
        for sim in SIMULATORS:
            extra = [pytest.mark.regress] if regress(sim, *values) else []
            yield pytest.param(*values, sim, id=f"{name}-{sim}", marks=marks + extra)


@pytest.fixture(scope="session")
def seed():
    return run_seed()
