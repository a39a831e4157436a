"""The true KPIs of ``truth/kpis.json``, recomputed by an independent route from the raw export files.

The generator computes its KPIs from its internal event model. Here each KPI is recomputed from the exported
files alone, with plain ``csv`` code and the official definitions of domain.md §2, and the two must agree:

- the exports first get the repairs any reader must make: exact duplicate rows (defect ``duplicate_record``)
  are dropped by the file's key, and the HIS rows the export lost or had not yet synced (kept, in the same
  format, under ``truth/withheld/his/``) are added back;
- outpatient visits exclude emergency (JZLX 2), check-ups (JZLX 3), refunded (ZT 1) and cancelled (ZT 2)
  registrations; discharges are the distinct stays of the front sheet (A48 + A49), not the HIS admission rows,
  which split a recalled discharge in two;
- operations are counted both on the front sheet (coded procedures) and in the anaesthesia system (one row per
  procedure), and the two counts must agree.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from medspace.synth import HospitalConfig, generate_hospital

CONFIG = HospitalConfig(patients=3_000, seed=11, chunk_patients=1_000)

Row = dict[str, str]
KeyFn = Callable[[Row], tuple[str, ...]]

PROCEDURE_SLOTS = range(1, 6)  # front-sheet procedure columns C14x01C..C14x05C


def _read(path: Path) -> list[Row]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _dedupe(rows: Iterable[Row], key: KeyFn) -> list[Row]:
    """Drop repeated rows by key; a repeat must be an exact copy of the first row (a re-sent batch)."""
    seen: dict[tuple[str, ...], Row] = {}
    for row in rows:
        k = key(row)
        if k in seen:
            assert row == seen[k], f"rows sharing key {k} differ"
        else:
            seen[k] = row
    return list(seen.values())


def _his(hospital: Path, name: str, key: KeyFn) -> list[Row]:
    """A HIS table as the hospital holds it: export plus withheld rows, duplicates removed."""
    exported = _read(hospital / "his" / name)
    withheld = _read(hospital / "truth" / "withheld" / "his" / name)
    assert exported, name
    if withheld:
        assert list(withheld[0]) == list(exported[0]), f"withheld {name} has another header"
    return _dedupe([*exported, *withheld], key)


def _cents(value: str) -> int:
    return round(float(value) * 100)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


@dataclass(frozen=True)
class Exports:
    """The repaired export tables the KPIs are computed from."""

    registrations: list[Row]
    bills: list[Row]
    admissions: list[Row]
    front_sheets: list[Row]
    operations: list[Row]

    def procedures(self) -> list[tuple[Row, int]]:
        """(front sheet, slot) for every coded procedure on a front sheet."""
        return [(fs, n) for fs in self.front_sheets for n in PROCEDURE_SLOTS if fs[f"C14x{n:02d}C"].strip()]

    def registered(self, kind: str) -> int:
        return sum(1 for r in self.registrations if r["JZLX"] == kind and r["ZT"] == "0")

    def outpatient_revenue_cents(self) -> int:
        outpatient = {r["GHXH"] for r in self.registrations if r["JZLX"] == "1"}
        return sum(_cents(b["JE"]) for b in self.bills if b["MZZY"] == "1" and b["JZLSH"] in outpatient)


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kpis") / "hospital"
    generate_hospital(CONFIG, out)
    return out


@pytest.fixture(scope="module")
def stored(hospital: Path) -> dict[str, float]:
    kpis: dict[str, float] = json.loads((hospital / "truth" / "kpis.json").read_text(encoding="utf-8"))
    return kpis


@pytest.fixture(scope="module")
def exports(hospital: Path) -> Exports:
    """The export tables, restricted to the reporting period the manifest names (visits by registration
    time, stays by discharge time)."""
    manifest = json.loads((hospital / "truth" / "manifest.json").read_text(encoding="utf-8"))
    end = manifest["reporting_period"]["end"]  # yyyy-mm-dd, exclusive
    registrations = _his(hospital, "outpatient_registrations.csv", lambda r: (r["GHXH"],))
    registrations = [r for r in registrations if r["GHRQ"] < end.replace("-", "")]
    sheets = _dedupe(_read(hospital / "emr" / "front_sheets.csv"), lambda r: (r["A48"], r["A49"]))
    sheets = [fs for fs in sheets if fs["B15"] < end]
    stays = {(fs["A48"], fs["A49"]) for fs in sheets}
    admissions = _his(hospital, "inpatient_admissions.csv", lambda r: (r["JZLSH"],))
    operations = _dedupe(_read(hospital / "surgery" / "operations.csv"), lambda r: (r["OPER_NO"],))
    return Exports(
        registrations=registrations,
        bills=_his(hospital, "bills.csv", lambda r: (r["SFXH"],)),
        admissions=[a for a in admissions if (a["ZYH"], a["ZYCS"]) in stays],
        front_sheets=sheets,
        operations=[o for o in operations if (o["INP_NO"], o["VISIT_ID"]) in stays],
    )


def _assert_counts(stored: dict[str, float], recomputed: dict[str, int]) -> None:
    assert {k: stored[k] for k in recomputed} == recomputed


def _assert_ratios(stored: dict[str, float], recomputed: dict[str, float]) -> None:
    for name, value in recomputed.items():
        assert stored[name] == pytest.approx(value, abs=1e-6), name


def test_the_exports_carry_the_defects_the_recomputation_repairs(hospital: Path, exports: Exports) -> None:
    # otherwise the dedupe and withheld steps above would test nothing
    raw = len(_read(hospital / "his" / "outpatient_registrations.csv"))
    withheld = len(_read(hospital / "truth" / "withheld" / "his" / "outpatient_registrations.csv"))
    assert withheld > 0
    assert raw + withheld > len(exports.registrations)  # duplicates dropped
    assert len(_read(hospital / "emr" / "front_sheets.csv")) > len(exports.front_sheets)
    assert len(_read(hospital / "surgery" / "operations.csv")) > len(exports.operations)


def test_registration_counts(stored: dict[str, float], exports: Exports) -> None:
    _assert_counts(
        stored,
        {
            "outpatient_visits": exports.registered("1"),
            "emergency_visits": exports.registered("2"),
            "checkup_visits": exports.registered("3"),
            "registrations": len({r["GHXH"] for r in exports.registrations}),
        },
    )


def test_discharges_bed_days_and_length_of_stay(stored: dict[str, float], exports: Exports) -> None:
    discharges = len({(fs["A48"], fs["A49"]) for fs in exports.front_sheets})
    bed_days = sum(int(fs["B20"]) for fs in exports.front_sheets)
    _assert_counts(stored, {"discharges": discharges, "bed_days": bed_days})
    _assert_ratios(
        stored,
        {
            "average_length_of_stay": _ratio(bed_days, discharges),
            "outpatient_visits_per_discharge": _ratio(exports.registered("1"), discharges),
        },
    )


def test_recalled_discharges(stored: dict[str, float], exports: Exports) -> None:
    recalled = sum(1 for a in exports.admissions if a["ZHBZ"] == "1")
    _assert_counts(stored, {"recalled_discharges": recalled})
    # a recalled discharge is two HIS admission rows but one stay on the front sheet
    assert len(exports.admissions) - recalled == len(exports.front_sheets)


def test_inpatient_cost(stored: dict[str, float], exports: Exports) -> None:
    cents = sum(_cents(fs["D01"]) for fs in exports.front_sheets)
    assert _cents(str(stored["inpatient_cost"])) == cents
    _assert_ratios(stored, {"cost_per_discharge": _ratio(cents / 100, len(exports.front_sheets))})


def test_outpatient_revenue(stored: dict[str, float], exports: Exports) -> None:
    cents = exports.outpatient_revenue_cents()
    assert _cents(str(stored["outpatient_revenue"])) == cents
    _assert_ratios(stored, {"cost_per_outpatient_visit": _ratio(cents / 100, exports.registered("1"))})


def test_operations_from_the_front_sheet(stored: dict[str, float], exports: Exports) -> None:
    procedures = exports.procedures()
    operated = sum(1 for fs in exports.front_sheets if fs["C14x01C"].strip())
    grade4 = sum(1 for fs, n in procedures if fs[f"C17x{n:02d}"] == "4")
    day_surgery = sum(1 for fs, _ in procedures if fs["B38"] == "1")
    _assert_counts(
        stored,
        {
            "operated_discharges": operated,
            "operations": len(procedures),
            "grade4_operations": grade4,
            "day_surgery_operations": day_surgery,
        },
    )
    _assert_ratios(
        stored,
        {
            "operated_discharge_share": _ratio(operated, len(exports.front_sheets)),
            "grade4_share": _ratio(grade4, len(procedures)),
        },
    )


def test_operations_from_the_anaesthesia_system(stored: dict[str, float], exports: Exports) -> None:
    ops = exports.operations
    minimally_invasive = sum(1 for o in ops if o["MINIMALLY_INVASIVE"] == "Y")
    elective = sum(1 for o in ops if o["URGENCY"] == "择期")
    day_surgery = sum(1 for o in ops if o["DAY_SURGERY"] == "Y")
    grade4 = sum(1 for o in ops if o["OPER_GRADE"] == "4")
    sessions = len({(o["INP_NO"], o["VISIT_ID"], o["SESSION_NO"]) for o in ops})
    _assert_counts(
        stored,
        {
            "operations": len(ops),
            "operation_sessions": sessions,
            "minimally_invasive_operations": minimally_invasive,
            "elective_operations": elective,
            "day_surgery_operations": day_surgery,
            "grade4_operations": grade4,
        },
    )
    _assert_ratios(
        stored,
        {
            "minimally_invasive_share": _ratio(minimally_invasive, len(ops)),
            "day_surgery_share": _ratio(day_surgery, elective),
        },
    )


def test_the_two_operation_counts_agree_per_stay(exports: Exports) -> None:
    front: dict[tuple[str, str], int] = {}
    for fs, _ in exports.procedures():
        key = (fs["A48"], fs["A49"])
        front[key] = front.get(key, 0) + 1
    theatre: dict[tuple[str, str], int] = {}
    for o in exports.operations:
        key = (o["INP_NO"], o["VISIT_ID"])
        theatre[key] = theatre.get(key, 0) + 1
    assert theatre == front


def test_recomputed_kpis_are_plausible_for_a_tertiary_hospital(exports: Exports) -> None:
    # domain.md §8, widened for a 3,000-patient sample
    discharges = len(exports.front_sheets)
    bed_days = sum(int(fs["B20"]) for fs in exports.front_sheets)
    operated = sum(1 for fs in exports.front_sheets if fs["C14x01C"].strip())
    elective = sum(1 for o in exports.operations if o["URGENCY"] == "择期")
    day_surgery = sum(1 for o in exports.operations if o["DAY_SURGERY"] == "Y")
    assert 10 <= exports.registered("1") / discharges <= 40
    assert 5 <= bed_days / discharges <= 10
    assert 0.2 <= operated / discharges <= 0.6
    assert 0.05 <= day_surgery / elective <= 0.5
