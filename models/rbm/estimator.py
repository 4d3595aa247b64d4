"""A scikit-learn-convention Bernoulli RBM estimator on top of the torch core.

Numpy in, numpy out; the same hyperparameter names and learned attributes as
``sklearn.neural_network.BernoulliRBM`` (``n_components``, ``learning_rate``, ``batch_size``,
``n_iter``, ``random_state``; ``components_``, ``intercept_hidden_``, ``intercept_visible_``,
``h_samples_``), and conversions both ways (:meth:`BernoulliRBMEstimator.from_sklearn`,
:meth:`BernoulliRBMEstimator.to_sklearn`) so the same parameters give the same free energies and
conditionals in both.

Training is persistent CD-1 with ``batch_size`` fantasy chains, like scikit-learn's, except that
the negative statistics are averaged over the chains and the positive ones over the batch, so a
short last batch (``n_samples`` not a multiple of ``batch_size``) is weighted correctly
(scikit-learn divides both by the batch's rows, over-weighting the negative phase).
"""

from __future__ import annotations

import numbers
from typing import Literal

import numpy as np
import torch

from models.likelihood.estimates import pseudo_log_likelihood
from models.rbm.dense import BernoulliRBM, RBMConfig
from models.rbm.fit_step import FitStep, choose_fit_step
from models.rbm.optim import UpdateConfig


def _seed_from(random_state) -> int:
    """An int seed from None / int / numpy RandomState or Generator."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state={random_state!r} must be None, an int or a numpy generator")


def _batch_starts(n_samples: int, batch_size: int) -> np.ndarray:
    """Row offsets of consecutive batches of ``batch_size`` rows, the last one shorter
    (sklearn's order): batch ``i`` is ``X[starts[i]:starts[i + 1]]``."""
    return np.append(np.arange(0, n_samples, batch_size), n_samples)


class BernoulliRBMEstimator:
    """Bernoulli RBM with scikit-learn's estimator interface (PCD-1 by default).

    Parameters
    ----------
    n_components : number of hidden units.
    learning_rate : step size (scikit-learn's default 0.1).
    batch_size : rows per mini-batch, and the number of persistent chains.
    n_iter : epochs of :meth:`fit`.
    random_state : None, int, or a numpy RandomState / Generator.
    momentum, weight_decay : optional (0 = scikit-learn's plain SGD).
    k, persistent : CD-k / PCD-k settings (PCD-1 like scikit-learn by default).
    device : torch device for the computation (default CPU).
    backend : ``"auto"`` runs scikit-learn's rule (PCD-1, plain SGD) on small CPU mini-batches
        as one compiled numba loop per epoch (``models.kernels.estimator.pcd1_batches``, its own
        counter-based random stream); ``"torch"`` always uses the torch ops.

    Attributes
    ----------
    fit_step_ : the strategy that ran the last mini-batches (:mod:`models.rbm.fit_step`),
        chosen once per fitted RBM and mini-batch size.

    References
    ----------
    Tieleman (2008), "Training restricted Boltzmann machines using approximations to the
    likelihood gradient", ICML; scikit-learn's ``BernoulliRBM``.
    """

    def __init__(
        self,
        n_components: int = 256,
        *,
        learning_rate: float = 0.1,
        batch_size: int = 10,
        n_iter: int = 10,
        random_state=None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        k: int = 1,
        persistent: bool = True,
        device: str | torch.device = "cpu",
        backend: Literal["auto", "torch"] = "auto",
    ) -> None:
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.random_state = random_state
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.k = k
        self.persistent = persistent
        self.device = device
        self.backend = backend

    # ------------------------------------------------------------------ sklearn protocol
    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments (scikit-learn's clone protocol)."""
        names = (
            "n_components",
            "learning_rate",
            "batch_size",
            "n_iter",
            "random_state",
            "momentum",
            "weight_decay",
            "k",
            "persistent",
            "device",
            "backend",
        )
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params) -> BernoulliRBMEstimator:
        """Set constructor arguments; returns self."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"BernoulliRBMEstimator(n_components={self.n_components}, ...)"

    # ------------------------------------------------------------------ validation
    def _check_hyper(self) -> None:
        """Validate hyperparameters (public methods only)."""
        if int(self.n_components) < 1:
            raise ValueError(f"n_components={self.n_components} must be >= 1")
        if self.backend not in ("auto", "torch"):
            raise ValueError(f"backend={self.backend!r} must be 'auto' or 'torch'")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if int(self.n_iter) < 0:
            raise ValueError(f"n_iter={self.n_iter} must be >= 0")

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """2-D finite float array (float32 kept, else float64); never modified in place."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D array (n_samples, n_features), got shape {X.shape}")
        if X.dtype != np.float32:
            X = X.astype(np.float64)
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinity; clean or impute the data first")
        if not reset and hasattr(self, "rbm_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, the RBM was fitted with {self.n_features_in_}"
            )
        return X

    def _check_fitted(self) -> None:
        """Raise like scikit-learn's NotFittedError (a ValueError/AttributeError subclass)."""
        if not hasattr(self, "rbm_"):
            raise _NotFittedError(
                "This BernoulliRBMEstimator instance is not fitted yet. Call 'fit' or "
                "'partial_fit' first."
            )

    def _to_torch(self, X: np.ndarray) -> torch.Tensor:
        """Zero-copy on CPU when dtypes match; the core never writes to its inputs."""
        return torch.from_numpy(X).to(device=self.rbm_.device, dtype=self.rbm_.dtype)

    # ------------------------------------------------------------------ fitting
    def _init(self, n_features: int, dtype: np.dtype) -> None:
        """Fresh parameters: W ~ N(0, 0.01^2), zero biases, zero fantasy chains (as sklearn)."""
        self._check_hyper()
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        device = torch.device(self.device)
        g = torch.Generator(device=device)
        g.manual_seed(_seed_from(self.random_state))
        update = UpdateConfig(
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            initial_momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        config = RBMConfig(k=self.k, persistent=self.persistent, check_interval=1000)
        self.rbm_ = BernoulliRBM(
            n_features,
            self.n_components,
            config=config,
            update=update,
            generator=g,
            device=device,
            dtype=tdtype,
        )
        self.fit_step_: FitStep | None = None  # chosen at the first batch
        self._fit_step_rows = 0
        if self.persistent:
            self.rbm_.chain_h = torch.zeros(
                self.batch_size, self.n_components, device=device, dtype=tdtype
            )
        self.n_features_in_ = n_features

    def _fit_step(self, n_rows: int) -> FitStep:
        """The strategy for mini-batches of ``n_rows`` rows, rebuilt only when that changes."""
        if self.fit_step_ is None or n_rows != self._fit_step_rows:
            compiled = self.backend != "torch"
            self.fit_step_ = choose_fit_step(self.rbm_, n_rows, compiled=compiled)
            self._fit_step_rows = n_rows
        return self.fit_step_

    def partial_fit(self, X, y=None) -> BernoulliRBMEstimator:
        """One update with all of ``X`` as a single mini-batch (initialises lazily)."""
        X = self._validate_X(X, reset=not hasattr(self, "rbm_"))
        if not hasattr(self, "rbm_"):
            self._init(X.shape[1], X.dtype)
        self._fit_step(X.shape[0]).run(X, np.array([0, X.shape[0]]), 1)
        return self

    def fit(self, X, y=None) -> BernoulliRBMEstimator:
        """``n_iter`` epochs over ``X`` in consecutive mini-batches of ``batch_size`` rows."""
        X = self._validate_X(X, reset=True)
        self._init(X.shape[1], X.dtype)
        starts = _batch_starts(X.shape[0], int(self.batch_size))
        self._fit_step(int(self.batch_size)).run(X, starts, int(self.n_iter))
        self.rbm_.check_finite()
        return self

    # ------------------------------------------------------------------ inference
    def transform(self, X) -> np.ndarray:
        """P(h = 1 | v), shape (n_samples, n_components)."""
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        return self.rbm_.mean_hiddens(self._to_torch(X)).cpu().numpy()

    def score_samples(self, X) -> np.ndarray:
        """Pseudo-log-likelihood of each sample, summed over *every* visible unit.

        scikit-learn flips one random unit per sample and multiplies by n_features (an unbiased
        but noisy estimate of this value); here every unit is flipped, so the result is exact.
        """
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        return pseudo_log_likelihood(self.rbm_, self._to_torch(X)).cpu().numpy()

    def gibbs(self, v) -> np.ndarray:
        """One Gibbs step v -> h -> v' (a binary sample, same dtype as v)."""
        self._check_fitted()
        X = self._validate_X(v, reset=False)
        return self.rbm_.gibbs(self._to_torch(X)).cpu().numpy().astype(X.dtype, copy=False)

    def fit_transform(self, X, y=None) -> np.ndarray:
        """fit then transform."""
        return self.fit(X).transform(X)

    def free_energy(self, X) -> np.ndarray:
        """F(v) per sample."""
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        return self.rbm_.free_energy(self._to_torch(X)).cpu().numpy()

    # ------------------------------------------------------------------ learned attributes
    @property
    def components_(self) -> np.ndarray:
        """Weights (n_components, n_features)."""
        self._check_fitted()
        return self.rbm_.params["W"].cpu().numpy()

    @property
    def intercept_hidden_(self) -> np.ndarray:
        """Hidden biases (n_components,)."""
        self._check_fitted()
        return self.rbm_.params["c"].cpu().numpy()

    @property
    def intercept_visible_(self) -> np.ndarray:
        """Visible biases (n_features,)."""
        self._check_fitted()
        return self.rbm_.params["b"].cpu().numpy()

    @property
    def h_samples_(self) -> np.ndarray:
        """Hidden states of the persistent fantasy chains (batch_size, n_components)."""
        self._check_fitted()
        chain = self.rbm_.chain_h
        if chain is None:
            return np.zeros((0, self.n_components), dtype=self.components_.dtype)
        return chain.cpu().numpy().copy()  # the chain is updated in place while fitting

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_sklearn(cls, sk, *, device: str | torch.device = "cpu") -> BernoulliRBMEstimator:
        """Build from a fitted ``sklearn.neural_network.BernoulliRBM`` (parameters copied)."""
        if not hasattr(sk, "components_"):
            raise ValueError("the scikit-learn BernoulliRBM is not fitted (no components_)")
        est = cls(
            n_components=sk.n_components,
            learning_rate=sk.learning_rate,
            batch_size=sk.batch_size,
            n_iter=sk.n_iter,
            random_state=sk.random_state if isinstance(sk.random_state, int) else None,
            device=device,
        )
        W = np.asarray(sk.components_)
        est._init(W.shape[1], W.dtype)
        rbm = est.rbm_
        for name, arr in (("W", W), ("b", sk.intercept_visible_), ("c", sk.intercept_hidden_)):
            rbm.params[name].copy_(torch.as_tensor(np.asarray(arr)))
        if hasattr(sk, "h_samples_"):
            rbm.chain_h = torch.as_tensor(np.array(sk.h_samples_)).to(rbm.device, rbm.dtype)
        return est

    def to_sklearn(self):
        """A fitted ``sklearn.neural_network.BernoulliRBM`` with copies of these parameters."""
        self._check_fitted()
        from sklearn.neural_network import BernoulliRBM as SkBernoulliRBM

        sk = SkBernoulliRBM(
            n_components=self.n_components,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            n_iter=self.n_iter,
            random_state=self.random_state if isinstance(self.random_state, int) else None,
        )
        sk.components_ = self.components_.copy()
        sk.intercept_hidden_ = self.intercept_hidden_.copy()
        sk.intercept_visible_ = self.intercept_visible_.copy()
        sk.h_samples_ = self.h_samples_.copy()
        sk.n_features_in_ = self.n_features_in_
        return sk


class _NotFittedError(ValueError, AttributeError):
    """Same bases as sklearn.exceptions.NotFittedError (without importing scikit-learn)."""
