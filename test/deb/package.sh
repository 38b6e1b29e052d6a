#!/usr/bin/env bash
# test/deb/package.sh: the Debian package, built, looked into, installed for
# real and used.  Prints TAP; scripts/test.sh runs it with
# `prove --exec bash` after the TAP suites.
#
#   1. `make deb` (into a temporary directory) builds
#      postgresql-15-pg-recall_<X.Y>-<N>_<arch>.deb, X.Y being
#      pg_recall.control's default_version;
#   2. its fields (dpkg-deb -f) and its files (dpkg-deb -c): the module, the
#      control file, every sql/pg_recall--*.sql of the tree and no other
#      script, pg_recall_relay next to PostgreSQL's programs;
#   3. `dpkg -i`, then on a throwaway cluster of the system's PostgreSQL
#      (pg_virtualenv): CREATE EXTENSION pg_recall VERSION '1.0', then
#      ALTER EXTENSION pg_recall UPDATE reaches the default version;
#      CREATE EXTENSION pg_recall in a second database, and a recall there
#      (the package's module at work);
#   4. `dpkg --purge`, then the files the package replaced (those of
#      `make install`) put back as they were, checked by sha256sum.
#
# dpkg -i writes into /usr/lib/postgresql/15 and /usr/share/postgresql/15,
# where `make install` writes.  So the test runs only when
#   - RECALL_TEST_DEB=1 (scripts/test.sh sets it when it runs the suite as a
#     whole; RECALL_TEST_DEB=0 there leaves the package out),
#   - it runs as root, or sudo works without a password,
#   - PG_CONFIG, when set, is the system's PostgreSQL, the one the package
#     installs into (not a private copy elsewhere),
#   - the package is not installed already (the test would replace it),
# and reports itself skipped otherwise.  RECALL_TEST_DEB=build runs steps 1
# and 2 only, which write nothing outside a temporary directory (but `make
# deb` installs the build tools when they are missing).

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

PKG=$(sed -nE 's/^Package: (postgresql-[0-9]+-pg-recall)$/\1/p' debian/control | head -n 1)
PGVER=$(echo "$PKG" | sed -E 's/^postgresql-([0-9]+)-.*/\1/')
EXTVER=$(sed -nE "s/^default_version[[:space:]]*=[[:space:]]*'([^']*)'.*/\1/p" pg_recall.control)
DEBVER=$(sed -nE '1s/^[^ ]+ \(([^)]+)\).*/\1/p' debian/changelog)
SYS_PGC=/usr/lib/postgresql/$PGVER/bin/pg_config

MODE=${RECALL_TEST_DEB:-}
case $MODE in
1 | build) ;;
*) skip_all "RECALL_TEST_DEB is not 1 (dpkg -i writes into /usr; scripts/test.sh sets it)" ;;
esac
if [ ! -x "$SYS_PGC" ]; then
	skip_all "$SYS_PGC not found: the package is built for and installs into the system's PostgreSQL $PGVER"
fi
SYS_BINDIR=$("$SYS_PGC" --bindir)
AS_ROOT=()
if [ "$MODE" = 1 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		if sudo -n true 2>/dev/null; then
			AS_ROOT=(sudo -n)
		else
			skip_all "dpkg -i needs root or sudo without a password"
		fi
	fi
	if [ -n "${PG_CONFIG:-}" ] && [ "$("$PG_CONFIG" --bindir 2>/dev/null)" != "$SYS_BINDIR" ]; then
		skip_all "PG_CONFIG is $PG_CONFIG, not the system's PostgreSQL $PGVER that the package installs into"
	fi
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null)" = installed ]; then
		skip_all "$PKG is installed on this machine: the test would replace it"
	fi
fi

LIBDIR=$("$SYS_PGC" --pkglibdir)
EXTDIR=$("$SYS_PGC" --sharedir)/extension

# ---------------------------------------------------------------------------
# TAP

NTESTS=0
NFAILED=0

pass() {
	NTESTS=$((NTESTS + 1))
	echo "ok $NTESTS - $1"
}

fail() {
	NTESTS=$((NTESTS + 1))
	NFAILED=$((NFAILED + 1))
	echo "not ok $NTESTS - $1"
}

diag() {
	sed 's/^/# /'
}

# is GOT EXPECTED NAME
is() {
	if [ "$1" = "$2" ]; then
		pass "$3"
	else
		fail "$3"
		printf '     got: %s\nexpected: %s\n' "$1" "$2" | diag
	fi
}

# run NAME LOG COMMAND...: a step that must exit 0; its output goes to LOG,
# shown when it fails
run() {
	local name=$1 log=$2
	shift 2
	if "$@" >"$log" 2>&1; then
		pass "$name"
	else
		fail "$name"
		tail -n 40 "$log" | diag
		return 1
	fi
}

finish() {
	echo "1..$NTESTS"
	exit $((NFAILED > 0))
}

# ---------------------------------------------------------------------------
# Put the system back: the package purged, the files it replaced restored.

WORK=$(mktemp -d -t pg_recall_deb.XXXXXX)
chmod 755 "$WORK"
INSTALLED=
SAVED=

restore() {
	if [ -n "$INSTALLED" ]; then
		"${AS_ROOT[@]}" dpkg --purge "$PKG" >"$WORK/purge.log" 2>&1
		INSTALLED=
	fi
	if [ -n "$SAVED" ]; then
		"${AS_ROOT[@]}" tar -C / -xpf "$WORK/saved.tar"
		SAVED=
	fi
}

cleanup() {
	restore
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# 1. make deb

DEB_DIR=$WORK/deb
DEB=$DEB_DIR/${PKG}_${DEBVER}_$(dpkg --print-architecture).deb
run "make deb builds $(basename "$DEB")" "$WORK/build.log" \
	make --no-print-directory -C "$ROOT" deb DEB_DIR="$DEB_DIR" || finish
if [ ! -f "$DEB" ]; then
	fail "$DEB exists"
	ls -l "$DEB_DIR" | diag
	finish
fi

# ---------------------------------------------------------------------------
# 2. fields and files

is "$(dpkg-deb -f "$DEB" Package)" "$PKG" "package name"
is "$(dpkg-deb -f "$DEB" Version | sed -E 's/-[^-]*$//')" "$EXTVER" \
	"package version is pg_recall.control's default_version"
depends=$(dpkg-deb -f "$DEB" Depends)
if echo "$depends" | grep -qE "(^|, )postgresql-$PGVER( |,|$)"; then
	pass "depends on postgresql-$PGVER"
else
	fail "depends on postgresql-$PGVER"
	echo "Depends: $depends" | diag
fi

# "-rwxr-xr-x root/root 97040 2026-12-01 22:34 ./usr/lib/..." -> type, path
dpkg-deb -c "$DEB" | awk '{ print substr($1, 1, 1), substr($1, 4, 1), substr($6, 2) }' \
	>"$WORK/contents"
contains() {
	if awk -v p="$1" '$1 == "-" && $3 == p { found = 1 } END { exit !found }' "$WORK/contents"; then
		pass "contains $1"
	else
		fail "contains $1"
	fi
}
contains "$LIBDIR/pg_recall.so"
contains "$EXTDIR/pg_recall.control"
mapfile -t tree_sql < <(cd sql && ls pg_recall--*.sql | sort)
for f in "${tree_sql[@]}"; do
	contains "$EXTDIR/$f"
done
is "$(awk -v d="$EXTDIR/" '$1 == "-" && index($3, d) == 1 && $3 ~ /\.sql$/ { sub(".*/", "", $3); print $3 }' \
	"$WORK/contents" | sort | tr '\n' ' ')" "$(printf '%s ' "${tree_sql[@]}")" \
	"the package's SQL scripts are exactly the tree's sql/pg_recall--*.sql"
if awk -v p="$SYS_BINDIR/pg_recall_relay" '$1 == "-" && $2 == "x" && $3 == p { found = 1 } END { exit !found }' \
	"$WORK/contents"; then
	pass "contains $SYS_BINDIR/pg_recall_relay, executable"
else
	fail "contains $SYS_BINDIR/pg_recall_relay, executable"
	grep pg_recall_relay "$WORK/contents" | diag
fi

if [ "$MODE" = build ]; then
	echo "# RECALL_TEST_DEB=build: dpkg -i and the cluster checks left out"
	finish
fi

# ---------------------------------------------------------------------------
# 3. dpkg -i and use

# the files of the package already on the system (`make install`'s): saved
# to be put back after the purge
awk '$1 == "-" { print $3 }' "$WORK/contents" >"$WORK/files"
: >"$WORK/before.sha256"
: >"$WORK/absent"
present=()
while IFS= read -r f; do
	if [ -e "$f" ]; then
		present+=("${f#/}")
	else
		echo "$f" >>"$WORK/absent"
	fi
done <"$WORK/files"
if [ "${#present[@]}" -gt 0 ]; then
	(cd / && sha256sum -- "${present[@]}") >"$WORK/before.sha256"
	tar -C / -cf "$WORK/saved.tar" -- "${present[@]}" || {
		fail "save the files the package replaces"
		finish
	}
fi
SAVED=yes

INSTALLED=yes
run "dpkg -i $(basename "$DEB")" "$WORK/install.log" "${AS_ROOT[@]}" dpkg -i "$DEB" || finish
is "$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$PKG" 2>&1)" "installed $DEBVER" \
	"dpkg says $PKG $DEBVER is installed"
is "$(dpkg -S "$LIBDIR/pg_recall.so" 2>&1)" "$PKG: $LIBDIR/pg_recall.so" \
	"$LIBDIR/pg_recall.so belongs to the package"
relay_version=$("$SYS_BINDIR/pg_recall_relay" --version 2>&1)
if [[ $relay_version == "pg_recall_relay (pg_recall) "* ]]; then
	pass "the installed pg_recall_relay runs: $relay_version"
else
	fail "the installed pg_recall_relay runs"
	echo "$relay_version" | diag
fi

# one throwaway cluster of the system's server, which loads the package's
# module; each result is a "label|value" line
cat >"$WORK/check.sql" <<'EOF'
\set ON_ERROR_STOP 1
CREATE DATABASE recall_upgraded;
CREATE DATABASE recall_fresh;

\c recall_upgraded
SELECT 'available', default_version FROM pg_available_extensions WHERE name = 'pg_recall';
CREATE EXTENSION pg_recall VERSION '1.0';
SELECT 'created', extversion FROM pg_extension WHERE extname = 'pg_recall';
ALTER EXTENSION pg_recall UPDATE;
SELECT 'updated', extversion FROM pg_extension WHERE extname = 'pg_recall';

\c recall_fresh
CREATE EXTENSION pg_recall;
SELECT 'fresh', extversion FROM pg_extension WHERE extname = 'pg_recall';
CREATE TABLE messages (id bigint PRIMARY KEY, sender text, body text);
INSERT INTO messages VALUES (1, 'alice', 'one'), (2, 'alice', 'two');
SELECT 'enabled', recall.enable('messages', '{body}', sender => 'sender');
UPDATE messages SET recalled_at = now(), recall_reason = 'package test' WHERE id = 1;
SELECT 'fresh_wiped', count(*) FROM messages WHERE recalled_at IS NOT NULL AND body IS NULL;
SELECT 'fresh_kept', count(*) FROM messages WHERE recalled_at IS NULL AND body = 'two';
EOF
if pg_virtualenv -t -v "$PGVER" psql -X -q -A -t -f "$WORK/check.sql" \
	>"$WORK/cluster.out" 2>"$WORK/cluster.err"; then
	pass "CREATE EXTENSION, ALTER EXTENSION UPDATE on a throwaway cluster (pg_virtualenv)"
else
	fail "CREATE EXTENSION, ALTER EXTENSION UPDATE on a throwaway cluster (pg_virtualenv)"
	cat "$WORK/cluster.out" "$WORK/cluster.err" | tail -n 40 | diag
fi
result() {
	sed -nE "s/^$1\|//p" "$WORK/cluster.out" | head -n 1
}
is "$(result available)" "$EXTVER" "the server sees default_version $EXTVER"
is "$(result created)" "1.0" "CREATE EXTENSION pg_recall VERSION '1.0'"
is "$(result updated)" "$EXTVER" "ALTER EXTENSION pg_recall UPDATE reaches $EXTVER"
is "$(result fresh)" "$EXTVER" "CREATE EXTENSION pg_recall in a fresh database gives $EXTVER"
is "$(result fresh_wiped)|$(result fresh_kept)" "1|1" \
	"a recall in the fresh database wipes its row only"

# ---------------------------------------------------------------------------
# 4. the system as it was

run "dpkg --purge $PKG" "$WORK/purge.log" "${AS_ROOT[@]}" dpkg --purge "$PKG" &&
	INSTALLED=
status=$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null)
is "${status:-not-installed}" "not-installed" "dpkg no longer knows $PKG"
restore
if [ ! -s "$WORK/before.sha256" ] || (cd / && sha256sum --quiet -c "$WORK/before.sha256") >"$WORK/restored.log" 2>&1; then
	pass "the files the package replaced are back as they were ($(wc -l <"$WORK/before.sha256") files)"
else
	fail "the files the package replaced are back as they were"
	diag <"$WORK/restored.log"
fi
left=()
while IFS= read -r f; do
	[ -e "$f" ] && left+=("$f")
done <"$WORK/absent"
is "${left[*]}" "" "the files the package added are gone ($(wc -l <"$WORK/absent") files)"

finish
