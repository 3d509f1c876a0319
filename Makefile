# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test test-slow test-ui ui-browser bench bench-samplers bench-guidance bench-kjv bench-inverse data clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e '.[dev]'
	touch $@

# Fashion-MNIST, the King James Bible (bible-kjv-text, decoded by bible-kjv's `bible`) and the word list of the KJV
# benchmark (wamerican) ship as Debian packages; install those absent (needs root or sudo).
DATA_PACKAGES := dataset-fashion-mnist bible-kjv bible-kjv-text wamerican
data:
	@missing=$$(for p in $(DATA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null) \
	  || echo "warning: could not install $$missing; the configs that need them will fail"; }

# The web page's browser tests drive Debian's Chromium (Playwright's own browser download is not used).
ui-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

$(VENV)/.ui-test: $(VENV)/.dev
	$(PIP) install -e '.[ui-test]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m torchdiffusion demo

test: $(VENV)/.dev data
	$(PY) -m pytest -n 2 -q

test-slow: $(VENV)/.dev data
	$(PY) -m pytest -q -m slow

# Screenshots for docs/ui.md: TORCHDIFFUSION_UI_SHOTS=docs/figures make test-ui
test-ui: $(VENV)/.ui-test ui-browser
	$(PY) -m pytest -q -m ui

# Benchmarks (long; run them on a quiet machine). Figures go to docs/benchmarks.md.
bench: $(VENV)/.dev data
	$(PY) benchmarks/train_vs_diffusers.py --minutes 15 --num 2000

# k-diffusion is a peer here only; its package metadata pulls torchvision, which does not install beside
# torch 2.13, so it comes without dependencies and the benchmark loads its sampling module on its own.
bench-samplers: $(VENV)/.dev
	$(PIP) install --no-deps k-diffusion==0.1.1.post1
	nice -n 19 $(PY) benchmarks/samplers_gmm.py --plot outputs/samplers_gmm.png

bench-guidance: $(VENV)/.dev data
	$(PY) -m torchdiffusion train fashion_mnist_cond --max-cpu-minutes 20 --set train.num_threads=1 --out runs/fmnist_cond20
	$(PY) -m torchdiffusion train-classifier fashion_mnist_classifier --max-cpu-minutes 8 --set train.num_threads=1 --out runs/fmnist_clf
	$(PY) benchmarks/guidance_fmnist.py --model runs/fmnist_cond20 --classifier runs/fmnist_clf --per-class 20 \
		--scales 0,1,1.5,2,3,4 --classifier-scales 0.5,1,2,4,8 --classifier-sigma-max 10 --plot outputs/guidance_fmnist.png
	$(PY) -m torchdiffusion train shapes_text --max-cpu-minutes 20 --set train.num_threads=1 --out runs/shapes_text20
	$(PY) benchmarks/shapes_text.py --model runs/shapes_text20

# Masked diffusion against the autoregressive baseline on the KJV, 30 CPU-minutes each (docs/discrete.md).
bench-kjv: $(VENV)/.dev data
	nice -n 5 $(PY) benchmarks/kjv_text.py --max-cpu-minutes 30 --runs runs/kjv_bench --out outputs/kjv_text.json

# Inpainting, 4x super-resolution (SR3 model, solve with Downsample(4), bicubic) and deblurring on Fashion-MNIST;
# figures to docs/img/inverse_*.png, table in docs/inverse.md.
bench-inverse: $(VENV)/.dev data
	nice -n 5 $(PY) -m torchdiffusion train fashion_mnist --max-steps 500 --set train.num_threads=1 --set train.ckpt_every=100 --out runs/fmnist_base
	nice -n 5 $(PY) -m torchdiffusion train fashion_mnist_sr7 --max-steps 500 --set train.num_threads=1 --set train.ckpt_every=100 --out runs/fmnist_sr7
	nice -n 5 $(PY) -m torchdiffusion train-classifier fashion_mnist_classifier --max-steps 500 --set train.num_threads=1 --out runs/fmnist_clf
	test -f runs/features-fashion_mnist.safetensors || nice -n 5 $(PY) -m torchdiffusion train-features fashion_mnist --out runs/features-fashion_mnist.safetensors
	nice -n 5 $(PY) benchmarks/inverse_fmnist.py --model runs/fmnist_base --sr runs/fmnist_sr7 --classifier runs/fmnist_clf \
		--features runs/features-fashion_mnist.safetensors --num 200 --methods ddrm --sr-methods ddrm,pigdm --figures docs/img

clean:
	rm -rf $(VENV) outputs runs
