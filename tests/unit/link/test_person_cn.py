"""Chinese hospital identities: HIS patients and EMR front sheets matched to persons without labels."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from medspace.link import load_match_spec, match_records
from medspace.synth import HospitalConfig, generate_hospital


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("link") / "hospital"
    generate_hospital(HospitalConfig(patients=1000, seed=7), out)
    return out


def identity_records(con: duckdb.DuckDBPyConnection, root: Path) -> pa.Table:
    """HIS patient master rows and one identity per EMR medical record number (A48), resident ID left out."""
    return con.sql(f"""
        SELECT 'his:' || BRID AS record_id, 'his' AS source, XM AS name,
               CASE XB WHEN '1' THEN 'M' WHEN '2' THEN 'F' END AS sex, CSRQ AS birth_date,
               NULL::INTEGER AS age_years, LXDH AS phone, JTDZ AS address
        FROM read_csv('{root}/his/patients.csv', all_varchar = true)
        UNION ALL
        SELECT 'emr:' || A48, 'emr', ANY_VALUE(A11),
               ANY_VALUE(CASE A12C WHEN '1' THEN 'M' WHEN '2' THEN 'F' END),
               ANY_VALUE(A13), NULL, ANY_VALUE(A47), ANY_VALUE(A26)
        FROM read_csv('{root}/emr/front_sheets.csv', all_varchar = true)
        GROUP BY A48
    """).to_arrow_table()


def true_pairs(con: duckdb.DuckDBPyConnection, root: Path) -> set[tuple[str, str]]:
    # The truth keys front-sheet rows by A48-A49 (record number and admission); identities are per A48.
    rows = con.sql(f"""
        WITH t AS (
            SELECT DISTINCT
                CASE file WHEN 'his/patients.csv' THEN 'his:' || record_key
                          ELSE 'emr:' || SPLIT_PART(record_key, '-', 1) END AS record_id,
                person_id
            FROM '{root}/truth/records.parquet'
            WHERE file IN ('his/patients.csv', 'emr/front_sheets.csv')
        )
        SELECT a.record_id, b.record_id
        FROM t a JOIN t b ON a.person_id = b.person_id AND a.record_id < b.record_id
    """).fetchall()
    return {(str(a), str(b)) for a, b in rows}


def test_same_person_pairs_found_with_high_precision_and_recall(hospital: Path) -> None:
    con = duckdb.connect()
    records = identity_records(con, hospital)
    truth = true_pairs(con, hospital)
    assert truth, "the fixture must hold persons seen in both systems"

    result = match_records(records, load_match_spec("person_cn").without("resident_id"))

    found = {
        (min(left, right), max(left, right))
        for left, right in zip(
            result.pairs.column("record_id_l").to_pylist(),
            result.pairs.column("record_id_r").to_pylist(),
            strict=True,
        )
    }
    true_positives = len(found & truth)
    assert true_positives / len(found) >= 0.99
    assert true_positives / len(truth) >= 0.99
    # Every record is in exactly one cluster, and clusters agree with the kept pairs.
    clusters = dict(
        zip(
            result.clusters.column("record_id").to_pylist(),
            result.clusters.column("cluster_id").to_pylist(),
            strict=True,
        )
    )
    assert set(clusters) == set(records.column("record_id").to_pylist())
    assert all(clusters[a] == clusters[b] for a, b in found)


def _person(record_id: str, source: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "record_id": record_id,
        "source": source,
        "name": None,
        "sex": None,
        "birth_date": None,
        "age_years": None,
        "phone": None,
        "address": None,
        "resident_id": None,
    }
    return base | fields


def test_explanation_names_each_comparison_and_its_weight() -> None:
    # 300 distinct people in two systems; the first one's EMR record has a typo, a missing phone and an
    # address written without the province and the district suffix.
    rows = []
    for i in range(300):
        person = {
            "name": f"张{chr(0x4E00 + i)}{chr(0x4E00 + 2 * i)}",
            "sex": "MF"[i % 2],
            "birth_date": dt.date(1950, 1, 1) + dt.timedelta(days=97 * i),
            "phone": f"1380000{i:04d}",
            "address": f"上海市长宁区兴城街{i}号",
            "resident_id": None,
        }
        rows.append(_person(f"his:{i}", "his", **person))
        rows.append(_person(f"emr:{i}", "emr", **person))
    rows[1] |= {"name": "张一乙", "phone": "-", "address": f"长宁兴城街{0}号"}
    result = match_records(pa.Table.from_pylist(rows), load_match_spec("person_cn").without("resident_id"))

    pair = next(
        p for p in result.pairs.to_pylist() if {p["record_id_l"], p["record_id_r"]} == {"his:0", "emr:0"}
    )
    assert pair["match_probability"] >= 0.5
    assert "name one character off" in pair["explanation"]
    assert "phone missing (+0.0)" in pair["explanation"]
    assert "address exact" in pair["explanation"]  # 上海市 and 区 do not count as differences
    levels = {w["comparison"]: w["level"] for w in pair["partial_match_weights"]}
    assert levels["birth_date"] == "exact"
    # The match weight is the prior's weight plus the partial weights.
    prior = result.probability_two_random_records_match
    partial = sum(w["weight"] for w in pair["partial_match_weights"])
    assert math.log2(prior / (1 - prior)) + partial == pytest.approx(pair["match_weight"], abs=1e-6)


def _found_pairs(pairs: pa.Table) -> set[tuple[str, str]]:
    left, right = pairs.column("record_id_l").to_pylist(), pairs.column("record_id_r").to_pylist()
    return {(min(a, b), max(a, b)) for a, b in zip(left, right, strict=True)}


def test_a_model_trained_on_a_sample_still_finds_the_persons(hospital: Path) -> None:
    con = duckdb.connect()
    records = identity_records(con, hospital)
    truth = true_pairs(con, hospital)
    spec = load_match_spec("person_cn").without("resident_id")
    sampled = spec.model_copy(
        update={"training": spec.training.model_copy(update={"max_records": records.num_rows * 2 // 3})}
    )
    result = match_records(records, sampled)
    found = _found_pairs(result.pairs)
    assert len(found & truth) / len(found) >= 0.99
    assert len(found & truth) / len(truth) >= 0.99


def test_placing_scores_new_records_against_known_ones_only(hospital: Path) -> None:
    con = duckdb.connect()
    records = identity_records(con, hospital)
    truth = true_pairs(con, hospital)
    source = records.column("source").to_pylist()
    emr = records.filter(pa.array([s == "emr" for s in source]))
    his = records.filter(pa.array([s == "his" for s in source]))
    result = match_records(emr, load_match_spec("person_cn").without("resident_id"), against=his)
    sides = {(p["source_l"], p["source_r"]) for p in result.pairs.to_pylist()}
    assert sides <= {("emr", "his"), ("his", "emr")}, sides
    found = _found_pairs(result.pairs)
    cross = {(a, b) for a, b in truth if a.split(":")[0] != b.split(":")[0]}
    assert len(found & cross) / len(found) >= 0.99
    assert len(found & cross) / len(cross) >= 0.99


def test_splink_warnings_become_lines_of_the_result_not_console_noise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from medspace.link import _probabilistic

    real = _probabilistic._train_and_score

    def noisy(*args: object, **kwargs: object) -> object:
        logging.getLogger("splink.internals.m_u_records_to_parameters").warning(
            "Comparison: 'phone':\n    u values not fully trained"
        )
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_probabilistic, "_train_and_score", noisy)
    rows = [
        _person(
            f"{s}:{i}",
            s,
            name=f"王{chr(0x4E00 + i)}",
            sex="MF"[i % 2],
            birth_date=dt.date(1960, 1, 1 + i % 28),
        )
        for s in ("his", "emr")
        for i in range(60)
    ]
    result = match_records(pa.Table.from_pylist(rows), load_match_spec("person_cn").without("resident_id"))
    assert "Comparison: 'phone': u values not fully trained" in result.warnings
    assert "u values" not in capsys.readouterr().err
    assert logging.getLogger("splink").propagate  # restored
