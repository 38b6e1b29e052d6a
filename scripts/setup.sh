#!/usr/bin/env bash
# scripts/setup.sh: install what pg_recall needs to build, test and demo.
#
# Called by `make setup`, `make demo`, `make test` and `make bench`.  Targets
# Debian bookworm: installs the missing packages with apt-get, as root or
# through sudo.  Idempotent, and silent when everything is already there.
# Needs nothing from PostgreSQL itself, so it runs before pg_config exists.
# `setup.sh --deb` (make deb, and make test's package test) also installs
# what building the Debian package needs; `setup.sh --bench` (make bench)
# what the benchmarks need.

set -euo pipefail

DEB=
BENCH=
case "${1:-}" in
'') ;;
--deb) DEB=yes ;;
--bench) BENCH=yes ;;
*)
	echo "usage: setup.sh [--deb | --bench]" >&2
	exit 2
	;;
esac

# Everything pg_recall's build, tests and demo use:
#   postgresql-15, postgresql-server-dev-15, libpq-dev  the server, PGXS, libpq
#   postgresql-common       pg_virtualenv (throwaway clusters for tests, demo)
#   libipc-run-perl, perl   PostgreSQL::Test::Cluster and prove (TAP tests)
#   postgresql-15-dirtyread reads dead tuples (proof that content is gone)
#   sqlsmith                random queries for the fuzz test (test/t/041_fuzz.pl)
#   build-essential gcc make
#   pgbouncer               the pooler test (transaction pooling, recall.actor_scope)
#   nodejs, npm             the driver test (node-postgres, installed by the test)
PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	libpq-dev
	postgresql-common
	libipc-run-perl
	perl
	postgresql-15-dirtyread
	sqlsmith
	build-essential
	gcc
	make
	pgbouncer
	nodejs
)
# Node.js builds from NodeSource bring their own npm and conflict with
# Debian's npm package: ask for the package only when the command is missing.
if ! command -v npm >/dev/null 2>&1; then
	PACKAGES+=(npm)
fi
# pg_recall_relay (src/relay, built and installed with the extension when it
# is in the tree) serves HTTP with libmicrohttpd, found through pkg-config.
if [ -f "$(dirname "${BASH_SOURCE[0]}")/../src/relay/Makefile" ]; then
	# curl: the demo's SSE step; chromium: the relay's browser test
	PACKAGES+=(libmicrohttpd-dev pkg-config curl chromium)
fi
# Building the Debian package (debian/, scripts/deb.sh), only with --deb:
#   postgresql-server-dev-all  pg_buildext's control.in rules (debian/rules)
#   debhelper, dpkg-dev         dh and dpkg-buildpackage (no fakeroot: the
#                               package declares Rules-Requires-Root: no)
if [ -n "$DEB" ]; then
	PACKAGES+=(postgresql-server-dev-all debhelper dpkg-dev)
fi
# The benchmarks, only with --bench: valgrind counts instructions per
# statement (test/bench/instructions.sh).
if [ -n "$BENCH" ]; then
	PACKAGES+=(valgrind)
fi

# Run a command as root: directly when we are root, else through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "setup.sh: need root to run: $*" >&2
		echo "setup.sh: run as root, or install sudo" >&2
		exit 1
	fi
}

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "installed" ]; then
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "setup.sh: apt-get not found; install these by hand: ${missing[*]}" >&2
		exit 1
	fi
	echo "setup.sh: installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
fi

# The server's default socket directory: made by the package's postinst on a
# normal machine, missing in some containers.  pg_virtualenv's clusters need it.
if [ ! -d /var/run/postgresql ]; then
	as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
fi

# PGXS comes from postgresql-server-dev-15; say so clearly if it is still absent.
if ! command -v pg_config >/dev/null 2>&1; then
	echo "setup.sh: pg_config still not found after installing packages" >&2
	exit 1
fi
