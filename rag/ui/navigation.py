"""The sidebar's links between the pages, named for people ('Chat', not the entry point's file name 'app')."""
from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

PAGES = (("app.py", "Chat", ":material/chat:"), ("pages/1_Models.py", "Models", ":material/leaderboard:"))


def page_links() -> None:
    """Links to the chat and the Models page, at the top of the sidebar (Streamlit's own list is turned off).

    A page the running app does not know (a page script run on its own, as tests do) is left out."""
    for path, label, icon in PAGES:
        try:
            st.sidebar.page_link(path, label=label, icon=icon)
        except StreamlitAPIException:
            continue
