"""Functional coverage: named bins counted during a run, required bins checked at the end.

A `Coverage` keeps `group -> bin -> hits`. Bins declared up front (`require`) must be hit; the
summary lists every group with hit/required counts, and `write` stores the counts as JSON so
runs can be merged.
"""

import json
from collections import defaultdict
from pathlib import Path

__all__ = ["Coverage", "merge"]


class Coverage:
    def __init__(self, name):
        self.name = name
        self.hits = defaultdict(lambda: defaultdict(int))
        self.required = defaultdict(set)

    def require(self, group, bins):
        self.required[group].update(str(b) for b in bins)
        self.hits[group]  # noqa: B018 - create the group so it shows in the summary

    def hit(self, group, bin_, count=1):
        if count:
            self.hits[group][str(bin_)] += int(count)

    def hit_many(self, group, bins_counts):
        for b, c in bins_counts:
            self.hit(group, b, c)

    def missing(self):
        return {g: sorted(req - {b for b, c in self.hits[g].items() if c})
                for g, req in self.required.items()
                if req - {b for b, c in self.hits[g].items() if c}}

    def summary(self):
        lines = [f"coverage of {self.name}:"]
        for group in sorted(self.hits):
            hit = {b for b, c in self.hits[group].items() if c}
            req = self.required.get(group, set())
            if req:
                lines.append(f"  {group:<22} {len(req & hit):>5}/{len(req):<5} required bins hit"
                             + (f"  MISSING {sorted(req - hit)[:8]}" if req - hit else ""))
            else:
                lines.append(f"  {group:<22} {len(hit):>5} bins hit, {sum(self.hits[group].values())} hits")
        return "\n".join(lines)

    def to_dict(self):
        return {"name": self.name,
                "hits": {g: dict(b) for g, b in self.hits.items()},
                "required": {g: sorted(b) for g, b in self.required.items()}}

    def write(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")


def merge(dicts, name="merged"):
    """Merge coverage dicts (from `to_dict` or JSON files) into one Coverage."""
    cov = Coverage(name)
    for d in dicts:
        for g, bins in d["hits"].items():
            for b, c in bins.items():
                cov.hit(g, b, c)
        for g, bins in d["required"].items():
            cov.require(g, bins)
    return cov
