# fleetcast: every target sets up what it needs, so `make run` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast lint format system-deps bench bench-quick e2e clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "fleetcast needs $(PYTHON) (Debian: apt-get install python3.11 python3.11-venv)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,operator]'
	touch $(STAMP)

## The gateway on the embedded in-memory broker, demo page at http://127.0.0.1:8000/
run: $(STAMP)
	$(BIN)/fleetcast serve

## The whole suite: unit, contract, integration (real redis-server and uvicorn processes), operator, chart, browser.
## Two workers, whole files each (a file's pods and fixtures stay together): most tests wait on processes and
## sockets, so two run side by side on two cores in well under the serial time.
## Coverage of fleetcast and fleetcast_operator (pods started as subprocesses included) is measured on the way,
## and the run fails under the floor in pyproject.toml; `make test COV_ARGS=` runs without it.
COV_ARGS ?= --cov=fleetcast --cov=fleetcast_operator --cov-report=term:skip-covered
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile $(COV_ARGS)

## Unit tests only: pure code, no processes, a few seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

## Cluster-in-a-box, larger than the bounded run in `make test`: writes the summary table to docs/proof.md.
e2e: $(STAMP) system-deps
	FLEETCAST_E2E=full FLEETCAST_E2E_PROOF=docs/proof.md $(BIN)/python -m pytest -q -s -p no:cacheprovider \
		tests/e2e/test_cluster_in_a_box.py -k scale_up

## Installs the system packages the suite talks to (redis-server), where apt is there to do it.
system-deps:
	@bash scripts/system-deps

lint: $(STAMP)
	$(BIN)/ruff check service operator tests bench
	$(BIN)/ruff format --check service operator tests bench
	$(BIN)/mypy service/fleetcast operator/fleetcast_operator
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix service operator tests bench
	$(BIN)/ruff format service operator tests bench

PEER := bench/peers/socketio
NCHAN_MODULE := /usr/lib/nginx/modules/ngx_nchan_module.so

## fleetcast against Socket.IO 4.8 (+ redis-streams adapter) and Nchan (nginx; Redis and memory storage) on every
## workload, same clients, 3 repetitions (tens of minutes; BENCH_ARGS="--soak-seconds 180" shortens the soak,
## BENCH_ARGS="--servers fleetcast nchan" keeps some servers). Results: bench/results/*.json.
bench: $(STAMP) system-deps $(PEER)/node_modules $(NCHAN_MODULE)
	ulimit -n $$(ulimit -Hn); $(BIN)/python -m bench.suite $(BENCH_ARGS)

## Smoke in about 4 minutes: W1, W3, W5 and W8 against every server, once, with the ratios.
bench-quick: $(STAMP) system-deps $(PEER)/node_modules $(NCHAN_MODULE)
	ulimit -n $$(ulimit -Hn); $(BIN)/python -m bench.suite --quick $(BENCH_ARGS)

## The Nchan peer is Debian's nginx module: installed with apt where this user may.
$(NCHAN_MODULE):
	FLEETCAST_REQUIRE_NCHAN=1 bash scripts/system-deps

$(PEER)/node_modules: $(PEER)/package-lock.json
	@command -v npm >/dev/null || { echo "the benchmark's Socket.IO peer needs node 20+ and npm"; exit 1; }
	cd $(PEER) && npm ci
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
