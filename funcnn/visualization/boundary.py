"""The Clojure project's picture: where a network says class 0 and class 1 on the plane.

Contract: `boundary_grid` asks the network once for a score grid `s: f[ny, nx]`, where s[j, i]
is p(class 1) at the cell centre (xs[i], ys[j]) (`funcnn.model.probabilities` reads the output);
`contour_segments` finds the line s = 0.5 in it by marching squares; `boundary_svg` draws the
grid's cells coloured by confidence, that line, the data and a legend. The animation
(`funcnn.visualization.animated`) draws its frames with the same pieces.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcnn import data, metrics, model
from funcnn.checks import InputError, InputTypeError, integer, number
from funcnn.visualization.svg import (BLUE, INK, ORANGE, PALETTE, Frame, Picture, axes, blend,
                                      check_title, document, text, write)

LEVELS = 16                              # colour steps per class, so equal cells merge
STRENGTH = 0.75                          # the most confident cell: 75% colour, 25% white
# layout in pixels: the plot is a SIZE x SIZE square, the legend sits to its right
LEFT, TOP, SIZE = 64, 44, 400
WIDTH, HEIGHT = LEFT + SIZE + 170, TOP + SIZE + 56


# --- the picture -----------------------------------------------------------------------------

def decision_boundary(net, params: model.Params, ds: data.Dataset,
                      path="images/decision_boundary.svg", *, resolution: int = 60,
                      margin: float = 0.05, title: str | None = None) -> Picture:
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
    margin = number("margin (the fraction of the data's span added on each side)", margin)
    if margin < 0:
        raise InputError(f"margin (the fraction of the data's span added on each side) must be "
                         f">= 0, got {margin!r}")
    check_title(title)
    x = np.asarray(ds.x, np.float64)                       # numpy from here on
    lo, hi = _plane_box(x, margin)
    xs, ys, s = boundary_grid(net, params, lo, hi, resolution)
    title = f"{net} decision boundary" if title is None else title
    labels = np.asarray(metrics.predict_class(ds.y))       # the class of each row
    return write(path, boundary_svg(s, xs, ys, x, labels, title))


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
    resolution = _check_resolution(resolution)
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

    The output becomes probabilities p: f[n, k] by `funcnn.model.probabilities`. k = 1: p is
    p(class 1). k >= 2: p_1 / sum_j p_j, which is p_1 for a softmax, a fair share for k
    sigmoids, and for k > 2 "class 1 against the rest"; for k = 2 the p = 0.5 line is exactly
    where the predicted class (the argmax) changes.
    """
    p = model.probabilities(net, np.asarray(out, np.float64))
    if p.shape[1] == 1:
        return p[:, 0]
    total = p.sum(axis=1)
    share = p[:, 1] / np.where(total > 0, total, 1.0)            # p_1 / sum_j p_j
    return np.clip(np.where(total > 0, share, 0.5), 0.0, 1.0)    # no mass at all: undecided


def boundary_svg(s, xs, ys, points_x, points_label, title: str) -> str:
    """The decision-boundary picture as SVG text, from a precomputed score grid.

    s: f[ny, nx] = p(class 1) at the evenly spaced cell centres (xs[i], ys[j]), as from
    `boundary_grid`; points_x: f[n, 2] the data; points_label: i[n] their classes.
    """
    s, xs, ys = (np.asarray(v, np.float64) for v in (s, xs, ys))
    check_grid(s, xs, ys)
    if not np.all(np.isfinite(s)):
        raise InputError("s (the score grid) holds NaN or Inf; did training diverge? "
                         "Check the network's output on a few points")
    points_x, points_label = check_points(points_x, points_label)
    if not isinstance(title, str):
        raise InputError(f"title must be a str, got {title!r}")
    frame = grid_frame(xs, ys)
    body = (cells(s, frame, LEVELS, "cells")
            + contour_path(contour_segments(s, xs, ys), frame)
            + points(points_x, points_label, frame)
            + axes(frame, title, "x1", "x2")
            + legend(classes(points_label)))
    return document(WIDTH, HEIGHT, body)


# --- marching squares ------------------------------------------------------------------------

def contour_segments(s, xs, ys, level: float = 0.5) -> list:
    """The line where s = level, as straight segments [((x0, y0), (x1, y1)), ...].

    s: f[ny, nx] holds s[j, i] at (xs[i], ys[j]). Each square of four neighbouring samples is
    cut on every edge whose ends lie on opposite sides of `level`, at the point that linear
    interpolation puts at level. Two cuts make one segment; four (a saddle) make two, paired
    bottom+right and top+left, which is one of the two valid readings. [] if s never crosses.
    """
    s, xs, ys = (np.asarray(v, np.float64) for v in (s, xs, ys))
    check_grid(s, xs, ys)
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


# --- the layers of the picture, bottom to top --------------------------------------------------

def grid_frame(xs, ys) -> Frame:
    """The frame of an evenly spaced grid of cell centres: cells reach half a step past them."""
    half_x, half_y = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2
    return Frame((xs[0] - half_x, ys[0] - half_y), (xs[-1] + half_x, ys[-1] + half_y),
                 LEFT, TOP, SIZE, SIZE)


def cells(s, frame: Frame, levels: int, name: str) -> list[str]:
    """The score grid as a <g id=name> of coloured cells, `levels` colour steps per class.

    One <path> per colour, drawn in cell units: row j of s is screen row ny - 1 - j (screen y
    grows downward), and a run of equal colour from column i to end is a line one cell thick
    along the middle of its row, "M i row.5 h width". White runs are left out: the background
    shows there. The <g> scales cells to the frame's pixels.
    """
    q = _level(s, levels)                                     # i[ny, nx] colour steps
    ny, nx = q.shape
    runs = {}                                                 # colour step -> path pieces
    for j in range(ny):
        for i, end in _runs(q[j]):
            if q[j, i] != 0:
                runs.setdefault(q[j, i], []).append(f"M{i} {ny - 1 - j}.5h{end - i}")
    scale = f"scale({frame.width / nx:.6g} {frame.height / ny:.6g})"
    return ([f'<g id="{name}" transform="translate({frame.left} {frame.top}) {scale}" '
             'fill="none" stroke-width="1" shape-rendering="crispEdges">']
            + [f'<path stroke="{_level_colour(step, levels)}" d="{"".join(d)}"/>'
               for step, d in sorted(runs.items())]
            + ["</g>"])


def _runs(row):
    """(start, end) of each run of equal values in a row: [3, 3, 5] -> (0, 2), (2, 3)."""
    start = 0
    for end in range(1, len(row) + 1):
        if end == len(row) or row[end] != row[start]:
            yield start, end
            start = end


def contour_path(segments, frame: Frame, name: str = "boundary", digits: int = 2) -> list[str]:
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


def points(x, labels, frame: Frame) -> list[str]:
    """The data: one circle per row, filled with its class colour, outlined thinly."""
    circles = [f'<circle cx="{frame.px(a):.2f}" cy="{frame.py(b):.2f}" r="3.5" '
               f'fill="{PALETTE[c % len(PALETTE)]}"/>'
               for (a, b), c in zip(x.tolist(), labels.tolist(), strict=True)]
    return [f'<g id="points" stroke="{INK}" stroke-width="0.6">'] + circles + ["</g>"]


def legend(k: int) -> list[str]:
    """A key to the right of the plot: one circle per class, then the boundary line."""
    x, y = LEFT + SIZE + 20, TOP + 10
    parts = [f'<g id="legend" font-size="12" fill="{INK}">']
    for c in range(k):
        parts.append(f'<circle cx="{x + 8}" cy="{y}" r="4" fill="{PALETTE[c % len(PALETTE)]}" '
                     f'stroke="{INK}" stroke-width="0.6"/>')
        parts.append(text(x + 22, y + 4, f"class {c}"))
        y += 20
    parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{INK}" '
                 'stroke-width="2"/>')
    parts.append(text(x + 22, y + 4, "boundary p = 0.5"))
    return parts + ["</g>"]


# --- colours ---------------------------------------------------------------------------------

def score_colour(s: float) -> str:
    """The cell colour for a score s = p(class 1): confidence |2s - 1| sets how strong it is."""
    return _level_colour(int(_level(s)))


def _level(s, levels: int = LEVELS) -> np.ndarray:
    """Signed colour step: round((2s - 1) * levels), -levels (sure of 0) ... +levels (sure of 1)."""
    return np.rint((2.0 * np.asarray(s) - 1.0) * levels).astype(int)


def _level_colour(q: int, levels: int = LEVELS) -> str:
    """Cell colour for a signed step q: blue below 0, orange above, the paler the nearer 0."""
    return blend(BLUE if q < 0 else ORANGE, STRENGTH * abs(q) / levels)


# --- checks, in plain Python -----------------------------------------------------------------

def _check_resolution(resolution) -> int:
    """An int >= 2. Any refusal is an InputError (a ValueError), a float or a bool too."""
    try:
        return integer("resolution (cells per axis)", resolution, least=2)
    except (InputError, InputTypeError) as e:
        raise InputError(f"{e}; 60 draws a smooth picture") from None


def check_grid(s, xs, ys, name: str = "s") -> None:
    if xs.ndim != 1 or ys.ndim != 1 or len(xs) < 2 or len(ys) < 2:
        raise InputError(f"xs and ys must be 1-D with at least 2 values each, got shapes "
                         f"{xs.shape} and {ys.shape}")
    if s.shape != (len(ys), len(xs)):
        raise InputError(f"{name} must have shape (len(ys), len(xs)) = {(len(ys), len(xs))} "
                         f"(row j at ys[j]), got {s.shape}")


def check_points(points_x, points_label) -> tuple[np.ndarray, np.ndarray]:
    points_x, points_label = np.asarray(points_x, np.float64), np.asarray(points_label)
    if points_x.ndim != 2 or points_x.shape[1] != 2:
        raise InputError(f"points_x must be f[n, 2] (one row per point), got {points_x.shape}")
    if points_label.shape != (len(points_x),) or np.any(points_label < 0):
        raise InputError(f"points_label must hold one class >= 0 per row of points_x "
                         f"({len(points_x)}), got shape {points_label.shape}")
    return points_x, points_label


def classes(labels: np.ndarray) -> int:
    """How many classes a legend lists: 2, or more if the labels go higher."""
    return max(2, int(labels.max()) + 1) if len(labels) else 2


def _plane_box(x: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the points `x: f[n, 2]`, widened by margin * span on every side."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)     # a flat feature still gets a unit-wide axis
    lo, hi = np.where(hi > lo, lo, lo - 0.5), np.where(hi > lo, hi, hi + 0.5)
    return lo - margin * span, hi + margin * span
