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

import bisect
import functools
import re
from collections.abc import Callable, Sequence
from datetime import date, timedelta

from cryptography.hazmat.primitives import hashes, hmac

from medspace.core import make_resident_id, region_codes
from medspace.privacy._keys import ProductKey
from medspace.privacy._text_lexicon import lexicon
from medspace.privacy._text_recognisers import DATE_PATTERN, AddressRecogniser
from medspace.privacy._text_spans import PhiKind, PhiSpan

__all__ = [
    "Surrogates",
    "nearest_year",
    "parse_date",
    "parsed_year",
    "replace_dates",
    "shift_date",
    "shift_parsed",
    "year_only_date",
    "year_only_parsed",
]

_DATE = re.compile(DATE_PATTERN)
# The groups of each form DATE_PATTERN reads (年月日, numeric, year and month, month and day) by number, as
# (year, month, day) with None where the form has no such part; groups read by number skip a name lookup.
_FORMS: tuple[tuple[int | None, int, int | None], ...] = tuple(
    (
        None if y is None else _DATE.groupindex[y],
        _DATE.groupindex[month],
        None if d is None else _DATE.groupindex[d],
    )
    for y, month, d in (("y1", "m1", "d1"), ("y2", "m2", "d2"), ("y3", "m3", None), (None, "m4", "d4"))
)
_NUMERIC_YEAR = _FORMS[1][0]
# A day-less date (2023年5月) is shifted as if it were the middle of its month, so it moves to another month
# only when the offset is more than about half a month.
_MID_MONTH = 15
# A day without a year (5月6日) in a note with no year written is shifted in a leap year, so 2月29日 exists.
_DEFAULT_YEAR = 2000
# What a day without a year becomes when dates keep only their year: it has no year to keep, and its month
# and day must go (HIPAA 164.514(b)(2)(i)(C)), so it reads "on some day".
_NO_YEAR = "某日"
_EARLIEST, _LATEST_OLD_ID = date(1900, 1, 1), date(1999, 12, 31)


def shift_date(original: str, offset_days: int, year_hint: int | None = None) -> str | None:
    """Shift a written date by whole days, keeping how it was written.

    Args:
        original: A date as `DateRecogniser` found it, e.g. ``"2023年5月6日"`` or ``"2023-05-06 08:30"``.
        offset_days: Days to add (negative moves it earlier).
        year_hint: The year to assume when the date has none (``5月6日``), usually the nearest year written
            in the same note; a leap year is assumed if None, or if the hint has no such day (2月29日).

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


def year_only_date(original: str) -> str | None:
    """Cut a written date to its year (HIPAA Safe Harbor keeps no element of a date but the year).

    Args:
        original: A date as `DateRecogniser` found it.

    Returns:
        The year as written (``2023年`` for 年月日 dates, ``2023`` for numeric ones, the time of day dropped
        too), ``某日`` ("some day") for a day without a year, or None if ``original`` is not a date.

    Example:
        >>> year_only_date("2023年5月6日"), year_only_date("2023-05-06 08:30"), year_only_date("5月6日")
        ('2023年', '2023', '某日')
    """
    m = _DATE.fullmatch(original)
    return None if m is None else year_only_parsed(m)


def parse_date(original: str) -> re.Match[str] | None:
    """The date pattern's match of a whole written date, or None if it is not one."""
    return _DATE.fullmatch(original)


def _form(m: re.Match[str]) -> tuple[int | None, int, int | None]:
    """The (year, month, day) group numbers of the form a `parse_date` match is written in."""
    for form in _FORMS:
        if m[form[1]] is not None:
            return form
    raise AssertionError("a date match always has a month")  # pragma: no cover - the pattern guarantees it


def parsed_year(m: re.Match[str]) -> int | None:
    """The year written in a date matched by `parse_date`, or None if it has none (5月6日)."""
    y = _form(m)[0]
    return None if y is None else int(m[y])


def year_only_parsed(m: re.Match[str]) -> str:
    """`year_only_date` for a date already matched by `parse_date`."""
    y = _form(m)[0]
    if y is None:
        return _NO_YEAR
    return m[y] if y == _NUMERIC_YEAR else m[y] + "年"


def nearest_year(years: Sequence[tuple[int, int]], at: int) -> int | None:
    """The year of the dated span nearest to offset ``at``: the hint for shifting a day without a year.

    Args:
        years: (start offset, year) of the note's dates that have a year, sorted by offset.
        at: The start offset of the date without a year.

    Returns:
        The nearest one's year (the earlier one on a tie), or None if the note has none.

    Example:
        >>> nearest_year([(0, 2022), (40, 2024)], 15)
        2022
    """
    if not years:
        return None
    i = bisect.bisect_left(years, (at, 0))
    if i == 0:
        return years[0][1]
    if i == len(years):
        return years[-1][1]
    (before, year_before), (after, year_after) = years[i - 1], years[i]
    return year_before if at - before <= after - at else year_after


def shift_parsed(m: re.Match[str], offset_days: int, year_hint: int | None = None) -> str | None:
    """`shift_date` for a date already matched by `parse_date`, so a note's dates are parsed only once."""
    try:
        step = timedelta(days=offset_days)
    except OverflowError:
        return None
    return _shift(m, _form(m), step, year_hint)


def replace_dates(text: str, spans: Sequence[PhiSpan], offset_days: int | None) -> list[str]:
    """The replacement of every date of one note: shifted, or cut to its year.

    Args:
        text: The note.
        spans: Its date spans, sorted by start.
        offset_days: Days to shift every date by (a day without a year is shifted in the year of the nearest
            date that has one, see `nearest_year`), or None to keep only their years (`year_only_date`).

    Returns:
        One replacement per span; a date the pattern does not read (a model found it) is masked with X.

    Example:
        >>> note = "2022年12月30日入院，12月31日手术"
        >>> spans = [PhiSpan(PhiKind.DATE, 0, 11, "date", 1.0), PhiSpan(PhiKind.DATE, 14, 20, "date", 1.0)]
        >>> replace_dates(note, spans, 3), replace_dates(note, spans, None)
        (['2023年1月2日', '1月3日'], ['2022年', '某日'])
    """
    # One pass for a note's dates rather than `shift_date` for each: notes have a date every few lines. Each
    # date is matched on its own: matched in place, the pattern's lookbehinds would see the characters before
    # it, and a date a model found just after a digit or 年 would not be read.
    matches = [_DATE.fullmatch(text[span.start : span.end]) for span in spans]
    if offset_days is None:
        return [
            "X" * span.length if m is None else year_only_parsed(m)
            for m, span in zip(matches, spans, strict=True)
        ]
    try:
        step: timedelta | None = timedelta(days=offset_days)
    except OverflowError:
        step = None
    forms = [None if m is None else _form(m) for m in matches]
    years = [
        (span.start, int(m[form[0]]))
        for m, form, span in zip(matches, forms, spans, strict=True)
        if m is not None and form is not None and form[0] is not None
    ]
    out: list[str] = []
    for m, form, span in zip(matches, forms, spans, strict=True):
        shifted = None
        if m is not None and form is not None and step is not None:
            shifted = _shift(m, form, step, None if form[0] is not None else nearest_year(years, span.start))
        out.append("X" * span.length if shifted is None else shifted)
    return out


def _shift(
    m: re.Match[str], form: tuple[int | None, int, int | None], step: timedelta, year_hint: int | None
) -> str | None:
    """Shift a parsed date by ``step``, in its own format; None if it names no real day."""
    # Written out rather than as one edit per part through the generic `date_fields`: a note archive has a
    # date every few lines, and this runs in about half the time.
    y, mo, d = form
    month_text: str = m[mo]
    day_text = None if d is None else m[d]
    month, day = int(month_text), _MID_MONTH if day_text is None else int(day_text)
    try:
        if y is not None:
            base = date(int(m[y]), month, day)
        else:
            try:
                base = date(year_hint or _DEFAULT_YEAR, month, day)
            except ValueError:
                base = date(_DEFAULT_YEAR, month, day)  # 2月29日 near a year without one: read in a leap year
        moved = base + step
    except (ValueError, OverflowError):
        return None
    # Two-digit months and days when the date writes a leading zero anywhere, or is numeric with both parts
    # two digits long (2023.12.31, ISO 8601 style); a 年月日 date without a zero is unpadded, as Chinese text
    # usually writes it.
    padded = (
        month_text[0] == "0"
        or (day_text is not None and day_text[0] == "0")
        or (y == _NUMERIC_YEAR and len(month_text) == 2 and day_text is not None and len(day_text) == 2)
    )
    width = "02d" if padded else "d"
    text = m.string
    month_start, month_end = m.span(mo)
    head = (
        text[:month_start] if y is None else f"{text[: m.start(y)]}{moved.year}{text[m.end(y) : month_start]}"
    )
    out = head + format(moved.month, width)
    if d is None:
        return out + text[month_end:]
    day_start, day_end = m.span(d)
    return f"{out}{text[month_end:day_start]}{format(moved.day, width)}{text[day_end:]}"


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
        self._frequent = self._lexicon.frequent_surnames
        self._given = self._lexicon.given_name_chars
        self._today = date.today()
        self._ending = re.compile(
            f"(?:{'|'.join(sorted(self._lexicon.institution_suffixes, key=len, reverse=True))})$"
        )
        # HMAC-SM3 keyed and fed each kind's first purpose once; a surrogate copies the context and adds its
        # value. The bytes are those of ``key.digest(purpose, value)`` (HMAC over purpose, 0x00, value; pinned
        # by a test), but setting up the key for every surrogate took as long as the rest of making a name.
        self._first_draw: dict[PhiKind, hmac.HMAC] = {}
        for kind, purposes in _PURPOSES.items():
            mac = hmac.HMAC(key.secret, hashes.SM3())
            mac.update(purposes[0].encode() + b"\x00")
            self._first_draw[kind] = mac
        self._makers: dict[PhiKind, Callable[[str, int | None, _Draws], str]] = {
            PhiKind.NAME: self._name,
            PhiKind.ID: self._resident_id,
            PhiKind.PHONE: self._phone,
            PhiKind.HOSPITAL_NO: self._hospital_number,
            PhiKind.INSTITUTION: self._institution,
        }

    def surrogate(self, kind: PhiKind, original: str, person_key: str, offset_days: int | None) -> str:
        """A surrogate for ``original`` (any kind but DATE, which `shift_date` handles).

        Args:
            kind: The identifier's kind.
            original: The identifier as written in the note.
            person_key: The patient the note is about (a stable key, e.g. the person's pseudonym source).
            offset_days: The patient's date offset, used to keep a resident ID's birth date consistent with
                the shifted birth date in the structured tables; None when dates keep only their year, and
                the birth date in a resident ID then keeps its year only.

        Returns:
            A replacement of the same kind and format, never equal to ``original``.

        Raises:
            ValueError: If ``kind`` is DATE.
        """
        if kind is PhiKind.ADDRESS:
            return self._address_surrogate(original, person_key)
        make = self._makers.get(kind)
        if make is None:
            raise ValueError(f"no surrogate for {kind.value}; dates are shifted with shift_date")
        value = make(original, offset_days, self._first_rng(kind, original, person_key))
        attempt = 1
        while value == original and attempt < 8:
            value = make(original, offset_days, self._rng(kind, original, person_key, attempt))
            attempt += 1
        # Eight draws equal to the original would mean a one-character identifier; a mask is then safest.
        return "*" * len(original) if value == original else value

    def _first_rng(self, kind: PhiKind, original: str, person_key: str) -> _Draws:
        """`_rng` for the first attempt, from the kind's prepared HMAC context."""
        # Digits are compared without separators, so 138-1234-5678 and 13812345678 get the same number.
        value = _SEPARATORS.sub("", original).upper() if kind in _DIGIT_KINDS else original
        mac = self._first_draw[kind].copy()
        mac.update(f"{person_key}\x00{value}".encode())
        return _Draws(mac.finalize())

    def _rng(self, kind: PhiKind, original: str, person_key: str, attempt: int) -> _Draws:
        value = _SEPARATORS.sub("", original).upper() if kind in _DIGIT_KINDS else original
        return _Draws(self._key.digest(_PURPOSES[kind][attempt], f"{person_key}\x00{value}"))

    def _name(self, original: str, offset_days: int | None, rng: _Draws) -> str:
        # The surrogate keeps the shape: a compound surname stays compound, and the given name keeps one or
        # two characters.
        if original[:2] in self._lexicon.compound_surnames:
            surname = rng.choice(self._compound)
            two = len(original) >= 4
        else:
            surname = rng.choice(self._frequent)
            two = len(original) >= 3
        given = self._given
        first = rng.choice(given)
        return surname + first + rng.choice(given) if two else surname + first

    def _resident_id(self, original: str, offset_days: int | None, rng: _Draws) -> str:
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

    def _phone(self, original: str, offset_days: int | None, rng: _Draws) -> str:
        if len(original) == 11 and original.isdigit() and original[0] == "1":
            return "1" + rng.choice("3456789") + rng.digits(9)  # the most common shape, made directly
        digits = [c for c in original if c.isdigit()]
        if len(digits) >= 11 and _MOBILE_NUMBER.fullmatch("".join(digits[-11:])):
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

    def _hospital_number(self, original: str, offset_days: int | None, rng: _Draws) -> str:
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

    def _institution(self, original: str, offset_days: int | None, rng: _Draws) -> str:
        ending = self._ending.search(_BRANCH.sub("", original))
        suffix = "医院" if ending is None else ending.group()
        return rng.choice(self._lexicon.surrogate_institutions) + suffix

    def _address_surrogate(self, original: str, person_key: str) -> str:
        admin, _ = self._address.split(original)
        if admin:
            return admin
        rng = self._first_rng(PhiKind.ADDRESS, original, person_key)
        return f"{rng.choice(self._lexicon.surrogate_roads)}{rng.choice('路街')}{rng.randrange(1, 1000)}号"


_DIGIT_KINDS = frozenset({PhiKind.ID, PhiKind.PHONE, PhiKind.HOSPITAL_NO})
_SEPARATORS = re.compile(r"[^0-9A-Za-z]")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_ASCII_ALNUM = re.compile(r"[0-9A-Za-z]+")
_MOBILE_NUMBER = re.compile(r"1[3-9][0-9]{9}")
# Byte -> its decimal digit (the byte modulo 10), as ASCII, for `_Draws.digits`.
_DIGIT_OF_BYTE = bytes(ord("0") + b % 10 for b in range(256))
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
        # `below` written out: names and institutions make most surrogates, and each makes two or three.
        d, at = self._digest, self._at
        self._at = at + 2
        return items[(d[at % len(d)] << 8 | d[(at + 1) % len(d)]) % len(items)]

    def digits(self, count: int) -> str:
        """``count`` decimal digits."""
        d, at = self._digest, self._at
        self._at = at + count
        # Digit i is byte i % len(d) modulo 10; translating the whole digest once does that in C.
        written = d.translate(_DIGIT_OF_BYTE)
        if at + count > len(written):
            written *= (at + count) // len(written) + 1
        return written[at : at + count].decode()

    def randrange(self, start: int, stop: int) -> int:
        """A number in ``[start, stop)``."""
        return start + self.below(stop - start)


def _birth(yyyymmdd: str, offset_days: int | None, rng: _Draws) -> date:
    """The birth date shifted like the patient's other dates, or a random one if it is not a date.

    With no offset (dates keep only their year) the year stays and the month and day are drawn from the key,
    so the ID still holds a valid birth date but no element of the real one except the year.
    """
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return date(1930, 1, 1) + timedelta(days=rng.randrange(0, 80 * 365))
    if offset_days is None:
        return date(born.year, 1, 1) + timedelta(days=rng.randrange(0, 365))
    return born + timedelta(days=offset_days)


def _reshape(original: str, characters: str, *, digits_only: bool = False) -> str:
    """Write ``characters`` into the alphanumeric (or digit) positions of ``original``, keeping the rest."""
    if not digits_only and original.isascii() and original.isalnum():
        return characters
    if original.isascii():
        # The common shapes (138-1234-5678, 110105 19491231 002X), run by run: for ASCII, [0-9] and
        # [0-9A-Za-z] are exactly what isdigit and isalnum accept, character by character below.
        pieces: list[str] = []
        done = used = 0
        for run in (_ASCII_DIGITS if digits_only else _ASCII_ALNUM).finditer(original):
            start, end = run.span()
            fill = characters[used : used + end - start]
            used += end - start
            # Past the end of ``characters`` the original characters stay, as below.
            pieces.append(original[done:start] + fill + original[start + len(fill) : end])
            done = end
        pieces.append(original[done:])
        return "".join(pieces)
    out: list[str] = []
    chars = iter(characters)
    for c in original:
        out.append(next(chars, c) if (c.isdigit() if digits_only else c.isalnum()) else c)
    return "".join(out)
