# `make demo` and `make test` are all a fresh checkout needs (Python ≥ 3.11).
VENV ?= .venv
BIN := $(VENV)/bin
ISSUES := 2025-04-asit-highlights 2025-05-twinning-and-training

.PHONY: demo test lint bench clean translations

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

# The demo signs its unsubscribe links with a throwaway key; set your own for real sends.
demo: export NEWSLETTER_SECRET_KEY ?= demo-only-key-not-for-real-mail
demo: $(VENV)/.installed
	@for issue in $(ISSUES); do $(BIN)/newsletter check $$issue && $(BIN)/newsletter render $$issue || exit 1; done
	$(BIN)/newsletter subscribers import subscribers/sample.csv
	$(BIN)/newsletter send 2025-04-asit-highlights --yes
	@echo
	@echo "The ASIT issue went to the sample list through the outbox transport:"
	@echo "  one message per subscriber in $(CURDIR)/outbox/2025-04-asit-highlights/ (open any .eml in a mail client)"
	@echo "  the rendered issues in $(CURDIR)/out/<issue>/email.html (the Spanish translation in es/,"
	@echo "  which went to the list's Spanish readers)"
	@echo "  the ledger: $(BIN)/newsletter status 2025-04-asit-highlights"
	@echo "Run it again: nobody is mailed twice. Edit an issue with a live preview:"
	@echo "  $(BIN)/newsletter preview 2025-04-asit-highlights"

test: $(VENV)/.installed
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/message.py
	$(BIN)/python bench/send.py --quick
	$(BIN)/python bench/ses_call.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/import.py

# The catalogues of pages and emails: collect the marked messages into the template, carry them
# into every language's .po (translate what is new or fuzzy there), compile the .mo files.
# A new language: $(BIN)/pybabel init -D newsletter -i $(LOCALE)/newsletter.pot -d $(LOCALE) -l xx
LOCALE := newsletter/locale
translations: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -o $(LOCALE)/newsletter.pot --project=newsletter \
		--copyright-holder="the newsletter authors" --sort-by-file --add-comments=Translators: .
	$(BIN)/pybabel update -D newsletter -i $(LOCALE)/newsletter.pot -d $(LOCALE) --ignore-obsolete
	$(BIN)/pybabel compile -D newsletter -d $(LOCALE) --statistics

clean:
	rm -rf $(VENV) out outbox .pytest_cache .mypy_cache .ruff_cache
