"""The kernel websocket connection of the app's Voilà server: the v1 protocol only.

Voilà imports ``artlab.explore.connection.V1OnlyKernelConnection`` at startup (its config names
it), so this module stays light: jupyter_server is imported when the class is first asked for.
"""

from __future__ import annotations

import itertools

__all__ = ["KERNEL_WS_PROTOCOL", "is_v1_frame"]

#: the kernel websocket protocol the app speaks; clients that do not offer it are refused
KERNEL_WS_PROTOCOL = "v1.kernel.websocket.jupyter.org"


def is_v1_frame(message) -> bool:
    """Whether ``message`` is a well-formed v1 kernel websocket frame (bytes: a little-endian
    count n, n offsets, the channel and the message parts), checked before jupyter_server
    walks its offsets (a huge count would have it loop and allocate without bound)."""
    if not isinstance(message, (bytes, bytearray, memoryview)):
        return False
    message = bytes(message)
    if len(message) < 8:
        return False
    count = int.from_bytes(message[:8], "little")
    if count < 3 or 8 * (count + 1) > len(message):
        return False
    offsets = [int.from_bytes(message[8 * (i + 1):8 * (i + 2)], "little") for i in range(count)]
    return offsets[0] == 8 * (count + 1) and all(a <= b for a, b in itertools.pairwise(offsets)) \
        and offsets[-1] <= len(message)


def _v1_only_connection_class() -> type:
    from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
    from tornado import web
    from traitlets import Unicode

    class V1OnlyKernelConnection(ZMQChannelsWebsocketConnection):
        """jupyter_server's kernel websocket connection, v1 protocol only.

        Voilà's websocket handler reads every outgoing binary frame as a v1 frame; a
        legacy-protocol client's frames (a big-endian buffer count) then read as a huge
        offset count, and the server allocates without bound and stops answering. So a
        client that does not offer the v1 subprotocol is refused before the upgrade
        (HTTP 400), and incoming frames that are not well-formed v1 frames are dropped.
        """

        kernel_ws_protocol = Unicode(KERNEL_WS_PROTOCOL, allow_none=True, config=True,
                                     help="the only kernel websocket protocol spoken")

        async def prepare(self):
            header = self.websocket_handler.request.headers.get("Sec-WebSocket-Protocol", "")
            if KERNEL_WS_PROTOCOL not in {p.strip() for p in header.split(",")}:
                self.log.warning("refused a kernel websocket that does not offer %s", KERNEL_WS_PROTOCOL)
                # Finish, not HTTPError: Voilà cannot render jupyter_server's error page (no static_path)
                handler = self.websocket_handler
                handler.set_status(400)
                handler.set_header("Content-Type", "text/plain; charset=UTF-8")
                raise web.Finish(f"this server speaks only the {KERNEL_WS_PROTOCOL} kernel websocket protocol\n")
            await super().prepare()

        def handle_incoming_message(self, incoming_msg) -> None:
            if not is_v1_frame(incoming_msg):
                self.log.warning("dropped a kernel websocket message that is not a v1 frame")
                return
            super().handle_incoming_message(incoming_msg)

        def handle_outgoing_message(self, stream, outgoing_msg) -> None:
            if self.subprotocol != KERNEL_WS_PROTOCOL:
                return  # never reached (prepare refused the client): no legacy frames, whatever happens
            super().handle_outgoing_message(stream, outgoing_msg)

    V1OnlyKernelConnection.__qualname__ = "V1OnlyKernelConnection"
    V1OnlyKernelConnection.__module__ = __name__
    return V1OnlyKernelConnection


def __getattr__(name: str):
    # V1OnlyKernelConnection is built on first use: importing this module stays free of jupyter_server
    if name == "V1OnlyKernelConnection":
        cls = globals()[name] = _v1_only_connection_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
