# rosterbridge: every command a newcomer needs. `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo sync test bench ui validate check-connection demo-oneroster demo-canvas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A district's roster is private: the local Dagster instance sends no usage telemetry. One grade
# passback run per term at a time, launched by the sensor or by hand (docs/passback.md).
$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    tag_concurrency_limits:\n      - key: rosterbridge/passback_term\n        value:\n          applyLimitPerUniqueValue: true\n        limit: 1\n' > $@

## Run the whole nightly sync once on the built-in demo district (demo provider + demo Canvas).
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	env -u ONEROSTER_BASE_URL -u CANVAS_BASE_URL $(BIN)/python -m pipeline.sync

## Run the nightly sync once against whatever the environment configures; non-zero exit on failure.
sync: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pipeline.sync

## The test suite (fast; benchmarks excluded).
test: $(STAMP) $(DAGSTER_HOME)/dagster.yaml validate
	$(BIN)/python -m pytest -m "not bench"

validate: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

## Benchmarks: print figures (see BENCHMARKS.md).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run all
	$(BIN)/python -m pytest -m bench -s -q

## The Dagster UI on http://127.0.0.1:3000 (schedules and sensors run while it is up).
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## What a district runs first with new OneRoster credentials: checks them, writes nothing.
check-connection: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pipeline.connectivity

demo-oneroster: $(STAMP)
	$(BIN)/python -m pipeline.demo.oneroster_server --port 8650

demo-canvas: $(STAMP)
	$(BIN)/python -m pipeline.demo.canvas_server --port 8660

clean:
	rm -rf $(VENV) .pytest_cache
