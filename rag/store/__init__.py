"""The Chroma store (embedded or a server) and the change log readers follow."""
