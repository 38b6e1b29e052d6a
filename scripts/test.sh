#!/usr/bin/env bash
# scripts/test.sh: build, install and run every pg_recall test suite.
#
# Called by `make test` (after scripts/setup.sh).  Steps:
#   1. make (the Makefile compiles with -Wall -Werror), make install
#   2. pg_regress suites (sql/*.sql) and isolation specs (test/specs/*.spec)
#      through `make installcheck`, against a throwaway cluster made by
#      pg_virtualenv
#   3. TAP tests (test/t/*.pl) with prove and PostgreSQL::Test::Cluster, from
#      a copy of the tree owned by the postgres user when run as root (initdb
#      refuses to run as root)
#   4. the Debian package (test/deb/package.sh): make deb, dpkg -i, CREATE
#      and ALTER EXTENSION on a throwaway cluster, then the package purged
#      and the files of step 1 put back
#   5. each runner's summary, then one line "N passed, N failed" counting
#      pg_regress tests, isolation specs, TAP files and the package test
# Exits non-zero when anything fails.
#
# Environment:
#   PG_CONFIG           pg_config of the server to test (default: PostgreSQL 15's)
#   RECALL_TEST_TIMEOUT seconds allowed to each runner (default 360)
#   PG_TEST_NOCLEAN     keep the TAP copy and its tmp_check after the run
#   RECALL_TAP          run only these TAP files (space-separated paths, e.g.
#                       test/t/041_fuzz.pl) and no pg_regress or isolation
#                       suite (`make fuzz`)
#   RECALL_TEST_DEB     1 (default here): step 4 may write into /usr; 0: skip
#                       it; build: build and look into the .deb only

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	else
		PG_CONFIG=pg_config
	fi
fi
export PG_CONFIG
if ! PGXS=$("$PG_CONFIG" --pgxs 2>/dev/null); then
	echo "test.sh: $PG_CONFIG not found or without PGXS: run scripts/setup.sh" >&2
	exit 2
fi
PGVER=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
BINDIR=$("$PG_CONFIG" --bindir)
PGXS_TOP=$(cd "$(dirname "$PGXS")/../.." && pwd)
PERL_DIR=$PGXS_TOP/src/test/perl
PG_REGRESS_BIN=$PGXS_TOP/src/test/regress/pg_regress
TIMEOUT=${RECALL_TEST_TIMEOUT:-360}

# As root, TAP tests run as the postgres user (initdb refuses root).
SUDO=
RUN_AS=()
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	RUN_AS=(runuser -u postgres --)
fi

WORK=$(mktemp -d -t pg_recall_test.XXXXXX)
chmod 755 "$WORK"

# Stop servers that TAP tests left running (a test killed by the time limit
# or by Ctrl-C does not reach its own teardown).
stop_tap_servers() {
	local pidfile
	[ -d "$WORK/tap" ] || return 0
	while IFS= read -r pidfile; do
		"${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$(dirname "$pidfile")" \
			stop -m immediate >/dev/null 2>&1 || true
	done < <(find "$WORK/tap" -name postmaster.pid 2>/dev/null)
}

cleanup() {
	stop_tap_servers
	if [ -n "${PG_TEST_NOCLEAN:-}" ]; then
		echo "test.sh: PG_TEST_NOCLEAN is set: keeping $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

banner() {
	echo
	echo "======================================================================"
	echo "== $*"
	echo "======================================================================"
}

# Totals for the last line, and one summary line per runner.
TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARIES=()

# Count a pg_regress (or pg_isolation_regress) run from its summary line:
#   " All N tests passed. "
#   " N of M tests failed. "
#   " N of M tests passed, K failed test(s) ignored. "
#   " N of M tests failed, K of these failures ignored. "
# A run that ended without a summary (a missing expected file, server or set-up
# trouble) counts the tests it finished, and one more failure for the stop.
# Arguments: runner name, log file, exit status.
count_pg_regress() {
	local name=$1 log=$2 rc=$3 line p=0 f=0 a b k
	line=$(grep -E '^ *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests (passed|failed))' "$log" | tail -n 1 | sed -E 's/^ +//; s/ +$//')
	if [[ $line =~ ^All\ ([0-9]+)\ tests\ passed ]]; then
		p=${BASH_REMATCH[1]}
	elif [[ $line =~ ^([0-9]+)\ of\ ([0-9]+)\ tests\ failed,\ ([0-9]+)\ of\ these ]]; then
		a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} k=${BASH_REMATCH[3]}
		f=$((a - k)); p=$((b - f))
	elif [[ $line =~ ^([0-9]+)\ of\ ([0-9]+)\ tests\ failed ]]; then
		a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
		f=$a; p=$((b - a))
	elif [[ $line =~ ^([0-9]+)\ of\ ([0-9]+)\ tests\ passed ]]; then
		p=${BASH_REMATCH[1]}
	else
		# count the tests that finished before the run stopped, and the
		# stop itself as one failure
		p=$(grep -cE '^(test | +)[^ ]+ +\.\.\. ok ' "$log" || true)
		f=$(grep -cE '^(test | +)[^ ]+ +\.\.\. FAILED' "$log" || true)
		f=$((f + 1))
		line="the run stopped early (exit status $rc) after $p passed, $((f - 1)) failed"
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		line="$line (but exit status $rc)"
		f=1
	fi
	TOTAL_PASSED=$((TOTAL_PASSED + p))
	TOTAL_FAILED=$((TOTAL_FAILED + f))
	SUMMARIES+=("$(printf '%-11s %s' "$name:" "$line")")
}

# Count a prove run by test file, from "Files=N, Tests=M" and the files named
# in its "Test Summary Report" with failed subtests, a non-zero exit or wait
# status, or parse errors (a file listed only for "TODO passed" did not fail).
# Arguments: log file, exit status[, label of its summary line (TAP)].
count_prove() {
	local log=$1 rc=$2 label=${3:-TAP} files tests result nfail p f line
	files=$(sed -nE 's/^Files=([0-9]+), Tests=([0-9]+),.*/\1/p' "$log" | tail -n 1)
	tests=$(sed -nE 's/^Files=([0-9]+), Tests=([0-9]+),.*/\2/p' "$log" | tail -n 1)
	result=$(sed -nE 's/^Result: ([A-Z]+).*/\1/p' "$log" | tail -n 1)
	TAP_FAILED_FILES=$(awk '
		/^Test Summary Report/ { in_report = 1; next }
		/^Files=[0-9]+, Tests=/ { in_report = 0 }
		in_report && /^[^ -].* \(Wstat: [0-9]+/ {
			cur = $1
			wstat = $0; sub(/.*\(Wstat: /, "", wstat); sub(/[^0-9].*/, "", wstat)
			nf = $0; sub(/.* Failed: /, "", nf); sub(/[^0-9].*/, "", nf)
			if (wstat + 0 != 0 || nf + 0 != 0) bad[cur] = 1
			next
		}
		in_report && /^  Parse errors:/ && cur != "" { bad[cur] = 1 }
		END { for (t in bad) print t }' "$log" | sort)
	nfail=$(printf '%s' "$TAP_FAILED_FILES" | grep -c . || true)
	if [ -z "$files" ]; then
		line="no summary: prove stopped early (exit status $rc)"
		p=0; f=1
	else
		line="Files=$files, Tests=$tests, Result: ${result:-?}"
		f=$nfail
		if [ "$f" -eq 0 ] && { [ "$rc" -ne 0 ] || [ "$result" != PASS ]; }; then
			f=1
			line="$line (exit status $rc)"
		fi
		p=$((files - f))
		[ "$p" -lt 0 ] && p=0
	fi
	TOTAL_PASSED=$((TOTAL_PASSED + p))
	TOTAL_FAILED=$((TOTAL_FAILED + f))
	SUMMARIES+=("$(printf '%-11s %s' "$label:" "$line")")
}

# Print a regression.diffs file, each test's diff cut to its first lines so
# that every failing test shows up.
show_diffs() {
	local file=$1 max=${2:-150}
	[ -f "$file" ] || return 0
	echo "---------------- $file ($(grep -c '^diff ' "$file") failing tests) ----------------"
	awk -v max="$max" '
		function flush() { if (n > max) printf "[... %d more lines of this diff cut ...]\n", n - max }
		/^diff / { flush(); n = 0 }
		{ n++; if (n <= max) print }
		END { flush() }' "$file"
	echo "---------------- end of $file ----------------"
}

# Run a command under the time limit, in a directory, with its output shown
# live and kept in a log file.  It runs in the background in its own process
# group (timeout makes one), so that Ctrl-C or a TERM to this script stops it
# and everything it started, and pg_virtualenv still drops its cluster.
# Arguments: log file, directory, command...; returns the command's status.
RUN_PID=
on_signal() {
	if [ -n "$RUN_PID" ]; then
		kill -TERM -- "-$RUN_PID" 2>/dev/null || kill -TERM "$RUN_PID" 2>/dev/null
		wait
	fi
	echo "test.sh: interrupted" >&2
	exit 130
}
trap on_signal INT TERM

run_logged() {
	local log=$1 dir=$2 rc tail_pid
	shift 2
	: >"$log"
	(cd "$dir" && exec timeout --kill-after=30 "$TIMEOUT" "$@") >"$log" 2>&1 </dev/null &
	RUN_PID=$!
	tail -n +1 -f --pid="$RUN_PID" "$log" &
	tail_pid=$!
	wait "$RUN_PID"
	rc=$?
	RUN_PID=
	wait "$tail_pid"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "test.sh: stopped after ${TIMEOUT}s (RECALL_TEST_TIMEOUT)" >&2
	fi
	return "$rc"
}

# Print a file, cut to its last lines when long.
show_file() {
	local file=$1 max=${2:-400} n
	[ -f "$file" ] || return 0
	n=$(wc -l <"$file")
	echo "---------------- $file ($n lines) ----------------"
	if [ "$n" -gt "$max" ]; then
		echo "[... first $((n - max)) lines cut ...]"
		tail -n "$max" "$file"
	else
		cat "$file"
	fi
	echo "---------------- end of $file ----------------"
}

# ---------------------------------------------------------------------------
banner "build and install (PostgreSQL $PGVER, $PG_CONFIG)"
if ! make --no-print-directory PG_CONFIG="$PG_CONFIG"; then
	echo "test.sh: build failed" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
if ! $SUDO make --no-print-directory -s PG_CONFIG="$PG_CONFIG" install; then
	echo "test.sh: make install failed" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
echo "installed into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"

# ---------------------------------------------------------------------------
# pg_regress and isolation, one throwaway cluster for both.  They run as two
# make invocations so that a failing pg_regress suite does not hide the
# isolation results (PGXS installcheck stops at the first failing runner).
REGRESS_TESTS=$(find sql -maxdepth 1 -name '*.sql' ! -name 'pg_recall--*' 2>/dev/null | sort)
ISOLATION_TESTS=$(find test/specs -maxdepth 1 -name '*.spec' 2>/dev/null | sort)

if [ -n "${RECALL_TAP:-}" ]; then
	SUMMARIES+=("pg_regress: skipped (RECALL_TAP)" "isolation:  skipped (RECALL_TAP)")
elif [ -n "$REGRESS_TESTS$ISOLATION_TESTS" ]; then
	banner "pg_regress and isolation suites (pg_virtualenv -- make installcheck)"
	rm -rf results output_iso regression.diffs regression.out
	cat >"$WORK/installcheck.sh" <<'EOF'
# Runs inside pg_virtualenv: PGHOST, PGPORT, PGUSER point at the cluster.
cd "$1" || exit 2
work=$2
echo "throwaway cluster: port $PGPORT, user $PGUSER"
if [ -n "$3" ]; then
	make --no-print-directory installcheck ISOLATION= 2>&1 | tee "$work/regress.log"
	echo "${PIPESTATUS[0]}" >"$work/regress.rc"
fi
if [ -n "$4" ]; then
	make --no-print-directory installcheck REGRESS= 2>&1 | tee "$work/isolation.log"
	echo "${PIPESTATUS[0]}" >"$work/isolation.rc"
fi
exit 0
EOF
	run_logged "$WORK/installcheck.log" "$ROOT" \
		pg_virtualenv -t -v "$PGVER" -- \
		bash "$WORK/installcheck.sh" "$ROOT" "$WORK" \
		"${REGRESS_TESTS:+yes}" "${ISOLATION_TESTS:+yes}"
	venv_rc=$?

	if [ -n "$REGRESS_TESTS" ]; then
		rc=$(cat "$WORK/regress.rc" 2>/dev/null || echo "$venv_rc")
		[ "$rc" -eq 0 ] && [ "$venv_rc" -ne 0 ] && rc=$venv_rc
		touch "$WORK/regress.log"
		count_pg_regress "pg_regress" "$WORK/regress.log" "$rc"
		if [ "$rc" -ne 0 ]; then
			show_diffs regression.diffs
		fi
	else
		SUMMARIES+=("pg_regress: no suites in sql/ yet")
	fi
	if [ -n "$ISOLATION_TESTS" ]; then
		rc=$(cat "$WORK/isolation.rc" 2>/dev/null || echo "$venv_rc")
		[ "$rc" -eq 0 ] && [ "$venv_rc" -ne 0 ] && rc=$venv_rc
		touch "$WORK/isolation.log"
		count_pg_regress "isolation" "$WORK/isolation.log" "$rc"
		if [ "$rc" -ne 0 ]; then
			show_diffs output_iso/regression.diffs
		fi
	else
		SUMMARIES+=("isolation:  no specs in test/specs yet")
	fi
else
	SUMMARIES+=("pg_regress: no suites in sql/ yet" "isolation:  no specs in test/specs yet")
fi

# ---------------------------------------------------------------------------
# TAP, from a copy of the tree: initdb refuses root, so as root the copy
# belongs to the postgres user and prove runs as postgres.
if [ -n "${RECALL_TAP:-}" ]; then
	read -ra TAP_TESTS <<<"$RECALL_TAP"
else
	mapfile -t TAP_TESTS < <(find test/t -maxdepth 1 -name '*.pl' 2>/dev/null | sort)
fi
if [ "${#TAP_TESTS[@]}" -gt 0 ]; then
	banner "TAP tests (prove test/t/*.pl)"
	TAPDIR=$WORK/tap/pg_recall
	mkdir -p "$TAPDIR"
	tar -C "$ROOT" -cf - --exclude=./.git --exclude=./results \
		--exclude=./output_iso --exclude=./tmp_check --exclude=./log . |
		tar -C "$TAPDIR" -xf -
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres:postgres "$WORK/tap"
	fi
	run_logged "$WORK/prove.log" "$TAPDIR" \
		"${RUN_AS[@]}" env \
		PATH="$BINDIR:$PATH" \
		PG_REGRESS="$PG_REGRESS_BIN" \
		TESTDIR="$TAPDIR" \
		PERL5LIB="$PERL_DIR${PERL5LIB:+:$PERL5LIB}" \
		PG_CONFIG="$PG_CONFIG" \
		HOME="$WORK/tap" \
		prove -I "$PERL_DIR" -I . -I test/t "${TAP_TESTS[@]}"
	rc=$?
	count_prove "$WORK/prove.log" "$rc"
	if [ "$rc" -ne 0 ] || [ -n "$TAP_FAILED_FILES" ]; then
		logs=()
		if [ -n "$TAP_FAILED_FILES" ]; then
			for t in $TAP_FAILED_FILES; do
				base=$(basename "$t" .pl)
				logs+=("$TAPDIR/tmp_check/log/regress_log_$base")
				for l in "$TAPDIR/tmp_check/log/${base}"_*.log; do
					[ -f "$l" ] && logs+=("$l")
				done
			done
		else
			for l in "$TAPDIR"/tmp_check/log/regress_log_*; do
				[ -f "$l" ] && logs+=("$l")
			done
		fi
		for l in "${logs[@]}"; do
			show_file "$l" 80
		done
	fi
else
	echo
	echo "TAP: no test/t/*.pl yet, skipped"
	SUMMARIES+=("TAP:        no test/t/*.pl yet")
fi

# ---------------------------------------------------------------------------
# The Debian package, after every suite: it replaces the files of step 1
# with the package's for a while (dpkg -i), then puts them back.  It runs
# only with RECALL_TEST_DEB=1 (set here unless the caller set it), as root or
# through sudo, with the system's PostgreSQL; otherwise it says it skipped.
if [ -n "${RECALL_TAP:-}" ]; then
	SUMMARIES+=("$(printf '%-11s %s' "deb:" "skipped (RECALL_TAP)")")
else
	banner "Debian package (test/deb/package.sh)"
	run_logged "$WORK/deb.log" "$ROOT" \
		env RECALL_TEST_DEB="${RECALL_TEST_DEB:-1}" prove -v --exec bash test/deb/package.sh
	rc=$?
	deb_skip=$(sed -nE 's/^test\/deb\/package\.sh \.+ skipped: (.*)/\1/p' "$WORK/deb.log")
	if [ -n "$deb_skip" ] && [ "$rc" -eq 0 ]; then
		SUMMARIES+=("$(printf '%-11s %s' "deb:" "skipped: $deb_skip")")
	else
		count_prove "$WORK/deb.log" "$rc" deb
	fi
fi

# ---------------------------------------------------------------------------
banner "summary"
for s in "${SUMMARIES[@]}"; do
	echo "$s"
done
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
