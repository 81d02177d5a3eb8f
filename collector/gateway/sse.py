"""Server-sent events: the one parser of `text/event-stream` bytes into events, by the WHATWG EventSource rules.

Incremental: feed it bytes as they arrive, cut anywhere, and it returns the events those bytes completed. Lines
end in CRLF, LF or CR (an LF right after a CR belongs to it, even in the next piece); a blank line ends an
event; a line that starts with ":" is a comment; the values of `data` lines (one leading space removed) are
joined with LF. Other fields (event, id, retry) stay in the event's bytes, uninterpreted: no caller needs them.
Events without a data field (comments, keep-alives) are returned too, so that the gateway's relay
(collector/gateway/relay.py) passes them on. The load generator and the completion client read data payloads
with `read_data`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass

_LINE_END_BYTES = (b"\n", b"\r")
_BLANK = frozenset((b"\n", b"\r\n", b"\r"))
DONE = b"[DONE]"  # the data of an OpenAI stream's last event


@dataclass(frozen=True, slots=True)
class Event:
    raw: bytes  # its lines as they came, without the line end of the last one and the blank line after it
    data: bytes | None  # the values of its data lines joined by LF; None: it has no data field


class EventParser:
    def __init__(self) -> None:
        self._line = b""  # the start of a line whose end has not arrived
        self._lines: list[bytes] = []  # the lines of the event so far, each with its line end
        self._after_cr = False  # the last byte was a CR: a first LF in the next piece is the rest of its line end

    def feed(self, piece: bytes) -> list[Event]:
        """The events that this piece completes, in order."""
        if not piece:
            return []
        if self._after_cr and piece[:1] == b"\n":
            piece = piece[1:]
            if self._lines:
                self._lines[-1] += b"\n"
        self._after_cr = piece.endswith(b"\r")
        lines = (self._line + piece if self._line else piece).splitlines(keepends=True)  # CRLF, LF, CR only
        self._line = lines.pop() if lines and lines[-1][-1:] not in _LINE_END_BYTES else b""
        events = []
        for line in lines:
            if line not in _BLANK:
                self._lines.append(line)
            elif self._lines:
                events.append(self._dispatch())
        return events

    @property
    def pending_bytes(self) -> int:
        """Bytes held for an event (or line) whose end has not arrived: what a caller bounds."""
        return len(self._line) + sum(map(len, self._lines))

    def end(self) -> Event | None:
        """The stream closed: the event it ended inside (no blank line after it), or None.

        EventSource drops such an event; the caller chooses: the gateway's relay calls it a malformed stream,
        `read_data` hands it on (a last `data: [DONE]` without its blank line still ends an OpenAI stream).
        """
        if self._line:
            self._lines.append(self._line)
            self._line = b""
        self._after_cr = False
        return self._dispatch() if self._lines else None

    def _dispatch(self) -> Event:
        lines, self._lines = self._lines, []
        last = lines[-1].rstrip(b"\r\n")
        if len(lines) == 1:  # most events: one data line
            return Event(last, _data_value(last))
        raw = b"".join(lines[:-1]) + last
        data = [value for line in lines if (value := _data_value(line.rstrip(b"\r\n"))) is not None]
        return Event(raw, b"\n".join(data) if data else None)


def _data_value(line: bytes) -> bytes | None:
    if line == b"data":
        return b""
    if not line.startswith(b"data:"):
        return None
    return line[6:] if line[5:6] == b" " else line[5:]


async def read_data(pieces: AsyncIterable[bytes], handle: Callable[[bytes], bool]) -> None:
    """Hand the data of every event to `handle` until it returns True (it has seen the end) or the pieces run
    out; the event the stream ended inside, if any, is handed on too (see EventParser.end)."""
    parser = EventParser()
    async for piece in pieces:
        for event in parser.feed(piece):
            if event.data is not None and handle(event.data):
                return
    last = parser.end()
    if last is not None and last.data is not None:
        handle(last.data)
