"""`python -m rag.eval`: retrieval and answer evaluation (rag/evaluation/cli.py)."""
import sys

from rag.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
