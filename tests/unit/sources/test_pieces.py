"""Large CSV files are staged piece by piece (memory flat as a hospital grows); the staging must be the
same, byte for byte, as reading each file whole, whatever the damage in the file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from medspace.sources import _readers, _stage, stage_site
from readers import output_bytes
from site_cut import cut_site


@pytest.fixture
def exports(hospital: Path, tmp_path: Path) -> Path:
    out = tmp_path / "exports"
    shutil.copytree(hospital / "his", out / "his")
    return out


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _duplicates(path: Path) -> None:
    text = _lines(path)
    changed = text[1].replace('"', "'", 3)
    path.write_text("".join([*text, text[1], changed, text[-1]]), encoding="utf-8")


def _truncated(path: Path) -> None:
    text = path.read_text(encoding="utf-8").rstrip("\n")
    path.write_text(text[: text.rindex("\n") + 40], encoding="utf-8")


def _cut_number(path: Path) -> None:
    """The last line, without its line end, ends in an unquoted value: it may be cut (``truncated_row``)."""
    text = _lines(path)
    last = text[-1].rstrip("\n").rsplit(",", 1)[0]
    path.write_text("".join(text) + last + ",12", encoding="utf-8")


def _stray_quote(path: Path) -> None:
    text = _lines(path)
    text[len(text) // 2] = text[len(text) // 2].replace('","', '",""', 1)
    path.write_text("".join(text), encoding="utf-8")


def _bad_values(path: Path) -> None:
    text = _lines(path)
    for i in range(5, len(text), 97):
        text[i] = text[i].replace('"2024', '"20x4', 1)
    path.write_text("".join(text), encoding="utf-8")


def _staging(
    tmp_path: Path, name: str, exports: Path, piece_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> dict[str, bytes]:
    monkeypatch.setattr(_readers, "PIECE_BYTES", piece_bytes)
    stage_site(cut_site("his"), exports, tmp_path / name)
    folder = tmp_path / name / "staging"
    return {p.name: output_bytes(p) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("damage", [_duplicates, _truncated, _cut_number, _stray_quote, _bad_values])
def test_pieces_stage_the_same_bytes_as_whole_files(
    exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Callable[[Path], None]
) -> None:
    for name in ("bills.csv", "outpatient_registrations.csv", "prescriptions.csv"):
        damage(exports / "his" / name)
    whole = _staging(tmp_path, "whole", exports, 1 << 40, monkeypatch)
    pieces: list[int] = []
    real = _stage.read_pieces

    def counted(*args: object) -> object:
        for raw in real(*args):  # type: ignore[arg-type]
            pieces.append(raw.rows_read)
            yield raw

    monkeypatch.setattr(_stage, "read_pieces", counted)
    split = _staging(tmp_path, "split", exports, 4096, monkeypatch)
    assert len(pieces) > 3  # the files did go piece by piece (a stray quote: until the damaged piece)
    assert split.keys() == whole.keys()
    for name in whole:
        assert split[name] == whole[name], name
