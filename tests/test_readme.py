"""The README's examples run as written: the notebook snippet trains, the custom tool evaluates arithmetic safely and
can be named in a recipe, and the key table agrees with the real configuration."""

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentic_vlm.recipe import key_table

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
NOTEBOOK, CALCULATOR = PYTHON_BLOCKS[0], PYTHON_BLOCKS[1]


def test_the_custom_tool_evaluates_arithmetic_and_refuses_everything_else():
    from agentic_vlm.tools import ToolContext

    namespace: dict = {}
    exec(CALCULATOR, namespace)  # noqa: S102 - the README's own code
    calc, context = namespace["Calculator"](), ToolContext("t")
    assert asyncio.run(calc("2*21", context)).text == "42"
    assert asyncio.run(calc(" (1 + 2) ** 3 - -1 / 4", context)).text == "27.25"
    for hostile in ("__import__('os').system('touch /tmp/pwned')", "(lambda: 1)()", "'a' * 3", "2 ** 10 ** 10",
                    "1 / 0", "x", "2 +"):
        observation = asyncio.run(calc(hostile, context))
        assert observation.error and observation.text.startswith("calc: "), hostile
    assert not Path("/tmp/pwned").exists()


def test_a_recipe_names_the_custom_tool_by_import_path(tmp_path, monkeypatch):
    from agentic_vlm.recipe import RecipeError, parse_recipe
    from agentic_vlm.tools import build_tools

    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "tools.py").write_text(CALCULATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "calc.yaml"
    recipe.write_text("train_file: data.jsonl\nuse_cpu: true\ntools: [zoom, my_pkg.tools:Calculator]\n")
    _, config, _ = parse_recipe(recipe, [])
    zoom, calc = build_tools(config.tools, config.tool_kwargs)
    assert calc.name == "calc" and type(calc).__module__ == "my_pkg.tools"
    recipe.write_text(recipe.read_text() + "tool_kwargs: {my_pkg.tools:Calculator: {precision: 3}}\n")
    with pytest.raises(RecipeError, match=r"\['precision'\] are not options of Calculator"):
        parse_recipe(recipe, [])


def readme_key_table() -> list[tuple[str, str]]:
    table = README[README.index("| key | default | meaning |"):]
    rows = re.findall(r"^\| (`[^|]+) \| ([^|]+) \|", table[: table.index("\n\n")], flags=re.MULTILINE)
    return [(key, default.strip()) for keys, default in rows[1:] for key, default in
            zip(re.findall(r"`(\w+)`", keys), default.split(", ") if "," in keys else [default], strict=False)]


def test_the_key_table_names_real_keys_with_their_real_defaults():
    real = key_table()
    documented = readme_key_table()
    assert len(documented) >= 20
    for key, default in documented:
        assert key in real, f"README's key table names {key!r}, which is not a recipe key"
        if default in ("TRL's", "the processor's", "the protocol's"):
            continue
        value = None if default == "none" else yaml.safe_load(default.strip("`"))
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?e-?\d+", value):
            value = float(value)  # YAML 1.1 reads 1e-3 as text
        assert value == real[key]["default"], f"README says {key} defaults to {default}; it is {real[key]['default']}"
    assert yaml.safe_load(re.search(r"e\.g\. `(\{code: [^`]+\})`", README).group(1)) == {"code": {"timeout_s": 10}}


def test_the_key_tables_code_example_is_a_real_sandbox_option():
    from agentic_vlm.tools.code.sandbox import SandboxConfig

    SandboxConfig(**yaml.safe_load(re.search(r"e\.g\. `(\{code: [^`]+\})`", README).group(1))["code"])


@pytest.mark.slow
def test_the_notebook_snippet_trains_as_written_on_a_cpu(tiny_model_dir, tmp_path):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "tiny-qwen2.5-vl").symlink_to(tiny_model_dir)
    (tmp_path / "data").symlink_to(ROOT / "data")
    result = subprocess.run([sys.executable, "-c", NOTEBOOK], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [log] = (tmp_path / "outputs" / "notebook").glob("trajectories-*.jsonl")
    assert f"trajectories of this run: {log.relative_to(tmp_path)}" in result.stdout
    assert len(log.read_text().splitlines()) == 4  # step 0's trajectories (every 10 steps, 4 each)
