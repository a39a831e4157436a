"""The direct-identifier step of de-identification: carry out each column's planned treatment on a table.

After `plan_columns` has decided what happens to every column, `treat_direct_identifiers` does it in Arrow:
columns are dropped or blanked, keys become keyed pseudonyms (HMAC-SM3 under the product key, so two
products cannot be joined unless the holder allows it), dates move by a per-person offset that keeps every
interval within a person, dates are cut to the year, ages over 89 grouped, addresses cut to the district
(or city, or province) and resident IDs replaced by the facts their digits carry, generalised. Free-text
scrubbing and quasi-identifier generalisation are left to the text scrubber and the lattice search, and
reported as deferred.

Work is vectorised over distinct values: a pseudonym or an offset is computed once per distinct value
(about 2 microseconds of HMAC each) and spread back with a take, so a million-row column takes seconds.

This module reads identifiable values and never logs them: reports and errors hold column names and counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medspace.core import ConfigError, InputError, check_resident_id, resident_id_sex
from medspace.privacy._address import address_units
from medspace.privacy._keys import ProductKey
from medspace.privacy._profile import (
    ColumnPlan,
    DeriveResidentIdFacts,
    Generalise,
    Keep,
    Pseudonymise,
    Remove,
    ResidentIdFact,
    ScrubText,
    ShiftDate,
    TopCodeAge,
    TruncateAddress,
    YearOnly,
)
from medspace.privacy._roles import KIND_ROLES, ColumnRole, IdentifierKind, RoleProposal

__all__ = ["ColumnTreatmentReport", "cut_address", "treat_direct_identifiers"]

_K = IdentifierKind

# Time units of Arrow timestamps, per day.
_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}

# Ages as Chinese LIS and RIS exports write them (no standard governs the text): whole years, optionally
# with 岁/周岁 or an English unit, optionally followed by months or days ("45岁", "45岁3月", "45Y").
_AGE_YEARS = re.compile(
    r"\s*(\d{1,3})(?:\.\d+)?\s*(?:周岁|岁|y|yr|yrs|years?)?(?:\s*\d{1,2}\s*(?:个月|月|天|日))?\s*", re.I
)
# Ages under a year ("3月", "5天", "2周"): never over 89.
_AGE_INFANT = re.compile(r"\s*\d{1,4}\s*(?:个月|月|周|天|日|小时|时|m|d|w|h)\s*", re.I)
# GB/T 2260 administrative division codes: 6 digits (province 2, prefecture 2, county 2).
_REGION_CODE = re.compile(r"[1-9][0-9]{5}")

_FACT_KINDS: dict[ResidentIdFact, IdentifierKind] = {
    "region": _K.REGION,
    "birth_year": _K.BIRTH_YEAR,
    "sex": _K.SEX,
}


@dataclass(frozen=True)
class ColumnTreatmentReport:
    """What the treatment did to one column, in counts only (never values).

    Attributes:
        table: The table, as the plan names it.
        column: The column treated.
        role: The column's role.
        kind: The column's kind.
        action: The treatment's action.
        rows: Rows that held a value before the treatment.
        changed: Rows whose value was changed, replaced or removed.
        nulled: Rows left without a value because none could be kept safely: an invalid resident ID, an
            address with no recognisable unit at the level kept, an age written in an unknown way, a date
            on a row without a person.
        deferred: True for ``scrub_text`` and ``generalise``: left unchanged here for the text scrubber or
            the lattice search.
        outputs: The columns that carry the result: the column itself, nothing when it was dropped, or the
            facts derived from a resident ID.
        derived: Role proposals for columns this step created (facts derived from a resident ID), to plan
            with `plan_columns`.
    """

    table: str | None
    column: str
    role: ColumnRole
    kind: IdentifierKind
    action: str
    rows: int
    changed: int
    nulled: int
    deferred: bool
    outputs: tuple[str, ...]
    derived: tuple[RoleProposal, ...] = ()


def _combined(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values


def _map_distinct(values: pa.Array, fn: Callable[[Any], Any], out_type: pa.DataType) -> pa.Array:
    """Apply ``fn`` once per distinct non-null value and spread the results back; nulls stay null."""
    encoded = values.dictionary_encode()
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], out_type)
    return mapped.take(encoded.indices)


def _count(mask: pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)


def _changes(before: pa.Array, after: pa.Array) -> tuple[int, int]:
    """Rows changed and rows nulled between two arrays of one type."""
    present = pc.is_valid(before)
    nulled = _count(pc.and_(present, pc.is_null(after)))
    changed = _count(pc.and_(present, pc.not_equal(before, after))) + nulled
    return changed, nulled


def _key_text(values: pa.Array, column: str) -> pa.Array:
    """Values as the text the HMAC is computed over: strings as they are, integers in decimal."""
    if pa.types.is_integer(values.type) or pa.types.is_string(values.type):
        return values.cast(pa.string())
    if pa.types.is_large_string(values.type):
        return values.cast(pa.string())
    raise InputError(
        f"{column} is {values.type}; keys and pseudonymised columns must be text or integers",
        field=column,
        rule="key type",
    )


# --- pseudonyms and date offsets ----------------------------------------------------------------------------


def _pseudonymise(values: pa.Array, treatment: Pseudonymise, key: ProductKey, column: str) -> pa.Array:
    if pa.types.is_integer(values.type):
        # Integer keys (OMOP person_id, *_occurrence_id) stay integers so joins and the CDM schema still work.
        return _map_distinct(values, lambda v: key.pseudonym_int(str(v)), pa.int64())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    return _map_distinct(values, lambda v: key.pseudonym(v, length=treatment.length), pa.string())


def _offsets(person: pa.Array, key: ProductKey, max_days: int, column: str) -> pa.Array:
    """Each row's date offset in days (int64), null where the row has no person."""
    text = _key_text(person, column)
    return _map_distinct(text, lambda v: key.date_offset_days(v, max_days), pa.int64())


def _shift(values: pa.Array, offsets: pa.Array, column: str) -> pa.Array:
    kind = values.type
    if pa.types.is_date32(kind):
        days = values.cast(pa.int32()).cast(pa.int64())
        return pc.add_checked(days, offsets).cast(pa.int32()).cast(kind)
    if pa.types.is_date64(kind):
        return pc.add_checked(values.cast(pa.int64()), pc.multiply(offsets, _PER_DAY["ms"])).cast(kind)
    if pa.types.is_timestamp(kind):
        # Whole days in the timestamp's own unit: the time of day stays, so intervals stay exact. (China
        # keeps no daylight saving time, so local clock times do not move either.)
        step = pc.multiply(offsets, _PER_DAY[kind.unit])
        return pc.add_checked(values.cast(pa.int64()), step).cast(kind)
    raise InputError(
        f"{column} is {kind}, not a date; stage it as a date or timestamp before shifting it",
        field=column,
        rule="shift_date",
    )


# --- dates and ages -----------------------------------------------------------------------------------------


def _years(values: pa.Array, column: str, action: str) -> pa.Array:
    if not (pa.types.is_date(values.type) or pa.types.is_timestamp(values.type)):
        raise InputError(
            f"{column} is {values.type}, not a date; stage it as a date or timestamp first",
            field=column,
            rule=action,
        )
    return pc.year(values)


def _year_only(values: pa.Array, treatment: YearOnly, today: date, column: str) -> pa.Array:
    years = _years(values, column, treatment.action)
    if treatment.aggregate_ages_above is not None:
        # Born in or before this year means possibly older than the limit: one category, written as this year.
        latest = today.year - treatment.aggregate_ages_above - 1
        years = pc.if_else(pc.less(years, latest), latest, years)
    if treatment.output == "year":
        return years
    filled = pc.fill_null(years, 1970).to_numpy()
    days = (filled - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int32)
    first = pa.array(days, pa.int32(), mask=pc.is_null(years).to_numpy(zero_copy_only=False))
    return first.cast(pa.date32()).cast(values.type)


def _top_code_text_age(value: str, above: int) -> str | None:
    match = _AGE_YEARS.fullmatch(value)
    if match is not None:
        return f"{above + 1}+" if int(match.group(1)) > above else value
    if _AGE_INFANT.fullmatch(value):
        return value
    # Unreadable ages could hide "九十五岁": withdraw them rather than risk it.
    return None


def _top_code(
    values: pa.Array, treatment: TopCodeAge, kind: IdentifierKind, today: date, column: str
) -> pa.Array:
    above = treatment.above
    numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
    if kind is _K.BIRTH_YEAR:
        if not numeric:
            raise InputError(
                f"{column} is {values.type}; years of birth must be numbers to top-code them",
                field=column,
                rule="top_code_age",
            )
        latest = pa.scalar(today.year - above - 1).cast(values.type)
        return pc.if_else(pc.less(values, latest), latest, values)
    if numeric:
        # above + 1 reads "that age or older" and keeps the column numeric for banding (see TopCodeAge).
        grouped = pa.scalar(above + 1).cast(values.type)
        return pc.if_else(pc.greater(values, pa.scalar(above).cast(values.type)), grouped, values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return _map_distinct(values, lambda v: _top_code_text_age(v, above), values.type)
    raise InputError(
        f"{column} is {values.type}; ages must be numbers or text", field=column, rule="top_code_age"
    )


# --- addresses and region codes -----------------------------------------------------------------------------


def cut_address(text: str, level: Literal["district", "city", "province"] = "district") -> str | None:
    """Cut a Chinese address (or a GB/T 2260 region code) after an administrative level.

    ``district`` keeps province, prefecture and county (省 + 市 + 区/县/县级市/旗); ``city`` keeps province
    and prefecture (for the four municipalities, the municipality); ``province`` keeps the province. Units
    are found by `address_units`; whatever is missing stays missing, and an address with no unit at the level
    kept gives None rather than a guess: 南京市玄武区 cut to the province is None, because no gazetteer says
    which province 南京市 is in. A 6-digit region code is cut by its digits: ``NNNN00`` for the city,
    ``NN0000`` for the province.

    Args:
        text: The address or region code.
        level: The finest level kept.

    Returns:
        The kept part, or None if nothing can be kept.

    Example:
        >>> cut_address("江苏省南京市玄武区中山路18号3栋")
        '江苏省南京市玄武区'
        >>> cut_address("上海市浦东新区张江路12弄3号", "city")
        '上海市'
        >>> cut_address("310115", "province")
        '310000'
        >>> cut_address("中山路18号") is None
        True
    """
    code = text.strip()
    if _REGION_CODE.fullmatch(code):
        return {"district": code, "city": code[:4] + "00", "province": code[:2] + "0000"}[level]
    units = address_units(text)
    parts = {
        "district": (units.province, units.prefecture, units.county),
        "city": (units.province,) if units.municipality else (units.province, units.prefecture),
        "province": (units.province,),
    }[level]
    kept = "".join(part for part in parts if part)
    return kept or None


def _truncate(values: pa.Array, treatment: TruncateAddress, column: str) -> pa.Array:
    level = treatment.level
    if pa.types.is_integer(values.type):
        return _map_distinct(values, lambda v: _cut_code_int(v, level), values.type)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return _map_distinct(values, lambda v: cut_address(v, level), values.type)
    raise InputError(
        f"{column} is {values.type}; addresses must be text and region codes text or integers",
        field=column,
        rule="truncate_address",
    )


def _cut_code_int(value: int, level: Literal["district", "city", "province"]) -> int | None:
    if not _REGION_CODE.fullmatch(str(value)):
        return None
    cut = cut_address(str(value), level)
    return int(cut) if cut is not None else None


# --- resident IDs -------------------------------------------------------------------------------------------


def _resident_id_facts(
    values: pa.Array, treatment: DeriveResidentIdFacts, today: date, column: str
) -> tuple[dict[ResidentIdFact, pa.Array], int]:
    """The facts kept, one array each, and how many IDs were invalid (their facts are null)."""
    text = _key_text(values, column)
    encoded = text.dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    valid = [check_resident_id(v, today).valid for v in distinct]
    facts: dict[str, list[Any]] = {
        # GB 11643-1999: digits 1-6 the county's GB/T 2260 code, whose first four digits name the prefecture.
        "region": [v[:4] + "00" if ok else None for v, ok in zip(distinct, valid, strict=True)],
        # Digits 7-14 the birth date; only the year is kept.
        "birth_year": [int(v[6:10]) if ok else None for v, ok in zip(distinct, valid, strict=True)],
        # Digit 17, the sequence code: odd for men, even for women.
        "sex": [resident_id_sex(v) if ok else None for v, ok in zip(distinct, valid, strict=True)],
    }
    types = {"region": pa.string(), "birth_year": pa.int64(), "sex": pa.string()}
    out = {fact: pa.array(facts[fact], types[fact]).take(encoded.indices) for fact in treatment.keep}
    invalid_codes = pa.array([i for i, ok in enumerate(valid) if not ok], pa.int32())
    invalid = _count(pc.is_in(encoded.indices, value_set=invalid_codes))
    return out, invalid


# --- the step -----------------------------------------------------------------------------------------------


def _check_plans(table: pa.Table, plans: Sequence[ColumnPlan]) -> dict[str, ColumnPlan]:
    tables = sorted({p.table for p in plans if p.table is not None})
    if len(tables) > 1:
        raise ConfigError(
            f"the plans are for {len(tables)} tables ({', '.join(tables)}); pass the plans of one table"
        )
    by_column: dict[str, ColumnPlan] = {}
    for plan in plans:
        if plan.column in by_column:
            raise ConfigError(f"two plans for column {plan.column}; keep one", field=plan.column)
        by_column[plan.column] = plan
    unknown = sorted(set(by_column) - set(table.column_names))
    if unknown:
        raise ConfigError(f"plans name columns the table does not have: {', '.join(unknown)}")
    # Fail closed: a column nobody decided about could be an identifier nobody noticed.
    unplanned = [c for c in table.column_names if c not in by_column]
    if unplanned:
        raise ConfigError(
            f"no plan for columns {', '.join(unplanned)}; plan every column (propose_roles, then "
            "plan_columns) so none is released undecided"
        )
    return by_column


def treat_direct_identifiers(
    table: pa.Table,
    plans: Sequence[ColumnPlan],
    *,
    key: ProductKey,
    person_column: str | None = None,
    date_shift_days: int | None = None,
    today: date | None = None,
) -> tuple[pa.Table, list[ColumnTreatmentReport]]:
    """Carry out the planned treatment of every column of one table.

    Treatments: ``remove`` drops the column (or blanks it); ``pseudonymise`` replaces text by
    ``key.pseudonym`` and integers by ``key.pseudonym_int``; ``shift_date`` moves every date of a person
    by ``key.date_offset_days`` of the person's original key, so the same person moves the same way in every
    table and every interval within a person is kept; ``year_only`` keeps the year; ``top_code_age`` groups
    ages over the limit; ``truncate_address`` cuts addresses and region codes (see `cut_address`);
    ``derive_resident_id_facts`` replaces a resident ID by ``<column>_region``, ``<column>_birth_year`` and
    ``<column>_sex``; ``keep``, ``scrub_text`` and ``generalise`` leave the column as it is.

    Args:
        table: One table; every column must have a plan.
        plans: The plans of this table's columns, from `plan_columns`.
        key: The product key.
        person_column: The column that identifies the person of each row; needed to shift dates. Offsets
            use its original value (as text; integers in decimal), before any pseudonymisation.
        date_shift_days: The largest offset in days (the profile's ``date_shift_days``).
        today: The reference date for ages and years of birth; today if not given.

    Returns:
        The treated table (columns in the original order, derived facts in place of their resident ID) and
        one report per column.

    Raises:
        ConfigError: A column has no plan or two, the plans span several tables, or dates are to be shifted
            without a person column or a shift.
        InputError: A column's type does not suit its treatment (a date stored as text, say).

    Example:
        >>> from medspace.privacy._profile import load_profile, plan_columns
        >>> from medspace.privacy._roles import propose_roles
        >>> t = pa.table({"person_id": [7, 7], "name": ["张伟", "张伟"], "age": [93, 40]})
        >>> plans = plan_columns(propose_roles(t, table_name="person"), load_profile("hipaa-safe-harbor"))
        >>> out, reports = treat_direct_identifiers(t, plans, key=ProductKey.from_hex("00" * 32))
        >>> out.column_names, out.column("age").to_pylist()
        (['person_id', 'age'], [90, 40])
        >>> [(r.column, r.action, r.changed) for r in reports]
        [('person_id', 'pseudonymise', 2), ('name', 'remove', 2), ('age', 'top_code_age', 1)]
    """
    by_column = _check_plans(table, plans)
    today = today or date.today()
    if person_column is not None and person_column not in table.column_names:
        raise ConfigError(f"the person column {person_column} is not in the table", field=person_column)
    shifts = [c for c, p in by_column.items() if isinstance(p.treatment, ShiftDate)]
    offsets: pa.Array | None = None
    if shifts:
        if person_column is None:
            raise ConfigError(
                f"{', '.join(shifts)} are to be shifted per person; pass person_column (e.g. person_id), "
                "joining the link stage's person_id to the table first if it has none",
                field=shifts[0],
                rule="shift_date",
            )
        if date_shift_days is None:
            raise ConfigError(
                "dates are to be shifted; pass date_shift_days (the profile's date_shift_days)",
                field=shifts[0],
                rule="shift_date",
            )
        # From the original person values, before the person column itself is pseudonymised.
        offsets = _offsets(_combined(table.column(person_column)), key, date_shift_days, person_column)

    names: list[str] = []
    arrays: list[pa.Array] = []
    reports: list[ColumnTreatmentReport] = []
    for column in table.column_names:
        plan = by_column[column]
        values = _combined(table.column(column))
        treatment = plan.treatment
        rows = len(values) - values.null_count
        outputs: tuple[str, ...] = (column,)
        derived: tuple[RoleProposal, ...] = ()
        changed = nulled = 0
        result: pa.Array | None = values
        if isinstance(treatment, Remove):
            result = pa.nulls(len(values), values.type) if treatment.blank else None
            outputs = (column,) if treatment.blank else ()
            changed = rows
        elif isinstance(treatment, Pseudonymise):
            result = _pseudonymise(values, treatment, key, column)
            changed = rows
        elif isinstance(treatment, ShiftDate):
            assert offsets is not None  # set above whenever a column is shifted
            result = _shift(values, offsets, column)
            nulled = _count(pc.and_(pc.is_valid(values), pc.is_null(result)))
            changed = rows
        elif isinstance(treatment, YearOnly):
            result = _year_only(values, treatment, today, column)
            changed = rows
        elif isinstance(treatment, TopCodeAge):
            result = _top_code(values, treatment, plan.kind, today, column)
            changed, nulled = _changes(values, result)
        elif isinstance(treatment, TruncateAddress):
            result = _truncate(values, treatment, column)
            changed, nulled = _changes(values, result)
        elif isinstance(treatment, DeriveResidentIdFacts):
            facts, nulled = _resident_id_facts(values, treatment, today, column)
            changed = rows
            outputs = tuple(f"{column}_{fact}" for fact in facts)
            taken = sorted(set(outputs) & set(table.column_names))
            if taken:
                raise ConfigError(
                    f"the facts of {column} would overwrite columns {', '.join(taken)}; rename them first",
                    field=column,
                )
            valid_share = (rows - nulled) / rows if rows else None
            derived = tuple(
                RoleProposal(
                    plan.table,
                    name,
                    KIND_ROLES[_FACT_KINDS[fact]],
                    _FACT_KINDS[fact],
                    "derived",
                    f"{fact} derived from the resident IDs in {column} (GB 11643-1999)",
                    valid_share,
                    rows,
                )
                for name, fact in zip(outputs, facts, strict=True)
            )
            names.extend(outputs)
            arrays.extend(facts.values())
            result = None
        else:
            assert isinstance(treatment, Keep | ScrubText | Generalise)
        if result is not None:
            names.append(column)
            arrays.append(result)
        reports.append(
            ColumnTreatmentReport(
                table=plan.table,
                column=column,
                role=plan.role,
                kind=plan.kind,
                action=treatment.action,
                rows=rows,
                changed=changed,
                nulled=nulled,
                deferred=isinstance(treatment, ScrubText | Generalise),
                outputs=outputs,
                derived=derived,
            )
        )
    # Built on an empty selection rather than pa.table(arrays) so that the row count survives even when every
    # column is removed.
    out = table.select([])
    for name, array in zip(names, arrays, strict=True):
        out = out.append_column(name, array)
    return out, reports
