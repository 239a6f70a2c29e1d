"""Normalising flows of the suite (Glow, RealNVP), their layers as TFP bijectors, and their training.

* :mod:`flow_models.bijectors`: ActNorm, InvertibleConv1x1, AffineCoupling, MaskedAffineCoupling, Squeeze,
  ConditionalGaussianSplit, LearnedGaussianPrior (forward = data -> latent).
* :mod:`flow_models.glow`: Glow, RealNVP, :func:`~flow_models.glow.build_flow`.
* :mod:`flow_models.training`: the bits-per-dimension loss and ``train_flow``.

Flow++ is not implemented.
"""
