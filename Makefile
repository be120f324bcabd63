# The two commands a newcomer needs: `make up` and `make test`. Everything installs from PyPI.
SHELL := /bin/sh
export UV_PYTHON_DOWNLOADS := never
# trust the machine's certificate store (corporate proxies re-sign PyPI traffic)
export UV_SYSTEM_CERTS := true
UV = $(shell ./scripts/ensure-uv.sh)
VENV = .venv/bin

.PHONY: install up down status demo test test-fast lint proto proto-check bench tenant

install: .venv/.installed

.venv/.installed: uv.lock pyproject.toml */pyproject.toml libs/*/pyproject.toml
	$(UV) sync --all-packages --frozen --python python3.11
	@touch $@

up: install ## start the whole system (embedded PostgreSQL + Valkey), print the URLs
	$(VENV)/mcloud up

down: install
	$(VENV)/mcloud down

status: install
	$(VENV)/mcloud status

demo: install ## on a running stack (`make up` in another terminal): a demo tenant and Rachel's story, step by step
	$(VENV)/mcloud demo

test: install ## every test: unit, integration (real PostgreSQL/Valkey), gRPC, e2e
	$(VENV)/pytest -q

lint: install ## ruff, buf lint, buf breaking (against the previous commit), generated stubs fresh
	$(VENV)/ruff check .
	$(VENV)/buf lint proto
	@if git rev-parse -q --verify HEAD~1 >/dev/null 2>&1 && git cat-file -e HEAD~1:proto/buf.yaml 2>/dev/null; then \
		echo "buf breaking proto --against HEAD~1"; \
		$(VENV)/buf breaking proto --against ".git#ref=HEAD~1,subdir=proto"; fi
	$(VENV)/python scripts/gen_proto.py --check

proto: install ## regenerate libs/mcloud-proto from proto/
	$(VENV)/python scripts/gen_proto.py

bench: install ## benchmarks; writes bench/REPORT.md
	$(VENV)/python -m bench.ingest
	$(VENV)/python -m bench.identity
	$(VENV)/python -m bench.loyalty
	$(VENV)/python -m bench.journey
	$(VENV)/python -m bench.messaging
	$(VENV)/python -m bench.recommend --rates 25,50,100,250,500,1000
