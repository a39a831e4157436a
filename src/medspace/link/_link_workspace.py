"""The link stage over a workspace: persons across systems, every record to its visit, orphans reported.

Reads the staged tables, writes ``<workspace>/link/``:

- ``person_records.parquet``: each system's patient identity (record_id, source), its person_id, the rules
  that linked it (resident ID, inpatient number, visit serial, accession number, probabilistic) and, for a
  probabilistic link, its match probability and explanation;
- ``visits.parquet``: every visit and stay with its person;
- ``events.parquet``: every staged row (system, table, record key, lineage) with its person, its visit and
  how it was linked (linked, relinked, recovered, orphan) and why;
- ``manifest.json``: counts by table and status.

The stage runs on DuckDB or Spark (Ibis expressions), writes atomically and is safe to re-run.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis

from medspace.core import (
    EngineName,
    Workspace,
    connect,
    materialise,
    refresh_catalog,
    replace_folder,
    small_table,
    write_parquet,
)

from ._components import connected_components
from ._events import (
    SERIAL_CHILDREN,
    STAY_CHILDREN,
    event_rows,
    inherited_events,
    serial_events,
    stay_events,
    visit_index,
)
from ._matching import match_records
from ._persons import identity_records, key_edges
from ._staged import StagedTables

logger = logging.getLogger(__name__)

# A HIS-less record joins a person only on a match this sure (identity fields of LIS and RIS are few).
PROBABILISTIC_THRESHOLD = 0.95


@dataclass(frozen=True)
class LinkReport:
    """What the link stage found."""

    persons: int
    records: int
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # "system/table" -> status -> rows
    orphans: int = 0
    seconds: float = 0.0


def link_workspace(
    workspace: Path, engine: EngineName = "duckdb", *, progress: Callable[[int, int], None] | None = None
) -> LinkReport:
    """Link persons and events of a staged workspace and write ``<workspace>/link/``.

    Args:
        workspace: the workspace folder; ``staging/`` must exist (``medspace ingest``).
        engine: ``"duckdb"`` or ``"spark"``; both give the same tables.
        progress: called as ``progress(steps_done, steps_total)`` after persons, visits, events and writing.

    Returns:
        Counts of persons, records and events by status.
    """
    began = time.perf_counter()
    ws = Workspace(Path(workspace))
    con = connect(engine)
    st = StagedTables(con, ws.stage("staging"))
    report = progress or (lambda done, total: None)
    persons = resolve_persons(st)
    report(1, 4)
    visits = materialise(con, visit_index(st, persons), "link_visits")
    report(2, 4)
    events = materialise(con, linked_events(st, persons, visits), "link_events")
    report(3, 4)
    with replace_folder(ws.stage("link")) as out:
        write_parquet(con, persons.order_by("record_id"), out / "person_records.parquet")
        write_parquet(con, visits.order_by("visit_id"), out / "visits.parquet")
        write_parquet(
            con, events.order_by(["system", "table", "source_file", "source_row"]), out / "events.parquet"
        )
        counts = (
            events.group_by(["system", "table", "status"])
            .aggregate(rows=events.count())
            .to_pyarrow()
            .to_pylist()
        )
        by_table: dict[str, dict[str, int]] = {}
        for row in sorted(counts, key=lambda r: (r["system"], r["table"], r["status"])):
            by_table.setdefault(f"{row['system']}/{row['table']}", {})[row["status"]] = int(row["rows"])
        orphans = int(events.filter(events.parent_missing).count().execute())
        n_persons = int(persons.person_id.nunique().execute())
        n_records = int(persons.count().execute())
        manifest = {
            "engine": engine,
            "persons": n_persons,
            "records": n_records,
            "orphans": orphans,
            "events": by_table,
        }
        (out / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    report(4, 4)
    refresh_catalog(ws.root)
    return LinkReport(n_persons, n_records, by_table, orphans, time.perf_counter() - began)


def resolve_persons(st: StagedTables, *, min_probability: float = PROBABILISTIC_THRESHOLD) -> Any:
    """One row per identity record with its person.

    Deterministic keys first (see `_persons`); then records whose component holds no HIS patient (a LIS
    patient whose only requests are orphans, a PACS patient whose exams lost their visit) are matched
    probabilistically (Fellegi-Sunter, trained on all identity records without labels) and joined to the one
    HIS-anchored person they match with at least ``min_probability``; ambiguous ones stay apart.
    """
    con = st.con
    records = materialise(con, identity_records(st), "link_records")
    edges = materialise(con, key_edges(st, records), "link_key_edges")
    nodes = ibis.union(
        records.select(node=records.record_id),
        edges.select(node=edges.a),
        edges.select(node=edges.b),
        distinct=True,
    )
    components = connected_components(con, nodes, edges)
    extra = _probabilistic_edges(st.con, records, components, min_probability)
    if extra is not None:
        edges = materialise(
            con, ibis.union(edges, extra.select("a", "b", "rule"), distinct=True), "link_all_edges"
        )
        components = connected_components(con, nodes, edges)
    rules = edges.select("a", "rule").distinct()
    rules = rules.group_by("a").aggregate(rules=rules.rule.collect(distinct=True).sort().join(", "))
    out = records.join(components, records.record_id == components.node).left_join(
        rules, records.record_id == rules.a
    )
    if extra is not None:
        scored = extra.select(
            scored=extra.a, match_probability=extra.match_probability, explanation=extra.explanation
        )
        out = out.left_join(scored, out.record_id == scored.scored)
    else:
        out = out.mutate(match_probability=ibis.null("float64"), explanation=ibis.null("string"))
    out = out.mutate(
        person_id="P" + (ibis.dense_rank().over(order_by=out.component) + 1).cast("string").lpad(8, "0")
    )
    persons = out.select(
        record_id=out.record_id,
        source=out.source,
        person_id=out.person_id,
        rules=ibis.coalesce(out.rules, ibis.literal("none: no key shared with another record")),
        match_probability=out.match_probability.cast("float64"),
        explanation=out.explanation.cast("string"),
    )
    return materialise(con, persons, "link_persons")


def _probabilistic_edges(con: Any, records: Any, components: Any, min_probability: float) -> Any:
    """Edges from records of HIS-less components to the one HIS-anchored record they match, or None."""
    comp = components.select(record_id=components.node, component=components.component)
    anchored = comp.join(records.filter(records.source == "his").select("record_id"), "record_id")
    anchored = anchored.select("component").distinct().mutate(anchored=ibis.literal(True))
    comp = comp.left_join(anchored, "component").mutate(anchored=lambda t: t.anchored.fill_null(False))
    comp = comp.select("record_id", "component", "anchored")
    if int(comp.filter(~comp.anchored).count().execute()) == 0:
        return None
    # one row per system patient: small next to the event tables, matched on DuckDB (splink) in memory
    with_names = records.filter(records.name.notnull()).to_pyarrow()
    if with_names.num_rows < 2:
        return None
    try:
        matches = match_records(with_names).pairs
    except ValueError as exc:
        # EM cannot estimate every level on a very small hospital (splink refuses an m of 0); the keys
        # still link everything they can, and the loose records stay apart rather than being guessed.
        logger.warning("probabilistic matching skipped: %s", str(exc).split(".")[0])
        return None
    pairs = small_table(
        con,
        "link_probabilistic_pairs",
        matches.select(["record_id_l", "record_id_r", "match_probability", "explanation"]),
    )
    cl = comp.select(record_id_l=comp.record_id, comp_l=comp.component, anchored_l=comp.anchored)
    cr = comp.select(record_id_r=comp.record_id, comp_r=comp.component, anchored_r=comp.anchored)
    p = pairs.join(cl, "record_id_l").join(cr, "record_id_r")
    p = p.filter(
        (p.match_probability >= min_probability) & (p.comp_l != p.comp_r) & (p.anchored_l != p.anchored_r)
    )
    oriented = p.select(
        a=ibis.cases((p.anchored_l, p.record_id_r), else_=p.record_id_l),
        b=ibis.cases((p.anchored_l, p.record_id_l), else_=p.record_id_r),
        loose=ibis.cases((p.anchored_l, p.comp_r), else_=p.comp_l),
        target=ibis.cases((p.anchored_l, p.comp_l), else_=p.comp_r),
        match_probability=p.match_probability,
        explanation=p.explanation,
    )
    # a loose component joins a person only when every confident match points at the same person
    targets = oriented.group_by("loose").aggregate(persons=oriented.target.nunique())
    unique = targets.filter(targets.persons == 1).select("loose")
    chosen = oriented.join(unique, "loose")
    chosen = chosen.mutate(
        rank=ibis.row_number().over(group_by=chosen.a, order_by=ibis.desc(chosen.match_probability))
    )
    chosen = chosen.filter(chosen.rank == 0)
    chosen = chosen.select(
        "a",
        "b",
        rule=ibis.literal("probabilistic"),
        match_probability=chosen.match_probability,
        explanation=chosen.explanation,
    )
    return materialise(con, chosen, "link_probabilistic_edges")


def linked_events(st: StagedTables, persons: Any, visits: Any) -> Any:
    parts = [
        materialise(
            st.con, serial_events(st, child, visits, persons), f"link_events_{child.system}_{child.table}"
        )
        for child in SERIAL_CHILDREN
    ]
    parts += [stay_events(st, child, visits, persons) for child in STAY_CHILDREN]
    requests = parts[0]
    exams = parts[1]
    parts.append(
        inherited_events(st, "lis", "specimens", lambda t: t.barcode, "request_no", requests, "lab request")
    )
    parts.append(
        inherited_events(
            st,
            "lis",
            "results",
            lambda t: t.barcode + "-" + t.item_code,
            "request_no",
            requests,
            "lab request",
        )
    )
    parts.append(
        inherited_events(st, "pacs", "studies", lambda t: t.study_uid, "accession_no", exams, "RIS exam")
    )
    parts += _anchor_events(st, persons, visits)
    return ibis.union(*parts, distinct=False)


def _anchor_events(st: StagedTables, persons: Any, visits: Any) -> list[Any]:
    """The visit and patient records themselves: they are their own visit, with their record's person."""
    who = persons.select(identity=persons.record_id, pid=persons.person_id)

    def rows(system: str, table: str, key: Any, identity: Any, visit: Any, reason: str) -> Any:
        t = st.table(system, table)
        t = t.mutate(identity=identity(t), vkey=visit(t)).left_join(who, "identity")
        return event_rows(
            t,
            system,
            table,
            key=key(t),
            person=t.pid,
            visit=t.vkey,
            status=ibis.literal("linked"),
            missing=ibis.literal(False),
            reason=ibis.literal(reason),
        )

    stay_id = visits.filter(visits.visit_type == "inpatient").select(
        sino=visits.inpatient_no, scount=visits.admission_count, svid=visits.visit_id
    )
    fs = st.table("emr", "front_sheets")
    fs = fs.left_join(
        stay_id, [fs.inpatient_no == stay_id.sino, fs.admission_count.cast("int64") == stay_id.scount]
    )
    front = fs.mutate(identity="emr:" + fs.inpatient_no).left_join(who, "identity")
    return [
        rows(
            "his",
            "patients",
            lambda t: t.his_patient_id,
            lambda t: "his:" + t.his_patient_id,
            lambda t: ibis.null("string"),
            "a patient of the HIS master index",
        ),
        rows(
            "his",
            "registrations",
            lambda t: t.visit_serial,
            lambda t: "his:" + t.his_patient_id,
            lambda t: t.visit_serial,
            "the registration is the visit",
        ),
        rows(
            "his",
            "admissions",
            lambda t: t.visit_serial,
            lambda t: "his:" + t.his_patient_id,
            lambda t: t.visit_serial.re_replace("R$", ""),
            "the admission is the stay",
        ),
        event_rows(
            front,
            "emr",
            "front_sheets",
            key=front.inpatient_no + "-" + front.admission_count.cast("string"),
            person=front.pid,
            visit=front.svid,
            status=ibis.literal("linked"),
            missing=ibis.literal(False),
            reason=ibis.literal("the front sheet is the stay"),
        ),
    ]


def status_counts(report: LinkReport) -> Counter[str]:
    """Rows by status over all tables."""
    total: Counter[str] = Counter()
    for statuses in report.events.values():
        total.update(statuses)
    return total
