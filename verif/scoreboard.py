"""In-order scoreboard: compares each output beat with the golden model's expectation.

Expectations are dicts of arrays; actual beats the same. The first mismatch fails at once with
the beat number, field, lane, and both values in hex; `check_done` fails when expectations or
outputs are left over.
"""

from collections import deque

import numpy as np

__all__ = ["Scoreboard", "ScoreboardError"]


class ScoreboardError(AssertionError):
    pass


def _hex(v, width):
    return f"0x{int(v) & ((1 << width) - 1):0{(width + 3) // 4}x} ({int(v)})"


class Scoreboard:
    def __init__(self, name, widths):
        """`widths`: field -> bit width, for printing values in hex."""
        self.name = name
        self.widths = widths
        self.expected = deque()
        self.matched = 0
        self.values = 0

    def expect(self, item):
        self.expected.append(item)

    def flush(self):
        """Drop expectations (the DUT was reset: in-flight beats are lost by design)."""
        self.expected.clear()

    def got(self, actual, ref=None):
        if not self.expected:
            raise ScoreboardError(f"{self.name}: output beat {self.matched} arrived with nothing "
                                  f"expected: {actual}")
        want = self.expected.popleft()
        for field, value in want.items():
            if field.startswith("_"):
                continue
            a, w = np.atleast_1d(actual[field]), np.atleast_1d(value)
            bad = np.flatnonzero(a != w)
            if bad.size:
                lane = int(bad[0])
                width = self.widths.get(field, 64)
                raise ScoreboardError(
                    f"{self.name}: first mismatch at output beat {self.matched}, field `{field}`, "
                    f"lane {lane}: expected {_hex(w[lane], width)}, got {_hex(a[lane], width)} "
                    f"({bad.size} lane(s) differ; beat info: {want.get('_info', '')})")
            self.values += a.size if field != "last" else 0
        self.matched += 1

    def got_batch(self, actual):
        """`actual`: field -> array with the beats on the first axis; compared in one go."""
        fields = [f for f in actual]
        k = len(actual[fields[0]])
        if len(self.expected) < k:
            for j in range(k):  # reports the beat that has no expectation
                self.got({f: actual[f][j] for f in fields})
        want = [self.expected.popleft() for _ in range(k)]
        for f in fields:
            w = np.stack([np.atleast_1d(x[f]) for x in want])
            a = np.asarray(actual[f]).reshape(w.shape)
            if not np.array_equal(a, w):
                j = int(np.flatnonzero((a != w).any(axis=1))[0])
                self.expected.extendleft(reversed(want[j:]))
                self.matched += j
                self.got({f2: actual[f2][j] for f2 in fields})  # raises with the details
            if f != "last":
                self.values += a.size
        self.matched += k

    def check_done(self):
        if self.expected:
            raise ScoreboardError(f"{self.name}: {len(self.expected)} expected beat(s) never "
                                  f"came out after {self.matched} matched")
