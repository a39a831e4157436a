"""Configuration of a synthetic hospital: its size, seed, period and the rate of every injected defect."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: The vendor profiles the generator can write: the same simulated people and encounters, exported as two
#: different hospitals (docs/synthetic-hospital.md).
Profile = Literal["tertiary", "integrated"]


class DefectRates(BaseModel):
    """Rates of the inconsistencies of domain.md §1 that real exports have.

    Each rate is the probability that one eligible record carries the defect; the manifest in the ground
    truth records how many records were eligible, so tests can compare observed and configured rates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # identity attributes as other systems hold them
    name_typo: float = Field(0.02, ge=0, le=1, description="a character of the name differs")
    birth_date_typo: float = Field(0.01, ge=0, le=1, description="one digit of the birth date differs")
    resident_id_typo: float = Field(0.005, ge=0, le=1, description="one digit of the resident ID differs")
    phone_missing: float = Field(0.05, ge=0, le=1, description="phone written as '-' or left empty")
    address_variant: float = Field(0.10, ge=0, le=1, description="address without province or abbreviated")
    duplicate_patient_id: float = Field(0.01, ge=0, le=1, description="a person registered twice in HIS")
    # records and keys
    duplicate_record: float = Field(0.005, ge=0, le=1, description="an export row written twice")
    orphan_record: float = Field(0.003, ge=0, le=1, description="parent row lost from the parent export")
    sync_lag_days: int = Field(2, ge=0, le=30, description="HIS export cut off this many days early")
    lab_wrong_visit: float = Field(0.01, ge=0, le=1, description="lab request carries another visit's number")
    # codes, value sets, formats, units
    mixed_code_edition: float = Field(0.05, ge=0, le=1, description="front-sheet code from a legacy edition")
    value_set_drift: float = Field(
        1.0, ge=0, le=1, description="template B writes discharge mode 'other' as 6"
    )
    mixed_date_format: float = Field(0.02, ge=0, le=1, description="LIS time written in another format")
    department_prefix_stripped: float = Field(0.05, ge=0, le=1, description="HIS department code lost prefix")
    branch_lab_share: float = Field(
        0.25, ge=0, le=1, description="requests run by the branch lab: mg/dL, mmol/mol and its own ranges"
    )
    # events that make counts diverge
    registration_refund: float = Field(0.03, ge=0, le=1, description="outpatient registration refunded")
    registration_cancelled: float = Field(0.01, ge=0, le=1, description="registration cancelled")
    recalled_discharge: float = Field(0.01, ge=0, le=1, description="discharge recalled and reopened")
    department_transfer: float = Field(0.10, ge=0, le=1, description="inpatient transferred between wards")
    settlement_cost_mismatch: float = Field(
        0.01, ge=0, le=1, description="settlement total differs from bill"
    )
    # an earlier export of the same hospital (HospitalConfig.as_of) and key conflicts; the manifest leaves
    # these out while they are at their defaults, so a default hospital's files stay as they were
    identity_corrected_later: float = Field(
        0.02,
        ge=0,
        le=1,
        description="as-of export only, per person, system and field (name, birth date, resident ID): a typo "
        "the later export corrects",
    )
    newborn_parent_id: float = Field(
        0.0, ge=0, le=1, description="newborn registered in HIS under the mother's resident ID"
    )
    reused_inpatient_no: float = Field(
        0.0, ge=0, le=1, description="another patient's inpatient number on an EMR front sheet or lab request"
    )


class IntegratedRates(BaseModel):
    """Rates of the integrated profile's own inconsistencies (beside the identity rates of `DefectRates`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resident_id_missing: float = Field(
        0.05, ge=0, le=1, description="HIS patient registered without a resident ID"
    )
    platform_share: float = Field(
        0.6, ge=0, le=1, description="share of the hospital's local residents the regional platform holds"
    )
    platform_resident_id_missing: float = Field(
        0.35, ge=0, le=1, description="platform Patient without a resident-ID identifier"
    )
    platform_upload_missing: float = Field(
        0.02, ge=0, le=1, description="encounter of a platform patient never uploaded"
    )


class HospitalConfig(BaseModel):
    """What `medspace synth` generates.

    Example:
        >>> HospitalConfig(patients=1000, seed=7).years
        1
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    patients: int = Field(ge=1, le=20_000_000)
    seed: int = Field(ge=0)
    years: int = Field(1, ge=1, le=10)
    start: dt.date = dt.date(2024, 1, 1)
    workers: int = Field(1, ge=1, le=64)
    chunk_patients: int = Field(5_000, ge=100, le=1_000_000)
    defects: DefectRates = DefectRates()
    profile: Profile = "tertiary"
    integrated: IntegratedRates = IntegratedRates()
    as_of: dt.date | None = Field(
        None,
        description="write the export as it stood on this day (exclusive): the same hospital, cut there",
    )

    @field_validator("as_of")
    @classmethod
    def _as_of_inside_period(cls, as_of: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start, years = info.data.get("start"), info.data.get("years")
        if as_of is None or start is None or years is None:
            return as_of
        end = start.replace(year=start.year + years)
        if not start < as_of <= end:
            raise ValueError(f"must fall after the start ({start}) and by the end ({end}) of the period")
        return as_of

    @property
    def end(self) -> dt.date:
        """First day after the period (exclusive)."""
        return self.start.replace(year=self.start.year + self.years)

    @property
    def cut(self) -> dt.date:
        """First day the export does not hold: ``as_of`` when set, else the end of the period."""
        return self.end if self.as_of is None else self.as_of
