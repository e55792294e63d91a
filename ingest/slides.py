"""A PowerPoint deck (.pptx) -> a section per slide under its title: text boxes, tables and speaker notes, cited as "slide N"."""
from __future__ import annotations

import io
from collections.abc import Iterator

from ingest.documents import Document, LoadError, Problem, Section
from ingest.reading import Input, check_archive, clean, megabytes, one_line, parsing

PPTX_LIBRARY = ("pptx", "lxml", "zipfile")


def load_pptx(source: Input) -> tuple[list[Document], list[Problem]]:
    """One section per slide with text (and one per table), its title as heading; text past RAG_MAX_TEXT_MB is cut."""
    check_archive(source.raw, source.limits, "PPTX", "ppt/presentation.xml")
    from pptx import Presentation

    sections: list[Section] = []
    problems: list[Problem] = []
    chars = 0
    with parsing("PPTX", PPTX_LIBRARY):
        deck = Presentation(io.BytesIO(source.raw))
        title = one_line(deck.core_properties.title or "")
        for number, slide in enumerate(deck.slides, start=1):
            heading = one_line(slide.shapes.title.text_frame.text) if slide.shapes.title is not None else ""
            slide_sections = list(slide_sections_of(slide, number, (heading,) if heading else ()))
            chars += sum(len(section.text) for section in slide_sections)
            if chars > source.limits.text_chars:
                problems.append(Problem("", f"text cut after slide {number - 1:,}: over {megabytes(source.limits.text_chars)} (RAG_MAX_TEXT_MB)", False))
                break
            sections.extend(slide_sections)
    if not sections:
        raise LoadError("no text on its slides")
    first_heading = next((s.headings[0] for s in sections if s.headings), "")
    return [Document(source.doc_id, title or first_heading or source.stem, sections)], problems


def slide_sections_of(slide, number: int, headings: tuple[str, ...]) -> Iterator[Section]:
    """A slide's text boxes and notes as one section, and each of its tables as a section of its own."""
    paragraphs: list[str] = []
    tables: list[list[str]] = []
    for shape in shapes_of(slide.shapes):
        if shape == slide.shapes.title:
            continue
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = [" | ".join(one_line(cell.text) for cell in row.cells if one_line(cell.text)) for row in shape.table.rows]
            tables.append([row for row in rows if row])
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            text = clean(shape.text_frame.text).strip()
            if text:
                paragraphs.append(text)
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = clean(slide.notes_slide.notes_text_frame.text).strip()
        if notes:
            paragraphs.append(f"Speaker notes: {notes}")
    if paragraphs:
        yield Section("\n\n".join(paragraphs), headings, {"slide": number})
    elif headings and not tables:
        yield Section(headings[0], headings, {"slide": number})  # a slide of only a title is still found by it
    for rows in tables:
        if rows:
            yield Section("\n".join(rows), headings, {"slide": number}, header=rows[0] if len(rows) > 1 else "")


def shapes_of(shapes) -> Iterator:
    """Every shape, the shapes inside groups included, in the slide's order."""
    for shape in shapes:
        if hasattr(shape, "shapes"):
            yield from shapes_of(shape.shapes)
        else:
            yield shape
