"""What the command lines share: a mistake in the arguments is one `error:` line and exit code 1, before any work;
the counts they take are checked as they are read."""
from __future__ import annotations

import argparse
import sys

from rag.core.errors import OTHER
from rag.core.settings import TOP_K_MAX
from rag.core.terminal import print_error


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one `error:` line and exit code 1, as every other failure of the CLIs."""

    def error(self, message: str):
        print_error(f"{message} (see {self.prog} --help)")
        sys.exit(OTHER)


def document_count(text: str) -> int:
    """The --k value: a whole number of documents from 1 to TOP_K_MAX."""
    try:
        k = int(text)
    except ValueError:
        k = 0
    if not 1 <= k <= TOP_K_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of documents from 1 to {TOP_K_MAX}")
    return k


def row_count(text: str) -> int:
    """A --limit or --sample value: a whole number of rows, 1 or more."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return count


def fraction(text: str) -> float:
    """A --floor value: a number from 0 to 1, as RAG_RELEVANCE_FLOOR takes."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value
