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
- ``manifest.json``: counts by ``<table>/<system>`` and status, what the registry changed, held keys and the
  review queue's size.

Person ids come from the workspace's person registry (``registry/``, see `_registry`), which keeps them
stable across runs; keys whose records conflict are held for review rather than merged (see `_conflicts`).

The stage runs on DuckDB or Spark (Ibis expressions), writes atomically and is safe to re-run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from medspace.core import (
    EngineName,
    InputError,
    MedspaceError,
    ProgressCallback,
    StageProgress,
    Workspace,
    connect,
    materialise,
    refresh_catalog,
    replace_folder,
    stage_lineage,
    write_parquet,
)

from ._components import connected_components, joined_components
from ._conflicts import OVERLAY_RULE, held_records_table, key_conflicts, record_conflicts, without_held
from ._events import EventLinker, event_groups
from ._persons import identity_records, key_edges
from ._placing import Placing, place_loose_records
from ._quarantined import quarantined_parents
from ._registry import Registry, RegistryChanges, linked_by_reviewer
from ._scores import PersonScores, score_link
from ._spec import MatchSpec, load_match_spec
from ._staged import StagedTables
from ._visits import visit_index

#: The linkage spec whose model and thresholds place records no key ties to the patient index.
MATCH_SPEC = "person_cn"

#: The named steps of `resolve_persons`, each one unit of the link stage's progress.
PERSON_STEPS = (
    "identity records and the keys they share",
    "key and record conflicts",
    "components of the key graph",
    "probabilistic placing of loose records",
    "components with the placed records",
    "person ids from the registry",
)
#: The link stage's units after the persons, the visits and the event groups: the registry written; the
#: events written and checked; the person records, the visits, and the counts with the manifest written.
_WRITING_STEPS = 5

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
    #: what this run changed in the person registry
    registry: RegistryChanges | None = None
    #: keys left out of linking because their records conflict (and no reviewer linked them)
    held_keys: int = 0
    #: identity records held whole because their own rows are different people (overlays)
    held_records: int = 0
    #: review items waiting for a decision
    review_open: int = 0
    #: person-level scores against a labelled truth, when one was given
    scores: PersonScores | None = None


def link_workspace(
    workspace: Path,
    engine: EngineName = "duckdb",
    *,
    progress: ProgressCallback | None = None,
    truth: Path | None = None,
) -> LinkReport:
    """Link persons and events of a staged workspace and write ``<workspace>/link/``.

    Args:
        workspace: the workspace folder; ``staging/`` must exist (``medspace ingest``).
        engine: ``"duckdb"`` or ``"spark"``; both give the same tables.
        progress: called as ``progress(steps_done, steps_total)`` after each step of `PERSON_STEPS`, the
            visit index, each group of staged tables linked to persons and visits (see `event_groups`), the
            registry written, and each file of ``link/`` written (the truth's scores one more step).
        truth: a labelled truth of raw rows (``file``, ``row``, ``person_id``; the synthetic hospital's
            ``truth/records.parquet``): person-level precision, recall, split, merged and phantom persons
            against it go into the report and the manifest (``truth_scores``).

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
        ws.root, "link", inputs=("staging",), specs={"match_spec": load_match_spec(MATCH_SPEC)}
    )
    groups = event_groups(st)
    steps = StageProgress(
        len(PERSON_STEPS) + 1 + len(groups) + _WRITING_STEPS + int(truth is not None), progress
    )
    registry = Registry(ws.root)
    run_id = lineage.run_id  # the registry's history names the link run that changed it
    resolved = resolve_persons(st, registry, run_id, steps=steps)
    notes = resolved.placing.notes
    persons = resolved.persons
    n_persons = int(persons.person_id.nunique().execute())
    if n_persons == 0:
        raise InputError(
            "no staged row names a patient (patient_key is empty in every table), so link found no "
            "person; map each system's patient number to patient_key in the site mapping",
            file=str(st.staging),
        )
    index = visit_index(st, persons)
    steps.advance()
    linker = EventLinker(st, persons, index, quarantined_parents(st))
    linked = linker.all_events(linked=steps.advance)
    review = registry.merge_review(resolved.review, run_id)
    # the registry first: a link folder never names person ids the registry has not recorded
    registry.write(con, resolved.registry_tables, resolved.history, review)
    open_items = sum(1 for r in review.to_pylist() if r["present"] and r["decision"] is None)
    steps.advance()
    with replace_folder(ws.stage("link"), lineage=lineage) as out:
        # the events go straight to their file (one copy fewer of every row); checks and counts read it
        write_parquet(
            con,
            linked.order_by(["table", "system", "source_file", "source_row", "record_key"]),
            out / "events.parquet",
        )
        events = con.read_parquet(str(out / "events.parquet"), table_name="link_events")
        _check_every_row_has_one_event(st, events)
        steps.advance()
        write_parquet(con, persons.order_by("record_id"), out / "person_records.parquet")
        steps.advance()
        scores = None if truth is None else score_link(out, st.staging, Path(truth))
        steps.advance(int(truth is not None))
        visits = index.visits.select(*VISIT_COLUMNS)
        write_parquet(con, visits.order_by("visit_id"), out / "visits.parquet")
        steps.advance()
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
            "probabilistic": resolved.placing.summary,
            "probabilistic_notes": notes,
            "registry": {**asdict(resolved.changes), "history_events": resolved.history.num_rows},
            "held_keys": resolved.held_keys,
            "held_records": resolved.held_records,
            "review": {"items": review.num_rows, "open": open_items},
        }
        if scores is not None:
            manifest["truth_scores"] = {"truth": str(truth), **asdict(scores)}
        if resolved.placing.model is not None:
            (out / "model.json").write_text(
                json.dumps(resolved.placing.model, indent=2, ensure_ascii=False, default=str) + "\n",
                encoding="utf-8",
            )
        (out / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    refresh_catalog(ws.root)
    steps.advance()
    return LinkReport(
        n_persons,
        n_records,
        by_table,
        orphans,
        time.perf_counter() - began,
        tuple(notes),
        registry=resolved.changes,
        held_keys=resolved.held_keys,
        held_records=resolved.held_records,
        review_open=open_items,
        scores=scores,
    )


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


@dataclass(frozen=True)
class ResolvedPersons:
    """Persons of this run: the identity records with their person ids, and what the registry and the
    conflict check made of them."""

    persons: Any  # record_id, system, patient_key, person_id, rules, match_probability, explanation
    changes: RegistryChanges
    history: pa.Table
    registry_tables: dict[str, Any]
    review: pa.Table  # this run's review items (CONFLICT_SCHEMA): key conflicts, doubtful pairs
    held_keys: int
    placing: Placing
    #: identity records whose rows are different people, held whole for review (no person, no visit)
    held_records: int = 0


def resolve_persons(
    st: StagedTables,
    registry: Registry,
    run_id: str,
    *,
    spec: MatchSpec | None = None,
    steps: StageProgress | None = None,
) -> ResolvedPersons:
    """One row per identity record with its person.

    Deterministic keys first (see `_persons`), except keys whose records cannot be one person (see
    `_conflicts`): those are held for review unless a reviewer decided to link them. Then records whose
    component holds no record of the site's patient index (a lab patient whose only requests are orphans, an
    archive patient whose exams lost their visit) are matched probabilistically (Fellegi-Sunter, trained on
    all identity records without labels) by the linkage ``spec`` (``person_cn`` by default) and its
    thresholds; doubtful and ambiguous pairs go to review (see `_placing`). The registry gives each component
    its person id. Each of `PERSON_STEPS` done is one unit of ``steps``.
    """
    steps = steps or StageProgress(len(PERSON_STEPS))
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
    steps.advance()
    conflicts = key_conflicts(records, edges)
    if st.rows("patient"):
        conflicts = pa.concat_tables([conflicts, record_conflicts(st.table("patient"))])
    steps.advance()
    decided = registry.decisions()
    held_items = [
        item
        for item in conflicts.to_pylist()
        if not linked_by_reviewer(decided.get(item["item_id"]), item["evidence"])
    ]
    held = [i["key"] for i in held_items if i["kind"] == "key_conflict"]
    overlays = sorted(i["key"] for i in held_items if i["kind"] == "record_conflict")
    held_records = held_records_table(con, overlays)
    edges = materialise(con, without_held(con, edges, held, held_records), "link_kept_edges")
    nodes = ibis.union(
        records.select(node=records.record_id),
        edges.select(node=edges.a),
        edges.select(node=edges.b),
        distinct=True,
    )
    components = connected_components(con, nodes, edges, name="link_key_cc")
    steps.advance()
    # an overlay is nobody's until reviewed: not placed, not given a person
    placeable = records
    if held_records is not None:
        placeable = records.anti_join(held_records, records.record_id == held_records.held_record)
    placing = place_loose_records(
        st, placeable, components, spec if spec is not None else load_match_spec(MATCH_SPEC), decided
    )
    steps.advance()
    extra = placing.edges
    if extra is not None:
        edges = materialise(
            con, ibis.union(edges, extra.select("a", "b", "rule"), distinct=True), "link_all_edges"
        )
        components = joined_components(con, components, extra, name="link_all_cc")
    steps.advance()  # without placed records the key graph's components stand
    of_records = placeable.join(components, placeable.record_id == components.node)
    of_records = of_records.select(
        "record_id", "component", anchored=of_records.system == ibis.literal(st.site.patient_index or "")
    )
    assigned, changes, history, tables = registry.assign(con, of_records, run_id)
    rules = edges.select("a", "rule").distinct()
    rules = rules.group_by("a").aggregate(rules=rules.rule.collect(distinct=True).sort().join(", "))
    out = records.left_join(assigned, "record_id").left_join(rules, records.record_id == rules.a)
    out = out.drop("record_id_right")
    if extra is not None:
        best = extra.mutate(
            rank=ibis.row_number().over(group_by=extra.a, order_by=ibis.desc(extra.match_probability))
        )
        best = best.filter(best.rank == 0)
        scored = best.select(
            scored=best.a, match_probability=best.match_probability, explanation=best.explanation
        )
        out = out.left_join(scored, out.record_id == scored.scored)
    else:
        out = out.mutate(match_probability=ibis.null("float64"), explanation=ibis.null("string"))
    persons = out.select(
        record_id=out.record_id,
        system=out.system,
        patient_key=out.patient_key,
        person_id=out.person_id,
        rules=ibis.cases(
            (out.person_id.isnull(), ibis.literal(OVERLAY_RULE)),
            else_=ibis.coalesce(out.rules, ibis.literal("none: no key shared with another record")),
        ),
        match_probability=out.match_probability.cast("float64"),
        explanation=out.explanation.cast("string"),
    )
    persons = materialise(con, persons, "link_persons")
    steps.advance()
    review = pa.concat_tables([conflicts, placing.review])
    return ResolvedPersons(persons, changes, history, tables, review, len(held), placing, len(overlays))


def status_counts(report: LinkReport) -> Counter[str]:
    """Rows by status over all tables."""
    total: Counter[str] = Counter()
    for statuses in report.events.values():
        total.update(statuses)
    return total
