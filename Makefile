# Front door for people: `make run` starts the system, `make test` runs every test.
# The real build is CMake (build/ for the normal build, build-asan/ for ASan+UBSan).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DSB_WERROR=ON
endif

.PHONY: all deps build asan run test test-release fuzz bench clean install deb

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSB_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The whole system on this machine (a private redis-server unless REDIS_URL is set).
run: build
	@$(BUILD)/switchboard up

# Every test, in the ASan+UBSan build (unit, integration against a real redis-server, end to
# end), then every fuzzer for a bounded time (FUZZ_SECONDS each).
test: asan
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-10} scripts/fuzz.sh

# libFuzzer targets (clang, ASan+UBSan) for FUZZ_SECONDS each (default 30).
fuzz: deps
	@scripts/fuzz.sh

# Same tests on the optimised build.
test-release: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Installs the build into DESTDIR/PREFIX (FHS: bin/switchboard, share/switchboard/web, the
# static library and headers) and example settings into DESTDIR/etc/switchboard (an existing
# *.env is kept: the new one lands beside it as *.env.example). SYSTEMD=1 adds the units
# and the sysusers file under PREFIX/lib.
PREFIX  ?= /usr/local
DESTDIR ?=
install: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	   -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@for c in runtime dev config $(if $(SYSTEMD),systemd); do \
	   DESTDIR=$(DESTDIR) cmake --install $(BUILD) --component $$c || exit 1; done

# dist/switchboard_VERSION_ARCH.deb (debhelper; a Release build in build-deb/).
deb: deps
	@scripts/deb.sh

bench: build
	@bench/run.sh $(BUILD)/switchboard

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-deb dist
