"""port_is_free: a port someone listens on is taken, the same port after they close it is free again."""

from __future__ import annotations

import socket

from engine.ports import port_is_free


def test_a_listening_port_is_taken_and_free_again_once_closed() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_is_free("127.0.0.1", port) is False
    assert port_is_free("127.0.0.1", port) is True
