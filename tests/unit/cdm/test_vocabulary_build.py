"""The CDM build maps staged codes through a loaded OHDSI vocabulary (``Maps to``), checked against a
brute-force join of the Synthea27Nj vocabulary's CSV files in plain Python."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import reference_data
from canonical_hospital import CanonicalWorkspace, at, day
from medspace.cdm import build_cdm, load_vocabulary


def _csv(name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(reference_data.synthea_zip()) as archive:
        return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8"))))


def _maps_to() -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """(vocabulary_id, concept_code) -> concept_id, and concept_id -> its valid standard `Maps to` target."""
    concepts = _csv("CONCEPT.csv")
    by_code = {(c["vocabulary_id"], c["concept_code"]): c["concept_id"] for c in concepts}
    standard = {c["concept_id"] for c in concepts if c["standard_concept"] == "S" and not c["invalid_reason"]}
    targets: dict[str, str] = {}
    for r in _csv("CONCEPT_RELATIONSHIP.csv"):
        valid = r["relationship_id"] == "Maps to" and not r["invalid_reason"]
        if valid and r["concept_id_2"] in standard:
            targets[r["concept_id_1"]] = min(
                targets.get(r["concept_id_1"], r["concept_id_2"]), r["concept_id_2"]
            )
    return by_code, targets


@pytest.fixture(scope="module")
def codes() -> dict[str, tuple[str, str, str]]:
    """A non-standard SNOMED code that maps to another concept, and a standard RxNorm drug code."""
    by_code, targets = _maps_to()
    snomed = sorted(
        (code, cid, targets[cid])
        for (vocab, code), cid in by_code.items()
        if vocab == "SNOMED" and cid in targets and targets[cid] != cid
    )
    rxnorm = sorted(
        (code, cid, targets[cid])
        for (vocab, code), cid in by_code.items()
        if vocab == "RxNorm" and cid in targets
    )
    return {"snomed": snomed[0], "rxnorm": rxnorm[0]}


def _workspace(root: Path, codes: dict[str, tuple[str, str, str]]) -> Path:
    w = CanonicalWorkspace()
    w.code_systems |= {
        "snomed": {"description": "SNOMED CT", "vocabulary_id": "SNOMED"},
        "rxnorm": {"description": "RxNorm", "vocabulary_id": "RxNorm"},
    }
    w.patient("his", "H1", "P00000001", sex="M", birth_date=day(1960, 5, 1))
    w.visit("V1", "P00000001", "outpatient", at(2024, 1, 1), None, status="done")
    w.row(
        "encounter",
        "his",
        "V1",
        person="P00000001",
        visit="V1",
        encounter_type="outpatient",
        start_at=at(2024, 1, 1),
    )
    w.row(
        "diagnosis",
        "his",
        "D1",
        person="P00000001",
        visit="V1",
        code=codes["snomed"][0],
        code_system="snomed",
        diagnosed_at=at(2024, 1, 1),
    )
    w.row(
        "medication_order",
        "his",
        "M1",
        person="P00000001",
        visit="V1",
        drug_code=codes["rxnorm"][0],
        code_system="rxnorm",
        started_at=at(2024, 1, 1),
    )
    return w.write(root)


def test_codes_map_through_a_loaded_vocabulary_as_a_plain_join_says(
    tmp_path: Path, codes: dict[str, tuple[str, str, str]]
) -> None:
    ws = _workspace(tmp_path / "ws", codes)
    build_cdm(ws)
    assert pq.read_table(ws / "cdm" / "condition_occurrence.parquet").column(
        "condition_concept_id"
    ).to_pylist() == [0]
    load_vocabulary(reference_data.synthea_zip(), ws)
    build_cdm(ws)
    condition = pq.read_table(ws / "cdm" / "condition_occurrence.parquet").to_pylist()[0]
    drug = pq.read_table(ws / "cdm" / "drug_exposure.parquet").to_pylist()[0]
    _, snomed_source, snomed_target = codes["snomed"]
    _, rxnorm_source, rxnorm_target = codes["rxnorm"]
    assert (condition["condition_concept_id"], condition["condition_source_concept_id"]) == (
        int(snomed_target),
        int(snomed_source),
    )
    assert (drug["drug_concept_id"], drug["drug_source_concept_id"]) == (
        int(rxnorm_target),
        int(rxnorm_source),
    )
