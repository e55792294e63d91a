"""HTML -> heading-aware sections: the main text of a page, without scripts, styles and navigation; tables keep their header."""
from __future__ import annotations

import warnings

from ingest.documents import Document, LoadError, Outline

HTML_DROP = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed",
    "form", "button", "select", "textarea", "nav", "aside", "menu", "dialog",
)
HTML_CHROME = ("header", "footer")
HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote", "figure",
    "figcaption", "table", "thead", "tbody", "tfoot", "tr", "caption", "address", "details", "summary", "hr",
    "header", "footer", "body", "html",
}


def load_html(text: str, doc_id: str, fallback_title: str) -> Document:
    """The main text of an HTML page, without scripts, styles and navigation, split at its headings."""
    outline = Outline()
    page_title = read_html(text, outline)
    return outline.document(doc_id, page_title or fallback_title)


def read_html(text: str, outline: Outline) -> str:
    """Feed the main text of an HTML page to an outline; the page's <title>."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML (EPUB chapters, .xhtml) reads well as HTML
        soup = BeautifulSoup(text, "lxml")
    page_title = " ".join(soup.title.get_text().split()) if soup.title else ""
    for tag in soup(HTML_DROP):
        tag.decompose()
    for tag in soup.select('[role="navigation"], [role="banner"], [role="contentinfo"], [aria-hidden="true"], [hidden]'):
        tag.decompose()
    main = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article")
    if main is None:
        main = soup.body or soup
        for tag in main(HTML_CHROME):
            tag.decompose()
    try:
        HtmlWalker(outline).walk(main)
    except RecursionError:
        raise LoadError("HTML nested too deeply to read") from None
    return page_title


class HtmlWalker:
    """Feeds an HTML tree to an Outline: headings start sections, blocks become paragraphs."""

    def __init__(self, outline: Outline):
        self.outline = outline
        self.buffer: list[str] = []

    def walk(self, node) -> None:
        """Visit the children of node in document order."""
        from bs4 import NavigableString
        from bs4.element import PreformattedString

        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, PreformattedString):
                    self.buffer.append(str(child))
            elif child.name in HTML_HEADINGS:
                self.paragraph()
                self.outline.heading(HTML_HEADINGS[child.name], child.get_text(" "))
            elif child.name == "br":
                self.buffer.append("\n")
            elif child.name == "pre":
                self.paragraph()
                self.outline.text(child.get_text().strip("\n"))
                self.outline.text("")
            elif child.name == "table":
                self.paragraph()
                self.table(child)
            elif child.name in ("td", "th"):
                self.walk(child)
                self.buffer.append(" | ")
            elif child.name in HTML_BLOCKS:
                self.paragraph()
                self.walk(child)
                self.paragraph()
            else:
                self.walk(child)

    def table(self, table) -> None:
        """A table as rows of cells (its first row the header of each chunk); a table inside a cell is read as text."""
        if table.caption:
            self.walk(table.caption)
            self.paragraph()
        for row in table.find_all("tr"):
            if row.find_parent("table") is not table:
                continue
            cells = [" ".join(cell.get_text(" ").split()) for cell in row.find_all(("td", "th"), recursive=False)]
            line = " | ".join(cell for cell in cells if cell)
            if line:
                self.outline.table_row(line)
        self.outline.flush()

    def paragraph(self) -> None:
        """Close the paragraph being collected."""
        lines = [" ".join(line.split()).strip(" |") for line in "".join(self.buffer).split("\n")]
        self.buffer.clear()
        text = "\n".join(line for line in lines if line)
        if text:
            self.outline.text(text)
            self.outline.text("")
