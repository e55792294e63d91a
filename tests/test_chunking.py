"""Chunking with the real word-piece tokenizer: chunks fit the embedder and carry title, headings and page."""
from __future__ import annotations

import time

from ingest.chunking import ChunkPlan, chunk_document
from ingest.documents import Document, Section


def plan_for(embedder) -> ChunkPlan:
    return ChunkPlan(200, 40, embedder.max_tokens)


def test_long_sections_become_chunks_that_fit_the_embedder_and_cover_every_word(embedder):
    words = [f"word{i}" for i in range(1500)]
    text = "\n\n".join(" ".join(words[i : i + 50]) + "." for i in range(0, 1500, 50))
    heading = ("A very long heading " * 20).strip()
    document = Document("guide.md", "Guide", [Section(text, ("Install", heading))])
    chunks = chunk_document(document, document.content_hash(), embedder.token_offsets, plan_for(embedder))
    assert len(chunks) > 5
    assert max(len(embedder.token_offsets(c.embed_text)) for c in chunks) <= embedder.max_tokens - 2
    assert set(" ".join(c.text for c in chunks).replace(".", "").split()) == set(words)
    assert all(c.embed_text.startswith("Guide\nInstall > A very long heading") for c in chunks)
    assert all(c.metadata["headings"] == f"Install > {heading}" for c in chunks)


def test_chunk_ids_name_document_version_and_position_and_section_metadata_is_kept(embedder):
    document = Document("rivers.pdf", "Rivers", [Section("Otters.", (), {"page": 1}), Section("Beavers.", (), {"page": 3})], {"course": "bio"})
    doc_hash = document.content_hash()
    chunks = chunk_document(document, doc_hash, embedder.token_offsets, plan_for(embedder))
    assert [c.id for c in chunks] == [f"rivers.pdf:{doc_hash[:12]}:0", f"rivers.pdf:{doc_hash[:12]}:1"]
    assert [(c.text, c.metadata["page"], c.metadata["course"], c.metadata["n_chunks"]) for c in chunks] == [
        ("Otters.", 1, "bio", 2), ("Beavers.", 3, "bio", 2)]


def test_text_without_spaces_is_cut_into_bounded_chunks_quickly(embedder):
    blob = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 3000
    document = Document("blob.txt", "blob", [Section(blob)])
    started = time.perf_counter()
    chunks = chunk_document(document, document.content_hash(), embedder.token_offsets, plan_for(embedder))
    assert time.perf_counter() - started < 10
    assert "".join(c.text for c in chunks).count("QUJD") >= 3000
    assert max(len(embedder.token_offsets(c.embed_text)) for c in chunks) <= embedder.max_tokens - 2
