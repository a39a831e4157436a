"""Every code the synthetic hospital emits maps, and every concept id is real (checked in Synthea27Nj)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medspace.cdm import load_mappings
from medspace.synth import load_catalogue

CsvReader = Callable[[str], list[dict[str, str]]]


@pytest.fixture(scope="module")
def concepts(synthea_csv: CsvReader) -> dict[int, dict[str, str]]:
    return {int(r["concept_id"]): r for r in synthea_csv("CONCEPT.csv")}


def test_every_diagnosis_code_of_every_edition_maps() -> None:
    catalogue = load_catalogue()
    diagnoses = load_mappings().diagnoses
    for d in (*catalogue.conditions, *catalogue.general_diagnoses):
        # the catalogue's `insurance` code is the NHSA (医保版) edition's
        for attribute, edition in (("clinical", "clinical"), ("insurance", "nhsa"), ("legacy", "legacy")):
            code = getattr(d, attribute)
            assert code in diagnoses, (d.key, edition, code)
            assert diagnoses[code].edition == edition
            assert diagnoses[code].icd10 == d.icd10
            assert diagnoses[code].kind == "diagnosis"
        if d.external_cause:
            assert diagnoses[d.external_cause].kind == "external_cause"
    assert diagnoses["E11.301+H36.0*"].icd10 == "E11.3"
    assert diagnoses["E11.300x001+H36.0*"].icd10 == "E11.3"


def test_every_procedure_code_maps_to_its_icd9cm3_code() -> None:
    procedures = load_mappings().procedures
    for p in load_catalogue().procedures:
        for attribute, edition in (("clinical", "clinical"), ("insurance", "nhsa")):
            mapped = procedures[getattr(p, attribute)]
            assert mapped.edition == edition
            # The common code is the edition code's first five characters, without a trailing placeholder x.
            assert mapped.icd9cm3 == getattr(p, attribute)[:5].rstrip("x")
    assert procedures["13.4100x001"].icd9cm3 == "13.41"


def test_every_lab_test_department_and_value_set_maps() -> None:
    catalogue = load_catalogue()
    m = load_mappings()
    for test in catalogue.lab_tests:
        assert m.lab_tests[test.code].unit == test.unit
        if test.alt_unit:
            assert (test.code, test.alt_unit, test.unit) in m.unit_conversions
    for dept in catalogue.departments:
        assert m.departments[dept.code].key == dept.key
        assert in_stripped(m, dept.stripped_code, dept.code)
    for code in ("1", "2", "3", "4", "5", "9", "6"):
        assert code in m.discharge_modes
    assert m.discharge_modes["6"].canonical_code == "9"
    for kind, concept in (("outpatient", 9202), ("emergency", 9203), ("inpatient", 9201), ("checkup", 9202)):
        assert m.visit_types[("medspace", kind)].visit_concept_id == concept
    assert m.visit_types[("medspace", "day_surgery")].visit_concept_id == 9201
    for code in ("M", "F"):
        assert ("medspace", code) in m.sex
    for code in ("1", "2"):  # front sheet A12C
        assert ("gb2261.1", code) in m.sex


def test_code_systems_name_their_mapping_file_and_editions() -> None:
    systems = load_mappings().code_systems
    assert systems["icd10_gb_clinical_2"].edition_set == {"clinical", "legacy"}
    assert systems["icd9cm3_nhsa"].mapping == "procedure_codes"
    assert {cs.mapping for cs in systems.values()} == {"diagnosis_codes", "procedure_codes", "lab_tests"}


def in_stripped(m: object, stripped: str, code: str) -> bool:
    return code in {d.code for d in m.departments_by_stripped_code(stripped)}  # type: ignore[attr-defined]


def test_stripped_department_codes_are_ambiguous() -> None:
    keys = {d.key for d in load_mappings().departments_by_stripped_code("0101")}
    assert keys == {"cardiology", "general_surgery", "laboratory"}


def all_concept_ids() -> list[tuple[str, str, int, set[str]]]:
    """(file, code, concept id, allowed domains) for every non-zero concept id in the mapping tables."""
    m = load_mappings()
    out: list[tuple[str, str, int, set[str]]] = []
    for d in m.diagnoses.values():
        out += [
            ("diagnosis", d.code, d.condition_concept_id, {"Condition"}),
            ("diagnosis", d.code, d.icd10_concept_id, {"Condition"}),
        ]
    for p in m.procedures.values():
        out += [
            ("procedure", p.code, p.procedure_concept_id, {"Procedure"}),
            ("procedure", p.code, p.icd9cm3_concept_id, {"Procedure"}),
        ]
    for t in m.lab_tests.values():
        out += [
            ("lab", t.code, t.measurement_concept_id, {"Measurement"}),
            ("lab unit", t.code, t.unit_concept_id, {"Unit"}),
        ]
    for v in m.visit_types.values():
        out.append(("visit", v.code, v.visit_concept_id, {"Visit"}))
    for mode in m.discharge_modes.values():
        out.append(("discharge", mode.code, mode.discharged_to_concept_id, {"Visit"}))
    return [row for row in out if row[2] != 0]


def test_every_concept_id_exists_in_the_synthea_vocabulary(concepts: dict[int, dict[str, str]]) -> None:
    checked = all_concept_ids()
    assert len(checked) > 40
    for kind, code, concept_id, domains in checked:
        concept = concepts.get(concept_id)
        assert concept is not None, (kind, code, concept_id)
        assert concept["domain_id"] in domains, (kind, code, concept_id, concept["domain_id"])
        assert concept["standard_concept"] == "S", (kind, code, concept_id)
        assert concept["invalid_reason"] == "", (kind, code, concept_id)


def test_lab_concepts_carry_their_loinc_code(concepts: dict[int, dict[str, str]]) -> None:
    for t in load_mappings().lab_tests.values():
        if t.measurement_concept_id:
            assert concepts[t.measurement_concept_id]["vocabulary_id"] == "LOINC"
            assert concepts[t.measurement_concept_id]["concept_code"] == t.loinc
        if t.unit_concept_id:
            assert concepts[t.unit_concept_id]["concept_code"] == t.ucum


def test_sex_concepts_agree_with_synthea_persons(synthea_csv: CsvReader) -> None:
    # The vocabulary subset lacks the Gender vocabulary, so the concept ids are checked against how
    # Synthea27Nj's own ETL coded M and F in PERSON.csv.
    used = {(r["gender_source_value"], int(r["gender_concept_id"])) for r in synthea_csv("PERSON.csv")}
    sex = load_mappings().sex
    assert used == {(code, sex[("medspace", code)].gender_concept_id) for code in ("M", "F")}
    for (_system, _code), entry in sex.items():
        assert entry.gender_concept_id in {0, 8507, 8532}


def test_zero_means_no_match_and_broader_matches_are_flagged() -> None:
    m = load_mappings()
    for d in m.diagnoses.values():
        assert (d.match == "none") == (d.condition_concept_id == 0)
    for p in m.procedures.values():
        assert (p.match == "none") == (p.procedure_concept_id == 0)
    assert m.diagnoses["E11.900"].match == "equivalent"
    assert m.diagnoses["I63.900"].match == "broader"
