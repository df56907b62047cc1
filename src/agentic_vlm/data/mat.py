"""Loaders for Visual-ARFT's MAT release: the MAT-Search and MAT-Coding benchmarks and the MAT training files.

Each returns a dataset shaped like :func:`~agentic_vlm.data.load_jsonl_dataset`'s: a conversational ``prompt``, the
``images`` (decoded lazily), the ``answer`` (a string or a list of acceptable strings), an ``id`` (a string) and the
release's other fields as columns. Files are JSON lists (as released) or JSON lines.

Image names in the release are relative to a folder beside the JSON file: ``MAT-Coding.json`` has its images in
``MAT-Coding-image/``, ``rft_agent_code_1_2k.json`` in ``rft_agent_code_1_2k_images/``. Without ``image_root``, an
image is looked up in ``<stem>-image/``, ``<stem>_images/``, ``images/`` and the file's own folder, in that order.

- MAT-Search (``id, question, answer, image_path``).
- MAT-Coding (``id, question, answers, ori_image_path, processed_image_path, type, split``): the model sees the
  processed (degraded) image, except for ``crop`` items, whose question names a box of the original image (in
  coordinates normalised to 0-1000), as in the reference evaluation. ``type`` is the list of degradations and
  ``split`` is ``simple`` or ``hard``.
- MAT training files (``image_path, problem, solution``; the coding file adds ``type``, ``context`` and ``gt``) hold
  trajectories cut into single steps for offline training: one row per step, the earlier steps in ``context`` (or
  in ``problem``), the step to imitate in ``solution``. Rollouts here run live, so the steps of each trajectory are
  grouped back into one start point: its question, its first image and the final answer of its answer step.
  Steps belong together when their image is the same once a ``_proc`` or ``_ori`` suffix is removed (the coding
  file shows the degraded ``x_proc.png`` to the first steps and the restored ``x_ori.png`` to the answer step).
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Dataset

from ..protocols.arft import ArftProtocol
from .records import (
    DEFAULT_MAX_IMAGE_PIXELS,
    answers_field,
    collect_rows,
    image_file,
    read_records,
    report_skipped_rows,
    require,
    string_field,
    to_dataset,
)

# MAT prompts wrap the question as "<query> ... </query>" (the closing tag is sometimes written "<query>").
_QUERY_TAGS = re.compile(r"</?query>")
_IMAGE_SUFFIX = re.compile(r"_(proc|ori)$")
_DIAGNOSIS = re.compile(r"<problem>(.*?)</problem>", re.DOTALL)
_QUOTED = re.compile(r"'([^']+)'")


def image_roots(path: Path, image_root: str | Path | None) -> list[Path]:
    if image_root is not None:
        return [Path(image_root)]
    folder = path.parent
    return [folder / f"{path.stem}-image", folder / f"{path.stem}_images", folder / "images", folder]


def load_mat_search(path: str | Path, image_root: str | Path | None = None, skip_bad_rows: bool = False,
                    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """MAT-Search: multi-hop questions about an image that need web search."""
    path = Path(path)
    roots = image_roots(path, image_root)

    def row(record: dict, where: str) -> dict:
        extra = {key: value for key, value in record.items()
                 if key not in ("id", "question", "answer", "image_path")}
        return {
            "id": _id_field(record, path, where),
            "prompt": _prompt(string_field(record, "question", path, where)),
            "images": [image_file(string_field(record, "image_path", path, where), roots, path, where, "image_path",
                                  max_image_pixels)],
            "answer": answers_field(record, "answer", path, where),
            **extra,
        }

    bad_rows: list[str] | None = [] if skip_bad_rows else None
    return to_dataset(collect_rows(read_records(path, bad_rows), row, bad_rows), path, bad_rows)


def load_mat_coding(path: str | Path, image_root: str | Path | None = None, skip_bad_rows: bool = False,
                    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """MAT-Coding: questions about degraded images that code can restore (rotate, brighten, denoise, crop...)."""
    path = Path(path)
    roots = image_roots(path, image_root)

    def row(record: dict, where: str) -> dict:
        degradations = record.get("type")
        require(isinstance(degradations, list) and bool(degradations) and all(isinstance(t, str) for t in degradations),
                path, where, "field 'type' must be a non-empty list of degradation names")
        original, processed = (
            image_file(string_field(record, field, path, where), roots, path, where, field, max_image_pixels)
            for field in ("ori_image_path", "processed_image_path")
        )
        extra = {key: value for key, value in record.items() if key not in (
            "id", "question", "answers", "ori_image_path", "processed_image_path", "type", "split")}
        return {
            "id": _id_field(record, path, where),
            "prompt": _prompt(string_field(record, "question", path, where)),
            "images": [original if "crop" in degradations else processed],
            "answer": answers_field(record, "answers", path, where),
            "type": degradations,
            "split": string_field(record, "split", path, where),
            "ori_image_path": original,
            "processed_image_path": processed,
            **extra,
        }

    bad_rows: list[str] | None = [] if skip_bad_rows else None
    return to_dataset(collect_rows(read_records(path, bad_rows), row, bad_rows), path, bad_rows)


def load_mat_training(path: str | Path, image_root: str | Path | None = None, skip_bad_rows: bool = False,
                      max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """A MAT training file (``rft_agent_search_20.json``, ``rft_agent_code_1_2k.json``) as one row per trajectory:
    ``id`` (the image's name), ``prompt``, ``images``, ``answer``, and for the coding file ``type``, the degradations
    its first step diagnoses. With ``skip_bad_rows`` a malformed step is left out, and so is a trajectory that is
    then incomplete; the two are counted apart (a step is a record of the file, a trajectory a row of the dataset)."""
    path = Path(path)
    roots = image_roots(path, image_root)
    bad_steps: list[str] | None = [] if skip_bad_rows else None

    def step(record: dict, where: str) -> tuple[str, dict]:
        for field in ("image_path", "problem", "solution"):
            string_field(record, field, path, where)
        return where, record

    steps = collect_rows(read_records(path, bad_steps), step, bad_steps)
    if bad_steps:
        report_skipped_rows(bad_steps, len(steps) + len(bad_steps), str(path), units="steps")
    trajectories: dict[str, list[tuple[str, dict]]] = {}
    for where, record in steps:
        trajectories.setdefault(_IMAGE_SUFFIX.sub("", Path(record["image_path"]).stem), []).append((where, record))
    protocol = ArftProtocol()

    def row(steps: list[tuple[str, dict]], first_where: str) -> dict:
        first = steps[0][1]
        key = _IMAGE_SUFFIX.sub("", Path(first["image_path"]).stem)
        is_coding = "type" in first
        if is_coding:  # the coding file names each step; the trajectory starts at its diagnosis
            starts = [(where, step) for where, step in steps if step.get("type") == "pre_problem"]
            require(len(starts) == 1, path, first_where,
                    f"field 'type': the steps of image {key!r} need exactly one 'pre_problem' step, found {len(starts)}")
            first_where, first = starts[0]
        answers = [answer for _, step in steps if (answer := protocol.extract_answer(step["solution"])) is not None]
        require(len(answers) == 1, path, first_where,
                f"field 'solution': the steps of image {key!r} need exactly one <answer> step, found {len(answers)}")
        row = {
            "id": key,
            "prompt": _prompt(first["problem"]),
            "images": [image_file(first["image_path"], roots, path, first_where, "image_path", max_image_pixels)],
            "answer": answers[0],
        }
        if is_coding:
            row["type"] = _diagnosed_degradations(first["solution"], path, first_where)
        return row

    located = [(steps[0][0], steps) for steps in trajectories.values()]
    bad_trajectories: list[str] | None = [] if skip_bad_rows else None
    rows = collect_rows(located, row, bad_trajectories)
    if bad_trajectories:
        report_skipped_rows(bad_trajectories, len(rows) + len(bad_trajectories), str(path), units="trajectories")
    return to_dataset(rows, path)


def _id_field(record: dict, path: Path, where: str) -> str:
    value = record.get("id")
    require(isinstance(value, str | int) and not isinstance(value, bool) and str(value) != "", path, where,
            "field 'id' must be a string or an integer")
    return str(value)


def _prompt(question: str) -> list[dict]:
    return [{"role": "user", "content": _QUERY_TAGS.sub("", question).strip()}]


def _diagnosed_degradations(solution: str, path: Path, where: str) -> list[str]:
    """The names in a diagnosis step ``<problem> {'rotation90', 'dark'} </problem>``."""
    diagnosis = _DIAGNOSIS.search(solution)
    names = _QUOTED.findall(diagnosis.group(1)) if diagnosis else []
    require(bool(names), path, where,
            "field 'solution': the 'pre_problem' step must name the degradations as <problem> {'name', ...} </problem>")
    return names
