"""Turns files and record collections into embedded chunks in the Chroma store."""
