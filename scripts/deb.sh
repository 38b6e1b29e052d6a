#!/usr/bin/env bash
# scripts/deb.sh: build the Debian package postgresql-15-pg-recall.
#
# Called by `make deb` (after `scripts/setup.sh --deb`).  Usage:
#   scripts/deb.sh [OUTDIR]          (default: build/deb, in the tree)
#
# Checks that the versions agree: pg_recall.control's default_version X.Y is
# the upstream version of debian/changelog's newest entry (X.Y-N) and, as
# PGXN wants three parts, META.json's X.Y.0.  Then copies the tree into
# OUTDIR/pg-recall-X.Y/ and runs `dpkg-buildpackage -b` there (debian/rules:
# pg_buildext), so the tree's own build is left alone.  OUTDIR receives
# postgresql-15-pg-recall_X.Y-N_<arch>.deb, its -dbgsym .deb, and the
# .buildinfo and .changes files.  Needs no root (Rules-Requires-Root: no).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
OUT=${1:-build/deb}

die() {
	echo "deb.sh: $*" >&2
	exit 1
}

for tool in dpkg-buildpackage dpkg-parsechangelog dh pg_buildext; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool not found: run 'bash scripts/setup.sh --deb' (or 'make deb')"
done

ver=$(sed -nE "s/^default_version[[:space:]]*=[[:space:]]*'([^']*)'.*/\1/p" pg_recall.control)
[ -n "$ver" ] || die "no default_version in pg_recall.control"

debver=$(dpkg-parsechangelog -S Version)
[ "${debver%-*}" = "$ver" ] ||
	die "debian/changelog's newest entry is $debver but pg_recall.control's default_version is '$ver': add an entry $ver-1 to debian/changelog"

# PGXN versions are SemVer: the control file's X.Y is X.Y.0 there
semver=$ver
[[ $semver =~ ^[0-9]+\.[0-9]+$ ]] && semver=$semver.0
metaver=$(perl -MJSON::PP -e '
	local $/; open my $f, "<", "META.json" or die "META.json: $!\n";
	my $m = JSON::PP::decode_json(<$f>);
	print join " ", $m->{version} // "", $m->{provides}{pg_recall}{version} // ""') ||
	die "META.json cannot be read"
[ "$metaver" = "$semver $semver" ] ||
	die "META.json's version and provides.pg_recall.version are '$metaver', want $semver (pg_recall.control's '$ver')"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$OUT/pg-recall-$ver
case $ROOT/ in
"$STAGE"/*) die "$STAGE would be the tree itself: choose another OUTDIR" ;;
esac
# an OUTDIR inside the tree stays out of the copy
excl=(--exclude=./build)
case $OUT in
"$ROOT"/*) excl+=("--exclude=./${OUT#"$ROOT"/}") ;;
esac

# a copy of the tree without what earlier builds and tests left; the
# package's clean step (make clean) removes the rest
echo "deb.sh: building $ver ($debver) in $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE"
tar -C "$ROOT" -cf - --exclude=./.git "${excl[@]}" --exclude=./results \
	--exclude=./output_iso --exclude=./tmp_check --exclude=./log \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	--exclude='./debian/postgresql-*-pg-recall' --exclude=./debian/.debhelper \
	--exclude=./debian/files --exclude='./debian/*.substvars' \
	--exclude=./debian/debhelper-build-stamp . |
	tar -C "$STAGE" -xf -

(cd "$STAGE" && dpkg-buildpackage -b -us -uc)
rm -rf "$STAGE"

arch=$(dpkg --print-architecture)
built=()
for pkg in $(sed -nE 's/^Package: (.*)/\1/p' debian/control); do
	deb=$OUT/${pkg}_${debver}_$arch.deb
	[ -f "$deb" ] || die "$deb was not built"
	built+=("$deb")
done
echo "deb.sh: built ${built[*]}"
