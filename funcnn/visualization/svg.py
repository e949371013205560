"""The SVG every picture is made of: colours, a frame that maps data to pixels, axes, text, the
document, and the file it is written to.

Contract: each function returns lines of SVG (str) to join into a `document`; `write` puts a
document on disk whole or not at all (`funcnn.files.write_text_atomic`) and returns it as a
`Picture`, a path that a notebook shows as the picture itself.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

from funcnn.checks import InputError
from funcnn.files import write_text_atomic

BLUE, ORANGE, RED = "#1f77b4", "#ff7f0e", "#d62728"     # class 0, class 1; a wrong answer
PALETTE = (BLUE, ORANGE, "#2ca02c", RED, "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")   # more classes: tab10
INK = "#222222"                          # frame, text, boundary line, point outlines


def blend(colour: str, t: float) -> str:
    """Mix white with `colour` ("#rrggbb"): t = 0 is white, t = 1 the colour itself."""
    rgb = [int(colour[k:k + 2], 16) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(255 + t * (c - 255)):02x}" for c in rgb)   # w + t (c - w)


class Frame(NamedTuple):
    """Maps data coordinates to pixels in a plot box (screen y grows downward)."""
    lo: tuple              # (x1_min, x2_min) at the bottom-left corner
    hi: tuple              # (x1_max, x2_max) at the top-right corner
    left: float            # the box in pixels
    top: float
    width: float
    height: float

    def px(self, x):
        return self.left + (x - self.lo[0]) / (self.hi[0] - self.lo[0]) * self.width

    def py(self, y):
        return self.top + (self.hi[1] - y) / (self.hi[1] - self.lo[1]) * self.height


def axes(frame: Frame, title: str, x_label: str, y_label: str, *,
         whole_x: bool = False) -> list[str]:
    """Box, ticks with numbers, axis labels and title around the frame's plot box.

    whole_x: put x ticks on whole numbers only (epochs, steps).
    """
    left, top, bottom = frame.left, frame.top, frame.top + frame.height
    parts = [f'<g class="axes" stroke="{INK}" fill="{INK}" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{frame.width}" height="{frame.height}" '
             'fill="none"/>']
    for t in ticks(frame.lo[0], frame.hi[0], whole=whole_x):     # x: below the box
        x = frame.px(t)
        parts.append(f'<line x1="{x:.2f}" y1="{bottom}" x2="{x:.2f}" y2="{bottom + 5}"/>')
        parts.append(text(x, bottom + 17, number(t), 'text-anchor="middle"'))
    for t in ticks(frame.lo[1], frame.hi[1]):                    # y: left of the box
        y = frame.py(t)
        parts.append(f'<line x1="{left - 5}" y1="{y:.2f}" x2="{left}" y2="{y:.2f}"/>')
        parts.append(text(left - 8, y + 4, number(t), 'text-anchor="end"'))
    centre_x, centre_y = left + frame.width / 2, top + frame.height / 2
    parts.append(text(centre_x, bottom + 38, x_label, 'text-anchor="middle" font-size="13"'))
    parts.append(text(left - 44, centre_y, y_label, 'text-anchor="middle" font-size="13" '
                      f'transform="rotate(-90 {left - 44} {centre_y})"'))   # reads upward
    parts.append(text(centre_x, top - 16, title, 'text-anchor="middle" font-size="14"'))
    return parts + ["</g>"]


def ticks(lo: float, hi: float, count: int = 5, whole: bool = False) -> list[float]:
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


def number(t: float) -> str:
    """A tick label: 0.25 -> "0.25", 1.0 -> "1", no "-0" and no 0.30000000000000004."""
    return f"{round(t, 10) + 0.0:g}"


def text(x: float, y: float, words: str, attributes: str = "") -> str:
    """A <text> element with its words escaped (&, <, > cannot appear raw in XML)."""
    return f'<text x="{x:.2f}" y="{y:.2f}" stroke="none" {attributes}>{escape(words)}</text>'


def title_line(width: float, words: str) -> str:
    """A picture's title, centred at the top."""
    return text(width / 2, 28, words, f'text-anchor="middle" font-size="15" fill="{INK}"')


def document(width: int, height: int, body) -> str:
    """A standalone SVG document of `width` x `height` pixels around the lines in `body`."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" font-family="sans-serif">\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")


class Picture(type(Path())):
    """The path of a picture written: a Path everywhere (compare it, open it, print it), and in
    a notebook the picture itself, which IPython shows through `_repr_svg_`."""

    def _repr_svg_(self) -> str | None:
        """The SVG text, for a notebook to draw; None (the path as text) if there is no file."""
        return self.read_text(encoding="utf-8") if self.is_file() else None


def write(path, svg: str) -> Picture:
    """Write the document `svg` to `path` whole or not at all; parent folders are made."""
    return Picture(write_text_atomic(path, svg))


# --- checks every picture shares, in plain Python ----------------------------------------------

def check_title(title) -> None:
    if title is not None and not isinstance(title, str):
        raise InputError(f"title must be a str or None (for the default), got {title!r}")


def check_class_names(names, k: int | None, what: str) -> list[str]:
    """names must be a list (or tuple) of str, k of them when k is given; `what` says what for."""
    if not isinstance(names, (list, tuple)) or not names \
            or not all(isinstance(n, str) for n in names) or (k is not None and len(names) != k):
        count = "" if k is None else f"{k} "
        raise InputError(f"class_names must be {count}strings, {what}, got {names!r}")
    return list(names)
