# The two front-door commands: `make demo` and `make test` (see README).
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
# The three Keras backends the pruning package is tested on.
BACKENDS := tensorflow jax torch

.PHONY: env pycaffe demo test test-fast test-backends-all clean

env:
	tools/bootstrap_venv.sh

# Real Caffe (pycaffe), built once and cached in ~/.cache/keraffe; tests compare against it.
pycaffe: env
	tools/build_pycaffe.sh $(PY) > /dev/null

# Real Caffe judges the demo's exports when it builds; if it cannot, OpenCV DNN does (and the table says so).
demo: env
	tools/build_pycaffe.sh $(PY) > /dev/null || echo "demo: real Caffe did not build (see above); OpenCV DNN judges instead" >&2
	$(PY) examples/demo.py --out out/demo

# The whole suite on TensorFlow (the fresh `pip install .[jax]` environment included, once), then
# everything marked `backends` again on JAX and on PyTorch: the per-layer conversions in both
# directions, a slice of the zoo, six keras.applications exports, keraffe's layers, pruning.
test: env pycaffe
	KERAFFE_REQUIRE_PYCAFFE=1 $(PYTEST) -n 2 -q
	for backend in jax torch; do \
		KERAS_BACKEND=$$backend KERAFFE_REQUIRE_PYCAFFE=1 $(PYTEST) -n 2 -q -m backends || exit 1; \
	done

# Everything but the slow model-level checks and the fresh environment, for quick local iterations.
test-fast: env
	$(PYTEST) -n 2 -q -m "not slow and not fresh_install"

# Longer than `make test` affords: every conversion test (the whole zoo, all the keras.applications
# exports) on JAX and on PyTorch too.
test-backends-all: env pycaffe
	for backend in jax torch; do \
		KERAS_BACKEND=$$backend KERAFFE_REQUIRE_PYCAFFE=1 $(PYTEST) -n 2 -q tests/convert || exit 1; \
	done

clean:
	rm -rf out .pytest_cache
