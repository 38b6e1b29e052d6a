/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  Background workers that send recall notifications after commit.
 *
 * NOTIFY inside the recall transaction takes a cluster-wide lock at commit
 * (PreCommit_Notify) that serializes every notifying commit, and makes the
 * transaction impossible to PREPARE.  With pg_recall in
 * shared_preload_libraries the recall transaction only writes its event
 * row; these workers send the notifications:
 *
 *	- the launcher ("pg_recall launcher", no database) starts one
 *	  dispatcher per database that has the extension: at start-up it tries
 *	  every database, later it starts one when a backend of that database
 *	  commits a recall, a COMMIT PREPARED or CREATE EXTENSION, and it
 *	  restarts a dispatcher that died;
 *	- a dispatcher ("pg_recall dispatcher") reads the committed events its
 *	  durable position (recall.dispatch_state) has not covered yet, sends
 *	  one notification per statement, and moves the position in the same
 *	  transaction as the NOTIFY: a crash before that commit sends nothing
 *	  and moves nothing, so a restart neither loses nor repeats.
 *	  It sleeps on its latch (set at each recall's commit) with a timeout
 *	  of recall.dispatch_interval, leaves when the extension is dropped,
 *	  and steps aside for DROP DATABASE.
 *
 * The position is the events_after() cursor of everything finished, plus
 * the events already sent above it (transactions that committed while an
 * older one is still running), so a long transaction does not hold the
 * notifications of later ones back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "erasure.h"
#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_wake_dispatcher);

/* Most databases that can have a dispatcher at once. */
#define RECALL_MAX_DATABASES 64

typedef struct DispatchSlot
{
	Oid			dboid;			/* InvalidOid: free */
	bool		wanted;			/* launcher should run a dispatcher here */
	pid_t		pid;			/* running dispatcher, 0 if none */
	Latch	   *latch;			/* its latch */
} DispatchSlot;

typedef struct DispatcherShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	DispatchSlot slots[RECALL_MAX_DATABASES];
} DispatcherShared;

bool		recall_dispatcher_enabled = false;

static int	dispatch_interval_ms = 1000;
static int	dispatch_batch_size = 1000;
static int	dispatch_delay_ms = 2;

static DispatcherShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* set when this transaction should wake the dispatcher at commit */
static bool wake_at_commit = false;

void		recall_launcher_main(Datum arg);
void		recall_dispatcher_main(Datum arg);
void		recall_purger_main(Datum arg);
void		recall_rebuilder_main(Datum arg);

/* Reserve the shared state. */
static void
dispatcher_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DispatcherShared)));
}

/* Create or attach to the shared state. */
static void
dispatcher_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_recall dispatcher", sizeof(DispatcherShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(DispatcherShared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of a database; a new one if create.  Caller holds the mutex. */
static DispatchSlot *
slot_for(Oid dboid, bool create)
{
	DispatchSlot *free_slot = NULL;

	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
	{
		if (shared->slots[i].dboid == dboid)
			return &shared->slots[i];
		if (free_slot == NULL && shared->slots[i].dboid == InvalidOid)
			free_slot = &shared->slots[i];
	}
	if (!create || free_slot == NULL)
		return NULL;
	memset(free_slot, 0, sizeof(DispatchSlot));
	free_slot->dboid = dboid;
	return free_slot;
}

/*
 * Wake this database's dispatcher, or ask the launcher for one.  Called at
 * commit: must not fail.
 */
static void
wake(Oid dboid)
{
	Latch	   *latch = NULL;
	DispatchSlot *slot;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	slot = slot_for(dboid, true);
	if (slot != NULL)
	{
		slot->wanted = true;
		latch = slot->latch;
	}
	if (latch == NULL)
		latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

/* Called by events.c when a transaction that recalled commits. */
void
recall_dispatcher_wake_at_commit(void)
{
	wake(MyDatabaseId);
}

/* Wake at commit when asked to (COMMIT PREPARED, CREATE EXTENSION). */
static void
dispatcher_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
		wake(MyDatabaseId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/*
 * A COMMIT PREPARED may commit recalls prepared by any session: wake the
 * dispatcher once it is done.
 */
static void
dispatcher_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						  bool readOnlyTree, ProcessUtilityContext context,
						  ParamListInfo params, QueryEnvironment *queryEnv,
						  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
		wake_at_commit = true;

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * recall._wake_dispatcher(): ask for this database's dispatcher at commit
 * (run by CREATE EXTENSION).  Does nothing without preloading.
 */
Datum
recall_wake_dispatcher(PG_FUNCTION_ARGS)
{
	wake_at_commit = true;
	PG_RETURN_BOOL(recall_dispatcher_enabled);
}

/*
 * Set up the dispatcher: called from _PG_init while preloading.
 */
void
recall_dispatcher_register(void)
{
	BackgroundWorker worker;

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
	if (!process_shared_preload_libraries_in_progress)
		return;
	recall_dispatcher_enabled = true;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = dispatcher_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = dispatcher_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = dispatcher_ProcessUtility;
	RegisterXactCallback(dispatcher_xact_callback, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_recall");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "recall_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_recall launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_recall launcher");
	RegisterBackgroundWorker(&worker);
}

/* ---------------------------------------------------------------------
 * Launcher
 * ---------------------------------------------------------------------
 */

/* Every database one can connect to. */
static List *
all_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(caller);
		dbs = lappend_oid(dbs, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

/*
 * Start a worker of a database ("dispatcher" or "purger"); false if none
 * could be started.
 */
static bool
start_worker(const char *kind, Oid dboid, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_recall");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "recall_%s_main", kind);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_recall %s for database %u", kind, dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_recall %s", kind);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/*
 * recall_launcher_main: keep one dispatcher running per database that
 * wants one.
 */
void
recall_launcher_main(Datum arg)
{
	BackgroundWorkerHandle *handles[RECALL_MAX_DATABASES] = {0};
	TimestampTz next_try[RECALL_MAX_DATABASES] = {0};
	TimestampTz started[RECALL_MAX_DATABASES] = {0};
	int			failures[RECALL_MAX_DATABASES] = {0};
	TimestampTz next_db_check;
	List	   *dbs;
	ListCell   *lc;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&shared->mutex);
	shared->launcher_latch = MyLatch;
	/* slots of an earlier launcher: their dispatchers are gone with it */
	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
		shared->slots[i].pid = 0;
	SpinLockRelease(&shared->mutex);

	/* try every database once; dispatchers leave where there is no extension */
	dbs = all_databases();
	SpinLockAcquire(&shared->mutex);
	foreach(lc, dbs)
	{
		DispatchSlot *slot = slot_for(lfirst_oid(lc), true);

		if (slot)
			slot->wanted = true;
	}
	SpinLockRelease(&shared->mutex);
	list_free(dbs);
	next_db_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		timeout = 1000;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* free the slots of dropped databases now and then */
		if (now >= next_db_check)
		{
			dbs = all_databases();
			SpinLockAcquire(&shared->mutex);
			for (int i = 0; i < RECALL_MAX_DATABASES; i++)
			{
				DispatchSlot *slot = &shared->slots[i];

				if (OidIsValid(slot->dboid) && !list_member_oid(dbs, slot->dboid) &&
					slot->pid == 0 && handles[i] == NULL)
					memset(slot, 0, sizeof(DispatchSlot));
			}
			SpinLockRelease(&shared->mutex);
			list_free(dbs);
			next_db_check = TimestampTzPlusMilliseconds(now, 10000);
		}

		for (int i = 0; i < RECALL_MAX_DATABASES; i++)
		{
			Oid			dboid;
			bool		wanted;
			pid_t		pid;

			/* forget a dispatcher that has exited (or died) */
			if (handles[i] != NULL &&
				GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
			{
				pfree(handles[i]);
				handles[i] = NULL;

				/*
				 * A dispatcher that died leaves its slot wanted: retry, one
				 * second later, backing off to a minute while it keeps
				 * failing fast.
				 */
				if (TimestampDifferenceExceeds(started[i], now, 10000))
					failures[i] = 0;
				next_try[i] = TimestampTzPlusMilliseconds(now, Min(1000L << Min(failures[i], 6), 60000));
				failures[i]++;
			}

			SpinLockAcquire(&shared->mutex);
			dboid = shared->slots[i].dboid;
			wanted = shared->slots[i].wanted;
			SpinLockRelease(&shared->mutex);

			if (!OidIsValid(dboid) || !wanted || handles[i] != NULL)
				continue;
			if (now < next_try[i])
			{
				timeout = Min(timeout, 100);
				continue;
			}
			if (!start_worker("dispatcher", dboid, &handles[i]))
			{
				handles[i] = NULL;
				next_try[i] = TimestampTzPlusMilliseconds(now, 1000);
			}
			else
				started[i] = now;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * Dispatcher
 * ---------------------------------------------------------------------
 */

static DispatchSlot *my_slot = NULL;

/* Leave the slot: no longer wanted unless a commit asks again. */
static void
dispatcher_leave(bool still_wanted)
{
	SpinLockAcquire(&shared->mutex);
	if (my_slot != NULL && my_slot->dboid == MyDatabaseId)
	{
		my_slot->pid = 0;
		my_slot->latch = NULL;
		my_slot->wanted = still_wanted;
	}
	SpinLockRelease(&shared->mutex);
}

/* On exit (also on error): clear the slot's pid and latch. */
static void
dispatcher_on_exit(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	if (my_slot != NULL && my_slot->dboid == MyDatabaseId && my_slot->pid == MyProcPid)
	{
		my_slot->pid = 0;
		my_slot->latch = NULL;
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * Is someone waiting to drop (or rename, or copy) this database?  They
 * hold a lock on it that conflicts with a connection's.
 */
static bool
database_wanted_elsewhere(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, true);
	return false;
}

/* An event read by a batch. */
typedef struct DispatchEvent
{
	uint64		xid;
	int64		seq;
	bool		has_group;
	int32		group;
	Oid			tbl;
	char	   *table;
	char	   *channel;
	char	   *pk;
	char	   *conversation;
	TimestampTz at;
} DispatchEvent;

/* Send one notification for events[from..to). */
static void
notify_group(DispatchEvent *events, int from, int to)
{
	DispatchEvent *e = &events[from];
	char	   *payload = NULL;

	if (to - from == 1)
		payload = recall_single_payload(e->table, e->pk, e->conversation, e->seq, e->at);
	if (payload == NULL || strlen(payload) >= RECALL_PAYLOAD_MAX)
		payload = recall_bulk_payload(e->table, to - from, e->seq, events[to - 1].seq);
	Async_Notify(e->channel, payload);
}

/*
 * One batch, in one transaction.  Returns 1 if the batch was full (more may
 * wait), 0 if not, -1 if the extension is gone or the database is wanted.
 */
static int
dispatch_batch(void)
{
	int			ret;
	uint64		cur_xid;
	int64		cur_seq;
	Datum		done_datum;
	bool		isnull;
	Datum	   *done_elems = NULL;
	int			ndone = 0;
	uint64	   *done_xids;
	int64	   *done_seqs;
	Datum	   *done_seq_datums;
	uint64		xmin;
	int			nevents;
	DispatchEvent *events;
	bool		full;
	int			ngroup_start;
	List	   *new_done = NIL;
	ListCell   *lc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	if (database_wanted_elsewhere() ||
		!OidIsValid(get_extension_oid("pg_recall", true)))
	{
		CommitTransactionCommand();
		return -1;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "dispatching recall notifications");

	ret = SPI_execute("SELECT xid::pg_catalog.text, seq, done FROM recall.dispatch_state FOR UPDATE",
					  false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "recall.dispatch_state has no row");
	if (!recall_parse_cursor(psprintf("%s:0", SPI_getvalue(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1)),
							 &cur_xid, &cur_seq))
		elog(ERROR, "recall.dispatch_state holds an invalid position");
	cur_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	done_datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (!isnull)
		deconstruct_array(DatumGetArrayTypeP(done_datum), TEXTOID, -1, false, TYPALIGN_INT,
						  &done_elems, NULL, &ndone);
	done_xids = palloc(sizeof(uint64) * (ndone + 1));
	done_seqs = palloc(sizeof(int64) * (ndone + 1));
	done_seq_datums = palloc(sizeof(Datum) * (ndone + 1));
	for (int i = 0; i < ndone; i++)
	{
		if (!recall_parse_cursor(TextDatumGetCString(done_elems[i]), &done_xids[i], &done_seqs[i]))
			elog(ERROR, "recall.dispatch_state holds an invalid sent event");
		done_seq_datums[i] = Int64GetDatum(done_seqs[i]);
	}

	/* the events not sent yet, with the xmin of the same snapshot */
	{
		Oid			argtypes[4] = {XID8OID, INT8OID, INT8ARRAYOID, INT8OID};
		Datum		args[4];

		args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(cur_xid));
		args[1] = Int64GetDatum(cur_seq);
		args[2] = PointerGetDatum(construct_array(done_seq_datums, ndone, INT8OID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[3] = Int64GetDatum(dispatch_batch_size);
		ret = SPI_execute_with_args(
									"SELECT s.xmin::pg_catalog.text, e.xid::pg_catalog.text, e.seq, e.dispatch_group,"
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
	}
	if (ret != SPI_OK_SELECT || SPI_processed < 1)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));

	{
		int64		dummy;

		if (!recall_parse_cursor(psprintf("%s:0", SPI_getvalue(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc, 1)),
								 &xmin, &dummy))
			elog(ERROR, "could not read the snapshot's xmin");
	}

	events = palloc0(sizeof(DispatchEvent) * SPI_processed);
	nevents = 0;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DispatchEvent *e = &events[nevents];
		int64		dummy;
		Datum		d;

		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (isnull)
			continue;			/* no events: the LEFT JOIN's empty row */
		recall_parse_cursor(psprintf("%s:0", SPI_getvalue(tup, desc, 2)), &e->xid, &dummy);
		e->seq = DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		e->has_group = !isnull;
		e->group = isnull ? 0 : DatumGetInt32(d);
		e->tbl = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		e->table = SPI_getvalue(tup, desc, 6);
		e->channel = SPI_getvalue(tup, desc, 7);
		e->pk = recall_jsonb_compact(DatumGetJsonbP(SPI_getbinval(tup, desc, 8, &isnull)));
		e->conversation = SPI_getvalue(tup, desc, 9);
		e->at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 10, &isnull));
		nevents++;
	}
	full = (nevents >= dispatch_batch_size);

	/*
	 * A full batch may end inside a statement's events: leave that statement
	 * to the next batch, so that it gets one notification (unless it alone
	 * is larger than a batch).
	 */
	if (full && nevents > 1)
	{
		DispatchEvent *last = &events[nevents - 1];
		int			start = nevents - 1;

		while (start > 0 && events[start - 1].xid == last->xid &&
			   events[start - 1].has_group == last->has_group &&
			   events[start - 1].group == last->group &&
			   events[start - 1].tbl == last->tbl)
			start--;
		if (start > 0)
			nevents = start;
		else if (last->has_group)
		{
			/* one statement fills the batch: take all of it, for one notification */
			Oid			argtypes[5] = {XID8OID, INT4OID, OIDOID, INT8OID, INT8ARRAYOID};
			Datum		args[5];
			uint64		nmore;

			args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(last->xid));
			args[1] = Int32GetDatum(last->group);
			args[2] = ObjectIdGetDatum(last->tbl);
			args[3] = Int64GetDatum(last->seq);
			args[4] = PointerGetDatum(construct_array(done_seq_datums, ndone, INT8OID, 8,
													  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
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
			if (nmore > 0)
			{
				DispatchEvent model = *last;

				events = repalloc_huge(events, sizeof(DispatchEvent) * (nevents + nmore));
				for (uint64 r = 0; r < nmore; r++)
				{
					events[nevents] = model;
					events[nevents].seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																	  SPI_tuptable->tupdesc, 1, &isnull));
					nevents++;
				}
			}
		}
	}

	/* one notification per (transaction, statement, table) */
	ngroup_start = 0;
	for (int i = 1; i <= nevents; i++)
	{
		DispatchEvent *a = &events[ngroup_start];

		if (i < nevents && events[i].xid == a->xid && events[i].has_group == a->has_group &&
			events[i].group == a->group && events[i].tbl == a->tbl)
			continue;
		/* events without a group were notified by their own transaction */
		if (a->has_group)
			notify_group(events, ngroup_start, i);
		ngroup_start = i;
	}

	/*
	 * New position: everything below the snapshot's xmin is finished and now
	 * sent (unless the batch was cut short); keep the sent events above it.
	 */
	if (!full)
	{
		cur_xid = Max(cur_xid, xmin);
		cur_seq = 0;
	}
	else if (nevents > 0)
	{
		DispatchEvent *last = &events[nevents - 1];

		if (last->xid < xmin)
		{
			cur_xid = last->xid;
			cur_seq = last->seq;
		}
		else if (cur_xid < xmin)
		{
			cur_xid = xmin;
			cur_seq = 0;
		}
	}
	for (int i = 0; i < ndone; i++)
		if (done_xids[i] > cur_xid || (done_xids[i] == cur_xid && done_seqs[i] > cur_seq))
			new_done = lappend(new_done, psprintf(UINT64_FORMAT ":" INT64_FORMAT,
												  done_xids[i], done_seqs[i]));
	for (int i = 0; i < nevents; i++)
		if (events[i].xid > cur_xid || (events[i].xid == cur_xid && events[i].seq > cur_seq))
			new_done = lappend(new_done, psprintf(UINT64_FORMAT ":" INT64_FORMAT,
												  events[i].xid, events[i].seq));

	{
		Oid			argtypes[3] = {XID8OID, INT8OID, TEXTARRAYOID};
		Datum		args[3];
		Datum	   *elems = palloc(sizeof(Datum) * (list_length(new_done) + 1));
		int			n = 0;

		foreach(lc, new_done)
			elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
		args[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(cur_xid));
		args[1] = Int64GetDatum(cur_seq);
		args[2] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
		ret = SPI_execute_with_args("UPDATE recall.dispatch_state SET xid = $1, seq = $2, done = $3,"
									" updated_at = pg_catalog.now()",
									3, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "updating recall.dispatch_state failed: %s", SPI_result_code_string(ret));
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return full ? 1 : 0;
}

/*
 * ---------------------------------------------------------------------
 * Erasure workers: a stand-in for the workers branch's launcher, so that
 * the erasure branch runs on its own.  The dispatcher keeps a purger
 * running; the purger starts a rebuilder when a rebuild falls due.  The
 * API is the one src/worker.h declares (see src/erasure.h); this whole
 * section goes when the workers branch lands.
 * ---------------------------------------------------------------------
 */

static bool shim_is_purger = false;
static bool shim_is_rebuilder = false;
static TimestampTz shim_next_due = 0;
static TimestampTz shim_rebuild_due = 0;
static BackgroundWorkerHandle *shim_rebuilder = NULL;

/* Should the erasure worker leave (its database's dispatcher is gone)? */
bool
recall_worker_should_exit(void)
{
	bool		dispatcher_runs;
	DispatchSlot *slot;

	if (database_wanted_elsewhere())
		return true;
	if (shim_is_rebuilder)
		return false;
	SpinLockAcquire(&shared->mutex);
	slot = slot_for(MyDatabaseId, false);
	dispatcher_runs = (slot != NULL && slot->pid != 0);
	SpinLockRelease(&shared->mutex);
	return !dispatcher_runs;
}

/* When the worker's loop is wanted again (0: nothing pending). */
void
recall_worker_set_next_due(TimestampTz due)
{
	shim_next_due = due;
}

/* How long a worker's loop stays with nothing due. */
int
recall_worker_idle_timeout_ms(void)
{
	return 10000;
}

/* The purger polls once a second here: nothing to do. */
void
recall_request_purge(Oid dboid, TimestampTz due)
{
}

static void shim_keep_rebuilder(void);

/* From the purger: start a rebuilder when the rebuild is due. */
void
recall_request_rebuild(Oid dboid, TimestampTz due)
{
	if (!shim_is_purger || dboid != MyDatabaseId)
		return;
	shim_rebuild_due = due;
	shim_keep_rebuilder();
}

/* Start the rebuilder if one is due and none runs. */
static void
shim_keep_rebuilder(void)
{
	pid_t		pid;

	if (shim_rebuilder != NULL &&
		GetBackgroundWorkerPid(shim_rebuilder, &pid) != BGWH_STOPPED)
		return;
	if (shim_rebuilder != NULL)
	{
		pfree(shim_rebuilder);
		shim_rebuilder = NULL;
	}
	if (shim_rebuild_due == 0 || shim_rebuild_due > GetCurrentTimestamp())
		return;
	if (!start_worker("rebuilder", MyDatabaseId, &shim_rebuilder))
		shim_rebuilder = NULL;
	shim_rebuild_due = 0;
}

/*
 * The purger of the dispatcher's database: erasure runs in a worker of its
 * own, so that a purge never holds the notifications back.  Started by the
 * dispatcher, restarted if it died.
 */
static void
keep_purger(BackgroundWorkerHandle **handle, TimestampTz *next_start)
{
	pid_t		pid;

	if (*handle != NULL && GetBackgroundWorkerPid(*handle, &pid) != BGWH_STOPPED)
		return;
	if (*handle != NULL)
	{
		pfree(*handle);
		*handle = NULL;
	}
	if (GetCurrentTimestamp() < *next_start)
		return;
	if (!start_worker("purger", MyDatabaseId, handle))
		*handle = NULL;
	*next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
}

/* Sleep up to a second, or until due. */
static void
shim_sleep(TimestampTz due)
{
	TimestampTz now = GetCurrentTimestamp();
	long		ms = 1000;

	if (due != 0 && due > now)
		ms = Min(ms, (long) ((due - now) / 1000) + 1);
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* recall_purger_main: erasure of one database, while its dispatcher runs. */
void
recall_purger_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	shim_is_purger = true;

	for (;;)
	{
		recall_purger_loop();
		shim_keep_rebuilder();
		if (recall_worker_should_exit())
			proc_exit(0);
		shim_sleep(shim_next_due);
	}
}

/* recall_rebuilder_main: rebuild the dirty indexes due, then leave. */
void
recall_rebuilder_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	shim_is_rebuilder = true;

	for (;;)
	{
		recall_rebuilder_loop();
		if (shim_next_due == 0 || recall_worker_should_exit())
			proc_exit(0);
		shim_sleep(shim_next_due);
	}
}

/*
 * recall_dispatcher_main: send the notifications of one database, and keep
 * its purger running.
 */
void
recall_dispatcher_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	TimestampTz next_dispatch = 0;
	BackgroundWorkerHandle *purger = NULL;
	TimestampTz next_purger = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	SpinLockAcquire(&shared->mutex);
	my_slot = slot_for(dboid, true);
	if (my_slot != NULL)
	{
		my_slot->pid = MyProcPid;
		my_slot->latch = MyLatch;
	}
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(dispatcher_on_exit, (Datum) 0);

	for (;;)
	{
		int			result;
		TimestampTz now;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* commits after this point set the latch again */
		ResetLatch(MyLatch);
		result = dispatch_batch();
		if (result < 0)
		{
			/* extension dropped, or the database is wanted: leave */
			dispatcher_leave(false);
			proc_exit(0);
		}
		if (result > 0)
			continue;
		next_dispatch = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dispatch_interval_ms);

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

		/*
		 * Sleep until woken or the interval is over; wake at least once a
		 * second to step aside for DROP DATABASE (which waits 5 s for the
		 * database's sessions) and to look after the purger.
		 */
		for (;;)
		{
			now = GetCurrentTimestamp();
			keep_purger(&purger, &next_purger);
			if (now >= next_dispatch)
				break;
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   Min(1000, (long) ((next_dispatch - now) / 1000) + 1),
						   PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
			if (rc & WL_LATCH_SET)
				break;
			if (database_wanted_elsewhere())
			{
				dispatcher_leave(false);
				proc_exit(0);
			}
		}
	}
}
