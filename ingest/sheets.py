"""Workbooks (.xlsx, .ods) -> per visible sheet, groups of rows written as `column: value` pairs under the header row
found, cited as "Sheet1, rows 20-34"; formulas read as the values last computed, hidden sheets left out with a note."""
from __future__ import annotations

import datetime
import io
import itertools
from collections.abc import Iterable, Iterator

from ingest.documents import Document, LoadError, Problem, Section
from ingest.reading import ROW_GROUP_CHARS, Input, Limits, check_archive, megabytes, one_line, parsing

XLSX_LIBRARY = ("openpyxl", "zipfile", "xml", "et_xmlfile")
ODS_LIBRARY = ("odf", "zipfile", "xml")
HEADER_SCAN = 10  # rows with content looked at to find the header row
MAX_COLUMNS = 500  # cells read from one row
Row = tuple[int, list[str]]  # a row's number in the sheet and its cells as text


def load_xlsx(source: Input) -> tuple[list[Document], list[Problem]]:
    """An Excel workbook's visible sheets, read row by row (openpyxl's read-only mode) up to RAG_MAX_SHEET_ROWS each."""
    check_archive(source.raw, source.limits, "XLSX", "xl/workbook.xml")
    from openpyxl import load_workbook

    with parsing("XLSX", XLSX_LIBRARY):
        workbook = load_workbook(io.BytesIO(source.raw), read_only=True, data_only=True)
        try:
            title = one_line(workbook.properties.title or "")
            sheets = []
            for sheet in workbook.worksheets:
                if sheet.sheet_state != "visible":
                    sheets.append((sheet.title, None))
                    continue
                sheet.reset_dimensions()  # the size a sheet declares may be a lie: read the rows it has
                rows = ((number, [cell_text(value) for value in values[:MAX_COLUMNS]])
                        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1))
                sheets.append((sheet.title, rows))
            return workbook_documents(source, title, sheets)
        finally:
            workbook.close()


def load_ods(source: Input) -> tuple[list[Document], list[Problem]]:
    """An OpenDocument spreadsheet's visible sheets, repeated rows and cells expanded only where they hold text."""
    check_archive(source.raw, source.limits, "ODS", "content.xml")
    from odf.dc import Title as DcTitle
    from odf.opendocument import load
    from odf.table import Table
    from odf.teletype import extractText

    with parsing("ODS", ODS_LIBRARY):
        book = load(io.BytesIO(source.raw))
        if book.mimetype != "application/vnd.oasis.opendocument.spreadsheet":
            raise LoadError("not a spreadsheet but another OpenDocument file: the file extension is wrong")
        hidden = hidden_table_styles(book)
        sheets = []
        for table in book.spreadsheet.getElementsByType(Table):
            name = one_line(table.getAttribute("name") or "")
            sheets.append((name, None if table.getAttribute("stylename") in hidden else ods_rows(table)))
        titles = book.meta.getElementsByType(DcTitle)
        return workbook_documents(source, one_line(extractText(titles[0])) if titles else "", sheets)


def workbook_documents(source: Input, title: str, sheets: list[tuple[str, Iterable[Row] | None]]) -> tuple[list[Document], list[Problem]]:
    """The workbook as one document of its sheets' row groups; hidden sheets (rows None) and limits reached as problems."""
    sections: list[Section] = []
    problems: list[Problem] = []
    chars = 0
    for name, rows in sheets:
        if rows is None:
            problems.append(Problem(f"sheet {name!r}", "a hidden sheet, not read (unhide it to ingest it)", False))
            continue
        for section in sheet_sections(name, rows, source.limits, problems):
            chars += len(section.text)
            if chars > source.limits.text_chars:
                problems.append(Problem(f"sheet {name!r}", f"text cut at rows {section.metadata['rows']}: over {megabytes(source.limits.text_chars)} (RAG_MAX_TEXT_MB)", False))
                return finished(source, title, sections, problems), problems
            sections.append(section)
    return finished(source, title, sections, problems), problems


def finished(source: Input, title: str, sections: list[Section], problems: list[Problem]) -> list[Document]:
    """The workbook's one document, or the reason it has none (with the limit that stopped the reading, if one did)."""
    if not sections:
        cut = next((f" ({p.reason})" for p in problems if "RAG_MAX_SHEET_ROWS" in p.reason), "")
        raise LoadError(f"no rows with text in its visible sheets{cut}")
    return [Document(source.doc_id, title or source.stem, sections)]


def sheet_sections(name: str, rows: Iterable[Row], limits: Limits, problems: list[Problem]) -> Iterator[Section]:
    """A sheet's rows after its header row, in groups of about ROW_GROUP_CHARS, each row as `column: value` pairs."""
    rows = iter(bounded_rows(name, rows, limits.sheet_rows, problems))
    scanned = [row for _, row in zip(range(HEADER_SCAN), rows)]
    at = header_index([cells for _, cells in scanned])
    names = [cell or column_letter(i) for i, cell in enumerate(scanned[at][1])] if at is not None else []
    before = scanned[: at if at is not None else 0]
    after = scanned[at + 1 :] if at is not None else scanned
    if before:
        yield Section("\n".join(" | ".join(c for c in cells if c) for _, cells in before), (name,),
                      {"sheet": name, "rows": f"{before[0][0]}-{before[-1][0]}"})
    lines: list[str] = []
    first = last = 0
    for number, cells in itertools.chain(after, rows):
        pairs = [f"{names[i] if i < len(names) else column_letter(i)}: {value}" for i, value in enumerate(cells) if value]
        first, last = first or number, number
        lines.append("; ".join(pairs))
        if sum(map(len, lines)) >= ROW_GROUP_CHARS:
            yield Section("\n".join(lines), (name,), {"sheet": name, "rows": f"{first}-{last}"})
            lines, first = [], 0
    if lines:
        yield Section("\n".join(lines), (name,), {"sheet": name, "rows": f"{first}-{last}"})


def bounded_rows(name: str, rows: Iterable[Row], limit: int, problems: list[Problem]) -> Iterator[Row]:
    """The rows with text among the first limit rows read (the empty rows a reader yields count); a note when rows are left."""
    for count, (number, cells) in enumerate(rows, start=1):
        if count > limit:
            problems.append(Problem(f"sheet {name!r}", f"only its first {limit:,} rows were read (RAG_MAX_SHEET_ROWS)", False))
            return
        if any(cells):
            yield number, cells


def header_index(rows: list[list[str]]) -> int | None:
    """Which of a sheet's first rows with text is its header: the first of at least two cells, all words, about as
    wide as the rows below (a title row above the table is not it); None when the sheet has no header row."""
    widest = max((sum(1 for c in cells if c) for cells in rows), default=0)
    for index, cells in enumerate(rows):
        filled = [c for c in cells if c]
        if len(filled) >= 2 and len(filled) * 2 >= widest and not any(is_number(c) for c in filled):
            return index
    return None


def is_number(text: str) -> bool:
    """True for a cell that reads as a number or a date (no header is made of those)."""
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return text[:4].isdigit() and text[4:5] == "-"


def column_letter(index: int) -> str:
    """The spreadsheet name of a column (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cell_text(value: object) -> str:
    """A cell's value as one line of text: whole numbers without .0, dates without a midnight time."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return one_line(value)


def ods_rows(table) -> Iterator[Row]:
    """An ODS sheet's rows with text and their numbers; a row repeated N times (how ODS stores empty space) is skipped
    at once when empty."""
    from odf.table import TableRow

    number = 0
    for row in table.getElementsByType(TableRow):
        repeat = int(row.getAttribute("numberrowsrepeated") or 1)
        cells = ods_cells(row)
        if not cells:
            number += repeat
            continue
        for _ in range(repeat):
            number += 1
            yield number, cells


def ods_cells(row) -> list[str]:
    """A row's cells as text (what the cell shows: a formula's last computed value), up to MAX_COLUMNS."""
    from odf.teletype import extractText

    cells: list[str] = []
    for cell in row.childNodes:
        if getattr(cell, "tagName", "") not in ("table:table-cell", "table:covered-table-cell"):
            continue
        repeat = int(cell.getAttribute("numbercolumnsrepeated") or 1)
        cells.extend([one_line(extractText(cell))] * min(repeat, MAX_COLUMNS - len(cells)))
        if len(cells) >= MAX_COLUMNS:
            break
    while cells and not cells[-1]:
        cells.pop()
    return cells


def hidden_table_styles(book) -> set[str]:
    """The names of the table styles that hide a sheet (table:display="false")."""
    from odf.style import Style, TableProperties

    return {
        style.getAttribute("name")
        for style in book.automaticstyles.getElementsByType(Style)
        if any(props.getAttribute("display") == "false" for props in style.getElementsByType(TableProperties))
    }
