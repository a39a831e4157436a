"""Parents lost to quarantine: the keys of quarantined rows, by the kind of record they would have been.

Staging quarantines a raw row that breaks a rule (an impossible birth date, a missing required field) and
keeps its raw key. A row of another table that names that key (a visit of a quarantined patient, an order's
result) has lost its parent to quarantine, not to the export: link reports it as an orphan with that reason,
the quarantined row's file, row and rule. A quarantined row's kind is the canonical table its raw table feeds
(learnt from the staged rows' ``_source_table``), or the canonical table itself for a row a map quarantined.
A key that was staged all the same (the first row of a repeated key) is no lost parent.
"""

from __future__ import annotations

from typing import Any

import ibis

from medspace.core import materialise

from ._staged import StagedTables

# How a reason names the record a key stands for.
KIND_NAMES = {
    "patient": "patient record",
    "encounter": "visit",
    "lab_order": "lab order",
    "specimen": "specimen",
    "imaging_exam": "imaging exam",
    "medication_order": "medication order",
}


def quarantined_parents(st: StagedTables) -> Any | None:
    """Quarantined keys: kind (canonical table), system, key and the reason a child reports; None if none."""
    q = st.quarantine()
    if q is None or "key" not in q.columns:
        return None
    filled = [t for t in st.tables if st.rows(t)]
    q = q.filter(q.key.notnull())
    parts = []
    if filled:
        feeds = ibis.union(
            *(
                st.table(t).select(fsystem="system", raw="_source_table", kind=ibis.literal(t)).distinct()
                for t in filled
            ),
            distinct=True,
        )
        raw = q.join(feeds, [q.system == feeds.fsystem, q.table == feeds.raw])
        parts.append(raw.select("system", "kind", "key", "file", "row", "rule"))
    mapped = q.filter(q.table.isin(list(st.tables)))
    parts.append(mapped.select("system", kind="table", key="key", file="file", row="row", rule="rule"))
    found = ibis.union(*parts, distinct=True)
    staged = _staged_keys(st, [k for k in KIND_NAMES if k in filled])
    if staged is not None:
        found = found.anti_join(
            staged, [found.kind == staged.skind, found.system == staged.ssystem, found.key == staged.skey]
        )
    name = ibis.cases(*((found.kind == k, v) for k, v in KIND_NAMES.items()), else_=found.kind)
    where = found.file + ":" + found.row.cast("string").fill_null("?")
    found = found.mutate(
        q_reason="its " + name + " was quarantined (" + where + ", " + found.rule.fill_null("") + ")"
    )
    found = found.mutate(
        pick=ibis.row_number().over(
            group_by=[found.kind, found.system, found.key], order_by=[found.file, found.row]
        )
    )
    found = found.filter(found.pick == 0).select(
        q_kind="kind", q_system="system", q_key="key", q_reason="q_reason"
    )
    return materialise(st.con, found, "link_quarantined_parents")


def _staged_keys(st: StagedTables, kinds: list[str]) -> Any | None:
    parts = []
    for kind in kinds:
        t = st.table(kind)
        if kind == "patient":
            parts.append(t.select(skind=ibis.literal(kind), ssystem=t.system, skey=t.patient_key))
        if kind == "encounter":
            parts.append(t.select(skind=ibis.literal(kind), ssystem=t.system, skey=t.visit_serial))
        parts.append(t.select(skind=ibis.literal(kind), ssystem=t.system, skey=t.record_key))
    if not parts:
        return None
    keys = ibis.union(*parts, distinct=True)
    return keys.filter(keys.skey.notnull())
