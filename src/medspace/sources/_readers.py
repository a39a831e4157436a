"""Readers: turn one export file into text columns numbered by source row, without losing a row.

Every value is read as text first; parsing into types is the mapping's job (`_convert`), so one reader serves
every vendor of a format. Rows numbered as the synthetic hospital's ground truth numbers them (1-based data
rows: CSV record minus the header, NDJSON line, XLSX row minus the header). Rows that cannot even be split
into fields (undecodable bytes, a wrong field count, a line cut off at the end of a truncated file, invalid
JSON) come back as `Reject`s, to be quarantined with the raw line.

This module reads identifiable rows; it never logs them and its messages hold no values.

CSV takes a fast path (Arrow's multi-threaded parser) and falls back to Python's csv module for a file the
fast path refuses (bad bytes, ragged rows): Arrow's invalid-row handler cannot report row numbers when it
parses in parallel, and skipping a row there would shift the numbering of every row after it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from medspace.core import InputError
from medspace.sources._jsonpath import extract
from medspace.sources._spec import CsvFormat, NdjsonFormat, TableSpec, XlsxFormat


@dataclass(frozen=True)
class Reject:
    """A source row the reader could not split into fields."""

    row: int
    rule: str
    reason: str
    raw: str
    field: str | None = None


@dataclass
class RawFile:
    """One export file as text columns (named as in the source) plus the source row number of each row."""

    columns: pa.Table
    rows: pa.Array
    rows_read: int
    header: list[str]
    rejects: list[Reject] = field(default_factory=list)
    #: For NDJSON: the raw line of every row in `columns`, so quarantined rows keep their document.
    lines: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def read_file(path: Path, relative: str, table: TableSpec) -> RawFile:
    """Read one export file of ``table``.

    Raises:
        InputError: the whole file cannot be read (not found, not a workbook, sheet missing, no header).
    """
    fmt = table.format
    if isinstance(fmt, CsvFormat):
        return _read_csv(path, relative, fmt)
    if isinstance(fmt, NdjsonFormat):
        return _read_ndjson(path, relative, table)
    return _read_xlsx(path, relative, fmt)


# --- CSV ----------------------------------------------------------------------------------------------------


def _header(path: Path, relative: str, fmt: CsvFormat) -> list[str]:
    with path.open("rb") as f:
        first = f.readline()
    if not first.strip():
        raise InputError(
            "the file is empty or has no header line; re-export it", file=relative, rule="no_header"
        )
    try:
        text = first.decode(fmt.encoding)
    except UnicodeDecodeError:
        raise InputError(
            f"the header line is not valid {fmt.encoding}; check the encoding the spec declares "
            "(e.g. gb18030 for Chinese Windows exports)",
            file=relative,
            rule="encoding",
        ) from None
    names = next(csv.reader([text.lstrip("\ufeff").rstrip("\r\n")], delimiter=fmt.delimiter))
    return names


def _ends_with_newline(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return True
    with path.open("rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


def _last_line_has_open_quote(path: Path) -> bool:
    """Whether the file's last line (without a newline) leaves a quoted field open: it was cut mid-row."""
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    last = tail.rsplit(b"\n", 1)[-1]
    return last.count(b'"') % 2 == 1


def _read_csv(path: Path, relative: str, fmt: CsvFormat) -> RawFile:
    header = _header(path, relative, fmt)
    if len(set(header)) != len(header):
        raise InputError("the header names a column twice; re-export the file", file=relative, rule="header")
    complete = _ends_with_newline(path)
    table = _read_csv_arrow(path, fmt, header)
    if table is None:
        return _read_csv_python(path, relative, fmt, header, complete)
    n = table.num_rows
    rows = pa.array(range(1, n + 1), type=pa.int64())
    raw = RawFile(columns=table, rows=rows, rows_read=n, header=header)
    if not complete and n and _last_line_has_open_quote(path):
        last = table.slice(n - 1).to_pylist()[0]
        raw.columns = table.slice(0, n - 1)
        raw.rows = rows.slice(0, n - 1)
        raw.rejects.append(
            Reject(n, "truncated_row", "the last line is cut off mid-field (file truncated)", _json(last))
        )
    return raw


def _read_csv_arrow(path: Path, fmt: CsvFormat, header: list[str]) -> pa.Table | None:
    """The file through Arrow's parser, or None when a row is ragged or a byte is undecodable."""
    invalid: list[object] = []

    def on_invalid(row: object) -> str:
        invalid.append(row)
        return "skip"

    encoding = "utf8" if fmt.encoding.replace("-", "").lower() == "utf8" else fmt.encoding
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                encoding=encoding, skip_rows=1, column_names=header, block_size=1 << 24
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
                check_utf8=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if invalid:
        return None
    return table.combine_chunks()


def _read_csv_python(path: Path, relative: str, fmt: CsvFormat, header: list[str], complete: bool) -> RawFile:
    """The slow, exact path: Python's csv module, one record at a time, bad rows kept as rejects."""
    text = path.read_bytes().decode(fmt.encoding, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter, strict=False)
    next(reader, None)
    width = len(header)
    good: list[list[str]] = []
    numbers: list[int] = []
    rejects: list[Reject] = []
    records = list(reader)
    last_open = not complete and _last_line_has_open_quote(path)
    for number, record in enumerate(records, start=1):
        if any(_undecodable(v) for v in record):
            values = [
                v.encode(fmt.encoding, "surrogateescape").decode(fmt.encoding, "backslashreplace")
                for v in record
            ]
            rejects.append(
                Reject(
                    number,
                    "encoding",
                    f"the row holds bytes that are not valid {fmt.encoding}; "
                    "check the encoding the spec declares",
                    _json(dict(zip(header, values, strict=False)) if len(values) == width else values),
                )
            )
            continue
        is_last = number == len(records)
        if is_last and not complete and (last_open or len(record) != width):
            rejects.append(
                Reject(number, "truncated_row", "the last line is cut off (file truncated)", _json(record))
            )
            continue
        if len(record) != width:
            rejects.append(
                Reject(
                    number,
                    "field_count",
                    f"the row has {len(record)} fields, the header {width}",
                    _json(record),
                )
            )
            continue
        good.append(record)
        numbers.append(number)
    columns = pa.table(
        {name: pa.array([r[i] for r in good], type=pa.string()) for i, name in enumerate(header)}
    )
    notes = []
    if records and len(rejects) == len(records) and all(r.rule == "encoding" for r in rejects):
        notes.append(
            f"no row is valid {fmt.encoding}: the file is probably in another encoding than the spec says"
        )
    return RawFile(
        columns=columns,
        rows=pa.array(numbers, type=pa.int64()),
        rows_read=len(records),
        header=header,
        rejects=rejects,
        notes=notes,
    )


def _undecodable(value: str) -> bool:
    # surrogateescape maps each undecodable byte to a lone surrogate U+DC80..U+DCFF.
    return any("\udc80" <= ch <= "\udcff" for ch in value)


# --- NDJSON -------------------------------------------------------------------------------------------------


def _read_ndjson(path: Path, relative: str, table: TableSpec) -> RawFile:
    paths = table.json_paths()
    values: dict[str, list[str | None]] = {p: [] for p in paths}
    numbers: list[int] = []
    lines: list[str] = []
    rejects: list[Reject] = []
    data = path.read_bytes()
    complete = data.endswith(b"\n") or not data
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    for number, chunk in enumerate(chunks, start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError:
            rejects.append(
                Reject(
                    number,
                    "encoding",
                    "the line is not valid UTF-8",
                    chunk.decode("utf-8", "backslashreplace"),
                )
            )
            continue
        try:
            document: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            last = number == len(chunks) and not complete
            rule = "truncated_row" if last else "bad_json"
            reason = (
                "the last line is cut off (file truncated)"
                if last
                else f"not valid JSON at column {exc.colno}"
            )
            rejects.append(Reject(number, rule, reason, line))
            continue
        if not isinstance(document, dict):
            rejects.append(Reject(number, "bad_json", "the line is not a JSON object", line))
            continue
        for name, steps in paths.items():
            values[name].append(extract(document, steps))
        numbers.append(number)
        lines.append(line)
    columns = pa.table({name: pa.array(v, type=pa.string()) for name, v in values.items()})
    return RawFile(
        columns=columns,
        rows=pa.array(numbers, type=pa.int64()),
        rows_read=len(chunks),
        header=list(paths),
        rejects=rejects,
        lines=lines,
    )


# --- XLSX ---------------------------------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_xlsx(path: Path, relative: str, fmt: XlsxFormat) -> RawFile:
    from openpyxl import load_workbook  # optional heavy import, only when a spec has XLSX tables

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and XML errors for a damaged workbook
        raise InputError(
            f"not a readable XLSX workbook ({type(exc).__name__}); re-export it",
            file=relative,
            rule="unreadable_file",
        ) from None
    try:
        if fmt.sheet not in workbook.sheetnames:
            raise InputError(
                f"the workbook has no sheet {fmt.sheet!r} (it has {len(workbook.sheetnames)} sheets); "
                "fix the sheet name in the spec",
                file=relative,
                rule="missing_sheet",
            )
        iterator = workbook[fmt.sheet].iter_rows(values_only=True)
        first = next(iterator, None)
        if first is None:
            raise InputError("the sheet is empty (no header row)", file=relative, rule="no_header")
        header = [_cell_text(v) for v in first]
        while header and header[-1] == "":
            header.pop()
        width = len(header)
        good: list[list[str]] = []
        numbers: list[int] = []
        rejects: list[Reject] = []
        read = 0
        for number, cells in enumerate(iterator, start=1):
            read = number
            texts = [_cell_text(v) for v in cells]
            extra = texts[width:]
            texts = (texts + [""] * width)[:width]
            if any(extra):
                rejects.append(
                    Reject(
                        number,
                        "field_count",
                        f"the row has values beyond the {width} header columns",
                        _json(texts + extra),
                    )
                )
                continue
            good.append(texts)
            numbers.append(number)
    finally:
        workbook.close()
    # Trailing rows with no value at all are formatting left-overs, not data rows: Excel reports them in the
    # sheet's dimension, but no export tool writes them on purpose.
    while good and numbers[-1] == read and not any(good[-1]):
        good.pop()
        numbers.pop()
        read -= 1
    columns = pa.table(
        {name: pa.array([r[i] for r in good], type=pa.string()) for i, name in enumerate(header)}
    )
    return RawFile(
        columns=columns,
        rows=pa.array(numbers, type=pa.int64()),
        rows_read=read,
        header=header,
        rejects=rejects,
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
