"""Source codes to OMOP concepts: the one place where a (code system, code) pair becomes a concept.

A staged row carries its code and the code system the site declared for it (``code_system``). `code_concepts`
gives, for one CDM domain, the table of every (code system, code) this build can map, with its standard
``concept_id`` and its ``source_concept_id``; `with_concepts` joins it. A code system no mapping knows, or a
code its mapping lacks, gives concept 0 with the source value kept (OMOP's "no matching concept"), counted by
the quality report, never dropped.

The pairs come from two places. The mapping files of ``data/mappings/`` (``code_systems.csv`` says which
file maps which code system) are medspace's own, curated mappings of the Chinese code editions. An OHDSI
vocabulary (Athena) loaded into the workspace (``medspace vocab load``) maps the staged codes of every code
system whose site declaration names a ``vocabulary_id`` through ``Maps to``, as OHDSI's own ETLs do, with a
hospital's approved Usagi mappings overlaid; a pair both know keeps medspace's curated mapping.
"""

from __future__ import annotations

from typing import Any, Literal

import ibis
import pyarrow as pa

from ._hospital import HospitalData
from ._vocabulary import map_source_codes

Domain = Literal["condition", "procedure", "measurement", "drug"]

_SCHEMA = pa.schema(
    [
        ("cs_system", pa.string()),
        ("cs_code", pa.string()),
        ("concept_id", pa.int64()),
        ("source_concept_id", pa.int64()),
    ]
)
_FILES: dict[Domain, str] = {
    "condition": "diagnosis_codes",
    "procedure": "procedure_codes",
    "measurement": "lab_tests",
    "drug": "drug_codes",  # no curated drug file ships: drugs map through a loaded vocabulary only
}
#: The staged (table, code column, code system column) pairs whose codes each domain maps.
_STAGED_CODES: dict[Domain, tuple[tuple[str, str, str], ...]] = {
    "condition": (("diagnosis", "code", "code_system"), ("death", "cause_code", "cause_code_system")),
    "procedure": (("procedure", "code", "code_system"),),
    "measurement": (
        ("lab_result", "item_code", "code_system"),
        ("lab_result", "standard_code", "standard_code_system"),
    ),
    "drug": (
        ("medication_order", "drug_code", "code_system"),
        ("medication_dispense", "drug_code", "code_system"),
    ),
}


def code_concepts(h: HospitalData, domain: Domain) -> Any:
    """Every (code system, code) of ``domain`` this build maps, with (concept_id, source_concept_id).

    Args:
        h: the hospital data (its mappings and site declarations).
        domain: which CDM domain's codes.

    Returns:
        An Ibis table ``cs_system, cs_code, concept_id, source_concept_id``, unique on its first two columns.
    """
    m = h.mappings
    rows: list[dict[str, Any]] = []
    for cs in m.code_systems.values():
        if cs.mapping != _FILES[domain]:
            continue
        editions = cs.edition_set
        if domain == "condition":
            rows += [
                _row(cs.code_system, d.code, d.condition_concept_id, d.icd10_concept_id)
                for d in m.diagnoses.values()
                if d.edition in editions
            ]
        elif domain == "procedure":
            rows += [
                _row(cs.code_system, p.code, p.procedure_concept_id, p.icd9cm3_concept_id)
                for p in m.procedures.values()
                if p.edition in editions
            ]
        elif domain == "measurement":
            rows += [_row(cs.code_system, t.code, t.measurement_concept_id, 0) for t in m.lab_tests.values()]
    curated = {(r["cs_system"], r["cs_code"]) for r in rows}
    rows += [r for r in _vocabulary_rows(h, domain) if (r["cs_system"], r["cs_code"]) not in curated]
    return h.lookup(f"concepts_{domain}", rows, _SCHEMA)


def _vocabulary_rows(h: HospitalData, domain: Domain) -> list[dict[str, Any]]:
    """(code system, code) pairs of the staged rows mapped through the workspace's loaded vocabulary."""
    if not (h.workspace / "vocab" / "concept.parquet").exists():
        return []
    vocabularies = {n: c.vocabulary_id for n, c in h.site.code_systems.items() if c.vocabulary_id}
    if not vocabularies:
        return []
    parts = []
    for table, code, system in _STAGED_CODES[domain]:
        t = h.staged(table)
        t = t.filter(t[system].isin(sorted(vocabularies)) & t[code].notnull())
        parts.append(t.select(cs_system=t[system], cs_code=t[code]))
    pairs = ibis.union(*parts, distinct=True).to_pyarrow()
    if pairs.num_rows == 0:
        return []
    systems = pairs.column("cs_system").to_pylist()
    codes = pa.table(
        {
            "vocabulary_id": pa.array([vocabularies[s] for s in systems], pa.string()),
            "source_code": pairs.column("cs_code"),
        }
    )
    mapped = map_source_codes(h.workspace, codes).rows
    return [
        _row(system, code, concept or 0, source or 0)
        for system, code, concept, source in zip(
            systems,
            pairs.column("cs_code").to_pylist(),
            mapped.column("concept_id").to_pylist(),
            mapped.column("source_concept_id").to_pylist(),
            strict=True,
        )
    ]


def _row(system: str, code: str, concept: int, source: int) -> dict[str, Any]:
    return {"cs_system": system, "cs_code": code, "concept_id": concept, "source_concept_id": source}


def with_concepts(
    h: HospitalData,
    t: Any,
    code: str,
    code_system: str,
    domain: Domain,
    names: tuple[str, str] = ("concept_id", "source_concept_id"),
) -> Any:
    """``t`` with the (concept_id, source_concept_id) of its (``code_system``, ``code``) columns, 0 when the
    pair is not mapped, in columns named ``names``."""
    c = code_concepts(h, domain).rename({names[0]: "concept_id", names[1]: "source_concept_id"})
    j = t.left_join(c, [t[code_system] == c.cs_system, t[code] == c.cs_code]).drop("cs_system", "cs_code")
    return j.mutate(**{n: j[n].fill_null(0) for n in names})


def lab_test_code(h: HospitalData, t: Any) -> Any:
    """The lab test code of ``lab_tests.csv`` a result is of (its item code, when its code system is mapped
    by that file), else null: the key for unit conversion."""
    systems = sorted(cs.code_system for cs in h.mappings.code_systems.values() if cs.mapping == "lab_tests")
    if not systems:
        return ibis.null("string")
    return ibis.cases((t.code_system.isin(systems), t.item_code), else_=ibis.null("string"))
