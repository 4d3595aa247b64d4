"""Compiled CPU kernels (numba) and their plumbing: the local RBM's fused passes, the estimator's
PCD-1 loop, the updater, a tied stage's fused normalise / sign-split / pool pass, the
counter-based random numbers and the thread-count guard."""
