"""What runs inside a session process: execute the model's code against the input images, collect what it shows.

The code sees its input images two ways:

- the Visual-ARFT convention: the first image is the file ``path_to_input_image.jpg`` in the working directory
  (later ones ``path_to_input_image_1.jpg``, ...; the worker writes them), and whatever it saves as
  ``path_to_output_image.jpg`` (or any other image file in the working directory) is returned;
- directly: ``images`` (a list of PIL images, opened lazily from those files) and ``image`` (the first one); any
  image passed to ``display()`` or ``.show()`` is returned, and ``display()`` also takes numpy arrays (RGB or
  grayscale).

Outputs are capped in number and pixels here, inside the sandbox's limits, so that the trainer never decodes
or resizes anything the code made. This process is untrusted once the code has run: the worker and the trainer
check every frame it sends.
"""

from __future__ import annotations

import ctypes
import linecache
import os
import shutil
import sys
import traceback

import numpy as np
from jail import grant_cpu_time
from PIL import Image
from wire import CALL_HEADER_BYTES, read_frame, write_frame

CODE_FILENAME = "<code>"
SETUP_FILENAME = "<setup>"  # of the code a tool runs before the model's in the same call
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# A 720x720 edit allocates about this much (input, rotated copy, crop, encoder buffers); see warm_heap().
WARM_HEAP_BYTES = 8 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
# What rehearse() runs: the calls of Visual-ARFT models are mostly this, at a larger size.
_REHEARSAL = """\
import cv2
import numpy as np
from PIL import Image
edited = Image.open("path_to_input_image.jpg").rotate(30, expand=True)
edited.crop((8, 8, 56, 56)).save("path_to_output_image.jpg")
display(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
"""
# The trainer cuts error text to its own limit; this only keeps a huge exception message from flooding the pipe.
MAX_ERROR_CHARS = 1 << 16


def preload() -> None:
    """Import everything a call may touch, once, in the worker, so every session starts warm."""
    import cv2

    Image.init()  # registers every image plugin now rather than on the first open of each format
    cv2.setNumThreads(1)
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    # glibc serves large blocks (images) with fresh mmaps and returns freed memory to the kernel; a fresh process
    # then faults in every page of every image, which costs several milliseconds per call. Serving blocks up to
    # 32 MiB from the heap and never trimming it lets warm_heap() fault pages in before the call instead.
    if not hasattr(_libc, "mallopt"):
        return  # not glibc: sessions still work, with the page faults inside the call
    _libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    _libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def warm_heap() -> None:
    """Fault in the heap a typical call uses while the session waits for it, then give it back to malloc.

    In huge pages where the kernel offers them (transparent huge pages in "madvise" mode, most distributions'
    default): one fault per 2 MiB instead of one per 4 KiB, five times less time in a virtual machine.
    """
    block = _libc.malloc(WARM_HEAP_BYTES)
    if not block:
        return  # a memory limit this small leaves nothing to spare
    first, end = -(-block // _HUGE_PAGE) * _HUGE_PAGE, (block + WARM_HEAP_BYTES) // _HUGE_PAGE * _HUGE_PAGE
    if end > first:
        _libc.madvise(first, end - first, _MADV_HUGEPAGE)  # refused without huge pages: 4 KiB pages then
    ctypes.memset(block, 0, WARM_HEAP_BYTES)
    _libc.free(block)


def rehearse(workdir: str, max_images: int, max_image_pixels: int) -> None:
    """Run a small version of a typical call, on a 64x64 image, while the session waits for its first call.

    A session is a fresh fork of the warm worker: the first time it touches an object, a page of code data or of
    the heap, the kernel copies or faults in that page, several milliseconds in all for an image edit. Paid here,
    they stay out of the call. The rehearsal runs in a directory of its own, which it removes: the worker may be
    writing the first call's input images into the working directory meanwhile.
    """
    directory = os.path.join(workdir, ".rehearsal")
    try:
        os.mkdir(directory)
        name = os.path.join(directory, input_file_name(0))
        Image.new("RGB", (64, 64), (90, 120, 150)).save(name, format="PPM")
        _, images = run_call(_REHEARSAL, [name], {"__name__": "__main__"}, directory)
        _fit(images, max_images, max_image_pixels)
    except Exception:
        pass  # only a warm-up: whatever failed here (a tiny memory limit, say), the call meets and reports itself
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    warm_heap()


def input_file_name(index: int) -> str:
    """Visual-ARFT's name for the input image: path_to_input_image.jpg, then path_to_input_image_1.jpg, ..."""
    return "path_to_input_image.jpg" if index == 0 else f"path_to_input_image_{index}.jpg"


def serve(request_fd: int, result_fd: int, cpu_seconds: int, max_images: int, max_image_pixels: int) -> None:
    """Answer calls until the worker closes the pipe. Variables persist between the calls of one session."""
    workdir = os.getcwd()
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    rehearse(workdir, max_images, max_image_pixels)
    while True:
        try:
            request, _ = read_frame(request_fd, max_header_bytes=CALL_HEADER_BYTES)
        except EOFError:
            os._exit(0)
        grant_cpu_time(cpu_seconds, last=request["last"])
        error, images = run_call(request["code"], request["inputs"], namespace, workdir, request.get("setup"))
        try:
            outputs, notes = _fit(images, max_images, max_image_pixels)
        except Exception as fit_error:
            outputs, notes, error = [], [], error or f"The images the code produced cannot be returned: {fit_error}"
        result = {"error": error, "notes": notes, "images": [list(image.size) for image in outputs]}
        write_frame(result_fd, result, [image.tobytes() for image in outputs])


def run_call(code: str, input_files: list[str], namespace: dict, workdir: str,
             setup: str | None = None) -> tuple[str | None, list[Image.Image]]:
    """Run ``code`` in ``workdir`` on the images in ``input_files`` there, after ``setup`` (names the tool defines
    for it) in the same namespace; return the error (None if both succeeded) and the images the code produced."""
    _reset_standard_streams()
    shown: list[Image.Image] = []
    Image.Image.show = lambda self, *args, **kwargs: shown.append(self.copy())
    try:
        os.chdir(workdir)  # an earlier call of the session may have left it
        inputs = [Image.open(name) for name in input_files]  # pixels are read when the code first uses them
        before = _image_files()
    except OSError as error:
        return f"The sandbox could not prepare the working directory: {error}", []
    namespace.update(images=inputs, image=inputs[0] if inputs else None, display=_display_into(shown))
    error = _execute(setup, namespace, SETUP_FILENAME) if setup else None
    if error is not None:
        _flush_standard_streams()
        return f"The tool's setup failed, so the code was not run: {error}", []
    error = _execute(code, namespace, CODE_FILENAME)
    _flush_standard_streams()
    saved, read_error = _read_new_image_files(before)
    return error or read_error, shown + saved


def _execute(code: str, namespace: dict, filename: str) -> str | None:
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    owner = os.getpid()
    error = None
    try:
        exec(compile(code, filename, "exec"), namespace)
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            error = f"The code called sys.exit({exit_.code!r})."
    except BaseException as exception:  # noqa: B036 - the model's code may raise anything, KeyboardInterrupt too
        error = _format_exception(exception, filename)
    if os.getpid() != owner:
        # A process the code forked must not go on to answer in the session's name.
        _flush_standard_streams()
        os._exit(1 if error else 0)
    return error


def _format_exception(exception: BaseException, filename: str) -> str:
    if isinstance(exception, SyntaxError):
        return "".join(traceback.format_exception_only(type(exception), exception)).rstrip()[:MAX_ERROR_CHARS]
    # Start the traceback at the code that was run (``filename``): frames of this runner would only confuse the model.
    frames = exception.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename != filename:
        frames = frames.tb_next
    try:
        return "".join(traceback.format_exception(type(exception), exception, frames)).rstrip()[:MAX_ERROR_CHARS]
    except MemoryError:
        return f"{type(exception).__name__} (its message is too large to show)"


def _reset_standard_streams() -> None:
    # Fresh line-buffered streams on fds 1 and 2 for every call: an earlier call may have closed or replaced them,
    # and output printed before a crash or a timeout still reaches the worker.
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the code may have closed or replaced them; what it printed so far is all we get
            pass


def _display_into(shown: list[Image.Image]):
    def display(*objects) -> None:
        """Return these images to the model (PIL images, or numpy arrays in RGB or grayscale)."""
        for obj in objects:
            if isinstance(obj, Image.Image):
                shown.append(obj.copy())
            elif isinstance(obj, np.ndarray):
                shown.append(Image.fromarray(obj))
            else:
                print(obj)

    return display


def _image_files() -> dict[str, tuple[int, int]]:
    """Image files in the working directory, with (modification time, size) to tell which a call wrote."""
    files = {}
    for entry in os.scandir("."):
        if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file(follow_symlinks=False):
            status = entry.stat(follow_symlinks=False)
            files[entry.name] = (status.st_mtime_ns, status.st_size)
    return files


def _read_new_image_files(before: dict[str, tuple[int, int]]) -> tuple[list[Image.Image], str | None]:
    """The image files the call wrote or changed, in the order it wrote them; an unreadable one is an error."""
    try:
        after = _image_files()
    except OSError as error:
        return [], f"The working directory cannot be read: {error}"
    written = sorted((name for name, stamp in after.items() if before.get(name) != stamp), key=lambda n: after[n][0])
    images = []
    for name in written:
        try:  # Pillow refuses decompression bombs here, and the memory limit bounds the rest
            with Image.open(name) as image:
                image.load()
                images.append(image.copy())
        except Exception as error:
            return images, f"The image file {name!r} the code wrote cannot be read: {error}"
    return images, None


def _fit(images: list[Image.Image], max_images: int, max_pixels: int) -> tuple[list[Image.Image], list[str]]:
    """At most ``max_images`` RGB images of at most ``max_pixels`` each, and notes that say what was cut."""
    notes = []
    if len(images) > max_images:
        notes.append(f"{len(images)} images were produced; only the first {max_images} are returned.")
    fitted = []
    for index, image in enumerate(images[:max_images]):
        width, height = image.size
        if width * height > max_pixels:
            scale = (max_pixels / (width * height)) ** 0.5
            size = (max(1, int(width * scale)), max(1, int(height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
            notes.append(f"Image {index + 1} ({width}x{height}) was downscaled to {size[0]}x{size[1]}.")
        fitted.append(image if image.mode == "RGB" else image.convert("RGB"))
    return fitted, notes
