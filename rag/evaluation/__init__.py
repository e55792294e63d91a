"""Measuring retrieval and answers: `rag.eval`, metrics, grounding, the judge, background runs."""
