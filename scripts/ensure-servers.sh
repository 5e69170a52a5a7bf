#!/usr/bin/env bash
# Makes sure the server binaries the integration tests spawn are installed.
# Idempotent, and never starts a server: the tests start their own on loopback.
set -euo pipefail

# nutcracker lives in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for bin in redis-server redis-cli nutcracker; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "ensure-servers: redis-server, redis-cli and nutcracker already installed, nothing to do"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi

# The Debian packages' postinst scripts would otherwise launch system-wide
# redis-server/nutcracker services on their default ports. A policy-rc.d that
# exits 101 tells invoke-rc.d not to start anything; remove it only if we made it.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi

$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools nutcracker >/dev/null

echo "ensure-servers: installed redis-server redis-tools nutcracker (missing: ${missing[*]})"
