# Two entry points for people: `make demo` and `make test`. Everything else is for them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# This project's machines pin torch there (the CPU build on their disk); `make CONSTRAINTS=` installs without.
CONSTRAINTS ?= constraints.txt
PIP    := $(BIN)/pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# A user's install: the language server and `coda-lsp serve`. The developers': what the tests, benches, eval and
# training use besides. Editable, so code edits need nothing and the server finds the shipped model.
USER_STAMP := $(VENV)/.installed-serve
DEV_STAMP  := $(VENV)/.installed-dev

MODEL  := models/coda-tiny
# What the model card reports: the first 400 HumanEval single-line infilling problems with the learned
# variable-length span, and the same 400 with pad/end tokens forbidden (the fixed-length baseline). Both run at
# once, one core each; drop --limit for all 1033 (about 24 minutes, both modes at once on 2 cores).
EVAL   := OMP_NUM_THREADS=1 $(BIN)/python -m coda_engine.tools.eval --model $(MODEL) --task single-line --max-new-tokens 24 \
          --limit 400 --jobs 1

.PHONY: test extension vscode-e2e demo default-model install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall when the project's metadata or the pins change.
$(USER_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) -e '.[serve]'
	touch $@

# The developers' set holds the user's: both are then up to date.
$(DEV_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) -e '.[serve,train,test]'
	touch $@ $(USER_STAMP)

install: $(USER_STAMP)

# pytest last: its summary closes the run.
test: $(DEV_STAMP) extension vscode-e2e
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The VS Code extension from a clean `npm ci`: type check, lint, unit tests, protocol tests against the real
# coda-lsp on a tiny checkpoint, then vscode-client/coda-lsp.vsix (about a minute).
extension: $(USER_STAMP)
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

demo: $(USER_STAMP)
	$(BIN)/python -m coda_lsp.tools.demo --model $(MODEL)

# Reproduces models/coda-tiny from the installed machine's own code, then measures it on HumanEval-infilling and
# writes the scores into its model card (about 2 hours on 2 CPU cores: 115 minutes of training, 8 of harness).
default-model: $(DEV_STAMP)
	$(BIN)/python -m coda_training.recipe --out $(MODEL)
	$(EVAL) --output $(MODEL)/eval-single-line.json --markdown $(MODEL)/EVAL-single-line.md & variable=$$!; \
	$(EVAL) --fixed-length --output $(MODEL)/eval-fixed-length.json --markdown $(MODEL)/EVAL-fixed-length.md; \
	fixed=$$?; wait $$variable && test $$fixed -eq 0
	$(BIN)/python -m coda_training.recipe --out $(MODEL) --card-only

bench: $(DEV_STAMP)
	$(BIN)/python -m coda_engine.tools.bench --preset tiny
	$(BIN)/python -m coda_engine.tools.bench --preset small

clean:
	rm -rf $(VENV) build *.egg-info
