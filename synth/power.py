"""Energy per item from real switching activity: gate-level simulation of the mapped netlist,
toggles per net, energy from the Liberty tables (the P of PPA).

    python -m synth.power [--unit U ...] [--preset P ...] [--jobs N] [--count N] [--glitch]

For each unit x preset synthesised by `synth.flow` (`build/synth/<unit>_<tag>/netlist.v`):

1. Stimulus: the golden vectors and the plain Verilog bench of `verif.vectors` (stimulus,
   parameter writes, expected output beats from the golden functions), in
   `build/power/<unit>_<tag>/`, replayed back to back (`+nostall`).
2. Gate-level simulation in Icarus of that bench with the *mapped netlist* in place of the RTL
   and the library's own cell models (`osu018_stdcells.v` from the same Debian package as the
   Liberty file), no delays. The models are inlined (`inline_cells`: each cell instance
   replaced by its model's primitives, which Icarus loads several times faster than 100 k
   module instances). The bench checks every output beat against the golden model: a free
   gate-level equivalence check of the synthesis (`PASS n beats`). ESSOP's windows (one per
   BL) share one build.
3. Activity: Icarus dumps the netlist's nets (`$dumpvars` of its scope, not the models'
   internals) to a VCD over the window only (`dump_verilog`), which runs from the clock edge
   that accepts the first input beat to the edge that accepts the last output beat; rises
   and falls per net are counted in Python (`read_vcd`) between the values the nets settle
   to in each time step (zero delay: all changes come at the rising edges). Every net of the
   netlist is counted.
4. Energy over the window, from the Liberty tables (`PowerLib`):
   - internal: every output transition of a cell costs its `internal_power` rise or fall
     energy at the net's load and the input slew (a multi-input cell's arcs weighted by how
     often each related input toggled); input pins with a passive `internal_power` table
     (flip-flop D and CLK) cost it per transition;
   - switching: 1/2 C V^2 per transition, C = the input-pin capacitances the net drives (+ the
     flow's 10 fF on an output port). Wire load: none, the same choice as the timing flow (the
     library has no wire-load model and the netlist is not placed), so the switching part is a
     lower bound; its share is reported;
   - leakage: sum of `cell_leakage_power` x the window's time at the unit's f_max;
   - clock (the ideal clock is not in the netlist): per clock, every flip-flop's CLK pin
     capacitance x V^2 (charged and discharged once) plus its CLK pin internal energy (rise +
     fall), at the ideal clock's zero slew.
   Slews: each net's slew is its driver's `rise/fall_transition` table at the net's load and a
   nominal 0.1 ns input slew (one pass; the clock is ideal). Tables are interpolated
   bilinearly and extrapolated linearly beyond their index, as OpenSTA does.
   Classes: clock, flip-flops (their internal energy and the switching of the nets they
   drive), logic (combinational cells, likewise), inputs (the switching of the nets the
   unit's input ports drive), leakage. Flip-flops are also split by block (the net names
   that survive flattening: `lane3.acc[5]` -> `lane`).
5. Per item: (E_window - (window clocks - items x clocks per item) x E_idle) / items, where
   E_idle is the clock-only energy per clock (clock + leakage): the pipeline's fill and drain
   clocks are charged at idle cost, not to the items. Items per uJ = 1e6 / pJ per item.

Results: `build/power/<unit>_<tag>/power.json`; `build/report/power.json` and `power.md`
gather all rows; `synth.report` puts energy into the PPA report.
"""

import argparse
import dataclasses
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from synth import flow

__all__ = ["PowerError", "Table", "PowerLib", "Netlist", "parse_groups", "load_power_lib",
           "parse_netlist", "cell_models", "cell_primitives", "inline_cells", "dump_verilog",
           "Activity", "read_vcd", "compile_gate", "run_gate", "simulate", "measure", "collect",
           "main"]

ROOT = flow.ROOT
DEFAULT_OUT = ROOT / "build" / "power"
MODELS_FILE = "osu018_stdcells.v"
NOMINAL_SLEW_NS = 0.1       # input slew of a driver when its net's slew is looked up
CLOCK_SLEW_NS = 0.0         # the ideal clock, as in the timing flow
VCD = "activity.vcd"
TB_PERIOD_NS = 10.0         # the vectors bench's clock (`always #5 clk = ~clk`)


class PowerError(flow.FlowError):
    """A step of the energy measurement failed; the message says which and where."""


# ---------------------------------------------------------------------------------------------
# Liberty: a small parser for the groups energy needs

_TOKEN = re.compile(r'\s+|/\*.*?\*/|//[^\n]*|\\\n|("(?:[^"\\]|\\.)*")|([(){}:;,])|([^\s(){}:;,"]+)',
                    re.S)


def _tokens(text):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PowerError(f"Liberty: cannot read {text[pos:pos + 40]!r}")
        pos = m.end()
        if m.group(1) is not None:
            yield m.group(1)[1:-1]
        elif m.group(2) is not None:
            yield m.group(2)
        elif m.group(3) is not None:
            yield m.group(3)


@dataclasses.dataclass
class Group:
    kind: str
    args: list
    attrs: dict = dataclasses.field(default_factory=dict)   # simple and complex attributes
    groups: list = dataclasses.field(default_factory=list)

    def sub(self, kind):
        return [g for g in self.groups if g.kind == kind]


def parse_groups(text):
    """The top Liberty group of `text` as nested `Group`s (attributes by name: a simple one as
    its value string, a complex one as its argument list)."""
    toks = list(_tokens(text))
    pos = 0

    def expect(t):
        nonlocal pos
        if pos >= len(toks) or toks[pos] != t:
            got = toks[pos] if pos < len(toks) else "end of file"
            raise PowerError(f"Liberty: expected {t!r}, got {got!r} (token {pos})")
        pos += 1

    def statement():
        nonlocal pos
        name = toks[pos]
        pos += 1
        if toks[pos] == ":":
            pos += 1
            value = toks[pos]
            pos += 1
            if pos < len(toks) and toks[pos] == ";":
                pos += 1
            return "attr", name, value
        expect("(")
        args = []
        while toks[pos] != ")":
            if toks[pos] != ",":
                args.append(toks[pos])
            pos += 1
        pos += 1
        if pos < len(toks) and toks[pos] == "{":
            pos += 1
            g = Group(name, args)
            while toks[pos] != "}":
                what, n, v = statement()
                if what == "group":
                    g.groups.append(v)
                else:
                    g.attrs[n] = v
            pos += 1
            return "group", name, g
        if pos < len(toks) and toks[pos] == ";":
            pos += 1
        return "attr", name, args

    what, _, top = statement()
    if what != "group":
        raise PowerError("Liberty: the file does not start with a group")
    return top


@dataclasses.dataclass(frozen=True)
class Table:
    """A Liberty lookup table over named variables; `at` interpolates bilinearly and
    extrapolates linearly (OpenSTA's rule)."""
    variables: tuple
    index: tuple        # one array per variable
    values: np.ndarray

    def at(self, **point):
        if not self.variables:
            return float(self.values.reshape(-1)[0])
        coords = tuple(round(float(point[v]), 9) for v in self.variables)
        key = (id(self), coords)
        hit = _AT_CACHE.get(key)
        if hit is None:     # loads and slews repeat across a netlist: one lookup each
            hit = _AT_CACHE[key] = (self, float(_interp(self.values, self.index, coords)))
        return hit[1]


_AT_CACHE = {}      # (table id, coordinates) -> (table, value); the table is kept alive


def _interp(values, index, coords):
    if not index:
        return values
    idx, x = index[0], coords[0]
    if len(idx) == 1:
        return _interp(values[0], index[1:], coords[1:])
    i = int(np.clip(np.searchsorted(idx, x) - 1, 0, len(idx) - 2))
    t = (x - idx[i]) / (idx[i + 1] - idx[i])
    lo = _interp(values[i], index[1:], coords[1:])
    hi = _interp(values[i + 1], index[1:], coords[1:])
    return lo + t * (hi - lo)


def _interp_many(values, index, coords):
    """`_interp` at many points at once (coords: one array per variable), multilinear with
    linear extrapolation."""
    n = len(coords[0])
    lo, w = [], []
    for idx, x in zip(index, coords):
        if len(idx) == 1:
            lo.append(np.zeros(n, dtype=np.int64))
            w.append(np.zeros(n))
            continue
        i = np.clip(np.searchsorted(idx, x) - 1, 0, len(idx) - 2)
        lo.append(i)
        w.append((x - idx[i]) / (idx[i + 1] - idx[i]))
    out = np.zeros(n)
    for corner in itertools.product((0, 1), repeat=len(index)):
        weight, sel = np.ones(n), []
        for d, c in enumerate(corner):
            weight = weight * (w[d] if c else 1.0 - w[d])
            sel.append(np.minimum(lo[d] + c, len(index[d]) - 1))
        out += weight * values[tuple(sel)]
    return out


class _Lookups:
    """Table lookups gathered one by one (`add` returns a position; no table: -1, value 0),
    then evaluated per table with array arithmetic (`values`)."""

    def __init__(self):
        self.by_table, self.n = {}, 0

    def add(self, table, load, slew):
        if table is None:
            return -1
        e = self.by_table.setdefault(id(table), (table, [], [], []))
        e[1].append(self.n)
        e[2].append(load)
        e[3].append(slew)
        self.n += 1
        return self.n - 1

    def values(self):
        out = np.zeros(self.n + 1)          # position -1: 0.0
        for table, pos, loads, slews in self.by_table.values():
            if not table.variables:
                out[pos] = float(table.values.reshape(-1)[0])
                continue
            point = {"load": np.array(loads, float), "slew": np.array(slews, float)}
            unknown = set(table.variables) - set(point)
            if unknown:
                raise PowerError(f"Liberty: a table over {sorted(unknown)}, not load and slew")
            out[pos] = _interp_many(table.values, table.index,
                                    [point[v] for v in table.variables])
        return out


_LOAD_VARS = ("total_output_net_capacitance",)
_SLEW_VARS = ("input_transition_time", "input_net_transition")


def _table(group, templates):
    var_names = templates.get(group.args[0] if group.args else "", ())
    index = []
    for k in range(1, len(var_names) + 1):
        raw = group.attrs.get(f"index_{k}")
        if raw is None:
            raise PowerError(f"Liberty: table {group.kind} without index_{k}")
        index.append(np.array([float(v) for v in raw[0].split(",")]))
    rows = [[float(v) for v in row.split(",")] for row in group.attrs["values"]]
    values = np.array(rows, dtype=float).reshape([len(i) for i in index] or [1])
    variables = tuple("load" if v in _LOAD_VARS else "slew" if v in _SLEW_VARS else v
                      for v in var_names)
    return Table(variables, tuple(index), values)


@dataclasses.dataclass
class Pin:
    direction: str
    cap: float = 0.0            # pF
    rise_cap: float = 0.0
    fall_cap: float = 0.0
    clock: bool = False
    power: list = dataclasses.field(default_factory=list)   # (related pin or None, rise, fall)
    transition: list = dataclasses.field(default_factory=list)  # (related, rise, fall) tables


@dataclasses.dataclass
class Cell:
    name: str
    leakage: float              # in the library's leakage unit, converted to W by PowerLib
    pins: dict
    sequential: bool

    @property
    def outputs(self):
        return [p for p, pin in self.pins.items() if pin.direction == "output"]

    @property
    def inputs(self):
        return [p for p, pin in self.pins.items() if pin.direction == "input"]


@dataclasses.dataclass
class PowerLib:
    """What energy needs from a Liberty file: supply voltage, pin capacitances, internal
    energy tables, transition tables, leakage; units converted to pF, pJ, ns and W."""
    path: Path
    voltage: float
    cells: dict
    leakage_w: float            # W per library leakage unit
    cap_pf: float               # pF per library capacitance unit
    energy_pj: float            # pJ per library energy unit (cap unit x voltage unit^2)

    def leak_w(self, cell):
        return self.cells[cell].leakage * self.leakage_w


_SCALE = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0}


def _unit(text, base):
    m = re.fullmatch(rf"\s*([0-9.eE+-]*)\s*([fpnum]?){base}\s*", text, re.I)
    if not m:
        raise PowerError(f"Liberty: cannot read the unit {text!r} (expected ...{base})")
    return float(m.group(1) or 1) * _SCALE[m.group(2).lower() if m.group(2) != "m" else "m"]


def load_power_lib(path):
    """Parse a Liberty file into a `PowerLib` (raises PowerError naming what is missing)."""
    path = Path(path)
    top = parse_groups(path.read_text())
    a = top.attrs
    voltage = float(a.get("nom_voltage", "nan"))
    for oc in top.sub("operating_conditions"):
        if oc.args and oc.args[0] == a.get("default_operating_conditions"):
            voltage = float(oc.attrs.get("voltage", voltage))
    if not voltage > 0:
        raise PowerError(f"{path}: no nom_voltage or operating-condition voltage")
    volt_unit = _unit(a.get("voltage_unit", "1V"), "V")
    cap = a.get("capacitive_load_unit")
    if not cap or len(cap) != 2:
        raise PowerError(f"{path}: no capacitive_load_unit")
    cap_pf = float(cap[0]) * _SCALE[cap[1].lower()[0] if cap[1].lower() != "f" else "f"] / 1e-12
    leak_w = _unit(a.get("leakage_power_unit", "1nW"), "W")
    templates = {g.args[0]: tuple(g.attrs.get(f"variable_{k}") for k in (1, 2, 3)
                                  if g.attrs.get(f"variable_{k}"))
                 for g in top.groups if g.kind in ("lu_table_template", "power_lut_template")}
    cells = {}
    for cg in top.sub("cell"):
        pins = {}
        for pg in cg.sub("pin"):
            p = pg.attrs
            pin = Pin(p.get("direction", "input"), float(p.get("capacitance", 0)) * cap_pf,
                      float(p.get("rise_capacitance", p.get("capacitance", 0))) * cap_pf,
                      float(p.get("fall_capacitance", p.get("capacitance", 0))) * cap_pf,
                      p.get("clock") == "true")
            for ip in pg.sub("internal_power"):
                rise = [_table(t, templates) for t in ip.sub("rise_power")]
                fall = [_table(t, templates) for t in ip.sub("fall_power")]
                pin.power.append((ip.attrs.get("related_pin"), rise[0] if rise else None,
                                  fall[0] if fall else None))
            for tg in pg.sub("timing"):
                rise = [_table(t, templates) for t in tg.sub("rise_transition")]
                fall = [_table(t, templates) for t in tg.sub("fall_transition")]
                if rise or fall:
                    pin.transition.append((tg.attrs.get("related_pin"),
                                           rise[0] if rise else None, fall[0] if fall else None))
            for name in pg.args:
                pins[name] = pin
        seq = bool(cg.sub("ff") or cg.sub("latch"))
        cells[cg.args[0]] = Cell(cg.args[0], float(cg.attrs.get("cell_leakage_power", 0)),
                                 pins, seq)
    if not cells:
        raise PowerError(f"{path}: no cells")
    # energy tables are in (capacitance unit) x (voltage unit)^2: 1 pF x 1 V^2 = 1 pJ
    return PowerLib(path, voltage, cells, leak_w, cap_pf, cap_pf * volt_unit ** 2)


# ---------------------------------------------------------------------------------------------
# The mapped netlist (Yosys `write_verilog -noattr -noexpr -simple-lhs`, flat)

@dataclasses.dataclass
class Netlist:
    """Bits of the flat netlist. Nets are numbered; `wires` lists every declared wire (name,
    width, lsb, net of each bit), `cells` every instance (name, type, {pin: net})."""
    top: str
    wires: list
    cells: list
    inputs: set                 # nets driven by input ports
    outputs: set                # nets read by output ports
    clock: int | None           # the net of `clk`
    nets: int


def _ident(tok):
    tok = tok.strip()
    return tok[1:] if tok.startswith("\\") else tok


_DECL = re.compile(r"(input|output|inout|wire|reg)\s+(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?"
                   r"(\\\S+|[A-Za-z_][\w$]*)\s*", re.S)
_CELL = re.compile(r"([A-Za-z_][\w$]*)\s+(\\\S+|[A-Za-z_][\w$]*)\s*\((.*)\)\s*", re.S)
_ASSIGN = re.compile(r"assign\s+(.*?)\s*=\s*(.*?)\s*", re.S)
_CONN = re.compile(r"\.(\w+)\s*\(\s*(.*?)\s*\)\s*(?:,|$)", re.S)


def parse_netlist(path, clock=flow.CLOCK):
    """Parse the flat mapped netlist; assigns merge their two sides into one net."""
    text = Path(path).read_text()
    mods = re.findall(r"^module\s+(\S+)\s*\((.*?)\);(.*?)^endmodule", text, re.M | re.S)
    if len(mods) != 1:
        raise PowerError(f"{path}: expected one flat module, found {len(mods)}")
    top, _, body = mods[0]
    wires, bits = [], {}
    inputs, outputs = [], []
    stmts = [re.sub(r"/\*.*?\*/", "", st, flags=re.S).strip() for st in _statements(body)]
    decls, assigns, insts = [], [], []
    for st in stmts:
        if not st:
            continue
        m = _DECL.fullmatch(st)
        if m:
            decls.append(m.groups())
            continue
        m = _ASSIGN.fullmatch(st)
        if m:
            assigns.append(m.groups())
            continue
        m = _CELL.fullmatch(st)
        if m:
            insts.append(m.groups())
            continue
        raise PowerError(f"{path}: cannot read the statement {st[:80]!r}")
    shape = {}
    for kind, msb, lsb, name in decls:
        name = _ident(name)
        hi, lo = (int(msb), int(lsb)) if msb else (0, 0)
        if hi < lo:
            raise PowerError(f"{path}: ascending range [{msb}:{lsb}] of {name} not supported")
        # a port is declared twice (`input [3:0] a;` and `wire [3:0] a;`): the same bits
        if shape.setdefault(name, (hi, lo, bool(msb))) != (hi, lo, bool(msb)):
            raise PowerError(f"{path}: {name} declared as {shape[name][:2]} and ({hi}, {lo})")
        ids = []
        for i in range(lo, hi + 1):
            key = (name, i if msb else None)
            if key not in bits:
                bits[key] = len(bits)
            ids.append(bits[key])
        if len(shape) > len(wires):
            wires.append((name, hi - lo + 1, lo, ids, bool(msb)))
        if kind == "input":
            inputs += ids
        elif kind == "output":
            outputs += ids
    parent = list(range(len(bits)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def refs(expr):
        """Bit ids of an expression: a concatenation of names, bits, ranges and constants
        (a constant bit is the string '0' or '1')."""
        expr = expr.strip()
        if expr.startswith("{"):
            out = []
            for part in _split_concat(expr[1:-1]):
                out += refs(part)
            return out
        m = re.fullmatch(r"(\d+)'([bh])([0-9a-fA-FxXzZ_]+)", expr)
        if m:
            width = int(m.group(1))
            digits = m.group(3).replace("_", "")
            if m.group(2) == "h":
                if re.search("[xXzZ]", digits):
                    return ["x"] * width
                val = format(int(digits, 16), f"0{width}b")[-width:]
            else:
                val = digits.zfill(width)[-width:]
            return list(val)
        m = re.fullmatch(r"(\\\S+|[A-Za-z_][\w$]*)\s*(?:\[(\d+)(?::(\d+))?\])?", expr)
        if not m:
            raise PowerError(f"{path}: cannot read the net expression {expr!r}")
        name = _ident(m.group(1))
        if m.group(2) is None:
            w = _wire(name)
            if w[4]:
                return [bits[(name, i)] for i in range(w[2] + w[1] - 1, w[2] - 1, -1)]
            return [bits[(name, None)]]
        hi = int(m.group(2))
        lo = int(m.group(3)) if m.group(3) is not None else hi
        return [bits[(name, i)] for i in range(hi, lo - 1, -1)]

    by_name = {w[0]: w for w in wires}

    def _wire(name):
        if name not in by_name:
            raise PowerError(f"{path}: undeclared net {name!r}")
        return by_name[name]

    for lhs, rhs in assigns:
        left, right = refs(lhs), refs(rhs)
        if len(left) != len(right):
            raise PowerError(f"{path}: assign of {len(right)} bits to {len(left)}: {lhs}")
        for a, b in zip(left, right):
            if isinstance(b, str):
                continue            # tied to a constant: never toggles
            parent[find(a)] = find(b)
    cells = []
    for ctype, iname, conns in insts:
        pins = {}
        for pin, expr in _CONN.findall(conns + ","):
            if not expr:
                continue
            r = refs(expr)
            if len(r) != 1:
                raise PowerError(f"{path}: pin {iname}.{pin} connects {len(r)} bits")
            pins[pin] = r[0] if isinstance(r[0], str) else find(r[0])
        cells.append((_ident(iname), ctype, pins))
    wires = [(n, w, lo, [find(i) for i in ids], vec) for n, w, lo, ids, vec in wires]
    clk = by_name.get(clock)
    return Netlist(top, wires, cells, {find(i) for i in inputs}, {find(i) for i in outputs},
                   find(clk[3][0]) if clk else None, len(bits))


def _statements(body):
    """`;`-terminated statements, a `;` inside an escaped identifier kept."""
    return [m.group(0) for m in re.finditer(r"(?:\\\S*\s|[^;\\])+", body)]


def _split_concat(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


# ---------------------------------------------------------------------------------------------
# Energy from toggles

CLASSES = ("clock", "flip-flops", "logic", "inputs", "leakage")


@dataclasses.dataclass
class Model:
    """The netlist and library joined, once per netlist: per net its load and slew, per cell
    output pin its internal-energy arcs looked up at that load and slew, per input pin its
    passive energy; `energy` then applies any toggle counts with array arithmetic."""
    lib: PowerLib
    net: Netlist
    load: np.ndarray            # pF per net: input pins driven (+ the port load on outputs)
    slew: np.ndarray            # ns per net (rise, fall averaged)
    ff: list                    # cell indices of flip-flops
    port_load_pf: float
    arcs: dict = None           # group (output pin), related net, rise / fall energy (pJ)
    groups: dict = None         # per output pin: net, class (1 flip-flop, 0 logic), block
    passive: dict = None        # per input pin with a passive table: net, class, rise / fall
    clock_pf: float = 0.0
    clock_pj: float = 0.0       # CLK pin internal energy of one clock (rise + fall), all FFs
    leakage_w: float = 0.0

    @classmethod
    def build(cls, lib, net, port_load_pf=flow.LOAD_PF, input_slew_ns=NOMINAL_SLEW_NS):
        load = np.zeros(net.nets)
        ff = []
        for k, (name, ctype, pins) in enumerate(net.cells):
            cell = lib.cells.get(ctype)
            if cell is None:
                raise PowerError(f"cell {name} is a {ctype}, which is not in {lib.path.name}")
            if cell.sequential:
                ff.append(k)
            for p, n in pins.items():
                pin = cell.pins.get(p)
                if pin is None:
                    raise PowerError(f"cell {name} ({ctype}) has no pin {p} in the library")
                if pin.direction == "input" and not isinstance(n, str):
                    load[n] += pin.cap
        for n in net.outputs:
            load[n] += port_load_pf
        slew = np.full(net.nets, NOMINAL_SLEW_NS)
        lk, driven = _Lookups(), []
        for name, ctype, pins in net.cells:
            cell = lib.cells[ctype]
            for o in cell.outputs:
                n = pins.get(o)
                if n is None or isinstance(n, str) or not cell.pins[o].transition:
                    continue
                driven += [(n, lk.add(t, load[n], NOMINAL_SLEW_NS))
                           for _, r, f in cell.pins[o].transition for t in (r, f) if t is not None]
        if driven:      # each net's slew: the mean of its driver's transition tables
            nets, pos = np.array(driven).T
            vals = lk.values()[pos]
            cnt = np.bincount(nets, minlength=net.nets)
            mean = np.bincount(nets, vals, minlength=net.nets) / np.maximum(cnt, 1)
            slew = np.where(cnt > 0, mean, slew)
        slew[list(net.inputs)] = input_slew_ns
        if net.clock is not None:
            slew[net.clock] = CLOCK_SLEW_NS
        m = cls(lib, net, load, slew, ff, port_load_pf)
        m._tables()
        return m

    def _tables(self):
        lib, net, ej = self.lib, self.net, self.lib.energy_pj
        ff_set = set(self.ff)
        a_grp, a_rel, a_er, a_ef = [], [], [], []
        g_net, g_cls, g_block = [], [], []
        p_net, p_cls, p_er, p_ef, p_block = [], [], [], [], []
        clock_pf = clock_pj = leak = 0.0
        lk = _Lookups()
        for k, (name, ctype, pins) in enumerate(net.cells):
            cell = lib.cells[ctype]
            leak += lib.leak_w(ctype)
            is_ff = k in ff_set
            outs = [pins[o] for o in cell.outputs if not isinstance(pins.get(o, "x"), str)]
            blk = self.block_of(outs[0]) if is_ff and outs else ""
            for p, n in pins.items():
                pin = cell.pins[p]
                if isinstance(n, str):
                    continue
                if pin.direction == "input":
                    if pin.clock:       # ideal clock: one rise and one fall per clock
                        clock_pf += pin.cap
                        for _, r, f in pin.power:
                            clock_pj += ((r.at(slew=CLOCK_SLEW_NS, load=0.0) if r else 0.0)
                                         + (f.at(slew=CLOCK_SLEW_NS, load=0.0) if f else 0.0)) * ej
                        continue
                    for _, r, f in pin.power:
                        p_net.append(n)
                        p_cls.append(is_ff)
                        p_block.append(blk)
                        p_er.append(lk.add(r, 0.0, self.slew[n]))
                        p_ef.append(lk.add(f, 0.0, self.slew[n]))
                    continue
                g = len(g_net)
                g_net.append(n)
                g_cls.append(is_ff)
                g_block.append(blk)
                for rel, r, f in pin.power:
                    rn = pins.get(rel)
                    rn = -1 if rn is None or isinstance(rn, str) else rn
                    s = (CLOCK_SLEW_NS if rn == net.clock else self.slew[rn] if rn >= 0
                         else NOMINAL_SLEW_NS)
                    a_grp.append(g)
                    a_rel.append(rn)
                    a_er.append(lk.add(r, self.load[n], s))
                    a_ef.append(lk.add(f, self.load[n], s))
        i64 = lambda v: np.array(v, dtype=np.int64)     # noqa: E731
        vals = lk.values() * ej
        self.arcs = {"grp": i64(a_grp), "rel": i64(a_rel), "er": vals[i64(a_er)],
                     "ef": vals[i64(a_ef)]}
        self.groups = {"net": i64(g_net), "ff": np.array(g_cls, bool), "block": g_block}
        self.passive = {"net": i64(p_net), "ff": np.array(p_cls, bool), "block": p_block,
                        "er": vals[i64(p_er)], "ef": vals[i64(p_ef)]}
        self.clock_pf, self.clock_pj, self.leakage_w = clock_pf, clock_pj, leak

    def energy(self, rises, falls, clocks, period_ns):
        """Energy in pJ over a window of `clocks` clocks of `period_ns` with `rises[n]` and
        `falls[n]` transitions of net n (the clock net's own are ignored: it is ideal and
        charged per clock). Returns {class: pJ} with `internal` / `switching` splits and the
        flip-flop energy by block."""
        v2 = self.lib.voltage ** 2
        rises = np.asarray(rises, dtype=float).copy()
        falls = np.asarray(falls, dtype=float).copy()
        if self.net.clock is not None:
            rises[self.net.clock] = falls[self.net.clock] = 0.0
        trans = rises + falls
        switching = 0.5 * self.load * v2 * trans          # pJ per net
        a, g, p = self.arcs, self.groups, self.passive
        n_g = len(g["net"])
        # a multi-input cell's arcs weighted by how often each related input toggled
        w_raw = np.where(a["rel"] >= 0, trans[np.maximum(a["rel"], 0)], 0.0)
        w_sum = np.bincount(a["grp"], w_raw, n_g)
        w_cnt = np.bincount(a["grp"], None, n_g)
        w = np.where(w_sum[a["grp"]] > 0, w_raw / np.where(w_sum[a["grp"]] > 0,
                                                           w_sum[a["grp"]], 1.0),
                     1.0 / np.maximum(w_cnt[a["grp"]], 1))
        er = np.bincount(a["grp"], w * a["er"], n_g)
        ef = np.bincount(a["grp"], w * a["ef"], n_g)
        e_int = er * rises[g["net"]] + ef * falls[g["net"]]
        e_sw = switching[g["net"]]
        e_pas = p["er"] * rises[p["net"]] + p["ef"] * falls[p["net"]]
        out = {c: 0.0 for c in CLASSES}
        out["flip-flops"] = float(e_int[g["ff"]].sum() + e_sw[g["ff"]].sum()
                                  + e_pas[p["ff"]].sum())
        out["logic"] = float(e_int[~g["ff"]].sum() + e_sw[~g["ff"]].sum()
                             + e_pas[~p["ff"]].sum())
        out["inputs"] = float(sum(switching[n] for n in self.net.inputs if n != self.net.clock))
        clock_sw = self.clock_pf * v2 * clocks      # charged and discharged once per clock
        out["clock"] = clock_sw + self.clock_pj * clocks
        out["leakage"] = self.leakage_w * clocks * period_ns * 1e-9 * 1e12      # J -> pJ
        split = {"internal": float(e_int.sum() + e_pas.sum()) + self.clock_pj * clocks,
                 "switching": float(e_sw.sum()) + out["inputs"] + clock_sw}
        blocks = {}
        for i in np.flatnonzero(g["ff"]):
            b = g["block"][i]
            blocks[b] = blocks.get(b, 0.0) + float(e_int[i] + e_sw[i])
        for i in np.flatnonzero(p["ff"]):
            b = p["block"][i]
            blocks[b] = blocks.get(b, 0.0) + float(e_pas[i])
        return {"classes": out, "total": sum(out.values()), "split": split,
                "ff_by_block": dict(sorted(blocks.items(), key=lambda kv: -kv[1])),
                "clock_pin_pf": self.clock_pf, "leakage_w": self.leakage_w}

    def idle_per_clock(self, period_ns):
        """Clock-only energy of one clock (nothing but the clock toggles): clock + leakage."""
        e = self.energy(np.zeros(self.net.nets), np.zeros(self.net.nets), 1, period_ns)
        return e["classes"]["clock"] + e["classes"]["leakage"]

    _names = None

    def block_of(self, n):
        if self._names is None:
            self._names = {}
            for name, width, lo, ids, vec in self.net.wires:
                for i in ids:
                    if not re.fullmatch(r"_\d+_", name):
                        self._names.setdefault(i, name)
        name = self._names.get(n)
        if name is None:
            return "?"
        block = re.split(r"[.\[]", name, maxsplit=1)[0]
        return re.sub(r"(\$\d+|\d+)+$", "", block) or block


# ---------------------------------------------------------------------------------------------
# Gate-level simulation: the cell models, a monitor, the samples

def library(out_dir=flow.DEFAULT_OUT):
    """The flow's Liberty file (set up on first use, under the flow's lock) as a PowerLib."""
    tech = Path(out_dir) / "tech"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(out_dir) / ".setup.lock", "w") as lock:
        __import__("fcntl").flock(lock, __import__("fcntl").LOCK_EX)
        path = flow.setup_liberty(tech)
        cell_models(tech)
    return load_power_lib(path)


def cell_models(tech_dir):
    """The library's Verilog cell models (`osu018_stdcells.v` of the Debian package that holds
    the Liberty file), unpacked next to the Liberty file on first use."""
    tech_dir = Path(tech_dir)
    models = tech_dir / MODELS_FILE
    if models.is_file():
        return models
    debs = sorted((tech_dir / "deb").glob(f"{flow.LIB_PACKAGE}_*.deb"))
    if not debs:
        flow.setup_liberty(tech_dir)     # downloads the package
        debs = sorted((tech_dir / "deb").glob(f"{flow.LIB_PACKAGE}_*.deb"))
    if not debs:
        raise PowerError(f"no {flow.LIB_PACKAGE} package under {tech_dir / 'deb'}")
    tree = tech_dir / "deb" / "models"
    proc = subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tree)], capture_output=True,
                          text=True)
    found = sorted(tree.rglob(MODELS_FILE)) if proc.returncode == 0 else []
    if not found:
        raise PowerError(f"no {MODELS_FILE} in {debs[-1].name}: {proc.stderr.strip()}")
    tmp = models.with_suffix(".tmp")
    shutil.copyfile(found[0], tmp)
    tmp.replace(models)
    shutil.rmtree(tree, ignore_errors=True)
    return models


def plain_names(text):
    """The netlist text with every escaped identifier (`\\lane0.acc `) renamed to a plain one
    (`esc_12`): Icarus cannot bind a hierarchical reference into an escaped name with dots.
    Returns (text, {escaped name without the backslash: plain name})."""
    names = {}

    def repl(m):
        name = m.group(1)
        if name not in names:
            names[name] = f"esc_{len(names)}"
        return names[name] + " "
    return re.sub(r"\\(\S+)\s", repl, text), names


def _vname(name, names=None):
    if names and name in names:
        return names[name]
    return f"\\{name} " if not re.fullmatch(r"[A-Za-z_][\w$]*", name) else name


_GATES = {"and": "nand", "or": "nor", "xor": "xnor", "nand": "and", "nor": "or", "xnor": "xor"}


def cell_primitives(models_text):
    """{cell: (ports, [(primitive, [output, inputs...])])} of the library's Verilog models,
    their specify blocks (delays, timing checks: not used without delays) left out. Two
    rewrites keep Icarus's work down without changing any value (4-state logic included): a
    primitive whose output nothing reads is dropped (the flip-flops' unused inverted output),
    and a `buf` or `not` that is the only reader of an internal net is merged into its driver
    (`and` + `not` -> `nand`; `udp_dff` + `buf` -> `udp_dff`)."""
    text = re.sub(r"\bspecify\b.*?\bendspecify\b", "", models_text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    cells = {}
    for m in re.finditer(r"^module\s+(\w+)\s*\((.*?)\)\s*;(.*?)^endmodule", text, re.M | re.S):
        ports = [p.strip() for p in m.group(2).split(",") if p.strip()]
        prims = []
        for st in _statements(m.group(3)):
            st = st.strip()
            if not st or re.match(r"(input|output|inout|reg|wire)\b", st):
                continue
            pm = re.fullmatch(r"(\w+)\s*(?:\w+\s*)?\((.*)\)", st, re.S)
            if pm is None:
                raise PowerError(f"cell model {m.group(1)}: cannot read {st[:60]!r}")
            prims.append([pm.group(1), [a.strip() for a in pm.group(2).split(",")]])
        regs = set(re.findall(r"^\s*reg\s+(\w+)", m.group(3), re.M))
        internal = lambda a: a not in ports and not re.match(r"\d", a)     # noqa: E731
        changed = True
        while changed:
            changed = False
            readers = {}
            for k, (_, args) in enumerate(prims):
                for a in args[1:]:
                    readers.setdefault(a, []).append(k)
            for k, (prim, args) in enumerate(prims):
                out = args[0]
                if internal(out) and out not in readers:
                    del prims[k]
                    changed = True
                    break
                if prim in ("buf", "not") and internal(args[1]) and readers[args[1]] == [k]:
                    src = next(j for j, (_, a) in enumerate(prims) if a[0] == args[1])
                    sp = prims[src][0]
                    if prim == "not" and sp not in _GATES:
                        continue
                    if prim == "not":
                        prims[src][0] = _GATES[sp]
                    prims[src][1][0] = out
                    del prims[k]
                    changed = True
                    break
        prims = [(p, ["pwi_notifier" if a in regs else a for a in args]) for p, args in prims]
        cells[m.group(1)] = (ports, prims)
    prim_defs = re.findall(r"^primitive\b.*?^endprimitive", text, re.M | re.S)
    return cells, prim_defs


INTERNAL = "pwi_"       # prefix of the nets the inlined cell models add (not in the netlist)


def inline_cells(netlist_text, models_text):
    """The flat netlist (plain names, see `plain_names`) with every cell instance replaced by the
    primitives of its Verilog model (`cell_primitives`), the model's internal nets declared as
    `pwi_<instance>_<name>` wires, and the library's UDPs appended: the same simulation as
    with the cell modules, without a scope and port nets per instance (Icarus loads a
    100 k-cell netlist several times faster)."""
    cells, prim_defs = cell_primitives(models_text)
    mods = re.findall(r"^(module\s+\S+\s*\(.*?\);)(.*?)^endmodule", netlist_text, re.M | re.S)
    if len(mods) != 1:
        raise PowerError(f"expected one flat module, found {len(mods)}")
    head, body = mods[0]
    out, decls, k = [head], [], 0
    for st in _statements(body):
        s = re.sub(r"/\*.*?\*/", "", st, flags=re.S).strip()
        m = _CELL.fullmatch(s) if s and not re.match(r"(input|output|inout|wire|reg|assign)\b",
                                                       s) else None
        if m is None:
            if s:
                out.append(f"  {s};")
            continue
        ctype, iname, conns = m.groups()
        if ctype not in cells:
            raise PowerError(f"cell {iname} is a {ctype}, which has no model in the library")
        ports, prims = cells[ctype]
        conn = {p: e for p, e in _CONN.findall(conns + ",") if e}
        unknown = set(conn) - set(ports)
        if unknown:
            raise PowerError(f"cell {iname} ({ctype}) has no port {sorted(unknown)} in its model")
        tag = f"{INTERNAL}{re.sub(r'[^A-Za-z0-9_]', '_', iname)}_"
        local = {}

        def name(a):
            if a in conn:
                return conn[a]
            if re.match(r"\d", a) or a == "pwi_notifier":
                return a
            if a not in local:
                local[a] = tag + re.sub(r"[^A-Za-z0-9_]", "_", a)
                decls.append(local[a])
            return local[a]
        for prim, args in prims:
            k += 1
            out.append(f"  {prim} g{k} ({', '.join(name(a) for a in args)});")
    # the models' timing-check notifier: a reg nothing writes without timing checks
    out.insert(1, "  reg pwi_notifier;\n" + "".join(f"  wire {d};\n" for d in decls))
    return "\n".join(out) + "\nendmodule\n\n" + "\n\n".join(prim_defs) + "\n"


def dump_verilog(tb, out_beats, vcd_file=VCD):
    """A top-level module that dumps the bench's own signals (clock, handshakes) and the nets
    of the netlist's scope (not the cell models' internals) to a VCD, over the window only:
    on from the falling edge before the first input handshake (the dump then holds every
    net's value), off from the falling edge after the `out_beats`-th output handshake."""
    return "\n".join([
        "// Written by synth/power.py: the activity of the netlist's nets, as a VCD.",
        "`timescale 1ns/1ps", "module power_dump;", "  reg on = 1'b0;", "  reg off = 1'b0;",
        "  integer n_out = 0;", "  initial begin",
        f'    $dumpfile("{vcd_file}");', f"    $dumpvars(1, {tb});",
        f"    $dumpvars(1, {tb}.dut);", "    $dumpoff;", "  end",
        f"  always @(negedge {tb}.clk) begin",
        "    if (off) $dumpoff;",
        f"    if (!on && {tb}.i__valid === 1'b1 && {tb}.i__ready === 1'b1) begin",
        "      on = 1'b1;", "      $dumpon;", "    end",
        f"    if ({tb}.o__valid === 1'b1 && {tb}.o__ready === 1'b1) begin",
        "      n_out = n_out + 1;", f"      if (n_out == {out_beats}) off = 1'b1;", "    end",
        "  end", "endmodule", ""])


@dataclasses.dataclass
class Activity:
    """What a VCD of a zero-delay run says: per rising clock edge k (at k x period + period/2)
    the bench's input and output handshakes performed there (`flags`, (K, 2) bool), and the
    rises and falls of every net of the netlist between the edges `start` and `stop`
    (transitions at edges start .. stop - 1; a net's value is the one it settles to in the
    time step of an edge, so a zero-delay glitch inside a time step is not a transition)."""
    flags: np.ndarray
    rises: np.ndarray
    falls: np.ndarray
    start: int
    stop: int

    @property
    def clocks(self):
        return self.stop - self.start


_HANDSHAKE = ("i__valid", "i__ready", "o__valid", "o__ready")


def read_vcd(path, net, tb, names=None, period_ns=TB_PERIOD_NS):
    """The `Activity` of a VCD written by `dump_verilog`: the window runs from the edge that
    accepts the first input beat to the edge that accepts the last output beat. Every bit of
    every wire of `net` must be in the dump (raises PowerError naming the first that is not).
    `names`: `plain_names`' map (escaped name -> plain name in the simulated netlist)."""
    plain = {v: k for k, v in (names or {}).items()}
    wires = {w[0]: w for w in net.wires}
    text = Path(path).read_bytes()
    head, sep, body = text.partition(b"$enddefinitions")
    if not sep:
        raise PowerError(f"{path}: no $enddefinitions: not a VCD (did the run stop early?)")
    scope, codes, hs, covered = [], {}, {}, set()
    for m in re.finditer(rb"\$(scope)\s+\w+\s+(\S+)\s+\$end|\$(upscope)\s+\$end|"
                         rb"\$var\s+\w+\s+(\d+)\s+(\S+)\s+(\S+)(?:\s+\[[^\]]*\])?\s+\$end", head):
        if m.group(1):
            scope.append(m.group(2).decode())
        elif m.group(3):
            scope.pop()
        else:
            width, code, vname = int(m.group(4)), m.group(5), m.group(6).decode()
            where = ".".join(scope)
            if where == tb and vname in _HANDSHAKE:
                hs[vname] = code
            elif where == f"{tb}.dut":
                name = plain.get(vname, vname)
                w = wires.get(name)
                if w is None:
                    if name.startswith(INTERNAL):
                        continue
                    raise PowerError(f"{path}: net {vname} is not in the netlist")
                if w[1] != width:
                    raise PowerError(f"{path}: {vname} is {width} bits wide, not {w[1]}")
                codes.setdefault(code, []).append(list(reversed(w[3])))   # MSB first
                covered.add(name)
    missing = [w[0] for w in net.wires if w[0] not in covered]
    if missing:
        raise PowerError(f"{path}: {len(missing)} wires not dumped, e.g. {missing[0]!r}")
    if set(hs) != set(_HANDSHAKE):
        raise PowerError(f"{path}: the bench's {sorted(set(_HANDSHAKE) - set(hs))} not dumped")
    # running counts per code, snapshots at the window's edges: at the first input handshake
    # and at the latest output handshake. Scalars (nearly every net) in lists indexed by code,
    # the handshakes among them; vectors (ports, named buses) as arrays.
    scalar = [c for c in codes if len(codes[c][0]) == 1]
    for c in hs.values():
        if c not in codes:
            scalar.append(c)
    sidx = {c: k for k, c in enumerate(scalar)}
    vidx = {c: k for k, c in enumerate(c for c in codes if len(codes[c][0]) > 1)}
    vwidth = {k: len(codes[c][0]) for c, k in vidx.items()}
    rise, fall, last = [0] * len(sidx), [0] * len(sidx), [0] * len(sidx)
    vrise = [np.zeros(vwidth[k], np.int64) for k in range(len(vidx))]
    vfall = [np.zeros(vwidth[k], np.int64) for k in range(len(vidx))]
    vlast = [None] * len(vidx)
    iv, ir, ov, orr = (sidx[hs[n]] for n in _HANDSHAKE)
    flags, snap_first, snap_last = [], None, None
    half, unit = period_ns / 2, _vcd_timescale(head)

    def snapshot():
        return (list(rise), list(fall), [v.copy() for v in vrise], [v.copy() for v in vfall])
    it = iter(body.split())
    for tok in it:
        c = tok[0]
        if c == 48 or c == 49:                              # scalar 0 / 1
            k = sidx.get(tok[1:])
            if k is not None:
                p = last[k]
                if p and p != c:
                    if c == 49:
                        rise[k] += 1
                    else:
                        fall[k] += 1
                last[k] = c
        elif c == 35:                                       # '#': a new time step
            t = int(tok[1:]) * unit
            edge = (t - half) / period_ns
            if t < half or abs(edge - round(edge)) > 1e-9:
                continue
            k = int(round(edge))                            # a rising edge: its handshakes
            while len(flags) < k:
                flags.append((False, False))
            f = (last[iv] == 49 and last[ir] == 49, last[ov] == 49 and last[orr] == 49)
            flags.append(f)
            if f[0] and snap_first is None:
                snap_first = (k, snapshot())
            if f[1]:
                snap_last = (k, snapshot())
        elif c in (120, 122, 88, 90):                       # scalar x / z: no value
            k = sidx.get(tok[1:])
            if k is not None:
                last[k] = 0
        elif c == 98 or c == 66:                            # 'b': vector change, then its code
            k = vidx.get(next(it))
            if k is not None:
                val = _vcd_vector(tok[1:], vwidth[k])
                prev = vlast[k]
                if prev is not None:
                    vrise[k] += (prev == 48) & (val == 49)
                    vfall[k] += (prev == 49) & (val == 48)
                vlast[k] = val
        elif c == 114 or c == 82:                           # 'r': a real, then its code
            next(it)
    if snap_first is None or snap_last is None:
        raise PowerError(f"{path}: no input or no output handshake in the dump")
    (start, a), (stop, b) = snap_first, snap_last
    rises, falls = np.zeros(net.nets), np.zeros(net.nets)
    for code, k in sidx.items():
        for bits in codes.get(code, ()):
            rises[bits[0]] = b[0][k] - a[0][k]
            falls[bits[0]] = b[1][k] - a[1][k]
    for code, k in vidx.items():
        for bits in codes[code]:
            rises[bits] = b[2][k] - a[2][k]
            falls[bits] = b[3][k] - a[3][k]
    return Activity(np.array(flags, dtype=bool).reshape(-1, 2), rises, falls, start, stop)


def _vcd_timescale(head):
    m = re.search(rb"\$timescale\s+(\d+)\s*([munpf]?s)\s+\$end", head)
    if not m:
        raise PowerError("VCD: no $timescale")
    return int(m.group(1)) * {b"s": 1e9, b"ms": 1e6, b"us": 1e3, b"ns": 1.0, b"ps": 1e-3,
                              b"fs": 1e-6}[m.group(2)]


def _vcd_vector(digits, width):
    """A VCD vector value as a uint8 array of '0', '1', 'x', 'z' (MSB first), left-extended
    as the format says (with 0 after a 1, else with the leading character)."""
    if len(digits) < width:
        pad = b"0" if digits[:1] == b"1" else digits[:1]
        digits = pad * (width - len(digits)) + digits
    return np.frombuffer(digits.lower(), dtype=np.uint8)


EVENTS = "events.txt"


def event_monitor_verilog(net, tb, names=None, event_file=EVENTS):
    """For a run with cell delays: a module that counts every rise and fall of every net (glitches
    included) and writes, at every falling clock edge, the handshake flags and the running
    counts (`rise fall` per bit); returns (text, nets) with nets[k] the net of counter k. One
    `always` block per wire: meant for the tiny presets."""
    seen, order, blocks = set(), [], []
    for name, width, lo, ids, vec in net.wires:
        if not any(i not in seen for i in ids):
            continue
        base, j = len(order), len(blocks)
        ref = f"{tb}.dut.{_vname(name, names)}"
        blocks += [f"  reg [{width - 1}:0] p{j};",
                   f"  always @({ref}) begin : e{j}",
                   "    integer b;",
                   f"    for (b = 0; b < {width}; b = b + 1) begin",
                   f"      if (p{j}[b] === 1'b0 && {ref}[{lo} + b] === 1'b1) "
                   f"rc[{base} + b] = rc[{base} + b] + 1;" if vec else
                   f"      if (p{j}[b] === 1'b0 && {ref} === 1'b1) rc[{base}] = rc[{base}] + 1;",
                   f"      else if (p{j}[b] === 1'b1 && {ref}[{lo} + b] === 1'b0) "
                   f"fc[{base} + b] = fc[{base} + b] + 1;" if vec else
                   f"      else if (p{j}[b] === 1'b1 && {ref} === 1'b0) fc[{base}] = fc[{base}] + 1;",
                   "    end",
                   f"    p{j} = {ref};",
                   "  end"]
        order += list(ids)
        seen.update(ids)
    k = len(order)
    lines = [f"// Written by synth/power.py: counts every transition of every net of {net.top}.",
             "`timescale 1ns/1ps", "module power_monitor;", "  integer fd, k;",
             f"  integer rc [0:{k - 1}];", f"  integer fc [0:{k - 1}];",
             f'  initial begin fd = $fopen("{event_file}", "w"); '
             f"for (k = 0; k < {k}; k = k + 1) begin rc[k] = 0; fc[k] = 0; end end",
             *blocks,
             f"  always @(negedge {tb}.clk) begin",
             f'    $fwrite(fd, "%b%b", {tb}.i__valid & {tb}.i__ready, '
             f"{tb}.o__valid & {tb}.o__ready);",
             f'    for (k = 0; k < {k}; k = k + 1) $fwrite(fd, " %0d %0d", rc[k], fc[k]);',
             '    $fwrite(fd, "\\n");', "  end", "endmodule", ""]
    return "\n".join(lines), np.array(order, dtype=np.int64)


def read_events(path, n):
    """(flags (T, 2) bool, rises (T, n), falls (T, n)) running counts of an event monitor."""
    flags, rises, falls = [], [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) != 2 * n + 1 or len(parts[0]) != 2:
            raise PowerError(f"{path}: a line of {len(parts)} fields, not {2 * n + 1}")
        flags.append([c == "1" for c in parts[0]])
        v = np.array(parts[1:], dtype=np.int64).reshape(n, 2)
        rises.append(v[:, 0])
        falls.append(v[:, 1])
    if not flags:
        raise PowerError(f"{path}: no lines")
    return np.array(flags), np.array(rises), np.array(falls)


def window(flags):
    """(first, last) sample: the first with an input handshake, the last with an output
    handshake; the window's clocks are last - first."""
    ins, outs = np.flatnonzero(flags[:, 0]), np.flatnonzero(flags[:, 1])
    if not len(ins) or not len(outs):
        raise PowerError("no input or no output handshake in the samples")
    return int(ins[0]), int(outs[-1])


# ---------------------------------------------------------------------------------------------
# One unit x preset

def write_bench(unit, cfg, folder, vec, seed, what, exported=None):
    """The replay folder of `vec` (a verif.vectors.Vectors) for (unit, cfg): the hex files, the
    bench (verif/vectors_tb/tb.v.in, rendered by verif.vectors) and vectors.json; returns the
    manifest (with the folder under "dir"). `exported`: the (Verilog, JSON) paths of
    `hdl.export.write` for this unit x preset (written into `folder` when not given)."""
    from hdl.export import write
    from verif import vectors as vv
    folder = Path(folder)
    v_path, j_path = exported or write(unit, cfg, folder)
    meta = json.loads(j_path.read_text())
    ports = meta["ports"]
    vv._check_ports(meta, vec, v_path.read_text())
    vv._write_hex(folder / "in.hex", vec.inputs, ports["i__payload"]["width"], "i__payload")
    for name, values in vec.regs.items():
        vv._write_hex(folder / f"{name}.hex", values, ports[name]["width"], name)
    for name, values in vec.pulses.items():
        vv._write_hex(folder / f"{name}.hex", values, 1, name)
    if vec.writes:
        vv._write_hex(folder / "wr_addr.hex", [a for a, _ in vec.writes],
                      ports["wr__addr"]["width"], "wr__addr")
        vv._write_hex(folder / "wr_data.hex", [d for _, d in vec.writes],
                      ports["wr__data"]["width"], "wr__data")
    vv._write_hex(folder / "out.hex", vec.outputs, ports["o__payload"]["width"], "o__payload")
    tb_file = f"tb_{unit}_{cfg.tag}.v"
    (folder / tb_file).write_text(vv.render_tb(meta, vec, tb_file))
    manifest = {"unit": unit, "tag": cfg.tag, "module": meta["module"], "seed": seed,
                "in_beats": len(vec.inputs), "out_beats": len(vec.outputs),
                "param_writes": len(vec.writes), "latency": meta["latency"],
                "golden": vec.golden, "summary": vec.summary, "workload": what,
                "item_clocks": vec.item_clocks, "testbench": tb_file,
                "verilog": meta["verilog"]}
    (folder / "vectors.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return dict(manifest, dir=str(folder))


def prepare(unit, cfg, out_dir=DEFAULT_OUT, count=None, seed=1):
    """The benches of one unit x preset (in this thread: Amaranth writes the Verilog): a list
    of (label, items, manifest), one per workload point (ESSOP: one per BL)."""
    from hdl.export import write
    from verif import vectors as vv
    from synth import power_workload as pw
    base = Path(out_dir) / f"{unit}_{cfg.tag}"
    base.mkdir(parents=True, exist_ok=True)
    exported = write(unit, cfg, base)
    ports = json.loads(exported[1].read_text())["ports"]
    out = []
    for label, items, vec, what in pw.workloads(unit, cfg, ports, count, seed):
        folder = base if label is None else base / label
        folder.mkdir(parents=True, exist_ok=True)
        out.append((label, items, write_bench(unit, cfg, folder, vec, seed, what, exported)))
    return out


@dataclasses.dataclass
class GateSim:
    """A compiled gate-level bench (`psim` in `folder`): the netlist parsed, the plain names of
    its escaped ones, the bench's top, the event monitor's order (the run with delays)."""
    folder: Path
    net: Netlist
    names: dict
    tb: str
    order: np.ndarray | None
    compile_s: float


def compile_gate(folder, manifest, netlist, models, delays=False, net=None):
    """Compile the bench of `folder` with the mapped netlist. Zero-delay: the cell models
    inlined (`inline_cells`) and a VCD of the netlist's nets (`dump_verilog`); with delays:
    the cell modules with their specify blocks (`-gspecify`) and the event monitor."""
    folder = Path(folder)
    net = net or parse_netlist(netlist)
    if net.top != manifest["module"]:
        raise PowerError(f"{netlist}: module {net.top}, the bench expects {manifest['module']}")
    tb = f"tb_{manifest['module']}"
    plain, names = plain_names(Path(netlist).read_text())
    order = None
    if delays:
        text, order = event_monitor_verilog(net, tb, names)
        shutil.copyfile(models, folder / MODELS_FILE)
        sources = ["netlist.v", MODELS_FILE, "power_monitor.v"]
    else:
        text = dump_verilog(tb, manifest["out_beats"])
        plain = inline_cells(plain, Path(models).read_text())
        sources = ["netlist.v", "power_monitor.v"]
    (folder / "power_monitor.v").write_text(text)
    (folder / "netlist.v").write_text(plain)
    t0 = time.monotonic()
    top = "power_monitor" if delays else "power_dump"
    cmd = ["iverilog", "-g2012", "-o", "psim", "-s", tb, "-s", top,
           *(["-gspecify", "-DPOWER_DELAYS"] if delays else []), manifest["testbench"], *sources]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    if proc.returncode:
        raise PowerError(f"{folder}: iverilog failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    (folder / "netlist.v").unlink()         # large; psim holds it
    return GateSim(folder, net, names, tb, order, time.monotonic() - t0)


def run_gate(sim, folder, timeout=900):
    """Run the compiled bench `sim` on the vectors of `folder` back to back (`+nostall`);
    returns (the bench's last line, seconds). Raises PowerError unless it is `PASS n beats`."""
    folder = Path(folder)
    t0 = time.monotonic()
    proc = subprocess.run(["vvp", "-n", str(Path(sim.folder).resolve() / "psim"), "+nostall"],
                          cwd=folder, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    (folder / "gate_sim.log").write_text(proc.stdout + proc.stderr)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode or not last.startswith("PASS"):
        raise PowerError(f"{folder}: the gate-level netlist differs from the golden model: "
                         f"{last} (log {folder / 'gate_sim.log'})")
    return last, seconds


def simulate(folder, manifest, netlist, models, delays=False):
    """compile_gate + run_gate in one folder; returns (last line, seconds, order, Netlist)."""
    sim = compile_gate(folder, manifest, netlist, models, delays)
    last, seconds = run_gate(sim, folder)
    return last, seconds + sim.compile_s, sim.order, sim.net


def glitch(folder, manifest, netlist, models, lib, period):
    """The same window with the cell models' specify delays (`iverilog -gspecify`): every
    transition counted (glitches included) against the transitions between clock samples (what
    a zero-delay run sees). Returns the energies and the share the zero-delay count misses."""
    folder = Path(folder)
    last, sim_s, order, net = simulate(folder, manifest, netlist, models, delays=True)
    flags, r_all, f_all = read_events(folder / EVENTS, len(order))
    first, last_s = window(flags)
    rises, falls = np.zeros(net.nets), np.zeros(net.nets)
    rises[order] = r_all[last_s] - r_all[first]
    falls[order] = f_all[last_s] - f_all[first]
    # the functional transitions: a net's value at each falling edge, from the same counts
    # (value changes between samples = odd number of transitions, direction from the parity)
    d = (r_all[first + 1:last_s + 1] - r_all[first:last_s]) - \
        (f_all[first + 1:last_s + 1] - f_all[first:last_s])
    fr, ff = np.zeros(net.nets), np.zeros(net.nets)
    fr[order] = (d > 0).sum(axis=0)
    ff[order] = (d < 0).sum(axis=0)
    model = Model.build(lib, net)
    clocks = last_s - first
    e_all = model.energy(rises, falls, clocks, period)
    e_fun = model.energy(fr, ff, clocks, period)
    dyn = lambda e: e["total"] - e["classes"]["clock"] - e["classes"]["leakage"]   # noqa: E731
    (folder / EVENTS).unlink(missing_ok=True)
    return {"result": last, "sim_s": round(sim_s, 2), "window_clocks": clocks,
            "transitions_all": int((rises + falls).sum()),
            "transitions_functional": int((fr + ff).sum()),
            "energy_all_pj": e_all["total"], "energy_functional_pj": e_fun["total"],
            "glitch_share_total": 1 - e_fun["total"] / e_all["total"],
            "glitch_share_data": 1 - dyn(e_fun) / dyn(e_all) if dyn(e_all) > 0 else 0.0}


def _period_ns(run_dir):
    res = Path(run_dir) / "result.json"
    if res.is_file():
        r = json.loads(res.read_text())
        if r.get("min_period_ns"):
            return float(r["min_period_ns"]), "f_max of the synthesis run"
    return flow.DEFAULT_PERIOD_NS, "the flow's target period"


def _point(sim, manifest, items, model, period):
    """One window: gate-level run of the compiled bench `sim` on the vectors of the point's
    folder, activity from its VCD, energy; returns the figures of the point."""
    folder = Path(manifest["dir"])
    last, sim_s = run_gate(sim, folder)
    t0 = time.monotonic()
    act = read_vcd(folder / VCD, sim.net, sim.tb, sim.names)
    vcd_s = time.monotonic() - t0
    vcd_mb = (folder / VCD).stat().st_size / 1e6
    (folder / VCD).unlink()             # large; the counts are summed below
    net, clocks = sim.net, act.clocks
    e = model.energy(act.rises, act.falls, clocks, period)
    idle = model.idle_per_clock(period)
    item_clocks = manifest["item_clocks"]
    extra = max(0, clocks - items * item_clocks)
    per_item = (e["total"] - extra * idle) / items
    return {"items": items, "clocks_per_item": item_clocks, "window_clocks": clocks,
            "fill_drain_clocks": extra, "summary": manifest["summary"],
            "energy_pj": e["total"], "pj_per_item": per_item,
            "items_per_uj": 1e6 / per_item if per_item > 0 else None,
            "pj_per_clock": e["total"] / clocks, "idle_pj_per_clock": idle,
            "classes_pj": e["classes"], "split_pj": e["split"], "ff_by_block_pj": e["ff_by_block"],
            "shares": {k: v / e["total"] for k, v in e["classes"].items()},
            "gate_level": {"result": last, "beats_checked": manifest["out_beats"],
                           "sim_s": round(sim_s, 2)},
            "vcd": {"mb": round(vcd_mb, 1), "read_s": round(vcd_s, 2)},
            "nets": net.nets, "cells": len(net.cells),
            "toggles": int((act.rises + act.falls).sum())}


def _bench_key(manifest):
    """The bench text of a point without what differs between windows of the same length
    (the summary line, the timeout and tail clocks): points with equal keys share a build."""
    text = (Path(manifest["dir"]) / manifest["testbench"]).read_text()
    return re.sub(r"^//.*$|^\s*localparam (TIMEOUT|TAIL|FILL)\b.*$", "", text, flags=re.M)


def measure(unit, cfg, lib, synth_dir=flow.DEFAULT_OUT, out_dir=DEFAULT_OUT, count=None,
            seed=1, prepared=None, glitches=None):
    """Energy of one unit x preset from its mapped netlist over its workload (ESSOP: at every
    BL); writes and returns the row (build/power/<unit>_<tag>/power.json)."""
    t0 = time.monotonic()
    run_dir = Path(synth_dir) / f"{unit}_{cfg.tag}"
    netlist = run_dir / "netlist.v"
    if not netlist.is_file():
        raise PowerError(f"no mapped netlist {netlist}: run `python -m synth.flow --unit {unit} "
                         f"--preset {cfg.tag}` first")
    from synth import power_workload as pw
    count = count or POWER_COUNT[unit]
    points = prepared or prepare(unit, cfg, out_dir, count, seed)
    models = cell_models(Path(synth_dir) / "tech")
    period, period_src = _period_ns(run_dir)
    row = {"unit": unit, "preset": cfg.tag, "item": ITEM[unit], "seed": seed,
           "period_ns": period, "period_from": period_src}
    # one build per bench (ESSOP: one for all BLs, the largest BL's bench: the longest
    # timeout and tail), run on each point's vectors
    t1 = time.monotonic()
    net = parse_netlist(netlist)
    parse_s = time.monotonic() - t1
    t1 = time.monotonic()
    model = Model.build(lib, net)
    model_s = time.monotonic() - t1
    results, sims = [], {}
    for label, items, manifest in sorted(points, key=lambda p: -p[2]["item_clocks"]):
        key = _bench_key(manifest)
        if key not in sims:
            sims[key] = compile_gate(manifest["dir"], manifest, netlist, models, net=net)
        p = _point(sims[key], manifest, items, model, period)
        p["label"] = label
        results.append(p)
    results.sort(key=lambda p: [pt[0] for pt in points].index(p["label"]))
    row["timing_s"] = {"parse": round(parse_s, 1), "model": round(model_s, 1),
                       "compile": round(sum(s.compile_s for s in sims.values()), 1),
                       "runs": round(sum(p["gate_level"]["sim_s"] for p in results), 1),
                       "vcd": round(sum(p["vcd"]["read_s"] for p in results), 1)}
    if unit == "essop":
        for p in results:
            p["bl"] = int(p["label"][2:])
        row["per_bl"] = results
        main = max(results, key=lambda p: p["bl"])      # the headline: the largest BL
    else:
        main = results[0]
    row.update({k: v for k, v in main.items() if k != "label"})
    row["workload"] = points[0][2]["workload"]
    row["workload_name"] = pw.workload_name(unit, cfg)
    row["model"] = {"voltage_v": lib.voltage, "wire_load": "none (pin capacitances only, as the "
                    "timing flow)", "port_load_pf": flow.LOAD_PF,
                    "nominal_slew_ns": NOMINAL_SLEW_NS, "clock_slew_ns": CLOCK_SLEW_NS}
    row["gate_level_beats"] = sum(p["gate_level"]["beats_checked"] for p in results)
    if glitches if glitches is not None else (cfg.tag in GLITCH_PRESETS
                                               and main["cells"] <= GLITCH_MAX_CELLS):
        label, items, manifest = next(pt for pt in points if pt[0] == main["label"])
        row["glitch"] = glitch(manifest["dir"], manifest, netlist, models, lib, period)
    row["wall_s"] = round(time.monotonic() - t0, 2)
    folder = Path(out_dir) / f"{unit}_{cfg.tag}"
    (folder / "power.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


GLITCH_PRESETS = ("tiny",)      # the run with cell delays: the tiny presets (one always per wire)
GLITCH_MAX_CELLS = 10_000       # ... under this size: the LDPU's tiny (21 k cells) took 7 min
ITEM = {"nmpu": "vector", "ldpu": "vector", "essop": "product", "fp16outer": "product"}
# items per window: enough back-to-back items that the pipeline fill is a small part
POWER_COUNT = {"nmpu": 16, "ldpu": 2, "essop": 4, "fp16outer": 8}


# ---------------------------------------------------------------------------------------------
# All units x presets

def _cost(synth_dir, unit, cfg, out_dir=DEFAULT_OUT):
    """Estimated cost of a run, to start the longest first: the seconds of its last run
    (`wall_s` of build/power/<unit>_<tag>/power.json), else its netlist's size (MB) times
    its windows' clocks per item (ESSOP: every BL measured, 2^BL clocks each)."""
    last = Path(out_dir) / f"{unit}_{cfg.tag}" / "power.json"
    try:
        return float(json.loads(last.read_text())["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from synth import power_workload as pw
    netlist = Path(synth_dir) / f"{unit}_{cfg.tag}" / "netlist.v"
    size = netlist.stat().st_size / 1e6 if netlist.is_file() else 0.0
    clocks = sum(1 << b for b in pw._bls(unit, cfg)) if unit == "essop" else 1
    return size * clocks


def _cpu_s(children=True):
    """CPU seconds of this process and (with `children`) its finished children (the
    simulators)."""
    import resource
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) if children else (resource.RUSAGE_SELF,)
    return sum(getattr(resource.getrusage(w), f) for w in who for f in ("ru_utime", "ru_stime"))


def measure_task(unit, cfg, lib, synth_dir, out_dir, count, prepared):
    """measure() on an engine worker (one task at a time per worker process); a run that
    fails returns a row with `error`. `cpu_s`: the run's CPU seconds, simulators included."""
    c0 = _cpu_s()
    try:
        row = measure(unit, cfg, lib, synth_dir, out_dir, count, prepared=prepared)
    except (PowerError, subprocess.TimeoutExpired) as exc:
        row = _error_row(unit, cfg, str(exc))
    row["cpu_s"] = round(_cpu_s() - c0, 1)
    return row


def _error_row(unit, cfg, message):
    return {"unit": unit, "preset": cfg.tag, "error": message}


def _benches(items, out_dir, count):
    """(unit, cfg, prepared benches) per item, written here in order; a bench that cannot be
    written comes as its error row in place of the benches."""
    for unit, cfg in items:
        try:
            yield unit, cfg, prepare(unit, cfg, out_dir, count or POWER_COUNT[unit])
        except PowerError as exc:
            yield unit, cfg, _error_row(unit, cfg, str(exc))


def run_all(items, lib, synth_dir=flow.DEFAULT_OUT, out_dir=DEFAULT_OUT, jobs=1, count=None,
            engine=None):
    """measure() on [(unit, cfg)] on the engine (engine/executor.py: a local cluster of `jobs`
    worker processes unless `engine` is given; one run, or `jobs` 1, runs here); yields rows
    as they finish, a failed one as a row with `error`.

    The benches are written on the driver (Amaranth's converter is not meant for threads),
    the most expensive run's first, and each run is submitted as soon as its bench is
    written: the workers simulate while the driver writes the next benches. The runs read
    and write `synth_dir` and `out_dir`, so a remote scheduler's workers must share this
    file system."""
    synth_dir, out_dir = Path(synth_dir).resolve(), Path(out_dir).resolve()
    items = sorted(items, key=lambda i: -_cost(synth_dir, *i, out_dir))
    if not items:
        return
    if engine is None and (jobs <= 1 or len(items) == 1):
        for unit, cfg, prep in _benches(items, out_dir, count):
            yield prep if isinstance(prep, dict) else measure_task(
                unit, cfg, lib, synth_dir, out_dir, count, prep)
        return
    from dask.distributed import as_completed
    from engine.executor import Engine
    eng = engine or Engine(workers=max(1, min(jobs, len(items))), progress=False)

    def row_of(fut):
        unit, cfg = pending.pop(fut)
        value, error, _ = fut.result()
        return value if error is None else _error_row(unit, cfg, error.strip())
    try:
        pending, finished = {}, as_completed(loop=eng.client.loop)
        for k, (unit, cfg, prep) in enumerate(_benches(items, out_dir, count)):
            if isinstance(prep, dict):        # its error row
                yield prep
                continue
            fut = eng.submit(measure_task, unit, cfg, lib, synth_dir, out_dir, count, prep,
                             priority=len(items) - k)
            pending[fut] = (unit, cfg)
            finished.add(fut)
            for done in [f for f in pending if f.done()]:
                yield row_of(done)
        for fut in finished:
            if fut in pending:
                yield row_of(fut)
    finally:
        if engine is None:
            eng.close()


def _fmt(x, spec):
    return "—" if x is None else format(x, spec)


def collect(rows, report_dir=flow.REPORT_DIR):
    """Merge rows into build/report/power.json (keyed by unit and preset) and write power.md."""
    report_dir = Path(report_dir)
    all_rows = flow.merge_rows(rows, report_dir / "power.json")
    lines = ["# Energy from gate-level switching activity (OSU 0.18 µm, 1.8 V)", "",
             "Zero-delay Icarus run of the mapped netlist with the library's cell models over a "
             "window of back-to-back items; toggles per net; internal + switching energy from "
             "the Liberty tables, leakage at f_max, the ideal clock's pin load and CLK internal "
             "energy added. No wire load (pin capacitances only, as the timing flow). "
             "Generated by `make power`.", "",
             "| unit | preset | item | workload | items | window clocks | pJ / item | "
             "items / µJ | pJ / clock | idle pJ / clock | clock | flip-flops | logic | inputs | "
             "leakage | glitch share | gate-level check |",
             "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in all_rows:
        if "error" in r:
            lines.append(f"| {r['unit']} | {r['preset']} | failed: "
                         f"{r['error'].splitlines()[0][:100]} |" + " |" * 14)
            continue
        s = r["shares"]
        lines.append(
            f"| {r['unit']} | {r['preset']} | {r['item']} | {r['workload_name']} | {r['items']} "
            f"| {r['window_clocks']} | {r['pj_per_item']:,.1f} | {_fmt(r['items_per_uj'], ',.0f')}"
            f" | {r['pj_per_clock']:,.2f} | {r['idle_pj_per_clock']:,.2f} | {s['clock']:.0%} | "
            f"{s['flip-flops']:.0%} | {s['logic']:.0%} | {s['inputs']:.0%} | "
            f"{s['leakage']:.2%} | "
            f"{_fmt((r.get('glitch') or {}).get('glitch_share_data'), '.0%')} | "
            f"PASS {r['gate_level_beats']} beats |")
    lines += ["", "Glitch share: the part of the data (non-clock, non-leakage) energy that a "
                  "zero-delay run misses, from the same window with the cell models' delays "
                  "(`tiny` presets under 10 k cells). Gate-level check: output beats equal to the "
                  "golden model's, over every window of the row (ESSOP: every BL).", "",
              "Workloads:"]
    lines += [f"- {r['unit']} {r['preset']}: {r['workload']}" for r in all_rows
              if "error" not in r]
    (report_dir / "power.md").write_text("\n".join(lines) + "\n")
    return all_rows


# ---------------------------------------------------------------------------------------------
# The PPA report's energy part (synth/report.py calls these)

PAPER_ESSOP_ENERGY = 1.822      # ESSOP paper: 82.2 % better energy efficiency (products / J)


def _energy_of(r):
    keys = ("pj_per_item", "items_per_uj", "pj_per_clock", "idle_pj_per_clock", "shares",
            "items", "window_clocks", "clocks_per_item", "workload", "workload_name",
            "period_ns", "gate_level_beats")
    e = {k: r.get(k) for k in keys}
    if "per_bl" in r:
        e["per_bl"] = [{k: p[k] for k in ("bl", "pj_per_item", "items_per_uj", "pj_per_clock",
                                          "window_clocks", "items")} for p in r["per_bl"]]
    return e


def attach(rows, rat, build, ref_bl=None):
    """Put the energy of build/report/power.json into the PPA rows (`energy`) and the ratios
    (`energy_nmpu_vs_ldpu`: LDPU pJ / NMPU pJ per vector; `energy_essop_vs_fp16`: products per
    J of ESSOP / of the FP16 array, at every BL, the training BL marked)."""
    from synth import power_workload as pw
    ref_bl = ref_bl or pw.TRAINING_BL       # without a training report: docs/ppa.md's BL 8
    path = Path(build) / "report" / "power.json"
    power = {(r["unit"], r["preset"]): r for r in
             (json.loads(path.read_text()) if path.is_file() else []) if "error" not in r}
    for row in rows:
        p = power.get((row["unit"], row["preset"]))
        if p and "error" not in row:
            row["energy"] = _energy_of(p)
    rat["energy_nmpu_vs_ldpu"], rat["energy_essop_vs_fp16"] = [], []
    ldpu = power.get(("ldpu", "paper"))
    fp16 = power.get(("fp16outer", "paper"))
    for (unit, preset), p in power.items():
        cfg = next((r.get("config") or {} for r in rows
                    if r["unit"] == unit and r["preset"] == preset), {})
        if unit == "nmpu" and ldpu:
            ldpu_cols = next((r.get("config") or {} for r in rows if r["unit"] == "ldpu"
                              and r["preset"] == "paper"), {}).get("columns")
            if cfg.get("columns") == ldpu_cols:
                rat["energy_nmpu_vs_ldpu"].append({
                    "nmpu": preset, "ldpu": "paper", "nmpu_pj_per_vector": p["pj_per_item"],
                    "ldpu_pj_per_vector": ldpu["pj_per_item"],
                    "energy_ratio": ldpu["pj_per_item"] / p["pj_per_item"]})
        if unit == "essop" and fp16:
            fcfg = next((r.get("config") or {} for r in rows if r["unit"] == "fp16outer"
                         and r["preset"] == "paper"), {})
            if any(cfg.get(k) != fcfg.get(k) for k in ("rows", "cols")):
                continue
            for b in p["per_bl"]:
                rat["energy_essop_vs_fp16"].append({
                    "essop": preset, "fp16": "paper", "bl": b["bl"],
                    "reference": b["bl"] == ref_bl, "essop_pj_per_product": b["pj_per_item"],
                    "fp16_pj_per_product": fp16["pj_per_item"],
                    "energy_efficiency_ratio": fp16["pj_per_item"] / b["pj_per_item"]})
    rat["energy_essop_vs_fp16"].sort(key=lambda e: (e["essop"], e["bl"]))
    return rows, rat


def markdown(rows, rat, ref_bl=None):
    """The energy section of ppa.md."""
    have = [r for r in rows if r.get("energy")]
    lines = ["", "## Energy per item (gate-level switching activity, `make power`)", ""]
    if not have:
        return "\n".join(lines + ["No energy measured yet: run `make power` after `make synth`.",
                                   ""])
    lines += ["Zero-delay gate-level run of each mapped netlist (Icarus, the library's cell "
              "models) over a window of back-to-back items, outputs checked against the golden "
              "model; toggles per net; Liberty internal + switching energy (no wire load), "
              "leakage at f_max, the ideal clock's pin load and CLK energy. Items: 256-value "
              "vector (NMPU, LDPU), outer product (ESSOP at its largest BL here, every BL below; "
              "FP16 array). Workloads: NMPU / LDPU on the MNIST MLP's fc1 (the accuracy study's "
              "tile model and compiler; tiny presets: golden random), ESSOP / FP16 array on a "
              "training step's x / δ. Details and the full workload of each row: "
              "build/report/power.md.", "",
              "| unit | preset | pJ / item | items / µJ | idle pJ / clock | clock | flip-flops "
              "| logic | inputs | leakage | workload (items, window clocks) |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in have:
        e = r["energy"]
        s = e["shares"]
        lines.append(f"| {r['unit']} | {r['preset']} | {e['pj_per_item']:,.1f} | "
                     f"{_fmt(e['items_per_uj'], ',.0f')} | {e['idle_pj_per_clock']:.2f} | "
                     f"{s['clock']:.0%} | {s['flip-flops']:.0%} | {s['logic']:.0%} | "
                     f"{s['inputs']:.0%} | {s['leakage']:.2%} | "
                     f"{e.get('workload_name') or e['workload'][:90]} "
                     f"({e['items']}, {e['window_clocks']}) |")
    if rat.get("energy_nmpu_vs_ldpu"):
        lines += ["", "NMPU against the LDPU, energy per 256-value vector (the NMPU paper: "
                      "\"competitive\" power):", "",
                  "| NMPU | LDPU | NMPU pJ / vector | LDPU pJ / vector | LDPU / NMPU |",
                  "|---|---|--:|--:|--:|"]
        for e in rat["energy_nmpu_vs_ldpu"]:
            lines.append(f"| {e['nmpu']} | {e['ldpu']} | {e['nmpu_pj_per_vector']:,.0f} | "
                         f"{e['ldpu_pj_per_vector']:,.0f} | {e['energy_ratio']:.2f}x |")
    if rat.get("energy_essop_vs_fp16"):
        from synth import power_workload as pw
        src = (f"{ref_bl} (training report)" if ref_bl else
               f"{pw.TRAINING_BL} (docs/ppa.md: the smallest BL within 0.5 points of exact outer "
               f"products; no build/report/training.json)")
        lines += ["", f"ESSOP against the FP16 array, products per joule (the ESSOP paper: "
                      f"{PAPER_ESSOP_ENERGY:.2f}x); training BL {src}:", "",
                  "| ESSOP | BL | ESSOP pJ / product | FP16 pJ / product | energy-efficiency "
                  "ratio |", "|---|--:|--:|--:|--:|"]
        for e in rat["energy_essop_vs_fp16"]:
            mark = " **← training BL**" if e["reference"] else ""
            lines.append(f"| {e['essop']} | {e['bl']}{mark} | {e['essop_pj_per_product']:,.0f} "
                         f"| {e['fp16_pj_per_product']:,.0f} | "
                         f"{e['energy_efficiency_ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot_panel(ax, rows, rat, ref_bl=None):
    """ppa.png's energy panel: ESSOP / FP16 products per joule against BL, and the NMPU / LDPU
    energy ratio per vector as labelled points."""
    for preset in sorted({e["essop"] for e in rat.get("energy_essop_vs_fp16", [])}):
        es = [e for e in rat["energy_essop_vs_fp16"] if e["essop"] == preset]
        ax.semilogx([e["bl"] for e in es], [e["energy_efficiency_ratio"] for e in es], "o-",
                    base=2, label=f"ESSOP {preset} / FP16 (products/J)")
    ax.axhline(PAPER_ESSOP_ENERGY, color="0.5", ls=":", label="ESSOP paper (1.82x)")
    ax.axhline(1.0, color="k", lw=0.8)
    if ref_bl:
        ax.axvline(ref_bl, color="tab:purple", ls="--", label=f"training BL {ref_bl}")
    for e in rat.get("energy_nmpu_vs_ldpu", []):
        ax.axhline(e["energy_ratio"], color="tab:green", ls="-.", lw=0.8)
        ax.annotate(f"LDPU/NMPU {e['nmpu']} {e['energy_ratio']:.1f}x", (1, e["energy_ratio"]),
                    fontsize=7, color="tab:green")
    ax.set_xlabel("BL")
    ax.set_ylabel("energy-efficiency ratio")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("energy (gate-level activity)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unit", action="append", help="unit (default: all); repeatable")
    ap.add_argument("--preset", action="append", help="preset name (default: all); repeatable")
    ap.add_argument("--jobs", "-j", type=int, default=1,
                    help="engine worker processes (default 1: runs here, one at a time)")
    ap.add_argument("--scheduler", help="tcp://host:port of a dask scheduler whose workers run "
                                        "the runs; they must share this file system (default: "
                                        "AIMC_SCHEDULER, else --jobs local worker processes)")
    ap.add_argument("--count", type=int, help="items per window (default: per unit)")
    ap.add_argument("--synth", type=Path, default=flow.DEFAULT_OUT,
                    help="synthesis run folders (build/synth)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folders (build/power)")
    ap.add_argument("--report", type=Path, default=flow.REPORT_DIR,
                    help="report folder (build/report)")
    args = ap.parse_args(argv)
    runs = flow._configs(args.unit, args.preset)
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        sys.exit("power: iverilog / vvp not found (`make setup` installs Debian's iverilog)")
    try:
        lib = library(args.synth)
    except flow.FlowError as exc:
        sys.exit(f"power: {exc}")
    t0 = time.monotonic()
    print(f"power: {len(runs)} run(s), {min(args.jobs, len(runs))} in parallel", flush=True)
    rows, failed = [], 0
    engine = None
    if args.scheduler:
        from engine.executor import Engine
        engine = Engine(args.jobs, args.scheduler, progress=False)
    for row in run_all(runs, lib, args.synth, args.out, args.jobs, args.count, engine=engine):
        rows.append(row)
        if "error" in row:
            failed += 1
            print(f"  {row['unit']} {row['preset']}: FAILED\n{row['error']}", flush=True)
        else:
            print(f"  {row['unit']:9} {row['preset']:14} {row['pj_per_item']:>12,.1f} pJ/"
                  f"{row['item']:7} {row['pj_per_clock']:>9,.2f} pJ/clock (idle "
                  f"{row['idle_pj_per_clock']:.2f})  {row['gate_level']['result']}  "
                  f"{row['wall_s']:.0f} s", flush=True)
    if engine is not None:
        engine.close()
    collect(rows, args.report)
    runs_cpu = sum(r.get("cpu_s", 0) for r in rows)
    if engine is None and (args.jobs <= 1 or len(runs) == 1):
        here = _cpu_s() - runs_cpu   # the runs ran here, their simulators as our children
    else:   # the local cluster's processes are our children too: their CPU is in the rows
        here = _cpu_s(children=False)
    print(f"power: {len(rows)} run(s) in {time.monotonic() - t0:.0f} s; {here + runs_cpu:.0f} "
          f"CPU-s ({runs_cpu:.0f} in the runs with their simulators, {here:.0f} writing the "
          f"benches and the report); {args.report}/power.json, power.md")
    if failed:
        sys.exit(f"power: {failed} run(s) failed")


if __name__ == "__main__":
    main()
