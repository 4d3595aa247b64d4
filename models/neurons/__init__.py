"""What a unit responds to: its response through the stack, selectivity on a probe, baselines
and references (image statistics, filters, a template), the face-unit verdict, optimal
stimulus, invariance curves, projection of weights to pixels, and the top-k scan."""
