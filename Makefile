# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint shot bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when the dependency files change (a no-op otherwise).
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) main.py

# Two pytest-xdist workers, one torch thread each (tests/conftest.py); a module's tests stay
# on one worker (--dist loadfile), so a trained fixture is shared by the tests that read it.
PYTEST := QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .

shot: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --preset adding-lstm --steps 300 --out docs/screenshot.png --size 1920x1080
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --preset adding-lstm --steps 1500 --intervene "units=62,op=zero" --rank 0 --out docs/what-if.png --size 1920x1080

bench: $(STAMP)
	$(PY) main.py bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
