/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  pg_recall's background workers: the launcher, its wake-up requests,
 *	  and what a worker's loop may ask of it.
 *
 * With pg_recall in shared_preload_libraries, one launcher (no database)
 * starts short-lived workers in the databases that have work, within
 * recall.max_workers for the whole cluster:
 *	- a dispatcher sends the notifications of committed recalls
 *	  (dispatcher.c) and trims the event log (recall.event_retention);
 *	- a purger erases recalled bytes, a rebuilder rebuilds an index
 *	  (purger.c).
 * Backends ask for work with the recall_request_* functions (safe in a
 * commit callback: they never raise an error); a worker's loop returns when
 * it has nothing left to do, reporting when its database needs it next.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RECALL_WORKER_H
#define RECALL_WORKER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"

/* What a worker does. */
typedef enum RecallWorkerKind
{
	RECALL_WORKER_DISPATCHER,	/* notifications, event retention */
	RECALL_WORKER_PURGER,		/* targeted purge and sweep */
	RECALL_WORKER_REBUILDER		/* one REINDEX CONCURRENTLY at a time */
} RecallWorkerKind;

#define RECALL_WORKER_NKINDS 3

/* Worker slots in shared memory: the largest recall.max_workers. */
#define RECALL_MAX_WORKERS 32

/* Databases that can wait for work at once (more are found by a rescan). */
#define RECALL_MAX_DATABASES 128

/* Settings (launcher.c) */
extern int	recall_max_workers;
extern int	recall_worker_idle_timeout;

/*
 * Wake-ups, callable from any backend of a preloaded server, at any time
 * (commit callbacks included): they never raise an error, and do nothing
 * without preloading.
 *
 * recall_request_dispatch: the database has events to notify; its
 * dispatcher's latch is set, or the launcher starts one.
 * recall_request_purge, recall_request_rebuild: the database needs its
 * purger (rebuilder) at "due" (0 or a past time: now); the earliest due
 * time per database and kind is kept, and the launcher starts the worker
 * then (a running one has its latch set).
 * recall_request_at_commit: the same, for now, once the current
 * transaction commits (for work that transaction wrote).
 */
extern void recall_request_dispatch(Oid dboid);
extern void recall_request_purge(Oid dboid, TimestampTz due);
extern void recall_request_rebuild(Oid dboid, TimestampTz due);
extern void recall_request_at_commit(RecallWorkerKind kind);

/*
 * For a worker's loop (in the worker process only).
 *
 * recall_worker_should_exit: the launcher asks this worker to leave (the
 * budget is needed elsewhere, or recall.max_workers shrank), someone waits
 * to drop the database, or the postmaster died.  The loop returns soon
 * after, having reported its next due time (now, if work is left): call it
 * at least once a second, also while waiting, since DROP DATABASE waits
 * only 5 s for the database's sessions to leave.
 * recall_worker_set_next_due: when this worker's database next needs a
 * worker of this kind (0: nothing pending); read by the launcher once the
 * loop has returned normally (after an error, the launcher retries after a
 * back-off instead).
 * recall_worker_idle_timeout_ms: recall.worker_idle_timeout; a purger or
 * rebuilder returns when nothing is due before that long.
 */
extern bool recall_worker_should_exit(void);
extern void recall_worker_set_next_due(TimestampTz due);
extern int	recall_worker_idle_timeout_ms(void);

/* The loops (a worker exits when its loop returns). */
extern void recall_dispatcher_loop(void);	/* dispatcher.c */
extern void recall_purger_loop(void);	/* purger.c (erasure) */
extern void recall_rebuilder_loop(void);	/* purger.c (erasure) */

/* The entry point of every worker: bgw_main_arg is its slot's index. */
extern PGDLLEXPORT void recall_worker_main(Datum main_arg);
extern PGDLLEXPORT void recall_launcher_main(Datum main_arg);

/* ---------------------------------------------------------------------
 * Between launcher.c, worker.c and dispatcher.c
 * ---------------------------------------------------------------------
 */

/* worker.c: is someone waiting to drop (or rename, or copy) this database? */
extern bool recall_database_wanted_elsewhere(void);

/* launcher.c, for worker.c: attach to slot index (generation in bgw_extra) */
extern bool recall_worker_attach(int index, uint32 generation, Oid *dboid,
								 RecallWorkerKind *kind);

/*
 * dispatcher.c: take this database's dispatch request (true if there was
 * one); mark the dispatcher idle or busy (the launcher asks idle ones to
 * leave first); leave if no request came meanwhile (false: stay, one came);
 * take the launcher's start-up check of this database (true if it asked:
 * the dispatcher then asks for a purge, if the extension is there).
 */
extern bool recall_dispatch_take_request(void);
extern void recall_dispatcher_set_idle(bool idle);
extern bool recall_dispatcher_leave_if_idle(void);
extern bool recall_take_startup_check(void);

/* dispatcher.c: when this database's event log was last trimmed */
extern TimestampTz recall_last_prune(void);
extern void recall_set_last_prune(TimestampTz at);

/* dispatcher.c: settings of the dispatcher, defined always */
extern void recall_dispatcher_init(void);

/* Value of an integer setting by name (0 when it is not defined). */
extern int	recall_int_setting(const char *name);

/* Set up settings, shared memory and the launcher (from _PG_init). */
extern void recall_workers_init(void);

/* purger.c (erasure helper): its settings, defined always */

#endif							/* RECALL_WORKER_H */
