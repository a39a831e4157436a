"""Honest reconciliation end to end (issue 10 item 5): a synthetic hospital through ingest, link, cdm and
quality, once clean and once per system with two thirds of that system's exported rows deleted.

A clean hospital (no export losses injected) passes every KPI consistency check. Deleting two thirds of the
rows of any system that feeds a KPI makes the affected KPIs' checks fail, with the unexplained records
counted; the counts are recounted here from the export files themselves (Python's csv module and openpyxl,
not medspace), by the keys the files carry. The default hospital, whose HIS export loses a few rows, reports
exactly those rows (the generator's withheld rows) as unexplained.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from medspace.cdm import build_cdm
from medspace.link import link_workspace
from medspace.quality import run_quality
from medspace.sources import stage_site
from medspace.synth import DefectRates, HospitalConfig, generate_hospital

pytestmark = pytest.mark.slow

PATIENTS = 2_000
CLEAN = DefectRates(orphan_record=0.0)  # no export loses a row; every other inconsistency stays
CUT_OFF = "after this system's last exported record (its export ends earlier)"


# -- the exports, read and damaged without medspace -------------------------------------------------------


def _csv_records(path: Path, encoding: str = "utf-8") -> tuple[str, list[str]]:
    """The header line and each data record's exact text (a quoted line break stays inside its record)."""
    text = path.read_text(encoding=encoding)
    lines = text.splitlines(keepends=True)
    reader = csv.reader(iter(lines))
    records, start = [], 1
    next(reader)
    for _ in reader:
        records.append("".join(lines[start : reader.line_num]))
        start = reader.line_num
    return lines[0], records


def _rows(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.DictReader(f))


def _xlsx_rows(path: Path) -> list[dict[str, Any]]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    sheet = book[book.sheetnames[0]]
    values = list(sheet.iter_rows(values_only=True))
    book.close()
    header = [str(v) for v in values[0]]
    return [dict(zip(header, row, strict=True)) for row in values[1:]]


def _delete_two_thirds(hospital: Path, out: Path, system: str) -> None:
    """Copy the hospital, keeping one data row in three (the 1st, 4th, ...) of every file of ``system``."""
    import openpyxl

    shutil.copytree(hospital, out)
    for path in sorted((out / system).iterdir()):
        if path.suffix in (".csv", ".tsv"):
            encoding = "gb18030" if "gb18030" in _formats(hospital)[f"{system}/{path.name}"] else "utf-8"
            header, records = _csv_records(path, encoding)
            path.write_text(header + "".join(records[::3]), encoding=encoding, newline="")
        elif path.suffix == ".ndjson":
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            path.write_text("".join(lines[::3]), encoding="utf-8")
        elif path.suffix == ".xlsx":
            book = openpyxl.load_workbook(path)
            for sheet in book.worksheets:
                for r in range(sheet.max_row, 1, -1):
                    if (r - 2) % 3:
                        sheet.delete_rows(r)
            book.save(path)
        else:
            raise AssertionError(f"no way to damage {path}")


def _formats(hospital: Path) -> dict[str, str]:
    manifest = json.loads((hospital / "truth" / "manifest.json").read_text(encoding="utf-8"))
    return {f["path"]: f["format"] for f in manifest["files"]}


def _pipeline(hospital: Path, ws: Path) -> Path:
    stage_site(None, hospital, ws)
    link_workspace(ws)
    build_cdm(ws)
    run_quality(ws)
    return ws


def _deleted(hospital: Path, damaged: Path, relative: str, key: str) -> set[str]:
    before = {r[key] for r in _rows(hospital / relative)}
    return before - {r[key] for r in _rows(damaged / relative)}


# -- what quality wrote -----------------------------------------------------------------------------------


def _kpis(ws: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ws / "quality" / "kpis.json").read_text(encoding="utf-8"))
    return data


def _source(ws: Path, kpi: str, source: str, counts: str | None = None) -> dict[str, Any]:
    found = [
        s
        for s in _kpis(ws)["kpis"][kpi]["sources"]
        if s["source"] == source and (counts is None or s["counts"] == counts)
    ]
    assert len(found) == 1, (kpi, source, [s["source"] for s in _kpis(ws)["kpis"][kpi]["sources"]])
    return found[0]


def _checks(ws: Path) -> dict[str, str]:
    label = json.loads((ws / "quality" / "label.json").read_text(encoding="utf-8"))
    consistency = next(d for d in label["dimensions"] if d["dimension"] == "consistency")
    failing = set(consistency["failing_checks"])
    names = [c["name"] for c in _kpi_checks(ws)]
    return {n: "failed" if n in failing else "passed" for n in names}


def _kpi_checks(ws: Path) -> list[dict[str, Any]]:
    return [
        {"name": f"{k}: {s['source']} ({s['counts']}) reconciles", "status": s["status"]}
        for k, v in _kpis(ws)["kpis"].items()
        for s in v["sources"]
    ]


def _unexplained(
    ws: Path, kpi: str, source: str, counts: str | None = None, *, by_reference: bool = False
) -> set[str]:
    """The records (or, ``by_reference``, the stays and visits) kpi_records.parquet lists as unexplained."""
    rows = pq.read_table(ws / "quality" / "kpi_records.parquet").to_pylist()
    return {
        r["reference_key"] if by_reference or r["record_key"] is None else r["record_key"]
        for r in rows
        if r["kpi"] == kpi
        and r["source"] == source
        and r["outcome"] == "unexplained"
        and (counts is None or r["counts"] == counts)
    }


def _period(ws: Path) -> tuple[dt.datetime, dt.datetime]:
    period = _kpis(ws)["period"]
    return (
        dt.datetime.fromisoformat(period["start"]),
        dt.datetime.fromisoformat(period["end_exclusive"]),
    )


def _front_sheets(hospital: Path) -> dict[str, dict[str, str]]:
    """Front sheets by stay (medical record number and admission count)."""
    return {f"{r['A48']}-{r['A49']}": r for r in _rows(hospital / "emr" / "front_sheets.csv")}


def _discharged_in(ws: Path, when: str) -> bool:
    start, end = _period(ws)
    return start <= dt.datetime.fromisoformat(when) < end


def _assert_ledger_adds_up(ws: Path) -> None:
    """Each source's reasons and unexplained amounts add up to its difference, and its records in
    kpi_records.parquet are the ones kpis.json counts."""
    with duckdb.connect() as con:
        counted = {
            (k, s, c, o): (n, a)
            for k, s, c, o, n, a in con.execute(
                "SELECT kpi, source, counts, outcome, count(*), sum(amount) "
                "FROM read_parquet($p) GROUP BY ALL",
                {"p": str(ws / "quality" / "kpi_records.parquet")},
            ).fetchall()
        }
    for name, kpi in _kpis(ws)["kpis"].items():
        for s in kpi["sources"]:
            total = sum(r["amount"] for r in s["reasons"]) + s["unexplained"]["amount"]
            assert total == pytest.approx(s["difference"], abs=0.05), (name, s["source"])
            assert s["difference"] == pytest.approx(s["value"] - s["reference"], abs=0.01)
            key = (name, s["source"], s["counts"], "unexplained")
            assert counted.get(key, (0, 0))[0] == s["unexplained"]["records"], key
            explained = sum(r["records"] for r in s["reasons"])
            assert counted.get((*key[:3], "explained"), (0, 0))[0] == explained, key
            failed = s["unexplained_pct"] > s["tolerance_pct"]
            assert (s["status"] == "failed") == failed, (name, s["source"])


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kpi-clean") / "hospital"
    generate_hospital(HospitalConfig(patients=PATIENTS, seed=5, defects=CLEAN), out)
    return out


@pytest.fixture(scope="module")
def clean(clean_hospital: Path) -> Path:
    return _pipeline(clean_hospital, clean_hospital.parent / "ws")


def _damaged(clean_hospital: Path, system: str) -> tuple[Path, Path]:
    hospital = clean_hospital.parent / f"without-{system}" / "hospital"
    _delete_two_thirds(clean_hospital, hospital, system)
    return hospital, _pipeline(hospital, hospital.parent / "ws")


# -- tests --------------------------------------------------------------------------------------------------


def test_a_clean_hospital_passes_every_kpi_consistency_check(clean: Path, clean_hospital: Path) -> None:
    checks = _checks(clean)
    assert len(checks) >= 10
    assert set(checks.values()) == {"passed"}, {n for n, s in checks.items() if s != "passed"}
    _assert_ledger_adds_up(clean)
    # the reasons are counted from records: refunds recounted from the registrations file (ZT = 1 refunded)
    his = _source(clean, "outpatient_visits", "his/encounter")
    start, end = _period(clean)
    refunded = len(  # distinct registrations: a row the export wrote twice is one registration
        {
            r["GHXH"]
            for r in _rows(clean_hospital / "his" / "outpatient_registrations.csv")
            if r["ZT"] == "1" and start <= dt.datetime.strptime(r["GHRQ"] + r["GHSJ"], "%Y%m%d%H%M%S") < end
        }
    )
    reasons = {r["rule"]: r for r in his["reasons"]}
    assert reasons["registration refunded (退号)"]["records"] == refunded > 0
    assert len(reasons["registration refunded (退号)"]["examples"]) == 20
    truth = json.loads((clean_hospital / "truth" / "kpis.json").read_text(encoding="utf-8"))
    recalled = _source(clean, "discharges", "his/encounter")["reasons"]
    assert (
        next(r["records"] for r in recalled if r["rule"].startswith("recalled"))
        == truth["recalled_discharges"]
    )
    for name in ("outpatient_visits", "discharges", "operated_discharges", "operations", "bed_days"):
        assert _kpis(clean)["kpis"][name]["value"] == truth[name], name


def test_accessibility_queries_every_access_path(clean: Path) -> None:
    label = json.loads((clean / "quality" / "label.json").read_text(encoding="utf-8"))
    access = next(d for d in label["dimensions"] if d["dimension"] == "accessibility")
    assert (access["passed"], access["failed"]) == (2, 0)
    # a CDM table whose file no longer answers with its stated rows fails the dimension
    person = clean / "cdm" / "person.parquet"
    table = pq.read_table(person)
    pq.write_table(table.slice(0, table.num_rows // 2), person)
    try:
        run_quality(clean)
        label = json.loads((clean / "quality" / "label.json").read_text(encoding="utf-8"))
        access = next(d for d in label["dimensions"] if d["dimension"] == "accessibility")
        # the file and the catalogue's view both give the wrong count
        assert access["failing_checks"] == [
            "OMOP CDM Parquet tables answer with their manifest's row counts",
            "workspace catalogue (DuckDB) views answer",
        ]
    finally:
        pq.write_table(table, person)
        run_quality(clean)


def test_surgery_rows_deleted(clean_hospital: Path) -> None:
    hospital, ws = _damaged(clean_hospital, "surgery")
    sheets = _front_sheets(clean_hospital)
    original = _rows(clean_hospital / "surgery" / "operations.csv")
    kept = _rows(hospital / "surgery" / "operations.csv")
    stay = lambda r: f"{r['INP_NO']}-{r['VISIT_ID']}"  # noqa: E731
    in_period = lambda k: k in sheets and _discharged_in(ws, sheets[k]["B15"])  # noqa: E731
    lost_stays = {stay(r) for r in original if in_period(stay(r))} - {stay(r) for r in kept}
    # distinct operations: a row the export wrote twice is one operation
    deleted_rows = len({r["OPER_NO"] for r in original if in_period(stay(r))} - {r["OPER_NO"] for r in kept})
    sessions = _source(ws, "operated_discharges", "surgery/procedure (theatre)", "theatre sessions")
    operations = _source(ws, "operations", "surgery/procedure (theatre)", "procedure rows")
    assert sessions["status"] == operations["status"] == "failed"
    assert sessions["unexplained"]["records"] == len(lost_stays) > 0
    assert _unexplained(ws, "operated_discharges", "surgery/procedure (theatre)") == lost_stays
    assert operations["unexplained"]["records"] == deleted_rows > 0
    checks = _checks(ws)
    assert {n for n, s in checks.items() if s == "failed"} == {
        "operated_discharges: surgery/procedure (theatre) (theatre sessions) reconciles",
        "operations: surgery/procedure (theatre) (procedure rows) reconciles",
    }
    _assert_ledger_adds_up(ws)


def _cut_off(ws: Path, kpi: str, source: str) -> set[str]:
    """The reference keys explained as after the system's last exported record."""
    rows = pq.read_table(ws / "quality" / "kpi_records.parquet").to_pylist()
    return {
        r["reference_key"] for r in rows if r["kpi"] == kpi and r["source"] == source and r["rule"] == CUT_OFF
    }


def _assert_lost_stays(
    ws: Path,
    kpi: str,
    source: str,
    lost: set[str],
    last_day: dt.date,
    sheets: dict[str, dict[str, str]],
    partial: frozenset[str] = frozenset(),
) -> None:
    """Every stay the damaged export lost is unexplained, but for those discharged on a later day than the
    export's last remaining record (the cut-off rule says so, and the file agrees); a stay that lost only
    some of its rows (one part of a recalled discharge) may be unexplained too, no other stay."""
    unexplained = _unexplained(ws, kpi, source, by_reference=True)
    cut_off = _cut_off(ws, kpi, source)
    assert lost <= unexplained | cut_off <= lost | partial and not unexplained & cut_off, kpi
    for key in cut_off:
        assert dt.datetime.fromisoformat(sheets[key]["B15"]).date() > last_day, key
    assert len(cut_off) <= 0.05 * len(lost), (kpi, len(cut_off), len(lost))


def test_emr_rows_deleted(clean_hospital: Path) -> None:
    hospital, ws = _damaged(clean_hospital, "emr")
    sheets = _front_sheets(clean_hospital)
    kept = _front_sheets(hospital)
    lost = {k for k in set(sheets) - set(kept) if _discharged_in(ws, sheets[k]["B15"])}
    last_day = max(
        dt.datetime.fromisoformat(v).date() for r in kept.values() for v in (r["B12"], r["B15"]) if v
    )
    assert _source(ws, "discharges", "emr/encounter")["status"] == "failed"
    for kpi, source in (
        ("discharges", "emr/encounter"),
        ("bed_days", "emr/encounter"),
        ("inpatient_cost", "emr/charge"),
    ):
        assert _source(ws, kpi, source)["status"] == "failed", kpi
        _assert_lost_stays(ws, kpi, source, lost, last_day, sheets)
    # the theatre records of the stays whose front sheet is gone have no coded procedure
    theatre = _source(ws, "operated_discharges", "surgery/procedure (theatre)", "theatre sessions")
    operated = {f"{r['INP_NO']}-{r['VISIT_ID']}" for r in _rows(hospital / "surgery" / "operations.csv")}
    assert theatre["status"] == "failed"
    assert theatre["unexplained"]["records"] >= len(
        operated & _unexplained(ws, "discharges", "emr/encounter")
    )
    _assert_ledger_adds_up(ws)


def test_his_rows_deleted(clean_hospital: Path) -> None:
    hospital, ws = _damaged(clean_hospital, "his")

    def stays(h: Path) -> dict[str, set[str]]:
        rows: dict[str, set[str]] = {}
        for r in _rows(h / "his" / "inpatient_admissions.csv"):
            rows.setdefault(f"{r['ZYH']}-{r['ZYCS']}", set()).add(r["JZLSH"])
        return rows

    before, after = stays(clean_hospital), stays(hospital)
    sheets = _front_sheets(clean_hospital)
    lost = {k for k in set(before) - set(after) if _discharged_in(ws, sheets[k]["B15"])}
    partial = frozenset(k for k in after if after[k] != before[k])
    days = [
        dt.datetime.strptime(v, "%Y%m%d").date()
        for r in _rows(hospital / "his" / "inpatient_admissions.csv")
        for v in (r["RYRQ"], r["CYRQ"])
        if v
    ]
    days += [
        dt.datetime.strptime(r["GHRQ"], "%Y%m%d").date()
        for r in _rows(hospital / "his" / "outpatient_registrations.csv")
    ]
    days += [
        dt.datetime.strptime(r["SFSJ"][:8], "%Y%m%d").date() for r in _rows(hospital / "his" / "bills.csv")
    ]
    for kpi in ("discharges", "bed_days"):
        assert _source(ws, kpi, "his/encounter")["status"] == "failed", kpi
        _assert_lost_stays(ws, kpi, "his/encounter", lost, max(days), sheets, partial)
    # registrations the HIS lost are still evidenced by its remaining outpatient bills: unexplained
    registrations = _deleted(clean_hospital, hospital, "his/outpatient_registrations.csv", "GHXH")
    outpatient = _source(ws, "outpatient_visits", "his/encounter")
    missing = _unexplained(ws, "outpatient_visits", "his/encounter")
    assert outpatient["status"] == "failed"
    assert missing <= registrations and len(missing) == outpatient["unexplained"]["records"] > 100
    billed = {r["JZLSH"] for r in _rows(hospital / "his" / "bills.csv") if r["MZZY"] == "1"}
    assert missing <= billed
    _assert_ledger_adds_up(ws)


def test_insurance_rows_deleted(clean_hospital: Path) -> None:
    hospital, ws = _damaged(clean_hospital, "insurance")
    start, end = _period(ws)

    def settled(h: Path) -> Iterator[dict[str, Any]]:
        for path in sorted((h / "insurance").glob("*.xlsx")):
            yield from _xlsx_rows(path)

    kept = {r["清单流水号"] for r in settled(hospital)}
    lost = [
        r for r in settled(clean_hospital) if r["清单流水号"] not in kept and start <= r["出院日期"] < end
    ]
    cost = _source(ws, "inpatient_cost", "insurance/settlement")
    assert cost["status"] == "failed"
    missing = [
        r
        for r in pq.read_table(ws / "quality" / "kpi_records.parquet").to_pylist()
        if r["source"] == "insurance/settlement"
        and r["rule"] == "stay without settlement rows in this system"
    ]
    assert len(missing) == len(lost) > 0
    # each lost settlement's stay by inpatient number and discharge day; its stated total (front sheet D01)
    sheets = {(r["A48"], r["B15"][:10]): float(r["D01"]) for r in _front_sheets(clean_hospital).values()}
    stated = sum(sheets[(r["住院号"], r["出院日期"].date().isoformat())] for r in lost)
    assert sum(r["amount"] for r in missing) == pytest.approx(-stated, abs=0.05)
    checks = _checks(ws)
    assert {n for n, s in checks.items() if s == "failed"} == {
        "inpatient_cost: insurance/settlement (settled totals of the period's stays) reconciles"
    }
    _assert_ledger_adds_up(ws)


def test_the_default_hospital_reports_its_lost_his_rows_as_unexplained(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The generator's own export losses (orphan_record) are the unexplained records, no more, no fewer."""
    hospital = tmp_path_factory.mktemp("kpi-default") / "hospital"
    generate_hospital(HospitalConfig(patients=PATIENTS, seed=5), hospital)
    ws = _pipeline(hospital, hospital.parent / "ws")
    withheld = hospital / "truth" / "withheld" / "his"
    sheets = _front_sheets(hospital)
    lost_stays = {
        f"{r['ZYH']}-{r['ZYCS']}"
        for r in _rows(withheld / "inpatient_admissions.csv")
        if _discharged_in(ws, sheets[f"{r['ZYH']}-{r['ZYCS']}"]["B15"])
    }
    assert _unexplained(ws, "discharges", "his/encounter") == lost_stays
    lost_visits = {r["GHXH"] for r in _rows(withheld / "outpatient_registrations.csv")}
    assert _unexplained(ws, "outpatient_visits", "his/encounter") <= lost_visits
    _assert_ledger_adds_up(ws)
    print(f"default hospital: {len(lost_stays)} lost HIS stays unexplained")
