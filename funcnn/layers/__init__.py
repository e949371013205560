"""Layers: values that compose, each a forward pass and its VJP written by hand, side by side.

Contract (stax's layer, with CS231n's cache). A layer is a frozen, hashable description: sizes
and choices, never numbers, so a network of layers is a static argument of `jit`. Shapes are
per example (no batch axis); data are NHWC (`x: f32[n, h, w, c]`), convolution kernels HWIO.
- `shape(input_shape) -> output_shape`: plain Python; raises `InputError` naming the layer.
- `init(key, input_shape, dtype) -> p`: the layer's numbers, a dict of arrays (`()` if none).
- `apply(p, x, train, key) -> (y, cache)`: the forward pass; the cache is exactly what the
  VJP reads. `train` picks batch statistics and dropout; `key` is used only by Dropout.
- `vjp(p, cache, g) -> (dL/dp shaped like p, dL/dx)`: pulls g = dL/dy back one layer.
- `update_state(p, p_new, cache) -> p_new`: state that moves without a gradient. BatchNorm's
  running mean and variance live in its params beside gamma and beta (as PyTorch keeps its
  buffers in the `state_dict`); their gradient is zero, and after each training step `fit`
  and `grad_step` set them from the step's batch here, so no optimizer or weight decay
  ever moves them. Every other layer returns `p_new` as it is.
- `couples_rows`: True where a row's training output reads the other rows (BatchNorm's batch
  statistics). A big training step runs its rows in pieces (`funcnn.model.in_pieces`) only
  when no layer does; a layer of your own that mixes rows must say so.
`serial(*layers)` is itself a layer; an activation of `funcnn.math` in it is a layer with no
numbers. `serial(..., image_layout="CHWN")` runs its image layers channels first and batch
last inside (each such layer has a `layout` field that only `serial` sets; windows.py says
why); its input and output stay NHWC and its numbers the same. No autodiff anywhere:
`jax.grad` is the referee (`funcnn.gradcheck`), not the engine.

One module per kind of layer, in reading order: `base` (the protocol above, and an activation
as a layer), `dense` (Dense, Flatten, Reshape), `windows` (the patches a convolution or a pool
reads, and their VJP), `conv` (Conv2D), `winograd` (its fast 3x3 formulation), `pool`
(MaxPool2D, AvgPool2D), `dropout`, `norm` (BatchNorm, LayerNorm), `compose` (Residual, serial).
"""
from funcnn.layers.base import Act, Layer, as_layer
from funcnn.layers.dense import Dense, Flatten, Reshape, dense, dense_vjp
from funcnn.layers.windows import patches, patches_vjp
from funcnn.layers.conv import Conv2D
from funcnn.layers.pool import AvgPool2D, MaxPool2D
from funcnn.layers.dropout import Dropout
from funcnn.layers.norm import BatchNorm, LayerNorm
from funcnn.layers.compose import Residual, Serial, serial

__all__ = ["Layer", "Act", "as_layer", "Dense", "dense", "dense_vjp", "Flatten", "Reshape",
           "patches", "patches_vjp", "Conv2D", "MaxPool2D", "AvgPool2D", "Dropout", "BatchNorm",
           "LayerNorm", "Residual", "Serial", "serial"]
