"""The pipe protocol between the calling process and the template process.

Requests (caller -> template) are JSON lines written by trusted code. Replies (template ->
caller) are frames: a JSON header line, then `result_len` raw bytes of the child's result and
`output_len` raw bytes of its captured stdout/stderr. The child's bytes are never spliced
into a JSON line, so nothing a child writes can forge a header or another job's reply; the
caller parses the result with `json.loads` (data only) and checks its shape.
"""
from __future__ import annotations

import json
import os
import select
import time
from typing import Any


RESULT_MAX_BYTES = 64 << 20   # a child's result larger than this is malformed


class ProtocolError(RuntimeError):
    """The template process went away or sent something that is not a frame."""


def encode_request(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode("ascii") + b"\n"


def encode_frame(header: dict[str, Any], result: bytes = b"", output: bytes = b"") -> bytes:
    header = dict(header, result_len=len(result), output_len=len(output))
    return json.dumps(header).encode("ascii") + b"\n" + result + output


class FrameReader:
    """Reads frames from a file descriptor, with a deadline, without blocking past it."""

    _MAX_HEADER = 1 << 16

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def feed(self) -> None:
        """Read what is available now (call when the fd is readable)."""
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise ProtocolError("the executor's template process closed its pipe")
        self.buffer += chunk

    def next_frame(self) -> tuple[dict[str, Any], bytes, bytes] | None:
        """Pop one complete frame if buffered: (header, result bytes, output bytes)."""
        newline = self.buffer.find(b"\n")
        if newline < 0:
            if len(self.buffer) > self._MAX_HEADER:
                raise ProtocolError("malformed frame header")
            return None
        try:
            header = json.loads(bytes(self.buffer[:newline]))
            result_end = newline + 1 + int(header["result_len"])
            output_end = result_end + int(header["output_len"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed frame header: {exc}") from None
        if len(self.buffer) < output_end:
            return None
        result = bytes(self.buffer[newline + 1:result_end])
        output = bytes(self.buffer[result_end:output_end])
        del self.buffer[:output_end]
        return header, result, output

    def read_frame(self, timeout_s: float) -> tuple[dict[str, Any], bytes, bytes]:
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self.next_frame()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            poller = select.poll()   # not select.select: a busy caller may hold fds >= 1024
            poller.register(self.fd, select.POLLIN)
            if left <= 0 or not poller.poll(left * 1000):
                raise ProtocolError(f"no reply from the executor's template process in {timeout_s:.0f} s")
            self.feed()
