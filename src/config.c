/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Per-relation cache of recall.tables settings.
 *
 * Triggers fire once per row, so the registry is read once per relation
 * and kept in CacheMemoryContext, with column names resolved to attribute
 * numbers of the relation the trigger fired on (a partition's attribute
 * numbers may differ from its parent's).  A relcache invalidation of the
 * relation or of its enabled table marks the entry stale; recall.enable()
 * and recall.disable() send one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "nodes/bitmapset.h"
#include "optimizer/optimizer.h"
#include "utils/partcache.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "pgtime.h"

#include "pg_recall.h"

static HTAB *RecallTableHash = NULL;
/* the entry recall_get_table returned last (see there) */
static RecallTable *last_entry = NULL;

/* The extension's owner, looked up once, again after a change to a schema. */
static Oid	cached_extension_owner = InvalidOid;

static void
namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_extension_owner = InvalidOid;
}

/*
 * Plans and contexts of reloaded entries.  A plan may still be running (a
 * recall.recall() whose UPDATE fires the trigger that reloads), so they
 * are freed at the end of the transaction, not at reload.
 */
static List *retired_plans = NIL;
static List *retired_contexts = NIL;

/* Queue a kept plan for freeing at transaction end (NULL: nothing). */
void
recall_retire_plan(SPIPlanPtr plan)
{
	MemoryContext oldcxt;

	if (plan == NULL)
		return;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	retired_plans = lappend(retired_plans, plan);
	MemoryContextSwitchTo(oldcxt);
}

/* Queue a cache context for deletion at transaction end. */
void
recall_retire_context(MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

	retired_contexts = lappend(retired_contexts, cxt);
	MemoryContextSwitchTo(oldcxt);
}

/* Queue an entry's plans and memory for freeing at transaction end. */
static void
retire_entry(RecallTable *entry)
{
	if (entry->mcxt == NULL)
		return;
	recall_retire_plan(entry->update_plan);
	recall_retire_plan(entry->exists_plan);
	recall_retire_context(entry->mcxt);
}

/* Free what was queued for retirement, once no statement can be using it. */
static void
config_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	foreach(lc, retired_plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	foreach(lc, retired_contexts)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired_plans);
	list_free(retired_contexts);
	retired_plans = NIL;
	retired_contexts = NIL;
}

/* Mark entries of the relation, or of its enabled table, stale. */
void
recall_config_invalidate(Oid relid)
{
	HASH_SEQ_STATUS status;
	RecallTable *entry;

	if (RecallTableHash == NULL)
		return;
	hash_seq_init(&status, RecallTableHash);
	while ((entry = (RecallTable *) hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || entry->relid == relid ||
			entry->root_relid == relid)
			entry->valid = false;
	}
}

/* Register the transaction callback; called from _PG_init. */
void
recall_config_init(void)
{
	RegisterXactCallback(config_xact_callback, NULL);
	CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum) 0);
}

/*
 * The role that owns the recall schema, i.e. the extension's owner; looked
 * up once, again after any change to a schema.
 */
Oid
recall_extension_owner(void)
{
	Oid			nspid;
	HeapTuple	tup;

	if (OidIsValid(cached_extension_owner))
		return cached_extension_owner;
	nspid = get_namespace_oid("recall", false);
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	cached_extension_owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return cached_extension_owner;
}

/* Attribute number of a named column of rel; error if it is gone. */
static AttrNumber
resolve_column(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errhint("The column is named in recall.tables; run recall.enable() again.")));
	return (AttrNumber) attnum;
}

/* Text of a registry column, copied into the current context; NULL if null. */
static char *
registry_text(HeapTuple tup, TupleDesc desc, int fnumber)
{
	/* output function: the registry mixes text and name columns */
	return SPI_getvalue(tup, desc, fnumber);
}

/* The registry columns load_entry reads, in order; $1 is the enabled table. */
#define REGISTRY_COLUMNS \
	"SELECT t.key_columns, t.content, t.wiped_values, t.sender, t.sent_at," \
	" t.sent_at_unit, t.conversation, t.recall_window, t.channel," \
	" t.on_recalled_write, t.actor_source, t.actor_setting, t.actor_claim," \
	" pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) 'sent_at_timezone'," \
	" EXISTS (SELECT FROM recall.copies c" \
	"         WHERE c.tbl OPERATOR(pg_catalog.=) $1)"

/*
 * Look up the registry row for relid; if relid is a partition, for the
 * nearest enabled ancestor.  Returns the row's copy in SPI context and the
 * enabled table, or NULL.
 */
static HeapTuple
find_registry_row(Relation rel, Oid *root_relid, TupleDesc *desc)
{
	Oid			relid = RelationGetRelid(rel);
	List	   *candidates = list_make1_oid(relid);
	ListCell   *lc;
	char	   *settings;

	if (rel->rd_rel->relispartition)
		candidates = list_concat(candidates, get_partition_ancestors(relid));

	foreach(lc, candidates)
	{
		Oid			argtypes[1] = {REGCLASSOID};
		Datum		values[1];
		int			ret;

		values[0] = ObjectIdGetDatum(lfirst_oid(lc));
		ret = SPI_execute_with_args(REGISTRY_COLUMNS
									" FROM recall.tables t WHERE t.tbl OPERATOR(pg_catalog.=) $1",
									1, argtypes, values, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 1)
		{
			*root_relid = lfirst_oid(lc);
			*desc = SPI_tuptable->tupdesc;
			return SPI_tuptable->vals[0];
		}
	}

	/* a Citus shard: its guard carries the enabled table's row (citus.c) */
	settings = recall_citus_shard_settings(rel, root_relid);
	if (settings != NULL)
	{
		Oid			argtypes[2] = {REGCLASSOID, TEXTOID};
		Datum		values[2];
		int			ret;

		values[0] = ObjectIdGetDatum(*root_relid);
		values[1] = CStringGetTextDatum(settings);
		ret = SPI_execute_with_args(REGISTRY_COLUMNS
									" FROM pg_catalog.jsonb_populate_record(NULL::recall.tables,"
									"      $2::pg_catalog.jsonb) t",
									2, argtypes, values, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading the settings of shard \"%s\" failed: %s",
				 RelationGetRelationName(rel), SPI_result_code_string(ret));
		*desc = SPI_tuptable->tupdesc;
		return SPI_tuptable->vals[0];
	}
	return NULL;
}

/*
 * For a partition: the columns of every ancestor's partition key.  A recall
 * that changes one could move the row to another partition, which
 * PostgreSQL does as a DELETE and an INSERT: no AFTER UPDATE trigger would
 * log the recall.
 */
static void
load_partition_key(RecallTable *entry, Relation rel)
{
	List	   *ancestors;
	ListCell   *lc;
	List	   *attnums = NIL;

	if (!rel->rd_rel->relispartition)
		return;
	ancestors = get_partition_ancestors(RelationGetRelid(rel));
	foreach(lc, ancestors)
	{
		Relation	parent = relation_open(lfirst_oid(lc), AccessShareLock);
		PartitionKey key = RelationGetPartitionKey(parent);

		for (int i = 0; key != NULL && i < key->partnatts; i++)
		{
			Bitmapset  *cols = NULL;
			int			col = -1;

			if (key->partattrs[i] != 0)
				cols = bms_add_member(cols, key->partattrs[i] - FirstLowInvalidHeapAttributeNumber);
			else
				pull_varattnos((Node *) key->partexprs, 1, &cols);
			while ((col = bms_next_member(cols, col)) >= 0)
			{
				AttrNumber	att = col + FirstLowInvalidHeapAttributeNumber;
				const char *name;
				int			mine;

				if (att <= 0)
					continue;
				name = NameStr(TupleDescAttr(RelationGetDescr(parent), att - 1)->attname);
				mine = SPI_fnumber(RelationGetDescr(rel), name);
				if (mine > 0 && !list_member_int(attnums, mine))
					attnums = lappend_int(attnums, mine);
			}
		}
		relation_close(parent, AccessShareLock);
	}
	entry->npartkey = list_length(attnums);
	entry->partkey_attnums = palloc(sizeof(AttrNumber) * (entry->npartkey + 1));
	for (int i = 0; i < entry->npartkey; i++)
		entry->partkey_attnums[i] = (AttrNumber) list_nth_int(attnums, i);
}

/*
 * The name of an enabled BEFORE ROW INSERT or UPDATE trigger of rel that
 * fires after the guard (triggers fire in name order, compared bytewise),
 * or NULL.  Such a trigger sees the wiped row and could put content back.
 */
static char *
find_late_trigger(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	/* on a Citus shard the guard's name ends in the shard id (citus.c) */
	const char *guard = recall_guard_name(rel);

	if (trigdesc == NULL)
		return NULL;
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (t->tgenabled == TRIGGER_DISABLED ||
			!TRIGGER_FOR_ROW(t->tgtype) || !TRIGGER_FOR_BEFORE(t->tgtype) ||
			!(TRIGGER_FOR_INSERT(t->tgtype) || TRIGGER_FOR_UPDATE(t->tgtype)))
			continue;
		if (strcmp(t->tgname, guard) > 0)
			return pstrdup(t->tgname);
	}
	return NULL;
}

/* Fill entry (in its own new context) from the registry; false if absent. */
static bool
load_entry(RecallTable *entry, Relation rel)
{
	MemoryContext newcxt;
	MemoryContext oldcxt;
	HeapTuple	row;
	TupleDesc	desc;
	TupleDesc	reldesc = RelationGetDescr(rel);
	Oid			root_relid;
	bool		isnull;
	Datum	   *elems;
	int			nelems;
	int			ncontent;
	Datum	   *wiped;
	bool	   *wipednulls;
	char	   *s;
	RecallTable fresh;
	MemoryContext callercxt = CurrentMemoryContext;

	elog(DEBUG1, "pg_recall: loading settings of relation \"%s\"", RelationGetRelationName(rel));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	row = find_registry_row(rel, &root_relid, &desc);
	if (row == NULL)
	{
		SPI_finish();
		return false;
	}

	/* Built under the caller's context; kept only once complete. */
	newcxt = AllocSetContextCreate(callercxt, "pg_recall table",
								   ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(newcxt);

	memset(&fresh, 0, sizeof(fresh));
	fresh.relid = RelationGetRelid(rel);
	fresh.mcxt = newcxt;
	fresh.root_relid = root_relid;
	fresh.qualified_name =
		quote_qualified_identifier(get_namespace_name(get_rel_namespace(root_relid)),
								   get_rel_name(root_relid));
	fresh.relname = get_rel_name(root_relid);
	load_partition_key(&fresh, rel);

	/* key columns */
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(row, desc, 1, &isnull)),
					  NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, NULL, &nelems);
	fresh.nkeys = nelems;
	fresh.key_attnums = palloc(sizeof(AttrNumber) * nelems);
	fresh.key_types = palloc(sizeof(Oid) * nelems);
	fresh.key_names = palloc(sizeof(char *) * nelems);
	for (int i = 0; i < nelems; i++)
	{
		char	   *name = pstrdup(NameStr(*DatumGetName(elems[i])));

		fresh.key_names[i] = name;
		fresh.key_attnums[i] = resolve_column(rel, name);
		fresh.key_types[i] = TupleDescAttr(reldesc, fresh.key_attnums[i] - 1)->atttypid;
	}

	/* content columns and their wiped values */
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(row, desc, 2, &isnull)),
					  NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, NULL, &ncontent);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(row, desc, 3, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT,
					  &wiped, &wipednulls, &nelems);
	if (nelems != ncontent)
		elog(ERROR, "recall.tables row of \"%s\" has %d content columns but %d wiped values",
			 RelationGetRelationName(rel), ncontent, nelems);
	fresh.ncontent = ncontent;
	fresh.content = palloc0(sizeof(RecallContentColumn) * ncontent);
	for (int i = 0; i < ncontent; i++)
	{
		RecallContentColumn *col = &fresh.content[i];
		Form_pg_attribute att;
		const char *empty;
		Oid			base_type;
		int32		base_typmod;

		col->attnum = resolve_column(rel, NameStr(*DatumGetName(elems[i])));
		att = TupleDescAttr(reldesc, col->attnum - 1);
		col->typid = att->atttypid;
		col->typlen = att->attlen;
		col->typbyval = att->attbyval;
		col->wiped_isnull = wipednulls[i];
		/* as the base type: the domain's checks passed at enable() */
		base_typmod = att->atttypmod;
		base_type = getBaseTypeAndTypmod(att->atttypid, &base_typmod);
		if (!wipednulls[i])
			col->wiped = recall_datum_from_text(TextDatumGetCString(wiped[i]),
												base_type, base_typmod);
		empty = recall_empty_literal(att->atttypid);
		if (empty != NULL)
		{
			col->has_empty = true;
			col->empty = recall_datum_from_text(empty, base_type, base_typmod);
		}
	}

	fresh.recalled_at_att = resolve_column(rel, "recalled_at");
	fresh.recalled_by_att = resolve_column(rel, "recalled_by");
	fresh.reason_att = resolve_column(rel, "recall_reason");

	if ((s = registry_text(row, desc, 4)) != NULL)
		fresh.sender_att = resolve_column(rel, s);
	if ((s = registry_text(row, desc, 5)) != NULL)
	{
		fresh.sent_at_att = resolve_column(rel, s);
		fresh.sent_at_type = getBaseType(TupleDescAttr(reldesc, fresh.sent_at_att - 1)->atttypid);
	}
	if ((s = registry_text(row, desc, 6)) != NULL)
		fresh.sent_at_divisor = (strcmp(s, "ms") == 0) ? 1000 : 1;
	if ((s = registry_text(row, desc, 7)) != NULL)
		fresh.conversation_att = resolve_column(rel, s);
	{
		Datum		w = SPI_getbinval(row, desc, 8, &isnull);

		if (!isnull)
		{
			fresh.has_window = true;
			fresh.window = *DatumGetIntervalP(w);
		}
	}
	fresh.channel = registry_text(row, desc, 9);
	s = registry_text(row, desc, 10);
	fresh.keep_wiped = (s != NULL && strcmp(s, "keep_wiped") == 0);
	s = registry_text(row, desc, 11);
	if (s == NULL || strcmp(s, "statement") == 0)
		fresh.actor_source = ACTOR_SOURCE_STATEMENT;
	else if (strcmp(s, "role") == 0)
		fresh.actor_source = ACTOR_SOURCE_ROLE;
	else if (strcmp(s, "setting") == 0)
		fresh.actor_source = ACTOR_SOURCE_SETTING;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized actor_source \"%s\" in recall.tables", s)));
	fresh.actor_setting = registry_text(row, desc, 12);
	fresh.actor_claim = registry_text(row, desc, 13);
	if (fresh.sent_at_type == TIMESTAMPOID)
	{
		/* the zone in effect at enable(); UTC for registries without one */
		s = registry_text(row, desc, 14);
		fresh.sent_at_zone = pg_tzset(s ? s : "UTC");
		if (fresh.sent_at_zone == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("time zone \"%s\" of table \"%s\" is not recognized",
							s, RelationGetRelationName(rel)),
					 errhint("Run recall.enable() on the table again.")));
	}
	fresh.has_copies = DatumGetBool(SPI_getbinval(row, desc, 15, &isnull));
	fresh.late_trigger = find_late_trigger(rel);
	fresh.valid = true;

	MemoryContextSwitchTo(oldcxt);
	SPI_finish();

	/* Complete: replace the old entry's contents. */
	MemoryContextSetParent(newcxt, CacheMemoryContext);
	retire_entry(entry);
	*entry = fresh;
	return true;
}

/*
 * The settings for rel, from cache.  If rel (or an ancestor, for a
 * partition) is not enabled: NULL when missing_ok, else an error.
 */
RecallTable *
recall_get_table(Relation rel, bool missing_ok)
{
	Oid			relid = RelationGetRelid(rel);
	RecallTable *entry;
	bool		found;

	/*
	 * Most statements touch one enabled table: the entry found last is
	 * checked before the hash lookup (entries do not move, and a removed
	 * one is no longer valid or holds another relid).
	 */
	if (last_entry != NULL && last_entry->relid == relid && last_entry->valid)
		return last_entry;

	if (RecallTableHash == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(RecallTable);
		ctl.hcxt = CacheMemoryContext;
		RecallTableHash = hash_create("pg_recall tables", 32, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	entry = (RecallTable *) hash_search(RecallTableHash, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(entry, 0, sizeof(RecallTable));
		entry->relid = relid;
	}
	if (entry->valid)
		return last_entry = entry;

	if (!load_entry(entry, rel))
	{
		if (entry->mcxt == NULL)
		{
			last_entry = NULL;
			hash_search(RecallTableHash, &relid, HASH_REMOVE, NULL);
		}
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not enabled for recall",
						RelationGetRelationName(rel)),
				 errhint("Call recall.enable() on the table first.")));
	}
	return last_entry = entry;
}

/* As recall_get_table, by OID; the relation must exist. */
RecallTable *
recall_get_table_by_oid(Oid relid, bool missing_ok)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	RecallTable *cfg = recall_get_table(rel, missing_ok);

	relation_close(rel, AccessShareLock);
	return cfg;
}

/*
 * Output functions of the types whose text a recall takes (sender,
 * conversation), looked up once per type: a per-row syscache lookup and
 * fmgr_info would cost more than the conversion.
 */
#define OUTPUT_CACHE_SIZE 8
typedef struct OutputCacheEntry
{
	Oid			typid;
	FmgrInfo	finfo;
} OutputCacheEntry;
static OutputCacheEntry output_cache[OUTPUT_CACHE_SIZE];
static int	output_cache_used = 0;

static FmgrInfo *
output_function(Oid typid)
{
	Oid			typoutput;
	bool		typisvarlena;
	OutputCacheEntry *e;

	for (int i = 0; i < output_cache_used; i++)
		if (output_cache[i].typid == typid)
			return &output_cache[i].finfo;
	getTypeOutputInfo(typid, &typoutput, &typisvarlena);
	/* a full cache starts over: the types of a few tables fit */
	if (output_cache_used == OUTPUT_CACHE_SIZE)
		output_cache_used = 0;
	e = &output_cache[output_cache_used];
	fmgr_info_cxt(typoutput, &e->finfo, TopMemoryContext);
	e->typid = typid;
	output_cache_used++;
	return &e->finfo;
}

/* Output-function text of a datum of type typid. */
char *
recall_output_text(Oid typid, Datum d)
{
	return OutputFunctionCall(output_function(typid), d);
}

/* Output-function text of a column of tuple; NULL (and *isnull) if null. */
char *
recall_text_of(HeapTuple tuple, TupleDesc tupdesc, AttrNumber attnum, bool *isnull)
{
	bool		null;
	Datum		d = heap_getattr(tuple, attnum, tupdesc, &null);
	Oid			typid = TupleDescAttr(tupdesc, attnum - 1)->atttypid;

	if (isnull)
		*isnull = null;
	if (null)
		return NULL;
	if (typid == TEXTOID || typid == VARCHAROID)
		return TextDatumGetCString(d);
	return OutputFunctionCall(output_function(typid), d);
}
