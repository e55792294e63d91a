"""One chat turn: the fenced, budgeted prompt, follow-up rewriting, the streamed answer, and the `rag.ask` CLI."""
