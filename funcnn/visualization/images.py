"""Pictures of images: a grid of small images with their true and predicted class, and a
convolution's filters; each image a PNG encoded here by the standard library (zlib, struct).

Contract: images come as floats in [0, 1] or integers 0..255, `f[n, h, w]` (or rows of h * h
features); `png_bytes` turns one `u8[h, w]` into a PNG file, embedded in the SVG as a data URI
and drawn with crisp pixels.
"""
from __future__ import annotations

import base64
import binascii
import math
import struct
import zlib

import numpy as np

from funcnn import metrics
from funcnn.checks import InputError, integer
from funcnn.visualization.svg import (INK, RED, Picture, check_class_names, check_title,
                                      document, text, title_line, write)

TILE_W, TILE_H, IMAGE_PX = 116, 124, 84  # an image-grid tile and the image in it, px


def image_grid(images, true_labels, pred_labels, class_names, path, *, columns: int = 8,
               title: str | None = None) -> Picture:
    """Small images in a grid, each captioned "true: X" over "pred: Y"; write SVG.

    images: f[n, h, w] in [0, 1] or u8[n, h, w], or rows of h * w features of square images
    (784 -> 28 x 28); true_labels, pred_labels: i[n] class indices (one-hot rows are read by
    argmax); class_names: what the indices name. A wrong prediction is captioned in red. Each
    image is a PNG (`png_bytes`) inside the SVG, scaled up with crisp pixels in browsers
    (`image-rendering: pixelated`; rsvg-convert smooths them). The first 32 mistakes, say:
    wrong = np.flatnonzero(pred != true)[:32]. Returns the path written.
    """
    pixels = _check_images(images)                            # u8[n, h, w]
    names = check_class_names(class_names, None, "one per class index")
    true = _check_labels(true_labels, len(pixels), len(names), "true_labels")
    pred = _check_labels(pred_labels, len(pixels), len(names), "pred_labels")
    columns = integer("columns (images per row)", columns, least=1)
    check_title(title)
    title = f"{len(pixels)} images, true and predicted class" if title is None else title
    return write(path, _grid_svg(pixels, true, pred, names, columns, title))


def _grid_svg(pixels, true, pred, names: list[str], columns: int, title: str) -> str:
    """Tiles left to right, top to bottom, `columns` to a row, under the title."""
    columns = max(1, min(columns, len(pixels)))
    rows = -(-len(pixels) // columns)                         # ceil(n / columns)
    width = max(20 + columns * TILE_W, 8 * len(title) + 40)
    body = [title_line(width, title)]
    for t, (image, a, b) in enumerate(zip(pixels, true, pred, strict=True)):
        x, y = 10 + (t % columns) * TILE_W, 44 + (t // columns) * TILE_H
        body += _tile(image, names[a], names[b], a == b, x, y)
    return document(width, 44 + rows * TILE_H + 6, body)


def _tile(image, true_name: str, pred_name: str, right: bool, x: float, y: float) -> list[str]:
    """One image as a PNG data URI, scaled to IMAGE_PX, with its two-line caption."""
    h, w = image.shape
    scale = IMAGE_PX / max(h, w)
    centre = x + TILE_W / 2
    return ['<g class="tile">',
            f'<image x="{centre - w * scale / 2:.2f}" y="{y}" width="{w * scale:.2f}" '
            f'height="{h * scale:.2f}" style="image-rendering: pixelated" href="{_uri(image)}"/>',
            text(centre, y + IMAGE_PX + 15, f"true: {true_name}",
                 f'text-anchor="middle" font-size="11" fill="{INK}"'),
            text(centre, y + IMAGE_PX + 29, f"pred: {pred_name}",
                 f'text-anchor="middle" font-size="11" fill="{INK if right else RED}"'),
            "</g>"]


def filters(w, path, *, columns: int = 8, title: str | None = None) -> Picture:
    """A convolution's learnt filters as small images: `w: f[kh, kw, c_in, c_out]` (HWIO, a
    `Conv2D`'s params["w"]), one tile per output channel (the first input channel when there
    are several), gray 0.5 at zero, white the largest positive weight of the layer, black its
    most negative. Returns the path written."""
    w = np.asarray(w, np.float64)
    if w.ndim != 4 or 0 in w.shape or not np.all(np.isfinite(w)):
        raise InputError(f"w must be a convolution's finite weights f[kh, kw, c_in, c_out], "
                         f"got shape {w.shape}; pass params[i]['w'] of a Conv2D")
    columns = integer("columns (filters per row)", columns, least=1)
    check_title(title)
    scale = max(float(np.abs(w).max()), 1e-12)
    tiles = np.moveaxis(w[:, :, 0, :], -1, 0)                  # [c_out, kh, kw]
    gray = np.rint((0.5 + 0.5 * tiles / scale) * 255).astype(np.uint8)
    columns = max(1, min(columns, len(gray)))
    rows = -(-len(gray) // columns)
    title = f"{len(gray)} filters, {w.shape[0]}x{w.shape[1]}" if title is None else title
    size, gap, top = 64, 10, 64
    width = max(20 + columns * (size + gap), 8 * len(title) + 40)
    body = [title_line(width, title),
            text(width / 2, 48, "white: the largest positive weight, black: the most "
                 "negative, gray: 0", f'text-anchor="middle" font-size="11" fill="{INK}"')]
    for t, image in enumerate(gray):
        x, y = 10 + (t % columns) * (size + gap), top + (t // columns) * (size + gap)
        body.append(f'<image x="{x}" y="{y}" width="{size}" height="{size}" '
                    f'style="image-rendering: pixelated" href="{_uri(image)}"><title>filter {t}'
                    '</title></image>')
    return write(path, document(width, top + rows * (size + gap) + 4, body))


# --- PNG by hand -----------------------------------------------------------------------------

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


def _uri(gray) -> str:
    """The image `gray: u8[h, w]` as a data URI an <image href> takes."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(gray)).decode("ascii")


# --- checks, in plain Python -----------------------------------------------------------------

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
        y = np.asarray(metrics.predict_class(y))               # one-hot rows -> indices
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or np.any((y < 0) | (y >= k)):
        raise InputError(f"{name} must hold one class index in 0..{k - 1} per image ({n}), "
                         f"got {y.dtype} of shape {y.shape}; class_names has {k} names")
    return y
