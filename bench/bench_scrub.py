"""Benchmark of Chinese clinical free-text scrubbing: medspace's TextScrubber against Microsoft Presidio
configured with the same patterns and the same replacements, on the same synthetic notes, in one process on
one core. Target (issue 5, item 4): 10 times Presidio's throughput in MB/s per core.

The notes come from tests/privacy_notes.py (labelled, written with other templates than the synthetic
hospital's), so both tools are also scored against the gold spans: a speed comparison means something only
if they find comparable spans. Two jobs are timed for each tool, each against the other tool doing the same
job: finding the identifiers (medspace ``find_batch``, Presidio's AnalyzerEngine) and scrubbing them, that is
finding and replacing (medspace ``scrub_texts``, Presidio's AnalyzerEngine then AnonymizerEngine). Both tools
get the patient's known name.

Presidio's analyser gets medspace's regular expressions and word lists (``Recogniser.patterns``), one
PatternRecognizer per kind, with medspace's checksum, region and date checks in ``validate_result`` and its
not-a-name and generic-institution lists in ``invalidate_result``. Rules medspace applies in Python are
written the fastest way the ``regex`` module allows: ``\\K`` after context words (hospital numbers,
landlines, names), a lookahead for titles after names, a lookbehind for where an address or institution may
start. Its spaCy step is replaced by NoOpNlpEngine, so nothing is downloaded and no model runs.

Presidio's anonymizer gets one ``custom`` operator per kind whose function calls what medspace's replace
step runs (``Surrogates.surrogate``; ``shift_parsed`` with ``nearest_year``, which medspace's
``replace_dates`` runs for a whole note at once), bound to the note's patient key and date offset and sharing
one surrogate cache, as medspace's scrubber does; entities are not merged across spaces, as medspace does not
merge them. Where both tools found the same spans the scrubbed notes are then identical, which the benchmark
counts.

Timing is CPU time with the garbage collector paused (see `timed`); ``--keep-gc`` leaves it running.

Usage: python bench/bench_scrub.py [--notes 12000] [--out bench/results/scrub.json] [--keep-gc]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import regex
from benchkit import report
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from medspace.core import check_resident_id, region_codes
from medspace.privacy import PhiKind, ProductKey, TextScrubber, default_recognisers, scrub_texts
from medspace.privacy._text_surrogates import Surrogates, nearest_year, parse_date, parsed_year, shift_parsed
from privacy_notes import KINDS, KindScore, LabelledNote, build_corpus, score


def presidio_engine() -> Any:
    """Presidio's AnalyzerEngine with one PatternRecognizer per kind, built from medspace's patterns."""
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    p = {r.name: r.patterns for r in default_recognisers()}
    regions = region_codes()
    date_pattern = regex.compile(p["date"]["date"])
    not_name = regex.compile(p["person_name"]["not_name"])
    generic = regex.compile(p["institution"]["generic"])

    class ResidentId(PatternRecognizer):  # type: ignore[misc]
        def validate_result(self, pattern_text: str) -> bool:
            value = pattern_text.replace(" ", "").upper()
            if len(value) == 18:
                return check_resident_id(value).valid
            try:
                date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
            except ValueError:
                return False
            return value[:6] in regions

    class Dates(PatternRecognizer):  # type: ignore[misc]
        def validate_result(self, pattern_text: str) -> bool:
            m = date_pattern.fullmatch(pattern_text)
            if m is None:
                return False
            g = m.groupdict()
            year = next((int(g[y]) for y in ("y1", "y2", "y3") if g[y]), 2000)
            month = int(next(g[k] for k in ("m1", "m2", "m3", "m4") if g[k]))
            day = int(next((g[k] for k in ("d1", "d2", "d4") if g[k]), "1"))
            try:
                date(year, month, day)
            except ValueError:
                return False
            return True

    class Names(PatternRecognizer):  # type: ignore[misc]
        def invalidate_result(self, pattern_text: str) -> bool:
            return not_name.match(pattern_text) is not None

    class Institutions(PatternRecognizer):  # type: ignore[misc]
        def invalidate_result(self, pattern_text: str) -> bool:
            return generic.match(pattern_text) is not None

    phone, hospital = p["phone"], p["hospital_number"]
    name, before, after = (
        p["person_name"]["name"],
        p["person_name"]["context_before"],
        p["person_name"]["context_after"],
    )
    address, institution = p["address"], p["institution"]
    # Without an area code and separator a landline needs a phone word before it (as in medspace).
    landline_shape = phone["landline"].replace("(?P<sep>[ -]?))?", "(?P<sep>[ -]))")
    recognizers = [
        ResidentId("ID", "resident_id", "zh", [Pattern("resident_id", p["resident_id"]["resident_id"], 0.9)]),
        PatternRecognizer(
            "PHONE",
            "phone",
            "zh",
            [
                Pattern("mobile", phone["mobile"], 0.9),
                Pattern("landline", landline_shape, 0.85),
                Pattern("landline_context", rf"{phone['context']}.{{0,10}}?\K{phone['landline']}", 0.7),
            ],
        ),
        PatternRecognizer(
            "HOSPITAL_NO",
            "hospital_number",
            "zh",
            [Pattern("hospital_number", rf"{hospital['context']}\K{hospital['number']}", 0.9)],
        ),
        Dates("DATE", "date", "zh", [Pattern("date", p["date"]["date"], 0.95)]),
        Names(
            "NAME",
            "person_name",
            "zh",
            [
                # The first, second and third name of a list after one context word (医师：张三、李四、王五).
                *(
                    Pattern(
                        f"name_before_{i}", rf"{before}[:： \t]{{0,2}}(?:{name}[、/]){{{i}}}\K{name}", 0.85
                    )
                    for i in range(3)
                ),
                Pattern("name_after", f"{name}(?={after}|{p['person_name']['sex_after']})", 0.8),
            ],
        ),
        PatternRecognizer(
            "ADDRESS",
            "address",
            "zh",
            [Pattern("address", f"(?<!{address['part']}){address['address']}", 0.85)],
        ),
        Institutions(
            "INSTITUTION",
            "institution",
            "zh",
            [Pattern("institution", f"(?<!{institution['body']}){institution['institution']}", 0.8)],
        ),
    ]
    for recognizer in recognizers:
        recognizer.global_regex_flags = regex.MULTILINE
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["zh"])
    nlp = NoOpNlpEngine(models=[{"lang_code": "zh", "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["zh"])


def known_name_recognizer(names: Sequence[str]) -> Any:
    """The patient's known name as a per-request Presidio recognizer. Its deny lists need \\W boundaries,
    which Chinese text does not have, so a plain pattern stands in."""
    from presidio_analyzer import Pattern, PatternRecognizer

    return PatternRecognizer(
        "NAME", "known", "zh", [Pattern("known", "|".join(regex.escape(n) for n in names), 1.0)]
    )


class PresidioReplacements:
    """medspace's replacements as Presidio ``custom`` operators, one per kind.

    A custom operator's function sees only the identifier's text, so the note's patient key and date offset
    are bound with `bind` before each ``anonymize`` call, and the nearest year each date without one is
    shifted in is worked out there from the analyser's dates, as medspace's replace step does.
    """

    def __init__(self, key: ProductKey) -> None:
        from presidio_anonymizer.entities import OperatorConfig

        self._surrogates = Surrogates(key)
        self._cache: dict[tuple[str, str, str, int], str] = {}
        self._person_key = ""
        self._offset = 0
        self._dates: dict[str, tuple[re.Match[str] | None, int | None]] = {}
        self.operators = {
            kind.value: OperatorConfig("custom", {"lambda": functools.partial(self._surrogate, kind)})
            for kind in PhiKind
            if kind is not PhiKind.DATE
        }
        self.operators["DATE"] = OperatorConfig("custom", {"lambda": self._date})

    def bind(self, text: str, results: Sequence[Any], person_key: str, offset: int) -> None:
        """Make the operators replace identifiers of this note, its patient and date offset."""
        self._person_key, self._offset = person_key, offset
        dates = sorted((r.start, text[r.start : r.end]) for r in results if r.entity_type == "DATE")
        parsed = [(start, original, parse_date(original)) for start, original in dates]
        written = [None if m is None else parsed_year(m) for _, _, m in parsed]
        years = [(start, y) for (start, _, _), y in zip(parsed, written, strict=True) if y is not None]
        self._dates = {}
        for (start, original, m), year in zip(parsed, written, strict=True):
            hint = None if m is None or year is not None else nearest_year(years, start)
            self._dates.setdefault(original, (m, hint))

    def _surrogate(self, kind: PhiKind, original: str) -> str:
        # Keyed by the kind's plain string, as medspace's cache is (see medspace.privacy._text).
        cache_key = (kind.value, original, self._person_key, self._offset)
        value = self._cache.get(cache_key)
        if value is None:
            value = self._cache[cache_key] = self._surrogates.surrogate(
                kind, original, self._person_key, self._offset
            )
        return value

    def _date(self, original: str) -> str:
        # A date span Presidio merged from two overlapping ones is not among the analyser's: parsed here.
        m, hint = self._dates.get(original) or (parse_date(original), None)
        shifted = None if m is None else shift_parsed(m, self._offset, hint)
        return "X" * len(original) if shifted is None else shifted


def evaluate(notes: list[LabelledNote], predicted: list[list[tuple[str, int, int]]]) -> dict[str, KindScore]:
    scores: dict[str, KindScore] = {}
    for note, spans in zip(notes, predicted, strict=True):
        score(list(note.spans), spans, scores)
    return scores


def print_quality(ours: dict[str, KindScore], theirs: dict[str, KindScore]) -> None:
    table = Table(title="Spans found (n), recall (R) and precision (P) against the gold labels")
    headings = ["kind", "gold"] + [f"{tool} {what}" for tool in ("medspace", "Presidio") for what in "nRP"]
    for heading in headings:
        table.add_column(heading, justify="right")
    for kind in KINDS:
        a, b = ours.get(kind, KindScore()), theirs.get(kind, KindScore())
        table.add_row(
            kind,
            f"{a.gold:,}",
            f"{a.predicted:,}",
            f"{a.recall:.4f}",
            f"{a.precision:.4f}",
            f"{b.predicted:,}",
            f"{b.recall:.4f}",
            f"{b.precision:.4f}",
        )
    Console(width=120).print(table)


@contextlib.contextmanager
def timed(
    name: str, cpu: dict[str, float], wall: dict[str, float], *, pause_gc: bool = True
) -> Iterator[None]:
    """Record the CPU and wall seconds of a block under ``name``.

    The cyclic garbage collector is paused inside, as ``timeit`` pauses it, after a collection so that every
    block starts from the same state; neither tool makes reference cycles it needs collected during a run.
    Both keep every note's spans alive until the end (about 100,000 objects, where a streaming run would
    write them out), and the collector's full passes over them and the corpus cost up to a fifth more time
    for medspace and a tenth more for Presidio here. ``--keep-gc`` measures with the collector running.
    """
    gc.collect()
    if pause_gc:
        gc.disable()
    began, started = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        cpu[name], wall[name] = time.process_time() - started, time.perf_counter() - began
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=12_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scrub.json")
    parser.add_argument("--keep-gc", action="store_true", help="leave the garbage collector running")
    args = parser.parse_args()
    pause_gc = not args.keep_gc

    from presidio_anonymizer import AnonymizerEngine

    notes = build_corpus(args.notes, seed=7)
    texts = [n.text for n in notes]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    known = [{PhiKind(k): v for k, v in n.known.items()} for n in notes]
    person_keys = [n.person_key for n in notes]
    key = ProductKey.generate()
    offsets = [key.date_offset_days(p) for p in person_keys]

    # Each tool handles one note before timing starts, so compiling patterns is not timed.
    TextScrubber(key).scrub(texts[0], person_key="warm-up", date_offset_days=1)
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}

    with timed("medspace find", cpu, wall, pause_gc=pause_gc):
        found = TextScrubber(key).find_batch(texts, known)
    with timed("medspace scrub", cpu, wall, pause_gc=pause_gc):
        scrubbed = scrub_texts(texts, person_keys, offsets, key, known=known)
    assert [s.spans for s in scrubbed] == [tuple(f) for f in found]

    engine = presidio_engine()
    engine.analyze(texts[0], language="zh")
    with timed("presidio analyze", cpu, wall, pause_gc=pause_gc):
        results = [
            engine.analyze(t, language="zh", ad_hoc_recognizers=[known_name_recognizer(n.known["NAME"])])
            for t, n in zip(texts, notes, strict=True)
        ]
    # The anonymizer runs on the analyser's results just made: the full pipeline is analyse, then anonymize,
    # so its time is the two added up.
    anonymizer = AnonymizerEngine()
    replacements = PresidioReplacements(key)
    anonymized: list[str] = []
    with timed("presidio anonymize", cpu, wall, pause_gc=pause_gc):
        for text, rs, person_key, offset in zip(texts, results, person_keys, offsets, strict=True):
            replacements.bind(text, rs, person_key, offset)
            out = anonymizer.anonymize(text, rs, replacements.operators, merge_entities_with_spaces=False)
            anonymized.append(out.text)
    for times in (cpu, wall):
        times["presidio analyze + anonymize"] = times["presidio analyze"] + times["presidio anonymize"]

    ours = evaluate(notes, [[(s.kind.value, s.start, s.end) for s in spans] for spans in found])
    theirs = evaluate(notes, [[(r.entity_type, r.start, r.end) for r in rs] for rs in results])
    print_quality(ours, theirs)
    same_spans = [
        i
        for i, (spans, rs) in enumerate(zip(found, results, strict=True))
        if {(s.kind.value, s.start, s.end) for s in spans} == {(r.entity_type, r.start, r.end) for r in rs}
    ]
    same_text = sum(scrubbed[i].text == anonymized[i] for i in same_spans)
    print(
        f"Scrubbed notes identical where both tools found the same spans: {same_text:,} of "
        f"{len(same_spans):,} ({len(same_spans) / len(notes):.1%} of the notes have the same spans)"
    )
    replace_cpu = cpu["medspace scrub"] - cpu["medspace find"]
    print(
        f"Replacing alone (scrub less find): medspace {replace_cpu:.2f} CPU s, Presidio's anonymizer "
        f"{cpu['presidio anonymize']:.2f} CPU s ({cpu['presidio anonymize'] / replace_cpu:.1f}x)"
    )

    del cpu["presidio anonymize"], wall["presidio anonymize"]
    jobs = {
        "medspace find": ("find", "presidio analyze"),
        "presidio analyze": ("find", "presidio analyze"),
        "medspace scrub": ("find + replace", "presidio analyze + anonymize"),
        "presidio analyze + anonymize": ("find + replace", "presidio analyze + anonymize"),
    }
    rows: list[dict[str, Any]] = []
    for tool, (job, peer) in jobs.items():
        scores = theirs if tool.startswith("presidio") else ours
        rows.append(
            {
                "tool": tool,
                "job": job,
                "notes": len(notes),
                "megabytes": round(megabytes, 2),
                "cpu_seconds": round(cpu[tool], 2),
                "wall_seconds": round(wall[tool], 2),
                "mb_per_s_per_core": round(megabytes / cpu[tool], 2),
                "x_presidio": round(cpu[peer] / cpu[tool], 1),
                "spans": sum(s.predicted for s in scores.values()),
                "gc_paused": pause_gc,
                "per_kind": {
                    kind: {
                        "gold": scores.get(kind, KindScore()).gold,
                        "spans": scores.get(kind, KindScore()).predicted,
                        "recall": round(scores.get(kind, KindScore()).recall, 4),
                        "precision": round(scores.get(kind, KindScore()).precision, 4),
                    }
                    for kind in KINDS
                },
            }
        )
    rows[-1]["identical_scrubbed_notes"] = {"same_spans": len(same_spans), "same_text": same_text}
    columns = {
        "tool": "tool",
        "job": "job",
        "notes": "notes",
        "megabytes": "MB",
        "cpu_seconds": "CPU s",
        "mb_per_s_per_core": "MB/s per core",
        "x_presidio": "x Presidio, same job",
        "spans": "spans",
    }
    report("scrub", "Chinese clinical text scrubbing, one core", columns, rows, args.out)


if __name__ == "__main__":
    main()
