"""Domain errors whose messages tell the user how to fix the problem.

Exit codes of `python -m rag.ask` (and the other CLIs), one per failure:
0 answered, 1 other error (e.g. a bad --where), 2 bad setting, 3 store unusable, 4 Ollama not reachable,
5 model not installed, 6 Ollama busy, 7 Ollama read timeout, 8 answer interrupted mid-stream,
9 model cannot chat (embedding-only), 10 other Ollama error, 11 question too long for the context, 130 Ctrl-C.
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


class OllamaError(RagError):
    """Ollama could not produce an answer."""

    exit_code = 10


class OllamaUnavailable(OllamaError):
    """Ollama is not running or not reachable at the configured host."""

    exit_code = 4


class ModelNotFound(OllamaError):
    """The chat model is not installed in Ollama."""

    exit_code = 5

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model


class OllamaBusy(OllamaError):
    """Ollama kept answering 503 after our retries."""

    exit_code = 6


class OllamaTimeout(OllamaError):
    """Ollama did not answer within the read timeout."""

    exit_code = 7


class StreamInterrupted(OllamaError):
    """The answer stream failed after it started; the partial text is kept."""

    exit_code = 8


class ModelCannotChat(OllamaError):
    """The chosen model is an embedding model and cannot chat."""

    exit_code = 9


class IngestCancelled(RagError):
    """An ingest stopped on request (its progress callback raised this); what was written is kept, the lock is freed."""

    exit_code = 130


class PromptTooLong(RagError):
    """The system rules and the question alone do not fit in the model's context."""

    exit_code = 11


def raised_within(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """True when exc came out of the code of one of these packages (a library failing on its input), not ours alone."""
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_globals.get("__name__", "").partition(".")[0] in packages:
            return True
        trace = trace.tb_next
    return False
