# Every target runs inside the uv-managed virtualenv at .venv (created by `make install`).
UV ?= uv
RUN := $(UV) run --frozen
DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/stack
export DATABASE_URL

.PHONY: prerequisites install fmt lint test test-fast migrate dev stack-up stack-down run-auth run-api run-realtime bench \
	compose-test images

# What the tests and the native stack need (uv, Debian packages, the JavaScript client's
# packages), installed when missing; without root it names the command to run instead.
prerequisites:
	deploy/local/prerequisites.sh

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (CI, this machine), Python
# would otherwise compile every module of every process the tests start, each time (a service
# took 3.5 s to import instead of 1.4 s).
install: prerequisites
	$(UV) sync --frozen --compile-bytecode

# Formatting first: what it fixes (long lines in generated migrations) would stop the linter.
fmt:
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

# The tiers (docs/testing.md): test-fast while you work (no gateway, no browser, no stack);
# test, everything that runs natively, the README's test command and what CI runs first.
# Two pytest-xdist workers: one runs the end-to-end tests, the other the rest (conftest.py).
PARALLEL := -n 2

test: install
	$(RUN) pytest $(PARALLEL)

test-fast: install
	$(RUN) pytest -m "not e2e and not slow" $(PARALLEL)

dev: install
	$(RUN) python -m devstack.launcher dev

stack-up: install
	$(RUN) python -m devstack.launcher up

stack-down:
	$(RUN) python -m devstack.launcher down

# The event log's migrations run after api-service's, whose history created its tables.
migrate:
	$(RUN) python -m servicekit.migrate auth-service/migrations api-service/migrations \
		libs/eventlog/src/eventlog/migrations realtime-service/migrations

run-auth: migrate
	$(RUN) python -m servicekit.serve auth_service.main:app --port 8001

run-api: migrate
	$(RUN) python -m servicekit.serve api_service.main:app --port 8002

run-realtime: migrate
	$(RUN) python -m servicekit.serve realtime_service.main:app --port 8003

bench:
	$(RUN) python -m bench.verify_tokens
	$(RUN) python -m bench.login_throughput
	$(RUN) python -m bench.api_throughput
	$(RUN) python -m bench.realtime_fanout
	$(RUN) python -m bench.gateway_idle_streams
	$(RUN) python -m bench.event_pipeline

# The compose stack built, brought up and tested through its gateway, a second copy beside it,
# then both taken down (deploy/compose/test.sh says which variables it reads).
compose-test: install
	deploy/compose/test.sh

# The three service images and the gateway's, tagged as the chart's values expect:
# $(REGISTRY)/<service>-service:$(TAG) and $(REGISTRY)/stack-gateway:$(TAG) (no registry prefix
# when REGISTRY is empty).
REGISTRY ?=
# Defaults to the chart's appVersion, the tag its values use when image.tag is empty.
TAG ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' deploy/helm/stack/Chart.yaml)
IMAGE_PREFIX := $(if $(REGISTRY),$(patsubst %/,%,$(REGISTRY))/,)
# PYTHON_IMAGE and NGINX_IMAGE, when set, replace the Dockerfiles' base images (a mirror or a
# local build).
IMAGE_BUILD_ARGS := $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE),)
GATEWAY_BUILD_ARGS := $(if $(NGINX_IMAGE),--build-arg NGINX_IMAGE=$(NGINX_IMAGE),)

images:
	for service in auth api realtime; do \
		docker build $(IMAGE_BUILD_ARGS) -f $$service-service/Dockerfile \
			-t $(IMAGE_PREFIX)$$service-service:$(TAG) . || exit 1; \
	done
	docker build $(GATEWAY_BUILD_ARGS) -f deploy/gateway/Dockerfile \
		-t $(IMAGE_PREFIX)stack-gateway:$(TAG) .
