"""The tool interface: what the rollout engine calls when the model writes an action.

A tool is an object with a ``name`` (the action tag the model writes, e.g. ``search`` for
``<search>...</search>``), a one-line ``description`` for the system prompt, and an async ``__call__`` that
takes the action's text and the trajectory's context and returns an :class:`Observation`. For protocols in which the
model calls tools by name with JSON arguments (``hermes``), a tool also declares the JSON schema of its one argument
(``parameters``); the value the model gives it becomes the text that ``__call__`` receives.

Tools are async so that the engine can run the calls of every trajectory of a turn concurrently on one event
loop, and so that it can time each call out. The contract: ``__call__`` never blocks the loop. Blocking work (sync
I/O, a sync HTTP client or socket, CPU work on images, a subprocess wait) runs off it: ``await
asyncio.to_thread(work, ...)``, a process pool, a sandbox. A call that blocks the loop instead holds every other
call of the turn, and its timeout cannot fire until it returns (a hung socket: never). A thread that is still blocked
when its timeout fires keeps running in the background until its work returns, so give blocking I/O its own
timeout too (``socket.settimeout``, the HTTP client's).

A tool should turn the failures it expects (bad arguments, a timeout of its backend, an HTTP error) into an
observation with ``error`` set. The engine also catches anything a tool raises, and a tool that exceeds its
timeout, and turns both into error observations: a tool never crashes training.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..frames import ImageView


@dataclass
class ToolContext:
    """What a tool may know about the trajectory that calls it.

    Attributes:
        trajectory_id: Stable for the whole trajectory; tools that keep per-trajectory state (a persistent
            code session) key it on this.
        images: Every image the model has seen so far in this trajectory, in order: the dataset's images
            first, then the images earlier tool calls returned. Tools must not modify them in place.
        row: The dataset row the trajectory was started from (for example metadata with boxes).
        turn: Index of the current turn, from 0.
        image_view: How the model is shown images (the processor's resize) and in which frame it writes boxes;
            a tool that reads coordinates converts them with ``image_view.to_original``. ``None`` for a text-only
            model.
    """

    trajectory_id: str
    images: list[Image.Image] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)
    turn: int = 0
    image_view: ImageView | None = None


@dataclass
class Observation:
    """What a tool gives back to the model: text, and optionally images that are placed in the context.

    ``error`` is set when the call failed; ``text`` then tells the model what went wrong, in words it can act on.
    """

    text: str
    images: list[Image.Image] = field(default_factory=list)
    error: str | None = None
    parts: list[Observation] = field(default_factory=list)  # the results of a turn's several calls, in order

    @classmethod
    def failure(cls, message: str) -> Observation:
        return cls(text=message, error=message)

    @classmethod
    def combined(cls, parts: list[Observation]) -> Observation:
        """The results of one turn's several calls as one observation: texts, images and errors in call order."""
        errors = [part.error for part in parts if part.error is not None]
        return cls(text="\n\n".join(part.text for part in parts), images=[i for part in parts for i in part.images],
                   error="\n".join(errors) if errors else None, parts=list(parts))

    @property
    def ok(self) -> bool:
        return self.error is None


class Tool(abc.ABC):
    """Base class of every tool. Subclasses set ``name`` and ``description`` and implement ``__call__``."""

    name: str
    description: str
    # JSON schema of the arguments (an object), for calls by name. With one property, its value reaches ``__call__``
    # as text: a string as written, anything else as JSON ([1, 2] -> "[1, 2]"); with several, the arguments object as
    # JSON.
    parameters: dict[str, Any] | None = None
    # How many trajectories' state the tool keeps at once (persistent code sessions); past it, the least recently
    # used trajectory's is dropped between its turns. None: no state kept per trajectory.
    session_limit: int | None = None

    @abc.abstractmethod
    async def __call__(self, argument: str, context: ToolContext) -> Observation:
        """Run the action whose text (between the tags) is ``argument``."""

    async def release(self, trajectory_id: str) -> None:  # noqa: B027 - optional hook, most tools keep no state
        """Forget what the tool keeps for this trajectory (a persistent code session). The rollout engine calls it
        once the trajectory has ended, for every trajectory that called a tool."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most tools hold nothing
        """Release what the tool holds (worker pools, HTTP clients). Every rollout engine calls it when it closes (a
        warm start, an evaluation, training), and the same tool may serve the next one: a tool is usable again after
        it, and takes what it needs anew on its next call."""

    def function_schema(self) -> dict[str, Any]:
        """The tool as the chat templates list it: ``{"type": "function", "function": {name, description,
        parameters}}``."""
        if self.parameters is None:
            raise ValueError(f"the {self.name} tool declares no JSON schema `parameters`, which tool calls by name need")
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
