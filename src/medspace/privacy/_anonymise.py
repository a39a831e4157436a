"""Anonymise one table: generalise its quasi-identifiers optimally, suppress what still fails, and measure.

This is the structured-data half of de-identification, after direct identifiers have been removed or
pseudonymised: the lattice search picks the hierarchy levels, the table is rewritten at those levels, rows of
failing equivalence classes are removed, and every figure a report shows (k, l, t achieved, the three risks,
information loss) is measured on the released rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from medspace.core import InputError, MedspaceError
from medspace.privacy._hierarchy import Hierarchy, leaf_strings
from medspace.privacy._lattice import Encoded, NodeResult, encode, search
from medspace.privacy._models import (
    PrivacyModel,
    closeness,
    distinct_l,
    entropy_l,
    sensitive_pairs,
)
from medspace.privacy._risk import DEFAULT_RISK_THRESHOLD, ReidentificationRisk, reidentification_risk


@dataclass(frozen=True)
class PrivacyMeasures:
    """What a released table achieves: k, and per sensitive attribute distinct l, entropy l and t.

    t uses the ordered distance for numeric attributes and the equal distance for others.
    """

    k: int
    distinct_l: dict[str, int]
    entropy_l: dict[str, float]
    t: dict[str, float]


@dataclass(frozen=True)
class Utility:
    """How much the release lost: ARX's loss (0 = unchanged, 1 = everything suppressed) and discernibility."""

    loss: float
    discernibility: int
    average_class_size: float


@dataclass(frozen=True)
class Anonymisation:
    """The released table and the evidence about it."""

    table: pa.Table
    levels: dict[str, int]
    hierarchy_heights: dict[str, int]
    rows_in: int
    rows_suppressed: int
    classes: int
    measures: PrivacyMeasures
    risk: ReidentificationRisk
    utility: Utility
    lattice_size: int
    nodes_checked: int


class NoSolutionError(MedspaceError, ValueError):
    """No transformation satisfies the privacy models within the suppression limit."""


def anonymise(
    table: pa.Table,
    hierarchies: Sequence[Hierarchy],
    models: Sequence[PrivacyModel],
    *,
    sensitive: Sequence[str] = (),
    suppression_limit: float = 0.0,
    population: pa.Table | None = None,
    risk_threshold: float = DEFAULT_RISK_THRESHOLD,
) -> Anonymisation:
    """Generalise ``table``'s quasi-identifiers to the least-loss levels that satisfy ``models``.

    Args:
        table: The rows to release; quasi-identifier columns are those of ``hierarchies``.
        hierarchies: One generalisation hierarchy per quasi-identifier, covering all its values.
        models: Privacy models to satisfy (k-anonymity, l-diversity, t-closeness).
        sensitive: Sensitive attributes the l- and t-models apply to.
        suppression_limit: Largest share of rows that may be removed.
        population: The wider population the table was drawn from, with the same quasi-identifier columns,
            for journalist and marketer risk; by default the table is its own population.
        risk_threshold: Prosecutor risk above which a record counts as at risk.

    Returns:
        The released table (quasi-identifiers generalised to strings, failing classes removed) with the
        levels chosen and the measures, risks and utility of the release.

    Raises:
        NoSolutionError: If no transformation satisfies the models within the suppression limit.
        InputError: If a column is missing or a value is outside its hierarchy.
        ConfigError: If the models or limit make no sense together.

    Example:
    >>> from medspace.privacy._hierarchy import BandsSpec, build_hierarchy
    >>> from medspace.privacy._models import KAnonymity
    >>> t = pa.table({"age": [31, 33, 36, 38, 52, 57], "dx": ["a", "b", "a", "c", "b", "b"]})
    >>> age = build_hierarchy(BandsSpec(widths=(5, 10)), "age", ["31", "33", "36", "38", "52", "57"])
    >>> result = anonymise(t, [age], [KAnonymity(k=2)])
    >>> result.levels, result.table.column("age").to_pylist()
    ({'age': 2}, ['30-39', '30-39', '30-39', '30-39', '50-59', '50-59'])
    """
    enc = encode(table, hierarchies, sensitive)
    found = search(enc, models, suppression_limit)
    if found.best is None:
        raise NoSolutionError(
            f"no generalisation of {', '.join(h.column for h in hierarchies)} satisfies the privacy models "
            f"while suppressing at most {suppression_limit:.1%} of rows; allow more suppression, add "
            "hierarchy levels or relax the models"
        )
    best = found.best
    kept_distinct = ~best.suppressed_class[best.class_of_row]
    kept_rows = kept_distinct[enc.row_of_input]
    released = table
    for h, leaves, level in zip(hierarchies, enc.leaves, best.levels, strict=True):
        index = released.column_names.index(h.column)
        released = released.set_column(index, h.column, h.lookup(leaves, level))
    released = released.filter(pa.array(kept_rows))
    sizes = np.bincount(best.class_of_row[kept_distinct], weights=enc.counts[kept_distinct]).astype(np.int64)
    sizes = sizes[sizes > 0]
    if population is None:
        risk = reidentification_risk(sizes, threshold=risk_threshold)
    else:
        release_sizes, population_sizes = _release_and_population_sizes(
            population, released, hierarchies, best.levels
        )
        risk = reidentification_risk(release_sizes, population_sizes, threshold=risk_threshold)
    return Anonymisation(
        table=released,
        levels={h.column: level for h, level in zip(hierarchies, best.levels, strict=True)},
        hierarchy_heights={h.column: h.height for h in hierarchies},
        rows_in=enc.rows,
        rows_suppressed=best.suppressed_rows,
        classes=len(sizes),
        measures=_measures(enc, best, kept_distinct),
        risk=risk,
        utility=Utility(
            loss=float(best.loss),
            discernibility=int((sizes.astype(object) ** 2).sum()) + best.suppressed_rows * enc.rows,
            average_class_size=float(sizes.mean()) if len(sizes) else 0.0,
        ),
        lattice_size=found.lattice_size,
        nodes_checked=found.nodes_checked,
    )


def _measures(enc: Encoded, best: NodeResult, kept: NDArray[np.bool_]) -> PrivacyMeasures:
    class_of_row = best.class_of_row[kept]
    counts = enc.counts[kept]
    if not len(counts):
        return PrivacyMeasures(0, {}, {}, {})
    _, dense = np.unique(class_of_row, return_inverse=True)
    dense = dense.astype(np.int64)
    sizes = np.bincount(dense, weights=counts).astype(np.int64)
    distinct: dict[str, int] = {}
    entropy: dict[str, float] = {}
    t: dict[str, float] = {}
    for s in enc.sensitive:
        pair_class, pair_value, pair_n = sensitive_pairs(dense, s.codes[kept], counts, s.values)
        distinct[s.column] = int(distinct_l(pair_class, len(sizes)).min())
        entropy[s.column] = float(entropy_l(pair_class, pair_n, sizes).min())
        distance = closeness(pair_class, pair_value, pair_n, sizes, s.values, ordered=s.ordered)
        t[s.column] = float(distance.max())
    return PrivacyMeasures(int(sizes.min()), distinct, entropy, t)


def _release_and_population_sizes(
    population: pa.Table, released: pa.Table, hierarchies: Sequence[Hierarchy], levels: Sequence[int]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows of each released class in the release and in the population, aligned."""
    columns = [h.column for h in hierarchies]
    generalised = {
        h.column: h.lookup(_covered(h, population[h.column]), level)
        for h, level in zip(hierarchies, levels, strict=True)
    }
    counts = pa.table(generalised).group_by(columns).aggregate([([], "count_all")])
    release = released.select(columns).group_by(columns).aggregate([([], "count_all")])
    joined = release.join(counts, columns, join_type="left outer", right_suffix="_population")
    sample = joined.column("count_all").to_numpy().astype(np.int64)
    pop = pc.fill_null(joined.column("count_all_population"), 0).to_numpy().astype(np.int64)
    # A population that lacks some released rows cannot be smaller than the release itself.
    return sample, np.maximum(pop, sample)


def _covered(h: Hierarchy, values: pa.ChunkedArray | pa.Array) -> pa.Array:
    leaves = leaf_strings(values)
    missing = h.missing_leaves(pc.unique(leaves).to_pylist())
    if missing:
        raise InputError(
            f"{len(missing)} values of {h.column!r} in the population are not covered by its hierarchy",
            field=h.column,
        )
    return leaves
