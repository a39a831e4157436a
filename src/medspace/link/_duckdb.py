"""The DuckDB half of person matching: every raw SQL statement the matcher runs lives here.

It prepares identity records for comparison (blank and ``-`` become missing, dates parsed, Chinese addresses
normalised), compiles each comparison of a `MatchSpec` to the SQL conditions of its agreement levels, and
post-processes scored pairs: the one-to-one rule, the per-pair explanation and the cluster summary. All of it
runs inside DuckDB; Python only sees table names and small aggregates.

Security: this module reads identifiable rows (names, birth dates, phones, addresses) inside DuckDB. It never
logs them, and explanations carry level names, similarity scores and day differences, never the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from medspace.core import InputError
from medspace.link._spec import (
    Comparison,
    DateComparison,
    EditDistanceComparison,
    ExactComparison,
    JaroWinklerComparison,
    MatchSpec,
)

__all__ = [
    "INPUT_TABLE",
    "Level",
    "cluster_summary",
    "comparison_levels",
    "explained_pairs",
    "load_records",
    "one_to_one",
    "source_tables",
    "training_sample",
]

INPUT_TABLE = "__medspace_link_records"


@dataclass(frozen=True)
class Level:
    """One agreement level of a comparison: its SQL condition and how explanations name it."""

    label: str
    sql: str
    is_null: bool = False
    term_frequency: bool = False
    #: SQL giving a number that qualifies the label in explanations (a similarity, a day count), or None.
    detail_sql: str | None = None
    detail_format: str = ""
    #: How explanations name the level when a detail follows ("fuzzy" in "fuzzy (jaro-winkler 0.93)").
    detail_label: str = ""


def _q(column: str) -> str:
    return f'"{column}"'


def _lr(column: str) -> tuple[str, str]:
    return _q(f"{column}_l"), _q(f"{column}_r")


def _clean_text(column: str) -> str:
    # Source exports write a missing value as an empty string or '-' (domain.md section 1, formats).
    return f"NULLIF(NULLIF(TRIM(CAST({_q(column)} AS VARCHAR)), ''), '-')"


def _prepared(column: str, comparison: Comparison | None) -> str:
    """SQL that prepares ``column`` for comparison, by the comparison that reads it."""
    if isinstance(comparison, DateComparison):
        # Dates arrive as DATE, ISO text (EMR front sheet) or yyyyMMdd text (HIS, FEBRL); invalid ones are
        # missing.
        return f"TRY_STRPTIME(CAST({_q(column)} AS VARCHAR), ['%Y-%m-%d', '%Y%m%d'])::DATE"
    text = _clean_text(column)
    if isinstance(comparison, JaroWinklerComparison) and comparison.normalise == "cn_address":
        # The same Shanghai address is written with or without the province (上海市) and with the district's
        # suffix (区, 新区) or without it; drop both so only real differences lower the similarity.
        text = f"NULLIF(REGEXP_REPLACE(REGEXP_REPLACE({text}, '^上海市?', ''), '新区|区', '', 'g'), '')"
    return text


def load_records(
    con: duckdb.DuckDBPyConnection, records: pa.Table, spec: MatchSpec, against: pa.Table | None = None
) -> list[str]:
    """Copy identity records into ``INPUT_TABLE``, prepared for comparison, and check them.

    With ``against``, its records are copied too, and the column ``side`` tells the two apart (``new`` for
    ``records``, ``known`` for ``against``).

    Returns:
        The distinct sources, sorted.

    Raises:
        InputError: a required column is missing, or ``record_id`` is missing or repeated.
    """
    required = ("record_id", "source", *spec.input_columns)
    for table in (records, against):
        missing = [c for c in required if table is not None and c not in table.column_names]
        if missing:
            raise InputError(
                f"identity records lack column(s) {', '.join(missing)}; "
                "add them or drop them from the match spec",
                field=missing[0],
            )
    if against is not None:
        records = pa.concat_tables(
            [
                t.select(list(required)).append_column("side", pa.array([side] * t.num_rows, pa.string()))
                for t, side in ((records, "new"), (against, "known"))
            ],
            promote_options="permissive",
        )
    age_columns = {
        c.age_column for c in spec.comparisons if isinstance(c, DateComparison) and c.age_column is not None
    }
    by_column: dict[str, Comparison] = {c.column: c for c in spec.comparisons}
    selects = [f"{_clean_text('record_id')} AS record_id", f"{_clean_text('source')} AS source"]
    if against is not None:
        selects.append("side")
    for column in spec.input_columns:
        if column in age_columns:
            selects.append(f"TRY_CAST({_q(column)} AS INTEGER) AS {_q(column)}")
        else:
            selects.append(f"{_prepared(column, by_column.get(column))} AS {_q(column)}")
    con.register("__medspace_link_arrow", records)
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {INPUT_TABLE} AS SELECT {', '.join(selects)} FROM __medspace_link_arrow"
        )
    finally:
        con.unregister("__medspace_link_arrow")
    row = con.execute(
        f"SELECT COUNT(*) - COUNT(record_id), COUNT(record_id) - COUNT(DISTINCT record_id), "
        f"COUNT(*) - COUNT(source) FROM {INPUT_TABLE}"
    ).fetchone()
    assert row is not None
    if row[0]:
        raise InputError(
            f"{row[0]} identity record(s) have no record_id; give every record one", field="record_id"
        )
    if row[1]:
        raise InputError(f"{row[1]} record_id value(s) repeat; record_id must be unique", field="record_id")
    if row[2]:
        raise InputError(f"{row[2]} identity record(s) have no source; name the system", field="source")
    return [r[0] for r in con.execute(f"SELECT DISTINCT source FROM {INPUT_TABLE} ORDER BY 1").fetchall()]


def source_tables(
    con: duckdb.DuckDBPyConnection, sources: list[str], table: str = INPUT_TABLE, column: str = "source"
) -> list[str]:
    """One view per source over the prepared records, the input tables a multi-source linkage takes."""
    names = []
    for index, source in enumerate(sources):
        name = f"{table}_{column}_{index}"
        literal = source.replace("'", "''")
        where = f"{_q(column)} = '{literal}'"
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {table} WHERE {where}")
        names.append(name)
    return names


def training_sample(con: duckdb.DuckDBPyConnection, max_records: int) -> str:
    """The records training sees: all of them, or a uniform sample of ``max_records`` by a hash of the
    record id (the same records on every run)."""
    # fetchall, not fetchone: DuckDB 2 keeps a result fetched short of its end open, and refuses splink's
    # next query on the connection while it is (reached when one source goes straight to splink).
    (count,) = con.execute(f"SELECT COUNT(*) FROM {INPUT_TABLE}").fetchall()[0]
    if int(count) <= max_records:
        return INPUT_TABLE
    name = "__medspace_link_training"
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {INPUT_TABLE} "
        f"ORDER BY md5(record_id), record_id LIMIT {int(max_records)}"
    )
    return name


def comparison_levels(comparison: Comparison) -> list[Level]:
    """The agreement levels of one comparison, from missing and best to the catch-all, as DuckDB SQL."""
    left, right = _lr(comparison.column)
    null = Level("missing", f"{left} IS NULL OR {right} IS NULL", is_null=True)
    exact = Level("exact", f"{left} = {right}", term_frequency=comparison.term_frequency)
    differs = Level("differs", "ELSE")
    if isinstance(comparison, ExactComparison):
        return [null, exact, differs]
    if isinstance(comparison, EditDistanceComparison):
        fuzzy = [
            Level("one character off", _one_character_off(left, right))
            if d == 1
            else Level(
                f"edit distance ≤ {d}",
                f"levenshtein({left}, {right}) <= {d}",
                detail_sql=f"levenshtein({left}, {right})",
                detail_format="edit distance %d",
                detail_label="fuzzy",
            )
            for d in comparison.distances
        ]
        return [null, exact, *fuzzy, differs]
    if isinstance(comparison, JaroWinklerComparison):
        fuzzy = [
            Level(
                f"fuzzy ≥ {t:g}",
                f"jaro_winkler_similarity({left}, {right}) >= {t}",
                detail_sql=f"jaro_winkler_similarity({left}, {right})",
                detail_format="jaro-winkler %.2f",
                detail_label="fuzzy",
            )
            for t in comparison.thresholds
        ]
        return [null, exact, *fuzzy, differs]
    return _date_levels(comparison)


def _one_character_off(left: str, right: str) -> str:
    """Edit distance at most 1 counted in characters.

    DuckDB's ``levenshtein`` counts UTF-8 bytes, so one mistyped Chinese character (3 bytes) would count as 2
    or 3 edits; this tests one substitution, insertion or deletion of a whole character instead.
    """

    def deletion(longer: str, shorter: str) -> str:
        return (
            f"(length({longer}) = length({shorter}) + 1 AND len(list_filter(range(1, length({longer}) + 1), "
            f"lambda i: substr({longer}, 1, i - 1) || substr({longer}, i + 1) = {shorter})) > 0)"
        )

    substitution = (
        f"(length({left}) = length({right}) AND len(list_filter(range(1, length({left}) + 1), "
        f"lambda i: substr({left}, i, 1) <> substr({right}, i, 1))) <= 1)"
    )
    return f"{substitution} OR {deletion(left, right)} OR {deletion(right, left)}"


def _date_levels(comparison: DateComparison) -> list[Level]:
    left, right = _lr(comparison.column)
    days = f"ABS(DATE_DIFF('day', {left}, {right}))"
    # A slipped digit in the day moves the date by days (within max_days); in the month, it keeps the year and
    # the day of the month.
    one_off = (
        f"{days} <= {comparison.max_days} OR "
        f"(YEAR({left}) = YEAR({right}) AND DAYOFMONTH({left}) = DAYOFMONTH({right}))"
    )
    levels = []
    date_missing = f"{left} IS NULL OR {right} IS NULL"
    if comparison.age_column is None:
        levels.append(Level("missing", date_missing, is_null=True))
    else:
        age_l, age_r = _lr(comparison.age_column)
        levels.append(
            Level("missing", f"({date_missing}) AND ({age_l} IS NULL OR {age_r} IS NULL)", is_null=True)
        )
    levels.append(Level("exact", f"{left} = {right}", term_frequency=comparison.term_frequency))
    levels.append(
        Level(
            "one field off",
            one_off,
            detail_sql=days,
            detail_format="%d days apart",
            detail_label="one field off",
        )
    )
    if comparison.age_column is not None:
        age_l, age_r = _lr(comparison.age_column)
        levels.append(
            Level(
                f"age within {comparison.max_age_difference}",
                f"({date_missing}) AND ABS({age_l} - {age_r}) <= {comparison.max_age_difference}",
            )
        )
    levels.append(Level("differs", "ELSE"))
    return levels


def comparison_settings(comparison: Comparison) -> dict[str, Any]:
    """The comparison as a splink comparison dict (DuckDB SQL conditions)."""
    levels: list[dict[str, Any]] = []
    for level in comparison_levels(comparison):
        entry: dict[str, Any] = {"sql_condition": level.sql, "label_for_charts": level.label}
        if level.is_null:
            entry["is_null_level"] = True
        if level.term_frequency:
            entry["tf_adjustment_column"] = comparison.column
            entry["tf_adjustment_weight"] = 1.0
        levels.append(entry)
    return {
        "output_column_name": comparison.name,
        "comparison_description": f"{comparison.kind} comparison of {comparison.name}",
        "comparison_levels": levels,
    }


def _gamma(level_index: int, levels: list[Level]) -> int:
    # splink numbers a comparison's levels from the catch-all (0) upwards; the null level is -1.
    non_null = [lvl for lvl in levels if not lvl.is_null]
    if levels[level_index].is_null:
        return -1
    return len(non_null) - 1 - non_null.index(levels[level_index])


def _partial_weight_sql(comparison: Comparison) -> str:
    name = comparison.name
    # splink writes each comparison's partial match weight as mw_<name>, its term-frequency part apart.
    weight = _q(f"mw_{name}")
    if comparison.term_frequency:
        weight = f"({weight} + COALESCE({_q(f'mw_tf_adj_{name}')}, 0))"
    return weight


def _explanation_sql(comparison: Comparison) -> tuple[str, str, str]:
    """SQL for the comparison's level label (with detail) and its partial match weight."""
    levels = comparison_levels(comparison)
    gamma = _q(f"gamma_{comparison.name}")
    cases = []
    for index, level in enumerate(levels):
        label = f"'{level.label}'"
        if level.detail_sql is not None:
            label = f"'{level.detail_label} (' || PRINTF('{level.detail_format}', {level.detail_sql}) || ')'"
        cases.append(f"WHEN {_gamma(index, levels)} THEN {label}")
    label_sql = f"CASE {gamma} {' '.join(cases)} END"
    weight_sql = _partial_weight_sql(comparison)
    text = f"'{comparison.name} ' || {label_sql} || PRINTF(' (%+.1f)', {weight_sql})"
    return label_sql, weight_sql, text


def one_to_one(con: duckdb.DuckDBPyConnection, predictions: str, threshold: float) -> str:
    """Keep a cross-source pair only if each record is the other's best match in the other's source.

    Pairs within one source are kept as they are. Ties keep the lowest record ids, so results are stable.
    """
    name = "__medspace_link_one_to_one"
    con.execute(f"""
        CREATE OR REPLACE TABLE {name} AS
        WITH above AS (SELECT * FROM {predictions} WHERE match_probability >= {threshold}),
        ranked AS (
            SELECT *,
                ROW_NUMBER() OVER (PARTITION BY record_id_l, source_r
                                   ORDER BY match_weight DESC, record_id_r) AS rank_l,
                ROW_NUMBER() OVER (PARTITION BY record_id_r, source_l
                                   ORDER BY match_weight DESC, record_id_l) AS rank_r
            FROM above
        )
        SELECT * EXCLUDE (rank_l, rank_r) FROM ranked
        WHERE source_l = source_r OR (rank_l = 1 AND rank_r = 1)
    """)
    return name


def explained_pairs(
    con: duckdb.DuckDBPyConnection,
    predictions: str,
    spec: MatchSpec,
    threshold: float,
    below: float | None = None,
) -> duckdb.DuckDBPyRelation:
    """Pairs at or above ``threshold`` (and below ``below``, if given) with their explanation and partial
    match weights, best first."""
    texts, structs = [], []
    for comparison in spec.comparisons:
        label_sql, weight_sql, text = _explanation_sql(comparison)
        texts.append(text)
        structs.append(f"{{'comparison': '{comparison.name}', 'level': {label_sql}, 'weight': {weight_sql}}}")
    return con.sql(f"""
        SELECT record_id_l, record_id_r, source_l, source_r,
               match_probability, match_weight,
               CONCAT_WS(', ', {", ".join(texts)}) AS explanation,
               [{", ".join(structs)}] AS partial_match_weights
        FROM {predictions}
        WHERE match_probability >= {threshold} {"" if below is None else f"AND match_probability < {below}"}
        ORDER BY match_weight DESC, record_id_l, record_id_r
    """)


def cluster_summary(
    con: duckdb.DuckDBPyConnection, clusters: str, predictions: str
) -> duckdb.DuckDBPyRelation:
    """record_id -> cluster_id with the cluster's size and its weakest scored internal pair.

    ``min_match_probability`` is the lowest match probability among all scored pairs (threshold or not)
    whose two records ended in the cluster; it is NULL for a record alone in its cluster.
    """
    return con.sql(f"""
        WITH c AS (
            SELECT k.record_id, r.source, k.cluster_id
            FROM {clusters} k JOIN {INPUT_TABLE} r USING (record_id)
        ),
        internal AS (
            SELECT cl.cluster_id, MIN(p.match_probability) AS min_match_probability
            FROM {predictions} p
            JOIN c cl ON cl.record_id = p.record_id_l
            JOIN c cr ON cr.record_id = p.record_id_r AND cr.cluster_id = cl.cluster_id
            GROUP BY cl.cluster_id
        )
        SELECT c.record_id, c.source, c.cluster_id,
               COUNT(*) OVER (PARTITION BY c.cluster_id) AS cluster_size,
               internal.min_match_probability
        FROM c LEFT JOIN internal USING (cluster_id)
        ORDER BY c.cluster_id, c.record_id
    """)
