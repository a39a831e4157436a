"""Optimal full-domain generalisation: the search over the lattice of hierarchy levels.

A transformation picks one level per quasi-identifier; together they form a lattice ordered by "every level
at least as coarse". The search finds the transformation of least information loss whose output, after
suppressing the equivalence classes that fail, satisfies every privacy model and suppresses no more than the
suppression limit.

The data is first collapsed to its distinct combinations of quasi-identifier and sensitive values with a
count each (the engine's group-by), and every level of every hierarchy becomes an integer code, so checking a
transformation is a handful of vectorised gathers and one bincount over the distinct rows, never strings.

The search is best-first branch and bound, in the spirit of ARX's Flash (Kohlmayer et al. 2012) and its
monotonic pruning: information loss can only grow when a cell is generalised further or suppressed, so the
loss a transformation would have without suppression is a lower bound on the loss of it and every coarser
transformation. Transformations are visited in order of that bound; the search stops as soon as the bound
exceeds the best loss found, which proves optimality. Where the privacy models are monotonic even with
suppression (k-anonymity, distinct l-diversity), a transformation below one that failed is known to fail
and is never checked. Flash's own traversal (binary search on paths) was not copied: it is optimal only
for monotonic metrics, and loss with suppression is not one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from medspace.core import ConfigError, InputError
from medspace.privacy._hierarchy import Hierarchy, leaf_strings
from medspace.privacy._models import (
    MONOTONIC_WITH_SUPPRESSION,
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    PrivacyModel,
    RecursiveCLDiversity,
    TCloseness,
    class_sizes,
    closeness,
    distinct_l,
    entropy_l,
    recursive_cl_holds,
    sensitive_pairs,
)

#: Lattices larger than this are refused: fewer quasi-identifiers or shallower hierarchies are needed.
MAX_LATTICE = 5_000_000
# Tolerance for float thresholds (entropy, t): a class exactly at the threshold satisfies the model.
_EPS = 1e-9


@dataclass(frozen=True)
class _Sensitive:
    column: str
    codes: NDArray[np.int64]  # per distinct row; codes follow the sorted order of the values
    values: int
    ordered: bool  # numeric: t-closeness uses the ordered distance under "auto"


@dataclass
class Encoded:
    """The input collapsed to distinct rows, with every hierarchy level as integer codes."""

    rows: int
    counts: NDArray[np.int64]
    hierarchies: list[Hierarchy]
    gen: list[list[NDArray[np.int64]]]  # [qi][level] -> code per distinct row
    sizes: list[list[int]]  # [qi][level] -> number of codes
    cell_loss: list[list[NDArray[np.int64]]]  # [qi][level] -> count x (leaves in group - 1) per distinct row
    spans: list[int]  # [qi] -> leaves in the hierarchy - 1 (the loss denominator)
    sensitive: list[_Sensitive]
    row_of_input: NDArray[np.int64]  # distinct row of each input row
    leaves: list[pa.Array]  # [qi] -> leaf string per input row

    @property
    def heights(self) -> list[int]:
        return [h.height for h in self.hierarchies]


def encode(table: pa.Table, hierarchies: Sequence[Hierarchy], sensitive: Sequence[str]) -> Encoded:
    """Collapse ``table`` to its distinct (quasi-identifier, sensitive) rows with counts.

    Raises:
        InputError: If a column is missing or holds a value its hierarchy does not cover.
    """
    for name in [h.column for h in hierarchies] + list(sensitive):
        if name not in table.column_names:
            raise InputError(f"the table has no column {name!r}", field=name)
    leaves: list[pa.Array] = []
    codes: list[NDArray[np.int64]] = []
    radices: list[int] = []
    for h in hierarchies:
        leaf = leaf_strings(table[h.column])
        index = pc.index_in(leaf, value_set=pa.array(h.leaves, pa.string()))
        missing = index.null_count
        if missing:
            raise InputError(
                f"{missing} values of {h.column!r} are not covered by its hierarchy; "
                "add them to the hierarchy or build it from this table",
                field=h.column,
            )
        leaves.append(leaf)
        codes.append(index.to_numpy(zero_copy_only=False).astype(np.int64))
        radices.append(len(h.rows))
    sens: list[_Sensitive] = []
    for name in sensitive:
        column = table[name].combine_chunks() if isinstance(table[name], pa.ChunkedArray) else table[name]
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if column.null_count:
            column = pc.fill_null(pc.cast(column, pa.string()), "NULL")
            numeric = False
        values = column.to_numpy(zero_copy_only=False)
        if not numeric:
            values = values.astype(str)
        uniq, inverse = np.unique(values, return_inverse=True)
        sens.append(_Sensitive(name, inverse.astype(np.int64), len(uniq), numeric))
        codes.append(inverse.astype(np.int64))
        radices.append(len(uniq))
    key = _combine(codes, radices, table.num_rows)
    distinct, first, row_of_input = np.unique(key, return_index=True, return_inverse=True)
    counts = np.bincount(row_of_input, minlength=len(distinct)).astype(np.int64)
    enc = Encoded(
        rows=table.num_rows,
        counts=counts,
        hierarchies=list(hierarchies),
        gen=[],
        sizes=[],
        cell_loss=[],
        spans=[],
        sensitive=[_Sensitive(s.column, s.codes[first], s.values, s.ordered) for s in sens],
        row_of_input=row_of_input.astype(np.int64),
        leaves=leaves,
    )
    for h, leaf_code in zip(hierarchies, codes, strict=False):
        level_codes, level_sizes = h.codes()
        leaf_of_row = leaf_code[first]
        enc.gen.append([c.astype(np.int64)[leaf_of_row] for c in level_codes])
        enc.sizes.append(level_sizes)
        enc.spans.append(len(h.rows) - 1)
        loss = []
        for c in level_codes:
            group_leaves = np.bincount(c)[c] - 1  # leaves sharing each leaf's group, less one
            loss.append(counts * group_leaves[leaf_of_row])
        enc.cell_loss.append(loss)
    return enc


def _combine(codes: Sequence[NDArray[np.int64]], radices: Sequence[int], rows: int) -> NDArray[np.int64]:
    """One integer per row for a tuple of codes (mixed radix), re-densified before it could overflow."""
    key = np.zeros(rows, dtype=np.int64)
    span = 1
    for code, radix in zip(codes, radices, strict=True):
        if span * radix >= 2**62:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            span = int(key.max()) + 1 if rows else 1
        key = key * radix + code
        span *= radix
    return key


@dataclass(frozen=True)
class NodeResult:
    """One transformation, checked: whether it satisfies the models and what it costs."""

    levels: tuple[int, ...]
    anonymous: bool
    suppressed_rows: int
    loss: Fraction
    class_of_row: NDArray[np.int64] = field(repr=False)
    suppressed_class: NDArray[np.bool_] = field(repr=False)

    @property
    def key(self) -> tuple[Fraction, int, tuple[int, ...]]:
        """The search's order: least loss, then least total generalisation, then the levels themselves."""
        return (self.loss, sum(self.levels), self.levels)


def classes_of(enc: Encoded, levels: Sequence[int]) -> tuple[NDArray[np.int64], int]:
    """The equivalence class of every distinct row under ``levels``, and the number of class ids."""
    codes = [enc.gen[a][lv] for a, lv in enumerate(levels)]
    radices = [enc.sizes[a][lv] for a, lv in enumerate(levels)]
    key = _combine(codes, radices, len(enc.counts))
    span = int(np.prod(radices, dtype=object))
    if span <= max(4 * len(enc.counts), 1 << 16):
        return key, span  # dense enough to count with bincount directly
    uniq, inverse = np.unique(key, return_inverse=True)
    return inverse.astype(np.int64), len(uniq)


def check(
    enc: Encoded, levels: Sequence[int], models: Sequence[PrivacyModel], max_suppressed: int
) -> NodeResult:
    """Apply ``levels``, find the classes that fail any model, and price the result."""
    class_of_row, n_classes = classes_of(enc, levels)
    sizes = class_sizes(class_of_row, enc.counts, n_classes)
    failing = sizes == 0  # ids with no rows (dense counting) are harmless either way
    for model in models:
        if isinstance(model, KAnonymity):
            failing |= sizes < model.k
    suppressed = int(sizes[failing].sum())
    if suppressed <= max_suppressed and any(not isinstance(m, KAnonymity) for m in models):
        for s in enc.sensitive:
            failing = _sensitive_failures(enc, s, class_of_row, sizes, failing, models)
        suppressed = int(sizes[failing].sum())
    anonymous = suppressed <= max_suppressed
    retained = ~failing[class_of_row]
    loss = Fraction(0)
    for a, level in enumerate(levels):
        kept = int(enc.cell_loss[a][level][retained].sum())
        loss += (Fraction(kept, enc.spans[a]) if enc.spans[a] else Fraction(0)) + suppressed
    loss = loss / (enc.rows * len(levels)) if enc.rows and levels else Fraction(0)
    return NodeResult(tuple(levels), anonymous, suppressed, loss, class_of_row, failing)


def _sensitive_failures(
    enc: Encoded,
    s: _Sensitive,
    class_of_row: NDArray[np.int64],
    sizes: NDArray[np.int64],
    failing: NDArray[np.bool_],
    models: Sequence[PrivacyModel],
) -> NDArray[np.bool_]:
    pair_class, pair_value, pair_n = sensitive_pairs(class_of_row, s.codes, enc.counts, s.values)
    failing = failing.copy()
    for model in models:
        if isinstance(model, DistinctLDiversity):
            failing |= distinct_l(pair_class, len(sizes)) < model.l
        elif isinstance(model, EntropyLDiversity):
            failing |= entropy_l(pair_class, pair_n, sizes) < model.l - _EPS
        elif isinstance(model, RecursiveCLDiversity):
            failing |= ~recursive_cl_holds(pair_class, pair_n, sizes, model.c, model.l)
    for model in models:
        if isinstance(model, TCloseness):
            failing = _t_fixpoint(s, model, pair_class, pair_value, pair_n, sizes, failing)
    return failing


def _t_fixpoint(
    s: _Sensitive,
    model: TCloseness,
    pair_class: NDArray[np.int64],
    pair_value: NDArray[np.int64],
    pair_n: NDArray[np.int64],
    sizes: NDArray[np.int64],
    failing: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    # t is measured against the released table, which loses the suppressed classes; suppressing a class
    # moves that distribution, so repeat until no kept class is further than t from it.
    ordered = model.distance == "ordered" or (model.distance == "auto" and s.ordered)
    while True:
        kept = ~failing[pair_class]
        if not kept.any():
            return failing
        distance = closeness(pair_class, pair_value, pair_n, sizes, s.values, ordered=ordered, kept=kept)
        newly = ~failing & (distance > model.t + _EPS) & (sizes > 0)
        if not newly.any():
            return failing
        failing = failing | newly


@dataclass(frozen=True)
class SearchResult:
    """The optimal transformation found, or None when no transformation satisfies the models."""

    best: NodeResult | None
    lattice_size: int
    nodes_checked: int


def lattice(heights: Sequence[int]) -> NDArray[np.int64]:
    """Every transformation, one row of levels each."""
    size = int(np.prod(heights, dtype=object))
    if size > MAX_LATTICE:
        raise ConfigError(
            f"the generalisation lattice has {size:,} transformations (limit {MAX_LATTICE:,}); "
            "use fewer quasi-identifiers or hierarchies with fewer levels"
        )
    if not heights:
        return np.zeros(
            (1, 0), dtype=np.int64
        )  # no quasi-identifier: the one transformation that does nothing
    grids = np.meshgrid(*[np.arange(h) for h in heights], indexing="ij")
    nodes: NDArray[np.int64] = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
    return nodes


def search(enc: Encoded, models: Sequence[PrivacyModel], suppression_limit: float) -> SearchResult:
    """Find the transformation of least information loss that satisfies ``models``.

    Args:
        enc: The encoded table (see :func:`encode`).
        models: Privacy models; l- and t-models apply to each sensitive attribute.
        suppression_limit: Largest share of rows that may be suppressed, 0 to 1.

    Returns:
        The optimum (ties broken by least total generalisation, then by levels), the lattice size and how many
        transformations were checked.
    """
    if not 0 <= suppression_limit < 1:
        raise ConfigError(f"the suppression limit is a share of rows in [0, 1), got {suppression_limit}")
    needs_sensitive = [m for m in models if not isinstance(m, KAnonymity)]
    if needs_sensitive and not enc.sensitive:
        raise ConfigError(f"{needs_sensitive[0].kind} needs at least one sensitive attribute")
    max_suppressed = int(suppression_limit * enc.rows)
    nodes = lattice(enc.heights)
    q = len(enc.hierarchies)
    # Loss without suppression, per quasi-identifier and level: the bound that orders the search.
    bound_parts = [
        np.array([float(c.sum()) / enc.spans[a] if enc.spans[a] else 0.0 for c in enc.cell_loss[a]])
        for a in range(q)
    ]
    bound = (
        sum(bound_parts[a][nodes[:, a]] for a in range(q)) / (enc.rows * q)
        if q and enc.rows
        else np.zeros(len(nodes))
    )
    order = np.lexsort((*[nodes[:, a] for a in reversed(range(q))], nodes.sum(axis=1), bound))
    monotonic = all(isinstance(m, MONOTONIC_WITH_SUPPRESSION) for m in models)
    # The coarsest transformations known to fail, kept as an antichain: one that a newer failure lies above
    # is dropped, since everything below it is below the newer one too.
    failed_tops = np.empty((0, q), dtype=np.int64)
    best: NodeResult | None = None
    checked = 0
    for index in order:
        node = nodes[index]
        if best is not None and bound[index] > float(best.loss) + _EPS:
            break
        if monotonic and len(failed_tops) and bool(np.all(failed_tops >= node, axis=1).any()):
            continue  # a coarser transformation already failed, so this one fails too
        result = check(enc, tuple(int(v) for v in node), models, max_suppressed)
        checked += 1
        if result.anonymous:
            if best is None or result.key < best.key:
                best = result
        elif monotonic:
            failed_tops = np.vstack([failed_tops[~np.all(failed_tops <= node, axis=1)], node])
    return SearchResult(best, len(nodes), checked)
