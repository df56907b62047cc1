"""Speed of the offline search backend over a generated corpus of 100k passages.

    python bench/search.py [--passages 100000] [--top-k 3]

Reports the time to build the BM25 index (tokenise, index, save) and to load it from the cache; throughput of the
batched query API (all queries in one call) and of the search tool (256 trajectories searching at once on one event
loop, as in a rollout turn); and the latency of single queries. The corpus is many seeded worlds of the search task
(data/search), so passages and queries have the shape of the real task: templated sentences about fictional
entities, queries that name an entity or describe a flag.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

from agentic_vlm.data.search_task import generate_questions, generate_world
from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.search import LocalBackend, LocalIndex, SearchTool


def make_corpus(num_passages: int) -> tuple[list[dict], list[str]]:
    """Passages of as many worlds as it takes, and the search queries of the task's questions about them."""
    passages, queries = [], []
    for seed in itertools.count():
        world = generate_world(seed)
        passages += [{**passage, "id": f"{seed}-{passage['id']}"} for passage in world.passages()]
        for question in itertools.islice(generate_questions(world, seed), 40):
            queries += [hop["query"] for hop in question["hops"]]
        if len(passages) >= num_passages:
            return passages[:num_passages], queries


def percentile(values: list[float], fraction: float) -> float:
    return sorted(values)[min(len(values) - 1, int(fraction * len(values)))]


async def tool_throughput(tool: SearchTool, queries: list[str], concurrency: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(queries), concurrency):
        chunk = queries[start:start + concurrency]
        await asyncio.gather(*(tool(query, ToolContext(str(i))) for i, query in enumerate(chunk)))
    return len(queries) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--queries", type=int, default=20_000)
    args = parser.parse_args()

    passages, queries = make_corpus(args.passages)
    queries = list(itertools.islice(itertools.cycle(queries), args.queries))
    with tempfile.TemporaryDirectory() as workdir:
        corpus = Path(workdir) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(passage) + "\n" for passage in passages))
        started = time.perf_counter()
        LocalIndex.load_or_build(corpus, Path(workdir) / "index")
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        index = LocalIndex.load_or_build(corpus, Path(workdir) / "index")
        load_s = time.perf_counter() - started

        index.search(queries[:100], args.top_k)  # warm up
        started = time.perf_counter()
        index.search(queries, args.top_k)
        batched_qps = len(queries) / (time.perf_counter() - started)

        latencies_ms = []
        for query in queries[:2000]:
            started = time.perf_counter()
            index.search([query], args.top_k)
            latencies_ms.append((time.perf_counter() - started) * 1000)

        tool = SearchTool(LocalBackend(corpus, index_dir=Path(workdir) / "index"), top_k=args.top_k)
        tool_qps = asyncio.run(tool_throughput(tool, queries[:5000], concurrency=256))

    print(f"corpus: {len(passages)} passages, {len(queries)} queries, top_k={args.top_k}")
    print(f"index build (tokenise, index, save): {build_s:.2f} s; load from cache: {load_s:.2f} s")
    print(f"batched queries: {batched_qps:,.0f} queries/s")
    print(f"search tool, 256 concurrent calls per turn: {tool_qps:,.0f} queries/s")
    print(f"single-query latency: p50 {statistics.median(latencies_ms):.2f} ms, "
          f"p95 {percentile(latencies_ms, 0.95):.2f} ms")


if __name__ == "__main__":
    main()
