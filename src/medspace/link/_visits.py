"""Visits: the encounter rows of every system grouped into one visit or stay each.

Encounter rows that share a visit serial, or an inpatient number and admission count, are one visit: an
admission, its recalled discharge's continuation row and the discharge record of the same stay end as one
stay. Each attribute of a visit comes from the row of the first system in the site's precedence that has a
value (within a system, the original row before a recalled continuation, then the earliest). Rows that
name a parent stay (``parent_visit_serial``: ICU stays and other sub-encounters) are visits of their own
with ``parent_visit_id``; they are never merged into their parent.

visit_id is the visit serial when the visit has one, else ``stay:<inpatient_no>-<admission_count>``, else
``<system>:<record_key>`` of its first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis

from medspace.core import materialise

from ._components import connected_components
from ._persons import record_id
from ._staged import StagedTables

# Visit attributes copied from the encounter row that wins by precedence, as named in visits.parquet.
ATTRIBUTES = {
    "visit_type": "encounter_type",
    "status": "status",
    "start": "start_at",
    "start_precision": "start_precision",
    "department_code": "department_code",
    "department_name": "department_name",
    "discharge_department_code": "discharge_department_code",
    "discharge_mode": "discharge_mode",
    "admission_route": "admission_route",
    "admission_category": "admission_category",
    "discharge_destination": "discharge_destination",
    "died_in_hospital": "died_in_hospital",
    "day_surgery": "day_surgery",
    "visit_serial": "visit_serial",
    "inpatient_no": "inpatient_no",
    "admission_count": "admission_count",
    "person_id": "person_id",
}

# Visit types whose events happen between admission and discharge (a stay), not on the day of a visit.
STAY_TYPES = ("inpatient", "day_surgery", "icu")

# More rows than any visit holds: pushes a row without the value behind every row with it.
_NO_VALUE = 1_000_000


@dataclass(frozen=True)
class VisitIndex:
    """The visits, and how a row of any table finds its visit.

    Attributes:
        visits: one row per visit (the columns of ``visits.parquet``).
        rows: one row per encounter row: system, record_key, visit_id, person_id, whether ``foreign``.
        serials: visit serial -> visit_id, with the system that recorded the serial.
        stays: (inpatient_no, admission_count) -> visit_id, with the system that recorded it.
        systems: the systems that export encounters (their rows need their own system's encounter).
    """

    visits: Any
    rows: Any
    serials: Any
    stays: Any
    systems: frozenset[str]


def stay_label(ino: Any, count: Any, per_admission: bool) -> Any:
    """``<inpatient_no>-<admission_count>``; where numbers are per admission, the number alone will do."""
    with_count = ino + "-" + count.cast("string")
    if per_admission:
        return ibis.cases((count.isnull(), ino), else_=with_count)
    return with_count


def _without_foreign_rows(g: Any, patient_index: str | None) -> Any:
    """Rows grouped with another person's visit become visits of their own (``foreign``).

    Rows sharing a serial or an inpatient number and admission count are one person's, since the same keys
    link their patient records; they differ only when a key was held for review (a reused inpatient number
    on another patient's discharge record). The visit is then the person's whose row the patient index
    holds (else the first row's by precedence), and the other person's row is a visit of its own, known by
    its row, rather than part of someone else's stay.
    """
    known = g.filter(g.person_id.notnull())
    index_first = ibis.cases((known.system == ibis.literal(patient_index or ""), 0), else_=1)
    known = known.mutate(
        pick=ibis.row_number().over(
            group_by=known.component,
            order_by=[index_first, known.prec, known.start_at, known.system, known.record_key],
        )
    )
    owner = known.filter(known.pick == 0).select(o_component="component", o_person="person_id")
    g = g.left_join(owner, g.component == owner.o_component).drop("o_component")
    foreign = (g.person_id.notnull() & g.o_person.notnull() & (g.person_id != g.o_person)).fill_null(False)
    return g.mutate(
        component=ibis.cases((foreign, "foreign|" + g.node), else_=g.component), foreign=foreign
    ).drop("o_person")


def visit_index(st: StagedTables, persons: Any) -> VisitIndex:
    """Group the staged encounter rows into visits and give each visit its attributes and person.

    The encounter rows of a record without a person (an overlay held for review, see `_conflicts`) are in no
    visit: they may be another person's stay under a reused number.
    """
    con = st.con
    site = st.site
    per_admission = st.per_admission
    e = st.table("encounter")
    who = persons.select(identity=persons.record_id, person_id=persons.person_id)
    rank = ibis.cases(
        *((e.system == s, i) for i, s in enumerate(site.precedence)), else_=len(site.precedence)
    )
    sub = e.parent_visit_serial.notnull()
    e = e.mutate(
        node="r|" + e.system + "|" + e.record_key,
        identity=record_id(e.system, e.patient_key),
        prec=rank,
        sub=sub,
        recalled_row=e.recalled.fill_null(False),
        stay=stay_label(e.inpatient_no, e.admission_count, per_admission),
    )
    e = e.left_join(who, "identity").drop("identity_right")
    e = e.filter(e.identity.isnull() | e.person_id.notnull())
    e = materialise(con, e, "link_encounter_rows")

    # Sub-encounters group only among themselves, by a serial of their own (not their parent's).
    own_serial = e.visit_serial.notnull() & (~e.sub | (e.visit_serial != e.parent_visit_serial))
    edges = ibis.union(
        e.filter(own_serial).select(a=e.node, b=ibis.cases((e.sub, "u|"), else_="s|") + e.visit_serial),
        e.filter(~e.sub & e.stay.notnull()).select(a=e.node, b="a|" + e.stay),
        distinct=True,
    )
    # key nodes are nodes too: labels flow from row to key to row
    nodes = ibis.union(e.select(node=e.node), edges.select(node=edges.b), distinct=True)
    groups = connected_components(con, nodes, edges, name="link_visit_cc")
    g = e.join(groups, "node")  # key nodes drop out here
    g = _without_foreign_rows(g, site.patient_index)
    order = [g.prec, g.recalled_row.cast("int8"), g.start_at, g.system, g.record_key]
    g = g.mutate(pos=ibis.row_number().over(group_by=g.component, order_by=order))
    g = g.mutate(
        id_serial=ibis.cases((own_serial & ~g.foreign, g.visit_serial), else_=ibis.null("string")),
        id_stay=ibis.cases(
            (~g.sub & ~g.foreign & g.stay.notnull(), "stay:" + g.stay), else_=ibis.null("string")
        ),
        id_row=g.system + ":" + g.record_key,
        end_recalled=ibis.cases((g.recalled_row, g.end_at), else_=ibis.null("timestamp")),
    )

    def first(column: Any) -> Any:
        return column.argmin(ibis.cases((column.isnull(), g.pos + _NO_VALUE), else_=g.pos))

    agg = g.group_by("component").aggregate(
        **{out: first(g[col]) for out, col in ATTRIBUTES.items()},
        end_first=first(g.end_at),
        end_recalled=g.end_recalled.max(),
        id_serial=first(g.id_serial),
        id_stay=first(g.id_stay),
        id_row=first(g.id_row),
        parent_visit_serial=first(g.parent_visit_serial),
        is_sub=g.sub.max(),
        systems=g.system.collect(distinct=True).sort().join(","),
    )
    agg = agg.mutate(visit_id=ibis.coalesce(agg.id_serial, agg.id_stay, agg.id_row))
    # a sub-encounter whose own serial a stay also uses is known by its row, so visit ids stay unique
    taken = agg.filter(~agg.is_sub).select(taken=agg.visit_id)
    agg = agg.left_join(taken, agg.visit_id == taken.taken)
    agg = agg.mutate(
        visit_id=ibis.cases((agg.is_sub & agg.taken.notnull(), agg.id_row), else_=agg.visit_id)
    ).drop("taken")
    agg = materialise(con, agg, "link_visit_groups")

    rows = g.join(agg.select("component", "visit_id"), "component").select(
        "system", "record_key", "visit_id", "person_id", "sub", "visit_serial", "stay", "foreign"
    )
    rows = materialise(con, rows, "link_encounter_visits")
    # a foreign row's serial and stay are its owner's: references to them lead to the owner's visit
    own = rows.filter(~rows.foreign)
    serials = own.filter(own.visit_serial.notnull()).select("visit_serial", "visit_id", "system", "sub")
    # a serial recorded by a stay and by a sub-encounter leads to the stay
    serials = serials.mutate(
        pick=ibis.row_number().over(group_by=serials.visit_serial, order_by=[serials.sub.cast("int8")])
    )
    first_visit = serials.filter(serials.pick == 0).select(serial="visit_serial", serial_visit="visit_id")
    serials = serials.select(serial="visit_serial", system="system").distinct()
    serials = materialise(con, serials.join(first_visit, "serial"), "link_serials")
    stays = own.filter(~own.sub & own.stay.notnull()).select(
        stay="stay", stay_visit="visit_id", system="system"
    )
    stays = materialise(con, stays.distinct(), "link_stays")

    parents = serials.select(
        parent_visit_serial=serials.serial, parent_visit_id=serials.serial_visit
    ).distinct(on="parent_visit_serial", keep="first")
    v = agg.left_join(parents, "parent_visit_serial")
    visits = v.select(
        visit_id=v.visit_id,
        person_id=v.person_id,
        visit_type=v.visit_type,
        status=v.status.fill_null("done"),
        start=v.start.cast("timestamp"),
        end=ibis.greatest(v.end_first, v.end_recalled).cast("timestamp"),
        start_precision=v.start_precision,
        department_code=v.department_code,
        department_name=v.department_name,
        discharge_department_code=v.discharge_department_code,
        discharge_mode=v.discharge_mode,
        admission_route=v.admission_route,
        admission_category=v.admission_category,
        discharge_destination=v.discharge_destination,
        died_in_hospital=v.died_in_hospital,
        day_surgery=v.day_surgery,
        visit_serial=v.visit_serial,
        inpatient_no=v.inpatient_no,
        admission_count=v.admission_count.cast("int64"),
        parent_visit_id=v.parent_visit_id,
        parent_visit_serial=v.parent_visit_serial,
        systems=v.systems,
    )
    visits = materialise(con, visits, "link_visits")
    systems = frozenset(e.select("system").distinct().to_pyarrow().column("system").to_pylist())
    return VisitIndex(visits, rows, serials, stays, systems)
