"""Noise levels of NCSN: sigma_1 > sigma_2 > ... > sigma_L, in the units of the data ([0,1]-scaled)."""
from __future__ import annotations

import numpy as np

PROGRESSIONS = ("geometric", "logarithmic", "linear")


def get_sigmas(sigma1: float, sigmaL: float, num_classes: int, progression: str = "geometric") -> np.ndarray:
    """The noise schedule, from ``sigma1`` down to ``sigmaL``.

    Args:
        sigma1: the largest noise standard deviation sigma_1 (data units, e.g. [0,1]-scaled dB).
        sigmaL: the smallest one sigma_L, with 0 < sigmaL < sigma1.
        num_classes: the number of levels L >= 1 (L = 1 gives [sigma1]).
        progression: ``"geometric"`` (constant ratio sigma_i / sigma_{i+1}; ``"logarithmic"`` is the seed's name
            for the same schedule, evenly spaced in log sigma) or ``"linear"`` (evenly spaced in sigma).
    Returns:
        (num_classes,) float32 numpy array, descending, first element sigma1, last sigmaL; computed in float64 and
        cast once (e.g. 1.0 -> 0.01 with L = 10: 1.0, 0.5995, 0.3594, ..., 0.0167, 0.01).
    Raises:
        ValueError: bad bounds, L < 1, or an unknown progression.
    """
    if not 0.0 < sigmaL < sigma1:
        raise ValueError(f"need 0 < sigmaL < sigma1, got sigma1={sigma1}, sigmaL={sigmaL}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
    if progression in ("geometric", "logarithmic"):
        sigmas = np.exp(np.linspace(np.log(float(sigma1)), np.log(float(sigmaL)), int(num_classes)))
    elif progression == "linear":
        sigmas = np.linspace(float(sigma1), float(sigmaL), int(num_classes))
    else:
        raise ValueError(f"unknown progression {progression!r}; use one of {', '.join(PROGRESSIONS)}")
    if num_classes > 1:
        sigmas[0], sigmas[-1] = sigma1, sigmaL  # exact endpoints (exp(log(.)) may be off by an ulp)
    return sigmas.astype(np.float32)


def sigmas_from_config(config) -> np.ndarray:
    """:func:`get_sigmas` with ``config.sigma1``, ``sigmaL``, ``num_classes`` and ``progression``."""
    return get_sigmas(config.sigma1, config.sigmaL, config.num_classes, config.progression)


def langevin_step_sizes(sigmas, step_lr: float) -> np.ndarray:
    """Step size of annealed Langevin dynamics per level: eta_i = step_lr * (sigma_i / sigma_L)^2.

    Args:
        sigmas: (L,) the schedule (descending).
        step_lr: delta, the step at the last level (squared data units).
    Returns:
        (L,) float32 numpy array (computed in float64).
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    return (float(step_lr) * (sigmas / sigmas[-1]) ** 2).astype(np.float32)
