"""Fellegi-Sunter person matching on splink: train without labels, score blocked pairs, cluster.

This is the only module that touches splink (its internals are untyped for our purposes, so values crossing
the boundary are `Any` here and typed everywhere else). The model is trained with no labelled pairs:

1. lambda, the prior probability that two records match, from pairs that meet deterministic rules
   (``training.prior_rules``) given their assumed recall;
2. u probabilities (how often non-matches agree at each level) from randomly sampled pairs;
3. m probabilities (how often matches agree) by expectation maximisation over the pairs each
   ``training.em_blocking`` rule admits.

Scoring runs splink's SQL on the DuckDB connection it is given; Python receives only table names and the
trained parameters. Identifiable rows stay inside DuckDB (see ``_duckdb``'s security note).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import duckdb

from medspace.link import _duckdb
from medspace.link._spec import BlockingRule, MatchSpec

__all__ = ["ComparisonParameters", "SplinkRun", "train_and_score"]


@dataclass(frozen=True)
class ComparisonParameters:
    """The trained m and u probability of one agreement level, and its match weight log2(m/u)."""

    comparison: str
    level: str
    m_probability: float | None
    u_probability: float | None
    match_weight: float | None


@dataclass(frozen=True)
class SplinkRun:
    """Handles to a trained, scored linkage inside one DuckDB connection."""

    predictions: str
    clusters: str
    scored: str
    probability_two_random_records_match: float
    parameters: tuple[ComparisonParameters, ...]
    warnings: tuple[str, ...] = ()
    #: the trained model as splink writes it (settings, m and u of every level, lambda)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)


def _block_on(rule: BlockingRule) -> Any:
    from splink import block_on

    return block_on(*rule.columns)


def train_and_score(
    con: duckdb.DuckDBPyConnection, spec: MatchSpec, sources: list[str], *, placing: bool = False
) -> SplinkRun:
    """`_train_and_score`, with splink's warnings (an untrained level, a default parameter) collected into
    ``SplinkRun.warnings`` for the caller's report instead of printed on the console."""
    collected = _Warnings()
    splink_logger = logging.getLogger("splink")
    propagate = splink_logger.propagate
    splink_logger.addHandler(collected)
    splink_logger.propagate = False
    try:
        run = _train_and_score(con, spec, sources, placing=placing)
    finally:
        splink_logger.removeHandler(collected)
        splink_logger.propagate = propagate
    return dataclasses.replace(run, warnings=tuple(collected.lines))


class _Warnings(logging.Handler):
    """Keeps the text of each warning splink logs, whitespace folded to one line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = " ".join(record.getMessage().split())
        if line and line not in self.lines:
            self.lines.append(line)


def _train_and_score(
    con: duckdb.DuckDBPyConnection, spec: MatchSpec, sources: list[str], *, placing: bool = False
) -> SplinkRun:
    """Train the spec's model on the records in ``_duckdb.INPUT_TABLE`` and score the blocked pairs.

    Args:
        con: the DuckDB connection holding the prepared records.
        spec: the model.
        sources: the distinct sources of the records.
        placing: score pairs of a ``new`` and a ``known`` record (the ``side`` column) and pairs among
            the ``new`` records, never pairs among the ``known`` ones: placing a few records into a large
            population costs pairs in proportion to the few. Training still sees both sides.

    Returns:
        Table names of all scored pairs, the pairs kept by the decision rule and the clusters, plus the
        trained parameters.
    """
    # splink is imported here, not at module level, so importing medspace.link stays cheap (STYLE.md 2).
    from splink import DuckDBAPI, Linker, SettingsCreator
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    link_type = spec.link_type
    if link_type != "dedupe_only" and len(sources) < 2:
        # One source has nothing to link to; within-source duplicates are still worth finding.
        link_type = "dedupe_only"
    db_api: Any = DuckDBAPI(connection=con)

    def inputs(table: str, role: str) -> Any:
        if link_type == "dedupe_only":
            return db_api.register(table, table_name=f"{role}_records")
        return [
            db_api.register(view, table_name=f"{role}_source_{index}")
            for index, view in enumerate(_duckdb.source_tables(con, sources, table))
        ]

    settings = SettingsCreator(
        link_type=link_type,
        unique_id_column_name="record_id",
        source_dataset_column_name="source",
        comparisons=[_duckdb.comparison_settings(c) for c in spec.comparisons],
        blocking_rules_to_generate_predictions=[_block_on(r) for r in spec.blocking],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        additional_columns_to_retain=["source"] if link_type == "dedupe_only" else [],
    )
    training_records = _duckdb.training_sample(con, spec.training.max_records)
    # log_level=None: splink leaves logging alone; `train_and_score` collects its warnings.
    linker: Any = Linker(inputs(training_records, "training"), settings, log_level=None)
    training = spec.training
    linker.training.estimate_probability_two_random_records_match(
        [_block_on(r) for r in training.prior_rules], recall=training.prior_recall
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=training.u_max_pairs, seed=training.seed)
    for rule in training.em_blocking:
        linker.training.estimate_parameters_using_expectation_maximisation(
            _block_on(rule), estimate_without_term_frequencies=True
        )
    model: dict[str, Any] = linker.misc.save_model_to_json()
    if placing:
        # the trained model, scoring new against known records only
        scoring = {
            **model,
            "link_type": "link_only",
            "source_dataset_column_name": "side",
            "additional_columns_to_retain": ["source"],
        }
        sides = [
            db_api.register(view, table_name=f"scoring_side_{index}")
            for index, view in enumerate(_duckdb.source_tables(con, ["known", "new"], column="side"))
        ]
        linker = Linker(sides, scoring, log_level=None)
        placed: Any = linker.inference.predict()
        # the new records among themselves (two systems' records of one person neither index knows)
        con.execute(
            f"CREATE OR REPLACE VIEW __medspace_link_new AS SELECT * FROM {_duckdb.INPUT_TABLE} "
            "WHERE side = 'new'"
        )
        new_sources = [
            str(r[0])
            for r in con.execute("SELECT DISTINCT source FROM __medspace_link_new ORDER BY 1").fetchall()
        ]
        among_type = link_type if len(new_sources) > 1 or link_type == "dedupe_only" else "dedupe_only"
        among_settings = {**model, "link_type": among_type}
        if among_type == "dedupe_only":
            among_settings["additional_columns_to_retain"] = ["source"]
            among_inputs: Any = db_api.register("__medspace_link_new", table_name="among_records")
        else:
            among_inputs = [
                db_api.register(view, table_name=f"among_source_{index}")
                for index, view in enumerate(_duckdb.source_tables(con, new_sources, "__medspace_link_new"))
            ]
        among: Any = Linker(among_inputs, among_settings, log_level=None).inference.predict()
        scored = "__medspace_link_scored"
        con.execute(
            f"CREATE OR REPLACE TABLE {scored} AS SELECT * FROM {placed.physical_name} "
            f"UNION ALL BY NAME SELECT * FROM {among.physical_name}"
        )
    elif training_records != _duckdb.INPUT_TABLE:
        linker = Linker(inputs(_duckdb.INPUT_TABLE, "scoring"), model, log_level=None)
    if not placing:
        scored = linker.inference.predict().physical_name
    kept = (
        _duckdb.one_to_one(con, scored, spec.threshold_probability)
        if spec.one_to_one
        else _above(con, scored, spec.threshold_probability)
    )
    nodes: Any = db_api.register(_duckdb.INPUT_TABLE, table_name="nodes")
    edges: Any = db_api.register(kept, table_name="edges")
    clusters: Any = cluster_pairwise_predictions_at_threshold(
        nodes, edges, db_api, node_id_column_name="record_id"
    )
    return SplinkRun(
        predictions=kept,
        clusters=clusters.physical_name,
        scored=scored,
        probability_two_random_records_match=float(model["probability_two_random_records_match"]),
        parameters=_parameters(model),
        model=model,
    )


def _above(con: duckdb.DuckDBPyConnection, predictions: str, threshold: float) -> str:
    name = "__medspace_link_above"
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS "
        f"SELECT * FROM {predictions} WHERE match_probability >= {threshold}"
    )
    return name


def _parameters(model: dict[str, Any]) -> tuple[ComparisonParameters, ...]:
    out = []
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m = level.get("m_probability")
            u = level.get("u_probability")
            out.append(
                ComparisonParameters(
                    comparison=comparison["output_column_name"],
                    level=level["label_for_charts"],
                    m_probability=None if m is None else float(m),
                    u_probability=None if u is None else float(u),
                    match_weight=math.log2(m / u) if m and u else None,
                )
            )
    return tuple(out)
