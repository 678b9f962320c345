#!/usr/bin/env bash
# `make compose-test`: the compose stack, built and brought up as a user would, then the
# smoke selection of the end-to-end tests (marked `compose`: what compose can break is wiring,
# not logic, which `make test` covers natively) through its gateway (E2E_BASE_URL); then a
# second copy of the stack beside it (another project name), with the journey run through its own gateway.
# The first copy's PUBLIC_URL is http://localhost:<gateway port> (a passkey's relying party is a
# domain, never an address), and it has the sign-in tests' OpenID providers: the tests start the
# provider beside the stack, on this machine (deploy/compose/test-oidc.yml says how auth reaches it).
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

# compose for one copy of the stack: project public-host gateway-port prometheus-port mail-port
# args... (docker compose's options, e.g. -f, then its command)
stack() {
  local project=$1 host=$2 gateway=$3 prometheus=$4 mail=$5
  shift 5
  GATEWAY_PORT=$gateway PROMETHEUS_PORT=$prometheus MAIL_VIEWER_PORT=$mail \
    PUBLIC_URL=http://$host:$gateway docker compose -p "$project" "$@"
}

# The compose files of the first copy: docker-compose.yml, and the test providers' file when
# auth runs (set below).
first_files=()
# docker compose for a copy of the stack, with its files: project args...
compose_of() {
  local project=$1
  shift
  if [[ $project == "$PROJECT" ]]; then
    docker compose -p "$project" "${first_files[@]}" "$@"
  else
    docker compose -p "$project" "$@"
  fi
}

logs_of_unhealthy() {
  local project=$1 service state health
  while read -r service state health; do
    if [[ $state != running || $health == unhealthy || $health == starting ]]; then
      echo "compose-test: $project/$service is $state${health:+ ($health)}; its logs:"
      compose_of "$project" logs --no-color --tail 200 "$service"
    fi
  done < <(compose_of "$project" ps -a --format '{{.Service}} {{.State}} {{.Health}}')
}

cleanup() {
  local project
  for project in "$SECOND" "$PROJECT"; do
    logs_of_unhealthy "$project"
  done
  step "down -v"
  for project in "$SECOND" "$PROJECT"; do
    compose_of "$project" down -v --remove-orphans --timeout 20 >/dev/null 2>&1
  done
  took "down -v"
  [[ -z ${OIDC_TEST_SECRET_FILE:-} ]] || rm -f "$OIDC_TEST_SECRET_FILE"
}
trap cleanup EXIT

BUILT=(auth api realtime mailcatcher nginx)
step "building the images (${BUILT[*]})"
stack "$PROJECT" localhost "$GATEWAY_PORT" "$PROMETHEUS_PORT" "$MAIL_VIEWER_PORT" build --quiet \
  "${BUILT[@]}" || exit 1
took "image builds"

runs() { ((${#SERVICES[@]} == 0)) || [[ " ${SERVICES[*]} " == *" $1 "* ]]; }
# The sign-in tests' OpenID provider (tests/test_oidc_sign_in.py), when auth runs: the tests
# start it on this machine, on a port chosen here (auth's configuration names it at `up`),
# listening on 127.0.0.1 and on the Docker bridge's address, which a relay in the auth container
# forwards 127.0.0.1:<port> to (deploy/compose/test-oidc.yml). The client secret: a file of
# this run's, mounted into auth.
# The default bridge's gateway address; Docker 20.10 leaves it out of the network's IPAM
# configuration unless it was set, so then the address of the bridge's interface.
bridge_address() {
  local gateway interface
  gateway=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
  if [[ -n $gateway ]]; then
    echo "$gateway"
    return
  fi
  interface=$(docker network inspect bridge \
    --format '{{index .Options "com.docker.network.bridge.name"}}')
  ip -4 -o addr show dev "${interface:-docker0}" | awk '{ split($4, a, "/"); print a[1]; exit }'
}
oidc_env=()
if runs auth; then
  OIDC_TEST_PORT=$(uv run --frozen python -c 'from devstack.testing import free_port
print(free_port())') || exit 1
  OIDC_TEST_BRIDGE=${OIDC_TEST_BRIDGE:-$(bridge_address)}
  [[ -n $OIDC_TEST_BRIDGE ]] || { echo "compose-test: the Docker bridge has no address" >&2; exit 1; }
  OIDC_TEST_SECRET_FILE=$(mktemp)
  chmod 0644 "$OIDC_TEST_SECRET_FILE"  # auth runs as uid 10001
  python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$OIDC_TEST_SECRET_FILE"
  export OIDC_TEST_PORT OIDC_TEST_BRIDGE OIDC_TEST_SECRET_FILE
  # With -f, compose reads no docker-compose.override.yml by itself: name it, as the second
  # copy reads it.
  first_files=(-f docker-compose.yml)
  [[ ! -f docker-compose.override.yml ]] || first_files+=(-f docker-compose.override.yml)
  first_files+=(-f deploy/compose/test-oidc.yml)
  # Named services (COMPOSE_TEST_SERVICES) come from docker-compose.yml: add the relay.
  ((${#SERVICES[@]} == 0)) || SERVICES+=(oidc-test-relay)
  oidc_env=(E2E_OIDC_PORT="$OIDC_TEST_PORT" E2E_OIDC_ALSO_LISTEN_ON="$OIDC_TEST_BRIDGE"
    E2E_OIDC_CLIENT_SECRET_FILE="$OIDC_TEST_SECRET_FILE")
fi

step "up until healthy: ${SERVICES[*]:-every service}"
stack "$PROJECT" localhost "$GATEWAY_PORT" "$PROMETHEUS_PORT" "$MAIL_VIEWER_PORT" "${first_files[@]}" \
  up -d --wait --wait-timeout 300 "${SERVICES[@]}" || exit 1
took "up until healthy"

# The mail tests read what auth sent from the mail catcher's listing, when it runs; the
# scrape test asks Prometheus, when it runs.
mail_url="" prometheus_url=""
runs mailcatcher && mail_url=http://127.0.0.1:$MAIL_VIEWER_PORT
runs prometheus && prometheus_url=http://127.0.0.1:$PROMETHEUS_PORT
step "the smoke selection of the end-to-end tests through http://localhost:$GATEWAY_PORT"
env "${oidc_env[@]}" E2E_BASE_URL=http://localhost:$GATEWAY_PORT E2E_COMPOSE_PROJECT=$PROJECT \
  E2E_MAIL_URL=$mail_url E2E_PROMETHEUS_URL=$prometheus_url \
  uv run --frozen pytest tests -m compose -p no:cacheprovider -rs
tests=$?
took "end-to-end tests"

step "a second copy of the stack beside the first: project $SECOND"
second_gateway=$((GATEWAY_PORT + 1))
for service in "${BUILT[@]}"; do  # the same images, not built again
  docker tag "$PROJECT-$service" "$SECOND-$service"
done
second_services=()
for service in "${SERVICES[@]}"; do  # the second copy has no test providers
  [[ $service == oidc-test-relay ]] || second_services+=("$service")
done
stack "$SECOND" 127.0.0.1 "$second_gateway" $((PROMETHEUS_PORT + 1)) $((MAIL_VIEWER_PORT + 1)) up -d \
  --wait --wait-timeout 300 "${second_services[@]}" || exit 1
E2E_BASE_URL=http://127.0.0.1:$second_gateway uv run --frozen pytest -p no:cacheprovider -q \
  "tests/test_gateway.py::test_the_journey" "tests/test_docs_page.py"
side_by_side=$?
E2E_BASE_URL=http://localhost:$GATEWAY_PORT uv run --frozen pytest -p no:cacheprovider -q \
  "tests/test_gateway.py::test_the_journey"
first_still=$?
took "side by side"

((tests == 0 && side_by_side == 0 && first_still == 0))
