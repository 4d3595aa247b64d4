"""The neuron gallery: static HTML pages of a run, built from its files alone.

- :mod:`jobs.gallery.build`: ``build_gallery(RUN)`` and the command line
  (``python -m jobs.gallery RUN``, ``catneuron gallery RUN``).
- :mod:`jobs.gallery.inputs`: what the gallery reads from the run folder, read defensively.
- :mod:`jobs.gallery.figures`: the figures and tables the pages show.
- :mod:`jobs.gallery.views`: images, curves and the dataset as page views.
- :mod:`jobs.gallery.plots`: the gallery's own curves and the response-histogram SVGs.
- ``templates/``: the jinja2 pages (autoescaped) and the stylesheet.
"""

from jobs.gallery.build import build_gallery, main

__all__ = ["build_gallery", "main"]
