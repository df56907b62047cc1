"""Tools the model can call. See :mod:`agentic_vlm.tools.base` for the interface."""

from .base import Observation, Tool, ToolContext
from .zoom import ZoomTool

__all__ = ["Observation", "Tool", "ToolContext", "ZoomTool"]
