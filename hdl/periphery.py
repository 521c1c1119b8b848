"""Periphery tops: a unit (the NMPU or the LDPU post-processing, or the ESSOP outer-product
engine) behind standard SoC interfaces.

    s_axil_*   AXI4-Lite slave (32-bit data): identification, job control, status, the layer
               registers and (NMPU, LDPU) the parameter window, as `periphery_regmap(cfg)`
               describes them (`s_apb_*`, an APB slave, with `bus` "apb")
    s_axis_*   AXI4-Stream in: one beat of the unit's input (NMPU, LDPU: counts, residuals,
               `tlast` on the final beat of a vector; ESSOP: one product's x and δ, `tlast` on
               every beat)
    m_axis_*   AXI4-Stream out: one beat of the unit's output (int8 activations; ESSOP: rows of
               counts with the product's exponent and error flag), `tlast` on the final beat of
               each vector (product)
    irq        level interrupt: job done or an error, each enabled in IRQ_EN

`rst` is active high and synchronous (an SoC with `aresetn` inverts it). The register map is
described once (`periphery_regmap`) and emitted as SystemRDL by `hdl.regmap`; the register block
below decodes the same description.

A job: software writes the parameter window and the LAYER registers, the JOB count (vectors;
ESSOP: products), then CTRL.start. NMPU, LDPU: the unit holds `images` parameter images (the
window has one slot per column of each), and IMAGE.base names the one the job reads, so several
layers' parameters can be loaded ahead and a layer switched by register writes alone. The top then accepts exactly count × in-beats input beats,
and counts count × out-beats output beats (NMPU, LDPU: `beats` each; ESSOP: 1 in, `rows /
rows_per_beat` out); after the last one STATUS.done rises (and `irq` if enabled). Output `tlast`
comes from that count, so a malformed input `tlast` (flagged as a framing error) cannot shift
the output framing or hang the job. Between jobs the input is back-pressured. ESSOP's
CTRL.reseed loads the LFSRs from the seeds in LAYER at the next product accepted.

Bus errors (SLVERR on B or R, PSLVERR on APB, and the sticky STATUS.bus_error): an unmapped or unaligned
address, a partial write strobe, a write of non-zero reserved bits, a read of a write-only
register or of the parameter window, a write to a read-only register, a write to JOB, IMAGE,
LAYER or the parameter window while a job runs, CTRL.start (or reseed) while a job runs, an
IMAGE.base of `images` or more. A refused
write changes nothing.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from amaranth import C, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .baselines import LDPU, ldpu_input_layout, ldpu_layer_layout, ldpu_output_layout
from .common import check_images
from .config import (ESSOP_PRESETS, LDPU_PRESETS, NMPU_PRESETS, ESSOPConfig, LDPUConfig,
                     NMPUConfig, _ConfigIdentity)
from .essop import ESSOP, input_layout as essop_input_layout, output_layout as essop_output_layout
from .nmpu import NMPU, input_layout, layer_layout, output_layout
from .regmap import BUS_BITS, Field, Reg, RegMap, pack_fields

__all__ = ["PeripheryConfig", "PERIPHERY_PRESETS", "periphery_preset", "periphery_regmap",
           "stream_widths", "Periphery", "TOPS", "ID_MAGIC", "UNIT_CODES", "VERSION"]

ID_MAGIC = 0xA1AC
VERSION = 1
UNIT_CODES = {"nmpu": 1, "ldpu": 2, "essop": 3}
SLVERR, OKAY = 0b10, 0b00
BUSES = ("axil", "apb")


@dataclass(frozen=True)
class _Core:
    """What a top knows of the unit it wraps. Functions of the unit's config: `i_layout`,
    `o_layout` (payloads), `layer` ([(field, width, desc)] of the LAYER registers), `geometry`
    ([(field, value, desc)] of GEOMETRY, 16 bits each), `in_beats` and `out_beats` per job item.
    `job`: what JOB counts; `params`: a parameter memory (the window) and a clamp counter;
    `pulses`: CTRL fields beyond start and clear (refused while a job runs); `errors`: the
    meaning of STATUS.frame_error and reg_error."""

    cfg_cls: type
    presets: dict
    unit: type
    i_layout: object
    o_layout: object
    layer: object
    geometry: object
    job: str
    in_beats: object
    out_beats: object
    params: bool
    pulses: tuple
    errors: tuple


def _layer_items(layout):
    return lambda core: [(name, fld.width, _LAYER_DESC.get(name, name))
                         for name, fld in layout(core)]


def _columns_geometry(core):
    return [("columns", core.columns, "columns per vector"),
            ("lanes", core.lanes, "columns per stream beat")]


_PP_ERRORS = ("an input tlast disagreed with the beat count",
              "the unit met a reserved register value or column")


def _essop_layer(core):
    return [("log2_bl", core.log2_bl_bits, f"log2 of the bitstream length BL (above "
                                           f"{core.log2_bl_max}: the product is rejected)"),
            ("lr_shift", core.lr_shift_bits, "learning rate 2^-lr_shift, in the exponent"),
            ("seed_x", core.lfsr_width, "seed of the x LFSRs (non-zero), loaded by CTRL.reseed"),
            ("seed_d", core.lfsr_width, "seed of the delta LFSRs (non-zero), loaded by "
                                        "CTRL.reseed")]


_CORES = {
    "nmpu": _Core(NMPUConfig, NMPU_PRESETS, NMPU, input_layout, output_layout,
                  _layer_items(layer_layout), _columns_geometry, "vectors",
                  lambda c: c.beats, lambda c: c.beats, True, (), _PP_ERRORS),
    "ldpu": _Core(LDPUConfig, LDPU_PRESETS, LDPU, ldpu_input_layout, ldpu_output_layout,
                  _layer_items(ldpu_layer_layout), _columns_geometry, "vectors",
                  lambda c: c.beats, lambda c: c.beats, True, (), _PP_ERRORS),
    "essop": _Core(ESSOPConfig, ESSOP_PRESETS, ESSOP, essop_input_layout, essop_output_layout,
                   _essop_layer,
                   lambda c: [("rows", c.rows, "rows of x and of the counts"),
                              ("cols", c.cols, "columns of delta and of the counts")],
                   "products", lambda c: 1, lambda c: c.readout_beats, False,
                   (("reseed", "load the LFSRs from LAYER seed_x, seed_d at the next product"),),
                   ("an input beat without tlast (every beat is one whole product)",
                    "a product was rejected: log2_bl above log2_bl_max, or a reseed with a "
                    "zero seed")),
}


def _bytes(bits):
    return -(-bits // 8) * 8


@dataclass(frozen=True, kw_only=True)
class PeripheryConfig(_ConfigIdentity):
    """A periphery top: `unit` ("nmpu", "ldpu" or "essop") with its config `core` (default: the
    unit's `paper` preset), `job_bits`, the width of the JOB count (at most 2^job_bits − 1
    vectors or products per job), and `images`, the parameter images the unit holds (NMPU,
    LDPU; each a whole copy of the columns' parameter words, chosen per job by IMAGE.base; an
    ESSOP top has none: 1), and `bus`, the control port: "axil" (AXI4-Lite) or "apb" (APB with
    PSTRB and PSLVERR). `name` only labels build folders and test ids."""

    name: str = "custom"
    unit: str = "nmpu"
    core: object = None
    job_bits: int = 16
    images: int = 1
    bus: str = "axil"

    def __post_init__(self):
        self._check_name()
        if self.unit not in _CORES:
            raise ValueError(f"`unit` must be one of {', '.join(_CORES)}, not {self.unit!r}")
        cfg_cls, presets = _CORES[self.unit].cfg_cls, _CORES[self.unit].presets
        if self.core is None:
            object.__setattr__(self, "core", presets["paper"])
        if not isinstance(self.core, cfg_cls):
            raise TypeError(f"`core` of a {self.unit} periphery must be a {cfg_cls.__name__}, not "
                            f"{type(self.core).__name__}")
        if isinstance(self.job_bits, bool) or not isinstance(self.job_bits, int):
            raise TypeError(f"`job_bits` must be an int, not {type(self.job_bits).__name__} "
                            f"{self.job_bits!r}")
        if not 1 <= self.job_bits <= 32:
            raise ValueError(f"`job_bits` must be in [1, 32], not {self.job_bits}")
        check_images(self.images)
        if self.bus not in BUSES:
            raise ValueError(f"`bus` must be one of {', '.join(BUSES)}, not {self.bus!r}")
        if not _CORES[self.unit].params and self.images != 1:
            raise ValueError(f"`images` of an {self.unit} periphery must be 1 (the unit has no "
                             f"parameter memory), not {self.images}")
        for name, value, _ in _CORES[self.unit].geometry(self.core):
            if value > 0xFFFF:
                raise ValueError(f"GEOMETRY holds a 16-bit `{name}`, not {value}")
        # the job counts one read-out per product: a group of accumulated products reads out once
        if self.unit == "essop" and self.core.accumulates:
            raise ValueError(f"`core` of an essop periphery must read out every product "
                             f"(acc_max 1), not acc_max {self.core.acc_max}")

    _UNIT = "periphery"

    @classmethod
    def _presets(cls):
        return PERIPHERY_PRESETS

    def to_dict(self):
        return {"name": self.name, "unit": self.unit, "core": self.core.to_dict(),
                "job_bits": self.job_bits, "images": self.images, "bus": self.bus}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise TypeError(f"a periphery config must be a dict, not {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown periphery config field(s): {', '.join(unknown)}")
        d = dict(d)
        unit = d.get("unit", "nmpu")
        if unit not in _CORES:
            raise ValueError(f"`unit` must be one of {', '.join(_CORES)}, not {unit!r}")
        if isinstance(d.get("core"), dict):
            d["core"] = _CORES[unit].cfg_cls.from_dict(d["core"])
        return cls(**d)

    @property
    def beats(self):
        """Input beats per job item (vector or product)."""
        return _CORES[self.unit].in_beats(self.core)

    @property
    def out_beats(self):
        """Output beats per job item."""
        return _CORES[self.unit].out_beats(self.core)

    def derived(self):
        rm = periphery_regmap(self)
        i_bits, o_bits = stream_widths(self)
        out = {"addr_bits": rm.addr_bits, "s_axis_bits": i_bits, "m_axis_bits": o_bits,
               "beats": self.beats, "out_beats": self.out_beats, "core": self.core.derived()}
        if rm.window is not None:
            out |= {"params_base": rm.window.offset, "params_words": rm.window.words,
                    "params_stride": rm.window.stride, "images": self.images}
        return out


# the compiler plans polarities for every column of a layer: 16 >= the tiny MLP's 12 outputs
_SMALL_NMPU = NMPUConfig(name="small", columns=16, lanes=4)
PERIPHERY_PRESETS = {
    "nmpu_tiny": PeripheryConfig(name="nmpu_tiny", unit="nmpu", core=NMPU_PRESETS["tiny"],
                                 job_bits=8),
    # the tiny NMPU with 3 parameter images: IMAGE.base has a refused value (3) besides the
    # legal ones (nmpu_tiny keeps one image: its top minus its unit is the wrapper alone)
    "nmpu_images": PeripheryConfig(name="nmpu_images", unit="nmpu", core=NMPU_PRESETS["tiny"],
                                   job_bits=8, images=3),
    "nmpu_small": PeripheryConfig(name="nmpu_small", unit="nmpu", core=_SMALL_NMPU, job_bits=8,
                                  images=2),
    "nmpu_paper": PeripheryConfig(name="nmpu_paper", unit="nmpu", core=NMPU_PRESETS["paper"]),
    # nmpu_small with an APB control port
    "nmpu_apb": PeripheryConfig(name="nmpu_apb", unit="nmpu", core=_SMALL_NMPU, job_bits=8,
                                images=2, bus="apb"),
    "ldpu_small": PeripheryConfig(name="ldpu_small", unit="ldpu",
                                  core=LDPUConfig(name="small", columns=16), job_bits=8, images=2),
    "ldpu_paper": PeripheryConfig(name="ldpu_paper", unit="ldpu", core=LDPU_PRESETS["paper"]),
    "essop_tiny": PeripheryConfig(name="essop_tiny", unit="essop", core=ESSOP_PRESETS["tiny"],
                                  job_bits=8),
    "essop_paper": PeripheryConfig(name="essop_paper", unit="essop", core=ESSOP_PRESETS["paper"]),
}


def periphery_preset(name):
    try:
        return PERIPHERY_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown periphery preset {name!r}; presets: "
                         f"{', '.join(PERIPHERY_PRESETS)}") from None


def _make_unit(cfg: PeripheryConfig):
    """The wrapped unit, with the top's parameter images (NMPU, LDPU)."""
    spec = _CORES[cfg.unit]
    return spec.unit(cfg.core, cfg.images) if spec.params else spec.unit(cfg.core)


def _layouts(cfg: PeripheryConfig):
    core = _CORES[cfg.unit]
    return core.i_layout(cfg.core), core.o_layout(cfg.core)


def _data_bits(layout):
    """Bits of a payload without its `last` flag (tlast carries it)."""
    return layout.size - ("last" in layout.members)


def stream_widths(cfg: PeripheryConfig):
    """tdata widths of s_axis and m_axis: the unit's payload without `last`, padded to bytes."""
    i_l, o_l = _layouts(cfg)
    return _bytes(_data_bits(i_l)), _bytes(_data_bits(o_l))


# -- the register map ----------------------------------------------------------------------------

_LAYER_DESC = {
    "shift": "right shift of the compression", "pre_cut": "bits cut before the rounding",
    "round_mode": "0 floor, 1 half-up, 2 half-even (3 is reserved: STATUS.reg_error)",
    "relu_mid": "ReLU before the residual add", "relu_out": "ReLU after the residual add",
    "residual_en": "add the residual input", "c": "binary16 scale of the residual",
}


def periphery_regmap(cfg: PeripheryConfig) -> RegMap:
    """The register map of a top, generated from its config (widths and addresses follow it)."""
    core, spec = cfg.core, _CORES[cfg.unit]
    frame_desc, reg_desc = spec.errors
    geometry = tuple(Field(name, 16 * k, 16, desc, value)
                     for k, (name, value, desc) in enumerate(spec.geometry(core)))
    pulses = tuple(Field(name, 2 + k, 1, desc) for k, (name, desc) in enumerate(spec.pulses))
    regs = [
        Reg("ID", 0x00, "r", (Field("unit", 0, 8, "1 NMPU, 2 LDPU, 3 ESSOP", UNIT_CODES[cfg.unit]),
                              Field("version", 8, 8, "register map version", VERSION),
                              Field("magic", 16, 16, "0xA1AC", ID_MAGIC)),
            "Identification."),
        Reg("GEOMETRY", 0x04, "r", geometry, "Size of the unit (NMPU, LDPU: beats per vector = "
                                             "columns / lanes)."),
        Reg("CTRL", 0x08, "w", (Field("start", 0, 1, "start the job in JOB and LAYER"),
                                Field("clear", 1, 1, "clear done, the error flags and the clamp "
                                                     "count")) + pulses,
            "Control pulses."),
        Reg("IRQ_EN", 0x0C, "rw", (Field("done", 0, 1, "interrupt on STATUS.done"),
                                   Field("error", 1, 1, "interrupt on any error flag")),
            "Interrupt enables; irq = done & IRQ_EN.done | (any error) & IRQ_EN.error."),
        Reg("STATUS", 0x10, "r", (Field("busy", 0, 1, "a job runs"),
                                  Field("done", 1, 1, "the last job's outputs have all left "
                                                      "(sticky)"),
                                  Field("frame_error", 2, 1, f"{frame_desc} (sticky)"),
                                  Field("reg_error", 3, 1, f"{reg_desc} (sticky)"),
                                  Field("bus_error", 4, 1, "a bus access was refused with SLVERR "
                                                           "(sticky)")),
            "Status; CTRL.clear clears the sticky flags."),
        Reg("JOB", 0x14, "rw", (Field(spec.job, 0, cfg.job_bits, f"{spec.job} of the next job"),),
            "Job descriptor.", locked=True),
    ]
    layer_regs = pack_fields(spec.layer(core), 0x20, "LAYER", "Layer registers of the unit "
                             "(sampled with every input beat).", locked=True)
    regs += layer_regs
    size = ", ".join(f"{value} {name}" for name, value, _ in spec.geometry(core))
    desc = f"AIMC tile periphery: {cfg.unit.upper()} ({size}) behind AXI4-Lite and AXI4-Stream"
    if not spec.params:
        return RegMap.build("aimc_periph", desc, regs)
    regs += pack_fields([("count", core.clamp_count_bits, "outputs saturated since the last "
                          "clear (saturating)")],
                        0x20 + 4 * len(layer_regs), "CLAMP", "Clamp counter.", sw="r")
    # the job's parameter image: a field of its own width (JOB may take all 32 bits)
    base_bits = max(1, (cfg.images - 1).bit_length())
    regs.append(Reg("IMAGE", 0x18, "rw",
                    (Field("base", 0, base_bits, f"parameter image of the next job (0 .. "
                                                 f"{cfg.images - 1}): column j reads window "
                                                 f"entry base * {core.columns} + j",
                           maximum=cfg.images - 1 if cfg.images < 1 << base_bits else None),),
                    "Job descriptor: the parameter image.", locked=True))
    regs.sort(key=lambda r: r.offset)
    word_bits = sum(bits for _, bits in core.word_fields)
    images = f"{cfg.images} images of {core.columns} columns" if cfg.images > 1 else "columns"
    return RegMap.build("aimc_periph", desc, regs, entries=cfg.images * core.columns,
                        word_bits=word_bits,
                        window_desc=f"Parameter words, one slot per column ({images}: column j "
                                    f"of image s in slot s * {core.columns} + j), least "
                                    f"significant bus word first; writing the highest word "
                                    f"commits the column.")


# -- the top -------------------------------------------------------------------------------------

def _apb_signature(addr_bits):
    return {"s_apb_psel": In(1), "s_apb_penable": In(1), "s_apb_pwrite": In(1),
            "s_apb_paddr": In(addr_bits), "s_apb_pwdata": In(BUS_BITS),
            "s_apb_pstrb": In(BUS_BITS // 8), "s_apb_pready": Out(1),
            "s_apb_prdata": Out(BUS_BITS), "s_apb_pslverr": Out(1)}


def _axil_signature(addr_bits):
    return {"s_axil_awaddr": In(addr_bits), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
            "s_axil_wdata": In(BUS_BITS), "s_axil_wstrb": In(BUS_BITS // 8),
            "s_axil_wvalid": In(1), "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
            "s_axil_araddr": In(addr_bits), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
            "s_axil_rdata": Out(BUS_BITS), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1),
            "s_axil_rready": In(1)}


class Periphery(wiring.Component):
    """The unit of `cfg` (NMPU, LDPU or ESSOP) behind AXI4-Lite control and AXI4-Stream data
    (see the module doc). Adds no clock of latency on the streams: `s_axis` is the unit's input
    gated by the job's remaining beats, `m_axis` its output with a counted `tlast`. Bus
    responses come one clock after the address (and data) handshake; one access of each kind
    in flight. Golden: the unit's (`golden.nmpu.forward`, `golden.baselines.forward`,
    `golden.essop.product_stream` and `readout`)."""

    def __init__(self, cfg: PeripheryConfig):
        if not isinstance(cfg, PeripheryConfig):
            self._MustUse__silence = True
            raise TypeError(f"Periphery needs a PeripheryConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        self.regmap = periphery_regmap(cfg)
        i_bits, o_bits = stream_widths(cfg)
        sig = (_apb_signature if cfg.bus == "apb" else _axil_signature)(self.regmap.addr_bits)
        sig |= {"s_axis_tdata": In(i_bits), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "m_axis_tdata": Out(o_bits), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
                "m_axis_tlast": Out(1), "irq": Out(1)}
        super().__init__(sig)

    @property
    def latency(self):
        unit = _make_unit(self.cfg)
        unit._MustUse__silence = True  # asked for its latency only
        return unit.latency

    def write_extras(self, out_dir, module, v_path, waivers):
        """Beside the Verilog: the register map (`<module>_regs/`: SystemRDL, PeakRDL C header,
        HTML) and the FuseSoC core with its smoke bench. Returns entries for the JSON."""
        from .fusesoc import write_core, vlnv
        from .regmap import write_outputs
        out_dir = Path(out_dir)
        paths = write_outputs(self.regmap, out_dir / f"{module}_regs")
        core = write_core(out_dir, module, Path(v_path).name, self.regmap, stream_widths(self.cfg)[0],
                          waivers, self.regmap.desc, self.cfg.bus)
        from .export import _shape_map
        i_l, o_l = _layouts(self.cfg)
        i_bits, o_bits = stream_widths(self.cfg)
        streams = {}
        for port, layout, bits in (("s_axis", i_l, i_bits), ("m_axis", o_l, o_bits)):
            fields = _shape_map(layout)["fields"]
            fields.pop("last", None)  # tlast carries it
            streams[port] = {"width": bits, "fields": fields}
        return {"regmap": {k: str(p.relative_to(out_dir)) for k, p in paths.items()},
                "core": core.name, "vlnv": vlnv(module), "streams": streams}

    def elaborate(self, platform):
        m = Module()
        cfg, rm = self.cfg, self.regmap
        spec = _CORES[cfg.unit]
        m.submodules.unit = unit = _make_unit(cfg)
        busy = Signal()
        hw = {}  # (reg, field) -> value read by software
        st = {f.name: Signal(name=f"status_{f.name}") for f in rm.reg("STATUS").fields}
        m.d.comb += [st["busy"].eq(busy), st["reg_error"].eq(unit.reg_error)]
        for name, sig in st.items():
            hw["STATUS", name] = sig
        for reg, f in rm.fields_of("CLAMP"):
            k = int(f.name.rsplit("_", 1)[1]) if "_" in f.name else 0
            hw[reg.name, f.name] = unit.clamp_count[k * BUS_BITS:k * BUS_BITS + f.width]
        regs = (APBRegs if cfg.bus == "apb" else AXILiteRegs)(rm)
        store, pulses, wr = regs.build(m, self, hw, busy)

        # layer registers -> the unit (a field wider than the bus spans registers)
        layer_bits = {}
        for reg, f in rm.fields_of("LAYER"):
            base, _, k = f.name.rpartition("_")
            layer_bits.setdefault(base if base and k.isdigit() else f.name, []).append(
                store[reg.name, f.name])
        layer = {name: Cat(*bits) for name, bits in layer_bits.items()}
        if spec.params:
            order = [name for name, _, _ in spec.layer(cfg.core)]
            m.d.comb += unit.layer.as_value().eq(Cat(*[layer[name] for name in order]))
            # parameter window -> the unit's write port
            m.d.comb += [unit.wr.en.eq(wr["en"]), unit.wr.addr.eq(wr["column"]),
                         unit.wr.data.as_value().eq(wr["word"])]
            if cfg.images > 1:  # IMAGE is locked while a job runs: one image per job
                m.d.comb += unit.image.eq(store["IMAGE", "base"])
        else:
            m.d.comb += [getattr(unit, name).eq(value) for name, value in layer.items()]
        for name, _ in spec.pulses:
            m.d.comb += getattr(unit, name).eq(pulses["CTRL", name])

        # the job
        beats, in_beats = cfg.out_beats, cfg.beats
        total_bits = cfg.job_bits + max(1, (max(beats, in_beats) - 1).bit_length())
        in_left = Signal(total_bits)
        out_left = Signal(total_bits)
        out_beat = Signal(range(max(2, beats)))
        vectors = store["JOB", spec.job]
        with m.If(pulses["CTRL", "start"] & ~busy):
            with m.If(vectors != 0):
                # out_beat is 0 here: every job ends on a vector boundary (and reset clears it)
                m.d.sync += [busy.eq(1), in_left.eq(vectors * in_beats),
                             out_left.eq(vectors * beats)]
            m.d.sync += st["done"].eq(vectors == 0)
        # input gate: exactly the job's beats reach the unit
        open_ = in_left != 0
        took = self.s_axis_tvalid & self.s_axis_tready
        i_l, o_l = _layouts(cfg)
        i_data = self.s_axis_tdata[:_data_bits(i_l)]
        if "last" in i_l.members:
            i_data = Cat(i_data, self.s_axis_tlast)
        m.d.comb += [unit.i.valid.eq(self.s_axis_tvalid & open_),
                     self.s_axis_tready.eq(unit.i.ready & open_),
                     unit.i.payload.as_value().eq(i_data)]
        if hasattr(unit, "frame_error"):
            m.d.comb += st["frame_error"].eq(unit.frame_error)
        else:  # one beat per item: tlast on every beat
            m.d.sync += st["frame_error"].eq(~pulses["CTRL", "clear"] & st["frame_error"]
                                             | took & ~self.s_axis_tlast)
        with m.If(took):
            m.d.sync += in_left.eq(in_left - 1)
        # output: the unit's beats, `tlast` from the count
        m.d.comb += [self.m_axis_tvalid.eq(unit.o.valid), unit.o.ready.eq(self.m_axis_tready),
                     self.m_axis_tdata.eq(unit.o.payload.as_value()[:_data_bits(o_l)]),
                     self.m_axis_tlast.eq(out_beat == beats - 1)]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += [out_left.eq(out_left - 1),
                         out_beat.eq(Mux(out_beat == beats - 1, 0, out_beat + 1))]
            with m.If(out_left == 1):
                m.d.sync += [busy.eq(0), st["done"].eq(1)]
        # clear: the unit's flags and counter, done and the bus error
        m.d.comb += unit.clear.eq(pulses["CTRL", "clear"])
        with m.If(pulses["CTRL", "clear"]):
            m.d.sync += st["done"].eq(0)
        m.d.sync += st["bus_error"].eq(Mux(pulses["CTRL", "clear"], 0, st["bus_error"])
                                       | regs.error)
        error = st["frame_error"] | st["reg_error"] | st["bus_error"]
        m.d.comb += self.irq.eq(st["done"] & store["IRQ_EN", "done"]
                                | error & store["IRQ_EN", "error"])
        return m


class RegBlock:
    """The register block of a `RegMap`, added to a top's module, without its bus channels:
    `write_side` decides whether a write (address, data, strobe) is legal and commits it,
    `read_side` selects the word a read returns. `AXILiteRegs` and `APBRegs` put the channels
    around it. `error` pulses with every refused access (see `hdl.periphery`)."""

    def __init__(self, rm: RegMap):
        self.rm = rm
        self.error = Signal(name="bus_refused")

    def storage(self):
        """Storage of the rw fields and one-clock pulses of the w fields."""
        store, pulses = {}, {}
        for r in self.rm.regs:
            for f in r.fields:
                if r.sw == "rw":
                    store[r.name, f.name] = Signal(f.width, name=f"{r.name}_{f.name}".lower())
                elif r.sw == "w":
                    pulses[r.name, f.name] = Signal(name=f"{r.name}_{f.name}".lower())
        return store, pulses

    def write_side(self, m, addr, wdata, wstrb, busy, store, pulses):
        """(whether the write is legal, commit): `commit(do)` performs it when `do` (the
        channel's write strobe, legal writes only) and returns the window's write {en, column,
        word} (None without a window)."""
        rm = self.rm
        full_strobe = (1 << (BUS_BITS // 8)) - 1
        ok = Signal(name="w_ok")
        hits = []
        for r in rm.regs:
            if r.sw == "r":
                continue
            reserved = ((1 << BUS_BITS) - 1) & ~sum(f.mask for f in r.fields)
            legal = (addr == r.offset) & ((wdata & reserved) == 0)
            for f in r.fields:  # a value beyond the field's legal range: refused, never clamped
                if f.maximum is not None:
                    legal &= wdata[f.lsb:f.lsb + f.width] <= f.maximum
            if r.locked:
                legal &= ~busy
            if r.name == "CTRL":  # every pulse but clear waits for the job's end
                legal &= ~(Cat(*[wdata[f.lsb] for f in r.fields if f.name != "clear"]).any()
                           & busy)
            hits.append((r, legal))
        win_legal, win_write = (self._window(m, addr, wdata, busy) if rm.window is not None
                                else (C(0, 1), None))
        m.d.comb += ok.eq((wstrb == full_strobe)
                          & (Cat(*[legal for _, legal in hits], win_legal).any()))

        def commit(do):
            for r, _ in hits:
                for f in r.fields:
                    value = wdata[f.lsb:f.lsb + f.width]
                    if r.sw == "rw":
                        with m.If(do & (addr == r.offset)):
                            m.d.sync += store[r.name, f.name].eq(value)
                    else:
                        m.d.comb += pulses[r.name, f.name].eq(do & (addr == r.offset) & value[0])
            return win_write(do) if win_write else None
        return ok, commit

    def read_side(self, m, addr, hw, store):
        """(whether a read of `addr` is legal, the word it returns)."""
        r_ok = Signal(name="r_ok")
        r_word = Signal(BUS_BITS, name="r_word")
        # an OR of the selected words: no priority chain, no incomplete case
        selects, words = [], []
        for r in self.rm.regs:
            if r.sw == "w":
                continue
            sel = addr == r.offset
            word = Signal(BUS_BITS, name=f"rd_{r.name.lower()}")
            for f in r.fields:
                if f.value is not None:
                    v = Const(f.value, f.width)
                elif r.sw == "rw":
                    v = store[r.name, f.name]
                else:
                    v = hw[r.name, f.name]
                m.d.comb += word[f.lsb:f.lsb + f.width].eq(v)
            selects.append(sel)
            words.append(Mux(sel, word, 0))
        m.d.comb += [r_ok.eq(Cat(*selects).any()), r_word.eq(_or(words))]
        return r_ok, r_word

    def _window(self, m, addr, wdata, busy):
        """The parameter window: whether a write is legal there, and a function of the write
        strobe `do` that stages the lower bus words and returns the window's write {en, column,
        word}."""
        win = self.rm.window
        # column slot, sub-word, top-word reserved bits
        wb = (win.offset).bit_length() - 1           # window offset = 2^wb
        sub_bits = (win.stride - 1).bit_length()
        col = addr[2 + sub_bits:wb]
        sub = addr[2:2 + sub_bits] if sub_bits else C(0, 1)
        top_bits = win.word_bits - (win.words - 1) * BUS_BITS
        top_sub = sub == win.words - 1
        in_window = addr[wb] & (col < win.entries) & (sub < win.words) & ~busy
        win_legal = in_window & ~(top_sub & (wdata[top_bits:] != 0) if top_bits < BUS_BITS
                                  else C(0, 1))

        def write(do):
            staging = [Signal(BUS_BITS, name=f"stage{k}") for k in range(win.words - 1)]
            for k, s in enumerate(staging):
                with m.If(do & addr[wb] & (sub == k)):
                    m.d.sync += s.eq(wdata)
            return {"en": do & addr[wb] & top_sub, "column": col,
                    "word": Cat(*staging, wdata)[:win.word_bits]}
        return win_legal, write


class AXILiteRegs(RegBlock):
    """The AXI4-Lite register block: write when the address and the data are both valid (AXI
    lets a slave wait for both), respond on B one clock later; read when the address is valid
    and R is free; one access of each kind in flight."""

    def build(self, m, bus, hw, busy):
        """`hw[(reg, field)]`: values of the read-only fields. Returns (storage of the rw fields,
        one-clock pulses of the w fields, the window's write {en, column, word})."""
        store, pulses = self.storage()

        # -- write channel
        bvalid, bresp = Signal(), Signal(2)
        fire = Signal(name="w_fire")
        m.d.comb += [fire.eq(bus.s_axil_awvalid & bus.s_axil_wvalid & ~bvalid),
                     bus.s_axil_awready.eq(fire), bus.s_axil_wready.eq(fire),
                     bus.s_axil_bvalid.eq(bvalid), bus.s_axil_bresp.eq(bresp)]
        ok, commit = self.write_side(m, bus.s_axil_awaddr, bus.s_axil_wdata, bus.s_axil_wstrb,
                                     busy, store, pulses)
        with m.If(fire):
            m.d.sync += [bvalid.eq(1), bresp.eq(Mux(ok, OKAY, SLVERR))]
        with m.Elif(bus.s_axil_bready):
            m.d.sync += bvalid.eq(0)
        wr = commit(fire & ok)

        # -- read channel
        rvalid, rresp, rdata = Signal(), Signal(2), Signal(BUS_BITS)
        rfire = Signal(name="r_fire")
        m.d.comb += [rfire.eq(bus.s_axil_arvalid & ~rvalid), bus.s_axil_arready.eq(rfire),
                     bus.s_axil_rvalid.eq(rvalid), bus.s_axil_rresp.eq(rresp),
                     bus.s_axil_rdata.eq(rdata)]
        r_ok, r_word = self.read_side(m, bus.s_axil_araddr, hw, store)
        with m.If(rfire):
            m.d.sync += [rvalid.eq(1), rresp.eq(Mux(r_ok, OKAY, SLVERR)),
                         rdata.eq(Mux(r_ok, r_word, 0))]
        with m.Elif(bus.s_axil_rready):
            m.d.sync += rvalid.eq(0)
        m.d.comb += self.error.eq(fire & ~ok | rfire & ~r_ok)
        return store, pulses, wr


class APBRegs(RegBlock):
    """The APB (AMBA 4: PSTRB, PSLVERR) register block: no wait states (PREADY high), the
    access takes effect at the end of its access phase (PSEL & PENABLE), PRDATA and PSLVERR
    answer in that phase from the address and data the requester holds."""

    def build(self, m, bus, hw, busy):
        """As `AXILiteRegs.build`."""
        store, pulses = self.storage()
        access = Signal(name="apb_access")
        m.d.comb += [access.eq(bus.s_apb_psel & bus.s_apb_penable), bus.s_apb_pready.eq(1)]
        ok, commit = self.write_side(m, bus.s_apb_paddr, bus.s_apb_pwdata, bus.s_apb_pstrb, busy,
                                     store, pulses)
        wr = commit(access & bus.s_apb_pwrite & ok)
        r_ok, r_word = self.read_side(m, bus.s_apb_paddr, hw, store)
        refused = Mux(bus.s_apb_pwrite, ~ok, ~r_ok)
        m.d.comb += [bus.s_apb_prdata.eq(Mux(access & ~bus.s_apb_pwrite & r_ok, r_word, 0)),
                     bus.s_apb_pslverr.eq(access & refused),
                     self.error.eq(access & refused)]
        return store, pulses, wr


def _or(values):
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]


TOPS = {"periphery": (PeripheryConfig, PERIPHERY_PRESETS, Periphery)}
