/*-------------------------------------------------------------------------
 *
 * events.c
 *	  What a recall leaves for others: its event row, its audit row, its
 *	  notification, and the location of the bytes it leaves behind.
 *
 * Called by the guard (guard.c) for each row it recalls, in the recall's
 * own statement:
 *	- one row in recall.events (log_writer.c), naming the message by its
 *	  canonical key (key_json.c), with the statement it belongs to
 *	  (dispatch_group: the command id of the statement's snapshot) and the
 *	  residue: the block of the pre-recall version and the blocks of its
 *	  out-of-line content, for the purge;
 *	- one row in recall.audit when admin power was used;
 *	- the message's copies, queued for the end of the statement (copies.c);
 *	- without the background dispatcher, one notification per statement and
 *	  table, sent at pre-commit (single form for one message, bulk form
 *	  otherwise); with it, the dispatcher sends them after commit, and the
 *	  commit only wakes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/toast_internals.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "pg_recall.h"

/* Columns of recall.events, in order. */
enum
{
	EV_SEQ, EV_XID, EV_TBL, EV_PK, EV_CONVERSATION, EV_ACTOR, EV_DB_ROLE,
	EV_REASON, EV_PRIVILEGED, EV_RECALLED_AT, EV_DISPATCH_GROUP, EV_KEY_HASH,
	EV_RESIDUE, EV_NATTS
};

/* Columns of recall.audit, in order. */
enum
{
	AU_AT, AU_XID, AU_ACTION, AU_TBL, AU_PK, AU_ACTOR, AU_DB_ROLE, AU_REASON,
	AU_NATTS
};

/* Events of one table and statement not yet notified, per subtransaction. */
typedef struct PendingNotify
{
	Oid			root_relid;
	int32		group;
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
static bool xact_has_events = false;

/* The name of the current role, looked up once per role. */
static Oid	role_name_oid = InvalidOid;
static NameData role_name;

static void
role_name_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	role_name_oid = InvalidOid;
}

static Datum
current_role_name(void)
{
	Oid			uid = GetUserId();

	if (uid != role_name_oid)
	{
		namestrcpy(&role_name, GetUserNameFromId(uid, false));
		role_name_oid = uid;
	}
	return NameGetDatum(&role_name);
}

/*
 * The statement a row belongs to: inside a trigger, the active snapshot is
 * the executing statement's own (a nested statement pushes and pops its
 * own), and its command id differs from every other statement's of the
 * transaction that wrote anything.
 */
int32
recall_statement_group(void)
{
	if (ActiveSnapshotSet())
		return (int32) GetActiveSnapshot()->curcid;
	return (int32) GetCurrentCommandId(false);
}

/* Append {relid, block} to a residue list unless it is the last pair. */
static void
residue_add(List **residue, Oid relid, BlockNumber block)
{
	int			n = list_length(*residue);

	if (n >= 2 && list_nth_oid(*residue, n - 2) == relid &&
		list_nth_oid(*residue, n - 1) == (Oid) block)
		return;
	*residue = lappend_oid(*residue, relid);
	*residue = lappend_oid(*residue, (Oid) block);
}

/*
 * The blocks of the TOAST relation that hold the chunks of an out-of-line
 * value.  SnapshotAny: the chunks of a value are found whatever their
 * state, so that the purge visits them even if a VACUUM pruned them first.
 */
void
recall_toast_residue(struct varlena *attr, List **residue)
{
	struct varatt_external toast_pointer;
	Relation	toastrel;
	Relation   *toastidxs;
	int			num_indexes;
	int			validIndex;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	ttup;
	BlockNumber last = InvalidBlockNumber;

	VARATT_EXTERNAL_GET_POINTER(toast_pointer, attr);
	toastrel = table_open(toast_pointer.va_toastrelid, AccessShareLock);
	validIndex = toast_open_indexes(toastrel, AccessShareLock, &toastidxs, &num_indexes);
	ScanKeyInit(&key, (AttrNumber) 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(toast_pointer.va_valueid));
	scan = systable_beginscan_ordered(toastrel, toastidxs[validIndex], SnapshotAny, 1, &key);
	while ((ttup = systable_getnext_ordered(scan, ForwardScanDirection)) != NULL)
	{
		BlockNumber block = ItemPointerGetBlockNumber(&ttup->t_self);

		if (block != last)
			residue_add(residue, toast_pointer.va_toastrelid, block);
		last = block;
	}
	systable_endscan_ordered(scan);
	toast_close_indexes(toastidxs, num_indexes, AccessShareLock);
	table_close(toastrel, AccessShareLock);
}

/*
 * Where the pre-recall version's bytes are: its own block, and the blocks
 * of its content stored out of line.
 */
static Datum
residue_of(RecallTable *cfg, Relation rel, HeapTuple oldtup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	List	   *toast = NIL;
	Datum	   *elems;
	int			n = 2;
	ListCell   *lc;

	for (int i = 0; i < cfg->ncontent; i++)
	{
		bool		isnull;
		Datum		d;

		if (cfg->content[i].typlen != -1)
			continue;
		d = heap_getattr(oldtup, cfg->content[i].attnum, tupdesc, &isnull);
		if (!isnull && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(d)))
			recall_toast_residue((struct varlena *) DatumGetPointer(d), &toast);
	}
	elems = palloc(sizeof(Datum) * (2 + list_length(toast)));
	elems[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	elems[1] = ObjectIdGetDatum((Oid) ItemPointerGetBlockNumber(&oldtup->t_self));
	foreach(lc, toast)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/* The key of a row as the canonical jsonb. */
Jsonb *
recall_row_key(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc)
{
	Datum	   *values = palloc(sizeof(Datum) * cfg->nkeys);
	bool	   *nulls = palloc(sizeof(bool) * cfg->nkeys);

	for (int i = 0; i < cfg->nkeys; i++)
		values[i] = heap_getattr(tup, cfg->key_attnums[i], tupdesc, &nulls[i]);
	return recall_key_jsonb(cfg->nkeys, cfg->key_names, cfg->key_types, values, nulls);
}

/* Remember an event for its statement's notification (no dispatcher). */
static void
pending_add(RecallTable *cfg, int32 group, int64 seq, Jsonb *pk, const char *conversation,
			TimestampTz at)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	PendingNotify *p = NULL;
	ListCell   *lc;
	MemoryContext oldcxt;

	foreach(lc, pending)
	{
		PendingNotify *q = (PendingNotify *) lfirst(lc);

		if (q->root_relid == cfg->root_relid && q->group == group && q->subid == subid)
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
		p->group = group;
		p->subid = subid;
		p->channel = pstrdup(cfg->channel);
		p->table_name = pstrdup(cfg->qualified_name);
		p->first_seq = seq;
		p->last_seq = seq;
		p->single_payload = recall_single_payload(cfg->qualified_name,
												  recall_jsonb_compact(pk),
												  conversation, seq, at);
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

/*
 * Send the notifications of every pending statement, in the order the
 * statements recalled; events of one statement and table that committed
 * subtransactions split are merged again.
 */
static void
pending_flush(void)
{
	while (pending != NIL)
	{
		PendingNotify *head = (PendingNotify *) linitial(pending);
		int64		count = 0;
		int64		first = 0;
		int64		last = 0;
		const char *single = NULL;
		List	   *rest = NIL;
		ListCell   *lc;

		foreach(lc, pending)
		{
			PendingNotify *p = (PendingNotify *) lfirst(lc);

			if (p->root_relid == head->root_relid && p->group == head->group)
			{
				first = count ? Min(first, p->first_seq) : p->first_seq;
				last = count ? Max(last, p->last_seq) : p->last_seq;
				count += p->count;
				single = p->single_payload;
			}
			else
				rest = lappend(rest, p);
		}
		pending = rest;

		if (count == 1 && single != NULL && strlen(single) < RECALL_PAYLOAD_MAX)
			Async_Notify(head->channel, single);
		else
			Async_Notify(head->channel,
						 recall_bulk_payload(head->table_name, count, first, last));
	}
}

/* Write the audit row of a recall made with admin power. */
static void
write_audit(RecallTable *cfg, Jsonb *pk, RecallStamp *stamp, Datum role)
{
	Datum		values[AU_NATTS];
	bool		nulls[AU_NATTS];

	memset(nulls, false, sizeof(nulls));
	values[AU_AT] = TimestampTzGetDatum(stamp->at);
	values[AU_XID] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[AU_ACTION] = CStringGetTextDatum("recall");
	values[AU_TBL] = ObjectIdGetDatum(cfg->root_relid);
	values[AU_PK] = JsonbPGetDatum(pk);
	values[AU_ACTOR] = CStringGetTextDatum(stamp->actor);
	values[AU_DB_ROLE] = role;
	values[AU_REASON] = CStringGetTextDatum(stamp->reason);
	recall_log_append(RECALL_LOG_AUDIT, values, nulls, AU_NATTS);
}

/*
 * Log the recall of a row: its event (and audit) row, its copies, its
 * notification.  oldtup is the version being recalled, newtup the wiped
 * one about to be stored.
 */
void
recall_log_recall(RecallTable *cfg, Relation rel, HeapTuple oldtup, HeapTuple newtup,
				  RecallStamp *stamp)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Datum		values[EV_NATTS];
	bool		nulls[EV_NATTS];
	Jsonb	   *pk = recall_row_key(cfg, newtup, tupdesc);
	char	   *conversation = NULL;
	int32		group = recall_statement_group();
	int64		seq = recall_log_next_seq();

	memset(nulls, false, sizeof(nulls));
	if (cfg->conversation_att != InvalidAttrNumber)
		conversation = recall_text_of(newtup, tupdesc, cfg->conversation_att, &nulls[EV_CONVERSATION]);
	else
		nulls[EV_CONVERSATION] = true;

	values[EV_SEQ] = Int64GetDatum(seq);
	values[EV_XID] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[EV_TBL] = ObjectIdGetDatum(cfg->root_relid);
	values[EV_PK] = JsonbPGetDatum(pk);
	values[EV_CONVERSATION] = conversation ? CStringGetTextDatum(conversation) : (Datum) 0;
	values[EV_ACTOR] = CStringGetTextDatum(stamp->actor);
	values[EV_DB_ROLE] = current_role_name();
	values[EV_REASON] = stamp->reason ? CStringGetTextDatum(stamp->reason) : (Datum) 0;
	nulls[EV_REASON] = (stamp->reason == NULL);
	values[EV_PRIVILEGED] = BoolGetDatum(stamp->privileged);
	values[EV_RECALLED_AT] = TimestampTzGetDatum(stamp->at);
	values[EV_DISPATCH_GROUP] = Int32GetDatum(group);
	nulls[EV_DISPATCH_GROUP] = !recall_dispatcher_enabled;
	values[EV_KEY_HASH] = cfg->has_copies ? Int64GetDatum(recall_key_hash(pk)) : (Datum) 0;
	nulls[EV_KEY_HASH] = !cfg->has_copies;
	values[EV_RESIDUE] = residue_of(cfg, rel, oldtup);
	recall_log_append(RECALL_LOG_EVENTS, values, nulls, EV_NATTS);

	if (stamp->privileged)
		write_audit(cfg, pk, stamp, values[EV_DB_ROLE]);

	/* copies of the message go at the end of this statement */
	if (cfg->has_copies)
		recall_queue_copies(cfg, newtup, tupdesc);

	xact_has_events = true;
	if (!recall_dispatcher_enabled)
		pending_add(cfg, group, seq, pk, conversation, stamp->at);
}

/* Notify at pre-commit; forget pending events at transaction end. */
static void
events_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			pending_flush();
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
	RegisterSubXactCallback(events_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(AUTHOID, role_name_callback, (Datum) 0);
}
