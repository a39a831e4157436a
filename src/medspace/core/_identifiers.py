"""Chinese resident identity numbers (公民身份号码), as defined by GB 11643-1999.

Every source system keys patients by its own number (patient ID, 住院号, 门诊号, 病案号), but most also
record the patient's resident ID, which is the one key shared across systems and hospitals. It is 18
characters: a 6-digit address code (GB/T 2260 administrative division, county level), the birth date as
YYYYMMDD, a 3-digit sequence code (odd for men, even for women) and a check character.

About 9 % of random 18-character strings pass the checksum alone, so a check also needs a real birth date and
a known region code. Old 15-digit IDs (no century, no check character) still appear in exports; they are not
handled here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from medspace.core.errors import InputError

__all__ = [
    "RESIDENT_ID_WEIGHTS",
    "ResidentIdCheck",
    "ResidentIdFailure",
    "check_resident_id",
    "make_resident_id",
    "region_codes",
    "resident_id_check_char",
    "resident_id_sex",
]

# GB 11643-1999 section 8.2: the check character is ISO 7064 MOD 11-2. Weight W_i = 2^(i-1) mod 11 for the
# position i counted from the right (the check character is i = 1), which for the 17 body digits read left to
# right gives these weights; the remainder of sum(a_i * W_i) mod 11 indexes "10X98765432".
RESIDENT_ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

# GB 11643-1999 section 4: 17 digits then a digit or the capital letter X. A lowercase x is not in the
# standard; exports that lower-case it are flagged rather than silently fixed, so the quarantine shows it.
# [0-9] rather than \d: \d also matches non-ASCII digits such as full-width ones.
_BODY = re.compile(r"[0-9]{17}")
_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]")

# Earliest birth date accepted; older dates in an export are typing errors, not patients.
_EARLIEST_BIRTH = date(1900, 1, 1)

ResidentIdFailure = Literal["length", "characters", "checksum", "birth_date", "region"]


def resident_id_check_char(first17: str) -> str:
    """Compute a resident ID's check character from its first 17 digits (GB 11643-1999, ISO 7064 MOD 11-2).

    Args:
        first17: The address code, birth date and sequence code: exactly 17 ASCII digits.

    Returns:
        The check character, one of ``0``-``9`` or ``X``.

    Raises:
        InputError: If ``first17`` is not exactly 17 ASCII digits.

    Example:
        >>> resident_id_check_char("11010519491231002")
        'X'
    """
    if not _BODY.fullmatch(first17):
        raise InputError(
            "the body of a resident ID is exactly 17 ASCII digits; pass it without the check character",
            rule="GB 11643 format",
        )
    total = sum(int(digit) * weight for digit, weight in zip(first17, RESIDENT_ID_WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@functools.cache
def region_codes() -> frozenset[str]:
    """Return the county-level administrative division codes (GB/T 2260) a resident ID may start with.

    The list is faker's zh_CN table of division codes, keeping only county-level codes: a code ending in
    ``00`` names a province or a prefecture, which is never issued as an address code in an 18-digit ID.

    Returns:
        The 6-digit codes, e.g. ``"110105"`` (Beijing, Chaoyang district).

    Example:
        >>> "110105" in region_codes(), "110000" in region_codes()
        (True, False)
    """
    # Imported here: faker loads dozens of locale modules, which callers that never check a region should not
    # pay for at import time. We reuse its table rather than ship our own copy of GB/T 2260.
    from faker.providers.ssn.zh_CN import Provider

    codes: list[str] = list(Provider.area_codes)
    return frozenset(code for code in codes if len(code) == 6 and code.isdigit() and not code.endswith("00"))


def make_resident_id(region: str, birth: date, sequence: int) -> str:
    """Build a valid 18-character resident ID.

    Args:
        region: A county-level address code from `region_codes`.
        birth: The birth date, on or after 1900-01-01.
        sequence: The sequence code, 0 to 999; odd for men, even for women.

    Returns:
        The resident ID, ending in its check character.

    Raises:
        InputError: If the region is unknown, the birth date is before 1900 or the sequence is out of range.

    Example:
        >>> make_resident_id("110105", date(1949, 12, 31), 2)
        '11010519491231002X'
    """
    if region not in region_codes():
        raise InputError("unknown region code; use a county-level code from region_codes()", field="region")
    if birth < _EARLIEST_BIRTH:
        raise InputError("birth date is before 1900-01-01; pass a later date", field="birth")
    if not 0 <= sequence <= 999:
        raise InputError("sequence code must be between 0 and 999", field="sequence")
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_char(first17)


@dataclass(frozen=True, slots=True)
class ResidentIdCheck:
    """The outcome of checking one resident ID.

    Attributes:
        valid: Whether the ID passed every check.
        reason: The first check it failed, or None if valid: ``"length"`` (not 18 characters),
            ``"characters"`` (not 17 digits and a digit or capital X), ``"checksum"``, ``"birth_date"``
            (not a real date, before 1900-01-01 or in the future) or ``"region"`` (unknown address code).
    """

    valid: bool
    reason: ResidentIdFailure | None = None


def check_resident_id(value: str, today: date | None = None) -> ResidentIdCheck:
    """Check an 18-character resident ID: length, characters, check character, birth date and region.

    Checks run in that order and the first failure is reported; the value itself never appears in the result.

    Args:
        value: The ID as found in the export, without surrounding whitespace.
        today: The date birth dates may not be after; defaults to today's date.

    Returns:
        Whether the ID is valid and, if not, which check failed.

    Example:
        >>> check_resident_id("11010519491231002X")
        ResidentIdCheck(valid=True, reason=None)
        >>> check_resident_id("110105194912310021").reason
        'checksum'
    """
    if len(value) != 18:
        return ResidentIdCheck(False, "length")
    if not _RESIDENT_ID.fullmatch(value):
        return ResidentIdCheck(False, "characters")
    if resident_id_check_char(value[:17]) != value[17]:
        return ResidentIdCheck(False, "checksum")
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return ResidentIdCheck(False, "birth_date")
    if not _EARLIEST_BIRTH <= birth <= (today or date.today()):
        return ResidentIdCheck(False, "birth_date")
    if value[:6] not in region_codes():
        return ResidentIdCheck(False, "region")
    return ResidentIdCheck(True)


def resident_id_sex(value: str) -> Literal["M", "F"]:
    """Read the sex from a resident ID's sequence code (GB 11643-1999: odd for men, even for women).

    Only the format is checked (length and characters); use `check_resident_id` to check the rest.

    Args:
        value: An 18-character resident ID.

    Returns:
        ``"M"`` or ``"F"``.

    Raises:
        InputError: If the value is not 17 digits followed by a digit or X.

    Example:
        >>> resident_id_sex("11010519491231002X")
        'F'
    """
    if not _RESIDENT_ID.fullmatch(value):
        raise InputError(
            "not an 18-character resident ID (17 digits, then a digit or X); check the source field",
            rule="GB 11643 format",
        )
    return "M" if int(value[16]) % 2 == 1 else "F"
