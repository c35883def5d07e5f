# `make demo` and `make test` are all a fresh checkout needs (Python ≥ 3.11).
VENV ?= .venv
BIN := $(VENV)/bin
ISSUES := 2025-04-asit-highlights 2025-05-twinning-and-training

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

demo: $(VENV)/.installed
	@for issue in $(ISSUES); do $(BIN)/newsletter check $$issue && $(BIN)/newsletter render $$issue || exit 1; done
	@echo
	@echo "Open these in a browser (and message.eml in a mail client):"
	@for issue in $(ISSUES); do echo "  $(CURDIR)/out/$$issue/email.html"; done
	@echo "Or edit an issue with a live preview:  $(BIN)/newsletter preview 2025-04-asit-highlights"

test: $(VENV)/.installed
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) out outbox .pytest_cache .mypy_cache .ruff_cache
