"""Event linkage: every staged row of every canonical table reaches its person and visit, or is an orphan.

A row finds its visit by the first reference it carries, in this order:

1. its parent record (a specimen or lab result its lab order, a result its specimen, an image study its
   imaging exam by accession number, a dispensing its medication order): it inherits the parent's person,
   visit and status. A parent missing from every export makes the row an orphan of that export; when one of
   the paths below still finds its visit, it is *recovered*;
2. its visit serial, checked against the row's event time (the table's ``event_time`` in the
   model) and against the kind of visit the row says it was made in (``encounter_type``). When the visit does
   not cover the event (a request filed against the patient's other visit), the row is *relinked* to the
   person's visit at that time, and the change is explained;
3. its inpatient number and admission count, or, without a count, its inpatient number
   and event time (a settlement list);
4. its patient alone (a lab result taken outside any visit): linked to the person with no visit.

A row's parent visit is looked for among its own system's encounters when that system exports encounters
(an order of a stay the system lost is an orphan of that export even when another system kept the stay: it
is *recovered* there), and among every system's otherwise. A row whose patient, visit or order was
quarantined by staging is an orphan with the quarantined row's file, row and rule. Statuses: linked,
relinked, recovered, orphan; ``parent_missing`` marks rows whose parent no export holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import ibis

from medspace.core import forget, materialise

from ._conflicts import OVERLAY_RULE
from ._persons import record_id
from ._staged import StagedTables
from ._visits import STAY_TYPES, VisitIndex, stay_label

# How far an event may lie from its visit: outpatient work happens the same day or, for emergencies
# late at night, early the next; work of a stay between admission and discharge.
OUTPATIENT_WINDOW = (ibis.interval(hours=-1), ibis.interval(hours=26))
STAY_WINDOW = (ibis.interval(days=-1), ibis.interval(days=1))


@dataclass(frozen=True)
class ParentReference:
    """A column naming the record a row belongs to, in another canonical table."""

    column: str
    parent: str  # the parent's canonical table
    parent_column: str  # the parent's column the reference names
    what: str  # how a reason names the parent
    same_system: bool  # order and specimen keys are system-local; accession numbers hospital-wide


PARENTS: dict[str, tuple[ParentReference, ...]] = {
    "specimen": (ParentReference("order_key", "lab_order", "record_key", "lab order", True),),
    "lab_result": (
        ParentReference("order_key", "lab_order", "record_key", "lab order", True),
        ParentReference("specimen_key", "specimen", "record_key", "specimen", True),
    ),
    "imaging_study": (
        ParentReference("accession_no", "imaging_exam", "accession_no", "imaging exam", False),
    ),
    "medication_dispense": (
        ParentReference("order_key", "medication_order", "record_key", "medication order", True),
    ),
}


# Columns a parent reference may use, carried by every table's rows (null where the table has none).
REFERENCE_COLUMNS = sorted({r.column for refs in PARENTS.values() for r in refs})

# The shape every table's prepared rows share, so several tables can go through one query per step.
UNIFORM_COLUMNS = (
    "_table",
    "system",
    "record_key",
    "_source_file",
    "_source_row",
    "_ek",
    "_rid",
    "_pkey",
    "_at",
    "_hint",
    "_serial",
    "_ino",
    "_count",
    "_stay",
    "_has_enc",
    "row_person",
    "row_held",
)


def event_order(tables: tuple[str, ...]) -> list[str]:
    """Tables in an order where every parent comes before its children."""
    done: list[str] = []

    def visit(table: str) -> None:
        if table in done:
            return
        for ref in PARENTS.get(table, ()):
            if ref.parent in tables:
                visit(ref.parent)
        done.append(table)

    for table in tables:
        visit(table)
    return done


#: Why a row is kept from the visit its reference found: the visit is another person's.
ANOTHER_PERSONS_VISIT = (
    "its visit reference leads to another person's visit (through a key held for review); linked to its "
    "own patient without a visit"
)


def _another_persons(visit_person: Any, row_person: Any) -> Any:
    """Whether the visit a row's reference found belongs to another person than the row's own patient.

    Keys link a row's patient record with the records of its visit, so the two agree unless a key was held
    for review (a reused inpatient number): then the number leads to its owner's stay, and the row stays
    with its own patient rather than move into the owner's history.
    """
    return (visit_person.notnull() & row_person.notnull() & (visit_person != row_person)).fill_null(False)


def _within(visit_type: Any, start: Any, end: Any, at: Any) -> Any:
    """Whether an event at ``at`` falls in the window of a visit of that type, start and end."""
    stay = visit_type.isin(STAY_TYPES)
    # a stay without a discharge is still going on; a visit without an end ended the day it began
    lo = ibis.cases((stay, start + STAY_WINDOW[0]), else_=start + OUTPATIENT_WINDOW[0])
    far = start + ibis.interval(days=36_500)
    hi = ibis.cases(
        (stay, ibis.coalesce(end, far) + STAY_WINDOW[1]),
        else_=ibis.coalesce(end, start) + OUTPATIENT_WINDOW[1],
    )
    return (at >= lo) & (at <= hi)


def _type_agrees(visit_type: Any, hint: Any) -> Any:
    """Whether a visit's type is the one the row names (true when the row names none)."""
    return hint.isnull() | (hint == visit_type)


def event_groups(st: StagedTables) -> list[tuple[Literal["own", "plain", "child"], tuple[str, ...]]]:
    """The groups of staged tables `EventLinker.all_events` links in turn, in order.

    The patient and encounter tables have steps of their own. Tables without parents go through the steps
    together (one query per step, not one per table); children follow, each after its parents. Empty tables
    add nothing and are left out.
    """
    tables = [t for t in event_order(st.tables) if st.rows(t)]
    groups: list[tuple[Literal["own", "plain", "child"], tuple[str, ...]]] = [
        ("own", (t,)) for t in ("patient", "encounter") if t in tables
    ]
    plain = tuple(t for t in tables if t not in PARENTS and t not in ("patient", "encounter"))
    if plain:
        groups.append(("plain", plain))
    groups.extend(("child", (t,)) for t in tables if t in PARENTS)
    return groups


class EventLinker:
    """Links the rows of each staged table, table by table (parents first)."""

    def __init__(self, st: StagedTables, persons: Any, index: VisitIndex, quarantined: Any | None) -> None:
        self.st = st
        self.con = st.con
        self.index = index
        self.quarantined = quarantined
        # a record without a person is an overlay held for review (see `_conflicts`)
        self.who = persons.select(
            _rid=persons.record_id, row_person=persons.person_id, row_held=persons.person_id.isnull()
        )
        v = index.visits
        self.visits = v.select(
            vid=v.visit_id,
            vperson=v.person_id,
            vtype=v.visit_type,
            vstart=v.start,
            vend=v.end,
            vino=v.inpatient_no,
            vsub=v.parent_visit_id.notnull(),
        )
        self.done: dict[str, Any] = {}
        self._steps: dict[str, list[str]] = {}  # each group's work tables still held

    def all_events(self, *, linked: Callable[[], None] | None = None) -> Any:
        """Every staged row's event; ``linked()`` is called as each group of `event_groups` is linked."""
        parts = []
        for kind, group in event_groups(self.st):
            if kind == "own":
                [table] = group
                parts.append(self._done(table, self.table_events(table)))
            elif kind == "plain":
                rows = ibis.union(*(self._uniform(t) for t in group), distinct=False)
                events = materialise(self.con, self._linked(rows, list(group), "rows"), "link_events_rows")
                self._release("rows")
                for table in group:
                    self.done[table] = events.filter(events.table == table)
                parts.append(events)
            else:
                [table] = group
                parts.append(self._done(table, self._linked(self._uniform(table), [table], table)))
            if linked is not None:
                linked()
        return ibis.union(*parts, distinct=False)

    def _done(self, table: str, events: Any) -> Any:
        self.done[table] = materialise(self.con, events, f"link_events_{table}")
        self._release(table)
        return self.done[table]

    def _prepared(self, table: str) -> Any:
        st = self.st
        t = st.table(table)
        cols = st.columns(table)

        def col(name: str, kind: str = "string") -> Any:
            return t[name].cast(kind) if name in cols else ibis.null(kind)

        at = st.event_times.get(table)
        t = t.mutate(
            _table=ibis.literal(table),
            # the row itself: record_key is unique per system and table, lineage guards against a repeat;
            # rows of several tables share the steps, and one raw row may feed several tables
            _ek=ibis.literal(table + "|")
            + t.system
            + "|"
            + t.record_key
            + "|"
            + t._source_file
            + "|"
            + t._source_row.cast("string"),
            _rid=record_id(t.system, col("patient_key")),
            _pkey=col("patient_key"),
            _at=col(at, "timestamp") if at else ibis.null("timestamp"),
            _hint=col("encounter_type") if table != "encounter" else ibis.null("string"),
            _serial=col("visit_serial") if table != "encounter" else ibis.null("string"),
            _ino=col("inpatient_no"),
            _count=col("admission_count", "int64"),
            _stay=stay_label(col("inpatient_no"), col("admission_count", "int64"), st.per_admission),
            _has_enc=t.system.isin(sorted(self.index.systems)) if self.index.systems else ibis.literal(False),
            **{f"_ref_{name}": col(name) for name in REFERENCE_COLUMNS},
        )
        return t.left_join(self.who, "_rid")

    def _uniform(self, table: str) -> Any:
        """A table's prepared rows in the shape every table shares (so several go through one query)."""
        t = self._prepared(table)
        return t.select(*UNIFORM_COLUMNS, *(f"_ref_{name}" for name in REFERENCE_COLUMNS))

    def table_events(self, table: str) -> Any:
        """The events of the patient or encounter table (the records persons and visits are made of)."""
        t = self._prepared(table)
        if table == "patient":
            return self._rows(
                t,
                t.row_person,
                ibis.null("string"),
                ibis.literal("linked"),
                ibis.literal(False),
                ibis.literal("a patient record of its system"),
            )
        return self._encounter_events(t)

    def _linked(self, t: Any, tables: list[str], name: str) -> Any:
        """Rows of the given tables (uniform shape) through the paths to their visit.

        Each step is computed once: chained as one expression, the SQL of the later steps repeats the earlier
        ones' expressions and compiling it alone takes longer than running it. A path whose reference none
        of the tables fills is skipped (its columns stay null): a site's lab results without visit serials
        do not pay for serial lookups.
        """
        table = tables[0] if len(tables) == 1 else None
        refs = self._parent_references(table) if table is not None else []
        t = self._parent(t, refs)
        inherited = None
        if refs:
            # a row whose parent was found takes the parent's visit: only the others need the paths below
            t = self._step(t, name, "parent")
            found = t._pref & t._pfound
            inherited, t = t.filter(found), t.filter(~found)
        if any(self.st.filled(x, "visit_serial") for x in tables):
            t = self._step(self._by_serial(t), name, "serial")
            t = self._step(self._relink(t), name, "relink")
        else:
            t = t.mutate(
                s_visit=ibis.null("string"),
                s_consistent=ibis.literal(False),
                s_present=ibis.literal(False),
                r_visit=ibis.null("string"),
                r_person=ibis.null("string"),
            )
        if any(self.st.filled(x, "inpatient_no") for x in tables):
            t = self._step(self._by_inpatient_no_and_time(self._by_stay(t)), name, "stay")
        else:
            t = t.mutate(
                a_visit=ibis.null("string"),
                a_present=ibis.literal(False),
                i_visit=ibis.null("string"),
                i_known=ibis.null("boolean"),
            )
        return self._outcome(t, inherited, name, table)

    def _parent_references(self, table: str) -> list[ParentReference]:
        """The parent references the table fills, whose parent table has been linked."""
        return [
            r for r in PARENTS.get(table, ()) if r.parent in self.done and self.st.filled(table, r.column)
        ]

    def _step(self, t: Any, group: str, step: str) -> Any:
        """Materialise one step of a group's rows and drop the step before it, which nothing reads any more
        (the parent step stays until the group is done: its inherited rows join the outcome)."""
        name = f"link_events_{group}_{step}"
        out = materialise(self.con, t, name)
        held = self._steps.setdefault(group, [])
        if held and not held[-1].endswith("_parent"):
            forget(self.con, held.pop())
        held.append(name)
        return out

    def _release(self, group: str) -> None:
        """Drop a finished group's work tables."""
        for name in self._steps.pop(group, []):
            forget(self.con, name)

    # -- parents -------------------------------------------------------------------------------------------
    def _parent(self, t: Any, refs: list[ParentReference]) -> Any:
        t = t.mutate(
            _pref=ibis.literal(False),
            _pfound=ibis.literal(False),
            _pvisit=ibis.null("string"),
            _pperson=ibis.null("string"),
            _pstatus=ibis.null("string"),
            _preason=ibis.null("string"),
            _pwhat=ibis.null("string"),
        )
        # the first reference a row carries wins: apply them last to first, each overriding the later ones
        for i, ref in reversed(list(enumerate(refs))):
            pe = self._parent_events(ref, i)
            value = t[f"_ref_{ref.column}"]
            cond = [value == pe[f"pkey{i}"]]
            if ref.same_system:
                cond.append(t.system == pe[f"psys{i}"])
            t = t.left_join(pe, cond)
            present = value.notnull()
            t = t.mutate(
                _pref=present | t._pref,
                _pfound=ibis.cases((present, t[f"pkey{i}"].notnull()), else_=t._pfound),
                _pvisit=ibis.cases((present, t[f"pv{i}"]), else_=t._pvisit),
                _pperson=ibis.cases((present, t[f"pp{i}"]), else_=t._pperson),
                _pstatus=ibis.cases((present, t[f"ps{i}"]), else_=t._pstatus),
                _preason=ibis.cases((present, t[f"pr{i}"]), else_=t._preason),
                _pwhat=ibis.cases((present, ibis.literal(ref.what)), else_=t._pwhat),
            ).drop(f"pkey{i}", f"psys{i}", f"pp{i}", f"pv{i}", f"ps{i}", f"pr{i}")
        return t

    def _parent_events(self, ref: ParentReference, i: int) -> Any:
        """The parent table's events keyed by the value a reference names (and the parent's system)."""
        parent = self.done[ref.parent]
        pe = parent.select(
            psys=parent.system,
            prk=parent.record_key,
            pp=parent.person_id,
            pv=parent.visit_id,
            ps=parent.status,
            pr=parent.reason,
        )
        if ref.parent_column == "record_key":
            pe = pe.mutate(pkey=pe.prk)
        else:
            staged = self.st.table(ref.parent)
            staged = staged.filter(staged[ref.parent_column].notnull())
            staged = staged.select(
                ssys="system", srk="record_key", pkey=staged[ref.parent_column].cast("string")
            ).distinct(on="pkey", keep="first")
            pe = staged.join(pe, [staged.ssys == pe.psys, staged.srk == pe.prk]).drop("ssys", "srk")
        pe = pe.distinct(on=("psys", "pkey"), keep="first")  # a repeated parent key must not double rows
        return pe.select(
            **{f"pkey{i}": pe.pkey, f"psys{i}": pe.psys, f"pp{i}": pe.pp, f"pv{i}": pe.pv},
            **{f"ps{i}": pe.ps, f"pr{i}": pe.pr},
        )

    # -- visit serial --------------------------------------------------------------------------------------
    def _by_serial(self, t: Any) -> Any:
        s = self.index.serials
        any_ = s.select(s_serial="serial", s_visit="serial_visit").distinct()
        own = s.select(o_serial="serial", o_system="system", s_own=ibis.literal(True)).distinct()
        t = t.left_join(any_, t._serial == any_.s_serial).drop("s_serial")
        t = t.left_join(own, [t._serial == own.o_serial, t.system == own.o_system]).drop(
            "o_serial", "o_system"
        )
        v = self.visits.select(
            s_vid="vid", s_vperson="vperson", s_vtype="vtype", s_vstart="vstart", s_vend="vend"
        )
        t = t.left_join(v, t.s_visit == v.s_vid).drop("s_vid")
        consistent = (
            t.s_visit.notnull()
            & (t._at.isnull() | _within(t.s_vtype, t.s_vstart, t.s_vend, t._at)).fill_null(False)
            & _type_agrees(t.s_vtype, t._hint)
        )
        return t.mutate(
            s_consistent=consistent.fill_null(False),
            s_present=ibis.cases((t._has_enc, t.s_own.fill_null(False)), else_=t.s_visit.notnull()),
        ).drop("s_vtype", "s_vstart", "s_vend", "s_own")

    def _relink(self, t: Any) -> Any:
        """The person's visit (or the inpatient number's stay) whose window holds the event, for rows whose
        serial is unknown or does not cover the event: the visit of the kind the row names first, then the
        one that started nearest the event."""
        need = t.filter(t._serial.notnull() & ~t.s_consistent & t._at.notnull())
        v = self.visits.filter(~self.visits.vsub)
        cols = ["_ek", "_at", "_hint", "vid", "vperson", "vtype", "vstart", "vend"]
        by_person = need.select("_ek", "_at", "_hint", p=need.row_person)
        by_person = by_person.join(v, by_person.p == v.vperson)
        by_ino = need.select("_ek", "_at", "_hint", i=need._ino)
        by_ino = by_ino.join(v, by_ino.i == v.vino)
        cand = ibis.union(by_person.select(*cols), by_ino.select(*cols), distinct=True)
        cand = cand.filter(_within(cand.vtype, cand.vstart, cand.vend, cand._at))
        cand = cand.mutate(
            gap=(cand._at.epoch_seconds() - cand.vstart.epoch_seconds()).abs(),
            mismatch=ibis.cases((_type_agrees(cand.vtype, cand._hint), 0), else_=1),
        )
        cand = cand.mutate(
            rank=ibis.row_number().over(group_by=cand._ek, order_by=[cand.mismatch, cand.gap, cand.vid])
        )
        best = cand.filter(cand.rank == 0).select(r_ek="_ek", r_visit="vid", r_person="vperson")
        return t.left_join(best, t._ek == best.r_ek).drop("r_ek")

    # -- inpatient number ----------------------------------------------------------------------------------
    def _by_stay(self, t: Any) -> Any:
        s = self.index.stays
        any_ = s.select(a_stay="stay", a_visit="stay_visit").distinct(on="a_stay", keep="first")
        own = s.select(ao_stay="stay", ao_system="system", a_own=ibis.literal(True)).distinct()
        use = t._serial.isnull()
        t = t.left_join(any_, use & (t._stay == any_.a_stay)).drop("a_stay")
        t = t.left_join(own, [use, t._stay == own.ao_stay, t.system == own.ao_system])
        t = t.drop("ao_stay", "ao_system")
        return t.mutate(
            a_present=ibis.cases((t._has_enc, t.a_own.fill_null(False)), else_=t.a_visit.notnull())
        ).drop("a_own")

    def _by_inpatient_no_and_time(self, t: Any) -> Any:
        """A row with an inpatient number but no count: the stay of that number whose window holds the event
        (nearest start first); without an event time, the number's only stay (with numbers per admission
        the number has one stay, whatever the time)."""
        per_admission = self.st.per_admission
        need = t.filter(t._serial.isnull() & t.a_visit.isnull() & t._ino.notnull() & t._count.isnull())
        v = self.visits.filter(~self.visits.vsub)
        cand = need.select("_ek", "_at", i=need._ino)
        cand = cand.join(v, cand.i == v.vino)
        inside = _within(cand.vtype, cand.vstart, cand.vend, cand._at).fill_null(False)
        if not per_admission:
            cand = cand.filter(inside | cand._at.isnull())
        gap = (cand._at.epoch_seconds() - cand.vstart.epoch_seconds()).abs().fill_null(0)
        cand = cand.mutate(
            rank=ibis.row_number().over(group_by=cand._ek, order_by=[gap, cand.vid]),
            stays=cand.vid.count().over(group_by=cand._ek),
        )
        unique = cand._at.notnull() | (cand.stays == 1) | ibis.literal(per_admission)
        best = cand.filter(cand.rank == 0).select(
            i_ek="_ek", i_visit=ibis.cases((unique, cand.vid), else_=ibis.null("string")), i_known=True
        )
        return t.left_join(best, t._ek == best.i_ek).drop("i_ek")

    # -- outcome -------------------------------------------------------------------------------------------
    def _outcome(self, t: Any, inherited: Any | None, name: str, table: str | None) -> Any:
        path = ibis.cases(
            (t._serial.notnull(), "serial"),
            (t.a_visit.notnull(), "stay"),
            (t._ino.notnull() & t._count.isnull(), "ino"),
            (t._stay.notnull(), "stay"),
            (t._pkey.notnull(), "person"),
            else_="none",
        )
        t = t.mutate(_path=path)
        serial, stay, ino = t._path == "serial", t._path == "stay", t._path == "ino"
        relinked = serial & ~t.s_consistent & t.r_visit.notnull()
        direct_visit = ibis.cases(
            (serial & t.s_consistent, t.s_visit),
            (serial, t.r_visit),
            (stay, t.a_visit),
            (ino, t.i_visit),
            else_=ibis.null("string"),
        )
        present = ibis.cases(
            (serial, t.s_present),
            (stay, t.a_present),
            # a stay of the number exists, but the row cannot tell which: not a lost parent
            (ino & t._at.isnull(), t.i_known.notnull()),
            (ino, t.i_visit.notnull()),
            else_=True,
        )
        direct_status = ibis.cases(
            (direct_visit.notnull() & ~present, "recovered"),
            (relinked, "relinked"),
            (direct_visit.notnull(), "linked"),
            ((t._path == "person") & t.row_person.notnull(), "linked"),
            else_="orphan",
        )
        how = ibis.cases(
            (
                serial & t.s_consistent & t.s_present & t._at.isnull(),
                "visit serial found; the row has no event time to check",
            ),
            (serial & t.s_consistent & t.s_present, "visit serial found; event time within the visit"),
            (
                serial & t.s_consistent,
                "visit serial not in its system's encounter export; found in another system's",
            ),
            (
                relinked & t.s_visit.notnull(),
                "carried visit serial belongs to another visit of the person (event time outside it); "
                "re-linked to the person's visit at the event time",
            ),
            (
                relinked,
                "visit serial not found in any encounter export; visit found by the person or inpatient "
                "number and the event time",
            ),
            (
                serial & t.s_visit.notnull(),
                "carried visit does not cover the event time and no other visit of the person does",
            ),
            (
                serial,
                "visit serial not found in any encounter export "
                "(row lost, or after the export's sync cut-off)",
            ),
            (stay & t.a_visit.notnull() & t.a_present, "stay found by inpatient number and admission count"),
            (
                stay & t.a_visit.notnull(),
                "stay not in its system's encounter export; found by inpatient number and admission count in "
                "another system's",
            ),
            (stay, "no stay with this inpatient number and admission count in any encounter export"),
            (
                ino & t.i_visit.notnull() & t._at.isnull(),
                "stay found by inpatient number: its only stay (the row has no event time)",
            ),
            (ino & t.i_visit.notnull(), "stay found by inpatient number and event time"),
            (
                ino & t._at.isnull(),
                "the row has an inpatient number but neither an admission count nor an event time to tell "
                "which of its stays",
            ),
            (ino, "no stay with this inpatient number covers the event time"),
            (
                (t._path == "person") & t.row_person.notnull(),
                "no visit reference; linked to its patient only",
            ),
            (t._path == "person", "its patient is in no identity record"),
            else_="the row carries no patient, visit or parent reference",
        )
        t = self._step(
            t.mutate(_dvisit=direct_visit, _present=present, _dstatus=direct_status, _how=how),
            name,
            "direct",
        )
        if inherited is not None:
            schema = t.schema()
            paths = {c: ibis.null(schema[c]) for c in t.columns if c not in inherited.columns}
            t = ibis.union(t, inherited.mutate(**paths).select(*t.columns), distinct=False)
        direct_visit, present, direct_status, how = t._dvisit, t._present, t._dstatus, t._how
        inherit = t._pref & t._pfound
        lost = t._pref & ~t._pfound
        what = t._pwhat.fill_null("parent")
        t = t.mutate(
            _visit=ibis.cases((inherit, t._pvisit), else_=direct_visit),
            _status=ibis.cases(
                (inherit, t._pstatus),
                (lost & direct_visit.notnull(), "recovered"),
                (lost, "orphan"),
                else_=direct_status,
            ),
            _missing=ibis.cases((inherit, False), (lost, True), else_=~present).fill_null(False),
            _reason=ibis.cases(
                (inherit, "via its " + what + ": " + t._preason.fill_null("")),
                (lost, what + " not found in any " + what + " export; " + how),
                else_=how,
            ),
        )
        t = self._visit_person(t)
        return self._quarantine(t, table)

    def _visit_person(self, t: Any) -> Any:
        vp = self.visits.select(vp_id="vid", vp_person="vperson")
        t = t.left_join(vp, t._visit == vp.vp_id)
        other = _another_persons(t.vp_person, t.row_person)
        return t.mutate(
            _person=ibis.cases(
                (other, t.row_person), else_=ibis.coalesce(t.vp_person, t._pperson, t.row_person)
            ),
            _visit=ibis.cases((other, ibis.null("string")), else_=t._visit),
            _status=ibis.cases((other, ibis.literal("relinked")), else_=t._status),
            _reason=ibis.cases((other, ibis.literal(ANOTHER_PERSONS_VISIT)), else_=t._reason),
        ).drop("vp_id", "vp_person")

    def _encounter_events(self, t: Any) -> Any:
        r = self.index.rows.select(e_sys="system", e_key="record_key", e_visit="visit_id")
        r = r.distinct(on=("e_sys", "e_key"), keep="first")
        t = t.left_join(r, [t.system == r.e_sys, t.record_key == r.e_key]).drop("e_sys", "e_key")
        v = self.index.visits.select(ev_id="visit_id", ev_person="person_id", ev_parent="parent_visit_id")
        t = t.left_join(v, t.e_visit == v.ev_id).drop("ev_id")
        sub = t.parent_visit_serial.notnull()
        lost = sub & t.ev_parent.isnull()
        other = _another_persons(t.ev_person, t.row_person)
        person = ibis.cases((other, t.row_person), else_=ibis.coalesce(t.ev_person, t.row_person))
        t = t.mutate(
            _visit=ibis.cases((other, ibis.null("string")), else_=t.e_visit),
            _person=person,
            _status=ibis.cases(
                (person.isnull(), "orphan"), (other, "relinked"), (lost, "recovered"), else_="linked"
            ),
            _missing=lost,
            _reason=ibis.cases(
                (person.isnull(), "the encounter names no patient known to any identity record"),
                (other, ANOTHER_PERSONS_VISIT),
                (lost, "its parent stay is not in any encounter export; kept as a visit of its own"),
                (t.recalled.fill_null(False), "a recalled discharge's continuation row: part of its stay"),
                else_="the encounter row is (part of) the visit",
            ),
            _serial=t.parent_visit_serial,  # the quarantine check follows the parent stay
        )
        return self._quarantine(t, "encounter")

    def _quarantine(self, t: Any, table: str | None) -> Any:
        """Rows naming a patient, visit or order that staging quarantined: orphans, with its file, row and
        rule (the person and visit another path found are kept, so nothing is lost)."""
        q = self.quarantined
        t = t.mutate(_q=ibis.null("string"))
        if q is not None:
            checks: list[tuple[Any, str, bool]] = [
                (t._pkey, "patient", True),
                (t._serial, "encounter", False),
            ]
            checks += [
                (t[f"_ref_{r.column}"], r.parent, r.same_system)
                for r in (PARENTS.get(table, ()) if table is not None else ())
            ]
            for i, (value, kind, same_system) in enumerate(checks):
                k = q.filter(q.q_kind == kind)
                if not same_system:
                    k = k.distinct(on="q_key", keep="first")
                k = k.select(**{f"qk{i}": k.q_key, f"qs{i}": k.q_system, f"qr{i}": k.q_reason})
                cond = [value == k[f"qk{i}"]]
                if same_system:
                    cond.append(t.system == k[f"qs{i}"])
                t = t.left_join(k, cond)
                t = t.mutate(_q=ibis.coalesce(t._q, t[f"qr{i}"])).drop(f"qk{i}", f"qs{i}", f"qr{i}")
        quarantined = t._q.notnull()
        return self._rows(
            t,
            t._person,
            t._visit,
            ibis.cases((quarantined, "orphan"), else_=t._status),
            quarantined | t._missing,
            ibis.cases((quarantined, t._q), else_=t._reason),
        )

    @staticmethod
    def _rows(t: Any, person: Any, visit: Any, status: Any, missing: Any, reason: Any) -> Any:
        """The rows of ``events.parquet`` for staged rows; a row of an overlay held for review is an orphan
        with no person and no visit, whatever its keys found (they may be another person's)."""
        held = t.row_held.fill_null(False)
        person = ibis.cases((held, ibis.null("string")), else_=person)
        visit = ibis.cases((held, ibis.null("string")), else_=visit)
        status = ibis.cases((held, ibis.literal("orphan")), else_=status)
        reason = ibis.cases((held, ibis.literal(OVERLAY_RULE)), else_=reason)
        return t.select(
            table=t._table,
            system=t.system,
            record_key=t.record_key.cast("string"),
            source_file=t._source_file,
            source_row=t._source_row.cast("int64"),
            person_id=person.cast("string"),
            visit_id=visit.cast("string"),
            status=status.cast("string"),
            parent_missing=missing.cast("boolean"),
            reason=reason.cast("string"),
        )
