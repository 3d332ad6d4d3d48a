# fl-crb: the two front doors are `make test` and `make emulate TOPO=four-edge`.
# Both install what is missing first: Debian packages (as root), then a virtual
# environment in .venv made from the system Python, so that it sees Debian's Mininet.

SHELL := /bin/bash
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PYTHON := $(VENV)/bin/python
# gcc, libc6-dev and libnetfilter-queue-dev build the emulator's delay daemon (emulation/delayd.c).
APT_PACKAGES := python3 python3-venv python3-pip mininet bridge-utils iperf3 iptables iputils-ping \
	gcc libc6-dev libnetfilter-queue-dev
TOPO ?= four-edge

.PHONY: install system-deps test test-slow lint emulate bench clean-net

system-deps:
	@command -v dpkg-query >/dev/null || { echo "not a Debian system: install $(APT_PACKAGES) by hand"; exit 0; }; \
	missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:" $$missing "(install them as root)"; exit 1; fi; \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PYTHON) -m pip install -q -e '.[test]'
	touch $@

install: system-deps $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .

## The suite CI runs: everything but the tests marked slow.
test: lint
	$(PYTHON) -m pytest -m "not slow"

test-slow: install
	$(PYTHON) -m pytest -m slow

bench: install
	$(PYTHON) benchmarks/simulator_throughput.py

## The default scenario: federated CRB-DRQN starting from weights pre-trained in simulation
## (trained now unless cached in runs/pretrained), 120 s on the emulated network; the run
## folder lands in runs/emulate/.
## More options through EMULATE_ARGS, e.g. make emulate EMULATE_ARGS="--policy round-robin".
emulate: install
	$(VENV)/bin/fl-crb emulate --topology topologies/$(TOPO).yaml $(EMULATE_ARGS)

## Remove what a killed emulation left behind (bridges, iptables chains, delay daemons).
clean-net: install
	$(VENV)/bin/fl-crb netcheck --cleanup
