"""What funcnn is timed against, one file each:

- `autodiff.py`: fit's own loop with `jax.grad` of funcnn's forward in place of its VJPs;
- `lax_cnn.py`: the CNNs as a JAX user writes them (`lax.conv_general_dilated`, `jax.grad`);
- `torch_loop.py`: a funcnn network copied into PyTorch, and the usual eager training loop;
- `torch_func.py`: PyTorch's ensemble recipe (`torch.func`: stacked params, `vmap(grad)`);
- `torch_gpt.py`: nanoGPT's model and training step in PyTorch, at any size;
- `numpy_loop.py`: seed 2's NumPy loops (backprop by hand), in a worker process of their own.
"""
