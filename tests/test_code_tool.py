"""The ``<code>`` tool on the real sandbox: images in and out in both conventions, persistent sessions, the
observation the model sees, and concurrent calls from many trajectories on one event loop."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest
from PIL import Image

from agentic_vlm.tools import build_tools
from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.code import CodeTool, SandboxConfig, SandboxUnavailableError
from agentic_vlm.tools.code.tool import extract_code

OPTIONS = {"workers": 2, "timeout_s": 3.0, "memory_mb": 256, "max_images": 4, "max_image_pixels": 512 * 512}


def make_tool(**options) -> CodeTool:
    try:
        return CodeTool(**{**OPTIONS, **options})
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")


@pytest.fixture(scope="module")
def tool():
    code_tool = make_tool(persistent=True, max_sessions=3)
    yield code_tool
    asyncio.run(code_tool.aclose())


def call(tool: CodeTool, code: str, images=(), trajectory: str = "t0"):
    return asyncio.run(tool(code, ToolContext(trajectory_id=trajectory, images=list(images))))


def halves(width: int = 200, height: int = 100) -> Image.Image:
    """Red on the left half, blue on the right: a rotation or crop shows in the colours."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def colour_at(image: Image.Image, x: int, y: int) -> str:
    red, _, blue = image.getpixel((x, y))
    return "red" if red > 200 > blue else "blue" if blue > 200 > red else "other"


def test_visual_arft_convention_round_trip(tool):
    code = """```python
from PIL import Image
image = Image.open("path_to_input_image.jpg")
print(image.size)
image.rotate(180).crop((0, 0, 150, 100)).save("path_to_output_image.jpg")
```"""
    observation = call(tool, code, [halves()])
    assert observation.ok and observation.text == "(200, 100)"
    (output,) = observation.images
    assert output.size == (150, 100)
    assert colour_at(output, 10, 50) == "blue" and colour_at(output, 140, 50) == "red"  # rotated half-turn


def test_direct_convention_display_and_show(tool):
    code = "display(image.crop((0, 0, 50, 50)))\nimage.rotate(90, expand=True).show()\nprint(len(images))"
    observation = call(tool, code, [halves()])
    assert observation.text == "1"
    assert [image.size for image in observation.images] == [(50, 50), (100, 200)]
    assert colour_at(observation.images[0], 25, 25) == "red"


def test_opencv_and_numpy_work_on_the_input_file(tool):
    code = (
        "import cv2, numpy as np\n"
        "bgr = cv2.imread('path_to_input_image.jpg')\n"
        "print(bgr.shape, bgr[50, 10].tolist())\n"  # OpenCV reads blue-green-red
        "cv2.imwrite('edges.png', cv2.Canny(bgr, 50, 150))\n"
        "display(np.full((10, 20, 3), 255, np.uint8))\n"
    )
    observation = call(tool, code, [halves()])
    assert observation.text == "(100, 200, 3) [0, 0, 255]"
    shown, edges = observation.images
    assert shown.size == (20, 10) and edges.size == (200, 100)
    assert np.asarray(edges)[:, 99:101].max() == 255 and np.asarray(edges)[:, :90].max() == 0  # the one edge


def test_every_input_image_is_available(tool):
    second = Image.new("L", (30, 40), 128)
    code = (
        "from PIL import Image\n"
        "print([im.size for im in images], image.size)\n"
        "print(Image.open('path_to_input_image_1.jpg').size)\n"
    )
    assert call(tool, code, [halves(), second]).text == "[(200, 100), (30, 40)] (200, 100)\n(30, 40)"


def test_inputs_arrive_as_rgb_or_grayscale(tool):
    palette = halves().convert("P")
    transparent = Image.new("RGBA", (8, 8), (0, 255, 0, 100))
    gray = Image.new("L", (8, 8), 77)
    code = "print([(im.mode, im.getpixel((0, 0))) for im in images])"
    observation = call(tool, code, [palette, transparent, gray])
    assert observation.text == "[('RGB', (255, 0, 0)), ('RGB', (0, 255, 0)), ('L', 77)]"


def test_code_without_images_sees_none(tool):
    assert call(tool, "print(image, images)").text == "None []"


def test_errors_keep_the_printed_output_and_name_the_line(tool):
    observation = call(tool, "print('before')\nx = {}\nx['missing']")
    assert not observation.ok
    assert observation.text.startswith("before\nError: Traceback")
    assert 'File "<code>", line 3' in observation.text and "KeyError: 'missing'" in observation.error


def test_silent_code_says_so(tool):
    assert call(tool, "x = 1").text == "The code ran and produced no output."
    assert call(tool, "display(image)", [halves()]).text == "The code ran and produced 1 image(s)."


def test_empty_action_is_a_failure(tool):
    observation = call(tool, "```python\n\n```")
    assert not observation.ok and "no code" in observation.text


def test_extract_code_strips_fences_only():
    assert extract_code("```python\nprint(1)\n```") == "print(1)"
    assert extract_code("```\nprint(1)\n```\n") == "print(1)"
    assert extract_code("\nprint('```')\n") == "print('```')"


def test_sessions_keep_variables_per_trajectory_until_released(tool):
    call(tool, "x = 'first'\ndef shout(s):\n    return s.upper()", trajectory="a")
    call(tool, "x = 'second'", trajectory="b")
    assert call(tool, "print(shout(x))", trajectory="a").text == "FIRST"
    assert call(tool, "print(x)", trajectory="b").text == "second"
    asyncio.run(tool.release("a"))
    assert "NameError" in call(tool, "print(x)", trajectory="a").error
    asyncio.run(tool.release("a"))
    asyncio.run(tool.release("b"))


def test_sessions_cannot_see_each_others_files(tool):
    call(tool, "open('notes.txt', 'w').write('private')", trajectory="writer")
    observation = call(
        tool, "import os\nprint(sorted(os.listdir('.')), os.path.exists('notes.txt'))", trajectory="reader"
    )
    assert observation.text == "[] False"
    assert call(tool, "print(open('notes.txt').read())", trajectory="writer").text == "private"
    for trajectory in ("writer", "reader"):
        asyncio.run(tool.release(trajectory))


def test_oldest_session_ends_past_max_sessions(tool):
    for index in range(4):  # the tool keeps 3
        call(tool, f"x = {index}", trajectory=f"s{index}")
    evicted = call(tool, "print(x)", trajectory="s0")
    assert "NameError" in evicted.error
    assert "variables were lost: it was ended to keep at most 3 sessions" in evicted.text  # the model is told why
    assert call(tool, "print(x)", trajectory="s3").text == "3"
    for index in range(4):
        asyncio.run(tool.release(f"s{index}"))


def test_a_session_that_times_out_says_its_state_is_lost(tool):
    call(tool, "x = 1", trajectory="slow")
    observation = call(tool, "while True:\n    pass", trajectory="slow")
    assert "time limit" in observation.error and "variables were lost" in observation.error
    assert "NameError" in call(tool, "print(x)", trajectory="slow").error
    asyncio.run(tool.release("slow"))


def test_without_persistence_every_call_starts_clean():
    stateless = make_tool(workers=1)
    try:
        call(stateless, "x = 1\nopen('left.txt', 'w').write('behind')")
        observation = call(stateless, "import os\nprint('x' in globals(), os.listdir('.'))")
        assert observation.text == "False []"
    finally:
        asyncio.run(stateless.aclose())


def test_aclose_stops_the_workers_and_the_next_call_starts_new_ones():
    """A warm start, an evaluation and training each close their rollout engine, and the tools with it; the same tool
    object serves the next (each on an event loop of its own, as asyncio.run gives here)."""
    kept = make_tool(workers=1, persistent=True)
    try:
        call(kept, "x = 41")
        pids = [worker._process.pid for worker in kept.sandbox._workers]
        asyncio.run(kept.aclose())
        assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
        observation = call(kept, "print('x' in globals())")
        assert observation.ok and observation.text == "False"  # a new sandbox: the old session went with the old one
        assert call(kept, "x = 1\nprint(x + 1)").text == "2"
    finally:
        asyncio.run(kept.aclose())


def test_calls_run_concurrently_up_to_the_pool_size_without_blocking_the_loop(tool):
    async def scenario():
        ticks = 0
        running = True

        async def ticker():
            nonlocal ticks
            while running:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        contexts = [ToolContext(trajectory_id=f"c{index}") for index in range(4)]
        observations = await asyncio.gather(*(tool("import time\ntime.sleep(1)\nprint('done')", c) for c in contexts))
        elapsed = time.monotonic() - started
        running = False
        await ticking
        for context in contexts:
            await tool.release(context.trajectory_id)
        return observations, elapsed, ticks

    observations, elapsed, ticks = asyncio.run(scenario())
    assert [observation.text for observation in observations] == ["done"] * 4
    # Two workers: four one-second calls take two rounds, not one (queued) and not four (serial).
    assert 1.9 <= elapsed < 3.5
    assert ticks > 50  # the event loop kept running while the calls waited


def test_isolation_is_reported(tool):
    assert tool.isolation.level == "full"
    assert tool.isolation.describe().startswith("isolation full")


def test_build_tools_passes_recipe_options():
    (code_tool,) = build_tools(["code"], {"code": {"workers": 1, "timeout_s": 1.5, "persistent": True}})
    try:
        assert code_tool.persistent and code_tool.sandbox.config.timeout_s == 1.5
        assert call(code_tool, "print(1 + 1)").text == "2"
    finally:
        asyncio.run(code_tool.aclose())
    with pytest.raises(ValueError, match="unexpected keyword"):
        build_tools(["code"], {"code": {"timeout": 3}})


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxConfig(timeout_s=0)
