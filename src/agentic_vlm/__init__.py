"""agentic_vlm: GRPO for vision-language models that think with tools, on top of TRL.

The top-level names are imported on first use, so that ``import agentic_vlm.tools...`` in a tool worker or a data
script does not pay for importing TRL and transformers.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AgenticGRPOConfig": "agentic_vlm.config",
    "AgenticGRPOTrainer": "agentic_vlm.trainer",
    "ArftProtocol": "agentic_vlm.protocols",
    "Protocol": "agentic_vlm.protocols",
    "get_protocol": "agentic_vlm.protocols",
    "Observation": "agentic_vlm.tools",
    "Tool": "agentic_vlm.tools",
    "ToolContext": "agentic_vlm.tools",
    "ZoomTool": "agentic_vlm.tools",
    "build_tools": "agentic_vlm.tools",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agentic_vlm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
