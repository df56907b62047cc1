"""Frames over pipes: how the trainer, a sandbox worker and the process that runs the code talk to each other.

A frame is a JSON header followed by binary blobs (raw image pixels). Images cross the process boundaries as raw
bytes, with no encoding on either side, and nothing that comes out of the sandbox is ever unpickled: the trainer
only parses JSON and copies pixels.

Every read and write can take a deadline (a ``time.monotonic()`` value), so that a silent or flooding peer costs
at most its timeout. Reads never go past the end of the current frame, so frames on one pipe cannot interleave.
A reader states how large a frame and its header may be, and both are checked on the frame's first 12 bytes, before
anything is allocated; a header is parsed only once a linear scan has shown it nests no deeper than
:data:`MAX_HEADER_DEPTH` and holds at most :data:`MAX_HEADER_CONTAINERS` lists and objects (Python's JSON parser
recurses, and a header of millions of ``{}`` would cost hundreds of megabytes).

This module runs on both sides of the sandbox, so it imports nothing beyond the standard library.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import re
import select
import struct
import time
from collections.abc import Sequence

Buffer = bytes | bytearray | memoryview

# Header length and total blob length, in bytes.
_PREFIX = struct.Struct("<IQ")
_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux only
# Every header of this protocol nests at most four deep and holds a few lists per image.
MAX_HEADER_DEPTH = 8
MAX_HEADER_CONTAINERS = 4096
DEFAULT_MAX_HEADER_BYTES = 1 << 20
# A call's header carries the model's code; the trainer is trusted, so this only bounds a bug.
CALL_HEADER_BYTES = 64 << 20
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ALL_BUT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class FrameError(ValueError):
    """A frame that is malformed or larger than the reader accepts."""


def encode_frame(header: dict, blobs: Sequence[Buffer] = ()) -> list[Buffer]:
    """The parts of one frame, in order (kept separate so that large blobs are never copied into one buffer)."""
    head = json.dumps({**header, "blobs": [len(blob) for blob in blobs]}).encode()
    return [_PREFIX.pack(len(head), sum(len(blob) for blob in blobs)), head, *blobs]


class FrameMemory:
    """Memory to read frames into, kept from one frame to the next.

    A fresh buffer per frame costs a page fault per 4 KiB, about a millisecond per image in a virtual machine; a
    kept one is faulted in once. It is also left out of forked children, which must not inherit a call's images,
    and writing into memory shared with a child would copy every page touched. The blobs of a frame read into it
    are valid until the next frame is read into it.
    """

    def __init__(self):
        self._map: mmap.mmap | None = None

    def take(self, size: int) -> memoryview:
        if self._map is None or len(self._map) < size:
            # Not closed: views of the last frame may still be alive; it goes when they do.
            self._map = mmap.mmap(-1, max(size, _CHUNK))
            if hasattr(mmap, "MADV_DONTFORK"):
                self._map.madvise(mmap.MADV_DONTFORK)
        return memoryview(self._map)[:size]


class FrameReader:
    """Assembles one frame, read straight from a pipe into its buffer; refuses frames larger than ``max_bytes`` or
    with a header larger than ``max_header_bytes``.

    The buffer comes from ``memory`` when given (see :class:`FrameMemory`), otherwise it is a new one.
    """

    def __init__(
        self, max_bytes: int, memory: FrameMemory | None = None, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    ):
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self._memory = memory
        self._buffer: bytearray | memoryview = bytearray(_PREFIX.size)
        self._filled = 0
        self._sized = False

    @property
    def missing(self) -> int:
        """How many more bytes the frame needs (0 when it is complete)."""
        return len(self._buffer) - self._filled

    def read_from(self, fd: int) -> int:
        """Read what ``fd`` has, up to the end of the frame; returns the number of bytes read (0 at end of file).

        The bytes land in place (no chunk objects), which matters for images of megabytes."""
        count = os.readv(fd, [memoryview(self._buffer)[self._filled : self._filled + _CHUNK]])
        self._filled += count
        if not self._sized and self._filled == _PREFIX.size:
            head_size, blobs_size = _PREFIX.unpack_from(self._buffer)
            size = _PREFIX.size + head_size + blobs_size
            if size > self.max_bytes:
                raise FrameError(f"frame of {size} bytes exceeds the limit of {self.max_bytes} bytes")
            if head_size > self.max_header_bytes:
                raise FrameError(f"frame header of {head_size} bytes exceeds the limit of {self.max_header_bytes} bytes")
            prefix = self._buffer
            self._buffer = bytearray(size) if self._memory is None else self._memory.take(size)
            self._buffer[: _PREFIX.size] = prefix
            self._sized = True
        return count

    def frame(self) -> tuple[dict, list[memoryview]]:
        """The header and blobs of the complete frame (blobs are views into the frame's buffer)."""
        if not self._sized or self.missing:
            raise FrameError("frame is incomplete")
        head_size, blobs_size = _PREFIX.unpack_from(self._buffer)
        end = _PREFIX.size + head_size
        header = parse_header(bytes(self._buffer[_PREFIX.size : end]))
        sizes = header.get("blobs") if isinstance(header, dict) else None
        if not (
            isinstance(sizes, list) and all(type(n) is int and n >= 0 for n in sizes) and sum(sizes) == blobs_size
        ):
            raise FrameError("frame header does not describe its blobs")
        view = memoryview(self._buffer)
        blobs = []
        for size in sizes:
            blobs.append(view[end : end + size])
            end += size
        return header, blobs


def parse_header(data: bytes):
    """A frame header's JSON, refused (``FrameError``) if it nests deeper than :data:`MAX_HEADER_DEPTH` or holds
    more than :data:`MAX_HEADER_CONTAINERS` lists and objects. The check scans the text without recursion and
    without building anything: strings are blanked out (brackets in them do not count), then brackets counted."""
    skeleton = _JSON_STRING.sub(b'""', data).translate(None, _ALL_BUT_BRACKETS)
    if len(skeleton) > 2 * MAX_HEADER_CONTAINERS:
        raise FrameError(f"frame header holds more than {MAX_HEADER_CONTAINERS} lists and objects")
    depth = 0
    for bracket in skeleton:
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_HEADER_DEPTH:
            raise FrameError(f"frame header nests deeper than {MAX_HEADER_DEPTH}")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FrameError(f"frame header is not JSON: {error}") from None


def read_frame(
    fd: int,
    deadline: float | None = None,
    max_bytes: int = 1 << 34,
    memory: FrameMemory | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> tuple[dict, list[memoryview]]:
    """Read one frame from ``fd`` (into ``memory`` if given). Raises ``EOFError`` if the peer closes,
    ``TimeoutError`` past ``deadline``, ``FrameError`` if it is malformed or larger than allowed."""
    reader = FrameReader(max_bytes, memory, max_header_bytes)
    while reader.missing:
        wait_until_ready(fd, select.POLLIN, deadline)
        if not reader.read_from(fd):
            raise EOFError("the other end closed the pipe")
    return reader.frame()


def write_frame(fd: int, header: dict, blobs: Sequence[Buffer] = (), deadline: float | None = None) -> None:
    """Write one frame to ``fd``; with a deadline, ``fd`` must be non-blocking so a full pipe cannot stall us."""
    for part in encode_frame(header, blobs):
        view = memoryview(part)
        while view:
            if deadline is not None:
                wait_until_ready(fd, select.POLLOUT, deadline)
            view = view[os.write(fd, view) :]


def wait_until_ready(fd: int, events: int, deadline: float | None) -> None:
    """Block until ``fd`` is ready for ``events`` (or hung up), raising ``TimeoutError`` at ``deadline``.

    poll, not select: the trainer may hold more than FD_SETSIZE (1024) descriptors.
    """
    poller = select.poll()
    poller.register(fd, events)
    while True:
        timeout_ms = None if deadline is None else max(0, round((deadline - time.monotonic()) * 1000))
        if poller.poll(timeout_ms):
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("deadline passed")


def widen_pipe(fd: int) -> None:
    """Give the pipe behind ``fd`` a 1 MiB buffer: an image then crosses in a couple of wake-ups, not dozens."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _CHUNK)
    except OSError:
        pass  # not Linux, or past the user's pipe-buffer quota: the default size works, only slower


def check_result(header, blobs: Sequence[Buffer], max_images: int, max_image_pixels: int, max_chars: int) -> dict:
    """The header of a session's result frame (see ``runner.serve``), checked field by field: ``error`` (text or
    None), ``notes`` (at most ``max_images + 1`` texts) and ``images`` (a [width, height] per RGB blob, at most
    ``max_images`` of at most ``max_image_pixels`` each). Returns it rebuilt from the checked fields, texts cut to
    ``max_chars``; raises ``ValueError`` naming the first field that is malformed.

    The worker checks what the session sent before passing it on, and the trainer checks what the worker sent."""
    if not isinstance(header, dict):
        raise ValueError("the result is not an object")
    error, notes, sizes = header.get("error"), header.get("notes"), header.get("images")
    if not (error is None or isinstance(error, str)):
        raise ValueError("error is not text")
    if not (isinstance(notes, list) and len(notes) <= max_images + 1 and all(isinstance(n, str) for n in notes)):
        raise ValueError("notes are not a short list of text")
    if not (isinstance(sizes, list) and len(sizes) == len(blobs) and len(sizes) <= max_images):
        raise ValueError("more images than allowed, or not one size per image")
    for size, blob in zip(sizes, blobs, strict=True):
        if not (isinstance(size, list) and len(size) == 2 and all(type(n) is int and n > 0 for n in size)):
            raise ValueError("an image of invalid size")
        if size[0] * size[1] > max_image_pixels or len(blob) != size[0] * size[1] * 3:
            raise ValueError("an image larger than allowed, or not as large as its size says")
    return {
        "error": None if error is None else error[:max_chars],
        "notes": [note[:max_chars] for note in notes],
        "images": [list(size) for size in sizes],
    }
