"""An answer's HTML as answer_html draws it, read back from the page once the sentence check has marked it."""
from __future__ import annotations

import re

TOGGLE = re.compile(r'<label class="rag-cite"><input [^>]*><span class="rag-cite-number">(\[\d+\])</span>'
                    r'<span class="rag-passage">.*?</span></label>')
MARK = re.compile(r'<span class="rag-wrong">[^<]*</span>|<span class="rag-unfound" title="[^"]*">[^<]*</span>')


def without_check(html: str) -> str:
    """The answer's HTML without the check's passage toggles (back to [n]) and marks."""
    return MARK.sub("", TOGGLE.sub(r"\1", html))
