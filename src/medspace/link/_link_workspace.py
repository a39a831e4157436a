"""The link stage over a workspace: persons across systems, every record to its visit, orphans reported.

Reads the staged canonical hospital model (``staging/<table>.parquet``, ``quarantine.parquet``, ``site.json``)
and writes ``<workspace>/link/``:

- ``person_records.parquet``: each system's patient identity (record_id ``<system>:<patient_key>``), its
  person_id, the rules that linked it (resident ID, inpatient number, visit serial, accession number,
  probabilistic) and, for a probabilistic link, its match probability and explanation;
- ``visits.parquet``: every visit and stay with its person, attributes by the site's precedence, and
  ``parent_visit_id`` for ICU stays and other sub-encounters;
- ``events.parquet``: every staged row (table, system, record key, lineage) with its person, its visit and
  how it was linked (linked, relinked, recovered, orphan) and why;
- ``manifest.json``: counts by ``<table>/<system>`` and status.

The stage runs on DuckDB or Spark (Ibis expressions), writes atomically and is safe to re-run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis

from medspace.core import (
    EngineName,
    InputError,
    MedspaceError,
    Workspace,
    connect,
    materialise,
    refresh_catalog,
    replace_folder,
    small_table,
    stage_lineage,
    write_parquet,
)

from ._components import connected_components
from ._events import EventLinker
from ._matching import match_records
from ._persons import IDENTITY_FIELDS, identity_records, key_edges
from ._quarantined import quarantined_parents
from ._spec import load_match_spec
from ._staged import StagedTables
from ._visits import visit_index

# A record outside every patient-index person joins one only on a match this sure (identity fields of
# systems without an index are few). TODO(issue 10): replace the constant by a calibrated decision rule.
PROBABILISTIC_THRESHOLD = 0.95

VISIT_COLUMNS = (
    "visit_id",
    "person_id",
    "visit_type",
    "status",
    "start",
    "end",
    "start_precision",
    "department_code",
    "department_name",
    "discharge_department_code",
    "discharge_mode",
    "admission_route",
    "admission_category",
    "discharge_destination",
    "died_in_hospital",
    "day_surgery",
    "visit_serial",
    "inpatient_no",
    "admission_count",
    "parent_visit_id",
    "systems",
)


@dataclass(frozen=True)
class LinkReport:
    """What the link stage found."""

    persons: int
    records: int
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # "table/system" -> status -> rows
    orphans: int = 0
    seconds: float = 0.0
    #: what probabilistic matching warned of or why it was skipped (also in the manifest)
    notes: tuple[str, ...] = ()


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

    Raises:
        InputError: staging is missing, the site maps no encounters, or nothing links to a person.
    """
    began = time.perf_counter()
    ws = Workspace(Path(workspace))
    con = connect(engine)
    st = StagedTables(con, ws.stage("staging"))
    _check_linkable(st)
    lineage = stage_lineage(
        ws.root, "link", inputs=("staging",), specs={"match_spec": load_match_spec("person_cn")}
    )
    report = progress or (lambda done, total: None)
    notes: list[str] = []
    persons = resolve_persons(st, notes=notes)
    n_persons = int(persons.person_id.nunique().execute())
    if n_persons == 0:
        raise InputError(
            "no staged row names a patient (patient_key is empty in every table), so link found no "
            "person; map each system's patient number to patient_key in the site mapping",
            file=str(st.staging),
        )
    report(1, 4)
    index = visit_index(st, persons)
    report(2, 4)
    linker = EventLinker(st, persons, index, quarantined_parents(st))
    linked = linker.all_events()
    report(3, 4)
    with replace_folder(ws.stage("link"), lineage=lineage) as out:
        # the events go straight to their file (one copy fewer of every row); checks and counts read it
        write_parquet(
            con,
            linked.order_by(["table", "system", "source_file", "source_row", "record_key"]),
            out / "events.parquet",
        )
        events = con.read_parquet(str(out / "events.parquet"), table_name="link_events")
        _check_every_row_has_one_event(st, events)
        write_parquet(con, persons.order_by("record_id"), out / "person_records.parquet")
        visits = index.visits.select(*VISIT_COLUMNS)
        write_parquet(con, visits.order_by("visit_id"), out / "visits.parquet")
        counts = (
            events.group_by(["table", "system", "status"])
            .aggregate(rows=events.count())
            .to_pyarrow()
            .to_pylist()
        )
        by_table: dict[str, dict[str, int]] = {}
        for row in sorted(counts, key=lambda r: (r["table"], r["system"], r["status"])):
            by_table.setdefault(f"{row['table']}/{row['system']}", {})[row["status"]] = int(row["rows"])
        orphans = int(events.filter(events.parent_missing).count().execute())
        n_records = int(persons.count().execute())
        manifest = {
            "engine": engine,
            "site": st.site.site,
            "persons": n_persons,
            "records": n_records,
            "visits": int(visits.count().execute()),
            "orphans": orphans,
            "events": by_table,
            "probabilistic_notes": notes,
        }
        (out / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    report(4, 4)
    refresh_catalog(ws.root)
    return LinkReport(n_persons, n_records, by_table, orphans, time.perf_counter() - began, tuple(notes))


def _check_linkable(st: StagedTables) -> None:
    """Refuse a staging folder link cannot work on, saying why and what to do."""
    site = st.site  # reads site.json: a missing one is a named error
    staged = {t: st.rows(t) for t in st.tables}
    if not any(staged.values()):
        raise InputError(
            "staging holds no rows in any canonical table; check the export folder and the site mapping "
            "(`medspace site check`)",
            file=str(st.staging),
        )
    if not staged["encounter"]:
        raise InputError(
            f"site {site.site!r} maps no encounters: link groups every event into visits and stays from "
            "the encounter table; map the site's registrations, admissions or stays to `encounter`",
            file=str(st.path("encounter")),
            rule="no encounters",
        )


def _check_every_row_has_one_event(st: StagedTables, events: Any) -> None:
    """Nothing lost, nothing doubled: one event per staged row of every table (a bug otherwise)."""
    counts = events.group_by("table").aggregate(rows=events.count()).to_pyarrow().to_pylist()
    got = {r["table"]: int(r["rows"]) for r in counts}
    wrong = {t: (st.rows(t), got.get(t, 0)) for t in st.tables if st.rows(t) != got.get(t, 0)}
    if wrong:
        detail = ", ".join(f"{t}: {staged} staged, {n} events" for t, (staged, n) in sorted(wrong.items()))
        raise MedspaceError(f"link lost or doubled rows ({detail}); please report this as a bug")


def resolve_persons(
    st: StagedTables, *, min_probability: float = PROBABILISTIC_THRESHOLD, notes: list[str] | None = None
) -> Any:
    """One row per identity record with its person.

    Deterministic keys first (see `_persons`); then records whose component holds no record of the site's
    patient index (a lab patient whose only requests are orphans, an archive patient whose exams lost their
    visit) are matched probabilistically (Fellegi-Sunter, trained on all identity records without labels)
    and joined to the one anchored person they match with at least ``min_probability``; ambiguous ones stay
    apart. What matching warned of, or why it was skipped, is appended to ``notes``.
    """
    con = st.con
    found = identity_records(st)
    if found is None:
        raise InputError(
            "no staged table carries patient_key, so link has no identity records; map each system's "
            "patient number to patient_key in the site mapping",
            file=str(st.staging),
        )
    records = materialise(con, found, "link_records")
    edges = materialise(con, key_edges(st, records), "link_key_edges")
    nodes = ibis.union(
        records.select(node=records.record_id),
        edges.select(node=edges.a),
        edges.select(node=edges.b),
        distinct=True,
    )
    components = connected_components(con, nodes, edges, name="link_key_cc")
    extra = _probabilistic_edges(st, records, components, min_probability, notes if notes is not None else [])
    if extra is not None:
        edges = materialise(
            con, ibis.union(edges, extra.select("a", "b", "rule"), distinct=True), "link_all_edges"
        )
        components = connected_components(con, nodes, edges, name="link_all_cc")
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
        system=out.system,
        patient_key=out.patient_key,
        person_id=out.person_id,
        rules=ibis.coalesce(out.rules, ibis.literal("none: no key shared with another record")),
        match_probability=out.match_probability.cast("float64"),
        explanation=out.explanation.cast("string"),
    )
    return materialise(con, persons, "link_persons")


def _probabilistic_edges(
    st: StagedTables, records: Any, components: Any, min_probability: float, notes: list[str]
) -> Any:
    """Edges from records of components without a patient-index record to the one anchored record they
    match, or None (also when the site names no patient index)."""
    con = st.con
    index = st.site.patient_index
    if index is None:
        return None
    comp = components.select(record_id=components.node, component=components.component)
    anchored = comp.join(records.filter(records.system == index).select("record_id"), "record_id")
    anchored = anchored.select("component").distinct().mutate(anchored=ibis.literal(True))
    comp = comp.left_join(anchored, "component").mutate(anchored=lambda t: t.anchored.fill_null(False))
    comp = comp.select("record_id", "component", "anchored")
    if int(comp.filter(~comp.anchored).count().execute()) == 0:
        return None
    # one row per system patient: small next to the event tables, matched on DuckDB (splink) in memory
    named = records.filter(records.name.notnull()).join(comp.select("record_id", "anchored"), "record_id")
    named = named.select("record_id", *IDENTITY_FIELDS, "anchored", source=named.system)
    loose = named.filter(~named.anchored).drop("anchored").to_pyarrow()
    anchored_records = named.filter(named.anchored).drop("anchored").to_pyarrow()
    if loose.num_rows == 0 or anchored_records.num_rows == 0:
        return None
    try:
        # only loose records are placed: pairs among anchored records could not change a person
        matched = match_records(loose, against=anchored_records)
    except ValueError as exc:
        # EM cannot estimate every level on a very small hospital (splink refuses an m of 0); the keys
        # still link everything they can, and the loose records stay apart rather than being guessed.
        notes.append(f"skipped: {str(exc).split('.')[0]}")
        return None
    notes.extend(matched.warnings)
    matches = matched.pairs
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


def status_counts(report: LinkReport) -> Counter[str]:
    """Rows by status over all tables."""
    total: Counter[str] = Counter()
    for statuses in report.events.values():
        total.update(statuses)
    return total
