"""The `frontier` sampler of the design-space search (`make explore`'s default) and of the
search-quality measurement: Gaussian-process models of the objectives and, for each candidate
not yet evaluated, the probability that it is on the feasible front.

Where the cost of a point is known before it is evaluated (the quality subspace's datapath
bits), the front of (loss, cost) is the run of record-low losses in order of cost: a point is on
it when its loss is below that of every cheaper point (and at most that of every point of its
own cost). So the search has one unknown, the loss, and one question per point: is it a record?
In the full search area, energy per item and items/s are measured, not known: each is modelled
the same way as the loss, and the front is the four-objective one.

Each modelled objective is a Gaussian process over the knobs' ranks (each scaled to [0, 1]),
fitted after a Yeo-Johnson power transform of its values (fitted by maximum likelihood, as HEBO
warps its outputs): the measured loss has a cliff (scale_frac 3 loses 0.6-0.9 pp, its
neighbours under 0.3) that a stationary kernel on the raw losses smears over its neighbours,
hiding front points next to it; a monotone map changes no front, so the draws stay in the
warped scale. The kernel is a constant times an anisotropic RBF kernel (one length per knob)
plus white noise (the table's cell-to-cell wiggle of a test image or two). The posterior is
sampled jointly over the candidates, the evaluated points keep their measured values, a draw
whose loss is over the accuracy limit makes the candidate infeasible in that draw, and in each
draw the feasible front is computed; a candidate's score is the share of draws in which it is
on the front. The best-scoring candidate is proposed, the cheaper one on a tie. Nothing assumes
an objective is monotone in a knob (the measured loss is not: docs/explore.md).

The first `n_init` proposals are the cheapest point of the space (with the cost known; on the
front unless it fails) or the presets (the full search enqueues them) and points spread over
the space (the greedy farthest-point rule on the ranks, from a seeded random start), so that
the models see every region before they are trusted. A space of more than `enumerate_max`
points (the full NMPU space) is looked at through a random pool and the one-step neighbours of
the measured front.

`FrontierSearch` is the proposal rule in plain Python (points as tuples in space order, told
values as a dict, None for a failed point); `FrontierSampler` runs it inside Optuna's ask/tell
(studies.explore: `--sampler frontier`, and the quality measurement).
"""

import itertools
import math
import warnings

import numpy as np

from studies.monotone import ProposalSampler

__all__ = ["FrontierSearch", "FrontierSampler"]

TOL = 1e-9        # losses equal up to float rounding are equal (a mean of image counts)
WARPS = ("yeo-johnson", "none")     # the output warpings of the loss before the GP fit


def nondominated(vals, senses):
    """Boolean mask (draws, n) of the points no other point dominates, for `vals` of shape
    (draws, n, k) and `senses` (+1 minimise, -1 maximise per objective). A point with a NaN
    objective (failed, infeasible) is on no front and dominates nothing."""
    v = np.asarray(vals, dtype=float) * np.asarray(senses, dtype=float)
    bad = np.isnan(v).any(axis=-1)
    v = np.where(bad[..., None], np.inf, v)
    if v.shape[2] == 2:
        return _nondominated2(v, bad)
    out = np.zeros(bad.shape, dtype=bool)
    n, k = v.shape[1], v.shape[2]
    step = max(1, int(2e7 // max(1, n * n * k)))        # draws per chunk: bounded memory
    for d in range(0, v.shape[0], step):
        a = v[d:d + step]
        le = (a[:, :, None, :] <= a[:, None, :, :] + TOL).all(-1)   # [i, j]: i at most j
        lt = (a[:, :, None, :] < a[:, None, :, :] - TOL).any(-1)
        dom = le & lt & ~bad[d:d + step, :, None]
        out[d:d + step] = ~dom.any(axis=1) & ~bad[d:d + step]
    return out


def _nondominated2(v, bad):
    """nondominated for two objectives (minimised, failed points at +inf), O(n log n) a draw:
    in (first, second) order a point is on the front when its second objective is below that
    of every point before it, or when it equals the point before it (duplicates share a fate)."""
    order = np.lexsort((v[..., 1], v[..., 0]), axis=-1)
    s0 = np.take_along_axis(v[..., 0], order, -1)
    s1 = np.take_along_axis(v[..., 1], order, -1)
    before = np.concatenate([np.full(s1[:, :1].shape, np.inf),
                             np.minimum.accumulate(s1, axis=-1)[:, :-1]], axis=-1)
    nd = s1 < before - TOL
    dup = np.zeros_like(nd)
    with np.errstate(invalid="ignore"):         # inf - inf: failed points, never on a front
        dup[:, 1:] = (np.abs(s0[:, 1:] - s0[:, :-1]) <= TOL) & (
            np.abs(s1[:, 1:] - s1[:, :-1]) <= TOL)
    while True:                     # a run of duplicates: each as the first of its run
        nxt = nd.copy()
        nxt[:, 1:] = np.where(dup[:, 1:], nd[:, :-1], nd[:, 1:])
        if (nxt == nd).all():
            break
        nd = nxt
    out = np.zeros_like(nd)
    np.put_along_axis(out, order, nd, -1)
    return out & ~bad


class FrontierSearch:
    """The proposal rule. `space`: {knob: ordered values}; `cost(point dict) -> float`, known
    without evaluation: the objectives are then (loss, cost) and the told values are losses;
    `cost` None: every objective is modelled (one GP each) and the told values are tuples in
    the order of `senses` (+1 minimise, -1 maximise; NaN for an objective a point did not
    reach), the loss at `loss_index`; `limit`: the largest feasible loss (a draw over it puts
    the point on no front). `n_init`: proposals before the model is used (the cheapest or a
    random point, then spread points); `draws`: joint posterior draws per proposal;
    `restarts`: extra starts of each GP's hyperparameter fit; `warp`: the monotone map of each
    objective before its fit (WARPS); `seed`: the random start, the GPs' and the draws'
    randomness. A space of more than `enumerate_max` points is looked at through `pool` random
    unevaluated points per proposal and the one-step neighbours of the evaluated front."""

    def __init__(self, space, cost=None, *, senses=(1, 1), loss_index=0, limit=None, n_init=4,
                 draws=512, restarts=2, seed=None, pool=512, enumerate_max=5000,
                 warp="yeo-johnson"):
        if n_init < 1:
            raise ValueError(f"`n_init` must be at least 1, not {n_init}")
        if draws < 1:
            raise ValueError(f"`draws` must be at least 1, not {draws}")
        if restarts < 0:
            raise ValueError(f"`restarts` must be at least 0, not {restarts}")
        if warp not in WARPS:
            raise ValueError(f"`warp` must be one of {', '.join(WARPS)}, not {warp!r}")
        if any(s not in (1, -1) for s in senses) or not 0 <= loss_index < len(senses):
            raise ValueError(f"`senses` must be +1 or -1 per objective and `loss_index` one of "
                             f"them, not {tuple(senses)} and {loss_index}")
        if cost is not None and len(senses) != 2:
            raise ValueError("with a known `cost` the objectives are (loss, cost): two senses")
        self.names = list(space)
        self.values = {n: tuple(space[n]) for n in self.names}
        self.senses, self.loss_index, self.limit = tuple(senses), loss_index, limit
        self.warp, self.n_init, self.draws, self.restarts = warp, n_init, draws, restarts
        self.pool, self.cost_fn = pool, cost
        self.rng = np.random.default_rng(seed)
        size = math.prod(len(v) for v in self.values.values())
        self.all = list(itertools.product(*self.values.values())) \
            if size <= enumerate_max else None
        if cost is not None and self.all is None:
            raise ValueError(f"the frontier sampler with a known cost enumerates its space: "
                             f"{size} points is more than {enumerate_max}")
        self._x, self._cost = {}, {}
        self.last_scores = None      # {point: score} of the last model-based proposal
        self._cached = None          # (told values, scores) of the batch being asked

    # -- points -------------------------------------------------------------------------------

    def x(self, p):
        """The point's knob ranks, each scaled to [0, 1]."""
        if p not in self._x:
            self._x[p] = [self.values[n].index(v) / max(1, len(self.values[n]) - 1)
                          for n, v in zip(self.names, p)]
        return self._x[p]

    def cost(self, p):
        if p not in self._cost:
            self._cost[p] = float(self.cost_fn(dict(zip(self.names, p))))
        return self._cost[p]

    def _random_point(self):
        return tuple(self.values[n][int(self.rng.integers(len(self.values[n])))]
                     for n in self.names)

    def _neighbours(self, p):
        for i, n in enumerate(self.names):
            k = self.values[n].index(p[i])
            for j in (k - 1, k + 1):
                if 0 <= j < len(self.values[n]):
                    yield p[:i] + (self.values[n][j],) + p[i + 1:]

    def candidates(self, taken, near=()):
        """Unevaluated, not pending points to score: all of an enumerable space, else a random
        pool and the neighbours of `near`."""
        if self.all is not None:
            return [p for p in self.all if p not in taken]
        out = {q for p in near for q in self._neighbours(p)}
        for _ in range(4 * self.pool):
            if len(out) >= self.pool + len(near) * 2 * len(self.names):
                break
            out.add(self._random_point())
        return sorted(q for q in out if q not in taken)

    def _spread(self, taken):
        """The unevaluated point farthest (in rank space) from every taken point."""
        free = self.candidates(taken)
        if not free:        # a pool that found nothing new: the space is (nearly) used up
            return None
        t = np.array([self.x(p) for p in taken])
        d = np.min(((np.array([self.x(p) for p in free])[:, None, :] - t[None]) ** 2).sum(-1),
                   axis=1)
        best = np.flatnonzero(d >= d.max() - TOL)
        return free[int(self.rng.choice(best))]

    # -- the model ----------------------------------------------------------------------------

    def _draw(self, xs, y, at):
        """`draws` joint posterior draws (draws, len(at)) of a GP fitted to (xs, y) (warped),
        y in the same warped scale, and the warp (a function of an array)."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        warp = lambda a: np.asarray(a, dtype=float)      # noqa: E731
        if self.warp == "yeo-johnson":
            # a monotone map leaves every front unchanged: the draws stay in the warped scale
            from sklearn.preprocessing import PowerTransformer
            pt = PowerTransformer(method="yeo-johnson").fit(y[:, None])
            warp = lambda a: pt.transform(np.asarray(a, dtype=float)[:, None])[:, 0]  # noqa
            y = warp(y)
        d = len(self.names)
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF([0.5] * d, (0.05, 20.0))
                  + WhiteKernel(0.05, (1e-6, 1.0)))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=self.restarts,
                                      random_state=int(self.rng.integers(2 ** 31)))
        with warnings.catch_warnings():      # bounds reached on a flat stretch: harmless
            warnings.simplefilter("ignore")
            gp.fit(np.array(xs), y)
            draws = gp.sample_y(np.array(at), self.draws,
                                random_state=int(self.rng.integers(2 ** 31))).T
        return draws, y, warp

    def _vector(self, p, v):
        """The objective vector of an evaluated point (NaN where unknown)."""
        if v is None:
            return (math.nan,) * len(self.senses)
        if self.cost_fn is not None:
            return (float(v), self.cost(p))
        return tuple(math.nan if x is None else float(x) for x in v)

    def scores(self, values, pending=()):
        """{candidate point: share of posterior draws in which it is on the front (feasible
        and not dominated by any evaluated or candidate point)}."""
        vec = {p: self._vector(p, v) for p, v in values.items()}
        ev = list(vec)
        obs = np.array([vec[p] for p in ev], dtype=float)
        senses = np.array(self.senses, dtype=float)
        lim = self.limit
        feas = ~np.isnan(obs).any(1) & (obs[:, self.loss_index] <= lim + TOL if lim is not None
                                        else True)
        near = [ev[i] for i in np.flatnonzero(nondominated(np.where(
            feas[:, None], obs, np.nan)[None], senses)[0])]
        cand = self.candidates(set(values) | set(pending), near)
        if not cand:
            return {}
        k = len(self.senses)
        full = np.full((self.draws, len(ev) + len(cand), k), np.nan)
        modelled = [self.loss_index] if self.cost_fn is not None else range(k)
        for j in range(k):
            if j not in modelled:           # the known cost
                full[:, :, j] = [self.cost(p) for p in ev + cand]
                continue
            ok = ~np.isnan(obs[:, j])
            if ok.sum() < 2 or len(set(np.round(obs[ok, j], 9))) < 2:
                return {}
            draws, yw, warp = self._draw([self.x(ev[i]) for i in np.flatnonzero(ok)],
                                         obs[ok, j], [self.x(p) for p in cand])
            col = np.full(len(ev), np.nan)
            col[ok] = yw
            full[:, :len(ev), j] = np.where(feas, col, np.nan)[None]
            full[:, len(ev):, j] = draws
            if j == self.loss_index and lim is not None:
                over = draws > warp([lim])[0] + TOL      # a draw over the limit: infeasible
        if lim is not None:
            full[:, len(ev):, :] = np.where(over[..., None], np.nan, full[:, len(ev):, :])
        if self.cost_fn is not None:
            # the evaluated points: known (loss, cost), failed ones on no front
            full[:, :len(ev), :] = np.where(feas[:, None], full[:, :len(ev), :], np.nan)
        front = nondominated(full, senses)
        share = front[:, len(ev):].mean(axis=0)
        return {p: float(s) for p, s in zip(cand, share)}

    def _cheap(self, p):
        return self.cost(p) if self.cost_fn is not None else sum(self.x(p))

    def propose(self, values, pending=()):
        """The next point (a tuple in space order), or None when every point of an enumerable
        space is evaluated or pending (or, in a pooled space, no fresh point was drawn). `values`: {point: loss (known cost) or objective tuple,
        or None for a failed point}."""
        taken = set(values) | set(pending)
        if self.all is not None and len(taken) >= len(self.all):
            return None
        if not taken:
            if self.cost_fn is not None:
                return min(self.all, key=lambda p: (self.cost(p), self.rng.random()))
            return self._random_point()
        known = [self._vector(p, v)[self.loss_index] for p, v in values.items()]
        known = [v for v in known if not math.isnan(v)]
        if len(taken) < self.n_init or len(set(np.round(known, 9))) < 2:
            return self._spread(taken)
        # the asks of one batch (nothing told in between) share one model: the best
        # candidates not yet pending, in order
        key = frozenset(values.items())
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.scores(values, pending))
        sc = {p: v for p, v in self._cached[1].items() if p not in taken}
        if not sc:          # an objective without two distinct values yet, or all pending
            return self._spread(taken)
        self.last_scores = sc
        return max(sc, key=lambda p: (sc[p], -self._cheap(p)))


class FrontierSampler(ProposalSampler):
    """FrontierSearch in Optuna's ask/tell. With a known `cost`: the loss is objective
    `loss_index` of a finished trial (a failed trial, or a loss at or above `unknown`, counts as
    evaluated with no loss: never proposed again, on no front). Without: every objective of
    the trial is modelled, an entry equal to the same entry of `worst` (the search's penalty
    values) counting as not reached."""

    def __init__(self, space, cost=None, *, loss_index=0, seed=None, unknown=math.inf,
                 worst=None, **kw):
        super().__init__(FrontierSearch(space, cost, seed=seed, loss_index=loss_index, **kw),
                         loss_index=loss_index, seed=seed, unknown=unknown)
        self.worst = worst

    def observe(self, values):
        if self.search.cost_fn is not None:
            return super().observe(values)
        return tuple(None if (self.worst is not None and v == self.worst[j])
                     or (j == self.loss_index and v >= self.unknown) else v
                     for j, v in enumerate(values))
