"""The CDM's clinical and payment tables from the canonical model: conditions, observations, procedures,
drugs, measurements, notes, costs and payer plan periods.

Rules (each counted in the manifest):
- A row keeps its person and visit as the link stage gave them (``link/events.parquet``).
- A row that keeps no time of its own (a front-sheet procedure, a diagnosis without a date) takes its visit's
  start date: counted per canonical table as ``dated_by_visit``. Without a visit either, it is excluded
  (``no_date``): the CDM tables require a date.
- Diagnoses whose role is ``pathology`` or ``external_cause`` (a front sheet's morphology and external-cause
  codes) are observations; the others conditions.
- An imaging exam is a procedure, and its report (findings and impression) a note.
- A drug exposure with no stop time ends on its start date (drug_exposure_end_date is required; OHDSI's
  THEMIS convention when no days' supply is known).
- A lab value is converted to its test's canonical unit when the test is mapped and a conversion is known;
  otherwise it keeps its value and its unit (unit_source_value), with unit_concept_id 0, and is counted as
  ``unknown_unit``.
- Charges are summed per visit into one cost row; each settlement is a cost row of its visit, and the
  settlement rows of one person and plan (``insurance_type``) span one payer plan period.
"""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa

from ._concepts import lab_test_code, with_concepts
from ._hospital import HospitalData, orphan_rules, outcome
from ._people import EHR, numbered, person_key, ranked
from ._units import conversion_rows

CLAIM = 32810  # Type Concept "Claim": settlement lists and billing records
_OBSERVATION_ROLES = ("pathology", "external_cause")
_CONVERSIONS = pa.schema(
    [
        ("test", pa.string()),
        ("unit", pa.string()),
        ("factor", pa.float64()),
        ("offset", pa.float64()),
        ("status", pa.string()),
    ]
)


class Clinical:
    """The clinical builders of one build, sharing its kept persons and visit index."""

    def __init__(self, h: HospitalData, kept: Any, index: Any, provider: Any) -> None:
        self.h = h
        self.kept = kept.select(k_person="person_id")
        self.index = index.select(v_id="visit_id", v_occ="visit_occurrence_id", v_start="occ_start")
        self.provider = provider.select(pv_name="provider_name", pv_id="provider_id")

    def rows(self, table: str) -> Any:
        """Staged rows of ``table`` with their kept person (``k_person``) and visit occurrence (``v_occ``)."""
        t = self.h.rows(table)
        t = t.left_join(self.kept, t.ev_person == self.kept.k_person)
        return t.left_join(self.index, t.ev_visit == self.index.v_id).drop("v_id")

    @staticmethod
    def exclusions(t: Any) -> tuple[tuple[Any, str], ...]:
        return (*orphan_rules(t), (t.k_person.isnull(), "orphan"))

    @staticmethod
    def dated(t: Any, at: Any) -> Any:
        """``t`` with ``day``: its own time (``own``), else its visit's start."""
        t = t.mutate(own=at)
        return t.mutate(day=ibis.coalesce(t.own.cast("timestamp"), t.v_start.cast("timestamp")))

    def record(self, table: str, t: Any, **also: Any) -> None:
        """Route every row of ``t`` by its ``outcome``; count the written rows dated by their visit."""
        self.h.route(table, t, t.outcome, **also)
        by_visit = t.filter(~t.outcome.startswith("excluded:") & t.own.isnull())
        self.h.dated_by_visit[table] = by_visit.select(outcome=ibis.literal("dated_by_visit"))

    # ---------------------------------------------------------------------------------------- diagnoses
    def diagnoses(self) -> Any:
        t = self.dated(self.rows("diagnosis"), ibis._.diagnosed_at)
        target = ibis.cases((t.role.isin(_OBSERVATION_ROLES), "observation"), else_="condition_occurrence")
        t = t.mutate(
            outcome=outcome(
                target, *self.exclusions(t), (t.code.isnull(), "no_code"), (t.day.isnull(), "no_date")
            )
        )
        self.record("diagnosis", t)
        return t

    def conditions(self, diagnoses: Any) -> Any:
        c = diagnoses.filter(diagnoses.outcome == "condition_occurrence")
        c = with_concepts(self.h, c, "code", "code_system", "condition")
        c = c.mutate(condition_occurrence_id=numbered(c, c.ev_person, c.day))
        return c.select(
            condition_occurrence_id=c.condition_occurrence_id,
            person_id=person_key(c.ev_person),
            condition_concept_id=c.concept_id,
            condition_start_date=c.day.date(),
            condition_start_datetime=c.day,
            condition_type_concept_id=ibis.cases((c.role == "billing", CLAIM), else_=EHR),
            condition_status_concept_id=0,
            visit_occurrence_id=c.v_occ,
            condition_source_value=c.code,
            condition_source_concept_id=c.source_concept_id,
            # the role, and whether the code is the main one (rank 1) of its record
            condition_status_source_value=ibis.cases(
                (c.rank == 1, c.role + ":main"), (c.rank.notnull(), c.role + ":other"), else_=c.role
            ),
        )

    def observations(self, diagnoses: Any) -> Any:
        o = diagnoses.filter(diagnoses.outcome == "observation")
        o = o.mutate(observation_id=numbered(o, o.ev_person, o.day))
        return o.select(
            observation_id=o.observation_id,
            person_id=person_key(o.ev_person),
            observation_concept_id=0,
            observation_date=o.day.date(),
            observation_datetime=o.day,
            observation_type_concept_id=EHR,
            value_as_string=o.code,
            visit_occurrence_id=o.v_occ,
            observation_source_value=o.code,
            observation_source_concept_id=0,
            qualifier_source_value=o.role,
        )

    # --------------------------------------------------------------------------------------- procedures
    def procedures(self, x: Any) -> Any:
        """Procedures and imaging exams (``x``, from `exams`)."""
        p = self.dated(self.rows("procedure"), ibis._.performed_at)
        p = p.mutate(
            outcome=outcome("procedure_occurrence", *self.exclusions(p), (p.day.isnull(), "no_date"))
        )
        self.record("procedure", p)
        p = p.filter(p.outcome == "procedure_occurrence")
        p = with_concepts(self.h, p, "code", "code_system", "procedure")
        own = p.select(
            "ev_person",
            "v_occ",
            "day",
            "src",
            code=p.code,
            end=p.ended_at.cast("timestamp"),
            who=p.surgeon,
            concept=p.concept_id,
            source_concept=p.source_concept_id,
            kind=ibis.cases((p.role == "billing", CLAIM), else_=EHR),
        )
        x = x.filter(x.outcome == "procedure_occurrence")
        exams = x.select(
            "ev_person",
            "v_occ",
            "day",
            "src",
            code=x.modality + ":" + x.exam_name,
            end=x.day,
            who=x.reporter,
            concept=ibis.literal(0, "int64"),
            source_concept=ibis.literal(0, "int64"),
            kind=ibis.literal(EHR),
        )
        u = ibis.union(own, exams, distinct=False)
        u = u.left_join(self.provider, u.who == self.provider.pv_name)
        u = u.mutate(procedure_occurrence_id=numbered(u, u.ev_person, u.day))
        return u.select(
            procedure_occurrence_id=u.procedure_occurrence_id,
            person_id=person_key(u.ev_person),
            procedure_concept_id=u.concept,
            procedure_date=u.day.date(),
            procedure_datetime=u.day,
            procedure_end_date=u.end.date(),
            procedure_end_datetime=u.end,
            procedure_type_concept_id=u.kind,
            provider_id=u.pv_id,
            visit_occurrence_id=u.v_occ,
            procedure_source_value=u.code,
            procedure_source_concept_id=u.source_concept,
        )

    def exams(self) -> Any:
        """Imaging exams, dated by their performance (else request), each a procedure (routed here)."""
        x = self.rows("imaging_exam")
        x = self.dated(x, ibis.coalesce(x.performed_at, x.requested_at))
        x = x.mutate(
            outcome=outcome("procedure_occurrence", *self.exclusions(x), (x.day.isnull(), "no_date"))
        )
        report = self.reports(x)
        self.record("imaging_exam", x, note=report.select(outcome=ibis.literal("note")))
        return x

    @staticmethod
    def reports(x: Any) -> Any:
        """Exams with a report text, dated by the report (else the exam)."""
        text = ibis.cases(
            (x.findings.notnull() & x.impression.notnull(), x.findings + "\n" + x.impression),
            else_=ibis.coalesce(x.findings, x.impression),
        )
        r = x.filter(x.outcome == "procedure_occurrence").mutate(
            text=text, at=ibis.coalesce(x.reported_at.cast("timestamp"), x.day)
        )
        return r.filter(r.text.notnull() & (r.text != ""))

    # -------------------------------------------------------------------------------------------- drugs
    def drugs(self) -> Any:
        o = self.dated(self.rows("medication_order"), ibis._.started_at)
        o = o.mutate(outcome=outcome("drug_exposure", *self.exclusions(o), (o.day.isnull(), "no_date")))
        self.record("medication_order", o)
        o = o.filter(o.outcome == "drug_exposure")
        orders = o.select(
            "ev_person",
            "v_occ",
            "day",
            "src",
            end=ibis.coalesce(o.stopped_at.cast("timestamp"), o.day),
            quantity=o.quantity.cast("float64"),
            code=ibis.coalesce(o.drug_code, o.drug_name),
            code_system=ibis.cases((o.drug_code.notnull(), o.code_system), else_=ibis.null("string")),
            route=o.route,
            dose_unit=o.dose_unit,
        )
        d = self.dated(self.rows("medication_dispense"), ibis._.dispensed_at)
        d = d.mutate(outcome=outcome("drug_exposure", *self.exclusions(d), (d.day.isnull(), "no_date")))
        self.record("medication_dispense", d)
        d = d.filter(d.outcome == "drug_exposure")
        dispensed = d.select(
            "ev_person",
            "v_occ",
            "day",
            "src",
            end=d.day,
            quantity=d.quantity.cast("float64"),
            code=ibis.coalesce(d.drug_code, d.drug_name),
            code_system=ibis.cases((d.drug_code.notnull(), d.code_system), else_=ibis.null("string")),
            route=ibis.null("string"),
            dose_unit=ibis.null("string"),
        )
        u = ibis.union(orders, dispensed, distinct=False)
        # Drugs map only through a loaded vocabulary (NDC -> RxNorm); no curated mapping of the national
        # (NHSA) drug codes ships yet, so those stay concept 0 with the code kept.
        u = with_concepts(self.h, u, "code", "code_system", "drug")
        u = u.mutate(drug_exposure_id=numbered(u, u.ev_person, u.day))
        return u.select(
            drug_exposure_id=u.drug_exposure_id,
            person_id=person_key(u.ev_person),
            drug_concept_id=u.concept_id,
            drug_exposure_start_date=u.day.date(),
            drug_exposure_start_datetime=u.day,
            drug_exposure_end_date=u.end.date(),
            drug_exposure_end_datetime=u.end,
            drug_type_concept_id=EHR,
            quantity=u.quantity,
            route_concept_id=0,
            visit_occurrence_id=u.v_occ,
            drug_source_value=u.code,
            drug_source_concept_id=u.source_concept_id,
            route_source_value=u.route,
            dose_unit_source_value=u.dose_unit,
        )

    # ------------------------------------------------------------------------------------- measurements
    def measurement_rows(self) -> Any:
        """Lab results with their time, test, unit status and value in the canonical unit where known."""
        h = self.h
        r = self.rows("lab_result")
        sp = h.staged("specimen").select(sp_system="system", sp_key="record_key", sp_at="collected_at")
        r = r.left_join(sp, [r.system == sp.sp_system, r.specimen_key == sp.sp_key])
        r = self.dated(r, ibis.coalesce(r.sp_at, r.collected_at, r.resulted_at))
        r = r.mutate(outcome=outcome("measurement", *self.exclusions(r), (r.day.isnull(), "no_date")))
        self.record("lab_result", r)
        r = r.filter(r.outcome == "measurement")
        r = r.mutate(test=lab_test_code(h, r))
        tests = [{"t_code": t.code, "t_unit": t.unit_concept_id} for t in h.mappings.lab_tests.values()]
        lab = h.lookup("lab_units", tests, pa.schema([("t_code", pa.string()), ("t_unit", pa.int64())]))
        r = r.left_join(lab, r.test == lab.t_code)
        r = with_concepts(h, r, "item_code", "code_system", "measurement", ("item_concept", "item_source"))
        r = with_concepts(
            h, r, "standard_code", "standard_code_system", "measurement", ("std_concept", "std_source")
        )
        # A join on the conversions, not a CASE per (test, unit): the same arithmetic as to_canonical_ibis,
        # and it tells the results it cannot convert apart (no matching row).
        conv = h.lookup("unit_conversions", conversion_rows(h.mappings), _CONVERSIONS)
        conv = conv.rename(
            c_test="test", c_unit="unit", c_factor="factor", c_offset="offset", c_status="status"
        )
        # A regex, not .strip(): Ibis compiles strip() for Spark as trim() of letters (see _units.py).
        cleaned = r.unit.re_replace(r"^\s+|\s+$", "").re_replace("[µμ]", "u").re_replace("/l$", "/L")
        r = r.left_join(conv, [r.test == conv.c_test, cleaned == conv.c_unit])
        value = r.value.cast("float64")
        low = ibis.coalesce(r.range_low.cast("float64"), _range_bound(r.reference_range, 1))
        high = ibis.coalesce(r.range_high.cast("float64"), _range_bound(r.reference_range, 2))
        known = r.c_status.notnull()
        factor = ibis.cases((known, r.c_factor), else_=1.0)
        offset = ibis.cases((known, r.c_offset), else_=0.0)
        return r.mutate(
            unit_status=ibis.cases((value.isnull(), "no_value"), (known, r.c_status), else_="unknown_unit"),
            number=value * factor + offset,
            low_c=low * factor + offset,
            high_c=high * factor + offset,
            unit_concept=ibis.cases((known, r.t_unit.fill_null(0)), else_=0),
            concept=ibis.cases((r.item_concept != 0, r.item_concept), else_=r.std_concept),
        )

    def measurements(self, r: Any) -> Any:
        r = r.mutate(measurement_id=numbered(r, r.ev_person, r.day))
        return r.select(
            measurement_id=r.measurement_id,
            person_id=person_key(r.ev_person),
            measurement_concept_id=r.concept,
            measurement_date=r.day.date(),
            measurement_datetime=r.day,
            measurement_type_concept_id=EHR,
            operator_concept_id=0,
            value_as_number=r.number.round(4),
            unit_concept_id=r.unit_concept,
            range_low=r.low_c.round(4),
            range_high=r.high_c.round(4),
            visit_occurrence_id=r.v_occ,
            measurement_source_value=r.item_code,
            measurement_source_concept_id=r.item_source,
            unit_source_value=r.unit,
            value_source_value=ibis.coalesce(r.value_text, r.value.cast("string")),
        )

    # -------------------------------------------------------------------------------------------- notes
    def notes(self, exams: Any) -> Any:
        n = self.dated(self.rows("note"), ibis._.written_at)
        n = n.mutate(
            outcome=outcome(
                "note",
                *self.exclusions(n),
                (n.day.isnull(), "no_date"),
                (n.text.isnull() | (n.text == ""), "no_text"),
            )
        )
        self.record("note", n)
        n = n.filter(n.outcome == "note")
        own = n.select("ev_person", "v_occ", "src", at=n.day, title=n.title, text=n.text, kind=n.note_type)
        r = self.reports(exams)
        reports = r.select(
            "ev_person",
            "v_occ",
            "src",
            at=r.at,
            title=r.exam_name,
            text=r.text,
            kind=ibis.literal("radiology-report"),
        )
        u = ibis.union(own, reports, distinct=False)
        u = u.mutate(note_id=numbered(u, u.kind, u.at))
        return u.select(
            note_id=u.note_id,
            person_id=person_key(u.ev_person),
            note_date=u.at.date(),
            note_datetime=u.at,
            note_type_concept_id=EHR,
            note_class_concept_id=0,
            note_title=u.title,
            note_text=u.text,
            encoding_concept_id=0,
            language_concept_id=0,
            visit_occurrence_id=u.v_occ,
            note_source_value=u.kind,
        )

    # ------------------------------------------------------------------------------------------ payment
    def payer_plan_periods(self) -> Any:
        s = self.rows("settlement")
        start = ibis.coalesce(s.admitted_at, s.settled_at, s.discharged_at).cast("timestamp")
        end = ibis.coalesce(s.discharged_at, s.settled_at, s.admitted_at).cast("timestamp")
        s = s.mutate(p_start=start, p_end=end)
        s = s.mutate(
            outcome=outcome("payer_plan_period", *self.exclusions(s), (s.p_start.isnull(), "no_date"))
        )
        costed = s.filter((s.outcome == "payer_plan_period") & s.v_occ.notnull())
        self.h.route("settlement", s, s.outcome, cost=costed.select(outcome=ibis.literal("cost")))
        s = s.filter(s.outcome == "payer_plan_period")
        p = s.group_by([s.ev_person, s.insurance_type]).aggregate(start=s.p_start.min(), end=s.p_end.max())
        p = p.mutate(payer_plan_period_id=ranked(p.ev_person, p.insurance_type))
        return p.select(
            payer_plan_period_id=p.payer_plan_period_id,
            person_id=person_key(p.ev_person),
            payer_plan_period_start_date=p.start.date(),
            payer_plan_period_end_date=p.end.date(),
            payer_concept_id=0,
            payer_source_value=p.insurance_type,
            plan_concept_id=0,
            plan_source_value=p.insurance_type,
            person_key=p.ev_person,
            insurance_type=p.insurance_type,
        )

    def costs(self, plans: Any) -> Any:
        """Charges summed per visit (EHR), and what each settlement says was paid (Claim)."""
        b = self.rows("charge")
        b = b.mutate(outcome=outcome("cost", *self.exclusions(b), (b.v_occ.isnull(), "no_visit")))
        self.h.route("charge", b, b.outcome)
        b = b.filter(b.outcome == "cost")
        b = b.group_by("v_occ").aggregate(total=b.amount.sum())
        charged = b.select(
            event=b.v_occ.cast("int64"),
            total_charge=b.total.cast("float64").round(2),
            total_paid=ibis.null("float64"),
            paid_by_payer=ibis.null("float64"),
            paid_by_patient=ibis.null("float64"),
            kind=ibis.literal(EHR),
            plan=ibis.null("int64"),
            src=ibis.literal("charge:") + b.v_occ.cast("string").lpad(12, "0"),
        )
        s = self.rows("settlement")
        s = s.filter(s.k_person.notnull() & s.v_occ.notnull())
        s = s.filter(ibis.coalesce(s.admitted_at, s.settled_at, s.discharged_at).notnull())
        pl = plans.select(pl_person="person_key", pl_type="insurance_type", pl_id="payer_plan_period_id")
        s = s.left_join(pl, [s.ev_person == pl.pl_person, s.insurance_type == pl.pl_type])
        settled = s.select(
            event=s.v_occ.cast("int64"),
            total_charge=ibis.null("float64"),
            total_paid=s.total_cost.cast("float64"),
            paid_by_payer=s.fund_paid.cast("float64"),
            paid_by_patient=s.self_paid.cast("float64"),
            kind=ibis.literal(CLAIM),
            plan=s.pl_id.cast("int64"),
            src="settlement:" + s.src,
        )
        c = ibis.union(charged, settled, distinct=False)
        c = c.mutate(cost_id=numbered(c, c.event))
        return c.select(
            cost_id=c.cost_id,
            cost_event_id=c.event,
            cost_domain_id=ibis.literal("Visit"),
            cost_type_concept_id=c.kind,
            currency_concept_id=0,
            total_charge=c.total_charge,
            total_paid=c.total_paid,
            paid_by_payer=c.paid_by_payer,
            paid_by_patient=c.paid_by_patient,
            payer_plan_period_id=c.plan,
        )


def _range_bound(text: Any, which: int) -> Any:
    """Reference ranges as labs write them: ``3.9-6.1`` or ``<5.7``."""
    both = text.re_extract(r"^\s*([0-9.]+)\s*-\s*([0-9.]+)\s*$", which)
    upper_only = text.re_extract(r"^\s*<\s*([0-9.]+)\s*$", 1)
    value = both if which == 1 else ibis.cases((both != "", both), else_=upper_only)
    return ibis.cases((value != "", value.cast("float64")), else_=ibis.null("float64"))


def route_context_tables(h: HospitalData) -> None:
    """Tables that give other rows their context, or that OMOP has no table for: excluded, counted."""
    for table, rule in (
        ("lab_order", "context_only"),
        ("specimen", "context_only"),
        ("imaging_study", "no_cdm_table"),
    ):
        t = h.staged(table)
        h.route(table, t, ibis.literal(f"excluded:{rule}"))
