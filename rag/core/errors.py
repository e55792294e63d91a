"""Domain errors whose messages tell the user how to fix the problem, and the exit codes of every CLI."""
from __future__ import annotations

from collections.abc import Iterable

OK, OTHER, SETTING, STORE = 0, 1, 2, 3
SERVER_UNREACHABLE, MODEL_NOT_INSTALLED, SERVER_BUSY, READ_TIMEOUT, BROKEN_OFF, CANNOT_CHAT, SERVER_OTHER = range(4, 11)
TOO_LONG = 11
KEY_REFUSED = 12
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away (`| head`)
EXIT_CODES = {  # the one table: --help of ingest, rag.ask and rag.eval is made from it, the README repeats it
    OK: "ok",
    OTHER: "a bad command line, some inputs skipped (ingest) or another error",
    SETTING: "a bad setting",
    STORE: "store missing or unusable (unreachable, built with another embedder or chunking, another ingest running)",
    SERVER_UNREACHABLE: "model server not reachable",
    MODEL_NOT_INSTALLED: "model not installed",
    SERVER_BUSY: "model server busy",
    READ_TIMEOUT: "no answer text within RAG_READ_TIMEOUT",
    BROKEN_OFF: "answer broken off mid-stream",
    CANNOT_CHAT: "model cannot chat (embedding-only)",
    SERVER_OTHER: "other model server error",
    TOO_LONG: "question too long for the context",
    KEY_REFUSED: "the model server refused the API key (RAG_OPENAI_API_KEY)",
    INTERRUPTED: "interrupted (Ctrl-C)",
    OUTPUT_CLOSED: "output closed (its reader went away, as with `| head`)",
}


def exit_codes_help(codes: Iterable[int]) -> str:
    """A CLI's --help text on the exit codes it can give, in the words of EXIT_CODES."""
    return "exit codes: " + ", ".join(f"{code} {EXIT_CODES[code]}" for code in codes) + "."


class RagError(Exception):
    """Base of every error the user should see as one line, never as a traceback."""

    exit_code = OTHER


class SettingsError(RagError):
    """A setting has a value that cannot be used."""

    exit_code = SETTING


class StoreError(RagError):
    """The document store cannot be opened or used."""

    exit_code = STORE


class EmbedderMismatch(StoreError):
    """The store was built with a different embedding model."""


class LLMError(RagError):
    """The model server (the LLM box) could not produce an answer; each backend words its own fix."""

    exit_code = SERVER_OTHER


class LLMUnavailable(LLMError):
    """The model server is not running or not reachable where the settings say."""

    exit_code = SERVER_UNREACHABLE


class ModelNotFound(LLMError):
    """The chat model is not installed in the model server."""

    exit_code = MODEL_NOT_INSTALLED

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model


class LLMBusy(LLMError):
    """The model server kept answering busy (429/503) after our retries."""

    exit_code = SERVER_BUSY


class LLMTimeout(LLMError):
    """The model server showed no answer text within the read timeout."""

    exit_code = READ_TIMEOUT


class StreamInterrupted(LLMError):
    """The answer stream failed after it started; the partial text is kept."""

    exit_code = BROKEN_OFF


class ModelCannotChat(LLMError):
    """The chosen model is an embedding model and cannot chat."""

    exit_code = CANNOT_CHAT


class KeyRefused(LLMError):
    """The model server refused the API key (401/403)."""

    exit_code = KEY_REFUSED


class IngestCancelled(RagError):
    """An ingest stopped on request (its progress callback raised this); what was written is kept, the lock is freed."""

    exit_code = INTERRUPTED


class PromptTooLong(RagError):
    """The system rules and the question alone do not fit in the model's context."""

    exit_code = TOO_LONG


class ContextTooLong(LLMError):
    """The model server refused a prompt longer than the model's context (a figure it knew and did not expose)."""

    exit_code = TOO_LONG


OUR_PACKAGES = ("rag", "ingest")


def raised_within(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """True when exc came out of one of these packages failing on its input, not out of our code: its class is theirs
    (compiled code such as lxml leaves no frame), or, of the frames it passed, the innermost that is theirs or ours is
    theirs (their own helpers, httpx under Chroma, are passed over; our callback inside their parser is ours)."""
    if type(exc).__module__.partition(".")[0] in packages:
        return True
    frames = []
    trace = exc.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame.f_globals.get("__name__", "").partition(".")[0])
        trace = trace.tb_next
    for package in reversed(frames):
        if package in packages:
            return True
        if package in OUR_PACKAGES:
            return False
    return False
