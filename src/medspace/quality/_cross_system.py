"""Cross-system reconciliation: the checks the OHDSI Data Quality Dashboard cannot make, because they compare
one fact as several hospital systems hold it, before the CDM merges them into one row.

DQD checks one OMOP table at a time. A hospital's problems sit between systems: a stay's discharge date in
every system that records the stay, a lab order's diagnosis against its visit's, the charges against the
stated and settled totals, one person's name, sex and birth date in every system's patient records, orphans
per child table with the parent the model's keys name, units and reference ranges per lab test, and code
editions and value sets (domain.md §1). Systems are data (the canonical tables' ``system`` column and
``staging/site.json``): each check compares every system that holds its fact, and a check whose canonical
tables are empty at a site is not applicable with that reason. Each check yields one `CrossSystemResult`
with DQD-like counts and status, a Kahn category and a GB/T 36344-2018 dimension, and lists every
disagreeing record (system, file, row, key, both values, reason) in a details table.

The details table holds patient values (names, birth dates) as the staged tables do: it belongs inside the
hospital with the workspace, never in a product or a log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from medspace.core import ConfigError, EngineName, ProgressCallback, StageProgress
from medspace.quality import _cross_system_duckdb as sql
from medspace.quality import _identity_quality as identity
from medspace.quality._cross_system_duckdb import DETAIL_SCHEMA, Counts, DuckDBChecks, NotApplicable

__all__ = [
    "CrossSystemResult",
    "CrossSystemResults",
    "LinkRate",
    "ReferenceRangeProfile",
    "UnitProfile",
    "cross_system_checks",
    "write_cross_system",
]

Status = Literal["passed", "failed", "not applicable"]
KahnCategory = Literal["Conformance", "Completeness", "Plausibility"]
Gbt36344Dimension = Literal[
    "normativity", "completeness", "accuracy", "consistency", "timeliness", "accessibility"
]

SUMMARY_FILE = "cross_system.json"
DETAILS_FILE = "cross_system_details.parquet"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrossSystemResult(_Frozen):
    """The outcome of one cross-system check.

    ``compared`` counts the records (stays, requests, result rows, ...) both sides could be read for; each
    of them is ``agreeing``, ``disagreeing`` or ``explained`` (a disagreement with a known, benign cause,
    such as a recalled discharge or a unit that converts). ``not_comparable`` counts records one side lacks.
    ``rate`` is disagreeing / compared; the check fails when it is above ``threshold`` (a fraction, like
    DQD's ``threshold_value`` in percent), and is not applicable when nothing could be compared.
    """

    name: str
    systems: tuple[str, ...]
    fact: str
    compared: int
    agreeing: int
    disagreeing: int
    explained: int
    not_comparable: int
    rate: float
    threshold: float
    status: Status
    category: KahnCategory
    subcategory: str
    dimension: Gbt36344Dimension
    reason: str = ""  # why the check is not applicable at this site (which canonical table is empty)


class LinkRate(_Frozen):
    """How one system's rows of a child table reached their parent (from ``link/events``); the parent table
    comes from the model's keys (``_cross_system_duckdb.parent_table``)."""

    system: str
    table: str
    parent_table: str
    rows: int
    linked: int
    relinked: int
    recovered: int
    orphan: int
    parent_missing: int
    orphan_rate: float
    parent_missing_rate: float


class UnitProfile(_Frozen):
    """One unit seen for one lab test, and whether it converts to the test's main unit."""

    item_code: str
    item_name: str | None
    unit: str | None
    rows: int
    lab_sites: str | None
    main_unit: str | None
    convertible: bool
    factor: float | None


class ReferenceRangeProfile(_Frozen):
    """One reference range seen for one lab test at one lab site."""

    item_code: str
    lab_site: str | None
    unit: str | None
    reference_range: str
    rows: int


@dataclass(frozen=True)
class CrossSystemResults:
    """Every cross-system check of one workspace, its profiles and the disagreeing records.

    Attributes:
        results: One result per check, in catalogue order.
        details: Every disagreeing (or explained) record, columns as ``DETAIL_SCHEMA``.
        link_rates: Link outcomes per child table.
        units: Units seen per lab test.
        reference_ranges: Reference ranges per lab test and lab site.
        code_editions: Diagnosis-code rows per system, inferred edition and code shape.
        department_codes: Department-code rows per system, file and field, and how many lack their prefix.
    """

    results: tuple[CrossSystemResult, ...]
    details: pa.Table
    link_rates: tuple[LinkRate, ...] = ()
    units: tuple[UnitProfile, ...] = ()
    reference_ranges: tuple[ReferenceRangeProfile, ...] = ()
    code_editions: tuple[dict[str, Any], ...] = ()
    department_codes: tuple[dict[str, Any], ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def result(self, name: str) -> CrossSystemResult:
        """The result of the named check.

        Raises:
            KeyError: if no check of that name ran.
        """
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(
            f"no cross-system check named {name!r}; known: {', '.join(r.name for r in self.results)}"
        )

    def details_of(self, name: str) -> pa.Table:
        """The detail rows of one check."""
        import pyarrow.compute as pc

        return self.details.filter(pc.equal(self.details.column("check"), name))


@dataclass(frozen=True)
class _Check:
    name: str
    reads: tuple[
        tuple[str, str], ...
    ]  # the (canonical table, column) facts compared; their systems are named
    fact: str
    category: KahnCategory
    subcategory: str
    dimension: Gbt36344Dimension
    threshold: float


# The catalogue: what each check compares and how it is classified (Kahn et al. 2016 categories; GB/T
# 36344-2018 dimensions). Thresholds are fractions of compared records allowed to disagree. No check names a
# system: each compares every system that holds the fact (the result lists them).
CHECKS: tuple[_Check, ...] = (
    _Check(
        "discharge_date",
        (("encounter", "end_at"),),
        "discharge date of a stay in every pair of systems with encounter rows for it",
        "Plausibility",
        "Atemporal",
        "consistency",
        0.01,
    ),
    _Check(
        "request_diagnosis",
        (("lab_order", "clinical_diagnosis"), ("diagnosis", "name")),
        "lab order's clinical diagnosis vs the main diagnoses of the visit it names and of the visit the "
        "link stage placed it in",
        "Plausibility",
        "Atemporal",
        "consistency",
        0.02,
    ),
    _Check(
        "settlement_cost",
        (("settlement", "total_cost"), ("charge", "amount")),
        "visit cost: settlement total vs the visit's charges summed, per system holding charges",
        "Plausibility",
        "Atemporal",
        "accuracy",
        0.0,
    ),
    _Check(
        "encounter_cost",
        (("encounter", "total_cost"), ("charge", "amount")),
        "visit cost: an encounter record's stated total (a front sheet's) vs the visit's charges summed",
        "Plausibility",
        "Atemporal",
        "accuracy",
        0.0,
    ),
    _Check(
        "identity_name",
        (("patient", "name"),),
        "a linked person's name in every system's patient records",
        "Plausibility",
        "Atemporal",
        "consistency",
        0.01,
    ),
    _Check(
        "identity_sex",
        (("patient", "sex"), ("patient", "resident_id")),
        "a linked person's sex in every system's patient records and by resident ID",
        "Plausibility",
        "Atemporal",
        "consistency",
        0.01,
    ),
    _Check(
        "identity_birth_date",
        (("patient", "birth_date"), ("patient", "age_years"), ("patient", "resident_id")),
        "a linked person's birth date (or age at the record where a system keeps only that) in every system "
        "and by resident ID",
        "Plausibility",
        "Atemporal",
        "consistency",
        0.01,
    ),
    _Check(
        "lab_units",
        (("lab_result", "unit"),),
        "unit of each lab test across lab sites",
        "Conformance",
        "Value",
        "normativity",
        0.0,
    ),
    _Check(
        "lab_reference_ranges",
        (("lab_result", "reference_range"),),
        "reference range of each lab test within one lab site and unit",
        "Conformance",
        "Value",
        "consistency",
        0.0,
    ),
    _Check(
        "diagnosis_code_edition",
        (("diagnosis", "code"),),
        "main diagnosis codes in the code system (edition) the site mapping declares for their rows",
        "Conformance",
        "Value",
        "normativity",
        0.01,
    ),
    _Check(
        "discharge_mode_value_set",
        (("encounter", "discharge_mode"),),
        "discharge mode within the front sheet's national value set (1, 2, 3, 4, 5, 9)",
        "Conformance",
        "Value",
        "normativity",
        0.0,
    ),
    _Check(
        "resident_id_valid",
        (("patient", "resident_id"),),
        "resident IDs that pass GB 11643 (checksum, birth date, region)",
        "Conformance",
        "Value",
        "normativity",
        0.0,
    ),
    _Check(
        "phone_present",
        (("patient", "phone"),),
        "patient records with a phone number, in the systems that record phones",
        "Completeness",
        "",
        "completeness",
        0.1,
    ),
    _Check(
        "patient_number_unique",
        (("patient", "patient_key"),),
        "persons with one patient number in the site's patient index",
        "Plausibility",
        "Uniqueness",
        "accuracy",
        0.0,
    ),
    _Check(
        "date_format_consistency",
        (),
        "dates within one export column written in one format",
        "Conformance",
        "Value",
        "normativity",
        0.0,
    ),
    _Check(
        "address_agreement",
        (("patient", "address"),),
        "the same person's address in every pair of systems that hold one",
        "Plausibility",
        "Atemporal",
        "consistency",
        0.02,
    ),
    _Check(
        "department_code_prefix",
        (
            ("encounter", "department_code"),
            ("encounter", "discharge_department_code"),
            ("transfer", "from_department_code"),
            ("procedure", "department_code"),
        ),
        "department codes with the letter prefix the site's codes carry",
        "Conformance",
        "Value",
        "normativity",
        0.0,
    ),
)

#: The units `cross_system_checks` reports progress in: each check of ``CHECKS``, then the orphan rates of
#: every linked table together (one query).
CROSS_SYSTEM_STEPS = len(CHECKS) + 1

ORPHAN_THRESHOLD = 0.05


def _unit_conversions() -> dict[tuple[str, str, str], float | None]:
    """Lab unit conversions from the CDM stage's mapping tables (data, not code): (test, unit, main unit)
    -> factor, value_main = value x factor; None for an affine conversion (HbA1c % <-> mmol/mol)."""
    from medspace.cdm import load_mappings, normalise_unit

    out: dict[tuple[str, str, str], float | None] = {}
    for (test, from_unit, to_unit), conv in load_mappings().unit_conversions.items():
        key = (test, normalise_unit(from_unit), normalise_unit(to_unit))
        out[key] = conv.factor if not conv.offset else None
    return out


def _result(check: _Check, counts: Counts, systems: Sequence[str]) -> CrossSystemResult:
    rate = counts.disagreeing / counts.compared if counts.compared else 0.0
    status: Status = "failed" if rate > check.threshold else "passed"
    reason = ""
    if counts.compared == 0:
        status, reason = "not applicable", "nothing could be compared: no record is held by both sides"
    return CrossSystemResult(
        name=check.name,
        systems=tuple(systems),
        fact=check.fact,
        compared=counts.compared,
        agreeing=counts.agreeing,
        disagreeing=counts.disagreeing,
        explained=counts.explained,
        not_comparable=counts.not_comparable,
        rate=round(rate, 6),
        threshold=check.threshold,
        status=status,
        category=check.category,
        subcategory=check.subcategory,
        dimension=check.dimension,
        reason=reason,
    )


def _not_applicable(check: _Check, reason: str) -> CrossSystemResult:
    result = _result(check, Counts(0, 0, 0, 0, 0), ())
    return result.model_copy(update={"reason": reason})


def not_applicable_results(reason: str) -> CrossSystemResults:
    """Every check of the catalogue as not applicable with one reason (a workspace without staged data)."""
    return CrossSystemResults(
        results=tuple(_not_applicable(check, reason) for check in CHECKS),
        details=DETAIL_SCHEMA.empty_table(),
    )


def cross_system_checks(
    workspace: Path,
    *,
    engine: EngineName = "duckdb",
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> CrossSystemResults:
    """Compare the facts the site's systems share, for one workspace after ``ingest`` and ``link``.

    A check whose canonical tables are empty at this site (no settlements, no lab orders ...) is reported as
    not applicable with the reason, never as an error.

    Args:
        workspace: The workspace folder with ``staging/`` and ``link/`` (``medspace run`` writes both).
        engine: Only ``"duckdb"`` today.
        threads: DuckDB threads (default: all cores).
        progress: Called as ``progress(done, CROSS_SYSTEM_STEPS)`` after each check and after the orphan
            rates.

    Returns:
        One result per check (see ``CHECKS``), one per linked child table and system
        (``orphan_rate:<system>/<table>``), the profiles and every disagreeing record.

    Raises:
        InputError: if the staging or link output is missing.
        ConfigError: for an engine other than DuckDB.

    Example:
        >>> results = cross_system_checks(Path("medspace-data"))  # doctest: +SKIP
        >>> results.result("settlement_cost").disagreeing  # doctest: +SKIP
        2
    """
    import time

    if engine != "duckdb":
        # The queries are DuckDB SQL; a Spark twin must be written and compared with them first (DESIGN.md).
        raise ConfigError(f"the cross-system checks run on DuckDB only, not {engine!r}; use engine='duckdb'")
    q = DuckDBChecks(Path(workspace), threads=threads)
    steps = StageProgress(CROSS_SYSTEM_STEPS, progress)
    by_name = {check.name: check for check in CHECKS}
    results: list[CrossSystemResult] = []
    details: list[pa.Table] = []
    timings: dict[str, float] = {}
    profiles: dict[str, Any] = {}

    def systems(check: _Check) -> list[str]:
        if check.name == "patient_number_unique":  # one system's numbers: the site's patient index
            return [q.patient_index] if q.patient_index else []
        return sorted({s for table, column in check.reads for s in q.systems_with(table, column)})

    def run(name: str, compute: Callable[[], tuple[Any, ...]]) -> None:
        check = by_name[name]
        start = time.perf_counter()
        try:
            counts, table, *extra = compute()
        except NotApplicable as na:
            results.append(_not_applicable(check, na.reason))
        else:
            results.append(_result(check, counts, systems(check)))
            details.append(table)
            if extra:
                profiles[name] = extra[0]
        timings[name] = round(time.perf_counter() - start, 3)
        steps.advance()

    run("discharge_date", lambda: sql.discharge_date(q))
    run("request_diagnosis", lambda: sql.request_diagnosis(q))
    run("settlement_cost", lambda: sql.settlement_cost(q))
    run("encounter_cost", lambda: sql.encounter_cost(q))
    for attribute in identity.IDENTITY_ATTRIBUTES:
        run(f"identity_{attribute}", lambda a=attribute: identity.identity(q, a))  # type: ignore[misc]

    start = time.perf_counter()
    link_rates = _link_rates(q, results, details)
    timings["orphan_rate"] = round(time.perf_counter() - start, 3)
    steps.advance()

    units: tuple[UnitProfile, ...] = ()
    ranges: tuple[ReferenceRangeProfile, ...] = ()

    def lab_units() -> tuple[Counts, pa.Table]:
        nonlocal units
        q.require_values("lab_result", "unit")
        units = _unit_profiles(q)
        verdicts = [
            (u.item_code, u.unit or "", "explained" if u.convertible else "disagreeing", _unit_reason(u))
            for u in units
            if u.unit != u.main_unit and u.unit is not None
        ]
        return sql.unit_outcomes(q, verdicts)

    def lab_ranges() -> tuple[Counts, pa.Table]:
        nonlocal ranges
        q.require_values("lab_result", "reference_range")
        ranges = tuple(ReferenceRangeProfile(**row) for row in q.rows(sql.RANGES_SEEN))
        return _range_outcomes(ranges)

    run("lab_units", lab_units)
    run("lab_reference_ranges", lab_ranges)
    run("diagnosis_code_edition", lambda: sql.diagnosis_editions(q))
    run("discharge_mode_value_set", lambda: sql.discharge_modes(q))
    run("resident_id_valid", lambda: identity.resident_ids(q))
    run("phone_present", lambda: identity.phones(q))
    run("patient_number_unique", lambda: identity.patient_numbers(q))
    run("address_agreement", lambda: identity.addresses(q))
    run("date_format_consistency", lambda: identity.date_formats(q))
    run("department_code_prefix", lambda: sql.department_prefixes(q))

    return CrossSystemResults(
        results=tuple(results),
        details=pa.concat_tables(details) if details else DETAIL_SCHEMA.empty_table(),
        link_rates=link_rates,
        units=units,
        reference_ranges=ranges,
        code_editions=tuple(profiles.get("diagnosis_code_edition", ())),
        department_codes=tuple(profiles.get("department_code_prefix", ())),
        timings=timings,
    )


def _link_rates(
    q: DuckDBChecks, results: list[CrossSystemResult], details: list[pa.Table]
) -> tuple[LinkRate, ...]:
    rates: list[LinkRate] = []
    for row in q.rows(sql.LINK_RATES):
        parent = sql.parent_table(q, row["table"], row["system"])
        if parent is None:  # the patient records every other record reaches last
            continue
        rows = int(row["rows"])
        rate = LinkRate(
            system=row["system"],
            table=row["table"],
            parent_table=parent,
            rows=rows,
            linked=int(row["linked"]),
            relinked=int(row["relinked"]),
            recovered=int(row["recovered"]),
            orphan=int(row["orphan"]),
            parent_missing=int(row["parent_missing"]),
            orphan_rate=round(int(row["orphan"]) / rows, 6) if rows else 0.0,
            parent_missing_rate=round(int(row["parent_missing"]) / rows, 6) if rows else 0.0,
        )
        rates.append(rate)
        check = _Check(
            f"orphan_rate:{rate.system}/{rate.table}",
            (),
            f"{rate.system} {rate.table} rows that reach their {parent} (linked, relinked or recovered)",
            "Completeness",
            "Atemporal",
            "completeness",
            ORPHAN_THRESHOLD,
        )
        counts = Counts(
            compared=rows,
            agreeing=rate.linked,
            disagreeing=rate.orphan,
            explained=rate.relinked + rate.recovered,
            not_comparable=0,
        )
        parents = sorted(set(q.systems_of(parent)) - {rate.system})
        results.append(_result(check, counts, [rate.system, *parents]))
        details.append(q.details(check.name, sql.ORPHANS, {"system": rate.system, "table": rate.table}))
    return tuple(rates)


def _unit_profiles(q: DuckDBChecks) -> tuple[UnitProfile, ...]:
    from medspace.cdm import normalise_unit

    conversions = _unit_conversions()
    seen = q.rows(sql.UNITS_SEEN)
    main: dict[str, str | None] = {}
    for row in seen:  # ordered by rows descending within a test: the first unit is the main one
        main.setdefault(row["item_code"], row["unit"])
    profiles: list[UnitProfile] = []
    for row in seen:
        code, unit, main_unit = row["item_code"], row["unit"], main[row["item_code"]]
        key = (code, normalise_unit(unit or ""), normalise_unit(main_unit or ""))
        same = unit == main_unit or key[1] == key[2]
        convertible = same or key in conversions
        factor = 1.0 if same else conversions.get(key)
        profiles.append(
            UnitProfile(
                item_code=code,
                item_name=row["item_name"],
                unit=unit,
                rows=int(row["rows"]),
                lab_sites=row["lab_sites"],
                main_unit=main_unit,
                convertible=convertible,
                factor=factor,
            )
        )
    return tuple(profiles)


def _unit_reason(unit: UnitProfile) -> str:
    if not unit.convertible:
        return f"{unit.item_code} in {unit.unit}, main unit {unit.main_unit}; no known conversion"
    how = f"x {unit.factor:.6g}" if unit.factor is not None else "by the IFCC-NGSP equation"
    return f"{unit.item_code} in {unit.unit}, converts to the main unit {unit.main_unit} {how}"


def _range_outcomes(ranges: Sequence[ReferenceRangeProfile]) -> tuple[Counts, pa.Table]:
    """One reference range per test, lab site and unit agrees; several within one lab and unit disagree.

    Ranges that differ between lab sites are expected (domain.md §1 item 6) and counted as explained.
    """
    groups: dict[tuple[str, str | None, str | None], list[ReferenceRangeProfile]] = {}
    for r in ranges:
        groups.setdefault((r.item_code, r.lab_site, r.unit), []).append(r)
    per_test: dict[str, set[str]] = {}
    for r in ranges:
        per_test.setdefault(r.item_code, set()).add(r.reference_range)
    agreeing = disagreeing = explained = 0
    rows: list[dict[str, Any]] = []
    for (code, site, unit), members in groups.items():
        if len(members) > 1:
            disagreeing += 1
            ranges_text = "; ".join(f"{m.reference_range} ({m.rows} rows)" for m in members)
            rows.append(
                {
                    "check": "lab_reference_ranges",
                    "system": None,
                    "file": None,
                    "row": None,
                    "key": f"{code}@{site}",
                    "field": "reference_range",
                    "value": members[0].reference_range,
                    "other_system": site,
                    "other_value": ranges_text,
                    "reason": f"{code} has {len(members)} reference ranges at one lab site in {unit}",
                }
            )
        elif len(per_test[code]) > 1:
            explained += 1
        else:
            agreeing += 1
    counts = Counts(len(groups), agreeing, disagreeing, explained, 0)
    return counts, pa.Table.from_pylist(rows, schema=DETAIL_SCHEMA)


def write_cross_system(results: CrossSystemResults, folder: Path) -> tuple[Path, Path]:
    """Write the summary (``cross_system.json``) and the disagreeing records (``*_details.parquet``).

    Args:
        results: What ``cross_system_checks`` returned.
        folder: Where to write; created if missing.

    Returns:
        The paths of the summary and the details.

    Example:
        >>> write_cross_system(cross_system_checks(Path("medspace-data")), Path("medspace-data/quality"))
        ... # doctest: +SKIP
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "results": [r.model_dump(mode="json") for r in results.results],
        "link_rates": [r.model_dump(mode="json") for r in results.link_rates],
        "units": [u.model_dump(mode="json") for u in results.units],
        "reference_ranges": [r.model_dump(mode="json") for r in results.reference_ranges],
        "code_editions": list(results.code_editions),
        "department_codes": list(results.department_codes),
        "details_rows": results.details.num_rows,
        "details_file": DETAILS_FILE,
        "timings_seconds": results.timings,
    }
    summary_path = folder / SUMMARY_FILE
    details_path = folder / DETAILS_FILE
    # Write beside and rename, so a reader never sees half a file.
    tmp = folder / f".{SUMMARY_FILE}.tmp"
    tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    tmp.replace(summary_path)
    tmp_details = folder / f".{DETAILS_FILE}.tmp"
    pq.write_table(results.details, tmp_details)
    tmp_details.replace(details_path)
    return summary_path, details_path
