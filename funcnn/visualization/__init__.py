"""Pictures as SVG written by hand: the Clojure project's decision boundary, its animation
during training, loss and accuracy curves, a confusion matrix, a grid of images, a
convolution's filters and a regression's fit.

Contract: a picture is built from plain numbers (numpy arrays, dicts of them), needs no
plotting library (every element is one line of SVG you can read, made from the primitives of
`svg`) and is written whole or not at all (`funcnn.files`). Each picture function returns the
path written as a `Picture`: a `pathlib.Path` that a notebook shows as the picture itself.
Bad arguments raise `funcnn.checks.InputError` / `InputTypeError` before anything is written.

One module per concern, all drawing with `svg` (colours, frame, axes, text, the document and
its file): `boundary` (score grid, marching squares, the decision boundary), `animated` (that
boundary during training), `history` (loss and accuracy curves), `confusion` (confusion
matrix), `images` (image grid, filters, the PNG encoder), `fit` (a 1-D regression's curve
through its data).
"""
from funcnn.visualization.svg import BLUE, INK, ORANGE, PALETTE, RED, Picture
from funcnn.visualization.boundary import (HEIGHT, LEFT, LEVELS, SIZE, STRENGTH, TOP, WIDTH,
                                           boundary_grid, boundary_svg, class1_score,
                                           contour_segments, decision_boundary, score_colour)
from funcnn.visualization.animated import ANIMATION_LEVELS, animation
from funcnn.visualization.history import curves
from funcnn.visualization.confusion import confusion_matrix
from funcnn.visualization.images import filters, image_grid, png_bytes
from funcnn.visualization.fit import fit_curve

__all__ = ["decision_boundary", "boundary_grid", "class1_score", "contour_segments",
           "boundary_svg", "score_colour", "animation", "curves", "confusion_matrix",
           "image_grid", "filters", "png_bytes", "fit_curve", "Picture",
           "BLUE", "ORANGE", "RED", "PALETTE", "INK", "LEVELS", "ANIMATION_LEVELS", "STRENGTH",
           "LEFT", "TOP", "SIZE", "WIDTH", "HEIGHT"]
