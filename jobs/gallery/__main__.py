"""``python -m jobs.gallery RUN``: (re)build a run's gallery (:func:`jobs.gallery.build.main`)."""

import sys

from jobs.gallery.build import main

sys.exit(main())
