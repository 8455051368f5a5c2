# Set-up is part of every target: a fresh clone needs only `make test` or `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mtp-installed
PYTEST_ARGS ?= -n 2

.PHONY: test demo lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

DEMO_DIR := outputs/demo
MTP := $(VENV)/bin/mtp
DEMO_PRETRAIN := configs/pretraining/tiny-samrs-cpu.yaml
DEMO_SCRATCH := configs/segmentation/tiny-loveda-cpu.yaml
DEMO_FROM_MTP := configs/segmentation/tiny-loveda-mtp-cpu.yaml

# The whole story on CPU (about 6 minutes on 2 idle cores): synthetic SOTA / SIOR / FAST -> multi-task
# pretraining of a tiny ViT+RVSA on all three tasks -> fine-tune UperNet segmentation on synthetic LoveDA
# from that encoder and from scratch -> both held-out mIoUs side by side.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	for set in sota sior fast; do \
	  $(MTP) tool make-synthetic --format samrs --variant $$set --out $(DEMO_DIR)/samrs --n 48 --size 192 || exit 1; done
	$(MTP) fit --config $(DEMO_PRETRAIN) --trainer.enable_progress_bar false
	$(MTP) tool make-synthetic --format loveda --layout release --out $(DEMO_DIR)/loveda --n 96 --size 256
	$(MTP) fit --config $(DEMO_SCRATCH) --trainer.enable_progress_bar false
	$(MTP) test --config $(DEMO_SCRATCH) --ckpt_path $(DEMO_DIR)/checkpoints/last.ckpt --trainer.enable_progress_bar false
	$(MTP) fit --config $(DEMO_FROM_MTP) --trainer.enable_progress_bar false
	$(MTP) test --config $(DEMO_FROM_MTP) --ckpt_path $(DEMO_DIR)/finetune-mtp/checkpoints/last.ckpt --trainer.enable_progress_bar false
	@$(PY) -c "import json; \
	s = json.load(open('$(DEMO_DIR)/test/metrics.json')); m = json.load(open('$(DEMO_DIR)/finetune-mtp/test/metrics.json')); \
	print('\nHeld-out mIoU on the synthetic LoveDA Val split (same fine-tuning, 600 iterations):'); \
	print(f\"  from scratch:                    {s['mIoU'] / 100:.3f}\"); \
	print(f\"  from the MTP-pretrained encoder: {m['mIoU'] / 100:.3f}\"); \
	print('Pretraining files: $(DEMO_DIR)/pretrain/official/; predictions: $(DEMO_DIR)/test/show/, $(DEMO_DIR)/finetune-mtp/test/show/')"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
