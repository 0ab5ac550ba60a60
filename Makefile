# imgate — top-level entry points. Everything a fresh Debian 12 machine needs is installed by `deps`
# (build, run, package) and `deps-test` (the test, fuzz and format targets).
BUILD_DIR   ?= build
BUILD_TYPE  ?= Release
JOBS        ?= $(shell nproc)
CTEST_ARGS  ?=
FUZZ_SECONDS ?= 60
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Lets ccache hit across clones in different folders (CI builds a fresh clone).
export CCACHE_BASEDIR := $(CURDIR)

# Dependencies, all from Debian 12 (bookworm), in two sets so a build or packaging machine gets
# only what building, running and packaging need (`make deps`: build, run, package), and the
# test-only tools (clang for the fuzzers, clang-format, promtool, wrk/nginx for benchmarks,
# systemd-analyze, a headless browser for the dashboard test) come with the targets that use them
# (`make deps-test`: test*, fuzz, format*). GTest is a build dependency: CMake requires it.
DEB_BUILD_PACKAGES := build-essential cmake ninja-build ccache pkg-config \
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libyaml-cpp-dev libgtest-dev libgmock-dev \
  libssl-dev openssl libsystemd-dev libcli11-dev libhiredis-dev curl procps dpkg-dev file
# The fleet of hosts (make run-hosts, tests/integration/hosts_*): namespaces, veths, a bridge
# (iproute2) and the partition and delay rules (nftables).
DEB_HOSTS_PACKAGES := iproute2 nftables
# The optional shared engine's tests start their own redis-server (make run DIRECTORY=redis too).
DEB_REDIS_PACKAGES := redis-server redis-tools
# bench/vs_mosquitto.sh only (the same 1:1 load against the mosquitto MQTT broker; strace for its
# syscall counts): `make deps-bench`, not part of deps-test.
DEB_BENCH_PACKAGES := mosquitto libmosquitto-dev strace
DEB_TEST_PACKAGES := clang-14 clang-format-14 libclang-rt-14-dev prometheus wrk nginx-light \
  systemd chromium python3 $(DEB_HOSTS_PACKAGES) $(DEB_REDIS_PACKAGES)

# $(call install_missing,TARGET,PACKAGES): apt-get install those not installed yet (idempotent).
define install_missing
	@missing=""; for p in $(2); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "$(1): installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "$(1): all $(words $(2)) packages present"; fi
endef

CMAKE_FLAGS := -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCMAKE_CXX_COMPILER_LAUNCHER=ccache

.PHONY: all deps deps-test deps-redis deps-bench build run run-hosts test test-unit test-integration test-asan test-tsan fuzz package clean format format-check

all: build

deps:
	$(call install_missing,deps,$(DEB_BUILD_PACKAGES))

deps-test: deps
	$(call install_missing,deps-test,$(DEB_TEST_PACKAGES))

build: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

# DIRECTORY=redis: the gateways keep the directory (and upstream events) in a redis-server the
# fleet starts on a unix socket of its own (docs/operations.md, "The local fleet in redis mode").
DIRECTORY ?= announced
run: build
	@if [ "$(DIRECTORY)" = redis ]; then $(MAKE) --no-print-directory deps-redis; fi
	@BUILD_DIR=$(BUILD_DIR) IMGATE_FLEET_DIRECTORY=$(DIRECTORY) config/local/run-fleet.sh

deps-redis:
	$(call install_missing,deps-redis,$(DEB_REDIS_PACKAGES))

deps-bench:
	$(call install_missing,deps-bench,$(DEB_BENCH_PACKAGES))

# 2 dispatchers + 4 gateways, each in its own network namespace on a private bridge (needs root;
# docs/operations.md, "A fleet of hosts in network namespaces"). Ctrl-C removes everything.
run-hosts: build
	$(call install_missing,run-hosts,$(DEB_HOSTS_PACKAGES))
	@BUILD_DIR=$(BUILD_DIR) config/hosts/run-hosts.sh up

test: build deps-test
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --timeout 300 $(CTEST_ARGS)

test-unit: build deps-test
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

test-integration: build deps-test
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L integration $(CTEST_ARGS)

# Whole suite under AddressSanitizer + UndefinedBehaviorSanitizer. -O1 -g1 (line tables only)
# compiles much faster than -O2 -g and still gives file:line in reports; asserts stay enabled.
# CCACHE_NOHASHDIR: with -g ccache would hash the build dir path, so a fresh clone in another
# directory would miss the cache. UB aborts (-fno-sanitize-recover); leaks fail the test.
SAN_CMAKE := -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1"
test-asan: deps-test
	CCACHE_NOHASHDIR=1 cmake -S . -B build-asan $(SAN_CMAKE) -DIMGATE_SANITIZE="address;undefined"
	CCACHE_NOHASHDIR=1 cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS) --timeout 600 $(CTEST_ARGS)

# Whole suite under ThreadSanitizer; Asio-internal false positives go to tests/sanitizers/tsan.supp
# (each entry says why), never disabled tests.
test-tsan: deps-test
	CCACHE_NOHASHDIR=1 cmake -S . -B build-tsan $(SAN_CMAKE) -DIMGATE_SANITIZE=thread
	CCACHE_NOHASHDIR=1 cmake --build build-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/sanitizers/tsan.supp \
	  ctest --test-dir build-tsan --output-on-failure -j $(JOBS) --timeout 600 $(CTEST_ARGS)

# libFuzzer targets (clang, ASan+UBSan), each run FUZZ_SECONDS on a copy of its seed corpus.
fuzz: deps-test
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DIMGATE_FUZZ=ON -DBUILD_TESTING=OFF
	cmake --build build-fuzz -j $(JOBS) --target imgate_fuzzers
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzzers.sh build-fuzz

package: build
	cd $(BUILD_DIR) && cpack -G DEB

# Every C++ file of src/, tests/ and bench/ in the style of .clang-format (clang-format 14, as
# Debian 12 ships it); format-check fails on any file that differs (CI runs it).
FORMAT_FILES = find src tests bench \( -name '*.cpp' -o -name '*.hpp' \) -print0
format: deps-test
	$(FORMAT_FILES) | xargs -0 clang-format-14 -i

format-check: deps-test
	@$(FORMAT_FILES) | xargs -0 clang-format-14 --dry-run --Werror && echo "format-check: every file is formatted"


clean:
	rm -rf build build-asan build-tsan build-fuzz
