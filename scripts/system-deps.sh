#!/usr/bin/env bash
# Debian packages the tests and the local stack use (nginx balances several app processes; npm validates the Grafana dashboards). Installs only what is missing (needs root or sudo).
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium chromium-driver)
command -v prometheus >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)  # tests/test_scaleout.py: two app processes behind it
command -v npm >/dev/null || need+=(nodejs npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The default corpus is fetched with `apt-get download python3.11-doc`, which needs package lists.
policy=$(apt-cache policy python3.11-doc 2>/dev/null || true)
if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
  echo "refreshing Debian package lists (apt-get update)"
  $SUDO apt-get update -qq
fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
