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

__all__ = ["RoundMode", "NMPUConfig", "NMPU_PRESETS", "nmpu_preset", "signed_bits", "unsigned_bits"]

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


@dataclass(frozen=True, kw_only=True)
class NMPUConfig:
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

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", self.name):
            raise ValueError(f"`name` must be lower-case letters, digits, '_' or '-', not {self.name!r}")
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
    def frac(self):
        """F: fraction bits of the accumulator."""
        return max(self.scale_frac, self.offset_frac)

    @property
    def scale_align(self):
        """Left shift that puts a product on the accumulator's grid."""
        return self.frac - self.scale_frac

    @property
    def offset_align(self):
        """Left shift that puts the offset on the accumulator's grid."""
        return self.frac - self.offset_frac

    @property
    def dual(self):
        return self.input_mode == "dual"

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
    def product_bits(self):
        """Unsigned width of one branch product sp·P (dual mode)."""
        return self.scale_bits + self.adc_bits

    @property
    def term_range(self):
        """Range of the scaled input term (sp·P − sn·N, or sp·X) before alignment."""
        if self.dual:
            top = self.scale_max * self.adc_max
            return -top, top
        lo, hi = self.x_range
        return self.scale_max * lo, self.scale_max * hi

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
        if self.dual:
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

    # -- identity and export -------------------------------------------------------------------

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise TypeError(f"an NMPU config must be a dict, not {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown NMPU config field(s): {', '.join(unknown)}")
        return cls(**d)

    def derived(self):
        """The derived widths, for the exported JSON."""
        names = ("beats", "frac", "scale_bits", "offset_bits", "acc_bits", "word_bits", "addr_bits",
                 "max_shift", "max_total_shift")
        return {n: getattr(self, n) for n in names}

    @property
    def tag(self):
        """Build-folder and test-id name: the preset name, or name plus a hash of the fields."""
        if self.name in NMPU_PRESETS and NMPU_PRESETS[self.name] == self:
            return self.name
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:8]}"


NMPU_PRESETS = {
    "paper": NMPUConfig(name="paper"),
    "exp": NMPUConfig(name="exp", exp_bits=3),
    "serial": NMPUConfig(name="serial", lanes=1),
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
