"""Every shipped recipe parses into the trainer's configuration and names things that exist."""

from pathlib import Path

import pytest

from agentic_vlm.protocols import PROTOCOLS
from agentic_vlm.recipe import parse_recipe
from agentic_vlm.rewards import REWARD_FACTORIES
from agentic_vlm.tools import TOOL_CLASSES

ROOT = Path(__file__).parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
# GPU-only settings are switched off so that the recipes parse on this CPU machine.
CPU_OVERRIDES = ["--bf16", "false", "--use_cpu", "true", "--use_vllm", "false", "--deepspeed", ""]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_recipe_parses_from_any_folder_and_its_names_and_files_exist(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in a recipe are relative to the recipe, not to the working folder
    script_args, config, model_args = parse_recipe(recipe, CPU_OVERRIDES)
    assert config.protocol in PROTOCOLS
    assert set(config.tools) <= set(TOOL_CLASSES)
    assert set(config.reward_funcs) <= set(REWARD_FACTORIES)
    assert set(config.reward_kwargs) <= set(config.reward_funcs)
    assert config.reward_weights is None or len(config.reward_weights) == len(config.reward_funcs)
    assert Path(config.output_dir).is_relative_to(ROOT / "outputs")
    if "/datasets/" not in script_args.train_file:  # shipped data; GPU recipes may point at downloaded releases
        assert Path(script_args.train_file).is_file(), script_args.train_file
    corpus = config.tool_kwargs.get("search", {}).get("backend_options", {}).get("corpus_path")
    assert corpus is None or Path(corpus).is_file()
    model = model_args.model_name_or_path
    assert model.startswith("Qwen/") or Path(model) in {ROOT / "outputs" / "tiny-qwen2.5-vl",
                                                        ROOT / "outputs" / "tiny-qwen3-vl"}


def test_there_are_recipes_for_every_task():
    names = {path.stem for path in RECIPES}
    assert {"quickstart", "arft_search_cpu", "arft_coding_cpu", "vtool_cpu", "vtool_chartqa_7b",
            "vtool_tablevqa_7b", "qwen3vl_zoom_cpu", "qwen3vl_zoom_8b", "qwen3vl_search_8b",
            "qwen3vl_coding_8b"} <= names


def test_a_short_run_scales_the_warm_start_down(capsys):
    recipe = ROOT / "recipes" / "quickstart.yaml"  # 110 warm-start steps before 60 GRPO steps
    script_args, _, _ = parse_recipe(recipe, ["--max_steps", "3"])
    assert script_args.warmstart_steps == 6 and "warm start shortened to 6 of its 110" in capsys.readouterr().out
    assert parse_recipe(recipe, ["--max_steps", "3", "--warmstart_steps", "50"])[0].warmstart_steps == 50
    assert parse_recipe(recipe, [])[0].warmstart_steps == 110


@pytest.mark.parametrize("recipe", ["quickstart.yaml", "arft_search_cpu.yaml", "arft_coding_cpu.yaml",
                                    "vtool_cpu.yaml"])
def test_cpu_recipes_token_budget_fits_their_reference_trajectories(recipe, tiny_model_dir):
    """The warm start trains on the reference trajectories and GRPO is rewarded for answers: a budget that cuts them
    (the search recipe once had 384 tokens for trajectories of 700-870) leaves every reward at 0."""
    from transformers import AutoProcessor

    from agentic_vlm.cli import load_training_data
    from agentic_vlm.eval import rollout_dataset
    from agentic_vlm.protocols import get_protocol
    from agentic_vlm.rollout import ScriptedTurnGenerator
    from agentic_vlm.tools import build_tools

    script_args, config, _ = parse_recipe(ROOT / "recipes" / recipe, ["--model_name_or_path", tiny_model_dir])
    data = load_training_data(script_args.train_file, script_args).select(range(8))
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    protocol, tools = get_protocol(config.protocol), build_tools(config.tools, config.tool_kwargs)
    replay = ScriptedTurnGenerator(processor, protocol.stop_strings(tools),
                                   script=lambda request: request.row["solution"][request.turn])
    for _, trajectories in rollout_dataset(None, processor, protocol, tools, data, generate=replay,
                                           max_turns=config.max_turns,
                                           max_completion_length=config.max_completion_length,
                                           system_prompt=config.system_prompt, progress=False):
        assert [t.stop_reason for t in trajectories] == ["answer"] * len(trajectories)


@pytest.mark.parametrize("recipe", [path for path in RECIPES if "use_vllm: true" in path.read_text()],
                         ids=lambda path: path.name)
def test_vllm_recipes_sample_from_the_policy_and_correct_per_token(recipe, monkeypatch):
    """vLLM's log-probabilities are those of what it sampled from: with truncation or penalties, TRL's importance
    ratio is systematic, and a sequence-level ratio multiplies it over every token of a long trajectory."""
    monkeypatch.chdir(ROOT)
    _, config, _ = parse_recipe(recipe, CPU_OVERRIDES)
    assert (config.top_p, config.top_k or 0, config.min_p or 0.0, config.repetition_penalty) == (1.0, 0, 0.0, 1.0)
    assert config.vllm_importance_sampling_mode.startswith("token_")
