"""Bounded formal proofs (SymbiYosys + Yices) of the `tiny` presets.

Each harness is an Amaranth component whose inputs are free (the solver picks them at every
step) and whose `Assert`/`Assume` statements state the property; `formal.run` turns it into
RTLIL and a .sby file under build/formal/<name>/ and runs sby there. See `formal.run.PROOFS`.
"""
