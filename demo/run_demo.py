"""Ask a model a question about an image, with tools, and watch it work turn by turn.

    python demo/run_demo.py --model PATH --image IMAGE --question "..." [--tools zoom,code,search] [--output DIR]

The rollout is the one training and evaluation run (the same engine, tools live, greedy unless --temperature is
set). Each turn is printed as it was written; the images the tools returned are saved under DIR/images, and the
trajectory is written to DIR/trajectory.jsonl and as a page, DIR/trajectory.html (see `agentic-vlm view`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from agentic_vlm.eval import load_for_inference, rollout_dataset, write_html
from agentic_vlm.protocols import get_protocol
from agentic_vlm.rewards.trajectory import final_answer
from agentic_vlm.rollout import SamplingSettings
from agentic_vlm.tools import build_tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory (or hub id) with its processor")
    parser.add_argument("--image", required=True, nargs="+", help="the image(s) the question is about")
    parser.add_argument("--question", required=True)
    parser.add_argument("--tools", default="zoom", help="comma-separated: zoom, search, code")
    parser.add_argument("--tool-kwargs", type=json.loads, default={},
                        help='JSON: options per tool, e.g. \'{"search": {"backend_options": '
                             '{"corpus_path": "data/search/corpus.jsonl"}}}\'')
    parser.add_argument("--output", default="outputs/demo", help="folder for the images and the trajectory")
    parser.add_argument("--protocol", default="arft", help="arft, vtool or hermes (the model's own tool calls)")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy decoding")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    args = parser.parse_args()

    model, processor = load_for_inference(args.model, device=args.device)
    protocol = get_protocol(args.protocol, family=model.config)
    tools = build_tools([name.strip() for name in args.tools.split(",") if name.strip()], args.tool_kwargs)
    sampling = (SamplingSettings(do_sample=False) if args.temperature == 0
                else SamplingSettings(temperature=args.temperature))
    print(sampling.describe())  # the model's generation_config.json is not used
    row = {"prompt": [{"role": "user", "content": args.question}],
           "images": [Image.open(path).convert("RGB") for path in args.image]}
    [(_, [trajectory])] = list(rollout_dataset(
        model, processor, protocol, tools, [row], batch_size=1, max_turns=args.max_turns,
        max_completion_length=args.max_completion_length, sampling=sampling, progress=False,
    ))

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    record = {
        "id": "demo",
        "question": args.question,
        "prediction": final_answer(trajectory.completion_messages(), protocol),
        "input_images": [str(Path(path).resolve()) for path in args.image],
        **trajectory.to_record(images_dir=output.resolve() / "images"),
    }
    print(transcript(record))
    run = output / "trajectory.jsonl"
    run.write_text(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"\ntrajectory: {run}\npage: {write_html(run)}")


def transcript(record: dict) -> str:
    """The trajectory as the terminal shows it: each turn's text, then what its action brought back."""
    lines = [f"Question: {record['question']}", f"Images: {', '.join(record['input_images'])}"]
    for number, turn in enumerate(record["turns"], start=1):
        lines += ["", f"--- turn {number} (model) ---", turn["text"]]
        if "observation" in turn:
            status = "error" if turn["error"] else turn["tool"]
            lines += [f"--- turn {number} ({status}, {turn['tool_seconds']:.2f} s) ---", turn["observation"]]
            lines += [f"[image saved: {image}]" for image in turn["images"]]
        elif turn["action"] == "invalid":
            lines.append(f"[{turn['error']}]")
    lines += ["", f"Stopped by: {record['stop_reason']}", f"Answer: {record['prediction']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
