"""A TCP proxy that can go silent: a peer that vanished without closing its connection, for the keepalive tests."""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentProxy:
    """A TCP proxy to 127.0.0.1:`port`; after `silence()` it reads both ways and delivers nothing, with both
    connections left open: to each end, the other has gone quiet without a FIN or a reset."""

    def __init__(self, port: int) -> None:
        self.upstream_port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarding = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # the server has stopped: a reconnecting client is refused too
                downstream.close()
                continue
            self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.forwarding:
                    sink.sendall(data)
        except OSError:  # closed by close()
            return

    def silence(self) -> None:
        self.forwarding = False

    def close(self) -> None:
        for s in (self.listener, *self.sockets):
            with contextlib.suppress(OSError):  # not connected
                s.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in accept() and recv()
            s.close()
