#!/usr/bin/env bash
# test/bench/relay_bench.sh: pg_recall_relay's figures (not part of make test).
#
# Builds and installs pg_recall and the relay, starts a throwaway cluster
# (pg_virtualenv, shared_preload_libraries = 'pg_recall': the notification
# dispatcher), and measures, each phase bounded in time:
#   1. stdout, catch-up: a backlog of BENCH_BACKLOG recalls, then the relay
#      started --from oldest: events/s it reads, prints and checkpoints;
#   2. stdout, live: 4 pgbench clients recalling fresh messages for
#      BENCH_SECONDS: the rate they reach with the relay running, and how
#      far behind the relay is at the end;
#   3. SSE, 1,000 clients on loopback (BENCH_CLIENTS): memory per client
#      (relay RSS delta / clients, after connecting and after the burst), a
#      burst of BENCH_BURST recalls in one statement: time until every
#      client has all of them (events/s per client, deliveries/s);
#   4. latency, commit to client: BENCH_PROBES single recalls at
#      BENCH_PROBE_RATE/s, each timed from the moment its COMMIT returned
#      to the moment each of the SSE clients has it; p50, p99 and max over
#      every delivery, with 1,000 clients connected (the stdout line is
#      written before the event goes to the clients); once on an idle
#      server, once while 4 pgbench clients recall BENCH_LOAD_RATE other
#      messages per second.
# The SSE clients are a small C program (epoll, libpq for the probes) built
# on the fly, so that the clients are not the bottleneck.  Results go to
# stdout and to relay-bench-results.txt at the top of the repository.
#
# Environment:
#   BENCH_CLIENTS     SSE clients (default 1000)
#   BENCH_BACKLOG     recalls in the catch-up backlog (default 100000)
#   BENCH_SECONDS     seconds of pgbench load in phase 2 (default 10)
#   BENCH_BURST       recalls in the SSE burst (default 20000)
#   BENCH_PROBES      latency probes (default 200)
#   BENCH_PROBE_RATE  probes per second (default 20)
#   BENCH_LOAD_RATE   recalls/s of the background load in the second latency
#                     run (default 500)
#   BENCH_OUT         result file (default relay-bench-results.txt)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if [ "${1:-}" != "--inside" ]; then
	if [ -z "${PG_CONFIG:-}" ]; then
		if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
			PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
		else
			PG_CONFIG=pg_config
		fi
	fi
	export PG_CONFIG
	PGVER=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	SUDO=
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	echo "== building and installing pg_recall and pg_recall_relay"
	make -C "$ROOT" --no-print-directory -s PG_CONFIG="$PG_CONFIG" >/dev/null
	$SUDO make -C "$ROOT" --no-print-directory -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	echo "== throwaway cluster (pg_virtualenv, shared_preload_libraries = pg_recall)"
	exec pg_virtualenv -t -v "$PGVER" \
		-o "shared_preload_libraries=pg_recall" -o "max_connections=200" \
		-o "fsync=off" -o "full_page_writes=off" \
		-- bash "$ROOT/test/bench/relay_bench.sh" --inside
fi

# ---------------------------------------------------------------------------
# Inside pg_virtualenv: PGHOST, PGPORT, PGUSER, PGPASSWORD are set.

NCLIENTS=${BENCH_CLIENTS:-1000}
BACKLOG=${BENCH_BACKLOG:-100000}
LOAD_SECS=${BENCH_SECONDS:-10}
BURST=${BENCH_BURST:-20000}
PROBES=${BENCH_PROBES:-200}
PROBE_RATE=${BENCH_PROBE_RATE:-20}
OUT=${BENCH_OUT:-$ROOT/relay-bench-results.txt}
BINDIR=$("$PG_CONFIG" --bindir)
RELAY=$BINDIR/pg_recall_relay
export PGDATABASE=postgres
unset PGAPPNAME

TMP=$(mktemp -d -t pg_recall_relay_bench.XXXXXX)
RELAY_PID=
cleanup() {
	if [ -n "$RELAY_PID" ]; then
		kill -TERM "$RELAY_PID" 2>/dev/null || true
		wait "$RELAY_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

RESULTS=()
say() {
	echo "$*"
	RESULTS+=("$*")
}

# ---------------------------------------------------------------------------
# the SSE load client

cat >"$TMP/sse_load.c" <<'EOF'
/*
 * sse_load: N Server-Sent Events clients against pg_recall_relay, on one
 * epoll loop.  Connects them, measures the relay's RSS before and after,
 * makes a burst of recalls (one statement) and waits until every client
 * has every event, then sends latency probes (single recalls, one at a
 * time, paced) and records, for each client, when each probe arrived.
 *
 *   sse_load PORT NCLIENTS RELAY_PID BURST_SQL NPROBES PROBE_RATE PROBE_FIRST_ID
 *
 * The database is reached through the PG* environment.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

typedef struct
{
	int			fd;
	int			started;
	long		events;
	char		carry[2048];
	size_t		clen;
} Client;

static Client *clients;
static int	nclients;
static int	efd;
static long nprobes;
static long probe_first;
static double *arrival;			/* [probe][client] */
static int	probing = 0;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
rss_kb(int pid)
{
	char		path[64], line[256];
	FILE	   *f;
	long		kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

static void
line(Client *c, int idx, const char *s, size_t len, double t)
{
	if (len >= 1 && s[0] == ':')
	{
		c->started = 1;
		return;
	}
	if (len < 6 || memcmp(s, "data: ", 6) != 0)
		return;
	c->events++;
	if (probing)
	{
		const char *p = memmem(s, len, "\"pk\":{\"id\": ", 12);

		if (p)
		{
			long		id = atol(p + 12);

			if (id >= probe_first && id < probe_first + nprobes &&
				arrival[(id - probe_first) * nclients + idx] == 0)
				arrival[(id - probe_first) * nclients + idx] = t;
		}
	}
}

/* Read everything available, for up to ms milliseconds. */
static void
pump(int ms)
{
	static char buf[256 * 1024];
	struct epoll_event evs[256];
	int			n = epoll_wait(efd, evs, 256, ms);
	double		t = now();

	for (int i = 0; i < n; i++)
	{
		int			idx = evs[i].data.u32;
		Client	   *c = &clients[idx];

		for (;;)
		{
			ssize_t		r = read(c->fd, buf, sizeof(buf));
			size_t		start = 0;

			if (r <= 0)
			{
				if (r == 0 || (errno != EAGAIN && errno != EINTR))
				{
					fprintf(stderr, "client %d: connection closed\n", idx);
					epoll_ctl(efd, EPOLL_CTL_DEL, c->fd, NULL);
					close(c->fd);
					c->fd = -1;
				}
				break;
			}
			for (size_t j = 0; j < (size_t) r; j++)
			{
				if (buf[j] != '\n')
					continue;
				if (c->clen > 0)
				{
					size_t		take = j - start;

					if (c->clen + take < sizeof(c->carry))
					{
						memcpy(c->carry + c->clen, buf + start, take);
						c->clen += take;
					}
					line(c, idx, c->carry, c->clen, t);
					c->clen = 0;
				}
				else
					line(c, idx, buf + start, j - start, t);
				start = j + 1;
			}
			if (start < (size_t) r)
			{
				size_t		take = r - start;

				if (c->clen + take < sizeof(c->carry))
				{
					memcpy(c->carry + c->clen, buf + start, take);
					c->clen += take;
				}
			}
		}
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a, y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int			port, pid;
	const char *burst_sql;
	double		rate;
	struct rlimit rl;
	struct sockaddr_in sa;
	PGconn	   *conn;
	PGresult   *res;
	long		rss0, rss1, rss2, burst_n;
	double		t0, t1;
	const char *req = "GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

	if (argc != 8)
	{
		fprintf(stderr, "usage: sse_load PORT NCLIENTS RELAY_PID BURST_SQL NPROBES RATE FIRST_ID\n");
		return 2;
	}
	port = atoi(argv[1]);
	nclients = atoi(argv[2]);
	pid = atoi(argv[3]);
	burst_sql = argv[4];
	nprobes = atol(argv[5]);
	rate = atof(argv[6]);
	probe_first = atol(argv[7]);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	conn = PQconnectdb("");
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}

	clients = calloc(nclients, sizeof(Client));
	efd = epoll_create1(0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

	rss0 = rss_kb(pid);
	t0 = now();
	for (int i = 0; i < nclients; i++)
	{
		struct epoll_event ev;
		int			fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
			write(fd, req, strlen(req)) != (ssize_t) strlen(req))
		{
			fprintf(stderr, "client %d: %s\n", i, strerror(errno));
			return 1;
		}
		fcntl(fd, F_SETFL, O_NONBLOCK);
		clients[i].fd = fd;
		ev.events = EPOLLIN;
		ev.data.u32 = i;
		epoll_ctl(efd, EPOLL_CTL_ADD, fd, &ev);
		if (i % 50 == 49)
			pump(0);
	}
	for (;;)
	{
		int			started = 0;

		for (int i = 0; i < nclients; i++)
			started += clients[i].started;
		if (started == nclients)
			break;
		if (now() - t0 > 60)
		{
			fprintf(stderr, "only %d of %d streams started\n", started, nclients);
			return 1;
		}
		pump(100);
	}
	printf("connected %d clients in %.2f s\n", nclients, now() - t0);
	usleep(500000);
	rss1 = rss_kb(pid);
	printf("rss_before_kb %ld rss_connected_kb %ld\n", rss0, rss1);

	/* burst: one statement, then every client must get every event */
	for (int i = 0; i < nclients; i++)
		clients[i].events = 0;
	t0 = now();
	res = PQexec(conn, burst_sql);
	t1 = now();
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "burst: %s", PQerrorMessage(conn));
		return 1;
	}
	burst_n = atol(PQcmdTuples(res));
	PQclear(res);
	for (;;)
	{
		long		minev = burst_n;
		int			alive = 0;

		for (int i = 0; i < nclients; i++)
			if (clients[i].fd >= 0)
			{
				alive++;
				if (clients[i].events < minev)
					minev = clients[i].events;
			}
		if (minev >= burst_n || alive == 0 || now() - t1 > 120)
		{
			double		el = now() - t1;
			long		total = 0;

			for (int i = 0; i < nclients; i++)
				total += clients[i].events;
			printf("burst %ld events (statement %.2f s); all %d clients had all of them %.2f s after commit\n",
				   burst_n, t1 - t0, alive, el);
			printf("burst_events %ld burst_seconds %.3f clients_alive %d deliveries %ld min_per_client %ld\n",
				   burst_n, el, alive, total, minev);
			break;
		}
		pump(50);
	}
	usleep(500000);
	rss2 = rss_kb(pid);
	printf("rss_after_burst_kb %ld\n", rss2);

	/* latency probes */
	if (nprobes > 0)
	{
		double	   *committed = calloc(nprobes, sizeof(double));
		double	   *lat;
		long		nlat = 0, missing = 0;
		char		sql[256];

		arrival = calloc((size_t) nprobes * nclients, sizeof(double));
		probing = 1;
		for (long k = 0; k < nprobes; k++)
		{
			double		next = now() + 1.0 / rate;

			snprintf(sql, sizeof(sql),
					 "SELECT recall.recall('messages', %ld::bigint, 'alice')",
					 probe_first + k);
			res = PQexec(conn, sql);
			committed[k] = now();
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				fprintf(stderr, "probe: %s", PQerrorMessage(conn));
				return 1;
			}
			PQclear(res);
			while (now() < next)
				pump((int) ((next - now()) * 1000) + 1);
		}
		t0 = now();
		while (now() - t0 < 5)
		{
			long		have = 0;

			for (long k = 0; k < nprobes * nclients; k++)
				have += arrival[k] != 0;
			if (have == nprobes * nclients)
				break;
			pump(50);
		}
		lat = malloc(sizeof(double) * nprobes * nclients);
		for (long k = 0; k < nprobes; k++)
			for (int i = 0; i < nclients; i++)
			{
				double		a = arrival[k * nclients + i];

				if (a == 0)
					missing++;
				else
					lat[nlat++] = (a - committed[k]) * 1000.0;
			}
		qsort(lat, nlat, sizeof(double), cmp_double);
		if (nlat > 0)
			printf("latency_ms p50 %.2f p90 %.2f p99 %.2f max %.2f min %.2f deliveries %ld missing %ld\n",
				   lat[nlat / 2], lat[(long) (nlat * 0.90)], lat[(long) (nlat * 0.99)],
				   lat[nlat - 1], lat[0], nlat, missing);
		else
			printf("latency_ms none missing %ld\n", missing);
	}
	PQfinish(conn);
	return 0;
}
EOF
cc -O2 -Wall -Werror -o "$TMP/sse_load" "$TMP/sse_load.c" \
	-I"$("$PG_CONFIG" --includedir)" -L"$("$PG_CONFIG" --libdir)" -lpq

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

start_relay() {
	"$RELAY" "$@" 2>>"$TMP/relay.err" </dev/null &
	RELAY_PID=$!
}

stop_relay() {
	kill -TERM "$RELAY_PID"
	wait "$RELAY_PID" || true
	RELAY_PID=
}

# lines in a file (0 when missing)
lines() {
	if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# ---------------------------------------------------------------------------
echo "== schema"
ROWS=$((BACKLOG + 20000 + BURST + 2 * PROBES + 100000))
psql -X -q -v ON_ERROR_STOP=1 <<EOF
CREATE EXTENSION pg_recall;
CREATE SEQUENCE mid START $((ROWS + 1));
CREATE TABLE messages (id bigint PRIMARY KEY, conversation bigint, sender text,
                       sent_at timestamptz DEFAULT now(), body text);
SELECT recall.enable('messages', '{body}', sender => 'sender',
                     sent_at => 'sent_at', conversation => 'conversation');
INSERT INTO messages (id, conversation, sender, body)
  SELECT g, g % 100, 'alice', 'message text ' || g FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE messages;
EOF

NPROC=$(nproc)
MACHINE="$(uname -m), $NPROC CPU(s), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}')"
say "pg_recall_relay benchmark on $MACHINE ($(date -u '+%Y-%m-%d %H:%M UTC'))"
say "(relay, PostgreSQL and the load clients share the machine)"
say ""

# ---------------------------------------------------------------------------
echo "== 1. stdout, catch-up of a backlog of $BACKLOG recalls"
for ((lo = 1; lo <= BACKLOG; lo += 10000)); do
	hi=$((lo + 9999))
	((hi > BACKLOG)) && hi=$BACKLOG
	psql -X -q -c "UPDATE messages SET recalled_at = now(), recall_reason = 'bench' WHERE id BETWEEN $lo AND $hi"
done
t0=$(date +%s.%N)
start_relay --from oldest --state "$TMP/catchup.state" -f "$TMP/catchup.jsonl"
deadline=$(( $(date +%s) + 120 ))
while [ "$(lines "$TMP/catchup.jsonl")" -lt "$BACKLOG" ] && [ "$(date +%s)" -lt "$deadline" ]; do
	sleep 0.02
done
t1=$(date +%s.%N)
n=$(lines "$TMP/catchup.jsonl")
stop_relay
rate=$(echo "$n $t0 $t1" | awk '{ printf "%.0f", $1 / ($3 - $2) }')
say "stdout catch-up: $n events in $(echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }') s = $rate events/s (read, print, fsync'd state per 1000)"

# ---------------------------------------------------------------------------
echo "== 2. stdout, live: 4 pgbench clients recalling for $LOAD_SECS s"
cat >"$TMP/recall.sql" <<'EOF'
\set conv random(1, 100)
INSERT INTO messages (id, conversation, sender, body) VALUES (nextval('mid'), :conv, 'alice', 'hello');
SELECT recall.recall('messages', currval('mid'), 'alice');
EOF
start_relay --state "$TMP/live.state" -f "$TMP/live.jsonl"
sleep 1
before=$(psql -X -A -t -c "SELECT count(*) FROM recall.events")
pgbench -n -c 4 -j 2 -T "$LOAD_SECS" -f "$TMP/recall.sql" >"$TMP/pgbench.out" 2>&1
t_end=$(date +%s.%N)
after=$(psql -X -A -t -c "SELECT count(*) FROM recall.events")
want=$((after - before))
deadline=$(( $(date +%s) + 60 ))
while [ "$(lines "$TMP/live.jsonl")" -lt "$want" ] && [ "$(date +%s)" -lt "$deadline" ]; do
	sleep 0.01
done
t_caught=$(date +%s.%N)
got=$(lines "$TMP/live.jsonl")
stop_relay
tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$TMP/pgbench.out" | head -1)
say "stdout live: pgbench recalled $want messages at ${tps} tps; the relay printed $got, the last $(echo "$t_end $t_caught" | awk '{ printf "%.0f", ($2 - $1) * 1000 }') ms after the load ended"

# ---------------------------------------------------------------------------
echo "== 3-4. SSE: $NCLIENTS clients, a burst of $BURST, $PROBES latency probes"
PORT=8480
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
start_relay --http "127.0.0.1:$PORT" -f "$TMP/sse.jsonl"
for _ in $(seq 1 100); do
	curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
BLO=$((BACKLOG + 20001))
BHI=$((BLO + BURST - 1))
PFIRST=$((BHI + 1))
"$TMP/sse_load" "$PORT" "$NCLIENTS" "$RELAY_PID" \
	"UPDATE messages SET recalled_at = now(), recall_reason = 'bench' WHERE id BETWEEN $BLO AND $BHI" \
	"$PROBES" "$PROBE_RATE" "$PFIRST" | tee "$TMP/sse_load.out"

read -r _ rss0 _ rss1 < <(grep '^rss_before_kb' "$TMP/sse_load.out")
rss2=$(awk '/^rss_after_burst_kb/ { print $2 }' "$TMP/sse_load.out")
read -r _ bn _ bs _ alive _ deliveries _ minev < <(grep '^burst_events' "$TMP/sse_load.out")
say "SSE memory: relay RSS $((rss0 / 1024)) MB idle, $((rss1 / 1024)) MB with $NCLIENTS clients, $((rss2 / 1024)) MB after the burst: $(( (rss1 - rss0) / NCLIENTS )) kB per client connected, $(( (rss2 - rss0) / NCLIENTS )) kB per client after the burst (ring of recent events included)"
say "SSE burst: $bn events to $alive clients in $bs s after commit: $(echo "$bn $bs" | awk '{ printf "%.0f", $1 / $2 }') events/s to every client, $(echo "$deliveries $bs" | awk '{ printf "%.0f", $1 / $2 }') deliveries/s (every client got $minev)"
lat=$(grep '^latency_ms' "$TMP/sse_load.out" | sed 's/^latency_ms //')
say "SSE latency, idle server ($PROBES single recalls at $PROBE_RATE/s, $NCLIENTS clients each): $lat (ms)"

# the same probes while 4 pgbench clients recall BENCH_LOAD_RATE messages/s
LOAD_RATE=${BENCH_LOAD_RATE:-500}
PFIRST2=$((PFIRST + PROBES))
pgbench -n -c 4 -j 2 -R "$LOAD_RATE" -T $((PROBES / PROBE_RATE + 8)) \
	-f "$TMP/recall.sql" >"$TMP/pgbench2.out" 2>&1 &
PGB=$!
sleep 1
"$TMP/sse_load" "$PORT" "$NCLIENTS" "$RELAY_PID" \
	"UPDATE messages SET recalled_at = now() WHERE false" \
	"$PROBES" "$PROBE_RATE" "$PFIRST2" | tee "$TMP/sse_load2.out"
wait "$PGB" || true
stop_relay
lat=$(grep '^latency_ms' "$TMP/sse_load2.out" | sed 's/^latency_ms //')
say "SSE latency, under load ($LOAD_RATE other recalls/s by 4 pgbench clients): $lat (ms)"

{
	printf '%s\n' "${RESULTS[@]}"
} >"$OUT"
echo
echo "== results (also in $OUT)"
printf '%s\n' "${RESULTS[@]}"
if grep -q 'error' "$TMP/relay.err"; then
	echo "relay errors:"
	grep 'error' "$TMP/relay.err"
fi
