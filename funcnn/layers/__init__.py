"""Layers: values that compose, each a forward pass and its VJP written by hand, side by side.

Contract (stax's layer, with CS231n's cache). A layer is a frozen, hashable description: sizes
and choices, never numbers, so a network of layers is a static argument of `jit`. Shapes are
per example (no batch axis); data are NHWC (`x: f32[n, h, w, c]`), convolution kernels HWIO,
sequences `x: f32[n, t, d]` (tokens `int32[n, t]` into an Embedding).
- `shape(input_shape) -> output_shape`: plain Python; raises `InputError` naming the layer.
- `init(key, input_shape, dtype) -> p`: the layer's numbers, a dict of arrays (`()` if none).
- `apply(p, x, train, key) -> (y, cache)`: the forward pass; the cache is exactly what the
  VJP reads. `train` picks batch statistics and dropout. `key` (training only) is one key per
  row, `key[n]` (`row_keys` splits a single key so): row i draws from key[i] alone, so its
  draw is the same whatever rows share its batch, in one piece, in several, or on a mesh.
- `vjp(p, cache, g) -> (dL/dp shaped like p, dL/dx)`: pulls g = dL/dy back one layer. `serial`
  refuses a dL/dp of another tree or leaf shape than p, naming the layer. An integer x (tokens)
  is not differentiated: its dL/dx is float0 zeros of its shape, as `jax.vjp` gives.
- `update_state(p, p_new, cache) -> p_new`: state that moves without a gradient. BatchNorm's
  running mean and variance live in its params beside gamma and beta (as PyTorch keeps its
  buffers in the `state_dict`); their gradient is zero, and after each training step `fit`
  and `grad_step` set them from the step's batch here, so no optimizer or weight decay
  ever moves them. Every other layer returns `p_new` as it is.
Attributes a layer may set (the defaults, in `Layer`, are safe for a layer of your own):
- `needs_key` (False): apply(train=True) draws random numbers, so training needs a key.
- `independent_rows` (False): row i's output reads row i alone. Only then may a big training
  step run its rows in pieces (`funcnn.pieces`); a layer that does not say so keeps
  every step whole. funcnn's layers say so, all but BatchNorm.
- `weighs_rows` (False): apply takes `w=`, the rows' weights f32[n] (0 for a padding row), in
  training; BatchNorm's statistics count only the rows of weight > 0.
- `workspace(input_shape) -> int`: floats one example needs inside the layer (default: the
  larger of its input and output); a big evaluation or training step is cut by it.
A layer is hashed (it is a static argument of jit): a frozen dataclass of numbers, strings and
tuples. `network(...)` refuses one that cannot hash, and `init` one whose apply returns another
shape than its `shape()` says.
`serial(*layers)` is itself a layer; an activation of `funcnn.math` in it is a layer with no
numbers. No autodiff anywhere: `jax.grad` is the referee (`funcnn.gradcheck`), not the engine.

One module per kind of layer, in reading order: `base` (the protocol above, and an activation
as a layer), `dense` (Dense, Flatten, Reshape), `windows` (the patches a convolution or a pool
reads, and their VJP), `conv` (Conv2D, the patch product), `winograd` (its fast 3x3
formulation), `xla_conv` (XLA's, for a GPU), `pool` (MaxPool2D, AvgPool2D), `dropout`, `norm`
(BatchNorm, LayerNorm), `embedding` (Embedding, PositionalEmbedding), `attention`
(CausalSelfAttention), `compose` (Residual, serial).
"""
from funcnn.layers.base import Act, Layer, as_layer, row_keys
from funcnn.layers.dense import Dense, Flatten, Reshape, dense, dense_vjp
from funcnn.layers.windows import patches, patches_vjp
from funcnn.layers.conv import Conv2D
from funcnn.layers.pool import AvgPool2D, MaxPool2D
from funcnn.layers.dropout import Dropout
from funcnn.layers.norm import BatchNorm, LayerNorm
from funcnn.layers.embedding import Embedding, PositionalEmbedding
from funcnn.layers.attention import CausalSelfAttention
from funcnn.layers.compose import Residual, Serial, serial

__all__ = ["Layer", "Act", "as_layer", "row_keys", "Dense", "dense", "dense_vjp", "Flatten",
           "Reshape", "patches", "patches_vjp", "Conv2D", "MaxPool2D", "AvgPool2D", "Dropout",
           "BatchNorm", "LayerNorm", "Embedding", "PositionalEmbedding", "CausalSelfAttention",
           "Residual", "Serial", "serial"]
