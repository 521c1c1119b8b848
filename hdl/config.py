"""Frozen, validated configurations of the generated units.

Pure Python: the golden model imports this module and nothing else from `hdl/`, so it must not
depend on Amaranth. Every width is derived here, once; the RTL, the golden model and the test
benches all read it from the config.
"""

import dataclasses
import enum
import hashlib
import json
import re
from dataclasses import dataclass

__all__ = ["RoundMode", "NMPUConfig", "NMPU_PRESETS", "nmpu_preset", "signed_bits", "unsigned_bits",
           "ESSOPConfig", "ESSOP_PRESETS", "essop_preset", "LDPUConfig", "LDPU_PRESETS",
           "ldpu_preset", "FP16OuterConfig", "FP16_OUTER_PRESETS", "fp16_outer_preset"]

# The golden model computes on np.int64; every intermediate must stay strictly inside it.
INT64_GUARD_BITS = 62


class RoundMode(enum.IntEnum):
    """Rounding of the compression step (the `round_mode` layer register)."""

    FLOOR = 0      # arithmetic shift, towards -inf
    HALF_UP = 1    # add half an LSB, then floor: ties towards +inf
    HALF_EVEN = 2  # ties to the even neighbour


def unsigned_bits(value):
    """Bits an unsigned code needs to hold `value` (>= 0); at least 1."""
    if value < 0:
        raise ValueError(f"unsigned_bits needs a non-negative value, not {value}")
    return max(1, int(value).bit_length())


def signed_bits(lo, hi):
    """Bits a two's complement code needs to hold every integer in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, not {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"`{name}` must be in [{lo}, {hi}], not {value}")


class _ConfigIdentity:
    """Export and identity shared by every unit config: `to_dict`, `from_dict` (rejects unknown
    fields by name), and `tag`, the preset name or the name plus a hash of the fields.
    Subclasses set `_UNIT` (for messages) and `_presets()` (their preset table)."""

    _UNIT = "unit"

    @classmethod
    def _presets(cls):
        return {}

    def _check_name(self):
        """`name` labels build folders and test ids: lower-case letters, digits, '_' or '-'."""
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", self.name):
            raise ValueError(f"`name` must be lower-case letters, digits, '_' or '-', not {self.name!r}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise TypeError(f"an {cls._UNIT} config must be a dict, not {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls._UNIT} config field(s): {', '.join(unknown)}")
        return cls(**d)

    @property
    def tag(self):
        """Build-folder and test-id name: the preset name, or name plus a hash of the fields."""
        presets = self._presets()
        if self.name in presets and presets[self.name] == self:
            return self.name
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:8]}"


_STATIC_DEFAULTS = {"static_shift": 0, "static_pre_cut": 0, "static_round": int(RoundMode.HALF_EVEN)}

# The clamp-event count: lanes up to CLAMP_FLAT_LANES are counted in one clock (16 lanes close at
# 235 MHz, 64 at 185 with the count in one clock); more are summed CLAMP_GROUP at a time per stage.
CLAMP_FLAT_LANES = 16
CLAMP_GROUP = 8


@dataclass(frozen=True, kw_only=True)
class NMPUConfig(_ConfigIdentity):
    """Configuration of the Near-Memory Processing Unit (see docs/nmpu.md).

    Formats are (integer bits, fraction bits); signed formats count the sign bit in the integer
    bits. `name` only labels build folders and test ids.
    """

    name: str = "custom"
    columns: int = 256
    lanes: int = 64
    adc_bits: int = 12
    input_mode: str = "dual"       # "dual": P and N counts; "signed": one signed count X
    scale_int: int = 1
    scale_frac: int = 7
    offset_int: int = 7
    offset_frac: int = 1
    out_bits: int = 8
    residual: bool = True          # build the residual input and adder
    exp_bits: int = 0              # per-column extra shift `e`; 0 = not built
    shift_bits: int = 5            # width of the `shift` and `pre_cut` layer registers
    clamp_count_bits: int = 32     # width of the saturating clamp counter
    # -- precision knobs (elaboration time; the defaults build the unit above unchanged) --
    single_scale: bool = False     # dual mode with sp = sn: one product sp·(P − N), no `sn`
    drop_bits: int = 0             # product LSBs floored away before the adder (not built)
    static_layer: bool = False     # shift, pre_cut, round mode fixed below: no registers, no
    static_shift: int = 0          #   barrel shifter, no mode muxes (ReLU and residual
    static_pre_cut: int = 0        #   enables stay 1-bit layer registers)
    static_round: int = int(RoundMode.HALF_EVEN)

    def __post_init__(self):
        self._check_name()
        _check_int("columns", self.columns, 1, 4096)
        _check_int("lanes", self.lanes, 1, 4096)
        if self.columns % self.lanes:
            raise ValueError(f"`lanes` must divide `columns` ({self.columns}), not {self.lanes}")
        _check_int("adc_bits", self.adc_bits, 1, 24)
        if self.input_mode not in ("dual", "signed"):
            raise ValueError(f"`input_mode` must be 'dual' or 'signed', not {self.input_mode!r}")
        _check_int("scale_int", self.scale_int, 0, 24)
        _check_int("scale_frac", self.scale_frac, 0, 24)
        if not 1 <= self.scale_int + self.scale_frac <= 24:
            raise ValueError(
                f"`scale_int` + `scale_frac` must be 1..24 bits, not {self.scale_int + self.scale_frac}")
        _check_int("offset_int", self.offset_int, 1, 32)  # the sign bit needs one integer bit
        _check_int("offset_frac", self.offset_frac, 0, 32)
        if self.offset_int + self.offset_frac > 32:
            raise ValueError(
                f"`offset_int` + `offset_frac` must be at most 32 bits, not {self.offset_bits}")
        _check_int("out_bits", self.out_bits, 2, 32)
        if not isinstance(self.residual, bool):
            raise TypeError(f"`residual` must be a bool, not {type(self.residual).__name__} "
                            f"{self.residual!r}")
        _check_int("exp_bits", self.exp_bits, 0, 6)
        _check_int("shift_bits", self.shift_bits, 1, 5)  # 6 bits would pass the int64 guard
        _check_int("clamp_count_bits", self.clamp_count_bits, 1, 64)
        for flag in ("single_scale", "static_layer"):
            value = getattr(self, flag)
            if not isinstance(value, bool):
                raise TypeError(f"`{flag}` must be a bool, not {type(value).__name__} {value!r}")
        if self.single_scale and not self.dual:
            raise ValueError("`single_scale` needs `input_mode` 'dual' (P and N counts): "
                             "'signed' mode already has one product")
        _check_int("drop_bits", self.drop_bits, 0, self.full_product_bits - 1)
        lo, hi = self.exact_product_range
        kept = max(-lo, hi).bit_length()       # the largest product's magnitude, in bits
        if self.drop_bits >= kept:
            raise ValueError(
                f"`drop_bits` ({self.drop_bits}) floors away every bit of the largest product "
                f"({max(-lo, hi)}: {kept} bits from scale ({self.scale_int},{self.scale_frac}) x "
                f"adc_bits {self.adc_bits}): the counts could not reach the output; at most "
                f"{kept - 1}")
        _check_int("static_shift", self.static_shift, 0, self.max_shift)
        _check_int("static_pre_cut", self.static_pre_cut, 0, self.max_shift)
        _check_int("static_round", self.static_round, min(RoundMode), max(RoundMode))
        if not self.static_layer:
            for name in ("static_shift", "static_pre_cut", "static_round"):
                if getattr(self, name) != _STATIC_DEFAULTS[name]:
                    raise ValueError(f"`{name}` ({getattr(self, name)}) is set but `static_layer` "
                                     f"is False: the layer registers decide it at run time")
        if self.acc_bits > INT64_GUARD_BITS:
            raise ValueError(
                f"formats too wide for the exact int64 golden model: the accumulator needs "
                f"{self.acc_bits} bits (adc_bits={self.adc_bits}, scale ({self.scale_int},"
                f"{self.scale_frac}), offset ({self.offset_int},{self.offset_frac})), at most "
                f"{INT64_GUARD_BITS}")
        if self.max_total_shift > INT64_GUARD_BITS:
            raise ValueError(
                f"`shift_bits` ({self.shift_bits}) with `exp_bits` ({self.exp_bits}) allows shifts "
                f"up to {self.max_total_shift}, beyond the int64 golden model's {INT64_GUARD_BITS}")
        if self.max_shift < self.acc_bits - self.out_bits:
            raise ValueError(
                f"`shift_bits` ({self.shift_bits}) is too narrow: shifts up to {self.max_shift} "
                f"cannot bring the {self.acc_bits}-bit accumulator down to `out_bits` "
                f"({self.out_bits}); need at least {self.acc_bits - self.out_bits}")

    # -- formats -------------------------------------------------------------------------------

    @property
    def scale_bits(self):
        return self.scale_int + self.scale_frac

    @property
    def offset_bits(self):
        return self.offset_int + self.offset_frac

    @property
    def product_frac(self):
        """Fraction bits of a product after `drop_bits` of its LSBs are floored away (may be
        negative: the kept LSB then weighs more than one count)."""
        return self.scale_frac - self.drop_bits

    @property
    def frac(self):
        """F: fraction bits of the accumulator."""
        return max(self.product_frac, self.offset_frac)

    @property
    def scale_align(self):
        """Left shift that puts a (dropped) product on the accumulator's grid."""
        return self.frac - self.product_frac

    @property
    def term_align(self):
        """acc ≈ (sp·P − sn·N) · 2^term_align: the exact term's weight on the accumulator's grid
        (`scale_align` − `drop_bits`; the compiler's view)."""
        return self.frac - self.scale_frac

    @property
    def offset_align(self):
        """Left shift that puts the offset on the accumulator's grid."""
        return self.frac - self.offset_frac

    @property
    def dual(self):
        """P and N counts in (two scales, or one with `single_scale`)."""
        return self.input_mode == "dual"

    @property
    def two_scales(self):
        """A scale per branch: the word holds `sn`."""
        return self.dual and not self.single_scale

    @property
    def signed_product(self):
        """One signed product: sp·X (signed mode) or sp·(P − N) (single scale)."""
        return not self.two_scales

    @property
    def beats(self):
        """Beats per vector."""
        return self.columns // self.lanes

    # -- ranges and derived widths -------------------------------------------------------------

    @property
    def scale_max(self):
        return (1 << self.scale_bits) - 1

    @property
    def offset_range(self):
        return -(1 << (self.offset_bits - 1)), (1 << (self.offset_bits - 1)) - 1

    @property
    def e_max(self):
        return (1 << self.exp_bits) - 1

    @property
    def x_range(self):
        """Range of the signed-mode input X (`adc_bits + 1` bits)."""
        return -(1 << self.adc_bits), (1 << self.adc_bits) - 1

    @property
    def adc_max(self):
        return (1 << self.adc_bits) - 1

    @property
    def out_range(self):
        return -(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1

    @property
    def full_product_bits(self):
        """Width of an exact product: unsigned sp·P (two scales), signed sp·X or sp·(P − N)."""
        return self.scale_bits + self.adc_bits + (1 if self.signed_product else 0)

    @property
    def exact_product_range(self):
        """Range of one exact product, before the floor by 2^drop_bits."""
        if self.two_scales:
            return 0, self.scale_max * self.adc_max
        if self.dual:
            return -self.scale_max * self.adc_max, self.scale_max * self.adc_max
        return self.scale_max * self.x_range[0], self.scale_max * self.x_range[1]

    @property
    def product_range(self):
        """Range of one product after the floor by 2^drop_bits (what the adder sees)."""
        lo, hi = self.exact_product_range
        return lo >> self.drop_bits, hi >> self.drop_bits

    @property
    def product_bits(self):
        """Width of one kept product: unsigned with two scales, else signed."""
        lo, hi = self.product_range
        return unsigned_bits(hi) if self.two_scales else signed_bits(lo, hi)

    @property
    def term_range(self):
        """Range of the kept term ((sp·P >> d) − (sn·N >> d), or one product) before alignment."""
        lo, hi = self.product_range
        return (-hi, hi) if self.two_scales else (lo, hi)

    @property
    def acc_range(self):
        t_lo, t_hi = self.term_range
        o_lo, o_hi = self.offset_range
        return ((t_lo << self.scale_align) + (o_lo << self.offset_align),
                (t_hi << self.scale_align) + (o_hi << self.offset_align))

    @property
    def acc_bits(self):
        """Signed width of the exact accumulator."""
        return signed_bits(*self.acc_range)

    @property
    def max_shift(self):
        return (1 << self.shift_bits) - 1

    @property
    def max_total_shift(self):
        """Largest s = shift + e."""
        return self.max_shift + self.e_max

    @property
    def total_shift_bits(self):
        return unsigned_bits(self.max_total_shift)

    @property
    def word_fields(self):
        """(name, bits) of the packed parameter word, least significant field first."""
        fields = [("sp", self.scale_bits)]
        if self.two_scales:
            fields.append(("sn", self.scale_bits))
        fields.append(("o", self.offset_bits))
        if self.exp_bits:
            fields.append(("e", self.exp_bits))
        return tuple(fields)

    @property
    def word_bits(self):
        return sum(bits for _, bits in self.word_fields)

    @property
    def addr_bits(self):
        return unsigned_bits(self.columns - 1)

    @property
    def round_bits(self):
        return unsigned_bits(max(RoundMode))

    @property
    def clamp_stages(self):
        """Register stages of the clamp-event count (groups of `CLAMP_GROUP` lanes per stage):
        none up to `CLAMP_FLAT_LANES` lanes, whose one-clock popcount is short; beyond, enough
        stages to reduce the lanes to one sum, so the count never sets f_max. `clamp_count`
        shows a beat this many clocks later; the count itself is unchanged."""
        if self.lanes <= CLAMP_FLAT_LANES:
            return 0
        stages, n = 0, self.lanes
        while n > 1:
            n, stages = -(-n // CLAMP_GROUP), stages + 1
        return stages

    # -- identity and export -------------------------------------------------------------------

    _UNIT = "NMPU"

    @classmethod
    def _presets(cls):
        return NMPU_PRESETS

    def derived(self):
        """The derived widths, for the exported JSON."""
        names = ("beats", "frac", "scale_bits", "offset_bits", "acc_bits", "word_bits", "addr_bits",
                 "max_shift", "max_total_shift", "clamp_stages")
        return {n: getattr(self, n) for n in names}


NMPU_PRESETS = {
    "paper": NMPUConfig(name="paper"),
    "exp": NMPUConfig(name="exp", exp_bits=3),
    "serial": NMPUConfig(name="serial", lanes=1),
    # issue 13: the narrowest widths within ±0.12 points of FP16 on the accuracy study at 1 day
    # (MLP and CNN; hand sweep in docs/nmpu.md): 6-bit scales (1,5), 6-bit offsets (5,1), the 6
    # product LSBs dropped before the adder, 4-bit shifts, a 16-bit clamp count; 64 and 256 lanes.
    "precision": NMPUConfig(name="precision", scale_frac=5, offset_int=5, drop_bits=6,
                            shift_bits=4, clamp_count_bits=16),
    "precision256": NMPUConfig(name="precision256", lanes=256, scale_frac=5, offset_int=5,
                               drop_bits=6, shift_bits=4, clamp_count_bits=16),
    # The same widths at one lane: the LDPU's schedule (one column per clock) for the "smaller
    # at the same throughput" half of the paper's claim, where parameter storage dominates.
    "precision_serial": NMPUConfig(name="precision_serial", lanes=1, scale_frac=5, offset_int=5,
                                   drop_bits=6, shift_bits=4, clamp_count_bits=16),
    # Small enough for exhaustive simulation and formal proofs: 4 columns in 2 beats of 2 lanes.
    "tiny": NMPUConfig(name="tiny", columns=4, lanes=2, adc_bits=3, scale_int=1, scale_frac=2,
                       offset_int=2, offset_frac=1, out_bits=3, exp_bits=1, shift_bits=3,
                       clamp_count_bits=8),
}


def nmpu_preset(name):
    try:
        return NMPU_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown NMPU preset {name!r}; presets: {', '.join(NMPU_PRESETS)}") from None


# -- ESSOP: stochastic outer-product engine -------------------------------------------------------

# Two primitive polynomials per supported LFSR width, as integers (bit k = coefficient of x^k; bit
# `width` and bit 0 always set): (x LFSR, δ LFSR). Primitivity is proven in
# tests/test_golden_essop.py (full period by brute force up to width 20, and for every width the
# order test x^(2^n-1) = 1, x^((2^n-1)/p) != 1 for each prime p | 2^n-1). The pair of a width is
# never a polynomial and its reciprocal, except at width 4, which has only those two.
# Widths 16 and 8 (the `paper` and `tiny` presets) were chosen among all primitive trinomials and
# pentanomials for the smallest deviation of the exact seed-averaged variance of a count from
# BL·p·(1−p): two m-bit windows of a 2m-bit LFSR are often linearly dependent, and the worst
# pairs deviate by 45 % (mag_bits 8, BL 128: the pair below stays within 7 % over a grid of
# magnitudes, median pair 13 %; mag_bits 3, BL 16: 27 %, the small state's limit). Every other
# width takes the two lowest-weight ones.
ESSOP_LFSR_POLYS = {
    4: (0x13, 0x19),                # x^4 + x + 1;  x^4 + x^3 + 1 (reciprocals: the only two)
    5: (0x25, 0x2f),                # x^5 + x^2 + 1;  x^5 + x^3 + x^2 + x + 1
    6: (0x43, 0x5b),                # x^6 + x + 1;  x^6 + x^4 + x^3 + x + 1
    7: (0x83, 0x89),                # x^7 + x + 1;  x^7 + x^3 + 1
    8: (0x187, 0x14d),              # x^8 + x^7 + x^2 + x + 1;  x^8 + x^6 + x^3 + x^2 + 1
    9: (0x211, 0x21b),              # x^9 + x^4 + 1;  x^9 + x^4 + x^3 + x + 1
    10: (0x409, 0x41b),             # x^10 + x^3 + 1;  x^10 + x^4 + x^3 + x + 1
    11: (0x805, 0x817),             # x^11 + x^2 + 1;  x^11 + x^4 + x^2 + x + 1
    12: (0x1053, 0x1069),           # x^12 + x^6 + x^4 + x + 1;  x^12 + x^6 + x^5 + x^3 + 1
    13: (0x201b, 0x2027),           # x^13 + x^4 + x^3 + x + 1;  x^13 + x^5 + x^2 + x + 1
    14: (0x402b, 0x4039),           # x^14 + x^5 + x^3 + x + 1;  x^14 + x^5 + x^4 + x^3 + 1
    15: (0x8003, 0x8011),           # x^15 + x + 1;  x^15 + x^4 + 1
    16: (0x14281, 0x15081),         # x^16 + x^14 + x^9 + x^7 + 1;  x^16 + x^14 + x^12 + x^7 + 1
    17: (0x20009, 0x20021),         # x^17 + x^3 + 1;  x^17 + x^5 + 1
    18: (0x40081, 0x40027),         # x^18 + x^7 + 1;  x^18 + x^5 + x^2 + x + 1
    19: (0x80027, 0x80047),         # x^19 + x^5 + x^2 + x + 1;  x^19 + x^6 + x^2 + x + 1
    20: (0x100009, 0x100053),       # x^20 + x^3 + 1;  x^20 + x^6 + x^4 + x + 1
    21: (0x200005, 0x200027),       # x^21 + x^2 + 1;  x^21 + x^5 + x^2 + x + 1
    22: (0x400003, 0x400039),       # x^22 + x + 1;  x^22 + x^5 + x^4 + x^3 + 1
    23: (0x800021, 0x800201),       # x^23 + x^5 + 1;  x^23 + x^9 + 1
    24: (0x100001b, 0x1000087),     # x^24 + x^4 + x^3 + x + 1;  x^24 + x^7 + x^2 + x + 1
    25: (0x2000009, 0x2000081),     # x^25 + x^3 + 1;  x^25 + x^7 + 1
    26: (0x4000047, 0x400004d),     # x^26 + x^6 + x^2 + x + 1;  x^26 + x^6 + x^3 + x^2 + 1
    27: (0x8000027, 0x80000d1),     # x^27 + x^5 + x^2 + x + 1;  x^27 + x^7 + x^6 + x^4 + 1
    28: (0x10000009, 0x10000201),   # x^28 + x^3 + 1;  x^28 + x^9 + 1
    29: (0x20000005, 0x20000017),   # x^29 + x^2 + 1;  x^29 + x^4 + x^2 + x + 1
    30: (0x40000053, 0x40000113),   # x^30 + x^6 + x^4 + x + 1;  x^30 + x^8 + x^4 + x + 1
    31: (0x80000009, 0x80000041),   # x^31 + x^3 + 1;  x^31 + x^6 + 1
    32: (0x1000000c5, 0x100000125),  # x^32 + x^7 + x^6 + x^2 + 1;  x^32 + x^8 + x^5 + x^2 + 1
}

# Block exponents of binary16 inputs: E_max is an exponent field 1..30 (subnormals and zeros count
# as 1; 31 is Inf/NaN, rejected), and e_v = E_max − 14.
ESSOP_EV_RANGE = (1 - 14, 30 - 14)


@dataclass(frozen=True, kw_only=True)
class ESSOPConfig(_ConfigIdentity):
    """Configuration of ESSOP, the stochastic outer-product engine (spec: design/essop.md).

    `rows` × `cols` counting units fed by `rows` x converters and `cols` δ converters; inputs are
    reduced to `mag_bits`-bit magnitudes; random numbers come from `lfsr_width`-bit leap-forward
    LFSRs (polynomials from `ESSOP_LFSR_POLYS`), one per operand (`rng` "shared") or one per
    converter ("per_converter"); bitstreams are up to `2^log2_bl_max` clocks long; the learning
    rate is 2^−lr_shift with an `lr_shift_bits`-bit register; `double_buffer` builds a second
    bank of counters so the read-out of one product overlaps the counting of the next (timing
    only: the arithmetic is the same). `rows_per_beat` rows of counts leave per read-out beat
    (it divides `rows`; 1 = one row per beat): `rows` / `rows_per_beat` beats per product, read
    out while the next product counts when double-buffered. The counters are sized for
    |C| <= `acc_max`·2^`log2_bl_max` at elaboration: the BL range is the area knob. `acc_max`
    = K > 1 lets up to K products of one exponent add into the counters before one read-out
    (the `acc` flag of the input stream; 1 = every product is read out). `name` only labels
    build folders and test ids.
    """

    name: str = "custom"
    rows: int = 32
    cols: int = 32
    mag_bits: int = 8
    lfsr_width: int = 16
    log2_bl_max: int = 7
    rng: str = "shared"            # "shared": one LFSR per operand; "per_converter": one each
    double_buffer: bool = False
    lr_shift_bits: int = 5
    rows_per_beat: int = 1
    acc_max: int = 1               # products added into the counters per read-out, at most

    def __post_init__(self):
        self._check_name()
        _check_int("rows", self.rows, 1, 1024)
        _check_int("cols", self.cols, 1, 1024)
        _check_int("rows_per_beat", self.rows_per_beat, 1, self.rows)
        if self.rows % self.rows_per_beat:
            raise ValueError(f"`rows_per_beat` must divide `rows` ({self.rows}), not "
                             f"{self.rows_per_beat}")
        _check_int("mag_bits", self.mag_bits, 1, 16)
        if isinstance(self.lfsr_width, bool) or not isinstance(self.lfsr_width, int):
            raise TypeError(f"`lfsr_width` must be an int, not {type(self.lfsr_width).__name__} "
                            f"{self.lfsr_width!r}")
        if self.lfsr_width not in ESSOP_LFSR_POLYS:
            raise ValueError(f"`lfsr_width` must be a width with primitive polynomials in the table "
                             f"({min(ESSOP_LFSR_POLYS)}..{max(ESSOP_LFSR_POLYS)}), not {self.lfsr_width}")
        if self.lfsr_width < self.mag_bits:
            raise ValueError(f"`lfsr_width` must be at least `mag_bits` ({self.mag_bits}): each "
                             f"clock's random number takes `mag_bits` fresh bits, not {self.lfsr_width}")
        _check_int("log2_bl_max", self.log2_bl_max, 0, 10)
        if self.rng not in ("shared", "per_converter"):
            raise ValueError(f"`rng` must be 'shared' or 'per_converter', not {self.rng!r}")
        if not isinstance(self.double_buffer, bool):
            raise TypeError(f"`double_buffer` must be a bool, not {type(self.double_buffer).__name__} "
                            f"{self.double_buffer!r}")
        _check_int("lr_shift_bits", self.lr_shift_bits, 1, 6)
        # |C| <= acc_max·bl_max <= 2^20: the golden model's float64 decode stays exact
        _check_int("acc_max", self.acc_max, 1, 1024)
        if self.rng == "per_converter":
            # converter k starts k·stride steps along its operand's sequence: distinct seeds
            # need stride >= 1
            for field in ("rows", "cols"):
                count = getattr(self, field)
                if count > self.lfsr_max:
                    raise ValueError(
                        f"`{field}` ({count}) must be at most 2^`lfsr_width` − 1 ({self.lfsr_max}) "
                        f"with rng 'per_converter': every converter needs its own seed")

    # -- magnitudes, bitstreams, counts --------------------------------------------------------

    @property
    def q_max(self):
        """Largest magnitude code."""
        return (1 << self.mag_bits) - 1

    @property
    def bl_max(self):
        return 1 << self.log2_bl_max

    @property
    def log2_bl_bits(self):
        """Width of the `log2_bl` register."""
        return unsigned_bits(self.log2_bl_max)

    @property
    def count_range(self):
        """|C| <= K·BL <= acc_max·bl_max (K products added before one read-out)."""
        return -self.acc_max * self.bl_max, self.acc_max * self.bl_max

    @property
    def accumulates(self):
        """The engine has the `acc` input flag (and the group logic): acc_max > 1."""
        return self.acc_max > 1

    @property
    def count_bits(self):
        """Signed width of a counter."""
        return signed_bits(*self.count_range)

    @property
    def counter_banks(self):
        return 2 if self.double_buffer else 1

    @property
    def readout_beats(self):
        """Output beats per product, `rows_per_beat` rows of counts each."""
        return self.rows // self.rows_per_beat

    def clocks_per_product(self, log2_bl, k=1):
        """Steady-state clocks per product at BL = 2^log2_bl without stalls, in groups of k
        products per read-out: per group max(k·BL, beats) double-buffered (read-out overlaps
        counting), k·BL + beats single-buffered; divided by k (a float when k does not divide)."""
        _check_int("k", k, 1, self.acc_max)
        bl = 1 << log2_bl
        group = max(k * bl, self.readout_beats) if self.double_buffer else k * bl + self.readout_beats
        return group // k if group % k == 0 else group / k

    # -- exponents -----------------------------------------------------------------------------

    @property
    def ev_range(self):
        return ESSOP_EV_RANGE

    @property
    def ev_bits(self):
        """Signed width of a block exponent e_v."""
        return signed_bits(*self.ev_range)

    @property
    def lr_shift_max(self):
        return (1 << self.lr_shift_bits) - 1

    @property
    def exp_range(self):
        """Range of E = e_x + e_δ − log2_bl − lr_shift (an error product reports E = 0, inside)."""
        lo, hi = self.ev_range
        return 2 * lo - self.log2_bl_max - self.lr_shift_max, 2 * hi

    @property
    def exp_bits(self):
        """Signed width of the output exponent field."""
        return signed_bits(*self.exp_range)

    # -- random numbers ------------------------------------------------------------------------

    @property
    def poly_x(self):
        return ESSOP_LFSR_POLYS[self.lfsr_width][0]

    @property
    def poly_d(self):
        return ESSOP_LFSR_POLYS[self.lfsr_width][1]

    @property
    def lfsr_max(self):
        """Largest LFSR state; seeds are 1..lfsr_max (an all-zero LFSR never leaves zero)."""
        return (1 << self.lfsr_width) - 1

    @property
    def per_converter(self):
        return self.rng == "per_converter"

    @property
    def lfsrs(self):
        """LFSRs built: 2 shared, or one per converter."""
        return self.rows + self.cols if self.per_converter else 2

    @property
    def seed_stride_x(self):
        """per_converter: x converter i starts i·stride LFSR steps after `seed_x` (evenly spread
        over the period)."""
        return self.lfsr_max // self.rows

    @property
    def seed_stride_d(self):
        return self.lfsr_max // self.cols

    # -- identity and export -------------------------------------------------------------------

    _UNIT = "ESSOP"

    @classmethod
    def _presets(cls):
        return ESSOP_PRESETS

    def derived(self):
        """The derived widths and constants, for the exported JSON."""
        names = ("q_max", "bl_max", "log2_bl_bits", "count_bits", "counter_banks",
                 "readout_beats", "ev_bits",
                 "lr_shift_max", "exp_bits", "poly_x", "poly_d", "lfsr_max", "lfsrs",
                 "seed_stride_x", "seed_stride_d")
        out = {n: getattr(self, n) for n in names}
        out.update(count_range=list(self.count_range), ev_range=list(self.ev_range),
                   exp_range=list(self.exp_range))
        return out


_ESSOP_PAPER = ESSOPConfig(name="paper")
ESSOP_PRESETS = {
    "paper": _ESSOP_PAPER,
    "per_converter": dataclasses.replace(_ESSOP_PAPER, name="per_converter", rng="per_converter"),
    "double": dataclasses.replace(_ESSOP_PAPER, name="double", double_buffer=True),
    # The throughput point (issue 13): 8 rows per read-out beat, counters for BL <= 16 and
    # double-buffered, so a product takes max(BL, 32 / 8) clocks instead of BL + 32.
    "wide": dataclasses.replace(_ESSOP_PAPER, name="wide", rows_per_beat=8, log2_bl_max=4,
                                double_buffer=True),
    # The same with counters sized for BL <= 8, the smallest BL whose training accuracy stays
    # within 0.5 points of exact outer products (docs/training.md): one counter bit less per
    # unit in both banks.
    "wide8": dataclasses.replace(_ESSOP_PAPER, name="wide8", rows_per_beat=8, log2_bl_max=3,
                                 double_buffer=True),
    # Small enough for exhaustive simulation: 4 × 4 units, 3-bit magnitudes, BL up to 16.
    "tiny": ESSOPConfig(name="tiny", rows=4, cols=4, mag_bits=3, lfsr_width=8, log2_bl_max=4,
                        lr_shift_bits=2),
}


def essop_preset(name):
    try:
        return ESSOP_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown ESSOP preset {name!r}; presets: {', '.join(ESSOP_PRESETS)}") from None


# -- FP16 baselines (spec: design/baselines.md) ----------------------------------------------------

FP16_WORD_BITS = 16


@dataclass(frozen=True, kw_only=True)
class LDPUConfig(_ConfigIdentity):
    """Configuration of the LDPU, the FP16 post-processing baseline the NMPU replaces.

    Column-serial: one column's (P, N) `adc_bits`-bit counts (and int8 residual) per clock,
    `columns` clocks per vector; per column five FP16 parameter words (sp, sn, o, a, b); per layer
    the FP16 residual scale `c` and the ReLU / residual switches. Output int8. Stream conventions
    and status outputs are the NMPU's (`beats` = `columns` beats of one lane). `scale_blocks`:
    2 builds the chip's two convert-and-scale blocks, each taking every second column at half
    rate (the spec); 1 builds one fully pipelined block at full rate (the same arithmetic, a
    leaner baseline, so the NMPU's area ratio can be quoted against both). `name` only labels
    build folders and test ids.
    """

    name: str = "custom"
    columns: int = 256
    adc_bits: int = 12
    residual: bool = True
    clamp_count_bits: int = 32
    scale_blocks: int = 2

    def __post_init__(self):
        self._check_name()
        _check_int("columns", self.columns, 1, 4096)
        # counts convert to FP16 exactly up to 2^11 and stay finite below 65520: 15 bits at most
        _check_int("adc_bits", self.adc_bits, 1, 15)
        if not isinstance(self.residual, bool):
            raise TypeError(f"`residual` must be a bool, not {type(self.residual).__name__} "
                            f"{self.residual!r}")
        _check_int("clamp_count_bits", self.clamp_count_bits, 1, 64)
        _check_int("scale_blocks", self.scale_blocks, 1, 2)

    lanes = 1
    out_bits = 8
    dual = True

    @property
    def beats(self):
        return self.columns

    @property
    def adc_max(self):
        return (1 << self.adc_bits) - 1

    @property
    def out_range(self):
        return -128, 127

    @property
    def word_fields(self):
        """(name, bits) of the packed parameter word, least significant field first: the two
        convert-and-scale FMAs' sp, sn, o and the activation's a, b, FP16 each."""
        return tuple((name, FP16_WORD_BITS) for name in ("sp", "sn", "o", "a", "b"))

    @property
    def word_bits(self):
        return FP16_WORD_BITS * len(self.word_fields)

    @property
    def addr_bits(self):
        return unsigned_bits(self.columns - 1)

    _UNIT = "LDPU"

    @classmethod
    def _presets(cls):
        return LDPU_PRESETS

    def derived(self):
        return {"beats": self.beats, "lanes": self.lanes, "out_bits": self.out_bits,
                "adc_max": self.adc_max, "word_bits": self.word_bits, "addr_bits": self.addr_bits,
                "word_fields": [list(f) for f in self.word_fields]}


LDPU_PRESETS = {
    "paper": LDPUConfig(name="paper"),
    "lean": LDPUConfig(name="lean", scale_blocks=1),
    # Small enough for exhaustive simulation: 4 columns of 3-bit counts.
    "tiny": LDPUConfig(name="tiny", columns=4, adc_bits=3, clamp_count_bits=8),
}


def ldpu_preset(name):
    try:
        return LDPU_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown LDPU preset {name!r}; presets: {', '.join(LDPU_PRESETS)}") from None


@dataclass(frozen=True, kw_only=True)
class FP16OuterConfig(_ConfigIdentity):
    """Configuration of the FP16 outer-product array, the baseline ESSOP replaces: `cols`
    pipelined FP16 multipliers produce one row x_i·δ_j (j = 0 … cols − 1) per clock, so a
    `rows` × `cols` product takes `rows` clocks. `name` only labels build folders and test ids.
    """

    name: str = "custom"
    rows: int = 32
    cols: int = 32

    def __post_init__(self):
        self._check_name()
        _check_int("rows", self.rows, 1, 1024)
        _check_int("cols", self.cols, 1, 1024)

    _UNIT = "FP16Outer"

    @classmethod
    def _presets(cls):
        return FP16_OUTER_PRESETS

    def derived(self):
        return {"multipliers": self.cols, "clocks_per_product": self.rows}


FP16_OUTER_PRESETS = {
    "paper": FP16OuterConfig(name="paper"),
    "tiny": FP16OuterConfig(name="tiny", rows=4, cols=4),
}


def fp16_outer_preset(name):
    try:
        return FP16_OUTER_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown FP16Outer preset {name!r}; presets: "
                         f"{', '.join(FP16_OUTER_PRESETS)}") from None
