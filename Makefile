# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or reuses .venv and installs what it needs: torch==2.13.0 first, on its own
# (an unpinned torch would pull a multi-GB CUDA build), then rsft with the extras it uses.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: demo test test-slow bench venv clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PIP) install -q $(TORCH)
	touch $@

$(VENV)/.rsft: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[test,ctranslate2,math,json]'
	touch $@

# bubblewrap gives the code-execution scorer its strongest sandbox; without it (no root, no apt),
# the scorer falls back to unshare or plain-process mode and the tests for those modes still run.
$(VENV)/.sandbox: | $(PY)
	command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; } \
	  || echo "bubblewrap not installed: the code scorer will use unshare/process mode"
	touch $@

venv: $(VENV)/.rsft

demo: $(VENV)/.rsft
	$(VENV)/bin/rsft demo

test: $(VENV)/.rsft $(VENV)/.sandbox
	$(PY) -m pytest -p no:cacheprovider

test-slow: $(VENV)/.rsft $(VENV)/.sandbox
	$(PY) -m pytest -p no:cacheprovider -m slow

bench: $(VENV)/.rsft
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) runs
