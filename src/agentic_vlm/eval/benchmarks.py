"""What to evaluate on: a shipped synthetic task by name, or a file in one of the known formats.

A :class:`DatasetFormat` says how to load a file, how to recognise it, how to score it, and which protocol and tools
its tasks are written for. ``DATASET_FORMATS`` holds them by name; a new benchmark (ReFOCUS, say) plugs in by adding
an entry, and its metric by adding one to :data:`agentic_vlm.eval.metrics.ITEM_METRICS`.

A name in ``SHIPPED_TASKS`` (``zoom``, ``search``, ``coding``, ``refocus``, and the tiny variants ``search-tiny``,
``coding-tiny``, ``refocus-tiny``) is the test split of the task shipped in ``data/<name>/`` (the task file format),
with the protocol, tools, metrics and groups that task is meant for.
A name in ``PUBLISHED_BENCHMARKS`` (``vstar``, ``hrbench4k``, ``hrbench8k``) is that benchmark's release, downloaded
into the data folder (``vstar_bench/``, ``hr_bench_4k.tsv``, ``hr_bench_8k.tsv``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from ..data import load_jsonl_dataset
from ..data.highres import load_hrbench, load_vstar
from ..data.mat import load_mat_coding, load_mat_search, load_mat_training
from ..data.records import DEFAULT_MAX_IMAGE_PIXELS, read_records
from ..data.refocus import load_refocus_parquet


@dataclass(frozen=True)
class DatasetFormat:
    """One kind of evaluation file.

    Attributes:
        load: ``load(path, image_root, skip_bad_rows=..., max_image_pixels=...)`` returns the dataset (``image_root``
            is where images are, for formats that keep them apart from the file; ``None`` for the format's default).
        detect: Whether a file is in this format (from its fields).
        metrics: The metrics the benchmark reports, the first being the one that decides "correct" in the viewer.
        group_by: Columns whose values the metrics are also reported for.
        tools: The tools its tasks are meant for (empty: the user must say).
        protocol: How its tasks' actions and observations are written (a name from ``PROTOCOLS``).
    """

    load: Callable[..., Dataset]
    detect: Callable[[Path], bool]
    metrics: tuple[str, ...]
    group_by: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    protocol: str = "arft"


def _first_record_has(*fields: str) -> Callable[[Path], bool]:
    def detect(path: Path) -> bool:
        # Malformed records are the loader's to report (or skip): the first good one tells the format.
        return path.suffix in (".json", ".jsonl") and set(fields) <= set(read_records(path, bad_rows=[])[0][1])

    return detect


def _is_vstar_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*/*.json"))


def _is_hrbench_file(path: Path) -> bool:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return "cycle_category" in pq.ParquetFile(path).schema_arrow.names
    if path.suffix != ".tsv":
        return False
    with open(path, encoding="utf-8") as file:
        return "cycle_category" in file.readline().rstrip("\n").split("\t")


def _load_task_file(path: Path, image_root: Path | None, **checks) -> Dataset:
    if image_root is not None:
        raise ValueError("a task file names its images relative to itself; image_root is for MAT files")
    return load_jsonl_dataset(path, **checks)


DATASET_FORMATS: dict[str, DatasetFormat] = {
    "mat-coding": DatasetFormat(load_mat_coding, _first_record_has("answers", "processed_image_path"),
                                metrics=("exact_match", "f1_set"), group_by=("split", "type"), tools=("code",)),
    "mat-search": DatasetFormat(load_mat_search, _first_record_has("question", "answer", "image_path"),
                                metrics=("exact_match", "f1_set"), group_by=("split",), tools=("search",)),
    "mat-training": DatasetFormat(load_mat_training, _first_record_has("problem", "solution", "image_path"),
                                  metrics=("exact_match", "f1_set"), group_by=("type",)),
    "tasks": DatasetFormat(_load_task_file, _first_record_has("question", "answer"),
                           metrics=("accuracy", "f1"), group_by=("split", "type")),
    "vstar": DatasetFormat(lambda path, image_root, **checks: load_vstar(path, **checks), _is_vstar_folder,
                           metrics=("choice",),
                           group_by=("category",), tools=("zoom", "code")),
    "hrbench": DatasetFormat(lambda path, image_root, **checks: load_hrbench(path, **checks), _is_hrbench_file,
                             metrics=("choice",),
                             group_by=("category", "cycle_category"), tools=("zoom", "code")),
    "refocus": DatasetFormat(lambda path, image_root, **checks: load_refocus_parquet(path, **checks),
                             lambda path: path.suffix == ".parquet",
                             metrics=("refocus",), tools=("refocus",), protocol="vtool"),
}

# Published benchmarks by name: where under the data folder their release is expected, and its format.
PUBLISHED_BENCHMARKS: dict[str, tuple[str, str]] = {
    "vstar": ("vstar_bench", "vstar"),
    "hrbench4k": ("hr_bench_4k.tsv", "hrbench"),
    "hrbench8k": ("hr_bench_8k.tsv", "hrbench"),
}


@dataclass(frozen=True)
class ShippedTask:
    """A synthetic task shipped in ``data/<name>/``: what to evaluate its test split with."""

    tools: tuple[str, ...]
    metrics: tuple[str, ...]
    group_by: tuple[str, ...] = ()
    tool_kwargs: Callable[[Path], dict] | None = None  # the tools' options, given the task's folder
    protocol: str = "arft"


def _offline_search_corpus(folder: Path) -> dict:
    """A shipped search task's questions are answered from its own corpus, by the offline index."""
    return {"search": {"backend_options": {"corpus_path": str(folder / "corpus.jsonl")}}}


SHIPPED_TASKS: dict[str, ShippedTask] = {
    "zoom": ShippedTask(tools=("zoom",), metrics=("accuracy",)),
    "search": ShippedTask(tools=("search",), metrics=("exact_match", "f1"), group_by=("kind",),
                          tool_kwargs=_offline_search_corpus),
    "coding": ShippedTask(tools=("code",), metrics=("accuracy",), group_by=("split", "type")),
    "refocus": ShippedTask(tools=("refocus",), metrics=("refocus",), protocol="vtool"),
}
# The tiny variants (`make-data TASK --variant tiny`), which the CPU recipes train on, are evaluated as their tasks are.
SHIPPED_TASKS |= {f"{name}-tiny": SHIPPED_TASKS[name] for name in ("search", "coding", "refocus")}


@dataclass
class Benchmark:
    """A loaded evaluation set and how to run and score it."""

    name: str
    format: str
    dataset: Dataset
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    tools: tuple[str, ...]
    protocol: str
    tool_kwargs: dict = field(default_factory=dict)


def load_benchmark(dataset: str, format: str = "auto", image_root: str | Path | None = None,
                   data_dir: str | Path = "data", skip_bad_rows: bool = False,
                   max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Benchmark:
    """``dataset`` is a name from ``SHIPPED_TASKS`` (its test split under ``data_dir``) or a file; ``format`` is a
    name from ``DATASET_FORMATS``, or ``auto`` to recognise the file by its fields. Every record is checked as it is
    read, its images decoded once (over ``max_image_pixels`` is an error); a bad one stops the load naming the file,
    the record and the field, or with ``skip_bad_rows`` is left out (see :mod:`agentic_vlm.data.records`)."""
    checks = {"skip_bad_rows": skip_bad_rows, "max_image_pixels": max_image_pixels}
    data_dir = Path(data_dir)
    image_root = Path(image_root) if image_root is not None else None
    if dataset in SHIPPED_TASKS and not Path(dataset).exists():
        task = SHIPPED_TASKS[dataset]
        path = data_dir / dataset / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"the shipped {dataset} task is not at {path}; run from the repository root, "
                                    f"or generate it with: agentic-vlm make-data {dataset} {data_dir / dataset}")
        return Benchmark(dataset, "tasks", _load_task_file(path, image_root, **checks), task.metrics, task.group_by,
                         task.tools, task.protocol, task.tool_kwargs(data_dir / dataset) if task.tool_kwargs else {})
    if dataset in PUBLISHED_BENCHMARKS and not Path(dataset).exists():
        release, format = PUBLISHED_BENCHMARKS[dataset]
        path = data_dir / release
        if not path.exists():
            raise FileNotFoundError(f"{dataset} is read from {path}: download its release there (or pass --data-dir)")
        spec = DATASET_FORMATS[format]
        return Benchmark(dataset, format, spec.load(path, image_root, **checks), spec.metrics, spec.group_by, spec.tools,
                         spec.protocol)
    path = Path(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{dataset} is neither a shipped task ({', '.join(SHIPPED_TASKS)}), a published "
                                f"benchmark ({', '.join(PUBLISHED_BENCHMARKS)}) nor a file")
    if format == "auto":
        format = next((name for name, candidate in DATASET_FORMATS.items() if candidate.detect(path)), None)
        if format is None:
            raise ValueError(f"cannot tell the format of {path} from its fields; name it: "
                             f"{', '.join(DATASET_FORMATS)}")
    elif format not in DATASET_FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; available: {', '.join(DATASET_FORMATS)}")
    spec = DATASET_FORMATS[format]
    return Benchmark(path.stem, format, spec.load(path, image_root, **checks), spec.metrics, spec.group_by, spec.tools,
                     spec.protocol)
