"""The retriever loads in a background thread while the page is already drawn; the page says how far it got."""
from __future__ import annotations

import threading

import streamlit as st

from rag.core.errors import RagError
from rag.core.settings import Settings


class BackgroundRetriever:
    """Opens the store (raising StoreError if it cannot), then loads the embedder and chunk index in a thread."""

    def __init__(self, settings: Settings):
        from rag.search.loader import RetrieverLoader  # numpy, scipy and bm25s are imported here, after the sidebar is drawn

        self.loader = RetrieverLoader(settings)
        self.retriever = None
        self.error: str | None = None
        self.done = threading.Event()
        threading.Thread(target=self.run, name="load-retriever").start()  # not a daemon: never killed mid-load

    def run(self) -> None:
        try:
            self.retriever = self.loader.load()
            self.retriever.index.watch()
        except RagError as exc:
            self.error = str(exc)
        except Exception as exc:  # a failure here must reach the page as a message, not kill the thread silently
            self.error = f"Loading the store failed ({type(exc).__name__}: {exc})."
        finally:
            self.done.set()

    @property
    def loading(self) -> bool:
        """True until the retriever is ready or has failed."""
        return not self.done.is_set()

    def wait(self):
        """The retriever once loaded (None if it failed)."""
        self.done.wait()
        return self.retriever

    def status(self) -> str:
        """What is loading, e.g. 'Loading the embedder and the index (20,000 of 100,000 chunks)…'."""
        index = self.loader.index
        parts = []
        if self.loader.embedder_loading:
            parts.append("the embedder")
        if index.loading.stage != "ready":
            done, total = index.loading.done, index.loading.total
            parts.append(f"the index ({done:,} of {total:,} chunks)" if total else "the index")
        return f"Loading {' and '.join(parts) or 'the search'}…"


@st.fragment(run_every=0.5)
def show_loading(background: BackgroundRetriever) -> None:
    """What is loading, redrawn every half second; the whole page reruns once the retriever is ready."""
    if not background.loading:
        st.rerun()
    st.info(background.status() + " You can already type your question.", icon=":material/hourglass_top:")
