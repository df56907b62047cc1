"""`agentic-vlm eval` end to end: the tiny model's real rollouts on a shipped task, resumed; and the coding task's
reference solutions replayed through the live code sandbox."""

import json
from pathlib import Path

import pytest
from transformers import AutoProcessor

from agentic_vlm.cli import main
from agentic_vlm.eval import evaluate, load_benchmark, read_run
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import ScriptedTurnGenerator
from agentic_vlm.tools import build_tools

ROOT = Path(__file__).parents[1]


def test_cli_eval_of_the_tiny_model_writes_trajectories_and_summary_and_resumes(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "runs" / "zoom.jsonl"
    command = ["eval", "--model", tiny_model_dir, "--dataset", "zoom", "--data-dir", str(ROOT / "data"),
               "--batch-size", "3", "--max-turns", "2", "--max-completion-length", "48", "--output", str(output)]
    main([*command, "--limit", "3"])
    first = read_run(output)
    assert [record["id"] for record in first] == ["zoom-test-00000", "zoom-test-00001", "zoom-test-00002"]
    shipped = [json.loads(line) for line in (ROOT / "data" / "zoom" / "test.jsonl").read_text().splitlines()]
    truths = {row["id"]: row["answer"] for row in shipped}
    for record in first:
        assert record["answer"] == truths[record["id"]]
        assert record["turns"] and record["num_model_tokens"] > 0
        assert record["stop_reason"] in ("answer", "length", "max_turns")
        assert set(record["scores"]) == {"accuracy"} and set(record["rewards"]) == {"format"}
        assert Path(record["input_images"][0]).samefile(ROOT / "data" / "zoom" / "images" / f"{record['id']}.png")

    # The same items ran without tools too, in a run of their own.
    no_tools = output.with_suffix(".no-tools.jsonl")
    first_without = read_run(no_tools)
    assert [record["id"] for record in first_without] == [record["id"] for record in first]
    assert all(turn["action"] != "tool" for record in first_without for turn in record["turns"])
    assert json.loads(no_tools.with_suffix(".settings.json").read_text())["pass"] == "without tools"
    progress = capsys.readouterr().err
    assert "rollouts with tools" in progress and "rollouts without tools" in progress

    main([*command, "--limit", "5"])  # the same output: only the two new items run, in both passes
    records = read_run(output)
    assert [record["id"] for record in records][3:] == ["zoom-test-00003", "zoom-test-00004"]
    assert [record["trajectory_id"] for record in records[:3]] == [record["trajectory_id"] for record in first]
    without = read_run(no_tools)
    assert [record["id"] for record in without] == [record["id"] for record in records]
    assert [record["trajectory_id"] for record in without[:3]] == [record["trajectory_id"] for record in first_without]
    summary = json.loads(output.with_suffix(".summary.json").read_text())
    assert summary["overall"]["count"] == 5
    assert summary["overall"]["accuracy"] == pytest.approx(sum(record["scores"]["accuracy"] for record in records) / 5)
    assert (summary["dataset"], summary["model"], summary["tools"]) == ("zoom", tiny_model_dir, ["zoom"])
    right = [(record["correct"], other["correct"]) for record, other in zip(records, without, strict=True)]
    assert summary["tool_use"] == pytest.approx({
        "run_without_tools": str(no_tools), "metric": "accuracy", "items": 5,
        "accuracy_with_tools": sum(w for w, _ in right) / 5, "accuracy_without_tools": sum(o for _, o in right) / 5,
        "tool_gain": sum(w and not o for w, o in right) / 5, "tool_harm": sum(o and not w for w, o in right) / 5,
        "tool_call_rate": summary["overall"]["tool_call_rate"]})
    printed = capsys.readouterr().out
    assert "overall" in printed and "accuracy" in printed and f"agentic-vlm view {output}" in printed
    assert "tools, on 5 items (accuracy)" in printed and f"without tools: {no_tools}" in printed


def test_coding_reference_solutions_score_full_marks_through_the_live_code_tool(tiny_model_dir, tmp_path):
    from agentic_vlm.tools.code import SandboxUnavailableError

    try:
        tools = build_tools(["code"])
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")
    benchmark = load_benchmark("coding", data_dir=ROOT / "data")
    benchmark.dataset = benchmark.dataset.select(range(12))
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    protocol = ArftProtocol()
    replay = ScriptedTurnGenerator(processor, protocol.stop_strings(tools),
                                   script=lambda request: request.row["solution"][request.turn])
    output = tmp_path / "coding.jsonl"
    summary = evaluate(None, processor, protocol, tools, benchmark, output, generate=replay, batch_size=6,
                       max_turns=2, max_completion_length=1024, progress=False)
    assert summary["overall"]["accuracy"] == 1.0
    assert summary["overall"]["tool_calls"] == 1.0 and summary["overall"]["tool_errors"] == 0.0
    assert set(summary["by_split"]) == {"simple", "hard"}
    for record in read_run(output):
        [restored] = record["turns"][0]["images"]
        assert (output.parent / restored).is_file()


def test_search_reference_solutions_find_their_passages_in_the_shipped_corpus(tiny_model_dir, tmp_path):
    benchmark = load_benchmark("search", data_dir=ROOT / "data")  # its tools read the shipped corpus
    benchmark.dataset = benchmark.dataset.select(range(8))
    tools = build_tools(list(benchmark.tools), benchmark.tool_kwargs)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    protocol = ArftProtocol()
    replay = ScriptedTurnGenerator(processor, protocol.stop_strings(tools),
                                   script=lambda request: request.row["solution"][request.turn])
    output = tmp_path / "search.jsonl"
    summary = evaluate(None, processor, protocol, tools, benchmark, output, generate=replay, batch_size=8,
                       max_turns=3, max_completion_length=2048, progress=False)
    assert summary["overall"]["exact_match"] == 1.0 and summary["overall"]["tool_errors"] == 0.0
    assert set(summary["by_kind"]) <= {"flag-currency", "flag-capital", "flag-animal", "flag-independence",
                                       "logo-founder", "logo-founded", "logo-river", "logo-country", "logo-birthplace"}
    corpus = (ROOT / "data" / "search" / "corpus.jsonl").read_text().splitlines()
    titles = {passage["id"]: passage["title"] for passage in map(json.loads, corpus)}
    for record, row in zip(read_run(output), benchmark.dataset, strict=True):
        # each search of the reference brings back the passage its hop needs
        observations = [turn["observation"] for turn in record["turns"] if turn["action"] == "tool"]
        assert len(observations) == len(row["hops"])
        for observation, hop in zip(observations, row["hops"], strict=True):
            assert titles[hop["passage_id"]] in observation


def test_model_fingerprint_tells_weights_apart_cheaply(tiny_model_dir, tmp_path):
    import os
    import shutil

    from safetensors.torch import load_file, save_file

    from agentic_vlm.eval.runner import model_fingerprint

    same, changed = tmp_path / "checkpoint-100", tmp_path / "other" / "checkpoint-100"
    shutil.copytree(tiny_model_dir, same)
    shutil.copytree(tiny_model_dir, changed)
    os.utime(same / "model.safetensors", (0, 0))  # a copy touched later is still the same model
    assert model_fingerprint(same) == model_fingerprint(tiny_model_dir)
    weights = load_file(changed / "model.safetensors")
    name = sorted(weights)[len(weights) // 2]  # one tensor in the middle of the file, same shape and dtype
    weights[name] = weights[name] + 1e-3
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    assert (changed / "model.safetensors").stat().st_size == (same / "model.safetensors").stat().st_size
    assert model_fingerprint(changed) != model_fingerprint(same)


def test_eval_resume_refuses_other_settings_or_weights_and_default_names_differ(tiny_model_dir, tmp_path,
                                                                                monkeypatch, capsys):
    import shutil

    import transformers
    from safetensors.torch import load_file, save_file

    output = tmp_path / "run.jsonl"
    command = ["eval", "--model", tiny_model_dir, "--dataset", "zoom", "--data-dir", str(ROOT / "data"),
               "--max-turns", "2", "--max-completion-length", "24", "--limit", "2", "--skip-no-tools-pass"]
    main([*command, "--output", str(output)])
    recorded = json.loads(output.with_suffix(".settings.json").read_text())
    assert recorded["max_turns"] == 2 and recorded["model"] == tiny_model_dir and recorded["model_fingerprint"]
    del recorded["pass"]  # a run recorded before there was a pass without tools resumes as the pass it was
    output.with_suffix(".settings.json").write_text(json.dumps(recorded))
    main([*command, "--output", str(output), "--limit", "3"])
    assert len(read_run(output)) == 3

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were compared")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", refuse)
    with pytest.raises(SystemExit):
        main([*command, "--output", str(output), "--max-turns", "3", "--temperature", "0.7"])
    error = capsys.readouterr().err
    assert f"{output} was made with other settings" in error
    assert "max_turns: 2 then, 3 now" in error and "temperature: 0.0 then, 0.7 now" in error
    assert len(read_run(output)) == 3
    with pytest.raises(SystemExit):  # a run without tools is not resumed as one with tools
        main([*command[:-1], "--no-tools", "--output", str(output)])
    assert "pass: 'with tools' then, 'without tools' now" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--no-tools", "--output", str(output)])
    assert "--no-tools runs without tools only: leave out --without-tools and --skip-no-tools-pass" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):  # a reward that needs a tool: refused before the model loads, not after pass 1
        main([*command[:-1], "--output", str(tmp_path / "similar.jsonl"), "--rewards", "search_similarity",
              "--reward-kwargs", '{"search_similarity": {"tool_name": "zoom"}}'])
    assert "the pass without tools cannot use these rewards" in capsys.readouterr().err

    other = tmp_path / "elsewhere" / Path(tiny_model_dir).name  # a folder of the same name, other weights
    shutil.copytree(tiny_model_dir, other)
    weights = load_file(other / "model.safetensors")
    save_file({key: value * 0.5 for key, value in weights.items()}, other / "model.safetensors")
    command[2] = str(other)
    with pytest.raises(SystemExit):
        main([*command, "--output", str(output)])
    assert "model_fingerprint: " in capsys.readouterr().err

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)  # default names go under outputs/eval/
    for model in (tiny_model_dir, str(other)):
        command[2] = model
        main(command)
    main([*command, "--max-turns", "1"])
    names = sorted(path.name for path in (tmp_path / "outputs" / "eval").glob("*.jsonl"))
    assert len(names) == 3 and all(name.startswith(f"zoom-{Path(tiny_model_dir).name}-") for name in names)


@pytest.mark.parametrize(("name", "size", "tools", "protocol"), [("search-tiny", 64, ("search",), "arft"),
                                                                 ("coding-tiny", 64, ("code",), "arft"),
                                                                 ("refocus-tiny", 256, ("refocus",), "vtool")])
def test_the_tiny_variants_are_evaluated_by_name_like_their_tasks(name, size, tools, protocol):
    benchmark = load_benchmark(name, data_dir=ROOT / "data")
    assert len(benchmark.dataset) == size and (benchmark.tools, benchmark.protocol) == (tools, protocol)
    if name == "search-tiny":  # its own corpus, not the full task's
        corpus = benchmark.tool_kwargs["search"]["backend_options"]["corpus_path"]
        assert corpus == str(ROOT / "data" / "search-tiny" / "corpus.jsonl")
