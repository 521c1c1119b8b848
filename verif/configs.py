"""Random valid configurations, drawn reproducibly from a seed (for the regression)."""

import numpy as np

from hdl.config import ESSOP_LFSR_POLYS, ESSOPConfig, FP16OuterConfig, LDPUConfig, NMPUConfig

__all__ = ["random_nmpu_configs", "random_essop_configs", "random_ldpu_configs",
           "random_fp16outer_configs"]


def random_nmpu_configs(seed, count):
    """`count` distinct valid NMPU configs, small enough to build quickly: every field drawn,
    invalid draws rejected by NMPUConfig itself (never filtered by a second rule set)."""
    rng = np.random.default_rng([seed, 0x4E4D5055])
    out, tries = [], 0
    while len(out) < count:
        tries += 1
        if tries > 10000:
            raise RuntimeError("could not draw valid NMPU configs")
        lanes = int(rng.choice([1, 2, 3, 4, 8]))
        beats = int(rng.integers(1, 5))
        fields = dict(
            name="rand", columns=lanes * beats,
            lanes=lanes, adc_bits=int(rng.integers(2, 13)),
            input_mode=str(rng.choice(["dual", "signed"])),
            scale_int=int(rng.integers(0, 3)), scale_frac=int(rng.integers(0, 9)),
            offset_int=int(rng.integers(1, 9)), offset_frac=int(rng.integers(0, 8)),
            out_bits=int(rng.integers(3, 11)), residual=bool(rng.integers(0, 2)),
            exp_bits=int(rng.choice([0, 0, 1, 2, 3])), shift_bits=int(rng.integers(3, 6)),
            clamp_count_bits=int(rng.integers(1, 33)),
            # precision knobs (issue 13)
            single_scale=bool(rng.random() < 0.25), drop_bits=int(rng.choice([0, 0, 1, 3, 6])))
        if rng.random() < 0.3:
            top = (1 << fields["shift_bits"]) - 1
            fields |= dict(static_layer=True, static_shift=int(rng.integers(0, top + 1)),
                           static_pre_cut=int(rng.integers(0, top + 1)),
                           static_round=int(rng.integers(0, 3)))
        try:
            cfg = NMPUConfig(**fields)
        except ValueError:
            continue
        if cfg not in out:
            out.append(cfg)
    return out


def random_essop_configs(seed, count):
    """`count` distinct valid ESSOP configs, small arrays so builds and runs stay quick: every
    field drawn, invalid draws (e.g. an LFSR narrower than the magnitudes) rejected by
    ESSOPConfig itself."""
    rng = np.random.default_rng([seed, 0x4553534F])
    widths = sorted(ESSOP_LFSR_POLYS)
    out, tries = [], 0
    while len(out) < count:
        tries += 1
        if tries > 10000:
            raise RuntimeError("could not draw valid ESSOP configs")
        fields = dict(
            name="rand", rows=int(rng.integers(1, 7)), cols=int(rng.integers(1, 7)),
            mag_bits=int(rng.integers(1, 14)), lfsr_width=int(rng.choice(widths[:13])),
            log2_bl_max=int(rng.integers(0, 6)),
            rng=str(rng.choice(["shared", "per_converter"])),
            double_buffer=bool(rng.integers(0, 2)), lr_shift_bits=int(rng.integers(1, 5)),
            rows_per_beat=int(rng.integers(1, 4)), acc_max=int(rng.choice([1, 1, 2, 3, 4])))
        try:
            cfg = ESSOPConfig(**fields)
        except ValueError:
            continue
        if cfg not in out:
            out.append(cfg)
    return out


def _draw(cls, seed, salt, count, fields_of):
    rng = np.random.default_rng([seed, salt])
    out, tries = [], 0
    while len(out) < count:
        tries += 1
        if tries > 10000:
            raise RuntimeError(f"could not draw valid {cls.__name__} configs")
        try:
            cfg = cls(name="rand", **fields_of(rng))
        except ValueError:
            continue
        if cfg not in out:
            out.append(cfg)
    return out


def random_ldpu_configs(seed, count):
    """`count` distinct valid LDPU configs with few columns (every field drawn)."""
    return _draw(LDPUConfig, seed, 0x4C445055, count, lambda rng: dict(
        columns=int(rng.integers(1, 9)), adc_bits=int(rng.integers(1, 16)),
        residual=bool(rng.integers(0, 2)), clamp_count_bits=int(rng.integers(1, 33)),
        scale_blocks=int(rng.integers(1, 3))))


def random_fp16outer_configs(seed, count):
    """`count` distinct valid FP16 outer-product configs, small arrays."""
    return _draw(FP16OuterConfig, seed, 0x46503136, count, lambda rng: dict(
        rows=int(rng.integers(1, 9)), cols=int(rng.integers(1, 9))))
