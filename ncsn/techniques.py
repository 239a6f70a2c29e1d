"""NCSNv2's recipes for the noise schedule and the sampling step (Song & Ermon 2020, "Improved techniques for
training score-based generative models", arXiv 2006.09011; docs/algorithms.md §4).

* technique 1 -- sigma_1 = the largest Euclidean distance between two training examples
  (:func:`max_pairwise_distance`, exact, in blocks);
* technique 2 -- a geometric schedule whose ratio gamma satisfies
  Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = 0.5 (:func:`geometric_ratio`), and the
  number of levels L that reaches sigma_L from sigma_1 with ratios no larger than gamma (:func:`num_levels`);
* technique 4 -- for a chosen T, the step epsilon (``step_lr``) that brings the variance ratio of the paper's
  eq. (6) closest to 1 (:func:`langevin_step_size`).

Distances and noise levels are in the units of the data the network sees ([0,1]-scaled spectrograms).
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, Optional, Union

import numpy as np
from scipy import optimize, stats

ArrayBlocks = Union[np.ndarray, Iterable[np.ndarray]]


# -------------------------------------------------------------------------------------------------- technique 1

def _rows(array) -> np.ndarray:
    """(n, ...) -> (n, D) float64 (one flattened example per row)."""
    array = np.asarray(array)
    if array.ndim == 0:
        raise ValueError("expected a batch of examples, got a scalar")
    return array.reshape(array.shape[0], -1).astype(np.float64)


def _reblock(batches: Iterable[np.ndarray], block_size: int) -> Iterator[np.ndarray]:
    """Regroup batches of examples (any sizes) into float64 blocks of ``block_size`` rows (the last may be smaller)."""
    pending, count = [], 0
    for batch in batches:
        rows = _rows(batch)
        while rows.shape[0]:
            take = min(block_size - count, rows.shape[0])
            pending.append(rows[:take])
            count += take
            rows = rows[take:]
            if count == block_size:
                yield np.concatenate(pending)
                pending, count = [], 0
    if count:
        yield np.concatenate(pending)


def _block_max_squared_distance(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray) -> float:
    """max over rows i of a, j of b of ||a_i - b_j||^2 = ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j (float64, clamped at 0)."""
    squared = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return float(max(np.max(squared), 0.0))


def max_pairwise_distance(data: ArrayBlocks, block_size: int = 1024, progress: bool = False,
                          description: str = "sigma_1: blocks", n_examples: Optional[int] = None) -> float:
    """The largest Euclidean distance between two examples of a dataset, exactly, in bounded memory (technique 1).

    The squared distances of every pair of blocks of ``block_size`` examples are computed as
    ||a||^2 + ||b||^2 - 2 a.b in float64 and clamped at 0, so memory holds two blocks and one
    (block_size x block_size) matrix, never the N x N one.

    Args:
        data: either an array (N, ...) of examples (each flattened), or a *re-iterable* collection of batches
            (a ``tf.data.Dataset`` of numpy-convertible batches, a list of arrays, ...), batches of any size. A
            re-iterable is read once per block (N / block_size passes), so only two blocks are ever in memory. A
            one-shot iterator (a generator) is read once into memory.
        block_size: examples per block.
        progress: show a tqdm progress bar over block pairs.
        description: the bar's label.
        n_examples: the number of examples if known (sizes the bar of a re-iterable from the start).
    Returns:
        the maximum distance (data units), 0.0 for fewer than two examples.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    if not isinstance(data, np.ndarray) and hasattr(data, "shape") and hasattr(data, "__array__"):
        data = np.asarray(data)  # a tf.Tensor of examples is an array, not a collection of batches
    if isinstance(data, np.ndarray):
        data = _rows(data)
        blocks_of = lambda: (data[i:i + block_size] for i in range(0, data.shape[0], block_size))  # noqa: E731
        n_blocks: Optional[int] = -(-data.shape[0] // block_size)
    else:
        if iter(data) is data:  # a one-shot iterator cannot be re-read: hold it in memory
            return max_pairwise_distance(np.concatenate([_rows(b) for b in data]), block_size, progress,
                                         description)
        blocks_of = lambda: _reblock(data, block_size)  # noqa: E731
        n_blocks = None if n_examples is None else -(-n_examples // block_size)  # else known after a first pass

    from tqdm import tqdm

    bar = tqdm(total=None if n_blocks is None else n_blocks * (n_blocks + 1) // 2, desc=description,
               unit="pair", disable=not progress)
    best = 0.0
    try:
        for i, a in enumerate(blocks_of()):
            a_sq = np.einsum("ij,ij->i", a, a)
            count = 0
            for j, b in enumerate(blocks_of()):
                count += 1
                if j < i:
                    continue
                b_sq = a_sq if j == i else np.einsum("ij,ij->i", b, b)
                best = max(best, _block_max_squared_distance(a, b, a_sq, b_sq))
                bar.update(1)
            if n_blocks != count:
                n_blocks = count
                bar.total = n_blocks * (n_blocks + 1) // 2
                bar.refresh()
    finally:
        bar.close()
    return math.sqrt(best)


# -------------------------------------------------------------------------------------------------- technique 2

def _overlap(gamma: float, dim: int) -> float:
    """Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma)."""
    root = math.sqrt(2.0 * dim) * (gamma - 1.0)
    return float(stats.norm.cdf(root + 3.0 * gamma) - stats.norm.cdf(root - 3.0 * gamma))


def geometric_ratio(dim: int, target: float = 0.5) -> float:
    """The ratio gamma = sigma_{i-1} / sigma_i of technique 2, the root gamma > 1 of

        Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = target  (0.5 in the paper),

    found with scipy.optimize.brentq. (For x ~ N(0, sigma_i^2 I) in D dimensions, ||x|| is about
    N(sqrt(D) sigma_i, sigma_i^2 / 2); this makes the typical shells of two neighbouring levels overlap enough.)

    Args:
        dim: D, the data dimension (96 * 64 = 6144 for a spectrogram).
        target: the overlap to reach.
    Returns:
        gamma > 1.
    Raises:
        ValueError: no root (D too small: for D <= 4, sqrt(2D) < 3 and the left side never falls to 0.5).
    """
    if dim < 1:
        raise ValueError(f"the data dimension must be at least 1, got {dim}")
    f = lambda gamma: _overlap(gamma, dim) - target  # noqa: E731
    low, high = 1.0, 1.0 + 1.0 / math.sqrt(dim)
    while f(high) > 0:
        low, high = high, 1.0 + 2.0 * (high - 1.0)
        if high > 1e6:
            raise ValueError(f"no geometric ratio solves technique 2's equation for D = {dim} (the overlap "
                             f"never falls to {target}); choose the schedule by hand")
    return float(optimize.brentq(f, low, high, xtol=1e-14, rtol=1e-14, maxiter=500))


def num_levels(sigma1: float, sigmaL: float, gamma: float) -> int:
    """L = ceil(log(sigma_1 / sigma_L) / log(gamma)) + 1: the fewest levels whose ratio is at most gamma."""
    if not 0.0 < sigmaL < sigma1:
        raise ValueError(f"need 0 < sigmaL < sigma1, got sigma1={sigma1}, sigmaL={sigmaL}")
    if gamma <= 1.0:
        raise ValueError(f"gamma must exceed 1, got {gamma}")
    quotient = math.log(sigma1 / sigmaL) / math.log(gamma)
    return int(math.ceil(quotient - 1e-9)) + 1  # a quotient off an integer by rounding only does not add a level


# -------------------------------------------------------------------------------------------------- technique 4

def variance_ratio(epsilon: float, sigmaL: float, gamma: float, n_steps_each: int) -> float:
    """The left side of NCSNv2's eq. (6), as printed in the paper (section 3.3, technique 4):

        (1 - eps/sigma_L^2)^(2T) * (gamma^2 - 2 eps / (sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2))
            + 2 eps / (sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2)

    It is s_T^2 / sigma_i^2: the variance after T Langevin steps of size eps sigma_i^2 / sigma_L^2 on N(0, sigma_i^2)
    started from N(0, gamma^2 sigma_i^2) (the previous level), relative to the target sigma_i^2 (the recurrence
    v <- (1 - eps/sigma_L^2)^2 v + 2 eps sigma_i^2 / sigma_L^2 summed in closed form; the same for every level).
    """
    r = epsilon / sigmaL ** 2
    stationary = 2.0 * epsilon / (sigmaL ** 2 - sigmaL ** 2 * (1.0 - r) ** 2)
    return float((1.0 - r) ** (2 * n_steps_each) * (gamma ** 2 - stationary) + stationary)


def langevin_step_size(sigmaL: float, gamma: float, n_steps_each: int) -> float:
    """The step epsilon (``step_lr``) of technique 4 for T = ``n_steps_each`` steps per level.

    What is solved: the paper asks for the eps that makes eq. (6) (:func:`variance_ratio`) "maximally close to 1".
    Writing r = eps / sigma_L^2, the ratio is (1 - r)^(2T) (gamma^2 - c) + c with c = 2 / (2 - r) > 1, so for
    0 < r < 1 it is always above 1 (the first term is the memory of the previous level, the second the
    discretisation bias) and "= 1" has no root. This function therefore *minimises* |ratio - 1| over
    0 < eps < sigma_L^2 (scipy.optimize.minimize_scalar, bounded, on log r); the residual ratio - 1 at the optimum
    (a few percent for T of 5-10) is what :func:`variance_ratio` returns minus 1.

    Args:
        sigmaL: the smallest noise level.
        gamma: the schedule's ratio sigma_{i-1} / sigma_i.
        n_steps_each: T.
    Returns:
        eps (squared data units); the step at level i is eps (sigma_i / sigma_L)^2.
    """
    if n_steps_each < 1:
        raise ValueError(f"T must be at least 1, got {n_steps_each}")
    if gamma <= 1.0:
        raise ValueError(f"gamma must exceed 1, got {gamma}")

    def distance(log_r: float) -> float:
        return abs(variance_ratio(math.exp(log_r) * sigmaL ** 2, sigmaL, gamma, n_steps_each) - 1.0)

    # |ratio - 1| is unimodal in r on (0, 1): a coarse grid brackets the minimum, the bounded search refines it
    grid = np.linspace(math.log(1e-12), math.log(1.0 - 1e-9), 2001)
    values = np.array([distance(v) for v in grid])
    k = int(np.argmin(values))
    low, high = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    result = optimize.minimize_scalar(distance, bounds=(low, high), method="bounded",
                                      options={"xatol": 1e-12, "maxiter": 500})
    best = result.x if result.fun <= values[k] else grid[k]
    return float(math.exp(best) * sigmaL ** 2)


def schedule_recipe(sigma1: float, sigmaL: float, dim: int, n_steps_each: int) -> dict:
    """Techniques 2 and 4 together: the config values for a geometric schedule from ``sigma1`` to ``sigmaL``.

    Returns:
        {"gamma": the ratio of technique 2, "num_classes": L, "ratio": the schedule's actual ratio
        (sigma_1 / sigma_L)^(1 / (L - 1)) <= gamma, "step_lr": eps of technique 4 for the actual ratio,
        "variance_ratio": eq. (6) at that eps, "T": n_steps_each}.
    """
    gamma = geometric_ratio(dim)
    levels = num_levels(sigma1, sigmaL, gamma)
    actual = (sigma1 / sigmaL) ** (1.0 / (levels - 1))
    epsilon = langevin_step_size(sigmaL, actual, n_steps_each)
    return {"gamma": gamma, "num_classes": levels, "ratio": actual, "step_lr": epsilon,
            "variance_ratio": variance_ratio(epsilon, sigmaL, actual, n_steps_each), "T": int(n_steps_each)}
