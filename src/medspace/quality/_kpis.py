"""KPI reconciliation: the national performance KPIs (domain.md §2) counted from every system that can count
them, one reconciled value by the official definition, and every difference explained by reason.

The same fact comes out different from different systems: HIS counts registrations including refunds,
cancellations, emergencies and check-ups; HIS counts a recalled discharge twice; the anaesthesia system
counts theatre sessions and procedures, the KPI counts operated stays; a stay the HIS export lost is still on
the EMR front sheet. For each KPI this module gives each source's count, the reconciled count and, per
source, the difference broken into reason categories whose sum is the whole difference.

The reporting period runs from the first HIS registration day to the day after the last one: HIS is
exported in batches, and the period closes where its last batch does (everything after it is sync lag).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis

from medspace.core import EngineName, InputError, connect

PROCEDURE_SLOTS = range(1, 6)


@dataclass(frozen=True)
class SourceCount:
    """One system's count of a KPI's numerator or denominator, and why it differs from the reconciled one."""

    source: str
    counts: str  # what the system counts, in words
    value: float
    difference: float  # value - reconciled
    breakdown: dict[str, float] = field(
        default_factory=dict
    )  # reason -> signed contribution to the difference

    @property
    def explained(self) -> bool:
        return abs(sum(self.breakdown.values()) - self.difference) < 1e-6


@dataclass(frozen=True)
class Kpi:
    name: str
    definition: str
    value: float
    numerator: float
    denominator: float | None
    explanation: str
    sources: list[SourceCount] = field(default_factory=list)


@dataclass(frozen=True)
class KpiReconciliation:
    period_start: dt.date
    period_end: dt.date  # exclusive
    kpis: dict[str, Kpi]

    def to_json(self) -> str:
        data = {
            "period": {"start": self.period_start.isoformat(), "end_exclusive": self.period_end.isoformat()},
            "kpis": {name: asdict(k) for name, k in self.kpis.items()},
        }
        return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def _ratio(a: float, b: float) -> float:
    return round(a / b, 6) if b else 0.0


def _scalar(expr: Any) -> float:
    value = expr.execute()
    return 0.0 if value is None else float(value)


def reconcile_kpis(
    workspace: Path, *, engine: EngineName = "duckdb", period: tuple[dt.date, dt.date] | None = None
) -> KpiReconciliation:
    """Reconcile the hospital KPIs of a staged workspace.

    Args:
        workspace: a workspace with ``staging/`` (``medspace ingest``).
        engine: the engine the counts run on.
        period: (start, end exclusive); by default the span of the HIS registrations (see module docs).

    Returns:
        Every KPI with its reconciled value and, per source, the explained difference.
    """
    staging = Path(workspace) / "staging"
    if not (staging / "manifest.json").exists():
        raise InputError(
            "the workspace has no staging output; run `medspace ingest` first", file=str(staging)
        )
    con = connect(engine)

    def table(system: str, name: str) -> Any:
        return con.read_parquet(str(staging / system / f"{name}.parquet"), table_name=f"kpi_{system}_{name}")

    reg = table("his", "registrations")
    if period is None:
        first = reg.registered_at.min().execute()
        last = reg.registered_at.max().execute()
        if first is None:
            raise InputError("HIS has no registrations to take the reporting period from", file=str(staging))
        period = (first.date(), last.date() + dt.timedelta(days=1))
    start, end = period
    end_ts = ibis.literal(dt.datetime.combine(end, dt.time()))
    start_ts = ibis.literal(dt.datetime.combine(start, dt.time()))

    kpis: dict[str, Kpi] = {}
    outpatient, revenue = _outpatient(reg, table("his", "bills"), start_ts, end_ts)
    sheets = table("emr", "front_sheets")
    sheets = sheets.filter((sheets.discharged_at >= start_ts) & (sheets.discharged_at < end_ts))
    discharges = _discharges(sheets, table("his", "admissions"))
    ops = _operations(sheets, table("surgery", "operations"))
    n_out, n_dis = outpatient.value, discharges.value
    kpis["outpatient_visits"] = outpatient
    kpis["discharges"] = discharges
    kpis["outpatient_visits_per_discharge"] = Kpi(
        "outpatient_visits_per_discharge",
        "outpatient visits / discharges, same period",
        _ratio(n_out, n_dis),
        n_out,
        n_dis,
        "reconciled outpatient visits over reconciled discharges",
    )
    kpis.update(ops)
    kpis.update(_costs_and_stay(sheets, table("his", "admissions"), table("insurance", "settlements"), n_dis))
    kpis["cost_per_outpatient_visit"] = Kpi(
        "cost_per_outpatient_visit",
        "outpatient revenue / outpatient visits",
        _ratio(revenue, n_out),
        revenue,
        n_out,
        "net HIS outpatient charges of outpatient visits (refunds net to zero), lost registrations "
        "included through their orphan bills",
    )
    return KpiReconciliation(start, end, kpis)


def _outpatient(reg: Any, bills: Any, start: Any, end: Any) -> tuple[Kpi, float]:
    window = reg.filter((reg.registered_at >= start) & (reg.registered_at < end))
    counts = {
        row["visit_type"] + ":" + row["status"]: int(row["n"])
        for row in window.group_by(["visit_type", "status"])
        .aggregate(n=window.count())
        .to_pyarrow()
        .to_pylist()
    }
    all_rows = sum(counts.values())
    official = counts.get("outpatient:done", 0)
    # A registration the HIS export lost still has its registration-fee bill (an orphan): outpatient fee
    # items net of refunds above zero are outpatient visits that happened.
    fees = bills.filter((bills.setting == "outpatient") & (bills.fee_category == "挂号费"))
    per_visit = fees.group_by("visit_serial").aggregate(net=fees.amount.sum(), at=fees.charged_at.min())
    known = reg.select(known=reg.visit_serial).distinct()
    lost = per_visit.left_join(known, per_visit.visit_serial == known.known)
    lost = lost.filter(lost.known.isnull() & (lost.net > 0) & (lost.at >= start) & (lost.at < end))
    recovered = int(lost.count().execute())
    reconciled = official + recovered
    refunded = sum(n for k, n in counts.items() if k.endswith(":refunded"))
    cancelled = sum(n for k, n in counts.items() if k.endswith(":cancelled"))
    breakdown = {
        "registration refunded (退号)": -refunded,
        "registration cancelled": -cancelled,
        "emergency visit excluded": -counts.get("emergency:done", 0),
        "health check-up excluded": -counts.get("checkup:done", 0),
        "lost from the HIS export, evidenced by its registration-fee bill": recovered,
    }
    his = SourceCount(
        "his/registrations",
        "registration rows in the period",
        all_rows,
        all_rows - reconciled,
        {k: -v for k, v in breakdown.items()},
    )
    outpatient_serials = window.filter(window.visit_type == "outpatient").select(serial=window.visit_serial)
    lost_serials = lost.select(serial=lost.visit_serial)
    serials = ibis.union(outpatient_serials, lost_serials, distinct=True)
    revenue_bills = bills.filter(bills.setting == "outpatient").join(
        serials, bills.visit_serial == serials.serial
    )
    revenue = round(_scalar(revenue_bills.amount.sum()), 2)
    kpi = Kpi(
        "outpatient_visits",
        "outpatient registrations that took place; emergency and check-ups excluded",
        reconciled,
        reconciled,
        None,
        f"{official} completed outpatient registrations in HIS plus {recovered} the HIS export lost",
        [his],
    )
    return kpi, revenue


def _stay_keys(t: Any) -> Any:
    return t.inpatient_no + "-" + t.admission_count.cast("string")


def _discharges(sheets: Any, admissions: Any) -> Kpi:
    stays = sheets.select(key=_stay_keys(sheets), final=sheets.discharged_at)
    reconciled = int(stays.count().execute())
    his = admissions.mutate(key=_stay_keys(admissions))
    rows = his.left_join(stays, his.key == stays.key)
    in_period = rows.filter(rows.key_right.notnull())
    per_stay = in_period.group_by(in_period.key).aggregate(n=in_period.count())
    extra_recalled = int(_scalar((per_stay.n - 1).sum()))
    his_stays = int(per_stay.count().execute())
    missing = reconciled - his_stays
    his_count = extra_recalled + his_stays
    breakdown = {
        "recalled discharge (出院召回): HIS adds an admission and a discharge": float(extra_recalled),
        "stay missing from the HIS export (on the front sheet)": float(-missing),
    }
    source = SourceCount(
        "his/admissions",
        "discharge rows for the period's stays",
        his_count,
        his_count - reconciled,
        breakdown,
    )
    return Kpi(
        "discharges",
        "stays discharged in the period, any discharge mode (EMR front sheets)",
        reconciled,
        reconciled,
        None,
        "one front sheet per stay; a recalled discharge is one stay",
        [source],
    )


def _operations(sheets: Any, operations: Any) -> dict[str, Kpi]:
    stays = sheets.select(key=_stay_keys(sheets), day_surgery=sheets.day_surgery)
    discharges = int(stays.count().execute())
    coded = [
        sheets.filter(sheets[f"procedure_code_{n}"].notnull() & (sheets[f"procedure_code_{n}"] != "")).select(
            key=_stay_keys(sheets)
        )
        for n in PROCEDURE_SLOTS
    ]
    procedures = ibis.union(*coded, distinct=False)
    coded_count = int(procedures.count().execute())
    operated = int(procedures.key.nunique().execute())
    o = operations.mutate(key=_stay_keys(operations))
    period_stays = stays.select(skey=stays.key)
    o = o.join(period_stays, o.key == period_stays.skey)
    n_ops = int(o.count().execute())
    sessions = int(o.select("key", "session_no").distinct().count().execute())
    surgery_stays = int(o.key.nunique().execute())
    mi = int(o.filter(o.minimally_invasive).count().execute())
    grade4 = int(o.filter(o.grade == 4).count().execute())
    elective = int(o.filter(o.urgency == "elective").count().execute())
    day = int(o.filter(o.day_surgery & (o.urgency == "elective")).count().execute())
    per_session = SourceCount(
        "surgery/operations",
        "theatre sessions",
        sessions,
        sessions - operated,
        {
            "several theatre sessions in one stay (KPI counts the stay once)": sessions - surgery_stays,
            "operated stay without a theatre record": surgery_stays - operated,
        },
    )
    per_procedure = SourceCount(
        "surgery/operations",
        "procedure rows",
        n_ops,
        n_ops - operated,
        {
            "several theatre sessions in one stay (KPI counts the stay once)": sessions - surgery_stays,
            "several procedures in one session": n_ops - sessions,
            "operated stay without a theatre record": surgery_stays - operated,
        },
    )
    front = SourceCount(
        "emr/front_sheets",
        "coded procedures (C14)",
        coded_count,
        coded_count - operated,
        {"several procedures coded for one stay": coded_count - operated},
    )
    share = Kpi(
        "operated_discharge_share",
        "operated discharged patients / discharges (per person per stay)",
        _ratio(operated, discharges),
        operated,
        discharges,
        "stays with at least one coded procedure on the front sheet, over all discharges",
        [front, per_session, per_procedure],
    )
    count = Kpi(
        "operations",
        "operations on discharged patients (procedures)",
        coded_count,
        coded_count,
        None,
        "procedures coded on the front sheets of the period's stays",
        [
            SourceCount(
                "surgery/operations",
                "procedure rows",
                n_ops,
                n_ops - coded_count,
                {"procedure without a theatre record or theatre record not coded": n_ops - coded_count},
            )
        ],
    )
    return {
        "operated_discharges": Kpi(
            "operated_discharges",
            "operated stays",
            operated,
            operated,
            None,
            "stays with at least one coded procedure",
            [front],
        ),
        "operated_discharge_share": share,
        "operations": count,
        "minimally_invasive_share": Kpi(
            "minimally_invasive_share",
            "minimally invasive operations / operations",
            _ratio(mi, n_ops),
            mi,
            n_ops,
            "anaesthesia system flags per procedure",
        ),
        "grade4_share": Kpi(
            "grade4_share",
            "grade-4 operations / operations",
            _ratio(grade4, n_ops),
            grade4,
            n_ops,
            "operation grade per procedure",
        ),
        "day_surgery_share": Kpi(
            "day_surgery_share",
            "day-surgery operations / elective operations",
            _ratio(day, elective),
            day,
            elective,
            "procedures of day-surgery stays (B38) among elective procedures",
        ),
    }


def _costs_and_stay(sheets: Any, admissions: Any, settlements: Any, discharges: float) -> dict[str, Kpi]:
    cost = round(_scalar(sheets.total_cost.sum()), 2)
    bed_days = _scalar(sheets.length_of_stay.sum())
    stays = sheets.select(
        key=_stay_keys(sheets), ino=sheets.inpatient_no, day=sheets.admitted_at.date(), d01=sheets.total_cost
    )
    s = settlements.select(
        sino=settlements.inpatient_no, sday=settlements.admitted_at.date(), settled=settlements.total_cost
    )
    j = stays.left_join(s, [stays.ino == s.sino, stays.day == s.sday])
    uninsured = round(_scalar(j.filter(j.sino.isnull()).d01.sum()), 2)
    settled_total = round(_scalar(j.settled.sum()), 2)
    mismatch = round(_scalar(j.filter(j.sino.notnull()).mutate(diff=j.settled - j.d01).diff.sum()), 2)
    settlement = SourceCount(
        "insurance/settlements",
        "settled totals of the period's stays",
        settled_total,
        round(settled_total - cost, 2),
        {
            "not insured: no settlement list": -uninsured,
            "settlement total differs from the front sheet": mismatch,
        },
    )
    adm = admissions.mutate(key=_stay_keys(admissions))
    period_stays = stays.select(skey=stays.key)
    adm = adm.join(period_stays, adm.key == period_stays.skey)
    his_days = _scalar(adm.bed_days.sum())
    per_stay_his = adm.group_by("key").aggregate(days=adm.bed_days.sum(), rows=adm.count())
    los = sheets.select(lkey=_stay_keys(sheets), los=sheets.length_of_stay)
    cmp = per_stay_his.join(los, per_stay_his.key == los.lkey)
    recalled_extra = _scalar(cmp.filter(cmp.rows > 1).mutate(d=cmp.days - cmp.los).d.sum())
    missing_days = bed_days - _scalar(cmp.los.sum())
    his_source = SourceCount(
        "his/admissions",
        "bed-days of the period's stays",
        his_days,
        his_days - bed_days,
        {
            "recalled discharge: HIS counts each part as its own stay": recalled_extra,
            "stay missing from the HIS export": -missing_days,
        },
    )
    return {
        "inpatient_cost": Kpi(
            "inpatient_cost",
            "total cost of discharged patients (front sheet D01)",
            cost,
            cost,
            None,
            "sum of D01 over the period's stays",
            [settlement],
        ),
        "cost_per_discharge": Kpi(
            "cost_per_discharge",
            "inpatient cost / discharges",
            _ratio(cost, discharges),
            cost,
            discharges,
            "front-sheet totals over reconciled discharges",
        ),
        "bed_days": Kpi(
            "bed_days",
            "bed-days of discharged patients (B20)",
            bed_days,
            bed_days,
            None,
            "a stay ending before midnight counts one day",
            [his_source],
        ),
        "average_length_of_stay": Kpi(
            "average_length_of_stay",
            "bed-days / discharges",
            _ratio(bed_days, discharges),
            bed_days,
            discharges,
            "front-sheet length of stay over reconciled discharges",
        ),
    }
