"""Person matching: from identity records of several systems to scored pairs and person clusters.

`match_records` is the one entry point. It prepares the records in DuckDB, trains the spec's Fellegi-Sunter
model without labels, scores the blocked pairs, applies the decision rule (threshold, optional one-to-one) and
clusters the kept pairs by connected components. Results come back as Arrow tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from medspace.link import _duckdb, _probabilistic
from medspace.link._probabilistic import ComparisonParameters
from medspace.link._spec import MatchSpec, load_match_spec

__all__ = ["PersonMatches", "match_records"]


@dataclass(frozen=True)
class PersonMatches:
    """What `match_records` found.

    Attributes:
        pairs: one row per record pair at or above the threshold (and kept by the one-to-one rule, if on):
            ``record_id_l``, ``record_id_r``, ``source_l``, ``source_r``, ``match_probability``,
            ``match_weight``, ``explanation`` (e.g. ``"name exact (+9.1), phone missing (+0.0), address
            fuzzy (jaro-winkler 0.93) (+2.4)"``) and ``partial_match_weights`` (comparison, level, weight).
        clusters: one row per input record: ``record_id``, ``source``, ``cluster_id``, ``cluster_size`` and
            ``min_match_probability``, the lowest match probability among scored pairs inside the cluster
            (NULL for a record alone).
        probability_two_random_records_match: the trained prior (lambda).
        parameters: trained m and u probabilities per comparison level.
        seconds: wall-clock time of the whole run.
        warnings: what splink warned of while training and scoring (e.g. ``Comparison: 'phone': u values
            not fully trained``), one line each, for the caller's report rather than the console.
        review_pairs: pairs from the spec's review threshold up to its match threshold (same columns as
            ``pairs``; empty without a review threshold): doubtful, for a reviewer, never clustered.
        model: the trained model as splink writes it, to save with the output.
    """

    pairs: pa.Table
    clusters: pa.Table
    probability_two_random_records_match: float
    parameters: tuple[ComparisonParameters, ...]
    seconds: float
    warnings: tuple[str, ...] = ()
    review_pairs: pa.Table | None = None
    model: dict[str, Any] = field(default_factory=dict)


def match_records(
    records: pa.Table | duckdb.DuckDBPyRelation,
    spec: MatchSpec | str = "person_cn",
    *,
    against: pa.Table | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> PersonMatches:
    """Find which identity records belong to the same person, without labelled examples.

    Args:
        records: identity records with ``record_id`` (unique), ``source`` (the system) and the columns the
            spec compares; for the shipped ``person_cn`` spec: ``name``, ``sex`` (M/F), ``birth_date``,
            ``age_years`` (used when a birth date is missing), ``phone``, ``address`` and ``resident_id``,
            each nullable. Blank strings and ``-`` count as missing.
        spec: a `MatchSpec`, or the name of a spec shipped with medspace.
        against: records already placed (same columns): when given, ``records`` are scored against them
            and among themselves, never ``against`` among itself; the model is trained on both. Placing a
            few new records into a hospital of millions then costs pairs in proportion to the few.
        connection: a DuckDB connection to work in (a fresh in-memory one by default). Work tables named
            ``__medspace_link_*`` and ``__splink__*`` are created in it.

    Returns:
        The scored pairs, the clusters and the trained model.

    Raises:
        InputError: a column the spec needs is missing, or record ids are missing or repeated.
        SpecError: ``spec`` names no shipped spec.

    Example:
        >>> import datetime as dt
        >>> import pyarrow as pa
        >>> people = [
        ...     ("张伟", "M", dt.date(1980, 5, 1), "13800000001"),
        ...     ("李娜", "F", dt.date(1975, 2, 3), None),
        ... ]
        >>> rows = [
        ...     {"record_id": f"{s}{i}", "source": s, "name": n, "sex": x, "birth_date": b, "age_years": None,
        ...      "phone": p, "address": None, "resident_id": None}
        ...     for s in ("index", "archive") for i, (n, x, b, p) in enumerate(people * 20)
        ... ]
        >>> result = match_records(pa.Table.from_pylist(rows))  # doctest: +SKIP
    """
    started = time.perf_counter()
    match_spec = spec if isinstance(spec, MatchSpec) else load_match_spec(spec)
    con = connection if connection is not None else duckdb.connect()
    table = records if isinstance(records, pa.Table) else records.to_arrow_table()
    sources = _duckdb.load_records(con, table, match_spec, against)
    run = _probabilistic.train_and_score(con, match_spec, sources, placing=against is not None)
    pairs = _duckdb.explained_pairs(con, run.predictions, match_spec, match_spec.threshold_probability)
    clusters = _duckdb.cluster_summary(con, run.clusters, run.scored)
    review = match_spec.review_threshold_probability
    doubtful = (
        None
        if review is None
        else _duckdb.explained_pairs(con, run.scored, match_spec, review, match_spec.threshold_probability)
    )
    return PersonMatches(
        pairs=pairs.to_arrow_table(),
        clusters=clusters.to_arrow_table(),
        probability_two_random_records_match=run.probability_two_random_records_match,
        parameters=run.parameters,
        seconds=time.perf_counter() - started,
        warnings=run.warnings,
        review_pairs=None if doubtful is None else doubtful.to_arrow_table(),
        model=run.model,
    )
