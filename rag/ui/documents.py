"""The sidebar's "Documents" picker (search by title or file name, several at once, one-click clear), the reading
mode control, and the scope line above the chat box; the scope is saved with each answer and restored with its
conversation."""
from __future__ import annotations

import streamlit as st

from rag.chat.scope import DocumentName, document_names
from rag.ui.history import History
from rag.ui.text import one_line, text

READ_MODES = {"Auto": None, "Search": "search", "Whole": "whole", "Parts": "parts"}
MODE_HELP = ("Auto: whole-document questions (summarise, outline, compare, list every…) read the chosen documents "
             "whole, in parts when they do not fit; other questions search within them. Search, Whole and Parts force "
             "one way.")


def label(document: DocumentName) -> str:
    """How the picker shows a document: its title, and its id when that says more (the file name or path)."""
    title = " ".join(document.title.split())
    return title if title == document.doc_id else f"{title} · {document.doc_id}"


def clear_scope() -> None:
    st.session_state.doc_scope = []


def saved_scope(history: History, conversation_id: str | None) -> list[str] | None:
    """The scope of the conversation's latest answer, or None when it has none saved."""
    if not conversation_id:
        return None
    for message in reversed(history.messages(conversation_id)):
        scope = message.meta.get("scope") if message.role == "assistant" else None
        if isinstance(scope, list):
            return [str(doc_id) for doc_id in scope]
    return None


def documents_section(history: History, conversation_id: str | None, index) -> tuple[list[str], str | None]:
    """The picker and the mode control; the chosen document ids and the mode asked for (None: the rule decides)."""
    sidebar = st.sidebar
    sidebar.header("Documents")
    if index is None:
        sidebar.caption("The documents can be chosen once the store is loaded.")
        return [], READ_MODES[st.session_state.get("read_mode", "Auto")]
    names = {d.doc_id: d for d in document_names(index)}
    if st.session_state.get("scope_conversation") != conversation_id:
        st.session_state.scope_conversation = conversation_id
        restored = saved_scope(history, conversation_id)
        if restored is not None:
            st.session_state.doc_scope = restored
    st.session_state.doc_scope = [d for d in st.session_state.get("doc_scope", []) if d in names]
    chosen = sidebar.multiselect(
        "Ask about", list(names), key="doc_scope", format_func=lambda doc_id: one_line(label(names[doc_id])),
        placeholder="Search by title or file name", help="Questions are answered from these documents only.",
    )
    if chosen:
        sidebar.button("Clear documents", key="clear_scope", on_click=clear_scope, icon=":material/close:")
    mode = sidebar.radio("Read", list(READ_MODES), key="read_mode", horizontal=True, help=MODE_HELP)
    return list(chosen), READ_MODES[mode]


def show_scope(scope: list[str], mode: str | None) -> None:
    """The scope above the chat box, so the reader knows what the next question is asked of."""
    if not scope and not mode:
        return
    where = ", ".join(scope) if scope else "all documents (or one the question names)"
    how = f" · read: {mode}" if mode else ""
    st.caption(text(f"Asking about: {where}{how}"), help="Change it under Documents in the sidebar.")
