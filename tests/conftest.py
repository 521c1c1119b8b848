"""Shared pytest set-up: one printed seed per run for every random choice of the suite.

The seed comes from TB_SEED (the Makefile sets it from the clock and prints it); without it a
fixed default keeps plain `pytest` reproducible. The controller process fixes it in the
environment before xdist starts workers, so all workers draw the same random configs.
"""

import os

import pytest

DEFAULT_SEED = 20261124


def run_seed():
    return int(os.environ.setdefault("TB_SEED", str(DEFAULT_SEED)))


def pytest_configure(config):
    run_seed()


def pytest_report_header(config):
    return (f"seed: TB_SEED={run_seed()} (random configs and stimulus; replay with "
            f"`make test SEED={run_seed()}`)")


@pytest.fixture(scope="session")
def seed():
    return run_seed()
