# Two commands on a fresh Debian machine: `make demo` and `make test`.
# Each installs what it needs: Debian packages (as root or through sudo), a
# virtualenv in .venv, and the Python packages.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the demo publishes its recording (ffmpeg, a font for the cover); the tests also need a
# headless sound card (jackd2) and systemd's tools
DEMO_PACKAGES := ffmpeg fonts-dejavu-core libportaudio2
APT_PACKAGES := $(DEMO_PACKAGES) jackd2 systemd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test run bench fuzz system-packages demo-packages clean

demo: demo-packages $(VENV)/.installed
	$(BIN)/choir-demo

test: system-packages $(VENV)/.installed
	$(BIN)/python -m pytest

run: $(VENV)/.installed
	$(BIN)/twistd -n --pidfile= choir

bench: $(VENV)/.installed
	$(BIN)/python bench/capacity.py

# every parser a client reaches, 100 000 generated cases each (FUZZ_CASES=N to change)
FUZZ_CASES ?= 100000
fuzz: $(VENV)/.installed
	$(BIN)/python bench/fuzz.py --cases $(FUZZ_CASES)

# Only what is missing is installed; apt-get update runs at most once.
demo-packages: override APT_PACKAGES := $(DEMO_PACKAGES)
demo-packages: system-packages

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# compat editable mode: twistd only finds twisted/plugins/ of a flat layout this way.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --config-settings editable_mode=compat -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis twisted/plugins/dropin.cache
