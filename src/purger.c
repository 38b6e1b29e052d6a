/*-------------------------------------------------------------------------
 *
 * purger.c
 *	  Erasure's settings and the loops of its two workers: the purger
 *	  (targeted purge, leftover cleanup, sweep) and the rebuilder (REINDEX
 *	  CONCURRENTLY of dirty content indexes).
 *
 * The workers helper's entry points (worker.c) connect to the database and
 * call recall_purger_loop() or recall_rebuilder_loop() outside any
 * transaction.  A loop does what is due, sleeps on its latch while the
 * next due time is close, and returns, after telling the launcher when it
 * is wanted again (recall_worker_set_next_due), once nothing is due within
 * the idle timeout.  Each step is a short transaction of its own; an error
 * in one is logged, its transaction aborted, and the loop goes on after a
 * back-off.  The session's search_path is pinned to "pg_catalog, pg_temp"
 * for the worker's life, so that nothing a database or role setting names
 * is ever looked up (a REINDEX run by the rebuilder included).
 *
 * The purger, in each pass:
 *	- drops the invalid leftovers of interrupted rebuilds (rebuild.c);
 *	- runs clock 1 (purge.c) when a table's oldest pending recall is half
 *	  recall.purge_delay old (a committing recall sets the latch);
 *	- asks the launcher for the rebuilder when a rebuild falls due;
 *	- runs one slice of the sweep (sweep.c) when one is due or running.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "erasure.h"
#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_erasure_settings);

int			recall_purge_delay_ms = 10000;
int			recall_index_rebuild_interval_s = 3600;
int			recall_sweep_interval_s = 86400;
double		recall_sweep_cost_delay = -1;
int			recall_sweep_cost_limit = -1;

/* Longest pause of a loop after an error. */
#define ERASURE_MAX_BACKOFF_MS 60000

/* Define erasure's settings (from _PG_init). */
void
recall_erasure_init(void)
{
	DefineCustomIntVariable("recall.purge_delay",
							gettext_noop("Longest time from a recall's commit to the erasure of its old heap and TOAST bytes by the purger."),
							gettext_noop("The purger purges a table once its oldest pending recall is half this old; 0 turns the automatic purge off."),
							&recall_purge_delay_ms,
							10000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("recall.index_rebuild_interval",
							gettext_noop("Longest time from a recall's purge to the REINDEX CONCURRENTLY of the indexes that hold its content."),
							gettext_noop("A dirty index is rebuilt once its oldest purged recall is half this old; 0 rebuilds at once, -1 never."),
							&recall_index_rebuild_interval_s,
							3600, -1, 365 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("recall.sweep_interval",
							gettext_noop("Time between two sweeps of the pages changed since the last one."),
							gettext_noop("-1 turns the sweep off."),
							&recall_sweep_interval_s,
							86400, -1, 365 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomRealVariable("recall.sweep_cost_delay",
							 gettext_noop("Cost delay of the sweep, as vacuum_cost_delay."),
							 gettext_noop("-1 uses autovacuum_vacuum_cost_delay."),
							 &recall_sweep_cost_delay,
							 -1, -1, 100,
							 PGC_SIGHUP, GUC_UNIT_MS,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("recall.sweep_cost_limit",
							gettext_noop("Cost limit of the sweep, as vacuum_cost_limit."),
							gettext_noop("-1 uses autovacuum_vacuum_cost_limit."),
							&recall_sweep_cost_limit,
							-1, -1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

/*
 * recall._erasure_settings() RETURNS TABLE (purge_delay interval,
 *   index_rebuild_interval interval, sweep_interval interval): the clocks,
 * NULL when off, for recall.purge_status.
 */
/* An interval of so many milliseconds. */
static Datum
interval_ms(int64 ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = ms * 1000;
	return IntervalPGetDatum(iv);
}

Datum
recall_erasure_settings(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	nulls[0] = recall_purge_delay_ms <= 0;
	values[0] = interval_ms(recall_purge_delay_ms);
	nulls[1] = recall_index_rebuild_interval_s < 0;
	values[1] = interval_ms((int64) Max(recall_index_rebuild_interval_s, 0) * 1000);
	nulls[2] = recall_sweep_interval_s < 0;
	values[2] = interval_ms((int64) Max(recall_sweep_interval_s, 0) * 1000);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * Steps
 * ---------------------------------------------------------------------
 */

/* Start a step: a transaction of its own, with a snapshot. */
void
recall_step_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* End a step: commit it. */
void
recall_step_end(void)
{
	if (ActiveSnapshotSet())
		PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Is pg_recall 1.1 installed in this database (its erasure state
 * exists)?  In a step.
 */
bool
recall_extension_present(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("pg_recall", true)))
		return false;
	nsp = get_namespace_oid("recall", true);
	return OidIsValid(nsp) && OidIsValid(get_relname_relid("index_state", nsp));
}

/* Pin the session's search_path (a worker's, for its life). */
static void
pin_search_path(void)
{
	StartTransactionCommand();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
	CommitTransactionCommand();
}

/*
 * After an error in a step: log it, abort the transaction, forget the
 * sweep in progress.  Returns the back-off before the next try.
 */
static long
loop_recover(MemoryContext cxt, int *failures)
{
	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(cxt);
	EmitErrorReport();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	recall_sweep_reset();
	pgstat_report_activity(STATE_IDLE, NULL);
	RESUME_INTERRUPTS();
	(*failures)++;
	return Min(1000L << Min(*failures, 6), ERASURE_MAX_BACKOFF_MS);
}

/* The earlier of two due times, 0 meaning none. */
static TimestampTz
earlier(TimestampTz a, TimestampTz b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
}

/*
 * Sleep until due (at most a second at a time, so that exit requests and
 * reloads are seen); false when the loop should return instead, having
 * told the launcher when it is wanted again.  *woken is set when the latch
 * was.
 */
static bool
loop_wait(TimestampTz due, bool *woken)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms;
	int			rc;

	*woken = false;
	if (due == 0 ||
		due > TimestampTzPlusMilliseconds(now, recall_worker_idle_timeout_ms()))
	{
		recall_worker_set_next_due(due);
		return false;
	}
	if (due <= now)
		return true;
	wait_ms = Min((long) ((due - now) / 1000) + 1, 1000);
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   wait_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	*woken = (rc & WL_LATCH_SET) != 0;
	return true;
}

/* Take a configuration reload, if one was signalled. */
static bool
loop_reload(void)
{
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

/* ---------------------------------------------------------------------
 * The purger
 * ---------------------------------------------------------------------
 */

/* Ask for the rebuilder when the first dirty index falls due. */
static void
request_rebuilds(TimestampTz *requested, TimestampTz *asked_at)
{
	TimestampTz due = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (recall_index_rebuild_interval_s < 0)
		return;
	recall_step_begin("pg_recall: looking for index rebuilds due");
	if (recall_extension_present())
		due = recall_rebuild_next_due();
	recall_step_end();
	if (due == 0)
		return;
	/* again when it changed, and now and then in case the request was lost */
	if (due != *requested || TimestampDifferenceExceeds(*asked_at, now, 10000))
	{
		recall_request_rebuild(MyDatabaseId, due);
		*requested = due;
		*asked_at = now;
	}
}

/*
 * The purger's state across its loop's passes (static: it must survive
 * the longjmp of an error).
 */
static struct
{
	TimestampTz purge_due;		/* clock 1 (0: nothing pending) */
	TimestampTz sweep_due;		/* clock 3 (0: nothing to sweep) */
	TimestampTz housekeeping_due;	/* leftovers, rebuild requests */
	TimestampTz requested;		/* rebuild due time last asked for */
	TimestampTz asked_at;
	int			failures;		/* errors in a row */
} purger;

/*
 * The purger's loop: see the file header.  Returns when nothing is due
 * within the idle timeout, or when asked to leave.
 */
void
recall_purger_loop(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pg_recall purger",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();

	memset(&purger, 0, sizeof(purger));
	purger.purge_due = purger.sweep_due = purger.housekeeping_due = now;
	pin_search_path();
	for (;;)
	{
		TimestampTz next;
		bool		woken;

		CHECK_FOR_INTERRUPTS();
		if (recall_worker_should_exit())
		{
			recall_worker_set_next_due(earlier(purger.purge_due, purger.sweep_due));
			break;
		}
		if (loop_reload())
			purger.purge_due = purger.sweep_due = GetCurrentTimestamp();

		MemoryContextReset(cxt);
		MemoryContextSwitchTo(cxt);
		now = GetCurrentTimestamp();
		PG_TRY();
		{
			if (purger.housekeeping_due <= now)
			{
				(void) recall_drop_leftover_indexes(InvalidOid);
				request_rebuilds(&purger.requested, &purger.asked_at);
				purger.housekeeping_due = TimestampTzPlusMilliseconds(now, 1000);
			}
			if (recall_purge_delay_ms > 0 && purger.purge_due != 0 && purger.purge_due <= now)
			{
				PurgeCycle	cycle;

				memset(&cycle, 0, sizeof(cycle));
				cycle.own_transactions = true;
				cycle.min_age_ms = recall_purge_delay_ms / 2;
				recall_purge_cycle(&cycle);
				purger.purge_due = cycle.next_due;
				if (cycle.marked_indexes > 0)
					request_rebuilds(&purger.requested, &purger.asked_at);
				if (cycle.sweep_requested && recall_sweep_interval_s >= 0)
					purger.sweep_due = GetCurrentTimestamp();
			}
			if (purger.sweep_due != 0 && purger.sweep_due <= now)
				purger.sweep_due = recall_sweep_step(0);
			purger.failures = 0;
		}
		PG_CATCH();
		{
			long		backoff = loop_recover(cxt, &purger.failures);

			purger.purge_due = purger.sweep_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);

		next = earlier(recall_purge_delay_ms > 0 ? purger.purge_due : 0, purger.sweep_due);
		if (!loop_wait(next, &woken))
			break;
		if (woken)
		{
			/* a recall committed, or recall.purge() asked for a sweep */
			purger.purge_due = GetCurrentTimestamp();
			if (recall_sweep_interval_s >= 0)
				purger.sweep_due = purger.purge_due;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* ---------------------------------------------------------------------
 * The rebuilder
 * ---------------------------------------------------------------------
 */

/*
 * The rebuilder's loop: rebuild the dirty indexes that are due, one at a
 * time, until none is due within the idle timeout.
 */
void
recall_rebuilder_loop(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pg_recall rebuilder",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = CurrentMemoryContext;
	volatile int failures = 0;

	pin_search_path();
	for (;;)
	{
		volatile TimestampTz due = 0;
		volatile bool did = false;
		bool		woken;

		CHECK_FOR_INTERRUPTS();
		(void) loop_reload();
		if (recall_worker_should_exit() || recall_index_rebuild_interval_s < 0)
		{
			recall_worker_set_next_due(0);
			break;
		}

		MemoryContextReset(cxt);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			did = recall_rebuild_one();
			if (!did)
			{
				recall_step_begin("pg_recall: looking for index rebuilds due");
				if (recall_extension_present())
					due = recall_rebuild_next_due();
				recall_step_end();
			}
			failures = 0;
		}
		PG_CATCH();
		{
			int			f = failures;
			long		backoff = loop_recover(cxt, &f);

			failures = f;
			did = false;
			due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);

		if (did)
			continue;
		if (!loop_wait(due, &woken))
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}
