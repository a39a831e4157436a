"""State shared by the writers of one chunk's exports: the chunk's random stream, patient numbers, which
HIS visits the export lost or had not yet synced, and the output being collected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ._catalogue import Catalogue
from ._config import DefectRates, HospitalConfig
from ._encounters import (
    DAY,
    VISIT_CHECKUP,
    VISIT_EMERGENCY,
    VISIT_OUTPATIENT,
    Diagnoses,
)
from ._identity import SystemIdentity, patient_numbers, system_identity
from ._population import EPOCH, Population, name_pools
from ._sink import ChunkOutput

# Person index and event time in, the HIS patient number in force for the person at that time out.
HisNumber = Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.str_]]

HIS_PATIENTS = "his/patients.csv"
HIS_REGISTRATIONS = "his/outpatient_registrations.csv"
HIS_ADMISSIONS = "his/inpatient_admissions.csv"
HIS_TRANSFERS = "his/transfers.csv"
HIS_ORDERS = "his/orders.csv"
HIS_PRESCRIPTIONS = "his/prescriptions.csv"
HIS_BILLS = "his/bills.csv"
LIS_REQUESTS = "lis/requests.csv"
LIS_SPECIMENS = "lis/specimens.csv"
LIS_RESULTS = "lis/results.csv"
EMR_FRONT_SHEETS = "emr/front_sheets.csv"
EMR_NOTES = "emr/notes.ndjson"
RIS_EXAMS = "ris/exams.csv"
PACS_STUDIES = "pacs/dicom_studies.ndjson"
SURGERY_OPERATIONS = "surgery/operations.csv"
INSURANCE_SETTLEMENTS = "insurance/settlement_{month}.xlsx"
# Departments whose front-sheet template (template B) writes discharge mode "other" as 6 (domain.md §1.3).
TEMPLATE_B_DEPARTMENTS = ("orthopaedics", "neurology")
KIND_TEXT = {VISIT_OUTPATIENT: "1", VISIT_EMERGENCY: "2", VISIT_CHECKUP: "3"}
KIND_NAME = {VISIT_OUTPATIENT: "outpatient", VISIT_EMERGENCY: "emergency", VISIT_CHECKUP: "checkup"}


class ChunkState:
    """State shared by the system writers of one chunk."""

    def __init__(
        self,
        catalogue: Catalogue,
        config: HospitalConfig,
        pop: Population,
        index: int,
        first_person: int,
        doctors: NDArray[np.str_],
    ) -> None:
        self.cat = catalogue
        self.config = config
        self.pop = pop
        self.index = index
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, index]))
        self.global_index = np.arange(first_person, first_person + len(pop), dtype=np.int64)
        self.doctors = doctors
        self.out = ChunkOutput(index=index, patients=len(pop))
        self.dx = Diagnoses(catalogue)
        self.pools = name_pools(tuple(sorted(catalogue.hospital.local_regions)))
        lag = config.defects.sync_lag_days
        # The HIS export's sync cut-off: the full export's, and this export's (earlier for an as-of export).
        self.full_cutoff = ((config.end - EPOCH).days - lag) * DAY
        self.cutoff = ((config.cut - EPOCH).days - lag) * DAY
        # An as-of export holds what happened before this moment (None: the full export).
        self.as_of = None if config.as_of is None else (config.as_of - EPOCH).days * DAY
        self.out.as_of = self.as_of
        self._identities = 0
        self.departments = catalogue.departments
        self.dept_code = np.array([d.code for d in catalogue.departments])
        self.dept_name = np.array([d.name for d in catalogue.departments])
        self.inpatient_no = patient_numbers("inpatient", self.global_index)
        self.lost: set[str] = set()  # HIS visit serials the HIS export lost (orphan parents)
        self.lagged: set[str] = set()  # HIS visit serials after the sync cut-off
        self.visit_file: dict[str, str] = {}
        self.visit_person: dict[str, int] = {}
        self.stay_times: dict[str, int] = {}
        self.upload: dict[str, int] = {}  # visit number -> when the regional platform received it

    def identity(self, correctable: bool = True) -> SystemIdentity:
        """The next system's version of the chunk's identities.

        In an as-of export a few persons (``identity_corrected_later``) carry, in a correctable system, a
        name, birth date or resident ID typo that the later (full) export no longer has: drawn from a stream
        of their own, so the full export's stream, and its bytes, are untouched.
        """
        ident = system_identity(self.pop, self.pools, self.config.defects, self.rng, self.cat.hospital.city)
        self._identities += 1
        if self.as_of is None or not correctable:
            return ident
        rate = self.config.defects.identity_corrected_later
        stream = np.random.default_rng(
            np.random.SeedSequence([self.config.seed, 3, self.index, self._identities])
        )
        typos = DefectRates(
            name_typo=rate, birth_date_typo=rate, resident_id_typo=rate, phone_missing=0, address_variant=0
        )
        earlier = system_identity(self.pop, self.pools, typos, stream, self.cat.hospital.city)
        name = earlier.name_typo & ~ident.name_typo
        birth = earlier.birth_date_typo & ~ident.birth_date_typo
        rid = earlier.resident_id_typo & ~ident.resident_id_typo
        return dataclasses.replace(
            ident,
            name=np.where(name, earlier.name, ident.name),
            birth_day=np.where(birth, earlier.birth_day, ident.birth_day),
            resident_id=np.where(rid, earlier.resident_id, ident.resident_id),
            name_typo=ident.name_typo | name,
            birth_date_typo=ident.birth_date_typo | birth,
            resident_id_typo=ident.resident_id_typo | rid,
            later=ident,
        )

    def identity_defects(
        self, ident: SystemIdentity, rows_person: NDArray[np.int64], fields: dict[str, str]
    ) -> list[tuple[str, str, NDArray[np.int64], str]]:
        """Row-level defects for the identity variants this system's rows carry, and their eligible counts."""
        present = np.unique(rows_person)
        result = []
        for kind, fld in fields.items():
            flags = getattr(ident, kind)
            self.out.eligible[kind] += len(present)
            rows = np.nonzero(flags[rows_person])[0]
            result.append((kind, fld, rows, f"{kind.replace('_', ' ')} in this system's patient index"))
        return result

    def persons(self, local: NDArray[np.int64]) -> NDArray[np.str_]:
        return self.pop.person_id[local]


def ymd(ts: int) -> str:
    return str(np.datetime64(ts // DAY, "D")).replace("-", "")


def iso(ts: int) -> str:
    return str(np.datetime64(ts, "s")).replace("T", " ")
