/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The BEFORE UPDATE row trigger "~recall_guard".
 *
 * Fires, through its WHEN clause, only on rows that are or become
 * recalled, after every other BEFORE trigger (name order), so it judges the
 * row as it would be stored:
 *	- a recall (recalled_at NULL -> non-NULL) is stamped with the
 *	  transaction's time, the actor and the reason, its content columns are
 *	  wiped, and permission is checked;
 *	- a recalled row stays recalled: a repeated recall is a no-op, an
 *	  un-recall or an edit is refused (or, with keep_wiped, the content
 *	  keeps its wiped value).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_guard_trigger);

/* sent_at of a row as timestamptz; false if null. */
static bool
sent_at_of(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc, TimestampTz *result)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, cfg->sent_at_att, tupdesc, &isnull);

	if (isnull)
		return false;
	switch (cfg->sent_at_type)
	{
		case TIMESTAMPTZOID:
			*result = DatumGetTimestampTz(d);
			break;
		case TIMESTAMPOID:
			*result = DatumGetTimestampTz(DirectFunctionCall1(timestamp_timestamptz, d));
			break;
		default:
			{
				int64		epoch;

				if (cfg->sent_at_type == INT2OID)
					epoch = DatumGetInt16(d);
				else if (cfg->sent_at_type == INT4OID)
					epoch = DatumGetInt32(d);
				else
					epoch = DatumGetInt64(d);
				*result = epoch * (USECS_PER_SEC / cfg->sent_at_divisor) -
					((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
			}
	}
	return true;
}

/*
 * Is this a recall by the message's own sender, within the window?
 * *window_end (if not NULL) gets the end of the window, 0 if none applies.
 */
bool
recall_is_self(RecallTable *cfg, HeapTuple oldtup, TupleDesc tupdesc,
			   const char *actor, TimestampTz now, TimestampTz *window_end)
{
	char	   *sender;
	bool		isnull;
	TimestampTz sent;
	TimestampTz end;

	if (window_end)
		*window_end = 0;
	if (cfg->sender_att == InvalidAttrNumber || actor == NULL)
		return false;
	sender = recall_text_of(oldtup, tupdesc, cfg->sender_att, &isnull);
	if (isnull || strcmp(sender, actor) != 0)
		return false;
	if (!cfg->has_window)
		return true;
	if (!sent_at_of(cfg, oldtup, tupdesc, &sent))
		return false;
	end = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												  TimestampTzGetDatum(sent),
												  PointerGetDatum(&cfg->window)));
	if (window_end)
		*window_end = end;
	return now <= end;
}

/* Text value of a column, NULL if null. */
static char *
text_or_null(HeapTuple tup, TupleDesc tupdesc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, tupdesc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Refuse a recall that is not the sender's, saying why. */
static void
refuse_not_self(RecallTable *cfg, HeapTuple oldtup, TupleDesc tupdesc,
				const char *actor, TimestampTz window_end)
{
	bool		isnull;
	char	   *sender;

	if (cfg->sender_att == InvalidAttrNumber)
		recall_refuse(cfg, actor,
					  psprintf("permission denied to recall a message of table \"%s\"", cfg->relname),
					  psprintf("Table \"%s\" has no sender column, so only members of recall_admin may recall, with a reason.",
							   cfg->relname),
					  NULL);

	sender = recall_text_of(oldtup, tupdesc, cfg->sender_att, &isnull);
	if (!isnull && strcmp(sender, actor) == 0 && window_end != 0)
		recall_refuse(cfg, actor,
					  psprintf("permission denied to recall a message of table \"%s\"", cfg->relname),
					  psprintf("The recall window of %s elapsed at %s.",
							   DatumGetCString(DirectFunctionCall1(interval_out,
																   PointerGetDatum(&cfg->window))),
							   timestamptz_to_str(window_end)),
					  "A member of recall_admin may still recall it, with a reason.");
	if (!isnull && strcmp(sender, actor) == 0)
		recall_refuse(cfg, actor,
					  psprintf("permission denied to recall a message of table \"%s\"", cfg->relname),
					  "The message has no sent_at time, so its recall window cannot be checked.",
					  "A member of recall_admin may still recall it, with a reason.");
	recall_refuse(cfg, actor,
				  psprintf("permission denied to recall a message of table \"%s\"", cfg->relname),
				  psprintf("Actor \"%s\" is not the sender of the message and is not a member of recall_admin.",
						   actor),
				  NULL);
}

static bool same_value(HeapTuple a, HeapTuple b, TupleDesc tupdesc, AttrNumber attnum);

/* Stamp, check and wipe a row being recalled. */
static HeapTuple
guard_recall(RecallTable *cfg, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	char	   *actor;
	char	   *reason;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz window_end;
	int			ncols = cfg->ncontent + 3;
	int		   *cols = palloc(sizeof(int) * ncols);
	Datum	   *values = palloc(sizeof(Datum) * ncols);
	bool	   *nulls = palloc(sizeof(bool) * ncols);

	for (int i = 0; i < cfg->npartkey; i++)
		if (!same_value(oldtup, newtup, tupdesc, cfg->partkey_attnums[i]))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the partition key of a message of table \"%s\" while recalling it",
							cfg->relname),
					 errdetail("Column \"%s\" is part of a partition key; moving the row to another partition would bypass the recall's event.",
							   NameStr(TupleDescAttr(tupdesc, cfg->partkey_attnums[i] - 1)->attname)),
					 errhint("Recall the message first, then change its partition key in another statement.")));

	actor = recall_resolve_actor(cfg, text_or_null(newtup, tupdesc, cfg->recalled_by_att));
	reason = recall_given_reason(text_or_null(newtup, tupdesc, cfg->reason_att));

	if (!recall_is_self(cfg, oldtup, tupdesc, actor, now, &window_end))
	{
		Oid			admin = get_role_oid("recall_admin", true);

		if (!OidIsValid(admin) || !has_privs_of_role(GetUserId(), admin))
			refuse_not_self(cfg, oldtup, tupdesc, actor, window_end);
		if (reason == NULL)
			recall_refuse(cfg, actor,
						  psprintf("permission denied to recall a message of table \"%s\" without a reason",
								   cfg->relname),
						  psprintf("Actor \"%s\" is not the sender within the recall window, so the recall uses admin power, which needs a reason.",
								   actor),
						  "Set recall_reason in the statement, pass reason => to recall.recall(), or set recall.reason.");
	}

	cols[0] = cfg->recalled_at_att;
	values[0] = TimestampTzGetDatum(now);
	nulls[0] = false;
	cols[1] = cfg->recalled_by_att;
	values[1] = CStringGetTextDatum(actor);
	nulls[1] = false;
	cols[2] = cfg->reason_att;
	values[2] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[2] = (reason == NULL);
	for (int i = 0; i < cfg->ncontent; i++)
	{
		cols[3 + i] = cfg->content[i].attnum;
		values[3 + i] = cfg->content[i].wiped;
		nulls[3 + i] = cfg->content[i].wiped_isnull;
	}
	return heap_modify_tuple_by_cols(newtup, tupdesc, ncols, cols, values, nulls);
}

/* Are two values of a column the same (null-aware, byte image)? */
static bool
same_value(HeapTuple a, HeapTuple b, TupleDesc tupdesc, AttrNumber attnum)
{
	bool		anull;
	bool		bnull;
	Datum		ad = heap_getattr(a, attnum, tupdesc, &anull);
	Datum		bd = heap_getattr(b, attnum, tupdesc, &bnull);
	Form_pg_attribute att = TupleDescAttr(tupdesc, attnum - 1);

	if (anull || bnull)
		return anull && bnull;
	return datum_image_eq(ad, bd, att->attbyval, att->attlen);
}

/* Keep a recalled row recalled. */
static HeapTuple
guard_recalled(RecallTable *cfg, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			ncols = 0;
	int		   *cols = palloc(sizeof(int) * (cfg->ncontent + 3));
	Datum	   *values = palloc(sizeof(Datum) * (cfg->ncontent + 3));
	bool	   *nulls = palloc(sizeof(bool) * (cfg->ncontent + 3));

	if (heap_attisnull(newtup, cfg->recalled_at_att, tupdesc))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot un-recall a message of table \"%s\"", cfg->relname),
				 errdetail("A recalled message stays recalled: recalled_at cannot be set back to NULL.")));

	if (!same_value(oldtup, newtup, tupdesc, cfg->recalled_at_att))
	{
		/* a repeated recall: the first one's stamp stands */
		AttrNumber	stamp[3] = {cfg->recalled_at_att, cfg->recalled_by_att, cfg->reason_att};

		for (int i = 0; i < 3; i++)
		{
			cols[ncols] = stamp[i];
			values[ncols] = heap_getattr(oldtup, stamp[i], tupdesc, &nulls[ncols]);
			ncols++;
		}
	}
	else if (!same_value(oldtup, newtup, tupdesc, cfg->recalled_by_att) ||
			 !same_value(oldtup, newtup, tupdesc, cfg->reason_att))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot change recalled_by or recall_reason of a recalled message of table \"%s\"",
						cfg->relname),
				 errdetail("A recall's actor and reason are fixed when it happens.")));

	for (int i = 0; i < cfg->ncontent; i++)
	{
		RecallContentColumn *col = &cfg->content[i];
		bool		isnull;
		bool		exact;
		Datum		d = heap_getattr(newtup, col->attnum, tupdesc, &isnull);

		if (recall_content_is_wiped(col, d, isnull, &exact))
		{
			if (exact)
				continue;
		}
		else if (!cfg->keep_wiped)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot change content of a recalled message of table \"%s\"",
							cfg->relname),
					 errdetail("Column \"%s\" of a recalled message must keep its wiped value.",
							   NameStr(TupleDescAttr(tupdesc, col->attnum - 1)->attname)),
					 errhint("Leave the content columns of recalled messages as they are, or enable the table with on_recalled_write => 'keep_wiped'.")));
		/* keep (or normalise to) the wiped value */
		cols[ncols] = col->attnum;
		values[ncols] = col->wiped;
		nulls[ncols] = col->wiped_isnull;
		ncols++;
	}

	if (ncols == 0)
		return newtup;
	return heap_modify_tuple_by_cols(newtup, tupdesc, ncols, cols, values, nulls);
}

/*
 * recall.guard_trigger(): BEFORE UPDATE FOR EACH ROW.
 */
Datum
recall_guard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	RecallTable *cfg;
	TupleDesc	tupdesc;
	HeapTuple	oldtup;
	HeapTuple	newtup;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"recall.guard_trigger")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired BEFORE UPDATE FOR EACH ROW",
						"recall.guard_trigger")));

	cfg = recall_get_table(trigdata->tg_relation, false);
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	oldtup = trigdata->tg_trigtuple;
	newtup = trigdata->tg_newtuple;

	if (!heap_attisnull(oldtup, cfg->recalled_at_att, tupdesc))
		newtup = guard_recalled(cfg, trigdata->tg_relation, oldtup, newtup);
	else if (!heap_attisnull(newtup, cfg->recalled_at_att, tupdesc))
		newtup = guard_recall(cfg, trigdata->tg_relation, oldtup, newtup);

	return PointerGetDatum(newtup);
}
