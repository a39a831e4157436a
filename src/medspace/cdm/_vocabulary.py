"""Open vocabularies: loading OHDSI's standardised vocabularies into a workspace and mapping source codes to
standard concepts through them, with the site's own (Usagi) mappings laid over Athena's.

A hospital's code systems are an open set: ICD-10 editions, ICD-9-CM, LOINC, SNOMED, NDC, national drug codes,
local codes. OHDSI publishes the standardised vocabularies as an Athena download (tab-separated CONCEPT.csv,
CONCEPT_RELATIONSHIP.csv, CONCEPT_ANCESTOR.csv, ...); an existing OMOP CDM export carries the same tables as
comma-separated CSVs. `load_vocabulary` takes either (a folder or a zip) into ``<workspace>/vocab/`` as
Parquet typed by the CDM v5.4 specification, with every bad line quarantined and counted. A `Vocabulary` then
maps (vocabulary_id, source_code) pairs the way OHDSI's ETLs do: the source concept with that code, the
standard concepts it ``Maps to``; a code that maps to nothing gets concept 0 and is counted.

A site's own mappings, reviewed in Usagi, arrive as Usagi's mapping export or as its SOURCE_TO_CONCEPT_MAP
export. Approved mappings are stored as the vocabulary's ``source_to_concept_map`` table and win over Athena's
mapping of the same code: the site reviewed them for its own data.

Vocabulary files hold no patient data; this module logs nothing.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from medspace.cdm._duckdb import QUARANTINE_SCHEMA, DuckDbImporter, StagedTable
from medspace.cdm._schema import CdmTable, cdm_schema
from medspace.cdm._usagi import OverlayRows, OverlayShape, read_overlay
from medspace.cdm._vocabulary_duckdb import (
    RejectedLine,
    map_codes,
    open_views,
    stage_delimited,
    standard_targets,
)
from medspace.core import (
    InputError,
    Workspace,
    refresh_catalog,
    replace_folder,
    scratch_folder,
    stage_lineage,
)

if TYPE_CHECKING:
    import ibis.expr.types as ir

#: The workspace stage (folder and catalogue schema) holding the vocabulary.
STAGE = "vocab"

#: The ``system`` written in the vocabulary's quarantine records.
SYSTEM = "vocab"

# Same writer settings as the CDM import, so loading the same download twice gives byte-identical files.
_PARQUET_OPTIONS: dict[str, object] = {"compression": "zstd", "version": "2.6", "write_statistics": True}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VocabularyTable(_Frozen):
    """What happened to one vocabulary table during a load."""

    table: str
    #: The source as the user knows it (``Synthea27Nj_5.4.zip/CONCEPT.csv``); None if the download lacks it.
    file: str | None
    #: ``tab`` (Athena) or ``comma`` (an OMOP CDM export); None if the file is absent.
    delimiter: Literal["tab", "comma"] | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    #: Fields of the CDM table the file lacks (rows missing a required one are quarantined).
    missing_fields: tuple[str, ...] = ()
    #: Columns of the file that are not fields of the CDM table (not loaded).
    ignored_columns: tuple[str, ...] = ()


class OverlayLoad(_Frozen):
    """What happened to the site's mapping file (Usagi) during a load.

    Every row read is loaded, quarantined (with file, row and field) or excluded by a documented rule:
    ``not_approved`` (Usagi's mappingStatus is not APPROVED), ``not_maps_to`` (a value, unit or operator
    mapping, not a concept mapping), ``invalid`` (SOURCE_TO_CONCEPT_MAP's invalid_reason is set).
    """

    file: str
    shape: OverlayShape
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_excluded: dict[str, int] = {}
    #: Distinct (source_vocabulary_id, source_code) the site maps.
    codes: int = 0
    #: Rows of the download's own SOURCE_TO_CONCEPT_MAP dropped because the site maps the same code.
    rows_replaced: int = 0


class VocabularyReport(_Frozen):
    """The result of `load_vocabulary`: per-table counts, the site overlay, and where it was written.

    Example:
        >>> t = VocabularyTable(table="concept", file="v/CONCEPT.csv", rows_read=3, rows_loaded=3)
        >>> VocabularyReport(source="v", folder="ws/vocab", tables=(t,), seconds=0.1).concepts
        3
    """

    source: str
    folder: str
    tables: tuple[VocabularyTable, ...]
    overlay: OverlayLoad | None = None
    #: Files in the source that are not vocabulary tables (a CDM export's PERSON.csv, a readme).
    skipped: tuple[str, ...] = ()
    seconds: float

    @property
    def concepts(self) -> int:
        return self.table("concept").rows_loaded

    @property
    def rows_quarantined(self) -> int:
        overlay = self.overlay.rows_quarantined if self.overlay is not None else 0
        return sum(t.rows_quarantined for t in self.tables) + overlay

    def table(self, name: str) -> VocabularyTable:
        """The counts of one vocabulary table.

        Raises:
            KeyError: ``name`` is not a vocabulary table.
        """
        for t in self.tables:
            if t.table == name.lower():
                return t
        raise KeyError(f"no vocabulary table {name!r}")


def vocabulary_tables() -> tuple[CdmTable, ...]:
    """The CDM v5.4 vocabulary tables (schema ``VOCAB``), in specification order."""
    return tuple(t for t in cdm_schema().tables if t.schema_name == "VOCAB")


def load_vocabulary(
    source: Path,
    workspace: Path,
    *,
    usagi: Path | None = None,
    usagi_vocabulary_id: str | None = None,
) -> VocabularyReport:
    """Load a vocabulary download into ``<workspace>/vocab/<table>.parquet``, typed by the CDM v5.4 spec.

    The source is an Athena download (tab-separated, quote characters not special, dates as YYYYMMDD) or the
    comma-separated vocabulary CSVs of an OMOP CDM export (quoted, ISO dates); the delimiter is detected per
    file from its header. Every vocabulary table is written, empty when the source lacks it; lines that do not
    split into the header's columns, values that do not cast and empty required fields go to
    ``quarantine.parquet`` with file, row (1-based data row, the header not counted) and field;
    ``manifest.json`` holds the counts. The folder is swapped in only when the whole load succeeds, and the
    workspace catalogue gains a ``vocab`` schema.

    Args:
        source: A folder of vocabulary files, or a zip of them. Files are named after their table
            (``CONCEPT.csv`` or ``concept.csv``); other files are skipped and listed.
        workspace: The workspace root.
        usagi: The site's mapping file: Usagi's mapping export or its SOURCE_TO_CONCEPT_MAP export. Its
            approved mappings are stored in ``source_to_concept_map`` and win over Athena's for their codes.
        usagi_vocabulary_id: The vocabulary_id of the codes in a Usagi mapping export, which does not name
            it (as Usagi's own SOURCE_TO_CONCEPT_MAP export asks for one); fills empty
            ``source_vocabulary_id`` values of a SOURCE_TO_CONCEPT_MAP file.

    Returns:
        Counts per table and for the overlay.

    Raises:
        InputError: The source is missing or of an unknown kind, has no CONCEPT file, holds one table twice,
            a file has no header or cannot be read, or the mapping file's shape is not recognised.

    Example:
        >>> src = Path(tempfile.mkdtemp())
        >>> _ = (src / "CONCEPT.csv").write_text(
        ...     "concept_id\\tconcept_name\\tdomain_id\\tvocabulary_id\\tconcept_class_id\\t"
        ...     "standard_concept\\tconcept_code\\tvalid_start_date\\tvalid_end_date\\tinvalid_reason\\n"
        ...     '1\\tA "quoted\\tCondition\\tX\\tC\\tS\\tA1\\t19700101\\t20991231\\t\\n'
        ...     "oops\\tB\\tCondition\\tX\\tC\\tS\\tB1\\t19700101\\t20991231\\t\\n"
        ... )
        >>> report = load_vocabulary(src, Path(tempfile.mkdtemp()))
        >>> c = report.table("concept")
        >>> (c.delimiter, c.rows_read, c.rows_loaded, c.rows_quarantined)
        ('tab', 2, 1, 1)
    """
    started = time.perf_counter()
    source = Path(source)
    if not source.exists():
        raise InputError("the vocabulary source does not exist; give a folder or a .zip", file=str(source))
    tables = vocabulary_tables()
    target = Workspace(Path(workspace)).stage(STAGE)
    with tempfile.TemporaryDirectory(prefix="vocab-", dir=scratch_folder()) as scratch:
        scratch_dir = Path(scratch)
        files, skipped = _discover(source, tables, scratch_dir)
        if "concept" not in files:
            raise InputError(
                "no CONCEPT file: a vocabulary needs CONCEPT.csv (the Athena download or an OMOP export's "
                "vocabulary tables); add it",
                file=source.name,
                field="CONCEPT.csv",
            )
        lineage = stage_lineage(Path(workspace), STAGE, specs={"site_mappings": usagi})
        with (
            DuckDbImporter(temp_directory=scratch_dir / "duckdb") as importer,
            replace_folder(target, lineage=lineage) as out,
        ):
            quarantine: list[pa.RecordBatch] = []
            results = [_load_table(importer, t, files.get(t.name), out, quarantine) for t in tables]
            overlay = None
            if usagi is not None:
                overlay = _apply_overlay(importer.con, Path(usagi), usagi_vocabulary_id, out, quarantine)
            pq.write_table(
                pa.Table.from_batches(quarantine, schema=QUARANTINE_SCHEMA),
                out / "quarantine.parquet",
                **_PARQUET_OPTIONS,
            )
            report = VocabularyReport(
                source=source.name,
                folder=str(target),
                tables=tuple(results),
                overlay=overlay,
                skipped=tuple(skipped),
                seconds=0.0,
            )
            _write_manifest(out / "manifest.json", report)
    refresh_catalog(Path(workspace))
    return report.model_copy(update={"seconds": round(time.perf_counter() - started, 3)})


@dataclass(frozen=True)
class _File:
    path: Path
    shown: str


def _discover(
    source: Path, tables: tuple[CdmTable, ...], scratch: Path
) -> tuple[dict[str, _File], list[str]]:
    names = {t.name for t in tables}
    found: dict[str, _File] = {}
    skipped: list[str] = []

    def add(table: str, file: _File) -> None:
        if table in found:
            raise InputError(
                f"two files hold table {table} (the other is {found[table].shown}); keep one", file=file.shown
            )
        found[table] = file

    if source.is_dir():
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if any(part.startswith((".", "__MACOSX")) for part in relative.parts) or path.is_dir():
                continue
            shown = f"{source.name}/{relative.as_posix()}"
            # A symlink may point outside the download; it is listed, never followed.
            if path.is_symlink() or path.suffix.lower() != ".csv" or path.stem.lower() not in names:
                skipped.append(shown)
                continue
            add(path.stem.lower(), _File(path, shown))
        return found, skipped
    if not zipfile.is_zipfile(source):
        raise InputError("unknown kind of vocabulary source; give a folder or a .zip", file=str(source))
    try:
        with zipfile.ZipFile(source) as archive:
            for member in sorted(archive.infolist(), key=lambda m: m.filename):
                inner = Path(member.filename)
                if member.is_dir() or any(p.startswith((".", "__MACOSX")) for p in inner.parts):
                    continue
                shown = f"{source.name}/{member.filename}"
                if inner.suffix.lower() != ".csv" or inner.stem.lower() not in names:
                    skipped.append(shown)
                    continue
                # Extracted under its table's name alone, so a member's path cannot escape the scratch folder.
                file = _File(scratch / f"{inner.stem.lower()}.csv", shown)
                add(inner.stem.lower(), file)
                with archive.open(member) as data, file.path.open("wb") as copy:
                    while chunk := data.read(1 << 20):
                        copy.write(chunk)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"cannot unpack the zip file: {exc}; re-create it", file=str(source)) from exc
    return found, skipped


def _header(file: _File) -> tuple[list[str], str]:
    """The header's column names and the file's delimiter (tab if the header holds one, else comma)."""
    with file.path.open(encoding="utf-8-sig", newline="") as f:
        first = f.readline().rstrip("\r\n")
    if not first.strip():
        raise InputError("the file has no header line; re-export it with its column names", file=file.shown)
    if "\t" in first:
        return first.split("\t"), "\t"
    return next(csv.reader([first])), ","


def _load_table(
    importer: DuckDbImporter,
    table: CdmTable,
    file: _File | None,
    out: Path,
    quarantine: list[pa.RecordBatch],
) -> VocabularyTable:
    schema = table.arrow_schema()
    if file is None:
        # Written even when absent, so a query never has to interpret a missing file.
        pq.write_table(schema.empty_table(), out / f"{table.name}.parquet", **_PARQUET_OPTIONS)
        return VocabularyTable(table=table.name, file=None)
    columns, delimiter = _header(file)
    staging = f"vocab_{table.name}"
    try:
        rejected = stage_delimited(importer.con, staging, file.path, columns, delimiter)
    except duckdb.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read the file: {message}; fix the file", file=file.shown) from exc
    fields = set(table.field_names)
    mapping = {c.strip().lower(): c for c in columns if c.strip().lower() in fields}
    staged = StagedTable(
        name=staging, columns=tuple(columns), mapping=mapping, rows=importer.row_count(staging)
    )
    bad: list[pa.RecordBatch] = []
    batches, counts = importer.coerce(staged, table, system=SYSTEM, file=file.shown, quarantine=bad)
    with pq.ParquetWriter(out / f"{table.name}.parquet", schema, **_PARQUET_OPTIONS) as writer:
        for batch in batches:
            writer.write_batch(batch)
    lines = [r.line for r in rejected]
    quarantine.extend(_renumber(b, lines) for b in bad)
    quarantine.extend(_rejected_batches(rejected, table.name, file.shown))
    return VocabularyTable(
        table=table.name,
        file=file.shown,
        delimiter="tab" if delimiter == "\t" else "comma",
        rows_read=staged.rows + len(rejected),
        rows_loaded=counts.imported,
        rows_quarantined=counts.quarantined + len(rejected),
        missing_fields=tuple(f for f in table.field_names if f not in mapping),
        ignored_columns=tuple(c for c in columns if c.strip().lower() not in fields),
    )


def _renumber(batch: pa.RecordBatch, rejected_lines: list[int]) -> pa.RecordBatch:
    """Turn the staged row numbers of quarantine records into data rows of the file.

    Lines DuckDB rejected are not staged, so a staged row after them sits that many rows further down.
    """
    if not rejected_lines:
        return batch
    rejected_rows = [line - 1 for line in rejected_lines]  # data rows: the header is line 1
    rows: list[int] = []
    for staged_row in batch.column("row").to_pylist():
        row = int(staged_row)
        for rejected in rejected_rows:  # ascending: each rejected row at or before this one pushes it down
            if rejected <= row:
                row += 1
            else:
                break
        rows.append(row)
    index = batch.schema.get_field_index("row")
    return batch.set_column(index, batch.schema.field("row"), pa.array(rows, pa.int64()))


def _rejected_batches(rejected: list[RejectedLine], table: str, file: str) -> list[pa.RecordBatch]:
    if not rejected:
        return []
    records = {
        "system": [SYSTEM] * len(rejected),
        "table": [table] * len(rejected),
        "file": [file] * len(rejected),
        "row": [r.line - 1 for r in rejected],
        "field": [r.field for r in rejected],
        "rule": ["shape" for _ in rejected],
        "reason": [f"the line does not split into the header's columns ({r.message})" for r in rejected],
        "raw": [json.dumps({"line": r.text}, ensure_ascii=False) for r in rejected],
    }
    batches: list[pa.RecordBatch] = pa.Table.from_pydict(records, schema=QUARANTINE_SCHEMA).to_batches()
    return batches


# --- the site's mappings (Usagi) ---------------------------------------------------------------------------


def _apply_overlay(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    vocabulary_id: str | None,
    out: Path,
    quarantine: list[pa.RecordBatch],
) -> OverlayLoad:
    """Add the site's approved mappings to ``<out>/source_to_concept_map.parquet``, replacing the download's
    own rows for the same codes; targets that are not valid standard concepts are quarantined."""
    overlay = read_overlay(path, vocabulary_id)
    con.read_parquet(str(out / "concept.parquet")).create_view("concept", replace=True)
    targets = sorted({int(str(r["target_concept_id"])) for r in overlay.rows})
    wanted = pa.table({"concept_id": pa.array(targets, pa.int64())})
    standard = {
        int(r["concept_id"]): str(r["vocabulary_id"]) for r in standard_targets(con, wanted).to_pylist()
    }
    kept: list[dict[str, object]] = []
    for r in overlay.rows:
        target = int(str(r["target_concept_id"]))
        # Concept 0 is a reviewed "no matching concept" (Usagi: APPROVED, equivalence UNMATCHED): it stands.
        if target != 0 and target not in standard:
            field = "conceptId" if overlay.shape == "usagi" else "target_concept_id"
            reason = "the target is not a valid standard concept of the loaded vocabulary; re-map it in Usagi"
            overlay.quarantine.append(
                (
                    int(str(r["_row"])),
                    field,
                    "target_standard",
                    reason,
                    {k: "" if v is None else str(v) for k, v in r.items() if k != "_row"},
                )
            )
            continue
        kept.append({**r, "target_vocabulary_id": standard.get(target, "None")})
    stcm_path = out / "source_to_concept_map.parquet"
    existing = pq.read_table(stcm_path)
    keys = {(str(r["source_vocabulary_id"]), str(r["source_code"])) for r in kept}
    existing_keys = [
        (v, c) in keys
        for v, c in zip(
            existing.column("source_vocabulary_id").to_pylist(),
            existing.column("source_code").to_pylist(),
            strict=True,
        )
    ]
    remaining = (
        existing.filter(pc.invert(pa.array(existing_keys, pa.bool_()))) if existing.num_rows else existing
    )
    schema = cdm_schema()["source_to_concept_map"].arrow_schema()
    added = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "_row"} for r in kept], schema=schema)
    pq.write_table(pa.concat_tables([remaining, added]), stcm_path, **_PARQUET_OPTIONS)
    quarantine.extend(_overlay_quarantine(overlay, path.name))
    return OverlayLoad(
        file=path.name,
        shape=overlay.shape,
        rows_read=overlay.read,
        rows_loaded=len(kept),
        rows_quarantined=len(overlay.quarantine),
        rows_excluded=dict(sorted(overlay.excluded.items())),
        codes=len(keys),
        rows_replaced=existing.num_rows - remaining.num_rows,
    )


def _overlay_quarantine(overlay: OverlayRows, file: str) -> list[pa.RecordBatch]:
    if not overlay.quarantine:
        return []
    ordered = sorted(overlay.quarantine, key=lambda q: q[0])
    records = {
        "system": [SYSTEM] * len(ordered),
        "table": ["source_to_concept_map"] * len(ordered),
        "file": [file] * len(ordered),
        "row": [q[0] for q in ordered],
        "field": [q[1] or None for q in ordered],
        "rule": [q[2] for q in ordered],
        "reason": [q[3] for q in ordered],
        "raw": [json.dumps(q[4], ensure_ascii=False, sort_keys=True) for q in ordered],
    }
    batches: list[pa.RecordBatch] = pa.Table.from_pydict(records, schema=QUARANTINE_SCHEMA).to_batches()
    return batches


def _write_manifest(path: Path, report: VocabularyReport) -> None:
    # No timestamps or absolute paths: loading the same download twice must give the same bytes.
    manifest = {
        "cdm_version": cdm_schema().version,
        "source": report.source,
        "system": SYSTEM,
        "tables": {t.table: t.model_dump(exclude={"table"}, mode="json") for t in report.tables},
        "overlay": report.overlay.model_dump(mode="json") if report.overlay is not None else None,
        "skipped": list(report.skipped),
        "rows_quarantined": report.rows_quarantined,
    }
    path.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )


# --- mapping source codes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceCodeMapping:
    """Source codes mapped to standard concepts, with the counts a quality report needs.

    ``rows`` has one row per input row, in input order: ``vocabulary_id``, ``source_code`` (as given),
    ``source_concept_id`` (0 if the vocabulary has no such code), ``source_match`` (``exact``,
    ``without_dot`` or null), ``concept_id`` (the standard concept, 0 if none), ``mapped_by`` (``site`` for
    the site's own mapping, ``athena`` for ``Maps to``, null if unmapped) and ``target_count``. A code with
    several standard targets (a combination drug, a diagnosis with a value) gets one of them in ``rows``,
    chosen deterministically; ``targets`` holds all of them, one row per (distinct code, target), with
    ``target_rank`` 1 for the one chosen.
    """

    rows: pa.Table
    targets: pa.Table
    #: vocabulary_ids of the input that the loaded vocabulary does not have (a site mapping naming ``ICD10``
    #: for Athena's ``ICD10CM``, or a vocabulary left out of the Athena download): all their codes give 0.
    unknown_vocabularies: tuple[str, ...] = ()

    @property
    def rows_mapped(self) -> int:
        """Input rows whose concept_id is a standard concept (not 0)."""
        return int(pc.sum(pc.not_equal(self.rows.column("concept_id"), 0)).as_py() or 0)

    @property
    def rows_unmapped(self) -> int:
        """Input rows left with concept 0, counted, never silent."""
        unmapped: int = self.rows.num_rows - self.rows_mapped
        return unmapped

    @property
    def share_mapped(self) -> float | None:
        """Share of input rows mapped; None for no input."""
        return self.rows_mapped / self.rows.num_rows if self.rows.num_rows else None

    @property
    def codes(self) -> int:
        """Distinct (vocabulary_id, source_code) pairs in the input, nulls included."""
        return int(self.rows.group_by(["vocabulary_id", "source_code"]).aggregate([]).num_rows)

    @property
    def codes_mapped(self) -> int:
        """Distinct input codes that map to a standard concept."""
        mapped = self.rows.filter(pc.not_equal(self.rows.column("concept_id"), 0))
        return int(mapped.group_by(["vocabulary_id", "source_code"]).aggregate([]).num_rows)

    def unmapped(self, limit: int | None = None) -> pa.Table:
        """Distinct unmapped (vocabulary_id, source_code) with their number of rows, most frequent first."""
        table = self.rows.filter(pc.equal(self.rows.column("concept_id"), 0))
        counts = table.group_by(["vocabulary_id", "source_code"]).aggregate([([], "count_all")])
        counts = counts.rename_columns(["vocabulary_id", "source_code", "rows"])
        ordered = counts.sort_by(
            [("rows", "descending"), ("vocabulary_id", "ascending"), ("source_code", "ascending")]
        )
        return ordered if limit is None else ordered.slice(0, limit)


class Vocabulary:
    """A loaded vocabulary (``<workspace>/vocab``), mapping source codes to standard concepts in DuckDB.

    Args:
        folder: The vocabulary folder `load_vocabulary` wrote.

    Raises:
        InputError: The folder holds no loaded vocabulary.

    Example:
        >>> src = Path(tempfile.mkdtemp())
        >>> _ = (src / "CONCEPT.csv").write_text(
        ...     "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        ...     "concept_code,valid_start_date,valid_end_date,invalid_reason\\n"
        ...     "1,Diabetes,Condition,ICD10CM,4-char code,,E11.9,1970-01-01,2099-12-31,\\n"
        ...     "2,Diabetes type 2,Condition,SNOMED,Clinical Finding,S,44054006,1970-01-01,2099-12-31,\\n"
        ... )
        >>> _ = (src / "CONCEPT_RELATIONSHIP.csv").write_text(
        ...     "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\\n"
        ...     "1,2,Maps to,1970-01-01,2099-12-31,\\n"
        ... )
        >>> ws = Path(tempfile.mkdtemp())
        >>> _ = load_vocabulary(src, ws)
        >>> with Vocabulary.open(ws) as vocabulary:
        ...     mapped = vocabulary.map_source_codes(
        ...         pa.table({"vocabulary_id": ["ICD10CM", "ICD10CM"], "source_code": ["E119", "Z99"]})
        ...     )
        >>> mapped.rows.select(["source_concept_id", "source_match", "concept_id"]).to_pylist()
        [{'source_concept_id': 1, 'source_match': 'without_dot', 'concept_id': 2}, \
{'source_concept_id': 0, 'source_match': None, 'concept_id': 0}]
        >>> (mapped.rows_mapped, mapped.rows_unmapped)
        (1, 1)
    """

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        if not (folder / "concept.parquet").is_file():
            raise InputError(
                "no vocabulary is loaded here; run `medspace vocab load DIR` first", file=str(folder)
            )
        self.folder = folder
        self._con = duckdb.connect()
        self._con.execute("SET enable_progress_bar = false")
        open_views(self._con, folder)

    @classmethod
    def open(cls, workspace: Path) -> Vocabulary:
        """The vocabulary loaded into a workspace (``<workspace>/vocab``)."""
        return cls(Workspace(Path(workspace)).stage(STAGE))

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Vocabulary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map_source_codes(self, codes: pa.Table | ir.Table) -> SourceCodeMapping:
        """Map (vocabulary_id, source_code) rows to source concepts and standard concepts.

        The source concept is the concept with that vocabulary_id and concept_code, matched as written (after
        trimming spaces) or else with every '.' removed on both sides (ICD codes are written both ways). Its
        standard concept is the one it ``Maps to`` in CONCEPT_RELATIONSHIP (relationship and target valid,
        target standard), unless the site's SOURCE_TO_CONCEPT_MAP (its approved Usagi mappings) maps the
        code: then the site's targets are used.

        Args:
            codes: An Arrow table (or an Ibis table, materialised) with columns ``vocabulary_id`` (Athena's
                vocabulary_id, e.g. ``ICD10CM``, ``LOINC``) and ``source_code``; other columns are ignored.

        Returns:
            One mapped row per input row, the targets of every distinct code, and counts.

        Raises:
            InputError: ``codes`` lacks one of the two columns.
        """
        table = codes if isinstance(codes, pa.Table) else codes.to_pyarrow()
        missing = [c for c in ("vocabulary_id", "source_code") if c not in table.column_names]
        if missing:
            raise InputError(
                f"the codes to map lack column {', '.join(missing)}; give vocabulary_id and source_code",
                field=missing[0],
            )
        prepared = pa.table(
            {
                "i": pa.array(range(table.num_rows), pa.int64()),
                "vocabulary_id": pc.cast(table.column("vocabulary_id"), pa.string()),
                "source_code": pc.cast(table.column("source_code"), pa.string()),
            }
        )
        rows, targets, unknown = map_codes(self._con, prepared)
        return SourceCodeMapping(rows=rows.drop_columns(["i"]), targets=targets, unknown_vocabularies=unknown)

    def lookup(self, vocabulary_id: str, source_code: str) -> SourceCodeMapping:
        """Map one code (``medspace vocab map``)."""
        return self.map_source_codes(
            pa.table({"vocabulary_id": [vocabulary_id], "source_code": [source_code]})
        )


def map_source_codes(workspace: Path, codes: pa.Table | ir.Table) -> SourceCodeMapping:
    """Map source codes through the workspace's vocabulary: the one call the CDM build needs.

    See `Vocabulary.map_source_codes`.

    Raises:
        InputError: No vocabulary is loaded in the workspace, or ``codes`` lacks a column.
    """
    with Vocabulary.open(workspace) as vocabulary:
        return vocabulary.map_source_codes(codes)
