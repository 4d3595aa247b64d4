"""Shared helpers of the models tests: seeded generators, enumerations, random parameters."""

from __future__ import annotations

import itertools

import torch

DT = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_binary(n: int, dtype=DT) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def randomise(rbm, seed=1, scale=0.5):
    g = gen(seed)
    for p in rbm.params.values():
        p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return rbm


def grad_of_free_energy(rbm, v):
    """d mean(F(v)) / d theta, computed by autograd on a copy of the parameters."""
    original = rbm.params
    leaves = {k: p.detach().clone().requires_grad_(True) for k, p in original.items()}
    rbm.params = leaves
    try:
        with torch.enable_grad():
            fn = type(rbm).free_energy.__wrapped__  # undecorated (no_grad) function
            fe = fn(rbm, v).mean()
            grads = torch.autograd.grad(fe, list(leaves.values()), allow_unused=True)
    finally:
        rbm.params = original
    pairs = zip(leaves, grads, strict=True)
    return {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in pairs}
