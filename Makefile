# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-seeds lint shot bench mutate clean

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

# The trained-outcome tests again with their seeds shifted (tests/outcomes.py): a threshold on
# a knife edge fails here, not on someone else's CPU.
test-seeds: $(STAMP)
	RNN_EXPLORER_TEST_SEED=1 $(PYTEST) -m trained
	RNN_EXPLORER_TEST_SEED=2 $(PYTEST) -m trained

lint: $(STAMP)
	$(PY) -m ruff check .

# The README's images, each made by the command its caption quotes (tests/test_readme_images.py).
shot: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --preset adding-lstm --steps 1500 --out docs/screenshot.png --size 1920x1080
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --preset beam-vs-greedy --steps 150 --panel decoding --out docs/decoding.png
	QT_QPA_PLATFORM=offscreen $(PY) main.py export --preset vanishing-rnn --steps 200 --out docs/slide --panels gradients --formats png
	mv docs/slide/gradients.png docs/slide-gradients.png && rm -r docs/slide
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --data resources/examples/rhymes.txt --steps 200 --probe "Humpty Dumpty sat on a wall" --out docs/own-text.png --size 1600x900
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --data resources/examples/weather.csv --target temperature --steps 300 --out docs/own-series.png --size 1600x900
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --data resources/examples/numbers.tsv --steps 600 --panel decoding --probe 417 --out docs/own-pairs.png --size 1200x700
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --data resources/examples/reviews.tsv --task classify --tokens word --steps 300 --probe "the film was not very good" --panel gates --out docs/own-classify.png --size 1200x700
	$(PY) main.py train --data resources/examples/rhymes.txt --steps 300 --export-model rhymes.safetensors
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --model rhymes.safetensors --vocab vocab.json --probe "Jack and Jill went up the hill" --steps 0 --out docs/own-model.png --size 1600x900
	rm rhymes.safetensors vocab.json
	QT_QPA_PLATFORM=offscreen $(PY) main.py shot --preset adding-lstm --steps 1500 --intervene "units=62,op=zero" --rank 0 --out docs/what-if.png --size 1920x1080

bench: $(STAMP)
	$(PY) main.py bench

# Mutation testing of the science modules (mutmut, the dev extra): CPU-heavy, not in CI.
# MODULES="search sequence" runs a subset (names in tests/mutation.py); survivors are printed.
mutate: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,dev]"
	nice -n 10 $(PY) -m tests.mutation $(MODULES)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info .mutmut mutants
