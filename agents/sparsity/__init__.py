"""Sparsity for the treatments: schedules, layer distributions, masks, SET rewiring.

One idea per module, as in jaxpruner:

* :mod:`.schedule` -- the cubic gradual-pruning schedule (when, and to what sparsity);
* :mod:`.distribution` -- how a network's sparsity splits over layers (uniform, ERK, ER-epsilon);
* :mod:`.masks` -- the masks themselves, magnitude top-k rules, applying masks to weights
  and optimizer moments;
* :mod:`.rewiring` -- SET's drop-and-regrow update;
* :mod:`.masked`, :mod:`.gmp`, :mod:`.set` -- the treatments built from them (registered by
  name in :mod:`agents.treatments`).
"""
