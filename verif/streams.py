"""Stream agents for Amaranth `lib.stream` ports, and the clock loop that runs them.

Timing model (the same under Icarus and Verilator): every agent drives its outputs just after
the falling edge, then samples in the ReadOnly phase of that half cycle. Nothing changes between
that ReadOnly and the next rising edge, so a `valid & ready` seen there is exactly the
handshake that the rising edge performs. Agents run in a fixed order inside one coroutine,
which also fixes the order in which the model sees events of the same clock.
"""

from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

__all__ = ["pause_pattern", "PAUSES", "StreamSource", "StreamSink", "ClockLoop"]

PAUSES = ("none", "random", "bursty")


def pause_pattern(kind, rng, p=0.3):
    """Infinite iterator of booleans: True means 'idle this cycle'."""
    if kind == "none":
        while True:
            yield False
    elif kind == "random":
        while True:
            yield bool(rng.random() < p)
    elif kind == "bursty":
        while True:
            for _ in range(int(rng.integers(1, 12))):
                yield False
            for _ in range(int(rng.integers(1, 6))):
                yield True
    else:
        raise ValueError(f"unknown pause pattern {kind!r}; patterns: {', '.join(PAUSES)}")


class _Port:
    """A signal with a cached last written value (writes cost more than Python compares)."""

    def __init__(self, handle):
        self.handle = handle
        self.last = None

    def set(self, value):
        if value != self.last:
            self.handle.value = value
            self.last = value


class StreamSource:
    """Drives `<name>__valid` / `<name>__payload` from a queue of (payload int, tag) items.
    Once valid, the beat holds until accepted; pauses only start between beats."""

    def __init__(self, dut, name, pause, on_accept=None):
        self.valid = _Port(getattr(dut, f"{name}__valid"))
        self.payload = _Port(getattr(dut, f"{name}__payload"))
        self.ready = getattr(dut, f"{name}__ready")
        self.pause = pause
        self.queue = deque()
        self.current = None
        self.on_accept = on_accept
        self.accepted = 0
        self.held = 0  # clocks with valid high and ready low

    def send(self, payload, tag=None):
        self.queue.append((payload, tag))

    def idle(self):
        return self.current is None and not self.queue

    def reset(self):
        """Forget everything queued (the DUT was reset)."""
        self.queue.clear()
        self.current = None
        self.valid.set(0)

    def drive(self, cycle):
        if self.current is None:
            if self.queue and not next(self.pause):
                self.current = self.queue.popleft()
                self.payload.set(self.current[0])
                self.valid.set(1)
            else:
                self.valid.set(0)

    def sample(self, cycle):
        if self.current is None:
            return
        if not self.ready.value:
            self.held += 1
        else:
            payload, tag = self.current
            self.current = None
            self.accepted += 1
            if self.on_accept:
                self.on_accept(payload, tag, cycle)


class StreamSink:
    """Drives `<name>__ready` with a pause pattern and hands every accepted payload int on."""

    def __init__(self, dut, name, pause, on_beat):
        self.ready = _Port(getattr(dut, f"{name}__ready"))
        self.valid = getattr(dut, f"{name}__valid")
        self.payload = getattr(dut, f"{name}__payload")
        self.pause = pause
        self.on_beat = on_beat
        self.received = 0
        self.hold = False
        self.held = 0  # clocks with valid high and ready low

    def drive(self, cycle):
        self.ready.set(0 if self.hold or next(self.pause) else 1)

    def sample(self, cycle):
        if self.valid.value:
            if self.ready.last:
                self.received += 1
                self.on_beat(self.payload.value.to_unsigned(), cycle)
            else:
                self.held += 1


class ClockLoop:
    """Runs `agents` (objects with drive(cycle) and sample(cycle)) once per clock, in order."""

    def __init__(self, clk, agents):
        self.clk = clk
        self.agents = list(agents)
        self.cycle = 0
        self._task = None

    def start(self):
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self):
        falling, readonly = FallingEdge(self.clk), ReadOnly()
        while True:
            await falling
            for agent in self.agents:
                agent.drive(self.cycle)
            await readonly
            for agent in self.agents:
                agent.sample(self.cycle)
            self.cycle += 1

    async def wait_until(self, condition, timeout, what):
        """Wait whole clocks until condition() holds; fail after `timeout` clocks."""
        rising = RisingEdge(self.clk)
        for _ in range(timeout):
            if condition():
                return
            await rising
        raise AssertionError(f"timed out after {timeout} clocks waiting for {what}")
