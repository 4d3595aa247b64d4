"""The math of catneuron in pure torch: contrast normalisation, pooling, RBMs, stacks, likelihoods."""
