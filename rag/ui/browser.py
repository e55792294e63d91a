"""The browser side of the page: its secret id (a cookie), focus on the chat box, the sidebar on phones, layout CSS.

The scripts are ours alone (no untrusted text goes into them) and run in a same-origin `st.iframe` made from an HTML
string (a srcdoc: nothing is fetched); they reach the page through window.parent.
"""
from __future__ import annotations

import json
import re
import secrets

import streamlit as st

COOKIE = "rag_browser"
COOKIE_DAYS = 400
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
NARROW_PX = 640  # Streamlit's breakpoint below which the sidebar covers the page

PAGE_CSS = """
<style>
/* a conversation row: title and delete button stay on one line at any width */
[class*="st-key-conversation_row_"] { flex-wrap: nowrap !important; }
[class*="st-key-conversation_row_"] > div:first-child { flex: 1 1 auto; min-width: 0; }
[class*="st-key-conversation_row_"] > div:first-child button { width: 100%; justify-content: flex-start; }
[class*="st-key-conversation_row_"] > div:first-child p { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
[class*="st-key-open_current_"] button p { font-weight: 700; }
[class*="st-key-delete_"] button { min-width: 2.5rem; min-height: 2.5rem; justify-content: center; }
/* the delete button shows its icon; its label ("Delete conversation" and the title) is its accessible name */
[class*="st-key-delete_"] button [data-testid="stMarkdownContainer"] {
  position: absolute; width: 1px; height: 1px; margin: -1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap;
}
.rag-answer pre { white-space: pre-wrap; }
/* a checked answer: [n] opens its passage below the line, the matching sentence highlighted; marks stay quiet */
.rag-cite { cursor: pointer; }
.rag-cite input { appearance: none; width: 0; height: 0; margin: 0; padding: 0; border: 0; opacity: 0; }
.rag-cite-number { text-decoration: underline dotted; }
.rag-cite input:focus-visible + .rag-cite-number { outline: 2px solid currentColor; }
.rag-passage { display: none; }
.rag-cite input:checked ~ .rag-passage {
  display: block; margin: 0.3rem 0; padding: 0.3rem 0.6rem; border-left: 3px solid rgba(128, 128, 128, 0.5);
  font-size: 0.9em; cursor: auto;
}
.rag-passage mark { background: rgba(255, 200, 0, 0.45); color: inherit; }
.rag-unfound, .rag-wrong { margin-left: 0.3em; font-size: 0.8em; opacity: 0.7; }
.rag-unfound { border-bottom: 1px dotted; cursor: help; }
</style>
"""


def browser_id() -> str:
    """This browser's secret id: from its cookie, or made now and stored in a cookie for the next visits."""
    known = st.session_state.get("browser_id")
    if known:
        return known
    cookie = st.context.cookies.get(COOKIE, "")
    cookie = cookie if isinstance(cookie, str) else ""  # AppTest has no cookies
    token = cookie if TOKEN.fullmatch(cookie) else secrets.token_urlsafe(32)
    st.session_state.browser_id = token
    if token != cookie:
        st.session_state.browser_cookie_pending = True
    return token


def page_scripts(close_sidebar: bool) -> None:
    """Store a new browser id in its cookie, focus the chat box on load, and close the sidebar on a phone when asked."""
    cookie = None
    if st.session_state.pop("browser_cookie_pending", False):
        cookie = f"{COOKIE}={st.session_state.browser_id}; path=/; max-age={COOKIE_DAYS * 86400}; SameSite=Strict"
    script = f"""<script>
const doc = window.parent.document;
const cookie = {json.dumps(cookie)};
if (cookie) {{ doc.cookie = cookie; }}
const closeSidebar = {json.dumps(close_sidebar)};
let tries = 0;
const timer = setInterval(() => {{
  tries += 1;
  const box = doc.querySelector('[data-testid="stChatInputTextArea"]');
  if (box && !closeSidebar && doc.activeElement === doc.body) {{ box.focus(); }}
  if (closeSidebar && window.parent.innerWidth < {NARROW_PX}) {{
    const close = doc.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (close) {{ close.click(); }}
  }}
  if (box || tries > 50) {{ clearInterval(timer); }}
}}, 100);
</script>"""
    with st.container(key="page_scripts", height=1, border=False):
        st.iframe(script, height="content")


def page_style() -> None:
    """The page's own CSS (conversation rows, answers)."""
    st.html(PAGE_CSS)
