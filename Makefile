# edgegw: the two commands a newcomer needs are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test sysdeps testdeps install firmware-deps bench bench-quick bench-outbox clean

# Mosquitto (the local broker for the demo and the tests) and socat
# (pseudo-terminal pairs standing in for RS-485 adapters) come from Debian;
# openssl makes the test certificates for the TLS test.
sysdeps:
	@missing=""; \
	{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# What only the tests use: systemd-analyze (the unit's verify and security
# score), strace (the unit's syscall filter against the real daemon),
# shellcheck (install.sh), faketime (wall-clock jumps), the CA list the
# example config names.
testdeps:
	@missing=""; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	[ -f /etc/ssl/certs/ca-certificates.crt ] || missing="$$missing ca-certificates"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# A folder of wheels, for the offline install test (install.sh --wheels).
.wheels/.built: pyproject.toml $(VENV)/.installed
	$(PY) -m pip wheel -q -w .wheels .
	touch $@

# The demo needs only what a site box runs; the tests add pytest, hypothesis,
# mypy and the MicroPython stubs on top.
$(VENV)/.runtime: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The real MicroPython interpreter (WebAssembly port, from npm) for the firmware tests.
firmware/node_modules/.installed: firmware/package.json firmware/package-lock.json
	@command -v npm >/dev/null || { echo "installing nodejs + npm from Debian"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	cd firmware && npm ci --no-audit --no-fund --loglevel=error
	touch $@

firmware-deps: firmware/node_modules/.installed

demo: sysdeps $(VENV)/.runtime
	$(VENV)/bin/edgegw demo

test: sysdeps testdeps install firmware-deps .wheels/.built
	EDGEGW_TEST_WHEELS=$(CURDIR)/.wheels $(PY) -m pytest -q -p no:cacheprovider

# Benchmarks print figures (docs/performance.md); they never fail a build.
# bench/run needs gcc for its slow-disk shim and installs matplotlib for its plots.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	@command -v gcc >/dev/null || { echo "installing gcc from Debian (bench/slowfsync.c)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc libc6-dev; }
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

bench: sysdeps $(VENV)/.bench-installed
	$(PY) bench/run

bench-quick: sysdeps $(VENV)/.bench-installed
	$(PY) bench/run --quick

bench-outbox: install
	$(PY) bench/outbox.py

clean:
	rm -rf $(VENV) firmware/node_modules .pytest_cache .wheels
