# honeyDue functions. `make dev` runs the API locally; `make test` runs every
# check. Both install or start what they need (see scripts/).
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Toolchain (fast linker) and services (Postgres, Redis) for a recipe.
WITH_ENV = eval "$$(scripts/toolchain.sh)" && eval "$$(scripts/services.sh)"

.PHONY: help dev watch test bench build lint fmt services services-stop sqlx-prepare clean \
        k3s openapi k3s-check edge-check chaos sam-validate sam-build images push release deploy fuzz

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

dev: ## build, start Postgres + Redis, migrate, seed a demo user, serve the API on 127.0.0.1:3000
	@scripts/dev.sh

watch: ## the functions under cargo lambda watch on 127.0.0.1:9000 (rebuild on change)
	@scripts/watch.sh

test: ## fmt, clippy, every test (real Postgres, Redis, S3, SMTP), manifest and template checks, the edge behind Traefik, the image build steps
	@$(WITH_ENV) && \
	  eval "$$(scripts/pytools.sh awslambdaric moto aiosmtpd)" && export HONEYDUE_PYTHON=$$PWD/.local/venv/bin/python && \
	  eval "$$(scripts/nodetools.sh)" && \
	  eval "$$(scripts/pytools.sh sam)" && export HONEYDUE_SAM_VENV=$$PWD/.local/tools/sam && \
	  scripts/prune-test-dbs.sh && \
	  cargo fmt --all --check && \
	  cargo clippy --workspace --all-targets --quiet -- -D warnings && \
	  cargo test --workspace && \
	  scripts/k3s-check.sh && \
	  scripts/edge-check.sh && \
	  scripts/chaos.sh --short && \
	  TAG=0123456789ab scripts/deploy.sh --render && \
	  scripts/image-check.sh

bench: ## shim vs direct axum vs cargo lambda watch side by side, the board, every list and the scheduled scans at scale; writes BENCHMARKS.md
	@$(WITH_ENV) && eval "$$(scripts/pytools.sh cargo-lambda)" && \
	  { command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }; } && \
	  cargo build --release -p honeydue-shim -p honeydue-bench -p migrate -p api-tasks \
	    -p api-documents -p api-contractors -p api-notifications -p api-residences -p api-admin \
	    -p cron-task-reminders -p cron-overdue-reminders -p cron-warranty-reminders -p cron-daily-digest && \
	  server=$$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/")))' "$$DATABASE_URL") && \
	  psql "$${server}postgres" -qc 'DROP DATABASE IF EXISTS honeydue_bench WITH (FORCE)' -c 'CREATE DATABASE honeydue_bench' && \
	  DATABASE_URL="$${server}honeydue_bench" "$${CARGO_TARGET_DIR:-target}"/release/migrate >/dev/null && \
	  psql "$${server}honeydue_bench" -qc "INSERT INTO users (email, password_hash) SELECT 'user' || g || '@example.com', 'x' FROM generate_series(1, 1000) g" && \
	  DATABASE_URL="$${server}honeydue_bench" python3 scripts/bench.py && \
	  DATABASE_URL="$${server}honeydue_bench" python3 scripts/bench_board.py && \
	  { psql "$${server}postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = 'honeydue_bench_jobs'" | grep -q 1 || \
	    psql "$${server}postgres" -qc 'CREATE DATABASE honeydue_bench_jobs'; } && \
	  DATABASE_URL="$${server}honeydue_bench_jobs" "$${CARGO_TARGET_DIR:-target}"/release/migrate >/dev/null && \
	  DATABASE_URL="$${server}honeydue_bench_jobs" python3 scripts/bench_jobs.py && \
	  { psql "$${server}postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = 'honeydue_bench_lists'" | grep -q 1 || \
	    psql "$${server}postgres" -qc 'CREATE DATABASE honeydue_bench_lists'; } && \
	  DATABASE_URL="$${server}honeydue_bench_lists" "$${CARGO_TARGET_DIR:-target}"/release/migrate >/dev/null && \
	  DATABASE_URL="$${server}honeydue_bench_lists" python3 scripts/bench_lists.py && \
	  { echo; cat scripts/bench_notes.md; } >> BENCHMARKS.md

build: ## release build of every function binary (host target)
	@eval "$$(scripts/toolchain.sh)" && cargo build --workspace --bins --release

lint: ## clippy only
	@eval "$$(scripts/toolchain.sh)" && cargo clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	cargo fmt --all

services: ## start (or find) Postgres and Redis; prints their URLs
	@scripts/services.sh

services-stop: ## stop the project-local Postgres and Redis
	@scripts/services.sh stop

sqlx-prepare: ## refresh .sqlx/ (compile-time query data) from a migrated database
	@$(WITH_ENV) && \
	  url=$$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/honeydue_sqlx")))' "$$DATABASE_URL") && \
	  psql "$${url%/*}/postgres" -qc 'DROP DATABASE IF EXISTS honeydue_sqlx WITH (FORCE)' -c 'CREATE DATABASE honeydue_sqlx' && \
	  for f in migrations/*.sql; do psql "$$url" -q -v ON_ERROR_STOP=1 -f "$$f" >/dev/null || exit 1; done && \
	  rm -rf .sqlx && mkdir .sqlx && \
	  find functions shared -name '*.rs' -path '*/src/*' -exec touch {} + && \
	  SQLX_OFFLINE=false SQLX_OFFLINE_DIR=$$PWD/.sqlx DATABASE_URL=$$url cargo check -q --workspace --all-targets && \
	  echo "sqlx-prepare: $$(ls .sqlx | wc -l) queries"

k3s: ## render k3s/base/generated and k3s/components/hpa from template.yaml (k3s-gen)
	@eval "$$(scripts/toolchain.sh)" && cargo run -q -p k3s-gen --

openapi: ## regenerate functions/api-docs/openapi.json from every function's route table (make test checks it is current)
	@$(WITH_ENV) && UPDATE_OPENAPI=1 cargo test -q -p honeydue-e2e --test openapi the_committed_openapi_document_is_current

k3s-check: ## offline: kustomize render, Kubernetes 1.34 schemas, checkov, hadolint, sam validate --lint, cfn-lint
	@scripts/k3s-check.sh

edge-check: ## the production overlay behind the real Traefik, pods as processes: routes, errors, limits, TLS, rollouts (needs the debug build)
	@$(WITH_ENV) && scripts/edge-check.sh

chaos: ## faults under load through the real Traefik (Postgres, Redis, S3, SMTP, workers, pods, the scheduled runs); writes the table to RELIABILITY.md
	@$(WITH_ENV) && cargo build --workspace --bins && \
	  scripts/chaos.sh --out .local/chaos-table.md --doc RELIABILITY.md

sam-validate: ## sam validate --lint and cfn-lint on template.yaml (offline)
	@eval "$$(scripts/pytools.sh sam)" && SAM_CLI_TELEMETRY=0 sam validate --lint && cfn-lint template.yaml

ARCH ?= x86_64
sam-build: ## sam build with cargo-lambda, no Docker (ARCH=x86_64|arm64; arm64 cross-compiles with zig)
	@eval "$$(scripts/toolchain.sh)" && eval "$$(scripts/pytools.sh sam cargo-lambda)" && \
	  SAM_CLI_TELEMETRY=0 sam build --beta-features --parameter-overrides Architecture=$(ARCH)

TAG ?= $(shell git rev-parse --short=12 HEAD)
REGISTRY ?= registry.example.com/honeydue
# make release keeps the registry already in the overlay unless this is set.
RELEASE_REGISTRY ?=
PLATFORMS ?= linux/amd64,linux/arm64
FUNCTIONS = $(shell sed -n 's/^ *Binary: *//p' template.yaml)
images: ## one image per function, tagged with the git SHA, for this machine's platform (docker buildx)
	@test -z "$$(git status --porcelain)" || { echo "images: commit first: the tag is the git SHA" >&2; exit 1; }
	@for f in $(FUNCTIONS); do \
	  docker buildx build --load --build-arg FUNCTION=$$f --build-arg HONEYDUE_VERSION=$(TAG) \
	    -t $(REGISTRY)/$$f:$(TAG) . || exit 1; done

push: ## build for amd64 and arm64 and push every image at the git SHA (docker buildx, registry login)
	@test -z "$$(git status --porcelain)" || { echo "push: commit first: the tag is the git SHA" >&2; exit 1; }
	@for f in $(FUNCTIONS); do \
	  docker buildx build --push --platform $(PLATFORMS) --build-arg FUNCTION=$$f --build-arg HONEYDUE_VERSION=$(TAG) \
	    -t $(REGISTRY)/$$f:$(TAG) . || exit 1; done

release: ## set every image of the production overlay to TAG (and REGISTRY), as `kustomize edit set image` would
	@REGISTRY=$(RELEASE_REGISTRY) scripts/release.sh $(TAG)

deploy: ## the production overlay at TAG to the current kube context (release + kubectl apply -k), waits for migrate-TAG and the rollouts
	@TAG=$(TAG) scripts/deploy.sh

FUZZ_SECONDS ?= 60
fuzz: ## fuzz the shim's translation both ways with libFuzzer (cargo-fuzz, stable toolchain; FUZZ_SECONDS each)
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@cd shared/shim/fuzz && for t in decode_answer build_event; do \
	  mkdir -p corpus/$$t && \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -O $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

clean: ## remove build output (keeps .local services)
	cargo clean
