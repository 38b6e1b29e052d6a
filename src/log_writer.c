/*-------------------------------------------------------------------------
 *
 * log_writer.c
 *	  Appending rows to pg_recall's own logs (recall.events, recall.audit,
 *	  recall.purge_queue) from a recall's trigger.
 *
 * An SPI INSERT would start an executor per row (plan copy, ExecutorStart,
 * range table checks); a recall writes one event row, so the row is
 * inserted the way the executor's INSERT does it: table_tuple_insert, then
 * ExecInsertIndexTuples over every index of the log, so that an index a
 * DBA adds (an expression index, a partial one, a unique one) is kept as
 * PostgreSQL would keep it.  Triggers and CHECK constraints on the logs
 * are not run: the logs are pg_recall's, written only here.
 *
 * A log relation is opened once per transaction, on its first row, under
 * the top transaction's resource owner (a subtransaction's abort must not
 * close it under us), and closed at pre-commit; an abort lets the resource
 * owner release it.  Rows are written as the extension's owner, with
 * SECURITY_RESTRICTED_OPERATION, so that an index expression on a log runs
 * with its owner's rights, never the caller's, and the caller needs no
 * privilege on the logs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "pg_recall.h"

static const char *const log_names[RECALL_NLOGS] = {"events", "audit", "purge_queue"};

/* A log opened for this transaction. */
typedef struct OpenLog
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} OpenLog;

/* in TopTransactionContext; reset at transaction end */
static OpenLog *open_logs[RECALL_NLOGS];
static Oid	xact_log_owner = InvalidOid;

/*
 * Relation OIDs of the logs and of the events' seq sequence, looked up
 * once per backend; forgotten when a log is invalidated (the extension
 * dropped and created again).
 */
static Oid	log_relids[RECALL_NLOGS];
static Oid	events_seqid = InvalidOid;

void
recall_log_writer_invalidate(Oid relid)
{
	for (int i = 0; i < RECALL_NLOGS; i++)
		if (relid == InvalidOid || relid == log_relids[i])
		{
			memset(log_relids, 0, sizeof(log_relids));
			events_seqid = InvalidOid;
			return;
		}
}

/* The OID of a log relation in schema recall. */
static Oid
log_relid(RecallLog which)
{
	if (!OidIsValid(log_relids[which]))
	{
		Oid			relid = get_relname_relid(log_names[which],
											  get_namespace_oid("recall", false));

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"recall.%s\" does not exist", log_names[which]),
					 errhint("Update the extension: ALTER EXTENSION pg_recall UPDATE.")));
		log_relids[which] = relid;
	}
	return log_relids[which];
}

/* Open a log for the rest of the transaction. */
static OpenLog *
open_log(RecallLog which)
{
	ResourceOwner saveowner = CurrentResourceOwner;
	MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	OpenLog    *log = palloc0(sizeof(OpenLog));
	Oid			relid = log_relid(which);

	if (!OidIsValid(xact_log_owner))
		xact_log_owner = recall_extension_owner();

	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		log->rel = table_open(relid, RowExclusiveLock);
		log->estate = CreateExecutorState();
		log->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(log->rri, log->rel, 1, NULL, 0);
		ExecOpenIndices(log->rri, false);
		for (int i = 0; i < log->rri->ri_NumIndices; i++)
		{
			Form_pg_index index = log->rri->ri_IndexRelationDescs[i]->rd_index;

			/* deferred checks and exclusion need a trigger queue of their own */
			if (!index->indimmediate || log->rri->ri_IndexRelationInfo[i]->ii_ExclusionOps != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("index \"%s\" of \"recall.%s\" is not supported",
								RelationGetRelationName(log->rri->ri_IndexRelationDescs[i]),
								log_names[which]),
						 errdetail("Deferrable unique constraints and exclusion constraints cannot be kept on pg_recall's logs.")));
		}
		log->slot = MakeSingleTupleTableSlot(RelationGetDescr(log->rel), &TTSOpsVirtual);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = saveowner;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	open_logs[which] = log;
	return log;
}

/*
 * Append one row to a log: values and nulls of its first ncols columns;
 * columns beyond them (none in 1.1; a 1.0 log has fewer) are null.
 */
void
recall_log_append(RecallLog which, Datum *values, bool *nulls, int ncols)
{
	OpenLog    *log = open_logs[which];
	TupleTableSlot *slot;
	int			natts;
	Oid			save_userid;
	int			save_sec_context;

	if (log == NULL)
		log = open_log(which);
	slot = log->slot;
	natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	for (int i = 0; i < natts; i++)
	{
		bool		have = (i < ncols && !TupleDescAttr(slot->tts_tupleDescriptor, i)->attisdropped);

		slot->tts_values[i] = have ? values[i] : (Datum) 0;
		slot->tts_isnull[i] = have ? nulls[i] : true;
	}
	ExecStoreVirtualTuple(slot);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(xact_log_owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	table_tuple_insert(log->rel, slot, GetCurrentCommandId(true), 0, NULL);
	if (log->rri->ri_NumIndices > 0)
	{
		List	   *recheck;

#if PG_VERSION_NUM >= 160000
		recheck = ExecInsertIndexTuples(log->rri, slot, log->estate, false, false,
										NULL, NIL, false);
#else
		recheck = ExecInsertIndexTuples(log->rri, slot, log->estate, false, false,
										NULL, NIL);
#endif
		list_free(recheck);
	}
	ResetPerTupleExprContext(log->estate);
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
					OpenLog    *log = open_logs[i];

					if (log == NULL)
						continue;
					ExecDropSingleTupleTableSlot(log->slot);
					ExecCloseIndices(log->rri);
					FreeExecutorState(log->estate);
					table_close(log->rel, NoLock);
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
			xact_log_owner = InvalidOid;
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
