# Two commands do all the set-up: `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test golden validate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/promo validate rules
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

# Rewrites tests/golden/*/expected.json from the engine's output. Review the diff before committing.
golden: $(STAMP)
	$(PY) -m pytest -q tests/test_golden.py --update-golden

# Seeded synthetic rule sets and carts, evaluate() against business-rules' engine; a few minutes.
bench: $(STAMP)
	$(PY) -m bench.run

validate: $(STAMP)
	$(VENV)/bin/promo validate rules

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
