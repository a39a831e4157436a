"""Privacy models a released table must satisfy, as data, and how each one judges equivalence classes.

An equivalence class is the set of rows that share every generalised quasi-identifier. k-anonymity asks
every class to hold at least k rows (Sweeney 2002); l-diversity asks each class to hold a varied sensitive
attribute, counted three ways (Machanavajjhala et al. 2007): distinct values, entropy, or recursive (c, l);
t-closeness asks each class's distribution of the sensitive attribute to lie within t of the whole table's
(Li et al. 2007), by the Earth Mover's Distance with equal distance for categories and ordered distance for
numbers. l- and t-models apply to every sensitive attribute separately, as in ARX.

Definitions follow pycanon, the peer our tests measure against: entropy uses the natural logarithm and
t is measured against the distribution of the released table itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KAnonymity(_Model):
    """Every equivalence class holds at least ``k`` rows."""

    kind: Literal["k_anonymity"] = "k_anonymity"
    k: int = Field(ge=1)


class DistinctLDiversity(_Model):
    """Every class holds at least ``l`` distinct values of each sensitive attribute."""

    kind: Literal["distinct_l_diversity"] = "distinct_l_diversity"
    l: int = Field(ge=1)  # noqa: E741 - the standard's name


class EntropyLDiversity(_Model):
    """The entropy of each sensitive attribute within every class is at least ``log(l)``."""

    kind: Literal["entropy_l_diversity"] = "entropy_l_diversity"
    l: float = Field(ge=1)  # noqa: E741


class RecursiveCLDiversity(_Model):
    """In every class, the most frequent sensitive value occurs fewer than ``c`` times the count of all
    values from the ``l``-th most frequent on (r1 < c (r_l + ... + r_m))."""

    kind: Literal["recursive_cl_diversity"] = "recursive_cl_diversity"
    c: float = Field(gt=0)
    l: int = Field(ge=2)  # noqa: E741


class TCloseness(_Model):
    """Each class's distribution of every sensitive attribute is within ``t`` of the released table's.

    ``distance`` is ``equal`` (categories: half the total variation) or ``ordered`` (numbers: cumulative
    differences over the sorted distinct values, divided by their count less one); ``auto`` picks ordered for
    numeric columns.
    """

    kind: Literal["t_closeness"] = "t_closeness"
    t: float = Field(gt=0, le=1)
    distance: Literal["auto", "equal", "ordered"] = "auto"


PrivacyModel = Annotated[
    KAnonymity | DistinctLDiversity | EntropyLDiversity | RecursiveCLDiversity | TCloseness,
    Field(discriminator="kind"),
]

#: Models whose satisfaction survives generalisation even with suppression: merging classes never puts a
#: row that was in a satisfying class into a failing one. Entropy and recursive l-diversity and t-closeness
#: lose this once rows may be suppressed (a good class merged with a large bad one can fail), so the search
#: may only prune by these two.
MONOTONIC_WITH_SUPPRESSION = (KAnonymity, DistinctLDiversity)


# --- per-class measures over (class, sensitive value) counts ---


def class_sizes(
    class_of_row: NDArray[np.int64], counts: NDArray[np.int64], classes: int
) -> NDArray[np.int64]:
    """Rows per class."""
    return np.bincount(class_of_row, weights=counts, minlength=classes).astype(np.int64)


def sensitive_pairs(
    class_of_row: NDArray[np.int64], sensitive: NDArray[np.int64], counts: NDArray[np.int64], values: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Collapse rows to one per (class, sensitive value): the class, the value and the number of rows."""
    key = class_of_row * values + sensitive
    unique, inverse = np.unique(key, return_inverse=True)
    n = np.bincount(inverse, weights=counts).astype(np.int64)
    return unique // values, unique % values, n


def distinct_l(pair_class: NDArray[np.int64], classes: int) -> NDArray[np.int64]:
    """Distinct sensitive values per class."""
    return np.bincount(pair_class, minlength=classes).astype(np.int64)


def entropy_l(
    pair_class: NDArray[np.int64], pair_n: NDArray[np.int64], sizes: NDArray[np.int64]
) -> NDArray[np.float64]:
    """exp(entropy) of the sensitive values per class, natural logarithm (the largest l each class meets)."""
    # H = log(n) - sum(n_s log n_s) / n, which needs no per-class loop.
    weighted = np.bincount(pair_class, weights=pair_n * np.log(pair_n), minlength=len(sizes))
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(sizes > 0, np.log(np.maximum(sizes, 1)) - weighted / np.maximum(sizes, 1), 0.0)
    result: NDArray[np.float64] = np.exp(entropy)
    return result


def recursive_cl_holds(
    pair_class: NDArray[np.int64],
    pair_n: NDArray[np.int64],
    sizes: NDArray[np.int64],
    c: float,
    l: int,  # noqa: E741
) -> NDArray[np.bool_]:
    """Whether each class meets recursive (c, l)-diversity: r1 < c (r_l + ... + r_m), r sorted descending."""
    order = np.lexsort((-pair_n, pair_class))
    cls, n = pair_class[order], pair_n[order]
    first = np.r_[0, np.flatnonzero(np.diff(cls)) + 1]
    rank = np.arange(len(cls)) - np.repeat(first, np.diff(np.r_[first, len(cls)]))
    classes = len(sizes)
    r1 = np.zeros(classes, dtype=np.int64)
    r1[cls[first]] = n[first]
    head = np.bincount(cls[rank < l - 1], weights=n[rank < l - 1], minlength=classes)
    tail = sizes - head
    return r1 < c * tail


def equal_distance(
    pair_class: NDArray[np.int64],
    pair_value: NDArray[np.int64],
    pair_n: NDArray[np.int64],
    sizes: NDArray[np.int64],
    overall: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Equal-distance EMD of each class from ``overall``: half the sum of |p - q| over all values."""
    p = pair_n / sizes[pair_class]
    q = overall[pair_value]
    # Values absent from a class contribute q each; sum(|p - q|) = 1 + sum over present of (|p - q| - q).
    present = np.bincount(pair_class, weights=np.abs(p - q) - q, minlength=len(sizes))
    return 0.5 * (1.0 + present)


def ordered_distance(
    pair_class: NDArray[np.int64],
    pair_value: NDArray[np.int64],
    pair_n: NDArray[np.int64],
    sizes: NDArray[np.int64],
    overall: NDArray[np.float64],
    present_values: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Ordered-distance EMD: sum of |cumulative (p - q)| over the sorted values, over (m - 1)."""
    # Only values present in the released table count (pycanon, and Li et al.'s ordered distance).
    rank = np.cumsum(present_values) - 1
    m = int(present_values.sum())
    classes = len(sizes)
    result = np.zeros(classes)
    if m <= 1:
        return result
    q_cum = np.cumsum(overall[present_values])
    # Classes in blocks so the dense class x value matrix stays small.
    block = max(1, 4_000_000 // m)
    for start in range(0, classes, block):
        stop = min(classes, start + block)
        rows = (pair_class >= start) & (pair_class < stop)
        dense = np.zeros((stop - start, m))
        np.add.at(dense, (pair_class[rows] - start, rank[pair_value[rows]]), pair_n[rows])
        dense /= np.maximum(sizes[start:stop, None], 1)
        result[start:stop] = np.abs(np.cumsum(dense, axis=1) - q_cum).sum(axis=1) / (m - 1)
    return result


def closeness(
    pair_class: NDArray[np.int64],
    pair_value: NDArray[np.int64],
    pair_n: NDArray[np.int64],
    sizes: NDArray[np.int64],
    values: int,
    *,
    ordered: bool,
    kept: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """Each class's distance from the distribution of the kept (released) pairs (all pairs if None).

    ``ordered`` picks the ordered distance (numbers) over the equal distance (categories).
    """
    weights = pair_n if kept is None else np.where(kept, pair_n, 0)
    totals = np.bincount(pair_value, weights=weights, minlength=values)
    overall = totals / totals.sum()
    if ordered:
        return ordered_distance(pair_class, pair_value, pair_n, sizes, overall, totals > 0)
    return equal_distance(pair_class, pair_value, pair_n, sizes, overall)
