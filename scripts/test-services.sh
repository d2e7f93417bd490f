#!/usr/bin/env bash
# Makes sure what the test suite talks to is installed and running.
# PostgreSQL must be reachable at 127.0.0.1:5432 (trust auth, database `test`),
# or at $TEST_DATABASE_URL. Under CI=true a service that cannot be brought up
# is an error here and a failure in the tests — never a silent skip.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo "$@"; else "$@"; fi; }
apt_updated=0
apt_install() {
  have apt-get || return 1
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq >/dev/null && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

problems=0
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if ! pg_up; then
    if ! ls /etc/postgresql >/dev/null 2>&1; then
      echo "test-services: installing PostgreSQL" && apt_install postgresql
    fi
    if ls /etc/postgresql >/dev/null 2>&1; then
      version=$(ls /etc/postgresql | sort -V | tail -n 1)
      echo "test-services: starting PostgreSQL $version"
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
      for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
    fi
  fi
  if pg_up; then
    # Trust auth and a `test` database are what the suite expects.
    if have psql && ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
      as_root su postgres -c "psql -c 'CREATE DATABASE test'" >/dev/null 2>&1 || true
    fi
    echo "test-services: PostgreSQL is up on 127.0.0.1:5432"
  else
    echo "test-services: PostgreSQL is NOT reachable on 127.0.0.1:5432" >&2
    problems=$((problems + 1))
  fi
fi

# kubectl drives the sandbox cluster in the deployment tests.
if ! have kubectl; then
  echo "test-services: installing kubectl"
  apt_install kubectl || apt_install kubernetes-client || true
fi
if have kubectl; then
  echo "test-services: kubectl $(kubectl version --client -o json 2>/dev/null | grep -m1 gitVersion | tr -d ' ",' | cut -d: -f2)"
else
  echo "test-services: kubectl is NOT installed" >&2
  problems=$((problems + 1))
fi

# Real Prometheus and Alertmanager drive the alerting tests (tests/fakes/alerting.py
# starts them on free ports). The packages' maintainer scripts would start daemons
# on 9090/9093; a policy-rc.d that answers 101 ("action forbidden") keeps them off.
if ! have prometheus || ! have prometheus-alertmanager; then
  echo "test-services: installing prometheus and prometheus-alertmanager"
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  if [ -e "$policy" ]; then had_policy=1; fi
  if [ "$had_policy" = 0 ]; then
    trap 'as_root rm -f "$policy"' EXIT  # never leave it behind, even when interrupted
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod 755 "$policy"
  fi
  # Without recommends: prometheus recommends node-exporter (and smartmontools, ipmitool...).
  apt_install --no-install-recommends prometheus prometheus-alertmanager || true
  if [ "$had_policy" = 0 ]; then as_root rm -f "$policy"; trap - EXIT; fi
  # Belt and braces: stop (and keep from booting) any daemon the packages we just
  # installed managed to start anyway; the tests start their own on free ports.
  for svc in prometheus prometheus-alertmanager; do
    if have systemctl && [ -d /run/systemd/system ]; then
      as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
      as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi
if have prometheus; then
  echo "test-services: prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}')"
else
  echo "test-services: prometheus is NOT installed" >&2
  problems=$((problems + 1))
fi
if have prometheus-alertmanager; then
  echo "test-services: prometheus-alertmanager $(prometheus-alertmanager --version 2>&1 | head -n 1 | awk '{print $3}')"
else
  echo "test-services: prometheus-alertmanager is NOT installed" >&2
  problems=$((problems + 1))
fi

if [ "$problems" -gt 0 ] && [ "${CI:-}" = "true" ]; then
  echo "test-services: required services are missing under CI=true" >&2
  exit 1
fi
exit 0
