"""Helpers shared by the test suite (and the benches that reuse them): importable as ``testkit``.

``tests/`` is on ``sys.path`` for the tests (``pythonpath`` in pyproject.toml); a bench script or a
subprocess that needs a helper puts ``tests/`` on ``PYTHONPATH`` (see :mod:`testkit.faults`).

* :mod:`.spec` -- the tiny sweep spec the orchestrator and integration tests start from;
* :mod:`.sweep` -- sweep-file fixtures and repository paths for the orchestrator's unit tests;
* :mod:`.ray` -- tiny sweeps on real Ray, Parquet checks, process clean-up;
* :mod:`.agents` -- small agents and synthetic rollouts for the treatment and metric tests;
* :mod:`.plugins` -- the example plugin package under ``tests/plugins/``;
* :mod:`.slurm` -- a real single-node SLURM in a temporary folder;
* :mod:`.faults` -- fault injection through the trial hook;
* :mod:`.forked` -- the real ``mtrl`` command run once per case in forked children (one import);
* :mod:`.synthetic` -- synthetic results folders in the trials' exact Parquet layout;
* :mod:`.fast_obs_check` -- the fast observation path compared with MiniGrid's, step by step.
"""
