"""Hypothesis strategies for the wafer-scale mesh: mesh shapes and integer-valued operands
whose float32 products and sums are exact, so kernels can be compared with numpy by equality.
"""

from __future__ import annotations

from math import lcm

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

__all__ = ["gemm_operands", "int_matrix", "mesh_shapes"]

INT_RANGE = 4   # entries in [-4, 4]: |sum| stays far below 2**24 for the sizes used here


def mesh_shapes(min_side: int = 1, max_side: int = 6) -> st.SearchStrategy[tuple[int, int]]:
    """``(width, height)`` of small meshes: odd, even and non-square."""
    side = st.integers(min_side, max_side)
    return st.tuples(side, side)


def int_matrix(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """Integer-valued float32 array with entries in [-INT_RANGE, INT_RANGE]."""
    return rng.integers(-INT_RANGE, INT_RANGE + 1, shape).astype(np.float32)


@st.composite
def gemm_operands(draw: st.DrawFn, width: int, height: int, max_tile: int = 3
                  ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(A, B)`` for a W×H mesh: M = H·tm, K = lcm(W, H)·tk, N = W·tn."""
    tm, tk, tn = (draw(st.integers(1, max_tile)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = lcm(width, height) * tk
    return int_matrix(rng, (height * tm, k)), int_matrix(rng, (k, width * tn))
