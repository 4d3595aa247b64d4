"""Mini-batch spherical k-means with the RBM learners' training interface, for the parameter
server.

A worker assigns each row ``x`` (unit length) of its batch to the unit whose direction ``u_k =
W_k / |W_k|`` is nearest (largest cosine) and reduces the batch to per-unit **sums and counts**::

    sums_k = sum_{n: k(n) = k} x_n,      counts_k = |{n: k(n) = k}|

Its update moves each unit that won rows towards their mean (Sculley 2010, "Web-scale k-means
clustering", with a fixed rate in place of 1 / count)::

    dW_k = sums_k / counts_k - W_k    (counts_k > 0; else 0)

applied by the parameter server's elementwise updater (``W += lr * dW`` with momentum), as any
RBM's update is. Units start at distinct data rows (:meth:`init_from_data`). Response of unit k
to a row: the cosine ``u_k . x``. The k-means analogue of a free energy, used by the trainer's
held-out monitor, is the quantisation error ``1 - max_k u_k . x`` (lower: better explained).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.competitive.spherical_kmeans import normalise_rows
from models.rbm.dense import RBMBase, RBMConfig
from models.rbm.optim import UpdateConfig


class KMeansLearner(RBMBase):
    """``n_units`` directions ``W (K, n_inputs)`` learned by mini-batch spherical k-means.

    Parameters
    ----------
    n_inputs : values per row ``D``.
    n_units : ``K``.
    config : only ``check_interval`` applies.
    update, generator, device, dtype : as for the RBMs.
    """

    decay_names: tuple[str, ...] = ()
    visible = "gaussian"

    def __init__(self, n_inputs: int, n_units: int, *, config: RBMConfig | None = None,
                 update: UpdateConfig | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                 ) -> None:
        if n_inputs < 1 or n_units < 2:
            raise ValueError(f"n_inputs={n_inputs} must be >= 1 and n_units={n_units} >= 2")
        super().__init__(config=config, update=update, generator=generator, device=device,
                         dtype=dtype)
        self.n_visible, self.n_states = n_inputs, n_units
        D = torch.randn(n_units, n_inputs, generator=self.generator, device=self.device,
                        dtype=dtype)
        self.params = {"W": normalise_rows(D)}

    @torch.no_grad()
    def init_from_data(self, x: Tensor, pick: Tensor | None = None) -> None:
        """Each unit starts at a distinct row of ``x`` (N >= K, D), normalised: rows ``pick``
        (K,), or random ones."""
        x = self.as_input(x)
        if x.shape[0] < self.n_states:
            raise ValueError(f"init_from_data needs >= {self.n_states} rows, got {x.shape[0]}")
        if pick is None:
            pick = torch.randperm(x.shape[0], generator=self.generator, device=x.device)
        self.params["W"].copy_(normalise_rows(x[pick[: self.n_states]]))

    def unit_weights(self) -> Tensor:
        """The unit directions ``u (K, D)`` (unit length)."""
        return normalise_rows(self.params["W"])

    @torch.no_grad()
    def mean_hiddens(self, x: Tensor) -> Tensor:
        """Cosine of each row with each unit: (N, K)."""
        return normalise_rows(self.as_input(x)) @ self.unit_weights().T

    @torch.no_grad()
    def statistics(self, x: Tensor) -> dict[str, Tensor]:
        """``{"sums": (K, D), "counts": (K,)}`` of the batch's rows (normalised here)."""
        x = normalise_rows(self.as_input(x))
        onehot = F.one_hot((x @ self.unit_weights().T).argmax(1), self.n_states).to(x.dtype)
        return {"sums": onehot.T @ x, "counts": onehot.sum(0)}

    @torch.no_grad()
    def compute_update(self, x: Tensor, *, generator: torch.Generator | None = None
                       ) -> dict[str, Tensor]:
        """``{"W": sums_k / counts_k - W_k}`` for the units that won rows, 0 for the others."""
        s = self.statistics(x)
        won = (s["counts"] > 0).to(x.dtype)[:, None]
        mean = s["sums"] / s["counts"].clamp(min=1)[:, None]
        return {"W": (mean - self.params["W"]) * won}

    @torch.no_grad()
    def free_energy(self, x: Tensor) -> Tensor:
        """Quantisation error ``1 - max_k u_k . x`` per row: (N,)."""
        return 1.0 - self.mean_hiddens(x).amax(1)

    @torch.no_grad()
    def reconstruction_error(self, x: Tensor) -> Tensor:
        """Mean quantisation error of the batch (a scalar)."""
        return self.free_energy(x).mean()
