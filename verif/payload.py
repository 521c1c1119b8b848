"""Vectorised packing of stream payloads from the port map that `hdl.export` writes.

A payload travels as one integer per beat (Amaranth flattens a struct port into one vector);
`Codec` turns K integers into a dict of arrays and back, for any struct of scalars and arrays.
"""

import numpy as np

__all__ = ["Codec"]


class Codec:
    """Encode/decode the integer value of a struct port described by `port` (its port-map entry)."""

    def __init__(self, port):
        self.width = port["width"]
        self.nbytes = (self.width + 7) // 8
        self.fields = {}
        for name, f in port["fields"].items():
            if "length" in f:
                elem = f["elem"]
                self.fields[name] = (f["offset"], elem["width"], elem["signed"], f["length"])
            else:
                self.fields[name] = (f["offset"], f["width"], f["signed"], None)

    def _bits(self, values):
        raw = b"".join(int(v).to_bytes(self.nbytes, "little") for v in values)
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(len(values), self.nbytes)
        return np.unpackbits(rows, axis=1, bitorder="little")[:, :self.width].astype(np.int64)

    def decode(self, values):
        """K integers -> {field: array (K,) or (K, length)} of int64."""
        bits = self._bits(values)
        out = {}
        for name, (offset, width, signed, length) in self.fields.items():
            n = length or 1
            chunk = bits[:, offset:offset + width * n].reshape(len(values), n, width)
            v = chunk @ (np.int64(1) << np.arange(width, dtype=np.int64))
            if signed:
                v = np.where(v >> (width - 1) & 1, v - (np.int64(1) << width), v)
            out[name] = v if length else v[:, 0]
        return out

    def encode(self, fields):
        """{field: array (K,) or (K, length)} -> list of K integers. Values must fit their
        fields (a ValueError names the field otherwise)."""
        k = None
        for name in self.fields:
            if name not in fields:
                raise ValueError(f"payload field `{name}` is missing")
            k = len(np.asarray(fields[name]))
        # straight into 64-bit words (a bit array, or a row at a time through int.from_bytes,
        # costs seconds per million beats), then one integer per row
        words = np.zeros((k, (self.nbytes * 8 + 63) // 64), dtype=np.uint64)
        for name, (offset, width, signed, length) in self.fields.items():
            v = np.asarray(fields[name], dtype=np.int64).reshape(k, length or 1)
            lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            if v.size and (v.min() < lo or v.max() > hi):
                raise ValueError(f"payload field `{name}` out of [{lo}, {hi}]")
            u = (v & ((1 << width) - 1)).astype(np.uint64)
            for j in range(length or 1):
                at = offset + j * width
                word, shift = divmod(at, 64)
                words[:, word] |= u[:, j] << np.uint64(shift)
                if shift + width > 64:
                    words[:, word + 1] |= u[:, j] >> np.uint64(64 - shift)
        out = words[:, 0].tolist()
        for i in range(1, words.shape[1]):
            out = [v | (w << (64 * i)) for v, w in zip(out, words[:, i].tolist())]
        return out
