import random

import pytest

from agentic_vlm.data.synthetic import make_zoom_example, write_zoom_dataset
from agentic_vlm.families import TINY_FAMILIES
from agentic_vlm.tiny import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL with the small test vocabulary, built once per session (~2 s)."""
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-small"), vocab="small"))


@pytest.fixture(scope="session")
def tiny_model_dirs(tiny_model_dir, tmp_path_factory):
    """A tiny random model of each family with the small test vocabulary, by family name (~1 s each)."""
    dirs = {"qwen2.5-vl": tiny_model_dir}
    for family in TINY_FAMILIES[1:]:
        dirs[family] = str(make_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), vocab="small", family=family))
    return dirs


@pytest.fixture(scope="session")
def zoom_data_dir(tmp_path_factory):
    return write_zoom_dataset(tmp_path_factory.mktemp("zoom"), num_train=16, num_test=8, seed=0)


@pytest.fixture
def zoom_example():
    return make_zoom_example(random.Random(7))


@pytest.fixture(scope="session")
def like_model_dir(tmp_path_factory):
    """A tiny model built like Qwen2.5-VL-7B-Instruct: the real vocabulary, generation config (top_k 1, top_p 0.001,
    temperature 0.1, repetition_penalty 1.05, eos ids [151645, 151643]) and pixel limits. Built once (~10 s)."""
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-like-7b"), like="qwen2.5-vl-7b-instruct"))
