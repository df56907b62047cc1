"""Host memory a trajectory holds, on each generation path, for a prompt with three 1000x1000 images.

    python bench/memory.py [--trajectories 8]

The processor carries Qwen2.5-VL-7B-Instruct's settings (max_pixels 12845056: the images are shown at 1008x1008,
5184 patches each). Rollouts are scripted (one tool-free answer turn after a turn that calls a no-op tool), so only
the engine's own memory is measured:

- transformers path: the generator reads ``TurnRequest.pixel_values``, so the engine keeps them while the trajectory
  is being generated (measured inside the generation call) and drops them when it ends;
- vLLM path: the generator takes the images themselves (``keep_pixel_values=False``): no pixel values are kept.

Figures, per trajectory, counted exactly: the pixel values held while it is being generated, and what it still
holds once the rollout is over (images, pixel values, grids), which the trainer keeps until the step's loss is done.
Before this accounting, every trajectory kept its pixel values after the rollout on both paths.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from agentic_vlm.families import checkpoint_settings
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import RolloutEngine, ScriptedTurnGenerator
from agentic_vlm.tiny import build_processor, build_tokenizer
from agentic_vlm.tools import Observation, Tool

MIB = 2**20


class Noop(Tool):
    name = "noop"
    description = "does nothing"

    async def __call__(self, argument, context):
        return Observation(text="ok")


def held_bytes(trajectory) -> dict[str, int]:
    images = sum(image.width * image.height * len(image.getbands()) for image in trajectory.images)
    pixels = trajectory.pixel_values.nbytes if trajectory.pixel_values is not None else 0
    grids = trajectory.image_grid_thw.nbytes if trajectory.image_grid_thw is not None else 0
    return {"images": images, "pixel_values": pixels, "grids": grids}


def run(processor, keep_pixel_values: bool, count: int, seed: int):
    protocol, tools = ArftProtocol(), [Noop()]
    script = ScriptedTurnGenerator(processor, protocol.stop_strings(tools),
                                   lambda r: ["<think>a</think><noop>x</noop>", "<think>b</think><answer>1</answer>"][
                                       r.turn])
    during = []

    def generate(requests, budget):
        during.append(max(r.pixel_values.nbytes if r.pixel_values is not None else 0 for r in requests))
        return script(requests, budget)

    engine = RolloutEngine(processor, protocol, tools, generate, max_turns=2, max_completion_length=20000,
                           keep_pixel_values=keep_pixel_values)
    rng = np.random.default_rng(seed)
    rows = [{"prompt": [{"role": "user", "content": [*({"type": "image", "image": Image.fromarray(
        rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8))} for _ in range(3)), {"type": "text", "text": "?"}]}]}
        for _ in range(count)]
    try:
        trajectories = engine.run([row["prompt"] for row in rows], rows)
    finally:
        engine.close()
    return trajectories, max(during)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=8)
    args = parser.parse_args()
    _, settings = checkpoint_settings("qwen2.5-vl-7b-instruct")
    processor = build_processor(build_tokenizer("small"), "qwen2.5-vl", settings.preprocessor_config)
    print(f"{args.trajectories} trajectories, each with three 1000x1000 RGB images "
          f"(shown at 1008x1008: {processor.image_processor.patch_size}px patches, max_pixels "
          f"{processor.image_processor.size['longest_edge']})")
    print(f"{'path':<14}{'pixel_values while generating':>32}{'kept after the rollout':>24}{'of which images':>18}"
          "   (MiB per trajectory)")
    for name, keep in (("transformers", True), ("vLLM", False)):
        trajectories, during = run(processor, keep, args.trajectories, seed=0)
        kept = [held_bytes(trajectory) for trajectory in trajectories]
        total = max(sum(bytes_.values()) for bytes_ in kept)
        print(f"{name:<14}{during / MIB:>32.1f}{total / MIB:>24.1f}{kept[0]['images'] / MIB:>18.1f}")


if __name__ == "__main__":
    main()
