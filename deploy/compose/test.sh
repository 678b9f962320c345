#!/usr/bin/env bash
# `make compose-test`: the compose stack, built and brought up as a user would, then the
# smoke selection of the end-to-end tests (marked `compose`: what compose can break is wiring,
# not logic, which `make test` covers natively) through its gateway (E2E_BASE_URL); then a
# second copy of the stack beside it (another project name), with the journey run through its own gateway.
# Whatever happens, the logs of any service that is not healthy are printed and both copies
# are taken down with their volumes.
#
# Settings (environment):
#   COMPOSE_TEST_PROJECT   project name (stack-test); the second copy is <name>-2
#   GATEWAY_PORT           the gateway's port on this machine (18080; the second copy +1)
#   PROMETHEUS_PORT        Prometheus's port on 127.0.0.1 (19090; the second copy +1)
#   MAIL_VIEWER_PORT       the mail catcher's web view on 127.0.0.1 (18025; the second copy +1);
#                          the tests read the mail there (E2E_MAIL_URL)
#   COMPOSE_TEST_SERVICES  the services to start (default: all of them)
#   image variables        PYTHON_IMAGE, POSTGRES_IMAGE, ... as in .env.example
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

PROJECT=${COMPOSE_TEST_PROJECT:-stack-test}
SECOND=$PROJECT-2
GATEWAY_PORT=${GATEWAY_PORT:-18080}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
MAIL_VIEWER_PORT=${MAIL_VIEWER_PORT:-18025}
read -r -a SERVICES <<<"${COMPOSE_TEST_SERVICES:-}"
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-compose-test-password}

step_started=0
step() { step_started=$SECONDS; echo "compose-test: $*"; }
took() { echo "compose-test: $1 took $((SECONDS - step_started)) s"; }

# compose for one copy of the stack: project gateway-port prometheus-port mail-port args...
stack() {
  local project=$1 gateway=$2 prometheus=$3 mail=$4
  shift 4
  GATEWAY_PORT=$gateway PROMETHEUS_PORT=$prometheus MAIL_VIEWER_PORT=$mail \
    PUBLIC_URL=http://127.0.0.1:$gateway docker compose -p "$project" "$@"
}

logs_of_unhealthy() {
  local project=$1 service state health
  while read -r service state health; do
    if [[ $state != running || $health == unhealthy || $health == starting ]]; then
      echo "compose-test: $project/$service is $state${health:+ ($health)}; its logs:"
      docker compose -p "$project" logs --no-color --tail 200 "$service"
    fi
  done < <(docker compose -p "$project" ps -a --format '{{.Service}} {{.State}} {{.Health}}')
}

cleanup() {
  local project
  for project in "$SECOND" "$PROJECT"; do
    logs_of_unhealthy "$project"
  done
  step "down -v"
  for project in "$SECOND" "$PROJECT"; do
    docker compose -p "$project" down -v --remove-orphans --timeout 20 >/dev/null 2>&1
  done
  took "down -v"
}
trap cleanup EXIT

BUILT=(auth api realtime mailcatcher nginx)
step "building the images (${BUILT[*]})"
stack "$PROJECT" "$GATEWAY_PORT" "$PROMETHEUS_PORT" "$MAIL_VIEWER_PORT" build --quiet \
  "${BUILT[@]}" || exit 1
took "image builds"

step "up until healthy: ${SERVICES[*]:-every service}"
stack "$PROJECT" "$GATEWAY_PORT" "$PROMETHEUS_PORT" "$MAIL_VIEWER_PORT" up -d --wait \
  --wait-timeout 300 "${SERVICES[@]}" || exit 1
took "up until healthy"

runs() { ((${#SERVICES[@]} == 0)) || [[ " ${SERVICES[*]} " == *" $1 "* ]]; }
# The mail tests read what auth sent from the mail catcher's listing, when it runs; the
# scrape test asks Prometheus, when it runs.
mail_url="" prometheus_url=""
runs mailcatcher && mail_url=http://127.0.0.1:$MAIL_VIEWER_PORT
runs prometheus && prometheus_url=http://127.0.0.1:$PROMETHEUS_PORT
step "the smoke selection of the end-to-end tests through http://127.0.0.1:$GATEWAY_PORT"
E2E_BASE_URL=http://127.0.0.1:$GATEWAY_PORT E2E_COMPOSE_PROJECT=$PROJECT E2E_MAIL_URL=$mail_url \
  E2E_PROMETHEUS_URL=$prometheus_url \
  uv run --frozen pytest tests -m compose -p no:cacheprovider -rs
tests=$?
took "end-to-end tests"

step "a second copy of the stack beside the first: project $SECOND"
second_gateway=$((GATEWAY_PORT + 1))
for service in "${BUILT[@]}"; do  # the same images, not built again
  docker tag "$PROJECT-$service" "$SECOND-$service"
done
stack "$SECOND" "$second_gateway" $((PROMETHEUS_PORT + 1)) $((MAIL_VIEWER_PORT + 1)) up -d \
  --wait --wait-timeout 300 "${SERVICES[@]}" || exit 1
E2E_BASE_URL=http://127.0.0.1:$second_gateway uv run --frozen pytest -p no:cacheprovider -q \
  "tests/test_gateway.py::test_the_journey" "tests/test_docs_page.py"
side_by_side=$?
E2E_BASE_URL=http://127.0.0.1:$GATEWAY_PORT uv run --frozen pytest -p no:cacheprovider -q \
  "tests/test_gateway.py::test_the_journey"
first_still=$?
took "side by side"

((tests == 0 && side_by_side == 0 && first_still == 0))
