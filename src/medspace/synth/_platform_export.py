"""The regional health platform's export (区域全民健康信息平台): FHIR R4 resources in the FHIR Bulk Data
NDJSON layout, one file per resource type (``Patient.ndjson``, ``Encounter.ndjson``, ``Condition.ndjson``,
``Procedure.ndjson``, ``Observation.ndjson``, ``MedicationRequest.ndjson``), one resource per line.

The platform holds part of the hospital's local residents, under its own patient and resource ids; the
resident ID is an identifier on some Patients only, so linking them to the HIS needs name and birth date for
the rest. It keeps the hospital's visit number as an Encounter identifier, as uploads from a hospital do.
It receives only finished encounters (refunded and cancelled registrations never reach it), a few uploads
are lost, and of the lab it keeps the chronic-disease indicators only. Times carry China Standard Time.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ._chunk import ChunkState
from ._encounters import STATUS_DONE, VISIT_CHECKUP, VISIT_EMERGENCY
from ._exports import ChunkEvents
from ._identity import patient_numbers
from ._integrated_his import DIAGNOSES, MEDICATION_ORDERS, PROCEDURES, VISITS, HisRecords

PATIENT = "platform/Patient.ndjson"
ENCOUNTER = "platform/Encounter.ndjson"
CONDITION = "platform/Condition.ndjson"
PROCEDURE = "platform/Procedure.ndjson"
OBSERVATION = "platform/Observation.ndjson"
MEDICATION_REQUEST = "platform/MedicationRequest.ndjson"

# Identifier and code systems. HL7's own URIs where a standard exists; the platform's URIs (an example
# domain: the data are synthetic) for its ids and the Chinese national editions, which have no FHIR URI.
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PLATFORM = "https://health-platform.example.cn/fhir"
PLATFORM_PATIENT_ID = f"{PLATFORM}/sid/patient-id"
RESIDENT_ID = f"{PLATFORM}/sid/cn-resident-id"
HOSPITAL_VISIT_NO = f"{PLATFORM}/sid/hospital-visit-no"
ENCOUNTER_TYPE = f"{PLATFORM}/CodeSystem/encounter-type"
DISCHARGE_MODE = f"{PLATFORM}/CodeSystem/front-sheet-discharge-mode"
ICD10_CLINICAL = f"{PLATFORM}/CodeSystem/icd10-gb-clinical-2"
ICD9CM3_CLINICAL = f"{PLATFORM}/CodeSystem/icd9cm3-gb-clinical-3"
LAB_ITEM = f"{PLATFORM}/CodeSystem/hospital-lab-item"
NHSA_DRUG = f"{PLATFORM}/CodeSystem/nhsa-drug"

CLASS = {
    "AMB": "ambulatory",
    "EMER": "emergency",
    "IMP": "inpatient encounter",
}
# FHIR discharge-disposition codes for front sheet B34C modes (1 routine, 2 transfer to a hospital,
# 3 to a community health centre, 4 against advice, 5 death, 9 other).
DISPOSITION = {"1": "home", "2": "other-hcf", "3": "other-hcf", "4": "aadvice", "5": "exp", "9": "oth"}
# LOINC codes (loinc.org) of the indicators the platform keeps, in the units the hospital lab reports.
UPLOADED_TESTS = {
    "GLU": "14771-0",  # Fasting glucose [Moles/volume] in Serum or Plasma
    "HBA1C": "4548-4",  # Hemoglobin A1c/Hemoglobin.total in Blood
    "TC": "14647-2",  # Cholesterol [Moles/volume] in Serum or Plasma
    "TG": "14927-8",  # Triglyceride [Moles/volume] in Serum or Plasma
    "CREA": "14682-9",  # Creatinine [Moles/volume] in Serum or Plasma
    "UA": "14933-6",  # Urate [Moles/volume] in Serum or Plasma
}
# UCUM codes of the units the hospital lab writes.
UCUM_CODE = {"mmol/L": "mmol/L", "%": "%", "umol/L": "umol/L"}
TZ = "+08:00"


def fhir_time(ts: int) -> str:
    """A FHIR dateTime with seconds and the China Standard Time offset."""
    return str(np.datetime64(int(ts), "s")) + TZ


def _ref(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


def _line(resource: dict[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


def write_platform(c: ChunkState, e: ChunkEvents, his: HisRecords) -> None:
    rates = c.config.integrated
    rng = c.rng
    ident = c.identity(correctable=False)  # the platform's FHIR Patients are not compared
    local = c.pop.province == c.cat.hospital.city
    held = np.zeros(len(c.pop), dtype=bool)
    held[his.in_his] = local[his.in_his] & (rng.random(len(his.in_his)) < rates.platform_share)
    v = e.visits

    # Encounters: finished visits and stays of the persons the platform holds, less the lost uploads.
    enc: list[tuple[int, str, str, int, int | None, int]] = []  # person, visit_no, class, start, end, index
    for j in np.nonzero((v.status == STATUS_DONE) & held[v.person])[0]:
        kind = int(v.kind[j])
        cls = "EMER" if kind == VISIT_EMERGENCY else "AMB"
        enc.append((int(v.person[j]), str(v.serial[j]), cls, int(v.start[j]), None, int(j)))
    stay_of = {s.serial: s for s in e.stays}
    for s in e.stays:
        if held[s.person]:
            enc.append((s.person, s.serial, "IMP", s.admit, s.discharge, -1))
    # A finished encounter reaches the platform when it ends (a visit: when it starts), with what it holds.
    c.upload = {x[1]: x[3] if x[4] is None else x[4] for x in enc}
    lost = rng.random(len(enc)) < rates.platform_upload_missing
    c.out.eligible["platform_upload_missing"] += len(enc)
    for k in np.nonzero(lost)[0]:
        person, visit_no = enc[k][0], enc[k][1]
        c.out.defect(
            "platform_upload_missing",
            ENCOUNTER,
            -1,
            "",
            visit_no,
            str(c.pop.person_id[person]),
            "encounter never uploaded to the platform",
            at=c.upload[visit_no],
        )
    enc = [x for x, gone in zip(enc, lost, strict=True) if not gone]
    enc_id = {x[1]: f"EN{c.index:04d}{k + 1:07d}" for k, x in enumerate(enc)}
    pid = patient_numbers("platform", c.global_index)

    persons = np.unique(np.array([x[0] for x in enc], dtype=np.int64))
    first_upload = np.full(len(c.pop), np.iinfo(np.int64).max, dtype=np.int64)
    for x in enc:
        first_upload[x[0]] = min(first_upload[x[0]], c.upload[x[1]])
    _patients(c, ident, persons, pid, first_upload[persons])

    # Conditions first: the Encounter lists its diagnoses with their rank.
    conditions: dict[str, list[tuple[str, int]]] = {}
    cond_lines: list[str] = []
    cond_keys: list[str] = []
    cond_person: list[int] = []
    cond_at: list[int] = []
    dx = c.dx.all
    for row in his.diagnoses:
        if row.visit_no not in enc_id:
            continue
        cid = f"CD{c.index:04d}{len(cond_keys) + 1:07d}"
        d = dx[row.diagnosis]
        conditions.setdefault(row.visit_no, []).append((cid, row.seq))
        cond_lines.append(
            _line(
                {
                    "resourceType": "Condition",
                    "id": cid,
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "verificationStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                "code": "confirmed",
                            }
                        ]
                    },
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                    "code": "encounter-diagnosis",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {"system": ICD10_CLINICAL, "code": d.clinical, "display": d.name},
                            {"system": ICD10, "code": d.icd10},
                        ],
                        "text": d.name,
                    },
                    "subject": _ref("Patient", str(pid[row.person])),
                    "encounter": _ref("Encounter", enc_id[row.visit_no]),
                    "recordedDate": fhir_time(row.at),
                }
            )
        )
        cond_keys.append(cid)
        cond_person.append(row.person)
        cond_at.append(max(row.at, c.upload[row.visit_no]))
        c.out.link("condition->diagnosis", CONDITION, cid, DIAGNOSES, f"{row.visit_no}-{row.seq}")

    enc_lines = []
    for person, visit_no, cls, start, end, j in enc:
        enc_kind = (
            "inpatient"
            if cls == "IMP"
            else {VISIT_EMERGENCY: "emergency", VISIT_CHECKUP: "checkup"}.get(int(v.kind[j]), "outpatient")
        )
        department = stay_of[visit_no].department if cls == "IMP" else int(v.department[j])
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": enc_id[visit_no],
            "identifier": [{"system": HOSPITAL_VISIT_NO, "value": visit_no}],
            "status": "finished",
            "class": {"system": ACT_CODE, "code": cls, "display": CLASS[cls]},
            "type": [{"coding": [{"system": ENCOUNTER_TYPE, "code": enc_kind}]}],
            "subject": _ref("Patient", str(pid[person])),
            "period": {"start": fhir_time(start), **({"end": fhir_time(end)} if end is not None else {})},
            "serviceType": {"text": str(c.dept_name[department])},
            "serviceProvider": {"display": c.cat.hospital.name},
        }
        if visit_no in conditions:
            resource["diagnosis"] = [
                {"condition": _ref("Condition", cid), "rank": seq} for cid, seq in conditions[visit_no]
            ]
        if cls == "IMP":
            s = stay_of[visit_no]
            resource["hospitalization"] = {
                "dischargeDisposition": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                            "code": DISPOSITION[s.discharge_mode],
                        },
                        {"system": DISCHARGE_MODE, "code": s.discharge_mode},
                    ]
                }
            }
        enc_lines.append(_line(resource))
        c.out.link("encounter->visit", ENCOUNTER, enc_id[visit_no], VISITS, visit_no)
    enc_person = np.array([x[0] for x in enc], dtype=np.int64)
    c.out.emit(
        ENCOUNTER,
        {"json": pa.array(enc_lines, pa.string())},
        c.persons(enc_person),
        np.array([enc_id[x[1]] for x in enc], str),
        at=np.array([c.upload[x[1]] for x in enc], np.int64),
    )
    c.out.emit(
        CONDITION,
        {"json": pa.array(cond_lines, pa.string())},
        c.persons(np.array(cond_person, np.int64)),
        np.array(cond_keys, str),
        at=np.array(cond_at, np.int64),
    )

    _procedures(c, e, enc_id, pid)
    _observations(c, e, enc_id, pid)
    _medication_requests(c, his, enc_id, pid)


def _patients(
    c: ChunkState, ident: Any, persons: NDArray[np.int64], pid: NDArray[np.str_], at: NDArray[np.int64]
) -> None:
    rates = c.config.integrated
    no_id = c.rng.random(len(persons)) < rates.platform_resident_id_missing
    c.out.eligible["platform_resident_id_missing"] += len(persons)
    surnames = set(c.pools.surnames.tolist())
    lines = []
    for k, p in enumerate(persons.tolist()):
        name = str(ident.name[p])
        family = name[:2] if len(name) > 2 and name[:2] in surnames else name[0]
        identifier: list[dict[str, Any]] = [
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}]},
                "system": PLATFORM_PATIENT_ID,
                "value": str(pid[p]),
            }
        ]
        if not no_id[k]:
            identifier.append(
                {
                    "use": "official",
                    "type": {
                        "coding": [
                            {
                                "system": V2_0203,
                                "code": "NI",
                                "display": "National unique individual identifier",
                            }
                        ]
                    },
                    "system": RESIDENT_ID,
                    "value": str(ident.resident_id[p]),
                }
            )
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": str(pid[p]),
            "identifier": identifier,
            "name": [{"use": "official", "text": name, "family": family, "given": [name[len(family) :]]}],
            "gender": "male" if c.pop.sex[p] == "M" else "female",
            "birthDate": str(np.datetime64(int(ident.birth_day[p]), "D")),
            "address": [{"use": "home", "text": str(ident.address[p])}],
        }
        if ident.phone[p]:
            resource["telecom"] = [{"system": "phone", "value": str(ident.phone[p]), "use": "mobile"}]
        lines.append(_line(resource))
    c.out.emit(
        PATIENT,
        {"json": pa.array(lines, pa.string())},
        c.persons(persons),
        pid[persons],
        at=at,
        defects=[
            *c.identity_defects(
                ident,
                persons,
                {
                    "name_typo": "name",
                    "birth_date_typo": "birthDate",
                    "resident_id_typo": "identifier",
                    "phone_missing": "telecom",
                    "address_variant": "address",
                },
            ),
            ("platform_resident_id_missing", "identifier", np.nonzero(no_id)[0], "no resident-ID identifier"),
        ],
    )


def _procedures(c: ChunkState, e: ChunkEvents, enc_id: dict[str, str], pid: NDArray[np.str_]) -> None:
    lines: list[str] = []
    keys: list[str] = []
    person: list[int] = []
    at: list[int] = []
    for s in e.stays:
        if s.serial not in enc_id:
            continue
        for seq, op in enumerate(s.operations, start=1):
            rid = f"PR{c.index:04d}{len(keys) + 1:07d}"
            proc = op.procedure
            lines.append(
                _line(
                    {
                        "resourceType": "Procedure",
                        "id": rid,
                        "status": "completed",
                        "code": {
                            "coding": [
                                {"system": ICD9CM3_CLINICAL, "code": proc.clinical, "display": proc.name},
                                # the ICD-9-CM volume 3 code the national edition extends (36.0700 -> 36.07)
                                {"system": ICD9CM, "code": proc.clinical.split("x")[0][:5]},
                            ],
                            "text": proc.name,
                        },
                        "subject": _ref("Patient", str(pid[s.person])),
                        "encounter": _ref("Encounter", enc_id[s.serial]),
                        "performedPeriod": {"start": fhir_time(op.start), "end": fhir_time(op.end)},
                        "performer": [{"actor": {"display": op.surgeon}}],
                    }
                )
            )
            keys.append(rid)
            person.append(s.person)
            at.append(max(op.end, c.upload[s.serial]))
            c.out.link("procedure->procedure", PROCEDURE, rid, PROCEDURES, f"{s.serial}-{seq}")
    c.out.emit(
        PROCEDURE,
        {"json": pa.array(lines, pa.string())},
        c.persons(np.array(person, np.int64)),
        np.array(keys, str),
        at=np.array(at, np.int64),
    )


def _observations(c: ChunkState, e: ChunkEvents, enc_id: dict[str, str], pid: NDArray[np.str_]) -> None:
    lab = e.lab
    tests = c.cat.lab_tests
    req = lab.tube_request[lab.item_tube]
    lines: list[str] = []
    keys: list[str] = []
    person: list[int] = []
    at: list[int] = []
    for i in range(len(lab.item_test)):
        t = tests[int(lab.item_test[i])]
        r = int(req[i])
        visit_no = str(lab.req_visit[r])
        if t.code not in UPLOADED_TESTS or visit_no not in enc_id:
            continue
        rid = f"OB{c.index:04d}{len(keys) + 1:08d}"
        value = float(lab.item_value[i])
        unit = {"unit": t.unit, "system": UCUM, "code": UCUM_CODE[t.unit]}
        low, high = t.central_range
        reference: dict[str, Any] = {"high": {"value": high, **unit}}
        if low is not None:
            reference = {"low": {"value": low, **unit}, **reference}
        interpretation = (
            "H" if high is not None and value > high else "L" if low is not None and value < low else "N"
        )
        p = int(lab.req_person[r])
        lines.append(
            _line(
                {
                    "resourceType": "Observation",
                    "id": rid,
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "laboratory",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {"system": LOINC, "code": UPLOADED_TESTS[t.code]},
                            {"system": LAB_ITEM, "code": t.code, "display": t.name},
                        ],
                        "text": t.name,
                    },
                    "subject": _ref("Patient", str(pid[p])),
                    "encounter": _ref("Encounter", enc_id[visit_no]),
                    "effectiveDateTime": fhir_time(int(lab.tube_collect[lab.item_tube[i]])),
                    "issued": fhir_time(int(lab.item_report[i])),
                    "valueQuantity": {"value": value, **unit},
                    "interpretation": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                    "code": interpretation,
                                }
                            ]
                        }
                    ],
                    "referenceRange": [reference],
                }
            )
        )
        keys.append(rid)
        person.append(p)
        at.append(max(int(lab.item_report[i]), c.upload[visit_no]))
    c.out.emit(
        OBSERVATION,
        {"json": pa.array(lines, pa.string())},
        c.persons(np.array(person, np.int64)),
        np.array(keys, str),
        at=np.array(at, np.int64),
    )


def _medication_requests(
    c: ChunkState, his: HisRecords, enc_id: dict[str, str], pid: NDArray[np.str_]
) -> None:
    drugs = c.cat.drugs
    lines: list[str] = []
    keys: list[str] = []
    person: list[int] = []
    at: list[int] = []
    for m in his.medications:
        if m.visit_no not in enc_id:
            continue
        rid = f"MR{c.index:04d}{len(keys) + 1:07d}"
        d = drugs[m.drug]
        lines.append(
            _line(
                {
                    "resourceType": "MedicationRequest",
                    "id": rid,
                    "status": "completed",
                    "intent": "order",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                    "code": "inpatient" if m.setting == "IP" else "outpatient",
                                }
                            ]
                        }
                    ],
                    "medicationCodeableConcept": {
                        "coding": [{"system": NHSA_DRUG, "code": d.code, "display": d.name}],
                        "text": f"{d.name} {d.spec}",
                    },
                    "subject": _ref("Patient", str(pid[m.person])),
                    "encounter": _ref("Encounter", enc_id[m.visit_no]),
                    "authoredOn": fhir_time(m.start),
                    "dosageInstruction": [{"text": d.spec}],
                    "dispenseRequest": {
                        "validityPeriod": {"start": fhir_time(m.start), "end": fhir_time(m.stop)},
                        "quantity": {"value": m.quantity},
                    },
                }
            )
        )
        keys.append(rid)
        person.append(m.person)
        at.append(max(m.start, c.upload[m.visit_no]))
        c.out.link(
            "medication_request->medication_order", MEDICATION_REQUEST, rid, MEDICATION_ORDERS, m.order_no
        )
    c.out.emit(
        MEDICATION_REQUEST,
        {"json": pa.array(lines, pa.string())},
        c.persons(np.array(person, np.int64)),
        np.array(keys, str),
        at=np.array(at, np.int64),
    )
