# Every target installs what is missing first, so a fresh clone needs only `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test demo pool-demo bench lint constraints clean

install: $(STAMP)

# Reinstall when the pins change; constraints.txt makes a fresh machine get what was tested.
$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The daily DAG end to end on the simulated fleet, through a real Airflow; a summary per role.
demo: install
	$(BIN)/python -m fleet_demo $(DEMO_ARGS)

pool-demo: install
	$(BIN)/python -m fleet_demo.pool_demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The benchmark on the fleet simulator (about 10-15 minutes); writes bench/RESULTS.md and prints it.
bench: install
	$(BIN)/python -m bench

# Regenerate the lock after changing requirements.txt (then run `make test`).
constraints:
	$(BIN)/python -m pip install --quiet -r requirements.txt
	{ echo "# pip freeze of a working install of requirements.txt (Python 3.11). Regenerate: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo
