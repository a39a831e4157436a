"""Source codes to OMOP concepts: the one place where a (code system, code) pair becomes a concept.

A staged row carries its code and the code system the site declared for it (``code_system``). `code_concepts`
gives, for one CDM domain, the table of every (code system, code) this build can map, with its standard
``concept_id`` and its ``source_concept_id``; `with_concepts` joins it. A code system no mapping knows, or a
code its mapping lacks, gives concept 0 with the source value kept (OMOP's "no matching concept"), counted by
the quality report, never dropped.

Today the pairs come from the mapping files of ``data/mappings/`` (``code_systems.csv`` says which file maps
which code system). An OHDSI vocabulary (Athena) loaded into the workspace plugs in here: its ``Maps to``
relationships extend the table `code_concepts` returns, for code systems whose site declaration names a
``vocabulary_id``; nothing else in the build changes.
"""

from __future__ import annotations

from typing import Any, Literal

import ibis
import pyarrow as pa

from ._hospital import HospitalData

Domain = Literal["condition", "procedure", "measurement"]

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
        else:
            rows += [_row(cs.code_system, t.code, t.measurement_concept_id, 0) for t in m.lab_tests.values()]
    return h.lookup(f"concepts_{domain}", rows, _SCHEMA)


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
