"""agentic_vlm: GRPO for vision-language models that think with tools, on top of TRL."""

from .config import AgenticGRPOConfig
from .protocols import ArftProtocol, Protocol, get_protocol
from .tools import Observation, Tool, ToolContext, ZoomTool, build_tools
from .trainer import AgenticGRPOTrainer

__version__ = "0.1.0"

__all__ = [
    "AgenticGRPOConfig",
    "AgenticGRPOTrainer",
    "ArftProtocol",
    "Observation",
    "Protocol",
    "Tool",
    "ToolContext",
    "ZoomTool",
    "build_tools",
    "get_protocol",
]
