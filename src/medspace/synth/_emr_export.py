"""EMR exports: inpatient front sheets (病案首页) with the national upload field codes, and clinical notes as
FHIR-like DocumentReference resources (NDJSON), with the identifiers the notes contain recorded as spans.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from ._chunk import EMR_FRONT_SHEETS, EMR_NOTES, HIS_ADMISSIONS, TEMPLATE_B_DEPARTMENTS, ChunkState, iso
from ._conflicts import reused_owners
from ._documents import Note
from ._encounters import (
    Stay,
)
from ._identity import patient_numbers


def write_emr(c: ChunkState, stays: list[Stay], notes: list[Note]) -> None:
    rates = c.config.defects
    rng = c.rng
    ident = c.identity()
    dx = c.dx.all
    template_b = {c.dx.department_index[k] for k in TEMPLATE_B_DEPARTMENTS}
    rows: list[dict[str, object]] = []
    legacy_rows: list[int] = []
    drift_rows: list[int] = []
    for k, s in enumerate(stays):
        p = s.person
        main = dx[s.diagnosis]
        code = main.clinical
        c.out.eligible["mixed_code_edition"] += 1
        if rng.random() < rates.mixed_code_edition:
            code = main.legacy
            legacy_rows.append(k)
        mode = s.discharge_mode
        if mode == "9" and s.discharge_department in template_b:
            c.out.eligible["value_set_drift"] += 1
            if rng.random() < rates.value_set_drift:
                mode = "6"
                drift_rows.append(k)
        row: dict[str, object] = {
            "A48": str(c.inpatient_no[p]),
            "A49": s.times,
            "A11": str(ident.name[p]),
            "A12C": "1" if c.pop.sex[p] == "M" else "2",
            "A13": str(np.datetime64(int(ident.birth_day[p]), "D")),
            "A20": str(ident.resident_id[p]),
            "A26": str(ident.address[p]),
            "A47": str(ident.phone[p]),
            "A46C": s.payment,
            "B11C": s.route,
            "B12": iso(s.admit),
            "B13C": str(c.dept_code[s.department]),
            "B15": iso(s.discharge),
            "B16C": str(c.dept_code[s.discharge_department]),
            "B20": s.bed_days,
            "B34C": mode,
            "B38": "1" if s.day_surgery else "2",
            "C03C": code,
            "C04N": main.name,
            "C09C": main.pathology or "",
            "C12C": main.external_cause or "",
        }
        for i in range(3):
            other = dx[s.other_diagnoses[i]] if i < len(s.other_diagnoses) else None
            row[f"C06x{i + 1:02d}C"] = other.clinical if other else ""
            row[f"C07x{i + 1:02d}N"] = other.name if other else ""
        for i in range(5):
            op = s.operations[i] if i < len(s.operations) else None
            row[f"C14x{i + 1:02d}C"] = op.procedure.clinical if op else ""
            row[f"C15x{i + 1:02d}N"] = op.procedure.name if op else ""
            row[f"C16x{i + 1:02d}"] = iso(op.start) if op else ""
            row[f"C17x{i + 1:02d}"] = str(op.procedure.grade) if op else ""
            row[f"C18x{i + 1:02d}"] = op.surgeon if op else ""
        row["D01"] = s.total_cost
        row["D09"] = round(s.total_cost * (1.0 if s.payment == "7" else 0.3), 2)
        for i, kind in enumerate(("床位费", "护理费", "西药费", "检验费", "检查费", "手术费", "材料费")):
            row[f"D{11 + i}"] = s.costs.get(kind, 0.0)
        rows.append(row)
    person = np.array([s.person for s in stays], dtype=np.int64)
    # A few front sheets may carry another patient's inpatient number (a key conflict, off by default).
    owners = reused_owners(c, person, np.unique(person))
    shown_no = c.inpatient_no[person].copy()
    for k, owner in owners.items():
        shown_no[k] = c.inpatient_no[owner]
        rows[k]["A48"] = str(shown_no[k])
    keys = np.array([f"{no}-{s.times}" for no, s in zip(shown_no, stays, strict=True)], dtype=str)
    for k, owner in owners.items():
        c.out.key_conflicts.append(
            (
                "reused_inpatient_no",
                "inpatient_no",
                str(shown_no[k]),
                str(c.pop.person_id[person[k]]),
                str(c.pop.person_id[owner]),
                EMR_FRONT_SHEETS,
                str(keys[k]),
                tuple((HIS_ADMISSIONS, s.serial) for s in stays if s.person == owner),
            )
        )
    columns = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    if rows:
        for col in ("A49", "B20"):
            columns[col] = pa.array(columns[col], pa.int64())
        c.out.emit(
            EMR_FRONT_SHEETS,
            columns,
            c.persons(person),
            keys,
            duplicate_rate=rates.duplicate_record,
            rng=rng,
            at=np.array([s.discharge for s in stays], dtype=np.int64),
            later=None
            if ident.later is None
            else {
                "A11": ident.later.name[person].astype(object).astype(str),
                "A13": [str(np.datetime64(int(b), "D")) for b in ident.later.birth_day[person]],
                "A20": ident.later.resident_id[person].astype(object).astype(str),
            },
            patient_key="A48",
            defects=[
                *c.identity_defects(
                    ident,
                    person,
                    {
                        "name_typo": "A11",
                        "birth_date_typo": "A13",
                        "resident_id_typo": "A20",
                        "phone_missing": "A47",
                        "address_variant": "A26",
                    },
                ),
                (
                    "mixed_code_edition",
                    "C03C",
                    np.array(legacy_rows, dtype=np.int64),
                    "main diagnosis coded in a legacy edition",
                ),
                (
                    "value_set_drift",
                    "B34C",
                    np.array(drift_rows, dtype=np.int64),
                    "template B codes discharge mode 'other' as 6, not 9",
                ),
                *(
                    [
                        (
                            "reused_inpatient_no",
                            "A48",
                            np.array(sorted(owners), dtype=np.int64),
                            "another patient's inpatient number",
                        )
                    ]
                    if owners
                    else []
                ),
            ],
        )
        for k, s in enumerate(stays):
            c.out.link("front_sheet->stay", EMR_FRONT_SHEETS, str(keys[k]), HIS_ADMISSIONS, s.serial)

    emr_no = patient_numbers("emr", c.global_index)
    lines = []
    note_keys = []
    phi: dict[str, list[object]] = {"note_id": [], "type": [], "start": [], "end": [], "text": []}
    for k, note in enumerate(notes):
        note_id = f"DOC{c.index:04d}{k:07d}"
        note_keys.append(note_id)
        lines.append(
            json.dumps(
                {
                    "resourceType": "DocumentReference",
                    "id": note_id,
                    "status": "current",
                    "type": {
                        "coding": [
                            {"system": "urn:medspace:emr-note-type", "code": note.kind, "display": note.title}
                        ]
                    },
                    "subject": {
                        "identifier": {
                            "system": "urn:medspace:emr-patient",
                            "value": str(emr_no[note.person]),
                        }
                    },
                    "context": {
                        "encounter": [
                            {
                                "identifier": {
                                    "system": "urn:medspace:his-inpatient-number",
                                    "value": f"{c.inpatient_no[note.person]}-{c.stay_times[note.stay]}",
                                }
                            }
                        ]
                    },
                    "date": iso(note.written).replace(" ", "T") + "+08:00",
                    "author": [{"display": note.author}],
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/plain; charset=utf-8",
                                "title": note.title,
                                "text": note.text,
                            }
                        }
                    ],
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
        )
        for kind, start, end in note.phi:
            phi["note_id"].append(note_id)
            phi["type"].append(kind)
            phi["start"].append(start)
            phi["end"].append(end)
            phi["text"].append(note.text[start:end])
        c.out.link("note->stay", EMR_NOTES, note_id, HIS_ADMISSIONS, note.stay)
    npers = np.array([n.person for n in notes], dtype=np.int64)
    c.out.emit(
        EMR_NOTES,
        {"json": lines},
        c.persons(npers),
        np.array(note_keys, dtype=str),
        at=np.array([n.written for n in notes], dtype=np.int64),
    )
    c.out.note_phi = pa.table(
        {k: pa.array(v, pa.int64() if k in ("start", "end") else pa.string()) for k, v in phi.items()}
    )
