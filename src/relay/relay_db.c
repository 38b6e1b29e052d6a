/*-------------------------------------------------------------------------
 *
 * relay_db.c
 *	  pg_recall_relay's reads of the recall event log.
 *
 * Every event the relay hands out comes from recall.events_after(), the
 * gap-free, ordered reading of recall.events: notifications only wake the
 * relay up.  Each row becomes one JSON object, built here so that the line
 * format does not depend on the server's JSON spacing:
 *
 *	{"cursor":"…","seq":…,"op":"recall","table":"public.messages",
 *	 "pk":{…},"conversation":"…","privileged":false,"at":"…"}
 *
 * The session runs with an empty search_path (ALWAYS_SECURE_SEARCH_PATH_SQL),
 * so a regclass prints schema-qualified, and client_encoding UTF8, so the
 * lines are UTF-8 whatever the database's encoding.  Only the main thread
 * calls these functions: the connection is never shared.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "relay.h"

/* cursor, seq, table, pk, conversation, privileged, at, at as epoch */
#define FETCH_SQL \
	"SELECT e.cursor, e.seq, e.tbl::pg_catalog.text, e.pk::pg_catalog.text," \
	" e.conversation, e.privileged," \
	" pg_catalog.to_json(e.recalled_at)::pg_catalog.text," \
	" pg_catalog.date_part('epoch', e.recalled_at)" \
	" FROM recall.events_after($1, $2) e"

/* how many events follow a cursor, up to a limit */
#define COUNT_SQL \
	"SELECT pg_catalog.count(*) FROM recall.events_after($1, $2)"

/*
 * Append s to buf as a JSON string (quoted, escaped).
 */
void
relay_json_string(PQExpBuffer buf, const char *s)
{
	const unsigned char *p;

	appendPQExpBufferChar(buf, '"');
	for (p = (const unsigned char *) s; *p; p++)
	{
		switch (*p)
		{
			case '"':
				appendPQExpBufferStr(buf, "\\\"");
				break;
			case '\\':
				appendPQExpBufferStr(buf, "\\\\");
				break;
			case '\n':
				appendPQExpBufferStr(buf, "\\n");
				break;
			case '\r':
				appendPQExpBufferStr(buf, "\\r");
				break;
			case '\t':
				appendPQExpBufferStr(buf, "\\t");
				break;
			default:
				if (*p < 0x20)
					appendPQExpBuffer(buf, "\\u%04x", *p);
				else
					appendPQExpBufferChar(buf, (char) *p);
		}
	}
	appendPQExpBufferChar(buf, '"');
}

/*
 * Turn a libpq message into one line: every run of blanks (newlines, tabs,
 * spaces) becomes one space, and leading and trailing blanks go.
 */
void
relay_one_line(char *msg)
{
	char	   *r = msg;
	char	   *w = msg;
	bool		blank = true;	/* drop leading blanks */

	for (; *r; r++)
	{
		if (*r == '\n' || *r == '\r' || *r == '\t' || *r == ' ')
		{
			if (!blank)
				*w++ = ' ';
			blank = true;
		}
		else
		{
			*w++ = *r;
			blank = false;
		}
	}
	if (w > msg && w[-1] == ' ')
		w--;
	*w = '\0';
}

/*
 * Run sql with the parameters (cursor, limit).  NULL when it failed: then
 * *result and errmsg (one line) say why.
 */
static PGresult *
exec_after(PGconn *conn, const char *sql, const char *after, int limit,
		   FetchResult *result, PQExpBuffer errmsg)
{
	const char *values[2];
	char		limit_str[32];
	PGresult   *res;
	const char *state;

	snprintf(limit_str, sizeof(limit_str), "%d", limit);
	values[0] = after;
	values[1] = limit_str;
	res = PQexecParams(conn, sql, 2, NULL, values, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		*result = FETCH_OK;
		return res;
	}

	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	resetPQExpBuffer(errmsg);
	appendPQExpBufferStr(errmsg, PQerrorMessage(conn));
	relay_one_line(errmsg->data);
	errmsg->len = strlen(errmsg->data);

	if (PQstatus(conn) == CONNECTION_BAD)
		*result = FETCH_CONN_LOST;
	else if (state != NULL && strcmp(state, "22023") == 0)
		*result = FETCH_BAD_CURSOR;
	else
		*result = FETCH_ERROR;
	PQclear(res);
	return NULL;
}

/*
 * Read at most limit events after the cursor (NULL: from the oldest) into
 * batch.  On failure, errmsg says why, in one line.
 */
FetchResult
relay_fetch(PGconn *conn, const char *after, int limit, RelayBatch *batch,
			PQExpBuffer errmsg)
{
	PGresult   *res;
	FetchResult result;
	PQExpBufferData line;
	int			n;

	batch->events = NULL;
	batch->n = 0;

	res = exec_after(conn, FETCH_SQL, after, limit, &result, errmsg);
	if (res == NULL)
		return result;

	n = PQntuples(res);
	if (n > 0)
		batch->events = pg_malloc0(n * sizeof(RelayEvent));
	initPQExpBuffer(&line);
	for (int i = 0; i < n; i++)
	{
		RelayEvent *ev = &batch->events[i];
		const char *cursor = PQgetvalue(res, i, 0);

		resetPQExpBuffer(&line);
		appendPQExpBufferStr(&line, "{\"cursor\":");
		relay_json_string(&line, cursor);
		appendPQExpBuffer(&line, ",\"seq\":%s", PQgetvalue(res, i, 1));
		appendPQExpBufferStr(&line, ",\"op\":\"recall\",\"table\":");
		relay_json_string(&line, PQgetvalue(res, i, 2));
		appendPQExpBufferStr(&line, ",\"pk\":");
		appendPQExpBufferStr(&line, PQgetisnull(res, i, 3) ? "null" :
							 PQgetvalue(res, i, 3));
		appendPQExpBufferStr(&line, ",\"conversation\":");
		if (PQgetisnull(res, i, 4))
			appendPQExpBufferStr(&line, "null");
		else
			relay_json_string(&line, PQgetvalue(res, i, 4));
		appendPQExpBufferStr(&line, ",\"privileged\":");
		appendPQExpBufferStr(&line, PQgetisnull(res, i, 5) ? "null" :
							 strcmp(PQgetvalue(res, i, 5), "t") == 0 ?
							 "true" : "false");
		appendPQExpBufferStr(&line, ",\"at\":");
		appendPQExpBufferStr(&line, PQgetisnull(res, i, 6) ? "null" :
							 PQgetvalue(res, i, 6));
		appendPQExpBufferChar(&line, '}');
		if (PQExpBufferDataBroken(line))
		{
			pg_log_error("out of memory");
			exit(1);
		}

		ev->cursor = pg_strdup(cursor);
		ev->seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		ev->conversation = PQgetisnull(res, i, 4) ? NULL :
			pg_strdup(PQgetvalue(res, i, 4));
		ev->json = pg_strdup(line.data);
		ev->json_len = line.len;
		ev->recalled_at = PQgetisnull(res, i, 7) ? 0 :
			strtod(PQgetvalue(res, i, 7), NULL);
	}
	termPQExpBuffer(&line);
	batch->n = n;
	PQclear(res);
	return FETCH_OK;
}

/*
 * Count the events after the cursor, reading at most limit of them: the
 * same gap-free reading as relay_fetch(), so the count is the events
 * between the cursor and recall.head().  On failure, errmsg says why.
 */
FetchResult
relay_count_after(PGconn *conn, const char *after, int limit, int64 *count,
				  PQExpBuffer errmsg)
{
	PGresult   *res;
	FetchResult result;

	*count = 0;
	res = exec_after(conn, COUNT_SQL, after, limit, &result, errmsg);
	if (res == NULL)
		return result;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		*count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return FETCH_OK;
}

/*
 * Free the events of a batch.
 */
void
relay_batch_free(RelayBatch *batch)
{
	for (int i = 0; i < batch->n; i++)
	{
		free(batch->events[i].cursor);
		free(batch->events[i].conversation);
		free(batch->events[i].json);
	}
	free(batch->events);
	batch->events = NULL;
	batch->n = 0;
}
