"""The math of catneuron in pure torch: contrast normalisation, pooling, RBMs, stacks,
likelihoods."""

from models.layers import l2_pool, local_contrast_normalize
from models.local import LocalRBM
from models.optim import ParameterUpdater, UpdateConfig
from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
from models.stack import RBMStack, StackConfig, StageConfig

__all__ = [
    "BernoulliRBM",
    "GaussianBernoulliRBM",
    "LocalRBM",
    "ParameterUpdater",
    "RBMConfig",
    "RBMStack",
    "StackConfig",
    "StageConfig",
    "UpdateConfig",
    "l2_pool",
    "local_contrast_normalize",
]
