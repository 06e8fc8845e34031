# digitsite: `make run` sets everything up and starts the site; `make test` runs the tests.
# Python 3.11 to 3.13, as pyproject.toml's requires-python says: the newest on PATH, or python3
# when it is one of them. Checked only when the virtualenv is made, so `make -n` works without it.
PYTHON_VERSIONS := 3.13 3.12 3.11
python_version = $(if $(1),$(word 2,$(shell $(1) --version 2>/dev/null)))
python_accepted = $(filter $(addsuffix .%,$(PYTHON_VERSIONS)),$(call python_version,$(1)))
PYTHON ?= $(firstword $(foreach candidate,$(addprefix python,$(PYTHON_VERSIONS)) python3,$(if $(call python_accepted,$(candidate)),$(candidate))))
PYTHON_NEEDED = digitsite needs Python 3.11, 3.12 or 3.13 (python3.13, python3.12, python3.11, or python3 when it is one \
	of them)$(if $(PYTHON),: PYTHON=$(PYTHON) $(if $(call python_version,$(PYTHON)),is Python $(call python_version,$(PYTHON)),does not run),: none is on PATH). \
	Install one, or name it: make PYTHON=/path/to/python3.12
VENV := .venv
BIN := $(VENV)/bin
# CI and this workspace keep MNIST beside the checkout; elsewhere ml/fitting/data.py takes the Keras
# download (cached in ~/.keras/datasets), so no path to a missing directory is passed on.
SHARED_MNIST := $(wildcard $(abspath ../shared/data/mnist))
ifneq ($(SHARED_MNIST),)
export MNIST_DATA_DIR ?= $(SHARED_MNIST)
endif
export PYTHONUNBUFFERED := 1
# TensorFlow's start-up chatter (oneDNN notices, CPU feature lists) hides real output.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test test-fast lint format sizes bench bench-load bench-quick screenshots clean

$(BIN)/.installed: requirements.txt
	@$(if $(call python_accepted,$(PYTHON)),,echo "$(PYTHON_NEEDED)" >&2; exit 1)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

# `make run PORT=8080` when 8000 is taken.
PORT ?= 8000

run: install
	$(BIN)/python manage.py migrate --noinput
	@# The static files served as in production (and no warning about a missing staticfiles/).
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "digitsite is starting on http://127.0.0.1:$(PORT)/ (web and a Celery worker, in the foreground; Ctrl-C stops both)"
	@echo "  create an account at http://127.0.0.1:$(PORT)/signup/"
	@echo "  staff account for the admin: $(BIN)/python manage.py createsuperuser"
	@echo ""
	@# Ctrl-C is how a person stops it: honcho then exits 130, which is not a failure to report.
	DIGITSITE_PORT=$(PORT) $(BIN)/honcho start || test $$? -eq 130

# The tests run in parallel (pytest-xdist), at most 4 processes, each holding TensorFlow. The
# whole suite takes one process more than the cores: part of its time is spent waiting for the
# worker processes and browsers its tests start (on 2 cores, a fresh clone's `bash .ci/run`: 12 min
# 20 s with 3 processes on 2026-12-08; on 2026-12-07, 3 processes beat 2). `make test-fast` waits for
# nothing: a process per core. `make test TEST_PROCESSES=0` runs them in this one process.
CORES := $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
TEST_PROCESSES ?= $(shell echo $$(( $(CORES) + 1 < 4 ? $(CORES) + 1 : 4 )))
FAST_PROCESSES ?= $(shell echo $$(( $(CORES) < 4 ? $(CORES) : 4 )))
PYTEST = $(BIN)/python -m pytest --dist worksteal

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PYTEST) -n $(TEST_PROCESSES)

# The edit-test loop: lint and every test that needs no real worker process, browser, training
# run or long measurement (those are marked slow or browser); `make test` before a commit that lands.
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PYTEST) -n $(FAST_PROCESSES) -m "not slow and not browser" --durations=10

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Functions over 50 lines and modules over 400 (the limits classifier/tests/test_sizes.py holds).
sizes: install
	$(BIN)/python -m classifier.tests.sizes

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerates the README's screenshots from the browser journeys (needs /usr/bin/chromium).
screenshots: install
	SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest classifier/tests/test_browser.py -q

# Every performance figure of docs/performance.md and a 3-minute soak under faults
# (docs/reliability.md): about 22 minutes on 2 cores; each script starts what it needs and
# stops by itself.
bench: install
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/retrain.py
	$(BIN)/python bench/stats_page.py
	$(BIN)/python bench/soak.py

# The same without the load test and retraining (about 3 minutes).
bench-quick: install
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/worker.py --images 1000
	$(BIN)/python bench/latency.py --single 100 --seconds 10

# 2,000 uploads through gunicorn, the broker and a Celery worker; fails if any is lost or doubled.
bench-load: install
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) var staticfiles
