/*-------------------------------------------------------------------------
 *
 * rebuild.c
 *	  Erasure, clock 2: indexes that hold content are rebuilt with REINDEX
 *	  CONCURRENTLY; an interrupted rebuild's leftovers are dropped.
 *
 * Index entries keep a recalled text where no page scrub can reach it
 * (btree high keys and parent pivots, GIN entry keys and pending lists), so
 * an index that holds a content column (as a key, an INCLUDE column, in an
 * expression or in its predicate) is rebuilt once a recall on its relation
 * has been purged: the purge marks it dirty in recall.index_state, and the
 * rebuilder worker rebuilds it within recall.index_rebuild_interval.
 *
 * Which columns an index uses is read from pg_index's raw indkey, indexprs
 * and indpred (stringToNode and pull_varattnos), never through
 * RelationGetIndexExpressions() or RelationGetIndexPredicate(): those run
 * eval_const_expressions(), i.e. the table owner's functions, as whoever
 * asks.
 *
 * The rebuild is REINDEX INDEX CONCURRENTLY, run from the worker's own
 * top-level transactions through ProcessUtility, in a portal as a client's
 * statement runs (a function or SPI is not top level, and
 * PreventInTransactionBlock refuses them).  It runs as the
 * table's owner (SetCurrentRoleId, as SET ROLE would: the command commits
 * and starts transactions of its own, across which a security context
 * cannot be held), so that whatever of the owner's code it evaluates
 * (index expressions folded by BuildIndexInfo, the build itself) runs with
 * the owner's rights, never the worker's superuser's; search_path is
 * pinned for the worker's whole session.  REINDEX CONCURRENTLY takes
 * ShareUpdateExclusiveLock on the table: writes go on.  The rebuilt index
 * keeps its name (and gets a new OID).  A rebuild that fails or is
 * cancelled leaves an invalid "<index>_ccnew" (or "_ccold") behind; it is
 * dropped with DROP INDEX CONCURRENTLY, by the rebuilder at once and by
 * every purger cycle, when no REINDEX runs on that table (its
 * ShareUpdateExclusiveLock is free).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/sysattr.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "tcop/dest.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "erasure.h"
#include "pg_recall.h"

/* Longest wait before a failed rebuild is tried again. */
#define REBUILD_MAX_BACKOFF_MS (3600 * 1000)

/* ---------------------------------------------------------------------
 * Which indexes hold content
 * ---------------------------------------------------------------------
 */

/*
 * The attribute numbers of the named columns of a relation, as members
 * offset by FirstLowInvalidHeapAttributeNumber (pull_varattnos' form).
 * The whole-row reference (0) counts: it carries every column.
 */
Bitmapset *
recall_content_attnums(Oid relid, List *names)
{
	Bitmapset  *cols = NULL;
	ListCell   *lc;

	foreach(lc, names)
	{
		AttrNumber	att = get_attnum(relid, (const char *) lfirst(lc));

		if (att > 0)
			cols = bms_add_member(cols, att - FirstLowInvalidHeapAttributeNumber);
	}
	if (cols != NULL)
		cols = bms_add_member(cols, 0 - FirstLowInvalidHeapAttributeNumber);
	return cols;
}

/*
 * Does a valid index use one of the columns: as a key or INCLUDE column,
 * in an expression or in its predicate?  Reads pg_index's raw trees; no
 * expression is simplified or evaluated.  Indexes of exclusion constraints
 * are left out: REINDEX CONCURRENTLY cannot rebuild them.
 */
bool
recall_index_holds_columns(Oid indexoid, Bitmapset *cols)
{
	HeapTuple	tup;
	Form_pg_index index;
	Bitmapset  *used = NULL;
	Datum		d;
	bool		isnull;
	bool		result;

	if (cols == NULL)
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tup))
		return false;
	index = (Form_pg_index) GETSTRUCT(tup);
	if (!index->indisvalid || !index->indislive || index->indisexclusion)
	{
		ReleaseSysCache(tup);
		return false;
	}
	for (int i = 0; i < index->indnatts; i++)
	{
		AttrNumber	att = index->indkey.values[i];

		if (att != 0)
			used = bms_add_member(used, att - FirstLowInvalidHeapAttributeNumber);
	}
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indexprs, &isnull);
	if (!isnull)
		pull_varattnos(stringToNode(TextDatumGetCString(d)), 1, &used);
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indpred, &isnull);
	if (!isnull)
		pull_varattnos(stringToNode(TextDatumGetCString(d)), 1, &used);
	ReleaseSysCache(tup);

	result = bms_overlap(used, cols);
	bms_free(used);
	return result;
}

/* The indexes of an open heap relation that hold one of the named columns. */
List *
recall_content_indexes(Relation rel, List *names)
{
	Bitmapset  *cols = recall_content_attnums(RelationGetRelid(rel), names);
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, RelationGetIndexList(rel))
	{
		if (recall_index_holds_columns(lfirst_oid(lc), cols))
			result = lappend_oid(result, lfirst_oid(lc));
	}
	return result;
}

/*
 * Mark indexes dirty since a recall (the oldest recall they were marked
 * for stays), in the caller's transaction.  dirtied_at is now: a rebuild
 * that starts after it covers every recall purged before it.
 */
void
recall_mark_indexes_dirty(Oid tbl, List *indexes, TimestampTz since)
{
	RecallBecome become;
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;
	Oid			argtypes[4] = {REGCLASSOID, TIMESTAMPTZOID, TIMESTAMPTZOID, OIDARRAYOID};
	Datum		args[4];
	int			ret;

	if (indexes == NIL)
		return;
	elems = palloc(sizeof(Datum) * list_length(indexes));
	foreach(lc, indexes)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	args[0] = ObjectIdGetDatum(tbl);
	args[1] = TimestampTzGetDatum(since);
	args[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	args[3] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("INSERT INTO recall.index_state AS s (indexrelid, tbl, dirty_since, dirtied_at)"
								" SELECT u.i, $1, $2, $3 FROM pg_catalog.unnest($4) AS u(i)"
								" ON CONFLICT (indexrelid) DO UPDATE SET"
								" dirty_since = COALESCE(s.dirty_since, EXCLUDED.dirty_since),"
								" dirtied_at = EXCLUDED.dirtied_at",
								4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "marking indexes for a rebuild failed: %s", SPI_result_code_string(ret));
	SPI_finish();
	recall_unbecome(&become);
}

/* ---------------------------------------------------------------------
 * When
 * ---------------------------------------------------------------------
 */

/*
 * When a dirty index is due: half the interval after its oldest purged
 * recall (so that it is rebuilt within the interval when the rebuild takes
 * less than the other half), and not before a failed attempt's back-off.
 */
static TimestampTz
rebuild_due(TimestampTz dirty_since, bool retry_null, TimestampTz retry_at)
{
	TimestampTz due = TimestampTzPlusMilliseconds(dirty_since,
												  (int64) recall_index_rebuild_interval_s * 500);

	if (!retry_null && retry_at > due)
		due = retry_at;
	return due;
}

/* One dirty index, as read from recall.index_state. */
typedef struct DirtyIndex
{
	Oid			indexrelid;
	TimestampTz due;
	int			failures;
} DirtyIndex;

/* The dirty indexes and their due times; in the caller's transaction. */
static List *
dirty_indexes(void)
{
	RecallBecome become;
	List	   *result = NIL;
	MemoryContext caller = CurrentMemoryContext;
	int			ret;

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT s.indexrelid, s.dirty_since, s.retry_at, s.failures"
					  " FROM recall.index_state s WHERE s.dirty_since IS NOT NULL"
					  " ORDER BY s.dirty_since",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.index_state failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		retry_null;
		Datum		retry;
		MemoryContext old = MemoryContextSwitchTo(caller);
		DirtyIndex *d = palloc(sizeof(DirtyIndex));

		d->indexrelid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		retry = SPI_getbinval(tup, desc, 3, &retry_null);
		d->due = rebuild_due(DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull)),
							 retry_null, retry_null ? 0 : DatumGetTimestampTz(retry));
		d->failures = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		result = lappend(result, d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	recall_unbecome(&become);
	return result;
}

/*
 * The earliest due time of a rebuild (0: none, or rebuilds are off); in
 * the caller's transaction.
 */
TimestampTz
recall_rebuild_next_due(void)
{
	TimestampTz due = 0;
	ListCell   *lc;

	if (recall_index_rebuild_interval_s < 0)
		return 0;
	foreach(lc, dirty_indexes())
	{
		DirtyIndex *d = lfirst(lc);

		if (due == 0 || d->due < due)
			due = d->due;
	}
	return due;
}

/* ---------------------------------------------------------------------
 * Running a utility command at top level
 * ---------------------------------------------------------------------
 */

/*
 * Run a utility statement that refuses transaction blocks (REINDEX
 * CONCURRENTLY, DROP INDEX CONCURRENTLY) from a worker, outside any
 * transaction: at top level, as the given role, in transactions of its
 * own.  It runs in a portal, as exec_simple_query() runs it: the portal
 * stays active across the command's own commits, takes the snapshot the
 * command needs, and gives one to the SQL an event trigger runs (the
 * extension's sql_drop trigger fires on DROP INDEX).  Returns NULL, or the
 * error it failed with (its transaction aborted).
 */
char *
recall_run_utility(Node *stmt, const char *text, Oid as_role, bool as_superuser)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pg_recall utility",
											  ALLOCSET_DEFAULT_SIZES);
	bool		as_other = OidIsValid(as_role) && as_role != GetUserId();
	char	   *volatile failure = NULL;

	Assert(!IsTransactionState());
	PG_TRY();
	{
		PlannedStmt *pstmt;
		Portal		portal;
		QueryCompletion qc;
		char	   *source;

		if (as_other)
			SetCurrentRoleId(as_role, as_superuser);
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, text);

		/* the statement outlives the command's transactions */
		MemoryContextSwitchTo(cxt);
		source = pstrdup(text);
		pstmt = makeNode(PlannedStmt);
		pstmt->commandType = CMD_UTILITY;
		pstmt->canSetTag = true;
		pstmt->utilityStmt = copyObject(stmt);
		pstmt->stmt_location = -1;
		pstmt->stmt_len = 0;

		portal = CreatePortal("", true, true);
		portal->visible = false;
		PortalDefineQuery(portal, NULL, source, CreateCommandTag(pstmt->utilityStmt),
						  list_make1(pstmt), NULL);
		PortalStart(portal, NULL, 0, InvalidSnapshot);
		(void) PortalRun(portal, FETCH_ALL, true, true, None_Receiver, None_Receiver, &qc);
		PortalDrop(portal, false);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();
		failure = edata->message ? edata->message : pstrdup("unknown error");
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
	if (as_other)
		SetCurrentRoleId(InvalidOid, false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return failure;
}

/* Who may run a command on an index: its table's owner, and whether a superuser. */
static Oid
index_table_owner(Oid indexoid, Oid *heapoid, bool *is_super)
{
	HeapTuple	tup;
	Oid			owner;

	*heapoid = IndexGetRelation(indexoid, true);
	if (!OidIsValid(*heapoid))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(*heapoid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	*is_super = superuser_arg(owner);
	return owner;
}

/* ---------------------------------------------------------------------
 * Leftovers of interrupted rebuilds
 * ---------------------------------------------------------------------
 */

/* One invalid index to drop. */
typedef struct Leftover
{
	char	   *nspname;
	char	   *relname;
	Oid			owner;
	bool		owner_super;
} Leftover;

/*
 * The invalid "_ccnew"/"_ccold" indexes of the enabled tables and their
 * copies (or of one table) whose table no REINDEX holds now; in the
 * caller's transaction, the result in keep.
 */
static List *
find_leftovers(Oid only_tbl, MemoryContext keep)
{
	RecallBecome become;
	List	   *rels = NIL;
	List	   *result = NIL;
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		args[1];
	int			ret;

	if (OidIsValid(only_tbl))
		recall_heap_relations(only_tbl, &rels);
	else
		rels = recall_enabled_relations(NULL);
	if (rels == NIL)
		return NIL;
	elems = palloc(sizeof(Datum) * list_length(rels));
	foreach(lc, rels)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	args[0] = PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT i.indrelid, n.nspname, c.relname"
								" FROM pg_catalog.pg_index i"
								" JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid"
								" JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
								" WHERE NOT i.indisvalid"
								"   AND i.indrelid OPERATOR(pg_catalog.=) ANY ($1)"
								"   AND c.relname OPERATOR(pg_catalog.~) '_cc(new|old)[0-9]*$'",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading pg_index failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			heapoid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		MemoryContext old;
		Leftover   *l;
		HeapTuple	ctup;

		/* a REINDEX or CREATE INDEX CONCURRENTLY holds this for its whole run */
		if (!ConditionalLockRelationOid(heapoid, ShareUpdateExclusiveLock))
			continue;
		UnlockRelationOid(heapoid, ShareUpdateExclusiveLock);
		ctup = SearchSysCache1(RELOID, ObjectIdGetDatum(heapoid));
		if (!HeapTupleIsValid(ctup))
			continue;
		old = MemoryContextSwitchTo(keep);
		l = palloc(sizeof(Leftover));
		l->nspname = SPI_getvalue(tup, desc, 2);
		l->relname = SPI_getvalue(tup, desc, 3);
		l->owner = ((Form_pg_class) GETSTRUCT(ctup))->relowner;
		l->owner_super = superuser_arg(l->owner);
		result = lappend(result, l);
		MemoryContextSwitchTo(old);
		ReleaseSysCache(ctup);
	}
	SPI_finish();
	recall_unbecome(&become);
	return result;
}

/*
 * Drop the leftovers of interrupted rebuilds with DROP INDEX CONCURRENTLY
 * (a worker, outside a transaction).  Returns how many were dropped.
 */
int
recall_drop_leftover_indexes(Oid only_tbl)
{
	List	   *leftovers;
	ListCell   *lc;
	int			dropped = 0;
	MemoryContext keep = CurrentMemoryContext;

	recall_step_begin("pg_recall: looking for interrupted index rebuilds");
	if (!recall_extension_present())
	{
		recall_step_end();
		return 0;
	}
	leftovers = find_leftovers(only_tbl, keep);
	recall_step_end();

	foreach(lc, leftovers)
	{
		Leftover   *l = lfirst(lc);
		DropStmt   *drop = makeNode(DropStmt);
		char	   *text;
		char	   *failure;

		drop->objects = list_make1(list_make2(makeString(l->nspname), makeString(l->relname)));
		drop->removeType = OBJECT_INDEX;
		drop->behavior = DROP_RESTRICT;
		drop->missing_ok = true;
		drop->concurrent = true;
		text = psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s",
						quote_qualified_identifier(l->nspname, l->relname));
		failure = recall_run_utility((Node *) drop, text, l->owner, l->owner_super);
		if (failure)
			ereport(LOG,
					(errmsg("pg_recall: could not drop index \"%s\" left by an interrupted rebuild: %s",
							l->relname, failure)));
		else
		{
			ereport(LOG,
					(errmsg("pg_recall: dropped index \"%s\", left invalid by an interrupted rebuild",
							l->relname)));
			dropped++;
		}
	}
	return dropped;
}

/* ---------------------------------------------------------------------
 * The rebuild
 * ---------------------------------------------------------------------
 */

/* What the rebuilder chose, read in its transaction. */
typedef struct RebuildTarget
{
	Oid			indexoid;
	Oid			heapoid;
	Oid			nspoid;
	char	   *nspname;
	char	   *relname;
	Oid			owner;
	bool		owner_super;
	int			failures;
} RebuildTarget;

/* Forget an index that is gone. */
static void
forget_index(Oid indexoid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(indexoid)};

	if (SPI_execute_with_args("DELETE FROM recall.index_state s"
							  " WHERE s.indexrelid OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "updating recall.index_state failed");
}

/*
 * Choose the dirty index due first (its names allocated in keep); false
 * when none is due now.  An index that no longer exists is forgotten (and
 * chosen is left unset).
 */
static bool
choose_index(RebuildTarget *target, bool *chosen, MemoryContext keep)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;
	RecallBecome become;

	*chosen = false;
	foreach(lc, dirty_indexes())
	{
		DirtyIndex *d = lfirst(lc);
		HeapTuple	tup;

		if (d->due > now)
			continue;
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(d->indexrelid));
		if (!HeapTupleIsValid(tup) ||
			((Form_pg_class) GETSTRUCT(tup))->relkind != RELKIND_INDEX)
		{
			if (HeapTupleIsValid(tup))
				ReleaseSysCache(tup);
			recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			forget_index(d->indexrelid);
			SPI_finish();
			recall_unbecome(&become);
			return true;
		}
		target->indexoid = d->indexrelid;
		target->failures = d->failures;
		target->relname = MemoryContextStrdup(keep, NameStr(((Form_pg_class) GETSTRUCT(tup))->relname));
		target->nspoid = ((Form_pg_class) GETSTRUCT(tup))->relnamespace;
		ReleaseSysCache(tup);
		target->nspname = get_namespace_name(target->nspoid);
		if (target->nspname)
			target->nspname = MemoryContextStrdup(keep, target->nspname);
		target->owner = index_table_owner(d->indexrelid, &target->heapoid, &target->owner_super);
		if (!OidIsValid(target->owner) || target->nspname == NULL)
			continue;
		*chosen = true;
		return true;
	}
	return false;
}

/* Record a rebuild that started at start: the index has a new OID now. */
static void
record_rebuild(RebuildTarget *target, TimestampTz start)
{
	RecallBecome become;
	Oid			newoid = get_relname_relid(target->relname, target->nspoid);
	Oid			argtypes[3] = {OIDOID, OIDOID, TIMESTAMPTZOID};
	Datum		args[3];
	int			ret;

	if (!OidIsValid(newoid))
		newoid = target->indexoid;
	args[0] = ObjectIdGetDatum(target->indexoid);
	args[1] = ObjectIdGetDatum(newoid);
	args[2] = TimestampTzGetDatum(start);
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * A recall purged after the rebuild started (dirtied_at >= start) may
	 * not be covered by the rebuild's snapshot: keep the index dirty.
	 */
	ret = SPI_execute_with_args("WITH old AS (DELETE FROM recall.index_state s"
								"   WHERE s.indexrelid OPERATOR(pg_catalog.=) $1"
								"   RETURNING s.tbl, s.dirty_since, s.dirtied_at)"
								" INSERT INTO recall.index_state AS s"
								"   (indexrelid, tbl, dirty_since, dirtied_at, last_rebuild)"
								" SELECT $2, o.tbl,"
								"   CASE WHEN o.dirtied_at OPERATOR(pg_catalog.>=) $3 THEN o.dirty_since END,"
								"   CASE WHEN o.dirtied_at OPERATOR(pg_catalog.>=) $3 THEN o.dirtied_at END,"
								"   $3 FROM old o"
								" ON CONFLICT (indexrelid) DO UPDATE SET"
								"   last_rebuild = EXCLUDED.last_rebuild,"
								"   dirty_since = LEAST(s.dirty_since, EXCLUDED.dirty_since),"
								"   dirtied_at = GREATEST(s.dirtied_at, EXCLUDED.dirtied_at),"
								"   failures = 0, last_error = NULL, retry_at = NULL",
								3, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "recording an index rebuild failed: %s", SPI_result_code_string(ret));
	/* and forget the indexes dropped since (by hand, with their table) */
	ret = SPI_execute("DELETE FROM recall.index_state s WHERE NOT EXISTS"
					  " (SELECT FROM pg_catalog.pg_class c"
					  "  WHERE c.oid OPERATOR(pg_catalog.=) s.indexrelid)",
					  false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "updating recall.index_state failed: %s", SPI_result_code_string(ret));
	SPI_finish();
	recall_unbecome(&become);
}

/* Record a failed rebuild and when to try again. */
static void
record_failure(RebuildTarget *target, const char *failure)
{
	RecallBecome become;
	int64		backoff = Min((int64) 5000 << Min(target->failures, 20), REBUILD_MAX_BACKOFF_MS);
	Oid			argtypes[3] = {OIDOID, TEXTOID, TIMESTAMPTZOID};
	Datum		args[3];
	int			ret;

	args[0] = ObjectIdGetDatum(target->indexoid);
	args[1] = CStringGetTextDatum(failure);
	args[2] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff));
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("UPDATE recall.index_state s SET"
								" failures = s.failures OPERATOR(pg_catalog.+) 1,"
								" last_error = $2, retry_at = $3"
								" WHERE s.indexrelid OPERATOR(pg_catalog.=) $1",
								3, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "recording a failed index rebuild failed: %s", SPI_result_code_string(ret));
	SPI_finish();
	recall_unbecome(&become);
}

/*
 * Rebuild the dirty index due first, if one is due (a worker, outside a
 * transaction).  Returns whether there was something to do, so that the
 * caller asks again.
 */
bool
recall_rebuild_one(void)
{
	RebuildTarget target;
	bool		found;
	bool		chosen;
	ReindexStmt *stmt;
	char	   *text;
	char	   *failure;
	TimestampTz start;
	MemoryContext keep = CurrentMemoryContext;

	if (recall_index_rebuild_interval_s < 0)
		return false;
	memset(&target, 0, sizeof(target));
	recall_step_begin("pg_recall: choosing an index to rebuild");
	if (!recall_extension_present())
	{
		recall_step_end();
		return false;
	}
	found = choose_index(&target, &chosen, keep);
	recall_step_end();
	if (!found || !chosen)
		return found;

	stmt = makeNode(ReindexStmt);
	stmt->kind = REINDEX_OBJECT_INDEX;
	stmt->relation = makeRangeVar(target.nspname, target.relname, -1);
	stmt->params = list_make1(makeDefElem("concurrently", NULL, -1));
	text = psprintf("REINDEX INDEX CONCURRENTLY %s",
					quote_qualified_identifier(target.nspname, target.relname));

	/* an earlier rebuild of this table that died left its copy behind */
	(void) recall_drop_leftover_indexes(target.heapoid);

	/* before the command's snapshot: a recall purged before this is covered */
	start = GetCurrentTimestamp();
	failure = recall_run_utility((Node *) stmt, text, target.owner, target.owner_super);

	if (failure == NULL)
	{
		ereport(DEBUG1,
				(errmsg("pg_recall: rebuilt index \"%s\" (%ld ms)", target.relname,
						(long) ((GetCurrentTimestamp() - start) / 1000))));
		recall_step_begin("pg_recall: recording an index rebuild");
		record_rebuild(&target, start);
		recall_step_end();
		return true;
	}

	ereport(LOG,
			(errmsg("pg_recall: could not rebuild index \"%s\": %s", target.relname, failure),
			 errdetail("It is tried again later; its leftover is dropped.")));
	/* its own leftover: nobody else rebuilds this table now */
	(void) recall_drop_leftover_indexes(target.heapoid);
	recall_step_begin("pg_recall: recording a failed index rebuild");
	record_failure(&target, failure);
	recall_step_end();
	return true;
}
