"""Replacements for identifiers found in notes: shifted dates and keyed, realistic surrogates.

Dates move by the patient's date offset (the same offset the structured tables use, so intervals between a
patient's events stay exact and a note still agrees with the tables) and keep their written format. Every
other identifier becomes a surrogate of the same kind and shape, derived from HMAC-SM3 of the product key,
the patient's key and the original value (``ProductKey.digest``): the same patient's same value gets the same
surrogate in every note of one product, a different patient or a different product's key gets another one,
and nobody without the key can tell which original a surrogate stands for. Addresses are generalised rather
than replaced: the province, city and district are kept and the street and house dropped, as the district
is the finest geography a product keeps.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import date, timedelta

from medspace.core import make_resident_id, region_codes
from medspace.privacy._keys import ProductKey
from medspace.privacy._text_lexicon import lexicon
from medspace.privacy._text_recognisers import DATE_PATTERN, AddressRecogniser, date_fields, is_real_date
from medspace.privacy._text_spans import PhiKind

__all__ = ["Surrogates", "parse_date", "shift_date", "shift_parsed"]

_DATE = re.compile(DATE_PATTERN)
# A day-less date (2023年5月) is shifted as if it were the middle of its month, so it moves to another month
# only when the offset is more than about half a month.
_MID_MONTH = 15
# A day without a year (5月6日) in a note with no year written is shifted in a leap year, so 2月29日 exists.
_DEFAULT_YEAR = 2000
_EARLIEST, _LATEST_OLD_ID = date(1900, 1, 1), date(1999, 12, 31)


def _padded(match: re.Match[str], month: str, day: str | None) -> bool:
    """Whether a date is written with two-digit months and days (2023-05-06, 2023.12.31, 2023年05月06日).

    A leading zero anywhere says so. Without one, a numeric date with both parts two digits long is read as
    padded (ISO 8601 style, 2023.12.31), and a 年月日 date as unpadded, as Chinese text usually writes it.
    """
    if month.startswith("0") or (day or "").startswith("0"):
        return True
    return match["sep"] is not None and len(month) == 2 and day is not None and len(day) == 2


def shift_date(original: str, offset_days: int, year_hint: int | None = None) -> str | None:
    """Shift a written date by whole days, keeping how it was written.

    Args:
        original: A date as `DateRecogniser` found it, e.g. ``"2023年5月6日"`` or ``"2023-05-06 08:30"``.
        offset_days: Days to add (negative moves it earlier).
        year_hint: The year to assume when the date has none (``5月6日``), usually the nearest year written
            in the same note; a leap year is assumed if None.

    Returns:
        The shifted date in the same format (time of day unchanged), or None if ``original`` is not a date.

    Example:
        >>> shift_date("2023年5月6日", 30), shift_date("2023-05-06 08:30", -10)
        ('2023年6月5日', '2023-04-26 08:30')
        >>> shift_date("12月30日", 5, year_hint=2023)
        '1月4日'
    """
    m = _DATE.fullmatch(original)
    return None if m is None else shift_parsed(m, offset_days, year_hint)


def parse_date(original: str) -> re.Match[str] | None:
    """The date pattern's match of a whole written date, or None if it is not one."""
    return _DATE.fullmatch(original)


def shift_parsed(m: re.Match[str], offset_days: int, year_hint: int | None = None) -> str | None:
    """`shift_date` for a date already matched by `parse_date`, so a note's dates are parsed only once."""
    year, month, day = date_fields(m)
    if not is_real_date(year, month, day):
        return None
    base = date(year or year_hint or _DEFAULT_YEAR, month, day or _MID_MONTH)
    try:
        moved = base + timedelta(days=offset_days)
    except OverflowError:
        return None
    y_group, m_group, d_group = next(
        (y, mm, d)
        for y, mm, d in (("y1", "m1", "d1"), ("y2", "m2", "d2"), ("y3", "m3", None), (None, "m4", "d4"))
        if m[mm] is not None
    )
    width = "02d" if _padded(m, m[m_group], None if d_group is None else m[d_group]) else "d"
    edits = [(m.span(m_group), format(moved.month, width))]
    if y_group is not None:
        edits.append((m.span(y_group), str(moved.year)))
    if d_group is not None:
        edits.append((m.span(d_group), format(moved.day, width)))
    out = m.string
    for (start, end), value in sorted(edits, reverse=True):
        out = out[:start] + value + out[end:]
    return out


@functools.cache
def _sorted_regions() -> tuple[str, ...]:
    return tuple(sorted(region_codes()))


class Surrogates:
    """Makes keyed surrogates for one product key; the same inputs always give the same surrogate.

    Example:
        >>> s = Surrogates(ProductKey.from_hex("00" * 32))
        >>> a = s.surrogate(PhiKind.NAME, "张三", "P1", 10)
        >>> a == s.surrogate(PhiKind.NAME, "张三", "P1", 10), a == s.surrogate(PhiKind.NAME, "张三", "P2", 10)
        (True, False)
    """

    def __init__(self, key: ProductKey) -> None:
        self._key = key
        self._address = AddressRecogniser()
        self._lexicon = lexicon()
        self._compound = tuple(sorted(self._lexicon.compound_surnames))
        self._today = date.today()
        self._ending = re.compile(
            f"(?:{'|'.join(sorted(self._lexicon.institution_suffixes, key=len, reverse=True))})$"
        )

    def surrogate(self, kind: PhiKind, original: str, person_key: str, offset_days: int) -> str:
        """A surrogate for ``original`` (any kind but DATE, which `shift_date` handles).

        Args:
            kind: The identifier's kind.
            original: The identifier as written in the note.
            person_key: The patient the note is about (a stable key, e.g. the person's pseudonym source).
            offset_days: The patient's date offset, used to keep a resident ID's birth date consistent with
                the shifted birth date in the structured tables.

        Returns:
            A replacement of the same kind and format, never equal to ``original``.
        """
        if kind is PhiKind.ADDRESS:
            return self._address_surrogate(original, person_key)
        for attempt in range(8):
            rng = self._rng(kind, original, person_key, attempt)
            if kind is PhiKind.NAME:
                value = self._name(original, rng)
            elif kind is PhiKind.ID:
                value = self._resident_id(original, offset_days, rng)
            elif kind is PhiKind.PHONE:
                value = self._phone(original, rng)
            elif kind is PhiKind.HOSPITAL_NO:
                value = self._hospital_number(original, rng)
            elif kind is PhiKind.INSTITUTION:
                value = self._institution(original, rng)
            else:
                raise ValueError(f"no surrogate for {kind.value}; dates are shifted with shift_date")
            if value != original:
                return value
        # Eight draws equal to the original would mean a one-character identifier; a mask is then safest.
        return "*" * len(original)  # pragma: no cover - needs eight HMAC collisions in a row

    def _rng(self, kind: PhiKind, original: str, person_key: str, attempt: int) -> _Draws:
        # Digits are compared without separators, so 138-1234-5678 and 13812345678 get the same number.
        value = _SEPARATORS.sub("", original).upper() if kind in _DIGIT_KINDS else original
        return _Draws(self._key.digest(_PURPOSES[kind][attempt], f"{person_key}\x00{value}"))

    def _name(self, original: str, rng: _Draws) -> str:
        lx = self._lexicon
        given_length = 2 if len(original) >= 3 else 1
        if original[:2] in lx.compound_surnames:
            surname = rng.choice(self._compound)
            given_length = max(1, min(2, len(original) - 2))
        else:
            surname = rng.choice(lx.frequent_surnames)
        given = rng.choice(lx.given_name_chars)
        return surname + (given + rng.choice(lx.given_name_chars) if given_length == 2 else given)

    def _resident_id(self, original: str, offset_days: int, rng: _Draws) -> str:
        digits = original.replace(" ", "")
        if not _ID_SHAPE.fullmatch(digits):
            # Found by a model in some other shape: keep the shape, replace every digit.
            return _reshape(original, rng.digits(len(digits)), digits_only=True)
        region = rng.choice(_sorted_regions())
        if len(digits) == 18:
            birth = _birth(digits[6:14], offset_days, rng)
            sequence = rng.randrange(0, 500) * 2 + int(digits[16]) % 2  # keeps the sex (GB 11643 section 4)
            value = make_resident_id(region, min(max(birth, _EARLIEST), self._today), sequence)
            if digits[17] == "x":
                value = value.lower()
        else:
            birth = min(max(_birth("19" + digits[6:12], offset_days, rng), _EARLIEST), _LATEST_OLD_ID)
            value = f"{region}{birth:%y%m%d}{rng.randrange(0, 1000):03d}"
        return _reshape(original, value)

    def _phone(self, original: str, rng: _Draws) -> str:
        if len(original) == 11 and original.isdigit() and original[0] == "1":
            return "1" + rng.choice("3456789") + rng.digits(9)  # the most common shape, made directly
        digits = [c for c in original if c.isdigit()]
        if len(digits) >= 11 and re.fullmatch(r"1[3-9][0-9]{9}", "".join(digits[-11:])):
            # Mobile: the country code stays, the 11-digit number is new (still 1[3-9]...).
            new = "1" + rng.choice("3456789") + rng.digits(9)
            kept = "".join(digits[:-11])
        else:
            # Landline: the area code stays (city-level geography is kept, like the district of an address).
            area = 0
            if digits and digits[0] == "0":
                area = 3 if "".join(digits[:3]) == "010" or digits[1] == "2" else 4
            kept = "".join(digits[:area])
            rest = len(digits) - area
            new = rng.choice("23456789") + rng.digits(rest - 1)
        return _reshape(original, kept + new)

    def _hospital_number(self, original: str, rng: _Draws) -> str:
        # Letters name the system (E for the EMR, PA for PACS), not the patient, so they stay; digits change.
        plain = _LETTERS_DIGITS.fullmatch(original)
        if plain is not None:  # the most common shape (07654321, ZY00012345), made directly
            number = rng.digits(len(plain[2]))
            return plain[1] + ("0" + number[1:] if plain[2][0] == "0" else number)
        digits = sum(c.isdigit() for c in original)
        new = rng.digits(digits)
        if original.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-").startswith("0"):
            new = "0" + new[1:]  # a leading zero is part of the shape (07654321)
        return _reshape(original, new, digits_only=True)

    def _institution(self, original: str, rng: _Draws) -> str:
        ending = self._ending.search(_BRANCH.sub("", original))
        suffix = "医院" if ending is None else ending.group()
        return rng.choice(self._lexicon.surrogate_institutions) + suffix

    def _address_surrogate(self, original: str, person_key: str) -> str:
        admin, _ = self._address.split(original)
        if admin:
            return admin
        rng = self._rng(PhiKind.ADDRESS, original, person_key, 0)
        return f"{rng.choice(self._lexicon.surrogate_roads)}{rng.choice('路街')}{rng.randrange(1, 1000)}号"


_DIGIT_KINDS = frozenset({PhiKind.ID, PhiKind.PHONE, PhiKind.HOSPITAL_NO})
_SEPARATORS = re.compile(r"[^0-9A-Za-z]")
_LETTERS_DIGITS = re.compile(r"([A-Za-z]*)([0-9]+)")
# HMAC purposes, one per kind and attempt, so surrogates of different kinds never share a digest.
_PURPOSES = {
    kind: tuple(f"text-surrogate:{kind.value}:{attempt}" for attempt in range(8)) for kind in PhiKind
}
# The two shapes of GB 11643 IDs the resident ID recogniser reports (18 characters, or 15 old digits).
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9Xx]|[0-9]{15}")
_BRANCH = re.compile(r"(?:分院|总院|[东西南北]院|[（(][^）)]*[）)])$")


class _Draws:
    """Deterministic choices read from one HMAC-SM3 digest.

    A surrogate needs at most about twenty small choices (a 16-digit hospital number is the longest), and the
    32 digest bytes give them directly; seeding ``random.Random`` from the digest was rejected as costing more
    than the HMAC itself. A choice uses two bytes and a digit one byte; the modulo makes some options slightly
    more likely (a digit 0-5 26 times in 256, not 25.6), which is harmless: a surrogate only has to look
    real and be keyed. Should a surrogate ever need more than 32 bytes, they are read again from the start.
    """

    __slots__ = ("_at", "_digest")

    def __init__(self, digest: bytes) -> None:
        self._digest = digest
        self._at = 0

    def below(self, n: int) -> int:
        """A number in ``[0, n)``."""
        d, at = self._digest, self._at
        self._at = at + 2
        return (d[at % len(d)] << 8 | d[(at + 1) % len(d)]) % n

    def choice(self, items: Sequence[str]) -> str:
        """One of ``items``."""
        return items[self.below(len(items))]

    def digits(self, count: int) -> str:
        """``count`` decimal digits."""
        d, at = self._digest, self._at
        self._at = at + count
        return "".join("0123456789"[d[i % len(d)] % 10] for i in range(at, at + count))

    def randrange(self, start: int, stop: int) -> int:
        """A number in ``[start, stop)``."""
        return start + self.below(stop - start)


def _birth(yyyymmdd: str, offset_days: int, rng: _Draws) -> date:
    """The birth date shifted like the patient's other dates, or a random one if it is not a date."""
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8])) + timedelta(days=offset_days)
    except ValueError:
        return date(1930, 1, 1) + timedelta(days=rng.randrange(0, 80 * 365))


def _reshape(original: str, characters: str, *, digits_only: bool = False) -> str:
    """Write ``characters`` into the alphanumeric (or digit) positions of ``original``, keeping the rest."""
    if not digits_only and original.isascii() and original.isalnum():
        return characters
    out: list[str] = []
    chars = iter(characters)
    for c in original:
        out.append(next(chars, c) if (c.isdigit() if digits_only else c.isalnum()) else c)
    return "".join(out)
