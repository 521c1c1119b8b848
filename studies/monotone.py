"""The `monotone` sampler of the design-space search: it uses what is known about the problem
instead of learning it from samples.

Two facts about the knobs of a unit hold without evaluating anything:
- the cost side (datapath bits, area, energy) grows with the widths (`adc_bits`, `scale_frac`,
  ...), and for the search-quality subspace the cost is known outright (`cost`);
- the accuracy loss is, in expectation, non-increasing as a width grows (`directions`: +1 for a
  knob whose larger values are the more accurate, -1 for one like `drop_bits`).

So an evaluated point q bounds every point p that is narrower in every width (same other
knobs): loss(p) >= loss(q) - margin. A point whose lower bound is already matched by an
evaluated point that costs no more cannot be on the front, and a point whose lower bound is over
the accuracy limit cannot be feasible: neither is proposed. Among the rest the cheapest comes
first (the front is the run of record-low losses in order of cost), the widest point of the
space opening the search (it bounds every other point).

The loss is measured on a finite test set and two device seeds, so it is monotone only up to
noise (one test image of the digits set is 0.046 pp). The sampler starts with `margin` 0 (exact
monotonicity) and, when every remaining point is excluded at the current margin, widens it by
`step` and goes on: the points that exact monotonicity excludes come last, in order of how much
noise they need. It never proposes a point twice and proposes nothing once every point of an
enumerable space is evaluated or pending.

`MonotoneSearch` is the proposal rule in plain Python (points as tuples in space order, losses
as a dict); `MonotoneSampler` runs it inside Optuna's ask/tell (studies.explore `--sampler
monotone`, and the search-quality measurement).
"""

import itertools
import math
import random

import optuna

__all__ = ["MonotoneSearch", "ProposalSampler", "MonotoneSampler"]

TOL = 1e-9        # losses equal up to float rounding are equal (a mean of image counts)


class MonotoneSearch:
    """The proposal rule. `space`: {knob: ordered values}; `directions`: {knob: +1 | -1} for the
    knobs along which the loss is non-increasing (the others must match for one point to bound
    another); `cost(point) -> float` known without evaluation (None: the order of the widths is
    the only cost relation, and a cheapness proxy orders the proposals); `limit`: the largest
    feasible loss (None: no constraint); `step`: margin increment; `pool`: for a space larger
    than `enumerate_max`, the number of random unevaluated points each proposal looks at."""

    def __init__(self, space, directions, *, cost=None, limit=None, step=0.05, seed=None,
                 pool=2048, enumerate_max=20000):
        if step <= 0:
            raise ValueError(f"`step` must be positive, not {step}")
        self.names = list(space)
        self.values = {n: tuple(space[n]) for n in self.names}
        self.dirs = {n: d for n, d in directions.items() if n in self.values}
        for n, d in self.dirs.items():
            if d not in (1, -1):
                raise ValueError(f"direction of `{n}` must be +1 or -1, not {d!r}")
        self._w = [i for i, n in enumerate(self.names) if n in self.dirs]
        self._free = [i for i, n in enumerate(self.names) if n not in self.dirs]
        self.cost, self.limit, self.step, self.pool = cost, limit, step, pool
        self.rng = random.Random(seed)
        self.margin = 0.0
        size = math.prod(len(v) for v in self.values.values())
        self.all = list(itertools.product(*self.values.values())) if size <= enumerate_max \
            else None
        self._costs, self._ranks = {}, {}

    # -- relations ----------------------------------------------------------------------------

    def ranks(self, p):
        """The width ranks of a point, oriented so that larger is more accurate."""
        if p not in self._ranks:
            self._ranks[p] = tuple(self.values[n].index(p[i]) * self.dirs[n]
                                   for i, n in ((i, self.names[i]) for i in self._w))
        return self._ranks[p]

    def below(self, a, b):
        """a is at most as wide as b in every width, with the same other knobs."""
        return all(a[i] == b[i] for i in self._free) and all(
            x <= y for x, y in zip(self.ranks(a), self.ranks(b)))

    def cost_of(self, p):
        if p not in self._costs:
            if self.cost is not None:
                self._costs[p] = self.cost(dict(zip(self.names, p)))
            else:      # proxy: the normalised widths (the order of proposals only)
                self._costs[p] = sum((r if r >= 0 else r + len(self.values[self.names[i]]) - 1)
                                     / max(1, len(self.values[self.names[i]]) - 1)
                                     for i, r in zip(self._w, self.ranks(p)))
        return self._costs[p]

    def lower_bound(self, p, losses):
        """max loss of the evaluated points at least as wide as p, minus the margin (-inf if
        none)."""
        lb = [v for q, v in losses.items() if v is not None and self.below(p, q)]
        return max(lb) - self.margin if lb else -math.inf

    def excluded(self, p, losses, lb=None):
        """p cannot be feasible (its bound is over the limit) or cannot be on the front (an
        evaluated point that costs no more already has a loss at or below p's bound)."""
        lb = self.lower_bound(p, losses) if lb is None else lb
        if lb == -math.inf:
            return False
        if self.limit is not None and lb > self.limit + TOL:
            return True
        for r, v in losses.items():
            if v is None or r == p or v > lb + TOL:
                continue
            if self.cost is not None:
                cr, cp = self.cost_of(r), self.cost_of(p)
                if cr <= cp and (cr < cp or v < lb - TOL):
                    return True
            elif self.below(r, p):
                return True
        return False

    # -- proposals ----------------------------------------------------------------------------

    def propose(self, losses, pending=()):
        """The next point (a tuple in space order), or None when every point of an enumerable
        space is evaluated or pending. `losses`: {point: loss, or None for a failed one}."""
        taken = set(losses) | set(pending)
        if self.all is not None:
            fresh = [p for p in self.all if p not in taken]
        else:
            fresh = {tuple(self.rng.choice(self.values[n]) for n in self.names)
                     for _ in range(self.pool)}
            fresh = [p for p in fresh if p not in taken]
        if not fresh:
            return None
        tie = {p: self.rng.random() for p in fresh}
        known = {q: v for q, v in losses.items() if v is not None}
        if not known and not pending:
            # the widest point (the costliest among equals) bounds every other point
            return max(fresh, key=lambda p: (sum(self.ranks(p)), self.cost_of(p), tie[p]))
        spread = (max(known.values()) - min(known.values())) if known else 0.0
        while True:
            cand = [p for p in fresh if not self.excluded(p, known)]
            if cand:
                return min(cand, key=lambda p: (self.cost_of(p), tie[p]))
            if self.margin > spread + self.step:   # nothing bounds anything any more
                return min(fresh, key=lambda p: (self.cost_of(p), tie[p]))
            self.margin += self.step


class ProposalSampler(optuna.samplers.BaseSampler):
    """A proposal rule (an object with `names`, `values` and `propose(losses, pending)`) in
    Optuna's ask/tell: every knob is a categorical of the rule's space; the loss is objective
    `loss_index` of a finished trial (a failed trial, or a loss at or above `unknown`, counts as
    evaluated with no loss; `observe` is what the rule is told). Enqueued trials (the presets) keep their own values. Proposals of
    trials not yet told are remembered, so a batch of asks never holds one point twice."""

    def __init__(self, search, *, loss_index=0, seed=None, unknown=math.inf):
        self.search = search
        self.loss_index, self.unknown = loss_index, unknown
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._proposed = {}        # trial number -> point

    def _point(self, params):
        names = self.search.names
        if not all(n in params for n in names):
            return None
        p = tuple(params[n] for n in names)
        return p if all(v in self.search.values[n] for n, v in zip(names, p)) else None

    def infer_relative_search_space(self, study, trial):
        return {n: optuna.distributions.CategoricalDistribution(list(v))
                for n, v in self.search.values.items()}

    def sample_relative(self, study, trial, search_space):
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}
        losses, pending = {}, set()
        done = set()
        for t in study.get_trials(deepcopy=False):
            p = (self._point(t.params) or self._proposed.get(t.number)
                 or self._point(t.system_attrs.get("fixed_params") or {}))  # enqueued
            if p is None:
                continue
            if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None:
                v = self.observe(t.values)
                losses[p] = v if v is not None else losses.get(p)
                done.add(t.number)
            elif t.state.is_finished():
                losses.setdefault(p, None)
                done.add(t.number)
            else:
                pending.add(p)
        pending |= {p for n, p in self._proposed.items() if n not in done}
        p = self.search.propose(losses, pending)
        if p is None:
            return {}
        self._proposed[trial.number] = p
        return dict(zip(self.search.names, p))

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def observe(self, values):
        """What the rule is told of a finished trial's objective values: the loss, or None
        (at or above `unknown`)."""
        v = values[self.loss_index]
        return v if v < self.unknown else None


class MonotoneSampler(ProposalSampler):
    """MonotoneSearch in Optuna's ask/tell (ProposalSampler): a failed trial, or a loss at or
    above `unknown`, is never proposed again and bounds nothing."""

    def __init__(self, space, directions, *, loss_index=0, cost=None, limit=None, step=0.05,
                 seed=None, unknown=math.inf, **kw):
        super().__init__(MonotoneSearch(space, directions, cost=cost, limit=limit, step=step,
                                        seed=seed, **kw),
                         loss_index=loss_index, seed=seed, unknown=unknown)
