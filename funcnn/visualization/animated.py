"""The decision boundary forming during training: one SVG whose frames SMIL switches in turn.

Contract: the frames are score grids `f[n_frames, ny, nx]` as `boundary_grid` makes them (or as
a training probe records them); each frame is drawn with the decision-boundary picture's own
cells and contour (`funcnn.visualization.boundary`), with fewer colour steps so that the file
stays small, and the data and axes once on top. Viewers without SMIL show the last frame.
"""
from __future__ import annotations

import numpy as np

from funcnn import checks
from funcnn.checks import InputError
from funcnn.visualization.boundary import (HEIGHT, LEFT, SIZE, TOP, WIDTH, boundary_svg,
                                           cells, check_grid, check_points, classes,
                                           contour_path, contour_segments, grid_frame,
                                           legend, points)
from funcnn.visualization.svg import (INK, Frame, Picture, axes, check_title, document,
                                      number, text, write)

ANIMATION_LEVELS = 6            # fewer colour steps than a still: longer runs, smaller file


def animation(frames, xs, ys, points_x, points_label, path, *, steps=None,
              seconds_per_frame: float = 0.1, title: str | None = None,
              still_path=None) -> Picture:
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
    points_x, points_label = check_points(points_x, points_label)
    labels = _frame_labels(steps, len(frames))
    seconds_per_frame = checks.number("seconds_per_frame", seconds_per_frame, positive=True)
    check_title(title)
    title = "the decision boundary during training" if title is None else title
    if still_path is not None:
        write(still_path, boundary_svg(frames[-1], xs, ys, points_x, points_label,
                                       f"{title}, {labels[-1]}"))
    frame = grid_frame(xs, ys)
    body = ['<g id="frames">']
    for t, (s, label) in enumerate(zip(frames, labels, strict=True)):
        body += _frame(t, len(frames), seconds_per_frame, s, xs, ys, frame, label)
    body += (["</g>"] + points(points_x, points_label, frame)
             + axes(frame, title, "x1", "x2") + legend(classes(points_label)))
    return write(path, document(WIDTH, HEIGHT, body))


def _frame(t: int, n: int, seconds: float, s, xs, ys, frame: Frame, label: str) -> list[str]:
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
    parts += cells(s, frame, ANIMATION_LEVELS, f"cells-{t}")
    parts += contour_path(contour_segments(s, xs, ys), frame, f"boundary-{t}", digits=1)
    parts.append(text(LEFT + SIZE + 20, TOP + SIZE - 6, label, f'font-size="14" fill="{INK}"'))
    return parts + ["</g>"]


def _frame_labels(steps, n: int) -> list[str]:
    """"step N" for each frame, or "frame t of n" when the steps are not known."""
    if steps is None:
        return [f"frame {t + 1} of {n}" for t in range(n)]
    steps = np.asarray(steps)
    if steps.shape != (n,) or not np.issubdtype(steps.dtype, np.number):
        raise InputError(f"steps must hold one training step per frame ({n} numbers), got shape "
                         f"{steps.shape}; leave it out to number the frames instead")
    return [f"step {number(float(v))}" for v in steps]


def _check_frames(frames, xs, ys) -> None:
    if frames.ndim != 3 or len(frames) == 0:
        raise InputError(f"frames must be f[n_frames, ny, nx], one score grid per snapshot "
                         f"(np.stack of boundary_grid's s), got shape {frames.shape}")
    check_grid(frames[0], xs, ys, "each of frames")
    if not np.all(np.isfinite(frames)):
        bad = sorted(set(np.flatnonzero(~np.isfinite(frames).all(axis=(1, 2))).tolist()))
        raise InputError(f"frames {bad[:5]} hold NaN or Inf; did training diverge?")
