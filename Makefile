# Every target runs inside the uv-managed virtualenv at .venv (created by `make install`).
UV ?= uv
RUN := $(UV) run --frozen
DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/stack
export DATABASE_URL

.PHONY: install fmt lint test migrate dev stack-up stack-down run-auth run-api run-realtime bench

install:
	$(UV) sync --frozen

fmt:
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

test: install
	$(RUN) pytest

dev: install
	$(RUN) python deploy/local/launcher.py dev

stack-up: install
	$(RUN) python deploy/local/launcher.py up

stack-down:
	$(RUN) python deploy/local/launcher.py down

migrate:
	$(RUN) python -m servicekit.migrate auth-service/migrations api-service/migrations \
		realtime-service/migrations

run-auth: migrate
	$(RUN) uvicorn auth_service.main:app --host 127.0.0.1 --port 8001

run-api: migrate
	$(RUN) uvicorn api_service.main:app --host 127.0.0.1 --port 8002

run-realtime: migrate
	$(RUN) uvicorn realtime_service.main:app --host 127.0.0.1 --port 8003

bench:
	$(RUN) python -m bench.verify_tokens
	$(RUN) python -m bench.login_throughput
	$(RUN) python -m bench.api_throughput
	$(RUN) python -m bench.realtime_fanout
	$(RUN) python -m bench.gateway_idle_streams
