"""What ``catneuron evaluate`` and ``catneuron visualize`` write about a trained run.

- :mod:`jobs.report.evaluation`: the held-out selectivity report (``evaluation.json``).
- :mod:`jobs.report.visualization`: ``RUN/visualize/`` (units chosen, scanned, drawn).
- :mod:`jobs.report.unit_selection`: which units are shown, from the run or its evaluation.
- :mod:`jobs.report.unit_images`: a unit's pictures (weights, top frames, stimuli, invariance).
- :mod:`jobs.report.training_curves`: the curves of ``metrics.jsonl``.
- :mod:`jobs.report.plots`: every image and figure file (OpenCV PNGs, matplotlib Figure API).
"""
