"""Reward time on degenerate completions: every reward of the registry (but the judge and search similarity, which
call out), on each protocol, over completions of 0.1, 1 and 10 MB made of one repeated piece. Linear parsing shows as
a 10x time for 10x the text; the slowest reward per piece and size is printed, in CPU seconds of this thread.

    python bench/parsing.py [--sizes 100000,1000000,10000000]
"""

from __future__ import annotations

import argparse
import time

from agentic_vlm.protocols import ArftProtocol, HermesProtocol, VtoolProtocol
from agentic_vlm.rewards import REWARD_FACTORIES, build_reward_funcs
from agentic_vlm.tools import Observation, Tool, ZoomTool

PIECES = {"spaces": " ", "digits": "1", "unclosed <answer>": "<answer>", "combining marks": "e\u0316\u0301",
          "|| parts": "a||", "line breaks": "\n", "unclosed fence": "```python\n", "unclosed <tool_call>": "<tool_call>"}


class NamedStub(Tool):
    description = "a stub"

    def __init__(self, name: str):
        self.name = name

    async def __call__(self, argument, context):
        return Observation(text="")


def completion(protocol_name: str, body: str) -> list[dict]:
    answer = {"arft": f"<think>a</think><answer>3{body}4</answer>", "vtool": f"THOUGHT 1: a\nFINAL ANSWER: 3{body}4",
              "hermes": f"<answer>3{body}4</answer>"}[protocol_name]
    return [{"role": "assistant", "content": body}, {"role": "assistant", "content": answer}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    names = [name for name in REWARD_FACTORIES if name not in ("judge", "search_similarity")]
    columns = {"answer": ["34 || 3"], "boxes": [[0, 0, 5, 5]], "image_size": [(10, 10)]}
    print(f"{'protocol':8} {'piece':22}" + "".join(f"{size:>14,}" for size in sizes) + "   slowest reward at the largest")
    for protocol in (ArftProtocol(), VtoolProtocol(), HermesProtocol("qwen3.5")):
        tools = [NamedStub("code")] if protocol.name == "vtool" else [ZoomTool()]
        rewards = build_reward_funcs(names, protocol, tools)
        for label, piece in PIECES.items():
            row, slowest = [], ""
            for size in sizes:
                messages = [completion(protocol.name, (piece * (size // len(piece) + 1))[:size])]
                times = {}
                for reward in rewards:
                    start = time.thread_time()
                    reward(prompts=[None], completions=messages, **columns)
                    times[reward.__name__] = time.thread_time() - start
                slowest = max(times, key=times.get)
                row.append(times[slowest])
            print(f"{protocol.name:8} {label:22}" + "".join(f"{seconds:>13.3f}s" for seconds in row) + f"   {slowest}")


if __name__ == "__main__":
    main()
