/*-------------------------------------------------------------------------
 *
 * pg_recall_relay.c
 *	  Relay pg_recall's recall events to clients, without loss.
 *
 * The relay reads recall.events_after() from its cursor and prints each
 * event as one JSON line on stdout (or --file), flushed per batch; with
 * --state it then saves the batch's last cursor (write, fsync, rename), so
 * a restarted relay resumes where it left: delivery is at-least-once, and
 * the cursor lets a client drop repeats.  It LISTENs on the notification
 * channels only to wake up, and also reads every --poll-interval seconds,
 * so nothing depends on a NOTIFY reaching it (one sent while it reconnects
 * is gone for good; the event log is not).
 *
 * A lost connection (server restart, network, pg_terminate_backend) is
 * retried with capped exponential backoff, then the relay re-LISTENs and
 * catches up from its cursor; a server that is down at start is waited for
 * the same way.  SIGTERM and SIGINT finish the batch, save the state and
 * exit 0; SIGHUP reopens --file and --log-file.  With --http, the events
 * are also served as Server-Sent Events (relay_http.c).
 *
 * The main loop owns the libpq connection: it waits (select) on the
 * connection's socket and on a self-pipe written by the signal handlers
 * and by the HTTP thread.  It keeps the counters that GET /metrics shows
 * (relay_metrics.c) up to date: the database state, the events written and
 * the lag (see drain()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/connect.h"
#include "common/logging.h"
#include "common/string.h"
#include "getopt_long.h"
#include "relay.h"

/* Reconnection delays: first retry at once, then doubling up to the cap */
#define BACKOFF_FIRST_MS	250
#define BACKOFF_MAX_MS		15000

/* A notification's events not seen yet are looked for this long */
#define HINT_TTL_MS			5000
#define HINT_FIRST_MS		2
#define HINT_MAX_MS			50
#define MAX_HINTS			64

/* Seqs of the last events printed, to recognize a late notification */
#define RECENT_SEQS			2048

/* Longest channel name (NAMEDATALEN - 1), as recall.enable() allows */
#define MAX_CHANNEL			63

/* password prompting, as vacuumlo */
enum trivalue
{
	TRI_DEFAULT,
	TRI_NO,
	TRI_YES
};

static const char *progname;

/* options */
static const char *conninfo = NULL;
static const char *pghost = NULL;
static const char *pgport = NULL;
static const char *pguser = NULL;
static enum trivalue prompt_password = TRI_DEFAULT;
static char **channels = NULL;
static int	nchannels = 0;
static const char *state_path = NULL;
static bool from_oldest = false;
static const char *out_path = NULL;
static const char *log_path = NULL;
static const char *http_spec = NULL;
static const char *token_path = NULL;
static int	poll_ms = 2000;
static int	heartbeat_secs = 15;
static int	sse_buffer = 65536;
static bool quiet = false;

/* state */
static PGconn *conn = NULL;
static char *password = NULL;
static char *cursor = NULL;		/* last cursor printed; NULL: none yet */
static bool have_cursor = false;	/* cursor is set (from state or head) */
static FILE *out = NULL;
static bool out_is_file = false;
static int	wake_pipe[2] = {-1, -1};
static RelayMetrics *metrics = NULL;
static volatile sig_atomic_t terminate_requested = false;
static volatile sig_atomic_t reopen_requested = false;
static int	terminate_signal = 0;

/* Events announced by a notification and not printed yet */
typedef struct Hint
{
	int64		first;
	int64		last;
	int64		seen;
	int64		expires;
} Hint;

static Hint hints[MAX_HINTS];
static int	nhints = 0;
static int64 recent_seqs[RECENT_SEQS];
static int	nrecent = 0;		/* entries used, up to RECENT_SEQS */
static int	recent_next = 0;	/* where the next one goes */

static void usage(void);

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------
 */

/* Wake the main loop up (signal handlers, HTTP thread); async-safe. */
static void
relay_wake(void)
{
	int			save_errno = errno;

	if (wake_pipe[1] >= 0 && write(wake_pipe[1], "x", 1) < 0)
	{
		/* full pipe: the main loop is awake already */
	}
	errno = save_errno;
}

/* SIGTERM, SIGINT: stop after the batch. */
static void
handle_terminate(SIGNAL_ARGS)
{
	terminate_requested = true;
	terminate_signal = postgres_signal_arg;
	relay_wake();
}

/* SIGHUP: reopen the output and log files. */
static void
handle_reopen(SIGNAL_ARGS)
{
	reopen_requested = true;
	relay_wake();
}

/* Prefix every message with the time, once the relay runs. */
static void
log_timestamp(void)
{
	struct timespec ts;
	struct tm	tm;
	char		buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s.%03d ", buf, (int) (ts.tv_nsec / 1000000));
}

/* Read a whole small file; NULL (errno set) when it cannot be read. */
static char *
read_small_file(const char *path, size_t max)
{
	int			fd;
	char	   *buf;
	ssize_t		n;
	size_t		len = 0;

	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return NULL;
	buf = pg_malloc(max + 1);
	while (len < max && (n = read(fd, buf + len, max - len)) != 0)
	{
		if (n < 0)
		{
			int			save_errno = errno;

			close(fd);
			free(buf);
			errno = save_errno;
			return NULL;
		}
		len += n;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* Parse a positive number of seconds (decimals allowed) into ms. */
static bool
parse_seconds(const char *arg, double min, double max, int *ms)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || isnan(v) || v < min || v > max)
		return false;
	*ms = (int) (v * 1000);
	return true;
}

/* ------------------------------------------------------------------------
 * Output, logs and state file
 * ------------------------------------------------------------------------
 */

/* Open (or reopen, on SIGHUP) the output file. */
static void
open_output(void)
{
	struct stat st;

	if (out_path == NULL || strcmp(out_path, "-") == 0)
		out = stdout;
	else
	{
		if (out != NULL && out != stdout)
		{
			if (fclose(out) != 0)
				pg_log_warning("could not close output file \"%s\": %m", out_path);
		}
		out = fopen(out_path, "a");
		if (out == NULL)
			pg_fatal("could not open output file \"%s\": %m", out_path);
	}
	setvbuf(out, NULL, _IOFBF, 64 * 1024);
	out_is_file = (fstat(fileno(out), &st) == 0 && S_ISREG(st.st_mode));

	/*
	 * A relay killed in the middle of a batch may have left half a line (its
	 * batch was not saved in the state, so it comes again): end it, so that
	 * the next line is whole.
	 */
	if (out_is_file && st.st_size > 0)
	{
		char		last;

		if (pread(fileno(out), &last, 1, st.st_size - 1) == 1 && last != '\n')
		{
			fputc('\n', out);
			fflush(out);
		}
	}
}

/* Open (or reopen, on SIGHUP) the log file in place of stderr. */
static bool
open_log(void)
{
	int			fd;

	if (log_path == NULL)
		return true;
	fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | PG_BINARY, 0640);
	if (fd < 0)
	{
		pg_log_error("could not open log file \"%s\": %m", log_path);
		return false;
	}
	fflush(stderr);
	if (dup2(fd, STDERR_FILENO) < 0)
	{
		pg_log_error("could not redirect messages to \"%s\": %m", log_path);
		close(fd);
		return false;
	}
	close(fd);
	return true;
}

/*
 * Load the state file: the cursor to resume from.  A missing file means a
 * fresh start; an unreadable one, or one without a plausible cursor, is an
 * error (the database has the last word on the cursor at the first read).
 */
static void
load_state(void)
{
	char	   *buf;
	size_t		len;

	buf = read_small_file(state_path, 4096);
	if (buf == NULL)
	{
		if (errno == ENOENT)
			return;
		pg_fatal("could not read state file \"%s\": %m", state_path);
	}
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (len == 0 || len > RELAY_MAX_CURSOR)
	{
		pg_log_error("state file \"%s\" does not hold a cursor", state_path);
		pg_log_error_hint("Remove the file to start again with --from.");
		exit(1);
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
		{
			pg_log_error("state file \"%s\" does not hold a valid cursor", state_path);
			pg_log_error_hint("Remove the file to start again with --from.");
			exit(1);
		}
	cursor = buf;
	have_cursor = true;
}

/* fsync a file by name (the state file's directory). */
static void
fsync_path(const char *path, bool dir)
{
	int			fd = open(path, (dir ? O_RDONLY : O_RDWR) | PG_BINARY, 0);

	if (fd < 0)
		return;
	if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF)
		pg_log_warning("could not fsync \"%s\": %m", path);
	close(fd);
}

/*
 * Save the cursor in the state file: write a temporary file, fsync it,
 * rename it over the state file, fsync the directory.  A relay that cannot
 * save its position stops (it would repeat everything after a restart).
 */
static void
save_state(void)
{
	char	   *tmp;
	char	   *dir;
	char	   *slash;
	int			fd;
	size_t		len;

	if (state_path == NULL || cursor == NULL)
		return;
	tmp = psprintf("%s.tmp", state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, 0600);
	if (fd < 0)
		pg_fatal("could not create state file \"%s\": %m", tmp);
	len = strlen(cursor);
	if (write(fd, cursor, len) != (ssize_t) len || write(fd, "\n", 1) != 1)
	{
		if (errno == 0)
			errno = ENOSPC;
		pg_fatal("could not write state file \"%s\": %m", tmp);
	}
	if (fsync(fd) != 0)
		pg_fatal("could not fsync state file \"%s\": %m", tmp);
	if (close(fd) != 0)
		pg_fatal("could not close state file \"%s\": %m", tmp);
	if (rename(tmp, state_path) != 0)
		pg_fatal("could not rename \"%s\" to \"%s\": %m", tmp, state_path);

	dir = pg_strdup(state_path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	fsync_path(dir, true);
	free(dir);
	free(tmp);
}

/* At start: the state file's directory must take the temporary file. */
static void
check_state_writable(void)
{
	char	   *tmp = psprintf("%s.tmp", state_path);
	int			fd = open(tmp, O_WRONLY | O_CREAT | PG_BINARY, 0600);

	if (fd < 0)
		pg_fatal("could not create state file \"%s\": %m", tmp);
	close(fd);
	unlink(tmp);
	free(tmp);
}

/* Set the relay's cursor. */
static void
set_cursor(const char *c)
{
	free(cursor);
	cursor = c ? pg_strdup(c) : NULL;
	have_cursor = true;
}

/* ------------------------------------------------------------------------
 * Notifications as hints
 * ------------------------------------------------------------------------
 */

/* The number after "key": in a JSON payload, if any. */
static bool
payload_number(const char *payload, const char *key, int64 *value)
{
	char		pattern[32];
	const char *p;
	char	   *end;

	snprintf(pattern, sizeof(pattern), "\"%s\":", key);
	p = strstr(payload, pattern);
	if (p == NULL)
		return false;
	p += strlen(pattern);
	while (*p == ' ')
		p++;
	errno = 0;
	*value = strtoll(p, &end, 10);
	return errno == 0 && end != p;
}

/*
 * Remember the events a notification announces.  The notification is only
 * a wake-up; but an event committed while an older transaction still runs
 * becomes readable only when that one ends, so the relay reads again soon
 * (HINT_FIRST_MS, doubling up to HINT_MAX_MS) until it has printed them or
 * HINT_TTL_MS passed.  A notification that comes after its events were
 * printed (the relay was reading anyway) is recognized by their seqs.
 */
static void
add_hint(const char *payload)
{
	int64		first;
	int64		last;
	int64		seen = 0;

	if (payload_number(payload, "first_seq", &first) &&
		payload_number(payload, "last_seq", &last))
		;
	else if (payload_number(payload, "seq", &first))
		last = first;
	else
		return;
	if (last < first || last - first > 1000000)
		return;
	for (int i = 0; i < nrecent && seen <= last - first; i++)
		if (recent_seqs[i] >= first && recent_seqs[i] <= last)
			seen++;
	if (seen > last - first)
		return;
	if (nhints == MAX_HINTS)
	{
		memmove(&hints[0], &hints[1], (MAX_HINTS - 1) * sizeof(Hint));
		nhints--;
	}
	hints[nhints].first = first;
	hints[nhints].last = last;
	hints[nhints].seen = seen;
	hints[nhints].expires = relay_now_ms() + HINT_TTL_MS;
	nhints++;
}

/* Count printed events against the hints; drop the satisfied and expired. */
static void
consume_hints(const RelayBatch *batch)
{
	int64		now = relay_now_ms();
	int			keep = 0;

	for (int i = 0; i < batch->n; i++)
	{
		recent_seqs[recent_next] = batch->events[i].seq;
		recent_next = (recent_next + 1) % RECENT_SEQS;
		if (nrecent < RECENT_SEQS)
			nrecent++;
	}
	for (int h = 0; h < nhints; h++)
	{
		Hint	   *hint = &hints[h];

		for (int i = 0; i < batch->n; i++)
			if (batch->events[i].seq >= hint->first &&
				batch->events[i].seq <= hint->last)
				hint->seen++;
		if (hint->seen > hint->last - hint->first || hint->expires <= now)
			continue;
		hints[keep++] = *hint;
	}
	nhints = keep;
}

/* ------------------------------------------------------------------------
 * The database connection
 * ------------------------------------------------------------------------
 */

/* Log a state change of the connection, once per distinct message. */
static char *last_connect_failure = NULL;

static void
log_connect_failure(const char *msg, int delay_ms)
{
	if (last_connect_failure != NULL && strcmp(last_connect_failure, msg) == 0)
		return;
	free(last_connect_failure);
	last_connect_failure = pg_strdup(msg);
	pg_log_warning("%s; retrying with backoff (next in %.2f s, at most %d s apart)",
				   msg, delay_ms / 1000.0, BACKOFF_MAX_MS / 1000);
}

/* Forget the last failure message (after a successful connection). */
static void
reset_connect_failure(void)
{
	free(last_connect_failure);
	last_connect_failure = NULL;
}

/*
 * Messages the server sends outside a query (the FATAL of
 * pg_terminate_backend or of a shutdown, notices): one line in the log.
 */
static void
notice_processor(void *arg, const char *message)
{
	char	   *msg = pg_strdup(message);

	relay_one_line(msg);
	if (strncmp(msg, "NOTICE", 6) == 0 || strncmp(msg, "INFO", 4) == 0 ||
		strncmp(msg, "LOG", 3) == 0 || strncmp(msg, "DEBUG", 5) == 0)
		pg_log_info("server: %s", msg);
	else
		pg_log_warning("server: %s", msg);
	free(msg);
}

/*
 * Connect, secure the search path, LISTEN, and take the start cursor when
 * there is none.  Returns true when connected; else errmsg says why, and
 * *fatal says whether retrying is pointless (bad connection options).
 */
static bool
connect_db(PQExpBuffer errmsg, bool *fatal)
{
	const char *keywords[16];
	const char *values[16];
	int			i;
	PGresult   *res;
	static bool first_attempt = true;
	static bool standby_logged = false;

	*fatal = false;
	for (;;)
	{
		i = 0;
		keywords[i] = "connect_timeout";
		values[i++] = "10";
		keywords[i] = "keepalives_idle";
		values[i++] = "30";
		keywords[i] = "keepalives_interval";
		values[i++] = "10";
		keywords[i] = "keepalives_count";
		values[i++] = "3";
		keywords[i] = "dbname";
		values[i++] = conninfo;
		keywords[i] = "host";
		values[i++] = pghost;
		keywords[i] = "port";
		values[i++] = pgport;
		keywords[i] = "user";
		values[i++] = pguser;
		keywords[i] = "password";
		values[i++] = password;
		keywords[i] = "fallback_application_name";
		values[i++] = "pg_recall_relay";
		keywords[i] = "client_encoding";
		values[i++] = "UTF8";
		keywords[i] = NULL;
		values[i] = NULL;

		conn = PQconnectdbParams(keywords, values, true);
		if (conn == NULL)
			pg_fatal("could not allocate a connection: out of memory");

		if (PQstatus(conn) == CONNECTION_BAD && PQconnectionNeedsPassword(conn) &&
			password == NULL && prompt_password != TRI_NO &&
			(isatty(fileno(stdin)) || prompt_password == TRI_YES))
		{
			PQfinish(conn);
			password = simple_prompt("Password: ", false);
			continue;
		}
		break;
	}

	if (PQstatus(conn) == CONNECTION_BAD)
	{
		resetPQExpBuffer(errmsg);
		/* libpq refused the options themselves before connecting */
		if (first_attempt && strncmp(PQerrorMessage(conn), "invalid ", 8) == 0)
			*fatal = true;
		appendPQExpBuffer(errmsg, "could not connect to the database: %s",
						  PQerrorMessage(conn));
		relay_one_line(errmsg->data);
		errmsg->len = strlen(errmsg->data);
		PQfinish(conn);
		conn = NULL;
		first_attempt = false;
		return false;
	}
	first_attempt = false;
	PQsetNoticeProcessor(conn, notice_processor, NULL);

	res = PQexec(conn, ALWAYS_SECURE_SEARCH_PATH_SQL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto query_failed;
	PQclear(res);

	for (i = 0; i < nchannels; i++)
	{
		char	   *ident = PQescapeIdentifier(conn, channels[i], strlen(channels[i]));
		char	   *sql;

		if (ident == NULL)
			goto conn_failed;
		sql = psprintf("LISTEN %s", ident);
		PQfreemem(ident);
		res = PQexec(conn, sql);
		free(sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			/* a hot standby has no LISTEN: the relay polls */
			if (state != NULL && strcmp(state, "25006") == 0)
			{
				if (!standby_logged)
					pg_log_info("the server is a standby, where LISTEN is not available: reading the event log every %.2f s",
								poll_ms / 1000.0);
				standby_logged = true;
				PQclear(res);
				break;
			}
			goto query_failed;
		}
		PQclear(res);
	}

	if (!have_cursor && !from_oldest)
	{
		res = PQexec(conn, "SELECT recall.head()");
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
			PQgetisnull(res, 0, 0))
			goto query_failed;
		set_cursor(PQgetvalue(res, 0, 0));
		PQclear(res);
		/* the start point must survive a crash before the first event */
		save_state();
		http_set_position(cursor);
	}
	return true;

query_failed:
	resetPQExpBuffer(errmsg);
	appendPQExpBuffer(errmsg, "could not set up the session: %s",
					  PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) :
					  PQerrorMessage(conn));
	PQclear(res);
	goto failed;
conn_failed:
	resetPQExpBuffer(errmsg);
	appendPQExpBuffer(errmsg, "could not set up the session: %s",
					  PQerrorMessage(conn));
failed:
	relay_one_line(errmsg->data);
	errmsg->len = strlen(errmsg->data);
	PQfinish(conn);
	conn = NULL;
	return false;
}

/*
 * Once, after the first connection: warn about channels no enabled table
 * notifies on (a typo would make the relay depend on its poll alone).
 */
static void
check_channels(void)
{
	for (int i = 0; i < nchannels; i++)
	{
		const char *values[1] = {channels[i]};
		PGresult   *res;

		res = PQexecParams(conn,
						   "SELECT 1 FROM recall.tables WHERE channel OPERATOR(pg_catalog.=) $1",
						   1, NULL, values, NULL, NULL, 0);
		/* a role that may not read the registry just skips the check */
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0)
			pg_log_warning("no table enabled for recall notifies on channel \"%s\"; the relay will see its events only by polling",
						   channels[i]);
		PQclear(res);
	}
}

/* Drop the connection after a failure. */
static void
connection_lost(const char *msg)
{
	char	   *line = pg_strdup(msg);

	relay_one_line(line);
	pg_log_warning("connection to the database lost: %s; reconnecting", line);
	free(line);
	if (conn != NULL)
		PQfinish(conn);
	conn = NULL;
	metrics_set_up(metrics, false);
}

/* ------------------------------------------------------------------------
 * Reading the event log
 * ------------------------------------------------------------------------
 */

/* Print a batch: one line per event, flushed; then save the state. */
static void
write_batch(const RelayBatch *batch)
{
	for (int i = 0; i < batch->n; i++)
	{
		fwrite(batch->events[i].json, 1, batch->events[i].json_len, out);
		fputc('\n', out);
	}
	if (fflush(out) != 0 || ferror(out))
		pg_fatal("could not write to the output: %m");
	if (out_is_file && state_path != NULL && fsync(fileno(out)) != 0)
		pg_fatal("could not fsync output file \"%s\": %m", out_path);
	metrics_count_relayed(metrics, OUTPUT_STDOUT, batch->n);

	set_cursor(batch->events[batch->n - 1].cursor);
	save_state();
}

/*
 * Read the log from the cursor until it is empty (or a stop is requested
 * between batches).  Returns false when the connection must be dropped.
 *
 * The lag metrics come from what the relay reads, so that a relay keeping
 * up costs no extra query.  A batch of n events read and not yet written
 * is n events behind, the oldest recalled at its first event's time: while
 * the output blocks, that lag stands and its age grows.  A batch shorter
 * than RELAY_BATCH reached the end of what events_after() shows, i.e.
 * recall.head(): once written, the relay is caught up (lag 0).  Only a full
 * batch says nothing of what follows: then the relay counts the events
 * after it with events_after(cursor, RELAY_LAG_PROBE), server side, once
 * per RELAY_LAG_PROBE events of backlog (a count at the cap means at least
 * that many), and counts them down as it writes them.  Between a full
 * batch written and the next one read, the oldest event not relayed is
 * taken as recalled at the last one written (a few milliseconds of
 * overestimate).
 */
static bool
drain(void)
{
	PQExpBufferData errmsg;
	bool		ok = true;
	int64		known = 0;		/* events known to follow those read */

	initPQExpBuffer(&errmsg);
	for (;;)
	{
		RelayBatch	batch;
		FetchResult fr;
		bool		full;

		fr = relay_fetch(conn, cursor, RELAY_BATCH, &batch, &errmsg);
		if (fr == FETCH_BAD_CURSOR)
		{
			if (state_path != NULL)
			{
				pg_log_error("state file \"%s\" holds an invalid cursor: %s",
							 state_path, errmsg.data);
				pg_log_error_hint("Remove the file to start again with --from.");
			}
			else
				pg_log_error("the database refused the relay's cursor: %s",
							 errmsg.data);
			exit(1);
		}
		if (fr != FETCH_OK)
		{
			connection_lost(errmsg.data);
			ok = false;
			break;
		}
		metrics_set_up(metrics, true);
		full = (batch.n == RELAY_BATCH);

		/* the lag: see above */
		known = Max(known - batch.n, 0);
		if (full && known == 0 &&
			relay_count_after(conn, batch.events[batch.n - 1].cursor,
							  RELAY_LAG_PROBE, &known, &errmsg) != FETCH_OK)
			known = 0;			/* unknown; a lost connection shows at the next read */
		if (batch.n > 0)
		{
			metrics_set_backlog(metrics, batch.n + known,
								batch.events[0].recalled_at);
			write_batch(&batch);
			consume_hints(&batch);
			http_publish(&batch, cursor);
		}
		metrics_set_backlog(metrics, full ? known : 0,
							full ? batch.events[batch.n - 1].recalled_at : 0);

		relay_batch_free(&batch);
		if (!full || terminate_requested)
			break;
	}
	termPQExpBuffer(&errmsg);
	return ok;
}

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------
 */

static void
usage(void)
{
	printf(_("%s relays pg_recall's recall events to clients, without loss.\n\n"), progname);
	printf(_("Usage:\n"));
	printf(_("  %s [OPTION]...\n"), progname);
	printf(_("\nDescription:\n"
			 "  Reads recall.events_after() from a cursor and writes each event as one\n"
			 "  JSON line, flushed per batch.  Notifications on the channels only wake\n"
			 "  it up; it also reads the log every --poll-interval seconds.  With\n"
			 "  --state it saves the last cursor written (write, fsync, rename) and\n"
			 "  resumes from it: delivery is at-least-once across a crash of the relay,\n"
			 "  and the cursor identifies repeats.  A lost or unavailable server is\n"
			 "  retried with capped exponential backoff, then the relay catches up.\n"));
	printf(_("\nOptions:\n"));
	printf(_("  -c, --channel=NAME       LISTEN on channel NAME (repeatable; default: recall)\n"));
	printf(_("  -s, --state=FILE         save the last cursor in FILE and resume from it\n"));
	printf(_("      --from=head|oldest   start point without a state file: the events\n"
			 "                           committed after the relay first connects (head,\n"
			 "                           the default) or every retained event (oldest)\n"));
	printf(_("  -f, --file=FILE          append the JSON lines to FILE (default: - for stdout)\n"));
	printf(_("      --log-file=FILE      write messages to FILE instead of stderr\n"));
	printf(_("      --poll-interval=SECS read the log at least every SECS seconds (default: 2)\n"));
	printf(_("      --http=[ADDR:]PORT   serve Server-Sent Events on ADDR (default: 127.0.0.1)\n"));
	printf(_("      --token-file=FILE    require the bearer token in FILE on every HTTP request\n"));
	printf(_("      --heartbeat=SECS     SSE heartbeat comment interval (default: 15)\n"));
	printf(_("      --sse-buffer=N       recent events kept for SSE clients; a client\n"
			 "                           further behind is disconnected (default: 65536)\n"));
	printf(_("  -q, --quiet              print only warnings and errors\n"));
	printf(_("  -V, --version            output version information, then exit\n"));
	printf(_("  -?, --help               show this help, then exit\n"));
	printf(_("\nConnection options:\n"));
	printf(_("  -d, --dbname=CONNINFO    database name or connection string\n"));
	printf(_("  -h, --host=HOSTNAME      database server host or socket directory\n"));
	printf(_("  -p, --port=PORT          database server port number\n"));
	printf(_("  -U, --username=NAME      connect as specified database user\n"));
	printf(_("  -w, --no-password        never prompt for password\n"));
	printf(_("  -W, --password           force password prompt\n"));
	printf(_("\nOutput, one line per event (never content, never reason):\n"
			 "  {\"cursor\":\"...\",\"seq\":N,\"op\":\"recall\",\"table\":\"public.messages\",\n"
			 "   \"pk\":{\"id\":42},\"conversation\":\"7\",\"privileged\":false,\"at\":\"...\"}\n"));
	printf(_("\nHTTP (with --http):\n"
			 "  GET /events    Server-Sent Events: \"id:\" the cursor, \"event: recall\",\n"
			 "                 \"data:\" the JSON line; a comment line every --heartbeat\n"
			 "                 ?conversation=ID  only these conversations (repeatable)\n"
			 "                 Last-Event-ID header or ?after=CURSOR  resume after CURSOR\n"
			 "                 ?from=oldest      every retained event first\n"
			 "                 without a cursor: from the relay's current position\n"
			 "  GET /healthz   JSON: database connection, cursor, lag; 503 when down\n"
			 "  GET /metrics   Prometheus metrics (text format 0.0.4)\n"
			 "  GET /          the demo page (live list of recalls per conversation)\n"
			 "  With --token-file: \"Authorization: Bearer TOKEN\" or ?token=TOKEN, else 401.\n"));
	printf(_("\nSignals:\n"
			 "  SIGTERM, SIGINT  finish the batch, save the state, exit 0\n"
			 "  SIGHUP           reopen --file and --log-file (log rotation)\n"));
	printf(_("\nExit status:\n"
			 "  0 when stopped by a signal; 1 on bad options or bad input (malformed\n"
			 "  connection string, unreadable or invalid state file, invalid channel,\n"
			 "  HTTP port in use) or when the output cannot be written.\n"));
	printf(_("\nEnvironment:\n"
			 "  PGHOST, PGPORT, PGDATABASE, PGUSER and the other libpq variables.\n"));
}

/* Complain about a bad option and exit. */
static void
bad_option(const char *fmt, const char *arg)
{
	pg_log_error(fmt, arg);
	pg_log_error_hint("Try \"%s --help\" for more information.", progname);
	exit(1);
}

int
main(int argc, char **argv)
{
	static struct option long_options[] = {
		{"channel", required_argument, NULL, 'c'},
		{"dbname", required_argument, NULL, 'd'},
		{"file", required_argument, NULL, 'f'},
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"quiet", no_argument, NULL, 'q'},
		{"state", required_argument, NULL, 's'},
		{"username", required_argument, NULL, 'U'},
		{"version", no_argument, NULL, 'V'},
		{"no-password", no_argument, NULL, 'w'},
		{"password", no_argument, NULL, 'W'},
		{"help", no_argument, NULL, '?'},
		{"from", required_argument, NULL, 1},
		{"http", required_argument, NULL, 2},
		{"token-file", required_argument, NULL, 3},
		{"log-file", required_argument, NULL, 4},
		{"poll-interval", required_argument, NULL, 5},
		{"heartbeat", required_argument, NULL, 6},
		{"sse-buffer", required_argument, NULL, 7},
		{NULL, 0, NULL, 0}
	};
	int			c;
	int			optindex;
	char	   *token = NULL;
	RelayHttpConfig http_config;
	struct sigaction sa;
	PQExpBufferData errmsg;
	int64		next_attempt = 0;
	int64		next_poll = 0;
	int64		hint_next = 0;
	int			hint_delay = HINT_FIRST_MS;
	int			backoff = 0;
	bool		drain_needed = true;
	bool		more = false;
	bool		channels_checked = false;
	bool		was_connected = false;

	pg_logging_init(argv[0]);
	set_pglocale_pgservice(argv[0], PG_TEXTDOMAIN("pg_recall_relay"));
	progname = get_progname(argv[0]);

	if (argc > 1)
	{
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0)
		{
			usage();
			exit(0);
		}
		if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		{
			puts("pg_recall_relay (pg_recall) " RELAY_VERSION);
			exit(0);
		}
	}

	while ((c = getopt_long(argc, argv, "c:d:f:h:p:qs:U:VwW?", long_options,
							&optindex)) != -1)
	{
		switch (c)
		{
			case 'c':
				if (optarg[0] == '\0' || strlen(optarg) > MAX_CHANNEL)
				{
					pg_log_error("invalid channel name \"%s\"", optarg);
					pg_log_error_detail("A channel name is 1 to %d bytes long, as recall.enable() accepts.",
										MAX_CHANNEL);
					exit(1);
				}
				channels = pg_realloc(channels, (nchannels + 1) * sizeof(char *));
				channels[nchannels++] = pg_strdup(optarg);
				break;
			case 'd':
				conninfo = pg_strdup(optarg);
				break;
			case 'f':
				out_path = pg_strdup(optarg);
				break;
			case 'h':
				pghost = pg_strdup(optarg);
				break;
			case 'p':
				pgport = pg_strdup(optarg);
				break;
			case 'q':
				quiet = true;
				break;
			case 's':
				state_path = pg_strdup(optarg);
				break;
			case 'U':
				pguser = pg_strdup(optarg);
				break;
			case 'V':
				puts("pg_recall_relay (pg_recall) " RELAY_VERSION);
				exit(0);
			case 'w':
				prompt_password = TRI_NO;
				break;
			case 'W':
				prompt_password = TRI_YES;
				break;
			case 1:
				if (strcmp(optarg, "oldest") == 0)
					from_oldest = true;
				else if (strcmp(optarg, "head") == 0)
					from_oldest = false;
				else
					bad_option("invalid value \"%s\" for --from: use head or oldest", optarg);
				break;
			case 2:
				http_spec = pg_strdup(optarg);
				break;
			case 3:
				token_path = pg_strdup(optarg);
				break;
			case 4:
				log_path = pg_strdup(optarg);
				break;
			case 5:
				if (!parse_seconds(optarg, 0.01, 3600, &poll_ms))
					bad_option("invalid value \"%s\" for --poll-interval: seconds between 0.01 and 3600", optarg);
				break;
			case 6:
				{
					int			ms;

					if (!parse_seconds(optarg, 1, 3600, &ms))
						bad_option("invalid value \"%s\" for --heartbeat: seconds between 1 and 3600", optarg);
					heartbeat_secs = ms / 1000;
				}
				break;
			case 7:
				{
					char	   *end;
					long		v;

					errno = 0;
					v = strtol(optarg, &end, 10);
					if (errno != 0 || end == optarg || *end != '\0' || v < 2 * RELAY_BATCH || v > 10000000)
						bad_option("invalid value \"%s\" for --sse-buffer: events between 2000 and 10000000", optarg);
					sse_buffer = (int) v;
				}
				break;
			default:
				/* getopt_long already emitted a complaint */
				pg_log_error_hint("Try \"%s --help\" for more information.", progname);
				exit(1);
		}
	}
	if (optind < argc)
		bad_option("too many command-line arguments (first is \"%s\")", argv[optind]);
	if (token_path != NULL && http_spec == NULL)
		bad_option("%s needs --http", "--token-file");

	if (nchannels == 0)
	{
		channels = pg_malloc(sizeof(char *));
		channels[nchannels++] = pg_strdup("recall");
	}
	if (quiet)
		pg_logging_set_level(PG_LOG_WARNING);

	/* a malformed connection string is refused at once */
	if (conninfo != NULL && (strchr(conninfo, '=') != NULL ||
							 strncmp(conninfo, "postgresql://", 13) == 0 ||
							 strncmp(conninfo, "postgres://", 11) == 0))
	{
		char	   *err = NULL;
		PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

		if (opts == NULL)
		{
			if (err != NULL)
				relay_one_line(err);
			pg_log_error("invalid connection string: %s", err ? err : "out of memory");
			exit(1);
		}
		PQconninfoFree(opts);
	}

	if (token_path != NULL)
	{
		token = read_small_file(token_path, 4096);
		if (token == NULL)
			pg_fatal("could not read token file \"%s\": %m", token_path);
		(void) pg_strip_crlf(token);
		if (token[0] == '\0')
			pg_fatal("token file \"%s\" is empty", token_path);
	}

	if (state_path != NULL)
	{
		load_state();
		check_state_writable();
	}
	if (!open_log())
		exit(1);
	open_output();

	/* wake-up pipe and signals */
	if (pipe(wake_pipe) != 0)
		pg_fatal("could not create pipe: %m");
	for (int i = 0; i < 2; i++)
	{
		fcntl(wake_pipe[i], F_SETFL, O_NONBLOCK);
		fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = handle_terminate;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = handle_reopen;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	pg_logging_set_pre_callback(log_timestamp);
	metrics = metrics_create();
	if (http_spec != NULL)
	{
		memset(&http_config, 0, sizeof(http_config));
		http_config.listen_spec = http_spec;
		http_config.token = token;
		http_config.heartbeat_secs = heartbeat_secs;
		http_config.sse_buffer = sse_buffer;
		http_config.from_oldest = !have_cursor && from_oldest;
		http_config.wake = relay_wake;
		http_config.metrics = metrics;
		if (!http_start(&http_config))
			exit(1);
		if (have_cursor)
			http_set_position(cursor);
	}

	if (have_cursor)
		pg_log_info("starting from cursor %s (state file \"%s\")", cursor, state_path);
	else
		pg_log_info("starting from %s", from_oldest ? "the oldest retained event" :
					"the head of the event log (events after the first connection)");

	initPQExpBuffer(&errmsg);
	while (!terminate_requested)
	{
		int64		now;
		int64		timeout;
		fd_set		rmask;
		int			maxfd;
		struct timeval tv;
		int			r;

		if (reopen_requested)
		{
			reopen_requested = false;
			if (out != stdout)
				open_output();
			(void) open_log();
			pg_log_info("reopened the output and log files");
		}

		now = relay_now_ms();

		/* (re)connect when it is time */
		if (conn == NULL && now >= next_attempt)
		{
			bool		fatal;

			if (connect_db(&errmsg, &fatal))
			{
				pg_log_info("%s to the database; reading events after %s",
							was_connected ? "reconnected" : "connected",
							cursor ? cursor : "the start of the log");
				if (was_connected)
					metrics_count_reconnect(metrics);
				was_connected = true;
				backoff = 0;
				reset_connect_failure();
				drain_needed = true;
				if (!channels_checked)
				{
					check_channels();
					channels_checked = true;
				}
			}
			else
			{
				if (fatal)
				{
					pg_log_error("invalid connection options (%s)", errmsg.data);
					exit(1);
				}
				backoff = backoff == 0 ? BACKOFF_FIRST_MS : Min(backoff * 2, BACKOFF_MAX_MS);
				log_connect_failure(errmsg.data, backoff);
				next_attempt = relay_now_ms() + backoff;
			}
		}

		/* read the log: woken, polled, or looking for announced events */
		if (conn != NULL &&
			(drain_needed || now >= next_poll ||
			 (nhints > 0 && now >= hint_next)))
		{
			drain_needed = false;
			if (drain())
			{
				next_poll = relay_now_ms() + poll_ms;
				if (nhints > 0)
				{
					hint_next = relay_now_ms() + hint_delay;
					hint_delay = Min(hint_delay * 2, HINT_MAX_MS);
				}
			}
			else
				next_attempt = relay_now_ms();	/* first retry at once */
			if (terminate_requested)
				break;
		}

		/* the SSE clients that replay from the database */
		more = false;
		if (conn != NULL && http_spec != NULL)
		{
			if (http_service(conn, &more) == FETCH_CONN_LOST)
			{
				connection_lost(PQerrorMessage(conn));
				next_attempt = relay_now_ms();
				more = false;
			}
			if (more)
				drain_needed = true;
		}
		http_tick();

		/* wait */
		now = relay_now_ms();
		timeout = 1000;
		if (more || (conn == NULL && next_attempt <= now))
			timeout = 0;
		if (conn == NULL)
			timeout = Min(timeout, Max(next_attempt - now, 0));
		else
		{
			timeout = Min(timeout, Max(next_poll - now, 0));
			if (nhints > 0)
				timeout = Min(timeout, Max(hint_next - now, 0));
		}
		if (http_spec != NULL)
			timeout = Min(timeout, http_next_tick_ms());

		if (conn != NULL && (PQstatus(conn) == CONNECTION_BAD || PQsocket(conn) < 0))
		{
			connection_lost(PQerrorMessage(conn));
			next_attempt = relay_now_ms();
			continue;
		}
		FD_ZERO(&rmask);
		FD_SET(wake_pipe[0], &rmask);
		maxfd = wake_pipe[0];
		if (conn != NULL)
		{
			FD_SET(PQsocket(conn), &rmask);
			maxfd = Max(maxfd, PQsocket(conn));
		}
		tv.tv_sec = timeout / 1000;
		tv.tv_usec = (timeout % 1000) * 1000;
		r = select(maxfd + 1, &rmask, NULL, NULL, &tv);
		if (r < 0 && errno != EINTR)
			pg_fatal("select() failed: %m");
		if (r <= 0)
			continue;

		if (FD_ISSET(wake_pipe[0], &rmask))
		{
			char		buf[256];

			while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
				;
			/* an SSE client waits for the database: read up to date first */
			drain_needed = true;
		}
		if (conn != NULL && FD_ISSET(PQsocket(conn), &rmask))
		{
			PGnotify   *notify;

			if (!PQconsumeInput(conn) || PQstatus(conn) == CONNECTION_BAD)
			{
				char	   *msg = pg_strdup(PQerrorMessage(conn));

				relay_one_line(msg);
				connection_lost(msg);
				free(msg);
				next_attempt = relay_now_ms();
				continue;
			}
			while ((notify = PQnotifies(conn)) != NULL)
			{
				add_hint(notify->extra);
				PQfreemem(notify);
				drain_needed = true;
				hint_delay = HINT_FIRST_MS;
			}
		}
	}

	pg_log_info("stopping on %s; %s", terminate_signal == SIGINT ? "SIGINT" : "SIGTERM",
				state_path == NULL ? "no state file" :
				cursor == NULL ? "no event read yet" : "state saved");
	http_stop();
	if (fflush(out) != 0)
		pg_log_error("could not write to the output: %m");
	if (conn != NULL)
		PQfinish(conn);
	termPQExpBuffer(&errmsg);
	return 0;
}
