"""Harness plumbing shared by the proofs."""

from amaranth import ClockDomain
from amaranth.lib import wiring

__all__ = ["Harness", "bits_for"]


class Harness(wiring.Component):
    """A proof harness: its signature's inputs are free solver inputs. It owns a reset-less
    `sync` domain, so the design starts from its init values and is never reset mid-trace
    (a reset would legitimately drop beats in flight and void the stream properties)."""

    def __init__(self, signature):
        super().__init__(signature)
        self.cd = ClockDomain("sync", reset_less=True)

    def ports(self):
        """Top-level ports for `rtlil.convert`: every signature member and the clock."""
        return [value for _, _, value in self.signature.flatten(self)] + [self.cd.clk]



def bits_for(lo, hi):
    """Signed width holding every integer of [lo, hi] (computed here, not taken from a config)."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1))):
        bits += 1
    return bits
