"""Tools the model can call. See :mod:`agentic_vlm.tools.base` for the interface."""

from __future__ import annotations

import importlib

from .base import Observation, Tool, ToolContext
from .zoom import ZoomTool

# Tools built by name (recipes, command line); imported only when used.
TOOL_CLASSES = {
    "zoom": "agentic_vlm.tools.zoom:ZoomTool",
    "search": "agentic_vlm.tools.search:SearchTool",
    "code": "agentic_vlm.tools.code:CodeTool",
    "refocus": "agentic_vlm.tools.refocus:RefocusCodeTool",  # the code tool with the ReFOCUS editing functions
}


def build_tools(names: list[str], tool_kwargs: dict[str, dict] | None = None) -> list[Tool]:
    """Instantiate the tools named in ``names``, each with its options from ``tool_kwargs[name]``."""
    tool_kwargs = tool_kwargs or {}
    unknown = [name for name in [*names, *tool_kwargs] if name not in TOOL_CLASSES]
    if unknown:
        raise ValueError(f"unknown tool(s) {unknown}; available: {sorted(TOOL_CLASSES)}")
    tools = []
    for name in names:
        module_name, class_name = TOOL_CLASSES[name].split(":")
        tool_class = getattr(importlib.import_module(module_name), class_name)
        try:
            tools.append(tool_class(**tool_kwargs.get(name, {})))
        except TypeError as error:
            raise ValueError(f"tool_kwargs[{name!r}]: {error}") from None
    return tools


__all__ = ["Observation", "TOOL_CLASSES", "Tool", "ToolContext", "ZoomTool", "build_tools"]
