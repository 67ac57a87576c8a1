"""A lean HTTP/1.1 load generator: keep-alive connections posting pre-encoded JSON bodies.

On a 2-core machine the load generator shares the cores with the API and Temporal; a general
client such as httpx spends about a millisecond of CPU per request, which would be charged to
the engine. This one only writes a request and reads the status, the headers and the body by
their Content-Length, which is all the benchmark needs.
"""

import asyncio
from collections.abc import Iterator


class Connection:
    """One keep-alive connection; requests on it go one after another."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._host = host
        self._port = port
        self._head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._writer.write(request)
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


async def post_all(
    host: str, port: int, path: str, headers: dict[str, str], bodies: list[bytes], lanes: int
) -> None:
    """Post every body, `lanes` at a time; fails on the first answer that is not 2xx."""
    queue: Iterator[bytes] = iter(bodies)

    async def lane() -> None:
        connection = Connection(host, port, headers)
        try:
            for body in queue:
                status, answer = await connection.post_json(path, body)
                if not 200 <= status < 300:
                    raise AssertionError(f"{status}: {answer[:500]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(lane() for _ in range(lanes)))
