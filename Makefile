# ortserve — `make serve` runs the stack on the default model; `make test` runs every check. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUF    := npx --yes @bufbuild/buf@1.75.0
INFERENCE_PORT ?= 50051
BRIDGE_PORT    ?= 8000
export INFERENCE_PORT BRIDGE_PORT

.PHONY: install model serve test unit lint typecheck buf-lint proto pytest clean bench node-deps soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# reinstall when the dependency list changes
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

# ORTSERVE_MODEL (what `make serve` serves): "default" or a model name is pulled and converted; a folder is used as is
model: install
	@m="$${ORTSERVE_MODEL:-default}"; \
	if [ -d "$$m" ]; then echo "ORTSERVE_MODEL=$$m is a model folder: nothing to prepare"; \
	else $(BIN)/python -m inference_service convert --model "$$m"; fi

serve: model
	bash scripts/serve.sh

proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/inference_service/api/v1/*.proto

lint: install
	$(BIN)/ruff check inference_service http_bridge ortserve_common tests bench docker
	$(BIN)/ruff format --check inference_service http_bridge ortserve_common tests bench docker

typecheck: install
	$(BIN)/mypy

buf-lint:
	$(BUF) lint

# the official OpenAI Node SDK for tests/e2e/test_node_client.py (reinstalled when the lock file changes)
NODE_DIR := tests/e2e/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund
	touch $@

node-deps: $(NODE_DIR)/node_modules/.installed

# Debian's chromium for the playground's browser test (tests/e2e/test_playground.py; CI runs as root on Debian).
# A file target: skipped when /usr/bin/chromium exists. Playwright drives it; `playwright install` is never run.
/usr/bin/chromium:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

# Debian's redis-server for the tests of the bridge's shared rate limits and usage (tests/redis_server.py starts one
# per test on a free loopback port; the package's own service is not used). A file target, as chromium's.
/usr/bin/redis-server:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server

pytest: model node-deps /usr/bin/chromium /usr/bin/redis-server
	$(BIN)/pytest -q -ra

test: lint typecheck buf-lint pytest

# the unit tests alone (markers set in tests/conftest.py): no model, no npm, no apt
unit: install
	$(BIN)/pytest -q -m "not e2e and not model"

# not in `make test`: the stack under 32 streaming clients for SOAK_DURATION s; writes its figures into
# docs/reliability.md and fails on any unintended error or ≥ 10 % inference RSS growth
SOAK_DURATION ?= 300
soak: model
	$(BIN)/python -m tests.soak.run --duration $(SOAK_DURATION) $(SOAK_ARGS)

# not a test and not in CI: builds llama-server on first use, runs both servers, writes docs/benchmarks.md (+ .png)
bench: model
	$(BIN)/python -m bench compare $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
