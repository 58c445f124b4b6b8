# Two entry points (README): `make demo` runs the main job on its embedded default,
# `make test` runs the test suite. Both create/reuse .venv and install the tested set
# (constraints.txt) within pyproject.toml's compatible ranges.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
WORKDIR ?= runs/demo

.PHONY: venv demo demo-classification test lint data bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,data]'
	# word2vec sample for the AVQ experiment; --no-deps because its metadata pins an old numpy.
	$(BIN)/python -m pip install -q --no-deps wefe==1.0.1
	touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST ships as a Debian package (offline); install it when missing.
data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Installing Debian package dataset-fashion-mnist (Fashion-MNIST IDX files)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; }; \
	fi

# The main job: IR-Softmax vs the margin-softmax family on the embedded data (~15 min, 2 cores).
demo: venv data
	$(BIN)/python -m experiments.ir_softmax --preset=default --workdir=$(WORKDIR)

# The foundation's proof: softmax ConvNet on Fashion-MNIST (>= 90 % test accuracy).
demo-classification: venv data
	$(BIN)/python -m experiments.classification --preset=default --workdir=runs/classification/default

# Two pytest-xdist workers (one per core of the CI machine), whole files per worker so module
# fixtures are built once; each worker needs ~5 GB at its peak. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -q tests vision_jax --doctest-modules -m 'not slow' --durations=25 \
	  -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: venv
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[bench]'

clean:
	rm -rf $(VENV) runs .pytest_cache
