"""Retrieval results built by hand, for tests and benches of what comes after retrieval."""
from __future__ import annotations

import dataclasses


def make(cls, **values):
    """A retrieval dataclass with the given fields, any other required field set to None."""
    for f in dataclasses.fields(cls):
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            values[f.name] = None
    return cls(**values)
