"""Bad exports: each problem is quarantined with its rule and a message naming file, row and field; other
files are still staged; nothing crashes and nothing is dropped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medspace.core import InputError
from medspace.sources import StagingReport, stage_site
from site_cut import cut_site


@pytest.fixture
def exports(hospital: Path, tmp_path: Path) -> Path:
    """A copy of the hospital's HIS, RIS and PACS exports that a test may damage."""
    out = tmp_path / "exports"
    for system in ("his", "ris", "pacs"):
        shutil.copytree(hospital / system, out / system)
    return out


def stage(exports: Path, tmp_path: Path, *systems: str) -> tuple[StagingReport, list[dict[str, object]]]:
    report = stage_site(cut_site(*systems), exports, tmp_path / "ws")
    quarantine = pq.read_table(tmp_path / "ws" / "staging" / "quarantine.parquet").to_pylist()
    for f in report.files:
        assert f.staged + f.quarantined == f.rows_read, f.file
    for m in report.maps:
        assert m.rows * m.slots == m.written + m.quarantined + m.excluded + m.empty_slots, m
    return report, quarantine


def staged(tmp_path: Path, table: str, system: str, source: str) -> list[dict[str, object]]:
    """The rows of canonical ``table`` that came from raw table ``system.source``."""
    rows = pq.read_table(tmp_path / "ws" / "staging" / f"{table}.parquet").to_pylist()
    return [r for r in rows if r["system"] == system and r["_source_table"] == source]


def lines(path: Path, encoding: str = "utf-8") -> list[str]:
    return path.read_text(encoding=encoding).splitlines(keepends=True)


def test_a_missing_column_quarantines_that_file_and_stages_the_others(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "patients.csv"
    rows = [line.split(",") for line in lines(path)]
    position = rows[0].index('"XB"')
    path.write_text("".join(",".join(r[:position] + r[position + 1 :]) for r in rows), encoding="utf-8")
    report, quarantine = stage(exports, tmp_path, "his")
    patients = report.file("his/patients.csv")
    assert patients.staged == 0 and patients.quarantined == patients.rows_read == len(rows) - 1
    assert patients.rules == {"missing_column": patients.rows_read}
    [problem] = [p for p in report.problems if p.rule == "missing_column"]
    assert problem.file == "his/patients.csv" and problem.field == "XB"
    message = str(problem.to_error())  # what the CLI prints: the file once, the column
    assert message.count("his/patients.csv") == 1 and "XB" in message
    assert {q["rule"] for q in quarantine if q["file"] == "his/patients.csv"} == {"missing_column"}
    # the raw key is still known, so later stages can tell which patient was lost
    assert all(q["key"] for q in quarantine if q["file"] == "his/patients.csv")
    assert report.table("his", "registrations").staged > 0
    assert staged(tmp_path, "patient", "his", "patients") == []
    assert staged(tmp_path, "encounter", "his", "registrations")


def test_a_malformed_date_quarantines_the_row(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "patients.csv"
    text = lines(path)
    fields = text[5].split(",")
    fields[3] = '"19621332"'  # CSRQ: month 13
    text[5] = ",".join(fields)
    fields = text[7].split(",")
    fields[3] = '"20230229"'  # not a leap year: Arrow's parser alone would roll it over to 1 March
    text[7] = ",".join(fields)
    path.write_text("".join(text), encoding="utf-8")
    report, quarantine = stage(exports, tmp_path, "his")
    bad = [q for q in quarantine if q["rule"] == "bad_date"]
    assert [(q["file"], q["row"], q["field"]) for q in bad] == [
        ("his/patients.csv", 5, "CSRQ"),
        ("his/patients.csv", 7, "CSRQ"),
    ]
    assert "his/patients.csv, row 5, field CSRQ" in str(bad[0]["reason"])
    assert "19621332" not in str(bad[0]["reason"])  # messages hold no values
    assert "19621332" in str(bad[0]["raw"])  # the raw row is kept for the data team
    assert report.file("his/patients.csv").staged == report.file("his/patients.csv").rows_read - 2


def test_a_gbk_file_declared_utf8_is_quarantined_row_by_row(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "patients.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))
    report, quarantine = stage(exports, tmp_path, "his")
    patients = report.file("his/patients.csv")
    assert patients.rules == {"encoding": patients.rows_read} and patients.failed  # ingest exits non-zero
    assert any(p.rule == "encoding" and p.file == "his/patients.csv" for p in report.problems)
    assert all("\\x" in str(q["raw"]) for q in quarantine if q["rule"] == "encoding")


def test_a_few_undecodable_rows_are_quarantined_and_the_rest_staged(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "patients.csv"
    data = bytearray(path.read_bytes())
    third = data.index(b"\n", data.index(b"\n", data.index(b"\n") + 1) + 1)
    data[third + 5 : third + 5] = b"\xff\xfe"  # into row 3
    path.write_bytes(bytes(data))
    _, quarantine = stage(exports, tmp_path, "his")
    assert [(q["row"], q["rule"]) for q in quarantine if q["file"] == "his/patients.csv"] == [(3, "encoding")]
    rows = [r["_source_row"] for r in staged(tmp_path, "patient", "his", "patients")]
    assert rows[:3] == [1, 2, 4]


def test_a_utf8_file_declared_gbk_fails_as_a_whole_with_a_clear_message(
    exports: Path, tmp_path: Path
) -> None:
    path = exports / "ris" / "exams.csv"
    path.write_text(path.read_text(encoding="gb18030"), encoding="utf-8")
    report, quarantine = stage(exports, tmp_path, "ris")
    exams = report.file("ris/exams.csv")
    assert exams.staged == 0 and exams.failed
    [problem] = report.problems
    assert problem.file == "ris/exams.csv" and problem.rule == "encoding" and "gb18030" in problem.message
    assert [(q["row"], q["rule"]) for q in quarantine] == [(None, "encoding")]


def test_a_truncated_file_quarantines_the_cut_row(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "outpatient_registrations.csv"
    text = path.read_text(encoding="utf-8")
    cut = text.rstrip("\n")
    cut = cut[: cut.rindex("\n") + 40]  # the last line ends inside a quoted field
    path.write_text(cut, encoding="utf-8")
    report, quarantine = stage(exports, tmp_path, "his")
    registrations = report.file("his/outpatient_registrations.csv")
    last = len(cut.splitlines()) - 1
    assert registrations.rows_read == last
    assert [q["row"] for q in quarantine if q["rule"] == "truncated_row"] == [last]


def test_a_ragged_row_is_quarantined_without_shifting_row_numbers(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "bills.csv"
    text = lines(path)
    text[10] = text[10].rstrip("\n") + ',"extra"\n'  # data row 10
    path.write_text("".join(text), encoding="utf-8")
    _, quarantine = stage(exports, tmp_path, "his")
    assert [(q["row"], q["rule"]) for q in quarantine if q["file"] == "his/bills.csv"] == [
        (10, "field_count")
    ]
    bills = staged(tmp_path, "charge", "his", "bills")
    assert [b["_source_row"] for b in bills[8:11]] == [9, 11, 12]
    assert bills[9]["record_key"] == text[11].split(",")[0].strip('"')


def test_a_conflicting_key_is_quarantined_apart_from_exact_duplicates(exports: Path, tmp_path: Path) -> None:
    path = exports / "his" / "transfers.csv"
    text = lines(path)
    changed = text[1].replace('"NK', '"WK', 1)
    assert changed != text[1]
    path.write_text("".join([*text, text[1], changed]), encoding="utf-8")
    report, quarantine = stage(exports, tmp_path, "his")
    rows = len(text) - 1
    found = [(q["row"], q["rule"]) for q in quarantine if q["file"] == "his/transfers.csv"]
    assert found == [(rows + 1, "duplicate_key"), (rows + 2, "conflicting_key")]
    assert report.file("his/transfers.csv").staged == rows
    first_key = text[1].split(",")[0].strip('"')
    assert [q["key"] for q in quarantine if q["file"] == "his/transfers.csv"] == [first_key, first_key]


def test_bad_json_and_a_missing_file_are_reported(exports: Path, tmp_path: Path) -> None:
    path = exports / "pacs" / "dicom_studies.ndjson"
    text = lines(path)
    text[2] = text[2][:30] + "\n"
    path.write_text("".join(text), encoding="utf-8")
    (exports / "his" / "transfers.csv").unlink()
    report, quarantine = stage(exports, tmp_path, "pacs", "his")
    assert [(q["row"], q["rule"]) for q in quarantine if q["file"] == "pacs/dicom_studies.ndjson"] == [
        (3, "bad_json")
    ]
    assert [p.rule for p in report.problems] == ["missing_file"]
    assert report.table("his", "transfers").staged == 0
    assert pq.read_table(tmp_path / "ws" / "staging" / "transfer.parquet").num_rows == 0
    assert "transfer" in report.empty_tables


def test_a_failed_run_keeps_the_last_good_staging(exports: Path, tmp_path: Path) -> None:
    good, _ = stage(exports, tmp_path, "his")
    before = (tmp_path / "ws" / "staging" / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="export folder"):
        stage_site(cut_site("his"), tmp_path / "nowhere", tmp_path / "ws")
    assert (tmp_path / "ws" / "staging" / "manifest.json").read_bytes() == before
    assert good.staged > 0
