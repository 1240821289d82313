"""A do-nothing WebSocket server: answers every send frame at once with an ack (no storage).

    python -m bench.harness.echo PORT

Used to measure the load client's own ceiling: if the client cannot outrun this, it cannot
measure a real server faster than this either.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import sys

from bench.harness.clients import install_uvloop

TXN = re.compile(rb'"client_txn_id":"([^"]+)"')
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", bytes(buf[:end]))
            key = m.group(1) if m else b""
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            del buf[: end + 4]
            self.open = True
        out = []
        pos, size = 0, len(buf)
        while size - pos >= 6:
            opcode = buf[pos] & 0x0F
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif n == 127:
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            mask = bytes(buf[start : start + 4])
            start += 4
            if size - start < n:
                break
            payload = bytes(buf[start : start + n])
            if mask != b"\0\0\0\0":
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            pos = start + n
            if opcode == 0x8:
                self.transport.close()
                return
            m = TXN.search(payload)
            if m:
                out.append(frame(b'{"type":"ack","client_txn_id":"' + m.group(1) + b'"}'))
        if pos:
            del buf[:pos]
        if out:
            self.transport.write(b"".join(out))


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    install_uvloop()
    asyncio.run(main(int(sys.argv[1])))
