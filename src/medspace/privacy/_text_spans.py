"""What text de-identification finds in a clinical note: identifier kinds, spans, and the recogniser contract.

A recogniser looks at one note and reports spans of protected health information (PHI): which kind, where
(character offsets into the original text) and how sure it is. Several recognisers usually report the same
characters (a resident ID is also a run of digits a hospital number could be), so one deterministic rule
picks the spans that are kept. The kinds are the labels the synthetic hospital writes for its own notes'
ground truth, so the two can be compared directly.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = ["PhiKind", "PhiSpan", "Recogniser", "resolve_overlaps"]


class PhiKind(StrEnum):
    """A kind of identifier in Chinese clinical free text (domain.md section 4; HIPAA Safe Harbor)."""

    NAME = "NAME"
    """A person's name: the patient, a relative, a doctor or a nurse."""
    ID = "ID"
    """A resident identity number (GB 11643-1999), 18 characters, or the older 15-digit form."""
    PHONE = "PHONE"
    """A mobile or landline telephone number."""
    HOSPITAL_NO = "HOSPITAL_NO"
    """A hospital's own record number: 住院号, 门诊号, 病案号 and the like."""
    ADDRESS = "ADDRESS"
    """An address below district level (street, road, lane, house, room, town or village)."""
    DATE = "DATE"
    """A calendar date with at least a month, optionally with a time of day."""
    INSTITUTION = "INSTITUTION"
    """A named hospital, clinic, community health centre, school or company."""


@dataclass(frozen=True, slots=True)
class PhiSpan:
    """One identifier found in a note.

    Attributes:
        kind: What kind of identifier it is.
        start: Offset of its first character in the original text.
        end: Offset just past its last character (``text[start:end]`` is the identifier).
        recogniser: Name of the recogniser that found it.
        score: How sure the recogniser is, from 0 to 1.
    """

    kind: PhiKind
    start: int
    end: int
    recogniser: str
    score: float

    @property
    def length(self) -> int:
        """Number of characters covered."""
        return self.end - self.start


@runtime_checkable
class Recogniser(Protocol):
    """Finds identifiers of some kinds in one note.

    Built-in rule recognisers live in ``RECOGNISERS``; a trained model plugs in through ``ModelRecogniser``.
    A recogniser never logs or raises with the text it was given.
    """

    @property
    def name(self) -> str:
        """A short unique name, recorded on every span it finds."""
        ...

    @property
    def kinds(self) -> frozenset[PhiKind]:
        """The kinds of identifier it can report."""
        ...

    def find(self, text: str) -> Iterable[PhiSpan]:
        """Report the identifiers in ``text``, in any order; overlaps are allowed."""
        ...


# When two spans of the same length and score overlap, the kind first in this order wins: a validated
# resident ID beats a run of digits read as a phone or hospital number, and any structured identifier beats
# a name guessed from context.
_KIND_ORDER = {
    kind: rank
    for rank, kind in enumerate(
        (
            PhiKind.ID,
            PhiKind.PHONE,
            PhiKind.HOSPITAL_NO,
            PhiKind.DATE,
            PhiKind.ADDRESS,
            PhiKind.INSTITUTION,
            PhiKind.NAME,
        )
    )
}


def resolve_overlaps(spans: Iterable[PhiSpan]) -> list[PhiSpan]:
    """Keep a non-overlapping subset of spans, chosen the same way whatever order they come in.

    The longest span wins, then the highest score, then the kind order ID, PHONE, HOSPITAL_NO, DATE, ADDRESS,
    INSTITUTION, NAME, then the leftmost. Longest first because a longer span usually contains the shorter
    one's evidence plus more (an address contains a district name that looks like a person's name); merging
    overlapping spans into one was rejected, as a merged span has no single kind to replace it with.

    Args:
        spans: Candidate spans, possibly overlapping and duplicated.

    Returns:
        The kept spans, sorted by start offset.

    Example:
        >>> a = PhiSpan(PhiKind.NAME, 0, 2, "name", 0.8)
        >>> b = PhiSpan(PhiKind.ADDRESS, 0, 6, "address", 0.8)
        >>> [s.kind.value for s in resolve_overlaps([a, b])]
        ['ADDRESS']
    """
    # Spans are grouped into clusters of overlapping spans in one sweep by start; most notes' spans overlap
    # nothing, so they are kept as they come, and only within a cluster are spans ranked. Ranking all spans
    # of a note at once gives the same result (spans of different clusters never compete) but was slower.
    kept: list[PhiSpan] = []
    cluster: list[PhiSpan] = []
    cluster_end = -1
    for span in sorted((s for s in spans if 0 <= s.start < s.end), key=_START):
        if span.start >= cluster_end:
            # A new cluster; the last one is settled (a lone span inline, as most are).
            if len(cluster) == 1:
                kept.append(cluster[0])
            elif cluster:
                _keep_best(cluster, kept)
            cluster = [span]
            cluster_end = span.end
        else:
            cluster.append(span)
            if span.end > cluster_end:
                cluster_end = span.end
    _keep_best(cluster, kept)
    return kept


_START = operator.attrgetter("start")
# Every kind at zero, copied for each note: iterating the enum for every note cost more than the counting.
_NO_SPANS = dict.fromkeys(PhiKind, 0)


def _rank(span: PhiSpan) -> tuple[int, float, int, int, str]:
    return (span.start - span.end, -span.score, _KIND_ORDER[span.kind], span.start, span.recogniser)


def _keep_best(cluster: list[PhiSpan], kept: list[PhiSpan]) -> None:
    """Append to ``kept`` the spans of one cluster that win, in start order."""
    if len(cluster) == 1:
        kept.append(cluster[0])
        return
    if len(cluster) == 2:
        # The commonest overlap (a known name the name rules found too). The second span starts before the
        # first ends, so the two overlap and only the better is kept: the general case without two sorts.
        first, second = cluster
        kept.append(first if _rank(first) <= _rank(second) else second)
        return
    chosen: list[PhiSpan] = []
    for span in sorted(cluster, key=_rank):
        if all(span.end <= other.start or other.end <= span.start for other in chosen):
            chosen.append(span)
    kept.extend(sorted(chosen, key=_START))


def count_kinds(spans: Sequence[PhiSpan]) -> dict[PhiKind, int]:
    """How many spans of each kind, with every kind present (zero when none was found)."""
    counts = _NO_SPANS.copy()
    for span in spans:
        counts[span.kind] += 1
    return counts
