/*-------------------------------------------------------------------------
 *
 * relay_metrics.c
 *	  pg_recall_relay's counters and gauges, and their Prometheus rendering.
 *
 * Both threads of the relay update them: the main thread (database state,
 * lag, JSON lines written) and libmicrohttpd's thread (SSE clients, SSE
 * messages sent).  One mutex guards them all; it is held only to copy a few
 * numbers, never while taking another lock, so either thread may update a
 * counter while holding a lock of its own.
 *
 * GET /metrics renders them in the Prometheus text exposition format,
 * version 0.0.4: for each metric a "# HELP" and a "# TYPE" line, then its
 * samples, "name{label="value"} number".  Every name starts with
 * pg_recall_relay_; counters end in _total.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <pthread.h>
#include <time.h>

#include "relay.h"

struct RelayMetrics
{
	pthread_mutex_t lock;
	double		start_time;		/* seconds since the Unix epoch */
	bool		up;
	uint64		reconnects;
	uint64		relayed[NUM_OUTPUTS];
	int			sse_clients;
	uint64		sse_dropped;
	int64		caught_up_ms;	/* relay_now_ms() of the last read to the end */
	int64		lag_events;
	double		oldest_at;		/* recalled_at of the oldest event not relayed */
};

/* Label values of pg_recall_relay_events_relayed_total, by RelayOutput */
static const char *const output_names[NUM_OUTPUTS] = {"stdout", "sse"};

/* Wall clock, in seconds since the Unix epoch. */
static double
now_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Create the counters, at zero, the database down, caught up; the start
 * time is now.
 */
RelayMetrics *
metrics_create(void)
{
	RelayMetrics *m = pg_malloc0(sizeof(RelayMetrics));

	pthread_mutex_init(&m->lock, NULL);
	m->start_time = now_epoch();
	return m;
}

/*
 * The database connection went up (the relay has read the log since it
 * connected) or down.
 */
void
metrics_set_up(RelayMetrics *m, bool up)
{
	pthread_mutex_lock(&m->lock);
	m->up = up;
	pthread_mutex_unlock(&m->lock);
}

/* The relay connected again after losing its connection. */
void
metrics_count_reconnect(RelayMetrics *m)
{
	pthread_mutex_lock(&m->lock);
	m->reconnects++;
	pthread_mutex_unlock(&m->lock);
}

/*
 * What the relay knows it has not relayed yet: events committed after its
 * position, the oldest of them recalled at oldest_at (seconds since the
 * epoch).  Zero events: it is caught up, as of now.
 */
void
metrics_set_backlog(RelayMetrics *m, int64 events, double oldest_at)
{
	pthread_mutex_lock(&m->lock);
	m->lag_events = events;
	m->oldest_at = oldest_at;
	if (events == 0)
		m->caught_up_ms = relay_now_ms();
	pthread_mutex_unlock(&m->lock);
}

/* n events went out on an output. */
void
metrics_count_relayed(RelayMetrics *m, RelayOutput output, uint64 n)
{
	Assert(output >= 0 && output < NUM_OUTPUTS);
	if (n == 0)
		return;
	pthread_mutex_lock(&m->lock);
	m->relayed[output] += n;
	pthread_mutex_unlock(&m->lock);
}

/* An SSE stream opened (+1) or ended (-1). */
void
metrics_add_sse_clients(RelayMetrics *m, int delta)
{
	pthread_mutex_lock(&m->lock);
	m->sse_clients += delta;
	pthread_mutex_unlock(&m->lock);
}

/* An SSE client fell out of the ring and was disconnected. */
void
metrics_count_sse_dropped(RelayMetrics *m)
{
	pthread_mutex_lock(&m->lock);
	m->sse_dropped++;
	pthread_mutex_unlock(&m->lock);
}

/* The figures /healthz shows. */
void
metrics_health(RelayMetrics *m, RelayHealth *health)
{
	pthread_mutex_lock(&m->lock);
	health->up = m->up;
	health->caught_up_ms = m->caught_up_ms;
	health->sse_clients = m->sse_clients;
	health->events_relayed = m->relayed[OUTPUT_STDOUT];
	health->sse_dropped = m->sse_dropped;
	pthread_mutex_unlock(&m->lock);
}

/* Append one metric's HELP and TYPE lines. */
static void
metric_header(PQExpBuffer buf, const char *name, const char *type,
			  const char *help)
{
	appendPQExpBuffer(buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * Append every metric to buf, in the Prometheus text format.  The lag in
 * seconds is the age, at this moment, of the oldest event the relay knows
 * it has not relayed: it keeps growing while the relay is stuck (its
 * output blocked, a long catch-up), and is 0 when it is caught up.  It
 * compares the database's clock with this host's, so a clock skew shows in
 * it; it is never negative.
 */
void
metrics_render(RelayMetrics *m, PQExpBuffer buf)
{
	RelayMetrics v;
	double		now = now_epoch();
	double		lag_seconds = 0;

	pthread_mutex_lock(&m->lock);
	v = *m;
	pthread_mutex_unlock(&m->lock);
	if (v.lag_events > 0)
		lag_seconds = Max(now - v.oldest_at, 0);

	metric_header(buf, "pg_recall_relay_info", "gauge",
				  "Version of pg_recall_relay, as a label; always 1.");
	appendPQExpBufferStr(buf, "pg_recall_relay_info{version=\"" RELAY_VERSION "\"} 1\n");

	metric_header(buf, "pg_recall_relay_start_time_seconds", "gauge",
				  "Start time of the relay process, in seconds since the Unix epoch.");
	appendPQExpBuffer(buf, "pg_recall_relay_start_time_seconds %.3f\n", v.start_time);

	metric_header(buf, "pg_recall_relay_up", "gauge",
				  "1 while the relay is connected to the database and has read the event log since connecting, else 0.");
	appendPQExpBuffer(buf, "pg_recall_relay_up %d\n", v.up ? 1 : 0);

	metric_header(buf, "pg_recall_relay_db_reconnects_total", "counter",
				  "Reconnections to the database after the connection was lost.");
	appendPQExpBuffer(buf, "pg_recall_relay_db_reconnects_total " UINT64_FORMAT "\n",
					  v.reconnects);

	metric_header(buf, "pg_recall_relay_events_relayed_total", "counter",
				  "Recall events relayed: output=\"stdout\" counts the JSON lines written (stdout or --file), output=\"sse\" the SSE messages sent, one per client.");
	for (int i = 0; i < NUM_OUTPUTS; i++)
		appendPQExpBuffer(buf, "pg_recall_relay_events_relayed_total{output=\"%s\"} " UINT64_FORMAT "\n",
						  output_names[i], v.relayed[i]);

	metric_header(buf, "pg_recall_relay_sse_clients", "gauge",
				  "SSE streams open (GET /events).");
	appendPQExpBuffer(buf, "pg_recall_relay_sse_clients %d\n", v.sse_clients);

	metric_header(buf, "pg_recall_relay_sse_clients_dropped_total", "counter",
				  "SSE clients disconnected because they fell more than --sse-buffer events behind.");
	appendPQExpBuffer(buf, "pg_recall_relay_sse_clients_dropped_total " UINT64_FORMAT "\n",
					  v.sse_dropped);

	metric_header(buf, "pg_recall_relay_lag_events", "gauge",
				  "Events committed after the relay's position (up to recall.head()) and not relayed yet, as of its last read; counted up to " CppAsString2(RELAY_LAG_PROBE) " at a time.");
	appendPQExpBuffer(buf, "pg_recall_relay_lag_events " INT64_FORMAT "\n", v.lag_events);

	metric_header(buf, "pg_recall_relay_lag_seconds", "gauge",
				  "Age of the oldest event not relayed yet, in seconds; 0 when the relay is caught up.");
	appendPQExpBuffer(buf, "pg_recall_relay_lag_seconds %.3f\n", lag_seconds);
}
