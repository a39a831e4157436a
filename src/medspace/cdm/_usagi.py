"""Reading a site's own code mappings, reviewed in OHDSI's Usagi, as SOURCE_TO_CONCEPT_MAP rows.

Usagi writes two CSV shapes: its mapping export (one row per source code and target concept, with the review's
``mappingStatus``; the columns of Usagi's ``WriteCodeMappingsToFile``) and its SOURCE_TO_CONCEPT_MAP export
(the CDM table's columns, approved mappings only, valid 1970-01-01 to 2099-12-31). Both become
SOURCE_TO_CONCEPT_MAP rows; a row is kept, excluded by a documented rule, or quarantined with its row and
field. Whether a target is a valid standard concept is checked against the loaded vocabulary in
``_vocabulary.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medspace.core import InputError

#: The dates Usagi's SOURCE_TO_CONCEPT_MAP export writes for every mapping (ExportSourceToConceptMapDialog).
VALID_FROM = dt.date(1970, 1, 1)
VALID_TO = dt.date(2099, 12, 31)

# Usagi's mapping export (WriteCodeMappingsToFile: sourceCode, sourceName, sourceFrequency,
# sourceAutoAssignedConceptIds, ADD_INFO:*, matchScore, mappingStatus, statusSetBy, statusSetOn, conceptId,
# mappingType, comment, createdBy, createdOn, equivalence, assignedReviewer) needs these; its
# SOURCE_TO_CONCEPT_MAP export has the CDM table's own columns.
_USAGI_COLUMNS = ("sourceCode", "mappingStatus", "conceptId")
_STCM_COLUMNS = ("source_code", "source_vocabulary_id", "target_concept_id")

#: The two shapes of a site mapping file medspace reads.
OverlayShape = Literal["usagi", "source_to_concept_map"]


@dataclass
class OverlayRows:
    shape: OverlayShape
    rows: list[dict[str, object]]  # SOURCE_TO_CONCEPT_MAP rows, each with its data row under "_row"
    quarantine: list[tuple[int, str, str, str, dict[str, str]]]  # row, field, rule, reason, raw
    excluded: Counter[str]
    read: int


def _parse_int(value: str) -> int | None:
    text = value.strip()
    if text.endswith(".0"):  # spreadsheet round trips write 4329847.0
        text = text[:-2]
    return int(text) if text.lstrip("+-").isdigit() else None


def _parse_date(value: str) -> dt.date | None:
    text = value.strip()
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, form).date()
        except ValueError:
            continue
    return None


def read_overlay(path: Path, vocabulary_id: str | None) -> OverlayRows:
    """Read a Usagi export or a SOURCE_TO_CONCEPT_MAP CSV into SOURCE_TO_CONCEPT_MAP rows.

    Site mapping files are small (thousands of codes) and written by Usagi or a spreadsheet, so Python's csv
    module reads them: it handles quoting as those writers do and gives exact row numbers.
    """
    shown = path.name
    if not path.is_file():
        raise InputError("the mapping file does not exist; give Usagi's CSV export", file=str(path))
    with path.open(encoding="utf-8-sig", newline="") as f:
        text = f.read()
    first = text.split("\n", 1)[0]
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if "\t" in first else ",")
    header = [h.strip() for h in reader.fieldnames or []]
    lower = {h.lower() for h in header}
    if all(c in lower for c in _STCM_COLUMNS):
        shape: OverlayShape = "source_to_concept_map"
    elif all(c in header for c in _USAGI_COLUMNS):
        shape = "usagi"
        if not vocabulary_id:
            raise InputError(
                "a Usagi mapping export does not name the codes' vocabulary; give its vocabulary_id "
                "(--usagi-vocabulary, as Usagi's own SOURCE_TO_CONCEPT_MAP export asks)",
                file=shown,
            )
    else:
        raise InputError(
            "not a mapping file medspace knows: expected Usagi's export (columns "
            f"{', '.join(_USAGI_COLUMNS)}, ...) or a SOURCE_TO_CONCEPT_MAP CSV (columns "
            f"{', '.join(_STCM_COLUMNS)}, ...)",
            file=shown,
        )
    result = OverlayRows(shape=shape, rows=[], quarantine=[], excluded=Counter(), read=0)
    for number, raw in enumerate(reader, start=1):
        result.read += 1
        row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in raw.items()}
        if None in raw:  # more values than header columns
            result.quarantine.append((number, "", "shape", "the row has more values than the header", row))
            continue
        parsed = _usagi_row(row, vocabulary_id) if shape == "usagi" else _stcm_row(row, vocabulary_id)
        if isinstance(parsed, str):
            result.excluded[parsed] += 1
        elif isinstance(parsed, tuple):
            field, rule, reason = parsed
            result.quarantine.append((number, field, rule, reason, row))
        else:
            parsed["_row"] = number
            result.rows.append(parsed)
    return result


def _usagi_row(
    row: dict[str, str], vocabulary_id: str | None
) -> dict[str, object] | str | tuple[str, str, str]:
    """One Usagi export row as a SOURCE_TO_CONCEPT_MAP row, an exclusion rule, or (field, rule, reason)."""
    if row.get("mappingStatus", "").strip().upper() != "APPROVED":
        return "not_approved"
    # Usagi writes one row per target; MAPS_TO_VALUE, _UNIT and _OPERATOR rows map values, not the code.
    if row.get("mappingType", "").strip().upper() not in ("", "MAPS_TO"):
        return "not_maps_to"
    code = row.get("sourceCode", "").strip()
    if not code:
        return ("sourceCode", "required", "sourceCode is empty")
    target = _parse_int(row.get("conceptId", ""))
    if target is None:
        return ("conceptId", "type", "conceptId is not a concept id")
    return {
        "source_code": code,
        "source_concept_id": 0,
        "source_vocabulary_id": vocabulary_id,
        "source_code_description": row.get("sourceName") or None,
        "target_concept_id": target,
        "valid_start_date": VALID_FROM,
        "valid_end_date": VALID_TO,
        "invalid_reason": None,
    }


def _stcm_row(
    row: dict[str, str], vocabulary_id: str | None
) -> dict[str, object] | str | tuple[str, str, str]:
    values = {k.lower(): v.strip() for k, v in row.items()}
    if values.get("invalid_reason"):
        return "invalid"
    code = values.get("source_code", "")
    if not code:
        return ("source_code", "required", "source_code is empty")
    vocabulary = values.get("source_vocabulary_id") or vocabulary_id
    if not vocabulary:
        return ("source_vocabulary_id", "required", "source_vocabulary_id is empty")
    target = _parse_int(values.get("target_concept_id", ""))
    if target is None:
        return ("target_concept_id", "type", "target_concept_id is not a concept id")
    source_concept = _parse_int(values.get("source_concept_id") or "0")
    if source_concept is None:
        return ("source_concept_id", "type", "source_concept_id is not a concept id")
    dates: dict[str, dt.date] = {}
    for name, default in (("valid_start_date", VALID_FROM), ("valid_end_date", VALID_TO)):
        text = values.get(name, "")
        parsed = _parse_date(text) if text else default
        if parsed is None:
            return (name, "type", f"{name} is not a date (YYYY-MM-DD or YYYYMMDD)")
        dates[name] = parsed
    return {
        "source_code": code,
        "source_concept_id": source_concept,
        "source_vocabulary_id": vocabulary,
        "source_code_description": values.get("source_code_description") or None,
        "target_concept_id": target,
        **dates,
        "invalid_reason": None,
    }
