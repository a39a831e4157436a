"""Key conflicts: a shared key whose records cannot be one person goes to review instead of being merged.

Keys (a resident ID, an inpatient number, a visit serial, an accession number) link records transitively, so
one reused inpatient number or a newborn registered under a parent's resident ID would silently merge two
people. Before components are formed, every key node whose records disagree on who they are is checked pair by
pair: the sexes differ, the birth dates are more than a month apart and more than one digit apart (a mistyped
digit is a typo, not another person), or the names are more than one character apart. A key carried by more
records than one patient could have across the hospital's systems is a placeholder (``000000``, a shared
ward number). Such keys are **held**: their edges are left out of the graph, and each becomes an item of the
review queue with its evidence. A reviewer's ``link`` decision (persisted by the registry) lets it link again.

A record can hold two people itself: a system whose patient key is another system's number (discharge
records keyed by the inpatient number) writes a reused number's rows under one key. The record's own patient
rows are then compared the same way; a record whose rows disagree is an **overlay** (the master patient
index's term): it is held whole, linked to nobody and none of its rows attached to a visit, until a reviewer
decides.

Only keys and records whose rows differ in some identity value are compared, and those are few (typos and
conflicts), so the pairs are compared in Python on a small table on both engines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from medspace.core import small_table

#: Records one key may link before it counts as a placeholder: far more than one patient's records across
#: a hospital's systems.
PLACEHOLDER_RECORDS = 50
#: Birth dates further apart than this (and more than one digit apart) are different people.
BIRTH_DATE_DAYS = 31
#: The rules of a record held whole because its own rows are different people.
OVERLAY_RULE = "held for review: the record's own rows are different people (an overlay)"
#: Pairs kept as evidence per item (the count of conflicting pairs is always complete).
EVIDENCE_PAIRS = 5

CONFLICT_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("rule", pa.string()),
        ("record_a", pa.string()),
        ("record_b", pa.string()),
        ("match_probability", pa.float64()),
        ("match_weight", pa.float64()),
        ("evidence", pa.string()),
    ]
)


@dataclass(frozen=True)
class _Identity:
    record_id: str
    sex: str | None
    birth_date: dt.date | None
    name: str | None


def item_id(kind: str, subject: str) -> str:
    """A review item's stable id: its kind and a digest of what it is about (a key, a record pair)."""
    return f"{kind}:{hashlib.sha256(subject.encode('utf-8')).hexdigest()[:16]}"


def more_than_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are more than one character substitution, insertion or deletion apart
    (counted in characters, so one mistyped Chinese character is one edit)."""
    if a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) > 1
    if abs(len(a) - len(b)) > 1:
        return True
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return not any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def disagreements(a: _Identity, b: _Identity) -> list[str]:
    """What says that two records sharing a key are two people (empty if they could be one)."""
    found = []
    if a.sex in ("M", "F") and b.sex in ("M", "F") and a.sex != b.sex:
        found.append("sex differs")
    if (
        a.birth_date is not None
        and b.birth_date is not None
        and abs((a.birth_date - b.birth_date).days) > BIRTH_DATE_DAYS
        and more_than_one_edit(a.birth_date.isoformat(), b.birth_date.isoformat())
    ):
        found.append("birth date differs")
    if a.name and b.name and more_than_one_edit(a.name, b.name):
        found.append("name differs")
    return found


def key_conflicts(records: Any, edges: Any) -> pa.Table:
    """The keys that must not link, one review item each (`CONFLICT_SCHEMA`).

    Args:
        records: identity records (``record_id``, ``sex``, ``birth_date``, ``name``, ...).
        edges: record-key edges ``a`` (record), ``b`` (key node), ``rule``.
    """
    pairs = edges.select("a", "b").distinct()
    sizes = pairs.group_by("b").aggregate(records=pairs.count())
    placeholders = sizes.filter(sizes.records > PLACEHOLDER_RECORDS).order_by("b").to_pyarrow().to_pylist()
    ids = records.select("record_id", "sex", "birth_date", "name")
    small = pairs.join(sizes.filter(sizes.records <= PLACEHOLDER_RECORDS), "b")
    joined = small.join(ids, small.a == ids.record_id)
    varied = joined.group_by("b").aggregate(
        sexes=joined.sex.nunique(), births=joined.birth_date.nunique(), names=joined.name.nunique()
    )
    varied = varied.filter((varied.sexes > 1) | (varied.births > 1) | (varied.names > 1)).select("b")
    candidates = joined.join(varied, "b").select("b", "record_id", "sex", "birth_date", "name")
    rows = candidates.order_by(["b", "record_id"]).to_pyarrow().to_pylist()
    items = [_placeholder_item(row["b"], int(row["records"])) for row in placeholders]
    for key, group in itertools.groupby(rows, key=lambda r: str(r["b"])):
        found = [_Identity(r["record_id"], r["sex"], r["birth_date"], r["name"]) for r in group]
        item = _conflict_item("key", key, f"{_key_kind(key)} shared by records that disagree", found)
        if item is not None:
            items.append(item)
    return pa.Table.from_pylist(items, schema=CONFLICT_SCHEMA)


def record_conflicts(patients: Any) -> pa.Table:
    """The identity records whose own patient rows are different people (overlays), one review item each.

    Args:
        patients: the staged ``patient`` rows (``system``, ``patient_key``, identity fields, lineage).

    Returns:
        Items of `CONFLICT_SCHEMA`, kind ``record_conflict``, ``key`` the record id; ``record_a`` and
        ``record_b`` name the first disagreeing rows as ``file#row``.
    """
    p = patients.filter(patients.patient_key.notnull())
    varied = p.group_by(["system", "patient_key"]).aggregate(
        sexes=p.sex.nunique(), births=p.birth_date.nunique(), names=p.name.nunique()
    )
    varied = varied.filter((varied.sexes > 1) | (varied.births > 1) | (varied.names > 1))
    rows = p.join(varied.select("system", "patient_key"), ["system", "patient_key"])
    rows = rows.select(
        record=rows.system + ":" + rows.patient_key,
        row=rows._source_file + "#" + rows._source_row.cast("string"),
        sex=rows.sex,
        birth_date=rows.birth_date,
        name=rows.name,
    )
    items = []
    for record, group in itertools.groupby(
        rows.order_by(["record", "row"]).to_pyarrow().to_pylist(), key=lambda r: str(r["record"])
    ):
        found = [_Identity(r["row"], r["sex"], r["birth_date"], r["name"]) for r in group]
        item = _conflict_item("record", record, "patient record whose rows disagree", found)
        if item is not None:
            items.append(item)
    return pa.Table.from_pylist(items, schema=CONFLICT_SCHEMA)


def _conflict_item(kind: str, subject: str, what: str, found: list[_Identity]) -> dict[str, Any] | None:
    conflicting = []
    for a, b in itertools.combinations(found, 2):
        why = disagreements(a, b)
        if why:
            conflicting.append((a.record_id, b.record_id, why))
    if not conflicting:
        return None
    reasons = sorted({reason for _, _, why in conflicting for reason in why})
    evidence = {
        "records": len(found),
        "conflicting_pairs": len(conflicting),
        "pairs": [
            {"record_a": a, "record_b": b, "disagree": why} for a, b, why in conflicting[:EVIDENCE_PAIRS]
        ],
    }
    first_a, first_b, _ = conflicting[0]
    return {
        "item_id": item_id(kind, subject),
        "kind": f"{kind}_conflict",
        "key": subject,
        "rule": f"{what}: {', '.join(reasons)}",
        "record_a": first_a,
        "record_b": first_b,
        "match_probability": None,
        "match_weight": None,
        "evidence": json.dumps(evidence, ensure_ascii=False, sort_keys=True),
    }


def _placeholder_item(key: str, records: int) -> dict[str, Any]:
    return {
        "item_id": item_id("key", key),
        "kind": "key_conflict",
        "key": key,
        "rule": f"{_key_kind(key)} carried by {records} records (over {PLACEHOLDER_RECORDS}): a placeholder",
        "record_a": None,
        "record_b": None,
        "match_probability": None,
        "match_weight": None,
        "evidence": json.dumps({"records": records}, sort_keys=True),
    }


def _key_kind(key: str) -> str:
    prefix = key.split(":", 1)[0]
    return {
        "rid": "resident ID",
        "ino": "inpatient number",
        "visit": "visit serial",
        "acc": "accession number",
    }.get(prefix, prefix)


def without_held(con: Any, edges: Any, keys: list[str], records: Any | None) -> Any:
    """The edges minus those through held key nodes and those of held (overlaid) ``records``
    (a `held_records_table`, or None)."""
    if keys:
        held = small_table(con, "link_held_keys", pa.table({"held_key": pa.array(keys, pa.string())}))
        edges = edges.anti_join(held, edges.b == held.held_key)
    if records is not None:
        edges = edges.anti_join(records, edges.a == records.held_record)
    return edges


def held_records_table(con: Any, records: list[str]) -> Any | None:
    """The held records as a small table (``held_record``), or None when there are none."""
    if not records:
        return None
    return small_table(con, "link_held_records", pa.table({"held_record": pa.array(records, pa.string())}))
