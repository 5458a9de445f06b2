"""Two-dimensional toy densities with known symmetries, for checking equivariant flows.

Both are deterministic given ``seed`` (``np.random.default_rng(seed)``) and return float32
``(n, 2)`` arrays.
"""

from __future__ import annotations

import math

import numpy as np

from flows.data.dataset import DataError

__all__ = [
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "RINGS_NOISE_STD",
    "RINGS_RADII",
    "eight_gaussians",
    "eight_gaussians_log_prob",
    "rings",
    "rings_log_prob",
]

EIGHT_GAUSSIANS_RADIUS = 4.0
EIGHT_GAUSSIANS_STD = 0.5
RINGS_RADII = (1.0, 2.0, 3.0)
RINGS_NOISE_STD = 0.1


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"n={n!r} is not a valid sample count; n must be a positive integer")


def _eight_centers() -> np.ndarray:
    angles = np.arange(8) * (math.pi / 4)
    return EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def eight_gaussians(n: int, seed: int = 0) -> np.ndarray:
    r"""Samples the mixture of 8 Gaussians, whose density is invariant under the dihedral group D8.

    Equal-weight mixture of isotropic Gaussians with standard deviation 0.5, centred on the circle
    of radius 4 at angles :math:`k \pi / 4`, :math:`k = 0, \dots, 7`:

    .. math:: p(x) = \frac{1}{8} \sum_{k=0}^{7} \mathcal{N}(x; \mu_k, 0.5^2 I),
        \quad \mu_k = 4 (\cos k\pi/4, \sin k\pi/4)

    Rotations by multiples of 45° and reflections across the lines through the centres permute the
    components, so the density is exactly D8-invariant.

    References:
        Equivariant Finite Normalizing Flows (Bose et al., 2021), the 8-Gaussians experiment.

    Args:
        n: the number of samples, at least 1.
        seed: the seed of ``np.random.default_rng``.

    Returns:
        float32 ``(n, 2)`` samples.

    Example:
        >>> eight_gaussians(5, seed=1).shape
        (5, 2)
    """
    _check_count(n)
    rng = np.random.default_rng(seed)
    component = rng.integers(0, 8, size=n)
    noise = rng.normal(0.0, EIGHT_GAUSSIANS_STD, size=(n, 2))
    return (_eight_centers()[component] + noise).astype(np.float32)


def eight_gaussians_log_prob(x: np.ndarray) -> np.ndarray:
    """The exact log-density of :func:`eight_gaussians`, evaluated in float64.

    Args:
        x: points of shape ``(..., 2)``.

    Returns:
        float64 log-densities of shape ``x.shape[:-1]``.

    Raises:
        DataError: the last axis of ``x`` is not of size 2.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != 2:
        raise DataError(f"x has shape {x.shape}; eight_gaussians_log_prob needs (..., 2)")
    var = EIGHT_GAUSSIANS_STD**2
    squared = ((x[..., None, :] - _eight_centers()) ** 2).sum(axis=-1)
    log_components = -squared / (2 * var) - math.log(2 * math.pi * var) - math.log(8)
    # log-sum-exp, shifted by the max so far-away points do not underflow to log(0).
    top = log_components.max(axis=-1)
    return top + np.log(np.exp(log_components - top[..., None]).sum(axis=-1))


def rings(n: int, seed: int = 0) -> np.ndarray:
    """Samples three concentric noisy rings, a density invariant under all of O(2).

    A ring is chosen with probability proportional to its radius (1, 2 or 3), so that points are
    equally dense along every ring's circumference; the angle is uniform and the radius gets
    Gaussian noise of standard deviation 0.1; :func:`rings_log_prob` is its exact log-density.

    Args:
        n: the number of samples, at least 1.
        seed: the seed of ``np.random.default_rng``.

    Returns:
        float32 ``(n, 2)`` samples.

    Example:
        >>> rings(3).dtype
        dtype('float32')
    """
    _check_count(n)
    rng = np.random.default_rng(seed)
    radii = np.asarray(RINGS_RADII)
    ring = rng.choice(len(radii), size=n, p=radii / radii.sum())
    radius = radii[ring] + rng.normal(0.0, RINGS_NOISE_STD, size=n)
    angle = rng.uniform(0.0, 2 * math.pi, size=n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).astype(np.float32)


def rings_log_prob(x: np.ndarray) -> np.ndarray:
    r"""The exact log-density of :func:`rings`, evaluated in float64.

    The signed radius :math:`s = R_i + \epsilon` (ring i with probability
    :math:`w_i = R_i / \sum_j R_j`, :math:`\epsilon \sim N(0, \sigma^2)`) and the uniform angle
    are independent; a point at distance r comes from s = r or from s = -r (the opposite angle),
    and the polar area element is :math:`r\,dr\,d\theta`, so

    .. math:: p(x) = \frac{1}{2\pi r} \sum_i w_i
        [\mathcal N(r; R_i, \sigma^2) + \mathcal N(-r; R_i, \sigma^2)], \quad r = |x|.

    Args:
        x: points of shape ``(..., 2)`` (not at the origin, where the density is 0/0).

    Returns:
        float64 log-densities of shape ``x.shape[:-1]``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != 2:
        raise DataError(f"x has shape {x.shape}; rings_log_prob needs (..., 2)")
    radii = np.asarray(RINGS_RADII)
    r = np.sqrt((x**2).sum(axis=-1))[..., None]
    log_weights = np.log(radii / radii.sum())
    log_norm = -0.5 * math.log(2 * math.pi * RINGS_NOISE_STD**2)
    log_terms = np.concatenate(
        [
            log_weights + log_norm - (r - radii) ** 2 / (2 * RINGS_NOISE_STD**2),
            log_weights + log_norm - (r + radii) ** 2 / (2 * RINGS_NOISE_STD**2),
        ],
        axis=-1,
    )
    top = log_terms.max(axis=-1)
    mixture = top + np.log(np.exp(log_terms - top[..., None]).sum(axis=-1))
    return mixture - np.log(2 * math.pi * r[..., 0])
