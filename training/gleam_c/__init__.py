"""GLEAM-C contrastive training: two phases, gathered-feature DDP, hard negatives, evaluation.

* :mod:`.params`: the YAML training config.
* :mod:`.distributed`: process-group setup for ``torchrun``.
* :mod:`.sampling`: hard-negative batch plans and the distributed batch sampler.
* :mod:`.scheduler`: cosine learning-rate schedule with warm-up.
* :mod:`.datasets`: adapters for the public datasets, a manifest and a synthetic source.
* :mod:`.train`: the training loop (``python -m training.gleam_c.train``).
* :mod:`.evaluate`: retrieval metrics (``python -m training.gleam_c.evaluate``).
"""
