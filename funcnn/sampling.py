"""Generation: a network that predicts the next token, run on its own output.

Contract: `generate(key, net, params, prompt, n_new)` appends `n_new` tokens to `prompt:
int[m]`, each drawn from the network's distribution for the position after the last token
(softmax of the logits / temperature, optionally only the top k), and returns all m + n_new
tokens. The network sees the last t tokens (t = its input length, the context): while fewer
are known, the window starts at 0 and the tokens after the last known one are 0s, which a
causal network never looks at (position i sees positions <= i). The whole loop is one
compiled `lax.scan` over the new positions: one compile per network, prompt length, n_new
and top_k; key, params, prompt and temperature are arguments. `text.decode` turns the tokens
back into characters.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnn import model, rng
from funcnn.checks import InputError, InputTypeError, integer, number


def generate(key: rng.Key, net, params, prompt, n_new: int, *, temperature: float = 1.0,
             top_k: int | None = None) -> jax.Array:
    """`n_new` tokens drawn after `prompt: int[m]`; returns `int32[m + n_new]`, the prompt
    first. temperature < 1 sharpens the distribution, > 1 flattens it; `top_k` keeps only the
    k most likely tokens at each step (nanoGPT's `generate`)."""
    key = rng.check_key(key)
    model.check_params(net, params)
    if not net.layer.takes_tokens or len(net.input_shape) != 1 or len(net.output_shape) != 2:
        raise InputError(f"generate needs a network from tokens int[n, t] to a row of logits per "
                         f"position (t, vocab), such as a GPT; got input {net.input_shape}, "
                         f"output {net.output_shape}")
    vocab = net.output_shape[-1]
    prompt = np.asarray(prompt) if not isinstance(prompt, jax.Array) else prompt
    if prompt.ndim != 1 or prompt.shape[0] == 0 or not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise InputTypeError(f"prompt must be a non-empty 1-D array of integer tokens (e.g. "
                             f"text.encode('O Romeo')), got {prompt.dtype}{list(prompt.shape)}")
    if not isinstance(prompt, jax.core.Tracer):
        bad = np.flatnonzero((np.asarray(prompt) < 0) | (np.asarray(prompt) >= vocab))
        if bad.size:
            raise InputError(f"prompt holds token {int(np.asarray(prompt)[bad[0]])} at {bad[0]}, "
                             f"outside the network's vocabulary [0, {vocab})")
    n_new = integer("n_new", n_new, 1)
    if top_k is not None:
        top_k = integer("top_k", top_k, 1)
        if top_k > vocab:
            raise InputError(f"top_k must be at most the vocabulary's size {vocab}, got {top_k}")
    temperature = number("temperature", temperature, positive=True, hint="1.0 samples as "
                         "trained; 0.8 is more conservative")
    dtype = jax.tree.leaves(params)[0].dtype
    prompt = prompt.astype(jnp.int32) if isinstance(prompt, jax.Array) else np.asarray(
        prompt, np.int32)                            # (on the host: no program to compile)
    return _generate(key, params, prompt,
                     jnp.asarray(temperature, dtype), net=net, n_new=n_new, top_k=top_k)


@partial(jax.jit, static_argnames=("net", "n_new", "top_k"))
def _generate(key, params, prompt, temperature, *, net, n_new, top_k):
    t, m = net.input_shape[0], prompt.shape[0]
    size = max(m + n_new, t)                         # room for every token, and one window
    tokens = jnp.zeros(size, jnp.int32).at[:m].set(prompt)

    def step(tokens, inputs):
        known, k = inputs                            # tokens[:known] are known
        start = jnp.clip(known - t, 0, size - t)     # the window: the last t known tokens
        window = lax.dynamic_slice(tokens, (start,), (t,))
        logits = net.layer.apply(params, window[None], False, None)[0][0]     # [t, vocab]
        z = logits[known - 1 - start] / temperature  # the next token's logits
        if top_k is not None:                        # all but the k largest -> -inf
            z = jnp.where(z < lax.top_k(z, top_k)[0][-1], -jnp.inf, z)
        new = jax.random.categorical(k, z).astype(jnp.int32)   # p = softmax(z)
        return tokens.at[known].set(new), new

    keys = jax.random.split(key, n_new)
    tokens, _ = lax.scan(step, tokens, (jnp.arange(m, m + n_new), keys))
    return tokens[:m + n_new]
