"""Python driver of a periphery top (hdl/periphery.py): a compiler image (`golden.compiler`)
becomes bus writes, a job and its results; for the ESSOP top, x and δ vectors become product
beats, and the read-out beats the decoded weight update ΔW = C·2^E (`golden.essop`).

The driver talks to any bus object with `async read(addr) -> int` and `async write(addr, value)`
that raise `BusError` on an error response (the cocotb bench adapts cocotbext-axi's
AxiLiteMaster; a core would map them to loads and stores). Addresses and fields come from
`RegModel`, the compiled SystemRDL of the top (`hdl.regmap`); the parameter words and layer
fields from the golden model's packers, so the driver holds no register layout of its own. The
stream beats are packed from the tdata layout the export JSON records (`streams`).
"""

import numpy as np

from golden import baselines as gb
from golden import essop as ge
from golden import nmpu as gn
from golden.compiler import TileImage
from hdl.config import ESSOPConfig, RoundMode
from hdl.periphery import ID_MAGIC, UNIT_CODES
from hdl.regmap import BUS_BITS, RegModel
from verif.payload import Codec

__all__ = ["BusError", "DriverError", "Driver", "image_job"]


class BusError(Exception):
    """The top answered an access with SLVERR."""

    def __init__(self, kind, addr):
        super().__init__(f"bus error (SLVERR) on {kind} of {addr:#x}")
        self.kind, self.addr = kind, addr


class DriverError(Exception):
    """The hardware is not what the driver was built for, or a job failed."""


def image_job(unit, cfg, img: TileImage):
    """(parameter words, layer register fields) of one tile image for the `unit` ("nmpu" or
    "ldpu") of config `cfg`, exactly as `golden.compiler.post_process` runs that path."""
    if unit == "nmpu":
        layer = gn.NMPULayer(shift=img.nmpu.shift, pre_cut=0, round_mode=RoundMode.HALF_EVEN,
                             relu_mid=0, relu_out=int(img.relu), residual_en=int(img.residual_en))
        regs = gn.check_layer(cfg, layer)
        if not cfg.residual:
            regs.pop("residual_en")
        return gn.pack_params(cfg, img.nmpu.params), {k: int(v) for k, v in regs.items()}
    if unit == "ldpu":
        layer = gb.LDPULayer(relu_out=int(img.relu), residual_en=int(img.residual_en))
        regs = {"c": int(layer.c), "relu_mid": int(layer.relu_mid),
                "relu_out": int(layer.relu_out), "residual_en": int(layer.residual_en)}
        gb.check_layer(cfg, layer)
        if not cfg.residual:
            regs = {k: v for k, v in regs.items() if k not in ("c", "residual_en")}
        return gb.pack_params(cfg, img.ldpu.params), regs
    raise ValueError(f"`unit` must be 'nmpu' or 'ldpu', not {unit!r}")


class Driver:
    """One periphery top: `meta` is its export JSON (config, stream layouts), `model` the
    `RegModel` of its SystemRDL, `bus` the access object (see the module doc)."""

    def __init__(self, bus, model: RegModel, meta):
        self.bus, self.model, self.meta = bus, model, meta
        cfg = meta["config"]
        self.unit = cfg["unit"]
        (self.job_field,) = model["JOB"].fields
        self.codec_in = Codec(meta["streams"]["s_axis"])
        self.codec_out = Codec(meta["streams"]["m_axis"])
        self.out_beats = meta["derived"]["out_beats"]
        if self.unit == "essop":
            if model.mem is not None:
                raise DriverError("an ESSOP top has no parameter memory, this map has one")
            self.essop = ESSOPConfig.from_dict(cfg["core"])
            return
        self.columns = cfg["core"]["columns"]
        self.lanes = cfg["core"].get("lanes", 1)
        self.beats = self.columns // self.lanes
        self.images = cfg.get("images", 1)
        if model.mem is None:
            raise DriverError(f"a {self.unit} top needs a parameter window, this map has none")
        name, base, entries, readable, writable = model.mem
        slots = self.images * self.columns
        if entries % slots:
            raise DriverError(f"{name} has {entries} words, not a multiple of {self.images} "
                              f"images of {self.columns} columns")
        self.params_base, self.stride = base, entries // slots

    # -- registers ---------------------------------------------------------------------------

    async def read_reg(self, name):
        return self.model[name].decode(await self.bus.read(self.model.address(name)))

    async def write_reg(self, name, **fields):
        """Writes the whole register: fields not given are 0."""
        await self.bus.write(self.model.address(name), self.model[name].encode(**fields))

    async def identify(self):
        """Checks ID and GEOMETRY against the JSON; returns the ID fields."""
        ident = await self.read_reg("ID")
        if ident["magic"] != ID_MAGIC or ident["unit"] != UNIT_CODES[self.unit]:
            raise DriverError(f"not a {self.unit} periphery: ID {ident}")
        geo = await self.read_reg("GEOMETRY")
        want = {name: self.meta["config"]["core"].get(name, 1) for name in geo}
        if geo != want:
            raise DriverError(f"GEOMETRY {geo} differs from the config {want}")
        return ident

    async def status(self):
        return await self.read_reg("STATUS")

    async def clamp_count(self):
        regs = sorted((r for r in self.model.regs.values() if r.name.startswith("CLAMP")),
                      key=lambda r: r.address)
        count = 0
        for k, r in enumerate(regs):
            count |= (await self.bus.read(r.address)) << (k * BUS_BITS)
        return count

    async def clear(self):
        await self.write_reg("CTRL", clear=1)

    # -- a layer -------------------------------------------------------------------------------

    def _check_image(self, image):
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)) \
                or not 0 <= image < self.images:
            raise DriverError(f"`image` must be an int in [0, {self.images - 1}] (the top holds "
                              f"{self.images} parameter images), not {image!r}")
        return int(image)

    async def write_params(self, words, columns=None, image=0):
        """Parameter words (Python ints) of columns 0.. (or of `columns`) of parameter image
        `image`, each as its bus words, least significant first: the last one commits the
        column."""
        image = self._check_image(image)
        columns = range(len(words)) if columns is None else columns
        n_sub = -(-self.meta["derived"]["core"]["word_bits"] // BUS_BITS)
        for col, word in zip(columns, words):
            slot = image * self.columns + col
            base = self.params_base + slot * self.stride * (BUS_BITS // 8)
            for k in range(n_sub):
                await self.bus.write(base + k * (BUS_BITS // 8),
                                     (int(word) >> (k * BUS_BITS)) & ((1 << BUS_BITS) - 1))

    async def write_layer(self, **fields):
        """All layer fields (as the golden layer record names them), spread over LAYER0.. ."""
        where = self.model.layer_fields()
        missing = sorted(set(where) - set(fields))
        unknown = sorted(set(fields) - set(where))
        if missing or unknown:
            raise DriverError(f"layer fields: missing {missing}, unknown {unknown}")
        per_reg = {}
        for name, value in fields.items():
            reg, _, _ = where[name]
            per_reg.setdefault(reg.name, {})[name] = value
        for reg, values in per_reg.items():
            await self.write_reg(reg, **values)

    async def start(self, count, image=0, **pulses):
        """A job of `count` vectors (ESSOP: products) on parameter image `image` (NMPU, LDPU:
        the descriptor's IMAGE.base); `pulses` of CTRL (ESSOP: reseed=1) go with the start."""
        if self.unit != "essop":
            await self.write_reg("IMAGE", base=self._check_image(image))
        elif image != 0:
            raise DriverError("an ESSOP top has no parameter images")
        await self.write_reg("JOB", **{self.job_field: count})
        await self.write_reg("CTRL", start=1, **pulses)

    async def program(self, words, layer, image=0):
        """A layer's parameter words into image `image` and its layer registers."""
        await self.write_params(words, image=image)
        await self.write_layer(**layer)

    # -- stream beats --------------------------------------------------------------------------

    def input_beats(self, p=None, n=None, x=None, r=None):
        """(vectors, columns) counts (and int8 residuals) -> s_axis tdata integers, vector by
        vector, `beats` per vector."""
        named = {"p": p, "n": n, "x": x, "res": r}
        fields = {}
        for name in self.codec_in.fields:
            v = named[name]
            if v is None:
                if name == "res":
                    v = np.zeros_like(p if p is not None else x)
                else:
                    raise DriverError(f"the {self.unit} input needs `{name}`")
            v = np.asarray(v, dtype=np.int64)
            if v.ndim != 2 or v.shape[1] != self.columns:
                raise DriverError(f"`{name}` must be (vectors, {self.columns}), not {v.shape}")
            fields[name] = v.reshape(-1, self.lanes)
        return self.codec_in.encode(fields)

    def outputs(self, beats):
        """m_axis tdata integers -> (vectors, columns) int8 codes."""
        y = self.codec_out.decode(list(beats))["y"]
        return y.reshape(-1, self.columns)

    # -- ESSOP: outer products -----------------------------------------------------------------

    def product_beats(self, x_bits, d_bits):
        """A layer's x (M) and δ (N) binary16 patterns -> s_axis tdata integers, one product
        per beat in `golden.essop.tile_beats` order (row tiles outer, column tiles inner)."""
        xs, ds = ge.tile_beats(self.essop, x_bits, d_bits)
        return self.codec_in.encode({"x": xs, "d": ds})

    def readout(self, beats):
        """m_axis tdata integers -> counts C (P, rows, cols), E (P,) and error (P,) per
        product."""
        cfg = self.essop
        beats = list(beats)
        if len(beats) % self.out_beats:
            raise DriverError(f"{len(beats)} read-out beats, not a whole number of products of "
                              f"{self.out_beats} beats")
        f = self.codec_out.decode(beats)
        per = self.out_beats
        return (f["c"].reshape(-1, cfg.rows, cfg.cols), f["exp"][per - 1::per],
                f["error"][per - 1::per])

    def update(self, beats, m, n):
        """The read-out of an M × N layer's products -> {c (M, N), exp and error per tile
        (R, K), dw (M, N) = C·2^E}, as `golden.essop.tiled_outer_product` arranges them."""
        cfg = self.essop
        c, e, err = self.readout(beats)
        r_tiles, k_tiles = -(-m // cfg.rows), -(-n // cfg.cols)
        if c.shape[0] != r_tiles * k_tiles:
            raise DriverError(f"{c.shape[0]} products read, a {m} x {n} layer has "
                              f"{r_tiles * k_tiles}")
        c = (c.reshape(r_tiles, k_tiles, cfg.rows, cfg.cols).transpose(0, 2, 1, 3)
             .reshape(r_tiles * cfg.rows, k_tiles * cfg.cols)[:m, :n])
        e, err = e.reshape(r_tiles, k_tiles), err.reshape(r_tiles, k_tiles)
        return {"c": c, "exp": e, "error": err,
                "dw": ge.decode(cfg, c, ge.tile_map(cfg, e, m, n))}

    async def outer_product(self, x_bits, d_bits, log2_bl, lr_shift, seeds, send, recv):
        """One layer's weight update on the top: the registers (and, with `seeds` = (seed_x,
        seed_d), a reseed at the first product), the job, the products through `send(beats)`,
        the read-out from `recv(n)` (both awaitables of the caller's stream drivers). Returns
        `update`'s dict."""
        x_bits, d_bits = np.asarray(x_bits), np.asarray(d_bits)
        beats = self.product_beats(x_bits, d_bits)
        seed_x, seed_d = seeds if seeds is not None else (1, 1)
        await self.write_layer(log2_bl=log2_bl, lr_shift=lr_shift, seed_x=seed_x, seed_d=seed_d)
        await self.start(len(beats), **({"reseed": 1} if seeds is not None else {}))
        await send(beats)
        out = await recv(len(beats) * self.out_beats)
        return self.update(out, x_bits.size, d_bits.size)
