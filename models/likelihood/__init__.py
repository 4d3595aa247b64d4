"""Likelihood estimates: exact enumeration for small models, annealed importance sampling (AIS)
and its bracket for large ones, pseudo-log-likelihood and the free-energy gap."""
