"""Contrastive divergence (CD-k, Hinton 2002) and persistent CD (PCD-k, Tieleman 2008).

:func:`contrastive_divergence` runs the chain of one update: the positive phase on the data,
``k`` Gibbs steps from the data's hidden sample (CD) or from the persistent chains (PCD), and
the gradient from both phases. The model is reached only through :class:`GibbsOps` (its
conditionals and sufficient statistics), the chains and settings come in as plain values, and
the result (:class:`CDStep`) says what the caller keeps: the update, the chains' new state and
the batch mean of P(h | v0) for a sparsity term. The dense RBMs and the torch formulation of
the local RBM run this function; the local RBM's numba backend fuses the same chain into its
kernels (:mod:`models.rbm.local_numba`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


class CDSettings(Protocol):
    """The chain settings a CD step reads (:class:`models.rbm.dense.RBMConfig` has them)."""

    k: int
    persistent: bool
    n_chains: int | None
    sparsity_target: float | None


class GibbsOps(Protocol):
    """A model's conditionals and sufficient statistics, as one CD step uses them."""

    def begin_step(self, n_data: int, n_negative: int) -> None:
        """Called once before the step's passes (a model may size a reused workspace)."""

    def up(self, v: Tensor, slot: int) -> tuple[Tensor, Any]:
        """(total hidden input x, what :meth:`gradient` needs of v); slot 0 data, 1 sample."""

    def sample_hidden(self, p: Tensor, generator: torch.Generator) -> Tensor:
        """h ~ Bernoulli(p)."""

    def visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h]."""

    def sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """v ~ P(v | h) from its mean."""

    def gradient(self, a0: Any, p0: Tensor, ak: Any, pk: Tensor) -> dict[str, Tensor]:
        """Positive minus negative sufficient statistics, each a mean over its own rows."""

    def hidden_batch_mean(self, p: Tensor) -> Tensor:
        """Mean of P(h | v) over the batch, shaped like the hidden bias."""

    def resize_chain(self, h: Tensor, n: int) -> Tensor:
        """Repeat the rows of hidden samples ``h`` to ``n`` chains."""


@dataclass
class CDStep:
    """What one CD step leaves behind.

    Attributes
    ----------
    update : the gradient estimate, one tensor per parameter (no sparsity term yet).
    chain : hidden state of the persistent chains after the step (None for CD-k).
    mean_p0 : batch mean of P(h | v0) when the settings have a sparsity target, else None.
    """

    update: dict[str, Tensor]
    chain: Tensor | None
    mean_p0: Tensor | None


def contrastive_divergence(
    ops: GibbsOps,
    v0: Tensor,
    *,
    chain: Tensor | None,
    n_negative: int,
    cd: CDSettings,
    generator: torch.Generator,
) -> CDStep:
    """One CD-k / PCD-k gradient estimate from the batch ``v0``.

    Positive statistics use P(h | v0); negative statistics use the k-th Gibbs sample v_k and
    P(h | v_k). CD-k starts the chain at h ~ P(h | v0); PCD-k continues ``chain`` (or, at the
    first step, starts ``n_chains`` chains from h ~ P(h | v0), rows repeated). ``n_negative``
    is the number of negative rows (the batch for CD, the chains for PCD).
    """
    g = generator
    ops.begin_step(v0.shape[0], n_negative)
    x0, a0 = ops.up(v0, slot=0)
    p0 = torch.sigmoid_(x0)
    if cd.persistent:
        h = chain if chain is not None else _initial_chain(ops, p0, cd.n_chains, g)
    else:
        h = ops.sample_hidden(p0, g)
    ak = pk = None
    for step in range(cd.k):
        vk = ops.sample_visible(ops.visible_mean(h), g)
        xk, ak = ops.up(vk, slot=1)
        pk = torch.sigmoid_(xk)
        if cd.persistent or step < cd.k - 1:
            h = ops.sample_hidden(pk, g)
    update = ops.gradient(a0, p0, ak, pk)
    mean_p0 = ops.hidden_batch_mean(p0) if cd.sparsity_target is not None else None
    return CDStep(update=update, chain=h if cd.persistent else None, mean_p0=mean_p0)


def _initial_chain(
    ops: GibbsOps, p0: Tensor, n_chains: int | None, generator: torch.Generator
) -> Tensor:
    """Persistent chains start from h ~ P(h | first batch) (rows repeated to n_chains)."""
    h = ops.sample_hidden(p0, generator)
    return h if n_chains is None else ops.resize_chain(h, n_chains)
