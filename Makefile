# glowlab: `make demo` and `make test` do all set-up on a fresh Debian machine.
#
# Set-up steps, each skipped when already done:
#   - Debian packages (beanstalkd; chromium for the browser tests; python3-venv
#     if venv cannot be made), through apt-get as root or passwordless sudo;
#   - .venv (python3 -m venv);
#   - pip install -e '.[notebook,test]', again only when pyproject.toml or this Makefile changes.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Prerequisites are built left to right: Debian packages before the venv.
.NOTPARALLEL:

VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Debian packages each goal needs; each package installs a program of its name,
# except where written PROGRAM:PACKAGE.
NEEDS_demo := beanstalkd
NEEDS_test := beanstalkd chromium ip:iproute2
NEEDS_docs :=
NEEDS_bench := beanstalkd parallel
NEEDS_faults := beanstalkd ip:iproute2

.PHONY: help demo test docs bench bench-quick faults system-demo system-test system-docs system-bench \
	system-faults

help:
	@echo "make demo   set up, then run a parameter sweep on a private cluster"
	@echo "make test   set up, then run the whole test suite"
	@echo "make docs   build the documentation into site/"
	@echo "make bench  measure throughput and latency against baselines (about 10 minutes);"
	@echo "            writes bench/results.json and the figures of docs/performance.md"
	@echo "make bench QUICK=1 (or make bench-quick)   a one-minute smoke run that writes nothing"
	@echo "make faults break listeners, beanstalkd, the network, SMTP on purpose and count the"
	@echo "            damage (about 10 minutes, as root); writes faults/results.json and the"
	@echo "            figures of docs/reliability.md (make test runs its quick size)"

demo: system-demo $(STAMP)
	$(VENV)/bin/glowlab demo

# pytest exits 5 when it collected no tests: a suite that ran nothing has failed.
test: system-test $(STAMP)
	@rc=0; $(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS) </dev/null || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

docs: system-docs $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# The full bench rewrites bench/results.json, docs/performance.md's figures and
# docs/img/performance.png; CI runs only the quick path (tests/test_bench.py).
bench: system-bench $(STAMP)
	$(VENV)/bin/python -m bench.run $(if $(QUICK),--quick) </dev/null

bench-quick:
	$(MAKE) bench QUICK=1

# The fault campaign, full size (tests/test_faults.py runs it at its quick size in
# make test). It needs root for its network namespaces.
faults: system-faults $(STAMP)
	$(VENV)/bin/python -m faults </dev/null

# Install the goal's missing Debian packages (apt-get update once, then install),
# or say exactly what to run when we may not.
system-demo system-test system-docs system-bench system-faults: system-%:
	@missing=""; \
	for need in $(NEEDS_$*); do \
	  command -v "$${need%%:*}" >/dev/null 2>&1 || missing="$$missing $${need#*:}"; \
	done; \
	if [ ! -x $(VENV)/bin/python ] && ! python3 -c 'import ensurepip' 2>/dev/null; then \
	  missing="$$missing python3-venv"; \
	fi; \
	missing="$${missing# }"; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else sudo=none; fi; \
	if [ "$$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "install $$missing: sudo apt-get install $$missing" >&2; exit 1; \
	fi; \
	echo "installing $$missing with apt-get"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing </dev/null

# A venv left half-made (no pip) would break every later run: remove it on failure.
$(VENV)/bin/python:
	python3 -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# editable_mode=compat puts the tree on sys.path with a plain .pth line; the
# default import hook costs every glowlab process ~10 ms of start-up.
$(STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --disable-pip-version-check --progress-bar off \
	  --config-settings editable_mode=compat -e '.[notebook,test]' </dev/null
	touch $@
