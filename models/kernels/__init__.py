"""Compiled CPU kernels (numba) and their plumbing: the local RBM's fused passes, the estimator's
PCD-1 loop, the updater, the counter-based random numbers and the thread-count guard."""
