"""Training recipes: a YAML file of keys plus ``--key value`` overrides, checked before anything heavy is imported.

Every key of a recipe is a field of one of three dataclasses: :class:`TrainScriptArguments` (data, warm start),
:class:`~agentic_vlm.config.AgenticGRPOConfig` (which includes TRL's ``GRPOConfig`` and transformers'
``TrainingArguments``) and TRL's ``ModelConfig``. Importing those takes seconds (TRL imports torch and transformers),
so the key names, types, defaults and help live in ``train_keys.json``, generated from the real classes by
:func:`build_key_table` (``python -m agentic_vlm.recipe``) and checked against them by a test. ``train --help`` and the
unknown-key check read that file.

Relative paths in a recipe are relative to the recipe's folder, so that a recipe means the same thing from any
working directory; paths given on the command line are relative to the working directory, as usual.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KEY_TABLE_FILE = Path(__file__).with_name("train_keys.json")
# Groups of keys in the order `train --help` lists them: this project's first.
KEY_GROUPS = {
    "script": "agentic_vlm: data and warm start",
    "agentic": "agentic_vlm: turns, tools, rewards, logging (AgenticGRPOConfig)",
    "model": "the model (TRL's ModelConfig)",
    "trl": "TRL's GRPOConfig and transformers' TrainingArguments",
}
# Keys whose relative values are paths to resolve against the recipe's folder. Inside `tool_kwargs`, options whose
# name ends in one of PATH_SUFFIXES are paths too (the search tool's corpus_path, cache_path, index_dir).
PATH_KEYS = ("train_file", "eval_file", "output_dir", "logging_dir", "deepspeed", "resume_from_checkpoint")
PATH_SUFFIXES = ("_path", "_dir", "_file")
RESUME_LATEST = ("true", "latest")


class RecipeError(ValueError):
    """A recipe or a command-line override is wrong; the message names the file (or the command line) and the key."""


# The warm start's learning-rate schedules (transformers' `get_scheduler` names): no warm-up, and no metric to read.
WARMSTART_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainScriptArguments:
    """Recipe keys that are not trainer settings: the data, the processor's image resolution, the warm start."""

    train_file: str = field(
        metadata={"help": "Data to train on: a JSONL task file, a MAT training file or a ReFOCUS parquet file."}
    )
    eval_file: str | None = field(default=None, metadata={"help": "Data for TRL's periodic evaluation (same formats)."})
    skip_bad_rows: bool = field(
        default=False,
        metadata={"help": "Leave out dataset rows that fail validation (reported with a count and the first reasons) "
                          "instead of stopping at the first."},
    )
    max_image_pixels: int = field(
        default=89_478_485,
        metadata={"help": "Largest image (width x height) a dataset row may hold; larger ones are bad rows. "
                          "The default is PIL's decompression-bomb limit."},
    )
    min_pixels: int | None = field(default=None, metadata={"help": "Smallest image area the processor keeps."})
    max_pixels: int | None = field(
        default=None, metadata={"help": "Largest image area the processor keeps (Visual-ARFT uses 401408)."}
    )
    warmstart_steps: int = field(
        default=0, metadata={"help": "Supervised steps on the data's reference `solution` turns before GRPO."}
    )
    warmstart_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the warm start."})
    warmstart_batch_size: int = field(default=8, metadata={"help": "Batch size of the warm start."})
    warmstart_lr_scheduler_type: str = field(
        default="constant",
        metadata={"help": "Learning-rate schedule of the warm start: `constant`, or `linear` or `cosine` towards 0."},
    )

    def __post_init__(self):
        for name in ("max_image_pixels", "warmstart_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmstart_steps < 0:
            raise ValueError(f"warmstart_steps must be 0 or more, got {self.warmstart_steps}")
        if self.warmstart_learning_rate <= 0:
            raise ValueError(f"warmstart_learning_rate must be positive, got {self.warmstart_learning_rate}")
        if self.warmstart_lr_scheduler_type not in WARMSTART_SCHEDULES:
            raise ValueError(f"warmstart_lr_scheduler_type must be one of {', '.join(WARMSTART_SCHEDULES)}, got "
                             f"{self.warmstart_lr_scheduler_type!r}")


# ----------------------------------------------------------------------------------------------------- key table
def build_key_table() -> list[dict]:
    """Every recipe key from the real dataclasses (imports TRL): name, group, type, default and help."""
    import dataclasses

    from trl import GRPOConfig, ModelConfig, TrlParser

    from .config import AgenticGRPOConfig

    TrlParser((TrainScriptArguments, AgenticGRPOConfig, ModelConfig))  # raises if two classes share a key
    trl_keys = {f.name for f in dataclasses.fields(GRPOConfig)}
    sources = (("script", TrainScriptArguments, set()), ("agentic", AgenticGRPOConfig, trl_keys),
               ("model", ModelConfig, set()), ("trl", GRPOConfig, set()))
    table = []
    for group, cls, skip in sources:
        for f in dataclasses.fields(cls):
            if not f.init or f.name in skip:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = "required"
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            table.append({"key": f.name, "group": group, "type": type_name,
                          "default": json.loads(json.dumps(default, default=str)),
                          "help": " ".join(str(f.metadata.get("help", "")).split())})
    return table


def write_key_table(path: Path = KEY_TABLE_FILE) -> Path:
    path.write_text(json.dumps(build_key_table(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def key_table() -> dict[str, dict]:
    """The recipe keys by name, from ``train_keys.json`` (no heavy imports)."""
    return {entry["key"]: entry for entry in json.loads(KEY_TABLE_FILE.read_text(encoding="utf-8"))}


def train_help() -> str:
    """The text of ``agentic-vlm train --help``: every key by group, this project's first, with default and help."""
    keys = key_table()
    lines = [
        "usage: agentic-vlm train RECIPE.yaml [--key value ...] [--debug]",
        "",
        "Train with a recipe: a YAML file whose keys are listed below. `--key value` on the command line overrides",
        "the recipe. Relative paths in a recipe are relative to the recipe's folder. `--debug` shows tracebacks.",
        "resume_from_checkpoint takes a checkpoint folder, or true/latest for the last one in output_dir.",
    ]
    for group, title in KEY_GROUPS.items():
        lines += ["", f"{title}:"]
        for entry in (e for e in keys.values() if e["group"] == group):
            default = entry["default"]
            shown = "required" if default == "required" else f"default {json.dumps(default)}"
            lines.append(f"  {entry['key']}  ({shown})")
            if entry["help"]:
                lines.append(f"      {entry['help']}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- reading a recipe
def _unknown_key_message(where: str, key: str, known: dict[str, dict], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {prefix}{close[0]}?" if close else "; `agentic-vlm train --help` lists the keys"
    return f"{where}: unknown key {prefix}{key}{hint}"


def _is_known(key: str, known: dict[str, dict]) -> bool:
    # transformers' parser also takes --no_KEY for booleans that default to true.
    return key in known or (key.startswith("no_") and known.get(key[3:], {}).get("default") is True)


def read_recipe(path: str | Path) -> dict:
    """The recipe's keys with relative paths resolved against its folder; unknown keys are a :class:`RecipeError`
    naming the file, the key and the closest valid key."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of keys to values")
    known = key_table()
    for key in recipe:
        if key != "env" and not _is_known(str(key), known):
            raise RecipeError(_unknown_key_message(str(path), str(key), known))
    return resolve_paths(recipe, path.parent)


def resolve_paths(recipe: dict, base: Path) -> dict:
    """``recipe`` with its relative paths made relative to ``base`` (model paths: see :func:`resolve_model_path`)."""
    resolved = dict(recipe)
    for key in PATH_KEYS:
        value = resolved.get(key)
        if isinstance(value, str) and value and str(value).lower() not in RESUME_LATEST:
            resolved[key] = _under(base, value)
    if isinstance(resolved.get("model_name_or_path"), str):
        resolved["model_name_or_path"] = resolve_model_path(resolved["model_name_or_path"], base)
    if isinstance(resolved.get("tool_kwargs"), dict):
        resolved["tool_kwargs"] = {tool: _resolve_option_paths(options, base)
                                   for tool, options in resolved["tool_kwargs"].items()}
    return resolved


def _resolve_option_paths(options, base: Path):
    if not isinstance(options, dict):
        return options
    return {key: (_under(base, value) if isinstance(value, str) and key.endswith(PATH_SUFFIXES)
                  else _resolve_option_paths(value, base)) for key, value in options.items()}


def _under(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else os.path.normpath(base / path))


def looks_like_local_path(name: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else (``./x``, ``../x``, ``/x``, ``a/b/c``) is a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def resolve_model_path(name: str, base: Path) -> str:
    """A local folder relative to ``base`` when it exists there or looks like a path; otherwise ``name`` (a hub id)."""
    candidate = _under(base, name)
    if looks_like_local_path(name) or Path(candidate).exists():
        return candidate
    return name


def check_model_exists(name: str, *, hub_timeout: float = 3.0) -> None:
    """Fail at once, naming ``name``, when the model is neither a local folder nor fetchable: a missing local path, or
    a hub id that is not in the local cache while the hub cannot be reached (transformers would retry for minutes)."""
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise RecipeError(f"model folder {name} has no config.json")
        return
    if looks_like_local_path(name) or Path(name).exists():
        raise RecipeError(f"model {name} does not exist")
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise RecipeError(f"model {name} is not a local folder and not in the hub cache, and HF_HUB_OFFLINE is set")
    import httpx

    try:
        httpx.head(constants.ENDPOINT, timeout=hub_timeout)
    except httpx.HTTPError as error:
        raise RecipeError(f"model {name} is not a local folder and not in the hub cache, and the hub "
                          f"({constants.ENDPOINT}) cannot be reached: {error}") from None


def check_override_keys(argv: list[str]) -> None:
    """Every ``--key`` (or ``--key=value``) of the command line must be a recipe key; the error names the closest."""
    known = key_table()
    for token in argv:
        if token.startswith("--"):
            key = token[2:].partition("=")[0]
            if not _is_known(key, known):
                raise RecipeError(_unknown_key_message("command line", key, known, prefix="--"))


def parse_recipe(path: str | Path, overrides: list[str]):
    """``(script_args, training_args, model_args)`` of the recipe ``path`` with the ``--key value`` ``overrides``;
    every problem is a :class:`RecipeError` that names the recipe or the command line."""
    recipe = read_recipe(path)
    check_override_keys(overrides)
    from trl import ModelConfig, TrlParser

    from .config import AgenticGRPOConfig

    for key, value in (recipe.pop("env", None) or {}).items():  # as TRL's parser does
        os.environ[key] = str(value)
    parser = TrlParser((TrainScriptArguments, AgenticGRPOConfig, ModelConfig))

    def error(message: str):  # argparse would print the usage of every key (hundreds) before the message
        raise RecipeError(f"command line: {message}")

    parser.error = error
    parser.set_defaults_with_config(**recipe)
    try:
        script_args, training_args, model_args = parser.parse_args_into_dataclasses(args=overrides)
    except (ValueError, TypeError) as failure:
        if isinstance(failure, RecipeError):
            raise
        where = f"{path} with the command line's overrides" if overrides else str(path)
        raise RecipeError(f"{where}: {failure}") from failure
    scale_warm_start(script_args, recipe, training_args.max_steps, overrides)
    return script_args, training_args, model_args


def scale_warm_start(script_args, recipe: dict, max_steps: int, overrides: list[str]) -> None:
    """A short trial run (``--max_steps 3`` against a recipe's 40) gets a warm start shortened in proportion, unless
    the command line sets ``warmstart_steps`` itself: three GRPO steps after a full warm start would spend nearly
    all the time on the warm start."""
    given = {token[2:].partition("=")[0] for token in overrides if token.startswith("--")}
    planned = recipe.get("max_steps")
    if "max_steps" not in given or "warmstart_steps" in given or not isinstance(planned, int):
        return
    if 0 < max_steps < planned and script_args.warmstart_steps:
        scaled = max(1, math.ceil(script_args.warmstart_steps * max_steps / planned))
        print(f"max_steps {max_steps} of the recipe's {planned}: warm start shortened to {scaled} of its "
              f"{script_args.warmstart_steps} steps (set --warmstart_steps to choose)", flush=True)
        script_args.warmstart_steps = scaled


def find_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: ``true``/``latest`` is the last ``checkpoint-N`` in ``output_dir``."""
    if resume_from_checkpoint is None or str(resume_from_checkpoint).lower() in ("", "false", "none"):
        return None
    if str(resume_from_checkpoint).lower() in RESUME_LATEST:
        steps = [(int(p.name.split("-")[1]), p) for p in Path(output_dir).glob("checkpoint-*")
                 if p.is_dir() and p.name.split("-")[1].isdigit()]
        if not steps:
            raise RecipeError(f"resume_from_checkpoint: {resume_from_checkpoint}, but {output_dir} has no checkpoint-N "
                              "folder")
        return str(max(steps)[1])
    if not Path(resume_from_checkpoint).is_dir():
        raise RecipeError(f"resume_from_checkpoint: {resume_from_checkpoint} is not a folder")
    return str(resume_from_checkpoint)


if __name__ == "__main__":
    print(write_key_table())
