"""The code tool for charts and tables (VTool-R1): the model's Python runs in the sandbox with the ReFOCUS editing
functions, the conversation's images as ``image_1``, ``image_2``, ... and the row's boxes as variables.

Each call sends the sandbox a setup with the model's code, run just before it in the same call and namespace: the
setup defines the functions (executed from the source of :mod:`.editing`, in a namespace of their own so that the
model's code cannot break them by rebinding a helper), the images and the boxes; the model's code keeps its own line
numbers in tracebacks. In one call, nothing can come between the two: as two calls in one session, the sandbox could
end the session between them to make room for others (``max_sessions``), and the code then ran without the functions.
"""

from __future__ import annotations

import inspect
import json

from ..base import Observation, Tool, ToolContext
from ..code import CodeTool
from . import editing

# Where the editing functions' frames point in a traceback (a name in angle brackets: linecache does not look it up).
EDITING_FILENAME = "<refocus>"
_EDITING_SOURCE = inspect.getsource(editing)


def row_metadata(row: dict) -> dict:
    """The row's ``metadata`` as a dict: datasets carry it as JSON text (its keys differ from row to row, which an
    Arrow struct column cannot hold), Python callers may pass a dict."""
    metadata = row.get("metadata")
    if metadata is None:
        return {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if not isinstance(metadata, dict):
        raise ValueError(f"the row's metadata must be a JSON object, got {type(metadata).__name__}")
    return metadata


def box_variables(metadata: dict) -> list[str]:
    """The metadata fields that become variables of the same name: the boxes (``columns_bbox``, ``x_values_bbox``,
    ...). Only these: a field such as ``type`` would shadow a Python builtin."""
    return [name for name in metadata if name.endswith("_bbox") and name.isidentifier()]


def setup_code(metadata: dict) -> str:
    """Python that defines, in a session, the editing functions, ``image_1``, ``image_2``, ... (from ``images``),
    ``metadata`` and one variable per box field of the metadata."""
    lines = [
        "_refocus = {}",
        f"exec(compile({_EDITING_SOURCE!r}, {EDITING_FILENAME!r}, 'exec'), _refocus)",
        f"globals().update({{name: _refocus[name] for name in {editing.FUNCTION_NAMES!r}}})",
        "del _refocus",
        "globals().update({f'image_{number}': image for number, image in enumerate(images, start=1)})",
        f"metadata = __import__('json').loads({json.dumps(metadata)!r})",
        *(f"{name} = metadata[{name!r}]" for name in box_variables(metadata)),
    ]
    return "\n".join(lines)


def _function_reference() -> str:
    lines = []
    for name in editing.FUNCTION_NAMES:
        function = getattr(editing, name)
        lines.append(f"- {name}{inspect.signature(function)}: {inspect.getdoc(function)}")
    return "\n".join(lines)


class RefocusCodeTool(Tool):
    """Run model-written Python in the code sandbox, with the ReFOCUS editing functions and the row's boxes defined.

    Its action name is ``code``, like the plain code tool, which it replaces (the vtool protocol writes the code of
    an action as a fenced Python block). The row's ``metadata`` (JSON text or a dict) provides the boxes.

    Args:
        persistent: Keep each trajectory's variables from one action to the next. Without it each action starts
            afresh, and earlier results are reached through the images they displayed (``image_2``, ...).
        **options: Fields of :class:`~agentic_vlm.tools.code.SandboxConfig` (``workers``, ``timeout_s``, ...).
    """

    name = "code"
    description = (
        "Python runs in a sandbox with numpy, PIL and cv2. The conversation's images are the PIL images image_1 (the "
        "question's), image_2, ... in the order you saw them. The boxes of the image's labelled parts are in pixels, "
        "in the variables columns_bbox and rows_bbox (tables) or x_values_bbox and y_values_bbox (charts), each "
        "mapping a label to {'x1': .., 'y1': .., 'x2': .., 'y2': ..}; the question lists the labels. Show an image "
        "to yourself with display(img). These functions return an edited copy of the image:\n" + _function_reference()
    )
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python code to run"}},
        "required": ["code"],
    }

    def __init__(self, persistent: bool = False, **options):
        self.persistent = persistent
        self.code_tool = CodeTool(persistent=persistent, **options)
        self.session_limit = self.code_tool.session_limit

    @property
    def isolation(self):
        return self.code_tool.isolation

    async def __call__(self, argument: str, context: ToolContext) -> Observation:
        observation = await self.code_tool(argument, context, setup=setup_code(row_metadata(context.row)))
        return _with_image_names(observation, first_number=len(context.images) + 1)

    async def release(self, trajectory_id: str) -> None:
        await self.code_tool.release(trajectory_id)

    async def aclose(self) -> None:
        await self.code_tool.aclose()


def _with_image_names(observation: Observation, first_number: int) -> Observation:
    """Tell the model the names its new images will have in its next actions' code."""
    if not observation.images:
        return observation
    names = [f"image_{first_number + index}" for index in range(len(observation.images))]
    text = f"{observation.text}\nThe images below are now {', '.join(names)}."
    return Observation(text=text, images=observation.images, error=observation.error)
