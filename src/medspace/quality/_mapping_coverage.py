"""How much of the CDM is mapped to standard concepts: per clinical domain, the share of rows and of distinct
source codes whose concept is not 0, and the most frequent source codes left unmapped.

OMOP writes concept 0 ("No matching concept") where a source code has no standard concept. A CDM can pass
every DQD check and still say nothing about half its diagnoses, so the report counts concept 0 per domain
rather than leaving it silent (issue 9, item 4). It reads the CDM alone, so it runs on a CDM built from a
hospital and on an imported one (``cdm --from-omop``) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

__all__ = ["DOMAINS", "DomainCoverage", "UnmappedCode", "mapping_coverage"]

# Domain -> (CDM table, concept column, source-value column), OMOP CDM v5.4.
DOMAINS: dict[str, tuple[str, str, str]] = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_source_value"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_source_value"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_source_value"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_source_value"),
    "observation": ("observation", "observation_concept_id", "observation_source_value"),
}
TOP_UNMAPPED = 20
NO_SOURCE_VALUE = "(no source value)"


@dataclass(frozen=True)
class UnmappedCode:
    """A source code some rows of a domain carry with concept 0 (or none)."""

    source_value: str
    rows: int


@dataclass(frozen=True)
class DomainCoverage:
    """The mapped share of one domain's rows and distinct source codes.

    A row is mapped when its concept is neither 0 nor null. A distinct source code is mapped when none of
    its rows is unmapped, so a code mapped in one row and not in another counts as unmapped.
    ``status`` is ``not_applicable`` (with ``reason``) when the domain's table is missing or empty.
    """

    domain: str
    table: str
    rows: int
    mapped_rows: int
    codes: int
    mapped_codes: int
    row_share: float | None
    code_share: float | None
    top_unmapped: tuple[UnmappedCode, ...]
    status: str = "measured"
    reason: str = ""


def mapping_coverage(cdm: Path, *, top: int = TOP_UNMAPPED) -> tuple[DomainCoverage, ...]:
    """The mapped share per CDM domain (condition, procedure, drug, measurement, observation).

    Args:
        cdm: The folder holding ``<table>.parquet`` (``<workspace>/cdm``).
        top: How many of the most frequent unmapped source codes to list per domain.

    Returns:
        One entry per domain, in the order of ``DOMAINS``.

    Example:
        >>> [c.domain for c in mapping_coverage(Path("medspace-data/cdm"))]  # doctest: +SKIP
        ['condition', 'procedure', 'drug', 'measurement', 'observation']
    """
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    out: list[DomainCoverage] = []
    for domain, (table, concept, source) in DOMAINS.items():
        path = Path(cdm) / f"{table}.parquet"
        if not path.exists():
            out.append(_not_applicable(domain, table, f"the CDM has no {table} table"))
            continue
        # the path goes to DuckDB as a Python value, never into the SQL text (a path may hold quotes)
        con.read_parquet(str(path)).select(
            f"{concept} AS concept_id, CAST({source} AS VARCHAR) AS source_value"
        ).create_view("domain_rows")
        row = con.execute(
            """
            WITH per_code AS (
                SELECT coalesce(source_value, $none) AS code,
                       bool_and(coalesce(concept_id, 0) <> 0) AS mapped
                FROM domain_rows GROUP BY 1
            )
            SELECT (SELECT count(*) FROM domain_rows),
                   (SELECT count(*) FROM domain_rows WHERE coalesce(concept_id, 0) <> 0),
                   (SELECT count(*) FROM per_code),
                   (SELECT count(*) FROM per_code WHERE mapped)
            """,
            {"none": NO_SOURCE_VALUE},
        ).fetchone()
        assert row is not None  # an aggregate always returns one row
        rows, mapped_rows, codes, mapped_codes = (int(v) for v in row)
        if rows == 0:
            out.append(_not_applicable(domain, table, f"{table} is empty"))
            continue
        unmapped = con.execute(
            """
            SELECT coalesce(source_value, $none) AS code, count(*) AS n FROM domain_rows
            WHERE coalesce(concept_id, 0) = 0 GROUP BY 1 ORDER BY n DESC, code LIMIT $top
            """,
            {"none": NO_SOURCE_VALUE, "top": top},
        ).fetchall()
        out.append(
            DomainCoverage(
                domain=domain,
                table=table,
                rows=rows,
                mapped_rows=mapped_rows,
                codes=codes,
                mapped_codes=mapped_codes,
                row_share=round(mapped_rows / rows, 6),
                code_share=round(mapped_codes / codes, 6) if codes else None,
                top_unmapped=tuple(UnmappedCode(str(code), int(n)) for code, n in unmapped),
            )
        )
    con.close()
    return tuple(out)


def _not_applicable(domain: str, table: str, reason: str) -> DomainCoverage:
    return DomainCoverage(domain, table, 0, 0, 0, 0, None, None, (), "not_applicable", reason)
