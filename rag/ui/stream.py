"""Read a blocking text stream in a worker thread so the page can show a 'loading model' state while it waits."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

_END = object()


class Waiting:
    """A heartbeat: nothing arrived for a while; seconds is the time since the last piece (or since the start)."""

    def __init__(self, seconds: float):
        self.seconds = seconds


def relay(pieces: Iterator[str], tick: float = 0.25) -> Iterator[str | Waiting]:
    """Yield the stream's pieces as they come, and a Waiting every tick while none comes (its seconds restart at
    each piece: a pause between tokens is not a wait for the first one).

    Closing this generator stops the worker after its current piece and closes the source stream.
    """
    inbox: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            for piece in pieces:
                if stop.is_set():
                    break
                inbox.put(piece)
        except BaseException as exc:  # handed to the reading thread, which re-raises it
            inbox.put(exc)
        finally:
            close = getattr(pieces, "close", None)
            if close:
                close()
            inbox.put(_END)

    worker = threading.Thread(target=work, name="answer-stream", daemon=True)
    worker.start()
    since = time.monotonic()
    try:
        while True:
            try:
                item = inbox.get(timeout=tick)
            except queue.Empty:
                yield Waiting(time.monotonic() - since)
                continue
            since = time.monotonic()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
