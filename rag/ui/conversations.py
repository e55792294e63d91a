"""The sidebar's conversation list: new chat, the saved conversations (current one marked), delete with undo."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

import streamlit as st

from rag.ui.history import Conversation, History
from rag.ui.text import one_line, text

LIST_HEIGHT_PX = 260  # longer lists scroll inside this box, so the settings stay close


def new_chat() -> None:
    """Leave the current conversation; the next question starts a new one."""
    st.session_state.conversation_id = None
    st.session_state.close_sidebar = True


def open_conversation(conversation_id: str) -> None:
    st.session_state.conversation_id = conversation_id
    st.session_state.close_sidebar = True


def delete_conversation(history: History, conversation: Conversation) -> None:
    """Delete, keeping what an undo needs."""
    history.delete(conversation.id)
    was_current = st.session_state.get("conversation_id") == conversation.id
    st.session_state.deleted = {"id": conversation.id, "title": conversation.title, "was_current": was_current}
    if was_current:
        st.session_state.conversation_id = None


def undo_delete(history: History) -> None:
    """Bring the last deleted conversation back; the page returns to it only if it was the one on screen."""
    deleted = st.session_state.pop("deleted", None)
    if deleted:
        history.restore(deleted["id"])
        if deleted.get("was_current"):
            st.session_state.conversation_id = deleted["id"]


def labels(conversations: list[Conversation]) -> dict[str, str]:
    """Each conversation's label: its title, with the time it started when another has the same title,
    and a number when even the second is shared, so no two labels are alike."""
    counts = Counter(c.title for c in conversations)
    shown = {}
    for conversation in conversations:
        label = conversation.title
        if counts[conversation.title] > 1:
            started = datetime.fromisoformat(conversation.created_at).astimezone()
            label += started.strftime(" · %b %d %H:%M:%S")
        shown[conversation.id] = label
    clashes = Counter(shown.values())
    oldest_first = sorted(conversations, key=lambda c: c.created_at)
    seen: Counter[str] = Counter()
    for conversation in oldest_first:
        label = shown[conversation.id]
        if clashes[label] > 1:
            seen[label] += 1
            shown[conversation.id] = f"{label} ({seen[label]})"
    return shown


def conversations_section(history: History) -> None:
    """New chat, then the saved conversations in a scrolling box, then an undo for the last delete."""
    sidebar = st.sidebar
    sidebar.header("Conversations")
    sidebar.button("New chat", key="new_chat", on_click=new_chat, icon=":material/add:", width="stretch")
    current = st.session_state.get("conversation_id")
    conversations = history.list()
    names = labels(conversations)
    box = sidebar.container(height=LIST_HEIGHT_PX if len(conversations) > 5 else "content", border=False,
                            key="conversation_list")
    for conversation in conversations:
        is_current = conversation.id == current
        row = box.container(horizontal=True, wrap=False, key=f"conversation_row_{conversation.id}", gap="small",
                            vertical_alignment="center")
        row.button(
            text(names[conversation.id]),
            key=f"open_current_{conversation.id}" if is_current else f"open_{conversation.id}",
            on_click=open_conversation,
            args=(conversation.id,),
            type="secondary" if is_current else "tertiary",
            icon=":material/chat:" if is_current else None,
            help="The conversation on screen" if is_current else None,
        )
        row.button(
            text(f"Delete conversation {one_line(conversation.title)}"),
            key=f"delete_{conversation.id}",
            on_click=delete_conversation,
            args=(history, conversation),
            icon=":material/delete:",
            type="tertiary",
        )
    if not conversations:
        box.caption("No saved conversations yet.")
    deleted = st.session_state.get("deleted")
    if deleted:
        notice = sidebar.container(horizontal=True, vertical_alignment="center", key="undo_row")
        notice.caption(text(f"Deleted “{deleted['title']}”."))
        notice.button("Undo", key="undo_delete", on_click=undo_delete, args=(history,), icon=":material/undo:")
