"""Record numbers as hospital systems write them: fixed-width, zero-padded decimal strings."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def zero_padded(numbers: NDArray[np.int64], width: int) -> NDArray[np.str_]:
    """Whole numbers as decimal strings, zero-padded to at least ``width`` digits and never cut.

    ``np.char.zfill`` was rejected: NumPy 2.0 (which pycanon pins) truncates its result to ``width``, so
    1232 padded to 3 became "123" and distinct prescription numbers collided.

    Example:
        >>> zero_padded(np.array([7, 1232]), 3).tolist()
        ['007', '1232']
    """
    return np.char.mod(f"%0{width}d", np.asarray(numbers, dtype=np.int64))
