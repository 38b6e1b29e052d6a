/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Erasure: recalled content's bytes removed from the relation files.
 *
 * Wiping writes a new tuple version; the old one, its TOAST chunks, its
 * index entries and the free space that pruning and index deletion leave
 * behind keep the text.  Once no snapshot can see the pre-recall versions
 * (their recall's xid is behind the relation's removal horizon), the purge
 *	1. zeroes the data of every heap and TOAST tuple that is dead to all,
 *	   and the free space (pd_lower to pd_upper) of every page;
 *	2. removes btree entries that point at dead tuples (as VACUUM's index
 *	   pass does) and zeroes the free space of every btree page;
 *	3. rebuilds indexes of other access methods (GIN keeps its keys);
 *	4. records how far it got in recall.purge_state.
 * Pages are changed under an exclusive buffer lock in a critical section,
 * after every decision is made, and WAL-logged as full page images, so
 * crash recovery and standbys get the scrubbed page.  Dead tuples keep
 * their headers: nobody reads a dead-to-all tuple's data, and VACUUM still
 * finds them to reclaim.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xloginsert.h"
#include "catalog/heap.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/xid8.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_purge);
PG_FUNCTION_INFO_V1(recall_clear_statistics);

/* What the purge did to one relation. */
typedef struct PurgeResult
{
	Oid			relid;
	const char *kind;			/* heap, toast, index, deferred */
	int64		pages_scanned;
	int64		pages_scrubbed;
	int64		bytes_zeroed;
	bool		rebuilt;
} PurgeResult;

static void
emit(PurgeSink *sink, PurgeResult *r)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	sink->nrows++;
	if (sink->store == NULL)
		return;
	values[0] = ObjectIdGetDatum(r->relid);
	values[1] = CStringGetTextDatum(r->kind);
	values[2] = Int64GetDatum(r->pages_scanned);
	values[3] = Int64GetDatum(r->pages_scrubbed);
	values[4] = Int64GetDatum(r->bytes_zeroed);
	values[5] = BoolGetDatum(r->rebuilt);
	tuplestore_putvalues(sink->store, sink->desc, values, nulls);
}

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
 * stay valid; pruning WAL-logs its own record, with the conflict horizon
 * that cancels standby queries still able to see those tuples).
 */
static void
prune_page(Relation rel, Buffer buf, TransactionId oldest, GlobalVisState *vistest)
{
	int			nnewlpdead;

#if PG_VERSION_NUM >= 150006 && PG_VERSION_NUM < 160000
	(void) heap_page_prune(rel, buf, oldest, vistest, InvalidTransactionId, 0,
						   &nnewlpdead, NULL);
#elif PG_VERSION_NUM >= 150000 && PG_VERSION_NUM < 160000
	(void) heap_page_prune(rel, buf, vistest, InvalidTransactionId, 0,
						   &nnewlpdead, NULL);
#else
	/* other majors: the opportunistic form, which prunes only full pages */
	(void) nnewlpdead;
	heap_page_prune_opt(rel, buf);
#endif
}

/*
 * Heap or TOAST: prune every page, then zero its free space (pd_lower to
 * pd_upper), where compaction left the old tuples' bytes.  The zeroing is
 * WAL-logged as a full page image.
 */
static void
scrub_heap(Relation rel, TransactionId oldest, PurgeResult *res)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	BufferAccessStrategy strategy = GetAccessStrategy(BAS_VACUUM);
	GlobalVisState *vistest = GlobalVisTestFor(rel);

	for (BlockNumber blk = 0; blk < nblocks; blk++)
	{
		Buffer		buf;
		Page		page;
		PageHeader	phdr;

		CHECK_FOR_INTERRUPTS();
		buf = ReadBufferExtended(rel, MAIN_FORKNUM, blk, RBM_NORMAL, strategy);
		LockBufferForCleanup(buf);
		page = BufferGetPage(buf);
		res->pages_scanned++;
		if (PageIsNew(page) || PageIsEmpty(page))
		{
			UnlockReleaseBuffer(buf);
			continue;
		}

		prune_page(rel, buf, oldest, vistest);

		/* decide before the critical section */
		phdr = (PageHeader) page;
		if (phdr->pd_upper > phdr->pd_lower && phdr->pd_upper <= BLCKSZ)
		{
			char	   *start = (char *) page + phdr->pd_lower;
			Size		len = phdr->pd_upper - phdr->pd_lower;
			int64		nz = nonzero_bytes(start, len);

			if (nz > 0)
			{
				START_CRIT_SECTION();
				memset(start, 0, len);
				MarkBufferDirty(buf);
				if (RelationNeedsWAL(rel))
					log_newpage_buffer(buf, true);
				END_CRIT_SECTION();
				res->pages_scrubbed++;
				res->bytes_zeroed += nz;
			}
		}
		UnlockReleaseBuffer(buf);
	}
	FreeAccessStrategy(strategy);
}

/* Does an index use one of the columns (as key, INCLUDE, expression or predicate)? */
static bool
index_uses_columns(Relation index, Bitmapset *cols)
{
	Bitmapset  *used = NULL;
	List	   *exprs;

	for (int i = 0; i < index->rd_index->indnatts; i++)
	{
		AttrNumber	att = index->rd_index->indkey.values[i];

		if (att > 0)
			used = bms_add_member(used, att - FirstLowInvalidHeapAttributeNumber);
	}
	exprs = RelationGetIndexExpressions(index);
	pull_varattnos((Node *) exprs, 1, &used);
	pull_varattnos((Node *) RelationGetIndexPredicate(index), 1, &used);
	return bms_overlap(used, cols);
}

/* Rebuild an index: the only way to drop keys that never leave it. */
static void
rebuild_index(Oid indexoid)
{
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute(psprintf("REINDEX INDEX %s",
							   quote_qualified_identifier(get_namespace_name(get_rel_namespace(indexoid)),
														  get_rel_name(indexoid))),
					  false, 0);
	if (ret != SPI_OK_UTILITY)
		elog(ERROR, "REINDEX failed: %s", SPI_result_code_string(ret));
	SPI_finish();
}

/*
 * Purge one heap relation (a table or a leaf partition): its heap, its
 * TOAST, and the indexes that hold content columns.  Indexes keep their
 * keys in places no page scrub reaches (btree high keys and parents, GIN
 * entries), so those are rebuilt; the others hold no content.
 */
static void
purge_relation(Oid relid, List *content, PurgeSink *sink)
{
	Relation	rel;
	PurgeResult res;
	List	   *indexes;
	ListCell   *lc;
	Oid			toastoid;
	Bitmapset  *cols = NULL;

	rel = table_open(relid, ShareUpdateExclusiveLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
	{
		table_close(rel, ShareUpdateExclusiveLock);
		return;
	}

	memset(&res, 0, sizeof(res));
	res.relid = relid;
	res.kind = "heap";
	scrub_heap(rel, GetOldestNonRemovableTransactionId(rel), &res);
	emit(sink, &res);

	toastoid = rel->rd_rel->reltoastrelid;
	if (OidIsValid(toastoid))
	{
		Relation	toast = table_open(toastoid, ShareUpdateExclusiveLock);

		memset(&res, 0, sizeof(res));
		res.relid = toastoid;
		res.kind = "toast";
		scrub_heap(toast, GetOldestNonRemovableTransactionId(toast), &res);
		emit(sink, &res);
		table_close(toast, ShareUpdateExclusiveLock);
	}

	foreach(lc, content)
	{
		int			att = SPI_fnumber(RelationGetDescr(rel), (char *) lfirst(lc));

		if (att > 0)
			cols = bms_add_member(cols, att - FirstLowInvalidHeapAttributeNumber);
	}
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		Relation	index = index_open(indexoid, AccessShareLock);
		bool		holds_content = index_uses_columns(index, cols);

		index_close(index, AccessShareLock);
		if (!holds_content)
			continue;
		rebuild_index(indexoid);
		memset(&res, 0, sizeof(res));
		res.relid = indexoid;
		res.kind = "index";
		res.rebuilt = true;
		emit(sink, &res);
	}
	table_close(rel, ShareUpdateExclusiveLock);
}

/* A relation and, for a partitioned one, its leaf partitions. */
static void
purge_tree(Oid relid, List *content, PurgeSink *sink)
{
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
	{
		ListCell   *lc;

		foreach(lc, find_all_inheritors(relid, AccessShareLock, NULL))
		{
			if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
				purge_relation(lfirst_oid(lc), content, sink);
		}
	}
	else
		purge_relation(relid, content, sink);
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

/*
 * Purge every enabled table (or only relid) with recalls not yet purged
 * whose old versions no snapshot can see, and whose oldest such recall is
 * at least min_age_ms old.  Tables whose pending recalls are all still
 * visible to some snapshot get a 'deferred' row.  Runs inside the
 * caller's transaction.
 */
void
recall_purge_tables(Oid only_relid, bool owned_only, int64 min_age_ms, PurgeSink *sink)
{
	int			ret;
	List	   *tables = NIL;
	ListCell   *lc;
	MemoryContext caller = CurrentMemoryContext;
	RecallBecome become;

	/*
	 * The caller's ownership was checked (or is checked below, per table);
	 * the logs, the registry and REINDEX are the extension owner's business.
	 * (REINDEX evaluates index expressions as the table's owner.)
	 */
	recall_become(recall_extension_owner(), 0, false, &become);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtypes[1] = {OIDOID};
		Datum		args[1] = {ObjectIdGetDatum(only_relid)};

		ret = SPI_execute_with_args("SELECT t.tbl::pg_catalog.oid FROM recall.tables t"
									" WHERE $1 OPERATOR(pg_catalog.=) 0"
									"    OR t.tbl::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
									" ORDER BY 1",
									1, argtypes, args, NULL, true, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.tables failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(caller);

		tables = lappend_oid(tables, relid);
		MemoryContextSwitchTo(old);
	}

	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		Relation	rel;
		TransactionId horizon;
		Datum		args[3];
		Oid			argtypes[3] = {REGCLASSOID, XID8OID, INT8OID};
		bool		isnull;
		bool		target_null;
		Datum		target;
		bool		deferred;
		List	   *copies = NIL;
		List	   *copy_content = NIL;
		List	   *content = NIL;

		if (owned_only && !recall_is_owner(relid, become.save_userid))
			continue;

		/* versions older than the horizon are dead to every snapshot */
		rel = relation_open(relid, AccessShareLock);
		horizon = GetOldestNonRemovableTransactionId(rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? NULL : rel);
		relation_close(rel, AccessShareLock);

		args[0] = ObjectIdGetDatum(relid);
		args[1] = FullTransactionIdGetDatum(full_xid_of(horizon));
		args[2] = Int64GetDatum(min_age_ms);
		ret = SPI_execute_with_args("SELECT max(e.xid) FILTER (WHERE e.xid OPERATOR(pg_catalog.<) $2"
									"   AND e.recalled_at OPERATOR(pg_catalog.<=) (pg_catalog.now()"
									"       OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $3 / 1000.0))),"
									" COALESCE(pg_catalog.bool_or(e.xid OPERATOR(pg_catalog.>=) $2), false)"
									" FROM recall.events e"
									" LEFT JOIN recall.purge_state p ON p.tbl OPERATOR(pg_catalog.=) e.tbl"
									" WHERE e.tbl OPERATOR(pg_catalog.=) $1"
									"   AND (p.xid IS NULL OR e.xid OPERATOR(pg_catalog.>) p.xid)",
									3, argtypes, args, NULL, true, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));
		target = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &target_null);
		deferred = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (target_null)
		{
			if (deferred)
			{
				PurgeResult res = {relid, "deferred", 0, 0, 0, false};

				emit(sink, &res);
			}
			continue;
		}

		/*
		 * The table and its copy tables held the text: their content columns
		 * (those of the table itself when it is its own copy, too).
		 */
		ret = SPI_execute_with_args("SELECT c.copy::pg_catalog.oid, u.col::pg_catalog.text,"
									" c.copy OPERATOR(pg_catalog.=) c.tbl"
									" FROM recall.copies c"
									" LEFT JOIN LATERAL pg_catalog.unnest(c.content) AS u(col) ON true"
									" WHERE c.tbl OPERATOR(pg_catalog.=) $1"
									" UNION ALL"
									" SELECT t.tbl::pg_catalog.oid, u.col::pg_catalog.text, true"
									" FROM recall.tables t, pg_catalog.unnest(t.content) AS u(col)"
									" WHERE t.tbl OPERATOR(pg_catalog.=) $1",
									1, argtypes, args, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading recall.copies failed: %s", SPI_result_code_string(ret));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			Oid			copy = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
			char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
			bool		self = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
			MemoryContext old = MemoryContextSwitchTo(caller);
			int			idx;

			if (self)
			{
				if (name)
					content = lappend(content, pstrdup(name));
			}
			else
			{
				for (idx = 0; idx < list_length(copies); idx++)
					if (list_nth_oid(copies, idx) == copy)
						break;
				if (idx == list_length(copies))
				{
					copies = lappend_oid(copies, copy);
					copy_content = lappend(copy_content, NIL);
				}
				if (name)
					list_nth_cell(copy_content, idx)->ptr_value =
						lappend((List *) list_nth(copy_content, idx), pstrdup(name));
			}
			MemoryContextSwitchTo(old);
		}

		purge_tree(relid, content, sink);
		for (int i = 0; i < list_length(copies); i++)
			purge_tree(list_nth_oid(copies, i), (List *) list_nth(copy_content, i), sink);

		{
			Oid			ptypes[2] = {REGCLASSOID, XID8OID};
			Datum		pargs[2] = {ObjectIdGetDatum(relid), target};

			ret = SPI_execute_with_args("INSERT INTO recall.purge_state (tbl, xid, purged_at)"
										" VALUES ($1, $2, pg_catalog.now())"
										" ON CONFLICT (tbl) DO UPDATE SET xid = EXCLUDED.xid,"
										" purged_at = EXCLUDED.purged_at",
										2, ptypes, pargs, NULL, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "recording the purge failed: %s", SPI_result_code_string(ret));
		}
	}
	SPI_finish();
	recall_unbecome(&become);
}

/*
 * recall.purge(tbl regclass DEFAULT NULL)
 *	 RETURNS TABLE (relation regclass, kind text, pages_scanned bigint,
 *					pages_scrubbed bigint, bytes_zeroed bigint, rebuilt boolean)
 */
Datum
recall_purge(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	PurgeSink	sink;

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
	recall_purge_tables(relid, true, 0, &sink);
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
