"""Unit plumbing shared by the stream units (NMPU, LDPU): their common port signature,
framing, per-lane parameter memory, the saturating clamp counter. Each helper adds its logic to
the caller's module `m`."""

from amaranth import C, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["postproc_signature", "check_unit_args", "check_images", "param_addr_bits", "framing", "param_memory",
           "clamp_counter", "popcount", "MAX_IMAGES"]

MAX_IMAGES = 256  # parameter images of a unit (each a whole copy of the columns' words)


def postproc_signature(cfg, input_layout, output_layout, layer_layout, param_layout, images=1):
    """The ports of a post-processing unit (the LDPU is a drop-in for the NMPU): `i`/`o` streams,
    the per-layer registers, the parameter write port, `clear` and the status outputs. With
    `images` > 1 parameter images (see `param_memory`), `wr.addr` spans images × columns and
    `image` selects the image the beats read."""
    sig = {
        "i": In(stream.Signature(input_layout)),
        "o": Out(stream.Signature(output_layout)),
        "layer": In(layer_layout),
        "wr": In(wiring.Signature({"en": Out(1), "addr": Out(param_addr_bits(cfg, images)),
                                   "data": Out(param_layout)})),
        "clear": In(1),
        "frame_error": Out(1),
        "reg_error": Out(1),
        "clamp_count": Out(cfg.clamp_count_bits),
    }
    if images > 1:
        sig["image"] = In(range(images))
    return sig


def check_unit_args(unit, cfg, cfg_cls, images):
    """A post-processing unit's constructor arguments: `cfg` must be a `cfg_cls`, `images` an int
    >= 1. A refused unit is never elaborated: it is silenced (no unused-elaboratable warning)."""
    try:
        if not isinstance(cfg, cfg_cls):
            raise TypeError(f"{type(unit).__name__} needs an {cfg_cls.__name__}, not "
                            f"{type(cfg).__name__}")
        check_images(images)
    except (TypeError, ValueError):
        unit._MustUse__silence = True
        raise


def check_images(images):
    """`images`, the parameter images a unit holds: an int >= 1."""
    if isinstance(images, bool) or not isinstance(images, int):
        raise TypeError(f"`images` must be an int, not {type(images).__name__} {images!r}")
    if not 1 <= images <= MAX_IMAGES:
        raise ValueError(f"`images` must be in [1, {MAX_IMAGES}], not {images}")


def param_addr_bits(cfg, images=1):
    """Width of the write port's address: a column of one of `images` images."""
    return cfg.addr_bits if images == 1 else (images * cfg.columns - 1).bit_length()


def framing(m, accept, last, beats):
    """Beat counter and framing-error event (golden: `golden.nmpu.frame`): a vector is `beats`
    accepted beats, and `last` must be set on exactly its final one. Returns (beat, event)."""
    if beats == 1:  # every beat is a whole vector
        return C(0, 1), accept & ~last
    beat = Signal(range(beats), name="beat")
    final = beat == beats - 1
    with m.If(accept):
        m.d.sync += beat.eq(Mux(last | final, 0, beat + 1))
    return beat, accept & (last != final)


def param_memory(m, wr, beat, layout, columns, lanes, images=1, image=None):
    """One memory of `images × columns // lanes` parameter words (of `layout`) per lane, read
    combinationally by the beat counter, so a write lands for beats accepted after it. Per-lane
    memories keep the write data a plain fan-out of the port (no lanes-wide replicated word).
    `wr` carries en, addr and data; addr = s·columns + j is column j of image s (`lanes` divides
    `columns`, so that is row s·beats + j // lanes of lane j % lanes), and beats read image
    `image` (row image·beats + beat). Returns (words, write to an address >= images·columns)."""
    beats = columns // lanes
    depth = images * beats
    addr = wr.addr
    if lanes & (lanes - 1) == 0:
        lane_bits = lanes.bit_length() - 1
        row, lane = addr[lane_bits:], addr[:lane_bits]
    else:
        row, lane = addr // lanes, addr % lanes
    in_range = addr < images * columns
    row_read = beat if images == 1 else image * beats + beat
    words = []
    for l in range(lanes):
        en = wr.en & in_range & (lane == l)
        if depth == 1:  # one word per lane: a register (a memory would need 0 address bits)
            word = Signal(layout, name=f"params{l}", reset_less=True)
            with m.If(en):
                m.d.sync += word.eq(wr.data)
            words.append(word)
            continue
        mem = Memory(shape=layout, depth=depth, init=[])
        m.submodules[f"params{l}"] = mem
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")
        m.d.comb += [wp.addr.eq(row), wp.data.eq(wr.data), rp.addr.eq(row_read), wp.en.eq(en)]
        words.append(rp.data)
    return words, wr.en & ~in_range


def clamp_counter(m, count, clear, fresh, clamped, stages=0, group=8):
    """Adds to `count` the flags `clamped` of each beat that entered the output register on the
    clock before (`fresh` one clock earlier); saturates at the counter's maximum, and `clear`
    restarts it from 0.

    `stages` > 0 pipelines the count so that it does not set f_max at many lanes: each stage
    adds `group` terms of the stage before and registers the partial sums (the flags, gated by
    the beat's `counted` pulse, enter the first stage), and the last stage's single sum goes into
    the saturating add. The count stays exact; a beat reaches `count` `stages` clocks later, and
    events still in the tree when `clear` rises are counted after it."""
    lanes, bits = len(clamped), len(count)
    counted = Signal(name="counted")
    m.d.sync += counted.eq(fresh)
    if stages:
        terms = [(Mux(counted, clamped[k], 0), 1) for k in range(lanes)]  # (value, its maximum)
        for level in range(stages):
            sums = []
            for g in range(0, len(terms), group):
                chunk = terms[g:g + group]
                top_sum = sum(hi for _, hi in chunk)
                reg = Signal(range(top_sum + 1), name=f"clamp_sum{level}_{g // group}")
                m.d.sync += reg.eq(_adder_tree(v for v, _ in chunk))
                sums.append((reg, top_sum))
            terms = sums
        if len(terms) != 1:
            raise ValueError(f"{stages} clamp-count stages of {group} leave {len(terms)} sums "
                             f"for {lanes} lanes, not one")
        events = terms[0][0]
    else:
        events = Signal(range(lanes + 1), name="clamp_events")
        m.d.comb += events.eq(Mux(counted, popcount(clamped), 0))
    top = (1 << bits) - 1
    total = Signal(bits + 1 + lanes.bit_length(), name="clamp_total")
    base = Mux(clear, 0, count)
    m.d.comb += total.eq(base + events)
    m.d.sync += count.eq(Mux(total > top, top, total))


def _adder_tree(terms):
    """Balanced adder tree over a list of values."""
    terms = list(terms)
    while len(terms) > 1:
        paired = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = paired + (terms[-1:] if len(terms) % 2 else [])
    return terms[0]


def popcount(bits):
    """Balanced adder tree over the bits of `bits`."""
    return _adder_tree(bits[k] for k in range(len(bits)))
