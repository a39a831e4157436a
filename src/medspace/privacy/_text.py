"""De-identification of Chinese clinical free text: find identifiers in notes and replace them.

A `TextScrubber` runs the recognisers (the built-in rules of ``_text_recognisers``, optionally a site's
trained model through ``ModelRecogniser``) over a note, adds the identifiers the hospital already knows for
the patient (their name from the person record, found wherever it occurs), keeps one span per stretch of
text, and replaces each span: dates are shifted by the patient's date offset in their own format, everything
else gets a keyed surrogate that is the same for the same patient and value throughout one product
(``_text_surrogates``). It is the free-text step of ``medspace deid`` (issue 5, item 4).

This module handles identifiable text; it logs nothing, and its errors never contain note text.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    date_fields,
    default_recognisers,
)
from medspace.privacy._text_spans import PhiKind, PhiSpan, Recogniser, count_kinds, resolve_overlaps
from medspace.privacy._text_surrogates import Surrogates, parse_date, shift_parsed

__all__ = [
    "RECOGNISERS",
    "AddressRecogniser",
    "DateRecogniser",
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

# The name recorded on spans found from known identifiers; they are certain, so their score is 1.
KNOWN = "known"
# Known values shorter than this are not searched for: a one-character "name" would match everywhere.
_MIN_KNOWN_LENGTH = 2
# Surrogates cached per scrubber: a patient's notes repeat the same identifiers, and each surrogate costs an
# HMAC. Bounded so a long batch does not keep every patient's identifiers in memory.
_CACHE_LIMIT = 50_000
# Notes per block in `find_batch`: enough to keep one recogniser's data hot, few enough to stay in cache.
_BLOCK = 64
_KIND_RANK = {kind: rank for rank, kind in enumerate(PhiKind)}


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
    for kind, values in known.items():
        for value in set(values):
            value = value.strip()
            if len(value) < _MIN_KNOWN_LENGTH:
                continue
            # str.find runs in C; compiling a regex per patient was rejected as slower for a few values.
            at = text.find(value)
            while at >= 0:
                spans.append(PhiSpan(PhiKind(kind), at, at + len(value), KNOWN, 1.0))
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
        self._cache: dict[tuple[PhiKind, str, str, int], str] = {}

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
    ) -> list[ScrubbedText]:
        """Scrub many notes; the same result as `scrub` on each, faster.

        Notes go in blocks: each recogniser runs over the block (`find_batch`), then the block's new
        surrogates are made kind by kind, then each note is assembled. Making surrogates note by note,
        interleaved with assembling, ran a third slower for the same work.

        Args:
            texts: The notes.
            person_keys: The patient of each note.
            date_offsets: Each note's date offset in days, or None to derive each from the key.
            known: Each note's known identifiers, or None.

        Returns:
            One `ScrubbedText` per note, in order.

        Raises:
            InputError: If the sequences differ in length, or a person key is empty.
        """
        _check_lengths(texts, person_keys, date_offsets, known)
        out: list[ScrubbedText] = []
        for first in range(0, len(texts), _BLOCK):
            block = texts[first : first + _BLOCK]
            keys = person_keys[first : first + _BLOCK]
            offsets = [
                self._key.date_offset_days(p) if date_offsets is None else date_offsets[first + i]
                for i, p in enumerate(keys)
            ]
            found = self.find_batch(block, None if known is None else known[first : first + _BLOCK])
            self._make_surrogates(block, found, keys, offsets)
            out.extend(
                self.replace(text, spans, person_key, offset)
                for text, spans, person_key, offset in zip(block, found, keys, offsets, strict=True)
            )
        return out

    def _make_surrogates(
        self,
        texts: Sequence[str],
        found: Sequence[Sequence[PhiSpan]],
        person_keys: Sequence[str],
        offsets: Sequence[int],
    ) -> None:
        """Fill the surrogate cache for every span of a block of notes, kind by kind."""
        missing: dict[tuple[PhiKind, str, str, int], None] = {}
        for text, spans, person_key, offset in zip(texts, found, person_keys, offsets, strict=True):
            if not person_key:
                raise InputError("every note needs the key of its patient; pass a non-empty person_key")
            for span in spans:
                if span.kind is not PhiKind.DATE:
                    cache_key: tuple[PhiKind, str, str, int] = (
                        span.kind,
                        text[span.start : span.end],
                        person_key,
                        offset,
                    )
                    if cache_key not in self._cache:
                        missing[cache_key] = None
        if len(self._cache) + len(missing) > _CACHE_LIMIT:
            self._cache.clear()
        for kind, original, person_key, offset in sorted(missing, key=lambda k: _KIND_RANK[k[0]]):
            self._cache[kind, original, person_key, offset] = self._surrogates.surrogate(
                kind, original, person_key, offset
            )

    def scrub(
        self,
        text: str,
        *,
        person_key: str,
        date_offset_days: int | None = None,
        known: KnownIdentifiers | None = None,
    ) -> ScrubbedText:
        """Replace the identifiers in one note.

        Args:
            text: The note.
            person_key: A stable key of the patient the note is about; surrogates are consistent per key.
            date_offset_days: Days to shift every date by; the key's ``date_offset_days(person_key)`` if
                None, which is the offset the structured tables of the product use.
            known: Identifiers the hospital already knows for this patient.

        Returns:
            The scrubbed note, the spans found (offsets into ``text``) and counts per kind.

        Raises:
            InputError: If ``person_key`` is empty.
        """
        return self.replace(text, self.find(text, known=known), person_key, date_offset_days)

    def replace(
        self, text: str, spans: Sequence[PhiSpan], person_key: str, date_offset_days: int | None = None
    ) -> ScrubbedText:
        """Replace already found, non-overlapping spans (from `find` or `find_batch`) in one note.

        Args:
            text: The note.
            spans: Its identifiers, sorted by start and not overlapping.
            person_key: As for `scrub`.
            date_offset_days: As for `scrub`.

        Returns:
            As for `scrub`.

        Raises:
            InputError: If ``person_key`` is empty.
        """
        if not person_key:
            raise InputError("every note needs the key of its patient; pass a non-empty person_key")
        offset = self._key.date_offset_days(person_key) if date_offset_days is None else date_offset_days
        # Dates are parsed once: for their year (a day without a year takes the nearest year written in the
        # note) and to shift them.
        dates: dict[int, re.Match[str] | None] = {}
        years: list[tuple[int, int]] = []
        for span in spans:
            if span.kind is PhiKind.DATE:
                match = dates[span.start] = parse_date(text[span.start : span.end])
                if match is not None and (year := date_fields(match)[0]) is not None:
                    years.append((span.start, year))
        pieces: list[str] = []
        done = 0
        cache = self._cache
        for span in spans:
            original = text[span.start : span.end]
            pieces.append(text[done : span.start])
            if span.kind is PhiKind.DATE:
                match = dates[span.start]
                shifted = (
                    None if match is None else shift_parsed(match, offset, _nearest_year(years, span.start))
                )
                # A date a model found in a format the rules do not read cannot be shifted; it is masked.
                pieces.append("X" * len(original) if shifted is None else shifted)
            else:
                cache_key = (span.kind, original, person_key, offset)
                value = cache.get(cache_key)
                if value is None:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    value = cache[cache_key] = self._surrogates.surrogate(
                        span.kind, original, person_key, offset
                    )
                pieces.append(value)
            done = span.end
        pieces.append(text[done:])
        return ScrubbedText("".join(pieces), tuple(spans), count_kinds(spans))


def _nearest_year(years: list[tuple[int, int]], at: int) -> int | None:
    """The year of the dated span nearest to offset ``at``, or None if the note has none."""
    if not years:
        return None
    i = bisect.bisect_left(years, (at, 0))
    near = [years[j] for j in (i - 1, i) if 0 <= j < len(years)]
    return min(near, key=lambda item: abs(item[0] - at))[1]


def scrub_texts(
    texts: Sequence[str],
    person_keys: Sequence[str],
    date_offsets: Sequence[int] | None,
    key: ProductKey,
    *,
    known: Sequence[KnownIdentifiers | None] | None = None,
    recognisers: Sequence[Recogniser] | None = None,
) -> list[ScrubbedText]:
    """Scrub a batch of notes with one scrubber (compiled patterns and surrogate cache shared).

    Args:
        texts: The notes.
        person_keys: The patient of each note.
        date_offsets: Each note's date offset in days, or None to derive each from ``key``.
        key: The product's key.
        known: Each note's known identifiers (None for a note without any), or None for none at all.
        recognisers: As for `TextScrubber`.

    Returns:
        One `ScrubbedText` per note, in order.

    Raises:
        InputError: If the sequences differ in length, or a person key is empty.

    Example:
        >>> key = ProductKey.from_hex("00" * 32)
        >>> [s.text for s in scrub_texts(["2024-01-31 复诊"], ["P1"], [1], key)]
        ['2024-02-01 复诊']
    """
    return TextScrubber(key, recognisers).scrub_batch(texts, person_keys, date_offsets, known)


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
