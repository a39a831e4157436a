"""Vendor formats: how each system writes dates, sexes, ages and identity variants (vectorised)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from ._population import EPOCH

DAY = 86_400


def ts_format(ts: NDArray[np.int64], pattern: str) -> pa.Array:
    """Format local times (seconds since 1970) with a strftime pattern."""
    return pc.strftime(pa.array(ts, pa.timestamp("s")), format=pattern)


def ts_unpadded(ts: NDArray[np.int64]) -> pa.Array:
    """``2024/3/12 8:31:00``: the LIS vendor's .NET zh-CN default, months, days and hours not zero-padded."""
    t = pa.array(ts, pa.timestamp("s"))
    parts = [pc.cast(f(t), pa.string()) for f in (pc.year, pc.month, pc.day, pc.hour)]
    date = pc.binary_join_element_wise(parts[0], parts[1], parts[2], "/")
    clock = pc.binary_join_element_wise(parts[3], pc.strftime(t, format="%M:%S"), ":")
    return pc.binary_join_element_wise(date, clock, " ")


def day_format(days: NDArray[np.int64], pattern: str) -> pa.Array:
    return ts_format(days.astype(np.int64) * DAY, pattern)


def age_years(birth_day: NDArray[np.int64], at_ts: NDArray[np.int64]) -> NDArray[np.int64]:
    b = birth_day.astype("datetime64[D]")
    a = (at_ts // DAY).astype("datetime64[D]")
    years = a.astype("datetime64[Y]").astype(np.int64) - b.astype("datetime64[Y]").astype(np.int64)
    had_birthday = (a - a.astype("datetime64[Y]")) >= (b - b.astype("datetime64[Y]"))
    return np.asarray(years - (~had_birthday), dtype=np.int64)


def sex_code(sex: NDArray[np.str_]) -> NDArray[np.str_]:
    """GB/T 2261.1 sex codes: 1 male, 2 female."""
    return np.where(sex == "M", "1", "2")


def sex_text(sex: NDArray[np.str_]) -> NDArray[np.str_]:
    return np.where(sex == "M", "男", "女")


def day_of(ts: int) -> str:
    return str(np.datetime64(ts // DAY, "D"))


__all__ = ["EPOCH", "age_years", "day_format", "day_of", "sex_code", "sex_text", "ts_format", "ts_unpadded"]
