# Every install step of the project lives here; README.md's two commands are `make quickstart` and `make test`.
VENV ?= .venv
PYTHON ?= python3
# CPU machines without a model hub: the torch release this project is tested with. On GPU nodes, install the torch
# build that matches your CUDA first and run `pip install -e ".[vllm,deepspeed]"` instead.
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN = $(VENV)/bin
TINY_MODEL = outputs/tiny-qwen2.5-vl

.PHONY: setup quickstart test lint

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	DS_BUILD_OPS=0 $(BIN)/python -m pip install --quiet -e ".[dev,similarity]"
	touch $@

setup: $(BIN)/.installed

$(TINY_MODEL)/config.json: | setup
	$(BIN)/agentic-vlm make-tiny-model $(TINY_MODEL) --vocab small

quickstart: setup $(TINY_MODEL)/config.json
	$(BIN)/agentic-vlm train recipes/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench
