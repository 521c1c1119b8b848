"""Verification: the cocotb benches, the fast path, the mutation runner and their tools."""

import gc

__all__ = ["relax_gc"]

# Python's cyclic garbage collector, run less often in the test processes (pytest's workers
# and the simulators' embedded Python): the benches and the Amaranth-simulator tests allocate
# many short-lived objects and few cycles, and the default thresholds (700, 10, 10) spent about
# 9 % of the CPU of the Amaranth-simulator and golden tests in collection passes (98.5 -> 89.7
# CPU-s for test_hdl_baselines, test_hdl_essop and test_golden_fp16; 286 -> 325 MB peak).
GC_THRESHOLD = (100_000, 50, 100)


def relax_gc():
    gc.set_threshold(*GC_THRESHOLD)
