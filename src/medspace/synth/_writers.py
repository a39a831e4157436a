"""Appends chunks to the export files in each system's own format: CSV (UTF-8, or GBK for the RIS vendor),
NDJSON, and monthly XLSX workbooks; and keeps the rows lost by the exports under ``truth/withheld/``.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from ._generate import ExportFile
    from ._sink import ChunkOutput

# The RIS vendor exports in the Windows Chinese code page (GBK; GB 18030 is its superset and encodes the
# same bytes for every character GBK has).
ENCODINGS = {"ris/exams.csv": "gb18030"}
_FIXED_TIMESTAMP = dt.datetime(2024, 1, 1)  # workbook metadata, fixed so output is byte-identical


class ExportWriters:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: dict[str, int] = {}
        self.formats: dict[str, str] = {}
        self._workbooks: dict[str, Any] = {}
        self._headers_written: set[str] = set()

    def offsets(self) -> dict[str, int]:
        return dict(self.rows)

    def write(self, chunk: ChunkOutput) -> None:
        for path, fc in chunk.files.items():
            self._append(path, fc.table)
            self.rows[path] = self.rows.get(path, 0) + fc.table.num_rows
        for path, table in chunk.withheld.items():
            self._append(f"truth/withheld/{path}", table)

    def _append(self, path: str, table: pa.Table) -> None:
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".ndjson"):
            self.formats[path] = "ndjson"
            with target.open("a", encoding="utf-8", newline="\n") as f:
                for line in table.column("json").to_pylist():
                    f.write(line + "\n")
        elif path.endswith(".tsv"):
            # A database dump: tab-separated, never quoted; the writer of the rows escaped what needs it.
            self.formats[path] = "tsv"
            header = path not in self._headers_written
            self._headers_written.add(path)
            with target.open("a", encoding="utf-8", newline="\n") as f:
                if header:
                    f.write("\t".join(table.column_names) + "\n")
                columns = [table.column(name).to_pylist() for name in table.column_names]
                for row in zip(*columns, strict=True):
                    f.write("\t".join("" if v is None else str(v) for v in row) + "\n")
        elif path.endswith(".xlsx"):
            self.formats[path] = "xlsx"
            self._append_xlsx(path, table)
        else:
            encoding = ENCODINGS.get(path, "utf-8")
            self.formats[path] = "csv" if encoding == "utf-8" else f"csv ({encoding})"
            buffer = io.BytesIO()
            header = path not in self._headers_written
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=header, quoting_style="needed"))
            self._headers_written.add(path)
            data = buffer.getvalue()
            if encoding != "utf-8":
                data = data.decode("utf-8").encode(encoding)
            with target.open("ab") as f:
                f.write(data)

    def _append_xlsx(self, path: str, table: pa.Table) -> None:
        import xlsxwriter

        if path not in self._workbooks:
            wb = xlsxwriter.Workbook(
                str(self.out / path), {"constant_memory": True, "strings_to_numbers": False}
            )
            wb.set_properties(
                {"created": _FIXED_TIMESTAMP, "author": "HIS 医保接口", "title": "医保结算清单"}
            )
            ws = wb.add_worksheet("结算清单")
            state = {
                "wb": wb,
                "ws": ws,
                "row": 1,
                "date": wb.add_format({"num_format": "yyyy-mm-dd"}),
                "datetime": wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
            }
            ws.write_row(0, 0, table.column_names)
            self._workbooks[path] = state
        state = self._workbooks[path]
        ws = state["ws"]
        columns = [
            (name, table.column(name).to_pylist(), pa.types.is_timestamp(table.schema.field(name).type))
            for name in table.column_names
        ]
        for i in range(table.num_rows):
            r = state["row"]
            for j, (name, values, is_ts) in enumerate(columns):
                v = values[i]
                if is_ts:
                    ws.write_datetime(r, j, v, state["date"] if name == "出生日期" else state["datetime"])
                elif isinstance(v, str):
                    ws.write_string(r, j, v)
                else:
                    ws.write_number(r, j, v)
            state["row"] = r + 1

    def close(self) -> None:
        for state in self._workbooks.values():
            state["wb"].close()
        self._workbooks.clear()

    def summary(self) -> list[ExportFile]:
        from ._generate import ExportFile

        return [
            ExportFile(
                system=path.split("/", 1)[0],
                path=path,
                format=self.formats[path],
                rows=rows,
                bytes=(self.out / path).stat().st_size,
            )
            for path, rows in sorted(self.rows.items())
        ]
