# digitsite: `make run` sets everything up and starts the site; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MNIST_DATA_DIR ?= $(abspath ../shared/data/mnist)
export PYTHONUNBUFFERED := 1
# TensorFlow's start-up chatter (oneDNN notices, CPU feature lists) hides real output.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test lint format bench bench-load bench-quick screenshots clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	@echo ""
	@echo "digitsite is starting on http://127.0.0.1:8000/ (web and a Celery worker; Ctrl-C stops both)"
	@echo "  create an account at http://127.0.0.1:8000/signup/"
	@echo "  staff account for the admin: $(BIN)/python manage.py createsuperuser"
	@echo ""
	$(BIN)/honcho start

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerates the README's screenshots from the browser journeys (needs /usr/bin/chromium).
screenshots: install
	SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest classifier/tests/test_browser.py -q

# Every performance figure of docs/performance.md (about 15 minutes on 2 cores; each script
# starts what it needs and stops by itself).
bench: install
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/retrain.py

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
