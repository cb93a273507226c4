# Two entry points: `make demo` and `make test`. Each sets itself up on a fresh Linux machine
# (virtual environment in .venv, torch pinned by constraints.txt) and is quick the second time.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Every extra that has tests, so that no test skips for a missing package. The stamp
# names the extras: installing with other EXTRAS (make test EXTRAS=dev) is not mistaken for done.
EXTRAS ?= dev,viewer,mesh,open3d,pandaset,argoverse2,sim,ros,cluster,rl,perception
comma := ,
STAMP := $(VENV)/.simrecon-installed-$(subst $(comma),-,$(EXTRAS))
# System packages: Chromium for the browser test of the viewer (it skips without it), libusb for open3d.
SYSDEPS := chromium libusb-1.0-0
SYSSTAMP := $(VENV)/.simrecon-sysdeps

.PHONY: demo test setup clean-venv

$(SYSSTAMP):
	@mkdir -p $(VENV)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the tests that need them will skip"; \
	  fi; \
	else echo "not root or no apt-get: install $(SYSDEPS) yourself for the browser test and open3d"; fi
	@touch $(SYSSTAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/simrecon demo -o demo-out

test: $(SYSSTAMP) $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
