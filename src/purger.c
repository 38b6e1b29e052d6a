/*-------------------------------------------------------------------------
 *
 * purger.c
 *	  STUB (workers branch only): the purger and rebuilder loops.
 *
 * *** This file is a placeholder kept by the workers branch so that the
 * *** launcher can be built and tested before the erasure helper's
 * *** purger.c lands; that file replaces this one entirely.  It keeps
 * *** today's purge working: recall_purge_tables() (purge.c) once the
 * *** oldest unpurged recall is half of recall.purge_delay old.
 *
 * The loops follow worker.h: they return when nothing is due before
 * recall.worker_idle_timeout (or when recall_worker_should_exit()), having
 * told the launcher when the database needs them next.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_recall.h"
#include "worker.h"

static int	purge_delay_ms = 10000;

/*
 * STUB: purge what is due, in a transaction of its own; return when the
 * oldest recall still unpurged becomes due (0: none).
 */
static TimestampTz
purge_pass(void)
{
	PurgeSink	sink = {NULL, NULL, 0};
	TimestampTz next = 0;
	bool		isnull;
	Datum		d;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("pg_recall", true)))
	{
		CommitTransactionCommand();
		return 0;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "purging recalled content");
	recall_purge_tables(InvalidOid, false, purge_delay_ms / 2, &sink);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * STUB: today's purge.c records how far it got by xid alone; the 1.1
	 * position is (xid, seq), which event retention compares with.
	 */
	if (SPI_execute("UPDATE recall.purge_state SET seq = 9223372036854775807"
					" WHERE seq OPERATOR(pg_catalog.<>) 9223372036854775807",
					false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating recall.purge_state failed");
	if (SPI_execute("SELECT pg_catalog.min(e.recalled_at) FROM recall.events e"
					" JOIN recall.tables t ON t.tbl OPERATOR(pg_catalog.=) e.tbl"
					" LEFT JOIN recall.purge_state p ON p.tbl OPERATOR(pg_catalog.=) e.tbl"
					" WHERE p.xid IS NULL OR e.xid OPERATOR(pg_catalog.>) p.xid",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading recall.events failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		next = TimestampTzPlusMilliseconds(DatumGetTimestampTz(d), purge_delay_ms / 2);
	SPI_finish();

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return next;
}

/* STUB: the purger's loop. */
void
recall_purger_loop(void)
{
	for (;;)
	{
		TimestampTz next;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (purge_delay_ms <= 0)
			return;
		if (recall_worker_should_exit())
		{
			recall_worker_set_next_due(GetCurrentTimestamp());
			return;
		}

		next = purge_pass();
		now = GetCurrentTimestamp();
		if (next == 0)
			return;
		/* deferred by a snapshot that still sees the old versions: later */
		if (next <= now)
			next = TimestampTzPlusMilliseconds(now, 1000);
		if (TimestampDifferenceExceeds(now, next, recall_worker_idle_timeout_ms()))
		{
			recall_worker_set_next_due(next);
			return;
		}
		/* at least once a second: DROP DATABASE waits for us to leave */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(1000, (long) ((next - now) / 1000) + 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* STUB: today's purge rebuilds indexes itself. */
void
recall_rebuilder_loop(void)
{
}

/* STUB: the purger's settings. */
void
recall_purger_init(void)
{
	DefineCustomIntVariable("recall.purge_delay",
							gettext_noop("Longest time from a recall's commit to the erasure of its old bytes."),
							gettext_noop("The purger erases a table's recalled bytes once its oldest unpurged recall is half this old; 0 turns automatic purging off."),
							&purge_delay_ms,
							10000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}
