# The two commands a newcomer needs: `make up` and `make test`. Everything installs from PyPI.
SHELL := /bin/sh
export UV_PYTHON_DOWNLOADS := never
# trust the machine's certificate store (corporate proxies re-sign PyPI traffic)
export UV_SYSTEM_CERTS := true
UV = $(shell ./scripts/ensure-uv.sh)
VENV = .venv/bin

.PHONY: install up down status demo test test-fast lint proto proto-check bench bench-quick tenant

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

.PHONY: k8s-check
k8s-check: install ## render every k8s/ overlay, validate it (Kubernetes schemas + policies), hadolint the Dockerfiles
	$(VENV)/pytest -q -p no:cacheprovider tests/k8s

# size knobs: extra arguments per bench (see `python -m bench.<name> --help`)
BENCH_CEILINGS_ARGS ?=
BENCH_INGEST_ARGS ?=
BENCH_IDENTITY_ARGS ?=
BENCH_LOYALTY_ARGS ?=
BENCH_JOURNEY_ARGS ?=
BENCH_MESSAGING_ARGS ?=
BENCH_RECOMMEND_ARGS ?= --rates 25,50,100,250,500,1000
define BENCH_STEPS
	$(VENV)/python -m bench.ceilings $(BENCH_CEILINGS_ARGS)
	$(VENV)/python -m bench.ingest $(BENCH_INGEST_ARGS)
	$(VENV)/python -m bench.identity $(BENCH_IDENTITY_ARGS)
	$(VENV)/python -m bench.loyalty $(BENCH_LOYALTY_ARGS)
	$(VENV)/python -m bench.journey $(BENCH_JOURNEY_ARGS)
	$(VENV)/python -m bench.messaging $(BENCH_MESSAGING_ARGS)
	$(VENV)/python -m bench.recommend $(BENCH_RECOMMEND_ARGS)
	$(VENV)/python -m bench.summary
endef

bench: install ## benchmarks: raw ceilings, every bench, then the summary; writes bench/REPORT.md (~1 h)
	$(BENCH_STEPS)

bench-quick: export BENCH_OUT = $(CURDIR)/.mcloud/bench-quick
bench-quick: BENCH_CEILINGS_ARGS = --seconds 1
bench-quick: BENCH_INGEST_ARGS = --batches 40 --batch-size 100 --concurrency 4 --track-rate 200 --track-seconds 3
bench-quick: BENCH_IDENTITY_ARGS = --batches 10 --batch-size 200 --people 2000 --rate 200 --seconds 3
bench-quick: BENCH_LOYALTY_ARGS = --members 200 --earns 1000 --spends 300 --bus-orders 500 --concurrency 16
bench-quick: BENCH_JOURNEY_ARGS = --people 5000
bench-quick: BENCH_MESSAGING_ARGS = --emails 1000 --people 500 --batch 500
bench-quick: BENCH_RECOMMEND_ARGS = --users 3000 --items 500 --interactions 30000 --rates 50,100 --seconds 3
bench-quick: install ## every bench at small sizes (a smoke check, minutes); report in .mcloud/bench-quick/
	$(BENCH_STEPS)
