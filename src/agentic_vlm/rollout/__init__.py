"""The rollout engine: live multi-turn tool use, batched generation, concurrent tools."""

from .engine import RolloutEngine, Trajectory, Turn
from .generation import (
    SamplingSettings,
    ScriptedTurnGenerator,
    TransformersTurnGenerator,
    TurnRequest,
    generate_turn,
)

__all__ = ["RolloutEngine", "SamplingSettings", "ScriptedTurnGenerator", "TransformersTurnGenerator", "Trajectory", "Turn", "TurnRequest", "generate_turn"]
