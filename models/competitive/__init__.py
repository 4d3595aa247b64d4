"""Competitive learners for a large top stage: input whitening and spherical k-means (the
reference the one-of-K RBM, ``models.rbm.softmax``, is measured against)."""
