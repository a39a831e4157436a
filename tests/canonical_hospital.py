"""Tiny hand-made canonical workspaces (staged tables, site.json, link output) for the cdm builders' tests.

Rows name only the columns a test cares about; every other model column is null, and the lineage columns
are filled in (file ``<system>/<table>.csv``, row = position).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medspace.cdm._hospital import model_schemas
from medspace.core import record_lineage, stage_lineage

EVENTS = pa.schema(
    [
        ("table", pa.string()),
        ("system", pa.string()),
        ("record_key", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("person_id", pa.string()),
        ("visit_id", pa.string()),
        ("status", pa.string()),
        ("parent_missing", pa.bool_()),
        ("reason", pa.string()),
    ]
)
PERSON_RECORDS = pa.schema(
    [
        ("record_id", pa.string()),
        ("system", pa.string()),
        ("patient_key", pa.string()),
        ("person_id", pa.string()),
        ("rules", pa.string()),
        ("match_probability", pa.float64()),
        ("explanation", pa.string()),
    ]
)
VISITS = pa.schema(
    [
        ("visit_id", pa.string()),
        ("person_id", pa.string()),
        ("visit_type", pa.string()),
        ("status", pa.string()),
        ("start", pa.timestamp("us")),
        ("end", pa.timestamp("us")),
        ("start_precision", pa.string()),
        ("department_code", pa.string()),
        ("department_name", pa.string()),
        ("discharge_department_code", pa.string()),
        ("discharge_mode", pa.string()),
        ("admission_route", pa.string()),
        ("admission_category", pa.string()),
        ("discharge_destination", pa.string()),
        ("died_in_hospital", pa.bool_()),
        ("day_surgery", pa.bool_()),
        ("visit_serial", pa.string()),
        ("inpatient_no", pa.string()),
        ("admission_count", pa.int64()),
        ("parent_visit_id", pa.string()),
        ("systems", pa.string()),
    ]
)


class CanonicalWorkspace:
    """Collects staged rows and link output, then writes them as a workspace the cdm stage reads."""

    def __init__(self, site: str = "tiny", precedence: tuple[str, ...] = ("emr", "his")) -> None:
        self.site = site
        self.precedence = precedence
        self.staged: dict[str, list[dict[str, Any]]] = {t: [] for t in model_schemas()}
        self.events: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.visits: list[dict[str, Any]] = []
        self.code_systems: dict[str, dict[str, str]] = {
            "icd10_gb_clinical_2": {"description": "ICD-10 clinical 2.0"},
            "icd9cm3_gb_clinical_3": {"description": "ICD-9-CM-3 clinical 3.0"},
            "lis_item": {"description": "lab items"},
        }

    def row(
        self,
        table: str,
        system: str,
        key: str,
        *,
        person: str | None = None,
        visit: str | None = None,
        status: str = "linked",
        **values: Any,
    ) -> None:
        """One staged row of ``table`` and its link event (no event when ``status`` is None)."""
        rows = self.staged[table]
        file = f"{system}/{table}.csv"
        rows.append(
            {
                "record_key": key,
                **values,
                "system": system,
                "_source_table": table,
                "_source_file": file,
                "_source_row": len(rows) + 1,
            }
        )
        if status is not None:
            self.events.append(
                {
                    "table": table,
                    "system": system,
                    "record_key": key,
                    "source_file": file,
                    "source_row": len(rows),
                    "person_id": person,
                    "visit_id": visit,
                    "status": status,
                    "parent_missing": person is None,
                    "reason": None,
                }
            )

    def patient(self, system: str, key: str, person: str | None, **values: Any) -> None:
        self.row("patient", system, key, person=person, patient_key=key, **values)
        if person is not None:
            self.records.append(
                {"record_id": f"{system}:{key}", "system": system, "patient_key": key, "person_id": person}
            )

    def visit(
        self, visit_id: str, person: str, kind: str, start: datetime, end: datetime | None, **v: Any
    ) -> None:
        self.visits.append(
            {"visit_id": visit_id, "person_id": person, "visit_type": kind, "start": start, "end": end, **v}
        )

    def write(self, root: Path) -> Path:
        staging, link = root / "staging", root / "link"
        staging.mkdir(parents=True, exist_ok=True)
        link.mkdir(parents=True, exist_ok=True)
        for table, schema in model_schemas().items():
            pq.write_table(
                pa.Table.from_pylist(self.staged[table], schema=schema), staging / f"{table}.parquet"
            )
        site = {
            "site": self.site,
            "model": 1,
            "patient_index": self.precedence[-1],
            "precedence": list(self.precedence),
            "identifiers": {"inpatient_no": "per_patient"},
            "code_systems": self.code_systems,
            "systems": {},
        }
        (staging / "site.json").write_text(json.dumps(site), encoding="utf-8")
        (staging / "manifest.json").write_text("{}", encoding="utf-8")
        record_lineage(staging, stage_lineage(root, "staging"))
        pq.write_table(pa.Table.from_pylist(self.events, schema=EVENTS), link / "events.parquet")
        pq.write_table(
            pa.Table.from_pylist(self.records, schema=PERSON_RECORDS), link / "person_records.parquet"
        )
        pq.write_table(pa.Table.from_pylist(self.visits, schema=VISITS), link / "visits.parquet")
        (link / "manifest.json").write_text("{}", encoding="utf-8")
        record_lineage(link, stage_lineage(root, "link", inputs=("staging",)))
        return root


def relineage(root: Path) -> None:
    """Record fresh lineage for staging and link after a test edited their files by hand (a stage refuses
    an input whose content changed behind its lineage)."""
    record_lineage(root / "staging", stage_lineage(root, "staging"))
    if (root / "link" / "manifest.json").exists():
        record_lineage(root / "link", stage_lineage(root, "link", inputs=("staging",)))


def day(y: int, m: int, d: int) -> date:
    return date(y, m, d)


def at(y: int, m: int, d: int, hh: int = 8, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm)
