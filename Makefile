# Entry points people type. Only Python >= 3.10 and make are needed: the first target
# that needs the environment installs uv into .tools/ and builds .venv/ from uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench fuzz docs format clean

demo: $(VENV)/.synced
	$(BIN)/python examples/core_demo.py
	$(BIN)/python examples/http_demo.py

test: $(VENV)/.synced
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.synced
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pyright tests/core/types_of_the_api.py  # the public API's types, as applications see them
	$(BIN)/lint-imports  # the layers and boundaries of [tool.importlinter] in pyproject.toml

fuzz: $(VENV)/.synced  # the property tests of parsers, entry decoder, serializers and glob, longer
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/core/test_http.py \
		tests/core/test_entry.py tests/core/test_serializers.py tests/core/test_keys.py \
		tests/core/test_aiocache_ops.py::test_the_in_memory_glob_matches_what_redis_matches

bench: $(VENV)/.synced
	$(UV) sync --locked --all-packages --group bench --python $(PYTHON)
	$(BIN)/python bench/http.py
	$(BIN)/python bench/stampede.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/core.py
	$(BIN)/python bench/hit_path.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/propagation.py
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/goals.py
	$(BIN)/python bench/report.py

docs: $(VENV)/.synced
	$(UV) sync --locked --all-packages --group docs --python $(PYTHON)
	$(BIN)/mkdocs build --strict --site-dir site

format: $(VENV)/.synced
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock packages/*/pyproject.toml | $(UV)
	$(UV) sync --locked --all-packages --python $(PYTHON)
	touch $@
