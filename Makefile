# Lantu — `make demo` and `make test` are all a fresh Debian bookworm machine needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := $(shell sed 's/\#.*//' deps/apt.txt | xargs)
STAMP := $(VENV)/.lantu-installed
LEAFLET_VERSION := 1.9.4
LEAFLET := server/static/vendor/leaflet/leaflet.js
NODE_STAMP := node_modules/.lantu-installed
MAPLIBRE := server/static/vendor/maplibre-gl/maplibre-gl.js

.PHONY: install demo test lint bench clean-var

install: apt $(STAMP) $(LEAFLET) $(MAPLIBRE)

# Debian packages from deps/apt.txt: installed when missing (root or sudo), else the exact command is shown.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "Missing Debian packages. Run:  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
	  echo "Installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq$$missing; \
	fi

$(STAMP): deps/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r deps/requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# Leaflet for the HTML pages, from the npm registry (served by Lantu itself: no CDN, works offline).
$(LEAFLET):
	@command -v npm >/dev/null || { echo "npm not found: install Debian's npm (apt-get install npm) for the HTML map"; exit 1; }
	rm -rf $(VENV)/npm-leaflet && mkdir -p $(VENV)/npm-leaflet server/static/vendor/leaflet
	cd $(VENV)/npm-leaflet && npm pack --silent leaflet@$(LEAFLET_VERSION) >/dev/null && tar xzf leaflet-$(LEAFLET_VERSION).tgz
	cp -r $(VENV)/npm-leaflet/package/dist/* $(VENV)/npm-leaflet/package/LICENSE server/static/vendor/leaflet/

# MapLibre GL JS (the /viewer map, served by Lantu) and playwright-core (drives Debian's chromium in the viewer
# test; it downloads no browser), pinned in package-lock.json. Debian's npm when npm is missing.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "npm not found. Run:  sudo apt-get install -y npm"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm; }
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NODE_STAMP)

$(MAPLIBRE): $(NODE_STAMP)
	mkdir -p server/static/vendor/maplibre-gl
	cp node_modules/maplibre-gl/dist/maplibre-gl.js node_modules/maplibre-gl/dist/maplibre-gl.css \
	   node_modules/maplibre-gl/LICENSE.txt server/static/vendor/maplibre-gl/
	touch $(MAPLIBRE)

demo: install
	$(BIN)/lantu db start
	$(BIN)/lantu demo load --scale small
	$(BIN)/lantu serve

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check .

bench: install
	@for b in bench/*; do [ -x "$$b" ] && echo "== $$b" && $$b; done; true
