"""Untrusted text on the page: plain strings shown as text, answers as Markdown that can neither fetch nor link out.

Streamlit renders labels, captions, alerts and `st.markdown` as GitHub-flavoured Markdown: an image loads its URL,
a bare `http://` or `www.` becomes a link, `:material/x:` and `:red[...]` are interpreted. Every string that comes
from a document, a file name, metadata, a model name, Ollama or the user goes through one of these functions.
"""
from __future__ import annotations

import ipaddress
import re
import unicodedata

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

from rag.core.invisible import UNSAFE_IN_TEXT, shown

MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
AUTOLINK_START = re.compile(r"(?i)(?:https?|ftp)(?=://(\[[^\]]*\]|[^/\s:?#\\]*))|mailto(?=:)|xmpp(?=:)|\bwww(?=\.)|(?=@)")
WORD_JOINER = "\u2060"  # invisible; splits `http://` and `www.` so GFM's autolinker does not make them links
PRE_BLOCK = re.compile(r"<pre>.*?</pre>", re.S)
CODE_OR_ADDRESS = re.compile(r"`([^`]+)`|((?:https?|ftp)://[^\s`]+)")


def visible(text: str) -> str:
    """Text whose control, zero-width and bidi-override characters are shown as escapes (\\u202e), not obeyed;
    tabs and line feeds kept. The characters, and how they are shown, are the terminal's (rag/core/invisible.py)."""
    return UNSAFE_IN_TEXT.sub(shown, unicodedata.normalize("NFC", text))


def one_line(text: str) -> str:
    """Untrusted text on one line: whitespace runs (newlines included) become one space, controls made visible."""
    return visible(" ".join(str(text).split()))


def table_row(row: dict) -> dict:
    """A row for st.dataframe or a chart, which draw strings raw: each string cell on one line, controls visible."""
    return {column: one_line(value) if isinstance(value, str) else value for column, value in row.items()}


def loopback(host: str | None) -> bool:
    """True for a host name or address on this machine."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def escape_markdown(text: str) -> str:
    """Text that Markdown shows literally: ASCII punctuation escaped, and no link to another host (GFM would make
    `http://…`, `www.…` and `a@b.c` into links): those get an invisible word joiner. Loopback URLs stay copyable."""
    text = AUTOLINK_START.sub(lambda m: m.group() if loopback(m.group(1)) and m.group() else m.group() + WORD_JOINER, text)
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def text(value) -> str:
    """An untrusted string as Markdown that shows it literally, on one line: for labels, captions and alerts."""
    return escape_markdown(one_line(str(value)))


def notice(value) -> str:
    """One of our messages (an error, a warning, a status) that may hold untrusted parts, as Markdown on one line: its
    `commands` and its addresses as inline code (shown as written, copyable, never a link, no invisible character),
    the rest as text() shows it."""
    line, shown_parts, last = one_line(str(value)), [], 0
    for match in CODE_OR_ADDRESS.finditer(line):
        code = match.group(1) or match.group(2).rstrip(".,;:)]'\"")
        shown_parts.append(escape_markdown(line[last:match.start()]) + f"`{code}`")
        last = match.start() + (len(match.group()) if match.group(1) else len(code))
    return "".join(shown_parts) + escape_markdown(line[last:])


def _answer_markdown() -> MarkdownIt:
    """CommonMark with tables and strikethrough; raw HTML is escaped, images and links are rendered as text."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(["table", "strikethrough"])

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        alt = "".join(child.content for child in token.children or [])
        return escapeHtml(f"[image: {alt}] ({token.attrGet('src') or ''})")

    def link_open(self, tokens, idx, options, env):
        env.setdefault("links", []).append(tokens[idx].attrGet("href") or "")
        return ""

    def link_close(self, tokens, idx, options, env):
        href = env["links"].pop()
        return "" if tokens[idx].markup == "autolink" else escapeHtml(f" ({href})")

    md.add_render_rule("softbreak", lambda self, tokens, idx, options, env: " ")
    md.add_render_rule("image", image)
    md.add_render_rule("link_open", link_open)
    md.add_render_rule("link_close", link_close)
    return md


ANSWER_MARKDOWN = _answer_markdown()


def answer_html(markdown: str) -> str:
    """A model's answer as HTML for `st.markdown(..., unsafe_allow_html=True)`: its Markdown kept, nothing active.

    markdown-it escapes every raw HTML tag and entity in the text; images and links become text. The result is one
    line inside a <div>, so Streamlit's own Markdown parser sees a single HTML block and interprets nothing in it.
    """
    body = ANSWER_MARKDOWN.render(visible_answer(markdown))
    body = PRE_BLOCK.sub(lambda m: m.group().replace("\n", "&#10;"), body)  # code keeps its line breaks
    return '<div class="rag-answer">' + body.replace("\n", "") + "</div>"


def visible_answer(markdown: str) -> str:
    """An answer with bidi overrides and control characters shown visibly; newlines and tabs kept."""
    return UNSAFE_IN_TEXT.sub(shown, markdown.replace("\r\n", "\n").replace("\r", "\n"))


def readable(markdown: str) -> str:
    """Markdown source as the words a reader would see: no fences, heading marks, emphasis or link syntax; one line."""
    tokens = ANSWER_MARKDOWN.parse(markdown)
    words: list[str] = []
    for token in tokens:
        if token.type == "inline":
            for child in token.children or []:
                if child.type in ("text", "code_inline"):
                    words.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    words.append(" ")
                elif child.type == "image":
                    words.append(child.content)
            words.append(" ")
        elif token.type in ("fence", "code_block"):
            words.append(token.content + " ")
    return one_line("".join(words))
