"""The networks of the accuracy study, in pure NumPy: definition, training, float inference.

A network is a list of ops on named tensors (`NetConfig.ops`); each op reads `src` and writes
`dst`. Two kinds of op hold a matrix a tile can store:

- `Dense`: y = x·W (+ b), the input flattened to (N, n_in);
- `Conv`: a 3 × 3 convolution (stride 1, zero padding 1) computed as im2col: every output pixel
  is one row vector of the k·k·c_in input values around it (order ky, kx, c), times the matrix
  W (k·k·c_in, c_out). Activations are NHWC, so a row of the result is one pixel's channels.

Both are followed by an optional batch norm (per output channel), an optional residual add of
another tensor of the same shape, and an optional ReLU. `MaxPool` is the only other op.

`run(cfg, x, matrix)` walks the op list and hands every matrix op to a pluggable executor
`matrix(op, rows, residual) -> out` (rows: (M, fan_in), residual: (M, c_out) or None): the float
reference here (`FloatMatrix`), or the analog-tile executors of `golden.compiler`, whose tensors
between ops are the int8 codes of the NMPU/LDPU output. Pooling is a max, exact on codes too.

Training: Adam with decoupled weight decay, batch-norm statistics from the batch, optional
Gaussian weight noise in the forward pass (hardware-aware training: it makes the network
tolerant to the conductance errors of the tile). After training, the batch-norm statistics are
recomputed on the whole training set. Results are cached under `build/networks/`, keyed by a
hash of the network config, the training settings and `CODE_VERSION`.

    python -m golden.network [--retrain]      train (or load) both networks, print accuracies
    python -m golden.network --networks mnist_cnn --hw-noise 1.0 --train-seed 2
"""

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Dense", "Conv", "MaxPool", "NetConfig", "TrainConfig", "NETWORKS", "TRAIN",
           "CODE_VERSION", "Network", "init_params", "im2col", "col2im", "forward_train",
           "backward", "cross_entropy", "train", "load_or_train", "run", "FloatMatrix",
           "accuracy", "cache_key", "BN_EPS", "layer_rows", "check_input", "DATASET",
           "TRAIN_CONFIGS", "train_config", "augment", "affine_sample", "distort", "hw_perturb",
           "quantise_codes", "clip_level", "check_act_clip", "ACT_PERCENTILE", "parse_seed",
           "distill_loss", "teacher_config", "check_teacher"]

# Change when the training code changes in a way that changes the trained weights.
CODE_VERSION = "1"
BN_EPS = 1e-5
CACHE_DIR = Path("build/networks")
RECALIBRATE_MAX = 2048      # training images of the final batch-norm statistics pass


# -- network description ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Dense:
    """y = relu(bn(flatten(x)·W + b) + residual)."""

    name: str
    src: str
    dst: str
    n_in: int
    n_out: int
    bn: bool = True
    relu: bool = True
    residual: str = None

    @property
    def fan_in(self):
        return self.n_in

    @property
    def c_out(self):
        return self.n_out

    @property
    def has_bias(self):
        return not self.bn


@dataclass(frozen=True)
class Conv:
    """3 × 3 (k × k) convolution, stride 1, zero padding k // 2, on NHWC tensors, as im2col."""

    name: str
    src: str
    dst: str
    c_in: int
    c_out: int
    k: int = 3
    bn: bool = True
    relu: bool = True
    residual: str = None

    @property
    def fan_in(self):
        return self.k * self.k * self.c_in

    @property
    def has_bias(self):
        return not self.bn


@dataclass(frozen=True)
class MaxPool:
    """Non-overlapping k × k max pooling of an NHWC tensor."""

    name: str
    src: str
    dst: str
    k: int = 2


MATRIX_OPS = (Dense, Conv)


@dataclass(frozen=True)
class NetConfig:
    """A network: its input tensor's per-sample shape (NHWC without N, or (features,)), the op
    list, and the name of the logits tensor."""

    name: str
    input_shape: tuple
    ops: tuple
    output: str = "logits"

    def __post_init__(self):
        names, seen = set(), {"x"}
        for op in self.ops:
            if op.name in names:
                raise ValueError(f"network {self.name!r}: op name {op.name!r} used twice")
            names.add(op.name)
            for ref in (op.src, getattr(op, "residual", None)):
                if ref is not None and ref not in seen:
                    raise ValueError(f"network {self.name!r}: op {op.name!r} reads {ref!r} "
                                     f"before any op writes it")
            seen.add(op.dst)
        if self.output not in seen:
            raise ValueError(f"network {self.name!r}: no op writes the output {self.output!r}")

    @property
    def matrix_ops(self):
        return [op for op in self.ops if isinstance(op, MATRIX_OPS)]

    def to_dict(self):
        return {"name": self.name, "input_shape": list(self.input_shape), "output": self.output,
                "ops": [{"type": type(op).__name__, **dataclasses.asdict(op)} for op in self.ops]}


ACT_PERCENTILE = 99.99      # the default activation clip: this percentile of |a| → x_max
MSE_GRID = 64               # clip candidates of the "mse" search (geometric, max/64 .. max)


def check_act_clip(clip, name):
    """`clip` must be None (the default 99.99th percentile), a percentile in [50, 100] or "mse"."""
    if clip is None or clip == "mse":
        return
    if isinstance(clip, bool) or not isinstance(clip, (int, float, np.integer, np.floating)) \
            or not 50.0 <= float(clip) <= 100.0:
        raise ValueError(f"`{name}` must be None, a percentile in [50, 100] or 'mse', not {clip!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. `weight_noise`: σ of the Gaussian training weight noise, relative to
    max |W| per column. `augment_shift`: random translation of every training image by up to
    that many pixels in x and y (zero fill), on images of `image_shape` (H, W, C) (default: the
    network's input shape). Hardware-aware training (`hw_noise` > 0, see `hw_perturb`): every
    step injects the tile model's programming noise (`golden.tile.prog_noise_sigma`, times
    `hw_noise`) into the weights and quantises the layer's matmul output like the ADC
    (`adc_bits`); `act_bits` > 0 quantises every layer's input to the PWM codes of that width
    (straight-through gradients), in or without hardware-aware training; `act_clip` (with
    `act_bits`) sets the clip of that quantiser (`clip_level`: None, the 99.99th percentile of
    |a|; a lower percentile; or "mse", the clip of least quantisation error), the same option as
    `golden.compiler.plan(..., act_clip=...)`. `float32`: train in float32 (twice the BLAS speed;
    the parameters are returned as float64). Knowledge distillation (`distill_from`, the name of
    a network of `NETWORKS`, the teacher, trained with its own `train_config` on the same split by
    `load_or_train`): the teacher's logits on every training batch, after augmentation, are soft
    targets; the loss is `distill_weight` · T² · KL(teacher_T ‖ student_T) + (1 − `distill_weight`)
    · CE(labels), T = `distill_temp` (`distill_loss`). `augment_affine`: every training image
    resampled (bilinear, zero fill) through a random affine map about its centre, I + U(±a) per
    entry of its 2 × 2 matrix (rotation, scale and shear of up to about a), before the shift
    (`distort`)."""

    seed: int = 20261129
    epochs: int = 40
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    weight_noise: float = 0.03
    bn_momentum: float = 0.1
    augment_shift: int = 0
    image_shape: tuple = None
    hw_noise: float = 0.0
    act_bits: int = 0
    adc_bits: int = 12
    float32: bool = False
    act_clip: object = None
    distill_from: str = ""
    distill_temp: float = 4.0
    distill_weight: float = 0.5
    augment_affine: float = 0.0
    augment_mixup: float = 0.0

    def __post_init__(self):
        for name in ("seed", "epochs", "batch", "augment_shift", "act_bits", "adc_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"`{name}` must be a non-negative int, not {v!r}")
        if self.epochs < 1 or self.batch < 2:
            raise ValueError(f"`epochs` must be >= 1 and `batch` >= 2, not {self.epochs} and "
                             f"{self.batch}")
        if self.act_bits == 1 or self.act_bits > 16:
            raise ValueError(f"`act_bits` must be 0 (off) or 2..16 (sign + magnitude), not "
                             f"{self.act_bits}")
        check_act_clip(self.act_clip, "act_clip")
        if self.act_clip is not None and not self.act_bits:
            raise ValueError(f"`act_clip` ({self.act_clip!r}) needs `act_bits` > 0 (it clips the "
                             f"activation quantiser)")
        if self.adc_bits < 1 or self.adc_bits > 24:
            raise ValueError(f"`adc_bits` must be in [1, 24], not {self.adc_bits}")
        for name in ("lr", "weight_decay", "weight_noise", "bn_momentum", "hw_noise",
                     "augment_affine", "augment_mixup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, not {v!r}")
        if self.image_shape is not None and (len(self.image_shape) != 3
                                             or any(int(d) < 1 for d in self.image_shape)):
            raise ValueError(f"`image_shape` must be (H, W, C), not {self.image_shape!r}")
        if self.augment_affine >= 0.5:
            raise ValueError(f"`augment_affine` must be < 0.5 (a distortion, not a fold), not "
                             f"{self.augment_affine!r}")
        if not isinstance(self.distill_from, str) or (self.distill_from
                                                      and self.distill_from not in NETWORKS):
            raise ValueError(f"`distill_from` must be '' (off) or a network of NETWORKS "
                             f"({', '.join(NETWORKS)}), not {self.distill_from!r}")
        for name in ("distill_temp", "distill_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"`{name}` must be a finite number, not {v!r}")
        if self.distill_temp <= 0:
            raise ValueError(f"`distill_temp` must be > 0, not {self.distill_temp!r}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"`distill_weight` must be in [0, 1], not {self.distill_weight!r}")
        if not self.distill_from and (self.distill_temp, self.distill_weight) != (
                _LATER_FIELDS["distill_temp"], _LATER_FIELDS["distill_weight"]):
            raise ValueError(f"`distill_temp` ({self.distill_temp!r}) and `distill_weight` "
                             f"({self.distill_weight!r}) need `distill_from` (a teacher network)")
        if self.augment_mixup and (not self.distill_from or self.distill_weight != 1.0):
            raise ValueError(f"`augment_mixup` ({self.augment_mixup!r}) needs `distill_from` and "
                             f"`distill_weight` 1 (the teacher labels the mixed images), not "
                             f"{self.distill_from!r} at {self.distill_weight!r}")

    def to_dict(self):
        """The settings; the later fields only when they differ from their defaults, so the cache
        keys of networks trained before they existed stay valid. With a teacher, also the
        teacher's cache key (`distill_key`): another teacher preset trains another student."""
        d = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        if d.get("image_shape") is not None:
            d["image_shape"] = list(d["image_shape"])
        if self.distill_from:
            d["distill_key"] = cache_key(*teacher_config(self))
        return d


_LATER_FIELDS = {"augment_shift": 0, "image_shape": None, "hw_noise": 0.0, "act_bits": 0,
                 "adc_bits": 12, "float32": False, "act_clip": None, "distill_from": "",
                 "distill_temp": 4.0, "distill_weight": 0.5, "augment_affine": 0.0,
                 "augment_mixup": 0.0}


NETWORKS = {
    "mlp": NetConfig("mlp", (64,), (
        Dense("fc1", "x", "h1", 64, 128),
        Dense("fc2", "h1", "h2", 128, 64),
        Dense("fc3", "h2", "logits", 64, 10, bn=False, relu=False),
    )),
    # conv1 → conv2 → conv3 (+ conv1's output) → ReLU → 2 × 2 max pool → dense classifier; the
    # classifier's 4·4·24 = 384 inputs do not fit one 256-row tile: it is split over two.
    "cnn": NetConfig("cnn", (8, 8, 1), (
        Conv("conv1", "x", "a1", 1, 24),
        Conv("conv2", "a1", "a2", 24, 24),
        Conv("conv3", "a2", "a3", 24, 24, residual="a1"),
        MaxPool("pool", "a3", "p", 2),
        Dense("fc", "p", "logits", 384, 10, bn=False, relu=False),
    )),
}

# MNIST (28 × 28, golden.data.mnist): a residual CNN of three conv stages whose classifier's
# 7·7·32 = 1568 inputs span 7 row tiles of 256 (partial sums through the residual input, chained
# over 7 tiles), and an MLP whose first layer's 784 inputs span 4 row tiles. Small enough to train
# in minutes on a shared core (about 1 M multiply-adds per image).
NETWORKS.update({
    "mnist_cnn": NetConfig("mnist_cnn", (28, 28, 1), (
        Conv("conv1", "x", "a1", 1, 8),
        MaxPool("pool1", "a1", "p1", 2),
        Conv("conv2", "p1", "a2", 8, 16),
        Conv("conv3", "a2", "a3", 16, 16, residual="a2"),
        MaxPool("pool2", "a3", "p2", 2),
        Conv("conv4", "p2", "a4", 16, 32),
        Dense("fc", "a4", "logits", 7 * 7 * 32, 10, bn=False, relu=False),
    )),
    "mnist_mlp": NetConfig("mnist_mlp", (784,), (
        Dense("fc1", "x", "h1", 784, 256),
        Dense("fc2", "h1", "h2", 256, 128),
        Dense("fc3", "h2", "logits", 128, 10, bn=False, relu=False),
    )),
})
# the data set each network is trained and evaluated on (golden.data.load)
DATASET = {"mlp": "digits", "cnn": "digits", "mnist_cnn": "mnist", "mnist_mlp": "mnist"}
TRAIN = TrainConfig()
TRAIN_CONFIGS = {
    "mnist_cnn": TrainConfig(epochs=30, batch=64, lr=3e-3, augment_shift=2, float32=True),
    # distilled from the CNN (T = 4, weight 0.9, chosen on the calibration split; docs/accuracy.md):
    # 98.0-98.5 % float test accuracy over three training seeds, against 97.0 % trained on labels
    "mnist_mlp": TrainConfig(epochs=150, batch=64, lr=2e-3, augment_shift=2,
                             image_shape=(28, 28, 1), float32=True, distill_from="mnist_cnn",
                             distill_temp=4.0, distill_weight=0.9),
}


def train_config(name, **changes):
    """The training settings of network `name` (`TRAIN_CONFIGS`, else `TRAIN`), with `changes`
    (e.g. hw_noise=1.0, act_bits=4 for hardware-aware 4-bit training)."""
    return dataclasses.replace(TRAIN_CONFIGS.get(name, TRAIN), **changes)


def teacher_config(tcfg: TrainConfig):
    """(NetConfig, TrainConfig) of the teacher `tcfg.distill_from`: its network and its own
    training settings (`train_config`). A teacher that is itself distilled is refused (one level
    of distillation; no cycles)."""
    cfg, teacher_tcfg = NETWORKS[tcfg.distill_from], train_config(tcfg.distill_from)
    if teacher_tcfg.distill_from:
        raise ValueError(f"`distill_from`: the teacher {tcfg.distill_from!r} is itself distilled "
                         f"(from {teacher_tcfg.distill_from!r}); a teacher must be trained on "
                         f"labels")
    return cfg, teacher_tcfg


def check_teacher(cfg: NetConfig, tcfg: TrainConfig, teacher_cfg: NetConfig):
    """The teacher must see the student's inputs and data set and give its classes: the same
    data set (`DATASET`), the same number of input values, the same image shape (the student's
    `image_shape` when its input is flat) and as many outputs. Raises ValueError naming both."""
    ds, dt = DATASET.get(cfg.name, "digits"), DATASET.get(teacher_cfg.name, "digits")
    if ds != dt:
        raise ValueError(f"`distill_from`: the teacher {teacher_cfg.name!r} is trained on {dt!r}, "
                         f"the student {cfg.name!r} on {ds!r}")
    s_shape = tuple(tcfg.image_shape or cfg.input_shape)
    t_shape = tuple(teacher_cfg.input_shape)
    same = (int(np.prod(s_shape)) == int(np.prod(t_shape))
            and (len(s_shape) != 3 or len(t_shape) != 3 or s_shape == t_shape))
    if not same:
        raise ValueError(f"`distill_from`: the teacher {teacher_cfg.name!r} takes inputs of shape "
                         f"{t_shape}, the student {cfg.name!r} {s_shape}")
    n_s, n_t = cfg.matrix_ops[-1].c_out, teacher_cfg.matrix_ops[-1].c_out
    if n_s != n_t:
        raise ValueError(f"`distill_from`: the teacher {teacher_cfg.name!r} has {n_t} outputs, the "
                         f"student {cfg.name!r} {n_s}")


# -- parameters ------------------------------------------------------------------------------------

def init_params(cfg: NetConfig, rng):
    """He-initialised weights; BN γ = 1, β = 0, running mean 0, variance 1."""
    params = {}
    for op in cfg.matrix_ops:
        p = {"W": rng.normal(0.0, np.sqrt(2.0 / op.fan_in), (op.fan_in, op.c_out))}
        if op.bn:
            p.update(gamma=np.ones(op.c_out), beta=np.zeros(op.c_out), mean=np.zeros(op.c_out),
                     var=np.ones(op.c_out))
        else:
            p["b"] = np.zeros(op.c_out)
        params[op.name] = p
    return params


TRAINABLE = ("W", "b", "gamma", "beta")


# -- im2col ----------------------------------------------------------------------------------------

def im2col(x, k=3, *, extra=0, fill=0):
    """(N, H, W, C) → (N·H·W, k·k·C): each pixel's k × k neighbourhood (zero padded), in the
    order (ky, kx, c); then `extra` columns of `fill` (the compiler's analog bias rows, written
    in the same array instead of a second copy of the rows)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"im2col needs an NHWC tensor, not shape {x.shape}")
    n, h, w, c = x.shape
    r = k // 2
    xp = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    out = np.empty((n * h * w, k * k * c + extra), dtype=x.dtype)
    cols = np.reshape(out[:, :k * k * c], (n, h, w, k, k, c), copy=False)  # a view of out
    for dy in range(k):
        for dx in range(k):
            cols[:, :, :, dy, dx, :] = xp[:, dy:dy + h, dx:dx + w, :]
    out[:, k * k * c:] = fill
    return out


def col2im(cols, shape, k=3):
    """Adjoint of `im2col`: scatter-add rows back to an (N, H, W, C) tensor."""
    n, h, w, c = shape
    r = k // 2
    cols = cols.reshape(n, h, w, k, k, c)
    xp = np.zeros((n, h + 2 * r, w + 2 * r, c), dtype=cols.dtype)
    for dy in range(k):
        for dx in range(k):
            xp[:, dy:dy + h, dx:dx + w, :] += cols[:, :, :, dy, dx, :]
    return xp[:, r:r + h, r:r + w, :]


def layer_rows(op, a, *, extra=0, fill=0):
    """The matrix input of `op`: im2col rows or the flattened tensor (then `extra` columns of
    `fill`, as `im2col`)."""
    if isinstance(op, Conv):
        if a.ndim != 4 or a.shape[-1] != op.c_in:
            raise ValueError(f"op {op.name!r} needs NHWC input with {op.c_in} channels, not shape "
                             f"{a.shape}")
        return im2col(a, op.k, extra=extra, fill=fill)
    rows = a.reshape(a.shape[0], -1)
    if rows.shape[1] != op.n_in:
        raise ValueError(f"op {op.name!r} needs {op.n_in} input features, not {rows.shape[1]} "
                         f"(input shape {a.shape})")
    if extra:
        rows = np.concatenate([rows, np.full((rows.shape[0], extra), fill, dtype=rows.dtype)],
                              axis=1)
    return rows


def _unrows(op, a, out):
    if isinstance(op, Conv):
        n, h, w, _ = a.shape
        return out.reshape(n, h, w, op.c_out)
    return out


def _maxpool(x, k):
    n, h, w, c = x.shape
    if h % k or w % k:
        raise ValueError(f"max pool {k} × {k} needs H and W divisible by {k}, not {h} × {w}")
    return x.reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))


def check_input(cfg, x):
    x = np.asarray(x)
    if x.shape[1:] != tuple(cfg.input_shape):
        # the digits come flat (N, 64): reshape to the network's input shape when sizes agree
        if x.ndim == 2 and x.shape[1] == int(np.prod(cfg.input_shape)):
            return x.reshape((x.shape[0],) + tuple(cfg.input_shape))
        raise ValueError(f"network {cfg.name!r} takes inputs of shape (N, "
                         f"{', '.join(map(str, cfg.input_shape))}), not {x.shape}")
    return x


# -- inference with a pluggable matrix executor ----------------------------------------------------

class FloatMatrix:
    """The float reference executor: relu(bn(rows·W + b) + residual) with the running BN
    statistics (the unfolded network, as trained)."""

    def __init__(self, params):
        self.params = params

    def __call__(self, op, rows, residual):
        p = self.params[op.name]
        z = rows @ p["W"]
        if op.bn:
            z = (z - p["mean"]) / np.sqrt(p["var"] + BN_EPS) * p["gamma"] + p["beta"]
        else:
            z = z + p["b"]
        if residual is not None:
            z = z + residual
        return np.maximum(z, 0.0) if op.relu else z


def run(cfg: NetConfig, x, matrix, *, trace=None):
    """Evaluate the op list on a batch `x` with the executor `matrix(op, rows, residual)`.
    `trace`, when a dict, receives every tensor by name. Returns the output tensor.

    An executor with a method `rows(op, a)` builds the matrix input of op from the tensor `a`
    itself (the analog executor converts the codes once before im2col and appends its bias
    rows); otherwise `layer_rows(op, a)`."""
    state = {"x": check_input(cfg, x)}
    make_rows = getattr(matrix, "rows", layer_rows)
    for op in cfg.ops:
        a = state[op.src]
        if isinstance(op, MaxPool):
            state[op.dst] = _maxpool(a, op.k)
            continue
        rows = make_rows(op, a)
        res = None
        if op.residual is not None:
            res = state[op.residual].reshape(rows.shape[0], op.c_out)
        out = matrix(op, rows, res)
        state[op.dst] = _unrows(op, a, out)
    if trace is not None:
        trace.update(state)
    return state[cfg.output]


def accuracy(logits, y):
    """Share of argmax(logits) == y (the first maximum wins a tie, as np.argmax)."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y)))


# -- training: forward and backward ----------------------------------------------------------------

def clip_level(mag, bits, clip=None):
    """The activation value that maps to the largest code x_max = 2^(bits − 1) − 1, from the
    magnitudes `mag` (|a|, any shape). `clip`: None, the 99.99th percentile (the default of the
    compiler and of training); a number, that percentile (ACIQ/PACT-style tighter clips for
    4-bit codes); "mse": the clip c (64 candidates, geometric from max/64 to max) that
    minimises the mean squared error of round(a·x_max/c)·c/x_max, saturated at ±x_max, against a
    (zeros quantise exactly at every c and are left out of the search)."""
    mag = np.asarray(mag).ravel()
    if clip != "mse":
        return float(np.percentile(mag, ACT_PERCENTILE if clip is None else float(clip)))
    x_max = (1 << (bits - 1)) - 1
    v = mag[mag > 0].astype(np.float64)
    if v.size == 0:
        return 0.0
    top = float(v.max())
    best, best_err = top, np.inf
    for c in top * np.geomspace(1.0 / 64, 1.0, MSE_GRID):
        s = x_max / c
        err = float(np.sum((np.minimum(np.rint(v * s), x_max) / s - v) ** 2))
        if err < best_err:
            best, best_err = float(c), err
    return best


def quantise_codes(a, bits, scale=None, clip=None):
    """Fake quantisation to sign + (bits − 1)-bit codes: round(a·s)/s, saturated, with
    s = x_max / `clip_level(|a|, bits, clip)` (default the 99.99th percentile of |a|, as the
    compiler chooses its scales) unless `scale` is given. Used with straight-through gradients
    (the backward pass ignores it)."""
    x_max = (1 << (bits - 1)) - 1
    if scale is None:
        flat = np.abs(a).ravel()
        if flat.size > 65536:  # a strided sample: the percentile of the whole tensor costs a sort
            flat = flat[:: flat.size // 65536]
        if clip == "mse" and flat.size > 16384:  # the search costs 64 passes
            flat = flat[:: flat.size // 16384]
        peak = clip_level(flat, bits, clip)
        scale = x_max / peak if peak > 0 else 1.0
    return np.clip(np.rint(a * scale), -x_max, x_max) / scale


def _adc_quantise(rows, W, z, adc_bits):
    """The layer's matmul output as the ADC reads it: both polarities floored to a common step
    (the largest line charge at the largest ADC gain reads full scale), P − N."""
    zp = rows @ np.maximum(W, 0.0)
    zn = zp - z
    step = max(float(zp.max()), float(zn.max()), 1e-30) * 1.21 / ((1 << adc_bits) - 1)
    return (np.floor(zp / step) - np.floor(zn / step)) * step


def forward_train(cfg: NetConfig, params, x, *, noise=None, act_bits=0, adc_bits=0,
                  act_clip=None):
    """Training-mode forward (batch statistics). `noise`: dict op name → additive weight noise.
    `act_bits` > 0: every matrix layer's input quantised to codes of that width (the network
    input, in [0, 1], at the compiler's fixed scale x_max; the others clipped at
    `clip_level(..., act_clip)` of the batch); `adc_bits` > 0: its matmul output
    quantised like the ADC; both with straight-through gradients.
    Returns (logits, cache); the cache feeds `backward` and holds the batch statistics."""
    state = {"x": check_input(cfg, x)}
    cache = []
    for op in cfg.ops:
        a = state[op.src]
        if isinstance(op, MaxPool):
            out = _maxpool(a, op.k)
            cache.append((op, a, out))
            state[op.dst] = out
            continue
        p = params[op.name]
        if act_bits:
            a_in = quantise_codes(a, act_bits, (1 << (act_bits - 1)) - 1 if op.src == "x" else None,
                                  act_clip)
            rows = layer_rows(op, a_in)
        else:
            rows = layer_rows(op, a)
        W = p["W"] if noise is None or op.name not in noise else p["W"] + noise[op.name]
        z = rows @ W
        if adc_bits:
            z = _adc_quantise(rows, W, z, adc_bits)
        c = {"rows": rows, "W": W, "shape": a.shape}
        if op.bn:
            mu, var = z.mean(axis=0), z.var(axis=0)
            inv = 1.0 / np.sqrt(var + BN_EPS)
            zh = (z - mu) * inv
            u = zh * p["gamma"] + p["beta"]
            c.update(mu=mu, var=var, inv=inv, zh=zh)
        else:
            u = z + p["b"]
        if op.residual is not None:
            u = u + state[op.residual].reshape(u.shape)
        out = np.maximum(u, 0.0) if op.relu else u
        c["u"] = u
        cache.append((op, a, c))
        state[op.dst] = _unrows(op, a, out)
    return state[cfg.output], cache


def backward(cfg: NetConfig, params, cache, dlogits):
    """Gradients of every trainable parameter (dict like `params`, keys of `TRAINABLE`)."""
    grads = {}
    dstate = {cfg.output: dlogits}
    for op, a, c in reversed(cache):
        d = dstate.pop(op.dst, None)
        if d is None:
            continue
        if isinstance(op, MaxPool):
            n, h, w, ch = a.shape
            k = op.k
            blocks = a.reshape(n, h // k, k, w // k, k, ch)
            mask = blocks == c[:, :, None, :, None, :]
            mask = mask / mask.sum(axis=(2, 4), keepdims=True)
            da = (mask * d[:, :, None, :, None, :]).reshape(a.shape)
        else:
            p = params[op.name]
            du = d.reshape(c["u"].shape)
            if op.relu:
                du = du * (c["u"] > 0)
            if op.residual is not None:
                r_shape = dstate.get(op.residual)
                contrib = du.reshape(_state_shape(a, op, du))
                dstate[op.residual] = contrib if r_shape is None else r_shape + contrib
            g = {}
            if op.bn:
                zh, inv = c["zh"], c["inv"]
                g["gamma"] = (du * zh).sum(axis=0)
                g["beta"] = du.sum(axis=0)
                dzh = du * p["gamma"]
                m = du.shape[0]
                dz = inv / m * (m * dzh - dzh.sum(axis=0) - zh * (dzh * zh).sum(axis=0))
            else:
                g["b"] = du.sum(axis=0)
                dz = du
            g["W"] = c["rows"].T @ dz
            grads[op.name] = g
            drows = dz @ c["W"].T
            if isinstance(op, Conv):
                da = col2im(drows, a.shape, op.k)
            else:
                da = drows.reshape(a.shape)
        prev = dstate.get(op.src)
        dstate[op.src] = da if prev is None else prev + da
    return grads


def _state_shape(a, op, out):
    if isinstance(op, Conv):
        n, h, w, _ = a.shape
        return (n, h, w, op.c_out)
    return out.shape


def cross_entropy(logits, y):
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = -np.mean(np.log(prob[np.arange(n), y] + 1e-300))
    d = prob
    d[np.arange(n), y] -= 1.0
    return float(loss), d / n


def distill_loss(logits, teacher_logits, temp):
    """Mean over the batch of T² · KL(softmax(t/T) ‖ softmax(s/T)) (the soft-target loss of
    knowledge distillation; T² keeps its gradient on the scale of the cross-entropy's), and its
    gradient with respect to the student's logits s: T · (softmax(s/T) − softmax(t/T)) / N."""
    def log_softmax(z):
        z = z / temp
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ls, lt = log_softmax(logits), log_softmax(np.asarray(teacher_logits, dtype=logits.dtype))
    pt = np.exp(lt)
    n = logits.shape[0]
    loss = temp * temp * float(np.sum(pt * (lt - ls))) / n
    return loss, temp * (np.exp(ls) - pt) / n


# -- training loop ---------------------------------------------------------------------------------

def _weight_noise(cfg, params, sigma, rng, hw_noise=0.0):
    if sigma <= 0 and hw_noise <= 0:
        return None
    out = {}
    for op in cfg.matrix_ops:
        W = params[op.name]["W"]
        wmax = np.abs(W).max(axis=0)
        s = sigma if hw_noise <= 0 else np.sqrt((hw_perturb(W, wmax) * hw_noise) ** 2 + sigma ** 2)
        out[op.name] = (rng.normal(0.0, 1.0, W.shape) * (s * wmax)).astype(W.dtype, copy=False)
    return out


HW_NOISE_TIME = 86400.0     # the device spread hardware-aware training injects is that at 1 day


def hw_perturb(W, wmax, t=HW_NOISE_TIME):
    """Per weight, σ of the tile's conductance error at time t relative to the column's max |W|
    (the compiler maps max |W| to g_max), from the tile model's device fits at
    G = |W|/wmax · g_max of the default tile: programming noise (`prog_noise_sigma`), the spread
    of drift the global compensation leaves (G·σ_ν(G)·ln((t + t0)/t0), `drift_nu_stats`) and the
    1/f read noise (`read_noise_sigma`), in quadrature, over g_max (at 1 day about 1 % of
    full scale at G = 0, 8 % at full scale)."""
    from golden import tile as gt  # the device fits live in the tile model, once

    tcfg = gt.TileConfig(name="pcm")
    g = np.abs(W) / np.where(wmax > 0, wmax, 1.0) * tcfg.g_max
    prog = gt.prog_noise_sigma(tcfg, g)
    _, nu_sigma = gt.drift_nu_stats(tcfg, g)
    drift = g * nu_sigma * np.log((t + tcfg.t0) / tcfg.t0)
    read = g * gt.read_noise_sigma(tcfg, g, t)
    return np.sqrt(prog * prog + drift * drift + read * read) / tcfg.g_max


def augment(x, shape, shift, rng):
    """Every image of the batch x (N, ...) translated by a random (dy, dx) in [−shift, shift]²,
    zero fill; `shape` (H, W, C) is the image layout of a sample."""
    h, w, c = (int(d) for d in shape)
    n = x.shape[0]
    img = np.asarray(x).reshape(n, h, w, c)
    pad = np.pad(img, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    dy = rng.integers(0, 2 * shift + 1, n)
    dx = rng.integers(0, 2 * shift + 1, n)
    out = np.empty_like(img)
    for i in range(n):  # a slice per image: the batch is small
        out[i] = pad[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out.reshape(x.shape)


def affine_sample(x, shape, A):
    """Every image of the batch x (N, ...) resampled through its 2 × 2 matrix A[i] about the
    image centre: output pixel p takes the input at A[i]·(p − centre) + centre, bilinear, zero
    outside; `shape` (H, W, C) is the image layout of a sample. A = I returns x."""
    h, w, c = (int(d) for d in shape)
    n = x.shape[0]
    img = np.pad(np.asarray(x).reshape(n, h, w, c), ((0, 0), (2, 2), (2, 2), (0, 0)))
    cy, cx = (h - 1) / 2, (w - 1) / 2
    gy, gx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    sy = A[:, 0, 0, None, None] * gy + A[:, 0, 1, None, None] * gx + cy
    sx = A[:, 1, 0, None, None] * gy + A[:, 1, 1, None, None] * gx + cx
    sy, sx = np.clip(sy, -1, h), np.clip(sx, -1, w)    # beyond the border: the zero padding
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    iy, ix = y0.astype(np.int64) + 2, x0.astype(np.int64) + 2
    b = np.arange(n)[:, None, None]
    out = ((1 - fy) * ((1 - fx) * img[b, iy, ix] + fx * img[b, iy, ix + 1])
           + fy * ((1 - fx) * img[b, iy + 1, ix] + fx * img[b, iy + 1, ix + 1]))
    return out.astype(img.dtype, copy=False).reshape(x.shape)


def distort(x, shape, amount, rng):
    """`affine_sample` with a random matrix per image, I + U(−amount, amount) per entry."""
    A = np.eye(2) + rng.uniform(-amount, amount, (x.shape[0], 2, 2))
    return affine_sample(x, shape, A)


def _recalibrate_bn(cfg, params, x, act_bits=0, act_clip=None):
    """Running statistics := the statistics of the whole training set (one full-batch pass)."""
    _, cache = forward_train(cfg, params, x, act_bits=act_bits, act_clip=act_clip)
    for op, _, c in cache:
        if isinstance(op, MATRIX_OPS) and op.bn:
            params[op.name]["mean"] = c["mu"].copy()
            params[op.name]["var"] = c["var"].copy()


def train(cfg: NetConfig, tcfg: TrainConfig, x, y, *, progress=True, x_test=None, y_test=None,
          teacher=None):
    """Train from a seeded initialisation; returns (params, history). With `tcfg.distill_from`,
    `teacher` is the trained teacher (a `Network`, see `load_or_train`); its float logits on
    every (augmented) batch are the soft targets, and every history entry holds the epoch's mean
    soft loss (`soft_loss`)."""
    if tcfg.distill_from:
        if teacher is None:
            raise ValueError(f"`distill_from` ({tcfg.distill_from!r}) needs the trained teacher: "
                             f"pass `teacher` (load_or_train does)")
        if teacher.name != tcfg.distill_from:
            raise ValueError(f"`distill_from` names {tcfg.distill_from!r}, the teacher passed is "
                             f"{teacher.name!r}")
        check_teacher(cfg, tcfg, teacher.cfg)
    rng = np.random.default_rng(tcfg.seed)
    params = init_params(cfg, rng)
    if tcfg.float32:
        params = {k: {n: a.astype(np.float32) for n, a in p.items()} for k, p in params.items()}
        x = np.asarray(x, dtype=np.float32)
    if tcfg.distill_from:  # the teacher in the student's precision (float32: BLAS speed)
        teach = FloatMatrix({k: {n: np.asarray(a, dtype=x.dtype) for n, a in p.items()}
                             for k, p in teacher.params.items()})
    m = {k: {n: np.zeros_like(v) for n, v in p.items() if n in TRAINABLE} for k, p in params.items()}
    v = {k: {n: np.zeros_like(a) for n, a in p.items() if n in TRAINABLE} for k, p in params.items()}
    b1, b2, step = 0.9, 0.999, 0
    history = []
    t0 = time.time()
    n = x.shape[0]
    shape = tcfg.image_shape or cfg.input_shape
    if (tcfg.augment_shift or tcfg.augment_affine) and (
            len(shape) != 3 or int(np.prod(shape)) != int(np.prod(cfg.input_shape))):
        raise ValueError(f"`augment_shift` and `augment_affine` need an (H, W, C) `image_shape` "
                         f"of {int(np.prod(cfg.input_shape))} values, not {shape!r}")
    for epoch in range(tcfg.epochs):
        lr = float(tcfg.lr * 0.5 * (1 + np.cos(np.pi * epoch / tcfg.epochs)))  # cosine schedule
        order = rng.permutation(n)
        losses, soft = [], []
        for s in range(0, n, tcfg.batch):
            idx = order[s:s + tcfg.batch]
            if idx.size < 2:
                continue
            noise = _weight_noise(cfg, params, tcfg.weight_noise, rng, tcfg.hw_noise)
            xb = x[idx]
            if tcfg.augment_affine:
                xb = distort(xb, shape, tcfg.augment_affine, rng)
            if tcfg.augment_shift:
                xb = augment(xb, shape, tcfg.augment_shift, rng)
            if tcfg.augment_mixup:
                lam = rng.beta(tcfg.augment_mixup, tcfg.augment_mixup, (idx.size, 1))
                xb = (lam * xb + (1 - lam) * xb[rng.permutation(idx.size)]).astype(xb.dtype)
            logits, cache = forward_train(cfg, params, xb, noise=noise, act_bits=tcfg.act_bits,
                                          adc_bits=tcfg.adc_bits if tcfg.hw_noise > 0 else 0,
                                          act_clip=tcfg.act_clip)
            loss, d = cross_entropy(logits, y[idx])
            if tcfg.distill_from:
                w = tcfg.distill_weight
                soft_loss, d_soft = distill_loss(logits, run(teacher.cfg, xb, teach),
                                                 tcfg.distill_temp)
                soft.append(soft_loss)
                loss, d = w * soft_loss + (1 - w) * loss, w * d_soft + (1 - w) * d
            losses.append(loss)
            grads = backward(cfg, params, cache, d)
            step += 1
            for name, g in grads.items():
                p = params[name]
                for k, gk in g.items():
                    m[name][k] = b1 * m[name][k] + (1 - b1) * gk
                    v[name][k] = b2 * v[name][k] + (1 - b2) * gk * gk
                    mh = m[name][k] / (1 - b1 ** step)
                    vh = v[name][k] / (1 - b2 ** step)
                    if k == "W":
                        p[k] = p[k] * (1 - lr * tcfg.weight_decay)
                    p[k] = p[k] - lr * mh / (np.sqrt(vh) + 1e-8)
            for op, _, c in cache:
                if isinstance(op, MATRIX_OPS) and op.bn:
                    p = params[op.name]
                    p["mean"] = (1 - tcfg.bn_momentum) * p["mean"] + tcfg.bn_momentum * c["mu"]
                    p["var"] = (1 - tcfg.bn_momentum) * p["var"] + tcfg.bn_momentum * c["var"]
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if soft:
            entry["soft_loss"] = float(np.mean(soft))
        history.append(entry)
        if progress:
            print(f"\r  training {cfg.name}: epoch {epoch + 1}/{tcfg.epochs}  loss "
                  f"{entry['loss']:.4f}  ({time.time() - t0:.0f} s)", end="", file=sys.stderr,
                  flush=True)
    if x.shape[0] > RECALIBRATE_MAX:  # a fixed subset: the full-batch pass would need GBs
        x = x[np.random.default_rng(tcfg.seed + 1).choice(x.shape[0], RECALIBRATE_MAX, replace=False)]
    _recalibrate_bn(cfg, params, x, tcfg.act_bits, tcfg.act_clip)
    params = {k: {n: a.astype(np.float64) for n, a in p.items()} for k, p in params.items()}
    if progress:
        print(file=sys.stderr)
    if x_test is not None:
        history.append({"test_accuracy": accuracy(run(cfg, x_test, FloatMatrix(params)), y_test)})
    return params, history


# -- cache -----------------------------------------------------------------------------------------

def cache_key(cfg: NetConfig, tcfg: TrainConfig):
    text = json.dumps({"net": cfg.to_dict(), "train": tcfg.to_dict(), "code": CODE_VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Network:
    """A trained network: its config, training settings, parameters and float accuracies."""

    cfg: NetConfig
    tcfg: TrainConfig
    params: dict
    info: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.cfg.name

    def logits(self, x):
        return run(self.cfg, x, FloatMatrix(self.params))

    def accuracy(self, x, y):
        return accuracy(self.logits(x), y)


def _save(path, net):
    flat = {f"{op}/{k}": v for op, p in net.params.items() for k, v in p.items()}
    np.savez(path.with_suffix(".npz"), **flat)
    path.with_suffix(".json").write_text(json.dumps(
        {"net": net.cfg.to_dict(), "train": net.tcfg.to_dict(), "code": CODE_VERSION,
         **net.info}, indent=1) + "\n")


def _load(path, cfg, tcfg):
    params = {}
    with np.load(path.with_suffix(".npz")) as z:
        for key in z.files:
            op, k = key.split("/")
            params.setdefault(op, {})[k] = z[key]
    info = json.loads(path.with_suffix(".json").read_text())
    info = {k: v for k, v in info.items() if k not in ("net", "train", "code")}
    return Network(cfg, tcfg, params, info)


def load_or_train(name_or_cfg, tcfg: TrainConfig = None, *, data=None, cache_dir=CACHE_DIR,
                  progress=True, retrain=False):
    """The trained network: loaded from `cache_dir` when a result with the same key exists,
    else trained (and cached). `tcfg`: default `train_config(name)`; `data`: a split of
    `golden.data` (default: the fixed split of the network's data set, `DATASET`). With
    `tcfg.distill_from`, the teacher is loaded or trained first, by this function with its own
    settings on the same `data` (so on the same split), and checked (`check_teacher`)."""
    cfg = NETWORKS[name_or_cfg] if isinstance(name_or_cfg, str) else name_or_cfg
    tcfg = train_config(cfg.name) if tcfg is None else tcfg
    path = Path(cache_dir) / f"{cfg.name}-{cache_key(cfg, tcfg)}"
    if not retrain and path.with_suffix(".npz").exists() and path.with_suffix(".json").exists():
        return _load(path, cfg, tcfg)
    teacher = None
    if tcfg.distill_from:  # refused before any data is loaded
        teacher_cfg, teacher_tcfg = teacher_config(tcfg)
        check_teacher(cfg, tcfg, teacher_cfg)
    if data is None:
        from golden.data import load
        data = load(DATASET.get(cfg.name, "digits"))
    if tcfg.distill_from:  # cached, or trained on this split
        teacher = load_or_train(teacher_cfg, teacher_tcfg, data=data, cache_dir=cache_dir,
                                progress=progress)
    t0 = time.time()
    params, history = train(cfg, tcfg, data.x_train, data.y_train, progress=progress,
                            teacher=teacher)
    net = Network(cfg, tcfg, params)
    net.info = {"train_seconds": round(time.time() - t0, 2),
                "train_accuracy": net.accuracy(data.x_train, data.y_train),
                "test_accuracy": net.accuracy(data.x_test, data.y_test),
                "final_loss": history[-1]["loss"]}
    if getattr(data, "y_calib", None) is not None:
        net.info["calib_accuracy"] = net.accuracy(data.x_calib, data.y_calib)
    if teacher is not None:
        net.info["final_soft_loss"] = history[-1]["soft_loss"]
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(path, net)
    return net


def parse_act_clip(text):
    """Command-line `act_clip`: "mse", "none" (None: the 99.99th percentile) or a percentile."""
    if text in ("mse", "none"):
        return None if text == "none" else text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a percentile or 'mse', not {text!r}") from None
    check_act_clip(value, "act_clip")
    return value


def parse_seed(text):
    """Command-line seed: a non-negative integer (`TrainConfig.seed`, a NumPy generator seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a non-negative integer, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a non-negative integer, not {value}")
    return value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--retrain", action="store_true", help="ignore the cache")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR)
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--hw-noise", type=float, default=None,
                    help="hardware-aware training: scale of the injected tile noise")
    ap.add_argument("--act-bits", type=int, default=None, help="quantise layer inputs (4, 8)")
    ap.add_argument("--act-clip", type=parse_act_clip, default=None,
                    help="with --act-bits: the clip of the activation quantiser, a percentile of "
                         "|a| (default 99.99) or 'mse' (the clip of least squared error)")
    ap.add_argument("--train-seed", type=parse_seed, default=None,
                    help="the training seed (initialisation, batch order, noise, augmentation; "
                         f"default {TRAIN.seed}, the cached networks' seed)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs (default: the preset's)")
    ap.add_argument("--distill-from", default=None, metavar="TEACHER",
                    help="knowledge distillation from this network ('' for none: trained on the "
                         "labels alone; the MNIST MLP's preset distils from mnist_cnn)")
    ap.add_argument("--distill-temp", type=float, default=None, help="distillation temperature T")
    ap.add_argument("--distill-weight", type=float, default=None,
                    help="weight of the soft-target loss (the rest: cross-entropy on the labels)")
    args = ap.parse_args(argv)
    for name in args.networks:
        changes = {k: v for k, v in (("hw_noise", args.hw_noise), ("act_bits", args.act_bits),
                                     ("act_clip", args.act_clip), ("seed", args.train_seed),
                                     ("distill_from", args.distill_from),
                                     ("distill_temp", args.distill_temp),
                                     ("distill_weight", args.distill_weight),
                                     ("epochs", args.epochs))
                   if v is not None}
        if args.distill_from == "":  # off: the temperature and weight back to their defaults
            changes.setdefault("distill_temp", _LATER_FIELDS["distill_temp"])
            changes.setdefault("distill_weight", _LATER_FIELDS["distill_weight"])
        try:
            tcfg = train_config(name, **changes)
        except ValueError as e:
            ap.error(str(e))
        net = load_or_train(name, tcfg, cache_dir=args.cache, retrain=args.retrain)
        calib = net.info.get("calib_accuracy")
        print(f"{name}: test accuracy {100 * net.info['test_accuracy']:.2f} %, train "
              f"{100 * net.info['train_accuracy']:.2f} %"
              + ("" if calib is None else f", calibration {100 * calib:.2f} %")
              + f" ({net.info['train_seconds']} s to train)")


if __name__ == "__main__":
    main()
