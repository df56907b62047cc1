"""Frames over real pipes, as the trainer, a sandbox worker and the code's process send them to each other."""

from __future__ import annotations

import ctypes
import os
import struct
import threading

import pytest

from agentic_vlm.tools.code.wire import (
    FrameError,
    FrameMemory,
    check_result,
    parse_header,
    read_frame,
    widen_pipe,
    write_frame,
)


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


def test_a_header_larger_than_allowed_is_refused_before_it_is_read():
    read_end, write_end = os.pipe()
    head = b"[" + b"{}," * 3_200_000 + b"{}]"  # 9.6 MB that would parse into 3.2 million dicts
    os.write(write_end, struct.pack("<IQ", len(head), 0))  # only the prefix: the reader must not wait for the rest
    with pytest.raises(FrameError, match="frame header of 9600004 bytes exceeds the limit of 65536 bytes"):
        read_frame(read_end, max_header_bytes=1 << 16)
    os.close(read_end)
    os.close(write_end)


def test_headers_are_parsed_only_within_the_nesting_and_container_limits():
    assert parse_header(b'{"text": "[[[[[[[[[[[[\\" {{{{{{{{{{", "sizes": [[1, 2], [3, 4]]}') == {
        "text": '[[[[[[[[[[[[" {{{{{{{{{{',  # brackets inside strings do not count
        "sizes": [[1, 2], [3, 4]],
    }
    with pytest.raises(FrameError, match="nests deeper than 8"):
        parse_header(b"[" * 9 + b"]" * 9)
    with pytest.raises(FrameError, match="nests deeper than 8"):  # Python's parser would raise RecursionError
        parse_header(b"[" * 3000 + b"]" * 3000)
    with pytest.raises(FrameError, match="more than 4096 lists and objects"):
        parse_header(b"[" + b"{}," * 5000 + b"{}]")
    with pytest.raises(FrameError, match="not JSON"):
        parse_header(b'{"unterminated": "[[[')


def test_results_are_checked_field_by_field_and_their_texts_cut():
    limits = (2, 100, 5)  # images, pixels per image, characters per text
    header = {"error": "x" * 50, "notes": ["n" * 50], "images": [[10, 10]], "blobs": [300]}
    assert check_result(header, [b"\0" * 300], *limits) == {"error": "xxxxx", "notes": ["nnnnn"], "images": [[10, 10]]}
    malformed = [
        ([], []),
        ({"error": 3, "notes": [], "images": []}, []),
        ({"error": None, "notes": ["a"] * 4, "images": []}, []),
        ({"error": None, "notes": [], "images": [[10, 10]]}, []),
        ({"error": None, "notes": [], "images": [[10, 11]]}, [b"\0" * 330]),
        ({"error": None, "notes": [], "images": [[10, 10]]}, [b"\0" * 299]),
        ({"error": None, "notes": [], "images": [[10, True]]}, [b"\0" * 30]),
    ]
    for header, blobs in malformed:
        with pytest.raises(ValueError):
            check_result(header, blobs, *limits)
