"""Running the DataQualityDashboard checks over a workspace's CDM and deciding each check's status.

The orchestration mirrors DQD's ``executeDqChecks``: instantiate the checks from the control tables (plus the
user's overrides), count violated and denominator rows on the engine, compare the percentage with the
threshold (``R/evaluateThresholds.R``), then apply DQD's not-applicable rules
(``R/calculateNotApplicableStatus.R``). Two rules go beyond DQD and are marked where they are applied: checks
needing a relation the CDM does not have (the vocabulary, DEATH, a foreign-key table) are not applicable with
that reason instead of a SQL error, and any other check whose denominator is empty is not applicable rather
than trivially passed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from medspace.core import ConfigError, EngineName, InputError, ProgressCallback, StageProgress
from medspace.quality._dqd_control import DqdCheck, control_checks
from medspace.quality._dqd_duckdb import Counts, DuckDbDqdEngine, Failure, Probe, Skip
from medspace.quality._dqd_overrides import apply_overrides, load_overrides
from medspace.quality._dqd_results import CheckResult, CheckStatus, QualityResults


def run_checks(
    workspace: Path,
    *,
    overrides: Path | None = None,
    engine: EngineName = "duckdb",
    progress: ProgressCallback | None = None,
) -> QualityResults:
    """Run every DataQualityDashboard v5.4 check that applies to the CDM in ``workspace``.

    Args:
        workspace: A medspace workspace holding ``cdm/<table>.parquet`` (from ``medspace.cdm.build_cdm`` or
            ``medspace.cdm.import_omop``).
        overrides: An optional YAML file disabling checks, changing thresholds or adding custom checks.
        engine: The compute engine; only ``"duckdb"`` is implemented for the checks so far.
        progress: Called as ``progress(checks_done, checks_total)``: first for the checks settled without a
            query (a table or field that is missing, a check that is not applicable), then as each query
            (one scan shared by the checks of a table) returns.

    Returns:
        One :class:`CheckResult` per check with DQD's status (passed, failed, not applicable, error).

    Raises:
        InputError: if the workspace has no CDM.
        SpecError: if the overrides file is invalid.
        ConfigError: for an engine the checks do not run on yet.

    Example:
        >>> from medspace.quality import run_checks
        >>> results = run_checks(Path("medspace-data"))  # doctest: +SKIP
        >>> results.status_counts()  # doctest: +SKIP
        {'passed': 1180, 'failed': 75, 'not_applicable': 1700, 'error': 0}
    """
    if engine != "duckdb":
        raise ConfigError(
            f"the DQD checks run on DuckDB only for now, not on {engine!r}; run them with engine='duckdb'"
        )
    cdm = workspace / "cdm"
    if not cdm.is_dir() or not any(cdm.glob("*.parquet")):
        raise InputError(
            "the workspace has no CDM; build it with `medspace run` or import one with "
            "medspace.cdm.import_omop",
            file=str(cdm),
        )
    checks = dqd_checks(overrides)
    start = datetime.now()
    dqd = DuckDbDqdEngine(cdm)
    outcomes = _measure(dqd, checks, StageProgress(len(checks), progress))
    results = _evaluate(dqd, checks, outcomes)
    metadata = {
        "cdmSourceName": workspace.name,
        **dqd.metadata(),
        "dqdVersion": "medspace / DQD v5.4 control tables",
    }
    return QualityResults(start=start, end=datetime.now(), results=tuple(results), metadata=metadata)


def dqd_checks(overrides: Path | None = None) -> tuple[DqdCheck, ...]:
    """The checks `run_checks` runs: DQD's control tables with the user's overrides applied."""
    checks = control_checks()
    if overrides is not None:
        checks = apply_overrides(checks, load_overrides(overrides))
    return checks


_Outcome = Counts | Failure | Skip


def _measure(dqd: DuckDbDqdEngine, checks: tuple[DqdCheck, ...], steps: StageProgress) -> list[_Outcome]:
    outcomes: list[_Outcome | None] = [None] * len(checks)
    probes: list[Probe] = []
    probe_index: list[int] = []
    for i, check in enumerate(checks):
        if check.check_name == "cdmTable":
            exists = dqd.has_table(check.table)
            outcomes[i] = Counts(0 if exists else 1, 1, 0.0, "")
            continue
        if not dqd.has_table(check.table):
            outcomes[i] = Skip(f"Table {check.table} does not exist.")
            continue
        if check.check_name == "cdmField":
            outcomes[i] = Counts(0 if dqd.has_field(check.table, check.field or "") else 1, 1, 0.0, "")
            continue
        if check.field is not None and not dqd.has_field(check.table, check.field):
            outcomes[i] = Skip(f"Field {check.table}.{check.field} does not exist.")
            continue
        try:
            planned = dqd.plan(check)
        except Exception as exc:  # an unplannable check is reported as an error
            outcomes[i] = Failure(f"{type(exc).__name__}: {exc}", 0.0, "")
            continue
        if isinstance(planned, Skip):
            outcomes[i] = planned
        else:
            probes.append(planned)
            probe_index.append(i)
    steps.advance(len(checks) - len(probes))
    for i, outcome in zip(probe_index, dqd.measure(probes, measured=steps.advance), strict=True):
        outcomes[i] = outcome
    return [o if o is not None else Failure("not measured", 0.0, "") for o in outcomes]


def _evaluate(
    dqd: DuckDbDqdEngine, checks: tuple[DqdCheck, ...], outcomes: list[_Outcome]
) -> list[CheckResult]:
    # measureValueCompleteness tells which fields hold no value at all (DQD's fieldIsEmpty).
    empty_fields = {
        (c.table, c.field)
        for c, o in zip(checks, outcomes, strict=True)
        if c.check_name == "measureValueCompleteness"
        and isinstance(o, Counts)
        and o.violated == o.denominator
    }
    condition_occurrence_empty = dqd.rows("CONDITION_OCCURRENCE") == 0
    out = []
    for check, outcome in zip(checks, outcomes, strict=True):
        status: CheckStatus
        reason = error = None
        violated = denominator = None
        pct = None
        seconds = query = None
        if isinstance(outcome, Failure):
            status, error, seconds, query = "error", outcome.message, outcome.seconds, outcome.query
        elif isinstance(outcome, Skip):
            status, reason = "not_applicable", outcome.reason
        else:
            violated, denominator, seconds, query = (
                outcome.violated,
                outcome.denominator,
                outcome.seconds,
                outcome.query,
            )
            pct = violated / denominator if denominator else 0.0
            threshold = check.threshold
            failed = violated > 0 if not threshold else pct * 100 > threshold
            status = "failed" if failed else "passed"
            reason = _not_applicable(check, outcome, dqd, empty_fields, condition_occurrence_empty)
            if reason is not None:
                status = "not_applicable"
        out.append(
            CheckResult(
                check_id=check.check_id,
                check_name=check.check_name,
                check_level=check.check_level,
                check_description=check.rendered_description,
                cdm_table_name=check.table,
                cdm_field_name=check.field,
                concept_id=check.concept_id,
                unit_concept_id=check.unit_concept_id,
                context=check.description.context,
                category=check.description.category,
                subcategory=check.description.subcategory,
                severity=check.description.severity,
                sql_file=check.description.sql_file,
                status=status,
                num_violated_rows=violated,
                pct_violated_rows=pct,
                num_denominator_rows=denominator,
                threshold_value=check.threshold,
                notes_value=check.notes,
                not_applicable_reason=reason,
                error=error,
                execution_time=None if seconds is None else f"{seconds:.6f} secs",
                query_text=query or None,
                custom=check.custom,
            )
        )
    return out


def _not_applicable(
    check: DqdCheck,
    counts: Counts,
    dqd: DuckDbDqdEngine,
    empty_fields: set[tuple[str, str | None]],
    condition_occurrence_empty: bool,
) -> str | None:
    """DQD's not-applicable reason for a check that ran (``.applyNotApplicable``), or None."""
    name = check.check_name
    if name in ("cdmTable", "cdmField"):
        return None
    if name == "measureConditionEraCompleteness":
        return "Table CONDITION_OCCURRENCE is empty." if condition_occurrence_empty else None
    if dqd.rows(check.table) == 0:
        return f"Table {check.table} is empty."
    if name == "measureValueCompleteness":
        return None
    if check.field is not None and (check.table, check.field) in empty_fields:
        return f"Field {check.table}.{check.field} is not populated."
    if counts.denominator == 0:
        if check.check_level == "CONCEPT" and check.unit_concept_id is None:
            return f"{check.field}={check.concept_id} is missing from the {check.table} table."
        if check.check_level == "CONCEPT":
            return (
                f"Combination of {check.field}={check.concept_id}, unitConceptId={check.unit_concept_id} and "
                f"VALUE_AS_NUMBER IS NOT NULL is missing from the {check.table} table."
            )
        # Beyond DQD, which passes such a check with 0 of 0 rows: nothing was there to be checked.
        return "No records to evaluate: the check's denominator is empty."
    return None
