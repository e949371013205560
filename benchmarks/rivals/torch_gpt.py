"""PyTorch, the rival of sections 9 and 9b: nanoGPT's model (`karpathy/nanoGPT`: model.py) at
any size, and its training step as nanoGPT's train.py takes it.

The model: token and position embeddings, `layers` pre-LayerNorm blocks (causal self-attention
by `F.scaled_dot_product_attention(is_causal=True)`, then Linear 4x wide, GELU tanh, Linear),
each added back to its input, a last LayerNorm and a Linear to the logits; no dropout. The step:
`batch` random windows of `context` tokens, cross entropy, backward, gradients clipped at global
norm 1.0, AdamW (lr 1e-3, betas 0.9 and 0.99, weight decay 0.1 on the matrices only). `torch`
is passed in (it is optional: `pip install -e .[bench]`); the runner sets its thread count on
every call, as rows at different counts interleave. Run as a script, this file measures one
step's peak memory in a process of its own (`peak_bytes`).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple


class Shape(NamedTuple):
    """A GPT and its batch: nanoGPT's GPTConfig plus the batch size."""
    vocab: int
    context: int        # t: tokens per window
    batch: int          # n: windows per step
    layers: int
    heads: int
    width: int          # d


def model(torch, shape: Shape):
    """nanoGPT's GPT at `shape`, drawn from torch.manual_seed(0) (PyTorch's default inits)."""
    nn, F = torch.nn, torch.nn.functional
    vocab, context, _, layers, heads, d = shape
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, h):
            n, t, _ = h.shape
            q, k, v = self.attn(self.ln1(h)).split(d, dim=2)
            q, k, v = (a.view(n, t, heads, d // heads).transpose(1, 2) for a in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)    # (n, H, t, e)
            h = h + self.proj(a.transpose(1, 2).reshape(n, t, d))
            return h + self.out(F.gelu(self.fc(self.ln2(h)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(context, d)
            self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

        def forward(self, x):
            h = self.wte(x) + self.wpe(torch.arange(x.shape[1]))
            return self.head(self.ln(self.blocks(h)))

    return GPT()


def trainer(torch, shape: Shape, compiled=False):
    """(step, model): step() runs one training step on fresh random windows of a fixed random
    text and returns the loss tensor; `compiled`: the forward through torch.compile."""
    F = torch.nn.functional
    net = model(torch, shape)
    decay = [p for p in net.parameters() if p.dim() >= 2]
    other = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99))
    forward = torch.compile(net) if compiled else net
    data = torch.randint(0, shape.vocab, (200_000,), generator=torch.Generator().manual_seed(0))
    t, n = shape.context, shape.batch

    def step():
        i = torch.randint(0, len(data) - t - 1, (n,))
        x = torch.stack([data[j:j + t] for j in i])
        y = torch.stack([data[j + 1:j + 1 + t] for j in i])
        loss = F.cross_entropy(forward(x).view(-1, shape.vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return loss
    return step, net


def runner(torch, shape: Shape, steps: int, n_threads: int, compiled=False):
    """A runner (see timing.py): `steps` training steps at `n_threads` threads; seconds."""
    torch.set_num_threads(n_threads)
    step, _ = trainer(torch, shape, compiled)

    def run():
        torch.set_num_threads(n_threads)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return time.perf_counter() - start
    return run


def saved_bytes(torch, shape: Shape) -> int:
    """Bytes of the distinct storages autograd saves for the backward in one training forward
    (the loss included) of one batch: the activations; the parameters and the batch are not
    counted (they exist before and after the step). No backward is run: the tally is whole
    once the loss is."""
    net = model(torch, shape)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, shape.vocab, (shape.batch, shape.context), generator=g)
    y = torch.randint(0, shape.vocab, (shape.batch, shape.context), generator=g)
    from rivals import torch_loop            # here: the peak's process runs this file alone
    return torch_loop.saved_bytes(
        torch, lambda: torch.nn.functional.cross_entropy(net(x).view(-1, shape.vocab),
                                                         y.view(-1)),
        (x, y, *net.parameters()))[0]


def peak_bytes(shape: Shape, n_threads: int, timeout: float = 600) -> dict:
    """What one eager training step adds to the process's resident memory at its peak, in a
    fresh process: after a first step (AdamW's state exists), the resident memory before a
    second step is subtracted from its peak during that step (Linux's VmHWM, reset just
    before it through /proc/self/clear_refs). glibc's mmap threshold is fixed at 128 KiB
    there, so freed big tensors go back to the system and do not hide in the baseline.
    Returns {"peak": bytes over the baseline, "baseline": bytes, "params": bytes}."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    done = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(shape),
                           str(n_threads)], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"the peak-memory process failed: {lines[-1] if lines else ''}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss(field: str) -> int:
    """This process's resident memory, bytes: now ("VmRSS") or at its peak ("VmHWM")."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024                 # kB
    raise RuntimeError(f"/proc/self/status has no {field}: Linux only")


def _peak_main(shape_json: str, n_threads: str):
    import torch
    torch.set_num_threads(int(n_threads))
    shape = Shape(*json.loads(shape_json))
    step, net = trainer(torch, shape)
    step()                                                   # AdamW's state: made here
    gc.collect()
    before = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                         # VmHWM := VmRSS (Linux >= 4.0)
    step()
    peak = _rss("VmHWM")
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    print(json.dumps({"peak": peak - before, "baseline": before, "params": params}))


if __name__ == "__main__":
    _peak_main(*sys.argv[1:])
