"""The HTTP server under the stand-in model servers: threads per connection, and every connection dropped on stop."""
from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandinServer(ThreadingHTTPServer):
    """Serves a stand-in on 127.0.0.1; it tracks connections so stop() can drop them, as a killed server would."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, standin, handler: type[BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", standin.port), handler)
        self.standin = standin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address):
        """Track the connection, then serve it in its own thread."""
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's net/http: no Nagle delay on small writes
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        """Ignore a client that hung up (e.g. after its read timeout), as real servers do; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request):
        """Forget the connection, then close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection, including idle keep-alive ones."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Served:
    """What both stand-ins do to run: start on a port they pick themselves, stop dropping every connection."""

    handler: type[BaseHTTPRequestHandler]
    port: int
    _server: StandinServer | None

    def start(self):
        """Start serving in a daemon thread; the port is known once this returns."""
        self._server = StandinServer(self, self.handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections, as a killed server would."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
