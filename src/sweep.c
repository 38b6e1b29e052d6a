/*-------------------------------------------------------------------------
 *
 * sweep.c
 *	  Erasure, clock 3: a throttled sweep of the pages changed since the
 *	  last sweep, for the residue no recall recorded.
 *
 * The targeted purge (purge.c) erases what a recall leaves behind.  Older
 * residue is not recorded anywhere: a message's earlier edited versions,
 * and the bytes that pruning left in a page's free space before the
 * recall.  Every recall.sweep_interval, the purger sweeps every heap and
 * TOAST relation of the enabled tables and of their copies: a page whose
 * LSN is newer than the relation's last sweep (recall.sweep_state.last_lsn)
 * has changed since, so it is pruned and its free space zeroed like a
 * purged page; the others were done by an earlier sweep.  A relation that
 * is not WAL-logged (unlogged tables) has no page LSNs, and all its pages
 * are looked at.
 *
 * Like autovacuum, the sweep reads through a ring buffer and sleeps
 * whenever its cost reaches recall.sweep_cost_limit (vacuum_delay_point;
 * recall.sweep_cost_delay and recall.sweep_cost_limit default to
 * autovacuum's).  It runs in slices of SWEEP_SLICE_MS between which the
 * purger does the targeted purges due meanwhile, each slice a transaction
 * of its own on one relation.  A page in use is not waited for: the
 * relation's last_lsn then advances only up to that page's LSN, so the
 * next sweep comes back for it; so does a page that still holds a version
 * some snapshot can see.  At most one sweep runs per database: its purger
 * holds a session lock for the sweep's duration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/autovacuum.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "erasure.h"
#include "pg_recall.h"

/* How long one slice may work before the purger looks at its other clocks. */
#define SWEEP_SLICE_MS 200

/* One relation to sweep. */
typedef struct SweepRel
{
	Oid			relid;
	Oid			tbl;			/* the enabled table it belongs to */
	XLogRecPtr	last_lsn;		/* pages newer than this changed since */
} SweepRel;

/* The sweep in progress in this process. */
static struct
{
	bool		active;
	MemoryContext cxt;
	List	   *todo;			/* SweepRel, not started */
	SweepRel   *cur;			/* the relation being swept */
	BlockNumber next_blk;
	XLogRecPtr	start_lsn;		/* insert position when cur was started */
	XLogRecPtr	undone_lsn;		/* oldest LSN of a page not done, or 0 */
	bool		locked;			/* holds the database's sweep lock */
} sweep;

/* The database's sweep lock: an advisory tag no SQL function can take. */
static void
sweep_locktag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 0x72636c6c, 0x73776570, 3);
}

/* End the sweep in progress (or forget it, after an error). */
void
recall_sweep_reset(void)
{
	if (sweep.locked)
	{
		LOCKTAG		tag;

		sweep_locktag(&tag);
		LockRelease(&tag, ExclusiveLock, true);
		sweep.locked = false;
	}
	if (sweep.cxt != NULL)
		MemoryContextDelete(sweep.cxt);
	memset(&sweep, 0, sizeof(sweep));
}

/*
 * Every heap and TOAST relation of the enabled tables and of their copies,
 * with (when tbls is not NULL) the enabled table each belongs to; in the
 * caller's transaction.
 */
List *
recall_enabled_relations(List **tbls)
{
	RecallBecome become;
	List	   *rels = NIL;
	MemoryContext caller = CurrentMemoryContext;
	List	   *roots = NIL;
	List	   *owners = NIL;
	ListCell   *lc1;
	ListCell   *lc2;
	int			ret;

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT t.tbl::pg_catalog.oid, t.tbl::pg_catalog.oid FROM recall.tables t"
					  " UNION"
					  " SELECT c.copy::pg_catalog.oid, c.tbl::pg_catalog.oid FROM recall.copies c"
					  " ORDER BY 1",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.tables failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			root = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));
		Oid			tbl = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(caller);

		/* a copy registered for several tables is swept once */
		if (!list_member_oid(roots, root))
		{
			roots = lappend_oid(roots, root);
			owners = lappend_oid(owners, tbl);
		}
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	recall_unbecome(&become);

	if (tbls)
		*tbls = NIL;
	forboth(lc1, roots, lc2, owners)
	{
		int			before = list_length(rels);

		recall_heap_relations(lfirst_oid(lc1), &rels);
		if (tbls)
			for (int i = before; i < list_length(rels); i++)
				*tbls = lappend_oid(*tbls, lfirst_oid(lc2));
	}
	return rels;
}

/*
 * Make relations due for a sweep now (their last sweep is forgotten, their
 * last_lsn kept: the pages changed since are the ones to look at); in the
 * caller's transaction.  For recalls whose residue was not recorded.
 */
void
recall_sweep_request(List *relids, Oid tbl)
{
	RecallBecome become;
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;
	Oid			argtypes[2] = {OIDARRAYOID, REGCLASSOID};
	Datum		args[2];
	int			ret;

	if (relids == NIL)
		return;
	elems = palloc(sizeof(Datum) * list_length(relids));
	foreach(lc, relids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	args[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[1] = ObjectIdGetDatum(tbl);
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("INSERT INTO recall.sweep_state AS s (relid, tbl)"
								" SELECT u.r, $2 FROM pg_catalog.unnest($1) AS u(r)"
								" ON CONFLICT (relid) DO UPDATE SET last_sweep = NULL",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "requesting a sweep failed: %s", SPI_result_code_string(ret));
	SPI_finish();
	recall_unbecome(&become);
}

/*
 * Plan a sweep: the relations due (never swept, or last swept an interval
 * ago), into sweep.todo; forget the state of relations gone.  Returns when
 * the next one falls due if none is due now (0: nothing to sweep).
 */
static TimestampTz
plan_sweep(void)
{
	RecallBecome become;
	List	   *tbls;
	List	   *rels;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;
	ListCell   *lc1;
	ListCell   *lc2;
	int			ret;
	Datum	   *elems;
	int			n = 0;
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		args[1];

	rels = recall_enabled_relations(&tbls);
	elems = palloc(sizeof(Datum) * (list_length(rels) + 1));
	foreach(lc1, rels)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc1));
	args[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("DELETE FROM recall.sweep_state s"
								" WHERE s.relid OPERATOR(pg_catalog.<>) ALL ($1)",
								1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "updating recall.sweep_state failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute("SELECT s.relid, s.last_lsn, s.last_sweep FROM recall.sweep_state s",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.sweep_state failed: %s", SPI_result_code_string(ret));

	sweep.cxt = AllocSetContextCreate(TopMemoryContext, "pg_recall sweep", ALLOCSET_DEFAULT_SIZES);
	forboth(lc1, rels, lc2, tbls)
	{
		Oid			relid = lfirst_oid(lc1);
		XLogRecPtr	last_lsn = InvalidXLogRecPtr;
		bool		due = true;

		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;

			if (DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull)) != relid)
				continue;
			d = SPI_getbinval(tup, desc, 2, &isnull);
			if (!isnull)
				last_lsn = DatumGetLSN(d);
			d = SPI_getbinval(tup, desc, 3, &isnull);
			if (!isnull)
			{
				TimestampTz at = TimestampTzPlusMilliseconds(DatumGetTimestampTz(d),
															 (int64) recall_sweep_interval_s * 1000);

				if (at > now)
				{
					due = false;
					if (next == 0 || at < next)
						next = at;
				}
			}
			break;
		}
		if (due)
		{
			MemoryContext old = MemoryContextSwitchTo(sweep.cxt);
			SweepRel   *r = palloc(sizeof(SweepRel));

			r->relid = relid;
			r->tbl = lfirst_oid(lc2);
			r->last_lsn = last_lsn;
			sweep.todo = lappend(sweep.todo, r);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	recall_unbecome(&become);
	return sweep.todo != NIL ? now : next;
}

/* Record a relation swept to the end: its new last_lsn, now. */
static void
record_swept(SweepRel *r, XLogRecPtr last_lsn)
{
	RecallBecome become;
	Oid			argtypes[4] = {OIDOID, REGCLASSOID, LSNOID, TIMESTAMPTZOID};
	Datum		args[4];
	int			ret;

	args[0] = ObjectIdGetDatum(r->relid);
	args[1] = ObjectIdGetDatum(r->tbl);
	args[2] = LSNGetDatum(last_lsn);
	args[3] = TimestampTzGetDatum(GetCurrentTimestamp());
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("INSERT INTO recall.sweep_state AS s (relid, tbl, last_lsn, last_sweep)"
								" VALUES ($1, $2, $3, $4)"
								" ON CONFLICT (relid) DO UPDATE SET last_lsn = EXCLUDED.last_lsn,"
								" last_sweep = EXCLUDED.last_sweep",
								4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "recording a sweep failed: %s", SPI_result_code_string(ret));
	SPI_finish();
	recall_unbecome(&become);
}

/* The cost settings of the sweep: its own, else autovacuum's, else VACUUM's. */
static void
sweep_costs(double *delay, int *limit)
{
	*delay = recall_sweep_cost_delay >= 0 ? recall_sweep_cost_delay :
		autovacuum_vac_cost_delay >= 0 ? autovacuum_vac_cost_delay : VacuumCostDelay;
	*limit = recall_sweep_cost_limit > 0 ? recall_sweep_cost_limit :
		autovacuum_vac_cost_limit > 0 ? autovacuum_vac_cost_limit : VacuumCostLimit;
}

/* How far a slice got with a relation. */
typedef enum SliceStatus
{
	SLICE_MORE,					/* the deadline came first */
	SLICE_DONE,					/* swept to its end */
	SLICE_GONE					/* dropped meanwhile */
} SliceStatus;

/*
 * Sweep cur from next_blk on, until the relation ends or the slice's
 * deadline.
 */
static SliceStatus
sweep_relation_slice(TimestampTz deadline)
{
	SweepRel   *r = sweep.cur;
	bool		busy;
	Relation	rel;
	BlockNumber nblocks;
	TransactionId oldest;
	GlobalVisState *vistest;
	BufferAccessStrategy strategy;
	bool		logged;
	ErasureResult res;

	rel = recall_open_heap_for_scrub(r->relid, &busy);
	if (rel == NULL && !busy)
		return SLICE_GONE;
	if (rel == NULL)
	{
		/* locked away (ALTER TABLE): all its pages wait for the next sweep */
		sweep.undone_lsn = r->last_lsn + 1;
		return SLICE_DONE;
	}
	memset(&res, 0, sizeof(res));
	nblocks = RelationGetNumberOfBlocks(rel);
	oldest = GetOldestNonRemovableTransactionId(rel);
	vistest = GlobalVisTestFor(rel);
	logged = RelationNeedsWAL(rel);
	strategy = GetAccessStrategy(BAS_VACUUM);

	while (sweep.next_blk < nblocks && GetCurrentTimestamp() < deadline)
	{
		BlockNumber blk = sweep.next_blk++;
		Buffer		buf;
		XLogRecPtr	lsn;
		bool		dying = false;

		vacuum_delay_point();
		buf = ReadBufferExtended(rel, MAIN_FORKNUM, blk, RBM_NORMAL, strategy);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		lsn = PageGetLSN(BufferGetPage(buf));
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		ReleaseBuffer(buf);
		if (logged && lsn <= r->last_lsn)
			continue;			/* unchanged since the last sweep */
		if (recall_scrub_block(rel, blk, strategy, oldest, vistest, &dying, &res) == SCRUB_BUSY ||
			dying)
		{
			/* come back for it: the next sweep starts below its LSN */
			XLogRecPtr	bound = Max(lsn, 1);

			if (sweep.undone_lsn == InvalidXLogRecPtr || bound < sweep.undone_lsn)
				sweep.undone_lsn = bound;
		}
	}
	FreeAccessStrategy(strategy);
	relation_close(rel, NoLock);
	if (res.pages_scrubbed > 0)
		ereport(DEBUG1,
				(errmsg("pg_recall: sweep of relation %u: %lld pages scrubbed, %lld bytes zeroed",
						r->relid, (long long) res.pages_scrubbed, (long long) res.bytes_zeroed)));
	return sweep.next_blk >= nblocks ? SLICE_DONE : SLICE_MORE;
}

/*
 * Do one slice of the sweep (a worker, outside a transaction): plan one
 * if none is in progress and one is due, then sweep for up to budget_ms.
 * Returns when the sweep wants to run next (now: it is not finished), 0
 * when sweeping is off or there is nothing to sweep.
 */
TimestampTz
recall_sweep_step(long budget_ms)
{
	TimestampTz deadline;
	double		save_delay = VacuumCostDelay;
	int			save_limit = VacuumCostLimit;
	double		delay;
	int			limit;

	if (recall_sweep_interval_s < 0)
	{
		recall_sweep_reset();
		return 0;
	}
	if (budget_ms <= 0)
		budget_ms = SWEEP_SLICE_MS;

	if (!sweep.active)
	{
		TimestampTz next;
		LOCKTAG		tag;

		recall_sweep_reset();
		recall_step_begin("pg_recall: planning a sweep");
		if (!recall_extension_present())
		{
			recall_step_end();
			return 0;
		}
		next = plan_sweep();
		if (sweep.todo != NIL)
		{
			/* one sweep per database: another purger may still be leaving */
			sweep_locktag(&tag);
			if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
			{
				recall_step_end();
				recall_sweep_reset();
				return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);
			}
			sweep.locked = true;
			sweep.active = true;
		}
		recall_step_end();
		if (!sweep.active)
			return next;
	}

	/* cost-limited like autovacuum */
	sweep_costs(&delay, &limit);
	VacuumCostDelay = delay;
	VacuumCostLimit = limit;
	VacuumCostBalance = 0;
	VacuumCostActive = (delay > 0);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), budget_ms);
	PG_TRY();
	{
		while (GetCurrentTimestamp() < deadline)
		{
			SliceStatus status;

			if (sweep.cur == NULL)
			{
				if (sweep.todo == NIL)
					break;
				sweep.cur = linitial(sweep.todo);
				sweep.todo = list_delete_first(sweep.todo);
				sweep.next_blk = 0;
				sweep.start_lsn = GetXLogInsertRecPtr();
				sweep.undone_lsn = InvalidXLogRecPtr;
			}
			recall_step_begin("pg_recall: sweeping");
			status = sweep_relation_slice(deadline);
			recall_step_end();
			if (status == SLICE_MORE)
				continue;

			/* pages below the oldest one not done need no second look */
			if (status == SLICE_DONE)
			{
				XLogRecPtr	last = sweep.start_lsn;

				if (sweep.undone_lsn != InvalidXLogRecPtr)
					last = Min(last, sweep.undone_lsn - 1);
				recall_step_begin("pg_recall: recording a sweep");
				record_swept(sweep.cur, last);
				recall_step_end();
			}
			sweep.cur = NULL;
		}
	}
	PG_FINALLY();
	{
		VacuumCostActive = false;
		VacuumCostBalance = 0;
		VacuumCostDelay = save_delay;
		VacuumCostLimit = save_limit;
	}
	PG_END_TRY();

	if (sweep.cur == NULL && sweep.todo == NIL)
	{
		recall_sweep_reset();
		/* plan again at once: it tells when the next one falls due */
	}
	return GetCurrentTimestamp();
}
