"""Length-prefixed messages on the pipes between the controller and its prober process.

A frame is a 4-byte big-endian length and a pickle of a tuple whose first item names the
message. Pickle is safe here and only here: both ends are zen-lead itself, the child is started
by the parent with the same code, and the pipes are private to the two processes (never a
socket, never anything a pod or a user can write to). It is also the cheapest codec for
frozen dataclasses, enums and Prometheus metric families, which JSON would need converters for.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ("MAX_FRAME_BYTES", "FrameError", "encode", "read")

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A larger frame means a broken peer: the reader gives up instead of allocating it."""
_HEADER = 4


class FrameError(Exception):
    """The peer sent something that is not a frame of ours."""


def encode(message: tuple[Any, ...]) -> bytes:
    """Return `message` as one frame."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


async def read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """Read one frame; raise `asyncio.IncompleteReadError` at the end of the stream."""
    size = int.from_bytes(await reader.readexactly(_HEADER), "big")
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    message = pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child process.
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise FrameError(f"not a message: {type(message).__name__}")
    return message
