"""The CDM's health-system and person-level tables from the canonical model and link: care sites, locations,
providers, persons, visits (visit_occurrence, visit_detail), observation periods and deaths.

Rules (each counted in the manifest where it applies):
- A person's sex, birth date and address come, field by field, from the first of their patient records, in
  the site's precedence of systems, then by registration date, that has the field. A person whose records
  keep no birth date gets a year of birth from an age, as a lab request or imaging exam states it: the year
  of the record (its registration date, else the latest event of that patient in that system) minus the
  age; the latest record with an age wins.
- A person with no year of birth at all is not written (year_of_birth is required); their rows are excluded
  as ``orphan``.
- A visit is a linked visit without a parent that was not refunded or cancelled; a sub-visit (an ICU stay)
  is a visit_detail of its parent, as is each ward segment of a stay (its admitting department until the
  first transfer, then each transfer's new department).
- A visit still open (no end) ends on its start date (visit_end_date is required).
- A death is a death record, else a visit ending in death (died_in_hospital, or discharge mode 5 of the
  front sheet's B34C value set, which the model's discharge_mode carries as written).
"""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa

from ._concepts import with_concepts
from ._hospital import HospitalData, model_event_times, model_schemas, orphan_rules, outcome

EHR = 32817  # Type Concept "EHR": every record here comes from the hospital's own systems
VISIT_DETAIL = 9201  # visit_detail_concept_id of a ward segment or sub-visit, as before
# Addresses keep the district at most: the CDM needs where people live, not their street.
_DISTRICT = r"^(?:[^市省]+[市省])?(?:[^市]+市)?([^区县市]+(?:新区|区|县))"
_CITY = r"^([^市省]+[市省])"
_STAYS = ("inpatient", "day_surgery")


def person_key(text: Any) -> Any:
    """medspace person ids (``P00001234``) as OMOP integer ids."""
    return text.substr(1).cast("int64")


def ranked(*order: Any) -> Any:
    """An id for each distinct value of ``order`` (rows sharing it share the id)."""
    return (ibis.dense_rank().over(order_by=list(order)) + 1).cast("int64")


def numbered(t: Any, *order: Any) -> Any:
    """A unique id per row, in a deterministic order ending with the row's source (``src``)."""
    return (ibis.row_number().over(order_by=[*order, t.src]) + 1).cast("int64")


def nulls_last(column: Any) -> list[Any]:
    """Order keys putting nulls last on every engine (DuckDB and Spark disagree on the default)."""
    return [column.isnull(), column]


# ---------------------------------------------------------------------------------------- reference tables
def care_sites(h: HospitalData) -> Any:
    """The departments of the mapping file, then every other department code the visits and transfers name.

    A code some export writes without its letter prefix (``stripped_code`` in ``departments.csv``, domain.md
    §1.4) is ambiguous alone; with the department's name it is the listed department, not a new care site.
    """
    known = [
        {"code": d.code, "stripped": d.stripped_code, "name": d.name} for d in h.mappings.departments.values()
    ]
    schema = pa.schema([("code", pa.string()), ("stripped", pa.string()), ("name", pa.string())])
    deps = h.lookup("departments", known, schema)
    v = h.linked("visits")
    tr = h.staged("transfer")
    seen = ibis.union(
        v.select(code=v.department_code, name=v.department_name),
        v.select(code=v.discharge_department_code, name=ibis.null("string")),
        tr.select(code=tr.from_department_code, name=ibis.null("string")),
        tr.select(code=tr.to_department_code, name=ibis.null("string")),
        distinct=False,
    )
    seen = seen.filter(seen.code.notnull() & ~seen.code.isin(deps.code))
    named = deps.select(n_stripped="stripped", n_name="name")
    seen = seen.left_join(named, [seen.code == named.n_stripped, seen.name == named.n_name])
    seen = seen.filter(seen.n_stripped.isnull())
    seen = seen.group_by("code").aggregate(name=seen.name.max())
    sites = ibis.union(deps, seen.mutate(stripped=ibis.null("string")).select("code", "stripped", "name"))
    return sites.mutate(
        care_site_id=ranked(sites.code),
        care_site_name=sites.name,
        place_of_service_concept_id=0,
        care_site_source_value=sites.code,
        place_of_service_source_value=sites.name,
    )


def with_care_site(t: Any, code: str, sites: Any, name: str | None = None) -> Any:
    """Add ``care_site_id`` to ``t`` from a department code column (and its name, for stripped codes)."""
    s = sites.select(s_code="code", care_site_id="care_site_id")
    t = t.left_join(s, t[code] == s.s_code).drop("s_code")
    if name is None:
        return t
    n = sites.filter(sites.stripped.notnull()).select(
        n_stripped="stripped", n_name="name", n_id="care_site_id"
    )
    t = t.left_join(n, [t.care_site_id.isnull(), t[code] == n.n_stripped, t[name] == n.n_name])
    return t.mutate(care_site_id=ibis.coalesce(t.care_site_id, t.n_id)).drop("n_stripped", "n_name", "n_id")


def locations(h: HospitalData) -> Any:
    p = h.staged("patient")
    loc = p.select(city=p.address.re_extract(_CITY, 1), county=p.address.re_extract(_DISTRICT, 1))
    loc = loc.filter(loc.county.notnull() & (loc.county != "")).distinct()
    return loc.mutate(location_id=ranked(loc.city, loc.county), location_source_value=loc.city + loc.county)


def providers(h: HospitalData) -> Any:
    """Everyone the records name as the doctor of a visit, surgeon of a procedure or reporter of an exam."""
    enc, px, ex = h.staged("encounter"), h.staged("procedure"), h.staged("imaging_exam")
    names = ibis.union(
        enc.select(name=enc.doctor),
        px.select(name=px.surgeon),
        ex.select(name=ex.reporter),
        distinct=True,
    )
    names = names.filter(names.name.notnull() & (names.name != ""))
    return names.mutate(
        provider_id=ranked(names.name), provider_name=names.name, provider_source_value=names.name
    )


# ----------------------------------------------------------------------------------------------- persons
def _first_by_precedence(h: HospitalData, j: Any, column: str) -> Any:
    """Per person, ``column`` from the first record (site precedence, then registration) that has it."""
    c = j.filter(j[column].notnull())
    order = [h.precedence(c.system), *nulls_last(c.registered_date), c.record_key]
    c = c.mutate(rank=ibis.row_number().over(group_by=c.person_id, order_by=order))
    return c.filter(c.rank == 0).select("person_id", column)


def _last_seen(h: HospitalData) -> Any:
    """Per (system, patient_key): the latest event time of the patient's rows in any canonical table.

    An age a record states without its own date (a lab request's patient, whose registration date the lab
    does not keep) is an age at the patient's events in that system.
    """
    parts = []
    for table, column in sorted(model_event_times().items()):
        schema = model_schemas()[table]
        if table == "patient" or "patient_key" not in schema.names:
            continue
        t = h.staged(table)
        t = t.filter(t.patient_key.notnull() & t[column].notnull())
        parts.append(t.select(l_system=t.system, l_key=t.patient_key, l_at=t[column].cast("timestamp")))
    u = ibis.union(*parts, distinct=False)
    return u.group_by(["l_system", "l_key"]).aggregate(l_at=u.l_at.max())


def person_attributes(h: HospitalData) -> Any:
    """One row per linked person: person_id (text), sex, birth_date, address, year from an age."""
    records = h.linked("person_records")
    records = records.filter(records.person_id.notnull())
    r = records.select(r_system="system", r_key="patient_key", person_id="person_id")
    p = h.staged("patient")
    j = p.join(r, [p.system == r.r_system, p.patient_key == r.r_key])
    everyone = records.select("person_id").distinct()
    out = everyone
    for column in ("sex", "birth_date", "address"):
        out = out.left_join(_first_by_precedence(h, j, column), "person_id").drop("person_id_right")
    ages = j.filter(j.age_years.notnull())
    seen = _last_seen(h)
    ages = ages.left_join(seen, [ages.system == seen.l_system, ages.patient_key == seen.l_key])
    ages = ages.mutate(at=ibis.coalesce(ages.registered_date.cast("timestamp"), ages.l_at))
    ages = ages.filter(ages.at.notnull())
    ages = ages.mutate(
        rank=ibis.row_number().over(group_by=ages.person_id, order_by=[ibis.desc(ages.at), ages.record_key])
    )
    ages = ages.filter(ages.rank == 0).select(
        "person_id", age_year=(ages.at.year() - ages.age_years).cast("int64")
    )
    out = out.left_join(ages, "person_id").drop("person_id_right")
    return out.mutate(year_of_birth=ibis.coalesce(out.birth_date.year().cast("int64"), out.age_year))


def persons(h: HospitalData, attributes: Any, location: Any) -> Any:
    p = attributes.filter(attributes.year_of_birth.notnull())
    p = p.mutate(county=p.address.re_extract(_DISTRICT, 1), city=p.address.re_extract(_CITY, 1))
    loc = location.select(loc_city="city", loc_county="county", loc_id="location_id")
    p = p.left_join(loc, [p.city == loc.loc_city, p.county == loc.loc_county])
    return p.select(
        person_id=person_key(p.person_id),
        gender_concept_id=ibis.cases((p.sex == "M", 8507), (p.sex == "F", 8532), else_=0),
        year_of_birth=p.year_of_birth,
        month_of_birth=p.birth_date.month(),
        day_of_birth=p.birth_date.day(),
        birth_datetime=p.birth_date.cast("timestamp"),
        race_concept_id=0,
        ethnicity_concept_id=0,
        location_id=p.loc_id,
        person_source_value=p.person_id,
        gender_source_value=p.sex,
        gender_source_concept_id=0,
    )


def route_patients(h: HospitalData, kept: Any) -> None:
    t = h.rows("patient")
    k = kept.select(k_person="person_id")
    t = t.left_join(k, t.ev_person == k.k_person)
    h.route("patient", t, outcome("person", *orphan_rules(t), (t.k_person.isnull(), "orphan")))


# ------------------------------------------------------------------------------------------------ visits
def visit_index(h: HospitalData, kept: Any) -> Any:
    """Every linked visit that is a visit_occurrence or a visit_detail of one, with the occurrence's id.

    Columns: the link visit's, plus ``visit_occurrence_id``, ``occ_start`` (the occurrence's start) and
    ``is_detail``.
    """
    v = h.linked("visits")
    done = v.status.isnull() | (v.status == "done")
    v = v.filter(done & v.person_id.isin(kept.person_id))
    top = v.filter(v.parent_visit_id.isnull())
    top = top.mutate(visit_occurrence_id=ranked(top.visit_id), occ_start=top.start, is_detail=False)
    parents = top.select(p_id="visit_id", p_occ="visit_occurrence_id", p_start="start")
    sub = v.join(parents, v.parent_visit_id == parents.p_id)
    sub = sub.mutate(visit_occurrence_id=sub.p_occ, occ_start=sub.p_start, is_detail=True)
    sub = sub.drop("p_id", "p_occ", "p_start")
    return ibis.union(top, sub, distinct=False)


def visits(h: HospitalData, index: Any, sites: Any) -> Any:
    v = index.filter(~index.is_detail)
    v = with_care_site(v, "department_code", sites, "department_name")
    concept = {
        vt.visit_type: vt.visit_concept_id
        for vt in h.mappings.visit_types.values()
        if vt.system == "medspace"
    }
    return v.select(
        visit_occurrence_id=v.visit_occurrence_id,
        person_id=person_key(v.person_id),
        visit_concept_id=ibis.cases(*((v.visit_type == k, c) for k, c in sorted(concept.items())), else_=0),
        visit_start_date=v.start.date(),
        visit_start_datetime=v.start,
        visit_end_date=ibis.coalesce(v.end, v.start).date(),
        visit_end_datetime=v.end,
        visit_type_concept_id=EHR,
        care_site_id=v.care_site_id,
        visit_source_value=v.visit_id,
        visit_source_concept_id=0,
        admitted_from_concept_id=0,
        admitted_from_source_value=v.admission_route,
        discharged_to_concept_id=0,
        discharged_to_source_value=v.discharge_mode,
    )


def route_encounters(h: HospitalData, index: Any, died: Any) -> None:
    t = h.rows("encounter")
    ix = index.select(i_visit="visit_id", i_detail="is_detail")
    t = t.left_join(ix, t.ev_visit == ix.i_visit)
    written = ibis.cases((t.i_detail, "visit_detail"), else_="visit_occurrence")
    d = died.select(d_visit="visit_id")
    dead = t.filter(t.ev_visit.isin(d.d_visit)).select(outcome=ibis.literal("death"))
    h.route(
        "encounter",
        t,
        outcome(written, *orphan_rules(t), (t.i_visit.isnull(), "not_a_visit")),
        death=dead,
    )


def visit_details(h: HospitalData, index: Any, sites: Any) -> Any:
    """Sub-visits (ICU stays), and ward segments of stays: the admitting department until the first
    transfer, then each transfer's department until the next transfer, its own end or the stay's end."""
    sub = index.filter(index.is_detail)
    subs = sub.select(
        "visit_occurrence_id",
        "person_id",
        key=sub.visit_id,
        dept=sub.department_code,
        source=ibis.coalesce(sub.department_code, sub.visit_type),
        start=sub.start.cast("timestamp"),
        end=sub.end.cast("timestamp"),
    )
    tr = h.rows("transfer")
    stays = index.filter(~index.is_detail).select(
        s_visit="visit_id", s_occ="visit_occurrence_id", s_end="end", s_person="person_id"
    )
    tr = tr.join(stays, tr.ev_visit == stays.s_visit)
    tr = tr.mutate(
        next_at=tr.transferred_at.lead().over(group_by=tr.s_occ, order_by=[tr.transferred_at, tr.src])
    )
    moves = tr.select(
        visit_occurrence_id=tr.s_occ,
        person_id=tr.s_person,
        key=tr.src,
        dept=tr.to_department_code,
        source=ibis.coalesce(tr.to_department_code, tr.to_care_unit),
        start=tr.transferred_at.cast("timestamp"),
        end=ibis.coalesce(tr.left_at, tr.next_at, tr.s_end).cast("timestamp"),
    )
    first = tr.group_by("s_occ").aggregate(first_at=tr.transferred_at.min())
    st = index.filter(~index.is_detail & index.visit_type.isin(_STAYS))
    st = st.left_join(first, st.visit_occurrence_id == first.s_occ)
    st = st.filter(st.first_at.isnull() | (st.first_at > st.start))
    admitting = st.select(
        "visit_occurrence_id",
        "person_id",
        key=st.visit_id,
        dept=st.department_code,
        source=st.department_code,
        start=st.start.cast("timestamp"),
        end=ibis.coalesce(st.first_at, st.end).cast("timestamp"),
    )
    d = ibis.union(subs, moves, admitting, distinct=False)
    d = with_care_site(d, "dept", sites)
    d = d.mutate(end=ibis.coalesce(d.end, d.start))
    d = d.mutate(visit_detail_id=ranked(d.visit_occurrence_id, d.start, d.key))
    return d.select(
        visit_detail_id=d.visit_detail_id,
        person_id=person_key(d.person_id),
        visit_detail_concept_id=VISIT_DETAIL,
        visit_detail_start_date=d.start.date(),
        visit_detail_start_datetime=d.start,
        visit_detail_end_date=d.end.date(),
        visit_detail_end_datetime=d.end,
        visit_detail_type_concept_id=EHR,
        care_site_id=d.care_site_id,
        visit_detail_source_value=d.source,
        visit_detail_source_concept_id=0,
        admitted_from_concept_id=0,
        discharged_to_concept_id=0,
        visit_occurrence_id=d.visit_occurrence_id,
    )


def route_transfers(h: HospitalData, index: Any) -> None:
    t = h.rows("transfer")
    stays = index.filter(~index.is_detail).select(s_visit="visit_id")
    t = t.left_join(stays, t.ev_visit == stays.s_visit)
    h.route("transfer", t, outcome("visit_detail", *orphan_rules(t), (t.s_visit.isnull(), "no_visit")))


def observation_periods(visit: Any) -> Any:
    per = visit.group_by("person_id").aggregate(
        observation_period_start_date=visit.visit_start_date.min(),
        observation_period_end_date=visit.visit_end_date.max(),
    )
    return per.mutate(observation_period_id=per.person_id, period_type_concept_id=EHR)


# ------------------------------------------------------------------------------------------------- death
def died_in_hospital(index: Any) -> Any:
    """Visits (occurrences) that ended in death."""
    v = index.filter(~index.is_detail)
    return v.filter(v.died_in_hospital.fill_null(False) | (v.discharge_mode == "5"))


def deaths(h: HospitalData, index: Any, kept: Any) -> Any:
    """One death per person: a death record first (site precedence), else the last visit ending in death."""
    rows = h.rows("death")
    dr = rows.filter(rows.ev_person.isin(kept.person_id))
    dr = with_concepts(h, dr, "cause_code", "cause_code_system", "condition")
    recorded = dr.select(
        person=dr.ev_person,
        day=dr.death_date.cast("date"),
        at=dr.died_at.cast("timestamp"),
        cause=dr.cause_code,
        cause_concept=dr.concept_id,
        cause_source_concept=dr.source_concept_id,
        rank=h.precedence(dr.system),
        src=dr.src,
    )
    v = died_in_hospital(index)
    stays = v.select(
        person=v.person_id,
        day=ibis.coalesce(v.end, v.start).date(),
        at=v.end.cast("timestamp"),
        cause=ibis.null("string"),
        cause_concept=ibis.literal(0, "int64"),
        cause_source_concept=ibis.literal(0, "int64"),
        rank=ibis.literal(len(h.site.precedence) + 1),
        src=v.visit_id,
    )
    d = ibis.union(recorded, stays, distinct=False)
    d = d.mutate(n=ibis.row_number().over(group_by=d.person, order_by=[d.rank, ibis.desc(d.day), d.src]))
    d = d.filter(d.n == 0)
    h.route(
        "death", rows, outcome("death", *orphan_rules(rows), (~rows.ev_person.isin(kept.person_id), "orphan"))
    )
    return d.select(
        person_id=person_key(d.person),
        death_date=d.day,
        death_datetime=d.at,
        death_type_concept_id=EHR,
        cause_concept_id=d.cause_concept,
        cause_source_value=d.cause,
        cause_source_concept_id=d.cause_source_concept,
    )
