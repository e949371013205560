"""Pictures as SVG written by hand: the Clojure project's decision boundary, its animation
during training, loss and accuracy curves, a confusion matrix and a grid of images.

Contract: a picture is built from plain numbers (numpy arrays, dicts of them) and `_write_atomic`
puts it on disk whole or not at all. `boundary_grid` asks the network once for a score grid
`s: f[ny, nx]`, where s[j, i] is the probability of class 1 at the cell centre (xs[i], ys[j]);
`boundary_svg` and `animation` draw such grids. No plotting library: every element is one line
of SVG you can read, made by the building blocks below (`_Frame`, `_axes`, `_text`, `_svg`).
"""
from __future__ import annotations

import base64
import binascii
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import data, model
from funcnn.checks import InputError

BLUE, ORANGE, RED = "#1f77b4", "#ff7f0e", "#d62728"     # class 0, class 1; a wrong answer
PALETTE = (BLUE, ORANGE, "#2ca02c", RED, "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")   # more classes: tab10
INK = "#222222"                          # frame, text, boundary line, point outlines
LEVELS = 16                              # colour steps per class, so equal cells merge
ANIMATION_LEVELS = 6                     # fewer steps in an animation: longer runs, smaller file
STRENGTH = 0.75                          # the most confident cell: 75% colour, 25% white

# layout in pixels: the plot is a SIZE x SIZE square, the legend sits to its right
LEFT, TOP, SIZE = 64, 44, 400
WIDTH, HEIGHT = LEFT + SIZE + 170, TOP + SIZE + 56
# training curves: panels of PANEL_W x PANEL_H side by side, PANEL_GAP apart
PANEL_LEFT, PANEL_TOP, PANEL_W, PANEL_H, PANEL_GAP = 70, 100, 340, 240, 90
CELL = 44                                # a confusion-matrix cell, px
TILE_W, TILE_H, IMAGE_PX = 116, 124, 84  # an image-grid tile and the image in it, px


# --- the picture -----------------------------------------------------------------------------

def decision_boundary(net, params: model.Params, ds: data.Dataset,
                      path="images/decision_boundary.svg", *, resolution: int = 60,
                      margin: float = 0.05, title: str | None = None) -> Path:
    """Draw where `net` says class 0 and class 1, with the data on top; write it as SVG.

    The plane is the bounding box of `ds.x: f32[n, 2]`, widened by `margin` times its span on
    every side, cut into `resolution` x `resolution` cells. Blue is class 0, orange class 1,
    paler where the network is unsure; the dark line is where p(class 1) = 0.5.
    Returns the path written (parent folders are made as needed).
    """
    data.check_dataset(ds, "ds")
    if ds.x.shape[1] != 2:
        raise InputError(f"ds.x has {ds.x.shape[1]} features but a decision-boundary picture "
                         "needs exactly 2 (the plane x1, x2); pick two columns or project first")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise InputError(f"margin (the fraction of the data's span added on each side) must be "
                         f"a number >= 0, got {margin!r}")
    _check_title(title)
    x = np.asarray(ds.x, np.float64)                       # numpy from here on
    lo, hi = _plane_box(x, margin)
    xs, ys, s = boundary_grid(net, params, lo, hi, resolution)
    title = f"{net} decision boundary" if title is None else title
    return _write_atomic(path, boundary_svg(s, xs, ys, x, labels_of(ds.y), title))


def boundary_grid(net, params: model.Params, lo, hi,
                  resolution: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's score on a grid: (xs: f64[r], ys: f64[r], s: f64[r, r]), r = resolution.

    `lo = (x1_min, x2_min)` and `hi = (x1_max, x2_max)` bound the plane; xs and ys are the
    centres of r equal cells along each axis, and s[j, i] = p(class 1) at (xs[i], ys[j]).
    All r * r points go through one call of `funcnn.model.forward`.
    """
    model.check_params(net, params)
    if tuple(net.input_shape) != (2,):
        raise InputError(f"net takes inputs of shape {tuple(net.input_shape)} but a decision "
                         f"boundary is drawn on a plane of 2 ({net!r}); build it with "
                         "mlp([2, ...]) or input_shape=(2,)")
    _check_resolution(resolution)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if lo.shape != (2,) or hi.shape != (2,) or not np.all(np.isfinite(lo) & np.isfinite(hi)) \
            or not np.all(hi > lo):
        raise InputError(f"lo and hi must be two finite (x1, x2) corners with hi > lo, got "
                         f"lo={lo.tolist()}, hi={hi.tolist()}")
    cell = (hi - lo) / resolution                          # width, height of one cell
    xs = lo[0] + (np.arange(resolution) + 0.5) * cell[0]   # cell centres
    ys = lo[1] + (np.arange(resolution) + 0.5) * cell[1]
    gx, gy = np.meshgrid(xs, ys)                           # gx[j, i] = xs[i], gy[j, i] = ys[j]
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)      # f64[r * r, 2], row j * r + i
    dtype = jax.tree.leaves(params)[0].dtype
    out = model.forward(net, params, jnp.asarray(grid, dtype))   # f32[r * r, k]
    s = class1_score(net, np.asarray(out, np.float64))
    return xs, ys, s.reshape(resolution, resolution)       # row j holds ys[j]


def class1_score(net, out: np.ndarray) -> np.ndarray:
    """p(class 1) from the network's output `out: f[n, k]` -> f[n] in [0, 1].

    k = 1: the output itself (a sigmoid's p).  k >= 2: p_1 / sum_j p_j, which is p_1 for
    softmax outputs, a fair share for k sigmoids, and for k > 2 "class 1 against the rest".
    Log-probabilities (output log_softmax) are exponentiated; any other output that is not
    a probability (identity, tanh, relu) goes through a softmax, so that for k = 2 the
    p = 0.5 line is exactly where the predicted class (the argmax) changes.
    """
    out = np.asarray(out, np.float64)
    if out.shape[1] == 1:
        return np.clip(out[:, 0], 0.0, 1.0)
    output = net.output_activation.name
    if output == "log_softmax":
        out = np.exp(out)                                        # log p -> p
    elif output not in ("sigmoid", "softmax"):
        out = np.exp(out - out.max(axis=1, keepdims=True))       # scores -> p, up to a factor
    total = out.sum(axis=1)
    share = out[:, 1] / np.where(total > 0, total, 1.0)          # p_1 / sum_j p_j
    return np.clip(np.where(total > 0, share, 0.5), 0.0, 1.0)    # no mass at all: undecided


def labels_of(y) -> np.ndarray:
    """Class per row from labels `y: f[n, k]`: argmax of a one-hot row, or y > 0.5 for k = 1."""
    y = np.asarray(y)
    return (y[:, 0] > 0.5).astype(int) if y.shape[1] == 1 else y.argmax(axis=1)


# --- marching squares ------------------------------------------------------------------------

def contour_segments(s, xs, ys, level: float = 0.5) -> list:
    """The line where s = level, as straight segments [((x0, y0), (x1, y1)), ...].

    s: f[ny, nx] holds s[j, i] at (xs[i], ys[j]). Each square of four neighbouring samples is
    cut on every edge whose ends lie on opposite sides of `level`, at the point that linear
    interpolation puts at level. Two cuts make one segment; four (a saddle) make two, paired
    bottom+right and top+left, which is one of the two valid readings. [] if s never crosses.
    """
    s, xs, ys = (np.asarray(v, np.float64) for v in (s, xs, ys))
    _check_grid(s, xs, ys)
    above = s >= level                        # which side of the line each sample is on
    corner = above[:-1, :-1]                  # each square's bottom-left sample
    mixed = (corner != above[:-1, 1:]) | (corner != above[1:, 1:]) | (corner != above[1:, :-1])
    segments = []
    for j, i in zip(*np.nonzero(mixed), strict=True):     # only squares the line passes through
        # corners counter-clockwise from bottom-left; edge e joins corner e and e + 1
        corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
        cuts = []
        for (ia, ja), (ib, jb) in zip(corners, corners[1:] + corners[:1], strict=True):
            if above[ja, ia] != above[jb, ib]:
                # s_a + t (s_b - s_a) = level  =>  t = (level - s_a) / (s_b - s_a)
                t = (level - s[ja, ia]) / (s[jb, ib] - s[ja, ia])
                cuts.append((xs[ia] + t * (xs[ib] - xs[ia]), ys[ja] + t * (ys[jb] - ys[ja])))
        segments += list(zip(cuts[0::2], cuts[1::2]))       # 2 or 4 cuts
    return segments


# --- training curves -------------------------------------------------------------------------

_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
_STYLE = {"train": (BLUE, ""), "validation": (ORANGE, "6 4"), "test": (RED, "6 4")}  # colour, dash


def curves(history, path, *, title: str | None = None, x=None, x_label: str = "epoch") -> Path:
    """Loss and accuracy curves side by side, train against validation or test; write SVG.

    history: {"train_loss": f[m], "test_loss": f[m], "train_accuracy": f[m], ...}, any subset,
    as `funcnn.train.fit` returns it; "val_" or "validation_" may stand for "test_"; keys not
    ending in _loss or _accuracy (a "probe", say) are not curves and are left out. The x
    values are `x` or history["step"], else the epochs 1..m; x_label names them:
    curves(h, "images/loss.svg", x=np.arange(25, 2001, 25), x_label="step").
    NaN (or Inf) values are skipped; a single value shows as a dot. Returns the path written.
    """
    x, panels = _curve_series(history, x)
    _check_title(title)
    if not isinstance(x_label, str):
        raise InputError(f"x_label must be a str, such as 'epoch' or 'step', got {x_label!r}")
    title = f"{' and '.join(panels)} per {x_label}" if title is None else title
    return _write_atomic(path, _curves_svg(x, panels, title, x_label))


def _curve_series(history, x) -> tuple[np.ndarray, dict]:
    """history -> (x: f64[m], {"loss": [(split, y: f64[m]), ...], "accuracy": [...]}), checked."""
    if not isinstance(history, Mapping):
        raise InputError(f"history must be a dict of 1-D arrays such as {{'train_loss': ...}}, "
                         f"got {type(history).__name__}")
    history = dict(history)
    if "step" in history:
        if x is not None:
            raise InputError("x and history['step'] both give the x values; pass only one")
        x = history.pop("step")
    panels = {"loss": [], "accuracy": []}
    for key, values in history.items():
        if str(key).endswith(("_loss", "_accuracy")):
            split, kind, y = _series(key, values)
            panels[kind].append((split, y))
    lengths = {len(y) for series in panels.values() for _, y in series}
    if not lengths:
        raise InputError("history needs at least one series, such as 'train_loss'")
    if len(lengths) > 1:
        raise InputError(f"history's series must all have one value per epoch, got lengths "
                         f"{sorted(lengths)}")
    (m,) = lengths
    x = np.arange(1.0, m + 1) if x is None else np.asarray(x, np.float64)   # epochs 1..m
    if x.shape != (m,) or not np.all(np.isfinite(x)):
        raise InputError(f"x (or history['step']) must be {m} finite numbers, one per value of "
                         f"the series, got shape {x.shape}")
    order = list(_STYLE)                                       # train, validation, test
    return x, {kind: sorted(series, key=lambda s: order.index(s[0]))
               for kind, series in panels.items() if series}


def _series(key, values) -> tuple[str, str, np.ndarray]:
    """"val_loss", values -> ("validation", "loss", y: f64[m]), or a ValueError naming the key."""
    split, _, kind = str(key).partition("_")
    if split not in _SPLITS or kind not in ("loss", "accuracy"):
        raise InputError(f"history key {key!r} names a curve, but not as train_, val_, "
                         "validation_ or test_ followed by loss or accuracy; rename it")
    y = np.asarray(values, np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise InputError(f"history[{key!r}] must be 1-D, one value per epoch, got shape {y.shape}"
                         "; from fit_many's [members, epochs] pass one member's row")
    return _SPLITS[split], kind, y


def _curves_svg(x, panels: dict, title: str, x_label: str) -> str:
    """The panels ("loss", then "accuracy") in a row under a title and one shared legend."""
    width = 2 * PANEL_LEFT + len(panels) * PANEL_W + (len(panels) - 1) * PANEL_GAP - 40
    present = {split for series in panels.values() for split, _ in series}
    splits = [split for split in _STYLE if split in present]   # train, validation, test
    whole = bool(np.all(x == np.round(x)))                    # epochs, steps: whole-number ticks
    body = [_text(width / 2, 28, title, f'text-anchor="middle" font-size="15" fill="{INK}"')]
    body += _curve_legend(splits, width)
    for n, (kind, series) in enumerate(panels.items()):
        left = PANEL_LEFT + n * (PANEL_W + PANEL_GAP)
        body += _curve_panel(kind, series, x, left, x_label, whole)
    return _svg(width, PANEL_TOP + PANEL_H + 56, body)


def _curve_panel(kind: str, series, x, left: float, x_label: str, whole: bool) -> list[str]:
    """One panel: a <g id=kind> with a polyline per series, then its axes."""
    lo, hi = _curve_box(x, [y for _, y in series])
    frame = _Frame(lo, hi, left, PANEL_TOP, PANEL_W, PANEL_H)
    parts = [f'<g id="{kind}">']
    for split, y in series:
        parts += _polyline(frame, x, y, split)
    return parts + _axes(frame, kind, x_label, kind, whole_x=whole) + ["</g>"]


def _curve_box(x, ys) -> tuple[tuple, tuple]:
    """A panel's data box: all of x; the finite values of every y, plus 5% above and below."""
    y = np.concatenate(ys)
    y = y[np.isfinite(y)]
    x_lo, x_hi = _widen(x.min(), x.max())
    y_lo, y_hi = _widen(y.min(), y.max()) if y.size else (0.0, 1.0)
    pad = 0.05 * (y_hi - y_lo)
    return (x_lo, y_lo - pad), (x_hi, y_hi + pad)


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi), or a unit interval centred on lo when there is only one value."""
    return (float(lo), float(hi)) if hi > lo else (lo - 0.5, lo + 0.5)


def _polyline(frame: _Frame, x, y, split: str) -> list[str]:
    """One series: a <polyline class=split> through its finite points; dots when they are few."""
    keep = np.isfinite(y)                                     # NaN: not measured, skip it
    points = [(frame.px(a), frame.py(b)) for a, b in zip(x[keep], y[keep], strict=True)]
    if not points:
        return []
    colour, dash = _STYLE[split]
    line = (f'<polyline class="{split}" points="{" ".join(f"{a:.2f},{b:.2f}" for a, b in points)}" '
            f'fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash or "none"}"/>')
    dots = [f'<circle cx="{a:.2f}" cy="{b:.2f}" r="2.5" fill="{colour}"/>' for a, b in points]
    return [line] + (dots if len(points) <= 30 else [])


def _curve_legend(splits: list[str], width: float) -> list[str]:
    """A key under the title: a short line in each series' style, then its name."""
    x = width / 2 - 55 * len(splits)                          # 110 px per entry, centred
    parts = [f'<g id="legend" font-size="12" fill="{INK}">']
    for split in splits:
        colour, dash = _STYLE[split]
        parts.append(f'<line x1="{x:.2f}" y1="52" x2="{x + 26:.2f}" y2="52" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="{dash or "none"}"/>')
        parts.append(_text(x + 32, 56, split))
        x += 110
    return parts + ["</g>"]


# --- the training as an animation ------------------------------------------------------------

def animation(frames, xs, ys, points_x, points_label, path, *, steps=None,
              seconds_per_frame: float = 0.1, title: str | None = None,
              still_path=None) -> Path:
    """The decision boundary forming during training, as an SVG that plays in a browser.

    frames: f[n_frames, ny, nx], one score grid per snapshot, each as from `boundary_grid`
    (s[j, i] = p(class 1) at (xs[i], ys[j])); points_x: f[n, 2], points_label: i[n], the data,
    drawn once on top. steps: i[n_frames], the training step of each snapshot, shown as
    "step N" (default "frame t of n"). Each frame shows for `seconds_per_frame`, and the whole
    loops. still_path: also write the last frame there as an ordinary `boundary_svg` picture.
    Viewers without SVG animation (rsvg-convert, Inkscape) show the last frame.
    Returns the path of the animation.
    """
    frames, xs, ys = (np.asarray(v, np.float64) for v in (frames, xs, ys))
    _check_frames(frames, xs, ys)
    points_x, points_label = _check_points(points_x, points_label)
    labels = _frame_labels(steps, len(frames))
    _check_positive(seconds_per_frame, "seconds_per_frame")
    _check_title(title)
    title = "the decision boundary during training" if title is None else title
    if still_path is not None:
        _write_atomic(still_path, boundary_svg(frames[-1], xs, ys, points_x, points_label,
                                               f"{title}, {labels[-1]}"))
    frame = _grid_frame(xs, ys)
    body = ['<g id="frames">']
    for t, (s, label) in enumerate(zip(frames, labels, strict=True)):
        body += _animation_frame(t, len(frames), seconds_per_frame, s, xs, ys, frame, label)
    body += (["</g>"] + _points(points_x, points_label, frame)
             + _axes(frame, title, "x1", "x2") + _legend(_classes(points_label)))
    return _write_atomic(path, _svg(WIDTH, HEIGHT, body))


def _animation_frame(t: int, n: int, seconds: float, s, xs, ys, frame: _Frame,
                     label: str) -> list[str]:
    """Frame t of n as a <g>, switched on and off by SMIL, SVG's own animation elements.

    From t * seconds on, in a loop n * seconds long, the frame shows (display inline) for the
    first 1/n of the loop and hides for the rest. Without SMIL the display attribute of the
    group stands: "none", except for the last frame, which therefore hides itself with a <set>
    until its turn in the first loop.
    """
    last = t == n - 1
    parts = [f'<g id="frame-{t}" display="{"inline" if last else "none"}">']
    if n > 1:
        parts.append(f'<animate attributeName="display" values="inline;none" '
                     f'keyTimes="0;{1 / n:.6g}" calcMode="discrete" begin="{t * seconds:.6g}s" '
                     f'dur="{n * seconds:.6g}s" repeatCount="indefinite"/>')
    if last and n > 1:
        parts.append(f'<set attributeName="display" to="none" begin="0s" '
                     f'dur="{t * seconds:.6g}s"/>')
    parts += _cell_paths(s, frame)
    parts += _boundary(contour_segments(s, xs, ys), frame, f"boundary-{t}", digits=1)
    parts.append(_text(LEFT + SIZE + 20, TOP + SIZE - 6, label, f'font-size="14" fill="{INK}"'))
    return parts + ["</g>"]


def _cell_paths(s, frame: _Frame) -> list[str]:
    """The coloured grid in few bytes: one <path> per colour, drawn in cell units.

    Row j of s is screen row ny - 1 - j (screen y grows downward). A run of equal colour from
    column i to end is a line one cell thick along the middle of its row: "M i row.5 h width".
    White runs are left out: the background shows there. The <g> scales cells to pixels.
    """
    q = _level(s, ANIMATION_LEVELS)                           # i[ny, nx] colour steps
    ny, nx = q.shape
    runs = {}                                                 # colour step -> path pieces
    for j in range(ny):
        for i, end in _runs(q[j]):
            if q[j, i] != 0:
                runs.setdefault(q[j, i], []).append(f"M{i} {ny - 1 - j}.5h{end - i}")
    scale = f"scale({frame.width / nx:.6g} {frame.height / ny:.6g})"
    return ([f'<g transform="translate({frame.left} {frame.top}) {scale}" fill="none" '
             'stroke-width="1" shape-rendering="crispEdges">']
            + [f'<path stroke="{_level_colour(step, ANIMATION_LEVELS)}" d="{"".join(d)}"/>'
               for step, d in sorted(runs.items())]
            + ["</g>"])


def _frame_labels(steps, n: int) -> list[str]:
    """"step N" for each frame, or "frame t of n" when the steps are not known."""
    if steps is None:
        return [f"frame {t + 1} of {n}" for t in range(n)]
    steps = np.asarray(steps)
    if steps.shape != (n,) or not np.issubdtype(steps.dtype, np.number):
        raise InputError(f"steps must hold one training step per frame ({n} numbers), got shape "
                         f"{steps.shape}; leave it out to number the frames instead")
    return [f"step {_number(float(v))}" for v in steps]


# --- confusion matrix ------------------------------------------------------------------------

def confusion_matrix(cm, class_names, path, *, title: str | None = None) -> Path:
    """Where a classifier's answers go: rows are the true class, columns the predicted one; SVG.

    cm: i[k, k] counts, as from `funcnn.metrics.confusion_matrix`; class_names: k strings.
    Each cell shows its count and is shaded by its share of the row (of the examples of true
    class i, the fraction predicted j), so rows compare however many examples each has. The
    diagonal holds the right answers and is outlined. Returns the path written.
    """
    cm = _check_counts(cm)
    names = _check_class_names(class_names, len(cm), "one per row of cm")
    _check_title(title)
    if title is None:
        title = f"confusion matrix: {np.trace(cm)} of {cm.sum()} right"
    return _write_atomic(path, _confusion_svg(cm, names, title))


def _confusion_svg(cm: np.ndarray, names: list[str], title: str) -> str:
    """The matrix with the class names left (true) and below (predicted), and a key."""
    k = len(cm)
    name_w = 7 * max(len(name) for name in names)       # about 7 px a character at 12 px
    rotate = name_w > CELL - 6                          # too wide to stand under its column
    left, top, size = name_w + 52, 64, k * CELL
    below = (0.72 * name_w if rotate else 12) + 22      # room for the column names
    width = max(left + size + 110, 8 * len(title) + 40)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)   # each row sums to 1 (or 0)
    body = ([_text(width / 2, 28, title, f'text-anchor="middle" font-size="15" fill="{INK}"')]
            + _matrix_cells(cm, share, left, top)
            + _matrix_labels(names, left, top, rotate, below)
            + _share_key(left + size + 24, top))
    return _svg(width, top + size + below + 30, body)


def _matrix_cells(cm, share, left: float, top: float) -> list[str]:
    """A shaded square per cell with its count, white on the dark ones; the diagonal outlined."""
    parts = ['<g id="cells" font-size="12">']
    for i, j in np.ndindex(cm.shape):
        x, y = left + j * CELL, top + i * CELL
        parts.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" '
                     f'fill="{_blend(BLUE, share[i, j])}"/>')
        ink = "white" if share[i, j] > 0.5 else INK
        parts.append(_text(x + CELL / 2, y + CELL / 2 + 4, str(cm[i, j]),
                           f'text-anchor="middle" fill="{ink}"'))
    parts += [f'<rect x="{left + i * CELL}" y="{top + i * CELL}" width="{CELL}" height="{CELL}" '
              f'fill="none" stroke="{INK}" stroke-width="1.5"/>' for i in range(len(cm))]
    return parts + ["</g>"]


def _matrix_labels(names, left: float, top: float, rotate: bool, below: float) -> list[str]:
    """Class names: left of each row, under each column (slanted when long); axis titles."""
    bottom, middle = top + len(names) * CELL, len(names) * CELL / 2
    parts = [f'<g id="labels" font-size="12" fill="{INK}">']
    for i, name in enumerate(names):
        centre = i * CELL + CELL / 2
        parts.append(_text(left - 8, top + centre + 4, name, 'text-anchor="end"'))
        x, y = left + centre, bottom + 16
        if rotate:            # the name ends under its column and slants down to the left
            x, y = x + 4, y - 6
            parts.append(_text(x, y, name, f'text-anchor="end" '
                               f'transform="rotate(-45 {x:.2f} {y:.2f})"'))
        else:
            parts.append(_text(x, y, name, 'text-anchor="middle"'))
    parts.append(_text(left + middle, bottom + below + 4, "predicted",
                       'text-anchor="middle" font-size="13"'))
    parts.append(_text(18, top + middle, "true", 'text-anchor="middle" font-size="13" '
                       f'transform="rotate(-90 18 {top + middle})"'))
    return parts + ["</g>"]


def _share_key(x: float, top: float) -> list[str]:
    """A key to the shading: swatches for 100%, 75%, ..., 0% of the row."""
    parts = [f'<g id="key" font-size="11" fill="{INK}">', _text(x, top - 8, "share of row")]
    for n, t in enumerate((1.0, 0.75, 0.5, 0.25, 0.0)):
        y = top + n * 22
        parts.append(f'<rect x="{x}" y="{y}" width="18" height="18" fill="{_blend(BLUE, t)}" '
                     f'stroke="{INK}" stroke-width="0.5"/>')
        parts.append(_text(x + 24, y + 13, f"{t:.0%}"))
    return parts + ["</g>"]


# --- image grid, with PNG by hand ------------------------------------------------------------

def image_grid(images, true_labels, pred_labels, class_names, path, *, columns: int = 8,
               title: str | None = None) -> Path:
    """Small images in a grid, each captioned "true: X" over "pred: Y"; write SVG.

    images: f[n, h, w] in [0, 1] or u8[n, h, w], or rows of h * w features of square images
    (784 -> 28 x 28); true_labels, pred_labels: i[n] class indices (one-hot rows are read by
    argmax); class_names: what the indices name. A wrong prediction is captioned in red. Each
    image is a PNG (`png_bytes`) inside the SVG, scaled up with crisp pixels in browsers
    (`image-rendering: pixelated`; rsvg-convert smooths them). The first 32 mistakes, say:
    wrong = np.flatnonzero(pred != true)[:32]. Returns the path written.
    """
    pixels = _check_images(images)                            # u8[n, h, w]
    names = _check_class_names(class_names, None, "one per class index")
    true = _check_labels(true_labels, len(pixels), len(names), "true_labels")
    pred = _check_labels(pred_labels, len(pixels), len(names), "pred_labels")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise InputError(f"columns (images per row) must be an int >= 1, got {columns!r}")
    _check_title(title)
    title = f"{len(pixels)} images, true and predicted class" if title is None else title
    return _write_atomic(path, _grid_svg(pixels, true, pred, names, int(columns), title))


def _grid_svg(pixels, true, pred, names: list[str], columns: int, title: str) -> str:
    """Tiles left to right, top to bottom, `columns` to a row, under the title."""
    columns = max(1, min(columns, len(pixels)))
    rows = -(-len(pixels) // columns)                         # ceil(n / columns)
    width = max(20 + columns * TILE_W, 8 * len(title) + 40)
    body = [_text(width / 2, 28, title, f'text-anchor="middle" font-size="15" fill="{INK}"')]
    for t, (image, a, b) in enumerate(zip(pixels, true, pred, strict=True)):
        x, y = 10 + (t % columns) * TILE_W, 44 + (t // columns) * TILE_H
        body += _tile(image, names[a], names[b], a == b, x, y)
    return _svg(width, 44 + rows * TILE_H + 6, body)


def _tile(image, true_name: str, pred_name: str, right: bool, x: float, y: float) -> list[str]:
    """One image as a PNG data URI, scaled to IMAGE_PX, with its two-line caption."""
    h, w = image.shape
    scale = IMAGE_PX / max(h, w)
    centre = x + TILE_W / 2
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
    return ['<g class="tile">',
            f'<image x="{centre - w * scale / 2:.2f}" y="{y}" width="{w * scale:.2f}" '
            f'height="{h * scale:.2f}" style="image-rendering: pixelated" href="{uri}"/>',
            _text(centre, y + IMAGE_PX + 15, f"true: {true_name}",
                  f'text-anchor="middle" font-size="11" fill="{INK}"'),
            _text(centre, y + IMAGE_PX + 29, f"pred: {pred_name}",
                  f'text-anchor="middle" font-size="11" fill="{INK if right else RED}"'),
            "</g>"]


def filters(w, path, *, columns: int = 8, title: str | None = None) -> Path:
    """A convolution's learnt filters as small images: `w: f[kh, kw, c_in, c_out]` (HWIO, a
    `Conv2D`'s params["w"]), one tile per output channel (the first input channel when there
    are several), gray 0.5 at zero, white the largest positive weight of the layer, black its
    most negative. Returns the path written."""
    w = np.asarray(w, np.float64)
    if w.ndim != 4 or 0 in w.shape or not np.all(np.isfinite(w)):
        raise InputError(f"w must be a convolution's finite weights f[kh, kw, c_in, c_out], "
                         f"got shape {w.shape}; pass params[i]['w'] of a Conv2D")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise InputError(f"columns (filters per row) must be an int >= 1, got {columns!r}")
    _check_title(title)
    scale = max(float(np.abs(w).max()), 1e-12)
    tiles = np.moveaxis(w[:, :, 0, :], -1, 0)                  # [c_out, kh, kw]
    gray = np.rint((0.5 + 0.5 * tiles / scale) * 255).astype(np.uint8)
    columns = max(1, min(int(columns), len(gray)))
    rows = -(-len(gray) // columns)
    title = f"{len(gray)} filters, {w.shape[0]}x{w.shape[1]}" if title is None else title
    size, gap, top = 64, 10, 64
    width = max(20 + columns * (size + gap), 8 * len(title) + 40)
    body = [_text(width / 2, 28, title, f'text-anchor="middle" font-size="15" fill="{INK}"'),
            _text(width / 2, 48, "white: the largest positive weight, black: the most "
                  "negative, gray: 0", f'text-anchor="middle" font-size="11" fill="{INK}"')]
    for t, image in enumerate(gray):
        x, y = 10 + (t % columns) * (size + gap), top + (t // columns) * (size + gap)
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
        body.append(f'<image x="{x}" y="{y}" width="{size}" height="{size}" '
                    f'style="image-rendering: pixelated" href="{uri}"><title>filter {t}'
                    '</title></image>')
    return _write_atomic(path, _svg(width, top + rows * (size + gap) + 4, body))


def png_bytes(gray) -> bytes:
    """A PNG file of the 8-bit grayscale image `gray: u8[h, w]` (row 0 at the top).

    PNG is a signature and then chunks: IHDR (size and pixel format), IDAT (the rows, each
    after a filter-type byte, deflated by zlib), IEND. Every chunk is its length, its 4-letter
    type, its data and the CRC-32 of type + data.
    """
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim != 2 or 0 in gray.shape:
        raise InputError(f"gray must be a non-empty u8[h, w] image, got {gray.dtype} of shape "
                         f"{gray.shape}; from floats in [0, 1]: np.rint(x * 255).astype(np.uint8)")
    h, w = gray.shape
    # width, height, bit depth 8, colour type 0 (gray), deflate, filter method 0, no interlace
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    rows = np.hstack([np.zeros((h, 1), np.uint8), gray]).tobytes()   # filter 0: row as is
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows, 9)) + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """length (4 bytes, big-endian), type, data, CRC-32 of type + data."""
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", binascii.crc32(kind + payload)))


# --- colours ---------------------------------------------------------------------------------

def _level(s, levels: int = LEVELS) -> np.ndarray:
    """Signed colour step: round((2s - 1) * levels), -levels (sure of 0) ... +levels (sure of 1)."""
    return np.rint((2.0 * np.asarray(s) - 1.0) * levels).astype(int)


def _blend(colour: str, t: float) -> str:
    """Mix white with `colour` ("#rrggbb"): t = 0 is white, t = 1 the colour itself."""
    rgb = [int(colour[k:k + 2], 16) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(255 + t * (c - 255)):02x}" for c in rgb)   # w + t (c - w)


def _level_colour(q: int, levels: int = LEVELS) -> str:
    """Cell colour for a signed step q: blue below 0, orange above, the paler the nearer 0."""
    return _blend(BLUE if q < 0 else ORANGE, STRENGTH * abs(q) / levels)


def score_colour(s: float) -> str:
    """The cell colour for a score s = p(class 1): confidence |2s - 1| sets how strong it is."""
    return _level_colour(int(_level(s)))


# --- SVG -------------------------------------------------------------------------------------

class _Frame(NamedTuple):
    """Maps data coordinates to pixels in a plot box (screen y grows downward)."""
    lo: tuple              # (x1_min, x2_min) at the bottom-left corner
    hi: tuple              # (x1_max, x2_max) at the top-right corner
    left: float = LEFT     # the box in pixels; the defaults are the boundary picture's square
    top: float = TOP
    width: float = SIZE
    height: float = SIZE

    def px(self, x):
        return self.left + (x - self.lo[0]) / (self.hi[0] - self.lo[0]) * self.width

    def py(self, y):
        return self.top + (self.hi[1] - y) / (self.hi[1] - self.lo[1]) * self.height


def _grid_frame(xs, ys) -> _Frame:
    """The frame of an evenly spaced grid of cell centres: cells reach half a step past them."""
    half_x, half_y = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2
    return _Frame((xs[0] - half_x, ys[0] - half_y), (xs[-1] + half_x, ys[-1] + half_y))


def boundary_svg(s, xs, ys, points_x, points_label, title: str) -> str:
    """The decision-boundary picture as SVG text, from a precomputed score grid.

    s: f[ny, nx] = p(class 1) at the evenly spaced cell centres (xs[i], ys[j]), as from
    `boundary_grid`; points_x: f[n, 2] the data; points_label: i[n] their classes.
    """
    s, xs, ys = (np.asarray(v, np.float64) for v in (s, xs, ys))
    _check_grid(s, xs, ys)
    if not np.all(np.isfinite(s)):
        raise InputError("s (the score grid) holds NaN or Inf; did training diverge? "
                         "Check the network's output on a few points")
    points_x, points_label = _check_points(points_x, points_label)
    if not isinstance(title, str):
        raise InputError(f"title must be a str, got {title!r}")
    frame = _grid_frame(xs, ys)
    body = (['<g id="cells" shape-rendering="crispEdges">'] + _cells(s, xs, ys, frame) + ["</g>"]
            + _boundary(contour_segments(s, xs, ys), frame)
            + _points(points_x, points_label, frame)
            + _axes(frame, title, "x1", "x2")
            + _legend(_classes(points_label)))
    return _svg(WIDTH, HEIGHT, body)


def _cells(s, xs, ys, frame: _Frame) -> list[str]:
    """The coloured grid: one <rect> per run of equal colour along each row."""
    q = _level(s)                                             # i[ny, nx] colour steps
    x_edges = frame.px(np.append(xs - (xs[1] - xs[0]) / 2, frame.hi[0]))   # nx + 1 pixels
    y_edges = frame.py(np.append(ys - (ys[1] - ys[0]) / 2, frame.hi[1]))   # ny + 1 pixels
    rects = []
    for j in range(len(ys)):
        for i, end in _runs(q[j]):
            x, y = x_edges[i], y_edges[j + 1]                 # top-left: screen y flips
            rects.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{x_edges[end] - x:.2f}" '
                         f'height="{y_edges[j] - y:.2f}" fill="{_level_colour(q[j, i])}"/>')
    return rects


def _runs(row):
    """(start, end) of each run of equal values in a row: [3, 3, 5] -> (0, 2), (2, 3)."""
    start = 0
    for end in range(1, len(row) + 1):
        if end == len(row) or row[end] != row[start]:
            yield start, end
            start = end


def _boundary(segments, frame: _Frame, name: str = "boundary", digits: int = 2) -> list[str]:
    """The contour as one <path id=name> of move-to / line-to pairs; nothing if there is none.

    digits: decimals of each pixel coordinate (1 is a tenth of a pixel: enough for a frame).
    """
    if not segments:
        return []
    def xy(x, y):
        return f"{frame.px(x):.{digits}f} {frame.py(y):.{digits}f}"
    d = " ".join(f"M{xy(*start)}L{xy(*end)}" for start, end in segments)
    return [f'<path id="{name}" d="{d}" fill="none" stroke="{INK}" stroke-width="2" '
            'stroke-linecap="round"/>']


def _points(x, labels, frame: _Frame) -> list[str]:
    """The data: one circle per row, filled with its class colour, outlined thinly."""
    circles = [f'<circle cx="{frame.px(a):.2f}" cy="{frame.py(b):.2f}" r="3.5" '
               f'fill="{PALETTE[c % len(PALETTE)]}"/>'
               for (a, b), c in zip(x.tolist(), labels.tolist(), strict=True)]
    return [f'<g id="points" stroke="{INK}" stroke-width="0.6">'] + circles + ["</g>"]


def _axes(frame: _Frame, title: str, x_label: str, y_label: str, *,
          whole_x: bool = False) -> list[str]:
    """Box, ticks with numbers, axis labels and title around the frame's plot box.

    whole_x: put x ticks on whole numbers only (epochs, steps).
    """
    left, top, bottom = frame.left, frame.top, frame.top + frame.height
    parts = [f'<g class="axes" stroke="{INK}" fill="{INK}" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{frame.width}" height="{frame.height}" '
             'fill="none"/>']
    for t in _ticks(frame.lo[0], frame.hi[0], whole=whole_x):    # x: below the box
        x = frame.px(t)
        parts.append(f'<line x1="{x:.2f}" y1="{bottom}" x2="{x:.2f}" y2="{bottom + 5}"/>')
        parts.append(_text(x, bottom + 17, _number(t), 'text-anchor="middle"'))
    for t in _ticks(frame.lo[1], frame.hi[1]):                   # y: left of the box
        y = frame.py(t)
        parts.append(f'<line x1="{left - 5}" y1="{y:.2f}" x2="{left}" y2="{y:.2f}"/>')
        parts.append(_text(left - 8, y + 4, _number(t), 'text-anchor="end"'))
    centre_x, centre_y = left + frame.width / 2, top + frame.height / 2
    parts.append(_text(centre_x, bottom + 38, x_label, 'text-anchor="middle" font-size="13"'))
    parts.append(_text(left - 44, centre_y, y_label, 'text-anchor="middle" font-size="13" '
                       f'transform="rotate(-90 {left - 44} {centre_y})"'))   # reads upward
    parts.append(_text(centre_x, top - 16, title, 'text-anchor="middle" font-size="14"'))
    return parts + ["</g>"]


def _legend(k: int) -> list[str]:
    """A key to the right of the plot: one circle per class, then the boundary line."""
    x, y = LEFT + SIZE + 20, TOP + 10
    parts = [f'<g id="legend" font-size="12" fill="{INK}">']
    for c in range(k):
        parts.append(f'<circle cx="{x + 8}" cy="{y}" r="4" fill="{PALETTE[c % len(PALETTE)]}" '
                     f'stroke="{INK}" stroke-width="0.6"/>')
        parts.append(_text(x + 22, y + 4, f"class {c}"))
        y += 20
    parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{INK}" '
                 'stroke-width="2"/>')
    parts.append(_text(x + 22, y + 4, "boundary p = 0.5"))
    return parts + ["</g>"]


def _ticks(lo: float, hi: float, count: int = 5, whole: bool = False) -> list[float]:
    """About `count` round numbers in [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of 10.

    whole: whole numbers only (steps of 1, 2, 5, 10, 20, ... and at least 1).
    """
    raw = (hi - lo) / count
    if whole:
        raw = max(raw, 1.0)                                     # never a step below 1
    power = 10.0 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in steps if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [i * step for i in range(first, math.floor(hi / step + 1e-9) + 1)]


def _number(t: float) -> str:
    """A tick label: 0.25 -> "0.25", 1.0 -> "1", no "-0" and no 0.30000000000000004."""
    return f"{round(t, 10) + 0.0:g}"


def _text(x: float, y: float, words: str, attributes: str = "") -> str:
    """A <text> element with its words escaped (&, <, > cannot appear raw in XML)."""
    return f'<text x="{x:.2f}" y="{y:.2f}" stroke="none" {attributes}>{escape(words)}</text>'


def _svg(width: int, height: int, body) -> str:
    """A standalone SVG document of `width` x `height` pixels around the lines in `body`."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" font-family="sans-serif">\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")


def _write_atomic(path, text: str) -> Path:
    """Write `text` to `path` whole or not at all: a temp file beside it, then os.replace.

    A reader (a browser, a watcher) sees the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)             # mkstemp makes it private (0600); a picture is to share
        os.replace(tmp, path)            # atomic on one file system
    except BaseException:
        os.unlink(tmp)
        raise
    return path


# --- checks, in plain Python -----------------------------------------------------------------

def _check_resolution(resolution) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or resolution < 2:
        raise InputError(f"resolution (cells per axis) must be an int >= 2, got {resolution!r}; "
                         "60 draws a smooth picture")


def _check_grid(s, xs, ys, name: str = "s") -> None:
    if xs.ndim != 1 or ys.ndim != 1 or len(xs) < 2 or len(ys) < 2:
        raise InputError(f"xs and ys must be 1-D with at least 2 values each, got shapes "
                         f"{xs.shape} and {ys.shape}")
    if s.shape != (len(ys), len(xs)):
        raise InputError(f"{name} must have shape (len(ys), len(xs)) = {(len(ys), len(xs))} "
                         f"(row j at ys[j]), got {s.shape}")


def _check_frames(frames, xs, ys) -> None:
    if frames.ndim != 3 or len(frames) == 0:
        raise InputError(f"frames must be f[n_frames, ny, nx], one score grid per snapshot "
                         f"(np.stack of boundary_grid's s), got shape {frames.shape}")
    _check_grid(frames[0], xs, ys, "each of frames")
    if not np.all(np.isfinite(frames)):
        bad = sorted(set(np.flatnonzero(~np.isfinite(frames).all(axis=(1, 2))).tolist()))
        raise InputError(f"frames {bad[:5]} hold NaN or Inf; did training diverge?")


def _check_points(points_x, points_label) -> tuple[np.ndarray, np.ndarray]:
    points_x, points_label = np.asarray(points_x, np.float64), np.asarray(points_label)
    if points_x.ndim != 2 or points_x.shape[1] != 2:
        raise InputError(f"points_x must be f[n, 2] (one row per point), got {points_x.shape}")
    if points_label.shape != (len(points_x),) or np.any(points_label < 0):
        raise InputError(f"points_label must hold one class >= 0 per row of points_x "
                         f"({len(points_x)}), got shape {points_label.shape}")
    return points_x, points_label


def _classes(labels: np.ndarray) -> int:
    """How many classes a legend lists: 2, or more if the labels go higher."""
    return max(2, int(labels.max()) + 1) if len(labels) else 2


def _check_title(title) -> None:
    if title is not None and not isinstance(title, str):
        raise InputError(f"title must be a str or None (for the default), got {title!r}")


def _check_positive(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not 0 < value < math.inf:
        raise InputError(f"{name} must be a number > 0, got {value!r}")


def _check_counts(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.size == 0:
        raise InputError(f"cm must be a square i[k, k] matrix (rows true, columns predicted), "
                         f"got shape {cm.shape}; fn.metrics.confusion_matrix(a, y) makes one")
    if not np.issubdtype(cm.dtype, np.number) or not np.all(np.isfinite(cm)) \
            or np.any(cm < 0) or np.any(cm != np.round(cm)):
        raise InputError("cm must hold counts: whole numbers >= 0")
    return cm.astype(np.int64)


def _check_class_names(names, k: int | None, what: str) -> list[str]:
    """names must be a list (or tuple) of str, k of them when k is given; `what` says what for."""
    if not isinstance(names, (list, tuple)) or not names \
            or not all(isinstance(n, str) for n in names) or (k is not None and len(names) != k):
        count = "" if k is None else f"{k} "
        raise InputError(f"class_names must be {count}strings, {what}, got {names!r}")
    return list(names)


def _check_images(images) -> np.ndarray:
    """images -> u8[n, h, w]: floats in [0, 1] scaled to 0..255, integers 0..255 kept."""
    x = np.asarray(images)
    side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
    if x.ndim == 2 and side * side == x.shape[1]:             # rows of features: square images
        x = x.reshape(len(x), side, side)
    if x.ndim != 3 or 0 in x.shape[1:]:
        raise InputError(f"images must be f[n, h, w] (or n rows of h * h features), got shape "
                         f"{np.shape(images)}")
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1):
            raise InputError("images must be floats in [0, 1] or integers in 0..255; divide by "
                             "255 if these are pixel values")
        return np.rint(x * 255).astype(np.uint8)
    if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > 255)):
        raise InputError(f"images must be floats in [0, 1] or integers in 0..255, got {x.dtype}")
    return x.astype(np.uint8)


def _check_labels(labels, n: int, k: int, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2:
        y = labels_of(y)                                       # one-hot rows -> indices
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or np.any((y < 0) | (y >= k)):
        raise InputError(f"{name} must hold one class index in 0..{k - 1} per image ({n}), "
                         f"got {y.dtype} of shape {y.shape}; class_names has {k} names")
    return y


def _plane_box(x: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the points `x: f[n, 2]`, widened by margin * span on every side."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)     # a flat feature still gets a unit-wide axis
    lo, hi = np.where(hi > lo, lo, lo - 0.5), np.where(hi > lo, hi, hi + 0.5)
    return lo - margin * span, hi + margin * span
