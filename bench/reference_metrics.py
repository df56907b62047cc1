"""Our metrics against the reference evaluations they reproduce, on the same predictions.

MAT (``--visual-arft``): runs the scoring functions of Visual-ARFT's evaluation notebooks and our ``exact_match`` /
``f1_set`` on the prediction files Visual-ARFT published, and prints both side by side with their difference in
points. Visual-ARFT averages over a fixed index split (MAT-Coding: the first 70 items are "simple"; MAT-Search: the
first 75), which is reproduced here for the comparison.

ReFOCUS (``--vtool-r1``): VTool-R1 published no ReFOCUS predictions, so the predictions are made here from each item of
our ReFOCUS data, several of each kind a model writes: the truth verbatim and as VTool-R1's prompt ends it, variants
in case, punctuation, whitespace and number format, numbers near and far, lists in order, reordered, partial, with an
extra or a repeated item, and the answer turn of the item's reference solution (what a warm-started model writes);
and the final turns of ``agentic-vlm eval`` runs given with ``--refocus-runs`` (what a model wrote).
Each is scored by ``compute_score`` of VTool-R1's ``examples/reward_function/refocus.py`` and by our
``refocus_accuracy`` reward (the ``refocus`` metric's item score) on the same text; the means are printed per kind and
overall, with the kinds where our definition differs on purpose marked.

The reference code is read from checkouts the user provides at run time; nothing of it is copied here.

    git clone https://github.com/Liuziyu77/Visual-RFT
    git clone https://github.com/VTool-R1/VTool-R1
    python bench/reference_metrics.py --visual-arft Visual-RFT/Visual-ARFT --vtool-r1 VTool-R1
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import string
from pathlib import Path

from agentic_vlm.eval.metrics import ITEM_METRICS
from agentic_vlm.protocols import VtoolProtocol
from agentic_vlm.rewards import build_reward_funcs, split_items

# (notebook, prediction files, size of the leading "simple" split)
BENCHMARKS = {
    "MAT-Coding": ("evaluation_coding/evaluation.ipynb", "evaluation_coding/evaluation_results/*.json", 70),
    "MAT-Search": ("evaluation_search/MAT-Search-Benchmark/evaluation.ipynb",
                   "evaluation_search/evaluation_results/MAT-Search/*.json", 75),
}


def function_definitions(source: str, filename: str, namespace: dict) -> dict:
    """``namespace`` with the functions that ``source`` defines (its other statements, imports included, are not
    run: the reference files import packages that scoring does not use)."""
    definitions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    exec(compile(ast.Module(body=definitions, type_ignores=[]), filename, "exec"), namespace)  # noqa: S102
    return namespace


def reference_scorers(notebook: Path) -> tuple:
    """``(exact_match_score, compute_f1)`` as defined in the notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    namespace = function_definitions(source, str(notebook), {"re": re, "string": string})
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


def compare_mat(visual_arft: Path) -> float:
    """Print the MAT comparison; return the largest difference in points."""
    worst = 0.0
    for benchmark, (notebook, pattern, simple) in BENCHMARKS.items():
        exact_match_score, compute_f1 = reference_scorers(visual_arft / notebook)
        for path in sorted(visual_arft.glob(pattern)):
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
    print(f"MAT: largest difference {worst:.2f} points")
    return worst


# ------------------------------------------------------------------------------------------------------------ ReFOCUS
REFOCUS_DATA = [Path(__file__).parents[1] / "data" / "refocus" / f"{split}.jsonl" for split in ("train", "test")]

# The kinds of prediction where our definition differs from VTool-R1's on purpose (README, "Benchmarks and metrics").
DELIBERATE = {
    "list, spaced ||": "whitespace around a part does not count (VTool-R1: 0 for a label, 1 for a number)",
    "reference solution, list": "its list is written 'A || B', as our prompt asks: whitespace does not count",
    "trailing space": "whitespace does not count (VTool-R1: 0 for a label, 1 for a number)",
    "TERMINATE without period": "'TERMINATE' is not part of the answer (VTool-R1: 'A TERMINATE' is the answer)",
    "list, extra item": "an extra part costs like a missing one (VTool-R1: free)",
    "list, repeated item": "one right part is credited once (VTool-R1: once per repetition)",
    "number, wrong sign": "clipped to 0 (VTool-R1: down to -1)",
    "nan": "not a number (VTool-R1: NaN)",
}


def vtool_compute_score(checkout: Path):
    """``compute_score(predicts, ground_truths)`` of VTool-R1's ``examples/reward_function/refocus.py``."""
    path = checkout / "examples" / "reward_function" / "refocus.py"
    namespace = function_definitions(path.read_text(), str(path), {"re": re, "Dict": dict,
                                                                    "List": list})
    return namespace["compute_score"]


def answer_turn(answer: str, ending: str = "") -> str:
    return f"THOUGHT 1: I read it off the image.\nFINAL ANSWER: {answer}{ending}"


def number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def refocus_predictions(row: dict) -> list[tuple[str, str]]:
    """``(kind, final turn)`` pairs for one item: the kinds that change its text (a number has no case)."""
    parts = split_items(row["answer"])
    numbers = [float(part) if part.lstrip("-").replace(".", "", 1).isdigit() else None for part in parts]
    metadata = json.loads(row["metadata"])
    labels = [label for field in ("columns_bbox", "rows_bbox", "x_values_bbox", "y_values_bbox")
              for label in metadata.get(field) or {}]
    wrong_label = next(label for label in labels if label not in parts and not label.isdigit())

    def each(change) -> str:
        return "||".join(change(part, number) for part, number in zip(parts, numbers, strict=True))

    verbatim = "||".join(parts)
    kinds = {
        "verbatim": answer_turn(verbatim),
        "verbatim, period": answer_turn(verbatim, "."),
        "VTool-R1 ending '. TERMINATE'": answer_turn(verbatim, ". TERMINATE"),
        "no space after colon": answer_turn(verbatim).replace("FINAL ANSWER: ", "FINAL ANSWER:"),
        "trailing space": answer_turn(verbatim, " "),
        "TERMINATE without period": answer_turn(verbatim, " TERMINATE"),
        "lower case": answer_turn(each(lambda part, number: part.lower())),
        "upper case": answer_turn(each(lambda part, number: part.upper())),
        "quoted label": answer_turn(each(lambda part, number: part if number is not None else f'"{part}"')),
        "number as decimal": answer_turn(each(lambda part, number: part if number is None else f"{number:.1f}")),
        "number with %": answer_turn(each(lambda part, number: part if number is None else f"{part}%")),
        "number, near": answer_turn(each(lambda part, number: part if number is None else number_text(
            number + max(1, round(abs(number) / 10))))),
        "number, far": answer_turn(each(lambda part, number: part if number is None else number_text(4 * number))),
        "number, wrong sign": answer_turn(each(lambda part, number: part if not number else number_text(-number))),
        "nan": answer_turn(each(lambda part, number: part if number is None else "nan")),
        "wrong label": answer_turn(wrong_label),
        "no answer": "THOUGHT 1: I cannot read the chart.",
    }
    if len(parts) > 1:
        kinds |= {
            "list, spaced ||": answer_turn(" || ".join(parts)),
            "list, reordered": answer_turn("||".join(reversed(parts))),
            "list, partial": answer_turn(parts[0]),
            "list, extra item": answer_turn(f"{verbatim}||{wrong_label}"),
            "list, repeated item": answer_turn("||".join([parts[0]] * len(parts))),
        }
    solution = row["solution"][-1]
    kinds["reference solution" + (", list" if len(parts) > 1 else "")] = solution
    return [(kind, text) for kind, text in kinds.items() if kind == "verbatim" or text != kinds["verbatim"]]


def run_predictions(run: Path) -> list[tuple[str, str, str]]:
    """``(kind, final turn, answer)`` for each item of an ``agentic-vlm eval`` run: what a model wrote."""
    records = [json.loads(line) for line in run.read_text().splitlines()]
    return [(f"run {run.name}", record["turns"][-1]["text"], record["answer"]) for record in records if record["turns"]]


def compare_refocus(vtool_r1: Path, data_files: list[Path], runs: list[Path]) -> float:
    """Print the ReFOCUS comparison; return the largest difference in points over the kinds of prediction where no
    deliberate difference applies."""
    compute_score = vtool_compute_score(vtool_r1)
    protocol = VtoolProtocol()
    exact, normalized = (build_reward_funcs(["refocus_accuracy"], protocol, [], {"refocus_accuracy": {"match": match}})[0]
                         for match in ("exact", "normalized"))
    scores: dict[str, list[tuple[float, float, float]]] = {}
    rows = [json.loads(line) for path in data_files for line in path.read_text().splitlines()]
    predictions = [(kind, text, row["answer"]) for row in rows for kind, text in refocus_predictions(row)]
    predictions += [prediction for run in runs for prediction in run_predictions(run)]
    for kind, text, answer in predictions:
        # The truth as a ReFOCUS file writes it (items joined by "|||") for VTool-R1, as our loader reads it for us.
        reference_truth = "|||".join(split_items(answer))
        completion = [[{"role": "assistant", "content": text}]]
        scores.setdefault(kind, []).append((
            100 * compute_score([text], [reference_truth])[0]["overall"],
            100 * exact(prompts=[None], completions=completion, answer=[answer])[0],
            100 * normalized(prompts=[None], completions=completion, answer=[answer])[0],
        ))
    print(f"ReFOCUS: {len(rows)} items of {', '.join(path.name for path in data_files)}"
          + "".join(f", {run.name}" for run in runs) + f"; {len(predictions)} predictions; mean score in points")
    print("  (normalized: ours with match=normalized; overall: predictions the reference scores NaN left out)")
    print(f"  {'kind':32} {'count':>5} {'differing':>9} {'reference':>9} {'ours':>7} {'difference':>10} "
          f"{'normalized':>10}")

    def line(label: str, triples: list) -> float:
        if label.startswith("overall"):  # VTool-R1 scores "nan" NaN, which would make every mean NaN
            triples = [triple for triple in triples if not math.isnan(triple[0])]
        reference, ours, lenient = (sum(values) / len(values) for values in zip(*triples, strict=True))
        differing = sum(not math.isclose(theirs, mine, abs_tol=1e-9) for theirs, mine, _ in triples)
        print(f"  {label:32} {len(triples):5} {differing:9} {reference:9.2f} {ours:7.2f} {ours - reference:+10.2f} "
              f"{lenient:10.2f}")
        return ours - reference

    for kind, triples in scores.items():
        line(kind + (" *" if kind in DELIBERATE else ""), triples)
    line("overall", [triple for triples in scores.values() for triple in triples])
    agreed = line("overall without *", [triple for kind, triples in scores.items() if kind not in DELIBERATE
                                        for triple in triples])
    print("  * differs on purpose:")
    for kind, reason in DELIBERATE.items():
        print(f"    {kind}: {reason}")
    return abs(agreed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visual-arft", type=Path, help="the Visual-ARFT folder of a Visual-RFT checkout")
    parser.add_argument("--vtool-r1", type=Path, help="a VTool-R1 checkout")
    parser.add_argument("--refocus-data", type=Path, nargs="+", default=REFOCUS_DATA,
                        help="ReFOCUS items (JSON lines of `agentic-vlm make-data refocus`); default: data/refocus")
    parser.add_argument("--refocus-runs", type=Path, nargs="*", default=[],
                        help="`agentic-vlm eval` runs on ReFOCUS items: their final turns are scored too")
    args = parser.parse_args()
    if args.visual_arft is None and args.vtool_r1 is None:
        parser.error("give --visual-arft, --vtool-r1 or both")
    if args.visual_arft is not None:
        compare_mat(args.visual_arft)
    if args.vtool_r1 is not None:
        print(f"ReFOCUS: difference on predictions without a deliberate difference: "
              f"{compare_refocus(args.vtool_r1, args.refocus_data, args.refocus_runs):.2f} points")


if __name__ == "__main__":
    main()
