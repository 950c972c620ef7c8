# hrpose: `make` installs into .venv; `make test`, `make demo`, `make demo-bottomup`, `make bench`,
# `make clean`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.hrpose-installed
DEMO_CFG := experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml
BOTTOMUP_DEMO_CFG := experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml
# The bottom-up demo starts its trunk from the top-down demo's model (MODEL.PRETRAINED there).
TOPDOWN_DEMO_MODEL := output/synthetic/pose_hrnet/w16_128x96_adam_lr2e-3/model_best.pth
# `make test` runs the suite in this many pytest-xdist processes of one thread each, every test
# file in one process (its module fixtures built once); `make test TEST_WORKERS=8` on more cores.
TEST_WORKERS ?= 2

.PHONY: all install test demo demo-bottomup bench clean

all: install

install: $(STAMP)

# Reinstall only when the requirements, setup.py or the compiled extension's source change.
$(STAMP): requirements.txt setup.py lib/hrpose/nms/_oks_nms.pyx
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .
	touch $(STAMP)

test: install
	$(VPY) -m ruff check .
	OMP_NUM_THREADS=1 $(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

demo: install
	$(VPY) tools/demo.py --cfg $(DEMO_CFG)

$(TOPDOWN_DEMO_MODEL): | $(STAMP)
	$(VPY) tools/demo.py --cfg $(DEMO_CFG)

demo-bottomup: install $(TOPDOWN_DEMO_MODEL)
	$(VPY) tools/demo.py --cfg $(BOTTOMUP_DEMO_CFG)

bench: install
	$(VPY) bench/bench_oks_nms.py
	$(VPY) bench/bench_dark_decode.py
	$(VPY) bench/bench_topdown_decode.py
	$(VPY) bench/bench_ae_grouping.py
	$(VPY) bench/bench_hae_loss.py
	$(VPY) bench/bench_amp_training.py
	$(VPY) bench/bench_eval.py
	$(VPY) bench/bench_data_pipeline.py
	$(VPY) bench/bench_inference.py

clean:
	rm -rf $(VENV) build lib/*.egg-info lib/hrpose/nms/_oks_nms.c lib/hrpose/nms/*.so .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
