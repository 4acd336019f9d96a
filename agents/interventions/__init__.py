"""Plasticity interventions other than sparsity: ReDo, Reset, weight decay.

The treatment classes live in :mod:`.redo`, :mod:`.reset` and :mod:`.weight_decay`; they are
registered by name in :mod:`agents.treatments`. :mod:`.optimizer_state` holds the Adam
state surgery that every weight-changing intervention (and the masks) share.
"""
