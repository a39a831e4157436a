"""Readers: turn one export file into text columns numbered by source row, without losing a row.

Every value is read as text first; parsing into types is the mapping's job (`_convert`), so one reader serves
every vendor of a format. A row's number is always its *physical data line*: the line of the file it
starts on, counting the line after the header as 1 (for XLSX the sheet row minus the header row). Lines end
at ``\\n`` (``\\r\\n`` counts as one line end); a carriage return anywhere else never starts a line, so a
stray one cannot shift the numbers of the rows after it. A CSV record whose quoted value spans lines keeps
the number of its first line, and the record after it the number of the line it starts on.

Rows that cannot be split into fields come back as `Reject`s, to be quarantined with the raw line; each names
its row and, where one can be told, its field. The rules:

- ``encoding``: the line holds bytes that are not valid in the declared encoding (each line is decoded on
  its own, so one bad line costs one row); when no data line decodes, `RawFile.unreadable` is set too.
- ``nul_byte``: the line holds a NUL byte (for NDJSON also an escaped ``\\u0000`` in a value): a sign of a
  binary or UTF-16 file, never a value to stage.
- ``stray_carriage_return``: a carriage return inside an unquoted CSV field (inside a quoted one it is part
  of the value, as RFC 4180 allows).
- ``unbalanced_quote``: a quoted CSV field opens and does not close on its line, and joining the following
  lines (at most `MAX_RECORD_LINES`) gives no strict RFC 4180 record of the header's width. Only that line is
  quarantined; reading resumes on the next line, so one stray quote costs one row, never the rest of the file.
- ``field_count``: the row has more or fewer fields than the header (CSV) or values beyond the header (XLSX).
- ``truncated_row``: the file's last line has no line end and may be cut off (see below).
- ``bad_json``: an NDJSON line that is not a JSON object (or is empty).

An empty CSV line is a row of empty values (as Arrow reads it), left to the mapping's required columns.

Truncation rule (CSV): a file whose last line has no line end was probably cut off. Every other line of the
file ends with one, so the last line is staged only when it proves itself whole: the header's number of
fields and a last value that is quoted and closed (a quote cannot close by accident). Otherwise it is
quarantined as ``truncated_row``: a cut ``12345`` reads as a valid ``12``, and staging it would be wrong. The
data team re-exports, or adds the line end when they know the file is complete. NDJSON's last line is staged
when it is a whole JSON object, which a cut line never is.

A file that cannot be read at all (missing, no permission, not a workbook, no header, a header in another
encoding, a symbolic link leading out of the export folder) raises `UnreadableFileError`, which staging counts
as one failed file. Files ending in ``.gz`` are read through gzip.

This module reads identifiable rows; it never logs them and its messages hold no values.

CSV takes a fast path (Arrow's multi-threaded parser) and falls back to an exact reader for a file the fast
path cannot prove right. Arrow reports no row numbers when it parses in parallel, takes a stray carriage
return for a line end, accepts NUL bytes, and reads a stray quote leniently (it closes at the next line's
first quote, folding that row into this one with the right width). So its result is used only when one
streaming pass over the bytes agrees with it: no NUL byte, no carriage return but in a CRLF line end,
Arrow's records account for exactly the file's physical lines (one each, plus the line ends inside their
values), and each record over several lines is strict RFC 4180. The exact reader cuts the file into blocks
of 65,536 lines: a block that passes the same checks under Arrow keeps Arrow's speed, and only a damaged
block is read line by line in Python. Both paths read every file the same way; tests hold them to it.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gc
import gzip
import io
import itertools
import json
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from medspace.core import InputError
from medspace.sources._jsonpath import extract
from medspace.sources._spec import CsvFormat, NdjsonFormat, TableSpec, XlsxFormat

#: The most physical lines one CSV record may span (a quoted value holding line ends). Python's csv module
#: stops at 131,072 characters per field with a traceback; a bounded look-ahead instead keeps one stray quote
#: from swallowing the rest of the file while letting a clinical note of many lines through.
MAX_RECORD_LINES = 1000

_CHUNK = 1 << 24
_MAX_FIELD_CHARS = 1 << 26


class UnreadableFileError(InputError):
    """A whole export file cannot be read: staging counts it as one failed file, with no row read.

    ``rule`` says why: ``unreadable_file`` (missing, no permission, not a workbook, a cut compressed file),
    ``outside_export`` (a symbolic link leading out of the export folder), ``no_header``, ``header``,
    ``encoding``, ``missing_sheet``.

    Example:
        >>> str(UnreadableFileError("the file is empty; re-export it", file="his/a.csv", rule="no_header"))
        'his/a.csv: the file is empty; re-export it (rule: no_header)'
    """


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
    """One export file as text columns (named as in the source) plus the source row number of each row.

    ``rows_read`` always equals ``columns.num_rows + len(rejects)``.
    """

    columns: pa.Table
    rows: pa.Array
    rows_read: int
    header: list[str]
    rejects: list[Reject] = field(default_factory=list)
    #: For NDJSON: the raw line of every row in `columns`, so quarantined rows keep their document.
    lines: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    #: Set when the file splits into rows but none of them is usable (no data line decodes in the declared
    #: encoding): every row is still in `rejects`, and staging should count the file as failed as a whole.
    unreadable: UnreadableFileError | None = None


def read_file(path: Path, relative: str, table: TableSpec) -> RawFile:
    """Read one export file of ``table``.

    Args:
        path: The file.
        relative: The file's path relative to the export folder, as messages name it; the file must lie
            inside that folder once symbolic links are resolved.
        table: The table spec giving the file's format.

    Returns:
        The file's rows as text columns, with their physical line numbers and the rows that were rejected.

    Raises:
        UnreadableFileError: the whole file cannot be read (not found, no permission, not a workbook, sheet
            missing, no header, a link out of the export folder); an `InputError`, so ``except InputError``
            catches it. No other exception escapes for a damaged file.

    Example:
        >>> read_file(Path("his/patients.csv"), "his/patients.csv", table).rows_read  # doctest: +SKIP
        1352
    """
    _refuse_outside(path, relative)
    fmt = table.format
    try:
        if isinstance(fmt, CsvFormat):
            return _read_csv(path, relative, fmt)
        if isinstance(fmt, NdjsonFormat):
            return _read_ndjson(path, relative, table)
        return _read_xlsx(path, relative, fmt)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnreadableFileError(
            f"cannot read the file ({reason}); check that it exists and is readable, or re-export it",
            file=relative,
            rule="unreadable_file",
        ) from None
    except (EOFError, zlib.error):
        raise UnreadableFileError(
            "the compressed file is cut off or damaged; re-export it", file=relative, rule="unreadable_file"
        ) from None


def resolve_export_files(folder: Path, pattern: str) -> list[Path]:
    """The files of ``folder`` that ``pattern`` (a glob relative to it) matches, sorted.

    Symbolic links are listed too, also those that lead out of the folder or nowhere, so that `read_file`
    refuses each by name (``outside_export``, ``unreadable_file``) instead of staging silently following or
    skipping it. Staging should list a table's files with this function.

    Example:
        >>> resolve_export_files(Path("hospital"), "his/patients*.csv")  # doctest: +SKIP
        [PosixPath('hospital/his/patients.csv')]
    """
    return sorted(p for p in Path(folder).glob(pattern) if p.is_symlink() or p.is_file())


def _refuse_outside(path: Path, relative: str) -> None:
    """Raise when ``path``, links resolved, leaves the export folder that ``relative`` is relative to."""
    parts = PurePosixPath(relative).parts
    root = path
    for _ in parts:
        root = root.parent
    if not parts or root.joinpath(*parts) != path:
        return  # not called with a path relative to an export folder: nothing to check against
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnreadableFileError(
            "the file is a symbolic link (or lies in a linked folder) leading outside the export folder; "
            "it is not read: copy the file into the export folder instead",
            file=relative,
            rule="outside_export",
        )


def open_export(path: Path) -> IO[bytes]:
    """An export file opened for reading bytes, through gzip when its name ends in ``.gz``."""
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _data_lines(path: Path) -> IO[bytes]:
    """The file, open at its first data line."""
    f = open_export(path)
    f.readline()
    return f


def _line_encoding(encoding: str) -> str:
    """The codec for lines after the first: a byte-order mark can only start the file."""
    return "utf-8" if encoding.replace("-", "").lower() == "utf8sig" else encoding


def _read_bytes(path: Path) -> bytes:
    with open_export(path) as f:
        return f.read()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- CSV ----------------------------------------------------------------------------------------------------


def _ascii_compatible(encoding: str) -> bool:
    """Whether the encoding writes line ends, quotes and delimiters as the ASCII bytes (UTF-8, GB 18030, GBK,
    Big5, Latin-1: yes; UTF-16: no). Only then can lines be split as bytes and decoded one at a time."""
    probe = '\n\r",;|\t\x00'
    try:
        return probe.encode(encoding).removeprefix(codecs.BOM_UTF8) == probe.encode("ascii")
    except UnicodeError:
        return False


@dataclass
class _Scan:
    """What one streaming pass over a CSV file's bytes tells: enough to trust or distrust Arrow's parse."""

    header_line: bytes  # with its line end
    lines: int  # physical data lines
    nul: bool
    bare_cr: bool  # a carriage return not followed by a line feed
    complete: bool  # the last data line has its line end (or there is none)
    last_line: bytes  # the last physical line without its line end (up to _CHUNK bytes)


def _scan(path: Path) -> _Scan:
    with open_export(path) as f:
        header = f.readline()
        newlines = 0
        nul = False
        bare_cr = 0
        last = b""
        ended = True
        while chunk := f.read(_CHUNK):
            newlines += chunk.count(b"\n")
            nul = nul or b"\x00" in chunk
            if last.endswith(b"\r") and chunk.startswith(b"\n"):
                bare_cr -= 1  # a CRLF across two chunks
            bare_cr += _bare_carriage_returns(chunk)
            cut = chunk.rfind(b"\n")
            last = (last + chunk)[-_CHUNK:] if cut < 0 else chunk[cut + 1 :]
            ended = chunk.endswith(b"\n")
    if not ended:
        return _Scan(header, newlines + 1, nul, bare_cr > 0, False, last)
    return _Scan(header, newlines, nul, bare_cr > 0, True, b"")


def _bare_carriage_returns(chunk: bytes) -> int:
    """Carriage returns not followed by a line feed. Arrow takes each for a line end (a line of its own,
    read as a row of empty values, when it starts or ends a line), so where there is one, Arrow's records
    no longer match the physical lines, even when their count does."""
    if b"\r" not in chunk:
        return 0
    return chunk.count(b"\r") - chunk.count(b"\r\n")


def _header(first: bytes, relative: str, fmt: CsvFormat) -> list[str]:
    """The column names on the header line ``first`` (raw bytes, with its line end)."""
    if not first.strip():
        raise UnreadableFileError(
            "the file is empty or has no header line; re-export it", file=relative, rule="no_header"
        )
    if b"\n" not in first and b"\r" in first.rstrip(b"\r"):
        raise UnreadableFileError(
            "the file ends its lines with a carriage return alone (classic Mac OS); convert it to LF or "
            "CRLF line ends",
            file=relative,
            rule="header",
        )
    if b"\x00" in first:
        raise UnreadableFileError(
            "the header line holds NUL bytes: the file is probably UTF-16 (Excel's 'Unicode text'); "
            "declare that encoding in the spec",
            file=relative,
            rule="encoding",
        )
    try:
        text = first.decode(fmt.encoding)
    except UnicodeDecodeError:
        raise UnreadableFileError(
            f"the header line is not valid {fmt.encoding}; check the encoding the spec declares "
            "(e.g. gb18030 for Chinese Windows exports)",
            file=relative,
            rule="encoding",
        ) from None
    return _names(text, relative, fmt.delimiter)


def _names(text: str, relative: str, delimiter: str) -> list[str]:
    # A UTF-8 byte-order mark decodes to U+FEFF before the first name; it is not part of the name.
    names = next(csv.reader([text.lstrip("\ufeff").rstrip("\r\n")], delimiter=delimiter))
    if len(set(names)) != len(names):
        raise UnreadableFileError(
            "the header names a column twice; re-export the file", file=relative, rule="header"
        )
    return names


def _read_csv(path: Path, relative: str, fmt: CsvFormat) -> RawFile:
    if not _ascii_compatible(fmt.encoding):
        return _read_csv_lines(path, relative, fmt, None)
    with open_export(path) as f:
        header = _header(f.readline(), relative, fmt)
    # Arrow parses in its own threads without the GIL while this one scans the bytes: the check is free.
    with ThreadPoolExecutor(max_workers=1) as pool:
        parsed = pool.submit(_read_csv_arrow, path, fmt, header)
        scan = _scan(path)
        table = parsed.result()
    if scan.nul or scan.bare_cr:
        return _read_csv_lines(path, relative, fmt, header)
    rows = None if table is None else _arrow_row_numbers(table, scan.lines, fmt, lambda: _data_lines(path))
    if table is None or rows is None:
        return _read_csv_lines(path, relative, fmt, header)
    n = table.num_rows
    raw = RawFile(columns=table, rows=rows, rows_read=n, header=header)
    if not scan.complete and n:
        last_line = scan.last_line.decode(fmt.encoding, "replace").removesuffix("\r")
        continued = rows[n - 1].as_py() != scan.lines  # the last record spans lines
        if not _proves_whole(last_line, fmt.delimiter, continued):
            last = table.slice(n - 1).to_pylist()[0]
            raw.columns = table.slice(0, n - 1)
            raw.rows = rows.slice(0, n - 1)
            raw.rejects.append(_truncated(rows[n - 1].as_py(), header, len(header), _json(last)))
    return raw


def _read_csv_arrow(
    source: Path | pa.NativeFile, fmt: CsvFormat, header: list[str], skip_rows: int = 1
) -> pa.Table | None:
    """The file (or a block of its lines) through Arrow's parser, or None when a row is ragged or a byte is
    undecodable."""
    encoding = "utf8" if fmt.encoding.replace("-", "").lower() in ("utf8", "utf8sig") else fmt.encoding
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(
                encoding=encoding, skip_rows=skip_rows, column_names=header, block_size=1 << 24
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
                check_utf8=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError):
        # A ragged row or a bad byte. Arrow's invalid-row handler was the first design: it decodes the row
        # as UTF-8 before calling it, and a row in another encoding then printed a traceback to stderr.
        return None
    return table.combine_chunks()


def _arrow_row_numbers(
    table: pa.Table, lines: int, fmt: CsvFormat, reopen: Callable[[], IO[bytes]]
) -> pa.Array | None:
    """Each Arrow record's physical data line, or None when the records do not account for every line or a
    record over several lines is not strict (`_strict_record`): then the line-by-line reader must decide."""
    n = table.num_rows
    # One record per line, unless a value holds a line end: Arrow closes a quote left open at the end of the
    # input with the rest in the value, and with a single column a stray carriage return can split one line
    # into two records while a multi-line value joins two; only then are the spans counted.
    if n == lines == 0:
        return pa.array([], type=pa.int64())
    if n == lines and table.num_columns > 1 and not _holds_line_end(table.slice(n - 1)):
        return pa.array(np.arange(1, n + 1, dtype=np.int64))
    if n > lines or n == 0:
        return None  # Arrow took something else (a stray carriage return) for a line end
    spans = np.ones(n, dtype=np.int64)
    for column in table.columns:
        spans += pc.count_substring(column, "\n").to_numpy(zero_copy_only=False)
    if int(spans.sum()) != lines or int(spans.max()) > MAX_RECORD_LINES:
        return None  # the line-by-line reader refuses a value that long: both paths must agree
    starts = np.cumsum(spans) - spans + 1
    multi = np.flatnonzero(spans > 1)
    if not _strict_records(reopen, starts[multi].tolist(), spans[multi].tolist(), fmt, table.num_columns):
        return None
    return pa.array(starts)


def _holds_line_end(table: pa.Table) -> bool:
    return any(pc.any(pc.match_substring(column, "\n")).as_py() for column in table.columns)


def _strict_records(
    reopen: Callable[[], IO[bytes]], starts: list[int], spans: list[int], fmt: CsvFormat, width: int
) -> bool:
    """Whether the records on lines ``starts[i]`` to ``starts[i] + spans[i] - 1`` are all strict; one pass
    over the lines (``reopen`` gives them from the first data line on) that skips the others unread."""
    encoding = _line_encoding(fmt.encoding)
    with reopen() as f:
        position = 1
        for start, span in zip(starts, spans, strict=True):
            deque(itertools.islice(f, start - position), maxlen=0)
            position = start + span
            try:
                text = b"".join(itertools.islice(f, span)).decode(encoding)
            except UnicodeDecodeError:
                return False
            if _strict_record(text.removesuffix("\n").removesuffix("\r"), fmt.delimiter, width) is None:
                return False
    return True


def _parse(line: str, delimiter: str) -> tuple[list[str], bool]:
    """Split one physical line (no line end) as Arrow and RFC 4180 do, leniently like both (a quote inside an
    unquoted field is kept). Returns the fields and whether a quoted field is still open at the line's end.

    Raises:
        csv.Error: a carriage return inside an unquoted field.
    """
    # The second, empty line is only read when a quoted field is left open: that is how it is noticed.
    reader = csv.reader((line, ""), delimiter=delimiter)
    fields = next(reader)
    return fields, reader.line_num > 1


def _strict_record(text: str, delimiter: str, width: int) -> list[str] | None:
    """The fields of a record spanning lines, or None unless it is strict RFC 4180 of ``width`` fields.

    Joining lines is only right for a value a writer quoted on purpose, and writers quote by the RFC. A
    stray quote instead closes on some later line's quote, with text after it (``"P123","Li"`` read from
    inside a quoted value closes at ``"P`` and goes on with ``P123"``): leniency there, as Arrow's, would
    fold the lines in between into one wrong row and lose them without a trace.
    """
    try:
        fields = next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    return fields if len(fields) == width else None


def _field_at(line: str, position: int, delimiter: str, header: list[str]) -> str | None:
    """The header name of the field holding character ``position`` of ``line``."""
    try:
        fields, _ = _parse(line[:position].replace("\r", " "), delimiter)
    except csv.Error:
        return None
    index = max(len(fields) - 1, 0)
    return header[index] if index < len(header) else None


def _proves_whole(line: str, delimiter: str, continued: bool) -> bool:
    """Whether a last line without line end proves it was not cut: its last value is quoted and closed (the
    quote that closes it would be open again without its final character)."""
    if not line.endswith('"'):
        return False
    prefix = '"' if continued else ""
    try:
        _, open_now = _parse(prefix + line, delimiter)
        _, open_before = _parse(prefix + line[:-1], delimiter)
    except csv.Error:
        return False
    return not open_now and open_before


def _truncated(row: int, header: list[str], fields: int, raw: str) -> Reject:
    name = header[min(max(fields, 1), len(header)) - 1] if header else None
    return Reject(
        row,
        "truncated_row",
        "the last line has no line end and may be cut off (file truncated); re-export the file, or add the "
        "line end if the file is complete",
        raw,
        name,
    )


_CONT, _CLOSE, _BREAK = 0, 1, 2


class _Feed:
    """The lines of a CSV body for Python's csv module, from a position that can be set back: after a line
    that needs care, a fresh reader starts on the line where reading goes on."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.pos = 0

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        pos = self.pos
        if pos >= len(self.texts):
            raise StopIteration
        self.pos = pos + 1
        return self.texts[pos]


class _CsvBody:
    """A CSV body as physical lines, read into records and rejects (see the module docstring for the rules).

    Most lines are read by one csv reader running over the lines, at C speed. A line goes to the careful,
    line-by-line `_line` instead when the reader's record spans lines (a quoted value left open), when the
    reader fails on it (a carriage return in an unquoted field), and for the file's last line (truncation);
    a fresh reader then starts after it. Rejected lines (undecodable, NUL) are found before and reach the
    reader as empty lines.
    """

    def __init__(
        self,
        texts: list[str],
        bad: dict[int, Reject],
        header: list[str],
        delimiter: str,
        complete: bool,
        offset: int = 0,
    ) -> None:
        self.texts = texts
        self.offset = offset  # the data line number of texts[0], minus one
        self.bad = bad
        self.header = header
        self.width = len(header)
        self.delimiter = delimiter
        self.complete = complete
        self.good: list[list[str]] = []
        self.numbers: list[int] = []
        self.rejects: list[Reject] = []
        self._scanned = 0  # every line in [.., _scanned) was examined and found inside an open value
        self._stop = -1  # the first line at or after the last look-ahead where an open value stops

    def read(self, stop: int | None = None) -> int:
        """Read records starting before line ``stop`` (default: all); return the line after the last one
        read, which is past ``stop`` when a record goes on over it."""
        n = len(self.texts)
        stop = n if stop is None else min(stop, n)
        feed = _Feed(self.texts)
        while feed.pos < stop:
            reader = csv.reader(feed, delimiter=self.delimiter)
            while True:
                first = feed.pos
                if first >= stop:
                    break
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error:
                    feed.pos = self._line(first)
                    break
                if feed.pos - 1 != first or first == n - 1:
                    feed.pos = self._line(first)
                    break
                self._record(first, fields)
        return feed.pos

    def _record(self, k: int, fields: list[str]) -> None:
        """A record the reader split from line ``k`` alone."""
        if k in self.bad:
            self.rejects.append(self.bad[k])
        elif not fields:
            self._keep(k, [""] * self.width)  # an empty line is a row of empty values, as Arrow reads it
        elif len(fields) != self.width:
            self._reject_count(k, fields)
        else:
            self._keep(k, fields)

    def _keep(self, k: int, fields: list[str]) -> None:
        self.good.append(fields)
        self.numbers.append(self.offset + k + 1)

    def _reject_count(self, k: int, fields: list[str]) -> None:
        row = self.offset + k + 1
        if k == len(self.texts) - 1 and not self.complete and len(fields) < self.width:
            self.rejects.append(_truncated(row, self.header, len(fields), _json(fields)))
        else:
            message = f"the row has {len(fields)} fields, the header {self.width}"
            self.rejects.append(Reject(row, "field_count", message, _json(fields)))

    def _line(self, k: int) -> int:
        """Read the record starting on line ``k`` with care; return the line after it."""
        if k in self.bad:
            self.rejects.append(self.bad[k])
            return k + 1
        row, header, delimiter = self.offset + k + 1, self.header, self.delimiter
        is_last = k == len(self.texts) - 1 and not self.complete
        line = self.texts[k].removesuffix("\r")
        try:
            fields, still_open = _parse(line, delimiter)
        except csv.Error:
            fields, still_open = [], False
        if "\r" in line and not any("\r" in f for f in fields):
            self.rejects.append(
                Reject(
                    row,
                    "stray_carriage_return",
                    "a carriage return inside an unquoted field; quote the field or remove it",
                    _json(line),
                    _field_at(line, line.index("\r"), delimiter, header),
                )
            )
            return k + 1
        if still_open:
            joined = None if is_last else self._join(k)
            if joined is None:
                if is_last:
                    self.rejects.append(_truncated(row, header, len(fields), _json(line)))
                else:
                    self.rejects.append(
                        Reject(
                            row,
                            "unbalanced_quote",
                            "a quoted field opens and does not close on this line; only this line is "
                            "quarantined and reading goes on with the next",
                            _json(line),
                            header[len(fields) - 1] if 0 < len(fields) <= self.width else None,
                        )
                    )
                return k + 1
            fields, last = joined
            if last == len(self.texts) - 1 and not self.complete:
                tail = self.texts[last].removesuffix("\r")
                if not _proves_whole(tail, delimiter, continued=True):
                    self.rejects.append(_truncated(row, header, len(fields), _json(fields)))
                    return last + 1
            self._keep(k, fields)
            return last + 1
        if not fields and not line:
            fields = [""] * self.width
        if len(fields) != self.width:
            self._reject_count(k, fields)
        elif is_last and not _proves_whole(line, delimiter, continued=False):
            whole = _json(dict(zip(header, fields, strict=True)))
            self.rejects.append(_truncated(row, header, len(fields), whole))
        else:
            self._keep(k, fields)
        return k + 1

    def _join(self, k: int) -> tuple[list[str], int] | None:
        """The record starting on line ``k`` whose quoted value spans lines, and its last line; None when the
        value does not close within `MAX_RECORD_LINES` lines or the joined lines are no strict record of the
        header's width."""
        last = self._closing_line(k + 1, k + MAX_RECORD_LINES - 1)
        if last is None:
            return None
        parts = self.texts[k : last + 1]
        parts[-1] = parts[-1].removesuffix("\r")
        fields = _strict_record("\n".join(parts), self.delimiter, self.width)
        return None if fields is None else (fields, last)

    def _state(self, k: int) -> int:
        """How line ``k`` reads when a quoted value is open at its start."""
        if k in self.bad:
            return _BREAK
        try:
            _, still_open = _parse('"' + self.texts[k].removesuffix("\r"), self.delimiter)
        except csv.Error:
            return _BREAK
        return _CONT if still_open else _CLOSE

    def _closing_line(self, start: int, limit: int) -> int | None:
        """The first line from ``start`` to ``limit`` where an open quoted value closes; None when it does
        not close by then or a line in between cannot belong to it. Amortised linear over the file: lines
        are examined in order and each once, however many quotes are left open."""
        if self._stop < start:
            k = max(start, self._scanned)
            n = len(self.texts)
            while k < n and k <= limit and self._state(k) == _CONT:
                k += 1
            self._scanned = k
            if k == n or k > limit:
                return None
            self._stop = k
        if self._stop > limit or self._state(self._stop) != _CLOSE:
            return None
        return self._stop


#: Lines per block of the exact path: blocks that Arrow reads cleanly keep Arrow's speed, and only the
#: blocks holding a damaged line go through Python, line by line.
_BLOCK_LINES = 1 << 16


def _read_csv_lines(path: Path, relative: str, fmt: CsvFormat, header: list[str] | None) -> RawFile:
    """The exact path: physical lines, each bad line its own reject (see the module docstring).

    The body is cut into blocks of `_BLOCK_LINES` lines. Each block is first given to Arrow under the fast
    path's checks; a block that fails them (and the file's last block when its last line has no line end)
    is read line by line, on through the next block while a record goes on over the boundary.
    """
    data = _read_bytes(path)
    encoding, delimiter = fmt.encoding, fmt.delimiter
    parts: list[tuple[pa.Table, pa.Array]] = []
    rejects: list[Reject] = []
    if header is None:  # an encoding whose line ends are not single bytes (UTF-16): decode the whole file
        try:
            decoded = data.decode(encoding)
        except UnicodeDecodeError:
            raise UnreadableFileError(
                f"the file is not valid {encoding}; check the encoding the spec declares",
                file=relative,
                rule="encoding",
            ) from None
        head, _, body_text = decoded.partition("\n")
        if not head.strip():
            raise UnreadableFileError(
                "the file is empty or has no header line; re-export it", file=relative, rule="no_header"
            )
        header = _names(head, relative, delimiter)
        complete = body_text.endswith("\n") or not body_text
        texts = body_text.split("\n")
        if complete:
            texts.pop()  # what follows the last line end
        n = len(texts)
        _read_lines(
            texts, _nul_lines(texts, 0, header, delimiter), header, delimiter, complete, 0, n, parts, rejects
        )
    else:
        end = data.find(b"\n")
        base = len(data) if end < 0 else end + 1  # where the first data line starts
        complete = base == len(data) or data.endswith(b"\n")
        ends = _line_ends(data, base)
        n = len(ends) + (0 if complete else 1)

        def start_of(line: int) -> int:
            return base if line == 0 else (int(ends[line - 1]) + 1 if line - 1 < len(ends) else len(data))

        k = 0
        while k < n:
            stop = min(n, (k // _BLOCK_LINES + 1) * _BLOCK_LINES)
            if k % _BLOCK_LINES == 0 and (stop < n or complete):
                block = data[start_of(k) : start_of(stop)]
                damaged = b"\x00" in block or _bare_carriage_returns(block) > 0
                table = None if damaged else _read_csv_arrow(pa.BufferReader(block), fmt, header, 0)
                rows = None
                if table is not None:
                    rows = _arrow_row_numbers(table, stop - k, fmt, functools.partial(io.BytesIO, block))
                if table is not None and rows is not None:
                    parts.append((table, pc.add(rows, k)))
                    k = stop
                    continue
            ahead = min(n, stop + MAX_RECORD_LINES)
            texts, bad = _decode_lines(data[start_of(k) : start_of(ahead)], k, fmt, header)
            k = _read_lines(texts, bad, header, delimiter, complete or ahead < n, k, stop, parts, rejects)
    tables = [t for t, _ in parts]
    columns = pa.concat_tables(tables) if tables else _empty(header)
    rows = pa.concat_arrays([r.cast(pa.int64()) for _, r in parts]) if parts else pa.array([], pa.int64())
    raw = RawFile(
        columns=columns.combine_chunks(),
        rows=rows,
        rows_read=columns.num_rows + len(rejects),
        header=header,
        rejects=rejects,
    )
    if n and sum(r.rule == "encoding" for r in rejects) == n:
        message = (
            f"no data line is valid {encoding}: the file is probably in another encoding than the spec "
            "declares; fix the spec's encoding or re-export the file"
        )
        raw.notes.append(message)
        raw.unreadable = UnreadableFileError(message, file=relative, rule="encoding")
    return raw


def _line_ends(data: bytes, start: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The offsets of every ``\\n`` in ``data`` from ``start`` on, found a chunk at a time (a whole-file
    comparison would hold a byte of mask per byte of file)."""
    found = [
        np.flatnonzero(np.frombuffer(data, np.uint8, min(_CHUNK, len(data) - at), at) == ord("\n")) + at
        for at in range(start, len(data), _CHUNK)
    ]
    return np.concatenate(found).astype(np.int64) if found else np.empty(0, dtype=np.int64)


def _empty(header: list[str]) -> pa.Table:
    return pa.table({name: pa.array([], type=pa.string()) for name in header})


def _decode_lines(
    chunk: bytes, offset: int, fmt: CsvFormat, header: list[str]
) -> tuple[list[str], dict[int, Reject]]:
    """The lines of ``chunk`` (whole lines, the first being data line ``offset + 1``) as text, with the
    lines rejected before parsing (undecodable, NUL), which are left as empty text."""
    encoding = _line_encoding(fmt.encoding)
    bad: dict[int, Reject] = {}
    try:
        texts = chunk.decode(encoding).split("\n")
    except UnicodeDecodeError:
        texts = []
        for k, piece in enumerate(chunk.split(b"\n")):
            try:
                texts.append(piece.decode(encoding))
            except UnicodeDecodeError:
                bad[k] = _undecodable(piece, offset + k + 1, fmt.encoding, fmt.delimiter, header)
                texts.append("")
    if chunk.endswith(b"\n"):
        texts.pop()  # what follows the last line end
    bad.update(_nul_lines(texts, offset, header, fmt.delimiter))
    return texts, bad


def _nul_lines(texts: list[str], offset: int, header: list[str], delimiter: str) -> dict[int, Reject]:
    """Lines holding a NUL character, as rejects; their text is emptied so that no parser sees them."""
    bad: dict[int, Reject] = {}
    if not any("\x00" in t for t in texts):
        return bad
    for k, t in enumerate(texts):
        if "\x00" in t:
            line = t.removesuffix("\r")
            bad[k] = Reject(
                offset + k + 1,
                "nul_byte",
                "the line holds a NUL byte (binary data, or a file in UTF-16); re-export the file",
                _json(line),
                _field_at(line, line.index("\x00"), delimiter, header),
            )
            texts[k] = ""
    return bad


def _read_lines(
    texts: list[str],
    bad: dict[int, Reject],
    header: list[str],
    delimiter: str,
    complete: bool,
    offset: int,
    stop: int,
    parts: list[tuple[pa.Table, pa.Array]],
    rejects: list[Reject],
) -> int:
    """Read the records of ``texts`` (data lines ``offset + 1`` on) that start before line ``stop``, line by
    line, into ``parts`` and ``rejects``; return the (0-based) line after the last record read."""
    body = _CsvBody(texts, bad, header, delimiter, complete, offset)
    # Python's csv module refuses a field over 131,072 characters, a limit Arrow does not have (a long
    # clinical note on one line); raising the process-wide limit, never lowering it, is safe in threads.
    if csv.field_size_limit() < _MAX_FIELD_CHARS:
        csv.field_size_limit(_MAX_FIELD_CHARS)
    # A million rows make a million lists, which set off the cyclic garbage collector again and again (it
    # then walks every list made so far): that doubled the time. None of them can be part of a cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        end = offset + body.read(stop - offset)
    finally:
        if collecting:
            gc.enable()
    good = body.good
    if good:
        columns = pa.table(
            {
                name: pa.array(values, type=pa.string())
                for name, values in zip(header, zip(*good, strict=True), strict=True)
            }
        )
        parts.append((columns, pa.array(body.numbers, type=pa.int64())))
    rejects.extend(body.rejects)
    return end


def _undecodable(piece: bytes, row: int, encoding: str, delimiter: str, header: list[str]) -> Reject:
    """The reject of a line that does not decode, naming the field the first bad byte is in."""
    # surrogateescape maps each undecodable byte to a lone surrogate U+DC80..U+DCFF.
    escaped = piece.decode(encoding, "surrogateescape").removesuffix("\r")
    position = next((i for i, ch in enumerate(escaped) if "\udc80" <= ch <= "\udcff"), 0)
    shown = piece.decode(encoding, "backslashreplace").removesuffix("\r")
    try:
        fields, _ = _parse(shown, delimiter)
        raw = _json(dict(zip(header, fields, strict=True)) if len(fields) == len(header) else fields)
    except csv.Error:
        raw = _json(shown)
    return Reject(
        row,
        "encoding",
        f"the row holds bytes that are not valid {encoding}; check the encoding the spec declares",
        raw,
        _field_at(escaped, position, delimiter, header),
    )


# --- NDJSON -------------------------------------------------------------------------------------------------


def _read_ndjson(path: Path, relative: str, table: TableSpec) -> RawFile:
    paths = table.json_paths()
    values: dict[str, list[str | None]] = {p: [] for p in paths}
    numbers: list[int] = []
    lines: list[str] = []
    rejects: list[Reject] = []
    data = _read_bytes(path).removeprefix(codecs.BOM_UTF8)  # a BOM some Windows tools write is not JSON
    complete = data.endswith(b"\n") or not data
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    undecodable = 0
    for number, chunk in enumerate(chunks, start=1):
        if b"\x00" in chunk:
            rejects.append(
                Reject(
                    number,
                    "nul_byte",
                    "the line holds a NUL byte (binary data, or a file in UTF-16); re-export the file",
                    chunk.decode("utf-8", "backslashreplace"),
                )
            )
            continue
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError:
            rejects.append(
                Reject(
                    number,
                    "encoding",
                    "the line is not valid UTF-8 (NDJSON is always UTF-8); re-export the file in UTF-8",
                    chunk.decode("utf-8", "backslashreplace"),
                )
            )
            undecodable += 1
            continue
        try:
            document: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            last = number == len(chunks) and not complete
            rule = "truncated_row" if last else "bad_json"
            if last:
                reason = "the last line is cut off (file truncated)"
            elif not line.strip():
                reason = "the line is empty"
            else:
                reason = f"not valid JSON at column {exc.colno}"
            rejects.append(Reject(number, rule, reason, line))
            continue
        if not isinstance(document, dict):
            rejects.append(Reject(number, "bad_json", "the line is not a JSON object", line))
            continue
        extracted = {name: extract(document, steps) for name, steps in paths.items()}
        if "\\u0000" in line:
            nul = [name for name, v in extracted.items() if v is not None and "\x00" in v]
            if nul:
                rejects.append(
                    Reject(number, "nul_byte", "the value holds a NUL character (\\u0000)", line, nul[0])
                )
                continue
        for name, value in extracted.items():
            values[name].append(value)
        numbers.append(number)
        lines.append(line)
    columns = pa.table({name: pa.array(v, type=pa.string()) for name, v in values.items()})
    raw = RawFile(
        columns=columns,
        rows=pa.array(numbers, type=pa.int64()),
        rows_read=len(chunks),
        header=list(paths),
        rejects=rejects,
        lines=lines,
    )
    if chunks and undecodable == len(chunks):
        message = "no line is valid UTF-8: the file is in another encoding; re-export it in UTF-8"
        raw.notes.append(message)
        raw.unreadable = UnreadableFileError(message, file=relative, rule="encoding")
    return raw


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

    with path.open("rb"):
        pass  # a missing or unreadable file is an OSError, told apart from a damaged workbook
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and XML errors for a damaged workbook
        raise UnreadableFileError(
            f"not a readable XLSX workbook ({type(exc).__name__}); re-export it",
            file=relative,
            rule="unreadable_file",
        ) from None
    try:
        if fmt.sheet not in workbook.sheetnames:
            raise UnreadableFileError(
                f"the workbook has no sheet {fmt.sheet!r} (it has {len(workbook.sheetnames)} sheets); "
                "fix the sheet name in the spec",
                file=relative,
                rule="missing_sheet",
            )
        iterator = workbook[fmt.sheet].iter_rows(values_only=True)
        first = next(iterator, None)
        if first is None:
            raise UnreadableFileError("the sheet is empty (no header row)", file=relative, rule="no_header")
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


#: A CSV file larger than this is read in pieces of about this size (`read_pieces`), so memory holds one
#: piece at a time however large the hospital.
PIECE_BYTES = 1 << 26


class PieceFallback(Exception):
    """A piece of a file that the fast path cannot prove right: the file must be read whole."""


@dataclass(frozen=True)
class Piece:
    """Where one piece lies in its file: bytes ``start`` to ``end``, its first row's number ``first_row``."""

    start: int
    end: int
    first_row: int


def pieceable(path: Path, table: TableSpec) -> bool:
    """Whether ``read_pieces`` may read this file in pieces: an uncompressed CSV file in an ASCII-compatible
    encoding larger than `PIECE_BYTES` (every other file is read whole)."""
    fmt = table.format
    return (
        isinstance(fmt, CsvFormat)
        and _ascii_compatible(fmt.encoding)
        and not path.name.endswith(".gz")
        and path.is_file()
        and path.stat().st_size > PIECE_BYTES
    )


def read_pieces(path: Path, relative: str, table: TableSpec, pieces: list[Piece]) -> Iterator[RawFile]:
    """A pieceable CSV file as successive `RawFile`s of whole lines, row numbers continuing; the place of
    each piece is appended to ``pieces`` (to read rows again by `read_rows`).

    The same rows, numbers and rejects as `read_file`, or none: every piece must pass the checks that let
    `read_file` keep Arrow's parse of the whole file (no NUL byte, no carriage return but in a CRLF line end,
    one record per physical line and no line end in a value), and then the pieces, cut at line ends, parse
    as the whole file would. When a piece does not pass, `PieceFallback` is raised and the caller must drop
    what it took from earlier pieces and read the file whole.

    Raises:
        UnreadableFileError: as `read_file`.
        PieceFallback: the file needs the whole-file reader.
    """
    _refuse_outside(path, relative)
    fmt = table.format
    assert isinstance(fmt, CsvFormat)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise UnreadableFileError(
            f"cannot read the file ({exc.strerror or type(exc).__name__}); check that it exists and is "
            "readable, or re-export it",
            file=relative,
            rule="unreadable_file",
        ) from None
    with f:
        header = _header(f.readline(), relative, fmt)
        offset = 0
        position = f.tell()
        data = _next_piece(f)
        if not data:
            raise PieceFallback
        while data:
            following = _next_piece(f)
            last = not following
            if b"\x00" in data or _bare_carriage_returns(data):
                raise PieceFallback
            complete = data.endswith(b"\n")
            lines = data.count(b"\n") + (0 if complete else 1)
            parsed = _read_csv_arrow(pa.BufferReader(data), fmt, header, skip_rows=0)
            if parsed is None:
                raise PieceFallback
            n = parsed.num_rows
            if n != lines or parsed.num_columns < 2 or _holds_line_end(parsed.slice(n - 1)):
                raise PieceFallback
            rows = pa.array(np.arange(offset + 1, offset + n + 1, dtype=np.int64))
            raw = RawFile(columns=parsed, rows=rows, rows_read=n, header=header)
            if last and not complete:
                last_line = data[data.rfind(b"\n") + 1 :][-_CHUNK:]
                text = last_line.decode(fmt.encoding, "replace").removesuffix("\r")
                if not _proves_whole(text, fmt.delimiter, False):
                    cut = parsed.slice(n - 1).to_pylist()[0]
                    raw.columns = parsed.slice(0, n - 1)
                    raw.rows = rows.slice(0, n - 1)
                    raw.rejects.append(_truncated(offset + n, header, len(header), _json(cut)))
            pieces.append(Piece(position, position + len(data), offset + 1))
            position += len(data)
            offset += lines
            yield raw
            data = following


def _next_piece(f: IO[bytes]) -> bytes:
    data = f.read(PIECE_BYTES)
    if data and not data.endswith(b"\n"):
        data += f.readline()
    return data


def read_rows(path: Path, table: TableSpec, pieces: list[Piece], rows: list[int]) -> dict[int, str]:
    """The raw text (as `read_file` gives a row of ``columns``: JSON of its fields) of the data rows
    numbered ``rows`` of a file `read_pieces` read in ``pieces``."""
    fmt = table.format
    assert isinstance(fmt, CsvFormat)
    texts: dict[int, str] = {}
    wanted = np.unique(np.asarray(rows, dtype=np.int64))
    firsts = np.asarray([p.first_row for p in pieces], dtype=np.int64)
    owner = np.searchsorted(firsts, wanted, side="right") - 1
    with path.open("rb") as f:
        header = _header(f.readline(), str(path), fmt)
        for k in np.unique(owner).tolist():
            piece = pieces[k]
            f.seek(piece.start)
            parsed = _read_csv_arrow(pa.BufferReader(f.read(piece.end - piece.start)), fmt, header, 0)
            assert parsed is not None
            mine = wanted[owner == k]
            values = parsed.take(pa.array(mine - piece.first_row)).to_pylist()
            for row, value in zip(mine.tolist(), values, strict=True):
                texts[row] = json.dumps(value, ensure_ascii=False)
    return texts
