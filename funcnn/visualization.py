"""Pictures: the Clojure project's decision-boundary plot, as SVG written by hand.

Contract: a picture is built from plain numbers. `boundary_grid` asks the network once for a
score grid `s: f[ny, nx]`, where s[j, i] is the probability of class 1 at the cell centre
(xs[i], ys[j]); `boundary_svg` turns a grid and the data points into SVG text; `_write_atomic`
puts the text on disk whole or not at all. No plotting library: every element is one line of
SVG you can read, and the building blocks (`_Frame`, `_axes`, `_svg`) serve other pictures.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

import jax.numpy as jnp
import numpy as np

from funcnn import data, model

BLUE, ORANGE = "#1f77b4", "#ff7f0e"      # class 0, class 1
PALETTE = (BLUE, ORANGE, "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")   # more classes: tab10
INK = "#222222"                          # frame, text, boundary line, point outlines
LEVELS = 16                              # colour steps per class, so equal cells merge
STRENGTH = 0.75                          # the most confident cell: 75% colour, 25% white

# layout in pixels: the plot is a SIZE x SIZE square, the legend sits to its right
LEFT, TOP, SIZE = 64, 44, 400
WIDTH, HEIGHT = LEFT + SIZE + 170, TOP + SIZE + 56


# --- the picture -----------------------------------------------------------------------------

def decision_boundary(net: model.MLP, params: model.Params, ds: data.Dataset,
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
        raise ValueError(f"ds.x has {ds.x.shape[1]} features but a decision-boundary picture "
                         "needs exactly 2 (the plane x1, x2); pick two columns or project first")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin (the fraction of the data's span added on each side) must be "
                         f"a number >= 0, got {margin!r}")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a str or None (for the default), got {title!r}")
    x = np.asarray(ds.x, np.float64)                       # numpy from here on
    lo, hi = _plane_box(x, margin)
    xs, ys, s = boundary_grid(net, params, lo, hi, resolution)
    title = f"{net} decision boundary" if title is None else title
    return _write_atomic(path, boundary_svg(s, xs, ys, x, labels_of(ds.y), title))


def boundary_grid(net: model.MLP, params: model.Params, lo, hi,
                  resolution: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's score on a grid: (xs: f64[r], ys: f64[r], s: f64[r, r]), r = resolution.

    `lo = (x1_min, x2_min)` and `hi = (x1_max, x2_max)` bound the plane; xs and ys are the
    centres of r equal cells along each axis, and s[j, i] = p(class 1) at (xs[i], ys[j]).
    All r * r points go through one call of `funcnn.model.forward`.
    """
    model.check_params(net, params)
    if net.sizes[0] != 2:
        raise ValueError(f"net takes {net.sizes[0]} inputs but a decision boundary is drawn on "
                         f"a plane of 2 (sizes={list(net.sizes)}); build it with mlp([2, ...])")
    _check_resolution(resolution)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if lo.shape != (2,) or hi.shape != (2,) or not np.all(np.isfinite(lo) & np.isfinite(hi)) \
            or not np.all(hi > lo):
        raise ValueError(f"lo and hi must be two finite (x1, x2) corners with hi > lo, got "
                         f"lo={lo.tolist()}, hi={hi.tolist()}")
    cell = (hi - lo) / resolution                          # width, height of one cell
    xs = lo[0] + (np.arange(resolution) + 0.5) * cell[0]   # cell centres
    ys = lo[1] + (np.arange(resolution) + 0.5) * cell[1]
    gx, gy = np.meshgrid(xs, ys)                           # gx[j, i] = xs[i], gy[j, i] = ys[j]
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)      # f64[r * r, 2], row j * r + i
    out = model.forward(net, params, jnp.asarray(grid, params[0]["w"].dtype))   # f32[r * r, k]
    s = class1_score(net, np.asarray(out, np.float64))
    return xs, ys, s.reshape(resolution, resolution)       # row j holds ys[j]


def class1_score(net: model.MLP, out: np.ndarray) -> np.ndarray:
    """p(class 1) from the network's output `out: f[n, k]` -> f[n] in [0, 1].

    k = 1: the output itself (a sigmoid's p).  k >= 2: p_1 / sum_j p_j, which is p_1 for
    softmax outputs, a fair share for k sigmoids, and for k > 2 "class 1 against the rest".
    Log-probabilities (output log_softmax) and logits (output identity, loss
    softmax_cross_entropy) are turned into probabilities first.
    """
    out = np.asarray(out, np.float64)
    if out.shape[1] == 1:
        return np.clip(out[:, 0], 0.0, 1.0)
    if net.output.name == "log_softmax":
        out = np.exp(out)                                        # log p -> p
    elif net.output.name == "identity" and net.loss.name == "softmax_cross_entropy":
        out = np.exp(out - out.max(axis=1, keepdims=True))       # logits -> p, up to a factor
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
    segments = []
    for j in range(len(ys) - 1):
        for i in range(len(xs) - 1):
            # corners counter-clockwise from bottom-left; edge e joins corner e and e + 1
            corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            cuts = []
            for (ia, ja), (ib, jb) in zip(corners, corners[1:] + corners[:1], strict=True):
                if above[ja, ia] != above[jb, ib]:
                    # s_a + t (s_b - s_a) = level  =>  t = (level - s_a) / (s_b - s_a)
                    t = (level - s[ja, ia]) / (s[jb, ib] - s[ja, ia])
                    cuts.append((xs[ia] + t * (xs[ib] - xs[ia]), ys[ja] + t * (ys[jb] - ys[ja])))
            segments += list(zip(cuts[0::2], cuts[1::2]))   # 0 or 2 or 4 cuts
    return segments


# --- colours ---------------------------------------------------------------------------------

def _level(s) -> np.ndarray:
    """Signed colour step: round((2s - 1) * LEVELS), -LEVELS (sure of 0) ... +LEVELS (sure of 1)."""
    return np.rint((2.0 * np.asarray(s) - 1.0) * LEVELS).astype(int)


def _blend(colour: str, t: float) -> str:
    """Mix white with `colour` ("#rrggbb"): t = 0 is white, t = 1 the colour itself."""
    rgb = [int(colour[k:k + 2], 16) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(255 + t * (c - 255)):02x}" for c in rgb)   # w + t (c - w)


def _level_colour(q: int) -> str:
    """Cell colour for a signed step q: blue below 0, orange above, the paler the nearer 0."""
    return _blend(BLUE if q < 0 else ORANGE, STRENGTH * abs(q) / LEVELS)


def score_colour(s: float) -> str:
    """The cell colour for a score s = p(class 1): confidence |2s - 1| sets how strong it is."""
    return _level_colour(int(_level(s)))


# --- SVG -------------------------------------------------------------------------------------

class _Frame(NamedTuple):
    """Maps data coordinates to pixels in the plot square (screen y grows downward)."""
    lo: tuple   # (x1_min, x2_min) at the bottom-left corner
    hi: tuple   # (x1_max, x2_max) at the top-right corner

    def px(self, x):
        return LEFT + (x - self.lo[0]) / (self.hi[0] - self.lo[0]) * SIZE

    def py(self, y):
        return TOP + (self.hi[1] - y) / (self.hi[1] - self.lo[1]) * SIZE


def boundary_svg(s, xs, ys, points_x, points_label, title: str) -> str:
    """The decision-boundary picture as SVG text, from a precomputed score grid.

    s: f[ny, nx] = p(class 1) at the evenly spaced cell centres (xs[i], ys[j]), as from
    `boundary_grid`; points_x: f[n, 2] the data; points_label: i[n] their classes.
    """
    s, xs, ys = (np.asarray(v, np.float64) for v in (s, xs, ys))
    _check_grid(s, xs, ys)
    if not np.all(np.isfinite(s)):
        raise ValueError("s (the score grid) holds NaN or Inf; did training diverge? "
                         "Check the network's output on a few points")
    points_x, points_label = np.asarray(points_x, np.float64), np.asarray(points_label)
    if points_x.ndim != 2 or points_x.shape[1] != 2:
        raise ValueError(f"points_x must be f[n, 2] (one row per point), got {points_x.shape}")
    if points_label.shape != (len(points_x),) or np.any(points_label < 0):
        raise ValueError(f"points_label must hold one class >= 0 per row of points_x "
                         f"({len(points_x)}), got shape {points_label.shape}")
    if not isinstance(title, str):
        raise ValueError(f"title must be a str, got {title!r}")
    half_x, half_y = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2     # cells reach half a step out
    frame = _Frame((xs[0] - half_x, ys[0] - half_y), (xs[-1] + half_x, ys[-1] + half_y))
    k = max(2, int(points_label.max()) + 1 if len(points_label) else 2)   # classes in legend
    body = (['<g id="cells" shape-rendering="crispEdges">'] + _cells(s, xs, ys, frame) + ["</g>"]
            + _boundary(contour_segments(s, xs, ys), frame)
            + _points(points_x, points_label, frame)
            + _axes(frame, title, "x1", "x2")
            + _legend(k))
    return _svg(WIDTH, HEIGHT, body)


def _cells(s, xs, ys, frame: _Frame) -> list[str]:
    """The coloured grid: one <rect> per run of equal colour along each row."""
    q = _level(s)                                             # i[ny, nx] colour steps
    x_edges = frame.px(np.append(xs - (xs[1] - xs[0]) / 2, frame.hi[0]))   # nx + 1 pixels
    y_edges = frame.py(np.append(ys - (ys[1] - ys[0]) / 2, frame.hi[1]))   # ny + 1 pixels
    rects = []
    for j in range(len(ys)):
        i = 0
        while i < len(xs):
            end = i + 1
            while end < len(xs) and q[j, end] == q[j, i]:     # extend the run
                end += 1
            x, y = x_edges[i], y_edges[j + 1]                 # top-left: screen y flips
            rects.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{x_edges[end] - x:.2f}" '
                         f'height="{y_edges[j] - y:.2f}" fill="{_level_colour(q[j, i])}"/>')
            i = end
    return rects


def _boundary(segments, frame: _Frame) -> list[str]:
    """The contour as one <path> of move-to / line-to pairs; nothing if there is none."""
    if not segments:
        return []
    d = " ".join(f"M{frame.px(x0):.2f} {frame.py(y0):.2f}L{frame.px(x1):.2f} {frame.py(y1):.2f}"
                 for (x0, y0), (x1, y1) in segments)
    return [f'<path id="boundary" d="{d}" fill="none" stroke="{INK}" stroke-width="2" '
            'stroke-linecap="round"/>']


def _points(x, labels, frame: _Frame) -> list[str]:
    """The data: one circle per row, filled with its class colour, outlined thinly."""
    circles = [f'<circle cx="{frame.px(a):.2f}" cy="{frame.py(b):.2f}" r="3.5" '
               f'fill="{PALETTE[c % len(PALETTE)]}"/>'
               for (a, b), c in zip(x.tolist(), labels.tolist(), strict=True)]
    return [f'<g id="points" stroke="{INK}" stroke-width="0.6">'] + circles + ["</g>"]


def _axes(frame: _Frame, title: str, x_label: str, y_label: str) -> list[str]:
    """Frame, ticks with numbers, axis labels and title around the plot square."""
    bottom = TOP + SIZE
    parts = [f'<g id="axes" stroke="{INK}" fill="{INK}" font-size="11">',
             f'<rect x="{LEFT}" y="{TOP}" width="{SIZE}" height="{SIZE}" fill="none"/>']
    for t in _ticks(frame.lo[0], frame.hi[0]):               # x1: below the square
        x = frame.px(t)
        parts.append(f'<line x1="{x:.2f}" y1="{bottom}" x2="{x:.2f}" y2="{bottom + 5}"/>')
        parts.append(_text(x, bottom + 17, _number(t), 'text-anchor="middle"'))
    for t in _ticks(frame.lo[1], frame.hi[1]):               # x2: left of the square
        y = frame.py(t)
        parts.append(f'<line x1="{LEFT - 5}" y1="{y:.2f}" x2="{LEFT}" y2="{y:.2f}"/>')
        parts.append(_text(LEFT - 8, y + 4, _number(t), 'text-anchor="end"'))
    middle = SIZE / 2
    parts.append(_text(LEFT + middle, bottom + 38, x_label, 'text-anchor="middle" font-size="13"'))
    parts.append(_text(LEFT - 44, TOP + middle, y_label, 'text-anchor="middle" font-size="13" '
                       f'transform="rotate(-90 {LEFT - 44} {TOP + middle})"'))   # reads upward
    parts.append(_text(WIDTH / 2, TOP - 16, title, 'text-anchor="middle" font-size="14"'))
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


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round numbers in [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of 10."""
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
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
        raise ValueError(f"resolution (cells per axis) must be an int >= 2, got {resolution!r}; "
                         "60 draws a smooth picture")


def _check_grid(s, xs, ys) -> None:
    if xs.ndim != 1 or ys.ndim != 1 or len(xs) < 2 or len(ys) < 2:
        raise ValueError(f"xs and ys must be 1-D with at least 2 values each, got shapes "
                         f"{xs.shape} and {ys.shape}")
    if s.shape != (len(ys), len(xs)):
        raise ValueError(f"s must have shape (len(ys), len(xs)) = {(len(ys), len(xs))} "
                         f"(row j at ys[j]), got {s.shape}")


def _plane_box(x: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the points `x: f[n, 2]`, widened by margin * span on every side."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)     # a flat feature still gets a unit-wide axis
    lo, hi = np.where(hi > lo, lo, lo - 0.5), np.where(hi > lo, hi, hi + 0.5)
    return lo - margin * span, hi + margin * span
