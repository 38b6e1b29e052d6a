/*-------------------------------------------------------------------------
 *
 * copies.c
 *	  Copies of a message's text, wiped with it (recall.copies).
 *
 * A copy table holds rows that point at a message through its match
 * columns: a quote, a conversation preview, a search side table, an
 * earlier version.  Two paths keep recalled text out of them:
 *	- on recall, "~recall_event" calls recall_wipe_copies(), which wipes or
 *	  deletes the matching rows in the same statement, as the owner of the
 *	  message table (row-level security not forced) with search_path
 *	  pinned, so the application needs no privilege on the copy tables;
 *	- "~recall_copy_guard" (BEFORE INSERT OR UPDATE on the copy table) and
 *	  "~recall_copy_delete" (AFTER UPDATE, for 'delete' copies) give a row
 *	  written later that points at a recalled message the same treatment.
 *	  A message counts as recalled while its row is, or, once deleted,
 *	  while recall.events holds its recall.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/resowner.h"
#include "access/xact.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_copy_guard_trigger);
PG_FUNCTION_INFO_V1(recall_treat_existing_copies);

/* One registration of recall.copies. */
typedef struct CopyReg
{
	Oid			tbl;
	Oid			copy;
	bool		is_delete;
	int			nkeys;
	char	  **match_names;
	Oid		   *match_types;
	Oid		   *key_types;
	char	  **key_names;
	int			ncontent;
	char	  **content_names;
	char	  **wiped;			/* literal, NULL for SQL NULL */
	char	   *copy_name;		/* quoted, qualified */
	char	   *tbl_name;
	Oid			tbl_owner;
	SPIPlanPtr	wipe_plan;		/* on recall: wipe or delete the copies */
	SPIPlanPtr	lock_plan;		/* the message's row, locked FOR SHARE */
	SPIPlanPtr	check_plan;		/* its recall in recall.events */
} CopyReg;

/* Registrations that concern one relation, as message table or copy. */
typedef struct CopyEntry
{
	Oid			relid;
	bool		valid;
	MemoryContext mcxt;
	List	   *as_tbl;			/* copies of this table's messages */
	List	   *as_copy;		/* registrations whose copy is this table */
} CopyEntry;

static HTAB *CopyHash = NULL;

/* while recall_wipe_copies runs: the copy UPDATE is not a statement of its own */
bool		recall_in_copy_wipe = false;

/* Mark entries stale on any invalidation of a relation they involve. */
static void
copies_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CopyEntry  *entry;

	if (CopyHash == NULL)
		return;
	hash_seq_init(&status, CopyHash);
	while ((entry = (CopyEntry *) hash_seq_search(&status)) != NULL)
	{
		ListCell   *lc;
		bool		hit = (relid == InvalidOid || entry->relid == relid);

		foreach(lc, entry->as_tbl)
			hit |= (((CopyReg *) lfirst(lc))->copy == relid);
		foreach(lc, entry->as_copy)
			hit |= (((CopyReg *) lfirst(lc))->tbl == relid);
		if (hit)
			entry->valid = false;
	}
}

/* Register the invalidation callback; called from _PG_init. */
void
recall_copies_init(void)
{
	CacheRegisterRelcacheCallback(copies_relcache_callback, (Datum) 0);
}

/*
 * Append pg_catalog.jsonb_build_object('k1', $n::t1, ...): a message key as
 * recall.events stores it.
 */
void
recall_append_key_object(StringInfo sql, char **names, int n, int first_param,
						 Oid *cast_types)
{
	appendStringInfoString(sql, "pg_catalog.jsonb_build_object(");
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(sql, "%s%s, $%d", i > 0 ? ", " : "",
						 quote_literal_cstr(names[i]), first_param + i);
		if (cast_types)
			appendStringInfo(sql, "::%s", format_type_be_qualified(cast_types[i]));
	}
	appendStringInfoChar(sql, ')');
}

/* Names of a name[] datum, copied into the current context. */
static char **
name_array(Datum d, int *n)
{
	Datum	   *elems;
	char	  **names;

	deconstruct_array(DatumGetArrayTypeP(d), NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, NULL, n);
	names = palloc(sizeof(char *) * (*n + 1));
	for (int i = 0; i < *n; i++)
		names[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	return names;
}

/* Quoted, schema-qualified name of a relation. */
static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* Load the registrations that concern relid. */
static void
load_copy_entry(CopyEntry *entry)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext newcxt;
	MemoryContext oldcxt;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	int			ret;
	List	   *as_tbl = NIL;
	List	   *as_copy = NIL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = ObjectIdGetDatum(entry->relid);
	ret = SPI_execute_with_args("SELECT c.tbl::pg_catalog.oid, c.copy::pg_catalog.oid, c.match,"
								" c.content, c.wiped_values, c.action, t.key_columns"
								" FROM recall.copies c JOIN recall.tables t"
								"  ON t.tbl OPERATOR(pg_catalog.=) c.tbl"
								" WHERE c.tbl::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
								"    OR c.copy::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.copies failed: %s", SPI_result_code_string(ret));

	newcxt = AllocSetContextCreate(callercxt, "pg_recall copies", ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(newcxt);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		CopyReg    *reg = palloc0(sizeof(CopyReg));
		bool		isnull;
		Datum		d;
		int			n;
		HeapTuple	classtup;

		reg->tbl = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		reg->copy = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		reg->match_names = name_array(SPI_getbinval(tup, desc, 3, &isnull), &reg->nkeys);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *elemnulls;

			reg->content_names = name_array(d, &reg->ncontent);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 5, &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &elems, &elemnulls, &n);
			reg->wiped = palloc0(sizeof(char *) * (n + 1));
			for (int i = 0; i < n && i < reg->ncontent; i++)
				reg->wiped[i] = elemnulls[i] ? NULL : TextDatumGetCString(elems[i]);
		}
		reg->is_delete = (strcmp(SPI_getvalue(tup, desc, 6), "delete") == 0);
		reg->key_names = name_array(SPI_getbinval(tup, desc, 7, &isnull), &n);
		if (n != reg->nkeys)
			elog(ERROR, "copy registration has %d match columns for a key of %d", reg->nkeys, n);
		reg->match_types = palloc(sizeof(Oid) * reg->nkeys);
		reg->key_types = palloc(sizeof(Oid) * reg->nkeys);
		for (int i = 0; i < reg->nkeys; i++)
		{
			if (get_attnum(reg->copy, reg->match_names[i]) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" of copy table \"%s\" does not exist",
								reg->match_names[i], get_rel_name(reg->copy)),
						 errhint("Register the copy again with recall.drop_copy() and recall.add_copy().")));
			reg->match_types[i] = get_atttype(reg->copy, get_attnum(reg->copy, reg->match_names[i]));
			reg->key_types[i] = get_atttype(reg->tbl, get_attnum(reg->tbl, reg->key_names[i]));
		}
		reg->copy_name = qualified_name(reg->copy);
		reg->tbl_name = qualified_name(reg->tbl);
		classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(reg->tbl));
		if (!HeapTupleIsValid(classtup))
			elog(ERROR, "cache lookup failed for relation %u", reg->tbl);
		reg->tbl_owner = ((Form_pg_class) GETSTRUCT(classtup))->relowner;
		ReleaseSysCache(classtup);

		if (reg->tbl == entry->relid)
			as_tbl = lappend(as_tbl, reg);
		if (reg->copy == entry->relid)
			as_copy = lappend(as_copy, reg);
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();

	MemoryContextSetParent(newcxt, CacheMemoryContext);
	if (entry->mcxt != NULL)
	{
		ListCell   *lc;

		/* a table that is its own copy has its registration in both lists */
		List	   *regs = list_concat_unique_ptr(list_copy(entry->as_tbl), entry->as_copy);

		/* the old plans may be running (a nested recall): free them at commit */
		foreach(lc, regs)
		{
			CopyReg    *reg = (CopyReg *) lfirst(lc);

			recall_retire_plan(reg->wipe_plan);
			recall_retire_plan(reg->lock_plan);
			recall_retire_plan(reg->check_plan);
		}
		recall_retire_context(entry->mcxt);
	}
	entry->as_tbl = as_tbl;
	entry->as_copy = as_copy;
	entry->mcxt = newcxt;
	entry->valid = true;
}

/* The registrations that concern relid, from cache. */
static CopyEntry *
copy_entry(Oid relid)
{
	CopyEntry  *entry;
	bool		found;

	if (CopyHash == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CopyEntry);
		ctl.hcxt = CacheMemoryContext;
		CopyHash = hash_create("pg_recall copies", 32, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = (CopyEntry *) hash_search(CopyHash, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->mcxt = NULL;
		entry->valid = false;
		entry->as_tbl = NIL;
		entry->as_copy = NIL;
	}
	/* the entry changes only once a load has succeeded */
	if (!entry->valid)
		load_copy_entry(entry);
	return entry;
}

/* Prepare the statement that wipes or deletes the copies of a message. */
static SPIPlanPtr
prepare_wipe_plan(CopyReg *reg)
{
	StringInfoData sql;
	SPIPlanPtr	plan;

	initStringInfo(&sql);
	if (reg->is_delete)
		appendStringInfo(&sql, "DELETE FROM %s", reg->copy_name);
	else
	{
		appendStringInfo(&sql, "UPDATE %s SET ", reg->copy_name);
		for (int i = 0; i < reg->ncontent; i++)
		{
			AttrNumber	att = get_attnum(reg->copy, reg->content_names[i]);
			Oid			typid;
			int32		typmod;
			Oid			collid;

			if (att == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" of copy table \"%s\" does not exist",
								reg->content_names[i], get_rel_name(reg->copy)),
						 errhint("Register the copy again with recall.drop_copy() and recall.add_copy().")));

			get_atttypetypmodcoll(reg->copy, att, &typid, &typmod, &collid);

			appendStringInfo(&sql, "%s%s = ", i > 0 ? ", " : "",
							 quote_identifier(reg->content_names[i]));
			if (reg->wiped[i] == NULL)
				appendStringInfoString(&sql, "NULL");
			else
				appendStringInfo(&sql, "%s::%s", quote_literal_cstr(reg->wiped[i]),
								 format_type_extended(typid, typmod,
													  FORMAT_TYPE_TYPEMOD_GIVEN |
													  FORMAT_TYPE_FORCE_QUALIFY));
		}
	}
	appendStringInfoString(&sql, " WHERE ");
	for (int i = 0; i < reg->nkeys; i++)
		appendStringInfo(&sql, "%s%s OPERATOR(pg_catalog.=) $%d::%s", i > 0 ? " AND " : "",
						 quote_identifier(reg->match_names[i]), i + 1,
						 format_type_be_qualified(reg->match_types[i]));
	plan = SPI_prepare(sql.data, reg->nkeys, reg->key_types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Wipe or delete the registered copies of the message in tup, just
 * recalled.  Called by "~recall_event" in the recall's statement.
 */
void
recall_wipe_copies(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc)
{
	CopyEntry  *entry = copy_entry(cfg->root_relid);
	ListCell   *lc;
	Datum	   *keys;
	char	   *nulls;
	RecallBecome become;

	if (entry->as_tbl == NIL)
		return;

	keys = palloc(sizeof(Datum) * cfg->nkeys);
	nulls = palloc(sizeof(char) * cfg->nkeys);
	for (int i = 0; i < cfg->nkeys; i++)
	{
		bool		isnull;

		keys[i] = heap_getattr(tup, cfg->key_attnums[i], tupdesc, &isnull);
		nulls[i] = isnull ? 'n' : ' ';
	}

	/*
	 * As the message table's owner (every registration here is one of its
	 * copies), search_path pinned, row-level security not forced.
	 */
	recall_become(((CopyReg *) linitial(entry->as_tbl))->tbl_owner,
				  SECURITY_NOFORCE_RLS, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, entry->as_tbl)
	{
		CopyReg    *reg = (CopyReg *) lfirst(lc);
		int			ret;
		bool		save_in_copy_wipe = recall_in_copy_wipe;

		if (reg->wipe_plan == NULL)
			reg->wipe_plan = prepare_wipe_plan(reg);
		recall_in_copy_wipe = true;
		ret = SPI_execute_plan(reg->wipe_plan, keys, nulls, false, 0);
		recall_in_copy_wipe = save_in_copy_wipe;
		if (ret != SPI_OK_UPDATE && ret != SPI_OK_DELETE)
			elog(ERROR, "wiping copies in %s failed: %s", reg->copy_name,
				 SPI_result_code_string(ret));
	}
	SPI_finish();
	recall_unbecome(&become);
}

/* A key parameter cast from the match column's type when they differ. */
static void
append_key_param(StringInfo sql, CopyReg *reg, int i)
{
	appendStringInfo(sql, "$%d", i + 1);
	if (reg->match_types[i] != reg->key_types[i])
		appendStringInfo(sql, "::%s", format_type_be_qualified(reg->key_types[i]));
}

/*
 * Prepare the checks: the message's row, locked FOR SHARE so that a recall
 * in flight is waited for (and a recall that comes later waits for this
 * copy, then wipes it); else its recall in recall.events, once deleted.
 */
static void
prepare_check_plans(CopyReg *reg)
{
	StringInfoData sql;
	Oid		   *argtypes = palloc(sizeof(Oid) * (reg->nkeys + 1));

	for (int i = 0; i < reg->nkeys; i++)
		argtypes[i] = reg->match_types[i];
	argtypes[reg->nkeys] = REGCLASSOID;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT recalled_at IS NOT NULL FROM %s WHERE ", reg->tbl_name);
	for (int i = 0; i < reg->nkeys; i++)
	{
		appendStringInfo(&sql, "%s%s OPERATOR(pg_catalog.=) ", i > 0 ? " AND " : "",
						 quote_identifier(reg->key_names[i]));
		append_key_param(&sql, reg, i);
	}
	appendStringInfoString(&sql, " FOR SHARE");
	reg->lock_plan = SPI_prepare(sql.data, reg->nkeys, argtypes);
	if (reg->lock_plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(reg->lock_plan);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "SELECT EXISTS (SELECT 1 FROM recall.events e"
					 " WHERE e.tbl OPERATOR(pg_catalog.=) $%d AND e.pk OPERATOR(pg_catalog.=) ",
					 reg->nkeys + 1);
	recall_append_key_object(&sql, reg->key_names, reg->nkeys, 1,
							 memcmp(reg->match_types, reg->key_types, sizeof(Oid) * reg->nkeys) == 0
							 ? NULL : reg->key_types);
	appendStringInfoChar(&sql, ')');
	reg->check_plan = SPI_prepare(sql.data, reg->nkeys + 1, argtypes);
	if (reg->check_plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(reg->check_plan);
}

/* Run the checks of prepare_check_plans. */
static bool
run_checks(CopyReg *reg, Datum *args)
{
	int			ret;
	bool		isnull;
	bool		recalled = false;

	if (reg->lock_plan == NULL || reg->check_plan == NULL)
		prepare_check_plans(reg);
	ret = SPI_execute_plan(reg->lock_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "checking a copy's message failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
		return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	ret = SPI_execute_plan(reg->check_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "checking a copy's message failed: %s", SPI_result_code_string(ret));
	recalled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return recalled;
}

/* Arguments and result of run_checks, for recall_try. */
typedef struct CheckCall
{
	CopyReg    *reg;
	Datum	   *args;
	bool		recalled;
} CheckCall;

static void
run_checks_call(void *arg)
{
	CheckCall  *call = (CheckCall *) arg;

	call->recalled = run_checks(call->reg, call->args);
}

/*
 * run_checks in a subtransaction, for match columns whose values need a
 * cast to the key's type: a value that is no key (a text match holding
 * "$abc:matrix.org" for a bigint key) points at no message.
 */
static bool
run_checks_guarded(CopyReg *reg, Datum *args)
{
	CheckCall	call = {reg, args, false};
	ErrorData  *edata = recall_try(run_checks_call, &call);

	if (edata == NULL)
		return call.recalled;
	/* only a value that does not convert means "no such message" */
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/*
 * Does the row tup of the copy table point at a recalled message of reg's
 * table?  False when a match column is null.
 */
static bool
points_at_recalled(CopyReg *reg, HeapTuple tup, TupleDesc tupdesc)
{
	Datum	   *args = palloc(sizeof(Datum) * (reg->nkeys + 1));
	RecallBecome become;
	bool		isnull;
	bool		recalled;

	for (int i = 0; i < reg->nkeys; i++)
	{
		int			att = SPI_fnumber(tupdesc, reg->match_names[i]);

		if (att <= 0)
			return false;
		args[i] = heap_getattr(tup, att, tupdesc, &isnull);
		if (isnull)
			return false;
	}
	args[reg->nkeys] = ObjectIdGetDatum(reg->tbl);

	/* the logs are the extension owner's to read; a fixed path keeps plans */
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (memcmp(reg->match_types, reg->key_types, sizeof(Oid) * reg->nkeys) == 0)
		recalled = run_checks(reg, args);
	else
		recalled = run_checks_guarded(reg, args);
	SPI_finish();
	recall_unbecome(&become);
	return recalled;
}

/* Did an UPDATE leave a copy row's match and content columns as they were? */
static bool
copy_row_unchanged(CopyReg *reg, HeapTuple oldtup, HeapTuple newtup, TupleDesc tupdesc)
{
	for (int i = 0; i < reg->nkeys + reg->ncontent; i++)
	{
		const char *name = i < reg->nkeys ? reg->match_names[i] : reg->content_names[i - reg->nkeys];
		int			att = SPI_fnumber(tupdesc, name);
		bool		onull;
		bool		nnull;
		Datum		od;
		Datum		nd;
		Form_pg_attribute attr;

		if (att <= 0)
			return false;
		attr = TupleDescAttr(tupdesc, att - 1);
		od = heap_getattr(oldtup, att, tupdesc, &onull);
		nd = heap_getattr(newtup, att, tupdesc, &nnull);
		if (onull != nnull ||
			(!onull && !datum_image_eq(od, nd, attr->attbyval, attr->attlen)))
			return false;
	}
	return true;
}

/* The copy registrations of rel, or of the nearest ancestor that has some. */
static List *
copy_regs_for(Relation rel)
{
	CopyEntry  *entry = copy_entry(RelationGetRelid(rel));

	if (entry->as_copy == NIL && rel->rd_rel->relispartition)
	{
		ListCell   *lc;

		foreach(lc, get_partition_ancestors(RelationGetRelid(rel)))
		{
			entry = copy_entry(lfirst_oid(lc));
			if (entry->as_copy != NIL)
				break;
		}
	}
	return entry->as_copy;
}

/* Set a row's copied content to its wiped values. */
static HeapTuple
wipe_copy_row(CopyReg *reg, HeapTuple tup, TupleDesc tupdesc)
{
	int		   *cols = palloc(sizeof(int) * reg->ncontent);
	Datum	   *values = palloc(sizeof(Datum) * reg->ncontent);
	bool	   *nulls = palloc(sizeof(bool) * reg->ncontent);
	int			n = 0;

	for (int i = 0; i < reg->ncontent; i++)
	{
		int			att = SPI_fnumber(tupdesc, reg->content_names[i]);
		Form_pg_attribute attr;

		if (att <= 0)
			continue;
		attr = TupleDescAttr(tupdesc, att - 1);
		cols[n] = att;
		nulls[n] = (reg->wiped[i] == NULL);
		values[n] = reg->wiped[i] == NULL ? (Datum) 0
			: recall_datum_from_text(reg->wiped[i], attr->atttypid, attr->atttypmod);
		n++;
	}
	return heap_modify_tuple_by_cols(tup, tupdesc, n, cols, values, nulls);
}

/*
 * recall.copy_guard_trigger(): BEFORE INSERT OR UPDATE and AFTER UPDATE
 * FOR EACH ROW on a copy table.
 */
Datum
recall_copy_guard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tup;
	ListCell   *lc;
	bool		before;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"recall.copy_guard_trigger")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired FOR EACH ROW on INSERT or UPDATE",
						"recall.copy_guard_trigger")));

	/* the recall's own wipe of its copies needs no second look */
	if (recall_in_copy_wipe)
		return TRIGGER_FIRED_BEFORE(trigdata->tg_event)
			? PointerGetDatum(trigdata->tg_newtuple) : PointerGetDatum(NULL);

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	before = TRIGGER_FIRED_BEFORE(trigdata->tg_event);
	tup = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
		: trigdata->tg_trigtuple;

	foreach(lc, copy_regs_for(rel))
	{
		CopyReg    *reg = (CopyReg *) lfirst(lc);

		/* an UPDATE that leaves match and content alone (a flag) changes nothing */
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
			copy_row_unchanged(reg, trigdata->tg_trigtuple, tup, tupdesc))
			continue;

		if (before)
		{
			/* an updated row of a 'delete' copy goes after the update */
			if (reg->is_delete && TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
				continue;
			if (!points_at_recalled(reg, tup, tupdesc))
				continue;
			if (reg->is_delete)
				return PointerGetDatum(NULL);	/* the insert is skipped */
			tup = wipe_copy_row(reg, tup, tupdesc);
		}
		else if (reg->is_delete && TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
				 points_at_recalled(reg, tup, tupdesc))
		{
			Oid			argtypes[1] = {TIDOID};
			Datum		args[1];
			RecallBecome become;
			int			ret;

			args[0] = PointerGetDatum(&tup->t_self);
			recall_become(reg->tbl_owner, SECURITY_NOFORCE_RLS, false, &become);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE ctid OPERATOR(pg_catalog.=) $1",
												 qualified_name(RelationGetRelid(rel))),
										1, argtypes, args, NULL, false, 0);
			if (ret != SPI_OK_DELETE)
				elog(ERROR, "deleting a copy failed: %s", SPI_result_code_string(ret));
			SPI_finish();
			recall_unbecome(&become);
			break;
		}
	}

	if (!before)
		return PointerGetDatum(NULL);
	return PointerGetDatum(tup);
}

/*
 * recall._treat_existing_copies(tbl regclass, copy regclass, match name[])
 * returns bigint: give the copy rows that point at messages recalled
 * before the registration (still there, or deleted since) the treatment of
 * a recall.  Run by recall.add_copy(); the caller must own both tables.
 * Keys are compared as text here, so that a copy value that is no key
 * simply matches nothing.
 */
Datum
recall_treat_existing_copies(PG_FUNCTION_ARGS)
{
	Oid			tbl = PG_GETARG_OID(0);
	Oid			copy = PG_GETARG_OID(1);
	int			nmatch;
	char	  **match = name_array(PG_GETARG_DATUM(2), &nmatch);
	CopyEntry  *entry;
	CopyReg    *reg = NULL;
	ListCell   *lc;
	StringInfoData sql;
	StringInfoData cond;
	RecallBecome become;
	int			ret;
	Datum		pks;
	bool		isnull;
	Oid			argtypes[1] = {JSONBOID};
	uint64		n;
	bool		save_in_copy_wipe = recall_in_copy_wipe;

	if (!recall_is_owner(tbl, GetUserId()) || !recall_is_owner(copy, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of tables \"%s\" and \"%s\"",
						get_rel_name(tbl), get_rel_name(copy))));

	entry = copy_entry(tbl);
	foreach(lc, entry->as_tbl)
	{
		CopyReg    *r = (CopyReg *) lfirst(lc);
		bool		same = (r->copy == copy && r->nkeys == nmatch);

		for (int i = 0; same && i < nmatch; i++)
			same = (strcmp(r->match_names[i], match[i]) == 0);
		if (same)
			reg = r;
	}
	if (reg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("copy of table \"%s\" in \"%s\" is not registered",
						get_rel_name(tbl), get_rel_name(copy))));

	/* the keys of recalled messages since deleted, from the log */
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, false, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			types[1] = {REGCLASSOID};
		Datum		args[1] = {ObjectIdGetDatum(tbl)};

		ret = SPI_execute_with_args("SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT e.pk), '[]')"
									" FROM recall.events e WHERE e.tbl OPERATOR(pg_catalog.=) $1",
									1, types, args, NULL, true, 1);
	}
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));
	pks = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							false, -1);
	SPI_finish();
	recall_unbecome(&become);

	initStringInfo(&cond);
	appendStringInfo(&cond, " WHERE EXISTS (SELECT 1 FROM %s t WHERE t.recalled_at IS NOT NULL", reg->tbl_name);
	for (int i = 0; i < reg->nkeys; i++)
		appendStringInfo(&cond, " AND t.%s::pg_catalog.text OPERATOR(pg_catalog.=) m.%s::pg_catalog.text",
						 quote_identifier(reg->key_names[i]), quote_identifier(reg->match_names[i]));
	appendStringInfoString(&cond, ") OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements($1) AS e(pk) WHERE true");
	for (int i = 0; i < reg->nkeys; i++)
		appendStringInfo(&cond, " AND (e.pk OPERATOR(pg_catalog.->>) %s) OPERATOR(pg_catalog.=) m.%s::pg_catalog.text",
						 quote_literal_cstr(reg->key_names[i]), quote_identifier(reg->match_names[i]));
	appendStringInfoChar(&cond, ')');

	initStringInfo(&sql);
	if (reg->is_delete)
		appendStringInfo(&sql, "DELETE FROM %s m%s", reg->copy_name, cond.data);
	else
	{
		appendStringInfo(&sql, "UPDATE %s m SET ", reg->copy_name);
		for (int i = 0; i < reg->ncontent; i++)
		{
			appendStringInfo(&sql, "%s%s = ", i > 0 ? ", " : "", quote_identifier(reg->content_names[i]));
			if (reg->wiped[i] == NULL)
				appendStringInfoString(&sql, "NULL");
			else
				appendStringInfoString(&sql, quote_literal_cstr(reg->wiped[i]));
		}
		appendStringInfoString(&sql, cond.data);
	}

	/* as in a recall: the owner of tbl, row-level security not forced */
	recall_become(reg->tbl_owner, SECURITY_NOFORCE_RLS, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	recall_in_copy_wipe = true;
	ret = SPI_execute_with_args(sql.data, 1, argtypes, &pks, NULL, false, 0);
	recall_in_copy_wipe = save_in_copy_wipe;
	if (ret != SPI_OK_UPDATE && ret != SPI_OK_DELETE)
		elog(ERROR, "treating existing copies failed: %s", SPI_result_code_string(ret));
	n = SPI_processed;
	SPI_finish();
	recall_unbecome(&become);
	PG_RETURN_INT64((int64) n);
}
