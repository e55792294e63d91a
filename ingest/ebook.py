"""An EPUB e-book -> its chapters in reading order, each read as HTML (headings kept), cited as "chapter N"."""
from __future__ import annotations

import io

from ingest.documents import Document, LoadError, Outline, Problem
from ingest.html import read_html
from ingest.reading import Input, check_archive, megabytes, one_line, parsing

EPUB_LIBRARY = ("ebooklib", "lxml", "zipfile", "xml", "bs4")


def load_epub(source: Input) -> tuple[list[Document], list[Problem]]:
    """One document: each chapter's sections under the chapter's title from the table of contents, in spine order."""
    check_archive(source.raw, source.limits, "EPUB", "META-INF/container.xml")
    import ebooklib
    from ebooklib import epub

    sections, problems, chars, chapter = [], [], 0, 0
    with parsing("EPUB", EPUB_LIBRARY):
        book = epub.read_epub(io.BytesIO(source.raw), {"ignore_ncx": True})
        names = toc_titles(book.toc)
        for idref, _ in book.spine:
            item = book.get_item_with_id(idref)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
                continue
            outline = Outline(first_h1_is_title=False)
            page_title = read_html(item.get_content().decode("utf-8", "replace"), outline)
            found = outline.document(source.doc_id, "").sections
            if not found:
                continue
            chapter += 1
            name = names.get(item.get_name()) or next((s.headings[0] for s in found if s.headings), "") or page_title
            for section in found:
                section.metadata = {"chapter": chapter}
                if name and section.headings[:1] != (name,):
                    section.headings = (name, *section.headings)
            chars += sum(len(section.text) for section in found)
            if chars > source.limits.text_chars:
                problems.append(Problem("", f"text cut after chapter {chapter - 1:,}: over {megabytes(source.limits.text_chars)} (RAG_MAX_TEXT_MB)", False))
                break
            sections.extend(found)
        titles = book.get_metadata("DC", "title")
    if not sections:
        raise LoadError("no text in its chapters")
    return [Document(source.doc_id, one_line(titles[0][0]) if titles else source.stem, sections)], problems


def toc_titles(toc) -> dict[str, str]:
    """Each chapter file's title in the table of contents (the first entry that points into it)."""
    from ebooklib import epub

    titles: dict[str, str] = {}
    for entry in toc:
        if isinstance(entry, tuple):
            section, children = entry
            if getattr(section, "href", None):
                titles.setdefault(section.href.partition("#")[0], one_line(section.title))
            for href, title in toc_titles(children).items():
                titles.setdefault(href, title)
        elif isinstance(entry, (epub.Link, epub.EpubHtml)):
            href = getattr(entry, "href", None) or entry.file_name
            titles.setdefault(href.partition("#")[0], one_line(entry.title))
    return titles
