#!/usr/bin/env bash
# Debian packages the project needs (Prometheus + promtool, headless Chromium + chromedriver, PostgreSQL for
# the DuckLake catalog: the server binaries under /usr/lib/postgresql/<version>/bin).
# Installs only what is missing, so it is a no-op on a machine that already has them.
set -euo pipefail
needed=()
command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
command -v chromium >/dev/null 2>&1 || needed+=(chromium)
command -v chromedriver >/dev/null 2>&1 || needed+=(chromium-driver)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || needed+=(postgresql)
if [ ${#needed[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${needed[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${needed[@]}"
