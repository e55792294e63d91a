"""Domain errors whose messages tell the user how to fix the problem.

Exit codes of `python -m rag.ask` (and the other CLIs), one per failure:
0 answered, 1 other error (e.g. a bad --where), 2 bad setting, 3 store unusable, 4 model server not reachable,
5 model not installed, 6 model server busy, 7 model server read timeout, 8 answer interrupted mid-stream,
9 model cannot chat (embedding-only), 10 other model server error, 11 question too long for the context,
12 the model server refused the API key, 130 Ctrl-C.
The model-server errors are the same whichever box serves the model; each backend words its own fix.
"""


class RagError(Exception):
    """Base of every error the user should see as one line, never as a traceback."""

    exit_code = 1


class SettingsError(RagError):
    """A setting has a value that cannot be used."""

    exit_code = 2


class StoreError(RagError):
    """The document store cannot be opened or used."""

    exit_code = 3


class EmbedderMismatch(StoreError):
    """The store was built with a different embedding model."""


class LLMError(RagError):
    """The model server (the LLM box) could not produce an answer."""

    exit_code = 10


class LLMUnavailable(LLMError):
    """The model server is not running or not reachable where the settings say."""

    exit_code = 4


class ModelNotFound(LLMError):
    """The chat model is not installed in the model server."""

    exit_code = 5

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model


class LLMBusy(LLMError):
    """The model server kept answering busy (503) after our retries."""

    exit_code = 6


class LLMTimeout(LLMError):
    """The model server sent nothing within the read timeout."""

    exit_code = 7


class StreamInterrupted(LLMError):
    """The answer stream failed after it started; the partial text is kept."""

    exit_code = 8


class ModelCannotChat(LLMError):
    """The chosen model is an embedding model and cannot chat."""

    exit_code = 9


class KeyRefused(LLMError):
    """The model server refused the API key (401/403)."""

    exit_code = 12


class IngestCancelled(RagError):
    """An ingest stopped on request (its progress callback raised this); what was written is kept, the lock is freed."""

    exit_code = 130


class PromptTooLong(RagError):
    """The system rules and the question alone do not fit in the model's context."""

    exit_code = 11


class ContextTooLong(LLMError):
    """The model server refused a prompt longer than the model's context (a figure it knew and did not expose)."""

    exit_code = PromptTooLong.exit_code
