/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher of pg_recall's background workers, and its shared memory.
 *
 * With pg_recall in shared_preload_libraries, a recall transaction only
 * writes its event row; background workers send the notifications after
 * commit and erase the recalled bytes.  They run within one fixed budget
 * for the whole cluster, recall.max_workers, and only while a database has
 * work, so that a database with the extension but no recall in progress
 * holds no worker, and a cluster of many databases does not take
 * max_worker_processes away from parallel query:
 *
 *	- backends ask for work (recall_request_dispatch, recall_request_purge,
 *	  recall_request_rebuild, from a recall's commit, a COMMIT PREPARED or a
 *	  CREATE EXTENSION): the request goes into the database's slot in
 *	  shared memory, and the latch of the database's running worker of that
 *	  kind, or the launcher's, is set;
 *	- the launcher ("pg_recall launcher", no database) starts a worker when
 *	  a database's dispatch is wanted or its purge (rebuild) is due, as long
 *	  as fewer than recall.max_workers run.  A database that must wait is
 *	  logged (once a minute), and idle workers are asked to leave for it, as
 *	  are workers that ran longer than recall.worker_idle_timeout;
 *	- a worker (worker.c) runs its loop in its database and exits when it
 *	  has nothing left to do: a dispatcher after recall.worker_idle_timeout
 *	  without events, a purger or rebuilder when nothing is due before that,
 *	  leaving the time its database next needs it in its slot;
 *	- a worker that failed (exited with an error) is started again after a
 *	  back-off of 1 s doubling to a minute, kept per database and kind, so
 *	  that it never delays another database and starts afresh when the slot
 *	  is given to another database.
 * At start, the launcher asks for a dispatcher in every database (those
 * without the extension leave at once, the others ask for a purge), within
 * the budget, so that work left from before a restart is found; again when
 * a reload changes the erasure clocks (purging switched back on finds the
 * recalls that committed while it was off).
 *
 * The dispatcher itself is in dispatcher.c, the purger and the rebuilder in
 * purger.c; worker.c is the common entry point of the three.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "erasure.h"
#include "pg_recall.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(recall_wake_dispatcher);

/* A database that failed to get a worker is logged at most this often. */
#define WAIT_LOG_INTERVAL_MS	60000

/* How often the launcher looks for dropped databases. */
#define DATABASE_CHECK_MS		10000

/* A worker slot registered by an earlier launcher that never started. */
#define ORPHAN_TIMEOUT_MS		60000

/* A worker that ran this long before it failed starts its back-off anew. */
#define BACKOFF_RESET_MS		10000

/*-------------
 * Shared memory.
 *
 * RecallDatabase: a database that asked for work (or has a worker).
 *	dboid			InvalidOid: the slot is free
 *	dispatch_wanted	1: events wait to be notified
 *	due[kind]		purger, rebuilder: earliest time the database needs one
 *					(TimestampTz; 0: not needed)
 *	worker[kind]	index of its worker of that kind, -1: none (a worker
 *					that is leaving is no longer its database's worker,
 *					but keeps its worker slot until it exits)
 *	startup_check	asked for by the launcher at its start: once a dispatcher
 *					has found the extension, a purge is due too
 *	retry_at[kind], failures[kind]
 *					back-off after a worker of that kind failed
 *	last_prune		when the dispatcher last trimmed the event log
 *
 * RecallWorkerSlot: one of recall.max_workers.
 *	in_use			given to a worker by the launcher, until it exits
 *	generation		changes at each use; the worker gets it in bgw_extra and
 *					leaves at once if its slot was given to another
 *	dboid, dbindex, kind
 *					its database (and that database's RecallDatabase) and
 *					what it does
 *	pid, latch		set when the worker attaches (0, NULL before)
 *	registered_at	when the launcher registered it
 *	started_at		when it attached
 *	idle_since		a dispatcher that sleeps without work (0: busy);
 *					idle workers are asked to leave first
 *	exit_requested	the launcher asks it to leave
 *
 * Locking: everything is protected by the lock (the one LWLock of tranche
 * "pg_recall"), with these exceptions:
 *	- dispatch_wanted and due[] are atomics.  Backends that ask for work
 *	  change them holding the lock in shared mode (which keeps the slot from
 *	  being freed or given to another database meanwhile); the launcher
 *	  takes them holding it exclusively; a running worker takes its own
 *	  database's without the lock (a slot with a worker is never freed).
 *	- exit_requested is an atomic, set by the launcher under the lock and
 *	  read by its worker without it.
 *	- last_prune is its database's dispatcher's alone.
 *	- launcher_latch is set by the launcher under the lock and read under
 *	  it in either mode.
 *-------------
 */
typedef struct RecallDatabase
{
	Oid			dboid;
	pg_atomic_uint32 dispatch_wanted;
	pg_atomic_uint64 due[RECALL_WORKER_NKINDS];
	int			worker[RECALL_WORKER_NKINDS];
	bool		startup_check;
	TimestampTz retry_at[RECALL_WORKER_NKINDS];
	int			failures[RECALL_WORKER_NKINDS];
	TimestampTz last_prune;
} RecallDatabase;

typedef struct RecallWorkerSlot
{
	bool		in_use;
	uint32		generation;
	Oid			dboid;
	int			dbindex;
	RecallWorkerKind kind;
	pid_t		pid;
	Latch	   *latch;
	TimestampTz registered_at;
	TimestampTz started_at;
	TimestampTz idle_since;
	pg_atomic_uint32 exit_requested;
} RecallWorkerSlot;

typedef struct RecallWorkersShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	pg_atomic_uint32 overflow;	/* a request found every RecallDatabase taken */
	uint32		next_generation;
	int			next_first;		/* database served first by the next pass */
	RecallDatabase dbs[RECALL_MAX_DATABASES];
	RecallWorkerSlot workers[RECALL_MAX_WORKERS];
} RecallWorkersShared;

/* Settings */
int			recall_max_workers = 3;
int			recall_worker_idle_timeout = 10000;

/* Preloaded: the workers send the notifications (read by events.c). */
bool		recall_dispatcher_enabled = false;

static RecallWorkersShared *shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * Workers this transaction asks for at its commit (now, then), and whether
 * it committed prepared recalls (a dispatcher, and a purge within
 * recall.purge_delay).
 */
static bool wanted_at_commit[RECALL_WORKER_NKINDS];
static bool purge_at_commit = false;

/* In a worker: its slot, and what it reports at exit. */
static int	my_index = -1;
static uint32 my_generation = 0;
static RecallWorkerKind my_kind;
static TimestampTz my_next_due = 0;

static const char *const kind_names[RECALL_WORKER_NKINDS] = {
	"dispatcher", "purger", "rebuilder"
};

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */

/* Reserve the shared state and its lock. */
static void
workers_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(RecallWorkersShared)));
	RequestNamedLWLockTranche("pg_recall", 1);
}

/* Create or attach to the shared state. */
static void
workers_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_recall workers", sizeof(RecallWorkersShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(RecallWorkersShared));
		shared->lock = &(GetNamedLWLockTranche("pg_recall"))->lock;
		pg_atomic_init_u32(&shared->overflow, 0);
		for (int i = 0; i < RECALL_MAX_DATABASES; i++)
		{
			pg_atomic_init_u32(&shared->dbs[i].dispatch_wanted, 0);
			for (int k = 0; k < RECALL_WORKER_NKINDS; k++)
			{
				pg_atomic_init_u64(&shared->dbs[i].due[k], 0);
				shared->dbs[i].worker[k] = -1;
			}
		}
		for (int w = 0; w < RECALL_MAX_WORKERS; w++)
			pg_atomic_init_u32(&shared->workers[w].exit_requested, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The slot of a database, or -1.  Caller holds the lock.  The slot found
 * last is tried first: a backend asks for its own database again and again.
 */
static int
find_database(Oid dboid)
{
	static int	last = 0;

	if (shared->dbs[last].dboid == dboid)
		return last;
	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
		if (shared->dbs[i].dboid == dboid)
			return (last = i);
	return -1;
}

/* A free slot for a database, or -1.  Caller holds the lock exclusively. */
static int
new_database(Oid dboid)
{
	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
	{
		RecallDatabase *db = &shared->dbs[i];

		if (OidIsValid(db->dboid))
			continue;
		/* nothing of the slot's last database carries over */
		db->dboid = dboid;
		pg_atomic_write_u32(&db->dispatch_wanted, 0);
		for (int k = 0; k < RECALL_WORKER_NKINDS; k++)
		{
			pg_atomic_write_u64(&db->due[k], 0);
			db->worker[k] = -1;
			db->retry_at[k] = 0;
			db->failures[k] = 0;
		}
		db->startup_check = false;
		db->last_prune = 0;
		return i;
	}
	return -1;
}

/* Is a worker slot, even one leaving, still working for database i? */
static bool
database_has_workers(int i)
{
	for (int w = 0; w < RECALL_MAX_WORKERS; w++)
		if (shared->workers[w].in_use && shared->workers[w].dbindex == i)
			return true;
	return false;
}

/* Lower an atomic due time to "due" (0 means none); true if it changed. */
static bool
lower_due(pg_atomic_uint64 *slot, TimestampTz due)
{
	uint64		old = pg_atomic_read_u64(slot);

	while (old == 0 || due < (TimestampTz) old)
	{
		if (pg_atomic_compare_exchange_u64(slot, &old, (uint64) due))
			return true;
	}
	return false;
}

/* ---------------------------------------------------------------------
 * Requests (any backend; never an error)
 * ---------------------------------------------------------------------
 */

/*
 * Note a request in database slot db; return the latch to set (NULL:
 * none).  Caller holds the lock, in either mode.
 */
static Latch *
note_request(RecallDatabase *db, RecallWorkerKind kind, TimestampTz due)
{
	int			w = db->worker[kind];
	Latch	   *worker_latch = w >= 0 ? shared->workers[w].latch : NULL;

	if (kind == RECALL_WORKER_DISPATCHER)
	{
		/*
		 * A flag already set is taken after this commit is visible, so it
		 * need not be written again (commits of all sessions meet here);
		 * without a dispatcher, the launcher was woken when it was set.
		 */
		if (pg_atomic_read_u32(&db->dispatch_wanted) != 0)
			return worker_latch;
		pg_atomic_write_u32(&db->dispatch_wanted, 1);
		return worker_latch ? worker_latch : shared->launcher_latch;
	}

	/* later than what is already due: whoever waits for that wakes anyway */
	if (!lower_due(&db->due[kind], due))
		return NULL;
	return worker_latch ? worker_latch : shared->launcher_latch;
}

/* Ask for a worker of a kind in a database. */
static void
request(Oid dboid, RecallWorkerKind kind, TimestampTz due)
{
	Latch	   *latch = NULL;
	int			i;

	if (shared == NULL || !OidIsValid(dboid))
		return;
	if (kind != RECALL_WORKER_DISPATCHER && due <= 0)
		due = GetCurrentTimestamp();

	LWLockAcquire(shared->lock, LW_SHARED);
	i = find_database(dboid);
	if (i >= 0)
		latch = note_request(&shared->dbs[i], kind, due);
	LWLockRelease(shared->lock);

	if (i < 0)
	{
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		i = find_database(dboid);
		if (i < 0)
			i = new_database(dboid);
		if (i >= 0)
			latch = note_request(&shared->dbs[i], kind, due);
		else
		{
			/* every slot taken: the launcher will look at every database */
			pg_atomic_write_u32(&shared->overflow, 1);
			latch = shared->launcher_latch;
		}
		LWLockRelease(shared->lock);
	}
	if (latch)
		SetLatch(latch);
}

/* The database has events to notify. */
void
recall_request_dispatch(Oid dboid)
{
	request(dboid, RECALL_WORKER_DISPATCHER, 0);
}

/* The database needs its purger at "due". */
void
recall_request_purge(Oid dboid, TimestampTz due)
{
	request(dboid, RECALL_WORKER_PURGER, due);
}

/* The database needs its rebuilder at "due". */
void
recall_request_rebuild(Oid dboid, TimestampTz due)
{
	request(dboid, RECALL_WORKER_REBUILDER, due);
}

/*
 * Ask for a worker of this database when the current transaction commits:
 * one that started before would not see what the transaction wrote, and
 * might leave having found nothing to do.
 */
void
recall_request_at_commit(RecallWorkerKind kind)
{
	wanted_at_commit[kind] = true;
}

/* Value of an integer setting by name (0 when it is not defined). */
int
recall_int_setting(const char *name)
{
	const char *value = GetConfigOption(name, true, false);

	return value ? (int) strtol(value, NULL, 10) : 0;
}

/*
 * Called by events.c when a transaction that recalled commits: its events
 * are to be notified, and its recalled bytes purged within
 * recall.purge_delay (the purger is due at half of it).
 */
void
recall_dispatcher_wake_at_commit(void)
{
	recall_request_dispatch(MyDatabaseId);
	if (recall_purge_delay_ms > 0)
		recall_request_purge(MyDatabaseId,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 recall_purge_delay_ms / 2));
}

/* Ask at commit when asked to (COMMIT PREPARED, CREATE EXTENSION). */
static void
workers_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT)
	{
		if (purge_at_commit)
			recall_dispatcher_wake_at_commit();
		for (int k = 0; k < RECALL_WORKER_NKINDS; k++)
			if (wanted_at_commit[k])
				request(MyDatabaseId, (RecallWorkerKind) k, 0);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		memset(wanted_at_commit, 0, sizeof(wanted_at_commit));
		purge_at_commit = false;
	}
}

/*
 * A COMMIT PREPARED may commit recalls prepared by any session: their
 * notifications and purge are wanted once it is done.
 */
static void
workers_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
		purge_at_commit = true;

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * recall._wake_dispatcher(): ask for this database's dispatcher at commit
 * (run by CREATE EXTENSION).  Returns whether there are workers at all.
 */
Datum
recall_wake_dispatcher(PG_FUNCTION_ARGS)
{
	recall_request_at_commit(RECALL_WORKER_DISPATCHER);
	PG_RETURN_BOOL(recall_dispatcher_enabled);
}

/* ---------------------------------------------------------------------
 * Worker side (worker.c, dispatcher.c, purger.c)
 * ---------------------------------------------------------------------
 */

/*
 * After a worker of a kind left database slot db: clean exit or failure.
 * A failure leaves the work wanted, after a back-off.  Caller holds the
 * lock exclusively.
 */
static void
record_exit(RecallDatabase *db, RecallWorkerKind kind, bool clean,
			TimestampTz started_at, TimestampTz next_due, TimestampTz now)
{
	if (clean)
	{
		db->failures[kind] = 0;
		db->retry_at[kind] = 0;
		if (kind != RECALL_WORKER_DISPATCHER && next_due != 0)
			lower_due(&db->due[kind], next_due);
		return;
	}
	if (started_at == 0 || !TimestampDifferenceExceeds(started_at, now, BACKOFF_RESET_MS))
		db->failures[kind]++;
	else
		db->failures[kind] = 1;
	db->retry_at[kind] = TimestampTzPlusMilliseconds(now,
													 Min(1000L << Min(db->failures[kind] - 1, 6), 60000L));
	if (kind == RECALL_WORKER_DISPATCHER)
		pg_atomic_write_u32(&db->dispatch_wanted, 1);
	else
		lower_due(&db->due[kind], now);
}

/* Give worker slot w back.  Caller holds the lock exclusively. */
static void
free_worker_slot(int w, bool clean, TimestampTz next_due)
{
	RecallWorkerSlot *slot = &shared->workers[w];
	RecallDatabase *db = &shared->dbs[slot->dbindex];

	if (db->worker[slot->kind] == w)
		db->worker[slot->kind] = -1;
	record_exit(db, slot->kind, clean, slot->started_at, next_due, GetCurrentTimestamp());
	slot->in_use = false;
	slot->pid = 0;
	slot->latch = NULL;
	slot->idle_since = 0;
	pg_atomic_write_u32(&slot->exit_requested, 0);
}

/* At a worker's exit (also after an error): give its slot back. */
static void
worker_on_exit(int code, Datum arg)
{
	Latch	   *latch;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (shared->workers[my_index].in_use &&
		shared->workers[my_index].generation == my_generation)
		free_worker_slot(my_index, code == 0, my_next_due);
	latch = shared->launcher_latch;
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Attach this process to worker slot index; false if the slot was given
 * to another worker meanwhile.  Returns the database and kind.
 */
bool
recall_worker_attach(int index, uint32 generation, Oid *dboid,
					 RecallWorkerKind *kind)
{
	RecallWorkerSlot *slot;

	if (shared == NULL || index < 0 || index >= RECALL_MAX_WORKERS)
		return false;
	slot = &shared->workers[index];
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (!slot->in_use || slot->generation != generation || slot->pid != 0)
	{
		LWLockRelease(shared->lock);
		return false;
	}
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->started_at = GetCurrentTimestamp();
	*dboid = slot->dboid;
	*kind = slot->kind;
	LWLockRelease(shared->lock);

	my_index = index;
	my_generation = generation;
	my_kind = *kind;
	/* after the before_shmem_exit callbacks: out of any transaction then */
	on_shmem_exit(worker_on_exit, (Datum) 0);
	return true;
}

/* Should this worker's loop return now? */
bool
recall_worker_should_exit(void)
{
	if (!PostmasterIsAlive())
		return true;
	if (my_index >= 0 &&
		pg_atomic_read_u32(&shared->workers[my_index].exit_requested) != 0)
		return true;
	return recall_database_wanted_elsewhere();
}

/* When this worker's database next needs a worker of its kind. */
void
recall_worker_set_next_due(TimestampTz due)
{
	my_next_due = due;
}

/* recall.worker_idle_timeout, in milliseconds. */
int
recall_worker_idle_timeout_ms(void)
{
	return recall_worker_idle_timeout;
}

/* The database slot of this worker (fixed while it runs). */
static RecallDatabase *
my_database(void)
{
	Assert(my_index >= 0);
	return &shared->dbs[shared->workers[my_index].dbindex];
}

/* Take this database's dispatch request: true if there was one. */
bool
recall_dispatch_take_request(void)
{
	if (my_index < 0)
		return false;
	return pg_atomic_exchange_u32(&my_database()->dispatch_wanted, 0) != 0;
}

/* Take the launcher's start-up check of this database, if it asked one. */
bool
recall_take_startup_check(void)
{
	bool		asked;

	if (my_index < 0)
		return false;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	asked = my_database()->startup_check;
	my_database()->startup_check = false;
	LWLockRelease(shared->lock);
	return asked;
}

/* Mark this dispatcher idle (sleeping without work) or busy. */
void
recall_dispatcher_set_idle(bool idle)
{
	if (my_index < 0)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->workers[my_index].idle_since = idle ? GetCurrentTimestamp() : 0;
	LWLockRelease(shared->lock);
}

/*
 * Leave this database, unless a dispatch was asked for since the last one
 * was taken (and the launcher does not want us gone): then false.  Once
 * this returns true, requests go to the launcher, which starts another
 * dispatcher for them.
 */
bool
recall_dispatcher_leave_if_idle(void)
{
	RecallDatabase *db;

	if (my_index < 0)
		return true;
	db = my_database();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&db->dispatch_wanted) != 0 &&
		pg_atomic_read_u32(&shared->workers[my_index].exit_requested) == 0)
	{
		LWLockRelease(shared->lock);
		return false;
	}
	if (db->worker[my_kind] == my_index)
		db->worker[my_kind] = -1;
	LWLockRelease(shared->lock);
	return true;
}

/* When this database's event log was last trimmed (0: not since start). */
TimestampTz
recall_last_prune(void)
{
	return my_index >= 0 ? my_database()->last_prune : 0;
}

/* Note that this database's event log was trimmed. */
void
recall_set_last_prune(TimestampTz at)
{
	if (my_index >= 0)
		my_database()->last_prune = at;
}

/* ---------------------------------------------------------------------
 * Launcher
 * ---------------------------------------------------------------------
 */

/* When the launcher last logged that a database waits. */
typedef struct WaitLogEntry
{
	Oid			dboid;
	TimestampTz logged_at;
} WaitLogEntry;

/* Launcher-private state. */
typedef struct LauncherState
{
	BackgroundWorkerHandle *handles[RECALL_MAX_WORKERS];	/* registered by us */
	uint32		handle_generation[RECALL_MAX_WORKERS];
	List	   *checks;			/* databases still to check after start */
	TimestampTz next_database_check;
	TimestampTz overflow_logged_at;
	WaitLogEntry wait_log[RECALL_MAX_DATABASES];
	MemoryContext cxt;			/* lives as long as the launcher */
} LauncherState;

/* A database of the cluster, as the launcher sees it. */
typedef struct KnownDatabase
{
	Oid			oid;
	bool		connectable;
} KnownDatabase;

/* Every database: its oid, and whether a worker can connect to it. */
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
		MemoryContext old = MemoryContextSwitchTo(caller);
		KnownDatabase *k = palloc(sizeof(KnownDatabase));

		k->oid = db->oid;
		k->connectable = db->datallowconn && !db->datistemplate;
		dbs = lappend(dbs, k);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return dbs;
}

/* The name of a database for a message ("with OID n" if it is gone). */
static char *
database_name(Oid dboid)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *name;

	StartTransactionCommand();
	name = get_database_name(dboid);
	name = name ? MemoryContextStrdup(caller, name) : NULL;
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return name ? name : psprintf("with OID %u", dboid);
}

/*
 * Queue a start-up check of every connectable database: a dispatcher each
 * (it leaves at once without the extension, and asks for a purge with it).
 */
static void
queue_all_checks(LauncherState *st)
{
	List	   *dbs = all_databases();
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(st->cxt);

	foreach(lc, dbs)
	{
		KnownDatabase *k = lfirst(lc);

		if (k->connectable && !list_member_oid(st->checks, k->oid))
			st->checks = lappend_oid(st->checks, k->oid);
	}
	MemoryContextSwitchTo(old);
}

/* The erasure clocks' settings, as one string to compare. */
static char *
erasure_settings(void)
{
	static const char *const names[] = {
		"recall.purge_delay", "recall.index_rebuild_interval", "recall.sweep_interval"
	};
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(names); i++)
	{
		const char *value = GetConfigOption(names[i], true, false);

		appendStringInfo(&buf, "%s;", value ? value : "");
	}
	return buf.data;
}

/*
 * Forget databases that were dropped (or can no longer be connected to):
 * their requests, back-off and start-up checks.
 */
static void
forget_dropped_databases(LauncherState *st)
{
	List	   *dbs = all_databases();
	List	   *keep = NIL;
	ListCell   *lc;
	MemoryContext old;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
	{
		RecallDatabase *db = &shared->dbs[i];
		bool		alive = false;

		if (!OidIsValid(db->dboid) || database_has_workers(i))
			continue;
		foreach(lc, dbs)
		{
			KnownDatabase *k = lfirst(lc);

			if (k->oid == db->dboid && k->connectable)
				alive = true;
		}
		if (!alive)
			db->dboid = InvalidOid;
	}
	LWLockRelease(shared->lock);

	old = MemoryContextSwitchTo(st->cxt);
	foreach(lc, st->checks)
	{
		Oid			dboid = lfirst_oid(lc);
		ListCell   *k;

		foreach(k, dbs)
			if (((KnownDatabase *) lfirst(k))->oid == dboid &&
				((KnownDatabase *) lfirst(k))->connectable)
				keep = lappend_oid(keep, dboid);
	}
	list_free(st->checks);
	st->checks = keep;
	MemoryContextSwitchTo(old);
}

/*
 * Does database slot db want a worker of a kind now?  If it will later,
 * lower *next_wake to that time.  Caller holds the lock.
 */
static bool
wants_worker(RecallDatabase *db, RecallWorkerKind kind, TimestampTz now,
			 TimestampTz *next_wake)
{
	TimestampTz at;

	if (db->worker[kind] >= 0)
		return false;
	if (kind == RECALL_WORKER_DISPATCHER)
	{
		if (pg_atomic_read_u32(&db->dispatch_wanted) == 0)
			return false;
		at = now;
	}
	else
	{
		at = (TimestampTz) pg_atomic_read_u64(&db->due[kind]);
		if (at == 0)
			return false;
	}
	at = Max(at, db->retry_at[kind]);
	if (at > now)
	{
		if (*next_wake == 0 || at < *next_wake)
			*next_wake = at;
		return false;
	}
	return true;
}

/*
 * Give a free worker slot to a kind of worker of database slot i; -1 if
 * none is free.  Caller holds the lock exclusively.
 */
static int
assign_worker(int i, RecallWorkerKind kind, TimestampTz now)
{
	RecallDatabase *db = &shared->dbs[i];

	for (int w = 0; w < RECALL_MAX_WORKERS; w++)
	{
		RecallWorkerSlot *slot = &shared->workers[w];

		if (slot->in_use)
			continue;
		slot->in_use = true;
		slot->generation = ++shared->next_generation;
		slot->dboid = db->dboid;
		slot->dbindex = i;
		slot->kind = kind;
		slot->pid = 0;
		slot->latch = NULL;
		slot->registered_at = now;
		slot->started_at = 0;
		slot->idle_since = 0;
		pg_atomic_write_u32(&slot->exit_requested, 0);
		db->worker[kind] = w;
		/* the worker takes the purge (rebuild) that is due; a dispatcher takes its flag itself */
		if (kind != RECALL_WORKER_DISPATCHER)
			pg_atomic_write_u64(&db->due[kind], 0);
		return w;
	}
	return -1;
}

/*
 * Ask up to n workers to leave so that waiting databases get a slot: idle
 * dispatchers first (the longest idle first), then, when "slice" is set,
 * workers that have run longer than recall.worker_idle_timeout.  Returns
 * their latches.  Caller holds the lock exclusively.
 */
static List *
ask_to_leave(int n, bool slice, TimestampTz now)
{
	List	   *latches = NIL;

	for (int pass = 0; pass < 2 && n > 0; pass++)
	{
		while (n > 0)
		{
			int			best = -1;
			TimestampTz best_since = 0;

			for (int w = 0; w < RECALL_MAX_WORKERS; w++)
			{
				RecallWorkerSlot *slot = &shared->workers[w];
				TimestampTz since;

				if (!slot->in_use || slot->pid == 0 ||
					pg_atomic_read_u32(&slot->exit_requested) != 0)
					continue;
				if (pass == 0)
					since = slot->idle_since;
				else if (slice &&
						 TimestampDifferenceExceeds(slot->started_at, now,
													recall_worker_idle_timeout))
					since = slot->started_at;
				else
					since = 0;
				if (since != 0 && (best < 0 || since < best_since))
				{
					best = w;
					best_since = since;
				}
			}
			if (best < 0)
				break;
			pg_atomic_write_u32(&shared->workers[best].exit_requested, 1);
			if (shared->workers[best].latch)
				latches = lappend(latches, shared->workers[best].latch);
			n--;
		}
	}
	return latches;
}

/*
 * Log that a database waits for a worker, at most once a minute per
 * database (remembered here, not in its slot, which may be freed and
 * taken again meanwhile).
 */
static void
log_waiting(LauncherState *st, Oid dboid, TimestampTz now, bool no_bgworker)
{
	WaitLogEntry *e = &st->wait_log[0];

	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
	{
		if (st->wait_log[i].dboid == dboid)
		{
			e = &st->wait_log[i];
			break;
		}
		if (st->wait_log[i].logged_at < e->logged_at)
			e = &st->wait_log[i];	/* else reuse the oldest entry */
	}
	if (e->dboid == dboid &&
		!TimestampDifferenceExceeds(e->logged_at, now, WAIT_LOG_INTERVAL_MS))
		return;
	e->dboid = dboid;
	e->logged_at = now;
	if (no_bgworker)
		ereport(LOG,
				(errmsg("pg_recall: database \"%s\" is waiting for a background worker: no background worker slot is free",
						database_name(dboid)),
				 errhint("Raise max_worker_processes (now %d): pg_recall needs recall.max_workers (%d) plus one for its launcher, besides parallel query and other extensions.",
						 max_worker_processes, recall_max_workers)));
	else
		ereport(LOG,
				(errmsg("pg_recall: database \"%s\" is waiting for a background worker: all %d of recall.max_workers are busy",
						database_name(dboid), recall_max_workers)));
}

/* Register the background worker of slot w. */
static bool
register_worker(LauncherState *st, int w, Oid dboid, RecallWorkerKind kind,
				uint32 generation)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_recall");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "recall_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_recall %s for database %u",
			 kind_names[kind], dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_recall %s", kind_names[kind]);
	worker.bgw_main_arg = Int32GetDatum(w);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;

	if (st->handles[w] != NULL)
	{
		/* its last worker gave the slot back before we looked */
		pfree(st->handles[w]);
		st->handles[w] = NULL;
	}
	old = MemoryContextSwitchTo(st->cxt);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (ok)
	{
		st->handles[w] = handle;
		st->handle_generation[w] = generation;
	}
	return ok;
}

/*
 * Forget the handles of workers that stopped; a worker that stopped
 * without giving its slot back never started (or never attached): that
 * counts as a failure.  Slots of an earlier launcher's workers that never
 * started are given back after a while.
 */
static void
reap_workers(LauncherState *st, TimestampTz now)
{
	bool		stopped[RECALL_MAX_WORKERS];

	/* GetBackgroundWorkerPid takes the postmaster's lock: not under ours */
	for (int w = 0; w < RECALL_MAX_WORKERS; w++)
	{
		pid_t		pid;

		stopped[w] = (st->handles[w] != NULL &&
					  GetBackgroundWorkerPid(st->handles[w], &pid) == BGWH_STOPPED);
	}

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int w = 0; w < RECALL_MAX_WORKERS; w++)
	{
		RecallWorkerSlot *slot = &shared->workers[w];
		BackgroundWorkerHandle *h = st->handles[w];
		bool		same = (h != NULL && slot->in_use &&
							slot->generation == st->handle_generation[w]);

		if (stopped[w] && same)
			free_worker_slot(w, false, 0);
		else if (h == NULL && slot->in_use && slot->pid == 0 &&
				 TimestampDifferenceExceeds(slot->registered_at, now, ORPHAN_TIMEOUT_MS))
			free_worker_slot(w, false, 0);
		if (h != NULL && (stopped[w] || !same))
		{
			pfree(h);
			st->handles[w] = NULL;
		}
	}
	LWLockRelease(shared->lock);
}

/* A worker to register, decided under the lock. */
typedef struct PendingStart
{
	int			w;
	int			dbindex;
	Oid			dboid;
	RecallWorkerKind kind;
	uint32		generation;
} PendingStart;

/* One pass of the launcher, step by step (launcher_pass). */
typedef struct LauncherPass
{
	TimestampTz now;
	int			budget;			/* recall.max_workers */
	int			nrunning;		/* worker slots in use */
	int			nleaving;		/* ... asked to leave already */
	PendingStart starts[RECALL_MAX_WORKERS];	/* to register */
	int			nstarts;
	Oid			waiting[RECALL_MAX_DATABASES];	/* databases that wait */
	int			nwaiting;
	List	   *latches;		/* of the workers asked to leave */
	TimestampTz next_wake;		/* the next thing planned (0: none) */
} LauncherPass;

/* Plan to look again at t. */
static void
pass_wake_at(LauncherPass *p, TimestampTz t)
{
	if (p->next_wake == 0 || t < p->next_wake)
		p->next_wake = t;
}

/* Give a worker slot to database slot i, kind; false if none is free. */
static bool
pass_start(LauncherPass *p, int i, RecallWorkerKind kind)
{
	int			w = assign_worker(i, kind, p->now);
	PendingStart *s;

	if (w < 0)
		return false;
	s = &p->starts[p->nstarts++];
	s->w = w;
	s->dbindex = i;
	s->dboid = shared->dbs[i].dboid;
	s->kind = kind;
	s->generation = shared->workers[w].generation;
	p->nrunning++;
	return true;
}

/* Step 1: count the workers (starting ones are looked at again soon). */
static void
pass_count_workers(LauncherPass *p)
{
	for (int w = 0; w < RECALL_MAX_WORKERS; w++)
	{
		if (!shared->workers[w].in_use)
			continue;
		p->nrunning++;
		if (pg_atomic_read_u32(&shared->workers[w].exit_requested) != 0)
			p->nleaving++;
		if (shared->workers[w].pid == 0)
			pass_wake_at(p, TimestampTzPlusMilliseconds(p->now, 1000));
	}
}

/*
 * Step 2: start the workers that are wanted, within the budget:
 * dispatchers first (notification latency), then purgers, then
 * rebuilders; a different database first at each pass.  The others wait.
 */
static void
pass_serve_requests(LauncherPass *p)
{
	int			first = shared->next_first;

	shared->next_first = (first + 1) % RECALL_MAX_DATABASES;
	for (int kind = 0; kind < RECALL_WORKER_NKINDS; kind++)
	{
		for (int n = 0; n < RECALL_MAX_DATABASES; n++)
		{
			int			i = (first + n) % RECALL_MAX_DATABASES;
			RecallDatabase *db = &shared->dbs[i];
			bool		listed = false;

			if (!OidIsValid(db->dboid) ||
				!wants_worker(db, (RecallWorkerKind) kind, p->now, &p->next_wake))
				continue;
			if (p->nrunning < p->budget && pass_start(p, i, (RecallWorkerKind) kind))
				continue;
			for (int j = 0; j < p->nwaiting; j++)
				listed |= (p->waiting[j] == db->dboid);
			if (!listed)
				p->waiting[p->nwaiting++] = db->dboid;
		}
	}
}

/*
 * Step 3: make room: for each waiting database (and each worker above a
 * lowered recall.max_workers), one worker asked to leave, idle ones first.
 */
static void
pass_make_room(LauncherPass *p)
{
	int			excess = Max(p->nrunning - p->budget, 0);
	int			ask = p->nwaiting + excess - p->nleaving;

	if (ask > 0)
		p->latches = ask_to_leave(ask, p->nwaiting > 0, p->now);
}

/*
 * Step 4: the start-up checks get the budget nobody else wants: a
 * dispatcher in each database not checked yet.
 */
static void
pass_serve_checks(LauncherState *st, LauncherPass *p)
{
	while (st->checks != NIL && p->nrunning < p->budget && p->nwaiting == 0)
	{
		Oid			dboid = linitial_oid(st->checks);
		int			i = find_database(dboid);

		if (i >= 0 && shared->dbs[i].worker[RECALL_WORKER_DISPATCHER] >= 0)
		{
			/*
			 * A dispatcher runs there: the extension is, a purge may be
			 * due.  The next pass starts the purger: nothing else wakes
			 * the launcher for it, and a recall's request for a later due
			 * time leaves the earlier one to whoever waits for it.
			 */
			st->checks = list_delete_first(st->checks);
			lower_due(&shared->dbs[i].due[RECALL_WORKER_PURGER], p->now);
			pass_wake_at(p, p->now);
			continue;
		}
		if (i < 0)
			i = new_database(dboid);
		if (i < 0)
			break;
		st->checks = list_delete_first(st->checks);
		shared->dbs[i].startup_check = true;
		pg_atomic_write_u32(&shared->dbs[i].dispatch_wanted, 1);
		if (p->now < shared->dbs[i].retry_at[RECALL_WORKER_DISPATCHER])
			continue;			/* the back-off's end starts it */
		if (!pass_start(p, i, RECALL_WORKER_DISPATCHER))
			break;
	}
}

/* Step 5: free the slots of databases with nothing left to do. */
static void
pass_free_idle_databases(LauncherPass *p)
{
	for (int i = 0; i < RECALL_MAX_DATABASES; i++)
	{
		RecallDatabase *db = &shared->dbs[i];
		bool		busy;

		if (!OidIsValid(db->dboid))
			continue;
		busy = pg_atomic_read_u32(&db->dispatch_wanted) != 0 || db->startup_check ||
			database_has_workers(i);
		for (int k = 0; k < RECALL_WORKER_NKINDS; k++)
			busy |= (pg_atomic_read_u64(&db->due[k]) != 0 || db->retry_at[k] > p->now);
		if (!busy)
			db->dboid = InvalidOid;
	}
}

/*
 * Step 6 (outside the lock: registering takes the postmaster's): register
 * the workers; one that finds no background worker slot gives its slot
 * back and keeps its database's request, retried in a second, and logged.
 */
static void
pass_register(LauncherState *st, LauncherPass *p)
{
	for (int s = 0; s < p->nstarts; s++)
	{
		PendingStart *start = &p->starts[s];
		RecallWorkerSlot *slot = &shared->workers[start->w];

		if (register_worker(st, start->w, start->dboid, start->kind, start->generation))
			continue;

		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		if (slot->in_use && slot->generation == start->generation)
		{
			RecallDatabase *db = &shared->dbs[start->dbindex];

			if (db->worker[start->kind] == start->w)
				db->worker[start->kind] = -1;
			slot->in_use = false;
			if (start->kind == RECALL_WORKER_DISPATCHER)
				pg_atomic_write_u32(&db->dispatch_wanted, 1);
			else
				lower_due(&db->due[start->kind], p->now);
			db->retry_at[start->kind] = TimestampTzPlusMilliseconds(p->now, 1000);
		}
		LWLockRelease(shared->lock);
		log_waiting(st, start->dboid, p->now, true);
		pass_wake_at(p, TimestampTzPlusMilliseconds(p->now, 1000));
	}
}

/*
 * One pass: start the workers that are wanted, within recall.max_workers,
 * fairly across databases; ask workers to leave for the databases that
 * wait, and log those; give start-up checks what budget is left.  Returns
 * the time of the next thing planned (0: none).  A waiting database gets
 * the next slot that frees: the exiting worker sets our latch.
 */
static TimestampTz
launcher_pass(LauncherState *st, TimestampTz now)
{
	LauncherPass p;
	ListCell   *lc;

	memset(&p, 0, sizeof(p));
	p.now = now;
	p.budget = Min(recall_max_workers, RECALL_MAX_WORKERS);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	pass_count_workers(&p);
	pass_serve_requests(&p);
	pass_make_room(&p);
	pass_serve_checks(st, &p);
	pass_free_idle_databases(&p);
	LWLockRelease(shared->lock);

	foreach(lc, p.latches)
		SetLatch((Latch *) lfirst(lc));
	pass_register(st, &p);
	for (int j = 0; j < p.nwaiting; j++)
		log_waiting(st, p.waiting[j], now, false);
	return p.next_wake;
}

/* At the launcher's exit: requests no longer set its latch. */
static void
launcher_on_exit(int code, Datum arg)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (shared->launcher_latch == MyLatch)
		shared->launcher_latch = NULL;
	LWLockRelease(shared->lock);
}

/*
 * recall_launcher_main: start the workers databases need, within
 * recall.max_workers.
 */
void
recall_launcher_main(Datum main_arg)
{
	LauncherState st;
	MemoryContext pass_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	memset(&st, 0, sizeof(st));
	st.cxt = AllocSetContextCreate(TopMemoryContext, "pg_recall launcher",
								   ALLOCSET_DEFAULT_SIZES);
	pass_cxt = AllocSetContextCreate(TopMemoryContext, "pg_recall launcher pass",
									 ALLOCSET_DEFAULT_SIZES);

	/*
	 * Workers of an earlier launcher (if this one was restarted) go on: they
	 * give their slots back at exit, as ours do.
	 */
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_latch = MyLatch;
	LWLockRelease(shared->lock);
	on_shmem_exit(launcher_on_exit, (Datum) 0);

	/* work left from before a restart: every database gets a look */
	queue_all_checks(&st);
	st.next_database_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 DATABASE_CHECK_MS);

	for (;;)
	{
		TimestampTz now;
		TimestampTz next_wake;
		long		timeout = DATABASE_CHECK_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			char	   *before = erasure_settings();

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);

			/*
			 * Purging switched on (or its clocks changed): recalls that
			 * waited for it asked for no purger at their commit, so every
			 * database gets a look, as at start.
			 */
			if (strcmp(before, erasure_settings()) != 0)
				queue_all_checks(&st);
		}
		/* whatever is asked from now on sets the latch again */
		ResetLatch(MyLatch);
		MemoryContextReset(pass_cxt);
		MemoryContextSwitchTo(pass_cxt);

		now = GetCurrentTimestamp();
		reap_workers(&st, now);

		if (pg_atomic_exchange_u32(&shared->overflow, 0) != 0)
		{
			if (st.overflow_logged_at == 0 ||
				TimestampDifferenceExceeds(st.overflow_logged_at, now, WAIT_LOG_INTERVAL_MS))
			{
				ereport(LOG,
						(errmsg("pg_recall: more than %d databases asked for a background worker at once",
								RECALL_MAX_DATABASES),
						 errdetail("Every database will be checked for work as workers become free.")));
				st.overflow_logged_at = now;
			}
			queue_all_checks(&st);
		}
		if (now >= st.next_database_check)
		{
			forget_dropped_databases(&st);
			st.next_database_check = TimestampTzPlusMilliseconds(now, DATABASE_CHECK_MS);
		}

		next_wake = launcher_pass(&st, now);
		if (next_wake != 0)
		{
			long		ms = (long) ((next_wake - GetCurrentTimestamp()) / 1000) + 1;

			timeout = Max(Min(timeout, ms), 1);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
	}
}

/* ---------------------------------------------------------------------
 * Set-up
 * ---------------------------------------------------------------------
 */

/*
 * Define the workers' settings (always), and when preloading, set up the
 * shared memory, the hooks and the launcher.
 */
void
recall_workers_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("recall.max_workers",
							gettext_noop("Most pg_recall background workers running at once, in all databases together."),
							gettext_noop("Besides the launcher.  Each takes one of max_worker_processes."),
							&recall_max_workers,
							3, 1, RECALL_MAX_WORKERS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("recall.worker_idle_timeout",
							gettext_noop("How long a pg_recall worker with nothing to do stays before it exits."),
							gettext_noop("A dispatcher stays while recalls keep coming; the launcher starts another when a recall commits."),
							&recall_worker_idle_timeout,
							10000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	recall_dispatcher_init();

	if (!process_shared_preload_libraries_in_progress)
		return;
	recall_dispatcher_enabled = true;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = workers_shmem_request;
#else
	workers_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = workers_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = workers_ProcessUtility;
	RegisterXactCallback(workers_xact_callback, NULL);

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
