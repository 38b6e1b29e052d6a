/*-------------------------------------------------------------------------
 *
 * log_writer.c
 *	  Appending rows to pg_recall's own logs (recall.events, recall.audit,
 *	  recall.purge_queue) from a recall's trigger.
 *
 * An SPI INSERT would start an executor per row; a recall writes one event
 * row, so the row goes in the way the executor's INSERT puts it: a heap
 * insert (TOAST included), then an entry in every index of the log whose
 * predicate the row satisfies, expression and unique indexes included
 * (what ExecInsertIndexTuples does), so that an index a DBA adds is kept
 * as PostgreSQL would keep it.  Triggers and CHECK constraints on the logs
 * are not run: the logs are pg_recall's, written only here.
 *
 * What does not change between transactions is kept for the backend's
 * life: each index's IndexInfo with its expressions and predicate compiled
 * (against a long-lived EState), rebuilt when the log or one of its indexes
 * is invalidated.  A transaction locks and opens the log on its first row
 * and an index on its first entry, under the top transaction's resource
 * owner (a subtransaction's abort must not close them under us), and
 * closes them at pre-commit; an abort lets the resource owner release them.
 *
 * Rows are written as the extension's owner with
 * SECURITY_RESTRICTED_OPERATION: an index expression on a log runs with
 * its owner's rights, never the caller's, and the caller needs no
 * privilege on the logs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "pg_recall.h"

static const char *const log_names[RECALL_NLOGS] = {"events", "audit", "purge_queue"};

/* One index of a log, as the backend keeps it. */
typedef struct LogIndex
{
	Oid			indexoid;
	IndexInfo  *info;			/* expressions and predicate compiled lazily */
	ExprState  *predicate;		/* NULL: not a partial index */
	bool		unique;
} LogIndex;

/* A log, as the backend keeps it (CacheMemoryContext). */
typedef struct LogCache
{
	Oid			relid;			/* InvalidOid: not looked up yet */
	bool		valid;			/* indexes known */
	MemoryContext cxt;			/* indexes, estate */
	EState	   *estate;			/* expression evaluation, per-tuple memory */
	int			nindexes;
	LogIndex   *indexes;
} LogCache;

/* A log opened by this transaction (TopTransactionContext). */
typedef struct OpenLog
{
	Relation	rel;
	Relation   *index_rels;		/* opened on first use */
	TupleTableSlot *slot;
} OpenLog;

static LogCache logs[RECALL_NLOGS];
static OpenLog *open_logs[RECALL_NLOGS];
static Oid	events_seqid = InvalidOid;

/* Forget what concerns an invalidated relation (InvalidOid: everything). */
void
recall_log_writer_invalidate(Oid relid)
{
	for (int i = 0; i < RECALL_NLOGS; i++)
	{
		LogCache   *log = &logs[i];
		bool		hit = (relid == InvalidOid || relid == log->relid);

		for (int j = 0; !hit && log->valid && j < log->nindexes; j++)
			hit = (log->indexes[j].indexoid == relid);
		if (!hit)
			continue;
		/* an index may come or go; the relation may be gone (DROP EXTENSION) */
		log->valid = false;
		if (relid == InvalidOid || relid == log->relid)
		{
			log->relid = InvalidOid;
			if (i == RECALL_LOG_EVENTS)
				events_seqid = InvalidOid;
		}
	}
}

/* The OID of a log relation in schema recall. */
static Oid
log_relid(RecallLog which)
{
	if (!OidIsValid(logs[which].relid))
	{
		Oid			relid = get_relname_relid(log_names[which],
											  get_namespace_oid("recall", false));

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"recall.%s\" does not exist", log_names[which]),
					 errhint("Update the extension: ALTER EXTENSION pg_recall UPDATE.")));
		logs[which].relid = relid;
	}
	return logs[which].relid;
}

/*
 * Does the log exist?  A database still on 1.0 (between the installation of
 * this library and ALTER EXTENSION UPDATE) has no recall.purge_queue: the
 * residue it would hold has no purge to read it there.
 */
bool
recall_log_exists(RecallLog which)
{
	if (OidIsValid(logs[which].relid))
		return true;
	return OidIsValid(get_relname_relid(log_names[which],
										get_namespace_oid("recall", false)));
}

/*
 * Learn the indexes of a log (its relation is open and locked): their
 * IndexInfo and predicates, compiled once for the backend.
 */
static void
build_log_cache(LogCache *log, Relation rel, const char *name)
{
	List	   *indexlist = RelationGetIndexList(rel);
	MemoryContext oldcxt;
	ListCell   *lc;
	int			n = 0;

	if (log->cxt != NULL)
		recall_retire_context(log->cxt);
	log->cxt = AllocSetContextCreate(CacheMemoryContext, "pg_recall log", ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(log->cxt);
	log->estate = CreateExecutorState();
	log->indexes = palloc0(sizeof(LogIndex) * (list_length(indexlist) + 1));
	foreach(lc, indexlist)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		LogIndex   *li = &log->indexes[n];

		/* deferred checks and exclusion need a trigger queue of their own */
		if (!index->rd_index->indimmediate ||
			index->rd_index->indisexclusion)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" of \"recall.%s\" is not supported",
							RelationGetRelationName(index), name),
					 errdetail("Deferrable unique constraints and exclusion constraints cannot be kept on pg_recall's logs.")));
		li->indexoid = RelationGetRelid(index);
		li->info = BuildIndexInfo(index);
		li->unique = index->rd_index->indisunique;
		if (li->info->ii_Predicate != NIL)
			li->predicate = ExecPrepareQual(li->info->ii_Predicate, log->estate);
		index_close(index, AccessShareLock);
		n++;
	}
	log->nindexes = n;
	MemoryContextSwitchTo(oldcxt);
	list_free(indexlist);
	log->valid = true;
}

/* Open a log for the rest of the transaction. */
static OpenLog *
open_log(RecallLog which)
{
	ResourceOwner saveowner = CurrentResourceOwner;
	MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	OpenLog    *open = palloc0(sizeof(OpenLog));
	LogCache   *log = &logs[which];

	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		/* locking takes in invalidations: the cache is checked after it */
		open->rel = table_open(log_relid(which), RowExclusiveLock);
		if (!log->valid)
			build_log_cache(log, open->rel, log_names[which]);
		open->index_rels = palloc0(sizeof(Relation) * (log->nindexes + 1));
		open->slot = MakeSingleTupleTableSlot(RelationGetDescr(open->rel), &TTSOpsVirtual);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = saveowner;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	open_logs[which] = open;
	return open;
}

/* An index of an open log, opened (and locked) on its first entry. */
static Relation
open_log_index(OpenLog *open, int i, Oid indexoid)
{
	if (open->index_rels[i] == NULL)
	{
		ResourceOwner saveowner = CurrentResourceOwner;

		CurrentResourceOwner = TopTransactionResourceOwner;
		PG_TRY();
		{
			open->index_rels[i] = index_open(indexoid, RowExclusiveLock);
		}
		PG_FINALLY();
		{
			CurrentResourceOwner = saveowner;
		}
		PG_END_TRY();
	}
	return open->index_rels[i];
}

/*
 * Append one row to a log: values and nulls of its first ncols columns;
 * columns beyond them (none in 1.1; a 1.0 log has fewer) are null.
 */
void
recall_log_append(RecallLog which, Datum *values, bool *nulls, int ncols)
{
	OpenLog    *open = open_logs[which];
	LogCache   *log = &logs[which];
	TupleTableSlot *slot;
	TupleDesc	desc;
	ExprContext *econtext;
	Oid			save_userid;
	int			save_sec_context;

	if (open == NULL)
		open = open_log(which);
	slot = open->slot;
	desc = slot->tts_tupleDescriptor;

	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		bool		have = (i < ncols && !TupleDescAttr(desc, i)->attisdropped);

		slot->tts_values[i] = have ? values[i] : (Datum) 0;
		slot->tts_isnull[i] = have ? nulls[i] : true;
	}
	ExecStoreVirtualTuple(slot);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(recall_extension_owner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	table_tuple_insert(open->rel, slot, GetCurrentCommandId(true), 0, NULL);

	econtext = GetPerTupleExprContext(log->estate);
	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < log->nindexes; i++)
	{
		LogIndex   *li = &log->indexes[i];
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		if (li->predicate != NULL && !ExecQual(li->predicate, econtext))
			continue;
		FormIndexDatum(li->info, slot, log->estate, ivalues, inulls);
		index_insert(open_log_index(open, i, li->indexoid), ivalues, inulls,
					 &slot->tts_tid, open->rel,
					 li->unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, li->info);
	}
	ResetExprContext(econtext);
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/* The next value of recall.events.seq (its identity sequence). */
int64
recall_log_next_seq(void)
{
	if (!OidIsValid(events_seqid))
		events_seqid = getIdentitySequence(log_relid(RECALL_LOG_EVENTS), 1, false);
	/* no permission check: the caller writes the event as the extension */
	return nextval_internal(events_seqid, false);
}

/* Close what this transaction opened (pre-commit), or forget it (abort). */
static void
log_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			{
				ResourceOwner saveowner = CurrentResourceOwner;

				CurrentResourceOwner = TopTransactionResourceOwner;
				for (int i = 0; i < RECALL_NLOGS; i++)
				{
					OpenLog    *open = open_logs[i];

					if (open == NULL)
						continue;
					ExecDropSingleTupleTableSlot(open->slot);
					for (int j = 0; j < logs[i].nindexes; j++)
						if (open->index_rels[j] != NULL)
							index_close(open->index_rels[j], NoLock);
					table_close(open->rel, NoLock);
					open_logs[i] = NULL;
				}
				CurrentResourceOwner = saveowner;
				break;
			}
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* memory goes with TopTransactionContext, references with the owner */
			memset(open_logs, 0, sizeof(open_logs));
			break;
		default:
			break;
	}
}

/* Register the callbacks; called from _PG_init. */
void
recall_log_writer_init(void)
{
	RegisterXactCallback(log_xact_callback, NULL);
}
