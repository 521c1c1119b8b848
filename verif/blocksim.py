"""Clock-by-clock replay of an Amaranth block's generated Verilog in Icarus Verilog.

The block tests of the arithmetic pieces (`tests/test_hdl_fp16.py`: every binary16 pattern
through the int8 converter, tens of thousands of multiply and FMA cases) drive one operand set
per clock with an `en` pattern. Amaranth's Python simulator costs about a millisecond per clock
for an FP16 FMA; the same stimulus through the generated Verilog in Icarus costs a few
microseconds. `run` takes the inputs of every clock, writes them as one `$readmemh` word per
clock, and returns every output after every rising edge, as the Python simulator's testbench
sees them (`ctx.set` before `ctx.tick()`, `ctx.get` after it): the checks stay in Python.

The bench holds `rst` low and starts from the registers' initial values, like a testbench of
`amaranth.sim.Simulator` without a reset.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

__all__ = ["BlockSimError", "run"]


class BlockSimError(RuntimeError):
    """The block's Verilog did not compile or its bench did not run to the end."""


def _ports(dut, names):
    out = []
    for name in names:
        port = getattr(dut, name, None)
        if port is None:
            raise ValueError(f"{type(dut).__name__} has no port `{name}`")
        out.append((name, len(port), port.shape().signed))
    return out


def _bench(module, ins, outs, clocks, clocked=True):
    """The Verilog bench: a word per clock, {inputs in order}, applied at the falling edge;
    every output written after each rising edge (one line per clock, hex, in order). A block
    without the `sync` domain (`clocked` False: no clk and rst ports) sees the same bench, its
    outputs then a function of the clock's inputs."""
    width = sum(w for _, w, _ in ins)
    lines = [
        "`timescale 1ns/1ps",
        "module tb;",
        "  reg clk = 0;",
        "  reg rst = 0;",
        f"  reg [{width - 1}:0] stim [0:{clocks - 1}];",
        *[f"  reg [{w - 1}:0] i_{n};" for n, w, _ in ins],
        *[f"  wire [{w - 1}:0] o_{n};" for n, w, _ in outs],
        "  integer k, f;",
        f"  {module} dut ({'.clk(clk), .rst(rst), ' if clocked else ''}"
        + ", ".join([f".{n}(i_{n})" for n, _, _ in ins] + [f".{n}(o_{n})" for n, _, _ in outs])
        + ");",
        "  initial begin",
        '    $readmemh("stim.hex", stim);',
        '    f = $fopen("out.hex", "w");',
        f"    for (k = 0; k < {clocks}; k = k + 1) begin",
    ]
    hi = width - 1
    for n, w, _ in ins:
        lines.append(f"      i_{n} = stim[k][{hi}:{hi - w + 1}];")
        hi -= w
    fmt = " ".join("%h" for _ in outs)
    write = f'$fwrite(f, "{fmt}\\n", {", ".join(f"o_{n}" for n, _, _ in outs)});'
    lines += [
        f"      if (k == 0) begin #1; {write} end   // before the first edge",
        "      #5 clk = 1;",
        "      #1;",
        f"      {write}",
        "      #4 clk = 0;",
        "    end",
        "    $fclose(f);",
        '    $display("DONE");',
        "    $finish;",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def run(dut, inputs, outputs, folder=None):
    """Simulate `dut` (an Amaranth component clocked by the `sync` domain, or combinational) in
    Icarus.

    `inputs`: port name -> int array, the value of that port during each clock (all the same
    length: the number of clocks). `outputs`: port names. Returns port name -> int64 array of
    clocks + 1 values: the output before the first rising edge, then after each edge (signed
    ports sign-extended). `folder` keeps
    the Verilog, bench and data (default: a temporary folder, removed)."""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise BlockSimError("iverilog / vvp not found on PATH (`make setup` installs them)")
    names = list(inputs)
    ins, outs = _ports(dut, names), _ports(dut, outputs)
    values = [np.asarray(inputs[n], dtype=np.int64) for n in names]
    clocks = len(values[0])
    if clocks == 0 or any(len(v) != clocks for v in values):
        raise ValueError(f"every input needs the same number of clocks (> 0), not "
                         f"{ {n: len(v) for n, v in zip(names, values)} }")
    words = [0] * clocks
    for (name, width, signed), v in zip(ins, values):
        mask = (1 << width) - 1
        lo = -(1 << (width - 1)) if signed else 0
        if v.min() < lo or v.max() > lo + mask:
            raise ValueError(f"input `{name}` ({width} bits) out of range: "
                             f"[{int(v.min())}, {int(v.max())}]")
        words = [(w << width) | (int(x) & mask) for w, x in zip(words, v)]
    digits = (sum(w for _, w, _ in ins) + 3) // 4
    module = f"blk_{type(dut).__name__.lower()}"
    text = verilog.convert(dut, name=module, emit_src=False)
    header = re.search(rf"^module {module}\(([^)]*)\);", text, re.M)
    if header is None:
        raise BlockSimError(f"no `module {module}(...)` header in the generated Verilog")
    clocked = "clk" in {p.strip() for p in header.group(1).split(",")}

    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="blocksim-")
        folder = tmp.name
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        (folder / "dut.v").write_text(text)
        (folder / "tb.v").write_text(_bench(module, ins, outs, clocks, clocked))
        (folder / "stim.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
        proc = subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", "dut.v"], cwd=folder,
                              capture_output=True, text=True)
        if proc.returncode:
            raise BlockSimError(f"iverilog failed in {folder}:\n{proc.stdout}{proc.stderr}")
        proc = subprocess.run(["vvp", "-n", "sim"], cwd=folder, capture_output=True, text=True)
        if proc.returncode or "DONE" not in proc.stdout:
            raise BlockSimError(f"vvp failed in {folder}:\n{proc.stdout}{proc.stderr}")
        rows = (folder / "out.hex").read_text().split()
    finally:
        if tmp is not None:
            tmp.cleanup()
    if len(rows) != (clocks + 1) * len(outs):
        raise BlockSimError(f"{len(rows)} output values for {clocks} clocks x {len(outs)} outputs")
    got = {}
    for k, (name, width, signed) in enumerate(outs):
        col = rows[k::len(outs)]
        if any("x" in r.lower() or "z" in r.lower() for r in col):
            first = next(i for i, r in enumerate(col) if "x" in r.lower() or "z" in r.lower())
            raise BlockSimError(f"output `{name}` is X/Z after clock {first}")
        v = np.array([int(r, 16) for r in col], dtype=np.int64)
        if signed:
            v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
        got[name] = v
    return got
