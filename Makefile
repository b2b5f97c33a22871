# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# setuptools' editable install of a mapped layout (sdk/ -> edgekit) always emits an informational
# "Editable installation." warning, which pip prints even with --quiet; nothing in it needs acting on.
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: demo test test-serial test-slow perf perf-int8 zoo clean

# A changed pyproject.toml gets a fresh environment: upgrading one in place can send pip's
# resolver past its depth limit (seen when pydantic was pinned down for litert-torch).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(QUIET_EDITABLE) $(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(PY) -m edgekit.demo --output demo-out

# Two pytest-xdist workers, each test file whole on one of them (tests/conftest.py): the suite waits
# on servers, clusters and child processes, and one process kept 1.2 of 2 cores busy (1498 s; on two
# workers 891 s, 2026-12-02). `make test-serial` runs it in one process.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-serial: $(STAMP)
	$(PY) -m pytest -q

# Tests too slow for every CI run (MobileNetV2 at 224x224 in every format): about 3-6 min.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# One pytest process per runtime for latency: runtimes slow each other down inside one process.
perf: $(STAMP)
	$(PY) -m pytest tests/perf -k "conversion or own_tool or cold_start or rebuild" -o addopts="" -q -s
	for fmt in tflite onnx openvino; do \
		$(PY) -m pytest tests/perf -k "half and $$fmt" -o addopts="" -q -s || exit 1; \
	done
	$(PY) -m pytest tests/perf/test_serve_load.py -o addopts="" -q -s
	$(PY) -m pytest tests/perf/test_cluster.py -o addopts="" -q -s
	$(PY) -m pytest tests/perf/test_torch_models.py -o addopts="" -q -s
	$(PY) -m pytest tests/perf/test_remote.py -o addopts="" -q -s

# The architecture zoo (tests/zoo): trains ~20 models (cached in ~/.cache/edgekit-zoo), converts each
# for cpu, gpu, npu and cpu-fp32 in every format, benchmarks them and writes docs/coverage.md.
# About 80-100 min on a shared 2-core host (82 min measured 2026-12-02 for 21 architectures, before the
# 3 PyTorch rows); not part of `make test` (which runs a two-model subset).
zoo: $(STAMP)
	$(QUIET_EDITABLE) $(PY) -m pip install --quiet -e '.[test,torch]'
	nice -n 5 $(PY) -m tests.zoo.coverage all

# int8 on trained MobileNetV3/EfficientNet/Transformer/MobileNetV2 (trains each on digits first; long).
perf-int8: $(STAMP)
	$(PY) -m tests.perf.int8_repair .benchmarks/int8-repair

clean:
	rm -rf $(VENV) demo-out edgekit-out .pytest_cache .benchmarks
