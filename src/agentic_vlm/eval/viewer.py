"""A trajectory viewer: one self-contained HTML page per run.

The page shows every trajectory turn by turn (the model's text, the action, the observation and the images the tools
returned), the item's scores and rewards, and filters (all, correct, wrong, tool errors) that a few lines of inline
JavaScript apply; the filter is in the URL fragment (``RUN.html#filter=wrong``), so a filtered view can be linked.
Images are embedded as data URIs and nothing is loaded from elsewhere, so the page can be mailed or archived alone.

It reads the JSONL of ``agentic-vlm eval`` (and its summary beside it) and the trainer's ``trajectories-<time>.jsonl``
(the same records, with the training step and the rewards of that step).
"""

from __future__ import annotations

import base64
import html
import io
import json
import mimetypes
from pathlib import Path

import PIL.Image

from .metrics import group_key, summary_rows
from .runner import read_run, summary_path

# Larger image files are embedded as a JPEG whose longer side is at most LARGE_IMAGE_SIDE pixels.
MAX_EMBEDDED_BYTES = 256 * 1024
LARGE_IMAGE_SIDE = 1024
FILTERS = {"all": "All", "correct": "Correct", "wrong": "Wrong", "tool-errors": "Tool errors"}

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 16px 48px;
       color: #1d1d1f; background: #f6f6f4; }
header { position: sticky; top: 0; background: #f6f6f4; padding: 12px 0 8px; border-bottom: 1px solid #ddd;
         z-index: 1; }
h1 { font-size: 20px; margin: 0 0 4px; }
nav a { display: inline-block; margin: 4px 6px 0 0; padding: 3px 10px; border: 1px solid #bbb;
        border-radius: 14px; color: inherit; text-decoration: none; background: #fff; }
nav a.active { background: #1d1d1f; color: #fff; border-color: #1d1d1f; }
table { border-collapse: collapse; margin: 6px 0; background: #fff; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-variant-numeric: tabular-nums; }
article { background: #fff; border: 1px solid #ddd; border-radius: 8px; margin: 16px 0; padding: 10px 14px; }
article h2 { font-size: 16px; margin: 0 0 6px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 13px; margin-left: 6px; }
.correct { background: #d9f2dd; color: #14532d; } .wrong { background: #fbdcdc; color: #7f1d1d; }
.unscored { background: #eee; color: #555; } .meta { color: #666; font-size: 13px; }
.turn { margin: 8px 0; } .model, .observation { border-radius: 6px; padding: 6px 10px; margin: 4px 0; }
.model { background: #eef4ff; } .observation { background: #f3f3f3; }
.observation.error { background: #fff0f0; border-left: 4px solid #d33; }
.label { font-size: 12px; font-weight: 600; color: #555; text-transform: uppercase; letter-spacing: .03em; }
pre { white-space: pre-wrap; word-break: break-word; margin: 2px 0; font: 13px/1.4 ui-monospace, monospace; }
img { max-width: 480px; max-height: 360px; border: 1px solid #ccc; margin: 4px 4px 0 0; vertical-align: top; }
.missing { color: #a00; font-size: 13px; }
"""

# Hides the trajectories the filter in the URL fragment leaves out; runs on load and whenever the fragment changes.
_SCRIPT = """
function applyFilter() {
  const match = location.hash.match(/filter=([a-z-]+)/);
  const filter = match ? match[1] : "all";
  for (const item of document.querySelectorAll("article.trajectory")) {
    item.hidden = !(filter === "all" || (filter === "correct" && item.dataset.verdict === "correct")
      || (filter === "wrong" && item.dataset.verdict === "wrong")
      || (filter === "tool-errors" && item.dataset.toolError === "true"));
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.filter === filter);
  }
}
window.addEventListener("hashchange", applyFilter);
applyFilter();
"""


def write_html(run_path: str | Path, html_path: str | Path | None = None) -> Path:
    """Write the page of the run ``run_path`` (JSONL) to ``html_path`` (default: ``RUN.html``); returns its path."""
    run_path = Path(run_path)
    html_path = Path(html_path) if html_path is not None else run_path.with_suffix(".html")
    if not run_path.is_file():
        raise FileNotFoundError(f"{run_path} does not exist")
    records = read_run(run_path, keep_unterminated_line=True)
    if not records:
        raise ValueError(f"{run_path} holds no trajectories")
    for number, record in enumerate(records, start=1):
        if not isinstance(record.get("turns"), list):
            raise ValueError(f"{run_path}, line {number}: not a trajectory (no 'turns'); view reads the output of "
                             "agentic-vlm eval or a training run's trajectories-*.jsonl, not a dataset file")
    summary_file = summary_path(run_path)
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    html_path.write_text(render_page(records, run_path.parent, run_path.stem, summary), encoding="utf-8")
    return html_path


def render_page(records: list[dict], base_dir: Path, title: str, summary: dict | None = None) -> str:
    """The HTML page of ``records``; relative image paths are read from ``base_dir``."""
    verdicts = [_verdict(record) for record in records]
    errors = [_has_tool_error(record) for record in records]
    counts = {"all": len(records), "correct": verdicts.count("correct"), "wrong": verdicts.count("wrong"),
              "tool-errors": sum(errors)}
    nav = "".join(f'<a href="#filter={key}" data-filter="{key}">{label} ({counts[key]})</a>'
                  for key, label in FILTERS.items())
    articles = "\n".join(_render_record(record, verdict, error, base_dir)
                         for record, verdict, error in zip(records, verdicts, errors, strict=True))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}: trajectories</title><style>{_STYLE}</style></head>\n<body>\n"
        f"<header><h1>{_text(title)}</h1>{_render_summary(summary)}<nav>{nav}</nav></header>\n"
        f"<main>\n{articles}\n</main>\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _verdict(record: dict) -> str:
    if "correct" not in record:
        return "unscored"
    return "correct" if record["correct"] else "wrong"


def _has_tool_error(record: dict) -> bool:
    """Whether a tool call failed (a turn without a valid action is the model's error, not a tool's)."""
    return any(turn["action"] == "tool" and turn.get("error") for turn in record["turns"])


def _render_summary(summary: dict | None) -> str:
    if summary is None:
        return ""
    columns = ["count", "answered", *summary["metrics"], "turns", "tool_calls", "tool_errors"]
    head = "".join(f"<th>{_text(column)}</th>" for column in ["", *columns])
    body = "".join(
        "<tr>" + f"<td>{_text(label)}</td>" + "".join(f"<td>{_number(figures.get(column))}</td>" for column in columns)
        + "</tr>" for label, figures in summary_rows(summary)
    )
    model = f" · model {_text(summary['model'])}" if "model" in summary else ""
    return (f'<p class="meta">{_text(summary["dataset"])} ({_text(summary["format"])}){model}</p>'
            f"<table><tr>{head}</tr>{body}</table>")


def _render_record(record: dict, verdict: str, tool_error: bool, base_dir: Path) -> str:
    identifier = record.get("id", record.get("trajectory_id", ""))
    badge = {"correct": "Correct", "wrong": "Wrong", "unscored": "Not scored"}[verdict]
    groups = " · ".join(f"{column} {group_key(record[column])}" for column in ("split", "type", "kind", "step")
                        if record.get(column) is not None)
    turns = len(record["turns"])
    meta = " · ".join(part for part in (
        groups, f"stopped by {record.get('stop_reason')}", f"{turns} turn{'' if turns == 1 else 's'}",
        f"{record.get('num_model_tokens', '?')} model tokens",
    ) if part)
    scores = {**record.get("scores", {}), **{f"reward {name}": value
                                             for name, value in (record.get("rewards") or {}).items()}}
    score_table = ("<table><tr>" + "".join(f"<th>{_text(name)}</th>" for name in scores) + "</tr><tr>"
                   + "".join(f"<td>{_number(value)}</td>" for value in scores.values()) + "</tr></table>"
                   if scores else "")
    inputs = "".join(_image(path, base_dir) for path in record.get("input_images", []))
    rendered_turns = "".join(_render_turn(number, turn, base_dir)
                             for number, turn in enumerate(record["turns"], start=1))
    return (
        f'<article class="trajectory" id="item-{_text(identifier)}" data-verdict="{verdict}" '
        f'data-tool-error="{str(tool_error).lower()}">'
        f'<h2>{_text(identifier)}<span class="badge {verdict}">{badge}</span></h2>'
        f'<p class="meta">{_text(meta)}</p>'
        f'<div class="question"><span class="label">Question</span><pre>{_text(record.get("question", ""))}</pre>'
        f"{inputs}</div>"
        f'<p><span class="label">Ground truth</span> {_text(_answer_text(record.get("answer")))} &nbsp; '
        f'<span class="label">Prediction</span> {_text(_answer_text(record.get("prediction")))}</p>'
        f'{score_table}<ol class="turns">{rendered_turns}</ol></article>'
    )


def _render_turn(number: int, turn: dict, base_dir: Path) -> str:
    action = turn["action"] + (f" {turn['tool']}" if turn.get("tool") else "")
    parts = [f'<div class="model"><span class="label">Turn {number} · {_text(action)}</span>'
             f"<pre>{_text(turn['text'])}</pre></div>"]
    if "observation" in turn:
        error = " error" if turn.get("error") else ""
        seconds = f" · {turn['tool_seconds']:.2f} s" if "tool_seconds" in turn else ""
        images = "".join(_image(image, base_dir) for image in turn.get("images", []))
        parts.append(f'<div class="observation{error}"><span class="label">Observation{seconds}</span>'
                     f"<pre>{_text(turn['observation'])}</pre>{images}</div>")
    elif turn.get("error"):  # an invalid action in the last turn: nothing was sent back, but it is still an error
        parts.append(f'<div class="observation error"><pre>{_text(turn["error"])}</pre></div>')
    return f'<li class="turn">{"".join(parts)}</li>'


def _image(reference: str, base_dir: Path) -> str:
    """An ``<img>`` with the file embedded, or a note when the record only knows the image's size."""
    path = Path(reference) if Path(reference).is_absolute() else base_dir / reference
    if not path.is_file():
        note = f"image {reference} (not saved)" if _is_size(reference) else f"missing image {reference}"
        return f'<span class="missing">{_text(note)}</span>'
    data, mime = path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png"
    if len(data) > MAX_EMBEDDED_BYTES:  # a benchmark's photographs would make a page of hundreds of megabytes
        with PIL.Image.open(path) as image:
            image.thumbnail((LARGE_IMAGE_SIDE, LARGE_IMAGE_SIDE))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=85)
        data, mime = buffer.getvalue(), "image/jpeg"
    return f'<img alt="{_text(path.name)}" src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}">'


def _is_size(reference: str) -> bool:
    width, _, height = reference.partition("x")
    return width.isdigit() and height.isdigit()


def _answer_text(value) -> str:
    if value is None:
        return "(none)"
    return " | ".join(map(str, value)) if isinstance(value, list) else str(value)


def _number(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _text(value) -> str:
    return html.escape(str(value))
