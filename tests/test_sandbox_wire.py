"""Frames over real pipes, as the trainer, a sandbox worker and the code's process send them to each other."""

from __future__ import annotations

import ctypes
import os
import threading

import pytest

from agentic_vlm.tools.code.wire import FrameError, FrameMemory, read_frame, widen_pipe, write_frame


def pipe_carrying(frames: list[tuple[dict, list[bytes]]]) -> int:
    """The read end of a pipe that a thread fills with ``frames`` and then closes."""
    read_end, write_end = os.pipe()
    widen_pipe(read_end)

    def write_all() -> None:
        try:
            for header, blobs in frames:
                write_frame(write_end, header, blobs)
        except BrokenPipeError:
            pass  # the reader refused the frame and closed its end
        finally:
            os.close(write_end)

    threading.Thread(target=write_all, daemon=True).start()
    return read_end


def test_frames_of_any_size_are_read_in_turn_into_one_kept_memory():
    sizes = [3 << 20, 10, 0, 5 << 20, 700_000]
    frames = [({"index": index}, [os.urandom(size), b"tail"]) for index, size in enumerate(sizes)]
    fd = pipe_carrying(frames)
    memory = FrameMemory()
    mappings = set()
    for index, (_, sent) in enumerate(frames):
        header, blobs = read_frame(fd, memory=memory)
        assert header == {"index": index, "blobs": [len(blob) for blob in sent]}
        assert [bytes(blob) for blob in blobs] == sent
        mappings.add(id(blobs[0].obj))
    with pytest.raises(EOFError):
        read_frame(fd, memory=memory)
    os.close(fd)
    # One mapping for the first frame, one more when the 5 MiB frame did not fit; the small ones reused them.
    assert len(mappings) == 2


def test_a_frame_larger_than_allowed_is_refused_before_it_is_read():
    fd = pipe_carrying([({}, [b"x" * 4096])])
    with pytest.raises(FrameError, match="exceeds the limit of 1000 bytes"):
        read_frame(fd, max_bytes=1000, memory=FrameMemory())
    os.close(fd)


def test_frame_memory_is_left_out_of_forked_children():
    # A sandbox worker forks sessions all the time: memory it shares with them would be copied page by page on
    # every write. The child must not have the mapping at all.
    view = FrameMemory().take(1 << 20)
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    pid = os.fork()
    if pid == 0:
        with open("/proc/self/maps") as maps:
            ranges = [[int(bound, 16) for bound in line.split()[0].split("-")] for line in maps]
        os._exit(1 if any(start <= address < end for start, end in ranges) else 0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
