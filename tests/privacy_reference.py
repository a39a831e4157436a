"""A plain-Python reference for the privacy stage's claims, written from the definitions and nothing else.

Rows are dicts, classes are dicts of lists, loss is a Fraction: slow, obvious, and independent of the
vectorised code it checks. Tests compare the lattice search, the measures and the risks against it.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from medspace.privacy import (
    DistinctLDiversity,
    EntropyLDiversity,
    Hierarchy,
    KAnonymity,
    RecursiveCLDiversity,
    TCloseness,
)

Row = dict[str, Any]


def generalise(
    rows: Sequence[Row], hierarchies: Sequence[Hierarchy], levels: Sequence[int]
) -> list[tuple[str, ...]]:
    """The generalised quasi-identifier tuple of every row."""
    pairs = list(zip(hierarchies, levels, strict=True))
    return [tuple(h.generalise(str(r[h.column]), lv) for h, lv in pairs) for r in rows]


def class_failures(
    rows: Sequence[Row], keys: Sequence[tuple[str, ...]], models: Sequence[Any], sensitive: Sequence[str]
) -> set[tuple[str, ...]]:
    """Classes that must be suppressed for the rest of the table to satisfy every model."""
    members: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    failing: set[tuple[str, ...]] = set()
    for key, idx in members.items():
        for m in models:
            if isinstance(m, KAnonymity) and len(idx) < m.k:
                failing.add(key)
        for s in sensitive:
            counts = Counter(rows[i][s] for i in idx)
            for m in models:
                if isinstance(m, DistinctLDiversity) and len(counts) < m.l:
                    failing.add(key)
                if isinstance(m, EntropyLDiversity):
                    n = len(idx)
                    entropy = -sum(c / n * math.log(c / n) for c in counts.values())
                    if math.exp(entropy) < m.l - 1e-9:
                        failing.add(key)
                if isinstance(m, RecursiveCLDiversity):
                    r = sorted(counts.values(), reverse=True)
                    if not r[0] < m.c * sum(r[m.l - 1 :]):
                        failing.add(key)
    for m in models:
        if not isinstance(m, TCloseness):
            continue
        for s in sensitive:
            while True:
                kept = [i for key, idx in members.items() if key not in failing for i in idx]
                if not kept:
                    break
                newly = {
                    key
                    for key, idx in members.items()
                    if key not in failing and distance(rows, idx, kept, s, m) > m.t + 1e-9
                }
                if not newly:
                    break
                failing |= newly
    return failing


def distance(rows: Sequence[Row], idx: Sequence[int], kept: Sequence[int], s: str, model: Any) -> float:
    """EMD between a class and the kept rows: ordered for numbers (under auto), equal distance otherwise."""
    values = sorted({rows[i][s] for i in kept})
    whole = Counter(rows[i][s] for i in kept)
    part = Counter(rows[i][s] for i in idx)
    p = [part[v] / len(idx) for v in values]
    q = [whole[v] / len(kept) for v in values]
    numeric = isinstance(values[0], int | float)
    if model.distance == "ordered" or (model.distance == "auto" and numeric):
        if len(values) < 2:
            return 0.0
        cumulative = itertools.accumulate(a - b for a, b in zip(p, q, strict=True))
        return sum(abs(c) for c in cumulative) / (len(values) - 1)
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True))


def loss(
    rows: Sequence[Row], hierarchies: Sequence[Hierarchy], levels: Sequence[int], suppressed: set[int]
) -> Fraction:
    """ARX's loss: per cell, (leaves under the generalised value - 1) / (leaves - 1); suppressed cells 1."""
    total = Fraction(0)
    for h, lv in zip(hierarchies, levels, strict=True):
        under = Counter(row[lv] for row in h.rows)
        for i, r in enumerate(rows):
            if i in suppressed:
                total += 1
            elif len(h.rows) > 1:
                total += Fraction(under[h.generalise(str(r[h.column]), lv)] - 1, len(h.rows) - 1)
    return total / (len(rows) * len(hierarchies))


def brute_force_optimum(
    rows: Sequence[Row],
    hierarchies: Sequence[Hierarchy],
    models: Sequence[Any],
    sensitive: Sequence[str],
    suppression_limit: float,
) -> tuple[tuple[int, ...], Fraction, int] | None:
    """Check every transformation; return the best (levels, loss, suppressed rows) by the search's order."""
    best: tuple[tuple[Fraction, int, tuple[int, ...]], int] | None = None
    for levels in itertools.product(*(range(h.height) for h in hierarchies)):
        keys = generalise(rows, hierarchies, levels)
        failing = class_failures(rows, keys, models, sensitive)
        suppressed = {i for i, key in enumerate(keys) if key in failing}
        if len(suppressed) > int(suppression_limit * len(rows)):
            continue
        order = (loss(rows, hierarchies, levels, suppressed), sum(levels), tuple(levels))
        if best is None or order < best[0]:
            best = (order, len(suppressed))
    if best is None:
        return None
    return best[0][2], best[0][0], best[1]


def risks(
    release_keys: Sequence[tuple[str, ...]], population_keys: Sequence[tuple[str, ...]], threshold: float
) -> dict[str, float]:
    """Prosecutor, journalist and marketer risk record by record."""
    f = Counter(release_keys)
    big_f = Counter(population_keys)
    n = len(release_keys)
    per_record = [1 / f[k] for k in release_keys]
    return {
        "prosecutor_highest": max(per_record),
        "prosecutor_average": sum(per_record) / n,
        "records_at_risk": sum(1 for r in per_record if r > threshold) / n,
        "journalist_highest": max(1 / big_f[k] for k in release_keys),
        "marketer": sum(1 / big_f[k] for k in release_keys) / n,
    }
