"""The LLM box: the protocol every model server is spoken to through, its backends, and the model catalogue."""
