"""A pausable TCP proxy: put it between the bot and a real service to cut the line.

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/test"
        ...                        # the bot works normally
        await proxy.pause()        # every open connection is dropped, new ones are closed
        ...                        # "database unreachable"
        await proxy.resume()       # forwards again

pause() modes, all of which first drop the connections in flight:
  "close"  (default) accept new connections and close them at once: the client sees the
           connection closed/reset right after connecting;
  "refuse" stop listening: new connections get ECONNREFUSED (the port is re-bound on
           resume(), so another process could in theory take it meanwhile);
  "hang"   accept new connections and never answer: the client runs into its own
           timeouts (a black-holed network). They are dropped on resume().
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Literal, Self

PauseMode = Literal["close", "refuse", "hang"]
_CHUNK = 65536


class _Link:
    """One client connection and, when forwarding, its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None

    def drop(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.mode: PauseMode | None = None  # None: forwarding
        self.accepted = 0  # connections accepted, in any mode
        self.forwarded = 0  # connections that reached the target
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def paused(self) -> bool:
        return self.mode is not None

    @property
    def active(self) -> int:
        """Connections currently open through the proxy (or held by "hang")."""
        return len(self._links)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    async def stop(self) -> None:
        await self._unlisten()
        self._drop_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- control ----------------------------------------------------------------------

    async def pause(self, mode: PauseMode = "close") -> None:
        """Drop every open connection and stop forwarding new ones (see module doc)."""
        self.mode = mode
        if mode == "refuse":
            await self._unlisten()
        elif self._server is None:
            await self._listen()
        self._drop_all()

    async def resume(self) -> None:
        """Forward again; connections held by "hang" are dropped."""
        if self.mode is None:
            return
        self.mode = None
        self._drop_all()
        if self._server is None:
            await self._listen()

    # -- internals --------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Python >= 3.12 would wait for the connections too; they are dropped separately.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 0.1)

    def _drop_all(self) -> None:
        for link in list(self._links):
            link.drop()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        link = _Link(writer)
        try:
            if self.mode in ("close", "refuse"):
                writer.transport.abort()
                return
            self._links.add(link)
            if self.mode == "hang":
                while await reader.read(_CHUNK):
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                writer.transport.abort()
                return
            link.upstream = up_writer
            if link not in self._links:  # paused while connecting upstream
                link.drop()
                return
            self.forwarded += 1
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            link.drop()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except OSError:
            writer.transport.abort()
