/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Erasure, clock 1: the pages a recall left its old bytes on are pruned
 *	  and their free space zeroed, once no snapshot can see the old version.
 *
 * Wiping writes a new tuple version; the old one and its TOAST chunks keep
 * the text.  The recall records where they are, in its own transaction:
 * recall.events.residue holds {relation, block} pairs (the leaf partition
 * and block of the old version, the TOAST relation and blocks of its
 * chunks), recall.purge_queue the same for the copy rows it wiped or
 * deleted.  A purge cycle visits only those pages, so its cost follows the
 * recalls, never the size of the table:
 *	1. read the events after each table's position (recall.purge_state)
 *	   whose transaction is behind the removal horizon, in (xid, seq)
 *	   order, and the queue rows behind it; later events are 'deferred';
 *	2. per relation, in a short transaction of its own (worker) and under
 *	   RowExclusiveLock taken conditionally (as pg_surgery; writers never
 *	   wait on it), each distinct block: take its cleanup lock if it is
 *	   free (a page in use is retried by the next cycle, never waited
 *	   for), prune it as VACUUM does, zero its free space; then mark the
 *	   relation's indexes that hold a content column dirty,
 *	   for the rebuilder (rebuild.c);
 *	3. record: move each table's position up to its first event with a
 *	   page not done, delete the queue rows done.
 * An event without residue (written by 1.0, before the upgrade) cannot be
 * targeted: its table's relations are handed to the sweep (sweep.c) and
 * its content indexes are marked dirty.
 *
 * Page changes are made under the cleanup lock, after every decision, and
 * WAL-logged: pruning's own record, then, when a byte of the free space
 * was not zero, a generic WAL record whose application (and replay) zeroes
 * the free space; so crash recovery and standbys get the scrubbed page.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/generic_xlog.h"
#include "catalog/heap.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/itemptr.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/xid8.h"

#include "erasure.h"
#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_purge);
PG_FUNCTION_INFO_V1(recall_clear_statistics);

/* Most events one cycle reads; the next cycle goes on from there. */
#define PURGE_BATCH_EVENTS 10000

/* One enabled table in a cycle. */
typedef struct CycleTable
{
	Oid			tbl;
	bool		skip;			/* not this cycle: busy, not owned, not due */
	TransactionId horizon;		/* xids before it are finished and invisible */
	bool		has_pos;
	FullTransactionId pos_xid;	/* every event up to (pos_xid, pos_seq) is done */
	int64		pos_seq;
	List	   *names;			/* its content columns */
	/* its events read this cycle: cycle->events[first .. first + nevents) */
	int			first;
	int			nevents;
	int			first_failed;	/* first of them with a page not done */
	int64		ndeferred;		/* events newer than the horizon */
	TimestampTz oldest;			/* recalled_at of its oldest pending event */
	bool		fallback;		/* an event without residue: sweep the table */
} CycleTable;

/* One event read. */
typedef struct CycleEvent
{
	int			table;			/* index in cycle->tables */
	FullTransactionId xid;
	int64		seq;
	TimestampTz at;
	bool		failed;			/* one of its pages was not done */
} CycleEvent;

/* One recall.purge_queue row read. */
typedef struct QueueRow
{
	ItemPointerData ctid;
	Oid			relid;
	bool		failed;			/* a page not done: keep the row */
} QueueRow;

/* A block some residue names, and who named it. */
typedef struct BlockRef
{
	Oid			relid;
	BlockNumber blk;
	int			event;			/* index in cycle->events, or -1 */
	int			queue;			/* index in cycle->queue, or -1 */
	ScrubStatus status;
} BlockRef;

/* The state of one purge cycle; lives in cxt across its transactions. */
typedef struct CycleState
{
	PurgeCycle *cycle;
	MemoryContext cxt;
	int			ntables;
	CycleTable *tables;
	int			nevents;
	CycleEvent *events;
	bool		cut;			/* the event batch was full: */
	FullTransactionId cut_xid;	/* ... its last event */
	int64		cut_seq;
	List	   *allowed;		/* relations recall.purge() may visit; NIL: any */
	int			nqueue;
	QueueRow   *queue;
	int			nrefs;
	BlockRef   *refs;
	List	   *copies;			/* CopyContent of every registered copy */
	TransactionId queue_horizon;
} CycleState;

/*
 * A copy table's content columns, as registered for one enabled table; a
 * 'delete' copy has none registered: every column but the match ones may
 * hold text of the deleted row.
 */
typedef struct CopyContent
{
	Oid			copy;
	Oid			tbl;
	List	   *names;			/* NIL: a 'delete' copy */
	List	   *match;
} CopyContent;

/* Emit one result row (recall.purge()), or only count it (workers). */
void
recall_erasure_emit(ErasureSink *sink, ErasureResult *res)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	if (sink == NULL)
		return;
	sink->nrows++;
	if (sink->store == NULL)
		return;
	values[0] = ObjectIdGetDatum(res->relid);
	values[1] = CStringGetTextDatum(res->kind);
	values[2] = Int64GetDatum(res->pages_scanned);
	values[3] = Int64GetDatum(res->pages_scrubbed);
	values[4] = Int64GetDatum(res->bytes_zeroed);
	values[5] = BoolGetDatum(res->rebuilt);
	tuplestore_putvalues(sink->store, sink->desc, values, nulls);
}

/* ---------------------------------------------------------------------
 * Page work
 * ---------------------------------------------------------------------
 */

/* Count the non-zero bytes of a range. */
static int64
nonzero_bytes(const char *p, Size len)
{
	int64		n = 0;

	for (Size i = 0; i < len; i++)
		n += (p[i] != 0);
	return n;
}

/*
 * Prune a heap page as VACUUM does: dead-to-all tuples lose their storage
 * (HOT chains keep their root as a redirect, so index entries of live rows
 * stay valid), and the page is compacted.  Pruning WAL-logs its own record,
 * with the conflict horizon that cancels standby queries still able to see
 * those tuples.  Returns whether it changed the page.  The caller holds the
 * cleanup lock: heap_page_prune_opt() would try to take it again, and give
 * up.  15.8 gave heap_page_prune() the horizon VACUUM computed, so that the
 * two agree on what is dead.
 */
static bool
prune_page(Relation rel, Buffer buf, TransactionId oldest, GlobalVisState *vistest)
{
	int			nnewlpdead = 0;
	int			ndeleted;

#if PG_VERSION_NUM >= 150008
	ndeleted = heap_page_prune(rel, buf, oldest, vistest, InvalidTransactionId, 0,
							   &nnewlpdead, NULL);
#else
	ndeleted = heap_page_prune(rel, buf, vistest, InvalidTransactionId, 0,
							   &nnewlpdead, NULL);
#endif
	return ndeleted > 0 || nnewlpdead > 0;
}

/*
 * Does the page still hold a version that is dead to some snapshots but
 * not to all (so its bytes stay until a later prune)?
 */
static bool
page_has_dying_tuples(Relation rel, Buffer buf, BlockNumber blk, TransactionId oldest)
{
	Page		page = BufferGetPage(buf);
	OffsetNumber maxoff = PageGetMaxOffsetNumber(page);

	for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
	{
		ItemId		lp = PageGetItemId(page, off);
		HeapTupleData tup;

		if (!ItemIdIsNormal(lp))
			continue;
		tup.t_data = (HeapTupleHeader) PageGetItem(page, lp);
		tup.t_len = ItemIdGetLength(lp);
		tup.t_tableOid = RelationGetRelid(rel);
		ItemPointerSet(&tup.t_self, blk, off);
		switch (HeapTupleSatisfiesVacuum(&tup, oldest, buf))
		{
			case HEAPTUPLE_RECENTLY_DEAD:
			case HEAPTUPLE_DELETE_IN_PROGRESS:
				return true;
			default:
				break;
		}
	}
	return false;
}

/*
 * Scrub one heap or TOAST page: prune it, then zero its free space
 * (pd_lower to pd_upper), where compaction and earlier prunes left old
 * tuples' bytes.  The cleanup lock is taken only if it is free at once:
 * a page someone has pinned is SCRUB_BUSY, for the caller to retry later.
 * With still_dying, also tell whether a version not yet dead to all stays
 * on the page (the sweep comes back for it).  The caller checked that blk
 * exists.
 */
ScrubStatus
recall_scrub_block(Relation rel, BlockNumber blk, BufferAccessStrategy strategy,
				   TransactionId oldest, GlobalVisState *vistest,
				   bool *still_dying, ErasureResult *res)
{
	Buffer		buf;
	Page		page;
	PageHeader	phdr;
	bool		changed;

	buf = ReadBufferExtended(rel, MAIN_FORKNUM, blk, RBM_NORMAL, strategy);
	res->pages_scanned++;
	if (!ConditionalLockBufferForCleanup(buf))
	{
		ReleaseBuffer(buf);
		return SCRUB_BUSY;
	}
	page = BufferGetPage(buf);
	if (still_dying)
		*still_dying = false;
	if (PageIsNew(page))
	{
		/* never initialized: extension zero-fills it */
		UnlockReleaseBuffer(buf);
		return SCRUB_DONE;
	}

	changed = prune_page(rel, buf, oldest, vistest);
	if (still_dying)
		*still_dying = page_has_dying_tuples(rel, buf, blk, oldest);

	/* decide before the critical section */
	phdr = (PageHeader) page;
	if (phdr->pd_upper > phdr->pd_lower && phdr->pd_upper <= BLCKSZ &&
		phdr->pd_lower >= SizeOfPageHeaderData)
	{
		char	   *start = (char *) page + phdr->pd_lower;
		Size		len = phdr->pd_upper - phdr->pd_lower;
		int64		nz = nonzero_bytes(start, len);

		if (nz > 0 && RelationNeedsWAL(rel))
		{
			/*
			 * A generic WAL record of the unchanged page: GenericXLogFinish
			 * zeroes the hole between pd_lower and pd_upper, and so does its
			 * replay, so the record carries no data (a full page image, its
			 * hole left out, only when this is the page's first change since
			 * a checkpoint, and pruning took that one already).
			 */
			GenericXLogState *state = GenericXLogStart(rel);

			(void) GenericXLogRegisterBuffer(state, buf, 0);
			(void) GenericXLogFinish(state);
		}
		else if (nz > 0)
		{
			/* not WAL-logged (unlogged table) */
			START_CRIT_SECTION();
			memset(start, 0, len);
			MarkBufferDirty(buf);
			END_CRIT_SECTION();
		}
		if (nz > 0)
		{
			res->bytes_zeroed += nz;
			changed = true;
		}
	}
	if (changed)
		res->pages_scrubbed++;
	UnlockReleaseBuffer(buf);
	return SCRUB_DONE;
}

/*
 * Open a heap or TOAST relation for scrubbing, under RowExclusiveLock
 * taken only if it is free now (*busy then, and NULL).  A relation dropped
 * meanwhile, or one that is not a heap any more, is skipped with a LOG
 * line (NULL, not busy).
 */
Relation
recall_open_heap_for_scrub(Oid relid, bool *busy)
{
	Relation	rel;

	*busy = false;
	if (!ConditionalLockRelationOid(relid, RowExclusiveLock))
	{
		*busy = true;
		return NULL;
	}
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
	{
		UnlockRelationOid(relid, RowExclusiveLock);
		ereport(LOG,
				(errmsg("pg_recall: skipping the erasure of relation %u: it no longer exists",
						relid)));
		return NULL;
	}
	if ((rel->rd_rel->relkind != RELKIND_RELATION &&
		 rel->rd_rel->relkind != RELKIND_TOASTVALUE &&
		 rel->rd_rel->relkind != RELKIND_MATVIEW) ||
		rel->rd_rel->relam != HEAP_TABLE_AM_OID ||
		RELATION_IS_OTHER_TEMP(rel))
	{
		ereport(LOG,
				(errmsg("pg_recall: skipping the erasure of relation \"%s\": it is not a heap table any more",
						RelationGetRelationName(rel))));
		relation_close(rel, RowExclusiveLock);
		return NULL;
	}
	return rel;
}

/* ---------------------------------------------------------------------
 * Clock 1: the purge cycle
 * ---------------------------------------------------------------------
 */

/* Strings of a name[] datum, as a List of char *. */
static List *
name_array_list(Datum arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(arr), NAMEOID, NAMEDATALEN, false,
					  TYPALIGN_CHAR, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, pstrdup(NameStr(*DatumGetName(elems[i]))));
	return result;
}

/* The 64-bit form of a recent 32-bit xid. */
static FullTransactionId
full_xid_of(TransactionId xid)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

/* (a_xid, a_seq) compared with (b_xid, b_seq). */
static int
position_cmp(FullTransactionId a_xid, int64 a_seq, FullTransactionId b_xid, int64 b_seq)
{
	if (FullTransactionIdPrecedes(a_xid, b_xid))
		return -1;
	if (FullTransactionIdPrecedes(b_xid, a_xid))
		return 1;
	return (a_seq > b_seq) - (a_seq < b_seq);
}

/* Run a read-only query as part of the cycle's bookkeeping. */
static void
spi_read(const char *sql, int nargs, Oid *argtypes, Datum *args, const char *what)
{
	int			ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 0);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading %s failed: %s", what, SPI_result_code_string(ret));
}

/*
 * The removal horizon of an enabled table's relations, or false when the
 * table is gone or locked away (ALTER TABLE) just now.
 */
static bool
table_horizon(Oid tbl, TransactionId *horizon)
{
	Relation	rel;

	if (!ConditionalLockRelationOid(tbl, AccessShareLock))
		return false;
	rel = try_relation_open(tbl, NoLock);
	if (rel == NULL)
	{
		UnlockRelationOid(tbl, AccessShareLock);
		return false;
	}
	*horizon = GetOldestNonRemovableTransactionId(rel);
	relation_close(rel, NoLock);
	return true;
}

/* Read the enabled tables, their positions and the registered copies. */
static void
read_tables(CycleState *st)
{
	PurgeCycle *cycle = st->cycle;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(cycle->only_tbl)};
	MemoryContext old;

	spi_read("SELECT t.tbl::pg_catalog.oid, t.content, p.xid, p.seq"
			 " FROM recall.tables t"
			 " LEFT JOIN recall.purge_state p ON p.tbl OPERATOR(pg_catalog.=) t.tbl"
			 " WHERE $1 OPERATOR(pg_catalog.=) 0::pg_catalog.oid"
			 "    OR t.tbl::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
			 " ORDER BY 1",
			 1, argtypes, args, "recall.tables");
	old = MemoryContextSwitchTo(st->cxt);
	st->ntables = 0;
	st->tables = palloc0(sizeof(CycleTable) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		CycleTable *t = &st->tables[st->ntables];
		bool		isnull;
		Datum		d;

		t->tbl = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		t->names = name_array_list(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		t->has_pos = !isnull;
		if (t->has_pos)
		{
			t->pos_xid = DatumGetFullTransactionId(d);
			t->pos_seq = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		}
		if (OidIsValid(cycle->owner) && !recall_is_owner(t->tbl, cycle->owner))
			continue;
		if (!table_horizon(t->tbl, &t->horizon))
		{
			ereport(DEBUG1,
					(errmsg("pg_recall: table %u is busy or gone, its purge waits", t->tbl)));
			t->skip = true;
		}
		st->ntables++;
	}
	MemoryContextSwitchTo(old);

	spi_read("SELECT c.copy::pg_catalog.oid, c.tbl::pg_catalog.oid, c.content, c.match"
			 " FROM recall.copies c",
			 0, NULL, NULL, "recall.copies");
	old = MemoryContextSwitchTo(st->cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		CopyContent *c = palloc0(sizeof(CopyContent));
		bool		isnull;
		Datum		d;

		c->copy = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		c->tbl = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		c->names = isnull ? NIL : name_array_list(d);
		c->match = name_array_list(SPI_getbinval(tup, desc, 4, &isnull));
		st->copies = lappend(st->copies, c);
	}
	MemoryContextSwitchTo(old);
}

/* The cycle's table of an enabled table's OID, or NULL. */
static CycleTable *
cycle_table(CycleState *st, Oid tbl)
{
	for (int i = 0; i < st->ntables; i++)
		if (st->tables[i].tbl == tbl)
			return &st->tables[i];
	return NULL;
}

/* Add a block reference. */
static void
add_ref(CycleState *st, int *cap, Oid relid, BlockNumber blk, int event, int queue)
{
	if (st->nrefs == *cap)
	{
		*cap *= 2;
		st->refs = repalloc(st->refs, sizeof(BlockRef) * *cap);
	}
	st->refs[st->nrefs].relid = relid;
	st->refs[st->nrefs].blk = blk;
	st->refs[st->nrefs].event = event;
	st->refs[st->nrefs].queue = queue;
	st->refs[st->nrefs].status = SCRUB_DONE;
	st->nrefs++;
}

/*
 * Add the {relation, block} pairs of an oid[] residue; false if it is not
 * such a list (then the caller falls back to a sweep).
 */
static bool
add_residue(CycleState *st, int *cap, Datum residue, int event, int queue,
			Oid queue_relid)
{
	ArrayType  *arr = DatumGetArrayTypeP(residue);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(arr) > 1)
		return false;
	deconstruct_array(arr, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			return false;
	if (OidIsValid(queue_relid))
	{
		/* a queue row: one relation, its blocks */
		for (int i = 0; i < n; i++)
			add_ref(st, cap, queue_relid, DatumGetObjectId(elems[i]), event, queue);
		return true;
	}
	if (n % 2 != 0)
		return false;
	for (int i = 0; i < n; i += 2)
		add_ref(st, cap, DatumGetObjectId(elems[i]), DatumGetObjectId(elems[i + 1]),
				event, queue);
	return true;
}

/*
 * Append the heap relations of a table to *out: the table or, when it is
 * partitioned, its leaf partitions, each followed by its TOAST relation.
 * Reads the catalogs only (no lock is taken: a relation dropped meanwhile
 * is skipped by whoever opens it).
 */
void
recall_heap_relations(Oid root, List **out)
{
	List	   *rels;
	ListCell   *lc;

	if (get_rel_relkind(root) == RELKIND_PARTITIONED_TABLE)
		rels = find_all_inheritors(root, NoLock, NULL);
	else
		rels = list_make1_oid(root);
	/* on a Citus node, a distributed table's rows are in its local shards */
	foreach(lc, recall_citus_local_shards(root))
	{
		Oid			shard = lfirst_oid(lc);

		if (get_rel_relkind(shard) == RELKIND_PARTITIONED_TABLE)
			rels = list_concat(rels, find_all_inheritors(shard, NoLock, NULL));
		else
			rels = lappend_oid(rels, shard);
	}
	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		Form_pg_class form;

		if (!HeapTupleIsValid(tup))
			continue;
		form = (Form_pg_class) GETSTRUCT(tup);
		if (form->relkind == RELKIND_RELATION && form->relam == HEAP_TABLE_AM_OID &&
			form->relpersistence != RELPERSISTENCE_TEMP)
		{
			*out = lappend_oid(*out, relid);
			if (OidIsValid(form->reltoastrelid))
				*out = lappend_oid(*out, form->reltoastrelid);
		}
		ReleaseSysCache(tup);
	}
}

/*
 * recall.purge(tbl) and a purge of the tables one role owns visit only
 * their tables' relations and those of their copies.
 */
static void
compute_allowed(CycleState *st)
{
	MemoryContext old = MemoryContextSwitchTo(st->cxt);
	ListCell   *lc;

	for (int i = 0; i < st->ntables; i++)
	{
		recall_heap_relations(st->tables[i].tbl, &st->allowed);
		foreach(lc, st->copies)
		{
			CopyContent *c = lfirst(lc);

			if (c->tbl == st->tables[i].tbl)
				recall_heap_relations(c->copy, &st->allowed);
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * Read the events to purge: those after each table's position whose
 * transaction is behind the table's horizon (finished, and invisible to
 * every snapshot), in (xid, seq) order, at most PURGE_BATCH_EVENTS; count
 * the later ones, which some snapshot may still see (deferred); and read
 * the queue rows behind the horizon.
 */
static void
read_events(CycleState *st)
{
	PurgeCycle *cycle = st->cycle;
	TransactionId horizon = InvalidTransactionId;
	FullTransactionId min_pos = InvalidFullTransactionId;
	Datum	   *oids;
	int			noids = 0;
	int			cap = 64;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext old;
	Oid			argtypes[4] = {XID8OID, XID8OID, INT8OID, OIDARRAYOID};
	Datum		args[4];
	bool		filter = OidIsValid(cycle->only_tbl) || OidIsValid(cycle->owner);

	old = MemoryContextSwitchTo(st->cxt);
	st->refs = palloc(sizeof(BlockRef) * cap);
	MemoryContextSwitchTo(old);

	oids = palloc(sizeof(Datum) * (st->ntables + 1));
	for (int i = 0; i < st->ntables; i++)
	{
		CycleTable *t = &st->tables[i];

		if (t->skip)
			continue;
		oids[noids++] = ObjectIdGetDatum(t->tbl);
		if (!TransactionIdIsValid(horizon) || TransactionIdPrecedes(t->horizon, horizon))
			horizon = t->horizon;
		if (!t->has_pos)
			min_pos = FullTransactionIdFromU64(0);
		else if (!FullTransactionIdIsValid(min_pos) ||
				 FullTransactionIdPrecedes(t->pos_xid, min_pos))
			min_pos = t->pos_xid;
	}
	if (!TransactionIdIsValid(horizon))
	{
		/* no table to look at; the queue still has a horizon */
		horizon = GetOldestNonRemovableTransactionId(NULL);
		min_pos = FullTransactionIdFromU64(0);
	}
	args[0] = FullTransactionIdGetDatum(min_pos);
	args[1] = FullTransactionIdGetDatum(full_xid_of(horizon));
	args[2] = Int64GetDatum(PURGE_BATCH_EVENTS);
	args[3] = PointerGetDatum(construct_array(oids, noids, OIDOID, sizeof(Oid), true,
											  TYPALIGN_INT));

	if (noids > 0)
	{
		spi_read("SELECT e.tbl::pg_catalog.oid, e.xid, e.seq, e.recalled_at, e.residue"
				 " FROM recall.events e"
				 " WHERE e.xid OPERATOR(pg_catalog.>=) $1 AND e.xid OPERATOR(pg_catalog.<) $2"
				 "   AND e.tbl::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($4)"
				 " ORDER BY e.xid, e.seq LIMIT $3",
				 4, argtypes, args, "recall.events");
		old = MemoryContextSwitchTo(st->cxt);
		st->events = palloc(sizeof(CycleEvent) * (SPI_processed + 1));
		if (SPI_processed == PURGE_BATCH_EVENTS)
		{
			HeapTuple	last = SPI_tuptable->vals[SPI_processed - 1];
			bool		isnull;

			st->cut = true;
			st->cut_xid = DatumGetFullTransactionId(SPI_getbinval(last, SPI_tuptable->tupdesc, 2, &isnull));
			st->cut_seq = DatumGetInt64(SPI_getbinval(last, SPI_tuptable->tupdesc, 3, &isnull));
		}
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			CycleTable *t = cycle_table(st, DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull)));
			CycleEvent *e = &st->events[st->nevents];
			Datum		residue;

			e->xid = DatumGetFullTransactionId(SPI_getbinval(tup, desc, 2, &isnull));
			e->seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
			e->at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
			e->failed = false;
			if (t == NULL || t->skip ||
				(t->has_pos && position_cmp(e->xid, e->seq, t->pos_xid, t->pos_seq) <= 0) ||
				!TransactionIdPrecedes(XidFromFullTransactionId(e->xid), t->horizon))
				continue;
			if (t->nevents == 0)
			{
				t->first = st->nevents;
				t->oldest = e->at;
				/* the worker lets a table's recalls gather (half purge_delay) */
				if (cycle->min_age_ms > 0 &&
					!TimestampDifferenceExceeds(e->at, now, (int) cycle->min_age_ms))
				{
					t->skip = true;
					continue;
				}
			}
			e->table = t - st->tables;
			t->nevents++;
			st->nevents++;
			residue = SPI_getbinval(tup, desc, 5, &isnull);
			if (isnull || !add_residue(st, &cap, residue, st->nevents - 1, -1, InvalidOid))
			{
				if (!isnull)
					ereport(LOG,
							(errmsg("pg_recall: the residue of recall event " INT64_FORMAT " is malformed; its table is swept instead",
									e->seq)));
				t->fallback = true;
			}
		}
		MemoryContextSwitchTo(old);

		/* the later ones, which an older snapshot may still see */
		spi_read("SELECT e.tbl::pg_catalog.oid, e.xid, e.seq FROM recall.events e"
				 " WHERE e.xid OPERATOR(pg_catalog.>=) $2"
				 "   AND e.tbl::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($4)",
				 4, argtypes, args, "recall.events");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			CycleTable *t = cycle_table(st, DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull)));
			FullTransactionId xid = DatumGetFullTransactionId(SPI_getbinval(tup, desc, 2, &isnull));
			int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));

			if (t == NULL || t->skip ||
				(t->has_pos && position_cmp(xid, seq, t->pos_xid, t->pos_seq) <= 0) ||
				TransactionIdPrecedes(XidFromFullTransactionId(xid), t->horizon))
				continue;
			t->ndeferred++;
		}
	}

	/* the queue of copy residue, behind the same horizon */
	if (filter)
		compute_allowed(st);
	spi_read("SELECT q.ctid, q.relid, q.blocks FROM recall.purge_queue q"
			 " WHERE q.xid OPERATOR(pg_catalog.<) $2",
			 4, argtypes, args, "recall.purge_queue");
	old = MemoryContextSwitchTo(st->cxt);
	st->queue = palloc0(sizeof(QueueRow) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		QueueRow   *q = &st->queue[st->nqueue];
		Datum		blocks;

		q->ctid = *((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull)));
		q->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		if (filter && !list_member_oid(st->allowed, q->relid))
			continue;
		st->nqueue++;
		blocks = SPI_getbinval(tup, desc, 3, &isnull);
		if (isnull || !add_residue(st, &cap, blocks, -1, st->nqueue - 1, q->relid))
			ereport(LOG,
					(errmsg("pg_recall: a recall.purge_queue row of relation %u is malformed; it is dropped",
							q->relid)));
	}
	MemoryContextSwitchTo(old);
}

/* Order block references by relation, then block. */
static int
ref_cmp(const void *a, const void *b)
{
	const BlockRef *x = a;
	const BlockRef *y = b;

	if (x->relid != y->relid)
		return x->relid < y->relid ? -1 : 1;
	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	return 0;
}

/* The names of a relation's columns, but those listed. */
static List *
columns_but(Oid relid, List *but)
{
	List	   *names = NIL;
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	int			natts;

	if (!HeapTupleIsValid(tup))
		return NIL;
	natts = ((Form_pg_class) GETSTRUCT(tup))->relnatts;
	ReleaseSysCache(tup);
	for (AttrNumber att = 1; att <= natts; att++)
	{
		char	   *name = get_attname(relid, att, true);
		ListCell   *lc;
		bool		listed = false;

		if (name == NULL)
			continue;			/* dropped */
		foreach(lc, but)
			listed = listed || strcmp(lfirst(lc), name) == 0;
		if (!listed)
			names = lappend(names, name);
	}
	return names;
}

/*
 * The enabled table (or, for a copy, the message table it copies) a heap
 * relation's residue belongs to, and its content columns there.  On a
 * Citus worker a shard (or a partition of one) belongs to its distributed
 * table, under the same column names.
 */
static Oid
content_of(CycleState *st, Oid relid, List **names)
{
	Oid			root = relid;
	List	   *ancestors;
	Oid			tbl = InvalidOid;
	ListCell   *lc;
	CycleTable *t;

	if (get_rel_relispartition(relid))
	{
		ancestors = get_partition_ancestors(relid);
		if (ancestors != NIL)
			root = llast_oid(ancestors);
	}
	*names = NIL;
	t = cycle_table(st, root);
	if (t == NULL)
	{
		/* on a Citus worker: a shard's rows are its distributed table's */
		Oid			logical = recall_citus_shard_table(root);

		if (OidIsValid(logical))
		{
			root = logical;
			t = cycle_table(st, root);
		}
	}
	if (t != NULL)
	{
		tbl = root;
		*names = list_copy(t->names);
	}
	foreach(lc, st->copies)
	{
		CopyContent *c = lfirst(lc);

		if (c->copy != root)
			continue;
		if (!OidIsValid(tbl))
			tbl = c->tbl;
		if (c->names != NIL)
			*names = list_concat(*names, c->names);
		else
			*names = list_concat(*names, columns_but(relid, c->match));
	}
	return tbl;
}

/*
 * Scrub the blocks of one relation: refs[from .. to), sorted by block, and
 * mark its content indexes dirty.
 */
static void
scrub_relation(CycleState *st, int from, int to)
{
	Oid			relid = st->refs[from].relid;
	bool		busy;
	Relation	rel;
	ErasureResult res;
	TransactionId oldest;
	GlobalVisState *vistest;
	BlockNumber nblocks;
	int64		nbusy = 0;

	rel = recall_open_heap_for_scrub(relid, &busy);
	if (rel == NULL)
	{
		for (int i = from; i < to; i++)
			st->refs[i].status = busy ? SCRUB_BUSY : SCRUB_GONE;
		if (busy)
		{
			ErasureResult d = {relid, "deferred", to - from, 0, 0, false};

			recall_erasure_emit(st->cycle->sink, &d);
		}
		return;
	}

	memset(&res, 0, sizeof(res));
	res.relid = relid;
	res.kind = rel->rd_rel->relkind == RELKIND_TOASTVALUE ? "toast" : "heap";
	oldest = GetOldestNonRemovableTransactionId(rel);
	vistest = GlobalVisTestFor(rel);
	nblocks = RelationGetNumberOfBlocks(rel);
	for (int i = from; i < to; i++)
	{
		BlockRef   *r = &st->refs[i];

		if (i > from && r->blk == st->refs[i - 1].blk)
		{
			r->status = st->refs[i - 1].status;
			continue;
		}
		CHECK_FOR_INTERRUPTS();
		if (r->blk >= nblocks)
			r->status = SCRUB_GONE;
		else
			r->status = recall_scrub_block(rel, r->blk, NULL, oldest, vistest, NULL, &res);
		if (r->status == SCRUB_BUSY)
			nbusy++;
	}
	recall_erasure_emit(st->cycle->sink, &res);
	if (nbusy > 0)
	{
		ErasureResult d = {relid, "deferred", nbusy, 0, 0, false};

		recall_erasure_emit(st->cycle->sink, &d);
	}

	/*
	 * A heap relation's indexes may hold the text too: mark them now, while
	 * the relation is locked, so that a REINDEX CONCURRENTLY of one of them
	 * finishing meanwhile (it waits for this lock before it drops the old
	 * index) sees the mark and carries it over to the new index.
	 */
	if (rel->rd_rel->relkind != RELKIND_TOASTVALUE)
	{
		List	   *names;
		Oid			tbl = content_of(st, relid, &names);
		TimestampTz since = GetCurrentTimestamp();
		List	   *indexes;
		ListCell   *lc;

		for (int i = from; i < to; i++)
			if (st->refs[i].event >= 0)
				since = Min(since, st->events[st->refs[i].event].at);
		indexes = OidIsValid(tbl) ? recall_content_indexes(rel, names) : NIL;
		recall_mark_indexes_dirty(tbl, indexes, since);
		foreach(lc, indexes)
		{
			ErasureResult ires = {lfirst_oid(lc), "index", 0, 0, 0, false};

			recall_erasure_emit(st->cycle->sink, &ires);
			st->cycle->marked_indexes++;
		}
	}
	relation_close(rel, NoLock);
}

/*
 * Where a table's position goes: up to its first event with a page not
 * done; else past everything behind its horizon (all of it was read,
 * unless the batch was full).
 */
static void
new_position(CycleState *st, CycleTable *t, FullTransactionId *xid, int64 *seq)
{
	for (int i = 0; i < t->nevents; i++)
	{
		if (!st->events[t->first + i].failed)
			continue;
		t->first_failed = i;
		if (i > 0)
		{
			*xid = st->events[t->first + i - 1].xid;
			*seq = st->events[t->first + i - 1].seq;
		}
		else if (t->has_pos)
		{
			*xid = t->pos_xid;
			*seq = t->pos_seq;
		}
		else
		{
			*xid = FullTransactionIdFromU64(0);
			*seq = 0;
		}
		return;
	}
	t->first_failed = t->nevents;
	*xid = full_xid_of(t->horizon);
	*seq = 0;
	if (st->cut && position_cmp(st->cut_xid, st->cut_seq, *xid, *seq) < 0)
	{
		*xid = st->cut_xid;
		*seq = st->cut_seq;
	}
	/* never backwards (a horizon can move back a little) */
	if (t->has_pos && position_cmp(*xid, *seq, t->pos_xid, t->pos_seq) < 0)
	{
		*xid = t->pos_xid;
		*seq = t->pos_seq;
	}
}

/*
 * Record the cycle: the tables' positions, the queue rows done; hand the
 * tables with events from before the upgrade to the sweep.
 */
static void
record_cycle(CycleState *st)
{
	RecallBecome become;
	Datum	   *done;
	int			ndone = 0;
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* events and queue rows with a page not done */
	for (int r = 0; r < st->nrefs; r++)
	{
		if (st->refs[r].status != SCRUB_BUSY)
			continue;
		if (st->refs[r].event >= 0)
			st->events[st->refs[r].event].failed = true;
		if (st->refs[r].queue >= 0)
			st->queue[st->refs[r].queue].failed = true;
	}

	for (int i = 0; i < st->ntables; i++)
	{
		CycleTable *t = &st->tables[i];
		FullTransactionId xid;
		int64		seq;
		Oid			argtypes[5] = {REGCLASSOID, XID8OID, INT8OID, TIMESTAMPTZOID, BOOLOID};
		Datum		args[5];
		char		nulls[5] = "     ";
		int			ret;

		if (t->skip)
			continue;
		new_position(st, t, &xid, &seq);
		if (t->has_pos && position_cmp(xid, seq, t->pos_xid, t->pos_seq) == 0)
			continue;

		/*
		 * A table without recalls this time moves up with the others (so
		 * that the next cycle's scan starts late), but only when this one
		 * read events at all: an idle database writes nothing.
		 */
		if (t->has_pos && t->nevents == 0 && st->nevents == 0)
			continue;
		args[0] = ObjectIdGetDatum(t->tbl);
		args[1] = FullTransactionIdGetDatum(xid);
		args[2] = Int64GetDatum(seq);
		args[3] = TimestampTzGetDatum(now);
		args[4] = BoolGetDatum(t->first_failed > 0);
		ret = SPI_execute_with_args("INSERT INTO recall.purge_state AS p (tbl, xid, seq, purged_at)"
									" VALUES ($1, $2, $3, CASE WHEN $5 THEN $4 END)"
									" ON CONFLICT (tbl) DO UPDATE SET xid = EXCLUDED.xid,"
									" seq = EXCLUDED.seq,"
									" purged_at = COALESCE(EXCLUDED.purged_at, p.purged_at)",
									5, argtypes, args, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "recording the purge failed: %s", SPI_result_code_string(ret));
	}

	/* queue rows whose pages are all done (or gone) */
	done = palloc(sizeof(Datum) * (st->nqueue + 1));
	for (int q = 0; q < st->nqueue; q++)
		if (!st->queue[q].failed)
			done[ndone++] = PointerGetDatum(&st->queue[q].ctid);
	if (ndone > 0)
	{
		Oid			argtypes[1] = {TIDARRAYOID};
		Datum		args[1];
		int			ret;

		args[0] = PointerGetDatum(construct_array(done, ndone, TIDOID, sizeof(ItemPointerData),
												  false, TYPALIGN_SHORT));
		ret = SPI_execute_with_args("DELETE FROM recall.purge_queue q"
									" WHERE q.ctid OPERATOR(pg_catalog.=) ANY ($1)",
									1, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "recording the purge failed: %s", SPI_result_code_string(ret));
	}
	SPI_finish();
	recall_unbecome(&become);

	/* events from before the upgrade: no residue, so sweep their tables */
	for (int i = 0; i < st->ntables; i++)
	{
		CycleTable *t = &st->tables[i];
		List	   *rels = NIL;
		List	   *indexes = NIL;

		if (t->skip || !t->fallback)
			continue;
		recall_heap_relations(t->tbl, &rels);
		foreach(lc, st->copies)
		{
			CopyContent *c = lfirst(lc);

			if (c->tbl == t->tbl)
				recall_heap_relations(c->copy, &rels);
		}
		recall_sweep_request(rels, t->tbl);
		st->cycle->sweep_requested = true;
		foreach(lc, rels)
		{
			Oid			relid = lfirst_oid(lc);
			List	   *names;
			Relation	rel;

			if (get_rel_relkind(relid) != RELKIND_RELATION ||
				!OidIsValid(content_of(st, relid, &names)))
				continue;
			if (!ConditionalLockRelationOid(relid, AccessShareLock))
				continue;		/* locked away: the sweep marks it later */
			rel = try_relation_open(relid, NoLock);
			if (rel == NULL)
			{
				UnlockRelationOid(relid, AccessShareLock);
				continue;
			}
			indexes = list_concat(indexes, recall_content_indexes(rel, names));
			relation_close(rel, NoLock);
		}
		if (indexes != NIL)
		{
			ListCell   *ic;

			recall_mark_indexes_dirty(t->tbl, indexes, t->oldest);
			st->cycle->marked_indexes += list_length(indexes);
			foreach(ic, indexes)
			{
				ErasureResult res = {lfirst_oid(ic), "index", 0, 0, 0, false};

				recall_erasure_emit(st->cycle->sink, &res);
			}
		}
	}
}

/* When the worker should come back: the oldest pending recall's due time. */
static TimestampTz
next_due(CycleState *st)
{
	TimestampTz due = 0;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < st->ntables; i++)
	{
		CycleTable *t = &st->tables[i];
		TimestampTz d = 0;

		if (t->ndeferred > 0 || t->first_failed < t->nevents)
			d = TimestampTzPlusMilliseconds(now, 1000);	/* a snapshot or a page */
		else if (t->skip && t->nevents == 0 && t->oldest != 0)
			d = TimestampTzPlusMilliseconds(t->oldest, st->cycle->min_age_ms);
		else if (t->skip)
			d = TimestampTzPlusMilliseconds(now, 1000);	/* busy */
		if (d != 0 && (due == 0 || d < due))
			due = d;
	}
	if (st->cut)
		due = now;
	for (int q = 0; q < st->nqueue; q++)
		if (st->queue[q].failed)
			due = (due == 0) ? TimestampTzPlusMilliseconds(now, 1000) : due;
	return due;
}

/* Step boundaries: a transaction of their own in a worker, none in SQL. */
static void
step_begin(CycleState *st, const char *activity)
{
	if (st->cycle->own_transactions)
		recall_step_begin(activity);
}

static void
step_end(CycleState *st)
{
	if (st->cycle->own_transactions)
		recall_step_end();
}

/*
 * One purge cycle over the enabled tables (or one), in steps: read,
 * scrub each relation, record.  Allocates in CurrentMemoryContext, which
 * must outlive the steps' transactions.
 */
void
recall_purge_cycle(PurgeCycle *cycle)
{
	CycleState	st;
	RecallBecome become;

	memset(&st, 0, sizeof(st));
	st.cycle = cycle;
	st.cxt = CurrentMemoryContext;
	cycle->next_due = 0;
	cycle->marked_indexes = 0;
	cycle->sweep_requested = false;

	step_begin(&st, "pg_recall: reading recalls to purge");
	if (cycle->own_transactions && !recall_extension_present())
	{
		step_end(&st);
		return;
	}
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	read_tables(&st);
	read_events(&st);
	SPI_finish();
	recall_unbecome(&become);
	step_end(&st);

	/* each relation in a transaction of its own */
	if (st.nrefs > 0)
		qsort(st.refs, st.nrefs, sizeof(BlockRef), ref_cmp);
	for (int from = 0; from < st.nrefs;)
	{
		int			to = from + 1;

		while (to < st.nrefs && st.refs[to].relid == st.refs[from].relid)
			to++;
		step_begin(&st, "pg_recall: purging recalled content");
		scrub_relation(&st, from, to);
		step_end(&st);
		from = to;
	}

	step_begin(&st, "pg_recall: recording the purge");
	record_cycle(&st);
	step_end(&st);

	/* deferred tables: one row each */
	for (int i = 0; i < st.ntables; i++)
	{
		if (st.tables[i].ndeferred > 0)
		{
			ErasureResult res = {st.tables[i].tbl, "deferred", 0, 0, 0, false};

			recall_erasure_emit(cycle->sink, &res);
		}
	}
	cycle->next_due = next_due(&st);
}

/*
 * recall.purge(tbl regclass DEFAULT NULL)
 *	 RETURNS TABLE (relation regclass, kind text, pages_scanned bigint,
 *					pages_scrubbed bigint, bytes_zeroed bigint, rebuilt boolean)
 *
 * Clock 1 now, in the caller's transaction.  REINDEX CONCURRENTLY cannot
 * run inside it: the content indexes are reported (kind 'index', rebuilt
 * false) and left to the rebuilder.
 */
Datum
recall_purge(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	ErasureSink sink;
	PurgeCycle	cycle;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("recovery is in progress"),
				 errhint("Recalled content can only be purged on the primary; its purge reaches standbys through WAL.")));

	if (OidIsValid(relid))
	{
		recall_check_owner(relid);
		if (recall_get_table_by_oid(relid, true) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is not enabled for recall", get_rel_name(relid)),
					 errhint("Call recall.enable() on the table first.")));
	}

	InitMaterializedSRF(fcinfo, 0);
	sink.store = rsinfo->setResult;
	sink.desc = rsinfo->setDesc;
	sink.nrows = 0;

	memset(&cycle, 0, sizeof(cycle));
	cycle.only_tbl = relid;
	cycle.owner = GetUserId();
	cycle.own_transactions = false;
	cycle.min_age_ms = 0;
	cycle.sink = &sink;
	recall_purge_cycle(&cycle);

	/*
	 * The rebuilder takes the indexes from here, the purger the sweep, once
	 * this transaction's marks are committed (this statement's snapshot does
	 * not see them: the rebuilder reads when they fall due).
	 */
	if (cycle.marked_indexes > 0 && recall_index_rebuild_interval_s >= 0)
		recall_request_at_commit(RECALL_WORKER_REBUILDER);
	if (cycle.sweep_requested)
		recall_request_at_commit(RECALL_WORKER_PURGER);
	return (Datum) 0;
}

/*
 * recall._clear_statistics(tbl regclass, col name): drop the statistics of
 * a content column (most common values are content).  Owner only.
 */
Datum
recall_clear_statistics(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Name		col = PG_GETARG_NAME(1);
	AttrNumber	attnum;

	recall_check_owner(relid);
	attnum = get_attnum(relid, NameStr(*col));
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						NameStr(*col), get_rel_name(relid))));
	RemoveStatistics(relid, attnum);
	PG_RETURN_VOID();
}
