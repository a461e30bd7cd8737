"""Room for the images a Run holds in memory.

A request takes a place once its task succeeded, before its images are downloaded, and gives it back
once they are saved (or the request ends otherwise). However many requests end together, and however
slow the disk, a run then holds the images of at most `size` requests (a 4K PNG is 20 MB or more, and
a download holds it twice while it arrives and is checked).
"""

from __future__ import annotations

import asyncio

__all__ = ["ImageRoom", "Place"]


class ImageRoom:
    """`size` places, one per request whose images may be in memory."""

    def __init__(self, size: int) -> None:
        self._places = asyncio.Semaphore(size)

    def place(self) -> Place:
        """A request's place, not taken yet: `async with room.place() as place: ... await place.take()`."""
        return Place(self._places)


class Place:
    """One request's place: `take()` waits for room; leaving the `async with` gives it back if taken."""

    __slots__ = ("_places", "_held")

    def __init__(self, places: asyncio.Semaphore) -> None:
        self._places, self._held = places, False

    async def take(self, _: object = None) -> None:
        """Wait for room (the argument, a task, lets it be the client's `before_download`)."""
        await self._places.acquire()
        self._held = True

    async def __aenter__(self) -> Place:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._held:
            self._held = False
            self._places.release()
