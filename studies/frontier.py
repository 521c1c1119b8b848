"""The `frontier` sampler of the search-quality measurement: a Gaussian-process model of the
accuracy loss and, for each point not yet evaluated, the probability that it is on the front.

Where the cost of a point is known before it is evaluated (the quality subspace's datapath
bits), the front of (loss, cost) is the run of record-low losses in order of cost: a point is on
it when its loss is below that of every cheaper point (and at most that of every point of its
own cost). So the search has one unknown, the loss, and one question per point: is it a record?

The loss is modelled by a Gaussian process over the knobs' ranks (each scaled to [0, 1]), fitted
after a Yeo-Johnson power transform of the losses (fitted by maximum likelihood, as HEBO warps
its outputs): the measured loss has a cliff (scale_frac 3 loses 0.6-0.9 pp, its neighbours
under 0.3) that a stationary kernel on the raw losses smears over its neighbours, hiding front
points next to it; a monotone map changes no front, so the draws stay in the warped scale. The
kernel is a constant times an anisotropic RBF kernel (one length per knob: the loss is smooth along some
knobs and not along others) plus white noise (the table's cell-to-cell wiggle of a test image or
two), fitted to the evaluated losses. Its posterior is sampled jointly over all points not yet
evaluated, the evaluated points keep their measured losses, and in each draw the front is
computed; a point's score is the share of draws in which it is on the front. The point with the
highest score is proposed, the cheaper one on a tie. Nothing assumes the loss is monotone in a
knob (the measured table is not: docs/explore.md), and the model learns how the knobs interact.

The first `n_init` proposals are the cheapest point of the space (on the front unless it
fails) and points spread over the space (the greedy farthest-point rule on the ranks, from a seeded
random start), so that the model sees every region before it is trusted.

`FrontierSearch` is the proposal rule in plain Python (points as tuples in space order, losses
as a dict, None for a failed point); `FrontierSampler` runs it inside Optuna's ask/tell
(studies.explore's quality measurement). It needs the whole space enumerated and the cost known:
it is not a sampler of the full search, whose costs (area, energy, throughput) are measured.
"""

import itertools
import math
import warnings

import numpy as np

from studies.monotone import ProposalSampler

__all__ = ["FrontierSearch", "FrontierSampler"]

TOL = 1e-9        # losses equal up to float rounding are equal (a mean of image counts)
WARPS = ("yeo-johnson", "none")     # the output warpings of the loss before the GP fit


def on_front(loss, cost):
    """Boolean mask of the points on the (loss, cost) front: no other point is at most as
    costly and at most as lossy with one of the two strictly smaller. `loss`: (draws, n) or
    (n,); `cost`: (n,). NaN losses (failed points) are never on the front and dominate
    nothing."""
    one = np.ndim(loss) == 1
    loss = np.atleast_2d(np.asarray(loss, dtype=float))
    cost = np.asarray(cost, dtype=float)
    order = np.argsort(cost, kind="stable")
    lo, co = loss[:, order], cost[order]
    lo_nan = np.where(np.isnan(lo), np.inf, lo)     # a failed point: no front, bounds nothing
    out = np.zeros(lo.shape, dtype=bool)
    best_before = np.full(lo.shape[0], np.inf)   # best loss of the strictly cheaper points
    i = 0
    while i < len(co):
        j = i
        while j < len(co) and co[j] == co[i]:
            j += 1
        group = lo_nan[:, i:j]
        gmin = group.min(axis=1)
        # a record against every cheaper point, and the best of its own cost
        out[:, i:j] = (group < best_before[:, None] - TOL) & (group <= gmin[:, None] + TOL)
        best_before = np.minimum(best_before, gmin)
        i = j
    res = np.zeros_like(out)
    res[:, order] = out
    return res[0] if one else res


class FrontierSearch:
    """The proposal rule. `space`: {knob: ordered values} (enumerated: at most `enumerate_max`
    points); `cost(point dict) -> float`, known without evaluation; `n_init`: proposals before
    the model is used (the cheapest point, then spread points); `draws`: joint posterior draws
    per proposal; `restarts`: extra starts of the GP's hyperparameter fit; `warp`: the monotone
    map of the losses before the fit (WARPS); `seed`: the random start of the spread points,
    the GP's and the draws' randomness."""

    def __init__(self, space, cost, *, n_init=4, draws=512, restarts=2, seed=None,
                 enumerate_max=5000, warp="yeo-johnson"):
        if cost is None:
            raise ValueError("the frontier sampler needs the cost of a point known before it "
                             "is evaluated (`cost`)")
        if n_init < 1:
            raise ValueError(f"`n_init` must be at least 1, not {n_init}")
        if draws < 1:
            raise ValueError(f"`draws` must be at least 1, not {draws}")
        self.names = list(space)
        self.values = {n: tuple(space[n]) for n in self.names}
        size = math.prod(len(v) for v in self.values.values())
        if size > enumerate_max:
            raise ValueError(f"the frontier sampler enumerates its space: {size} points is "
                             f"more than {enumerate_max}")
        self.all = list(itertools.product(*self.values.values()))
        self.index = {p: i for i, p in enumerate(self.all)}
        self.x = np.array([[self.values[n].index(v) / max(1, len(self.values[n]) - 1)
                            for n, v in zip(self.names, p)] for p in self.all])
        self.cost = np.array([float(cost(dict(zip(self.names, p)))) for p in self.all])
        if warp not in WARPS:
            raise ValueError(f"`warp` must be one of {', '.join(WARPS)}, not {warp!r}")
        self.warp = warp
        if restarts < 0:
            raise ValueError(f"`restarts` must be at least 0, not {restarts}")
        self.n_init, self.draws, self.restarts = n_init, draws, restarts
        self.rng = np.random.default_rng(seed)
        self.last_scores = None      # {point: score} of the last model-based proposal

    def _spread(self, taken):
        """The unevaluated point farthest (in rank space) from every taken point."""
        free = [i for i, p in enumerate(self.all) if p not in taken]
        if not taken:
            return self.all[free[int(self.rng.integers(len(free)))]]
        t = self.x[[self.index[p] for p in taken]]
        d = np.min(((self.x[free][:, None, :] - t[None, :, :]) ** 2).sum(-1), axis=1)
        best = np.flatnonzero(d >= d.max() - TOL)
        return self.all[free[int(self.rng.choice(best))]]

    def scores(self, losses, pending=()):
        """{unevaluated, not pending point: share of posterior draws in which it is on the
        front}, from a GP fitted to the evaluated losses."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        known = {p: v for p, v in losses.items() if v is not None}
        ki = [self.index[p] for p in known]
        y = np.array(list(known.values()), dtype=float)
        free = [i for i, p in enumerate(self.all) if p not in losses]
        cand = [i for i in free if self.all[i] not in set(pending)]
        if not cand:
            return {}
        d = self.x.shape[1]
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF([0.5] * d, (0.05, 20.0))
                  + WhiteKernel(0.05, (1e-6, 1.0)))
        if self.warp == "yeo-johnson":
            # a monotone map leaves every front unchanged: the draws stay in the warped scale
            from sklearn.preprocessing import PowerTransformer
            y = PowerTransformer(method="yeo-johnson").fit_transform(y[:, None])[:, 0]
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=self.restarts,
                                      random_state=int(self.rng.integers(2 ** 31)))
        with warnings.catch_warnings():      # bounds reached on a flat stretch: harmless
            warnings.simplefilter("ignore")
            gp.fit(self.x[ki], y)
            draws = gp.sample_y(self.x[free], self.draws,
                                random_state=int(self.rng.integers(2 ** 31))).T
        loss = np.full((self.draws, len(self.all)), np.nan)
        loss[:, ki] = y
        loss[:, free] = draws
        front = on_front(loss, self.cost)
        share = front[:, cand].mean(axis=0)
        return {self.all[i]: float(s) for i, s in zip(cand, share)}

    def propose(self, losses, pending=()):
        """The next point (a tuple in space order), or None when every point is evaluated or
        pending. `losses`: {point: loss, or None for a failed point}."""
        taken = set(losses) | set(pending)
        if len(taken) >= len(self.all):
            return None
        if not taken:
            free = [i for i, p in enumerate(self.all)]
            return self.all[min(free, key=lambda i: (self.cost[i], self.rng.random()))]
        known = [v for v in losses.values() if v is not None]
        if len(taken) < self.n_init or len(set(np.round(known, 9))) < 2:
            return self._spread(taken)
        sc = self.scores(losses, pending)
        self.last_scores = sc
        return max(sc, key=lambda p: (sc[p], -self.cost[self.index[p]]))


class FrontierSampler(ProposalSampler):
    """FrontierSearch in Optuna's ask/tell: every knob is a categorical of `space`; the loss is
    objective `loss_index` of a finished trial (a failed trial, or a loss at or above `unknown`,
    counts as evaluated with no loss: never proposed again, on no front)."""

    def __init__(self, space, cost, *, loss_index=0, seed=None, unknown=math.inf, **kw):
        super().__init__(FrontierSearch(space, cost, seed=seed, **kw), loss_index=loss_index,
                         seed=seed, unknown=unknown)
