"""Benchmark of Chinese clinical free-text scrubbing: medspace's TextScrubber against Microsoft Presidio's
AnalyzerEngine configured with the same patterns, on the same synthetic notes, in one process on one core.
Target (issue 5, item 4): 10 times Presidio's throughput in MB/s per core.

The notes come from tests/privacy_notes.py (labelled, written with other templates than the synthetic
hospital's), so both tools are also scored against the gold spans: a speed comparison means something only
if they find comparable spans. Three rows are timed: medspace finding identifiers (the work Presidio's
analyser does), medspace scrubbing them (finding, shifting dates and making keyed surrogates), and Presidio
analysing. Presidio's anonymizer is a separate package and is not run, so the scrub row does more work than
Presidio's. Both tools get the patient's known name.

Presidio gets medspace's regular expressions and word lists (``Recogniser.patterns``), one PatternRecognizer
per kind, with medspace's checksum, region and date checks in ``validate_result`` and its not-a-name and
generic-institution lists in ``invalidate_result``. Rules medspace applies in Python are written the fastest
way the ``regex`` module allows: ``\\K`` after context words (hospital numbers, landlines, names), a lookahead
for titles after names, a lookbehind for where an address or institution may start. Its spaCy step is
replaced by NoOpNlpEngine, so nothing is downloaded and no model runs.

Usage: python bench/bench_scrub.py [--notes 12000] [--out bench/results/scrub.json]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=12_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scrub.json")
    args = parser.parse_args()

    notes = build_corpus(args.notes, seed=7)
    texts = [n.text for n in notes]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    known = [{PhiKind(k): v for k, v in n.known.items()} for n in notes]
    person_keys = [n.person_key for n in notes]
    key = ProductKey.generate()
    offsets = [key.date_offset_days(p) for p in person_keys]

    # Each tool analyses one note before timing starts, so compiling patterns is not timed.
    TextScrubber(key).scrub(texts[0], person_key="warm-up", date_offset_days=1)
    timings: dict[str, tuple[float, float]] = {}

    began, cpu = time.perf_counter(), time.process_time()
    found = TextScrubber(key).find_batch(texts, known)
    timings["medspace find"] = (time.process_time() - cpu, time.perf_counter() - began)

    began, cpu = time.perf_counter(), time.process_time()
    scrubbed = scrub_texts(texts, person_keys, offsets, key, known=known)
    timings["medspace scrub (find + replace)"] = (time.process_time() - cpu, time.perf_counter() - began)
    assert [s.spans for s in scrubbed] == [tuple(f) for f in found]

    engine = presidio_engine()
    engine.analyze(texts[0], language="zh")
    began, cpu = time.perf_counter(), time.process_time()
    results = [
        engine.analyze(t, language="zh", ad_hoc_recognizers=[known_name_recognizer(n.known["NAME"])])
        for t, n in zip(texts, notes, strict=True)
    ]
    timings["presidio analyze"] = (time.process_time() - cpu, time.perf_counter() - began)

    ours = evaluate(notes, [[(s.kind.value, s.start, s.end) for s in spans] for spans in found])
    theirs = evaluate(notes, [[(r.entity_type, r.start, r.end) for r in rs] for rs in results])
    print_quality(ours, theirs)

    presidio_cpu = timings["presidio analyze"][0]
    rows: list[dict[str, Any]] = []
    for tool, (cpu_s, wall_s) in timings.items():
        scores = theirs if tool.startswith("presidio") else ours
        rows.append(
            {
                "tool": tool,
                "notes": len(notes),
                "megabytes": round(megabytes, 2),
                "cpu_seconds": round(cpu_s, 2),
                "wall_seconds": round(wall_s, 2),
                "mb_per_s_per_core": round(megabytes / cpu_s, 2),
                "x_presidio": round(presidio_cpu / cpu_s, 1),
                "spans": sum(s.predicted for s in scores.values()),
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
    columns = {
        "tool": "tool",
        "notes": "notes",
        "megabytes": "MB",
        "cpu_seconds": "CPU s",
        "mb_per_s_per_core": "MB/s per core",
        "x_presidio": "x Presidio",
        "spans": "spans",
    }
    report("scrub", "Chinese clinical text scrubbing, one core", columns, rows, args.out)


if __name__ == "__main__":
    main()
