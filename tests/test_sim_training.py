"""RTL tie-in of mixed-precision training: the x and δ of a real training step (golden.essop_step,
ESSOP exact mode, both layers of one mini-batch) through the generated ESSOP Verilog (`paper`
preset) under cocotb on Icarus (Verilator too in `make regress`); the counts must equal the
training run's bit for bit (verif/tb_training.py)."""

import json
import shutil
import time

import pytest

from golden import essop_step as gt
from golden.data import digits
from hdl.config import essop_preset
from verif.runner import BUILD, ROOT, SIMULATORS, TIMESCALE, _parse, prepare, run_test

CFG = essop_preset("paper")
STEP, BL, SEED = 3, 32, 1


@pytest.fixture(scope="module")
def vectors():
    return gt.rtl_vectors(gt.TrainConfig(essop=CFG.name), digits(), SEED, step=STEP, bl=BL)


@pytest.mark.sim
# Icarus in `make test`; Verilator (the only full-size cocotb build left there) in `make regress`
@pytest.mark.parametrize("sim", [pytest.param(s, marks=pytest.mark.regress) if s == "verilator"
                                 else s for s in SIMULATORS])
def test_training_step_on_rtl(sim, seed, vectors):
    from cocotb_tools.runner import get_runner

    build_dir, meta = prepare("essop", CFG, sim)
    out = build_dir / "run_training"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    path = out / "training_vectors.json"
    path.write_text(json.dumps(vectors))
    env = {"TB_META": str(BUILD / "verilog" / f"essop_{CFG.tag}.json"), "TB_SEED": str(seed),
           "TB_OUT": str(out), "PYTHONPATH": str(ROOT), "TB_TRAIN_VECTORS": str(path)}
    t0 = time.perf_counter()
    results = run_test(get_runner(sim), test_module="verif.tb_training", hdl_toplevel=meta["module"],
                       hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=out,
                       seed=seed, extra_env=env, results_xml=str(out / "results.xml"),
                       log_file=out / "sim.log", timescale=TIMESCALE)
    wall = time.perf_counter() - t0
    tests, failed = _parse(results)
    products = sum(len(layer["xs"]) for layer in vectors["layers"])
    assert len(tests) == 4 and not failed, \
        f"{len(failed)} of {len(tests)} cocotb tests failed: {failed}; log: {out / 'sim.log'}"
    # the summary fields of verif.runner.run_bench, so verif.summary lists this run too
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    values = sum(st["values"] for st in stats)
    (out / "summary.json").write_text(json.dumps(
        {"unit": "essop", "tag": CFG.tag, "sim": sim, "seed": seed, "tests": len(tests),
         "failed": failed, "wall_s": round(wall, 2), "values": values,
         "values_per_s": round(values / wall, 1) if wall else 0.0,
         "products": sum(st.get("products", 0) for st in stats), "log": str(out / "sim.log"),
         "bench": "verif.tb_training"}, indent=1) + "\n")
    print(f"training step on {sim}: {products} products per run matched the training run's counts "
          f"(4 cocotb runs, 2 of them expect_fail) in {wall:.1f} s")
