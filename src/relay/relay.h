/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  Declarations shared by the parts of pg_recall_relay.
 *
 * The relay has one thread that owns the libpq connection (the main loop,
 * pg_recall_relay.c, and the database reads, relay_db.c) and, with --http,
 * libmicrohttpd's thread that serves the SSE clients (relay_http.c).  The
 * two meet only in relay_http.c's ring of recent events and client list,
 * guarded by one mutex, and in the counters of relay_metrics.c, guarded by
 * another.  The HTTP side knows the main loop only through the
 * RelayHttpConfig it is started with: the main loop calls into it, never
 * the other way round.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RECALL_RELAY_H
#define PG_RECALL_RELAY_H

#include <time.h>

#include "libpq-fe.h"
#include "pqexpbuffer.h"

/* Version shown by -V */
#define RELAY_VERSION "1.0"

/* Longest cursor accepted from a client or a state file */
#define RELAY_MAX_CURSOR 256

/* Events read per call of recall.events_after() */
#define RELAY_BATCH 1000

/* Most events one count of the relay's backlog reads (the lag metric) */
#define RELAY_LAG_PROBE 10000

/*
 * One event read from recall.events_after(), ready to print.
 */
typedef struct RelayEvent
{
	char	   *cursor;			/* opaque, from the database */
	int64		seq;
	char	   *conversation;	/* NULL when the event has none */
	char	   *json;			/* the JSON object, without newline */
	size_t		json_len;
	double		recalled_at;	/* recalled_at, seconds since the Unix epoch */
} RelayEvent;

/*
 * The events of one read, in order.
 */
typedef struct RelayBatch
{
	RelayEvent *events;
	int			n;
} RelayBatch;

/* Outcome of a read of the event log */
typedef enum FetchResult
{
	FETCH_OK,					/* batch filled (maybe empty) */
	FETCH_BAD_CURSOR,			/* the cursor was refused (SQLSTATE 22023) */
	FETCH_CONN_LOST,			/* the connection is gone */
	FETCH_ERROR					/* another error; the message says which */
} FetchResult;

/*
 * The outputs whose events are counted, for the label of
 * pg_recall_relay_events_relayed_total.
 */
typedef enum RelayOutput
{
	OUTPUT_STDOUT,				/* the JSON lines (stdout or --file) */
	OUTPUT_SSE,					/* SSE messages, one per client */
	NUM_OUTPUTS
} RelayOutput;

/* The relay's counters and gauges (relay_metrics.c); opaque */
typedef struct RelayMetrics RelayMetrics;

/* What /healthz shows, read from the counters in one go */
typedef struct RelayHealth
{
	bool		up;				/* connected, and has read the log since */
	int64		caught_up_ms;	/* relay_now_ms() of the last read to the end; 0: never */
	int			sse_clients;
	uint64		events_relayed; /* JSON lines written */
	uint64		sse_dropped;
} RelayHealth;

/*
 * How the HTTP side is started: its options, and the two things it needs
 * from the rest of the relay.
 */
typedef struct RelayHttpConfig
{
	const char *listen_spec;	/* [ADDR:]PORT */
	const char *token;			/* required bearer token, or NULL */
	int			heartbeat_secs;
	int			sse_buffer;		/* events kept for the SSE clients */
	bool		from_oldest;	/* the relay starts from the oldest event */

	/*
	 * Ask the main loop to read the log and call http_service() soon.
	 * Called from libmicrohttpd's thread, sometimes with this side's mutex
	 * held: it must be thread-safe and must not call back into it.
	 */
	void		(*wake) (void);

	/* The counters that the HTTP side updates and serves at /metrics */
	RelayMetrics *metrics;
} RelayHttpConfig;

/* Monotonic clock, in milliseconds. */
static inline int64
relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* relay_db.c */
extern FetchResult relay_fetch(PGconn *conn, const char *after, int limit,
							   RelayBatch *batch, PQExpBuffer errmsg);
extern FetchResult relay_count_after(PGconn *conn, const char *after,
									 int limit, int64 *count,
									 PQExpBuffer errmsg);
extern void relay_batch_free(RelayBatch *batch);
extern void relay_json_string(PQExpBuffer buf, const char *s);
extern void relay_one_line(char *msg);

/* relay_http.c */
extern bool http_start(const RelayHttpConfig *config);
extern void http_stop(void);
extern void http_set_position(const char *cursor);
extern void http_publish(const RelayBatch *batch, const char *cursor);
extern FetchResult http_service(PGconn *conn, bool *more);
extern void http_tick(void);
extern int64 http_next_tick_ms(void);

/* relay_metrics.c */
extern RelayMetrics *metrics_create(void);
extern void metrics_set_up(RelayMetrics *m, bool up);
extern void metrics_count_reconnect(RelayMetrics *m);
extern void metrics_set_backlog(RelayMetrics *m, int64 events,
								double oldest_at);
extern void metrics_count_relayed(RelayMetrics *m, RelayOutput output,
								  uint64 n);
extern void metrics_add_sse_clients(RelayMetrics *m, int delta);
extern void metrics_count_sse_dropped(RelayMetrics *m);
extern void metrics_health(RelayMetrics *m, RelayHealth *health);
extern void metrics_render(RelayMetrics *m, PQExpBuffer buf);

#endif							/* PG_RECALL_RELAY_H */
