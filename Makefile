# Two entry points for people: `make demo` and `make test`. Everything else is for them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

MODEL  := models/coda-tiny
# The harness slice the model card reports: every single-line problem (the headline number), the rest sampled.
EVAL_ARGS := --model $(MODEL) --max-new-tokens 24 --output $(MODEL)/eval.json --markdown $(MODEL)/EVAL.md

.PHONY: test demo default-model install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes; the install is editable so code edits need nothing.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train,test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/python -m coda_lsp.demo --model $(MODEL)

# Reproduces models/coda-tiny from the installed machine's own code (about 75 minutes on 2 CPU cores), then
# measures it on HumanEval-infilling and writes the scores into its model card.
default-model: $(STAMP)
	$(BIN)/python -m coda_training.recipe --out $(MODEL)
	$(BIN)/python -m coda_engine.eval $(EVAL_ARGS) --task single-line
	$(BIN)/python -m coda_training.recipe --out $(MODEL) --card-only

bench: $(STAMP)
	$(BIN)/python -m coda_engine.bench --preset tiny
	$(BIN)/python -m coda_engine.bench --preset small

clean:
	rm -rf $(VENV) build *.egg-info
