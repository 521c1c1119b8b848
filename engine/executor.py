"""One executor for every sweep of the project: dask.distributed, on this machine by default,
on a cluster unchanged.

    from engine.executor import Engine
    with Engine(workers=2) as eng:                    # LocalCluster: 2 processes x 1 thread
        for out in eng.map(fn, items, label=str):     # Outcome per item, as they finish
            ...

Where the work runs, in order of precedence:
- `scheduler="tcp://host:port"` (or the environment variable AIMC_SCHEDULER): a running
  `dask scheduler` with `dask worker`s that have this project installed (`pip install -e .`);
- `scheduler="slurm"`, `"pbs"`, `"sge"` or `"lsf"`: a dask-jobqueue cluster of `workers` jobs
  (the optional `cluster` extra; queue, account and walltime from dask's jobqueue config);
- otherwise a `LocalCluster` of `workers` processes with one thread each (Amaranth's Verilog
  writer and the tools are not meant for threads; processes also keep a crash in one task
  from taking the driver down).

Every local worker offers the resource `MEM` (its memory limit in GB); a task that declares
`mem_gb` only runs on a worker with that much left, so two 1 GB synthesis runs do not share a
small worker. Remote workers offer it with `dask worker ... --resources MEM=<GB>`; when no
worker of a cluster declares `MEM`, tasks are submitted without it (and the engine says so)
instead of waiting forever.

`map` computes cache keys on the driver (engine/cache.py): hits are yielded at once, misses are
submitted, and each result is stored on the driver when it arrives. A task that raises becomes
an Outcome with `error` (its traceback's last line), so one failed point never stops a sweep;
a worker that dies mid-task has its task re-run elsewhere by the scheduler. Each finished
evaluation prints one progress line `[k/N] label status seconds` (CI logs) unless
`progress=False`.
"""

import dataclasses
import math
import os
import sys
import time
import traceback

__all__ = ["Engine", "Outcome", "SCHEDULER_ENV", "JOBQUEUE", "probe", "measure_overhead"]

SCHEDULER_ENV = "AIMC_SCHEDULER"
JOBQUEUE = ("slurm", "pbs", "sge", "lsf")


@dataclasses.dataclass
class Outcome:
    """One evaluation: the item, its value (or None), `error` (None when it ran), the seconds
    spent inside the task, whether it came from the cache, and its cache key."""
    index: int
    item: object
    value: object = None
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False
    key: str | None = None

    @property
    def ok(self):
        return self.error is None


def _call(fn, args):
    """Run fn(*args) on a worker; returns (value, error, seconds). Errors are data, so that a
    failed point never makes the scheduler retry it or the sweep stop."""
    t0 = time.perf_counter()
    try:
        value, error = fn(*args), None
    except Exception as exc:      # noqa: BLE001 - reported per point, with its type and message
        tb = traceback.format_exc(limit=-3)
        value, error = None, f"{type(exc).__name__}: {exc}\n{tb}"
    return value, error, time.perf_counter() - t0


def probe(x, sleep=0.0):
    """A trivial task (engine tests and the overhead measurement): sleeps, returns x squared and
    the worker's process id."""
    if sleep:
        time.sleep(sleep)
    return {"x": x, "y": x * x, "pid": os.getpid()}


def _mem_gb_default(workers):
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        total = 4.0
    return max(0.5, math.floor(10 * total / max(1, workers)) / 10)


class Engine:
    """A dask.distributed client over a local, remote or batch cluster (see the module doc)."""

    def __init__(self, workers=2, scheduler=None, mem_gb=None, progress=True, quiet=True):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"`workers` must be a positive integer, not {workers!r}")
        self.workers, self.quiet = workers, quiet
        self.scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        self.progress = progress
        self.cluster = self._client = None
        if self.scheduler is None:
            self.mem_gb = mem_gb or _mem_gb_default(workers)
            self.where = f"local: {workers} worker process(es) x 1 thread, {self.mem_gb} GB each"
        elif self.scheduler.lower() in JOBQUEUE:
            self.mem_gb = mem_gb or 4
            self.where = f"{self.scheduler}: {workers} job(s) of 1 core, {self.mem_gb} GB"
        else:
            if not self.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
                raise ValueError(f"scheduler must be tcp://host:port, one of {', '.join(JOBQUEUE)}"
                                 f" or unset, not {self.scheduler!r}")
            self.mem_gb = mem_gb
            self.where = f"scheduler {self.scheduler}"

    @property
    def client(self):
        """The dask client, connected (and a local or batch cluster started) on first use: a
        sweep whose every point is in the cache starts nothing."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self):
        from dask.distributed import Client
        if self.scheduler is None:
            from dask.distributed import LocalCluster
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                        processes=True, dashboard_address=":0", host="127.0.0.1",
                                        memory_limit=f"{self.mem_gb}GiB",
                                        resources={"MEM": self.mem_gb},
                                        silence_logs=40 if self.quiet else 30)
            return Client(self.cluster)
        if self.scheduler.lower() in JOBQUEUE:
            try:
                import dask_jobqueue
            except ImportError:
                raise SystemExit(f"scheduler {self.scheduler!r} needs dask-jobqueue: "
                                 f"pip install -e '.[cluster]'") from None
            kind = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
                    "lsf": "LSFCluster"}[self.scheduler.lower()]
            self.cluster = getattr(dask_jobqueue, kind)(
                cores=1, processes=1, memory=f"{self.mem_gb}GB",
                worker_extra_args=[f"--resources MEM={self.mem_gb}"])
            self.cluster.scale(jobs=self.workers)
            return Client(self.cluster)
        return Client(self.scheduler, timeout="20s")

    # -- life cycle
    def close(self):
        if self._client is not None:
            self._client.close()
        if self.cluster is not None:
            self.cluster.close()
        self._client = self.cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def executor(self):
        """A concurrent.futures.Executor on this cluster (for code written against one)."""
        return self.client.get_executor()

    def worker_count(self):
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def _resources(self, mem_gb):
        if not mem_gb:
            return None
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        offered = [w.get("resources", {}).get("MEM") for w in info.values()]
        if info and not any(offered):
            if not getattr(self, "_warned_mem", False):
                print(f"engine: no worker declares MEM (start them with --resources MEM=<GB>); "
                      f"tasks of {mem_gb} GB are placed without it", file=sys.stderr)
                self._warned_mem = True
            return None
        if offered and max(o or 0 for o in offered) < mem_gb:
            raise ValueError(f"a task needs {mem_gb} GB but the largest worker offers "
                             f"{max(o or 0 for o in offered)} GB (MEM)")
        return {"MEM": mem_gb}

    # -- the sweep
    def submit(self, fn, *args, mem_gb=None, priority=0):
        """One task; the future's result is (value, error, seconds)."""
        return self.client.submit(_call, fn, args, pure=False, priority=priority,
                                  resources=self._resources(mem_gb))

    def map(self, fn, items, *, args=None, cache=None, key=None, keep=None, label=None,
            mem_gb=None, total=None, priority=None):
        """Evaluate fn on every item (fn(*args(item)) if `args` is given, else fn(item)); yield
        an Outcome per item as it finishes, cache hits first.

        With `cache` and `key` (item -> key string, computed on the driver), a hit is not
        submitted and every successful new result is stored when it arrives. `label(item)`
        names the point in the progress line; `priority(item)` orders the queue (higher
        first: put the long runs first so that they overlap the short ones).

        `items` may be a generator: each item is submitted as soon as it is produced, so a
        stage fed by another stage's results starts while that stage still runs (give `total`
        for the progress line, else it counts the items seen so far)."""
        from dask.distributed import as_completed
        n = total or (len(items) if hasattr(items, "__len__") else None)
        label = label or (lambda item: str(item))
        argf = args or (lambda item: (item,))
        pending, done = {}, 0
        for i, item in enumerate(items):
            k = key(item) if (cache is not None and key is not None) else None
            hit = cache.get(k) if k is not None else None
            if hit is not None:
                done += 1
                out = Outcome(i, item, hit, None, 0.0, True, k)
                self._line(done, n or i + 1, label(item), "cached", 0.0)
                yield out
                continue
            fut = self.submit(fn, *argf(item), mem_gb=mem_gb,
                              priority=priority(item) if priority else 0)
            pending[fut] = (i, item, k)
        if not pending:       # every point came from the cache: no cluster, no client
            return
        n = n or i + 1
        for fut in as_completed(list(pending), loop=self.client.loop):
            i, item, k = pending.pop(fut)
            value, error, seconds = fut.result()
            done += 1
            if error is None and k is not None and (keep is None or keep(value)):
                cache.put(k, value, label=label(item))
            self._line(done, n, label(item), "ok" if error is None else "FAILED", seconds)
            yield Outcome(i, item, value, error, seconds, False, k)

    def _line(self, k, n, label, status, seconds):
        if self.progress:
            print(f"[{k}/{n}] {label} {status} {seconds:.1f} s", flush=True)


def measure_overhead(engine, n=40, sleep=0.2):
    """The engine's cost per evaluation: n probe tasks of `sleep` s each through `map`;
    overhead = (wall x workers - sum of task seconds) / n, and as a share of the task."""
    workers = engine.worker_count()
    was, engine.progress = engine.progress, False
    try:
        list(engine.map(probe, range(4)))          # warm the workers (imports)
        t0 = time.perf_counter()
        outs = list(engine.map(probe, range(n), args=lambda x: (x, sleep)))
        wall = time.perf_counter() - t0
    finally:
        engine.progress = was
    inside = sum(o.seconds for o in outs)
    per = max(0.0, wall * workers - inside) / n
    return {"tasks": n, "task_s": sleep, "workers": workers, "wall_s": round(wall, 3),
            "overhead_s_per_task": round(per, 4), "overhead_share": round(per / sleep, 4),
            "where": engine.where}


def main(argv=None):
    import argparse
    import json
    ap = argparse.ArgumentParser(description="Measure the engine's overhead per evaluation.")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler", help=f"tcp://host:port (default: ${SCHEDULER_ENV} or local)")
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--sleep", type=float, default=0.2, help="seconds per probe task")
    args = ap.parse_args(argv)
    with Engine(args.workers, args.scheduler, progress=False) as eng:
        print(json.dumps(measure_overhead(eng, args.tasks, args.sleep), indent=1))


if __name__ == "__main__":
    main()
