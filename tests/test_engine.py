"""The engine (engine/executor.py) and the result cache (engine/cache.py).

The engine's properties are checked with a trivial task (engine.executor.probe) so that they
cost seconds: a 4-point sweep on a LocalCluster, the same sweep through a `dask scheduler` and
two `dask worker` subprocesses on 127.0.0.1 (identical results), resume runs only new points, a
changed tool version re-runs, a killed worker loses no point. The cache key is checked on real
Verilog of the `tiny` presets and on the synthesis flow's own key (synth.flow.cache_key).
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cache import Cache, CacheError, key
from engine.executor import Engine, probe

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _values(outcomes):
    """item -> value without the worker's pid (which differs between runs by design)."""
    return {o.item: {k: v for k, v in o.value.items() if k != "pid"} for o in outcomes}


def test_fully_cached_sweep_starts_nothing(tmp_path):
    """First in the file, before any client exists in this process: a sweep whose every point
    is in the cache connects to no scheduler and starts no worker."""
    cache = Cache(tmp_path)
    for x in (0, 1):
        cache.put(key(x=x), {"x": x, "y": x * x})
    idle = Engine(workers=1, progress=False)
    outs = list(idle.map(probe, [0, 1], cache=cache, key=lambda x: key(x=x)))
    assert [o.value["y"] for o in outs] == [0, 1] and all(o.cached for o in outs)
    assert idle._client is None and idle.cluster is None
    idle.close()


@pytest.fixture(scope="module")
def local():
    with Engine(workers=2, progress=True) as eng:
        yield eng


def test_sweep_on_local_cluster(local, capsys):
    outs = list(local.map(probe, range(4), label=lambda x: f"p{x}"))
    assert sorted(o.item for o in outs) == [0, 1, 2, 3]
    assert all(o.ok and not o.cached for o in outs)
    assert _values(outs) == {x: {"x": x, "y": x * x} for x in range(4)}
    assert {o.value["pid"] for o in outs} - {os.getpid()} == {o.value["pid"] for o in outs}
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    assert len(lines) == 4 and lines[-1].startswith("[4/4] p") and " ok " in lines[-1]


def test_items_from_a_generator_are_submitted_as_they_come(local, tmp_path):
    """A stage fed by a generator starts each item when it is produced: here the generator
    only produces its second item once the first item's task has run."""
    def items():
        yield 0
        flag = tmp_path / "ran0"
        for _ in range(600):
            if flag.exists():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("item 0 was not submitted before item 1 was asked for")
        yield 1
    outs = list(local.map(touch, items(), args=lambda x: (str(tmp_path / f"ran{x}"), x)))
    assert sorted(o.value for o in outs) == [0, 1] and all(o.ok for o in outs)


def touch(path, x):
    Path(path).write_text(str(x))
    return x


def test_failed_point_is_data_not_a_stop(local):
    outs = {o.item: o for o in local.map(probe, [1, "x", 2], args=lambda v: (v * 1, "bad"))}
    assert outs[1].error is not None and "TypeError" in outs[1].error      # sleep("bad")
    assert all(not o.ok for o in outs.values())
    outs = {o.item: o for o in local.map(probe, [3, None])}
    assert outs[3].ok and outs[3].value["y"] == 9
    assert not outs[None].ok and "TypeError" in outs[None].error


def test_resume_runs_only_new_points_and_tool_change_reruns(local, tmp_path):
    cache = Cache(tmp_path / "cache")
    tools = {"yosys": "Yosys 0.70", "liberty_sha256": "abc"}

    def sweep(points, tools):
        return list(local.map(probe, points, cache=cache, key=lambda x: key(x=x, tools=tools)))
    first = sweep([0, 1, 2, 3], tools)
    assert not any(o.cached for o in first) and cache.misses == 4
    again = sweep([0, 1, 2, 3, 4, 5], tools)
    ran = sorted(o.item for o in again if not o.cached)
    assert ran == [4, 5] and cache.hits == 4
    assert _values(again) == {x: {"x": x, "y": x * x} for x in range(6)}
    # a new Liberty file (another hash) is another tool set: everything it touches runs again
    changed = sweep([0, 1], dict(tools, liberty_sha256="def"))
    assert not any(o.cached for o in changed)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log):
    return subprocess.Popen([str(BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT,
                            cwd="/", start_new_session=True)   # cwd="/": the installed project


def test_same_sweep_through_scheduler_and_two_worker_processes(local, tmp_path):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--dashboard-address", ":0", "--no-show"], log)]
    try:
        for _ in range(2):
            # --no-nanny: one process per worker, not two (6 of the test's 28 CPU-s)
            procs.append(_start(["worker", addr, "--nthreads", "1", "--no-nanny",
                                 "--host", "127.0.0.1", "--dashboard-address", ":0",
                                 "--resources", "MEM=2"], log))
        with Engine(scheduler=addr, progress=False) as remote:
            remote.client.wait_for_workers(2, timeout=60)
            outs = list(remote.map(probe, range(4), mem_gb=1))
            pids = {o.value["pid"] for o in outs}
            assert pids <= {p for p in remote.client.run(os.getpid).values()}
        mine = list(local.map(probe, range(4)))
        assert _values(outs) == _values(mine)
        assert pids.isdisjoint({os.getpid()})
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        log.close()


def test_scheduler_from_environment_and_bad_address(monkeypatch):
    with pytest.raises(ValueError, match="scheduler must be tcp://host:port"):
        Engine(scheduler="http://nowhere")
    monkeypatch.setenv("AIMC_SCHEDULER", "udp://1.2.3.4:5")
    with pytest.raises(ValueError, match="'udp://1.2.3.4:5'"):
        Engine()
    with pytest.raises(ValueError, match="`workers` must be a positive integer, not 0"):
        Engine(workers=0)


def test_task_larger_than_any_worker_is_refused(local):
    with pytest.raises(ValueError, match="needs 100000 GB but the largest worker offers"):
        local.submit(probe, 1, mem_gb=100000)


def test_killed_worker_loses_no_point():
    with Engine(workers=2, progress=False) as eng:
        pids = list(eng.client.run(os.getpid).values())
        assert len(pids) == 2
        futs = [eng.submit(probe, x, 1.5) for x in range(4)]
        time.sleep(0.7)                           # both workers are inside their first task
        os.kill(pids[0], signal.SIGKILL)
        results = [f.result(timeout=60) for f in futs]
    assert [r[1] for r in results] == [None] * 4
    assert sorted(r[0]["y"] for r in results) == [0, 1, 4, 9]


# --- the cache ------------------------------------------------------------------------------------

def test_cache_atomic_roundtrip_and_damage(tmp_path):
    cache = Cache(tmp_path)
    k = key(unit="nmpu", config={"adc_bits": 8}, tools={"yosys": "0.70"}, verilog="module m;")
    assert len(k) == 64 and cache.get(k) is None and cache.misses == 1
    path = cache.put(k, {"area_um2": 1.5}, label="p")
    assert cache.get(k) == {"area_um2": 1.5} and cache.hits == 1 and k in cache
    assert not list(path.parent.glob("*.tmp"))
    # parts are hashed canonically: order of dict keys does not matter, tuples are lists
    assert key(a={"x": 1, "y": (1, 2)}) == key(a={"y": [1, 2], "x": 1})
    path.write_text(path.read_text()[:20])
    with pytest.raises(CacheError, match="damaged cache entry"):
        cache.get(k)
    with pytest.raises(CacheError, match="non-finite number"):
        key(x=float("nan"))
    with pytest.raises(CacheError, match="is a set"):
        key(x={1, 2})
    with pytest.raises(CacheError, match="64 lower-case hex"):
        cache.get("../../etc")


def test_cache_key_changes_with_the_verilog(tmp_path):
    from hdl.config import NMPU_PRESETS
    from hdl.export import write
    from synth import flow

    tiny = NMPU_PRESETS["tiny"]
    tools = flow.Tools(["yosys"], "sta", None, {"yosys": "Yosys 0.70", "liberty_sha256": "ab"})
    v1 = write("nmpu", tiny, tmp_path / "a")[0].read_text()
    v1b = write("nmpu", tiny, tmp_path / "b")[0].read_text()
    k1 = flow.cache_key("nmpu", tiny, v1, tools)
    assert k1 == flow.cache_key("nmpu", tiny, v1b, tools)        # the generator is deterministic
    # the same config with other Verilog (a changed generator) is another run
    changed = v1.replace("endmodule", "  // changed generator\nendmodule", 1)
    assert flow.cache_key("nmpu", tiny, changed, tools) != k1
    # so are another config, another clock target and other tools
    other = dataclasses.replace(tiny, out_bits=4)
    v2 = write("nmpu", other, tmp_path / "c")[0].read_text()
    assert v2 != v1 and flow.cache_key("nmpu", other, v2, tools) != k1
    assert flow.cache_key("nmpu", tiny, v1, tools, period_ns=5.0) != k1
    tools2 = dataclasses.replace(tools, versions=dict(tools.versions, liberty_sha256="cd"))
    assert flow.cache_key("nmpu", tiny, v1, tools2) != k1
