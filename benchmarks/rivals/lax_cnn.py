"""The CNNs of section 7 as a JAX user writes them: `lax.conv_general_dilated` (NHWC, HWIO), a
`lax.reduce_window` max pool, BatchNorm and dropout by hand, `jax.grad`, SGD; (a) a jitted step
called from Python once per batch, (b) the same step in a jitted `lax.scan`. Params as a dict
(conv1, conv2, [bn], dense1, dense2) holding funcnn's numbers, so that every row of the table
starts from the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

import funcnn as fn

L = fn.layers


@dataclass(frozen=True)
class UserCNN:
    """The two networks in plain lax, params as a dict: conv1, conv2, [bn], dense1, dense2."""
    batchnorm: bool
    dropout: float

    @staticmethod
    def of(net) -> UserCNN:
        rates = [layer.rate for layer in net.layer.layers if isinstance(layer, L.Dropout)]
        return UserCNN(any(isinstance(layer, L.BatchNorm) for layer in net.layer.layers),
                       rates[0] if rates else 0.0)

    @property
    def names(self):
        return ("conv1", "conv2") + (("bn",) if self.batchnorm else ()) + ("dense1", "dense2")


def to_user(user, params) -> dict:
    return dict(zip(user.names, [p for p in params if p != ()], strict=True))


def from_user(user, params, p_user) -> tuple:
    """funcnn's params tuple with the user's numbers in place."""
    values = iter(p_user[name] for name in user.names)
    return tuple(p if p == () else next(values) for p in params)


def user_forward(user, p, x, train, key):
    """x: f32[n, 784] -> (logits f32[n, 10], BatchNorm's batch (mean, var) or None)."""
    conv = lambda x, q: lax.conv_general_dilated(
        x, q["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["b"]
    pool = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                       "VALID")
    x = x.reshape(-1, 28, 28, 1)
    x = pool(jax.nn.relu(conv(x, p["conv1"])))               # [n, 14, 14, c1]
    x = conv(x, p["conv2"])
    stats = None
    if user.batchnorm:
        bn = p["bn"]
        if train:
            mu, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
            count = x.shape[0] * x.shape[1] * x.shape[2]
            stats = (mu, var * count / (count - 1))           # running var: unbiased
        else:
            mu, var = bn["mean"], bn["var"]
        x = bn["gamma"] * (x - mu) * lax.rsqrt(var + 1e-5) + bn["beta"]
    x = pool(jax.nn.relu(x)).reshape(x.shape[0], -1)          # [n, 7 * 7 * c2], NHWC order
    if train and user.dropout:
        keep = jax.random.bernoulli(key, 1 - user.dropout, x.shape)
        x = jnp.where(keep, x / (1 - user.dropout), 0.0)
    x = jax.nn.relu(x @ p["dense1"]["w"] + p["dense1"]["b"])
    return x @ p["dense2"]["w"] + p["dense2"]["b"], stats


def user_step(user, p, x, y, key, lr):
    """One SGD step of the user's model: (params, loss before the step)."""
    def loss(p):
        z, stats = user_forward(user, p, x, True, key)
        return -(y * jax.nn.log_softmax(z)).sum(axis=-1).mean(), stats
    (value, stats), g = jax.value_and_grad(loss, has_aux=True)(p)
    p = jax.tree.map(lambda v, d: v - lr * d, p, g)
    if stats is not None:                                     # running statistics, momentum 0.1
        old = p["bn"]
        p["bn"] = {**old, "mean": 0.9 * old["mean"] + 0.1 * stats[0],
                   "var": 0.9 * old["var"] + 0.1 * stats[1]}
    return p, value


@partial(jax.jit, static_argnames="user")
def user_jit_step(user, p, x_all, y_all, rows, key, i, lr):
    """The step a user jits and calls from Python, the batch gathered on the device."""
    return user_step(user, p, x_all[rows], y_all[rows], jax.random.fold_in(key, i), lr)


@partial(jax.jit, static_argnames="user")
def user_scan(user, p, x_all, y_all, rows, key, lr):
    """The same steps in one jitted lax.scan over the batches' rows."""
    def step(p, inputs):
        i, r = inputs
        return user_step(user, p, x_all[r], y_all[r], jax.random.fold_in(key, i), lr)
    return lax.scan(step, p, (jnp.arange(rows.shape[0]), rows))
