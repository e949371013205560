"""A confusion matrix: where a classifier's answers go, rows the true class, columns the
predicted one.

Contract: the input is a matrix of counts `i[k, k]` as `funcnn.metrics.confusion_matrix`
makes it and k class names; each cell shows its count, shaded by its share of the row.
"""
from __future__ import annotations

import numpy as np

from funcnn.checks import InputError
from funcnn.visualization.svg import (BLUE, INK, Picture, blend, check_class_names,
                                      check_title, document, text, title_line, write)

CELL = 44                                # a cell, px


def confusion_matrix(cm, class_names, path, *, title: str | None = None) -> Picture:
    """Where a classifier's answers go: rows are the true class, columns the predicted one; SVG.

    cm: i[k, k] counts, as from `funcnn.metrics.confusion_matrix`; class_names: k strings.
    Each cell shows its count and is shaded by its share of the row (of the examples of true
    class i, the fraction predicted j), so rows compare however many examples each has. The
    diagonal holds the right answers and is outlined. Returns the path written.
    """
    cm = _check_counts(cm)
    names = check_class_names(class_names, len(cm), "one per row of cm")
    check_title(title)
    if title is None:
        title = f"confusion matrix: {np.trace(cm)} of {cm.sum()} right"
    return write(path, _confusion_svg(cm, names, title))


def _confusion_svg(cm: np.ndarray, names: list[str], title: str) -> str:
    """The matrix with the class names left (true) and below (predicted), and a key."""
    k = len(cm)
    name_w = 7 * max(len(name) for name in names)       # about 7 px a character at 12 px
    rotate = name_w > CELL - 6                          # too wide to stand under its column
    left, top, size = name_w + 52, 64, k * CELL
    below = (0.72 * name_w if rotate else 12) + 22      # room for the column names
    width = max(left + size + 110, 8 * len(title) + 40)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)   # each row sums to 1 (or 0)
    body = ([title_line(width, title)]
            + _cells(cm, share, left, top)
            + _labels(names, left, top, rotate, below)
            + _key(left + size + 24, top))
    return document(width, top + size + below + 30, body)


def _cells(cm, share, left: float, top: float) -> list[str]:
    """A shaded square per cell with its count, white on the dark ones; the diagonal outlined."""
    parts = ['<g id="cells" font-size="12">']
    for i, j in np.ndindex(cm.shape):
        x, y = left + j * CELL, top + i * CELL
        parts.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" '
                     f'fill="{blend(BLUE, share[i, j])}"/>')
        ink = "white" if share[i, j] > 0.5 else INK
        parts.append(text(x + CELL / 2, y + CELL / 2 + 4, str(cm[i, j]),
                          f'text-anchor="middle" fill="{ink}"'))
    parts += [f'<rect x="{left + i * CELL}" y="{top + i * CELL}" width="{CELL}" height="{CELL}" '
              f'fill="none" stroke="{INK}" stroke-width="1.5"/>' for i in range(len(cm))]
    return parts + ["</g>"]


def _labels(names, left: float, top: float, rotate: bool, below: float) -> list[str]:
    """Class names: left of each row, under each column (slanted when long); axis titles."""
    bottom, middle = top + len(names) * CELL, len(names) * CELL / 2
    parts = [f'<g id="labels" font-size="12" fill="{INK}">']
    for i, name in enumerate(names):
        centre = i * CELL + CELL / 2
        parts.append(text(left - 8, top + centre + 4, name, 'text-anchor="end"'))
        x, y = left + centre, bottom + 16
        if rotate:            # the name ends under its column and slants down to the left
            x, y = x + 4, y - 6
            parts.append(text(x, y, name, f'text-anchor="end" '
                              f'transform="rotate(-45 {x:.2f} {y:.2f})"'))
        else:
            parts.append(text(x, y, name, 'text-anchor="middle"'))
    parts.append(text(left + middle, bottom + below + 4, "predicted",
                      'text-anchor="middle" font-size="13"'))
    parts.append(text(18, top + middle, "true", 'text-anchor="middle" font-size="13" '
                      f'transform="rotate(-90 18 {top + middle})"'))
    return parts + ["</g>"]


def _key(x: float, top: float) -> list[str]:
    """A key to the shading: swatches for 100%, 75%, ..., 0% of the row."""
    parts = [f'<g id="key" font-size="11" fill="{INK}">', text(x, top - 8, "share of row")]
    for n, t in enumerate((1.0, 0.75, 0.5, 0.25, 0.0)):
        y = top + n * 22
        parts.append(f'<rect x="{x}" y="{y}" width="18" height="18" fill="{blend(BLUE, t)}" '
                     f'stroke="{INK}" stroke-width="0.5"/>')
        parts.append(text(x + 24, y + 13, f"{t:.0%}"))
    return parts + ["</g>"]


def _check_counts(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.size == 0:
        raise InputError(f"cm must be a square i[k, k] matrix (rows true, columns predicted), "
                         f"got shape {cm.shape}; fn.metrics.confusion_matrix(a, y) makes one")
    if not np.issubdtype(cm.dtype, np.number) or not np.all(np.isfinite(cm)) \
            or np.any(cm < 0) or np.any(cm != np.round(cm)):
        raise InputError("cm must hold counts: whole numbers >= 0")
    return cm.astype(np.int64)
