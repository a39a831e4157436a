"""The CDM built from the synthetic hospital through its site mapping: conforms to the official spec, keeps
its keys, converts units with the factors of domain.md §1.5 (recomputed here independently), counts what the
ground truth says, and accounts for every staged row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from medspace.cdm import build_cdm, cdm_schema, load_mappings
from medspace.link import link_workspace
from medspace.sources import load_model, stage_site
from medspace.synth import HospitalConfig, generate_hospital

# domain.md §1.5, written out again: value in the reported unit -> canonical unit
TO_CANONICAL = {
    ("GLU", "mg/dL"): lambda v: v / 18.0182,
    ("TC", "mg/dL"): lambda v: v / 38.67,
    ("TG", "mg/dL"): lambda v: v / 88.5,
    ("CREA", "mg/dL"): lambda v: v * 88.4,
    ("UA", "mg/dL"): lambda v: v * 59.48,
    ("HBA1C", "mmol/mol"): lambda v: v / 10.929 + 2.15,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("cdm-ws")
    generate_hospital(HospitalConfig(patients=600, seed=4, chunk_patients=300), ws / "hospital")
    stage_site(None, ws / "hospital", ws)
    link_workspace(ws)
    build_cdm(ws)
    return ws


def _table(ws: Path, name: str) -> pa.Table:
    return pq.read_table(ws / "cdm" / f"{name}.parquet")


def _manifest(ws: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((ws / "cdm" / "manifest.json").read_text(encoding="utf-8"))
    return out


BUILT = (
    "person",
    "observation_period",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "note",
    "death",
    "cost",
    "payer_plan_period",
    "location",
    "care_site",
    "provider",
)


@pytest.mark.parametrize("name", BUILT)
def test_tables_conform_to_the_official_spec(workspace: Path, name: str) -> None:
    table = _table(workspace, name)
    spec = cdm_schema()[name]
    assert table.column_names == list(spec.field_names)
    expected = spec.arrow_schema()
    for f in spec.fields:
        assert table.schema.field(f.name).type == expected.field(f.name).type, f.name
        if f.required:
            assert table.column(f.name).null_count == 0, f"{name}.{f.name} is required"
    if name not in ("death",):
        assert table.num_rows > 0
    key = spec.fields[0].name
    if spec.fields[0].primary_key:
        assert pc.count_distinct(table.column(key)).as_py() == table.num_rows


def test_foreign_keys_resolve(workspace: Path) -> None:
    persons = set(_table(workspace, "person").column("person_id").to_pylist())
    visits = set(_table(workspace, "visit_occurrence").column("visit_occurrence_id").to_pylist())
    for name in BUILT:
        table = _table(workspace, name)
        if "person_id" in table.column_names and name != "person":
            assert set(table.column("person_id").to_pylist()) <= persons, name
        if "visit_occurrence_id" in table.column_names and name != "visit_occurrence":
            assert set(table.column("visit_occurrence_id").drop_null().to_pylist()) <= visits, name
    sites = set(_table(workspace, "care_site").column("care_site_id").to_pylist())
    assert set(_table(workspace, "visit_occurrence").column("care_site_id").drop_null().to_pylist()) <= sites


def test_measurements_are_in_canonical_units_or_keep_their_unit(workspace: Path) -> None:
    m = _table(workspace, "measurement").to_pylist()
    converted = 0
    for row in m:
        if row["value_as_number"] is None:
            continue
        raw = float(row["value_source_value"])
        convert = TO_CANONICAL.get((row["measurement_source_value"], row["unit_source_value"]))
        expected = convert(raw) if convert else raw
        assert row["value_as_number"] == pytest.approx(expected, rel=1e-3, abs=1e-3), row
        converted += convert is not None
    assert converted > 50
    hba1c = [r["value_as_number"] for r in m if r["measurement_source_value"] == "HBA1C"]
    assert min(hba1c) > 3.0 and max(hba1c) < 16.0  # all in %, none left in mmol/mol
    units = _manifest(workspace)["measurement_units"]
    assert sum(units.values()) == len(m)
    assert units["converted"] == converted


def test_visits_and_deaths_match_the_truth(workspace: Path) -> None:
    truth = pq.read_table(workspace / "hospital/truth/visits.parquet").to_pylist()
    kpis = json.loads((workspace / "hospital/truth/kpis.json").read_text(encoding="utf-8"))
    visits = _table(workspace, "visit_occurrence").to_pylist()
    inpatient = sum(v["visit_concept_id"] == 9201 for v in visits)
    # every stay, including those the HIS export lost (front sheets); the KPI counts discharges in its period
    assert inpatient == sum(t["kind"] == "inpatient" and t["status"] == "done" for t in truth)
    assert inpatient >= kpis["discharges"]
    exported_done = sum(
        t["kind"] != "inpatient" and t["status"] == "done" and t["in_his_export"] for t in truth
    )
    assert len(visits) - inpatient == exported_done
    died = {t["person_id"] for t in truth if t["discharge_mode"] == "5"}
    assert _table(workspace, "death").num_rows == len(died)


def test_every_person_is_one_true_person(workspace: Path) -> None:
    records = pq.read_table(workspace / "hospital/truth/records.parquet").to_pylist()
    true_persons = {r["person_id"] for r in records}
    built = _table(workspace, "person").num_rows
    assert abs(built - len(true_persons)) <= 0.01 * len(true_persons)


def test_code_editions_meet_in_one_concept(workspace: Path) -> None:
    """A diagnosis coded in the clinical, insurance or a legacy edition lands on the same standard concept."""
    rows = _table(workspace, "condition_occurrence").to_pylist()
    by_source = {r["condition_source_value"]: r["condition_concept_id"] for r in rows}
    assert by_source.get("E11.900", 201826) == 201826  # type 2 diabetes mellitus
    # settlement lists code in the insurance edition: each code maps as the mapping file says
    diagnoses = load_mappings().diagnoses
    insurance = [r for r in rows if r["condition_type_concept_id"] == 32810]
    assert insurance
    for r in insurance:
        mapped = diagnoses[r["condition_source_value"]]
        assert mapped.edition == "nhsa"
        assert r["condition_concept_id"] == mapped.condition_concept_id, r
    legacy = [code for code in by_source if code in ("E11.901", "I10.x01", "H25.901")]
    clinical = {"E11.901": "E11.900", "I10.x01": "I10.x00x002", "H25.901": "H25.900"}
    for code in legacy:
        if clinical[code] in by_source:
            assert by_source[code] == by_source[clinical[code]]


def test_every_staged_row_is_written_or_excluded_by_a_rule(workspace: Path) -> None:
    manifest = _manifest(workspace)
    staged = manifest["staged"]
    assert set(staged) == set(load_model().tables)
    for table, entry in staged.items():
        n = pq.read_metadata(workspace / "staging" / f"{table}.parquet").num_rows
        assert entry["rows"] == n, table
        assert sum(entry["written"].values()) + sum(entry["excluded"].values()) == n, (table, entry)
        assert set(entry["excluded"]) <= set(manifest["rules"]), table
    # every written diagnosis is a condition or an observation row, and back
    dx = staged["diagnosis"]["written"]
    assert dx["condition_occurrence"] == _table(workspace, "condition_occurrence").num_rows
    assert dx["observation"] == _table(workspace, "observation").num_rows
    assert staged["lab_result"]["written"]["measurement"] == _table(workspace, "measurement").num_rows
