# Quick start: `make train` (trains configs/quickstart.yaml), `make test` (runs the test suite).
# Each installs the Debian packages that are missing and builds in Release first.
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= configs/quickstart.yaml
ARGS ?=

.PHONY: deps build train test unit bench clean
deps:
	@bash tools/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The quick start builds what it runs: the CLI alone, not the test binaries.
train: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target mmdflow
	$(BUILD)/mmdflow train --config $(CONFIG) $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE integration

# The block layout at the paper's setting up to 10^5 particles, then the dense layout (the original
# code's network) at the paper's dense setting with noise injection. Each prints the kernels' path,
# the BLAS core and the ratios against the in-run float32 product and the FMA peak.
bench: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target mmdflow
	$(BUILD)/mmdflow bench --config configs/paper/noise_injection.yaml --particles 1000,10000,100000 $(ARGS)
	$(BUILD)/mmdflow bench --config configs/paper/figure1_dense.yaml --set noise.beta0=1 --repeats 10 $(ARGS)

clean:
	rm -rf $(BUILD)
