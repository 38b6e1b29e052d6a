/*-------------------------------------------------------------------------
 *
 * relay_http.c
 *	  pg_recall_relay's HTTP side: Server-Sent Events, health, metrics,
 *	  demo page.
 *
 * libmicrohttpd runs in its own thread (internal polling, epoll on Linux)
 * and never touches the database.  It knows the rest of the relay only
 * through the RelayHttpConfig given to http_start(): a wake-up callback,
 * which asks the main thread to read the log and call http_service(), and
 * the counters (relay_metrics.c) that it updates and serves at /metrics.
 *
 * The main thread, which owns the libpq connection, hands each batch it
 * reads to http_publish(), which appends it to a ring of recent events; an
 * SSE client reads the ring from its own position, skipping the
 * conversations it did not ask for, so a batch is formatted once whatever
 * the number of clients, and a slow client costs nothing to the others: it
 * merely lags, and a client whose position has left the ring (it fell
 * --sse-buffer events behind) is disconnected.  Its browser reconnects
 * with Last-Event-ID and resumes by cursor.
 *
 * A client that resumes from a cursor (Last-Event-ID, ?after=) or asks for
 * the whole retained log (?from=oldest) starts in "database mode": the main
 * thread replays recall.events_after() from its cursor into the client's
 * private queue, a batch at a time as the client drains it, until the
 * client's cursor is one the ring holds (or the relay's position); from
 * there the client reads the ring like everyone else.  Both streams are the
 * same gap-free sequence, so the client gets exactly the events after its
 * cursor.  The first replay also validates the cursor: one the database
 * refuses gets a 400.
 *
 * A client with nothing to read is suspended (MHD_suspend_connection) and
 * resumed when a batch arrives, when its replay queue is refilled, or at
 * the heartbeat, when it gets a comment line.  Lock order: this file's
 * mutex, then libmicrohttpd's own (or the counters'); the main thread
 * resumes connections only after releasing the mutex.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/logging.h"
#include "relay.h"

#include "demo_html.h"

/* Events kept for the SSE clients (--sse-buffer): a client further behind is dropped */
static uint64 ring_cap = 65536;

/* A client's replay queue is refilled when it holds less than this */
#define QUEUE_LOW			(64 * 1024)

/* Events read per replay of one client */
#define REPLAY_BATCH		500

/* Most ?conversation= filters on one request */
#define MAX_CONVERSATIONS	64

/*
 * Kernel send buffer of each connection (inherited from the listening
 * socket): fixed, so that a client that stops reading holds at most this
 * much in the kernel and falls behind in the ring, where it is noticed,
 * instead of in a buffer that autotuning lets grow to megabytes.
 */
#define SOCKET_SNDBUF		(128 * 1024)

/* Bytes libmicrohttpd may use per connection (buffers included) */
#define CONNECTION_MEMORY	(32 * 1024)

/* Sent first on every SSE stream: reconnect delay, then a comment */
#define SSE_PREAMBLE		"retry: 2000\n: pg_recall_relay\n\n"
#define SSE_HEARTBEAT		": keepalive\n\n"

/* One event of the ring, formatted as an SSE message */
typedef struct RingEntry
{
	char	   *cursor;
	char	   *conversation;	/* NULL when none */
	char	   *sse;
	size_t		len;
} RingEntry;

typedef enum ClientState
{
	CL_VALIDATE,				/* waiting for its first replay (no response yet) */
	CL_REPLAY,					/* streaming its replay from the database */
	CL_LIVE,					/* reading the ring */
	CL_BAD						/* refused: respond with status/error */
} ClientState;

typedef struct Client
{
	struct Client *next_client;
	struct MHD_Connection *conn;	/* NULL once the request completed */
	ClientState state;
	bool		closed;			/* request completed: free it */
	bool		suspended;		/* MHD_suspend_connection()ed by us */
	bool		kicked;			/* fell out of the ring */
	bool		wanted;			/* asked the main thread for more replay */
	unsigned int service_gen;	/* last http_service() call that served it */

	/* database mode: the last cursor queued; NULL + from_oldest: none */
	char	   *cursor;
	bool		from_oldest;

	/* live mode: ring index of the next entry, bytes of it already sent */
	uint64		next;
	size_t		off;

	/* private queue: preamble, replayed events */
	char	   *queue;
	size_t		qlen;
	size_t		qoff;
	size_t		qcap;

	char	  **conversations;
	int			nconversations;

	unsigned int hb_seen;		/* heartbeat generation last sent */
	unsigned int status;		/* CL_BAD: HTTP status */
	char	   *error;			/* CL_BAD: message */
	char		peer[64];
} Client;

static pthread_mutex_t http_lock = PTHREAD_MUTEX_INITIALIZER;
static struct MHD_Daemon *http_daemon = NULL;
static int	listen_fd = -1;
static char *http_token = NULL;
static int	heartbeat_ms = 15000;
static int64 last_heartbeat = 0;
static void (*wake_main) (void) = NULL;
static RelayMetrics *metrics = NULL;	/* has its own lock */

/* everything below is guarded by http_lock */
static unsigned int hb_gen = 0;
static bool shutting_down = false;
static char *position = NULL;	/* cursor after the ring's last entry */
static bool relay_from_oldest = false;	/* the relay itself reads from the oldest */
static RingEntry *ring = NULL;
static uint64 ring_first = 0;
static uint64 ring_end = 0;
static Client *clients = NULL;

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------
 */

/* Append bytes to a client's private queue. */
static void
queue_append(Client *cl, const char *data, size_t len)
{
	if (cl->qoff > 0 && cl->qoff == cl->qlen)
		cl->qoff = cl->qlen = 0;
	if (cl->qlen + len > cl->qcap)
	{
		size_t		cap = Max(cl->qcap * 2, 4096);

		while (cap < cl->qlen + len)
			cap *= 2;
		cl->queue = pg_realloc(cl->queue, cap);
		cl->qcap = cap;
	}
	memcpy(cl->queue + cl->qlen, data, len);
	cl->qlen += len;
}

/* Does the event's conversation pass the client's filter? */
static bool
client_wants(const Client *cl, const char *conversation)
{
	if (cl->nconversations == 0)
		return true;
	if (conversation == NULL)
		return false;
	for (int i = 0; i < cl->nconversations; i++)
		if (strcmp(cl->conversations[i], conversation) == 0)
			return true;
	return false;
}

/* Format one event as an SSE message. */
static char *
format_sse(const RelayEvent *ev, size_t *len)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	appendPQExpBuffer(&buf, "id: %s\nevent: recall\ndata: ", ev->cursor);
	appendBinaryPQExpBuffer(&buf, ev->json, ev->json_len);
	appendPQExpBufferStr(&buf, "\n\n");
	if (PQExpBufferDataBroken(buf))
	{
		pg_log_error("out of memory");
		exit(1);
	}
	*len = buf.len;
	return buf.data;
}

/*
 * Where a client at this cursor joins the ring: the index of the next
 * entry it needs.  False when the ring does not reach back to it.
 */
static bool
ring_find(const char *cursor, bool from_oldest, uint64 *next)
{
	if (from_oldest)
	{
		/* the relay itself read from the oldest and found nothing yet */
		if (relay_from_oldest && position == NULL && ring_end == 0)
		{
			*next = ring_end;
			return true;
		}
		return false;
	}
	if (cursor == NULL)
		return false;
	if (position != NULL && strcmp(cursor, position) == 0)
	{
		*next = ring_end;
		return true;
	}
	for (uint64 i = ring_end; i > ring_first; i--)
	{
		if (strcmp(ring[(i - 1) % ring_cap].cursor, cursor) == 0)
		{
			*next = i;
			return true;
		}
	}
	return false;
}

/* Free a client (main thread, once the request completed). */
static void
client_free(Client *cl)
{
	for (int i = 0; i < cl->nconversations; i++)
		free(cl->conversations[i]);
	free(cl->conversations);
	free(cl->cursor);
	free(cl->queue);
	free(cl->error);
	free(cl);
}

/*
 * Take the client off suspension, to be resumed by the caller after it
 * releases the lock: add its connection to list.
 */
static void
client_unsuspend(Client *cl, struct MHD_Connection ***list, int *n, int *cap)
{
	if (!cl->suspended || cl->conn == NULL)
		return;
	cl->suspended = false;
	if (*n == *cap)
	{
		*cap = Max(*cap * 2, 16);
		*list = pg_realloc(*list, *cap * sizeof(struct MHD_Connection *));
	}
	(*list)[(*n)++] = cl->conn;
}

/* Resume the connections collected by client_unsuspend(), lock released. */
static void
resume_all(struct MHD_Connection **list, int n)
{
	for (int i = 0; i < n; i++)
		MHD_resume_connection(list[i]);
	free(list);
}

/* Compare a secret in constant time. */
static bool
token_equal(const char *given, const char *expected)
{
	size_t		glen = strlen(given);
	size_t		elen = strlen(expected);
	unsigned char diff = (glen != elen);

	for (size_t i = 0; i < elen; i++)
		diff |= (unsigned char) expected[i] ^ (unsigned char) given[i < glen ? i : 0];
	return diff == 0;
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------
 */

/* Queue a complete response with the given body and content type. */
static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned int status, const char *type,
		const char *body, size_t len, bool copy)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *) body,
										   copy ? MHD_RESPMEM_MUST_COPY :
										   MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
								"Bearer realm=\"pg_recall_relay\"");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Queue a plain-text response: the message and a newline. */
static enum MHD_Result
respond_text(struct MHD_Connection *conn, unsigned int status, const char *msg)
{
	char	   *body = psprintf("%s\n", msg);
	enum MHD_Result ret;

	ret = respond(conn, status, "text/plain; charset=utf-8", body,
				  strlen(body), true);
	free(body);
	return ret;
}

/* GET /healthz: the database connection and how fresh the relay's reading is. */
static enum MHD_Result
respond_health(struct MHD_Connection *conn)
{
	PQExpBufferData buf;
	enum MHD_Result ret;
	RelayHealth h;
	int64		now = relay_now_ms();

	metrics_health(metrics, &h);
	initPQExpBuffer(&buf);
	appendPQExpBuffer(&buf, "{\"status\":\"%s\",\"database\":\"%s\",\"cursor\":",
					  h.up ? "ok" : "unavailable",
					  h.up ? "connected" : "disconnected");
	pthread_mutex_lock(&http_lock);
	if (position != NULL)
		relay_json_string(&buf, position);
	else
		appendPQExpBufferStr(&buf, "null");
	pthread_mutex_unlock(&http_lock);
	if (h.caught_up_ms > 0)
		appendPQExpBuffer(&buf, ",\"lag_seconds\":%.3f",
						  (double) Max(now - h.caught_up_ms, 0) / 1000.0);
	else
		appendPQExpBufferStr(&buf, ",\"lag_seconds\":null");
	appendPQExpBuffer(&buf, ",\"clients\":%d,\"events_relayed\":" UINT64_FORMAT
					  ",\"clients_dropped\":" UINT64_FORMAT "}\n",
					  h.sse_clients, h.events_relayed, h.sse_dropped);

	ret = respond(conn, h.up ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
				  "application/json", buf.data, buf.len, true);
	termPQExpBuffer(&buf);
	return ret;
}

/* GET /metrics: the counters, in the Prometheus text format 0.0.4. */
static enum MHD_Result
respond_metrics(struct MHD_Connection *conn)
{
	PQExpBufferData buf;
	enum MHD_Result ret;

	initPQExpBuffer(&buf);
	metrics_render(metrics, &buf);
	if (PQExpBufferBroken(&buf))
		ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	else
		ret = respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
					  buf.data, buf.len, true);
	termPQExpBuffer(&buf);
	return ret;
}

/*
 * The SSE content reader: the client's private queue, then the ring from
 * its position, else a heartbeat when one is due, else suspend until the
 * main thread has something.
 */
static ssize_t
sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	Client	   *cl = (Client *) cls;
	size_t		n = 0;
	uint64		sent = 0;		/* ring events sent whole */

	pthread_mutex_lock(&http_lock);
	if (shutting_down)
	{
		pthread_mutex_unlock(&http_lock);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}

	/* the private queue first: preamble and replayed events */
	if (cl->qoff < cl->qlen)
	{
		n = Min(max, cl->qlen - cl->qoff);
		memcpy(buf, cl->queue + cl->qoff, n);
		cl->qoff += n;
	}
	if (cl->state == CL_REPLAY && cl->qlen - cl->qoff < QUEUE_LOW &&
		!cl->wanted)
	{
		cl->wanted = true;
		wake_main();
	}

	/* then the ring */
	if (cl->state == CL_LIVE && n < max && cl->qoff == cl->qlen)
	{
		if (cl->next < ring_first)
		{
			/* fell out of the ring: drop it, it resumes by cursor */
			if (!cl->kicked)
			{
				cl->kicked = true;
				metrics_count_sse_dropped(metrics);
			}
			pthread_mutex_unlock(&http_lock);
			return n > 0 ? (ssize_t) n : MHD_CONTENT_READER_END_WITH_ERROR;
		}
		while (n < max && cl->next < ring_end)
		{
			RingEntry  *e = &ring[cl->next % ring_cap];
			size_t		take;

			if (cl->off == 0 && !client_wants(cl, e->conversation))
			{
				cl->next++;
				continue;
			}
			take = Min(max - n, e->len - cl->off);
			memcpy(buf + n, e->sse + cl->off, take);
			n += take;
			cl->off += take;
			if (cl->off == e->len)
			{
				cl->next++;
				cl->off = 0;
				sent++;
			}
		}
		metrics_count_relayed(metrics, OUTPUT_SSE, sent);
	}

	if (n > 0)
		cl->hb_seen = hb_gen;
	else if (cl->hb_seen != hb_gen && cl->off == 0 &&
			 max >= sizeof(SSE_HEARTBEAT) - 1)
	{
		n = sizeof(SSE_HEARTBEAT) - 1;
		memcpy(buf, SSE_HEARTBEAT, n);
		cl->hb_seen = hb_gen;
	}

	if (n == 0)
	{
		cl->suspended = true;
		MHD_suspend_connection(cl->conn);
	}
	pthread_mutex_unlock(&http_lock);
	return (ssize_t) n;
}

/* Queue the SSE response of a client whose stream can start. */
static enum MHD_Result
respond_stream(struct MHD_Connection *conn, Client *cl)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
											 sse_reader, cl, NULL);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							"text/event-stream; charset=utf-8");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Collects the ?conversation= arguments of a request. */
typedef struct ArgScan
{
	Client	   *cl;
	bool		too_many;
} ArgScan;

static enum MHD_Result
collect_conversation(void *cls, enum MHD_ValueKind kind, const char *key,
					 const char *value)
{
	ArgScan    *scan = (ArgScan *) cls;
	Client	   *cl = scan->cl;

	if (strcmp(key, "conversation") != 0)
		return MHD_YES;
	if (cl->nconversations >= MAX_CONVERSATIONS)
	{
		scan->too_many = true;
		return MHD_NO;
	}
	if (cl->conversations == NULL)
		cl->conversations = pg_malloc(MAX_CONVERSATIONS * sizeof(char *));
	cl->conversations[cl->nconversations++] = pg_strdup(value ? value : "");
	return MHD_YES;
}

/* Is a client-supplied cursor plausible enough to ask the database? */
static bool
cursor_plausible(const char *cursor)
{
	size_t		len = strlen(cursor);

	if (len == 0 || len > RELAY_MAX_CURSOR)
		return false;
	for (const char *p = cursor; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * GET /events: open an SSE stream.  Live at once when the client starts at
 * the relay's position or at a cursor the ring holds; otherwise the main
 * thread validates and replays its cursor first, and the request waits,
 * suspended.
 */
static enum MHD_Result
open_stream(struct MHD_Connection *conn, void **req_cls)
{
	Client	   *cl;
	ArgScan		scan;
	const char *cursor;
	const char *from;
	const union MHD_ConnectionInfo *ci;
	uint64		next;
	bool		live;

	cl = pg_malloc0(sizeof(Client));
	cl->conn = conn;
	scan.cl = cl;
	scan.too_many = false;
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND,
							  collect_conversation, &scan);
	if (scan.too_many)
	{
		client_free(cl);
		return respond_text(conn, MHD_HTTP_BAD_REQUEST,
							"too many conversation filters (at most 64)");
	}

	cursor = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
	if (cursor == NULL || cursor[0] == '\0')
		cursor = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after");
	if (cursor != NULL && cursor[0] == '\0')
		cursor = NULL;
	from = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "from");
	if (from != NULL && strcmp(from, "oldest") != 0 && strcmp(from, "head") != 0)
	{
		client_free(cl);
		return respond_text(conn, MHD_HTTP_BAD_REQUEST,
							"invalid value for \"from\": use \"head\" or \"oldest\"");
	}
	if (cursor != NULL && !cursor_plausible(cursor))
	{
		client_free(cl);
		return respond_text(conn, MHD_HTTP_BAD_REQUEST, "invalid event cursor");
	}
	if (cursor != NULL)
		cl->cursor = pg_strdup(cursor);
	else if (from != NULL && strcmp(from, "oldest") == 0)
		cl->from_oldest = true;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci != NULL && ci->client_addr != NULL)
	{
		char		host[NI_MAXHOST];
		char		port[NI_MAXSERV];
		socklen_t	alen = ci->client_addr->sa_family == AF_INET6 ?
			sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

		if (getnameinfo(ci->client_addr, alen, host, sizeof(host), port,
						sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(cl->peer, sizeof(cl->peer), "%s:%s", host, port);
	}

	queue_append(cl, SSE_PREAMBLE, sizeof(SSE_PREAMBLE) - 1);

	pthread_mutex_lock(&http_lock);
	if (shutting_down)
	{
		pthread_mutex_unlock(&http_lock);
		client_free(cl);
		return respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
							"the relay is shutting down");
	}
	cl->hb_seen = hb_gen;
	if (cl->cursor == NULL && !cl->from_oldest)
	{
		/* no cursor: from the relay's current position */
		live = true;
		next = ring_end;
	}
	else
		live = ring_find(cl->cursor, cl->from_oldest, &next);
	if (live)
	{
		cl->state = CL_LIVE;
		cl->next = next;
	}
	else
	{
		cl->state = CL_VALIDATE;
		cl->suspended = true;
		MHD_suspend_connection(conn);
	}
	cl->next_client = clients;
	clients = cl;
	metrics_add_sse_clients(metrics, 1);
	*req_cls = cl;
	pthread_mutex_unlock(&http_lock);

	if (!live)
	{
		wake_main();
		return MHD_YES;
	}
	return respond_stream(conn, cl);
}

/*
 * A request arrives, or comes back after its suspension: route it.
 */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **req_cls)
{
	Client	   *cl = (Client *) *req_cls;

	if (cl != NULL)
	{
		/* an /events request back from validation */
		ClientState state;
		unsigned int status;
		char	   *error;

		pthread_mutex_lock(&http_lock);
		state = cl->state;
		status = cl->status;
		error = cl->error ? pg_strdup(cl->error) : NULL;
		if (shutting_down && state == CL_VALIDATE)
		{
			state = CL_BAD;
			status = MHD_HTTP_SERVICE_UNAVAILABLE;
			free(error);
			error = pg_strdup("the relay is shutting down");
		}
		pthread_mutex_unlock(&http_lock);

		if (state == CL_BAD)
		{
			enum MHD_Result ret = respond_text(conn, status, error);

			free(error);
			return ret;
		}
		free(error);
		if (state == CL_VALIDATE)
		{
			/* resumed without a verdict (cannot happen): wait again */
			pthread_mutex_lock(&http_lock);
			cl->suspended = true;
			MHD_suspend_connection(conn);
			pthread_mutex_unlock(&http_lock);
			return MHD_YES;
		}
		return respond_stream(conn, cl);
	}

	if (*upload_data_size != 0)
	{
		*upload_data_size = 0;	/* a body is ignored */
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
		strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
							"only GET is supported");

	if (http_token != NULL)
	{
		const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
													   MHD_HTTP_HEADER_AUTHORIZATION);
		const char *given = NULL;

		if (auth != NULL && pg_strncasecmp(auth, "Bearer ", 7) == 0)
			given = auth + 7;
		else
			given = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
												"token");
		if (given == NULL || !token_equal(given, http_token))
			return respond_text(conn, MHD_HTTP_UNAUTHORIZED,
								"a valid token is required (Authorization: Bearer <token>, or ?token=)");
	}

	if (strcmp(url, "/events") == 0)
		return open_stream(conn, req_cls);
	if (strcmp(url, "/healthz") == 0)
		return respond_health(conn);
	if (strcmp(url, "/metrics") == 0)
		return respond_metrics(conn);
	if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
		return respond(conn, MHD_HTTP_OK, "text/html; charset=utf-8",
					   demo_html, sizeof(demo_html), false);
	return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found");
}

/*
 * A request is over (answered, or its client went away): an SSE client is
 * marked for the main thread to free.
 */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
				  enum MHD_RequestTerminationCode toe)
{
	Client	   *cl = (Client *) *req_cls;

	if (cl == NULL)
		return;
	pthread_mutex_lock(&http_lock);
	cl->closed = true;
	cl->conn = NULL;
	cl->suspended = false;
	metrics_add_sse_clients(metrics, -1);
	pthread_mutex_unlock(&http_lock);
	*req_cls = NULL;
	wake_main();
}

/*
 * libmicrohttpd's own error messages: shown while the server starts; later
 * they are about single connections (a client that went away) and would
 * only flood the log.
 */
static bool mhd_starting = false;

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char		msg[1024];

	if (!mhd_starting)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	relay_one_line(msg);
	if (msg[0] != '\0')
		pg_log_warning("HTTP: %s", msg);
}

/* ------------------------------------------------------------------------
 * Interface for the main thread
 * ------------------------------------------------------------------------
 */

/*
 * Parse ADDR:PORT (ADDR may be empty or a bracketed IPv6 address; PORT
 * alone binds 127.0.0.1), bind and listen.  Returns the socket or -1.
 */
static int
open_listener(const char *spec)
{
	char	   *copy = pg_strdup(spec);
	char	   *host;
	char	   *port;
	char	   *colon;
	struct addrinfo hints;
	struct addrinfo *res;
	struct addrinfo *ai;
	int			rc;
	int			fd = -1;
	int			save_errno = 0;

	if (copy[0] == '[')
	{
		char	   *end = strchr(copy, ']');

		if (end == NULL || end[1] != ':')
		{
			pg_log_error("invalid --http address \"%s\"", spec);
			pg_log_error_hint("Use ADDR:PORT, [IPV6]:PORT or PORT.");
			free(copy);
			return -1;
		}
		*end = '\0';
		host = copy + 1;
		port = end + 2;
	}
	else if ((colon = strrchr(copy, ':')) != NULL)
	{
		*colon = '\0';
		host = copy[0] ? copy : "127.0.0.1";
		port = colon + 1;
	}
	else
	{
		host = "127.0.0.1";
		port = copy;
	}
	if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) ||
		strlen(port) > 5 || atoi(port) > 65535)
	{
		pg_log_error("invalid port in --http \"%s\"", spec);
		pg_log_error_hint("Use ADDR:PORT, [IPV6]:PORT or PORT.");
		free(copy);
		return -1;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
	{
		pg_log_error("could not resolve --http address \"%s\": %s",
					 host, gai_strerror(rc));
		free(copy);
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		int			one = 1;
		int			sndbuf = SOCKET_SNDBUF;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
		{
			save_errno = errno;
			continue;
		}
		(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		(void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		save_errno = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
	{
		errno = save_errno;
		pg_log_error("could not listen on %s port %s: %m", host, port);
		free(copy);
		return -1;
	}
	free(copy);
	return fd;
}

/*
 * Start the HTTP server as config says (see RelayHttpConfig); false (after
 * a message) when it cannot listen.
 */
bool
http_start(const RelayHttpConfig *config)
{
	const char *listen_spec = config->listen_spec;
	struct rlimit rl;
	sigset_t	block;
	sigset_t	saved;
	unsigned int limit;
	struct sockaddr_storage addr;
	socklen_t	alen = sizeof(addr);
	char		host[NI_MAXHOST];
	char		port[NI_MAXSERV];

	listen_fd = open_listener(listen_spec);
	if (listen_fd < 0)
		return false;

	/* one descriptor per client: take what the hard limit allows */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
	}
	limit = 1000;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 1100)
		limit = (rl.rlim_cur > 100000) ? 100000 : (unsigned int) rl.rlim_cur - 100;

	http_token = config->token ? pg_strdup(config->token) : NULL;
	heartbeat_ms = config->heartbeat_secs * 1000;
	last_heartbeat = relay_now_ms();
	ring_cap = config->sse_buffer;
	relay_from_oldest = config->from_oldest;
	wake_main = config->wake;
	metrics = config->metrics;
	ring = pg_malloc0(ring_cap * sizeof(RingEntry));

	/* the server's thread takes no signal: the main thread handles them */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &saved);
	mhd_starting = true;
	http_daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD |
								   MHD_ALLOW_SUSPEND_RESUME |
								   MHD_USE_ERROR_LOG,
								   0, NULL, NULL,
								   handle_request, NULL,
								   MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
								   MHD_OPTION_LISTEN_SOCKET, listen_fd,
								   MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
								   MHD_OPTION_CONNECTION_LIMIT, limit,
								   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY,
								   MHD_OPTION_CONNECTION_TIMEOUT,
								   (unsigned int) Max(60, 4 * config->heartbeat_secs),
								   MHD_OPTION_END);
	mhd_starting = false;
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (http_daemon == NULL)
	{
		pg_log_error("could not start the HTTP server on \"%s\"", listen_spec);
		close(listen_fd);
		return false;
	}

	if (getsockname(listen_fd, (struct sockaddr *) &addr, &alen) == 0 &&
		getnameinfo((struct sockaddr *) &addr, alen, host, sizeof(host),
					port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		pg_log_info("serving HTTP on %s%s%s:%s (GET /events, /healthz, /metrics, /)",
					addr.ss_family == AF_INET6 ? "[" : "", host,
					addr.ss_family == AF_INET6 ? "]" : "", port);
	return true;
}

/*
 * Stop the HTTP server: streams end, waiting requests get a 503.
 */
void
http_stop(void)
{
	struct MHD_Connection **list = NULL;
	int			n = 0;
	int			cap = 0;

	if (http_daemon == NULL)
		return;
	pthread_mutex_lock(&http_lock);
	shutting_down = true;
	for (Client *cl = clients; cl != NULL; cl = cl->next_client)
		client_unsuspend(cl, &list, &n, &cap);
	pthread_mutex_unlock(&http_lock);
	resume_all(list, n);
	/* let the resumed streams end before the daemon closes them */
	pg_usleep(100 * 1000L);
	MHD_stop_daemon(http_daemon);
	http_daemon = NULL;
}

/* Is the HTTP server running? */
static inline bool
http_running(void)
{
	return http_daemon != NULL;
}

/*
 * The relay's position: where a client without a cursor starts.  Set at
 * start (state file, head) before any batch.
 */
void
http_set_position(const char *cursor)
{
	if (!http_running())
		return;
	pthread_mutex_lock(&http_lock);
	free(position);
	position = cursor ? pg_strdup(cursor) : NULL;
	pthread_mutex_unlock(&http_lock);
}

/*
 * A batch was printed: append it to the ring, move the position, and wake
 * the clients.
 */
void
http_publish(const RelayBatch *batch, const char *cursor)
{
	struct MHD_Connection **list = NULL;
	int			n = 0;
	int			cap = 0;

	if (!http_running() || batch->n == 0)
		return;
	pthread_mutex_lock(&http_lock);
	for (int i = 0; i < batch->n; i++)
	{
		const RelayEvent *ev = &batch->events[i];
		RingEntry  *e = &ring[ring_end % ring_cap];

		if (ring_end - ring_first == ring_cap)
		{
			free(e->cursor);
			free(e->conversation);
			free(e->sse);
			ring_first++;
		}
		e->cursor = pg_strdup(ev->cursor);
		e->conversation = ev->conversation ? pg_strdup(ev->conversation) : NULL;
		e->sse = format_sse(ev, &e->len);
		ring_end++;
	}
	free(position);
	position = pg_strdup(cursor);
	for (Client *cl = clients; cl != NULL; cl = cl->next_client)
		if (cl->state == CL_LIVE)
			client_unsuspend(cl, &list, &n, &cap);
	pthread_mutex_unlock(&http_lock);
	resume_all(list, n);
}

/*
 * Serve the clients in database mode (main thread, connection up, called
 * right after the relay read the log to its end): each joins the ring when
 * its cursor is there, else gets one batch replayed from its cursor.  A
 * client whose replay went past the relay's position (events that became
 * visible after the relay's read) joins at the next call, once the relay
 * has read them too: *more asks the caller to read the log and call again
 * soon.  Returns FETCH_CONN_LOST when the connection broke, else FETCH_OK.
 */
FetchResult
http_service(PGconn *conn, bool *more)
{
	static unsigned int service_gen = 0;
	PQExpBufferData errmsg;
	FetchResult result = FETCH_OK;

	*more = false;
	if (!http_running())
		return FETCH_OK;

	service_gen++;
	initPQExpBuffer(&errmsg);
	for (;;)
	{
		struct MHD_Connection **list = NULL;
		int			n = 0;
		int			cap = 0;
		Client	   *cl;
		char	   *cursor = NULL;
		RelayBatch	batch;
		FetchResult fr;
		uint64		next;

		/* pick a client that needs the database, once per call */
		pthread_mutex_lock(&http_lock);
		for (cl = clients; cl != NULL; cl = cl->next_client)
		{
			if (cl->closed || cl->kicked || shutting_down ||
				cl->service_gen == service_gen)
				continue;
			if (cl->state == CL_VALIDATE)
				break;
			if (cl->state != CL_REPLAY || cl->qlen - cl->qoff >= QUEUE_LOW)
				continue;
			/* its cursor may be in the ring by now */
			if (ring_find(cl->cursor, cl->from_oldest, &next))
			{
				cl->state = CL_LIVE;
				cl->next = next;
				cl->off = 0;
				client_unsuspend(cl, &list, &n, &cap);
				continue;
			}
			break;
		}
		if (cl != NULL)
		{
			cursor = cl->cursor ? pg_strdup(cl->cursor) : NULL;
			cl->wanted = false;
			cl->service_gen = service_gen;
		}
		pthread_mutex_unlock(&http_lock);
		resume_all(list, n);
		list = NULL;
		n = cap = 0;
		if (cl == NULL)
			break;

		fr = relay_fetch(conn, cursor, REPLAY_BATCH, &batch, &errmsg);
		free(cursor);
		if (fr == FETCH_CONN_LOST)
		{
			/* the client waits for the reconnection */
			result = FETCH_CONN_LOST;
			break;
		}

		pthread_mutex_lock(&http_lock);
		if (cl->closed)
		{
			/* went away meanwhile */
		}
		else if (fr == FETCH_BAD_CURSOR || fr == FETCH_ERROR)
		{
			if (cl->state == CL_VALIDATE)
			{
				cl->state = CL_BAD;
				if (fr == FETCH_BAD_CURSOR)
				{
					cl->status = MHD_HTTP_BAD_REQUEST;
					cl->error = pg_strdup("invalid event cursor (Last-Event-ID or ?after=)");
				}
				else
				{
					cl->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
					cl->error = psprintf("could not read the event log: %s", errmsg.data);
				}
			}
			else
				cl->kicked = true;	/* cannot go on: end its stream */
			client_unsuspend(cl, &list, &n, &cap);
			if (fr == FETCH_ERROR)
				pg_log_warning("could not replay events for SSE client %s: %s",
							   cl->peer, errmsg.data);
		}
		else
		{
			uint64		queued = 0;

			for (int i = 0; i < batch.n; i++)
			{
				const RelayEvent *ev = &batch.events[i];

				if (client_wants(cl, ev->conversation))
				{
					size_t		len;
					char	   *sse = format_sse(ev, &len);

					queue_append(cl, sse, len);
					free(sse);
					queued++;
				}
			}
			/* counted as sent: the stream sends its queue first */
			metrics_count_relayed(metrics, OUTPUT_SSE, queued);
			if (batch.n > 0)
			{
				free(cl->cursor);
				cl->cursor = pg_strdup(batch.events[batch.n - 1].cursor);
				cl->from_oldest = false;
			}
			if (cl->state == CL_VALIDATE)
				cl->state = CL_REPLAY;

			/*
			 * Nothing after its cursor: it is as caught up as the relay, so
			 * it goes on with the relay's next events.  Its last event is
			 * one the ring holds: it goes on from there.  Else it replays
			 * more, or joins at the next call.
			 */
			if (batch.n == 0)
			{
				cl->state = CL_LIVE;
				cl->next = ring_end;
				cl->off = 0;
			}
			else if (ring_find(cl->cursor, false, &next))
			{
				cl->state = CL_LIVE;
				cl->next = next;
				cl->off = 0;
			}
			else
				*more = true;
			client_unsuspend(cl, &list, &n, &cap);
		}
		pthread_mutex_unlock(&http_lock);
		resume_all(list, n);
		relay_batch_free(&batch);
	}
	termPQExpBuffer(&errmsg);
	return result;
}

/*
 * Periodic work (main thread): free the clients that went away, and at
 * each heartbeat interval wake every stream so that it sends a comment.
 */
void
http_tick(void)
{
	struct MHD_Connection **list = NULL;
	int			n = 0;
	int			cap = 0;
	int64		now = relay_now_ms();
	bool		beat = false;
	Client	  **link;

	if (!http_running())
		return;
	if (now - last_heartbeat >= heartbeat_ms)
	{
		beat = true;
		last_heartbeat = now;
	}

	pthread_mutex_lock(&http_lock);
	if (beat)
		hb_gen++;
	link = &clients;
	while (*link != NULL)
	{
		Client	   *cl = *link;

		if (cl->closed)
		{
			if (cl->kicked)
				pg_log_info("SSE client %s disconnected: it fell more than " UINT64_FORMAT " events behind",
							cl->peer, ring_cap);
			*link = cl->next_client;
			client_free(cl);
			continue;
		}
		if (beat && cl->state != CL_VALIDATE)
			client_unsuspend(cl, &list, &n, &cap);
		link = &cl->next_client;
	}
	pthread_mutex_unlock(&http_lock);
	resume_all(list, n);
}

/* Milliseconds until the next heartbeat is due (for the main loop's wait). */
int64
http_next_tick_ms(void)
{
	if (!http_running())
		return -1;
	return Max(last_heartbeat + heartbeat_ms - relay_now_ms(), 0);
}
