"""Regularized incomplete beta function I_x(a, b), written from its continued fraction.

APS (Quake, OSDI'25 §5) needs the volume of a hyperspherical cap, which has a closed form in
I_x(a, b).  scipy is not a core dependency, so this module evaluates the standard continued
fraction (Abramowitz & Stegun 26.5.8) with the modified Lentz method, using the symmetry
I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["CAP_FORMS", "CapTable", "betainc", "cap_fraction"]

_EPS: Final = 1e-14          # relative convergence of the continued fraction
_TINY: Final = 1e-300        # Lentz guard against zero denominators
_MAX_TERMS: Final = 10_000
TABLE_POINTS: Final = 1024   # §5: "precomputed at 1024 points and linearly interpolated"


def _contfrac(x: float, a: float, b: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"betainc continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    Raises
    ------
    ValueError
        ``a`` or ``b`` not positive, or ``x`` outside [0, 1].
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc: a={a}, b={b}: both must be > 0")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x}: must be in [0, 1]")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _contfrac(x, a, b) / a
    return 1.0 - front * _contfrac(1.0 - x, b, a) / b


CAP_FORMS: Final = ("geometry", "public-code")


def cap_fraction(h_over_r: float, d: int, form: str = "geometry") -> float:
    """Fraction of a d-ball's volume beyond a hyperplane at distance ``h_over_r`` radii.

    ``form="geometry"`` (default) is the textbook ``0.5 * I_{1-(h/r)^2}((d+1)/2, 1/2)`` for
    0 <= h < r, 0 beyond the ball.  ``form="public-code"`` uses ``x = sqrt(1-(h/r)^2)`` as
    marius-team/quake's ``geometry.h`` does (larger caps, so more scanning); see
    shared/research/quake_decdec_nanoflow.md §1.5.
    """
    if form not in CAP_FORMS:
        raise ValueError(f"cap_fraction: form={form!r}: must be one of {CAP_FORMS}")
    t = abs(h_over_r)
    if t >= 1.0:
        return 0.0
    x = 1.0 - t * t
    return 0.5 * betainc((d + 1) / 2.0, 0.5, math.sqrt(x) if form == "public-code" else x)


class CapTable:
    """``cap_fraction(t, d)`` tabulated on ``TABLE_POINTS`` points of t in [0, 1] (§5)."""

    def __init__(self, d: int, points: int = TABLE_POINTS, form: str = "geometry") -> None:
        self.t = np.linspace(0.0, 1.0, points)
        self.v = np.array([cap_fraction(float(t), d, form) for t in self.t])

    def __call__(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Interpolated cap fraction for ratios ``t = h / rho`` (any shape, >= 1 maps to 0)."""
        return np.interp(np.abs(t), self.t, self.v, right=0.0)
