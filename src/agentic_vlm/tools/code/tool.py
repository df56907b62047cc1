"""The ``<code>`` tool: the model's Python runs in the sandbox on the trajectory's images; it sees what was printed
and the images the code produced."""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from ..base import Observation, Tool, ToolContext
from .sandbox import ExecutionResult, Isolation, Sandbox, SandboxConfig

# Models often wrap the code in a Markdown fence inside the tags.
_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)


def extract_code(argument: str) -> str:
    """The Python source in an action's text, without a surrounding Markdown fence."""
    fenced = _FENCE.match(argument)
    return fenced.group(1) if fenced else argument.strip("\n")


def to_observation(result: ExecutionResult) -> Observation:
    """What the model sees: printed output, notes, the error if any, and the images."""
    parts = [result.stdout.rstrip()] if result.stdout.strip() else []
    parts += result.notes
    if result.error is not None:
        parts.append(f"Error: {result.error}")
    if not parts:
        produced = f"{len(result.images)} image(s)" if result.images else "no output"
        parts.append(f"The code ran and produced {produced}.")
    return Observation(text="\n".join(parts), images=result.images, error=result.error)


class CodeTool(Tool):
    """Run model-written Python on the trajectory's images in an isolated sandbox (see :mod:`.sandbox`).

    The code reads ``path_to_input_image.jpg`` and saves ``path_to_output_image.jpg`` (the Visual-ARFT
    convention), or uses ``image`` / ``images`` (PIL) and ``display(img)`` or ``img.show()``; numpy, PIL and cv2
    are installed. Any image file it writes in its working directory comes back too.

    Args:
        persistent: Keep each trajectory's variables from one call to the next (keyed on its trajectory id);
            call :meth:`release` when a trajectory ends. Without it every call starts from a clean process.
        **options: Fields of :class:`SandboxConfig` (``workers``, ``timeout_s``, ``memory_mb``,
            ``max_processes``, ``file_size_mb``, ``work_dir_mb``, ``max_output_bytes``, ``max_images``,
            ``max_image_pixels``, ``max_input_pixels``, ``max_sessions``, ``allow_unsafe``), flat so that a recipe
            can set them; each has the default documented there.

    Constructing the tool starts the workers (about a second) and raises :class:`SandboxUnavailableError` if
    the host cannot isolate code and ``allow_unsafe`` is not set. :attr:`isolation` says what was reached.
    :meth:`aclose` stops the workers; a later call starts new ones, so one tool serves a warm start, an evaluation
    and training in turn, each of which closes its rollout engine and the tools with it.
    """

    name = "code"
    description = (
        "Python code run on the image: read 'path_to_input_image.jpg' and save 'path_to_output_image.jpg' "
        "(or use `image` and `display(img)`); numpy, PIL and cv2 are available; you see what it prints and saves"
    )
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python code to run"}},
        "required": ["code"],
    }

    def __init__(self, persistent: bool = False, **options):
        self.config = SandboxConfig(**options)
        self.persistent = persistent
        self.session_limit = self.config.max_sessions if persistent else None
        # Threads only wait on workers; more of them than workers lets calls pinned to a busy session's worker wait
        # without holding up calls that an idle worker could take. They live as long as the tool: a worker dies with
        # the thread that started it (PR_SET_PDEATHSIG), and restarts and new sandboxes are started from them.
        self._threads = ThreadPoolExecutor(max_workers=4 * self.config.workers, thread_name_prefix="code-tool")
        self._opening = threading.Lock()
        self.sandbox: Sandbox | None = None
        self._start()
        self.isolation: Isolation = self.sandbox.isolation

    def _start(self) -> None:
        with self._opening:
            if self.sandbox is None:
                self.sandbox = Sandbox(self.config)

    async def __call__(self, argument: str, context: ToolContext, *, setup: str | None = None) -> Observation:
        """Run the action's code; ``setup`` (for tools built on this one) runs first in the same call and namespace,
        see :meth:`Sandbox.run`."""
        code = extract_code(argument)
        if not code.strip():
            return Observation.failure("code: the action holds no code. Write Python between <code> and </code>.")
        loop = asyncio.get_running_loop()
        try:
            if self.sandbox is None:  # closed with an earlier rollout engine: start the workers again, off the loop
                await loop.run_in_executor(self._threads, self._start)
            session = context.trajectory_id if self.persistent else None
            run = functools.partial(self.sandbox.run, code, context.images, session, setup)
            result = await loop.run_in_executor(self._threads, run)
        except Exception as error:  # the sandbox cannot start again, or broke in a way it could not report as a result
            return Observation.failure(f"code: the sandbox could not run the code ({error}).")
        return to_observation(result)

    async def release(self, trajectory_id: str) -> None:
        """Forget this trajectory's session (with ``persistent``), freeing its process and memory."""
        if self.persistent and self.sandbox is not None:
            await asyncio.get_running_loop().run_in_executor(self._threads, self.sandbox.release, trajectory_id)

    async def aclose(self) -> None:
        """Stop the workers (every kept session goes with them); the next call starts new ones."""
        with self._opening:
            sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            await asyncio.get_running_loop().run_in_executor(self._threads, sandbox.close)
