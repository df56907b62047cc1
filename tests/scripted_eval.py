"""A small evaluation whose trajectories are scripted, so that every figure can be checked by hand.

Five zoom items in two splits. The zoom tool runs live on the scripted actions; the model is replaced by a
``ScriptedTurnGenerator`` that writes each item's turns:

    id  split  answer          what the script does                      EM    F1
    a   easy   red             zooms, answers "red"                       1     1
    b   easy   [blue, navy]    answers "navy" at once                     1     1
    c   easy   green           zooms, answers "the green one"             0     2/3
    d   hard   yellow          zooms until the turns run out: no answer   0     0
    e   hard   purple          zooms outside the image (a tool error),    0     0
                               answers "orange"

overall EM 2/5, F1 (2 + 2/3)/5, answered 4/5; easy EM 2/3, F1 8/9; hard 0 and 0, answered 1/2.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoProcessor

from agentic_vlm.eval import evaluate, load_benchmark
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import ScriptedTurnGenerator
from agentic_vlm.tools import ZoomTool

ZOOM = "<think>I zoom in.</think>\n<zoom>[0, 0, 74, 74]</zoom>"
ITEMS = [
    ("a", "easy", ["blur"], "red", [ZOOM, "<think>Red.</think>\n<answer>red</answer>"]),
    ("b", "easy", ["rotation90", "dark"], ["blue", "navy"], ["<think>Navy.</think>\n<answer>navy</answer>"]),
    ("c", "easy", ["blur"], "green", [ZOOM, "<think>Green.</think>\n<answer>the green one</answer>"]),
    ("d", "hard", ["rotation90", "dark"], "yellow", [ZOOM, ZOOM, ZOOM]),
    ("e", "hard", ["noise"], "purple", ["<think>Far.</think>\n<zoom>[500, 500, 600, 600]</zoom>",
                                        "<think>Orange.</think>\n<answer>orange</answer>"]),
]
SCRIPTS = {item_id: turns for item_id, _, _, _, turns in ITEMS}
MAX_TURNS = 3


def write_task_file(path: Path, image: Path) -> Path:
    with open(path, "w") as file:
        for item_id, split, degradations, answer, _ in ITEMS:
            file.write(json.dumps({"id": item_id, "question": f"What colour is item {item_id}?", "answer": answer,
                                   "images": [str(image)], "split": split, "type": degradations}) + "\n")
    return path


class ScriptedEvaluation:
    """Runs the scripted evaluation and remembers which items the script was asked to play."""

    def __init__(self, model_dir: str, task_file: Path):
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.task_file = task_file
        self.played: list[str] = []

    def script(self, request) -> str:
        if request.turn == 0:
            self.played.append(request.row["id"])
        return SCRIPTS[request.row["id"]][request.turn]

    def run(self, output: Path, limit: int | None = None, metrics=("exact_match", "f1"), reward_funcs=()) -> dict:
        benchmark = load_benchmark(str(self.task_file))
        if limit is not None:
            benchmark.dataset = benchmark.dataset.select(range(limit))
        protocol, tools = ArftProtocol(), [ZoomTool()]
        generator = ScriptedTurnGenerator(self.processor, protocol.stop_strings(tools), self.script)
        return evaluate(None, self.processor, protocol, tools, benchmark, output, metrics=metrics,
                        reward_funcs=reward_funcs, generate=generator, batch_size=2, max_turns=MAX_TURNS,
                        max_completion_length=512, progress=False)
