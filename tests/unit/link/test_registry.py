"""The person registry and the key-conflict review queue, on hand-made staging folders.

Each test stages a few records of two systems, links, changes the staging as a later export would (a new
patient, a conflict, a reviewer's decision) and links again: ids must hold, conflicts must not merge, and
every merge or split must be in the history.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from medspace.cli import app
from medspace.core import InputError, make_resident_id
from medspace.link import decide_review, link_workspace, review_queue
from medspace.link._conflicts import more_than_one_edit
from staged_model import write_staging

T = dt.datetime
RID_1 = make_resident_id("110105", dt.date(1960, 5, 1), 13)
RID_2 = make_resident_id("310101", dt.date(1971, 3, 9), 27)


def _patient(
    key: str, name: str, sex: str, born: dt.date, rid: str | None = None, system: str = "his"
) -> Any:
    return {
        "system": system,
        "record_key": key,
        "patient_key": key,
        "name": name,
        "sex": sex,
        "birth_date": born,
        "resident_id": rid,
    }


def _visit(key: str, patient: str, day: int) -> Any:
    return {
        "system": "his",
        "record_key": key,
        "patient_key": patient,
        "encounter_type": "outpatient",
        "visit_serial": key,
        "start_at": T(2024, 1, day, 9),
    }


def _hospital(*extra: Any) -> dict[str, list[Any]]:
    """Two HIS patients and an EMR record of the first (same resident ID)."""
    return {
        "patient": [
            _patient("H2", "张三", "M", dt.date(1960, 5, 1), RID_1),
            _patient("H5", "李四", "F", dt.date(1971, 3, 9), RID_2),
            _patient("E1", "张三", "M", dt.date(1960, 5, 1), RID_1, system="emr"),
            *extra,
        ],
        "encounter": [_visit("V1", "H2", 1), _visit("V2", "H5", 2)],
    }


def _persons(ws: Path) -> dict[str, str]:
    rows = pq.read_table(ws / "link" / "person_records.parquet").to_pylist()
    return {r["record_id"]: r["person_id"] for r in rows}


def _key_conflicts(ws: Path) -> list[dict[str, Any]]:
    """The key-conflict items of the queue (a record cut off by a held key may add a doubtful pair)."""
    return [i for i in review_queue(ws).to_pylist() if i["kind"] == "key_conflict"]


def _link(ws: Path, tables: dict[str, list[Any]]) -> dict[str, str]:
    write_staging(ws, tables)
    link_workspace(ws)
    return _persons(ws)


def test_ids_hold_when_a_new_patient_arrives_that_sorts_first(tmp_path: Path) -> None:
    first = _link(tmp_path, _hospital())
    assert first["his:H2"] == first["emr:E1"] != first["his:H5"]
    # "A0" sorts before every earlier record: a dense rank would renumber everyone
    later = _link(tmp_path, _hospital(_patient("A0", "王五", "M", dt.date(1990, 1, 1))))
    assert {r: later[r] for r in first} == first
    assert later["his:A0"] not in first.values()
    assert later["his:A0"] == "P00000003"
    manifest = json.loads((tmp_path / "link" / "manifest.json").read_text())
    assert manifest["registry"]["persons_kept"] == 2 and manifest["registry"]["persons_new"] == 1


def test_a_record_absent_from_an_export_keeps_its_id_and_comes_back_to_it(tmp_path: Path) -> None:
    first = _link(tmp_path, _hospital())
    tables = _hospital()
    tables["patient"] = [p for p in tables["patient"] if p["patient_key"] != "H5"]
    tables["encounter"] = [v for v in tables["encounter"] if v["patient_key"] != "H5"]
    assert "his:H5" not in _link(tmp_path, tables)
    records = {
        r["record_id"]: r for r in pq.read_table(tmp_path / "registry" / "records.parquet").to_pylist()
    }
    assert records["his:H5"]["person_id"] == first["his:H5"]
    assert _link(tmp_path, _hospital())["his:H5"] == first["his:H5"]


def test_two_persons_joined_by_a_new_key_are_merged_under_the_older_id_with_history(tmp_path: Path) -> None:
    tables = _hospital(_patient("E9", "李四", "F", dt.date(1971, 3, 9), system="emr"))
    first = _link(tmp_path, tables)
    assert first["emr:E9"] != first["his:H5"]
    tables["patient"][-1]["resident_id"] = RID_2  # the EMR record now carries the resident ID
    later = _link(tmp_path, tables)
    older, younger = sorted((first["emr:E9"], first["his:H5"]))  # a record each: the older id stays
    assert later["emr:E9"] == later["his:H5"] == older
    history = pq.read_table(tmp_path / "registry" / "history.parquet").to_pylist()
    assert [(h["event"], h["person_id"], h["other_person_id"], h["records"]) for h in history] == [
        ("merged", older, younger, 1)
    ]
    persons = {
        p["person_id"]: p for p in pq.read_table(tmp_path / "registry" / "persons.parquet").to_pylist()
    }
    assert persons[younger]["status"] == "merged"
    assert persons[younger]["merged_into"] == older


def test_a_record_that_leaves_its_person_is_split_off_and_recorded(tmp_path: Path) -> None:
    tables = _hospital(_patient("E9", "李四", "F", dt.date(1971, 3, 9), RID_2, system="emr"))
    first = _link(tmp_path, tables)
    assert first["emr:E9"] == first["his:H5"]
    # corrected: the resident ID was on the wrong record; on a tie the patient index's record keeps the id
    tables["patient"][-1]["resident_id"] = None
    later = _link(tmp_path, tables)
    assert later["his:H5"] == first["his:H5"] and later["emr:E9"] not in first.values()
    history = pq.read_table(tmp_path / "registry" / "history.parquet").to_pylist()
    assert [(h["event"], h["person_id"], h["other_person_id"]) for h in history] == [
        ("split", first["his:H5"], later["emr:E9"])
    ]
    assert json.loads(history[0]["evidence"])["records"] == ["emr:E9"]


def test_a_newborn_under_the_parents_resident_id_is_held_for_review_not_merged(tmp_path: Path) -> None:
    newborn = _patient("H9", "张小宝", "F", dt.date(2024, 1, 3), RID_1)
    persons = _link(tmp_path, _hospital(newborn))
    assert persons["his:H9"] != persons["his:H2"]
    # the parent's own records, sharing only the held key, are apart too until a reviewer decides
    queue = _key_conflicts(tmp_path)
    assert len(queue) == 1
    item = queue[0]
    assert item["kind"] == "key_conflict" and item["key"] == f"rid:{RID_1}"
    assert (
        "sex differs" in item["rule"]
        and "birth date differs" in item["rule"]
        and "name differs" in item["rule"]
    )
    evidence = json.loads(item["evidence"])
    assert evidence["records"] == 3 and evidence["conflicting_pairs"] == 2
    assert item["decision"] is None and item["present"]
    manifest = json.loads((tmp_path / "link" / "manifest.json").read_text())
    # the parent's EMR record, cut off from the index by the held key, comes back as a doubtful pair
    (pair,) = [i for i in review_queue(tmp_path).to_pylist() if i["kind"] == "probabilistic"]
    assert (pair["record_a"], pair["record_b"]) == ("emr:E1", "his:H2")
    assert 0.5 <= pair["match_probability"] < 0.95
    assert manifest["held_keys"] == 1 and manifest["review"] == {"items": 2, "open": 2}


def test_a_reviewers_link_decision_persists_and_is_bound_to_the_evidence(tmp_path: Path) -> None:
    twin = _patient("H9", "张大海", "M", dt.date(1960, 5, 1), RID_1)  # two characters off: not a typo
    tables = _hospital(twin)
    persons = _link(tmp_path, tables)
    assert persons["his:H9"] != persons["his:H2"]
    (item,) = _key_conflicts(tmp_path)
    decided = decide_review(tmp_path, item["item_id"], "link", reviewer="dr-wu", note="same man, alias")
    assert _key_conflicts(tmp_path)[0]["decision"] == "link"
    persons = _link(tmp_path, tables)
    assert persons["his:H9"] == persons["his:H2"] == persons["emr:E1"]
    assert _link(tmp_path, tables)["his:H9"] == persons["his:H2"]  # and on every later run
    line = json.loads((tmp_path / "review" / "decisions.jsonl").read_text().splitlines()[-1])
    assert line["reviewer"] == "dr-wu" and line["note"] == "same man, alias" and line["at"] == decided.at
    # new evidence under the key (a third, conflicting record): the decision no longer holds
    tables["patient"].append(_patient("H8", "王五", "F", dt.date(1999, 9, 9), RID_1))
    persons = _link(tmp_path, tables)
    assert persons["his:H9"] != persons["his:H2"]
    (reopened,) = _key_conflicts(tmp_path)
    assert reopened["item_id"] == item["item_id"] and reopened["decision"] is None


def test_typos_under_one_key_are_not_conflicts(tmp_path: Path) -> None:
    typo = _patient("E2", "张山", "M", dt.date(1960, 5, 7), RID_1, system="emr")  # a character, a digit
    persons = _link(tmp_path, _hospital(typo))
    assert persons["emr:E2"] == persons["his:H2"]
    assert review_queue(tmp_path).num_rows == 0  # neither a conflict nor a doubtful pair


def test_a_placeholder_key_carried_by_many_records_is_held(tmp_path: Path) -> None:
    many = [_patient(f"X{i:02d}", f"患者{i}", "M", dt.date(1950, 1, 1 + i % 28)) for i in range(51)]
    tables = _hospital(*many)
    tables["encounter"] += [
        {**_visit(f"W{i:02d}", f"X{i:02d}", 3), "visit_serial": "000000"} for i in range(51)
    ]
    persons = _link(tmp_path, tables)
    assert len({persons[f"his:X{i:02d}"] for i in range(51)}) == 51
    (item,) = _key_conflicts(tmp_path)
    assert item["key"] == "visit:000000" and "placeholder" in item["rule"]


def test_decisions_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `medspace link` first"):
        review_queue(tmp_path)
    _link(tmp_path, _hospital(_patient("H9", "张小宝", "F", dt.date(2024, 1, 3), RID_1)))
    (item,) = _key_conflicts(tmp_path)
    with pytest.raises(InputError, match="decision must be one of link, separate"):
        decide_review(tmp_path, item["item_id"], "merge")
    with pytest.raises(InputError, match="no review item"):
        decide_review(tmp_path, "key:0000", "link")
    (tmp_path / "review").mkdir(exist_ok=True)
    (tmp_path / "review" / "decisions.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match=r"decisions\.jsonl.*row 1|row 1.*decisions\.jsonl"):
        review_queue(tmp_path)


def test_review_commands(tmp_path: Path) -> None:
    _link(tmp_path, _hospital(_patient("H9", "张小宝", "F", dt.date(2024, 1, 3), RID_1)))
    runner = CliRunner(env={"COLUMNS": "250"})
    listed = runner.invoke(app, ["review", "list", "--workspace", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    (item,) = _key_conflicts(tmp_path)
    assert item["item_id"] in listed.output and "open" in listed.output
    decided = runner.invoke(
        app,
        ["review", "decide", item["item_id"], "separate", "--workspace", str(tmp_path), "--reviewer", "qa"],
    )
    assert decided.exit_code == 0, decided.output
    assert "separate by qa" in decided.output
    wrong = runner.invoke(app, ["review", "decide", item["item_id"], "maybe", "--workspace", str(tmp_path)])
    assert wrong.exit_code != 0 and "decision must be one of" in wrong.output


def _levenshtein(a: str, b: str) -> int:
    """Textbook dynamic programme: the independent route for `more_than_one_edit`."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


@given(st.text(alphabet="张三丰李四ab", max_size=5), st.text(alphabet="张三丰李四ab", max_size=5))
def test_more_than_one_edit_agrees_with_levenshtein(a: str, b: str) -> None:
    assert more_than_one_edit(a, b) == (_levenshtein(a, b) > 1)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_keeps_the_same_registry_as_duckdb(tmp_path: Path) -> None:
    rid_3 = make_resident_id("320102", dt.date(1990, 1, 1), 41)
    wang = [
        _patient("A0", "王五", "M", dt.date(1990, 1, 1)),
        _patient("E7", "王五", "M", dt.date(1990, 1, 1), system="emr"),
    ]
    exports = [
        _hospital(),
        _hospital(*wang),  # two records of a new patient, not yet linked
        _hospital(  # now both carry his resident ID, and a newborn arrives under another patient's
            *({**w, "resident_id": rid_3} for w in wang),
            _patient("H9", "张小宝", "F", dt.date(2024, 1, 3), RID_1),
        ),
    ]
    seen: dict[str, list[Any]] = {}
    for engine in ("duckdb", "spark"):
        ws = tmp_path / engine
        for tables in exports:
            write_staging(ws, tables)
            link_workspace(ws, engine)  # type: ignore[arg-type]
        seen[engine] = [
            _persons(ws),
            pq.read_table(ws / "registry" / "persons.parquet").to_pylist(),
            pq.read_table(ws / "registry" / "history.parquet").drop(["run_id", "at"]).to_pylist(),
            review_queue(ws).drop(["first_run", "last_run"]).to_pylist(),
        ]
    duck, spark = seen["duckdb"], seen["spark"]
    # created_run differs (run ids are per run); everything else is the same
    for rows in (duck[1], spark[1]):
        for row in rows:
            row.pop("created_run")
    assert spark == duck
    assert duck[2] and duck[3]  # the third export merged two persons and held a key


def test_a_record_whose_own_rows_are_two_people_is_held_whole_until_a_reviewer_decides(
    tmp_path: Path,
) -> None:
    # one EMR key with two people's rows (a reused number that is the system's own patient key)
    rows = [
        {**_patient("E7", "张三", "M", dt.date(1960, 5, 1), RID_1, system="emr"), "record_key": "E7-1"},
        {**_patient("E7", "李四", "F", dt.date(1971, 3, 9), RID_2, system="emr"), "record_key": "E7-2"},
    ]
    tables = _hospital(*rows)
    persons = _link(tmp_path, tables)
    assert persons["his:H2"] != persons["his:H5"]  # the overlay joins nobody
    assert persons["emr:E7"] is None
    (item,) = [i for i in review_queue(tmp_path).to_pylist() if i["kind"] == "record_conflict"]
    assert item["key"] == "emr:E7" and "sex differs" in item["rule"] and "name differs" in item["rule"]
    assert json.loads(item["evidence"])["records"] == 2  # the record's two rows, each named file#row
    events = pq.read_table(tmp_path / "link" / "events.parquet").to_pylist()
    held = [e for e in events if e["system"] == "emr" and e["record_key"] in ("E7-1", "E7-2")]
    assert len(held) == 2
    assert all(e["person_id"] is None and e["status"] == "orphan" and "overlay" in e["reason"] for e in held)
    manifest = json.loads((tmp_path / "link" / "manifest.json").read_text())
    assert manifest["held_records"] == 1
    # rows that differ by a typo only are one person's, not an overlay
    typo = [dict(rows[0]), {**rows[0], "record_key": "E7-2", "name": "张山"}]
    assert _link(tmp_path, _hospital(*typo))["emr:E7"] == persons["his:H2"]
    # the reviewer says the two rows are one person: the record is released (and its keys checked as any
    # record's), on every later run
    persons = _link(tmp_path, tables)
    decide_review(tmp_path, item["item_id"], "link", reviewer="dr-wu")
    for _ in range(2):
        persons = _link(tmp_path, tables)
        assert persons["emr:E7"] is not None
        assert json.loads((tmp_path / "link" / "manifest.json").read_text())["held_records"] == 0
