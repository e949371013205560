"""A regression's fit: the data as points and the network's curve through them, one input to
one target.

Contract: plain numbers in (1-D arrays, or `[n, 1]` columns), an SVG out: the training points,
the test points in another colour, the network's prediction as a line and, where given, the
true curve dashed, over axes labelled with what x and y are, under a legend.
"""
from __future__ import annotations

import numpy as np

from funcnn.checks import InputError
from funcnn.visualization.svg import (BLUE, INK, ORANGE, RED, Frame, Picture, axes, blend,
                                      check_title, document, text, write)

WIDTH, HEIGHT = 660, 470                   # the picture
LEFT, TOP, PLOT_W, PLOT_H = 80, 84, 540, 320   # the plot box inside it
TRUTH = "#7f7f7f"                          # the true curve: grey, dashed


def fit_curve(path, x, y, curve_x, curve_y, *, test=None, truth=None,
              title: str | None = None, x_label: str = "x", y_label: str = "y") -> Picture:
    """Draw training points `(x, y)`, test points `test=(x, y)`, the network's prediction
    `curve_y` at `curve_x` (a line, so sorted by x here) and the true curve `truth=(x, y)`;
    write SVG to `path` and return it.

        fit_curve("images/fit.svg", train.x, train.y, grid, forward(net, params, grid),
                  test=(test.x, test.y), truth=(grid, jnp.sin(3 * grid)))
    """
    check_title(title)
    for name, words in (("x_label", x_label), ("y_label", y_label)):
        if not isinstance(words, str):
            raise InputError(f"{name} must be a str, got {words!r}")
    series = {"train": _pair("x, y", x, y), "curve": _pair("curve_x, curve_y", curve_x,
                                                             curve_y)}
    if test is not None:
        series["test"] = _pair("test", *_two("test", test))
    if truth is not None:
        series["truth"] = _pair("truth", *_two("truth", truth))
    title = "the network's fit to the data" if title is None else title
    return write(path, _fit_svg(series, title, x_label, y_label))


def _two(name: str, pair):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise InputError(f"{name} must be an (x, y) pair of arrays, got {type(pair).__name__}")
    return pair


def _pair(name: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as two f64[m] of one length m >= 1, finite; a [m, 1] column counts as 1-D."""
    x, y = (np.asarray(v, np.float64) for v in (x, y))
    x, y = (v.reshape(-1) if v.ndim == 2 and v.shape[1] == 1 else v for v in (x, y))
    if x.ndim != 1 or y.shape != x.shape or x.size == 0:
        raise InputError(f"{name} must be two 1-D arrays (or [m, 1] columns) of one length, "
                         f"one input and one target a point; got shapes {x.shape} and "
                         f"{y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError(f"{name} holds NaN or Inf; did training diverge?")
    return x, y


def _fit_svg(series: dict, title: str, x_label: str, y_label: str) -> str:
    xs = np.concatenate([x for x, _ in series.values()])
    ys = np.concatenate([y for _, y in series.values()])
    pad_x, pad_y = 0.02 * np.ptp(xs) or 0.5, 0.06 * np.ptp(ys) or 0.5
    frame = Frame((xs.min() - pad_x, ys.min() - pad_y), (xs.max() + pad_x, ys.max() + pad_y),
                  LEFT, TOP, PLOT_W, PLOT_H)
    body = [text(WIDTH / 2, 26, title, f'text-anchor="middle" font-size="15" fill="{INK}"')]
    body += _legend([name for name in ("train", "test", "curve", "truth") if name in series])
    for name, colour in (("train", BLUE), ("test", ORANGE)):   # points under the lines
        if name in series:
            body.append(f'<g id="{name}" fill="{blend(colour, 0.45)}" stroke="{colour}" '
                        'stroke-width="0.8">')
            body += [f'<circle cx="{frame.px(a):.2f}" cy="{frame.py(b):.2f}" r="2.8"/>'
                     for a, b in zip(*series[name], strict=True)]
            body.append("</g>")
    if "truth" in series:
        body.append(_line(frame, *series["truth"], TRUTH, 'stroke-dasharray="7 5"', "truth"))
    body.append(_line(frame, *series["curve"], RED, "", "curve"))
    body += axes(frame, "", x_label, y_label)
    return document(WIDTH, HEIGHT, body)


def _line(frame: Frame, x, y, colour: str, style: str, name: str) -> str:
    """A polyline through the points in order of x."""
    order = np.argsort(x, kind="stable")
    points = " ".join(f"{frame.px(a):.2f},{frame.py(b):.2f}" for a, b in zip(x[order], y[order]))
    return (f'<polyline id="{name}" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="2.5" stroke-linejoin="round" {style}/>')


LABELS = {"train": "training data", "test": "test data", "curve": "network",
          "truth": "true curve"}


def _legend(names: list[str]) -> list[str]:
    """A key under the title: a marker in each series' style, then its name, 130 px apart."""
    x = WIDTH / 2 - 65 * len(names)
    parts = [f'<g id="legend" font-size="12" fill="{INK}">']
    for name in names:
        if name in ("train", "test"):
            colour = BLUE if name == "train" else ORANGE
            parts.append(f'<circle cx="{x + 13:.2f}" cy="51" r="4" fill="{blend(colour, 0.45)}" '
                         f'stroke="{colour}"/>')
        else:
            colour, dash = (RED, "none") if name == "curve" else (TRUTH, "7 5")
            parts.append(f'<line x1="{x:.2f}" y1="51" x2="{x + 26:.2f}" y2="51" '
                         f'stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>')
        parts.append(text(x + 32, 55, LABELS[name]))
        x += 130
    return parts + ["</g>"]
