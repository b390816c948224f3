# Two entry points for people: `make demo` and `make test`. Everything else is for them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

MODEL  := models/coda-tiny
# What the model card reports: the first 400 HumanEval single-line infilling problems with the learned
# variable-length span, and the same 400 with pad/end tokens forbidden (the fixed-length baseline). Both run at
# once, one core each; drop --limit for all 1033 (about 24 minutes, both modes at once on 2 cores).
EVAL   := OMP_NUM_THREADS=1 $(BIN)/python -m coda_engine.tools.eval --model $(MODEL) --task single-line --max-new-tokens 24 \
          --limit 400 --jobs 1

.PHONY: test extension vscode-e2e demo default-model install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes; the install is editable so code edits need nothing.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train,test]'
	touch $(STAMP)

install: $(STAMP)

# pytest last: its summary closes the run.
test: $(STAMP) extension vscode-e2e
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The VS Code extension from a clean `npm ci`: type check, lint, unit tests, protocol tests against the real
# coda-lsp on a tiny checkpoint, then vscode-client/coda-lsp.vsix (about a minute).
extension: $(STAMP)
	cd vscode-client && npm ci --no-audit --no-fund --loglevel=error && npm run --silent compile && \
	  npm run --silent lint && CODA_PYTHON=$(abspath $(BIN)/python) npm run --silent test && \
	  npm run --silent package

# The packaged extension in a real VS Code: code-server in headless Chromium, the real coda-lsp on the shipped model;
# types until ghost text shows, accepts it with Tab, runs "CoDA: Fill this block" (about a minute on two idle cores).
# Screenshots, the LSP traffic and code-server's log go to vscode-client/e2e-results/. The first run installs
# code-server and Node 24 from npm (about 800 MB under vscode-client/test/e2e/editor/) and Debian's chromium.
vscode-e2e: extension
	vscode-client/test/e2e/setup.sh
	cd vscode-client && CODA_PYTHON=$(abspath $(BIN)/python) npm run --silent test:e2e

demo: $(STAMP)
	$(BIN)/python -m coda_lsp.tools.demo --model $(MODEL)

# Reproduces models/coda-tiny from the installed machine's own code (about 110 minutes on 2 CPU cores), then
# measures it on HumanEval-infilling and writes the scores into its model card.
default-model: $(STAMP)
	$(BIN)/python -m coda_training.recipe --out $(MODEL)
	$(EVAL) --output $(MODEL)/eval-single-line.json --markdown $(MODEL)/EVAL-single-line.md & variable=$$!; \
	$(EVAL) --fixed-length --output $(MODEL)/eval-fixed-length.json --markdown $(MODEL)/EVAL-fixed-length.md; \
	fixed=$$?; wait $$variable && test $$fixed -eq 0
	$(BIN)/python -m coda_training.recipe --out $(MODEL) --card-only

bench: $(STAMP)
	$(BIN)/python -m coda_engine.tools.bench --preset tiny
	$(BIN)/python -m coda_engine.tools.bench --preset small

clean:
	rm -rf $(VENV) build *.egg-info
