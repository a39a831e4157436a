"""Shared foundations every medspace stage builds on: the error hierarchy and identifier checks.

Stages import from here (``from medspace.core import InputError``), never from the private modules.
"""

from medspace.core._identifiers import (
    RESIDENT_ID_WEIGHTS,
    ResidentIdCheck,
    ResidentIdFailure,
    check_resident_id,
    make_resident_id,
    region_codes,
    resident_id_check_char,
    resident_id_sex,
)
from medspace.core.errors import ConfigError, InputError, MedspaceError, SpecError

__all__ = [
    "RESIDENT_ID_WEIGHTS",
    "ConfigError",
    "InputError",
    "MedspaceError",
    "ResidentIdCheck",
    "ResidentIdFailure",
    "SpecError",
    "check_resident_id",
    "make_resident_id",
    "region_codes",
    "resident_id_check_char",
    "resident_id_sex",
]
