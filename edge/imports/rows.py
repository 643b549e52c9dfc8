"""Reading an export: CSV (with a header row) or JSON lines, one row at a time.

A row is numbered by the file line it starts on (the CSV header is line 1, so the first data
row is row 2, as a spreadsheet shows it). A row that cannot be read (a JSON line that is not an
object, a CSV record with the wrong number of values) comes out as a `BadRow`, so the rows after
it are still imported; a file that cannot be read at all raises `UnreadableFile`.

The format comes from the name (.csv, .tsv, .jsonl, .ndjson, .json), else from the first byte.
A file that is not text at all (a spreadsheet, an archive, anything with NUL bytes near its
start) is refused at once, saying what it looks like, rather than read as CSV. Progress is
reported in bytes read, so a bar needs no first pass to count rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

JSON_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES: Final = (".csv", ".tsv")
SNIFFED_BYTES: Final = 4096  # of the start of the file, looked at to tell text from not
# What a file that is not CSV or JSON lines starts with, and what that makes it.
NOT_TEXT: Final = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx or OpenDocument .ods workbook is one)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"),
    (b"\x1f\x8b", "gzip-compressed data (gunzip it first)"),
    (b"PAR1", "a Parquet file"),
    (b"\xff\xfe", "UTF-16 text"),
    (b"\xfe\xff", "UTF-16 text"),
)


class UnreadableFile(ValueError):
    """A file that is not CSV or JSON lines, or whose header lacks a mapped column."""


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadRow:
    number: int
    reason: str


Progress = Callable[[int], object]  # called with the bytes just read


def file_format(path: Path, first: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    return "jsonl" if first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def kind_of_binary(start: bytes) -> str | None:
    """What a file starting with `start` is, when it is not text; None when it may be."""
    for magic, kind in NOT_TEXT:
        if start.startswith(magic):
            return kind
    if b"\x00" in start:
        return "binary data (NUL bytes near its start)"
    return None


def read_rows(
    file: BinaryIO, path: Path, *, columns: Mapping[str, str], progress: Progress | None = None
) -> Iterator[Row | BadRow]:
    """The file's rows. For CSV the header must hold every column in `columns` (column → the
    field it feeds, for the message). Raises `UnreadableFile` at once for a file that is not
    text."""
    first = file.peek(SNIFFED_BYTES)[:SNIFFED_BYTES] if hasattr(file, "peek") else b""
    not_text = kind_of_binary(first)
    if not_text is not None:
        raise UnreadableFile(
            f"not CSV or JSON lines: it is {not_text}; export it as CSV (UTF-8) or JSON lines"
        )
    lines = _lines(file, progress)
    if file_format(path, first) == "jsonl":
        return _json_rows(lines)
    return _csv_rows(lines, columns, "\t" if path.suffix.lower() == ".tsv" else ",")


def _lines(file: BinaryIO, progress: Progress | None) -> Iterator[str]:
    """Text lines; bytes that are not UTF-8 become U+FFFD, which the row reports."""
    for number, raw in enumerate(file):
        if progress is not None:
            progress(len(raw))
        line = raw.decode("utf-8", errors="replace")
        yield line.removeprefix("\ufeff") if number == 0 else line


def _json_rows(lines: Iterator[str]) -> Iterator[Row | BadRow]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
            yield BadRow(number, f"not JSON: {error}")
            continue
        if isinstance(value, dict):
            yield Row(number, value)
        else:
            yield BadRow(number, "a JSON line must be an object of column values")


def _csv_rows(
    lines: Iterator[str], columns: Mapping[str, str], delimiter: str
) -> Iterator[Row | BadRow]:
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise UnreadableFile(f"line 1: not a CSV header: {error}") from None
    header = [name.strip() for name in header]
    missing = [name for name in columns if name not in header]
    if missing:
        shown = ", ".join(header[:20]) + (" …" if len(header) > 20 else "")
        name = missing[0]
        raise UnreadableFile(
            f"column {name!r} (mapped to {columns[name]}) is not in the header: {shown}"
        )
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield BadRow(start, f"not CSV: {error}")
            start = reader.line_num + 1
            continue
        number, start = start, reader.line_num + 1
        if not record:
            continue
        if len(record) != len(header):
            yield BadRow(number, f"{len(record)} values; the header has {len(header)} columns")
            continue
        yield Row(number, dict(zip(header, record, strict=True)))
