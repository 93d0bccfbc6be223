# Quick start: `make run` (install, get the data, train the default experiment)
# and `make test` (install the test extra, run the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXPERIMENT ?= mlp_fashion_mnist
FMNIST_DEB_DIR := /usr/share/datasets/fashion-mnist
# Test workers: the suite is compile-bound, so one worker per core pays off.
TEST_WORKERS ?= 2

.PHONY: install run test data bench clean tensorboard docs

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST's IDX files: $$JDL_DATA_DIR, else Debian's package (installed here
# when apt is available), else jdl downloads them from the canonical URLs.
data:
	@if [ -n "$$JDL_DATA_DIR" ] && [ -f "$$JDL_DATA_DIR/train-images-idx3-ubyte.gz" ]; then \
	  echo "data: using $$JDL_DATA_DIR"; \
	elif [ -f $(FMNIST_DEB_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "data: using $(FMNIST_DEB_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "data: installing dataset-fashion-mnist with apt"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null || \
	    { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	    echo "data: apt could not install dataset-fashion-mnist; jdl will try the canonical URLs"; \
	else \
	  echo "data: no local files and no apt; jdl will try the canonical URLs"; \
	fi

run: install data
	$(BIN)/jdl train $(EXPERIMENT)

# The tests, every docstring example of jdl (doctests), and the documentation site built strictly.
test: install data docs
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --doctest-modules tests jdl

# The documentation site (MkDocs Material + mkdocstrings), offline, into site/; a broken link, a missing
# page or a docstring mkdocstrings cannot read fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Every run's event files (RUN_DIR/tensorboard) in one TensorBoard.
tensorboard: install
	$(BIN)/python -m pip install -q "tensorboard>=2.16,<3"
	$(BIN)/tensorboard --logdir runs

clean:
	rm -rf $(VENV) .pytest_cache site
