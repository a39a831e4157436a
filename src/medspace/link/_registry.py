"""The person registry: a master patient index that keeps person ids stable across runs and exports.

Linking finds components (records that are one person) afresh on every run; the registry decides which
*person id* each component carries, so that ids, and the pseudonyms and date shifts keyed on them, survive a
refreshed or appended export and re-linking. It lives in ``<workspace>/registry/``:

- ``records.parquet``: every identity record ever seen, its person id and the runs it was first and last seen;
- ``persons.parquet``: every person id ever issued, the run that created it, ``active`` or ``merged`` and,
  when merged, the person it was merged into;
- ``history.parquet``: each merge and split, with the run, the persons, how many records moved and which;
- ``review.parquet``: the review queue (key conflicts, doubtful probabilistic pairs) as of the last run, with
  the decision in force for each item.

Decisions are data: ``<workspace>/review/decisions.jsonl`` is appended to by `decide_review` and never
rewritten, each line naming the item, the decision, the reviewer, the time and the digest of the evidence the
reviewer saw; the latest line per item counts while that evidence is unchanged.

How ids are kept: on the first run components are numbered in order (``P00000001``...). On a later run each
earlier person's records vote: the person keeps its id in the component holding most of its records, and a
component holding the best share of several earlier persons keeps the one with most records there (the older
id on a tie), the others are recorded as merged into it. Records of a person that now sit in another component
are recorded as split off. A component with no earlier person is a new patient and takes the next free id, so
nobody else's id changes. Records absent from this export keep their entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ibis
import pyarrow as pa
import pyarrow.parquet as pq

from medspace.core import InputError, materialise, replace_folder, small_table, write_parquet

from ._conflicts import CONFLICT_SCHEMA

Decision = Literal["link", "separate"]
DECISIONS = ("link", "separate")

REVIEW_SCHEMA = pa.schema(
    [
        *CONFLICT_SCHEMA,
        ("first_run", pa.string()),
        ("last_run", pa.string()),
        ("present", pa.bool_()),
        ("decision", pa.string()),
        ("decided_by", pa.string()),
        ("decided_at", pa.string()),
    ]
)
HISTORY_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("at", pa.string()),
        ("event", pa.string()),
        ("person_id", pa.string()),
        ("other_person_id", pa.string()),
        ("records", pa.int64()),
        ("evidence", pa.string()),
    ]
)
#: Record ids kept as evidence of a merge or split (the count is complete).
EVIDENCE_RECORDS = 20


@dataclass(frozen=True)
class RegistryChanges:
    """What one run changed in the registry."""

    run_id: str
    first_run: bool
    persons_kept: int
    persons_new: int
    persons_merged: int
    records_split: int
    records_new: int


@dataclass(frozen=True)
class ReviewDecision:
    """One reviewer's decision on one review item (a line of ``review/decisions.jsonl``)."""

    item_id: str
    decision: Decision
    reviewer: str
    at: str
    note: str
    evidence_sha256: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def evidence_digest(evidence: str | None) -> str:
    """The digest of an item's evidence, which a decision is bound to: its ``basis`` where it names one
    (a probabilistic pair's agreement levels, not its trained weights), else all of it."""
    text = evidence or ""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "basis" in parsed:
        text = json.dumps(parsed["basis"], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def in_force(decision: ReviewDecision | None, evidence: str | None) -> ReviewDecision | None:
    """The decision, if it was made on this very evidence; else None (the item is open again)."""
    if decision is not None and decision.evidence_sha256 == evidence_digest(evidence):
        return decision
    return None


def linked_by_reviewer(decision: ReviewDecision | None, evidence: str | None) -> bool:
    """Whether a reviewer decided, on this very evidence, that the records are one person."""
    found = in_force(decision, evidence)
    return found is not None and found.decision == "link"


class Registry:
    """The registry folder of one workspace.

    Example:
        >>> import tempfile
        >>> Registry(Path(tempfile.mkdtemp())).exists
        False
    """

    def __init__(self, workspace: Path) -> None:
        self.workspace = Path(workspace)
        self.folder = self.workspace / "registry"
        self.decisions_file = self.workspace / "review" / "decisions.jsonl"

    @property
    def exists(self) -> bool:
        """Whether an earlier run wrote the registry."""
        return (self.folder / "records.parquet").exists()

    def decisions(self) -> dict[str, ReviewDecision]:
        """The latest decision per item."""
        latest: dict[str, ReviewDecision] = {}
        if not self.decisions_file.exists():
            return latest
        lines = self.decisions_file.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = ReviewDecision(**json.loads(line))
            except (ValueError, TypeError) as exc:
                raise InputError(
                    f"a review decision is not readable ({exc}); the file is append-only, restore it",
                    file=str(self.decisions_file),
                    row=number,
                ) from None
            latest[entry.item_id] = entry
        return latest

    def assign(self, con: Any, components: Any, run_id: str) -> tuple[Any, RegistryChanges, pa.Table, Any]:
        """Person ids for this run's components.

        Args:
            con: the backend the components live on.
            components: Ibis table ``record_id, component, anchored`` (one row per identity record;
                ``anchored`` when the record is the patient index's).
            run_id: this run's id.

        Returns:
            ``(assigned, changes, history, registry_tables)``: ``assigned`` is ``record_id, person_id``;
            ``history`` the merge and split events of this run; ``registry_tables`` the tables `write` takes.
        """
        if not self.exists:
            return self._first(con, components, run_id)
        return self._later(con, components, run_id)

    def _first(self, con: Any, components: Any, run_id: str) -> tuple[Any, RegistryChanges, pa.Table, Any]:
        c = components
        assigned = c.select(
            c.record_id,
            person_id="P" + (ibis.dense_rank().over(order_by=c.component) + 1).cast("string").lpad(8, "0"),
        )
        assigned = materialise(con, assigned, "registry_assigned")
        persons = assigned.select("person_id").distinct()
        n = int(persons.count().execute())
        tables = {
            "records": assigned.select(
                "record_id", "person_id", first_run=ibis.literal(run_id), last_run=ibis.literal(run_id)
            ),
            "persons": persons.select(
                "person_id",
                created_run=ibis.literal(run_id),
                status=ibis.literal("active"),
                merged_into=ibis.null("string"),
            ),
        }
        n_records = int(assigned.count().execute())
        changes = RegistryChanges(run_id, True, 0, n, 0, 0, n_records)
        return assigned, changes, HISTORY_SCHEMA.empty_table(), tables

    def _later(self, con: Any, components: Any, run_id: str) -> tuple[Any, RegistryChanges, pa.Table, Any]:
        known = con.read_parquet(str(self.folder / "records.parquet"), table_name="registry_known_records")
        known_persons = con.read_parquet(
            str(self.folder / "persons.parquet"), table_name="registry_known_persons"
        )
        prev = known.select(record_id=known.record_id, earlier=known.person_id, first_seen=known.first_run)
        joined = materialise(
            con, components.left_join(prev, "record_id").drop("record_id_right"), "registry_joined"
        )
        votes = joined.filter(joined.earlier.notnull())
        votes = votes.group_by(["earlier", "component"]).aggregate(
            n=votes.count(), anchored_n=votes.anchored.cast("int64").sum()
        )
        # each earlier person's home: the component holding most of its records (on a tie, one with a
        # record of the patient index, whose number the hospital itself files the patient under)
        home = votes.mutate(
            rank=ibis.row_number().over(
                group_by=votes.earlier,
                order_by=[ibis.desc(votes.n), ibis.desc(votes.anchored_n), votes.component],
            )
        )
        home = home.filter(home.rank == 0).drop("rank")
        # each component keeps, among the persons at home in it, the one with most records (older id on a tie)
        keeper = home.mutate(
            rank=ibis.row_number().over(group_by=home.component, order_by=[ibis.desc(home.n), home.earlier])
        )
        keeper = materialise(
            con, keeper.filter(keeper.rank == 0).select("component", kept=keeper.earlier), "registry_keeper"
        )
        fresh = joined.select("component").distinct().anti_join(keeper, "component")
        top = int(
            known_persons.select(n=known_persons.person_id.substr(1).cast("int64")).n.max().execute() or 0
        )
        fresh = fresh.select(
            "component",
            kept="P"
            + (ibis.dense_rank().over(order_by=fresh.component) + 1 + top).cast("string").lpad(8, "0"),
        )
        owner = materialise(con, ibis.union(keeper, fresh), "registry_owner")
        placed = joined.join(owner, "component").drop("anchored")
        assigned = materialise(
            con,
            placed.select(
                "record_id",
                person_id=placed.kept,
                earlier=placed.earlier,
                first_run=ibis.coalesce(placed.first_seen, ibis.literal(run_id)),
            ),
            "registry_assigned",
        )
        # merged: an earlier person at home in a component that another person keeps
        merged = home.join(owner, "component").filter(lambda t: t.kept != t.earlier)
        merged = merged.select(
            person_id=merged.kept, other_person_id=merged.earlier, component=merged.component
        )
        merged_rows = merged.to_pyarrow().to_pylist()
        merged_ids = {r["other_person_id"] for r in merged_rows}
        # split: records of a person that kept its id, now in a component another person owns
        moved = assigned.filter(assigned.earlier.notnull() & (assigned.earlier != assigned.person_id))
        moved_rows = (
            moved.select("record_id", "earlier", "person_id").order_by("record_id").to_pyarrow().to_pylist()
        )
        at = _now()
        history: list[dict[str, Any]] = []
        by_merge: dict[tuple[str, str], list[str]] = {}
        by_split: dict[tuple[str, str], list[str]] = {}
        for row in moved_rows:
            pair = (row["person_id"], row["earlier"])
            target = by_merge if row["earlier"] in merged_ids else by_split
            target.setdefault(pair, []).append(row["record_id"])
        for event, grouped in (("merged", by_merge), ("split", by_split)):
            for (person, other), moved_ids in sorted(grouped.items()):
                if event == "split":
                    # the split-off records went to `person`; `other` kept its id elsewhere
                    person, other = other, person
                history.append(
                    {
                        "run_id": run_id,
                        "at": at,
                        "event": event,
                        "person_id": person,
                        "other_person_id": other,
                        "records": len(moved_ids),
                        "evidence": json.dumps({"records": moved_ids[:EVIDENCE_RECORDS]}, ensure_ascii=False),
                    }
                )
        current = assigned.select(
            "record_id", "person_id", first_run=assigned.first_run, last_run=ibis.literal(run_id)
        )
        absent = known.anti_join(assigned, "record_id").select(
            "record_id", "person_id", "first_run", "last_run"
        )
        merged_table = small_table(
            con,
            "registry_merged",
            pa.table(
                {
                    "merged_id": pa.array([r["other_person_id"] for r in merged_rows], pa.string()),
                    "merged_into_id": pa.array([r["person_id"] for r in merged_rows], pa.string()),
                }
            ),
        )
        old = known_persons.left_join(merged_table, known_persons.person_id == merged_table.merged_id)
        old = old.select(
            "person_id",
            "created_run",
            status=ibis.cases((old.merged_id.notnull(), "merged"), else_=old.status),
            merged_into=ibis.coalesce(old.merged_into_id, old.merged_into),
        )
        new = fresh.select(
            person_id=fresh.kept,
            created_run=ibis.literal(run_id),
            status=ibis.literal("active"),
            merged_into=ibis.null("string"),
        )
        tables = {"records": ibis.union(current, absent), "persons": ibis.union(old, new)}
        n_new = int(fresh.count().execute())
        n_kept = int(keeper.count().execute())
        n_records_new = int(joined.filter(joined.earlier.isnull()).count().execute())
        n_split = sum(len(v) for v in by_split.values())
        changes = RegistryChanges(run_id, False, n_kept, n_new, len(merged_ids), n_split, n_records_new)
        out = assigned.select("record_id", "person_id")
        return out, changes, pa.Table.from_pylist(history, schema=HISTORY_SCHEMA), tables

    def merge_review(self, items: pa.Table, run_id: str) -> pa.Table:
        """This run's review items merged with the queue so far: first and last run, whether still present,
        and the decision in force (a decision on other evidence than the item's current one is not)."""
        earlier: dict[str, dict[str, Any]] = {}
        path = self.folder / "review.parquet"
        if path.exists():
            earlier = {r["item_id"]: r for r in pq.read_table(path).to_pylist()}
        decided = self.decisions()
        rows = []
        for item in items.to_pylist():
            before = earlier.pop(item["item_id"], None)
            rows.append(
                {
                    **item,
                    "first_run": before["first_run"] if before else run_id,
                    "last_run": run_id,
                    "present": True,
                }
            )
        rows += [{**gone, "present": False} for gone in earlier.values()]
        for row in rows:
            decision = in_force(decided.get(row["item_id"]), row["evidence"])
            row["decision"] = decision.decision if decision else None
            row["decided_by"] = decision.reviewer if decision else None
            row["decided_at"] = decision.at if decision else None
        rows.sort(key=lambda r: (not r["present"], r["kind"], r["item_id"]))
        return pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA)

    def write(self, con: Any, tables: dict[str, Any], history: pa.Table, review: pa.Table) -> None:
        """Swap in the registry of this run (whole, or not at all)."""
        earlier_history = (
            pq.read_table(self.folder / "history.parquet")
            if (self.folder / "history.parquet").exists()
            else None
        )
        with replace_folder(self.folder) as out:
            write_parquet(con, tables["records"].order_by("record_id"), out / "records.parquet")
            write_parquet(con, tables["persons"].order_by("person_id"), out / "persons.parquet")
            full = history if earlier_history is None else pa.concat_tables([earlier_history, history])
            pq.write_table(full, out / "history.parquet")
            pq.write_table(review, out / "review.parquet")


def review_queue(workspace: Path, *, include_gone: bool = False) -> pa.Table:
    """The review queue of a workspace (`REVIEW_SCHEMA`), with decisions made since the last link run.

    Args:
        workspace: the workspace folder; ``medspace link`` must have run.
        include_gone: also items the last run no longer found.

    Raises:
        InputError: link has not run on this workspace.
    """
    registry = Registry(workspace)
    path = registry.folder / "review.parquet"
    if not path.exists():
        raise InputError("no review queue yet: run `medspace link` first", file=str(path))
    queue = pq.read_table(path).to_pylist()
    decided = registry.decisions()
    rows = []
    for row in queue:
        decision = in_force(decided.get(row["item_id"]), row["evidence"])
        if decision is not None:
            row.update(decision=decision.decision, decided_by=decision.reviewer, decided_at=decision.at)
        if row["present"] or include_gone:
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA)


def decide_review(
    workspace: Path, item: str, decision: str, *, reviewer: str | None = None, note: str = ""
) -> ReviewDecision:
    """Record a reviewer's decision on a review item; the next ``medspace link`` applies it.

    Args:
        workspace: the workspace folder.
        item: the item id (``key:...``), as ``medspace review list`` shows it.
        decision: ``link`` (the records are one person) or ``separate`` (they are not).
        reviewer: who decides (the login name by default).
        note: why, for the audit.

    Raises:
        InputError: the item is not in the queue or the decision is neither ``link`` nor ``separate``.
    """
    if decision not in DECISIONS:
        raise InputError(
            f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}", field="decision"
        )
    queue = {r["item_id"]: r for r in review_queue(workspace, include_gone=True).to_pylist()}
    if item not in queue:
        raise InputError(f"no review item {item!r}; `medspace review list` shows the queue", field="item")
    registry = Registry(workspace)
    entry = ReviewDecision(
        item_id=item,
        decision=decision,  # type: ignore[arg-type]
        reviewer=reviewer or os.environ.get("USER") or "unknown",
        at=_now(),
        note=note,
        evidence_sha256=evidence_digest(queue[item]["evidence"]),
    )
    registry.decisions_file.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry.__dict__, ensure_ascii=False, sort_keys=True)
    with registry.decisions_file.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry
