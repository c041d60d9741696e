# Edge: the two commands of the quick start.
#   make demo   install what is needed, then run the main job end to end
#   make test   install what is needed, then run the whole test suite
# Both are safe to re-run: Debian packages are installed only when missing,
# the virtualenv is refreshed when pyproject.toml changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.edge-installed
PYTEST_ARGS ?=

# Debian packages: the tools Edge calls and the real tools the tests check against.
APT_PACKAGES := python3 python3-venv python3-pip squashfs-tools liblz4-1 liblzo2-2 attr zstd xz-utils umoci skopeo bzip2 grub-common \
	openssl e2fsprogs grub-emu dosfstools mtools libubootenv-tool u-boot-tools u-boot-qemu qemu-system-arm
# The benchmarks also build Debian trees and run the peer tools they compare against.
BENCH_PACKAGES := debootstrap time xdelta3 bsdiff casync curl

.PHONY: demo test deps deps-bench install-packages venv bench clean

deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(APT_PACKAGES)"

deps-bench:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(APT_PACKAGES) $(BENCH_PACKAGES)"

install-packages:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run as root to install Debian packages:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@echo "==> creating virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

venv: deps $(STAMP)

demo: venv
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: venv
	$(VENV)/bin/python -m pytest -n 2 $(PYTEST_ARGS)

bench: deps-bench $(STAMP)
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
