"""The scikit-learn-convention estimator, side by side with sklearn.neural_network.BernoulliRBM."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import BernoulliRBM as SkRBM
from threadpoolctl import threadpool_limits

from models import BernoulliRBMEstimator
from models.kernels import counter_rng
from models.kernels import estimator as estimator_kernels
from models.likelihood.estimates import pseudo_log_likelihood
from models.rbm.fit_step import CompiledPCD1, ComputeApply, TorchPCD1


@pytest.fixture(scope="module")
def digits():
    """sklearn's bundled digits in [0, 1]; 1500 train rows (a multiple of 10) and 297 test."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    perm = np.random.RandomState(0).permutation(len(X))
    X, y = X[perm], y[perm]
    return X[:1500], y[:1500], X[1500:], y[1500:]


def small_X(n=40, d=12, seed=0, dtype=np.float64):
    return (np.random.RandomState(seed).rand(n, d) > 0.6).astype(dtype)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_fit_equals_repeated_partial_fit(backend):
    X = small_X(47)  # 47 rows: the last batch of 10 is short
    hp = dict(batch_size=10, n_iter=3, random_state=4, backend=backend)
    fit = BernoulliRBMEstimator(8, **hp).fit(X)
    compiled = backend == "auto" and estimator_kernels.HAVE_NUMBA
    assert isinstance(fit.fit_step_, CompiledPCD1 if compiled else TorchPCD1)
    part = BernoulliRBMEstimator(8, **hp)
    for _ in range(3):
        for start in range(0, 47, 10):
            part.partial_fit(X[start : start + 10])
    np.testing.assert_array_equal(fit.components_, part.components_)
    np.testing.assert_array_equal(fit.intercept_hidden_, part.intercept_hidden_)
    np.testing.assert_array_equal(fit.intercept_visible_, part.intercept_visible_)
    np.testing.assert_array_equal(fit.h_samples_, part.h_samples_)
    assert not np.array_equal(
        fit.components_,
        BernoulliRBMEstimator(8, **{**hp, "random_state": 5}).fit(X).components_,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_pcd1_equals_compute_update_plus_apply_update(dtype):
    """The estimator's fused momentum-free PCD-1 step = the core's general CD step."""
    X = small_X(47, dtype=dtype)  # short last batch: data and chain rows differ in number
    hp = dict(batch_size=10, n_iter=3, random_state=4, backend="torch")
    fused = BernoulliRBMEstimator(8, **hp).fit(X)
    ref = BernoulliRBMEstimator(8, **hp)
    ref._init(X.shape[1], X.dtype)
    v = ref._to_torch(X)
    for _ in range(3):
        for start in range(0, 47, 10):
            ref.rbm_.apply_update(ref.rbm_.compute_update(v[start : start + 10]))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for name in ("components_", "intercept_hidden_", "intercept_visible_"):
        np.testing.assert_allclose(getattr(fused, name), getattr(ref, name), **tol)
    np.testing.assert_array_equal(fused.h_samples_, ref.h_samples_)
    assert fused.rbm_.n_updates == ref.rbm_.n_updates == 15


@pytest.mark.parametrize(
    "hp,rows,strategy",
    [
        (dict(), 10, CompiledPCD1 if estimator_kernels.HAVE_NUMBA else TorchPCD1),
        (dict(backend="torch"), 10, TorchPCD1),
        (dict(), 4000, TorchPCD1),  # 4000 x 12 x 100 multiply-adds: GEMM-bound, torch's GEMMs
        (dict(momentum=0.5), 10, ComputeApply),
        (dict(k=2), 10, ComputeApply),
    ],
)
def test_strategy_is_chosen_once_per_batch_size(hp, rows, strategy):
    est = BernoulliRBMEstimator(100, batch_size=rows, random_state=0, **hp)
    X = small_X(rows)
    est.partial_fit(X)
    first = est.fit_step_
    assert isinstance(first, strategy)
    est.partial_fit(X)
    assert est.fit_step_ is first  # the same batch size keeps the strategy and its buffers
    est.partial_fit(X[:3])
    assert est.fit_step_ is not first  # another batch size chooses again
    assert est.rbm_.n_updates == 3


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _uniforms(key, n):
    """The counter-based stream ``key``'s first n numbers (what the compiled loop draws)."""
    u = np.empty(n, np.float32)
    counter_rng.fill_uniform(u, np.int64(key))
    return u.astype(np.float64)


@pytest.mark.skipif(not estimator_kernels.HAVE_NUMBA, reason="numba not installed")
def test_compiled_pcd1_loop_equals_numpy_reference():
    """models.kernels.estimator.pcd1_batches (float64) = a plain numpy PCD-1 with the same
    uniforms."""
    rng = np.random.RandomState(0)
    X = (rng.rand(47, 12) > 0.6).astype(np.float64)
    starts = np.array([0, 10, 20, 30, 40, 47])  # short last batch
    W0 = rng.randn(8, 12) * 0.3
    b0, c0 = rng.randn(12) * 0.1, rng.randn(8) * 0.1
    chain0 = (rng.rand(10, 8) > 0.5).astype(np.float64)
    keys = rng.randint(0, 2**62, size=2 * (len(starts) - 1)).astype(np.int64)
    W, b, c, chain = W0.copy(), b0.copy(), c0.copy(), chain0.copy()
    estimator_kernels.pcd1_batches(X, starts, W, b, c, chain, 0.05, keys)
    rW, rb, rc, rh = W0.copy(), b0.copy(), c0.copy(), chain0.copy()
    nk, (nh, nv) = rh.shape[0], rW.shape
    for i in range(len(starts) - 1):
        v0 = X[starts[i]:starts[i + 1]]
        p0 = _sigmoid(v0 @ rW.T + rc)
        vk = (_uniforms(keys[2 * i], nk * nv).reshape(nk, nv) < _sigmoid(rh @ rW + rb)) * 1.0
        pk = _sigmoid(vk @ rW.T + rc)
        rh = (_uniforms(keys[2 * i + 1], nk * nh).reshape(nk, nh) < pk) * 1.0
        rW += 0.05 * (p0.T @ v0 / len(v0) - pk.T @ vk / nk)
        rb += 0.05 * (v0.mean(0) - vk.mean(0))
        rc += 0.05 * (p0.mean(0) - pk.mean(0))
    np.testing.assert_array_equal(chain, rh)
    for got, want in ((W, rW), (b, rb), (c, rc)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    assert not np.allclose(W, W0)


def test_inputs_not_modified():
    X = small_X()
    X_copy = X.copy()
    est = BernoulliRBMEstimator(6, n_iter=2, random_state=0).fit(X)
    est.partial_fit(X)
    est.transform(X)
    est.score_samples(X)
    est.gibbs(X)
    est.free_energy(X)
    np.testing.assert_array_equal(X, X_copy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    X = small_X(dtype=dtype)
    est = BernoulliRBMEstimator(6, n_iter=2, random_state=0).fit(X)
    assert est.components_.dtype == dtype
    assert est.transform(X).dtype == dtype
    assert est.gibbs(X).dtype == dtype
    assert est.transform(X).shape == (40, 6)
    ints = BernoulliRBMEstimator(6, n_iter=1, random_state=0).fit(X.astype(np.int64))
    assert ints.components_.dtype == np.float64


def test_unfitted_and_bad_input_errors():
    est = BernoulliRBMEstimator(4)
    with pytest.raises(ValueError, match="not fitted"):
        est.transform(small_X())
    with pytest.raises(ValueError, match="2-D"):
        est.fit(np.zeros(5))
    bad = small_X()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad)
    est.fit(small_X())
    with pytest.raises(ValueError, match="features"):
        est.transform(np.zeros((3, 5)))
    assert est.get_params()["n_components"] == 4
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(n_hidden=3)


def test_conversion_both_ways_agrees_with_sklearn(digits):
    Xtr, _, Xte, _ = digits
    sk = SkRBM(n_components=32, learning_rate=0.05, n_iter=2, random_state=0).fit(Xtr)
    ours = BernoulliRBMEstimator.from_sklearn(sk)
    np.testing.assert_allclose(ours.transform(Xte), sk.transform(Xte), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.free_energy(Xte), sk._free_energy(Xte), rtol=1e-10)
    # sklearn's score_samples flips one random unit per sample (seeded by random_state) and
    # multiplies by n_features; our per-unit exact terms reproduce it at the same units
    rng = np.random.RandomState(sk.random_state)
    units = rng.randint(0, Xte.shape[1], Xte.shape[0])
    per_unit = pseudo_log_likelihood(ours.rbm_, ours._to_torch(Xte), per_unit=True).numpy()
    Xb = (Xte > 0.5).astype(np.float64)  # sklearn's score_samples assumes binary inputs
    per_unit_b = pseudo_log_likelihood(ours.rbm_, ours._to_torch(Xb), per_unit=True).numpy()
    expected = Xte.shape[1] * per_unit_b[np.arange(len(Xb)), units]
    np.testing.assert_allclose(sk.score_samples(Xb), expected, rtol=1e-8)
    assert per_unit.shape == Xte.shape
    back = ours.to_sklearn()
    for name in ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sk, name))
    np.testing.assert_allclose(back.transform(Xte), sk.transform(Xte))
    # our fitted model -> sklearn -> same conditionals and free energies
    ours2 = BernoulliRBMEstimator(16, n_iter=1, random_state=1).fit(Xtr)
    sk2 = ours2.to_sklearn()
    np.testing.assert_allclose(sk2.transform(Xte), ours2.transform(Xte), rtol=1e-10)
    np.testing.assert_allclose(sk2._free_energy(Xte), ours2.free_energy(Xte), rtol=1e-10)
    # gibbs: the same P(v|h): sklearn samples v = (u < P(v|h)) with u from its rng
    h = (sk2.transform(Xte[:50]) > 0.5).astype(np.float64)
    p_ours = ours2.rbm_.mean_visibles(ours2._to_torch(h)).numpy()
    u = np.random.RandomState(3).uniform(size=p_ours.shape)
    np.testing.assert_array_equal(sk2._sample_visibles(h, np.random.RandomState(3)), u < p_ours)


def logistic_accuracy(model, Xtr, ytr, Xte, yte) -> float:
    """Test accuracy of the sklearn example's logistic regression on the model's features.

    One BLAS/OpenMP thread: with torch's and numba's OpenMP pools loaded in the same process,
    lbfgs's small matrix products on more threads take about 50 times longer on 2 cores.
    """
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # lbfgs convergence chatter at C=6000
        clf = LogisticRegression(C=6000, max_iter=500).fit(model.transform(Xtr), ytr)
    return float(clf.score(model.transform(Xte), yte))


@pytest.mark.slow
def test_side_by_side_with_sklearn_on_digits(digits):
    """Same hyperparameters (the sklearn example's), same epochs, batch 10 dividing 1500 rows.

    Both run PCD-1 with plain SGD, so at equal settings the two differ only by random streams
    (and BLAS threads' rounding): we compare means over 4 seeds and require the example's ~0.93
    level for both. The accuracy's seed-to-seed standard deviation is about 0.007 for either
    (8 seeds each, with 1 and 2 BLAS threads), so the difference of two 4-seed means has a
    standard error of about 0.005: the test allows 3 of them (0.015), and PLL 0.3 nats.
    """
    Xtr, ytr, Xte, yte = digits
    hp = dict(n_components=100, learning_rate=0.06, batch_size=10, n_iter=10)
    pll_sk, pll_ours, acc_sk, acc_ours = [], [], [], []
    for seed in range(4):
        sk = SkRBM(random_state=seed, **hp).fit(Xtr)
        ours = BernoulliRBMEstimator(random_state=seed, **hp).fit(Xtr)
        pll_sk.append(BernoulliRBMEstimator.from_sklearn(sk).score_samples(Xte).mean())
        pll_ours.append(ours.score_samples(Xte).mean())
        acc_sk.append(logistic_accuracy(sk, Xtr, ytr, Xte, yte))
        acc_ours.append(logistic_accuracy(ours, Xtr, ytr, Xte, yte))
    assert np.mean(pll_ours) >= np.mean(pll_sk) - 0.3, (pll_ours, pll_sk)
    assert np.mean(acc_ours) >= np.mean(acc_sk) - 0.015, (acc_ours, acc_sk)
    assert min(acc_ours) > 0.93


@pytest.mark.slow
def test_any_batch_split_is_weighted_correctly(digits):
    """batch_size=1499 on 1500 rows: a 1-row last batch against 1499 fantasy chains.

    scikit-learn divides the negative statistics of all 1499 chains by 1 there, which drives
    every hidden unit off; ours averages each phase over its own rows and trains normally.
    """
    Xtr, ytr, Xte, yte = digits
    hp = dict(n_components=100, learning_rate=0.06, batch_size=1499, n_iter=20)
    sk = SkRBM(random_state=0, **hp).fit(Xtr)
    ours = BernoulliRBMEstimator(random_state=0, **hp).fit(Xtr)
    assert sk.transform(Xtr).mean() < 0.01  # the scikit-learn failure this guards against
    h = ours.transform(Xtr)
    assert 0.1 < h.mean() < 0.9
    assert logistic_accuracy(ours, Xtr, ytr, Xte, yte) > 0.9
