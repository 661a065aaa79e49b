"""Task ownership in the node: every task the daemon starts belongs to its ``asyncio.TaskGroup``.

Habit 7 of docs/GUIDE: no fire-and-forget tasks. ``Node.run`` opens one TaskGroup and hands a ``Spawner``
over it to every component (links, reconcile, timers, relay clients) instead of ``loop.create_task``:

* the group awaits every task before ``Node.run`` releases what they use (TUN device, directory source);
* a task that fails (a bug, the TUN device deleted under us) aborts the group, so ``Node.run`` stops with
  that error;
* ``Running`` is a ``ReconnectingClient`` (dialer or relay link) whose ``run()`` is one such task;
  ``close()`` stops the client and awaits its task, so no dial or backoff sleep outlives its peer.

Once the group is shutting down it refuses new tasks: ``Spawner`` then closes the coroutine and returns
None (work that would use links being closed is dropped, never left running unowned).

May import: transport.reconnect. Not task-safe beyond the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from shadowmesh_client.transport import ReconnectingClient


class Spawner:
    """``spawn(coro, name=None) -> Task | None``: a task of ``group``; ``live`` are those not done yet."""

    __slots__ = ("_group", "live")

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self.live: set[asyncio.Task] = set()

    def __call__(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task | None:
        try:
            task = self._group.create_task(coro, name=name)
        except RuntimeError:  # the group is shutting down or finished: nothing new may start
            coro.close()
            return None
        self.live.add(task)
        task.add_done_callback(self.live.discard)
        return task

    def cancel_all(self) -> None:
        """Cancel every live task (the group's exit then awaits them)."""
        for task in list(self.live):
            task.cancel()


class Running:
    """A ``ReconnectingClient`` run by one task of the group (``client.start()`` would make an unowned one)."""

    __slots__ = ("client", "task")

    def __init__(self, client: ReconnectingClient, spawn: Spawner, name: str) -> None:
        self.client = client
        self.task = spawn(client.run(), name)

    @property
    def link(self):
        return self.client.link

    async def close(self) -> None:
        """Stop reconnecting, close the link, and await the task (cancelled if it sleeps or dials)."""
        await self.client.close()
        task = self.task
        if task is None or task.done() or task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.wait([task])
