"""Placing records that no key ties to the patient index, by Fellegi-Sunter, with its doubts shown.

After the keys, some components hold no record of the site's patient index ("loose"): a lab patient whose
requests all lost their visit, an archive patient whose exams lost theirs. Their records are scored against
the records of anchored components and against each other (so two key-less systems' records of one person
can meet), with the model of the linkage spec (``person_cn``) trained without labels on all identity records.
The spec's thresholds decide:

- a pair at or above ``threshold_probability`` links, when every such pair of the loose component points at
  the same anchored person (a component sure of two persons stays apart and both pairs go to review);
- a pair from ``review_threshold_probability`` up to it is doubtful: it goes to the review queue with each
  comparison's level and partial weight, and links only once a reviewer decides ``link``.

What ran, what was skipped and why are returned for the manifest; the trained model for ``link/model.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import ibis
import pyarrow as pa

from medspace.core import materialise, small_table

from ._conflicts import CONFLICT_SCHEMA, item_id
from ._matching import match_records
from ._persons import IDENTITY_FIELDS
from ._registry import ReviewDecision, linked_by_reviewer
from ._spec import MatchSpec
from ._staged import StagedTables

EDGE_COLUMNS = ("a", "b", "rule", "match_probability", "explanation")


@dataclass(frozen=True)
class Placing:
    """What probabilistic placing found."""

    #: edges ``a`` (placed record) - ``b`` (the record it matched), with rule, probability and explanation
    edges: Any | None
    #: doubtful and ambiguous pairs, as review items (`CONFLICT_SCHEMA`)
    review: pa.Table
    #: what ran and what was skipped (manifest ``probabilistic``)
    summary: dict[str, Any]
    #: the trained model and the thresholds (``link/model.json``), or None when nothing was trained
    model: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def place_loose_records(
    st: StagedTables, records: Any, components: Any, spec: MatchSpec, decided: dict[str, ReviewDecision]
) -> Placing:
    """Score loose records and decide which pairs link, which need review (see the module docstring)."""
    con = st.con
    summary: dict[str, Any] = {
        "spec_threshold": spec.threshold_probability,
        "spec_review_threshold": spec.review_threshold_probability,
    }
    empty = CONFLICT_SCHEMA.empty_table()
    index = st.site.patient_index
    comp = components.select(record_id=components.node, component=components.component)
    anchored = comp.join(records.filter(records.system == index).select("record_id"), "record_id")
    anchored = anchored.select("component").distinct().mutate(anchored=ibis.literal(True))
    comp = comp.left_join(anchored, "component").mutate(anchored=lambda t: t.anchored.fill_null(False))
    comp = materialise(con, comp.select("record_id", "component", "anchored"), "link_placing_components")
    loose_n = int(comp.filter(~comp.anchored).count().execute())
    summary["loose_records"] = loose_n
    if loose_n == 0:
        return Placing(
            None, empty, {**summary, "ran": False, "skipped": "every record reaches the patient index"}
        )
    named = records.filter(records.name.notnull()).join(comp.select("record_id", "anchored"), "record_id")
    named = named.select("record_id", *IDENTITY_FIELDS, "anchored", source=named.system)
    named = _with_age(st, named)
    loose = named.filter(~named.anchored).drop("anchored").to_pyarrow()
    anchored_records = named.filter(named.anchored).drop("anchored").to_pyarrow()
    summary.update(loose_named_records=loose.num_rows, anchored_named_records=anchored_records.num_rows)
    if loose.num_rows == 0 or anchored_records.num_rows == 0:
        why = "no loose record carries a name" if loose.num_rows == 0 else "no anchored record carries a name"
        return Placing(None, empty, {**summary, "ran": False, "skipped": why})
    try:
        matched = match_records(loose, spec, against=anchored_records)
    except ValueError as exc:
        # EM cannot estimate every level on a very small hospital (splink refuses an m of 0); the keys
        # still link everything they can, and the loose records stay apart rather than being guessed.
        why = str(exc).split(".")[0]
        return Placing(None, empty, {**summary, "ran": False, "skipped": why}, notes=[f"skipped: {why}"])
    model = {
        "spec": spec.model_dump(mode="json"),
        "probability_two_random_records_match": matched.probability_two_random_records_match,
        "parameters": [p.__dict__ for p in matched.parameters],
        "splink_model": matched.model,
    }
    columns = [
        "record_id_l",
        "record_id_r",
        "match_probability",
        "match_weight",
        "explanation",
        "partial_match_weights",
    ]
    doubtful = matched.review_pairs if matched.review_pairs is not None else matched.pairs.slice(0, 0)
    sure = matched.pairs.select(columns).append_column(
        "sure", pa.array([True] * matched.pairs.num_rows, pa.bool_())
    )
    unsure = doubtful.select(columns).append_column("sure", pa.array([False] * doubtful.num_rows, pa.bool_()))
    pairs = small_table(
        con, "link_placing_pairs", pa.concat_tables([sure, unsure]).drop(["partial_match_weights"])
    )
    cl = comp.select(record_id_l=comp.record_id, comp_l=comp.component, anchored_l=comp.anchored)
    cr = comp.select(record_id_r=comp.record_id, comp_r=comp.component, anchored_r=comp.anchored)
    p = pairs.join(cl, "record_id_l").join(cr, "record_id_r")
    # only pairs that would change a person: two components, at least one of them loose
    p = p.filter((p.comp_l != p.comp_r) & ~(p.anchored_l & p.anchored_r))
    oriented = p.select(
        a=ibis.cases((p.anchored_l, p.record_id_r), else_=p.record_id_l),
        b=ibis.cases((p.anchored_l, p.record_id_l), else_=p.record_id_r),
        loose=ibis.cases((p.anchored_l, p.comp_r), else_=p.comp_l),
        target=ibis.cases((p.anchored_l, p.comp_l), else_=p.comp_r),
        to_anchored=p.anchored_l | p.anchored_r,
        match_probability=p.match_probability,
        match_weight=p.match_weight,
        explanation=p.explanation,
        sure=p.sure,
    )
    oriented = materialise(con, oriented, "link_placing_oriented")
    sure_anchored = oriented.filter(oriented.sure & oriented.to_anchored)
    targets = sure_anchored.group_by("loose").aggregate(persons=sure_anchored.target.nunique())
    ambiguous = targets.filter(targets.persons > 1).select("loose")
    weights = _partial_weights(matched.pairs, doubtful)
    # a doubtful pair towards the person its loose records are surely placed with changes nothing
    placed = sure_anchored.anti_join(ambiguous, "loose").select("loose", "target").distinct()
    placed = placed.mutate(placed=ibis.literal(True))
    flagged = oriented.left_join(ambiguous.mutate(ambiguous=True), "loose").drop("loose_right")
    flagged = flagged.left_join(placed, ["loose", "target"]).drop("loose_right", "target_right")
    # one item per loose component and person it might join: its best pair (a decision links them all)
    flagged = flagged.filter(
        ~(flagged.sure & flagged.ambiguous.isnull()) & ~(~flagged.sure & flagged.placed.notnull())
    )
    flagged = flagged.mutate(
        rank=ibis.row_number().over(
            group_by=[flagged.loose, flagged.target],
            order_by=[ibis.desc(flagged.match_probability), flagged.a, flagged.b],
        )
    )
    flagged = flagged.filter(flagged.rank == 0).order_by(["a", "b"])
    review_rows = [
        _review_item(row, spec, weights, ambiguous=bool(row["ambiguous"]))
        for row in flagged.to_pyarrow().to_pylist()
    ]
    review = pa.Table.from_pylist(review_rows, schema=CONFLICT_SCHEMA)
    reviewed = [
        (r["record_a"], r["record_b"], r["match_probability"])
        for r in review_rows
        if linked_by_reviewer(decided.get(r["item_id"]), r["evidence"])
    ]
    chosen = oriented.filter(oriented.sure).anti_join(ambiguous, "loose")
    chosen = chosen.mutate(
        rank=ibis.row_number().over(
            group_by=chosen.a, order_by=[ibis.desc(chosen.match_probability), chosen.b]
        )
    )
    chosen = chosen.filter(chosen.rank == 0).select(
        "a",
        "b",
        rule=ibis.literal("probabilistic"),
        match_probability="match_probability",
        explanation="explanation",
    )
    edges = chosen
    if reviewed:
        by_reviewer = small_table(
            con,
            "link_reviewed_pairs",
            pa.table(
                {
                    "a": pa.array([a for a, _, _ in reviewed], pa.string()),
                    "b": pa.array([b for _, b, _ in reviewed], pa.string()),
                    "rule": pa.array(["probabilistic, reviewed"] * len(reviewed), pa.string()),
                    "match_probability": pa.array([m for _, _, m in reviewed], pa.float64()),
                    "explanation": pa.array(["linked by a reviewer's decision"] * len(reviewed), pa.string()),
                }
            ),
        )
        edges = ibis.union(chosen, by_reviewer)
    edges = materialise(con, edges, "link_probabilistic_edges")
    n_edges = int(edges.count().execute())
    summary.update(
        ran=True,
        skipped=None,
        pairs_sure=matched.pairs.num_rows,
        pairs_doubtful=doubtful.num_rows,
        edges=n_edges,
        edges_by_reviewer=len(reviewed),
        review_items=review.num_rows,
        ambiguous_components=int(ambiguous.count().execute()),
    )
    return Placing(edges if n_edges else None, review, summary, model, list(matched.warnings))


def _with_age(st: StagedTables, named: Any) -> Any:
    """Records with a birth date but no age get their age at the export's last encounter.

    Key-less systems (a lab's request form) carry an age where the index carries a birth date; without
    this, the model's age level could never compare the two and such a record could never be placed.
    The age is a year off at most over a year's export, which the age level allows.
    """
    latest = st.table("encounter").start_at.max().execute()
    if latest is None:
        return named
    as_of = ibis.literal(latest).cast("date")
    born = named.birth_date
    before_birthday = (as_of.month() * 100 + as_of.day()) < (born.month() * 100 + born.day())
    age = (as_of.year() - born.year() - ibis.ifelse(before_birthday, 1, 0)).cast("int64")
    return named.mutate(age_years=ibis.coalesce(named.age_years, ibis.ifelse(born.notnull(), age, None)))


def _partial_weights(*tables: pa.Table) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for table in tables:
        for row in table.select(["record_id_l", "record_id_r", "partial_match_weights"]).to_pylist():
            out[(row["record_id_l"], row["record_id_r"])] = row["partial_match_weights"]
            out[(row["record_id_r"], row["record_id_l"])] = row["partial_match_weights"]
    return out


def _review_item(
    row: dict[str, Any],
    spec: MatchSpec,
    weights: dict[tuple[str, str], list[dict[str, Any]]],
    *,
    ambiguous: bool,
) -> dict[str, Any]:
    a, b = sorted((row["a"], row["b"]))
    partial = weights.get((a, b), [])
    p = row["match_probability"]
    if ambiguous:
        rule = f"match probability {p:.3f} to one of several persons the same records match as surely"
    else:
        rule = (
            f"match probability {p:.3f}: at or above the review threshold "
            f"{spec.review_threshold_probability:g}, below the match threshold {spec.threshold_probability:g}"
        )
    # the decision is bound to the agreement levels (what the records say), not to the trained weights,
    # which move a little with every retraining
    evidence = {
        "basis": {w["comparison"]: w["level"] for w in partial},
        "partial_match_weights": {w["comparison"]: round(float(w["weight"]), 3) for w in partial},
        "explanation": row["explanation"],
    }
    return {
        "item_id": item_id("pair", f"{a}|{b}"),
        "kind": "probabilistic",
        "key": None,
        "rule": rule,
        "record_a": a,
        "record_b": b,
        "match_probability": p,
        "match_weight": row["match_weight"],
        "evidence": json.dumps(evidence, ensure_ascii=False, sort_keys=True),
    }
