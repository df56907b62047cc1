"""Every shipped recipe parses into the trainer's configuration and names things that exist."""

from pathlib import Path

import pytest
from trl import ModelConfig, TrlParser

from agentic_vlm.cli import TrainScriptArguments
from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.protocols import PROTOCOLS
from agentic_vlm.rewards import REWARD_FACTORIES
from agentic_vlm.tools import TOOL_CLASSES

ROOT = Path(__file__).parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
# GPU-only settings are switched off so that the recipes parse on this CPU machine.
CPU_OVERRIDES = ["--bf16", "false", "--use_cpu", "true", "--use_vllm", "false", "--deepspeed", ""]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_recipe_parses_and_its_names_exist(recipe, monkeypatch):
    monkeypatch.chdir(ROOT)
    parser = TrlParser((TrainScriptArguments, AgenticGRPOConfig, ModelConfig))
    script_args, config, model_args = parser.parse_args_and_config(["--config", str(recipe), *CPU_OVERRIDES])
    assert config.protocol in PROTOCOLS
    assert set(config.tools) <= set(TOOL_CLASSES)
    assert set(config.reward_funcs) <= set(REWARD_FACTORIES)
    assert set(config.reward_kwargs) <= set(config.reward_funcs)
    assert config.reward_weights is None or len(config.reward_weights) == len(config.reward_funcs)
    if script_args.train_file.startswith("data/"):  # shipped data; GPU recipes may point at downloaded releases
        assert (ROOT / script_args.train_file).is_file(), script_args.train_file
    corpus = config.tool_kwargs.get("search", {}).get("backend_options", {}).get("corpus_path")
    assert corpus is None or (ROOT / corpus).is_file()


def test_there_are_recipes_for_every_task():
    names = {path.stem for path in RECIPES}
    assert {"quickstart", "arft_search_cpu", "arft_coding_cpu", "vtool_cpu", "vtool_chartqa_7b",
            "vtool_tablevqa_7b"} <= names
