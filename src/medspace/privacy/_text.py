"""De-identification of Chinese clinical free text: find identifiers in notes and replace them.

A `TextScrubber` runs the recognisers (the built-in rules of ``_text_recognisers``, optionally a site's
trained model through ``ModelRecogniser``) over a note, adds the identifiers the hospital already knows for
the patient (their name from the person record, found wherever it occurs), keeps one span per stretch of
text, and replaces each span: dates are shifted by the patient's date offset in their own format (or, for
profiles such as HIPAA Safe Harbor, cut to their year), everything else gets a keyed surrogate that is the
same for the same patient and value throughout one product (``_text_surrogates``). It is the free-text step
of ``medspace deid`` (issue 5, item 4).

This module handles identifiable text; it logs nothing, and its errors never contain note text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from medspace.core import InputError
from medspace.privacy._keys import ProductKey
from medspace.privacy._text_recognisers import (
    RECOGNISERS,
    AddressRecogniser,
    DateRecogniser,
    HospitalNumberRecogniser,
    InstitutionRecogniser,
    ModelRecogniser,
    PersonNameRecogniser,
    PhoneRecogniser,
    ResidentIdRecogniser,
    RuleRecogniser,
    SpanModel,
    default_recognisers,
)
from medspace.privacy._text_spans import PhiKind, PhiSpan, Recogniser, count_kinds, resolve_overlaps
from medspace.privacy._text_surrogates import Surrogates, replace_dates

__all__ = [
    "RECOGNISERS",
    "AddressRecogniser",
    "DateRecogniser",
    "DateTreatment",
    "HospitalNumberRecogniser",
    "InstitutionRecogniser",
    "KnownIdentifiers",
    "ModelRecogniser",
    "PersonNameRecogniser",
    "PhiKind",
    "PhiSpan",
    "PhoneRecogniser",
    "Recogniser",
    "ResidentIdRecogniser",
    "RuleRecogniser",
    "ScrubbedText",
    "SpanModel",
    "TextScrubber",
    "default_recognisers",
    "resolve_overlaps",
    "scrub_texts",
]

#: Identifiers the hospital already holds for one patient, by kind (e.g. their name from the person record).
KnownIdentifiers = Mapping[PhiKind, Sequence[str]]
#: What happens to the dates in notes: ``"shift"`` moves them by the patient's date offset (intervals kept),
#: ``"year_only"`` keeps only their year (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C)).
DateTreatment = Literal["shift", "year_only"]
_DATE_TREATMENTS: tuple[str, ...] = get_args(DateTreatment)
# A cached surrogate: kind (as a plain string), original, person key and date offset (None when dates keep
# only their year). Holding the enum member, a key would stay tracked by the garbage collector, and every full
# collection would walk the tens of thousands of keys a batch caches.
_CacheKey = tuple[str, str, str, int | None]
_KIND_NAME = {kind: kind.value for kind in PhiKind}

# The name recorded on spans found from known identifiers; they are certain, so their score is 1.
KNOWN = "known"
# Known values shorter than this are not searched for: a one-character "name" would match everywhere.
_MIN_KNOWN_LENGTH = 2
# Surrogates cached per scrubber: a patient's notes repeat the same identifiers, and each surrogate costs an
# HMAC. Bounded so a long batch does not keep every patient's identifiers in memory.
_CACHE_LIMIT = 50_000
# Notes per block in `find_batch`: enough to keep one recogniser's data hot, few enough to stay in cache.
_BLOCK = 64


@dataclass(frozen=True)
class ScrubbedText:
    """One note after scrubbing.

    Attributes:
        text: The note with every identifier replaced.
        spans: The identifiers found, with offsets into the original note (not into ``text``).
        counts: How many identifiers of each kind were replaced; every kind is present.
    """

    text: str
    spans: tuple[PhiSpan, ...]
    counts: Mapping[PhiKind, int] = field(default_factory=dict)


def known_spans(text: str, known: KnownIdentifiers) -> list[PhiSpan]:
    """Every occurrence in ``text`` of the known identifiers.

    Args:
        text: One note.
        known: Identifiers by kind; values shorter than two characters are ignored.

    Returns:
        One span per occurrence, with recogniser ``"known"`` and score 1.

    Example:
        >>> spans = known_spans("张三诉头痛，张三之妻陪同", {PhiKind.NAME: ["张三"]})
        >>> [(s.kind.value, s.start) for s in spans]
        [('NAME', 0), ('NAME', 6)]
    """
    spans: list[PhiSpan] = []
    for written_kind, values in known.items():
        kind = PhiKind(written_kind)
        for value in set(values):
            value = value.strip()
            if len(value) < _MIN_KNOWN_LENGTH:
                continue
            # str.find runs in C; compiling a regex per patient was rejected as slower for a few values.
            at = text.find(value)
            while at >= 0:
                spans.append(PhiSpan(kind, at, at + len(value), KNOWN, 1.0))
                at = text.find(value, at + len(value))
    return spans


class TextScrubber:
    """Finds and replaces identifiers in Chinese clinical notes for one data product.

    Args:
        key: The product's key; surrogates derive from it, so another product's notes get other surrogates.
        recognisers: The recognisers to run; one of each registered rule recogniser if None. Pass
            ``[*default_recognisers(), ModelRecogniser(model)]`` to add a trained model.

    Example:
        >>> scrubber = TextScrubber(ProductKey.from_hex("00" * 32))
        >>> out = scrubber.scrub("患者张三，2023年5月6日入院。", person_key="P1", date_offset_days=10)
        >>> out.text.endswith("，2023年5月16日入院。"), "张三" in out.text, out.counts[PhiKind.NAME]
        (True, False, 1)
    """

    def __init__(self, key: ProductKey, recognisers: Sequence[Recogniser] | None = None) -> None:
        self._key = key
        self._recognisers: tuple[Recogniser, ...] = (
            tuple(default_recognisers()) if recognisers is None else tuple(recognisers)
        )
        self._surrogates = Surrogates(key)
        self._cache: dict[_CacheKey, str] = {}

    @property
    def recognisers(self) -> tuple[Recogniser, ...]:
        """The recognisers this scrubber runs."""
        return self._recognisers

    def find(self, text: str, *, known: KnownIdentifiers | None = None) -> list[PhiSpan]:
        """Find the identifiers in one note.

        Args:
            text: The note.
            known: Identifiers the hospital already knows for this patient, found wherever they occur.

        Returns:
            Non-overlapping spans sorted by start (see `resolve_overlaps` for which span wins an overlap).
        """
        spans: list[PhiSpan] = []
        for recogniser in self._recognisers:
            spans.extend(recogniser.find(text))
        if known:
            spans.extend(known_spans(text, known))
        return resolve_overlaps(spans)

    def find_batch(
        self, texts: Sequence[str], known: Sequence[KnownIdentifiers | None] | None = None
    ) -> list[list[PhiSpan]]:
        """Find the identifiers in many notes; the same spans as `find` on each, faster.

        Each recogniser runs over a block of notes before the next one starts: alternating seven recognisers
        note by note kept evicting each other's compiled patterns and word lists from the CPU caches, which
        cost about a fifth of the time.

        Args:
            texts: The notes.
            known: Each note's known identifiers, or None.

        Returns:
            One list of spans per note, as `find` returns them.
        """
        out: list[list[PhiSpan]] = []
        for first in range(0, len(texts), _BLOCK):
            block = texts[first : first + _BLOCK]
            candidates: list[list[PhiSpan]] = [[] for _ in block]
            for recogniser in self._recognisers:
                find = recogniser.find
                for spans, text in zip(candidates, block, strict=True):
                    spans.extend(find(text))
            for i, (spans, text) in enumerate(zip(candidates, block, strict=True)):
                note_known = None if known is None else known[first + i]
                if note_known:
                    spans.extend(known_spans(text, note_known))
                out.append(resolve_overlaps(spans))
        return out

    def scrub_batch(
        self,
        texts: Sequence[str],
        person_keys: Sequence[str],
        date_offsets: Sequence[int] | None = None,
        known: Sequence[KnownIdentifiers | None] | None = None,
        *,
        dates: DateTreatment = "shift",
    ) -> list[ScrubbedText]:
        """Scrub many notes; the same result as `scrub` on each, faster.

        Notes go in blocks: each recogniser runs over the block (`find_batch`), then the block's new
        surrogates are made kind by kind, then each note is assembled. Making surrogates note by note,
        interleaved with assembling, ran a fifth slower for the same work.

        Args:
            texts: The notes.
            person_keys: The patient of each note.
            date_offsets: Each note's date offset in days, or None to derive each from the key.
            known: Each note's known identifiers, or None.
            dates: As for `scrub`.

        Returns:
            One `ScrubbedText` per note, in order.

        Raises:
            InputError: If the sequences differ in length, or a person key is empty.
        """
        _check_lengths(texts, person_keys, date_offsets, known)
        _check_dates(dates)
        out: list[ScrubbedText] = []
        for first in range(0, len(texts), _BLOCK):
            block = texts[first : first + _BLOCK]
            keys = person_keys[first : first + _BLOCK]
            if dates == "year_only":
                offsets: list[int | None] = [None] * len(block)
            else:
                offsets = [
                    self._key.date_offset_days(p) if date_offsets is None else date_offsets[first + i]
                    for i, p in enumerate(keys)
                ]
            found = self.find_batch(block, None if known is None else known[first : first + _BLOCK])
            replacements = self._replacements(block, found, keys, offsets)
            out.extend(
                _assemble(text, spans, values)
                for text, spans, values in zip(block, found, replacements, strict=True)
            )
        return out

    def _replacements(
        self,
        texts: Sequence[str],
        found: Sequence[Sequence[PhiSpan]],
        person_keys: Sequence[str],
        offsets: Sequence[int | None],
    ) -> list[list[str]]:
        """The replacement of every span of a block of notes; an offset of None keeps only dates' years.

        Surrogates not in the cache yet are made after the whole block has been read, kind by kind (see
        `scrub_batch`), and written into their places in each note's list.
        """
        cache = self._cache
        # Where each new surrogate goes (a note's list of replacements and the index in it), by kind and
        # cache key, in PhiKind order and the order the keys were first seen.
        missing: dict[PhiKind, dict[_CacheKey, list[tuple[list[str], int]]]] = {kind: {} for kind in PhiKind}
        out: list[list[str]] = []
        date_kind, kind_name = PhiKind.DATE, _KIND_NAME
        for text, spans, person_key, offset in zip(texts, found, person_keys, offsets, strict=True):
            if not person_key:
                raise InputError("every note needs the key of its patient; pass a non-empty person_key")
            values: list[str] = []
            dated: list[tuple[int, PhiSpan]] = []
            for span in spans:
                kind = span.kind
                if kind is date_kind:
                    dated.append((len(values), span))
                    values.append("")
                    continue
                cache_key = (kind_name[kind], text[span.start : span.end], person_key, offset)
                value = cache.get(cache_key)
                if value is None:
                    missing[kind].setdefault(cache_key, []).append((values, len(values)))
                    value = ""
                values.append(value)
            if dated:
                replaced = replace_dates(text, [span for _, span in dated], offset)
                for (i, _), value in zip(dated, replaced, strict=True):
                    values[i] = value
            out.append(values)
        if len(cache) + sum(map(len, missing.values())) > _CACHE_LIMIT:
            cache.clear()
        surrogate = self._surrogates.surrogate
        for kind, new in missing.items():
            for cache_key, places in new.items():
                value = cache[cache_key] = surrogate(kind, *cache_key[1:])
                for values, i in places:
                    values[i] = value
        return out

    def scrub(
        self,
        text: str,
        *,
        person_key: str,
        date_offset_days: int | None = None,
        known: KnownIdentifiers | None = None,
        dates: DateTreatment = "shift",
    ) -> ScrubbedText:
        """Replace the identifiers in one note.

        Args:
            text: The note.
            person_key: A stable key of the patient the note is about; surrogates are consistent per key.
            date_offset_days: Days to shift every date by; the key's ``date_offset_days(person_key)`` if
                None, which is the offset the structured tables of the product use.
            known: Identifiers the hospital already knows for this patient.
            dates: ``"shift"`` moves every date by the offset in its own format, keeping intervals;
                ``"year_only"`` keeps only the year (``2023年5月6日 08:30`` becomes ``2023年``, a day without
                a year becomes ``某日``) and ignores the offset, as HIPAA Safe Harbor requires; the birth date
                inside a resident ID's surrogate then keeps its year only too.

        Returns:
            The scrubbed note, the spans found (offsets into ``text``) and counts per kind.

        Raises:
            InputError: If ``person_key`` is empty or ``dates`` is neither treatment.

        Example:
            >>> scrubber = TextScrubber(ProductKey.from_hex("00" * 32))
            >>> scrubber.scrub("2023-05-06 08:30入院，5月8日手术", person_key="P1", dates="year_only").text
            '2023入院，某日手术'
        """
        return self.replace(text, self.find(text, known=known), person_key, date_offset_days, dates=dates)

    def replace(
        self,
        text: str,
        spans: Sequence[PhiSpan],
        person_key: str,
        date_offset_days: int | None = None,
        *,
        dates: DateTreatment = "shift",
    ) -> ScrubbedText:
        """Replace already found, non-overlapping spans (from `find` or `find_batch`) in one note.

        Args:
            text: The note.
            spans: Its identifiers, sorted by start and not overlapping.
            person_key: As for `scrub`.
            date_offset_days: As for `scrub`.
            dates: As for `scrub`.

        Returns:
            As for `scrub`.

        Raises:
            InputError: If ``person_key`` is empty or ``dates`` is neither treatment.
        """
        _check_dates(dates)
        offset: int | None = None
        if dates == "shift" and person_key:
            offset = self._key.date_offset_days(person_key) if date_offset_days is None else date_offset_days
        values = self._replacements([text], [spans], [person_key], [offset])[0]
        return _assemble(text, spans, values)


def _assemble(text: str, spans: Sequence[PhiSpan], values: Sequence[str]) -> ScrubbedText:
    """The note with each span replaced by its value."""
    pieces: list[str] = []
    append = pieces.append
    done = 0
    for span, value in zip(spans, values, strict=True):
        append(text[done : span.start])
        append(value)
        done = span.end
    append(text[done:])
    return ScrubbedText("".join(pieces), tuple(spans), count_kinds(spans))


def scrub_texts(
    texts: Sequence[str],
    person_keys: Sequence[str],
    date_offsets: Sequence[int] | None,
    key: ProductKey,
    *,
    known: Sequence[KnownIdentifiers | None] | None = None,
    recognisers: Sequence[Recogniser] | None = None,
    dates: DateTreatment = "shift",
) -> list[ScrubbedText]:
    """Scrub a batch of notes with one scrubber (compiled patterns and surrogate cache shared).

    Args:
        texts: The notes.
        person_keys: The patient of each note.
        date_offsets: Each note's date offset in days, or None to derive each from ``key``.
        key: The product's key.
        known: Each note's known identifiers (None for a note without any), or None for none at all.
        recognisers: As for `TextScrubber`.
        dates: As for `TextScrubber.scrub`: ``"shift"`` by each note's offset, or ``"year_only"``.

    Returns:
        One `ScrubbedText` per note, in order.

    Raises:
        InputError: If the sequences differ in length, a person key is empty or ``dates`` is neither
            treatment.

    Example:
        >>> key = ProductKey.from_hex("00" * 32)
        >>> [s.text for s in scrub_texts(["2024-01-31 复诊"], ["P1"], [1], key)]
        ['2024-02-01 复诊']
        >>> [s.text for s in scrub_texts(["2024-01-31 复诊"], ["P1"], None, key, dates="year_only")]
        ['2024 复诊']
    """
    return TextScrubber(key, recognisers).scrub_batch(texts, person_keys, date_offsets, known, dates=dates)


def _check_lengths(
    texts: Sequence[str],
    person_keys: Sequence[str],
    date_offsets: Sequence[int] | None,
    known: Sequence[KnownIdentifiers | None] | None,
) -> None:
    lengths = {len(texts), len(person_keys)}
    if date_offsets is not None:
        lengths.add(len(date_offsets))
    if known is not None:
        lengths.add(len(known))
    if len(lengths) != 1:
        raise InputError(
            "texts, person_keys, date_offsets and known must have one entry per note; "
            "pass sequences of the same length"
        )


def _check_dates(dates: str) -> None:
    if dates not in _DATE_TREATMENTS:
        raise InputError(f"dates must be one of {', '.join(_DATE_TREATMENTS)}; got {dates!r}")
