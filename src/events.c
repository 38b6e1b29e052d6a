/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The recall's event row, audit row and notification.
 *
 * "~recall_event" (AFTER UPDATE row, WHEN the NULL -> non-NULL transition
 * of recalled_at, so nothing is queued for other updates) appends one row
 * to recall.events per recalled message, and one to recall.audit when
 * admin power was used.  Both are written as the extension's owner: the
 * application needs no privilege on them.
 *
 * "~recall_notify" (AFTER UPDATE statement) sends one notification per
 * statement: the single form for one message, the bulk form for several
 * or for a payload that would not fit.  Rows recalled by a statement that
 * fires no statement trigger of the enabled table (an UPDATE aimed at one
 * partition) are notified at pre-commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "utils/jsonb.h"
#include "utils/xid8.h"
#include "utils/uuid.h"
#include "utils/inval.h"
#include "commands/sequence.h"
#include "catalog/namespace.h"
#include "catalog/indexing.h"
#include "catalog/dependency.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_event_trigger);
PG_FUNCTION_INFO_V1(recall_notify_trigger);

/* Events of one table not yet notified, per subtransaction. */
typedef struct PendingNotify
{
	Oid			root_relid;
	SubTransactionId subid;
	char	   *channel;
	char	   *table_name;
	int64		count;
	int64		first_seq;
	int64		last_seq;
	char	   *single_payload; /* the single form, while count == 1 */
} PendingNotify;

/* in TopTransactionContext; reset at transaction end */
static List *pending = NIL;

/*
 * With the background dispatcher, events of one statement share a
 * dispatch group (numbered per transaction), so that it can send one
 * notification per statement after commit.
 */
static int32 dispatch_group = 1;
static bool group_has_events = false;
static bool xact_has_events = false;

/* The audit INSERT, prepared once per backend and kept. */
static SPIPlanPtr audit_plan = NULL;

/* Fixed parameters of the event plan; the key values follow. */
#define EVENT_FIXED_PARAMS 8

/*
 * Prepare the event INSERT of cfg's relation.  The key is made jsonb by
 * jsonb_build_object from the key's own types, as the copy guards do, so
 * that both spell a key the same way.
 */
static SPIPlanPtr
prepare_event_plan(RecallTable *cfg)
{
	StringInfoData sql;
	Oid		   *argtypes = palloc(sizeof(Oid) * (EVENT_FIXED_PARAMS + cfg->nkeys));

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "INSERT INTO recall.events (xid, tbl, pk, conversation, actor,"
						   " db_role, reason, privileged, recalled_at, dispatch_group)"
						   " VALUES (pg_catalog.pg_current_xact_id(), $1, ");
	recall_append_key_object(&sql, cfg->key_names, cfg->nkeys, EVENT_FIXED_PARAMS + 1, NULL);
	appendStringInfoString(&sql, ", $2, $3, $4, $5, $6, $7, $8) RETURNING seq, pk");

	argtypes[0] = REGCLASSOID;
	argtypes[1] = TEXTOID;
	argtypes[2] = TEXTOID;
	argtypes[3] = NAMEOID;
	argtypes[4] = TEXTOID;
	argtypes[5] = BOOLOID;
	argtypes[6] = TIMESTAMPTZOID;
	argtypes[7] = INT4OID;
	for (int i = 0; i < cfg->nkeys; i++)
		argtypes[EVENT_FIXED_PARAMS + i] = cfg->key_types[i];
	return recall_prepare_kept(sql.data, EVENT_FIXED_PARAMS + cfg->nkeys, argtypes);
}

/*
 * The event log's relation and its seq sequence, looked up once: the
 * common recall writes its event row directly (heap and indexes), without
 * the executor start-up of an SPI INSERT.  Reset when the relation is
 * invalidated (the extension dropped and created again).
 */
static Oid	events_relid = InvalidOid;
static Oid	events_seqid = InvalidOid;

static void
events_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == events_relid)
	{
		events_relid = InvalidOid;
		events_seqid = InvalidOid;
	}
}

/*
 * The key of a row as jsonb, spelled as jsonb_build_object would spell it,
 * for key types whose JSON form is plain (numbers, booleans, strings);
 * NULL for other types, which take the SPI path.
 */
static Datum
key_jsonb(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc, bool *ok)
{
	StringInfoData buf;

	*ok = false;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < cfg->nkeys; i++)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, cfg->key_attnums[i], tupdesc, &isnull);
		Oid			typid = cfg->key_types[i];

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, cfg->key_names[i]);
		appendStringInfoChar(&buf, ':');
		if (isnull)
			appendStringInfoString(&buf, "null");
		else if (typid == INT2OID)
			appendStringInfo(&buf, "%d", (int) DatumGetInt16(d));
		else if (typid == INT4OID)
			appendStringInfo(&buf, "%d", DatumGetInt32(d));
		else if (typid == INT8OID)
			appendStringInfo(&buf, INT64_FORMAT, DatumGetInt64(d));
		else if (typid == BOOLOID)
			appendStringInfoString(&buf, DatumGetBool(d) ? "true" : "false");
		else if (typid == TEXTOID || typid == VARCHAROID)
			escape_json(&buf, TextDatumGetCString(d));
		else if (typid == UUIDOID)
			escape_json(&buf, DatumGetCString(DirectFunctionCall1(uuid_out, d)));
		else
			return (Datum) 0;
	}
	appendStringInfoChar(&buf, '}');
	*ok = true;
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * Write the event row directly.  values[] are the event plan's parameters
 * (EVENT_FIXED_PARAMS first); returns its seq.
 */
static int64
insert_event_direct(Datum pk, Datum *values, char *nulls)
{
	Relation	rel;
	HeapTuple	tup;
	Datum		cols[13];
	bool		colnulls[13];
	int64		seq;

	if (!OidIsValid(events_relid))
	{
		Oid			relid = get_relname_relid("events", get_namespace_oid("recall", false));

		if (!OidIsValid(relid))
			elog(ERROR, "relation recall.events does not exist");
		events_seqid = getIdentitySequence(relid, 1, false);
		events_relid = relid;
	}
	rel = table_open(events_relid, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != 13)
		elog(ERROR, "recall.events has %d columns, expected 13", RelationGetDescr(rel)->natts);

	seq = nextval_internal(events_seqid, false);
	memset(colnulls, false, sizeof(colnulls));
	cols[0] = Int64GetDatum(seq);
	cols[1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	cols[2] = values[0];		/* tbl */
	cols[3] = pk;
	cols[4] = values[1];		/* conversation */
	colnulls[4] = (nulls[1] == 'n');
	cols[5] = values[2];		/* actor */
	cols[6] = values[3];		/* db_role */
	cols[7] = values[4];		/* reason */
	colnulls[7] = (nulls[4] == 'n');
	cols[8] = values[5];		/* privileged */
	cols[9] = values[6];		/* recalled_at */
	cols[10] = values[7];		/* dispatch_group */
	colnulls[10] = (nulls[7] == 'n');
	colnulls[11] = true;
	colnulls[12] = true;

	tup = heap_form_tuple(RelationGetDescr(rel), cols, colnulls);
	/* heap insert plus index entries (plain column indexes only) */
	CatalogTupleInsert(rel, tup);
	heap_freetuple(tup);
	table_close(rel, NoLock);
	return seq;
}

/* Remember an event for the statement's notification. */
static void
pending_add(RecallTable *cfg, int64 seq, const char *payload)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	PendingNotify *p = NULL;
	ListCell   *lc;
	MemoryContext oldcxt;

	foreach(lc, pending)
	{
		PendingNotify *q = (PendingNotify *) lfirst(lc);

		if (q->root_relid == cfg->root_relid && q->subid == subid)
		{
			p = q;
			break;
		}
	}

	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	if (p == NULL)
	{
		p = palloc0(sizeof(PendingNotify));
		p->root_relid = cfg->root_relid;
		p->subid = subid;
		p->channel = pstrdup(cfg->channel);
		p->table_name = pstrdup(cfg->qualified_name);
		p->first_seq = seq;
		p->last_seq = seq;
		p->single_payload = pstrdup(payload);
		pending = lappend(pending, p);
	}
	else if (p->single_payload != NULL)
	{
		pfree(p->single_payload);
		p->single_payload = NULL;
	}
	p->count++;
	p->first_seq = Min(p->first_seq, seq);
	p->last_seq = Max(p->last_seq, seq);
	MemoryContextSwitchTo(oldcxt);
}

/* Send the notifications of pending events of one table, or of all. */
static void
pending_flush(Oid root_relid)
{
	/* the statement is over: the next one's events form a new group */
	if (group_has_events)
	{
		dispatch_group++;
		group_has_events = false;
	}
	while (pending != NIL)
	{
		PendingNotify *head = NULL;
		int64		count = 0;
		int64		first = 0;
		int64		last = 0;
		const char *single = NULL;
		List	   *rest = NIL;
		ListCell   *lc;
		MemoryContext oldcxt;

		/* merge every entry of the first matching table */
		foreach(lc, pending)
		{
			PendingNotify *p = (PendingNotify *) lfirst(lc);

			if (head == NULL && (root_relid == InvalidOid || p->root_relid == root_relid))
				head = p;
			if (head != NULL && p->root_relid == head->root_relid)
			{
				first = count ? Min(first, p->first_seq) : p->first_seq;
				last = count ? Max(last, p->last_seq) : p->last_seq;
				count += p->count;
				single = p->single_payload;
			}
			else
			{
				oldcxt = MemoryContextSwitchTo(TopTransactionContext);
				rest = lappend(rest, p);
				MemoryContextSwitchTo(oldcxt);
			}
		}
		if (head == NULL)
			return;
		pending = rest;

		if (count == 1 && single != NULL && strlen(single) < RECALL_PAYLOAD_MAX)
			Async_Notify(head->channel, single);
		else
			Async_Notify(head->channel,
						 recall_bulk_payload(head->table_name, count, first, last));
	}
}

/* Forget pending events at transaction end; send leftovers at pre-commit. */
static void
events_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			pending_flush(InvalidOid);
			break;
		case XACT_EVENT_COMMIT:
			if (xact_has_events && recall_dispatcher_enabled)
				recall_dispatcher_wake_at_commit();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending = NIL;		/* its memory goes with the transaction */
			dispatch_group = 1;
			group_has_events = false;
			xact_has_events = false;
			break;
		default:
			break;
	}
}

/* Drop the events of an aborted subtransaction; hand others to the parent. */
static void
events_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending)
		{
			PendingNotify *p = (PendingNotify *) lfirst(lc);

			if (p->subid == mySubid)
				pending = foreach_delete_current(pending, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending)
		{
			PendingNotify *p = (PendingNotify *) lfirst(lc);

			if (p->subid == mySubid)
				p->subid = parentSubid;
		}
	}
}

/* Register the transaction callbacks; called from _PG_init. */
void
recall_events_init(void)
{
	RegisterXactCallback(events_xact_callback, NULL);
	CacheRegisterRelcacheCallback(events_relcache_callback, (Datum) 0);
	RegisterSubXactCallback(events_subxact_callback, NULL);
}

/*
 * recall.event_trigger(): AFTER UPDATE FOR EACH ROW, on the recall
 * transition only (its WHEN clause).
 */
Datum
recall_event_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	RecallTable *cfg;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	oldtup;
	HeapTuple	newtup;
	char	   *actor;
	char	   *reason;
	char	   *conversation = NULL;
	bool		isnull;
	bool		privileged;
	Datum		recalled_at;
	RecallBecome become;
	int			ret;
	int64		seq = 0;
	char	   *payload;
	char	   *pk = NULL;
	Datum		pkdatum;
	Datum	   *values;
	char	   *nulls;
	bool		direct;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"recall.event_trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired AFTER UPDATE FOR EACH ROW",
						"recall.event_trigger")));

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	oldtup = trigdata->tg_trigtuple;
	newtup = trigdata->tg_newtuple;
	cfg = recall_get_table(rel, false);

	/* only the NULL -> non-NULL transition is a recall */
	if (!heap_attisnull(oldtup, cfg->recalled_at_att, tupdesc) ||
		heap_attisnull(newtup, cfg->recalled_at_att, tupdesc))
		return PointerGetDatum(NULL);

	recalled_at = heap_getattr(newtup, cfg->recalled_at_att, tupdesc, &isnull);
	actor = recall_text_of(newtup, tupdesc, cfg->recalled_by_att, &isnull);
	if (isnull)
		actor = "";
	reason = recall_text_of(newtup, tupdesc, cfg->reason_att, &isnull);
	if (cfg->conversation_att != InvalidAttrNumber)
		conversation = recall_text_of(newtup, tupdesc, cfg->conversation_att, &isnull);
	/* the guard let it through: as the sender, or with admin power */
	privileged = !recall_is_self(cfg, oldtup, tupdesc, actor,
								 GetCurrentTransactionStartTimestamp(), NULL);

	values = palloc(sizeof(Datum) * (EVENT_FIXED_PARAMS + cfg->nkeys));
	nulls = palloc(sizeof(char) * (EVENT_FIXED_PARAMS + cfg->nkeys));
	memset(nulls, ' ', EVENT_FIXED_PARAMS + cfg->nkeys);
	values[0] = ObjectIdGetDatum(cfg->root_relid);
	values[1] = conversation ? CStringGetTextDatum(conversation) : (Datum) 0;
	nulls[1] = conversation ? ' ' : 'n';
	values[2] = CStringGetTextDatum(actor);
	values[3] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	values[4] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[4] = reason ? ' ' : 'n';
	values[5] = BoolGetDatum(privileged);
	values[6] = recalled_at;
	values[7] = Int32GetDatum(dispatch_group);
	nulls[7] = recall_dispatcher_enabled ? ' ' : 'n';
	for (int i = 0; i < cfg->nkeys; i++)
	{
		values[EVENT_FIXED_PARAMS + i] = heap_getattr(newtup, cfg->key_attnums[i], tupdesc, &isnull);
		nulls[EVENT_FIXED_PARAMS + i] = isnull ? 'n' : ' ';
	}

	pkdatum = key_jsonb(cfg, newtup, tupdesc, &direct);
	if (direct)
		seq = insert_event_direct(pkdatum, values, nulls);

	/* the SPI path, as the extension's owner: callers need no grant on the logs */
	if (!direct || privileged)
	{
		recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, false, &become);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (!direct)
		{
			if (cfg->event_plan == NULL)
				cfg->event_plan = prepare_event_plan(cfg);
			ret = SPI_execute_plan(cfg->event_plan, values, nulls, false, 1);
			if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
				elog(ERROR, "insert into recall.events failed: %s", SPI_result_code_string(ret));
			seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			pkdatum = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull),
										false, -1);
		}
		if (privileged)
		{
			Datum		avalues[5] = {values[0], pkdatum, values[2], values[3], values[4]};
			char		anulls[5] = {' ', ' ', ' ', ' ', nulls[4]};

			if (audit_plan == NULL)
			{
				Oid			argtypes[5] = {REGCLASSOID, JSONBOID, TEXTOID, NAMEOID, TEXTOID};

				audit_plan = recall_prepare_kept("INSERT INTO recall.audit (at, xid, action, tbl, pk, actor,"
										  " db_role, reason)"
										  " VALUES (pg_catalog.now(), pg_catalog.pg_current_xact_id(),"
										  " 'recall', $1, $2, $3, $4, $5)",
										  5, argtypes);
			}
			ret = SPI_execute_plan(audit_plan, avalues, anulls, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "insert into recall.audit failed: %s", SPI_result_code_string(ret));
		}
		SPI_finish();
		recall_unbecome(&become);
	}
	if (!recall_dispatcher_enabled)
		pk = recall_jsonb_compact(DatumGetJsonbP(pkdatum));

	/* copies of the message go in the same statement */
	recall_wipe_copies(cfg, newtup, tupdesc);

	group_has_events = true;
	xact_has_events = true;
	if (!recall_dispatcher_enabled)
	{
		payload = recall_single_payload(cfg->qualified_name, pk, conversation, seq,
										DatumGetTimestampTz(recalled_at));
		pending_add(cfg, seq, payload);
	}
	return PointerGetDatum(NULL);
}

/*
 * recall.notify_trigger(): AFTER UPDATE FOR EACH STATEMENT.  Cheap when
 * the statement recalled nothing.
 */
Datum
recall_notify_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"recall.notify_trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired AFTER ... FOR EACH STATEMENT",
						"recall.notify_trigger")));

	/* a copy's UPDATE inside a recall is part of the recall's statement */
	if (recall_in_copy_wipe)
		return PointerGetDatum(NULL);
	if (pending != NIL || group_has_events)
		pending_flush(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
