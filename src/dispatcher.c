/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  The dispatcher: sends recall notifications after commit, and trims
 *	  the event log.
 *
 * NOTIFY inside the recall transaction takes a cluster-wide lock at commit
 * (PreCommit_Notify) that serializes every notifying commit, and makes the
 * transaction impossible to PREPARE.  With pg_recall in
 * shared_preload_libraries the recall transaction only writes its event
 * row, and a dispatcher ("pg_recall dispatcher", started by the launcher
 * in launcher.c when a recall commits) reads the committed events its
 * durable position (recall.dispatch_state) has not covered yet, sends one
 * notification per (transaction, statement, table), and moves the position
 * in the same transaction as the NOTIFY: a crash before that commit sends
 * nothing and moves nothing, so a restart neither loses nor repeats.
 *
 * The position is the events_after() cursor of everything finished, plus
 * the events already sent above it (transactions that committed while an
 * older one is still running), so a long transaction does not hold the
 * notifications of later ones back.
 *
 * The dispatcher sleeps on its latch (set at each recall's commit), with a
 * timeout of recall.dispatch_interval; it exits after
 * recall.worker_idle_timeout without events, when the extension is
 * dropped, when the launcher needs its slot for another database, and for
 * DROP DATABASE.  About once a minute (or once per retention, if shorter)
 * it deletes events older than recall.event_retention that are notified and purged, a small batch per
 * transaction; recall.prune_events() does the same on demand.
 *
 * It runs as the bootstrap superuser: its SQL touches only recall's tables
 * and catalog-typed values, with qualified operators, search_path pinned
 * and SECURITY_RESTRICTED_OPERATION set.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "pg_recall.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(recall_prune_events);

/* The event log is trimmed about this often. */
#define PRUNE_EVERY_MS		60000

/* Events a retention round looks at, in the dispatcher and on demand. */
#define PRUNE_ROUND_EVENTS	1000
#define PRUNE_ROUND_EVENTS_ON_DEMAND 10000

/* Settings */
static int	dispatch_interval_ms = 1000;
static int	dispatch_batch_size = 1000;
static int	dispatch_delay_ms = 2;
static int	event_retention_s = 30 * 24 * 3600;

/* An event read by a batch. */
typedef struct DispatchEvent
{
	uint64		xid;
	int64		seq;
	bool		has_group;		/* false: notified by its own transaction */
	int32		group;			/* the statement (dispatch_group) */
	Oid			tbl;
	char	   *table;			/* qualified name, quoted */
	char	   *channel;
	char	   *pk;				/* compact JSON */
	char	   *conversation;
	TimestampTz at;
} DispatchEvent;

/*
 * One batch, in one transaction: read the position, read the events after
 * it, trim them to whole statements, notify, move the position.  Each step
 * is a function over this struct.
 */
typedef struct DispatchBatch
{
	/* the durable position (recall.dispatch_state), locked FOR UPDATE */
	uint64		pos_xid;		/* events up to (pos_xid, pos_seq) are sent */
	int64		pos_seq;
	int			ndone;			/* events above the position sent already */
	uint64	   *done_xids;
	int64	   *done_seqs;
	Datum		done_seq_array; /* their seqs, as bigint[] for the queries */

	/* the events read */
	uint64		xmin;			/* every transaction below it has finished */
	DispatchEvent *events;
	int			nevents;
	bool		full;			/* recall.dispatch_batch_size events were read */
} DispatchBatch;

/* What a batch did. */
typedef enum DispatchResult
{
	DISPATCH_GONE,				/* no extension, or DROP DATABASE waits */
	DISPATCH_IDLE,				/* no event */
	DISPATCH_SENT,				/* every waiting event taken */
	DISPATCH_FULL				/* a full batch: more may wait */
} DispatchResult;

/* A retention pass over the event log, one round per transaction. */
typedef struct RetentionPass
{
	bool		active;
	uint64		from_xid;		/* resumes after (from_xid, from_seq) */
	int64		from_seq;
	TimestampTz cutoff;			/* events recalled before it may go */
	int64		deleted;
} RetentionPass;

/* Is a and b's event of the same (transaction, statement, table)? */
static inline bool
same_statement(const DispatchEvent *a, const DispatchEvent *b)
{
	return a->xid == b->xid && a->has_group == b->has_group &&
		a->group == b->group && a->tbl == b->tbl;
}

/* An xid8 column of an SPI row. */
static uint64
spi_xid8(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		elog(ERROR, "unexpected null xid");
	return U64FromFullTransactionId(DatumGetFullTransactionId(d));
}

/* An array of bigint. */
static Datum
int8_array(Datum *elems, int n)
{
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Step 1: lock and read the position. */
static void
batch_read_position(DispatchBatch *b)
{
	int			ret;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		done;
	Datum	   *elems = NULL;
	Datum	   *seqs;

	ret = SPI_execute("SELECT d.xid, d.seq, d.done FROM recall.dispatch_state d FOR UPDATE",
					  false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "recall.dispatch_state has no row");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	b->pos_xid = spi_xid8(tup, desc, 1);
	b->pos_seq = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	done = SPI_getbinval(tup, desc, 3, &isnull);
	b->ndone = 0;
	if (!isnull)
		deconstruct_array(DatumGetArrayTypeP(done), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, NULL, &b->ndone);
	b->done_xids = palloc(sizeof(uint64) * (b->ndone + 1));
	b->done_seqs = palloc(sizeof(int64) * (b->ndone + 1));
	seqs = palloc(sizeof(Datum) * (b->ndone + 1));
	for (int i = 0; i < b->ndone; i++)
	{
		if (!recall_parse_cursor(TextDatumGetCString(elems[i]), &b->done_xids[i],
								 &b->done_seqs[i]))
			elog(ERROR, "recall.dispatch_state holds an invalid sent event");
		seqs[i] = Int64GetDatum(b->done_seqs[i]);
	}
	b->done_seq_array = int8_array(seqs, b->ndone);
}

/*
 * Step 2: the events after the position not sent yet (at most a batch),
 * with the xmin of the same snapshot.
 */
static void
batch_read_events(DispatchBatch *b)
{
	Oid			argtypes[4] = {XID8OID, INT8OID, INT8ARRAYOID, INT8OID};
	Datum		args[4];
	int			ret;

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(b->pos_xid));
	args[1] = Int64GetDatum(b->pos_seq);
	args[2] = b->done_seq_array;
	args[3] = Int64GetDatum(dispatch_batch_size);
	ret = SPI_execute_with_args("SELECT s.xmin, e.xid, e.seq, e.dispatch_group,"
								"  e.tbl::pg_catalog.oid,"
								"  COALESCE(pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'"
								"           OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),"
								"           e.tbl::pg_catalog.oid::pg_catalog.text),"
								"  COALESCE(t.channel, 'recall'), e.pk, e.conversation, e.recalled_at"
								" FROM (SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) AS xmin) s"
								" LEFT JOIN LATERAL ("
								"   SELECT * FROM recall.events e"
								"   WHERE (e.xid, e.seq) OPERATOR(pg_catalog.>) ($1, $2)"
								"     AND NOT e.seq OPERATOR(pg_catalog.=) ANY ($3)"
								"   ORDER BY e.xid, e.seq LIMIT $4) e ON true"
								" LEFT JOIN recall.tables t ON t.tbl OPERATOR(pg_catalog.=) e.tbl"
								" LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) e.tbl"
								" LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
								" ORDER BY e.xid, e.seq",
								4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed < 1)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));

	b->xmin = spi_xid8(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	b->events = palloc0(sizeof(DispatchEvent) * SPI_processed);
	b->nevents = 0;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DispatchEvent *e = &b->events[b->nevents];
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (isnull)
			continue;			/* no events: the LEFT JOIN's empty row */
		e->seq = DatumGetInt64(d);
		e->xid = spi_xid8(tup, desc, 2);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		e->has_group = !isnull;
		e->group = isnull ? 0 : DatumGetInt32(d);
		e->tbl = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		e->table = SPI_getvalue(tup, desc, 6);
		e->channel = SPI_getvalue(tup, desc, 7);
		e->pk = recall_jsonb_compact(DatumGetJsonbP(SPI_getbinval(tup, desc, 8, &isnull)));
		e->conversation = SPI_getvalue(tup, desc, 9);
		e->at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 10, &isnull));
		b->nevents++;
	}
	b->full = (b->nevents >= dispatch_batch_size);
}

/*
 * A statement fills the whole batch: read the rest of its events, so that
 * it gets one notification.
 */
static void
batch_complete_statement(DispatchBatch *b)
{
	DispatchEvent *last = &b->events[b->nevents - 1];
	Oid			argtypes[5] = {XID8OID, INT4OID, OIDOID, INT8OID, INT8ARRAYOID};
	Datum		args[5];
	DispatchEvent model;
	uint64		nmore;
	int			ret;

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(last->xid));
	args[1] = Int32GetDatum(last->group);
	args[2] = ObjectIdGetDatum(last->tbl);
	args[3] = Int64GetDatum(last->seq);
	args[4] = b->done_seq_array;
	ret = SPI_execute_with_args("SELECT e.seq FROM recall.events e"
								" WHERE e.xid OPERATOR(pg_catalog.=) $1"
								"   AND e.dispatch_group OPERATOR(pg_catalog.=) $2"
								"   AND e.tbl::pg_catalog.oid OPERATOR(pg_catalog.=) $3"
								"   AND e.seq OPERATOR(pg_catalog.>) $4"
								"   AND NOT e.seq OPERATOR(pg_catalog.=) ANY ($5)"
								" ORDER BY e.seq",
								5, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));
	nmore = SPI_processed;
	if (nmore == 0)
		return;
	model = *last;
	b->events = repalloc_huge(b->events, sizeof(DispatchEvent) * (b->nevents + nmore));
	for (uint64 r = 0; r < nmore; r++)
	{
		bool		isnull;

		b->events[b->nevents] = model;
		b->events[b->nevents].seq =
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		b->nevents++;
	}
}

/*
 * Step 3: a full batch may end inside a statement's events: leave that
 * statement to the next batch, so that it gets one notification (unless it
 * alone fills the batch: then take all of it).
 */
static void
batch_trim_to_statements(DispatchBatch *b)
{
	DispatchEvent *last;
	int			start;

	if (!b->full || b->nevents <= 1)
		return;
	last = &b->events[b->nevents - 1];
	start = b->nevents - 1;
	while (start > 0 && same_statement(&b->events[start - 1], last))
		start--;
	if (start > 0)
		b->nevents = start;
	else if (last->has_group)
		batch_complete_statement(b);
}

/* Can NOTIFY use this channel name?  (Async_Notify raises an error.) */
static bool
channel_is_valid(const char *channel)
{
	return channel != NULL && channel[0] != '\0' && strlen(channel) < NAMEDATALEN;
}

/* Send one notification for events[from..to). */
static void
notify_statement(DispatchEvent *events, int from, int to)
{
	DispatchEvent *e = &events[from];
	char	   *payload = NULL;

	/* a bad registration must not stop every other table's notifications */
	if (!channel_is_valid(e->channel))
	{
		ereport(LOG,
				(errmsg("pg_recall: recalls of table %s are not notified: its channel name is not valid",
						e->table)));
		return;
	}
	if (to - from == 1)
		payload = recall_single_payload(e->table, e->pk, e->conversation, e->seq, e->at);
	if (payload == NULL || strlen(payload) >= RECALL_PAYLOAD_MAX)
		payload = recall_bulk_payload(e->table, to - from, e->seq, events[to - 1].seq);
	Async_Notify(e->channel, payload);
}

/* Step 4: one notification per (transaction, statement, table). */
static void
batch_notify(DispatchBatch *b)
{
	int			start = 0;

	for (int i = 1; i <= b->nevents; i++)
	{
		if (i < b->nevents && same_statement(&b->events[i], &b->events[start]))
			continue;
		/* events without a group were notified by their own transaction */
		if (b->events[start].has_group)
			notify_statement(b->events, start, i);
		start = i;
	}
}

/* Is (xid, seq) above the position (xid0, seq0)? */
static inline bool
above(uint64 xid, int64 seq, uint64 xid0, int64 seq0)
{
	return xid > xid0 || (xid == xid0 && seq > seq0);
}

/*
 * Step 5: move the position.  Everything below the snapshot's xmin is
 * finished and now sent (unless the batch was cut short); the events sent
 * above the new position are kept in "done".
 */
static void
batch_move_position(DispatchBatch *b)
{
	uint64		xid = b->pos_xid;
	int64		seq = b->pos_seq;
	Datum	   *elems = palloc(sizeof(Datum) * (b->ndone + b->nevents + 1));
	int			n = 0;
	Oid			argtypes[3] = {XID8OID, INT8OID, TEXTARRAYOID};
	Datum		args[3];
	int			ret;

	if (!b->full)
	{
		xid = Max(xid, b->xmin);
		seq = 0;
	}
	else if (b->nevents > 0)
	{
		DispatchEvent *last = &b->events[b->nevents - 1];

		if (last->xid < b->xmin)
		{
			xid = last->xid;
			seq = last->seq;
		}
		else if (xid < b->xmin)
		{
			xid = b->xmin;
			seq = 0;
		}
	}
	for (int i = 0; i < b->ndone; i++)
		if (above(b->done_xids[i], b->done_seqs[i], xid, seq))
			elems[n++] = CStringGetTextDatum(psprintf(UINT64_FORMAT ":" INT64_FORMAT,
													  b->done_xids[i], b->done_seqs[i]));
	for (int i = 0; i < b->nevents; i++)
		if (above(b->events[i].xid, b->events[i].seq, xid, seq))
			elems[n++] = CStringGetTextDatum(psprintf(UINT64_FORMAT ":" INT64_FORMAT,
													  b->events[i].xid, b->events[i].seq));

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(xid));
	args[1] = Int64GetDatum(seq);
	args[2] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	ret = SPI_execute_with_args("UPDATE recall.dispatch_state SET xid = $1, seq = $2, done = $3,"
								" updated_at = pg_catalog.now()",
								3, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "updating recall.dispatch_state failed: %s", SPI_result_code_string(ret));
}

/*
 * Start a transaction of the dispatcher's own; false (and no transaction)
 * if the extension is gone or DROP DATABASE waits.  Then act as a superuser
 * restricted to our own SQL: search_path pinned, no SET ROLE, no user code
 * that could keep state.
 */
static bool
begin_work(const char *activity, RecallBecome *become)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (recall_database_wanted_elsewhere() ||
		!OidIsValid(get_extension_oid("pg_recall", true)))
	{
		CommitTransactionCommand();
		return false;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	recall_become(GetUserId(), SECURITY_RESTRICTED_OPERATION, true, become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	return true;
}

/* Commit what begin_work started. */
static void
end_work(RecallBecome *become)
{
	SPI_finish();
	recall_unbecome(become);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* One batch, in one transaction. */
static DispatchResult
dispatch_batch(void)
{
	DispatchBatch b;
	RecallBecome become;

	memset(&b, 0, sizeof(b));
	if (!begin_work("dispatching recall notifications", &become))
		return DISPATCH_GONE;

	/* a Citus coordinator first copies its workers' new events (no-op elsewhere) */
	recall_citus_gather_events();
	batch_read_position(&b);
	batch_read_events(&b);
	batch_trim_to_statements(&b);
	batch_notify(&b);
	batch_move_position(&b);

	end_work(&become);
	if (b.full)
		return DISPATCH_FULL;
	return b.nevents > 0 ? DISPATCH_SENT : DISPATCH_IDLE;
}

/* ---------------------------------------------------------------------
 * Event retention
 * ---------------------------------------------------------------------
 */

/*
 * One round of retention: among the next "examine" events of finished
 * transactions after (*from_xid, *from_seq) in (xid, seq) order, delete
 * those recalled before cutoff that are notified (by their own transaction,
 * or at or below the dispatcher's position, or sent above it) and purged
 * (purging is off or the purger does not run (not preloaded), the table
 * is no longer enabled, or the table's purge
 * position is at or past the event).  Moves the position to the last event
 * looked at.  Sets *more when a whole page was looked at and, with
 * stop_at_recent, some of it was older than cutoff (the log is roughly in
 * time order: past the old events, the rest waits for a later pass).
 * Returns how many it deleted.  Caller: in a transaction, SPI connected,
 * search_path pinned.
 */
static int64
prune_round(uint64 *from_xid, int64 *from_seq, TimestampTz cutoff,
			int examine, bool stop_at_recent, bool *more)
{
	Oid			argtypes[5] = {XID8OID, INT8OID, INT8OID, TIMESTAMPTZOID, BOOLOID};
	Datum		args[5];
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		deleted;
	int64		examined;
	int64		old;

	args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(*from_xid));
	args[1] = Int64GetDatum(*from_seq);
	args[2] = Int64GetDatum(examine);
	args[3] = TimestampTzGetDatum(cutoff);
	/* without the purger (not preloaded, or purging off) nothing waits on it */
	args[4] = BoolGetDatum(!recall_dispatcher_enabled ||
						   recall_int_setting("recall.purge_delay") <= 0);
	ret = SPI_execute_with_args("WITH page AS MATERIALIZED ("
								"  SELECT e.ctid AS tid, e.xid, e.seq, e.tbl, e.recalled_at, e.dispatch_group"
								"  FROM recall.events e"
								"  WHERE (e.xid, e.seq) OPERATOR(pg_catalog.>) ($1, $2)"
								"    AND e.xid OPERATOR(pg_catalog.<)"
								"        pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())"
								"  ORDER BY e.xid, e.seq LIMIT $3),"
								" gone AS ("
								"  DELETE FROM recall.events e"
								"  WHERE e.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
								"   SELECT p.tid FROM page p"
								"   WHERE p.recalled_at OPERATOR(pg_catalog.<) $4"
								"     AND (p.dispatch_group IS NULL OR EXISTS ("
								"          SELECT FROM recall.dispatch_state d"
								"          WHERE (p.xid, p.seq) OPERATOR(pg_catalog.<=) (d.xid, d.seq)"
								"             OR ((p.xid::pg_catalog.text OPERATOR(pg_catalog.||) ':')"
								"                 OPERATOR(pg_catalog.||) p.seq::pg_catalog.text)"
								"                OPERATOR(pg_catalog.=) ANY (d.done)))"
								"     AND ($5"
								"          OR NOT EXISTS (SELECT FROM recall.tables t"
								"                         WHERE t.tbl OPERATOR(pg_catalog.=) p.tbl)"
								"          OR EXISTS (SELECT FROM recall.purge_state s"
								"                     WHERE s.tbl OPERATOR(pg_catalog.=) p.tbl"
								"                       AND (p.xid, p.seq) OPERATOR(pg_catalog.<=) (s.xid, s.seq)))))"
								"  RETURNING 1)"
								" SELECT (SELECT pg_catalog.count(*) FROM gone),"
								"        (SELECT pg_catalog.count(*) FROM page),"
								"        (SELECT pg_catalog.count(*) FROM page p"
								"         WHERE p.recalled_at OPERATOR(pg_catalog.<) $4),"
								"        l.xid, l.seq"
								" FROM (SELECT 1) one LEFT JOIN ("
								"   SELECT p.xid, p.seq FROM page p ORDER BY p.xid DESC, p.seq DESC LIMIT 1"
								" ) l ON true",
								5, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "trimming recall.events failed: %s", SPI_result_code_string(ret));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	deleted = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	examined = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	old = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	(void) SPI_getbinval(tup, desc, 4, &isnull);
	if (!isnull)
	{
		*from_xid = spi_xid8(tup, desc, 4);
		*from_seq = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	}
	*more = (examined >= examine && (!stop_at_recent || old > 0));
	return deleted;
}

/*
 * Is a retention pass due?  About once a minute per database, or once per
 * recall.event_retention if that is shorter (the time is kept in shared
 * memory, so that short-lived dispatchers keep the pace).
 */
static bool
retention_due(TimestampTz now)
{
	TimestampTz last = recall_last_prune();

	return event_retention_s > 0 &&
		(last == 0 ||
		 TimestampDifferenceExceeds(last, now,
									(int) Min((int64) PRUNE_EVERY_MS,
											  (int64) event_retention_s * 1000)));
}

/*
 * One round of the retention pass, in a transaction of its own; true while
 * the pass has more to look at.
 */
static bool
retention_step(RetentionPass *pass)
{
	RecallBecome become;
	bool		more = false;

	if (!pass->active)
	{
		pass->active = true;
		pass->from_xid = 0;
		pass->from_seq = 0;
		pass->deleted = 0;
		pass->cutoff = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   -((int64) event_retention_s) * 1000);
	}
	if (begin_work("trimming the recall event log", &become))
	{
		pass->deleted += prune_round(&pass->from_xid, &pass->from_seq, pass->cutoff,
									 PRUNE_ROUND_EVENTS, true, &more);
		end_work(&become);
	}
	if (!more)
	{
		pass->active = false;
		recall_set_last_prune(GetCurrentTimestamp());
		if (pass->deleted > 0)
			ereport(DEBUG1,
					(errmsg_internal("pg_recall: deleted " INT64_FORMAT " events older than recall.event_retention",
									 pass->deleted)));
	}
	return more;
}

/*
 * recall.prune_events(older_than interval) RETURNS bigint: delete the
 * events recalled longer ago than older_than that are notified and purged;
 * returns how many.  SECURITY DEFINER, search_path pinned by its
 * declaration; granted to recall_admin.
 */
Datum
recall_prune_events(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	Interval	zero;
	TimestampTz cutoff;
	RecallBecome become;
	uint64		from_xid = 0;
	int64		from_seq = 0;
	int64		deleted = 0;
	bool		more;

	memset(&zero, 0, sizeof(zero));
	if (PG_ARGISNULL(0) ||
		DatumGetBool(DirectFunctionCall2(interval_lt, PG_GETARG_DATUM(0),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must be a non-negative interval")));
	older_than = PG_GETARG_INTERVAL_P(0);
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
													 IntervalPGetDatum(older_than)));

	recall_become(GetUserId(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	do
	{
		CHECK_FOR_INTERRUPTS();
		deleted += prune_round(&from_xid, &from_seq, cutoff,
							   PRUNE_ROUND_EVENTS_ON_DEMAND, false, &more);
	} while (more);
	SPI_finish();
	recall_unbecome(&become);
	PG_RETURN_INT64(deleted);
}

/* ---------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------
 */

/* Reread the configuration file if asked to. */
static void
reload_settings(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * recall_dispatcher_loop: send the notifications of this database until
 * there has been nothing to send for recall.worker_idle_timeout (or the
 * launcher wants the slot, or the extension or database goes).
 */
void
recall_dispatcher_loop(void)
{
	TimestampTz last_work = GetCurrentTimestamp();
	bool		checked = false;
	bool		idle = false;
	RetentionPass retention;

	memset(&retention, 0, sizeof(retention));
	for (;;)
	{
		DispatchResult result;
		TimestampTz next_dispatch;

		CHECK_FOR_INTERRUPTS();
		reload_settings();
		if (recall_worker_should_exit())
			return;

		/* commits after this point set the latch and the request again */
		ResetLatch(MyLatch);
		(void) recall_dispatch_take_request();
		result = dispatch_batch();

		/*
		 * Started by the launcher's look at every database: with the
		 * extension here, a purge may be left from before a restart too.
		 * (Taken after the first batch: if that fails, the next dispatcher
		 * asks.)
		 */
		if (!checked)
		{
			checked = true;
			if (recall_take_startup_check() && result != DISPATCH_GONE)
				recall_request_purge(MyDatabaseId, 0);
		}

		if (result == DISPATCH_GONE)
		{
			/* no extension here, or DROP DATABASE waits: leave */
			if (recall_dispatcher_leave_if_idle())
				return;
			continue;
		}

		if (result != DISPATCH_IDLE)
		{
			last_work = GetCurrentTimestamp();
			if (idle)
				recall_dispatcher_set_idle(idle = false);
		}
		if (result == DISPATCH_FULL)
			continue;

		/* the event log's retention, a small batch per turn */
		if (retention.active || retention_due(GetCurrentTimestamp()))
		{
			if (retention_step(&retention))
				continue;
		}

		/*
		 * One transaction per recall would cost the dispatcher as much as
		 * the recalls themselves: let the next ones gather first.  A commit
		 * meanwhile leaves the latch set, so the wait below ends at once.
		 */
		if (dispatch_delay_ms > 0)
		{
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 dispatch_delay_ms, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}

		if (result == DISPATCH_IDLE && !idle)
			recall_dispatcher_set_idle(idle = true);

		/*
		 * Sleep until woken or the interval is over; wake at least once a
		 * second to step aside for DROP DATABASE (which waits 5 s for the
		 * database's sessions) or for another database, and leave once idle
		 * for recall.worker_idle_timeout.
		 */
		next_dispatch = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dispatch_interval_ms);
		for (;;)
		{
			TimestampTz now = GetCurrentTimestamp();
			long		ms;
			int			rc;

			if (TimestampDifferenceExceeds(last_work, now, recall_worker_idle_timeout_ms()) &&
				recall_dispatcher_leave_if_idle())
				return;
			if (now >= next_dispatch)
				break;
			ms = Min(1000, (long) ((next_dispatch - now) / 1000) + 1);
			if (!TimestampDifferenceExceeds(last_work, now, recall_worker_idle_timeout_ms()))
				ms = Min(ms, (long) ((TimestampTzPlusMilliseconds(last_work, recall_worker_idle_timeout_ms()) - now) / 1000) + 1);
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   ms, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
			reload_settings();
			if (rc & WL_LATCH_SET)
				break;
			if (recall_worker_should_exit())
				return;
		}
	}
}

/*
 * Define the dispatcher's settings (always: they are read also without
 * preloading, and the server checks postgresql.conf against them).
 */
void
recall_dispatcher_init(void)
{
	DefineCustomIntVariable("recall.dispatch_interval",
							gettext_noop("How often a dispatcher looks for events it was not woken for."),
							gettext_noop("Recalls wake it at commit; this catches the rest (e.g. after a restart)."),
							&dispatch_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("recall.dispatch_batch_size",
							gettext_noop("Most events a dispatcher notifies in one transaction."),
							NULL,
							&dispatch_batch_size,
							1000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("recall.dispatch_delay",
							gettext_noop("Pause of a dispatcher after a batch, to gather the recalls that commit meanwhile into the next one."),
							gettext_noop("Bounds the dispatcher to one transaction per this interval under load; adds at most this much latency."),
							&dispatch_delay_ms,
							2, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("recall.event_retention",
							gettext_noop("How long recall.events keeps the events that are notified and purged."),
							gettext_noop("0 keeps them forever.  The dispatcher deletes older ones about once a minute."),
							&event_retention_s,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}
