"""`python -m rag.ask`: the chat turn in a terminal (rag/chat/ask.py)."""
import sys

from rag.chat.ask import main

if __name__ == "__main__":
    sys.exit(main())
