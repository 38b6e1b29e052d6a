/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  Declarations shared by the parts of pg_recall_relay.
 *
 * The relay has one thread that owns the libpq connection (the main loop,
 * pg_recall_relay.c, and the database reads, relay_db.c) and, with --http,
 * libmicrohttpd's thread that serves the SSE clients (relay_http.c).  The
 * two meet only in relay_http.c's ring of recent events and client list,
 * guarded by one mutex.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RECALL_RELAY_H
#define PG_RECALL_RELAY_H

#include "libpq-fe.h"
#include "pqexpbuffer.h"

/* Version shown by -V */
#define RELAY_VERSION "1.0"

/* Longest cursor accepted from a client or a state file */
#define RELAY_MAX_CURSOR 256

/* Events read per call of recall.events_after() */
#define RELAY_BATCH 1000

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

/* relay_db.c */
extern FetchResult relay_fetch(PGconn *conn, const char *after, int limit,
							   RelayBatch *batch, PQExpBuffer errmsg);
extern void relay_batch_free(RelayBatch *batch);
extern void relay_json_string(PQExpBuffer buf, const char *s);
extern void relay_one_line(char *msg);

/* relay_http.c */
extern bool http_start(const char *listen_spec, const char *token,
					   int heartbeat_secs, int sse_buffer,
					   bool from_oldest);
extern void http_stop(void);
extern int	http_wake_fd(void);
extern void http_set_position(const char *cursor);
extern void http_set_db_state(bool up);
extern void http_publish(const RelayBatch *batch, const char *cursor);
extern FetchResult http_service(PGconn *conn, bool *more);
extern void http_tick(void);
extern int64 http_next_tick_ms(void);

/* pg_recall_relay.c */
extern void relay_wake(void);
extern int64 relay_now_ms(void);

#endif							/* PG_RECALL_RELAY_H */
