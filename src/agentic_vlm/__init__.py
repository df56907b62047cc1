"""agentic_vlm: GRPO for vision-language models that think with tools, on top of TRL."""

__version__ = "0.1.0"
