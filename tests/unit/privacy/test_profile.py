"""De-identification profiles: the shipped YAML files, the checks on loading, and merging with proposals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from medspace.core import SpecError
from medspace.privacy._hierarchy import ArxCsvSpec, BandsSpec, HierarchySpec, SuppressSpec, build_hierarchy
from medspace.privacy._profile import (
    DeidProfile,
    Generalise,
    Keep,
    Pseudonymise,
    Remove,
    ScrubText,
    TopCodeAge,
    TruncateAddress,
    YearOnly,
    load_profile,
    plan_columns,
    profile_names,
)
from medspace.privacy._roles import (
    HIPAA_IDENTIFIERS,
    KIND_ROLES,
    ColumnRole,
    IdentifierKind,
    RoleProposal,
    propose_roles,
)

K = IdentifierKind
SHIPPED = profile_names()

# Leaves each hierarchy kind must be able to generalise: proof that a shipped hierarchy resolves and builds.
SAMPLE_LEAVES: dict[str, list[str]] = {
    "bands": ["0", "47", "89", "90", "1949", "2001"],
    "date": ["1949-12-31", "2024-02-29"],
    "region": ["110105", "310100"],
    "occupation": ["医生", "学生"],
    "mask": ["200120", "1001"],
    "suppress": ["M", "F", "8507"],
}


def test_the_three_profiles_ship() -> None:
    assert SHIPPED == ["gbt39725-level2", "gbt39725-level3", "hipaa-safe-harbor"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_every_reference_resolves(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    # Every direct- and quasi-identifier kind has an explicit treatment.
    for kind in IdentifierKind:
        if KIND_ROLES[kind] in (ColumnRole.DIRECT_IDENTIFIER, ColumnRole.QUASI_IDENTIFIER):
            assert kind in profile.treatments, kind
    # Every hierarchy builds on values of its kind.
    specs: list[HierarchySpec] = [*profile.quasi_identifiers.values()]
    specs += [rule.hierarchy for rule in profile.columns if rule.hierarchy is not None]
    for spec in specs:
        hierarchy = build_hierarchy(spec, "column", SAMPLE_LEAVES[spec.kind])
        assert hierarchy.height >= 2
    # A generalised kind has a hierarchy; a profile that generalises names its privacy models.
    for kind, treatment in profile.treatments.items():
        if isinstance(treatment, Generalise):
            assert kind in profile.quasi_identifiers
            assert profile.privacy is not None


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_yaml_cites_its_standard(name: str) -> None:
    text = (Path(__file__).parents[3] / "src/medspace/privacy/data/profiles" / f"{name}.yaml").read_text(
        "utf-8"
    )
    assert ("GB/T 39725-2020" in text) or ("164.514" in text)
    assert text.count("#") >= 5


def test_hipaa_treats_every_one_of_the_18_identifiers() -> None:
    profile = load_profile("hipaa-safe-harbor")
    in_clear = (Keep, Generalise, ScrubText)
    for identifier, kinds in HIPAA_IDENTIFIERS.items():
        for kind in kinds:
            assert not isinstance(profile.treatment_for(kind), in_clear), (identifier, kind)
    assert profile.date_shift_days is None
    assert profile.privacy is None
    assert profile.key_policy == "ephemeral"
    assert profile.treatment_for(K.DATE) == YearOnly()
    assert profile.treatment_for(K.BIRTH_DATE) == YearOnly(aggregate_ages_above=89)
    assert profile.treatment_for(K.AGE) == TopCodeAge(above=89)
    assert profile.treatment_for(K.ADDRESS) == TruncateAddress(level="province")
    assert profile.treatment_for(K.REGION) == TruncateAddress(level="province")


def test_level2_is_stricter_than_level3() -> None:
    level2, level3 = load_profile("gbt39725-level2"), load_profile("gbt39725-level3")
    assert level2.privacy is not None and level3.privacy is not None
    k2 = next(m.k for m in level2.privacy.models if m.kind == "k_anonymity")
    k3 = next(m.k for m in level3.privacy.models if m.kind == "k_anonymity")
    assert k2 > k3
    assert {m.kind for m in level2.privacy.models} > {"k_anonymity"}  # and l-diversity
    assert (level2.key_policy, level3.key_policy) == ("ephemeral", "held_by_holder")
    # Level 3 keeps hospital numbers as pseudonyms the holder can re-link; level 2 drops them.
    assert isinstance(level3.treatment_for(K.HOSPITAL_NUMBER), Pseudonymise)
    assert isinstance(level2.treatment_for(K.HOSPITAL_NUMBER), Remove)
    assert level2.treatment_for(K.ADDRESS) == TruncateAddress(level="city")
    assert level3.treatment_for(K.ADDRESS) == TruncateAddress(level="district")


# --- invalid profiles ------------------------------------------------------------------------------------


def minimal() -> dict[str, Any]:
    """A valid profile as data: every identifier kind removed, quasi-identifiers kept."""
    treatments: dict[str, Any] = {}
    for kind in IdentifierKind:
        if KIND_ROLES[kind] is ColumnRole.DIRECT_IDENTIFIER:
            treatments[kind.value] = {"action": "remove"}
        elif KIND_ROLES[kind] is ColumnRole.QUASI_IDENTIFIER:
            treatments[kind.value] = {"action": "keep"}
    return {
        "name": "site-test",
        "title": "test",
        "standard": "none",
        "key_policy": "held_by_holder",
        "treatments": treatments,
    }


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "site-test.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_minimal_profile_loads(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, minimal()))
    assert isinstance(profile, DeidProfile)
    assert profile.treatment_for(K.DIAGNOSIS) == Keep()


def break_treatment(kind: str, treatment: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["treatments"][kind] = treatment

    return change


def drop_treatment(data: dict[str, Any]) -> None:
    del data["treatments"]["phone"]


def generalise_without_hierarchy(data: dict[str, Any]) -> None:
    data["treatments"]["age"] = {"action": "generalise"}
    data["privacy"] = {"models": [{"kind": "k_anonymity", "k": 5}]}


def shift_without_days(data: dict[str, Any]) -> None:
    data["treatments"]["date"] = {"action": "shift_date"}


def days_without_shift(data: dict[str, Any]) -> None:
    data["date_shift_days"] = 30


def date_hierarchy_after_year_only(data: dict[str, Any]) -> None:
    data["treatments"]["birth_date"] = {"action": "year_only"}
    data["quasi_identifiers"] = {"birth_date": {"kind": "date", "levels": ["year"]}}


def region_hierarchy_for_addresses(data: dict[str, Any]) -> None:
    data["treatments"]["address"] = {"action": "keep"}
    data["quasi_identifiers"] = {"address": {"kind": "region"}}


def hierarchy_for_removed_kind(data: dict[str, Any]) -> None:
    data["quasi_identifiers"] = {"postcode": {"kind": "mask"}}
    data["treatments"]["postcode"] = {"action": "remove"}


def rule_without_kind(data: dict[str, Any]) -> None:
    data["columns"] = [{"column": "remark", "treatment": {"action": "truncate_address"}}]


def rule_without_anything(data: dict[str, Any]) -> None:
    data["columns"] = [{"column": "remark"}]


def rules_repeated(data: dict[str, Any]) -> None:
    data["columns"] = [{"column": "remark", "kind": "free_text"}, {"column": "remark", "kind": "other"}]


def generalise_without_privacy(data: dict[str, Any]) -> None:
    data["treatments"]["sex"] = {"action": "generalise"}
    data["quasi_identifiers"] = {"sex": {"kind": "suppress"}}


def extra_field(data: dict[str, Any]) -> None:
    data["k"] = 5


def missing_arx_file(data: dict[str, Any]) -> None:
    data["quasi_identifiers"] = {"occupation": {"kind": "arx_csv", "path": "nowhere.csv"}}


INVALID = [
    (break_treatment("not_a_kind", {"action": "remove"}), "treatments.not_a_kind"),
    (break_treatment("age", {"action": "shift_date"}), "shift_date applies to"),
    (break_treatment("phone", {"action": "obliterate"}), "treatments.phone"),
    (break_treatment("phone", {"action": "pseudonymise", "length": 8}), "treatments.phone"),
    (break_treatment("resident_id", {"action": "derive_resident_id_facts", "keep": ["sex", "sex"]}), "twice"),
    (drop_treatment, "no treatment for phone"),
    (generalise_without_hierarchy, "generalise needs a hierarchy"),
    (shift_without_days, "date_shift_days"),
    (days_without_shift, "no treatment shifts dates"),
    (date_hierarchy_after_year_only, "needs full dates"),
    (region_hierarchy_for_addresses, "GB/T 2260"),
    (hierarchy_for_removed_kind, "removed"),
    (rule_without_kind, "name the kind"),
    (rule_without_anything, "sets none of"),
    (rules_repeated, "repeated"),
    (generalise_without_privacy, "privacy"),
    (extra_field, "k"),
    (missing_arx_file, "hierarchy file does not exist"),
]


@pytest.mark.parametrize(("change", "message"), INVALID)
def test_invalid_profiles_fail_on_loading_naming_file_and_field(
    tmp_path: Path, change: Any, message: str
) -> None:
    data = minimal()
    change(data)
    with pytest.raises(SpecError, match=message) as caught:
        load_profile(write(tmp_path, data))
    assert caught.value.file is not None and caught.value.file.endswith("site-test.yaml")
    assert caught.value.field is not None


def test_arx_hierarchy_paths_resolve_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text("医生;专业;*\n学生;无;*\n", encoding="utf-8")
    data = minimal()
    data["quasi_identifiers"] = {"occupation": {"kind": "arx_csv", "path": "jobs.csv"}}
    spec = load_profile(write(tmp_path, data)).quasi_identifiers[K.OCCUPATION]
    assert isinstance(spec, ArxCsvSpec)
    assert spec.path == tmp_path / "jobs.csv"


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(SpecError, match="gbt39725-level3"):
        load_profile("gbt39725-level9")


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_profile(path)


# --- plans -----------------------------------------------------------------------------------------------


def proposal(column: str, kind: IdentifierKind, table: str | None = "person") -> RoleProposal:
    return RoleProposal(table, column, KIND_ROLES[kind], kind, "name", "test", None, 0)


def test_plans_follow_the_profile_defaults() -> None:
    profile = load_profile("gbt39725-level3")
    table = pa.table({"person_id": [1], "name": ["张伟"], "age": [40], "diagnosis_code": ["E11.9"]})
    plans = {p.column: p for p in plan_columns(propose_roles(table, table_name="visits"), profile)}
    assert isinstance(plans["person_id"].treatment, Pseudonymise)
    assert isinstance(plans["name"].treatment, Remove)
    assert plans["age"].treatment == TopCodeAge(above=89)
    assert plans["age"].hierarchy == BandsSpec(widths=(5, 10, 20))
    assert plans["diagnosis_code"].role is ColumnRole.SENSITIVE
    assert plans["diagnosis_code"].treatment == Keep()
    assert plans["diagnosis_code"].hierarchy is None
    assert {p.source for p in plans.values()} == {"proposed"}


def test_an_explicit_rule_wins_and_says_so() -> None:
    profile = load_profile("gbt39725-level3")
    (plan,) = plan_columns([proposal("location_id", K.REGION)], profile)
    assert plan.source == "profile"
    assert isinstance(plan.treatment, Pseudonymise)
    assert plan.hierarchy == SuppressSpec()
    assert "location_id" in plan.reason


def test_a_removed_quasi_identifier_gets_no_hierarchy() -> None:
    (plan,) = plan_columns([proposal("location_id", K.REGION)], load_profile("gbt39725-level2"))
    assert plan.treatment == Remove(blank=True)
    assert plan.hierarchy is None


def test_rules_match_table_qualified_globs_and_the_first_wins(tmp_path: Path) -> None:
    data = minimal()
    data["columns"] = [
        {"column": "notes.*_text", "kind": "free_text", "treatment": {"action": "scrub_text"}},
        {"column": "*_text", "role": "insensitive", "kind": "clinical"},
    ]
    profile = load_profile(write(tmp_path, data))
    plans = plan_columns(
        [proposal("note_text", K.OTHER, "notes"), proposal("value_text", K.OTHER, "results")], profile
    )
    assert [(p.kind, p.treatment.action) for p in plans] == [
        (K.FREE_TEXT, "scrub_text"),
        (K.CLINICAL, "keep"),
    ]
    assert plans[0].role is ColumnRole.DIRECT_IDENTIFIER  # the role follows the kind the rule set


def test_a_rule_whose_treatment_does_not_fit_the_proposed_kind_fails(tmp_path: Path) -> None:
    data = minimal()
    data["columns"] = [{"column": "remark", "role": "direct_identifier", "treatment": {"action": "remove"}}]
    profile = load_profile(write(tmp_path, data))
    assert isinstance(plan_columns([proposal("remark", K.FREE_TEXT)], profile)[0].treatment, Remove)
    data["columns"] = [
        {"column": "remark", "kind": "age", "treatment": {"action": "top_code_age"}, "role": "sensitive"}
    ]
    profile = load_profile(write(tmp_path, data))
    (plan,) = plan_columns([proposal("remark", K.FREE_TEXT)], profile)
    assert (plan.kind, plan.role) == (K.AGE, ColumnRole.SENSITIVE)


def test_a_column_rule_hierarchy_must_be_for_a_quasi_identifier(tmp_path: Path) -> None:
    data = minimal()
    data["columns"] = [{"column": "x", "role": "sensitive", "hierarchy": {"kind": "suppress"}}]
    with pytest.raises(SpecError, match="quasi-identifiers"):
        load_profile(write(tmp_path, data))
