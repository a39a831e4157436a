"""De-identification profiles: what to do with each kind of column, confirmed per column, as data.

A profile is the "process" decision of GB/T 37964-2019 written down: for every `IdentifierKind` the
treatment its columns get (remove, pseudonymise, shift dates, cut addresses, generalise, ...), explicit rules
that confirm or override the automatic `RoleProposal` of named columns, the generalisation hierarchy of each
quasi-identifier kind, and the privacy models the released table must satisfy. Profiles ship as YAML under
``data/profiles/`` for GB/T 39725-2020 levels 2 and 3 and for HIPAA Safe Harbor; a hospital adds its own as
another YAML file. Every reference (kinds, actions, hierarchies, hierarchy files) is checked when the profile
loads, so a mistake fails there, naming the file and the field.

`plan_columns` merges a table's proposals with a profile into one `ColumnPlan` per column: the decision the
direct-identifier step (`treat_direct_identifiers`) and the lattice search carry out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from medspace.core import SpecError
from medspace.privacy._hierarchy import (
    ArxCsvSpec,
    BandsSpec,
    DateSpec,
    HierarchySpec,
    OccupationSpec,
    RegionSpec,
)
from medspace.privacy._models import PrivacyModel
from medspace.privacy._roles import KIND_ROLES, ColumnRole, IdentifierKind, RoleProposal

__all__ = [
    "ColumnPlan",
    "ColumnRule",
    "DeidProfile",
    "DeriveResidentIdFacts",
    "Generalise",
    "Keep",
    "KeyPolicy",
    "PrivacySettings",
    "Pseudonymise",
    "Remove",
    "ResidentIdFact",
    "ScrubText",
    "ShiftDate",
    "TopCodeAge",
    "Treatment",
    "TreatmentModel",
    "TruncateAddress",
    "YearOnly",
    "load_profile",
    "plan_columns",
    "profile_names",
]

_K = IdentifierKind


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- treatments: one typed model per action -----------------------------------------------------------------


class Remove(_Frozen):
    """Drop the column (GB/T 37964: suppression of a direct identifier).

    ``blank: true`` keeps the column with every value null instead, so a table keeps its schema (an OMOP
    table stays conformant when an optional field such as ``month_of_birth`` is withdrawn).
    """

    action: Literal["remove"] = "remove"
    blank: bool = False


class Keep(_Frozen):
    """Leave the column as it is."""

    action: Literal["keep"] = "keep"


class Pseudonymise(_Frozen):
    """Replace each value by its keyed pseudonym (HMAC-SM3 under the product key; GB/T 37964
    pseudonymisation). Text becomes ``length`` hex digits; integers stay integers (63-bit)."""

    action: Literal["pseudonymise"] = "pseudonymise"
    # 16 hex digits (64 bits) keeps collisions negligible for a billion values; 64 is the whole SM3 digest.
    length: int = Field(24, ge=16, le=64)


class ShiftDate(_Frozen):
    """Shift every date of a person by that person's offset (at most the profile's ``date_shift_days``), so
    intervals within a person are kept exactly while calendar dates are not released."""

    action: Literal["shift_date"] = "shift_date"


class YearOnly(_Frozen):
    """Keep only the year of a date (HIPAA 164.514(b)(2)(i)(C)).

    ``aggregate_ages_above``: for birth dates, years of birth that make a person older than this at the
    reference date become one category, written as the latest such year ("this year or earlier"), since the
    year alone is "indicative of" an age over 89. ``output``: ``year`` writes the year as an integer;
    ``first_of_year`` keeps the column's type with every date set to 1 January.
    """

    action: Literal["year_only"] = "year_only"
    aggregate_ages_above: int | None = Field(None, ge=1)
    output: Literal["year", "first_of_year"] = "year"


class TopCodeAge(_Frozen):
    """Group ages over ``above`` into one category (HIPAA: "aggregated into a single category of age 90 or
    older"). Numeric ages become ``above + 1`` (read: that age or older) so the column stays numeric; ages
    written as text become ``"90+"``; years of birth implying such an age become the latest such year."""

    action: Literal["top_code_age"] = "top_code_age"
    above: int = Field(89, ge=1)


class TruncateAddress(_Frozen):
    """Cut an address after the given administrative level (GB/T 2260): district keeps 省 + 市 + 区/县,
    city keeps 省 + 市, province keeps 省. GB/T 2260 region codes are cut the same way (``NNNN00``,
    ``NN0000``)."""

    action: Literal["truncate_address"] = "truncate_address"
    level: Literal["district", "city", "province"] = "district"


ResidentIdFact = Literal["region", "birth_year", "sex"]


class DeriveResidentIdFacts(_Frozen):
    """Replace a resident ID by generalised facts read from its digits (GB 11643-1999): the
    prefecture-level region (GB/T 2260 ``NNNN00``), the birth year and the sex (sequence-code parity)."""

    action: Literal["derive_resident_id_facts"] = "derive_resident_id_facts"
    keep: tuple[ResidentIdFact, ...] = ("region", "birth_year", "sex")

    @model_validator(mode="after")
    def _distinct(self) -> DeriveResidentIdFacts:
        if len(set(self.keep)) != len(self.keep):
            raise ValueError(f"keep lists a fact twice: {list(self.keep)}")
        return self


class ScrubText(_Frozen):
    """Scrub identifiers out of free text; the text scrubber does it, after the direct-identifier step."""

    action: Literal["scrub_text"] = "scrub_text"


class Generalise(_Frozen):
    """Generalise a quasi-identifier through its hierarchy, to the level the lattice search chooses."""

    action: Literal["generalise"] = "generalise"


TreatmentModel = (
    Remove
    | Keep
    | Pseudonymise
    | ShiftDate
    | YearOnly
    | TopCodeAge
    | TruncateAddress
    | DeriveResidentIdFacts
    | ScrubText
    | Generalise
)
Treatment = Annotated[TreatmentModel, Field(discriminator="action")]

_DATE_KINDS = frozenset({_K.DATE, _K.BIRTH_DATE})
# The kinds each action can be applied to; actions not listed apply to any kind.
_APPLIES_TO: dict[str, frozenset[IdentifierKind]] = {
    "shift_date": _DATE_KINDS,
    "year_only": _DATE_KINDS,
    "top_code_age": frozenset({_K.AGE, _K.BIRTH_YEAR}),
    "truncate_address": frozenset({_K.ADDRESS, _K.REGION}),
    "derive_resident_id_facts": frozenset({_K.RESIDENT_ID}),
}


def _invalid(field: str, message: str) -> PydanticCustomError:
    """A validation error that names the field it is about, for checks that span several fields."""
    # The message is a template pydantic formats with the context; double the braces it must keep.
    text = message.replace("{", "{{").replace("}", "}}")
    return PydanticCustomError("profile", text, {"field": field})


def _check_applies(action: str, kind: IdentifierKind, where: str) -> None:
    allowed = _APPLIES_TO.get(action)
    if allowed is not None and kind not in allowed:
        raise _invalid(where, f"{action} applies to {', '.join(sorted(allowed))} columns, not {kind.value}")


def _check_hierarchy(
    kind: IdentifierKind, spec: HierarchySpec, treatment: TreatmentModel, where: str
) -> None:
    """The hierarchy must fit the values that reach it after the treatment."""
    if isinstance(treatment, Remove):
        raise _invalid(where, f"{kind.value} columns are removed, so a hierarchy for them has no use")
    if isinstance(spec, DateSpec) and (kind not in _DATE_KINDS or isinstance(treatment, YearOnly)):
        raise _invalid(where, f"a date hierarchy needs full dates, which {kind.value} columns do not hold")
    if isinstance(spec, RegionSpec) and kind is not _K.REGION:
        raise _invalid(where, "a region hierarchy needs GB/T 2260 codes; use it for region columns")
    if isinstance(spec, OccupationSpec) and kind is not _K.OCCUPATION:
        raise _invalid(where, "the occupation hierarchy is for occupation columns")
    numeric = kind in (_K.AGE, _K.BIRTH_YEAR) or isinstance(treatment, YearOnly)
    if isinstance(spec, BandsSpec) and not numeric:
        raise _invalid(where, f"bands need whole numbers (ages, years); {kind.value} columns are not")


# --- the profile --------------------------------------------------------------------------------------------


class ColumnRule(_Frozen):
    """An explicit decision about the columns whose name matches ``column``.

    ``column`` is ``table.column`` or just ``column`` (any table), and may use shell wildcards (``*``, ``?``,
    ``[...]``), compared case-sensitively. Whatever the rule does not set comes from the proposal and the
    profile's defaults: the kind from the proposal, the role from the kind, the treatment from the kind, the
    hierarchy from the kind. A treatment other than remove, keep, pseudonymise, scrub_text or generalise
    needs the rule to name the kind, so that it is checked against the kind when the profile loads.
    """

    column: str = Field(min_length=1)
    role: ColumnRole | None = None
    kind: IdentifierKind | None = None
    treatment: Treatment | None = None
    hierarchy: HierarchySpec | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRule:
        if self.role is None and self.kind is None and self.treatment is None and self.hierarchy is None:
            raise ValueError(f"rule {self.column!r} sets none of role, kind, treatment or hierarchy")
        if self.treatment is not None:
            action = self.treatment.action
            if action in _APPLIES_TO and self.kind is None:
                raise ValueError(
                    f"rule {self.column!r}: {action} needs the rule to name the kind it applies to"
                )
            if self.kind is not None:
                _check_applies(action, self.kind, f"rule {self.column!r}")
        if self.hierarchy is not None:
            role = self.role or (KIND_ROLES[self.kind] if self.kind is not None else None)
            if role is not ColumnRole.QUASI_IDENTIFIER:
                raise ValueError(
                    f"rule {self.column!r}: a hierarchy is for quasi-identifiers; set role: quasi_identifier"
                )
        return self

    def matches(self, table: str | None, column: str) -> bool:
        """Whether this rule applies to ``column`` of ``table``."""
        if "." in self.column:
            return table is not None and fnmatchcase(f"{table}.{column}", self.column)
        return fnmatchcase(column, self.column)


class PrivacySettings(_Frozen):
    """The privacy models the generalised table must satisfy, and how many rows may be suppressed."""

    models: tuple[PrivacyModel, ...] = Field(min_length=1)
    suppression_limit: float = Field(0.0, ge=0, le=1)


KeyPolicy = Literal["held_by_holder", "ephemeral"]


class DeidProfile(_Frozen):
    """A de-identification profile: treatments per kind, per-column rules, hierarchies and privacy models.

    Attributes:
        name: The profile's name, as ``load_profile`` takes it (the file name without ``.yaml``).
        title: One line for reports.
        standard: The standards and clauses the profile implements.
        key_policy: What happens to the product key after the build. ``held_by_holder``: the data holder
            keeps it, so the holder (and only the holder) can re-link pseudonyms to patients or allow two
            products to be joined: the data are de-identified, not anonymised (PIPL art. 73(3)).
            ``ephemeral``: a fresh key is generated for the build and destroyed after it, so no one can
            translate a pseudonym back (HIPAA 164.514(c) re-identification codes; the PIPL art. 73(4)
            direction).
        date_shift_days: The largest per-person date offset in days, or None when no treatment shifts dates.
        treatments: The treatment of each kind. Every direct-identifier and quasi-identifier kind needs one;
            sensitive and insensitive kinds default to keep.
        columns: Explicit rules; the first rule matching a column decides.
        quasi_identifiers: The generalisation hierarchy of each quasi-identifier kind.
        privacy: The privacy models and suppression limit, or None when the profile does not generalise
            (HIPAA Safe Harbor is a removal method).

    Example:
        >>> profile = load_profile("gbt39725-level3")
        >>> profile.treatment_for(IdentifierKind.NAME).action, profile.date_shift_days
        ('remove', 365)
    """

    # The file name without .yaml: lower case, digits and hyphens (medspace's convention, no standard).
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    title: str
    standard: str
    description: str | None = None
    key_policy: KeyPolicy
    date_shift_days: int | None = Field(None, ge=1, le=3650)
    treatments: dict[IdentifierKind, Treatment]
    columns: tuple[ColumnRule, ...] = ()
    quasi_identifiers: dict[IdentifierKind, HierarchySpec] = Field(default_factory=dict)
    privacy: PrivacySettings | None = None

    @model_validator(mode="after")
    def _complete_and_consistent(self) -> DeidProfile:
        missing = [
            kind.value
            for kind in IdentifierKind
            if KIND_ROLES[kind] in (ColumnRole.DIRECT_IDENTIFIER, ColumnRole.QUASI_IDENTIFIER)
            and kind not in self.treatments
        ]
        if missing:
            raise _invalid(
                "treatments",
                f"no treatment for {', '.join(missing)}; every direct- and quasi-identifier kind needs one "
                "(keep is a decision too)",
            )
        for kind, treatment in self.treatments.items():
            _check_applies(treatment.action, kind, f"treatments.{kind.value}")
        for kind, spec in self.quasi_identifiers.items():
            _check_hierarchy(kind, spec, self.treatment_for(kind), f"quasi_identifiers.{kind.value}")
        for kind, treatment in self.treatments.items():
            if isinstance(treatment, Generalise) and kind not in self.quasi_identifiers:
                raise _invalid(
                    f"treatments.{kind.value}",
                    f"generalise needs a hierarchy; add {kind.value} to quasi_identifiers",
                )
        patterns = [rule.column for rule in self.columns]
        repeated = sorted({p for p in patterns if patterns.count(p) > 1})
        if repeated:
            raise _invalid("columns", f"rules repeated for {', '.join(repeated)}; keep one per pattern")
        for number, rule in enumerate(self.columns):
            where = f"columns.{number}"
            unresolved = rule.kind is None or rule.kind not in self.quasi_identifiers
            if isinstance(rule.treatment, Generalise) and rule.hierarchy is None and unresolved:
                raise _invalid(where, "generalise needs a hierarchy; give the rule a hierarchy")
            if rule.hierarchy is not None and rule.kind is not None:
                treatment = rule.treatment or self.treatment_for(rule.kind)
                _check_hierarchy(rule.kind, rule.hierarchy, treatment, where)
        shifts = any(isinstance(t, ShiftDate) for t in self._all_treatments())
        if shifts and self.date_shift_days is None:
            raise _invalid("date_shift_days", "dates are shifted, so set the largest offset in days")
        if not shifts and self.date_shift_days is not None:
            raise _invalid("date_shift_days", "no treatment shifts dates; remove date_shift_days")
        generalises = any(isinstance(t, Generalise) for t in self._all_treatments())
        if generalises and self.privacy is None:
            raise _invalid(
                "privacy", "quasi-identifiers are generalised, so name the privacy models to reach"
            )
        return self

    def _all_treatments(self) -> Iterable[TreatmentModel]:
        yield from self.treatments.values()
        yield from (rule.treatment for rule in self.columns if rule.treatment is not None)

    def treatment_for(self, kind: IdentifierKind) -> TreatmentModel:
        """The treatment of columns of ``kind`` (keep for sensitive and insensitive kinds not listed)."""
        return self.treatments.get(kind, Keep())

    def hierarchy_files(self) -> list[Path]:
        """Every ARX hierarchy file the profile refers to."""
        specs = [*self.quasi_identifiers.values(), *(r.hierarchy for r in self.columns if r.hierarchy)]
        return [spec.path for spec in specs if isinstance(spec, ArxCsvSpec)]


# --- plans --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnPlan:
    """The decision about one column: its role and kind, its treatment, its hierarchy, and where they came
    from (``profile`` when an explicit rule matched, ``proposed`` when the automatic proposal stood).

    ``treatment`` is carried out by `treat_direct_identifiers` (``scrub_text`` and ``generalise`` are left to
    the text scrubber and the lattice search). ``hierarchy`` is set for quasi-identifiers that stay in the
    table: the lattice search generalises the column through it after the treatment (an age top-coded at
    89, then banded), so a quasi-identifier with a hierarchy enters the search whatever its treatment.

    Example:
        >>> from medspace.privacy._roles import propose_roles
        >>> import pyarrow as pa
        >>> proposals = propose_roles(pa.table({"age": [34, 91]}))
        >>> plan = plan_columns(proposals, load_profile("hipaa-safe-harbor"))[0]
        >>> print(plan.role, plan.kind, plan.treatment.action, plan.source)
        quasi_identifier age top_code_age proposed
    """

    table: str | None
    column: str
    role: ColumnRole
    kind: IdentifierKind
    treatment: TreatmentModel
    hierarchy: HierarchySpec | None
    source: Literal["profile", "proposed"]
    reason: str


def plan_columns(proposals: Sequence[RoleProposal], profile: DeidProfile) -> list[ColumnPlan]:
    """Merge role proposals with a profile's explicit rules into one plan per column.

    The first profile rule whose pattern matches a column wins over the proposal for what it sets; the rest
    follows from the kind: role from `KIND_ROLES` when the rule changed the kind, treatment from the
    profile's ``treatments``, hierarchy (quasi-identifiers only) from ``quasi_identifiers``.

    Args:
        proposals: From `propose_roles`, for one table or several.
        profile: The de-identification profile.

    Returns:
        One plan per proposal, in the same order.

    Raises:
        SpecError: If a rule's treatment does not apply to the proposed kind of a column it matches, or a
            column is to be generalised without a hierarchy.

    Example:
        >>> from medspace.privacy._roles import propose_roles
        >>> import pyarrow as pa
        >>> proposals = propose_roles(pa.table({"person_source_value": ["P1"]}), table_name="person")
        >>> plan = plan_columns(proposals, load_profile("gbt39725-level2"))[0]
        >>> print(plan.kind, plan.treatment.action)
        person_key pseudonymise
    """
    plans: list[ColumnPlan] = []
    for proposal in proposals:
        rule = next((r for r in profile.columns if r.matches(proposal.table, proposal.column)), None)
        where = proposal.qualified_name
        if rule is None:
            kind, role, treatment, hierarchy = proposal.kind, proposal.role, None, None
            source: Literal["profile", "proposed"] = "proposed"
            reason = proposal.reason
        else:
            kind = rule.kind or proposal.kind
            role = rule.role or (KIND_ROLES[kind] if rule.kind is not None else proposal.role)
            treatment, hierarchy = rule.treatment, rule.hierarchy
            source = "profile"
            reason = f"profile {profile.name} rule {rule.column!r}" + (f": {rule.note}" if rule.note else "")
        treatment = treatment or profile.treatment_for(kind)
        try:
            _check_applies(treatment.action, kind, where)
        except ValueError as err:
            raise SpecError(str(err), file=f"{profile.name}.yaml", field=where, rule="treatment") from None
        if role is ColumnRole.QUASI_IDENTIFIER and hierarchy is None:
            hierarchy = profile.quasi_identifiers.get(kind)
        if role is not ColumnRole.QUASI_IDENTIFIER or isinstance(treatment, Remove):
            # Only quasi-identifiers that stay in the table reach the lattice search.
            hierarchy = None
        if isinstance(treatment, Generalise) and hierarchy is None:
            raise SpecError(
                f"{where} is to be generalised but has no hierarchy; add one for {kind.value} to "
                "quasi_identifiers or to the column's rule",
                file=f"{profile.name}.yaml",
                field=where,
                rule="hierarchy",
            )
        plans.append(
            ColumnPlan(proposal.table, proposal.column, role, kind, treatment, hierarchy, source, reason)
        )
    return plans


# --- loading ------------------------------------------------------------------------------------------------


def _profiles_folder() -> Any:
    return resources.files("medspace.privacy").joinpath("data", "profiles")


def profile_names() -> list[str]:
    """The names of the profiles shipped with medspace.

    Returns:
        Sorted names, each loadable with `load_profile`.

    Example:
        >>> profile_names()
        ['gbt39725-level2', 'gbt39725-level3', 'hipaa-safe-harbor']
    """
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _profiles_folder().iterdir()
        if entry.name.endswith(".yaml")
    )


def _describe(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or None
    context = first.get("ctx") or {}
    if where is None and isinstance(context.get("field"), str):
        # Checks across fields name their field themselves (see _invalid).
        where = context["field"]
    message = str(first["msg"]).removeprefix("Value error, ")
    more = len(error.errors()) - 1
    return message + (f" (and {more} more problems)" if more else ""), where


def _resolve_files(profile: DeidProfile, base: Path | None, label: str) -> DeidProfile:
    """Make ARX hierarchy paths absolute (relative to the profile's folder) and check that they exist."""

    def resolve(spec: HierarchySpec, field: str) -> HierarchySpec:
        if not isinstance(spec, ArxCsvSpec):
            return spec
        path = spec.path if spec.path.is_absolute() or base is None else base / spec.path
        if not path.is_file():
            raise SpecError(
                "the hierarchy file does not exist; check the path (relative to the profile's folder)",
                file=label,
                field=field,
                rule="hierarchy",
            )
        return spec.model_copy(update={"path": path})

    hierarchies = {
        k: resolve(s, f"quasi_identifiers.{k.value}") for k, s in profile.quasi_identifiers.items()
    }
    rules = tuple(
        rule.model_copy(update={"hierarchy": resolve(rule.hierarchy, f"columns.{n}.hierarchy")})
        if rule.hierarchy is not None
        else rule
        for n, rule in enumerate(profile.columns)
    )
    return profile.model_copy(update={"quasi_identifiers": hierarchies, "columns": rules})


def load_profile(name_or_path: str | Path) -> DeidProfile:
    """Load a de-identification profile shipped with medspace (by name) or from a YAML file.

    Args:
        name_or_path: A shipped profile's name (see `profile_names`) or a path to a YAML file.

    Returns:
        The validated, frozen profile, with hierarchy file paths resolved.

    Raises:
        SpecError: The file is missing or not YAML, or the profile is invalid: the message names the file
            and the field.

    Example:
        >>> load_profile("hipaa-safe-harbor").treatment_for(IdentifierKind.AGE)
        TopCodeAge(action='top_code_age', above=89)
    """
    base: Path | None
    if isinstance(name_or_path, Path) or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        label, base = str(path), path.parent
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read the profile ({exc.strerror}); check the path", file=label) from None
    else:
        label, base = f"{name_or_path}.yaml", None
        resource = _profiles_folder().joinpath(label)
        if not resource.is_file():
            raise SpecError(
                f"no de-identification profile named {name_or_path!r} ships with medspace; "
                f"use one of {', '.join(profile_names())} or a path to a YAML file"
            )
        text = resource.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SpecError("the profile is not valid YAML; fix its syntax", file=label, rule="yaml") from None
    if not isinstance(data, dict):
        raise SpecError("a profile is a YAML mapping with name, treatments, ...", file=label, rule="profile")
    try:
        profile = DeidProfile.model_validate(data)
    except ValidationError as exc:
        message, where = _describe(exc)
        raise SpecError(f"invalid profile: {message}", file=label, field=where, rule="profile") from None
    if base is None and profile.hierarchy_files():
        base = Path(str(_profiles_folder()))
    return _resolve_files(profile, base, label)
