"""User overrides of the DQD checks: disabling, thresholds and custom SQL-free checks, validated on load.
Custom checks' figures are recounted by brute force over the Parquet rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import reference_data
from medspace.cdm import import_omop
from medspace.core import SpecError
from medspace.quality import load_overrides, run_checks


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("dqd-overrides")
    import_omop(reference_data.synthea_zip(), ws)
    return ws


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overrides.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_disable_threshold_and_custom_checks(workspace: Path, tmp_path: Path) -> None:
    # The most frequent measurement concept with values, for a range check a human would write.
    rows = pq.read_table(workspace / "cdm" / "measurement.parquet").to_pylist()
    valued = [r for r in rows if r["value_as_number"] is not None]
    concept = max(
        {r["measurement_concept_id"] for r in valued},
        key=lambda c: sum(r["measurement_concept_id"] == c for r in valued),
    )
    values = sorted(r["value_as_number"] for r in valued if r["measurement_concept_id"] == concept)
    low, high = values[len(values) // 4], values[3 * len(values) // 4]
    path = _write(
        tmp_path,
        f"""
disable:
  - check: plausibleGender
  - {{check: measurePersonCompleteness, table: death}}
thresholds:
  - {{check: plausibleValueLow, table: DRUG_EXPOSURE, field: quantity, threshold: 100}}
custom:
  - {{kind: plausible_range, concept_id: {concept}, low: {low}, high: {high}, threshold: 10,
     notes: quartiles}}
  - {{kind: not_null, table: person, field: birth_datetime}}
  - {{kind: not_null, table: visit_occurrence, field: provider_id, threshold: 50}}
""",
    )
    results = run_checks(workspace, overrides=path)
    names = {r.check_name for r in results.results}
    assert "plausibleGender" not in names
    assert all(
        not (r.check_name == "measurePersonCompleteness" and r.cdm_table_name == "DEATH")
        for r in results.results
    )
    quantity = results.by_id("field_plausiblevaluelow_drug_exposure_quantity")
    assert quantity.threshold_value == 100 and quantity.status == "passed"  # failed at DQD's threshold of 1

    low_check = results.by_id(f"concept_plausiblevaluelow_measurement_measurement_concept_id_{concept}")
    high_check = results.by_id(f"concept_plausiblevaluehigh_measurement_measurement_concept_id_{concept}")
    assert low_check.custom and low_check.notes_value == "quartiles"
    assert (low_check.num_violated_rows, low_check.num_denominator_rows) == (
        sum(v < low for v in values),
        len(values),
    )
    assert (high_check.num_violated_rows, high_check.num_denominator_rows) == (
        sum(v > high for v in values),
        len(values),
    )
    assert low_check.status == "failed"  # about a quarter of values lie below the first quartile: > 10 %

    persons = pq.read_table(workspace / "cdm" / "person.parquet").to_pylist()
    birth = results.by_id("field_isrequired_person_birth_datetime")
    assert (birth.num_violated_rows, birth.num_denominator_rows) == (
        sum(p["birth_datetime"] is None for p in persons),
        len(persons),
    )
    visits = pq.read_table(workspace / "cdm" / "visit_occurrence.parquet").to_pylist()
    provider = results.by_id("field_isrequired_visit_occurrence_provider_id")
    assert provider.threshold_value == 50
    assert provider.num_violated_rows == sum(v["provider_id"] is None for v in visits)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("disable:\n  - check: plausibleGendr\n", "no check type"),
        ("disable:\n  - table: PERSONS\n", "no table"),
        ("thresholds:\n  - {check: isRequired, threshold: 150}\n", "less than or equal"),
        ("disable:\n  - {}\n", "at least one"),
        ("custom:\n  - {kind: plausible_range, concept_id: 1}\n", "low, high or both"),
        ("custom:\n  - {kind: not_null, table: person, field: shoe_size}\n", "no field"),
        ("custom:\n  - {kind: regex, table: person}\n", "kind"),
        ("disable: []\nsurprise: 1\n", "Extra inputs"),
        ("disable: [\n", "not valid YAML"),
    ],
)
def test_bad_overrides_are_refused_with_the_file_named(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match=message) as info:
        load_overrides(path)
    assert info.value.file == str(path)


def test_the_kpi_tolerance_is_set_in_the_overrides_file(tmp_path: Path) -> None:
    overrides = load_overrides(
        _write(tmp_path, "kpi_tolerance:\n  default: 1.5\n  kpis: {discharges: 0.1}\n")
    )
    assert overrides.kpi_tolerance.for_kpi("discharges") == 0.1
    assert overrides.kpi_tolerance.for_kpi("bed_days") == 1.5
    assert load_overrides(_write(tmp_path, "disable: []\n")).kpi_tolerance.for_kpi("bed_days") == 0.5
    with pytest.raises(SpecError, match="no KPI named"):
        load_overrides(_write(tmp_path, "kpi_tolerance:\n  kpis: {discharge: 1}\n"))
    with pytest.raises(SpecError):
        load_overrides(_write(tmp_path, "kpi_tolerance:\n  default: 150\n"))
