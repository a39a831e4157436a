"""Rule recognisers for identifiers in Chinese clinical notes, and the slot a trained model plugs into.

Each recogniser is one class registered in ``RECOGNISERS``. Identifiers with a standard format (resident IDs,
phones, dates) are found by regular expressions and checked (checksum, real date, known region); identifiers
without one (names, hospital numbers, addresses, institutions) are found from the words around them and the
shape of Chinese names and addresses, because a dictionary alone tags district names and clinical words
(domain.md section 4). Every pass is a compiled regular expression over the whole note; Python only looks at
the few places it reports, which keeps the scrubber fast enough for a hospital's full note archive.

Recognisers see identifiable text: they never log it, and errors they raise never quote it.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import ClassVar, Protocol

from medspace.core import check_resident_id, region_codes
from medspace.privacy._text_lexicon import cjk_class_without, lexicon, word_pattern
from medspace.privacy._text_spans import PhiKind, PhiSpan

__all__ = [
    "RECOGNISERS",
    "AddressRecogniser",
    "DateRecogniser",
    "HospitalNumberRecogniser",
    "InstitutionRecogniser",
    "ModelRecogniser",
    "PersonNameRecogniser",
    "PhoneRecogniser",
    "ResidentIdRecogniser",
    "RuleRecogniser",
    "SpanModel",
    "default_recognisers",
]


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


class RuleRecogniser(ABC):
    """Base of the built-in recognisers: one kind, a name, and the regular expressions it runs.

    Subclasses set ``name`` and ``kind`` and implement ``find``. ``patterns`` lists their regular expressions
    by purpose, so a reviewer can read them and the benchmark can give another tool exactly the same ones.
    """

    name: ClassVar[str]
    kind: ClassVar[PhiKind]

    @property
    def kinds(self) -> frozenset[PhiKind]:
        """The one kind this recogniser reports."""
        return frozenset({self.kind})

    @property
    def patterns(self) -> Mapping[str, str]:
        """The regular expressions this recogniser runs, by purpose."""
        return {}

    @abstractmethod
    def find(self, text: str) -> list[PhiSpan]:
        """Report the identifiers in ``text``."""

    def _span(self, start: int, end: int, score: float) -> PhiSpan:
        return PhiSpan(self.kind, start, end, self.name, score)


# ----------------------------------------------------------------------------------------------------
# Resident IDs


# GB 11643-1999 section 4: 6-digit address code (GB/T 2260), birth date YYYYMMDD, 3-digit sequence code and a
# check character (a digit or X); written in notes as one run or grouped 6-8-4 with spaces, and the check X
# is sometimes typed in lower case. GB 11643-1989 IDs (still seen for older patients) have 15 digits:
# address code, YYMMDD and a 3-digit sequence code, without a check character. [0-9] rather than \d, which
# also matches full-width and other Unicode digits.
_DAY = r"(?:0[1-9]|[12][0-9]|3[01])"
_MONTH = r"(?:0[1-9]|1[0-2])"
_RESIDENT_ID = (
    r"(?=[1-9])(?<![0-9A-Za-z])(?:"
    rf"(?P<r18>[1-9][0-9]{{5}}) ?(?P<b18>(?:18|19|20)[0-9]{{2}}{_MONTH}{_DAY}) ?(?P<s18>[0-9]{{3}}[0-9Xx])"
    rf"|(?P<r15>[1-9][0-9]{{5}})(?P<b15>[0-9]{{2}}{_MONTH}{_DAY})(?P<s15>[0-9]{{3}})"
    r")(?![0-9A-Za-z])"
)
# Words that introduce a resident ID. After one of them an 18-character ID that fails its checksum or region
# check is still a (mistyped) resident ID, so it is removed too; without them it is just a number.
_ID_CONTEXT = r"(?:身份证|证件号|身份号码|公民身份|社会保障号|社保号)"
_ID_CONTEXT_WINDOW = 12


class ResidentIdRecogniser(RuleRecogniser):
    """Resident IDs: 18 characters with a valid check character, birth date and region, or 15 old digits."""

    name = "resident_id"
    kind = PhiKind.ID

    def __init__(self) -> None:
        self._pattern = re.compile(_RESIDENT_ID)
        self._context = re.compile(_ID_CONTEXT)
        self._regions = region_codes()

    @property
    def patterns(self) -> Mapping[str, str]:
        return {"resident_id": _RESIDENT_ID, "context": _ID_CONTEXT}

    def find(self, text: str) -> list[PhiSpan]:
        spans: list[PhiSpan] = []
        for m in self._pattern.finditer(text):
            start, end = m.span()
            if m["r18"] is not None:
                value = m["r18"] + m["b18"] + m["s18"].upper()
                if check_resident_id(value).valid:
                    spans.append(self._span(start, end, 1.0))
                elif self._has_context(text, start):
                    spans.append(self._span(start, end, 0.6))
            elif self._valid_old(m["r15"], m["b15"]):
                spans.append(self._span(start, end, 0.9))
            elif self._has_context(text, start):
                spans.append(self._span(start, end, 0.6))
        return spans

    def _valid_old(self, region: str, birth: str) -> bool:
        # GB 11643-1989: the birth year is 19YY; the address code must still be a known county code.
        try:
            date(1900 + int(birth[:2]), int(birth[2:4]), int(birth[4:6]))
        except ValueError:
            return False
        return region in self._regions

    def _has_context(self, text: str, start: int) -> bool:
        return self._context.search(text, max(0, start - _ID_CONTEXT_WINDOW), start) is not None


# ----------------------------------------------------------------------------------------------------
# Phones

# Mobile numbers: 11 digits starting 13-19 (MIIT numbering plan, 《电信网编号计划（2017年版）》; domain.md
# section 4), optionally after the country code +86/0086/86 and grouped 3-4-4 with spaces or hyphens.
_MOBILE = (
    r"(?=[+0-9(（])(?<![0-9A-Za-z+])(?:(?:\+|00)?86[ -]?|[(（]\+?86[)）] ?)?"
    r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9A-Za-z])"
)
# Landlines: a trunk prefix 0 and a 2-3 digit area code (010, 02X, 0XXX), then a 7-8 digit local number
# starting 2-9, optionally with an extension (same numbering plan). With a separator or brackets the shape
# is distinctive; a bare run of digits is a phone only after a word such as 电话.
_AREA = r"0(?:10|2[0-9]|[3-9][0-9]{2})"
_LANDLINE = (
    rf"(?=[0-9(（])(?<![0-9A-Za-z])(?:[(（](?P<bracketed>{_AREA})[)）] ?|(?P<area>{_AREA})(?P<sep>[ -]?))?"
    r"[2-9][0-9]{6,7}(?:-[0-9]{1,5})?(?![0-9A-Za-z])"
)
_PHONE_CONTEXT = r"(?:电话|手机|联系方式|座机|传真|[Tt][Ee][Ll]|致电|拨打|热线|联系)"
_PHONE_CONTEXT_WINDOW = 10


class PhoneRecogniser(RuleRecogniser):
    """Mobile numbers anywhere; landlines when written with an area code and separator, or after 电话."""

    name = "phone"
    kind = PhiKind.PHONE

    def __init__(self) -> None:
        # One pass for both shapes: a second pass over the note cost more than everything done per match.
        self._pattern = re.compile(rf"(?=[+0-9(（])(?:(?P<mobile>{_MOBILE})|{_LANDLINE})")
        self._context = re.compile(_PHONE_CONTEXT)

    @property
    def patterns(self) -> Mapping[str, str]:
        return {"mobile": _MOBILE, "landline": _LANDLINE, "context": _PHONE_CONTEXT}

    def find(self, text: str) -> list[PhiSpan]:
        spans: list[PhiSpan] = []
        for m in self._pattern.finditer(text):
            start, end = m.span()
            if m["mobile"] is not None:
                spans.append(self._span(start, end, 0.9))
            elif m["bracketed"] is not None or (m["area"] is not None and m["sep"]):
                spans.append(self._span(start, end, 0.85))
            elif self._context.search(text, max(0, start - _PHONE_CONTEXT_WINDOW), start) is not None:
                spans.append(self._span(start, end, 0.7))
        return spans


# ----------------------------------------------------------------------------------------------------
# Hospital numbers


# Hospital numbers have no national standard (domain.md section 4): 6-12 letters and digits, sometimes with a
# hyphen (a stay counter: 07654321-2), with at least three digits so a word such as "ID：Male" is not one.
_HOSPITAL_NUMBER = (
    r"(?P<number>(?=[A-Za-z0-9-]*?[0-9][A-Za-z0-9-]*?[0-9][A-Za-z0-9-]*?[0-9])"
    r"[A-Za-z0-9][A-Za-z0-9-]{4,14}[A-Za-z0-9])(?![A-Za-z0-9])"
)


@functools.cache
def _hospital_number_context() -> str:
    # The number follows a context word; several words may share one number (住院号/病案号：…).
    words = word_pattern(lexicon().hospital_number_context).replace("ID", "(?i:ID)")
    return rf"{words}(?:[/、]{words})*[ \t]*(?:[:：]|为|是)?[ \t]*"


class HospitalNumberRecogniser(RuleRecogniser):
    """住院号, 门诊号, 病案号 and other record numbers, found after their context word."""

    name = "hospital_number"
    kind = PhiKind.HOSPITAL_NO

    def __init__(self) -> None:
        self._pattern = re.compile(_hospital_number_context() + _HOSPITAL_NUMBER)

    @property
    def patterns(self) -> Mapping[str, str]:
        return {"context": _hospital_number_context(), "number": _HOSPITAL_NUMBER}

    def find(self, text: str) -> list[PhiSpan]:
        return [self._span(*m.span("number"), 0.9) for m in self._pattern.finditer(text)]


# ----------------------------------------------------------------------------------------------------
# Dates

# Dates as Chinese clinical notes write them (GB/T 7408-2005, the national adoption of ISO 8601, for the
# numeric forms; the 年月日 forms follow GB/T 15835 usage): 2023年5月6日, 2023-05-06, 2023/5/6, 2023.05.06,
# a month without a day (2023年5月) and a day without a year (5月6日), each optionally followed by a time of
# day (08:30, 8时30分, 上午9点). Years before 1900 or after 2099 are not read as dates.
_Y = r"(?:19|20)[0-9]{2}"
_M = r"(?:1[0-2]|0?[1-9])"
_D = r"(?:3[01]|[12][0-9]|0?[1-9])"
_TIME = (
    r"(?P<time>(?:[ T]|\s?(?:上午|下午|晚上|凌晨|中午|早上|夜间))?"
    r"(?:2[0-3]|[01]?[0-9])(?:[:：][0-5][0-9](?:[:：][0-5][0-9])?|时(?:[0-5]?[0-9]分)?|点(?:[0-5]?[0-9]分?|半)?))?"
)
DATE_PATTERN = (
    r"(?=[0-9])(?<![0-9])(?:"
    rf"(?P<y1>{_Y}) ?年 ?(?P<m1>{_M}) ?月 ?(?P<d1>{_D}) ?[日号]"
    rf"|(?P<y2>{_Y})(?P<sep>[-/.])(?P<m2>{_M})(?P=sep)(?P<d2>{_D})(?![0-9])"
    rf"|(?P<y3>{_Y}) ?年 ?(?P<m3>{_M}) ?月(?! ?[0-9])"
    rf"|(?<!年)(?P<m4>{_M}) ?月 ?(?P<d4>{_D}) ?[日号]"
    rf"){_TIME}"
)


def date_fields(match: re.Match[str]) -> tuple[int | None, int, int | None]:
    """Year (None if not written), month and day (None if not written) of a `DATE_PATTERN` match."""
    for y, m, d in (("y1", "m1", "d1"), ("y2", "m2", "d2"), ("y3", "m3", None), (None, "m4", "d4")):
        if match[m] is not None:
            return (
                int(match[y]) if y is not None else None,
                int(match[m]),
                int(match[d]) if d is not None else None,
            )
    raise AssertionError("a date match always has a month")  # pragma: no cover - the pattern guarantees it


def is_real_date(year: int | None, month: int, day: int | None) -> bool:
    """Whether the written parts name a real day (a leap year is assumed when the year is missing)."""
    try:
        date(2000 if year is None else year, month, day or 1)
    except ValueError:
        return False
    return True


class DateRecogniser(RuleRecogniser):
    """Calendar dates with at least a month, in the formats Chinese notes use, optionally with a time."""

    name = "date"
    kind = PhiKind.DATE

    def __init__(self) -> None:
        self._pattern = re.compile(DATE_PATTERN)
        self._days = tuple(self._pattern.groupindex[g] for g in ("d1", "d2", "d4"))

    @property
    def patterns(self) -> Mapping[str, str]:
        return {"date": DATE_PATTERN}

    def find(self, text: str) -> list[PhiSpan]:
        spans: list[PhiSpan] = []
        d1, d2, d4 = self._days
        kind, name = self.kind, self.name
        for m in self._pattern.finditer(text):
            # The pattern allows months 1-12 and days 1-31; only days past the 28th need the calendar (read
            # by group number first: notes hold many dates, and most days are early enough).
            day = m[d1] or m[d2] or m[d4]
            if day is None or int(day) <= 28 or is_real_date(*date_fields(m)):
                start, end = m.span()
                spans.append(PhiSpan(kind, start, end, name, 0.95))
        return spans


# ----------------------------------------------------------------------------------------------------
# Names

# Titles that take a role prefix (主治医师, 管床医生, 责任护士); with a role they are context both ways.
_TITLES = ("医师", "医生", "大夫", "护士", "护师", "技师", "药师")
# A patient written as "张三，男，45岁" (the opening of outpatient records): the sex between commas follows
# the name.
_SEX_AFTER = r"[，,] ?[男女](?=[，,、 ]|性)"


@functools.cache
def _name_context() -> dict[str, str]:
    lx = lexicon()
    context = dict(lx.name_context)
    for role in lx.name_roles:
        for title in _TITLES:
            context.setdefault(role + title, "both")
    return context


@functools.cache
def _name_context_pattern() -> str:
    return word_pattern(_name_context())


class PersonNameRecogniser(RuleRecogniser):
    """Person names next to a context word: 姓名：, 患者, 家属, 医师, 主任, 之子, and a sex after the name.

    A name is a surname (a one- or two-character surname from the shipped list) and one or two given-name
    characters. The given name ends at the first character that is not part of names (a function word, a
    verb, a clinical character) or where a known non-name word starts, so 患者高热 and 主任医师查房 are not
    names. Names the hospital already knows (the patient's own name) are found anywhere by the scrubber.
    """

    name = "person_name"
    kind = PhiKind.NAME

    def __init__(self) -> None:
        lx = lexicon()
        # Context word -> (name before it, name after it, weak evidence).
        self._context = {
            word: (where in ("after", "both"), where != "after", where == "weak")
            for word, where in _name_context().items()
        }
        self._pattern = re.compile(_name_context_pattern())
        # A separate pass: in one alternation with the context words it disabled re's first-character scan
        # and made the whole pass six times slower.
        self._sex = re.compile(_SEX_AFTER)
        self._surnames = lx.surnames
        self._rank = {surname: rank for rank, surname in enumerate(lx.surname_order)}
        self._common = lx.common_surnames
        self._compound = lx.compound_surnames
        self._stop = lx.stop_chars
        self._not_names = lx.not_names | frozenset(lx.name_roles)
        # First characters of the non-name words: most characters start none, and one set lookup rules
        # them out before three slices are looked up.
        self._word_heads = frozenset(w[0] for w in self._not_names)

    @property
    def patterns(self) -> Mapping[str, str]:
        # The name shape and word lists as regexes too: the rules in `find` apply them, and another tool
        # can be configured with the same ones (bench/bench_scrub.py configures Presidio this way).
        context = _name_context()
        given = cjk_class_without(self._stop)
        surnames = "".join(sorted(self._surnames))
        return {
            "context": _name_context_pattern(),
            "context_before": word_pattern(w for w, where in context.items() if where != "after"),
            "context_after": word_pattern(w for w, where in context.items() if where in ("after", "both")),
            "sex_after": _SEX_AFTER,
            "name": rf"(?:{word_pattern(self._compound)}|[{surnames}]){given}{{1,2}}",
            "not_name": word_pattern(self._not_names),
        }

    def find(self, text: str) -> list[PhiSpan]:
        spans: list[PhiSpan] = []
        n = len(text)
        ending_at, starting_at = self._name_ending_at, self._name_starting_at
        for m in self._sex.finditer(text):
            name_start = ending_at(text, m.start())
            if name_start >= 0:
                spans.append(PhiSpan(PhiKind.NAME, name_start, m.start(), self.name, 0.75))
        for m in self._pattern.finditer(text):
            start, end = m.span()
            backward, forward, weak = self._context[m.group()]
            if backward:
                name_start = ending_at(text, start)
                if name_start >= 0:
                    spans.append(PhiSpan(PhiKind.NAME, name_start, start, self.name, 0.8))
            if not forward:
                continue
            p = end
            if p < n and text[p] in ":： \t":
                p += 2 if p + 1 < n and text[p + 1] in ":： \t" else 1
            while True:  # 医师：张三、李四 - a list of names after one context word
                name_end = starting_at(text, p, weak=weak)
                if name_end < 0:
                    break
                spans.append(PhiSpan(PhiKind.NAME, p, name_end, self.name, 0.7 if weak else 0.85))
                if weak or name_end >= n or text[name_end] not in "、/":
                    break
                p = name_end + 1
        return spans

    def _is_given_char(self, char: str) -> bool:
        return "\u4e00" <= char <= "\u9fff" and char not in self._stop

    def _starts_word(self, text: str, at: int) -> bool:
        """Whether a known non-name word starts at ``at``."""
        return text[at : at + 1] in self._word_heads and (
            text[at : at + 2] in self._not_names
            or text[at : at + 3] in self._not_names
            or text[at : at + 4] in self._not_names
        )

    def _name_starting_at(self, text: str, p: int, *, weak: bool) -> int:
        """End of the name starting at ``p``, or -1 if none starts there."""
        n = len(text)
        if text[p : p + 2] in self._compound:
            q = p + 2
        elif p < n and text[p] in (self._common if weak else self._surnames):
            q = p + 1
        else:
            return -1
        if self._starts_word(text, p) or q >= n or not self._is_given_char(text[q]):
            return -1
        if self._starts_word(text, q):
            return -1
        end = q + 1
        if end < n and self._is_given_char(text[end]) and not self._starts_word(text, end):
            end += 1
        if not weak:
            return end
        # After 患者 a name must be followed by a boundary (患者张口困难 is not a name): try the longer name,
        # then the shorter one.
        for candidate in (end, q + 1) if end > q + 1 else (end,):
            if self._is_boundary(text, candidate):
                return candidate
        return -1

    def _is_boundary(self, text: str, at: int) -> bool:
        """Whether a name may end before ``at``: end of text, not CJK, a stop character or a known word."""
        return (
            at >= len(text) or not _is_cjk(text[at]) or text[at] in self._stop or self._starts_word(text, at)
        )

    def _name_ending_at(self, text: str, end: int) -> int:
        """Start of the name ending just before ``end`` (a title follows it), or -1 if none ends there."""
        if end < 2 or not self._is_given_char(text[end - 1]):
            return -1
        valid: dict[int, int] = {}  # length -> start
        for length in (4, 3, 2):
            start = end - length
            if start < 0:
                continue
            head2 = text[start : start + 2]
            if head2 in self._compound:
                given = text[start + 2 : end]
                if not 1 <= len(given) <= 2:
                    continue
            elif text[start] in self._surnames and length <= 3:
                given = text[start + 1 : end]
            else:
                continue
            if not all(self._is_given_char(c) for c in given) or self._starts_word(text, start):
                continue
            if text[start:end] in self._not_names or any(
                self._starts_word(text, i) for i in range(start + 1, end)
            ):
                continue
            if head2 in self._compound:
                return start  # a compound surname is distinctive: take the longest such name
            valid[length] = start
        if 3 in valid:
            start = valid[3]
            before = text[start - 1] if start > 0 else ""
            # 今日随张三主任: 随 is a surname but here a function word, so a three-character name needs a
            # boundary before it, or a surname more common than the two-character reading's (兹证明赵梅康，男:
            # 赵 is far more common than 梅).
            if text[start] not in self._stop and (
                not _is_cjk(before)
                or before in self._stop
                or 2 not in valid
                or self._rank[text[start]] < self._rank.get(text[start + 1], len(self._rank))
            ):
                return start
        if 2 in valid:
            return valid[2]
        return valid.get(3, -1)


# ----------------------------------------------------------------------------------------------------
# Addresses

# Characters that end an address name part on its left: the verbs and prepositions that introduce an address
# (现住, 居住, 来自, 地址为), so the address starts after them. 于, 向 and 由 also introduce addresses but
# start place names too (沈阳市于洪区, 向阳路), so they are left in: a span that takes one preposition too
# many still removes the whole address.
_ADDRESS_STOP = "住址在居籍贯的是为与及到至往从来系即电话陪诉因"
# Inside the pattern a city or district name also never contains 省 or 自 (the province, 自治区 included,
# comes from the province list), so 浙江省杭州市 is not read as a city named 浙江省杭州.
_ADDRESS_NAME_STOP = _ADDRESS_STOP + "省自"
# Words that can lead into an address without a stop character between (患者上海市…); stripped.
_ADDRESS_LEADS = ("患者", "病人", "家属", "现", "户口", "原", "老家", "目前", "联系")
# Units of an address below district level (GB/T 2260 stops at district; streets and houses follow the
# Ministry of Civil Affairs 地名 conventions): roads, numbered lanes and houses, towns, villages, compounds,
# buildings and rooms.
_ROAD_SUFFIX = "大道|大街|路|街|巷|胡同"
_COMPOUND_SUFFIX = "小区|新村|花园|公寓|家园|大厦|广场|苑|村|社区"
_UNIT = r"(?:[0-9]{1,5}(?:-[0-9]{1,5})?(?:号楼|号院|号|幢|栋|座|单元|楼|层|室|组|户)|[A-Za-z](?:座|栋|幢))"


@functools.cache
def _address_pattern() -> str:
    a = cjk_class_without(_ADDRESS_NAME_STOP)
    province = word_pattern(lexicon().provinces)
    city = rf"(?:{a}{{1,5}}?(?:自治州|地区|市|州|盟))"
    district = rf"(?:{a}{{1,5}}?(?:新区|区|县|旗|市))"
    admin = rf"(?P<admin>(?:{province})?{city}?{district}?)"
    town = rf"(?:{a}{{1,8}}?(?:街道|镇|乡))"
    road = rf"(?:{a}{{1,10}}?(?:{_ROAD_SUFFIX}))"
    number = r"(?:[0-9]{1,5}(?:-[0-9]{1,5})?(?:号|弄|支弄|巷))"
    # Greedy, so 翠苑家园 is one compound rather than 翠苑 followed by junk.
    compound = rf"(?:{a}{{1,8}}(?:{_COMPOUND_SUFFIX})|{a}{{2,6}}(?={_UNIT}))"
    return (
        rf"{admin}(?P<local>{town}?{road}{number}{compound}?{_UNIT}*"
        rf"|{town}?{road}?{compound}{_UNIT}+"
        rf"|{town}(?:{compound})?{_UNIT}*)"
    )


# Where an address may be: a numbered unit, a town or a village. The full address pattern runs only in a
# window around these, since running it at every character of a note is the slowest step of all.
_ADDRESS_ANCHOR = r"(?=[0-9镇乡街村])(?:[0-9](?:号|弄|室|幢|栋|单元|组)|镇(?![静痛定咳吐])|乡|街道|村)"
_ANCHOR_BEFORE, _ANCHOR_AFTER = 48, 32


class AddressRecogniser(RuleRecogniser):
    """Addresses below district level: a road and number, a compound and units, or a town or village.

    Province, city and district before them belong to the span (the scrubber keeps them and drops the
    rest). A town or village with no number counts only when a city or district is written before it.
    """

    name = "address"
    kind = PhiKind.ADDRESS

    def __init__(self) -> None:
        self._anchor = re.compile(_ADDRESS_ANCHOR)
        self._pattern = re.compile(_address_pattern())

    @property
    def patterns(self) -> Mapping[str, str]:
        part = cjk_class_without(_ADDRESS_STOP)[:-1] + "0-9A-Za-z-]"
        return {"address": _address_pattern(), "anchor": _ADDRESS_ANCHOR, "part": part}

    def find(self, text: str) -> list[PhiSpan]:
        spans: list[PhiSpan] = []
        covered = 0
        for anchor in self._anchor.finditer(text):
            at = anchor.start()
            if at < covered:
                continue
            # The address starts where the run of address characters around the anchor starts (after 住, 于,
            # a comma...), less a word that leads into it; matching there first was several times faster
            # than searching the whole window, which is the fallback when the run starts with other words.
            start, low = at, max(covered, at - _ANCHOR_BEFORE)
            while start > low and self._is_part(text[start - 1]):
                start -= 1
            while True:
                lead = next((w for w in _ADDRESS_LEADS if text.startswith(w, start)), None)
                if lead is None or start + len(lead) >= at:
                    break
                start += len(lead)
            high = min(len(text), anchor.end() + _ANCHOR_AFTER)
            m = self._pattern.match(text, start, high)
            if m is None or m.end() <= at:
                m = self._pattern.search(text, start, high)
                while m is not None and m.end() <= at:
                    m = self._pattern.search(text, m.end(), high)
                if m is None or m.start() > at:
                    continue
            local = m["local"]
            has_unit = any(c.isdigit() for c in local)
            if local and (has_unit or m["admin"]):
                spans.append(self._span(m.start(), m.end(), 0.85 if has_unit else 0.7))
                covered = m.end()
        return spans

    @staticmethod
    def _is_part(char: str) -> bool:
        return (_is_cjk(char) and char not in _ADDRESS_STOP) or (
            char.isascii() and (char.isalnum() or char == "-")
        )

    def split(self, address: str) -> tuple[str, str]:
        """Split an address found by `find` into its province/city/district part and the rest."""
        m = self._pattern.fullmatch(address)
        if m is None:
            return "", address
        return m["admin"], m["local"]


# ----------------------------------------------------------------------------------------------------
# Institutions

# Characters an institution's name never contains, so its left edge is the last of them before the ending:
# punctuation is not CJK and never part of the body anyway; these are the prepositions and verbs that lead
# into a hospital's name (由…转入, 于…就诊, 至…复查, 在…住院).
_INSTITUTION_STOP = "我在于由至到往赴去从经转送就曾系为的等请向自被把将诉住患者回返入出已今昨并或、"
# Conjunctions end a name only right after another institution (A医院和B医院); elsewhere they belong to it
# (北京协和医院).
_INSTITUTION_CONJUNCTIONS = "和与及"
_INSTITUTION_BRANCH = r"(?:分院|总院|[东西南北]院|[（(][\u4e00-\u9fff]{1,6}(?:院区|分院|院)[）)])?"
_INSTITUTION_MAX = 20


class InstitutionRecogniser(RuleRecogniser):
    """Named hospitals, health centres, clinics, schools and companies, found from their ending (…医院)."""

    name = "institution"
    kind = PhiKind.INSTITUTION

    def __init__(self) -> None:
        lx = lexicon()
        self._suffix = re.compile(word_pattern(lx.institution_suffixes) + _INSTITUTION_BRANCH)
        self._stop = frozenset(_INSTITUTION_STOP)
        # Digits and Latin letters belong to names too (301医院, 惠州MBP软件科技有限公司).
        self._body = re.compile(rf"(?:{cjk_class_without(self._stop)}|[0-9A-Za-z])+\Z")
        self._generic = tuple(lx.institution_generic)
        self._leads = tuple(sorted(lx.institution_leads, key=len, reverse=True))

    @property
    def patterns(self) -> Mapping[str, str]:
        body = f"(?:{cjk_class_without(self._stop)}|[0-9A-Za-z])"
        return {
            "ending": self._suffix.pattern,
            "body": body,
            "institution": f"{body}{{2,{_INSTITUTION_MAX}}}{self._suffix.pattern}",
            "generic": word_pattern(self._generic),
            "lead": word_pattern(self._leads),
        }

    def find(self, text: str) -> list[PhiSpan]:
        spans: list[PhiSpan] = []
        ends: list[int] = []
        for m in self._suffix.finditer(text):
            # The name runs left from the ending over body characters (a regex anchored at the ending finds
            # the start of that run in C), but never over a conjunction just after another institution.
            body = self._body.search(text, max(0, m.start() - _INSTITUTION_MAX), m.start())
            start = m.start() if body is None else body.start()
            for end in ends:
                if start <= end < m.start() and text[end] in _INSTITUTION_CONJUNCTIONS:
                    start = end + 1
            ends.append(m.end())
            # Strip a word that leads into a name (既往, 患者); str.startswith with a tuple tests them in C.
            if text.startswith(self._leads, start):
                start += next(len(w) for w in self._leads if text.startswith(w, start))
            name = text[start : m.start()]
            if len(name) < 2 or name.startswith(self._generic):
                continue
            spans.append(self._span(start, m.end(), 0.8))
        return spans


# ----------------------------------------------------------------------------------------------------
# The slot for a trained model


class SpanModel(Protocol):
    """A trained sequence-labelling model (e.g. BERT-CRF) that tags identifiers in one note.

    medspace ships and downloads no model: a site that has one, trained and validated on its own notes,
    wraps it in this protocol and passes ``ModelRecogniser(model)`` to the scrubber next to the rule
    recognisers; overlaps with rule spans are resolved the same way as between rules.
    """

    def predict(self, text: str) -> Iterable[tuple[PhiKind, int, int, float]]:
        """Spans as (kind, start, end, score), with offsets into ``text``."""
        ...


class ModelRecogniser:
    """Adapts a `SpanModel` to the recogniser contract; spans below ``min_score`` are dropped.

    Example:
        >>> class Toy:
        ...     def predict(self, text):
        ...         return [(PhiKind.NAME, 0, 2, 0.9)] if text.startswith("张三") else []
        >>> [s.kind.value for s in ModelRecogniser(Toy()).find("张三来诊")]
        ['NAME']
    """

    def __init__(
        self,
        model: SpanModel,
        *,
        name: str = "model",
        kinds: frozenset[PhiKind] = frozenset(PhiKind),
        min_score: float = 0.5,
    ) -> None:
        self._model = model
        self._name = name
        self._kinds = kinds
        self._min_score = min_score

    @property
    def name(self) -> str:
        """The name recorded on spans the model finds."""
        return self._name

    @property
    def kinds(self) -> frozenset[PhiKind]:
        """The kinds kept from the model's output."""
        return self._kinds

    def find(self, text: str) -> list[PhiSpan]:
        """Run the model and keep its spans of the configured kinds and minimum score."""
        return [
            PhiSpan(PhiKind(kind), start, end, self._name, score)
            for kind, start, end, score in self._model.predict(text)
            if kind in self._kinds and score >= self._min_score and 0 <= start < end <= len(text)
        ]


# ----------------------------------------------------------------------------------------------------
# Registry

#: Every built-in rule recogniser by name. Adding one means one class and one entry here.
RECOGNISERS: Mapping[str, Callable[[], RuleRecogniser]] = {
    cls.name: cls
    for cls in (
        ResidentIdRecogniser,
        PhoneRecogniser,
        HospitalNumberRecogniser,
        DateRecogniser,
        PersonNameRecogniser,
        AddressRecogniser,
        InstitutionRecogniser,
    )
}


def default_recognisers() -> list[RuleRecogniser]:
    """One instance of every registered rule recogniser, in registry order.

    Returns:
        The recognisers the scrubber uses when given none.

    Example:
        >>> sorted(r.kind.value for r in default_recognisers())
        ['ADDRESS', 'DATE', 'HOSPITAL_NO', 'ID', 'INSTITUTION', 'NAME', 'PHONE']
    """
    return [factory() for factory in RECOGNISERS.values()]
