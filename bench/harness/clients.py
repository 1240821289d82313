"""Minimal, cheap protocol clients for the load generators: WebSocket, HTTP/1.1 and XMPP.

Written against asyncio protocols (uvloop when installed) so that one client core can drive far
more traffic than a general-purpose library would: frames are built from prepared bytes, the
WebSocket mask key is all zeros (legal, and XOR with zero costs nothing), and responses are
scanned for the few bytes that matter before any JSON is parsed.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from typing import Any

Handler = Callable[[bytes], None]


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class WebSocket(asyncio.Protocol):
    """A WebSocket client connection; every text frame goes to `on_text`."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_text: Handler | None = None,
        on_raw: Handler | None = None,
    ) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: cXVubGlhby1iZW5jaC0xNg==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.on_text = on_text or (lambda _b: None)
        # Fan-out receivers only count stamped messages: `on_raw` gets the bytes as they come
        # (frame headers included) instead of one call per frame, so one client core can
        # take in several hundred thousand frames a second.
        self.on_raw = on_raw
        self.buf = bytearray()
        self.open = False
        self.closed = False
        self.close_code: int | None = None
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the handshake"))

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(ws_frame(payload))

    def send_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if b" 101" not in status:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(status.decode(errors="replace")))
                self.close()
                return
            self.open = True
            if not self.ready.done():
                self.ready.set_result(True)
        if self.on_raw is not None:
            if buf:
                self.on_raw(bytes(buf))
                buf.clear()
            return
        pos = 0
        size = len(buf)
        on_text = self.on_text
        while size - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if size - start < n:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[start : start + n])
            pos = start + n
            if opcode == 0x1 or opcode == 0x2:
                on_text(payload)
            elif opcode == 0x9:
                self.send_raw(ws_frame(payload, 0xA))
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                self.closed = True
                self.close()
        if pos:
            del buf[:pos]


async def ws_connect(
    host: str,
    port: int,
    path: str,
    on_text: Handler | None = None,
    wait_s: float = 30,
    on_raw: Handler | None = None,
) -> WebSocket:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: WebSocket(host, port, path, on_text, on_raw), host, port
    )
    await asyncio.wait_for(proto.ready, wait_s)
    return proto


class Http(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection, one request in flight; `on_response(status, body)`."""

    def __init__(self, on_response: Callable[[int, bytes], None]) -> None:
        self.on_response = on_response
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ready.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def request(self, data: bytes) -> None:
        self.busy = True
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            status = int(head[9:12])
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if m:
                length = int(m.group(1))
                if len(buf) - end - 4 < length:
                    return
                body = bytes(buf[end + 4 : end + 4 + length])
                del buf[: end + 4 + length]
            elif b"transfer-encoding: chunked" in head:
                body_parts = []
                pos = end + 4
                while True:
                    line_end = buf.find(b"\r\n", pos)
                    if line_end < 0:
                        return
                    chunk = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
                    if len(buf) < line_end + 2 + chunk + 2:
                        return
                    body_parts.append(bytes(buf[line_end + 2 : line_end + 2 + chunk]))
                    pos = line_end + 2 + chunk + 2
                    if chunk == 0:
                        break
                body = b"".join(body_parts)
                del buf[:pos]
            else:
                body = b""
                del buf[: end + 4]
            self.busy = False
            self.on_response(status, body)


async def http_connect(host: str, port: int, on_response: Callable[[int, bytes], None]) -> Http:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: Http(on_response), host, port)
    return proto


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- XMPP ---------------------------------------------------------------------------------

STREAM_OPEN = (
    "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
SM_ACK = re.compile(rb"<a\s[^>]*?h=['\"](\d+)['\"][^>]*/>")


class Xmpp:
    """A logged-in XMPP c2s session over plain TCP (SASL PLAIN, bind, stream management)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = b""

    async def _until(self, marker: bytes, wait_s: float = 30) -> bytes:
        async def read() -> bytes:
            while marker not in self.buf:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"XMPP stream closed waiting for {marker!r}")
                self.buf += chunk
            idx = self.buf.index(marker) + len(marker)
            out, self.buf = self.buf[:idx], self.buf[idx:]
            return out

        return await asyncio.wait_for(read(), wait_s)

    def write(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    @classmethod
    async def login(
        cls,
        host: str,
        port: int,
        domain: str,
        user: str,
        password: str,
        resource: str,
        presence: bool = False,
        sm: bool = True,
    ) -> Xmpp:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
        x = cls(reader, writer)
        x.write(STREAM_OPEN.format(domain=domain))
        await x._until(b"</stream:features>")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        x.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        answer = await x._until(b">")
        if b"success" not in answer:
            rest = await x._until(b"</failure>")
            raise ConnectionError(f"XMPP auth failed for {user}: {(answer + rest)[:200]!r}")
        x.buf = b""
        x.write(STREAM_OPEN.format(domain=domain))
        await x._until(b"</stream:features>")
        x.write(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        await x._until(b"</iq>")
        if presence:
            x.write("<presence/>")
        if sm:
            x.write("<enable xmlns='urn:xmpp:sm:3'/>")
            await x._until(b"<enabled")
            await x._until(b">")
        return x

    async def iq(self, xml: str, until: bytes, wait_s: float = 60) -> bytes:
        self.write(xml)
        return await self._until(until, wait_s)

    def close(self) -> None:
        try:
            self.writer.write(b"</stream:stream>")
            self.writer.close()
        except Exception:
            pass


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def install_uvloop() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


def loads(raw: bytes) -> Any:
    import orjson

    return orjson.loads(raw)
