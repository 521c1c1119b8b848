"""The synthesis, timing and area flow (Yosys, OpenSTA, OSU 0.18 um cells): see synth/flow.py."""
