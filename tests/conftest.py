import random

import pytest

from agentic_vlm.data.synthetic import make_zoom_example, write_zoom_dataset
from agentic_vlm.tiny import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL with the small test vocabulary, built once per session (~2 s)."""
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-small"), vocab="small"))


@pytest.fixture(scope="session")
def zoom_data_dir(tmp_path_factory):
    return write_zoom_dataset(tmp_path_factory.mktemp("zoom"), num_train=16, num_test=8, seed=0)


@pytest.fixture
def zoom_example():
    return make_zoom_example(random.Random(7))
