"""Re-identification risk of a released table, under the three attacker models of El Emam's framework.

- Prosecutor: the attacker knows the target is in the release; a record's risk is 1 / (size of its
  equivalence class in the release).
- Journalist: the attacker knows only that the target is in a wider population (the hospital's patients,
  say) that the release was drawn from; a record's risk is 1 / (size of its class in that population).
- Marketer: the attacker tries to re-identify as many records as possible; the risk is the expected share of
  records re-identified, the mean of f_j / F_j over records.

Without a separate population the release is its own population and journalist risk equals prosecutor risk,
which is the cautious assumption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from medspace.core import InputError

#: A record whose prosecutor risk exceeds this is "at risk"; 0.2 is 1/k for k = 5, the common floor.
DEFAULT_RISK_THRESHOLD = 0.2


@dataclass(frozen=True)
class ReidentificationRisk:
    """Risk figures for one release (all shares in [0, 1])."""

    prosecutor_highest: float
    prosecutor_average: float
    records_at_risk: float
    risk_threshold: float
    journalist_highest: float
    marketer: float


def reidentification_risk(
    class_sizes: NDArray[np.int64],
    population_sizes: NDArray[np.int64] | None = None,
    *,
    threshold: float = DEFAULT_RISK_THRESHOLD,
) -> ReidentificationRisk:
    """Risks from the sizes of the release's equivalence classes (and of the same classes in the population).

    Args:
        class_sizes: Rows in each equivalence class of the release (zeros are ignored).
        population_sizes: Rows of the population in the same classes, aligned with ``class_sizes``;
            ``None`` when the release is the whole population.
        threshold: Prosecutor risk above which a record counts as at risk.

    Returns:
        Highest and average prosecutor risk, the share of records at risk, highest journalist risk and
        marketer risk.

    Example:
        >>> r = reidentification_risk(np.array([1, 4, 5]))
        >>> r.prosecutor_highest, r.prosecutor_average, r.records_at_risk
        (1.0, 0.3, 0.5)
    """
    f = np.asarray(class_sizes, dtype=np.int64)
    population = f if population_sizes is None else np.asarray(population_sizes, dtype=np.int64)
    keep = f > 0
    f, population = f[keep], population[keep]
    if np.any(population < f):
        raise InputError("the population has fewer rows in a class than the release drawn from it")
    n = int(f.sum())
    if n == 0:
        return ReidentificationRisk(0.0, 0.0, 0.0, threshold, 0.0, 0.0)
    return ReidentificationRisk(
        prosecutor_highest=float(1 / f.min()),
        prosecutor_average=float(len(f) / n),
        records_at_risk=float(f[1 / f > threshold].sum() / n),
        risk_threshold=threshold,
        journalist_highest=float(1 / population.min()),
        marketer=float((f / population).sum() / n),
    )


def table_risk(
    table: pa.Table, columns: Sequence[str], *, threshold: float = DEFAULT_RISK_THRESHOLD
) -> ReidentificationRisk:
    """Risk of a table as it stands, with ``columns`` as the quasi-identifiers (no generalisation).

    Example:
        >>> t = pa.table({"sex": ["M", "M", "F"], "age": [40, 40, 41]})
        >>> table_risk(t, ["sex", "age"]).prosecutor_highest
        1.0
    """
    if not columns or table.num_rows == 0:
        return reidentification_risk(np.array([table.num_rows]), threshold=threshold)
    counts = table.select(list(columns)).group_by(list(columns)).aggregate([([], "count_all")])
    return reidentification_risk(counts.column("count_all").to_numpy().astype(np.int64), threshold=threshold)
