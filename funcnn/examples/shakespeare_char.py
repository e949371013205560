"""A character-level GPT on tiny Shakespeare: nanoGPT's CPU recipe, every gradient by hand.

The recipe of nanoGPT's `config/train_shakespeare_char.py` as its README runs it on a CPU: 4
blocks of 4 heads, 128 wide, context 64, batch 12, 2,000 steps of AdamW (betas 0.9 and 0.99,
weight decay 0.1 on the matrices), lr 1e-3 after 100 warm-up steps, cosine to 1e-4 at step
2,000, gradients clipped at global norm 1.0, no dropout. Each step draws its own 12 random
windows inside the compiled loop (`fn.train.fit_steps`, seed 3's loop); the validation loss is
the mean over 20 batches every 250 steps. A 500-character sample ends the run.
"""
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import funcnn as fn

HELP = "a character-level GPT on tiny Shakespeare (nanoGPT's CPU recipe), every gradient by hand"
DESCRIPTION = " ".join(__doc__.split("\n\n")[1].split())
L = fn.layers


def gpt(vocab: int, context: int, layers: int, heads: int, width: int, dropout: float = 0.0):
    """GPT-2's shape at a small size: token and position embeddings, `layers` blocks of
    (LayerNorm, causal self-attention) and (LayerNorm, Dense 4x wide with gelu, Dense), each
    added back to its input, a last LayerNorm and a Dense to a logit per character."""
    def block():
        return L.serial(
            L.Residual(L.serial(L.LayerNorm(), L.CausalSelfAttention(heads, dropout=dropout))),
            L.Residual(L.serial(L.LayerNorm(), L.Dense(4 * width, fn.math.gelu),
                                L.Dense(width))))
    return fn.model.network(
        L.serial(L.Embedding(vocab, width), L.PositionalEmbedding(context),
                 *[block() for _ in range(layers)], L.LayerNorm(), L.Dense(vocab)),
        input_shape=(context,), loss=fn.losses.softmax_cross_entropy)


def add_arguments(p, positive_int, positive_float):
    p.add_argument("--steps", type=positive_int, default=2000, help="default 2000")
    p.add_argument("--batch-size", type=positive_int, default=12, help="default 12")
    p.add_argument("--context", type=positive_int, default=64, help="default 64")
    p.add_argument("--layers", type=positive_int, default=4, help="default 4")
    p.add_argument("--heads", type=positive_int, default=4, help="default 4")
    p.add_argument("--width", type=positive_int, default=128, help="default 128")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak lr (default 1e-3)")
    p.add_argument("--min-lr", type=positive_float, default=1e-4, help="default 1e-4")
    p.add_argument("--warmup", type=positive_int, default=100, help="default 100 steps")
    p.add_argument("--eval-every", type=positive_int, default=250, help="default 250 steps")
    p.add_argument("--eval-batches", type=positive_int, default=20, help="default 20")
    p.add_argument("--progress-every", type=positive_int, default=50,
                   help="a line with the batch's loss every N steps (default 50)")
    p.add_argument("--sample", type=int, default=500, help="characters to sample at the end")
    p.add_argument("--data", default=None, help="directory holding input.txt (default: "
                   "$FUNCNN_DATA, $FUNCNN_DATA/tinyshakespeare, ~/.cache/funcnn)")
    p.add_argument("--download", action="store_true",
                   help="fetch input.txt into ~/.cache/funcnn if it is not found")
    p.add_argument("--save", default=None, help="save the trained network and params here "
                   "(default: beside the picture, .npz)")
    return "images/shakespeare_char.svg"


def run(args) -> int:
    start = time.perf_counter()
    text = fn.data.tiny_shakespeare(args.data, download=args.download)
    net = gpt(len(text.vocab), args.context, args.layers, args.heads, args.width)
    schedule = fn.schedules.warmup_cosine_decay(0.0, args.lr, warmup_steps=args.warmup,
                                                decay_steps=max(args.steps, args.warmup + 1),
                                                end=args.min_lr)
    opt = fn.optim.chain(fn.optim.clip_by_global_norm(1.0),
                         fn.optim.adamw(schedule, b1=0.9, b2=0.99, weight_decay=0.1,
                                        mask=fn.optim.decay_weights_only))
    k_init, k_train, k_eval, k_sample = jax.random.split(fn.rng.key(args.seed), 4)
    params = fn.model.init(k_init, net)
    state = opt.init(params)
    train, val = jnp.asarray(text.train), jnp.asarray(text.val)
    n_params = sum(v.size for v in jax.tree.leaves(params))
    print(f"GPT: {args.layers} blocks x {args.heads} heads, {args.width} wide, context "
          f"{args.context}, {n_params:,} numbers; {len(text.train):,} training and "
          f"{len(text.val):,} validation characters; batch {args.batch_size}, {args.steps} "
          f"steps, {opt}")
    history = {"step": [], "train_loss": [], "val_loss": []}
    done = 0
    while done < args.steps:                       # a compiled chunk of steps per evaluation
        chunk, t_chunk = min(args.eval_every, args.steps - done), time.perf_counter()
        params, state, losses = fn.train.fit_steps(
            k_train, net, params, train, steps=chunk, batch_size=args.batch_size,
            optimizer=opt, state=state, start_step=done, total_steps=args.steps,
            progress_every=0 if args.quiet else args.progress_every)
        losses = np.asarray(losses)                # (waits for the chunk)
        rate = chunk * args.batch_size * args.context / (time.perf_counter() - t_chunk)
        done += chunk
        val_loss = float(_evaluate(jax.random.fold_in(k_eval, done), params, val, net=net,
                                   batch=args.batch_size, batches=args.eval_batches))
        train_loss = float(np.mean(losses[-args.eval_batches:]))
        elapsed = time.perf_counter() - start
        history["step"].append(done)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        print(f"step {done:>{len(str(args.steps))}}/{args.steps}  train loss {train_loss:.4f}  "
              f"val loss {val_loss:.4f} ({val_loss / np.log(2):.3f} bits per character)  "
              f"{rate:,.0f} tokens/s  ({elapsed:.1f} s)", flush=True)
    if args.sample > 0:
        said = fn.model.generate(k_sample, net, params, text.encode("\n"), args.sample,
                                 temperature=0.8, top_k=20)
        print("sample:\n" + text.decode(said[1:]))
    curves = fn.visualization.curves({"train_loss": np.array(history["train_loss"]),
                                      "val_loss": np.array(history["val_loss"])}, args.out,
                                     title=f"GPT on tiny Shakespeare, {args.steps} steps",
                                     x=np.array(history["step"]), x_label="step")
    saved_history = fn.history.save(history, args.out.replace(".svg", "_history.json"))
    checkpoint = fn.io.save(args.save or args.out.replace(".svg", ".npz"), params, net,
                            metadata={"steps": args.steps, "val_loss": history["val_loss"][-1]})
    print(f"written: {curves} (loss curves, every {args.eval_every} steps), {saved_history}, "
          f"{checkpoint}")
    return 0


@partial(jax.jit, static_argnames=("net", "batch", "batches"))
def _evaluate(key, params, tokens, *, net, batch, batches):
    """The mean loss over `batches` batches of random windows (nanoGPT's estimate_loss)."""
    def one(key):
        x, y = fn.data.windows(key, tokens, batch, net.input_shape[0])
        out = net.layer.apply(params, x, False, None)[0]
        return net.loss.fn(out, y, None)
    return jax.vmap(one)(jax.random.split(key, batches)).mean()
