#!/usr/bin/env bash
# The services the tests need, running on this machine: RabbitMQ on 127.0.0.1:5672 (guest/guest) and PostgreSQL on
# 127.0.0.1:5432 with a database `test` the user `postgres` can reach. Started when stopped; installed with apt when
# missing on a Debian/Ubuntu machine (as root, or with sudo); elsewhere, says exactly what to install.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # port, name
  for _ in $(seq 1 60); do listening "$1" && return 0; sleep 1; done
  echo "[services] $2 did not start listening on 127.0.0.1:$1" >&2
  return 1
}
if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    cat >&2 <<EOF
[services] $1 is not installed and this is not a Debian/Ubuntu machine. Install and start, then run make test again:
  - RabbitMQ 3.10 or newer, listening on 127.0.0.1:5672 with the user guest/guest
  - PostgreSQL 13 or newer, listening on 127.0.0.1:5432, with a database 'test' that the user 'postgres'
    (password 'postgres') can use; or point SONICFLOW_TEST_PG_URL at another database
  (macOS with Homebrew: brew install rabbitmq postgresql@16; brew services start rabbitmq postgresql@16)
EOF
    exit 1
  fi
  echo "[services] installing $1 (apt)"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
}

# RabbitMQ
if ! listening 5672; then
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  echo "[services] starting RabbitMQ"
  "${SUDO[@]}" rabbitmq-server -detached || true
  wait_port 5672 RabbitMQ
fi

# PostgreSQL
if ! listening 5432; then
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-contrib
  echo "[services] starting PostgreSQL"
  for version in $(ls /etc/postgresql); do
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  wait_port 5432 PostgreSQL
fi
# The database the tests use: created, with a password for 'postgres', when it is missing (a fresh Debian install
# allows only local peer logins).
if command -v psql >/dev/null 2>&1 && \
   ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  echo "[services] creating the PostgreSQL database 'test'"
  "${SUDO[@]}" su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  "${SUDO[@]}" su postgres -c "createdb test" 2>/dev/null || true
fi
echo "[services] RabbitMQ on 5672 and PostgreSQL on 5432 are up"
