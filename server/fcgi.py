"""A compact FastCGI client (responder role) for talking to ``mapserv`` workers.

No maintained Python FastCGI *client* exists on PyPI (flup's is Python-2 code, fcgiproto is the
application side), so this module implements the small part of the FastCGI 1.0 spec Lantu needs:
BEGIN_REQUEST, PARAMS, STDIN → STDOUT, STDERR, END_REQUEST, one request per connection (a mapserv
process serves one connection at a time; a kept-alive connection would monopolise it).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass

VERSION = 1
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
RESPONDER = 1
HEADER = struct.Struct(">BBHHBx")
MAX_CONTENT = 65535
REQUEST_ID = 1


class FastCGIError(RuntimeError):
    """The FastCGI application could not be reached or broke the protocol."""


@dataclass(frozen=True)
class CGIResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stderr: bytes


def _record(kind: int, content: bytes = b"") -> bytes:
    padding = -len(content) % 8
    return HEADER.pack(VERSION, kind, REQUEST_ID, len(content), padding) + content + b"\0" * padding


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def encode_params(params: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in params.items():
        key, val = name.encode("latin-1"), value.encode("utf-8")
        out += _length(len(key)) + _length(len(val)) + key + val
    return bytes(out)


def _stream(kind: int, data: bytes) -> bytes:
    chunks = [_record(kind, data[i:i + MAX_CONTENT]) for i in range(0, len(data), MAX_CONTENT)]
    return b"".join(chunks) + _record(kind)  # an empty record ends the stream


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise FastCGIError("connection closed by the FastCGI application mid-response")
        buf += chunk
    return bytes(buf)


def parse_cgi(stdout: bytes, stderr: bytes) -> CGIResponse:
    head, sep, body = stdout.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = stdout.partition(b"\n\n")
    if not sep:
        raise FastCGIError("response without a header block")
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not name:
            continue
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    return CGIResponse(status, headers, body, stderr)


def request(address: str, params: Mapping[str, str], body: bytes = b"", timeout: float = 60.0) -> CGIResponse:
    """Send one request to the FastCGI application listening on unix socket ``address``."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
    except OSError as exc:
        raise FastCGIError(f"cannot connect to {address}: {exc}") from exc
    try:
        begin = struct.pack(">HB5x", RESPONDER, 0)  # flags 0: the application closes after responding
        sock.sendall(_record(BEGIN_REQUEST, begin) + _stream(PARAMS, encode_params(params)) + _stream(STDIN, body))
        stdout, stderr = bytearray(), bytearray()
        while True:
            _version, kind, _rid, length, padding = HEADER.unpack(_read_exact(sock, HEADER.size))
            content = _read_exact(sock, length + padding)[:length]
            if kind == STDOUT:
                stdout += content
            elif kind == STDERR:
                stderr += content
            elif kind == END_REQUEST:
                break
        return parse_cgi(bytes(stdout), bytes(stderr))
    except (OSError, struct.error) as exc:
        raise FastCGIError(f"FastCGI exchange with {address} failed: {exc}") from exc
    finally:
        sock.close()
