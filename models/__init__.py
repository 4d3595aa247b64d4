"""The math of catneuron in pure torch: contrast normalisation, pooling, RBMs, stacks,
likelihoods.

Importing the package keeps freed memory for reuse in this process
(:func:`models.kernels.allocator.keep_freed_memory`; ``CATNEURON_MALLOC=default`` to opt out).
"""

from models.competitive.spherical_kmeans import SphericalKMeans
from models.competitive.whitening import Whitening
from models.kernels.allocator import keep_freed_memory
from models.layers import l2_pool, local_contrast_normalize
from models.likelihood.estimates import (
    ais_betas,
    free_energy_gap,
    log_likelihood,
    log_partition_ais,
    log_partition_exact,
    pseudo_log_likelihood,
)
from models.pooling import pool, pool_over_sizes, pyramid
from models.rbm.conv import ConvRBM
from models.rbm.dense import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
from models.rbm.estimator import BernoulliRBMEstimator
from models.rbm.local import LocalRBM
from models.rbm.optim import ParameterUpdater, UpdateConfig
from models.rbm.softmax import SoftmaxRBM
from models.stack import RBMStack, StackConfig, StageConfig

keep_freed_memory()

__all__ = [
    "BernoulliRBM",
    "BernoulliRBMEstimator",
    "ConvRBM",
    "GaussianBernoulliRBM",
    "LocalRBM",
    "ParameterUpdater",
    "RBMConfig",
    "RBMStack",
    "SoftmaxRBM",
    "SphericalKMeans",
    "StackConfig",
    "StageConfig",
    "UpdateConfig",
    "Whitening",
    "ais_betas",
    "free_energy_gap",
    "log_likelihood",
    "log_partition_ais",
    "log_partition_exact",
    "pseudo_log_likelihood",
    "l2_pool",
    "pool",
    "pool_over_sizes",
    "pyramid",
    "local_contrast_normalize",
]
