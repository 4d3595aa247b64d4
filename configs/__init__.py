"""The job configs catneuron ships: ``demo`` (the embedded corpus, minutes on a laptop) and
``le2012`` (Le et al. 2012's geometry). ``--config demo`` names one; they are package data, so an
installed catneuron finds them (:func:`jobs.config.shipped_config`)."""
