"""Our MAT metrics against Visual-ARFT's own evaluation, on the predictions Visual-ARFT published.

Runs the scoring functions of Visual-ARFT's evaluation notebooks (read from a checkout the user provides; nothing of
them is copied here) and our ``exact_match`` / ``f1_set`` on the same prediction files, and prints both side by side
with their difference in points. Visual-ARFT averages over a fixed index split (MAT-Coding: the first 70 items are
"simple"; MAT-Search: the first 75), which is reproduced here for the comparison.

    git clone https://github.com/Liuziyu77/Visual-RFT
    python bench/reference_metrics.py --visual-arft Visual-RFT/Visual-ARFT
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import string
from pathlib import Path

from agentic_vlm.eval.metrics import ITEM_METRICS

# (notebook, prediction files, size of the leading "simple" split)
BENCHMARKS = {
    "MAT-Coding": ("evaluation_coding/evaluation.ipynb", "evaluation_coding/evaluation_results/*.json", 70),
    "MAT-Search": ("evaluation_search/MAT-Search-Benchmark/evaluation.ipynb",
                   "evaluation_search/evaluation_results/MAT-Search/*.json", 75),
}


def reference_scorers(notebook: Path) -> tuple:
    """``(exact_match_score, compute_f1)`` as defined in the notebook (its function definitions only)."""
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    definitions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    namespace = {"re": re, "string": string}
    exec(compile(ast.Module(body=definitions, type_ignores=[]), str(notebook), "exec"), namespace)  # noqa: S102
    return namespace["exact_match_score"], namespace["compute_f1"]


def reference_item(prediction, truths, exact_match_score, compute_f1) -> tuple[float, float]:
    exact = max(exact_match_score(prediction, truth) for truth in truths)
    f1 = 1.0 if exact == 1 else max(compute_f1(prediction, truth) for truth in truths)
    return float(exact), f1


def our_item(prediction, truths) -> tuple[float, float]:
    if prediction is None:
        return 0.0, 0.0
    return ITEM_METRICS["exact_match"](prediction, truths), ITEM_METRICS["f1_set"](prediction, truths)


def split_means(scores: list[tuple[float, float]], simple: int) -> dict[str, float]:
    parts = {"simple": scores[:simple], "hard": scores[simple:], "all": scores}
    return {f"{name} {metric}": 100 * sum(item[index] for item in part) / len(part)
            for name, part in parts.items() for index, metric in enumerate(("EM", "F1"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual-arft", type=Path, required=True, help="the Visual-ARFT folder of a Visual-RFT checkout")
    args = parser.parse_args()
    worst = 0.0
    for benchmark, (notebook, pattern, simple) in BENCHMARKS.items():
        exact_match_score, compute_f1 = reference_scorers(args.visual_arft / notebook)
        for path in sorted(args.visual_arft.glob(pattern)):
            items = json.loads(path.read_text())
            truths = [[item["gt"]] if isinstance(item["gt"], str) else item["gt"] for item in items]
            predictions = [item["pred_answer"] for item in items]
            theirs = split_means([reference_item(p, t, exact_match_score, compute_f1)
                                  for p, t in zip(predictions, truths, strict=True)], simple)
            ours = split_means([our_item(p, t) for p, t in zip(predictions, truths, strict=True)], simple)
            differing = sum(reference_item(p, t, exact_match_score, compute_f1) != our_item(p, t)
                            for p, t in zip(predictions, truths, strict=True))
            print(f"{benchmark} {path.name} ({len(items)} items, {differing} scored differently)")
            for key in theirs:
                worst = max(worst, abs(ours[key] - theirs[key]))
                print(f"  {key:10} reference {theirs[key]:6.2f}  ours {ours[key]:6.2f}  "
                      f"difference {ours[key] - theirs[key]:+.2f}")
    print(f"largest difference: {worst:.2f} points")


if __name__ == "__main__":
    main()
