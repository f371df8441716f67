PYTHON ?= python3
VENV := .venv

.PHONY: venv rabbitmq browser promtool run test bench clean deploy-files audit lock

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# Starts RabbitMQ when it is installed but stopped; prints the install command when it is not.
rabbitmq: venv
	$(VENV)/bin/python -m devstack.rabbit

run: venv
	$(VENV)/bin/python -m devstack.run

# The console's browser test drives Debian's headless Chromium: installed here when it is missing
# (CI runs as root on Debian 12; elsewhere run it with sudo once, or the browser test is skipped).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "browser: /usr/bin/chromium and /usr/bin/chromedriver are installed"; \
	else \
		echo "browser: installing Debian's chromium and chromium-driver for the console test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# The alert rules' unit tests (tests/test_alerts.py) run promtool from Debian's prometheus package:
# downloaded with apt and only promtool extracted into .venv/bin, so no Prometheus server is installed
# or started on this machine.
promtool: $(VENV)/bin/promtool

$(VENV)/bin/promtool: | $(VENV)/.installed
	@echo "promtool: extracting it from Debian's prometheus package (apt-get download)"
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; cd $$tmp; \
		apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }; \
		dpkg-deb -x prometheus_*.deb extracted; cp extracted/usr/bin/promtool $(CURDIR)/$(VENV)/bin/promtool

# The tests start their own SecantusDB, SMTP sink and SMS gateway (devstack fixtures).
test: venv rabbitmq browser promtool
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: venv rabbitmq
	$(VENV)/bin/python -m bench

# deploy/k8s carries copies of config.yml, the RabbitMQ definitions and the alerts (kustomize reads
# files only below its folder); tests/test_deploy.py fails while they differ from the originals.
deploy-files: venv
	$(VENV)/bin/python deploy/refresh.py

clean:
	rm -rf var/
