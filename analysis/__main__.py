"""``python -m analysis RESULTS_DIR ...``: the ``mtrl analyze`` command without the ``mtrl`` wrapper."""

from analysis.cli import main

raise SystemExit(main())
