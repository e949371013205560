"""Loss and accuracy curves: a panel per quantity, a line per split (train, validation, test).

Contract: the input is a training history as `funcnn.train.fit` returns it, a dict of 1-D
arrays with one value per epoch (or per recorded step); the panels share one legend, skip
NaN values and draw a series of one value as a dot.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from funcnn.checks import InputError
from funcnn.visualization.svg import (BLUE, INK, ORANGE, RED, Frame, Picture, axes,
                                      check_title, document, text, title_line, write)

# panels of PANEL_W x PANEL_H side by side, PANEL_GAP apart
PANEL_LEFT, PANEL_TOP, PANEL_W, PANEL_H, PANEL_GAP = 70, 100, 340, 240, 90
_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
_STYLE = {"train": (BLUE, ""), "validation": (ORANGE, "6 4"), "test": (RED, "6 4")}  # colour, dash


def curves(history, path, *, title: str | None = None, x=None,
           x_label: str = "epoch") -> Picture:
    """Loss and accuracy curves side by side, train against validation or test; write SVG.

    history: {"train_loss": f[m], "test_loss": f[m], "train_accuracy": f[m], ...}, any subset,
    as `funcnn.train.fit` returns it; "val_" or "validation_" may stand for "test_"; keys not
    ending in _loss or _accuracy (a "probe", say) are not curves and are left out. The x
    values are `x` or history["step"], else the epochs 1..m; x_label names them:
    curves(h, "images/loss.svg", x=np.arange(25, 2001, 25), x_label="step").
    NaN (or Inf) values are skipped; a single value shows as a dot. Returns the path written.
    """
    x, panels = _curve_series(history, x)
    check_title(title)
    if not isinstance(x_label, str):
        raise InputError(f"x_label must be a str, such as 'epoch' or 'step', got {x_label!r}")
    title = f"{' and '.join(panels)} per {x_label}" if title is None else title
    return write(path, _curves_svg(x, panels, title, x_label))


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
    body = [title_line(width, title)] + _legend(splits, width)
    for n, (kind, series) in enumerate(panels.items()):
        left = PANEL_LEFT + n * (PANEL_W + PANEL_GAP)
        body += _panel(kind, series, x, left, x_label, whole)
    return document(width, PANEL_TOP + PANEL_H + 56, body)


def _panel(kind: str, series, x, left: float, x_label: str, whole: bool) -> list[str]:
    """One panel: a <g id=kind> with a polyline per series, then its axes."""
    lo, hi = _box(x, [y for _, y in series])
    frame = Frame(lo, hi, left, PANEL_TOP, PANEL_W, PANEL_H)
    parts = [f'<g id="{kind}">']
    for split, y in series:
        parts += _polyline(frame, x, y, split)
    return parts + axes(frame, kind, x_label, kind, whole_x=whole) + ["</g>"]


def _box(x, ys) -> tuple[tuple, tuple]:
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


def _polyline(frame: Frame, x, y, split: str) -> list[str]:
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


def _legend(splits: list[str], width: float) -> list[str]:
    """A key under the title: a short line in each series' style, then its name."""
    x = width / 2 - 55 * len(splits)                          # 110 px per entry, centred
    parts = [f'<g id="legend" font-size="12" fill="{INK}">']
    for split in splits:
        colour, dash = _STYLE[split]
        parts.append(f'<line x1="{x:.2f}" y1="52" x2="{x + 26:.2f}" y2="52" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="{dash or "none"}"/>')
        parts.append(text(x + 32, 56, split))
        x += 110
    return parts + ["</g>"]
