# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test test-slow bench data clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e '.[dev]'
	touch $@

# Fashion-MNIST ships as a Debian package; install it when absent (needs root or sudo).
data:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST configs will fail"; }

demo: $(VENV)/.base
	$(PY) -m torchdiffusion demo

test: $(VENV)/.dev data
	$(PY) -m pytest -n 2 -q

test-slow: $(VENV)/.dev data
	$(PY) -m pytest -q -m slow

bench: $(VENV)/.dev data
	$(PY) benchmarks/train_vs_diffusers.py

clean:
	rm -rf $(VENV) outputs runs
