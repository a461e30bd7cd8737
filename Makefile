# Two commands for a fresh clone (see README):
#   make demo   installs wanx_nb and runs the model-comparison notebook headless (emulator when no key)
#   make test   installs the test tools and runs every test: unit, emulator, notebooks (nbval), browser UI
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check
export JUPYTER_PLATFORM_DIRS := 1

.PHONY: demo test test-fast bench system mutation

$(PY):
	python3 -m venv $(VENV)

demo: $(PY)
	$(PIP) -e '.[notebook]'
	$(VENV)/bin/wanx-nb report --out report

test: $(PY) system
	$(PIP) -e '.[test,ui]'
	$(PY) -m mypy wanx_nb
	$(PY) -m pytest -q -p no:cacheprovider tests notebooks \
	    --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval-sanitize.cfg

# Debian packages the tests use: Chromium for the browser tests (a test tool's own browser download
# cannot work here), and a CJK font so the emulator and the grid draw Chinese prompts, not boxes.
SYSTEM_PACKAGES := chromium fonts-wqy-microhei
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || [ "$$(id -u)" != 0 ] || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

test-fast: $(PY)
	$(PY) -m pytest -q -p no:cacheprovider tests -m "not ui"

bench: $(PY)
	$(PIP) -e '.[test]'
	$(PY) bench/run.py

# Mutation testing of the pure core; writes bench/mutation-report.md (see README "Mutation testing").
mutation: $(PY)
	$(PIP) -e '.[test,mutation]'
	$(PY) tools/mutation.py
