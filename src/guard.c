/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The one trigger of an enabled table: "~recall_guard".
 *
 * BEFORE INSERT OR UPDATE, FOR EACH ROW, ENABLE ALWAYS, without a WHEN
 * clause: a row that is no recall costs a C call, not the parse of a WHEN
 * clause or a CHECK expression.  It fires after every other BEFORE trigger
 * (name order), so it judges the row as it would be stored:
 *	- the invariant (a recalled row holds its wiped values, 23514) on every
 *	  INSERT and, under session_replication_role = replica (a logical
 *	  replication subscriber applying the publisher's already wiped rows),
 *	  on every UPDATE; nothing else fires there;
 *	- a recall (recalled_at NULL -> non-NULL) is stamped with the
 *	  transaction's time, the actor and the reason, checked, wiped, and
 *	  logged (event row, audit row, copies, notification: events.c);
 *	- a recalled row stays recalled: a repeated recall is a no-op, an
 *	  un-recall or an edit is refused (or, with keep_wiped, the content
 *	  keeps its wiped value);
 *	- the sender and sent_at of a message, on which a recall is judged,
 *	  change only by the table's owner or an admin.
 * The executor has locked the old row before a BEFORE UPDATE row trigger
 * runs (GetTupleForTrigger), so what is written here is as transactional
 * as anything an AFTER trigger would write.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_guard_trigger);

/* The microseconds a window spans, as interval comparison counts them. */
static int64
window_usecs(const Interval *window)
{
	return window->time +
		((int64) window->month * DAYS_PER_MONTH + window->day) * USECS_PER_DAY;
}

/*
 * sent_at of a row as timestamptz; false if null.  A timestamp without
 * time zone is read in the zone fixed when the table was enabled, so that
 * SET TIME ZONE cannot move a window.
 */
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
			{
				Timestamp	ts = DatumGetTimestamp(d);
				struct pg_tm tt;
				fsec_t		fsec;
				int			tz;

				if (TIMESTAMP_NOT_FINITE(ts) ||
					timestamp2tm(ts, NULL, &tt, &fsec, NULL, NULL) != 0)
				{
					*result = ts;
					break;
				}
				tz = DetermineTimeZoneOffset(&tt, cfg->sent_at_zone);
				if (tm2timestamp(&tt, fsec, &tz, result) != 0)
					*result = ts;
				break;
			}
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
	end = sent + window_usecs(&cfg->window);
	if (window_end)
		*window_end = end;
	return now <= end;
}

/* Refuse a recall that is not the sender's, saying why. */
static void
refuse_not_self(RecallTable *cfg, HeapTuple oldtup, TupleDesc tupdesc,
				const char *actor, TimestampTz window_end)
{
	bool		isnull;
	char	   *sender;
	char	   *message = psprintf("permission denied to recall a message of table \"%s\"",
								   cfg->relname);

	if (cfg->sender_att == InvalidAttrNumber)
		recall_refuse(cfg, actor, message,
					  psprintf("Table \"%s\" has no sender column, so only members of recall_admin may recall, with a reason.",
							   cfg->relname),
					  NULL);

	sender = recall_text_of(oldtup, tupdesc, cfg->sender_att, &isnull);
	if (!isnull && strcmp(sender, actor) == 0 && window_end != 0)
		recall_refuse(cfg, actor, message,
					  psprintf("The recall window of %s elapsed at %s.",
							   DatumGetCString(DirectFunctionCall1(interval_out,
																   PointerGetDatum(&cfg->window))),
							   timestamptz_to_str(window_end)),
					  "A member of recall_admin may still recall it, with a reason.");
	if (!isnull && strcmp(sender, actor) == 0)
		recall_refuse(cfg, actor, message,
					  "The message has no sent_at time, so its recall window cannot be checked.",
					  "A member of recall_admin may still recall it, with a reason.");
	recall_refuse(cfg, actor, message,
				  psprintf("Actor \"%s\" is not the sender of the message and is not a member of recall_admin.",
						   actor),
				  NULL);
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

/* Text value of a column, NULL if null. */
static char *
text_or_null(HeapTuple tup, TupleDesc tupdesc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, tupdesc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Is the current user a member of recall_admin (superusers are)? */
bool
recall_is_admin(void)
{
	Oid			admin = get_role_oid("recall_admin", true);

	return superuser() || (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin));
}

/*
 * The invariant, as the CHECK of 1.0 held it: every content column of a
 * recalled row holds its wiped value (or the empty value of its type, which
 * a table's own trigger may recompute from wiped content).  The error names
 * the column, never its value.
 */
static void
check_invariant(RecallTable *cfg, Relation rel, HeapTuple tup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);

	if (heap_attisnull(tup, cfg->recalled_at_att, tupdesc))
		return;
	for (int i = 0; i < cfg->ncontent; i++)
	{
		RecallContentColumn *col = &cfg->content[i];
		bool		isnull;
		bool		exact;
		Datum		d = heap_getattr(tup, col->attnum, tupdesc, &isnull);

		if (!recall_content_is_wiped(col, d, isnull, &exact))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("new row for relation \"%s\" violates the recall invariant",
							RelationGetRelationName(rel)),
					 errdetail("Column \"%s\" of a recalled message must hold its wiped value.",
							   NameStr(TupleDescAttr(tupdesc, col->attnum - 1)->attname)),
					 errtableconstraint(rel, "recall_wiped")));
	}
}

/*
 * A message's sender and sent_at decide who may recall it and until when:
 * an UPDATE that changes them (to take a message over, or to restart its
 * window) is for the table's owner and admins only.
 */
static void
check_identity_unchanged(RecallTable *cfg, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	AttrNumber	cols[2] = {cfg->sender_att, cfg->sent_at_att};

	for (int i = 0; i < 2; i++)
	{
		if (cols[i] == InvalidAttrNumber || same_value(oldtup, newtup, tupdesc, cols[i]))
			continue;
		if (recall_is_owner(cfg->root_relid, GetUserId()) || recall_is_admin())
			return;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change column \"%s\" of a message of table \"%s\"",
						NameStr(TupleDescAttr(tupdesc, cols[i] - 1)->attname), cfg->relname),
				 errdetail("A message's sender and sent time decide who may recall it and until when."),
				 errhint("Only the table's owner and members of recall_admin may change them.")));
	}
}

/* Refuse a recall that also moves the message (its key, its partition). */
static void
check_not_moved(RecallTable *cfg, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);

	for (int i = 0; i < cfg->npartkey; i++)
		if (!same_value(oldtup, newtup, tupdesc, cfg->partkey_attnums[i]))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the partition key of a message of table \"%s\" while recalling it",
							cfg->relname),
					 errdetail("Column \"%s\" is part of a partition key; moving the row to another partition would bypass the recall's event.",
							   NameStr(TupleDescAttr(tupdesc, cfg->partkey_attnums[i] - 1)->attname)),
					 errhint("Recall the message first, then change its partition key in another statement.")));
	for (int i = 0; i < cfg->nkeys; i++)
		if (!same_value(oldtup, newtup, tupdesc, cfg->key_attnums[i]))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the key of a message of table \"%s\" while recalling it",
							cfg->relname),
					 errdetail("Column \"%s\" is part of the message key; the recall's event and copies name the message by its key.",
							   cfg->key_names[i]),
					 errhint("Recall the message first, then change its key in another statement.")));
}

/* Stamp, check, wipe and log a row being recalled. */
static HeapTuple
guard_recall(RecallTable *cfg, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	RecallStamp stamp;
	TimestampTz window_end;
	int			ncols = cfg->ncontent + 3;
	int		   *cols = palloc(sizeof(int) * ncols);
	Datum	   *values = palloc(sizeof(Datum) * ncols);
	bool	   *nulls = palloc(sizeof(bool) * ncols);
	HeapTuple	result;

	check_not_moved(cfg, rel, oldtup, newtup);

	/* the transaction's start; on Citus, the distributed transaction's (citus.c) */
	stamp.at = recall_citus_recall_time();
	stamp.actor = recall_resolve_actor(cfg, text_or_null(newtup, tupdesc, cfg->recalled_by_att));
	stamp.reason = recall_given_reason(text_or_null(newtup, tupdesc, cfg->reason_att));
	stamp.privileged = false;

	if (!recall_is_self(cfg, oldtup, tupdesc, stamp.actor, stamp.at, &window_end))
	{
		if (!recall_is_admin())
			refuse_not_self(cfg, oldtup, tupdesc, stamp.actor, window_end);
		if (stamp.reason == NULL)
			recall_refuse(cfg, stamp.actor,
						  psprintf("permission denied to recall a message of table \"%s\" without a reason",
								   cfg->relname),
						  psprintf("Actor \"%s\" is not the sender within the recall window, so the recall uses admin power, which needs a reason.",
								   stamp.actor),
						  "Set recall_reason in the statement, pass reason => to recall.recall(), or set recall.reason.");
		stamp.privileged = true;
	}

	cols[0] = cfg->recalled_at_att;
	values[0] = TimestampTzGetDatum(stamp.at);
	nulls[0] = false;
	cols[1] = cfg->recalled_by_att;
	values[1] = CStringGetTextDatum(stamp.actor);
	nulls[1] = false;
	cols[2] = cfg->reason_att;
	values[2] = stamp.reason ? CStringGetTextDatum(stamp.reason) : (Datum) 0;
	nulls[2] = (stamp.reason == NULL);
	for (int i = 0; i < cfg->ncontent; i++)
	{
		cols[3 + i] = cfg->content[i].attnum;
		values[3 + i] = cfg->content[i].wiped;
		nulls[3 + i] = cfg->content[i].wiped_isnull;
	}
	result = heap_modify_tuple_by_cols(newtup, tupdesc, ncols, cols, values, nulls);

	/* event, audit, copies and notification, in this statement */
	recall_log_recall(cfg, rel, oldtup, result, &stamp);
	return result;
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
 * The settings of the trigger's relation.  The entry is remembered in the
 * trigger's FmgrInfo (one per statement and relation), so that the rows of
 * a statement after the first pay a pointer check, not a hash lookup.
 */
static RecallTable *
guard_settings(FunctionCallInfo fcinfo, Relation rel)
{
	RecallTable *cfg = (RecallTable *) fcinfo->flinfo->fn_extra;

	if (cfg == NULL || !cfg->valid || cfg->relid != RelationGetRelid(rel))
	{
		cfg = recall_get_table(rel, false);
		fcinfo->flinfo->fn_extra = cfg;
	}
	return cfg;
}

/*
 * recall.guard_trigger(): BEFORE INSERT OR UPDATE FOR EACH ROW.
 */
Datum
recall_guard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = recall_trigger_data(fcinfo, "recall.guard_trigger",
												RECALL_FIRED_BEFORE | RECALL_FIRED_ROW |
												RECALL_FIRED_INSERT | RECALL_FIRED_UPDATE,
												"BEFORE INSERT OR UPDATE FOR EACH ROW");
	RecallTable *cfg;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	oldtup;
	HeapTuple	newtup;

	rel = trigdata->tg_relation;
	cfg = guard_settings(fcinfo, rel);

	if (cfg->late_trigger != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("trigger \"%s\" on table \"%s\" fires after \"%s\"",
						cfg->late_trigger, RelationGetRelationName(rel), RECALL_GUARD_TRIGGER),
				 errdetail("A BEFORE ROW trigger that fires after pg_recall's guard could put recalled content back, so writes to the table are refused."),
				 errhint("Rename the trigger so that its name sorts before \"%s\" (triggers fire in name order).",
						 RECALL_GUARD_TRIGGER)));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		check_invariant(cfg, rel, trigdata->tg_trigtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	tupdesc = RelationGetDescr(rel);
	oldtup = trigdata->tg_trigtuple;
	newtup = trigdata->tg_newtuple;

	/* a subscriber applies the publisher's rows, recalled there already */
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
	{
		check_invariant(cfg, rel, newtup);
		return PointerGetDatum(newtup);
	}

	if (!heap_attisnull(oldtup, cfg->recalled_at_att, tupdesc))
		newtup = guard_recalled(cfg, rel, oldtup, newtup);
	else if (!heap_attisnull(newtup, cfg->recalled_at_att, tupdesc))
		newtup = guard_recall(cfg, rel, oldtup, newtup);
	else
		check_identity_unchanged(cfg, rel, oldtup, newtup);

	return PointerGetDatum(newtup);
}
