"""De-identify a dataset by a profile: roles, direct identifiers, free text, quasi-identifiers, report.

The steps follow GB/T 37964-2019's process: identify (propose each column's role and kind, confirmed by the
profile), process (scrub free text, remove or pseudonymise direct identifiers, shift dates, then generalise
the quasi-identifiers optimally and suppress what still fails the privacy models) and verify (measure k, l, t
and the three risks on what is released, and write the report the approver signs off).

Two kinds of dataset: one table (Parquet or CSV), whose rows are the unit of privacy, and an OMOP CDM
extract, whose unit is the person: the person table carries the quasi-identifiers, every other table is
treated column by column with the same key (so pseudonyms and date shifts agree across tables), and a person
suppressed from the person table is removed from every table.

This module handles identifiable rows; it logs nothing and its errors and reports carry no values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medspace.cdm import cdm_schema
from medspace.core import InputError, ProgressCallback, StageProgress
from medspace.privacy._anonymise import Anonymisation, anonymise
from medspace.privacy._direct import ColumnTreatmentReport, treat_direct_identifiers
from medspace.privacy._hierarchy import (
    SUPPRESSED,
    Hierarchy,
    HierarchySpec,
    SuppressSpec,
    hierarchy_for,
    leaf_strings,
)
from medspace.privacy._keys import ProductKey
from medspace.privacy._models import (
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    PrivacyModel,
    TCloseness,
)
from medspace.privacy._profile import ColumnPlan, DeidProfile, ScrubText, plan_columns
from medspace.privacy._report import (
    ColumnEntry,
    DeidReport,
    ModelEntry,
    QuasiIdentifierEntry,
    TableEntry,
)
from medspace.privacy._risk import table_risk
from medspace.privacy._roles import ColumnRole, IdentifierKind, propose_roles
from medspace.privacy._text import PhiKind, TextScrubber

#: The column of an OMOP table that names the person of each row.
PERSON_ID = "person_id"
#: The derived sensitive attribute of a CDM extract when the profile asks for l-diversity or t-closeness.
PRIMARY_CONDITION = "primary_condition"
#: OMOP tables whose person is named by another column: a person-level cohort's subject_id is a person_id.
PERSON_COLUMNS = {"cohort": "subject_id"}
#: OMOP tables that reach their person through a parent table's key (an NLP record through its note).
PERSON_VIA = {"note_nlp": ("note_id", "note"), "episode_event": ("episode_id", "episode")}
#: Name of the person column attached for the treatment of a table that reaches its person via a parent.
_ATTACHED = "_deid_person_id"


@dataclass(frozen=True)
class Deidentified:
    """The de-identified tables and the report about them."""

    tables: dict[str, pa.Table]
    report: DeidReport


@dataclass
class _Prepared:
    table: pa.Table
    plans: list[ColumnPlan]
    treatments: list[ColumnTreatmentReport]
    text_counts: dict[str, int]
    texts: int


def deidentify_table(
    table: pa.Table,
    profile: DeidProfile,
    key: ProductKey,
    *,
    name: str = "table",
    person_column: str | None = None,
    population: pa.Table | None = None,
    today: dt.date | None = None,
    progress: ProgressCallback | None = None,
) -> Deidentified:
    """De-identify one table: each row is a record whose quasi-identifiers are generalised together.

    Args:
        table: The table as exported or staged.
        profile: The de-identification profile (see `load_profile`).
        key: The product key for pseudonyms, date shifts and text surrogates.
        name: The table's name, used to propose roles (``person``, ``his_patients``...) and in the report.
        person_column: The column naming each row's patient, for per-person date shifts and surrogates.
        population: The wider population the table was drawn from, for journalist and marketer risk.
        today: Reference date for ages; today if not given.
        progress: Called as ``progress(done, 3)`` after the columns are treated, after the generalisation
            search and after the report.

    Returns:
        The de-identified table under ``name`` and its report.

    Raises:
        NoSolutionError: If the profile's privacy models cannot be met within its suppression limit.
        ConfigError: If the profile and the table do not fit together (a date to shift without a person).
        InputError: If a column's values do not suit its treatment.

    Example:
        >>> from medspace.privacy._profile import load_profile
        >>> t = pa.table({"patient_id": ["P1", "P2"], "name": ["张伟", "李娜"], "age": [91, 40]})
        >>> out = deidentify_table(t, load_profile("hipaa-safe-harbor"), ProductKey.generate(), name="visits")
        >>> out.tables["visits"].column_names, out.report.rows_released
        (['age'], 2)
    """
    started = time.perf_counter()
    steps = StageProgress(3, progress)
    prepared = _prepare(name, table, profile, key, person_column, today)
    steps.advance()
    plans = [p for p in prepared.plans if p.column in prepared.table.column_names]
    anonymised, hierarchies, before, levels = _generalise(
        prepared.table, plans, profile, population, sensitive=None
    )
    steps.advance()
    report = _report(
        dataset=name,
        unit="row",
        profile=profile,
        key=key,
        prepared={name: prepared},
        anonymised=anonymised,
        hierarchies=hierarchies,
        levels=levels,
        qi_table=name,
        before=before,
        tables=[TableEntry(name, table.num_rows, anonymised.table.num_rows)],
        seconds=time.perf_counter() - started,
        notes=[],
    )
    steps.advance()
    return Deidentified({name: anonymised.table}, report)


def deidentify_cdm(
    tables: dict[str, pa.Table],
    profile: DeidProfile,
    key: ProductKey,
    *,
    name: str = "cdm",
    today: dt.date | None = None,
    progress: ProgressCallback | None = None,
) -> Deidentified:
    """De-identify an OMOP CDM extract, with the person as the unit of privacy.

    The person table's quasi-identifiers are generalised; every table is treated by its columns' plans with
    ``person_id`` as the person of each row, and the rows of suppressed persons are removed everywhere. When
    the profile asks for l-diversity or t-closeness, the sensitive attribute is each person's most frequent
    recorded condition (``condition_occurrence``), which is checked but not released.

    Args:
        tables: The CDM tables by name; ``person`` is required.
        profile: The de-identification profile.
        key: The product key.
        name: The dataset's name in the report.
        today: Reference date for ages; today if not given.
        progress: Called as ``progress(done, len(tables) + 2)``: after each table's columns are treated,
            after the generalisation search of the person table and after the report.

    Returns:
        Every table, de-identified, and one report.

    Raises:
        InputError: If there is no person table.
        NoSolutionError: If the privacy models cannot be met within the suppression limit.
    """
    if "person" not in tables:
        raise InputError("a CDM extract needs its person table", file="person.parquet")
    started = time.perf_counter()
    steps = StageProgress(len(tables) + 2, progress)
    with_person = {t: _with_person(t, table, tables) for t, table in tables.items()}
    prepared: dict[str, _Prepared] = {}
    for t, (table, person_column) in with_person.items():
        prepared[t] = _prepare(t, table, profile, key, person_column, today)
        steps.advance()
    person = prepared["person"].table
    plans = [p for p in prepared["person"].plans if p.column in person.column_names]
    notes: list[str] = []
    sensitive: list[str] | None = None
    needs_sensitive = profile.privacy is not None and any(
        not isinstance(m, KAnonymity) for m in profile.privacy.models
    )
    if needs_sensitive and not any(p.role is ColumnRole.SENSITIVE for p in plans):
        person = person.append_column(PRIMARY_CONDITION, _primary_condition(tables, person))
        sensitive = [PRIMARY_CONDITION]
        notes.append(
            "l-diversity and t-closeness are measured on each person's most frequent recorded condition "
            "(condition_occurrence), which is not released."
        )
    anonymised, hierarchies, before, levels = _generalise(person, plans, profile, None, sensitive=sensitive)
    steps.advance()
    released_person = anonymised.table
    if PRIMARY_CONDITION in released_person.column_names:
        released_person = released_person.drop_columns([PRIMARY_CONDITION])
    released_person, conformance = as_omop(released_person, "person")
    notes.extend(conformance)
    kept = released_person.column(PERSON_ID) if PERSON_ID in released_person.column_names else None
    out: dict[str, pa.Table] = {}
    entries: list[TableEntry] = []
    for t, p in prepared.items():
        table = released_person if t == "person" else p.table
        person_column = with_person[t][1]
        if t != "person" and kept is not None and person_column is not None:
            table = table.filter(pc.is_in(table.column(person_column), value_set=kept.combine_chunks()))
        if _ATTACHED in table.column_names:
            table = table.drop_columns([_ATTACHED])
        out[t] = table
        entries.append(TableEntry(t, tables[t].num_rows, table.num_rows))
    outside = sorted(
        f"{t}.{plan.column}"
        for t, p in prepared.items()
        if t != "person"
        for plan in p.plans
        if plan.hierarchy is not None and plan.column in p.table.column_names
    )
    if outside:
        notes.append(
            "Quasi-identifiers outside the person table are kept after their treatment, not generalised: "
            + ", ".join(outside)
            + "."
        )
    report = _report(
        dataset=name,
        unit="person",
        profile=profile,
        key=key,
        prepared=prepared,
        anonymised=anonymised,
        hierarchies=hierarchies,
        levels=levels,
        qi_table="person",
        before=before,
        tables=entries,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
    steps.advance()
    return Deidentified(out, report)


def _prepare(
    name: str,
    table: pa.Table,
    profile: DeidProfile,
    key: ProductKey,
    person_column: str | None,
    today: dt.date | None,
) -> _Prepared:
    """Plan every column, scrub free text, then treat the direct identifiers (dates, pseudonyms...)."""
    plans = plan_columns(propose_roles(table, table_name=name), profile)
    counts: dict[str, int] = {}
    texts = 0
    for plan in plans:
        if isinstance(plan.treatment, ScrubText):
            scrubbed, found, n = _scrub_column(table, plan.column, person_column, profile, key)
            table = table.set_column(table.column_names.index(plan.column), plan.column, scrubbed)
            texts += n
            for kind, c in found.items():
                counts[kind] = counts.get(kind, 0) + c
    treated, reports = treat_direct_identifiers(
        table,
        plans,
        key=key,
        person_column=person_column,
        date_shift_days=profile.date_shift_days,
        today=today,
    )
    derived = [d for r in reports for d in r.derived]
    if derived:
        plans = plans + plan_columns(derived, profile)
    return _Prepared(treated, plans, reports, counts, texts)


def _scrub_column(
    table: pa.Table, column: str, person_column: str | None, profile: DeidProfile, key: ProductKey
) -> tuple[pa.Array, dict[str, int], int]:
    values = table.column(column).combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise InputError(f"{column} is to be scrubbed as free text but holds {values.type}", field=column)
    persons = (
        pc.cast(table.column(person_column), pa.string()).to_pylist()
        if person_column is not None
        else [f"row-{i}" for i in range(table.num_rows)]
    )
    # A date in a note cannot be told to be a birth date or an event date, so notes keep only the year of
    # their dates when the profile keeps only the year of either (HIPAA Safe Harbor); otherwise they are
    # shifted like the person's structured dates.
    year_only = any(
        profile.treatment_for(kind).action == "year_only"
        for kind in (IdentifierKind.DATE, IdentifierKind.BIRTH_DATE)
    )
    days = profile.date_shift_days
    offsets: dict[str, int] = {}
    rows: list[int] = []
    texts: list[str] = []
    keys: list[str] = []
    for i, (text, person) in enumerate(zip(values.to_pylist(), persons, strict=True)):
        if text is None:
            continue
        if person is None:
            raise InputError(
                f"a row of {column} has no {person_column}; its dates cannot be shifted", field=column
            )
        if person not in offsets:
            # The same offset the structured dates of this person get (treat_direct_identifiers).
            offsets[person] = 0 if days is None else key.date_offset_days(person, days)
        rows.append(i)
        texts.append(text)
        keys.append(person)
    results = TextScrubber(key).scrub_batch(
        texts,
        keys,
        [offsets[person] for person in keys],
        dates="year_only" if year_only else "shift",
    )
    out: list[str | None] = [None] * len(persons)
    counts: dict[str, int] = {}
    for i, result in zip(rows, results, strict=True):
        out[i] = result.text
        for kind, n in result.counts.items():
            if n:
                counts[str(kind)] = counts.get(str(kind), 0) + n
    return pa.array(out, values.type), counts, len(texts)


def _generalise(
    table: pa.Table,
    plans: Sequence[ColumnPlan],
    profile: DeidProfile,
    population: pa.Table | None,
    *,
    sensitive: Sequence[str] | None,
) -> tuple[Anonymisation, list[tuple[Hierarchy, HierarchySpec]], pa.Table, dict[str, int]]:
    """Generalise the quasi-identifiers that remain by the profile's models (k=1 when it has none).

    Returns the anonymisation, the hierarchies used, the table the search saw (for the risk before) and the
    level of every quasi-identifier column.
    """
    qi_plans = [
        dataclasses.replace(p, hierarchy=p.hierarchy or _measure_only(p, profile))
        for p in plans
        if p.column in table.column_names and (p.hierarchy is not None or _measure_only(p, profile))
    ]
    # Several codings of one fact (OMOP's gender_concept_id, gender_source_value, gender_source_concept_id)
    # are kept or suppressed together, as one composite quasi-identifier: searching them one by one would
    # multiply the lattice and could release one coding of a value whose other coding was suppressed.
    groups: dict[IdentifierKind, list[ColumnPlan]] = {}
    for p in qi_plans:
        if isinstance(p.hierarchy, SuppressSpec):
            groups.setdefault(p.kind, []).append(p)
    leaders = {members[0].column: members for members in groups.values() if len(members) > 1}
    tied = {m.column for members in leaders.values() for m in members}
    work, pop = table, population
    specs: list[tuple[str, HierarchySpec]] = []
    composites: dict[str, list[str]] = {}
    for p in qi_plans:
        assert p.hierarchy is not None  # filtered above
        if p.column not in tied:
            specs.append((p.column, p.hierarchy))
        elif p.column in leaders:
            columns = [m.column for m in leaders[p.column]]
            name = "+".join(columns)
            work = work.append_column(name, _composite(work, columns))
            if pop is not None and all(c in pop.column_names for c in columns):
                pop = pop.append_column(name, _composite(pop, columns))
            composites[name] = columns
            specs.append((name, p.hierarchy))
    hierarchies: list[tuple[Hierarchy, HierarchySpec]] = []
    for column, spec in specs:
        values = work.column(column)
        if pop is not None and column in pop.column_names:
            values = pa.chunked_array(values.chunks + pop.column(column).chunks)
        hierarchies.append((hierarchy_for(column, values, spec)[0], spec))
    if sensitive is None:
        sensitive = [
            p.column for p in plans if p.role is ColumnRole.SENSITIVE and p.column in table.column_names
        ]
    models: Sequence[PrivacyModel] = (KAnonymity(k=1),) if profile.privacy is None else profile.privacy.models
    limit = 0.0 if profile.privacy is None else profile.privacy.suppression_limit
    # Sensitive columns are passed even for k-anonymity alone, so the report measures their l and t.
    anonymised = anonymise(
        work,
        [h for h, _ in hierarchies],
        models,
        sensitive=list(sensitive),
        suppression_limit=min(limit, 0.999),
        population=pop,
    )
    released = anonymised.table
    levels = dict(anonymised.levels)
    for name, columns in composites.items():
        released = released.drop_columns([name])
        for column in columns:
            levels[column] = levels[name]
            if levels[name] > 0:
                stars = pa.array([SUPPRESSED] * released.num_rows, pa.string())
                released = released.set_column(released.column_names.index(column), column, stars)
    return dataclasses.replace(anonymised, table=released), hierarchies, work, levels


def _with_person(name: str, table: pa.Table, tables: dict[str, pa.Table]) -> tuple[pa.Table, str | None]:
    """The table with the column naming each row's person (attached from a parent table where the OMOP
    table has none of its own), and that column's name; None for tables about no person (vocabularies)."""
    if PERSON_ID in table.column_names:
        return table, PERSON_ID
    own = PERSON_COLUMNS.get(name)
    if own is not None and own in table.column_names:
        return table, own
    if name in PERSON_VIA:
        key, parent_name = PERSON_VIA[name]
        parent = tables.get(parent_name)
        if parent is None or key not in table.column_names or PERSON_ID not in parent.column_names:
            raise InputError(
                f"{name} reaches its person through {parent_name}.{key}, but the extract has no "
                f"{parent_name} table with {key} and person_id; include it",
                file=f"{name}.parquet",
                field=key,
            )
        # Positions keep the table's row order (an Arrow join would not).
        positions = pc.index_in(table.column(key), value_set=parent.column(key).combine_chunks())
        persons = pc.take(parent.column(PERSON_ID).combine_chunks(), positions)
        return table.append_column(_ATTACHED, persons), _ATTACHED
    return table, None


def as_omop(table: pa.Table, name: str) -> tuple[pa.Table, list[str]]:
    """A generalised OMOP table typed as the CDM specification says, and notes on what that changed.

    Generalisation turns values into strings (ARX writes a year of birth as ``1960-1979``); a released CDM
    stays valid OMOP instead: an integer, date or date-time column gets the first value of its group
    (``1960``; a date cut to its decade becomes that decade's first day; the groups are in the report), a
    suppressed concept id becomes 0 (OMOP's "no matching concept") and any other suppressed value null.
    """
    schema = cdm_schema()
    if name not in schema:
        return table, []
    spec = schema[name]
    notes: list[str] = []
    for column in table.column_names:
        if column not in spec.field_names or not pa.types.is_string(table.schema.field(column).type):
            continue
        field = spec.field(column)
        if field.datatype not in ("integer", "date", "datetime"):
            continue
        text = table.column(column).combine_chunks()
        distinct = pc.unique(text).to_pylist()
        firsts = {v: _first_value(v, field.datatype) for v in distinct if v is not None}
        values = pa.array([firsts.get(v) for v in distinct], field.arrow_type)
        typed = pc.take(values, pc.index_in(text, value_set=pa.array(distinct, pa.string())))
        suppressed = pc.fill_null(pc.equal(text, SUPPRESSED), False)
        if field.datatype == "integer" and column.endswith("_concept_id"):
            typed = pc.if_else(suppressed, pa.scalar(0, pa.int64()), typed)
        table = table.set_column(table.column_names.index(column), column, typed)
        if pc.any(suppressed).as_py():
            what = "0 (no matching concept)" if column.endswith("_concept_id") else "null"
            notes.append(f"{name}.{column}: suppressed values are written as {what} to keep the OMOP type.")
        if any(v != SUPPRESSED and str(firsts[v]) != v for v in firsts if firsts[v] is not None):
            notes.append(f"{name}.{column}: each generalised group is written as its first value.")
    return table, notes


def _first_value(label: str, datatype: str) -> int | dt.date | dt.datetime | None:
    """The first value of a generalised group: ``1960-1979`` -> 1960, ``1960s`` -> 1960-01-01,
    ``1961-Q2`` -> 1961-04-01, ``1961-05`` -> 1961-05-01; an ungeneralised value as itself; ``*`` -> None."""
    if datatype == "integer":
        match = re.match(r"^-?\d+", label)
        return int(match.group()) if match else None
    match = re.match(r"^(\d{4})(?:-(?:Q([1-4])|(\d{2}))(?:-(\d{2}))?)?", label)
    if match is None:
        return None
    year, quarter, month, day = match.groups()
    first = dt.datetime(int(year), (int(quarter) - 1) * 3 + 1 if quarter else int(month or 1), int(day or 1))
    if len(label) > 10 and label[:10] == first.date().isoformat():
        first = dt.datetime.fromisoformat(label)  # an ungeneralised date-time keeps its time
    return first if datatype == "datetime" else first.date()


def _measure_only(plan: ColumnPlan, profile: DeidProfile) -> HierarchySpec | None:
    """Without privacy models (HIPAA Safe Harbor) the quasi-identifiers that remain are still measured, as
    they stand: a two-level hierarchy that the search (k = 1) leaves at level 0."""
    if profile.privacy is None and plan.role is ColumnRole.QUASI_IDENTIFIER:
        return SuppressSpec()
    return None


def _composite(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """One string per row joining several columns' leaf strings (unit separator between them)."""
    parts = [leaf_strings(table.column(c)) for c in columns]
    return pc.binary_join_element_wise(*parts, "\x1f")


def _primary_condition(tables: dict[str, pa.Table], person: pa.Table) -> pa.Array:
    """Each person's most frequent condition concept (ties: the smaller id), "none" without any."""
    conditions = tables.get("condition_occurrence")
    original = tables["person"].column(PERSON_ID).combine_chunks()
    if conditions is None or conditions.num_rows == 0:
        return pa.array(["none"] * person.num_rows)
    counts = (
        conditions.select([PERSON_ID, "condition_concept_id"])
        .group_by([PERSON_ID, "condition_concept_id"])
        .aggregate([([], "count_all")])
        .sort_by(
            [(PERSON_ID, "ascending"), ("count_all", "descending"), ("condition_concept_id", "ascending")]
        )
    )
    ids = counts.column(PERSON_ID).to_numpy()
    first = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.array([], dtype=bool)
    top = dict(
        zip(
            ids[first].tolist(),
            (str(v) for v in counts.column("condition_concept_id").to_numpy()[first].tolist()),
            strict=True,
        )
    )
    # The person table was treated row by row in its original order, so positions still line up.
    return pa.array([top.get(p, "none") for p in original.to_pylist()])


def _report(
    *,
    dataset: str,
    unit: str,
    profile: DeidProfile,
    key: ProductKey,
    prepared: dict[str, _Prepared],
    anonymised: Anonymisation,
    hierarchies: Sequence[tuple[Hierarchy, HierarchySpec]],
    levels: dict[str, int],
    qi_table: str,
    before: pa.Table,
    tables: list[TableEntry],
    seconds: float,
    notes: list[str],
) -> DeidReport:
    qi_columns = [h.column for h, _ in hierarchies]
    columns: list[ColumnEntry] = []
    for t, p in prepared.items():
        by_column = {plan.column: plan for plan in p.plans}
        for r in p.treatments:
            plan = by_column[r.column]
            detail = f"into {', '.join(r.outputs)}" if r.outputs and r.outputs != (r.column,) else ""
            if r.nulled:
                detail = (
                    detail + "; " if detail else ""
                ) + f"{r.nulled:,} values could not be treated and were emptied"
            action = r.action
            if t == qi_table and r.column in levels:
                level = levels[r.column]
                action = (
                    f"{action}, generalised to level {level}"
                    if action != "generalise"
                    else f"generalised to level {level}"
                )
            columns.append(
                ColumnEntry(t, r.column, r.role.value, r.kind.value, action, plan.source, r.changed, detail)
            )
    qis = [
        QuasiIdentifierEntry(
            table=qi_table,
            column=h.column,
            hierarchy=spec.kind,
            level=anonymised.levels[h.column],
            height=h.height,
            distinct_before=len({row[0] for row in h.rows}),
            distinct_after=len({row[anonymised.levels[h.column]] for row in h.rows}),
        )
        for h, spec in hierarchies
    ]
    models = [] if profile.privacy is None else list(profile.privacy.models)
    sensitive = sorted(anonymised.measures.distinct_l)
    text_counts: dict[str, int] = {}
    for p in prepared.values():
        for kind, n in p.text_counts.items():
            text_counts[kind] = text_counts.get(kind, 0) + n
    return DeidReport(
        dataset=dataset,
        profile=profile.name,
        profile_title=profile.title,
        standard=profile.standard,
        key_fingerprint=key.fingerprint(),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        unit=unit,
        rows_in=anonymised.rows_in,
        rows_released=anonymised.table.num_rows,
        rows_suppressed=anonymised.rows_suppressed,
        suppression_limit=0.0 if profile.privacy is None else profile.privacy.suppression_limit,
        columns=columns,
        quasi_identifiers=qis,
        models=[_model_entry(m, anonymised, sensitive) for m in models],
        measures=anonymised.measures,
        risk_before=table_risk(before, qi_columns),
        risk_after=anonymised.risk,
        utility=anonymised.utility,
        lattice_size=anonymised.lattice_size,
        nodes_checked=anonymised.nodes_checked,
        search_seconds=round(seconds, 3),
        tables=tables,
        text_identifiers={k.value: text_counts.get(k.value, 0) for k in PhiKind if text_counts.get(k.value)},
        texts_scrubbed=sum(p.texts for p in prepared.values()),
        notes=notes,
    )


def _model_entry(model: PrivacyModel, a: Anonymisation, sensitive: list[str]) -> ModelEntry:
    """Whether the release meets one model, judged from the measures taken on the released rows."""
    m = a.measures
    if a.table.num_rows == 0:
        satisfied = False
    elif isinstance(model, KAnonymity):
        satisfied = m.k >= model.k
    elif isinstance(model, DistinctLDiversity):
        satisfied = all(v >= model.l for v in m.distinct_l.values())
    elif isinstance(model, EntropyLDiversity):
        satisfied = all(v >= model.l - 1e-9 for v in m.entropy_l.values())
    elif isinstance(model, TCloseness):
        satisfied = all(v <= model.t + 1e-9 for v in m.t.values())
    else:
        # Recursive (c, l)-diversity has no single figure to report; the search returns only transformations
        # whose every released class meets it (checked against brute force in tests/property).
        satisfied = True
    applies_to = [] if isinstance(model, KAnonymity) else sensitive
    return ModelEntry(model.kind, model.model_dump(exclude={"kind"}), applies_to, satisfied)
