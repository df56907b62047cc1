"""Roll out a model over a dataset with the same engine as training, and score the trajectories.

:func:`evaluate` writes one JSON line per item (the whole trajectory, the images its tools returned saved next to
the file, the prediction and each metric's score) and a summary of the metrics. It resumes: items whose id is
already in the output file are skipped, the others are appended, and the summary covers every line. A run records
what it was made with (``RUN.settings.json``: the model and a fingerprint of its weights, the data, every setting that
changes results); resuming with anything different is refused, naming the differences.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from ..families import end_of_turn_token_ids
from ..frames import ImageView
from ..protocols.base import Protocol
from ..rewards.judge import question_text
from ..rewards.trajectory import final_answer
from ..rewards.trl_rewards import set_image_view
from ..rollout import RolloutEngine, SamplingSettings, Trajectory, TransformersTurnGenerator
from ..rollout.engine import GenerateFn
from ..tools.base import Tool
from ..warmstart import prompt_messages
from .benchmarks import Benchmark
from .metrics import check_metric_names, score_item, summarize, tool_use

logger = logging.getLogger(__name__)
_UNSAFE_IN_FILE_NAMES = re.compile(r"[^\w.-]")


def load_for_inference(model_path: str, *, dtype: str = "auto", device: str | None = None,
                       min_pixels: int | None = None, max_pixels: int | None = None):
    """The model (on ``device``: cuda when available by default) and its processor, for rollouts."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    image_kwargs = {key: value for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels))
                    if value is not None}
    processor = AutoProcessor.from_pretrained(model_path, **image_kwargs)
    model = AutoModelForImageTextToText.from_pretrained(
        model_path, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
    )
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")), processor


def rollout_dataset(
    model,
    processing_class,
    protocol: Protocol,
    tools: list[Tool],
    dataset,
    *,
    batch_size: int = 16,
    max_turns: int = 4,
    max_completion_length: int = 1024,
    sampling: SamplingSettings | None = None,
    tool_timeout: float = 60.0,
    system_prompt: str | None = None,
    generate: GenerateFn | None = None,
    progress: bool = True,
) -> Iterator[tuple[list[dict], list[Trajectory]]]:
    """Yield ``(rows, trajectories)`` batch by batch; greedy decoding unless ``sampling`` says otherwise.

    ``generate`` replaces the model's generation (``model`` may then be ``None``): a
    :class:`~agentic_vlm.rollout.ScriptedTurnGenerator` that replays reference solutions, for instance.
    """
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    eos_token_ids = end_of_turn_token_ids(tokenizer, getattr(model, "config", None),
                                          getattr(model, "generation_config", None))
    if generate is None:
        # Our own settings, never the checkpoint's generation_config.json (see SamplingSettings).
        generator = TransformersTurnGenerator(
            processing_class, model.config, protocol.stop_strings(tools), sampling or SamplingSettings(do_sample=False),
            eos_token_ids=eos_token_ids,
        )
        generate = functools.partial(generator.generate, model)
        model.eval()
    engine = RolloutEngine(
        processing_class, protocol, tools, generate,
        max_turns=max_turns, max_completion_length=max_completion_length, tool_timeout=tool_timeout,
        system_prompt=system_prompt, eos_token_ids=eos_token_ids,
        image_view=image_view_of(model, processing_class),
    )
    try:
        desc = f"rollouts {'with' if tools else 'without'} tools"
        with tqdm(total=len(dataset), desc=desc, disable=not progress) as bar:
            for start in range(0, len(dataset), batch_size):
                rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                yield rows, engine.run([prompt_messages(row) for row in rows], rows)
                bar.update(len(rows))
    finally:
        engine.close()


def image_view_of(model, processing_class) -> ImageView | None:
    """How ``model`` sees images and writes boxes; without a model (scripted rollouts), the processor's resize with
    boxes in pixels of the resized image."""
    if model is None:
        return ImageView.of(processing_class) if hasattr(processing_class, "image_processor") else None
    return ImageView.for_model(processing_class, model.config)


def reward_table(reward_funcs: Sequence, rows: list[dict], trajectories: list[Trajectory]) -> list[dict]:
    """Each reward function's value for each trajectory, called as TRL calls it (``None``: does not apply)."""
    completions = [t.completion_messages() for t in trajectories]
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    prompts = [row["prompt"] for row in rows]
    table = [{} for _ in rows]
    for func in reward_funcs:
        values = func(prompts=prompts, completions=completions, **columns)
        if inspect.isawaitable(values):  # async rewards (the judge)
            # On an event loop of its own thread: this thread may be running one already (in a notebook).
            with ThreadPoolExecutor(max_workers=1) as thread:
                values = thread.submit(asyncio.run, values).result()
        for entry, value in zip(table, values, strict=True):
            entry[func.__name__] = value
    return table


def summary_path(output: str | Path) -> Path:
    """Where :func:`evaluate` writes the summary of ``RUN.jsonl``: ``RUN.summary.json``."""
    return Path(output).with_suffix(".summary.json")


def read_run(path: str | Path, *, keep_unterminated_line: bool = False) -> list[dict]:
    """The records of an evaluation output file (none if it does not exist). A last line without its newline is one
    an interrupted run was writing: it is not a record (see :func:`cut_incomplete_line`), unless
    ``keep_unterminated_line`` and it holds a whole JSON object (a file written by another program)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file of JSON lines (a run of agentic-vlm eval or training)") from None
    lines = text.splitlines()
    if not text.endswith("\n") and lines and not keep_unterminated_line:
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                break  # an interrupted write
            raise ValueError(f"{path}, line {number}: not a JSON record ({error.msg})") from None
        if not isinstance(records[-1], dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
    return records


def cut_incomplete_line(path: Path) -> None:
    """Remove the unfinished last line an interrupted run left, so that appending starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        logger.warning("%s: dropping an incomplete last line (the run was interrupted); that item runs again", path)
        with open(path, "r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


def no_tools_path(output: str | Path) -> Path:
    """Where ``agentic-vlm eval`` writes the pass without tools of the run ``RUN.jsonl``: ``RUN.no-tools.jsonl``."""
    return Path(output).with_suffix(".no-tools.jsonl")


def settings_path(output: str | Path) -> Path:
    """Where :func:`evaluate` records what ``RUN.jsonl`` was made with: ``RUN.settings.json``."""
    return Path(output).with_suffix(".settings.json")


# Bytes read from each end of every tensor for the fingerprint (see model_fingerprint).
_SAMPLED_BYTES = 4096


def model_fingerprint(model: str | Path) -> str:
    """A short hash that tells two models apart without reading all their weights.

    It covers ``config.json``, the generation and processor settings, and for each weight file its size, its
    safetensors header (every tensor's name, dtype, shape and offsets) and the first and last 4 KiB of every tensor's
    data. Training changes every element of a trained tensor, so two checkpoints of the same architecture (two
    ``checkpoint-100`` folders of different runs, a model before and after a fine-tune) differ in those bytes; sizes
    and modification times alone would call them equal. Reading about 8 KiB per tensor costs milliseconds even for a
    7B model, where hashing every byte would take a minute. A hub id that is not a local folder is fingerprinted by
    its name only.
    """
    folder = Path(model)
    digest = hashlib.sha256()
    if not folder.is_dir():
        digest.update(f"hub:{model}".encode())
        return digest.hexdigest()[:16]
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
                 "chat_template.jinja", "tokenizer_config.json"):
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        with open(weights, "rb") as file:
            if weights.suffix != ".safetensors":
                digest.update(file.read(1 << 20))
                continue
            header_size = int.from_bytes(file.read(8), "little")
            header = file.read(header_size)
            digest.update(header)
            for name, tensor in sorted(json.loads(header).items()):
                if name == "__metadata__":
                    continue
                start, end = (8 + header_size + offset for offset in tensor["data_offsets"])
                for position in sorted({start, max(start, end - _SAMPLED_BYTES)}):
                    file.seek(position)
                    digest.update(file.read(min(_SAMPLED_BYTES, end - position)))
    return digest.hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """The SHA-256 of a dataset file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def settings_fingerprint(settings: dict) -> str:
    """A short hash of a run's settings, for default output names that differ whenever the settings do."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def check_same_settings(output: Path, settings: dict) -> None:
    """Record ``settings`` for a new run; for a run being resumed, refuse if they differ from the recorded ones."""
    recorded_file = settings_path(output)
    if not recorded_file.is_file():
        if read_run(output):
            raise ValueError(f"{output} holds results but no record of the settings that made them "
                             f"({recorded_file}); write this run to another --output")
        recorded_file.parent.mkdir(parents=True, exist_ok=True)
        recorded_file.write_text(json.dumps(settings, indent=2, default=str) + "\n")
        return
    recorded = json.loads(recorded_file.read_text())
    # Runs recorded before the pass without tools existed: which pass they were follows from their tools.
    recorded.setdefault("pass", "with tools" if recorded.get("tools") else "without tools")
    current = json.loads(json.dumps(settings, default=str))
    differences = [f"{key}: {recorded.get(key)!r} then, {current.get(key)!r} now"
                   for key in sorted(set(recorded) | set(current)) if recorded.get(key) != current.get(key)]
    if differences:
        raise ValueError(f"{output} was made with other settings, so its results cannot be resumed: "
                         + "; ".join(differences) + ". Write to another --output, or delete the run to start over")


def item_ids(dataset) -> list[str]:
    """The ``id`` column as strings (row numbers when there is none); ids must be unique to resume a run."""
    ids = [str(value) for value in dataset["id"]] if "id" in dataset.column_names else [
        str(index) for index in range(len(dataset))
    ]
    seen = set()
    for item_id in ids:
        if item_id in seen:
            raise ValueError(f"the dataset has the id {item_id!r} twice; evaluation needs unique ids to resume")
        seen.add(item_id)
    return ids


def evaluate(
    model,
    processing_class,
    protocol: Protocol,
    tools: list[Tool],
    benchmark: Benchmark,
    output: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    reward_funcs: Sequence = (),
    run_info: dict | None = None,
    without_tools: str | Path | None = None,
    **rollout_options,
) -> dict:
    """Evaluate on ``benchmark``, appending to the JSONL file ``output``; returns the summary, also written to
    :func:`summary_path`.

    ``metrics`` default to the benchmark's; the first decides whether an item is ``correct`` (a score of 1).
    ``reward_funcs`` (TRL reward functions, async ones included) are recorded per item too. ``run_info`` (the model,
    its fingerprint, the data, every setting that changes results) goes into the summary and into
    :func:`settings_path`: resuming a run whose recorded ``run_info`` differs raises ``ValueError`` naming the
    differences. ``without_tools`` is a run of the same items without tools (``agentic-vlm eval`` makes it in a second
    pass, :func:`no_tools_path`): the summary's ``tool_use`` compares the two
    (:func:`~agentic_vlm.eval.metrics.tool_use`). Other options are :func:`rollout_dataset`'s.
    """
    metrics = tuple(metrics or benchmark.metrics)
    check_metric_names(metrics)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    images_dir = output.parent / f"{output.stem}-images"
    dataset = benchmark.dataset
    ids = item_ids(dataset)
    cut_incomplete_line(output)
    if run_info is not None:
        check_same_settings(output, run_info)
    done = {record["id"] for record in read_run(output)}
    strangers = done - set(ids)
    if strangers:
        raise ValueError(f"{output} holds items that are not in {benchmark.name} (such as {sorted(strangers)[0]!r}); "
                         "write this run to another --output")
    pending = [index for index, item_id in enumerate(ids) if item_id not in done]
    if done:
        logger.info("%s: %d items already evaluated, %d to go", output, len(done), len(pending))
    pending_ids = iter([ids[index] for index in pending])
    set_image_view(reward_funcs, image_view_of(model, processing_class))  # iou reads boxes in the model's frame
    with open(output, "a") as file:
        for rows, trajectories in rollout_dataset(model, processing_class, protocol, tools, dataset.select(pending),
                                                  **rollout_options):
            rewards = reward_table(reward_funcs, rows, trajectories)
            for row, trajectory, row_rewards in zip(rows, trajectories, rewards, strict=True):
                record = item_record(next(pending_ids), row, trajectory, row_rewards, protocol, metrics,
                                     benchmark.group_by, images_dir, output.parent)
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
            file.flush()

    return write_summary(output, benchmark, metrics, run_info, without_tools)


def write_summary(output: str | Path, benchmark: Benchmark, metrics: Sequence[str], run_info: dict | None = None,
                  without_tools: str | Path | None = None) -> dict:
    """The summary of the run ``output`` (see :func:`evaluate`), written to :func:`summary_path` and returned."""
    summary = {"dataset": benchmark.name, "format": benchmark.format, "output": str(output),
               "metrics": list(metrics), **(run_info or {}), **summarize(read_run(output), metrics, benchmark.group_by)}
    if without_tools is not None:
        summary["tool_use"] = {"run_without_tools": str(without_tools),
                               **tool_use(read_run(output), read_run(without_tools), metrics[0])}
    summary_path(output).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def item_record(item_id: str, row: dict, trajectory: Trajectory, rewards: dict, protocol: Protocol,
                metrics: Sequence[str], group_by: Sequence[str], images_dir: Path, base_dir: Path) -> dict:
    """One line of the output: the item, the prediction, its scores and rewards, then the trajectory turn by turn.

    Image paths are relative to ``base_dir`` (the output's folder) when the images were saved there, so that a run
    can be moved with its images; the dataset's own images keep their absolute paths.
    """
    prediction = final_answer(trajectory.completion_messages(), protocol)
    scores = score_item(prediction, row["answer"], metrics) if metrics else {}
    trajectory_record = trajectory.to_record(images_dir=images_dir)
    trajectory_record["trajectory_id"] = trajectory_record.pop("id")
    for turn in trajectory_record["turns"]:
        if "images" in turn:
            turn["images"] = [os.path.relpath(image, base_dir) for image in turn["images"]]
    return {
        "id": item_id,
        "question": question_text(row["prompt"]),
        "answer": row.get("answer"),
        "prediction": prediction,
        **({"correct": scores[metrics[0]] == 1.0} if metrics else {}),
        "scores": scores,
        "rewards": rewards,
        **{column: row[column] for column in group_by if column in row},
        "input_images": _input_image_files(row, item_id, images_dir, base_dir),
        **trajectory_record,
    }


def _input_image_files(row: dict, item_id: str, images_dir: Path, base_dir: Path) -> list[str]:
    """The files of the row's images: where they were read from, or a copy when they came from bytes."""
    files = []
    for index, image in enumerate(row.get("images") or []):
        source = getattr(image, "filename", "")
        if source and Path(source).is_file():
            files.append(str(Path(source).resolve()))
        else:
            path = images_dir / f"{_UNSAFE_IN_FILE_NAMES.sub('_', item_id)}-input-{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            files.append(os.path.relpath(path, base_dir))
    return files
