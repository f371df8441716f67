PYTHON ?= python3
VENV := .venv

.PHONY: venv rabbitmq run test bench clean

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

# The tests start their own SecantusDB, SMTP sink and SMS gateway (devstack fixtures).
test: venv rabbitmq
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: venv rabbitmq
	$(VENV)/bin/python -m bench

clean:
	rm -rf var/
