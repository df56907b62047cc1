"""Tools the model can call. See :mod:`agentic_vlm.tools.base` for the interface."""

from __future__ import annotations

import importlib
import inspect

from .base import Observation, Tool, ToolContext
from .zoom import ZoomTool

# Tools built by name (recipes, command line); imported only when used.
TOOL_CLASSES = {
    "zoom": "agentic_vlm.tools.zoom:ZoomTool",
    "search": "agentic_vlm.tools.search:SearchTool",
    "code": "agentic_vlm.tools.code:CodeTool",
    "refocus": "agentic_vlm.tools.refocus:RefocusCodeTool",  # the code tool with the ReFOCUS editing functions
}


def tool_class(name: str) -> type[Tool]:
    """The class of the tool ``name``: a name from ``TOOL_CLASSES``, or the import path of a custom tool class,
    ``package.module:ClassName`` (so that a recipe can say ``tools: [my_pkg.tools:Calculator]``)."""
    path = TOOL_CLASSES.get(name, name)
    module_name, colon, class_name = path.partition(":")
    if not colon:
        raise ValueError(f"unknown tool {name!r}; available: {sorted(TOOL_CLASSES)}, or a class as package.module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"tool {name!r}: cannot import {class_name} from {module_name} ({error})") from None
    if not (isinstance(cls, type) and issubclass(cls, Tool)):
        raise ValueError(f"tool {name!r} is not a subclass of agentic_vlm.tools.Tool")
    return cls


def check_tool_kwargs(names: list[str], tool_kwargs: dict[str, dict] | None) -> None:
    """Without building anything: every tool can be imported, options are given only for tools in ``names``, and
    each tool's options are parameters of its constructor (a constructor that takes ``**options`` checks them
    itself when built)."""
    tool_kwargs = tool_kwargs or {}
    unused = [name for name in tool_kwargs if name not in names]
    if unused:
        raise ValueError(f"tool_kwargs has options for {unused}, which are not among the tools {list(names)}")
    for name in names:
        options = tool_kwargs.get(name) or {}
        if not isinstance(options, dict):
            raise ValueError(f"tool_kwargs[{name!r}] must be a mapping of option to value, got {options!r}")
        init = tool_class(name).__init__
        # A tool without a constructor of its own takes no options (object's signature would say **kwargs).
        parameters = {} if init is object.__init__ else inspect.signature(init).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        unknown = sorted(set(options) - set(parameters) - {"self"})
        if unknown:
            raise ValueError(f"tool_kwargs[{name!r}]: {unknown} are not options of {tool_class(name).__name__}; it "
                             f"takes {sorted(set(parameters) - {'self'})}")


def build_tools(names: list[str], tool_kwargs: dict[str, dict] | None = None) -> list[Tool]:
    """Instantiate the tools named in ``names`` (see :func:`tool_class`), each with its options from
    ``tool_kwargs[name]``."""
    tool_kwargs = tool_kwargs or {}
    check_tool_kwargs(names, tool_kwargs)
    tools = []
    for name in names:
        try:
            tools.append(tool_class(name)(**tool_kwargs.get(name, {})))
        except TypeError as error:
            raise ValueError(f"tool_kwargs[{name!r}]: {error}") from None
    return tools


__all__ = ["Observation", "TOOL_CLASSES", "Tool", "ToolContext", "ZoomTool", "build_tools", "check_tool_kwargs", "tool_class"]
