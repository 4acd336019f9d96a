"""An example plugin: everything it adds is registered when this package is imported.

* treatment ``lab_prune`` (variant ``lab_prune80``): random pruning to a fixed sparsity at
  one step, counting ``weights_pruned``;
* architecture ``lab_wide``: MTPPO with a trunk twice as wide;
* benchmark ``LAB2``: the new task ``DoorKey-5x5-v0`` and the built-in ``Empty-5x5-v0``.
"""

from mtrl_lab_plugin import architectures, benchmarks, treatments  # noqa: F401  (they register)
