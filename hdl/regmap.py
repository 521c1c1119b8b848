"""The register map of a periphery top, described once from its config.

`RegMap` (registers of 32-bit fields and, for a unit with a parameter memory, one write-only
parameter window) is the single source:
`to_rdl()` writes it as SystemRDL, which `systemrdl-compiler` elaborates for PeakRDL (C header,
HTML) and for `RegModel`, the Python register model the driver and the tests use; the Amaranth
register block (`hdl.periphery.AXILiteRegs`) is built from the same `RegMap`. tests/test_regmap.py
checks that the compiled SystemRDL and the description agree field by field.

Pure Python (no Amaranth): the driver imports it.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BUS_BITS", "Field", "Reg", "Window", "RegMap", "pack_fields", "RegModel",
           "compile_rdl", "write_outputs"]

BUS_BITS = 32          # AXI4-Lite data width
BUS_BYTES = BUS_BITS // 8
ACCESS = ("r", "w", "rw")


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    desc: str
    value: int = None       # a constant (read-only identification fields)
    maximum: int = None     # the largest value a write may hold (above: refused, SLVERR)

    def __post_init__(self):
        if self.maximum is not None and not 0 <= self.maximum < (1 << self.width) - 1:
            raise ValueError(f"field {self.name}: `maximum` {self.maximum} must be below the "
                             f"{self.width}-bit field's all-ones (else it checks nothing)")

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Reg:
    """One 32-bit register. `sw`: "r" (hardware status), "w" (write-only pulses), "rw" (storage).
    `locked`: writes while a job runs are refused (SLVERR): the unit samples them per beat."""

    name: str
    offset: int
    sw: str
    fields: tuple
    desc: str
    locked: bool = False

    def __post_init__(self):
        if self.sw not in ACCESS:
            raise ValueError(f"register {self.name}: `sw` must be one of {ACCESS}, not {self.sw!r}")
        if self.offset % BUS_BYTES:
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not word aligned")
        used = 0
        for f in self.fields:
            if f.lsb < 0 or f.width < 1 or f.lsb + f.width > BUS_BITS:
                raise ValueError(f"register {self.name}: field {f.name} [{f.lsb + f.width - 1}:"
                                 f"{f.lsb}] does not fit {BUS_BITS} bits")
            if used & f.mask:
                raise ValueError(f"register {self.name}: field {f.name} overlaps another field")
            used |= f.mask

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}; fields: "
                       f"{', '.join(f.name for f in self.fields)}")


@dataclass(frozen=True)
class Window:
    """The parameter window: entry j's word is `words` bus words at byte offset
    `offset + (j·stride + k)·4`, k = 0 .. words − 1, least significant first (a top with several
    parameter images has entry s·columns + j for column j of image s). Writes of k < words − 1
    stage; the write of k = words − 1 commits the column's whole word to the unit. Write-only
    (the unit's parameter memory has no read port); the holes k >= words are unmapped."""

    name: str
    offset: int
    entries: int            # images × columns
    words: int              # bus words per column
    stride: int             # bus words per column slot (a power of two >= words)
    word_bits: int          # bits of one column's parameter word
    desc: str

    @property
    def size(self):
        return self.entries * self.stride * BUS_BYTES


def pack_fields(items, first_offset, name, desc, sw="rw", locked=False):
    """Registers `name0`, `name1`, ... holding the (field name, width, desc) items, packed in order
    into 32-bit registers without splitting a field. A field wider than 32 bits is split into
    `<field>_0`, `<field>_1` ... of 32 bits each (least significant first)."""
    pieces = []
    for fname, width, fdesc in items:
        if width <= BUS_BITS:
            pieces.append((fname, width, fdesc))
        else:
            for k in range(-(-width // BUS_BITS)):
                w = min(BUS_BITS, width - k * BUS_BITS)
                pieces.append((f"{fname}_{k}", w, f"{fdesc} (bits {k * BUS_BITS + w - 1}.."
                                                  f"{k * BUS_BITS})"))
    regs, cur, lsb = [], [], 0
    for fname, width, fdesc in pieces:
        if lsb + width > BUS_BITS:
            regs.append(cur)
            cur, lsb = [], 0
        cur.append(Field(fname, lsb, width, fdesc))
        lsb += width
    if cur:
        regs.append(cur)
    return tuple(Reg(f"{name}{k}", first_offset + k * BUS_BYTES, sw, tuple(fs), desc, locked)
                 for k, fs in enumerate(regs))


def _pow2_at_least(n):
    p = 1
    while p < n:
        p <<= 1
    return p


@dataclass(frozen=True)
class RegMap:
    """Registers at the bottom of the address space, the parameter window (if any, `window` is
    None otherwise) at `window.offset` (a power of two at least as large as the window and the
    register block), `addr_bits` address bits in all. Every other address is unmapped: an access
    there is a bus error."""

    name: str
    desc: str
    regs: tuple
    window: Window = None
    addr_bits: int = field(init=False)

    def __post_init__(self):
        seen = {}
        for r in self.regs:
            if r.offset in seen:
                raise ValueError(f"registers {seen[r.offset]} and {r.name} share offset {r.offset:#x}")
            seen[r.offset] = r.name
        end = max(r.offset for r in self.regs) + BUS_BYTES
        if self.window is None:
            top = _pow2_at_least(end)
        elif end > self.window.offset:
            raise ValueError(f"the registers end at {end:#x}, beyond the window at "
                             f"{self.window.offset:#x}")
        else:
            top = self.window.offset * 2
        object.__setattr__(self, "addr_bits", (top - 1).bit_length())

    @classmethod
    def build(cls, name, desc, regs, *, entries=None, word_bits=None, window_desc=None):
        """A map of `regs`, with a parameter window of `entries` words of `word_bits` bits each
        unless `entries` is None."""
        if entries is None:
            return cls(name, desc, tuple(regs))
        words = -(-word_bits // BUS_BITS)
        stride = _pow2_at_least(words)
        size = entries * stride * BUS_BYTES
        end = max(r.offset for r in regs) + BUS_BYTES
        base = _pow2_at_least(max(size, end))
        return cls(name, desc, tuple(regs), Window("PARAMS", base, entries, words, stride,
                                                   word_bits, window_desc))

    def reg(self, name):
        for r in self.regs:
            if r.name == name:
                return r
        raise KeyError(f"no register {name!r}; registers: {', '.join(r.name for r in self.regs)}")

    def fields_of(self, prefix):
        """(register, field) of every field of the registers named `prefix<k>`."""
        return [(r, f) for r in self.regs if r.name.rstrip("0123456789") == prefix
                for f in r.fields]

    # -- SystemRDL ----------------------------------------------------------------------------

    def to_rdl(self):
        lines = [f"// Generated by hdl/regmap.py from the periphery config: do not edit.",
                 f"addrmap {self.name} {{",
                 f"    name = \"{self.name}\";",
                 f"    desc = \"{_esc(self.desc)}\";",
                 f"    default regwidth = {BUS_BITS};",
                 f"    default accesswidth = {BUS_BITS};"]
        for r in self.regs:
            lines.append("    reg {")
            lines.append(f"        name = \"{r.name}\";")
            desc = r.desc + (" Writes while a job runs are refused (SLVERR)." if r.locked else "")
            lines.append(f"        desc = \"{_esc(desc)}\";")
            for f in r.fields:
                if r.sw == "r":
                    props = "sw = r; hw = na;" if f.value is not None else "sw = r; hw = w;"
                elif r.sw == "w":
                    props = "sw = w; hw = r; singlepulse;"
                else:
                    props = "sw = rw; hw = r;"
                reset = f" = {f.value:#x}" if f.value is not None else (
                    " = 0" if r.sw != "r" else "")
                fdesc = f.desc + (f" Writes above {f.maximum} are refused (SLVERR)."
                                  if f.maximum is not None else "")
                lines.append(f"        field {{ {props} desc = \"{_esc(fdesc)}\"; }} "
                             f"{f.name}[{f.lsb + f.width - 1}:{f.lsb}]{reset};")
            lines.append(f"    }} {r.name} @ {r.offset:#x};")
        w = self.window
        if w is not None:
            lines += ["    external mem {",
                      f"        name = \"{w.name}\";",
                      f"        desc = \"{_esc(w.desc)}\";",
                      f"        mementries = {w.entries * w.stride};",
                      f"        memwidth = {BUS_BITS};",
                      "        sw = w;",
                      f"    }} {w.name} @ {w.offset:#x};"]
        lines += ["};", ""]
        return "\n".join(lines)


def _esc(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


# -- compiled SystemRDL: the Python register model ------------------------------------------------

def compile_rdl(path):
    """Elaborate a SystemRDL file with systemrdl-compiler; returns the top addrmap node."""
    from systemrdl import RDLCompiler
    rdlc = RDLCompiler()
    rdlc.compile_file(str(path))
    return rdlc.elaborate()


@dataclass(frozen=True)
class ModelReg:
    name: str
    address: int
    readable: bool
    writable: bool
    fields: dict            # name -> (lsb, width)

    def encode(self, **values):
        word = 0
        for name, v in values.items():
            if name not in self.fields:
                raise KeyError(f"register {self.name} has no field {name!r}; fields: "
                               f"{', '.join(self.fields)}")
            lsb, width = self.fields[name]
            if not 0 <= int(v) < (1 << width):
                raise ValueError(f"{self.name}.{name} is {width} bits: {v} does not fit")
            word |= int(v) << lsb
        return word

    def decode(self, word):
        return {n: (word >> lsb) & ((1 << w) - 1) for n, (lsb, w) in self.fields.items()}


class RegModel:
    """The register map as the compiled SystemRDL states it: registers by name (address, access,
    fields) and the parameter memory (`mem`: name, address, entries, readable, writable; None
    when the map has none)."""

    def __init__(self, root):
        top = root.top if hasattr(root, "top") else root
        from systemrdl.node import MemNode, RegNode
        self.name = top.inst_name
        self.regs = {}
        self.mem = None
        for node in top.children():
            if isinstance(node, RegNode):
                fields = {f.inst_name: (f.low, f.width) for f in node.fields()}
                self.regs[node.inst_name] = ModelReg(node.inst_name, node.absolute_address,
                                                     node.has_sw_readable, node.has_sw_writable,
                                                     fields)
            elif isinstance(node, MemNode):
                self.mem = (node.inst_name, node.absolute_address, node.get_property("mementries"),
                            node.is_sw_readable, node.is_sw_writable)

    @classmethod
    def from_file(cls, path):
        return cls(compile_rdl(path))

    def __getitem__(self, name):
        try:
            return self.regs[name]
        except KeyError:
            raise KeyError(f"no register {name!r}; registers: {', '.join(self.regs)}") from None

    def address(self, name):
        return self[name].address

    def layer_fields(self, prefix="LAYER"):
        """{field: (register, lsb, width)} of the registers named `prefix<k>`."""
        return {f: (r, lsb, w) for r in self.regs.values()
                if r.name.rstrip("0123456789") == prefix for f, (lsb, w) in r.fields.items()}


def write_outputs(regmap: RegMap, out_dir, html=True):
    """`<name>.rdl`, the PeakRDL C header `<name>.h` and (with `html`) HTML documentation in
    `html/` under out_dir. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rdl = out_dir / f"{regmap.name}.rdl"
    rdl.write_text(regmap.to_rdl())
    root = compile_rdl(rdl)
    from peakrdl_cheader.exporter import CHeaderExporter
    header = out_dir / f"{regmap.name}.h"
    CHeaderExporter().export(root.top, str(header))
    paths = {"rdl": rdl, "header": header}
    if html:
        from peakrdl_html import HTMLExporter
        HTMLExporter().export(root.top, str(out_dir / "html"))
        paths["html"] = out_dir / "html" / "index.html"
    return paths
