"""Result cache on the driver: one JSON file per evaluation, keyed by a hash of what decides its
result.

A key is the SHA-256 of a canonical JSON document of its parts: the unit, the config
(`cfg.to_dict()`), the flow or evaluator settings, the tool versions (the Liberty file's hash
among them) and, for anything built from RTL, the generated Verilog itself, so that a change of
the generator that changes the Verilog misses the cache even when the config did not change.
Values are JSON documents written atomically (a temporary file in the same folder, fsync,
`os.replace`): a sweep killed mid-write leaves either the old entry or the new one, never half
a file. The cache lives where the driver runs; workers return their results as data (a cache
local to a worker would miss whenever a task lands on another machine).

    from engine.cache import Cache, key
    cache = Cache("build/cache/synth")
    k = key(unit="nmpu", config=cfg.to_dict(), flow={...}, tools=tools.versions, verilog=text)
    row = cache.get(k)            # None on a miss
    cache.put(k, row)
"""

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["key", "canonical", "Cache", "CacheError"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = ROOT / "build" / "cache"


class CacheError(ValueError):
    """A key part that cannot be hashed canonically, or a damaged cache entry."""


def _plain(value, where):
    """value as plain JSON types (tuples as lists, keys as strings); rejects what would make
    two different values hash alike or one value hash two ways (NaN, sets, objects)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheError(f"cache key part `{where}` holds a non-finite number ({value})")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CacheError(f"cache key part `{where}` has a non-string key {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict(), where)
    raise CacheError(f"cache key part `{where}` is a {type(value).__name__}, not plain JSON data")


def canonical(**parts):
    """The canonical JSON text of the key parts (sorted keys, no spaces)."""
    return json.dumps(_plain(parts, "key"), sort_keys=True, separators=(",", ":"))


def key(**parts):
    """The hex SHA-256 of the canonical JSON of the parts (str values such as Verilog text are
    hashed whole)."""
    if not parts:
        raise CacheError("a cache key needs at least one part")
    return hashlib.sha256(canonical(**parts).encode()).hexdigest()


class Cache:
    """A folder of `<key[:2]>/<key>.json` entries; `hits` and `misses` count the lookups."""

    def __init__(self, root=DEFAULT_ROOT):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, k):
        if not isinstance(k, str) or len(k) != 64 or any(c not in "0123456789abcdef" for c in k):
            raise CacheError(f"a cache key is 64 lower-case hex digits, not {k!r}")
        return self.root / k[:2] / f"{k}.json"

    def get(self, k):
        """The stored value, or None (a miss)."""
        p = self.path(k)
        try:
            text = p.read_text()
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CacheError(f"damaged cache entry {p}: {exc}; delete it to re-run the point") \
                from None
        if not isinstance(doc, dict) or doc.get("key") != k or "value" not in doc:
            raise CacheError(f"damaged cache entry {p}: not a value stored under this key")
        self.hits += 1
        return doc["value"]

    def __contains__(self, k):
        return self.path(k).is_file()

    def put(self, k, value, **meta):
        """Store value (plain JSON data) under k atomically; meta (e.g. the key parts in clear)
        is kept beside it for people reading the cache."""
        p = self.path(k)
        p.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"key": k, "value": _plain(value, "value"),
                           "meta": _plain(meta, "meta")}, indent=1) + "\n"
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{k[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p

    @property
    def hit_rate(self):
        n = self.hits + self.misses
        return self.hits / n if n else 0.0
