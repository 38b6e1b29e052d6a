/*-------------------------------------------------------------------------
 *
 * copies.c
 *	  Copies of a message's text, wiped with it (recall.copies).
 *
 * A copy table holds rows that point at a message through its match
 * columns: a quote, a conversation preview, a search side table, an
 * earlier version.  Two paths keep recalled text out of them:
 *	- at the end of the statement that recalled messages (an
 *	  ExecutorFinish hook: a copy may be a row the same statement recalls
 *	  next, as when a conversation whose messages quote each other is
 *	  recalled at once), the rows of each copy table that match a recalled
 *	  key are wiped or deleted, found through an index on the match columns
 *	  and changed the way logical replication applies a change
 *	  (ExecSimpleRelationUpdate/Delete: the copy table's row triggers fire,
 *	  its indexes are kept), as the copy table's owner, with
 *	  SECURITY_RESTRICTED_OPERATION and search_path pinned; where their old
 *	  versions lie goes to recall.purge_queue for the purge;
 *	- "~recall_copy_guard" (BEFORE INSERT OR UPDATE on the copy table) and
 *	  "~recall_copy_delete" (AFTER UPDATE, for 'delete' copies) give a row
 *	  written later that points at a recalled message the same treatment.
 *	  A message counts as recalled while its row is, or, once deleted,
 *	  while recall.events holds its recall.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/detoast.h"
#include "common/hashfn.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parsetree.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/xid8.h"

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
	Oid			copy_owner;
	bool		same_types;		/* every match column has its key's base type */
	bool		copy_partitioned;	/* the copy table is partitioned */
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

/*
 * How a registration reaches one leaf relation of its copy table: the
 * attribute numbers of its columns there, an index whose leading columns
 * are the match columns (InvalidOid: none, a sequential scan), the wiped
 * values as datums.  Cached per (registration, leaf); invalidated with the
 * leaf or the registration.
 */
typedef struct CopyLeafKey
{
	Oid			leaf;
	Oid			tbl;
	Oid			copy;
	uint32		match_hash;
} CopyLeafKey;

typedef struct CopyLeaf
{
	CopyLeafKey key;
	bool		valid;
	MemoryContext mcxt;
	AttrNumber *match_atts;
	AttrNumber *content_atts;
	Datum	   *wiped;
	bool	   *wiped_null;
	Oid			index;
	RegProcedure *eq_procs;		/* per match column: the index's equality */
	Oid		   *collations;
	FmgrInfo   *eq_finfo;		/* without an index: the type's equality */
	bool		runs_user_code; /* its update may run a user's code */
} CopyLeaf;

static HTAB *CopyLeafHash = NULL;

/* Keys recalled by one statement, whose copies are due at its end. */
typedef struct PendingCopies
{
	Snapshot	statement;		/* the statement's snapshot: its identity */
	Oid			root_relid;
	SubTransactionId subid;
	int			nkeys;
	int16	   *typlens;
	bool	   *typbyvals;
	List	   *keys;			/* Datum[nkeys] per recalled message */
} PendingCopies;

/* in TopTransactionContext; reset at transaction end */
static List *pending_copies = NIL;

/* while copies are being wiped: the copy guards need not look again */
int			recall_in_copy_wipe = 0;

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;

/* Mark entries stale on any invalidation of a relation they involve. */
void
recall_copies_invalidate(Oid relid)
{
	HASH_SEQ_STATUS status;

	if (CopyHash != NULL)
	{
		CopyEntry  *entry;

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
	if (CopyLeafHash != NULL)
	{
		CopyLeaf   *leaf;

		hash_seq_init(&status, CopyLeafHash);
		while ((leaf = (CopyLeaf *) hash_seq_search(&status)) != NULL)
			if (relid == InvalidOid || leaf->key.leaf == relid ||
				leaf->key.tbl == relid || leaf->key.copy == relid)
				leaf->valid = false;
	}
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

/* The owner of a relation. */
static Oid
rel_owner(Oid relid)
{
	HeapTuple	classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(classtup))->relowner;
	ReleaseSysCache(classtup);
	return owner;
}

/* A registered column of a relation, or an error: never silently skipped. */
static AttrNumber
registered_column(Oid relid, const char *name)
{
	AttrNumber	att = get_attnum(relid, name);

	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of copy table \"%s\" does not exist",
						name, get_rel_name(relid)),
				 errhint("Register the copy again with recall.drop_copy() and recall.add_copy().")));
	return att;
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
			if (n != reg->ncontent)
				elog(ERROR, "copy registration of \"%s\" has %d content columns but %d wiped values",
					 get_rel_name(reg->copy), reg->ncontent, n);
			reg->wiped = palloc0(sizeof(char *) * (n + 1));
			for (int i = 0; i < n; i++)
				reg->wiped[i] = elemnulls[i] ? NULL : TextDatumGetCString(elems[i]);
		}
		reg->is_delete = (strcmp(SPI_getvalue(tup, desc, 6), "delete") == 0);
		reg->key_names = name_array(SPI_getbinval(tup, desc, 7, &isnull), &n);
		if (n != reg->nkeys)
			elog(ERROR, "copy registration has %d match columns for a key of %d", reg->nkeys, n);
		reg->match_types = palloc(sizeof(Oid) * reg->nkeys);
		reg->key_types = palloc(sizeof(Oid) * reg->nkeys);
		reg->same_types = true;
		for (int i = 0; i < reg->nkeys; i++)
		{
			reg->match_types[i] = get_atttype(reg->copy,
											  registered_column(reg->copy, reg->match_names[i]));
			reg->key_types[i] = get_atttype(reg->tbl, get_attnum(reg->tbl, reg->key_names[i]));
			reg->same_types &= (getBaseType(reg->match_types[i]) ==
								getBaseType(reg->key_types[i]));
		}
		for (int i = 0; i < reg->ncontent; i++)
			(void) registered_column(reg->copy, reg->content_names[i]);
		reg->copy_name = qualified_name(reg->copy);
		reg->tbl_name = qualified_name(reg->tbl);
		reg->tbl_owner = rel_owner(reg->tbl);
		reg->copy_owner = rel_owner(reg->copy);
		reg->copy_partitioned = (get_rel_relkind(reg->copy) == RELKIND_PARTITIONED_TABLE);

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

/* ---------------------------------------------------------------------
 * Converting key values
 * ---------------------------------------------------------------------
 */

/*
 * Convert a value between two types through their base types' output and
 * input functions: no cast is ever looked up (a user's cast could run),
 * no domain check either (the value is only looked up, never stored).
 */
static Datum
convert_by_io(Datum value, Oid from, Oid to)
{
	Oid			typoutput;
	bool		typisvarlena;

	from = getBaseType(from);
	to = getBaseType(to);
	if (from == to)
		return value;
	getTypeOutputInfo(from, &typoutput, &typisvarlena);
	return recall_datum_from_text(OidOutputFunctionCall(typoutput, value), to, -1);
}

/* Arguments of convert_all, for recall_try. */
typedef struct ConvertCall
{
	int			n;
	Datum	   *values;
	Oid		   *from;
	Oid		   *to;
	Datum	   *result;
} ConvertCall;

static void
convert_all(void *arg)
{
	ConvertCall *call = (ConvertCall *) arg;

	for (int i = 0; i < call->n; i++)
		call->result[i] = convert_by_io(call->values[i], call->from[i], call->to[i]);
}

/*
 * Convert n values; false when one is no value of the target type (a text
 * match holding "$abc:matrix.org" for a bigint key): nothing matches it.
 * Types that are the same (same: known from the registration) need no
 * subtransaction.
 */
static bool
convert_values(int n, Datum *values, Oid *from, Oid *to, bool same, Datum *result)
{
	ConvertCall call = {n, values, from, to, result};
	ErrorData  *edata;

	if (same)
	{
		memcpy(result, values, sizeof(Datum) * n);
		return true;
	}
	edata = recall_try(convert_all, &call);
	if (edata == NULL)
		return true;
	/* only a value that does not convert means "no such message" */
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/* ---------------------------------------------------------------------
 * Wiping the copies of recalled messages, at the end of the statement
 * ---------------------------------------------------------------------
 */

/* A btree index of rel whose leading key columns are exactly atts. */
static Oid
match_index(Relation rel, int n, AttrNumber *atts)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;
		bool		ok = (index->rd_rel->relam == BTREE_AM_OID && form->indisvalid &&
						  form->indnkeyatts >= n &&
						  heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL));

		for (int i = 0; ok && i < n; i++)
			ok = (form->indkey.values[i] == atts[i]);
		index_close(index, AccessShareLock);
		if (ok)
		{
			found = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	return found;
}

/*
 * Can changing a row of rel run code of a user's (a trigger that is not
 * pg_recall's, a constraint, a generated column, an index expression or
 * predicate)?  Such code runs with search_path pinned.
 */
static bool
leaf_runs_user_code(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	List	   *indexes;
	ListCell   *lc;
	bool		found = false;

	/* (an UPDATE or DELETE evaluates no default) */
	if (constr != NULL && (constr->num_check > 0 || constr->has_generated_stored))
		return true;
	if (rel->trigdesc != NULL)
	{
		for (int i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *t = &rel->trigdesc->triggers[i];

			if (strcmp(t->tgname, RECALL_GUARD_TRIGGER) != 0 &&
				strcmp(t->tgname, "~recall_copy_guard") != 0 &&
				strcmp(t->tgname, "~recall_copy_delete") != 0)
				return true;
		}
	}
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		found = !heap_attisnull(tup, Anum_pg_index_indexprs, NULL) ||
			!heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		ReleaseSysCache(tup);
		if (found)
			break;
	}
	list_free(indexes);
	return found;
}

/* How reg reaches the leaf relation rel (cached). */
static CopyLeaf *
copy_leaf(CopyReg *reg, Relation rel)
{
	CopyLeafKey key;
	CopyLeaf   *leaf;
	bool		found;
	MemoryContext oldcxt;
	TupleDesc	desc = RelationGetDescr(rel);

	if (CopyLeafHash == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(CopyLeafKey);
		ctl.entrysize = sizeof(CopyLeaf);
		ctl.hcxt = CacheMemoryContext;
		CopyLeafHash = hash_create("pg_recall copy leaves", 32, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.leaf = RelationGetRelid(rel);
	key.tbl = reg->tbl;
	key.copy = reg->copy;
	for (int i = 0; i < reg->nkeys; i++)
		key.match_hash = key.match_hash * 31 + hash_bytes((unsigned char *) reg->match_names[i],
														   strlen(reg->match_names[i]));
	leaf = (CopyLeaf *) hash_search(CopyLeafHash, &key, HASH_ENTER, &found);
	if (found && leaf->valid)
		return leaf;
	if (found && leaf->mcxt != NULL)
		recall_retire_context(leaf->mcxt);
	leaf->valid = false;
	leaf->mcxt = AllocSetContextCreate(CacheMemoryContext, "pg_recall copy leaf",
									   ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(leaf->mcxt);
	leaf->match_atts = palloc(sizeof(AttrNumber) * reg->nkeys);
	for (int i = 0; i < reg->nkeys; i++)
		leaf->match_atts[i] = registered_column(RelationGetRelid(rel), reg->match_names[i]);
	leaf->content_atts = palloc(sizeof(AttrNumber) * (reg->ncontent + 1));
	leaf->wiped = palloc(sizeof(Datum) * (reg->ncontent + 1));
	leaf->wiped_null = palloc(sizeof(bool) * (reg->ncontent + 1));
	for (int i = 0; i < reg->ncontent; i++)
	{
		Form_pg_attribute att;
		int32		typmod;
		Oid			base;

		leaf->content_atts[i] = registered_column(RelationGetRelid(rel), reg->content_names[i]);
		att = TupleDescAttr(desc, leaf->content_atts[i] - 1);
		typmod = att->atttypmod;
		base = getBaseTypeAndTypmod(att->atttypid, &typmod);
		leaf->wiped_null[i] = (reg->wiped[i] == NULL);
		/* as the base type: the domain's checks passed at add_copy() */
		leaf->wiped[i] = leaf->wiped_null[i] ? (Datum) 0
			: recall_datum_from_text(reg->wiped[i], base, typmod);
	}
	leaf->index = match_index(rel, reg->nkeys, leaf->match_atts);
	leaf->eq_procs = palloc0(sizeof(RegProcedure) * reg->nkeys);
	leaf->collations = palloc0(sizeof(Oid) * reg->nkeys);
	leaf->eq_finfo = palloc0(sizeof(FmgrInfo) * reg->nkeys);
	if (OidIsValid(leaf->index))
	{
		Relation	index = index_open(leaf->index, AccessShareLock);

		for (int i = 0; i < reg->nkeys; i++)
		{
			Oid			opfamily = index->rd_opfamily[i];
			Oid			optype = index->rd_opcintype[i];
			Oid			op = get_opfamily_member(opfamily, optype, optype, BTEqualStrategyNumber);

			if (!OidIsValid(op))
				elog(ERROR, "missing equality operator in operator family %u", opfamily);
			leaf->eq_procs[i] = get_opcode(op);
			leaf->collations[i] = index->rd_indcollation[i];
		}
		index_close(index, AccessShareLock);
	}
	else
	{
		for (int i = 0; i < reg->nkeys; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, leaf->match_atts[i] - 1);
			TypeCacheEntry *tce = lookup_type_cache(att->atttypid, TYPECACHE_EQ_OPR_FINFO);

			if (!OidIsValid(tce->eq_opr_finfo.fn_oid))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_FUNCTION),
						 errmsg("could not identify an equality operator for type %s",
								format_type_be(att->atttypid))));
			fmgr_info_copy(&leaf->eq_finfo[i], &tce->eq_opr_finfo, leaf->mcxt);
			leaf->collations[i] = att->attcollation;
		}
	}
	leaf->runs_user_code = leaf_runs_user_code(rel);
	MemoryContextSwitchTo(oldcxt);
	leaf->valid = true;
	return leaf;
}

/* The executor state for changing rows of one leaf, made on first use. */
typedef struct LeafChange
{
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epqstate;
	TupleTableSlot *newslot;
	List	   *residue;		/* {relid, block} pairs of the old versions */
	RecallBecome become;		/* as the copy table's owner while changing */
} LeafChange;

/*
 * Start changing rows of a leaf: as the copy table's owner, so that its
 * triggers run with its rights and no more (search_path pinned when they,
 * or anything else of a user's, may run).
 */
static void
leaf_change_begin(LeafChange *lc, CopyReg *reg, CopyLeaf *leaf, Relation rel,
				  Snapshot snapshot)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	recall_become(reg->copy_owner, SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS,
				  leaf->runs_user_code, &lc->become);
	lc->estate = CreateExecutorState();
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(lc->estate, list_make1(rte));
	lc->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(lc->rri, rel, 1, NULL, 0);
	lc->estate->es_opened_result_relations =
		lappend(lc->estate->es_opened_result_relations, lc->rri);
	lc->estate->es_output_cid = GetCurrentCommandId(true);
	lc->estate->es_snapshot = snapshot;
	AfterTriggerBeginQuery();
	ExecOpenIndices(lc->rri, false);
	EvalPlanQualInit(&lc->epqstate, lc->estate, NULL, NIL, -1);
	lc->newslot = ExecInitExtraTupleSlot(lc->estate, RelationGetDescr(rel), &TTSOpsVirtual);
}

static void
leaf_change_end(LeafChange *lc)
{
	ExecCloseIndices(lc->rri);
	EvalPlanQualEnd(&lc->epqstate);
	AfterTriggerEndQuery(lc->estate);
	ExecResetTupleTable(lc->estate->es_tupleTable, false);
	FreeExecutorState(lc->estate);
	lc->estate = NULL;
	recall_unbecome(&lc->become);
}

/* Does the slot's row hold the match values? (sequential scan only) */
static bool
row_matches(CopyReg *reg, CopyLeaf *leaf, TupleTableSlot *slot, Datum *match)
{
	for (int i = 0; i < reg->nkeys; i++)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, leaf->match_atts[i], &isnull);

		if (isnull || !DatumGetBool(FunctionCall2Coll(&leaf->eq_finfo[i], leaf->collations[i],
													  d, match[i])))
			return false;
	}
	return true;
}

/* The old version of a copy row: its block, and the blocks of its TOAST. */
static void
copy_row_residue(CopyReg *reg, CopyLeaf *leaf, TupleTableSlot *slot, List **residue)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	int			natts = reg->is_delete ? desc->natts : reg->ncontent;

	*residue = lappend_oid(*residue, slot->tts_tableOid);
	*residue = lappend_oid(*residue, (Oid) ItemPointerGetBlockNumber(&slot->tts_tid));
	slot_getallattrs(slot);
	for (int i = 0; i < natts; i++)
	{
		AttrNumber	att = reg->is_delete ? i + 1 : leaf->content_atts[i];

		if (TupleDescAttr(desc, att - 1)->attlen == -1 && !slot->tts_isnull[att - 1] &&
			VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(slot->tts_values[att - 1])))
			recall_toast_residue((struct varlena *) DatumGetPointer(slot->tts_values[att - 1]),
								 residue);
	}
}

/* Are the content columns of the slot's row wiped already? */
static bool
copy_row_wiped(CopyReg *reg, CopyLeaf *leaf, TupleTableSlot *slot)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;

	for (int i = 0; i < reg->ncontent; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, leaf->content_atts[i] - 1);
		bool		isnull;
		Datum		d = slot_getattr(slot, leaf->content_atts[i], &isnull);

		if (leaf->wiped_null[i] ? !isnull
			: (isnull || !datum_image_eq(d, leaf->wiped[i], att->attbyval, att->attlen)))
			return false;
	}
	return true;
}

/*
 * Lock a found row; false if it changed meanwhile (the caller scans again).
 * The row is then the latest version and ours to change.
 */
static bool
lock_copy_row(Relation rel, TupleTableSlot *slot)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(rel, &slot->tts_tid, GetActiveSnapshot(), slot,
						   GetCurrentCommandId(false), LockTupleExclusive,
						   LockWaitBlock, 0, &tmfd);
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_Updated:
		case TM_Deleted:
			return false;
		case TM_SelfModified:
			/* changed by this transaction since the scan began: look again */
			return false;
		default:
			elog(ERROR, "unexpected table_tuple_lock status: %u", res);
	}
	return false;
}

/*
 * Wipe or delete the rows of one leaf of a copy table that match one key.
 * Returns false to be called again (a row changed under the scan).
 */
static bool
treat_key_in_leaf(CopyReg *reg, CopyLeaf *leaf, Relation rel, Datum *match,
				  LeafChange *change)
{
	Snapshot	snapshot = GetActiveSnapshot();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc iscan = NULL;
	TableScanDesc hscan = NULL;
	Relation	index = NULL;
	bool		done = true;

	if (OidIsValid(leaf->index))
	{
		ScanKeyData skey[INDEX_MAX_KEYS];

		index = index_open(leaf->index, RowExclusiveLock);
		for (int i = 0; i < reg->nkeys; i++)
		{
			ScanKeyInit(&skey[i], i + 1, BTEqualStrategyNumber, leaf->eq_procs[i], match[i]);
			skey[i].sk_collation = leaf->collations[i];
		}
		iscan = index_beginscan(rel, index, snapshot, reg->nkeys, 0);
		index_rescan(iscan, skey, reg->nkeys, NULL, 0);
	}
	else
		hscan = table_beginscan(rel, snapshot, 0, NULL);

	for (;;)
	{
		bool		got = iscan ? index_getnext_slot(iscan, ForwardScanDirection, slot)
			: table_scan_getnextslot(hscan, ForwardScanDirection, slot);

		if (!got)
			break;
		if (hscan && !row_matches(reg, leaf, slot, match))
			continue;
		if (!reg->is_delete && copy_row_wiped(reg, leaf, slot))
			continue;
		if (!lock_copy_row(rel, slot))
		{
			done = false;
			break;
		}
		if (change->estate == NULL)
			leaf_change_begin(change, reg, leaf, rel, snapshot);
		copy_row_residue(reg, leaf, slot, &change->residue);
		if (reg->is_delete)
			ExecSimpleRelationDelete(change->rri, change->estate, &change->epqstate, slot);
		else
		{
			TupleTableSlot *newslot = change->newslot;

			ExecCopySlot(newslot, slot);
			slot_getallattrs(newslot);
			for (int i = 0; i < reg->ncontent; i++)
			{
				newslot->tts_values[leaf->content_atts[i] - 1] = leaf->wiped[i];
				newslot->tts_isnull[leaf->content_atts[i] - 1] = leaf->wiped_null[i];
			}
			ExecSimpleRelationUpdate(change->rri, change->estate, &change->epqstate,
									 slot, newslot);
		}
	}
	if (iscan)
	{
		index_endscan(iscan);
		index_close(index, NoLock);
	}
	else
		table_endscan(hscan);
	ExecDropSingleTupleTableSlot(slot);
	return done;
}

/* Record the residue of the changed copy rows for the purge. */
static void
queue_residue(List *residue)
{
	if (!recall_log_exists(RECALL_LOG_PURGE_QUEUE))
		return;
	while (residue != NIL)
	{
		Oid			relid = linitial_oid(residue);
		List	   *rest = NIL;
		Datum	   *blocks = palloc(sizeof(Datum) * list_length(residue));
		int			n = 0;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		for (int i = 0; i + 1 < list_length(residue); i += 2)
		{
			if (list_nth_oid(residue, i) == relid)
				blocks[n++] = ObjectIdGetDatum(list_nth_oid(residue, i + 1));
			else
			{
				rest = lappend_oid(rest, list_nth_oid(residue, i));
				rest = lappend_oid(rest, list_nth_oid(residue, i + 1));
			}
		}
		values[0] = FullTransactionIdGetDatum(GetTopFullTransactionId());
		values[1] = ObjectIdGetDatum(relid);
		values[2] = PointerGetDatum(construct_array(blocks, n, OIDOID, sizeof(Oid), true,
													TYPALIGN_INT));
		recall_log_append(RECALL_LOG_PURGE_QUEUE, values, nulls, 3);
		residue = rest;
	}
}

/* The leaf relations of a copy table (itself when it is not partitioned). */
static List *
leaves_of(CopyReg *reg, LOCKMODE lockmode)
{
	Oid			relid = reg->copy;
	List	   *leaves = NIL;
	ListCell   *lc;

	if (!reg->copy_partitioned)
		return list_make1_oid(relid);
	foreach(lc, find_all_inheritors(relid, lockmode, NULL))
		if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
			leaves = lappend_oid(leaves, lfirst_oid(lc));
	return leaves;
}

/*
 * Wipe or delete the copies, registered by reg, of the given keys.  Returns
 * whether a row changed (the next registration must see the change).
 */
static bool
treat_copies(CopyReg *reg, List *keys)
{
	ListCell   *lc;
	Datum	   *match = palloc(sizeof(Datum) * reg->nkeys);
	bool		changed = false;

	foreach(lc, leaves_of(reg, RowExclusiveLock))
	{
		Relation	rel = table_open(lfirst_oid(lc), RowExclusiveLock);
		CopyLeaf   *leaf = copy_leaf(reg, rel);
		LeafChange	change;
		ListCell   *kc;

		memset(&change, 0, sizeof(change));
		foreach(kc, keys)
		{
			Datum	   *key = (Datum *) lfirst(kc);

			if (!convert_values(reg->nkeys, key, reg->key_types, reg->match_types,
								reg->same_types, match))
				continue;
			/* a row that changed under the scan is looked up again */
			while (!treat_key_in_leaf(reg, leaf, rel, match, &change))
			{
				CHECK_FOR_INTERRUPTS();
				CommandCounterIncrement();
				PopActiveSnapshot();
				PushActiveSnapshot(GetLatestSnapshot());
			}
		}
		if (change.estate != NULL)
		{
			leaf_change_end(&change);
			changed = true;
		}
		if (change.residue != NIL)
			queue_residue(change.residue);
		table_close(rel, NoLock);
	}
	return changed;
}

/*
 * Queue the copies of a message just recalled, for the end of its
 * statement.  Called by the guard, for tables with copies.
 */
void
recall_queue_copies(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc)
{
	Snapshot	statement = ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;
	SubTransactionId subid = GetCurrentSubTransactionId();
	PendingCopies *p = NULL;
	ListCell   *lc;
	MemoryContext oldcxt;
	Datum	   *key;

	foreach(lc, pending_copies)
	{
		PendingCopies *q = (PendingCopies *) lfirst(lc);

		if (q->statement == statement && q->root_relid == cfg->root_relid && q->subid == subid)
		{
			p = q;
			break;
		}
	}
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	if (p == NULL)
	{
		p = palloc0(sizeof(PendingCopies));
		p->statement = statement;
		p->root_relid = cfg->root_relid;
		p->subid = subid;
		p->nkeys = cfg->nkeys;
		p->typlens = palloc(sizeof(int16) * cfg->nkeys);
		p->typbyvals = palloc(sizeof(bool) * cfg->nkeys);
		for (int i = 0; i < cfg->nkeys; i++)
			get_typlenbyval(cfg->key_types[i], &p->typlens[i], &p->typbyvals[i]);
		pending_copies = lappend(pending_copies, p);
	}
	key = palloc(sizeof(Datum) * cfg->nkeys);
	for (int i = 0; i < cfg->nkeys; i++)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, cfg->key_attnums[i], tupdesc, &isnull);

		key[i] = isnull ? (Datum) 0 : datumCopy(d, p->typbyvals[i], p->typlens[i]);
	}
	p->keys = lappend(p->keys, key);
	MemoryContextSwitchTo(oldcxt);
}

/* Wipe the copies queued by the statement whose snapshot this is. */
static void
flush_copies(Snapshot statement)
{
	List	   *mine = NIL;
	List	   *rest = NIL;
	ListCell   *lc;

	foreach(lc, pending_copies)
	{
		PendingCopies *p = (PendingCopies *) lfirst(lc);

		if (p->statement == statement)
			mine = lappend(mine, p);
		else
			rest = lappend(rest, p);
	}
	if (mine == NIL)
		return;
	pending_copies = rest;

	/* what the statement wrote is visible from here on */
	CommandCounterIncrement();
	PushActiveSnapshot(GetLatestSnapshot());
	recall_in_copy_wipe++;
	PG_TRY();
	{
		foreach(lc, mine)
		{
			PendingCopies *p = (PendingCopies *) lfirst(lc);
			CopyEntry  *entry = copy_entry(p->root_relid);
			ListCell   *rc;

			foreach(rc, entry->as_tbl)
			{
				if (!treat_copies((CopyReg *) lfirst(rc), p->keys))
					continue;
				/* the next registration sees these changes */
				CommandCounterIncrement();
				PopActiveSnapshot();
				PushActiveSnapshot(GetLatestSnapshot());
			}
		}
	}
	PG_FINALLY();
	{
		recall_in_copy_wipe--;
	}
	PG_END_TRY();
	PopActiveSnapshot();
}

/* ExecutorFinish: the statement's copies, then what comes after it. */
static void
copies_ExecutorFinish(QueryDesc *queryDesc)
{
	if (pending_copies != NIL)
		flush_copies(queryDesc->snapshot);
	if (prev_ExecutorFinish)
		prev_ExecutorFinish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
}

/*
 * Copies still queued at commit belong to a statement that ended without
 * ExecutorFinish, which should not happen: refuse to commit rather than
 * keep recalled text.
 */
static void
copies_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (pending_copies != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("copies of recalled messages were not wiped at the end of their statement")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending_copies = NIL;	/* its memory goes with the transaction */
			recall_in_copy_wipe = 0;
			break;
		default:
			break;
	}
}

/* Drop what an aborted subtransaction queued; hand the rest to the parent. */
static void
copies_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending_copies)
		{
			PendingCopies *p = (PendingCopies *) lfirst(lc);

			if (p->subid == mySubid)
				pending_copies = foreach_delete_current(pending_copies, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending_copies)
		{
			PendingCopies *p = (PendingCopies *) lfirst(lc);

			if (p->subid == mySubid)
				p->subid = parentSubid;
		}
	}
}

/* Install the hook and callbacks; called from _PG_init. */
void
recall_copies_init(void)
{
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = copies_ExecutorFinish;
	RegisterXactCallback(copies_xact_callback, NULL);
	RegisterSubXactCallback(copies_subxact_callback, NULL);
}

/* ---------------------------------------------------------------------
 * Guards on copy tables
 * ---------------------------------------------------------------------
 */

/*
 * Prepare the checks: the message's row, locked FOR SHARE so that a recall
 * in flight is waited for (and a recall that comes later waits for this
 * copy, then wipes it); else its recall in recall.events, once deleted.
 * Parameters are of the key's own types (converted in C), so that the
 * statements hold no cast; search_path is pinned when they run.
 */
static void
prepare_check_plans(CopyReg *reg)
{
	StringInfoData sql;
	Oid			argtypes[3] = {REGCLASSOID, INT8OID, JSONBOID};

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT recalled_at IS NOT NULL FROM %s WHERE ", reg->tbl_name);
	for (int i = 0; i < reg->nkeys; i++)
		appendStringInfo(&sql, "%s%s OPERATOR(pg_catalog.=) $%d", i > 0 ? " AND " : "",
						 quote_identifier(reg->key_names[i]), i + 1);
	appendStringInfoString(&sql, " FOR SHARE");
	reg->lock_plan = recall_prepare_kept(sql.data, reg->nkeys, reg->key_types);

	reg->check_plan = recall_prepare_kept("SELECT EXISTS (SELECT FROM recall.events e"
										  " WHERE e.tbl OPERATOR(pg_catalog.=) $1"
										  " AND e.key_hash OPERATOR(pg_catalog.=) $2"
										  " AND e.pk OPERATOR(pg_catalog.=) $3)",
										  3, argtypes);
}

/*
 * Does the row tup of the copy table point at a recalled message of reg's
 * table?  False when a match column is null or holds no key value.
 */
static bool
points_at_recalled(CopyReg *reg, HeapTuple tup, TupleDesc tupdesc)
{
	Datum	   *match = palloc(sizeof(Datum) * reg->nkeys);
	Datum	   *key = palloc(sizeof(Datum) * reg->nkeys);
	bool	   *nulls = palloc0(sizeof(bool) * reg->nkeys);
	RecallBecome become;
	bool		isnull;
	bool		recalled = false;
	bool		found;
	int			ret;

	for (int i = 0; i < reg->nkeys; i++)
	{
		int			att = SPI_fnumber(tupdesc, reg->match_names[i]);

		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of copy table \"%s\" does not exist",
							reg->match_names[i], get_rel_name(reg->copy)),
					 errhint("Register the copy again with recall.drop_copy() and recall.add_copy().")));
		match[i] = heap_getattr(tup, att, tupdesc, &isnull);
		if (isnull)
			return false;
	}
	if (!convert_values(reg->nkeys, match, reg->match_types, reg->key_types,
						reg->same_types, key))
		return false;

	/* the message table is its owner's to read, with nothing of theirs run as us */
	recall_become(reg->tbl_owner, SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS,
				  true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (reg->lock_plan == NULL || reg->check_plan == NULL)
		prepare_check_plans(reg);
	ret = SPI_execute_plan(reg->lock_plan, key, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "checking a copy's message failed: %s", SPI_result_code_string(ret));
	found = (SPI_processed == 1);
	if (found)
		recalled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  1, &isnull));
	SPI_finish();
	recall_unbecome(&become);
	if (found)
		return recalled;

	/* deleted: its recall is in the log (the extension's to read) */
	{
		Jsonb	   *pk = recall_key_jsonb(reg->nkeys, reg->key_names, reg->key_types, key, nulls);
		Datum		args[3];

		args[0] = ObjectIdGetDatum(reg->tbl);
		args[1] = Int64GetDatum(recall_key_hash(pk));
		args[2] = JsonbPGetDatum(pk);
		recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ret = SPI_execute_plan(reg->check_plan, args, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "checking a copy's message failed: %s", SPI_result_code_string(ret));
		recalled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  1, &isnull));
		SPI_finish();
		recall_unbecome(&become);
	}
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
wipe_copy_row(CopyReg *reg, Relation rel, HeapTuple tup)
{
	CopyLeaf   *leaf = copy_leaf(reg, rel);
	int		   *cols = palloc(sizeof(int) * reg->ncontent);

	for (int i = 0; i < reg->ncontent; i++)
		cols[i] = leaf->content_atts[i];
	return heap_modify_tuple_by_cols(tup, RelationGetDescr(rel), reg->ncontent, cols,
									 leaf->wiped, leaf->wiped_null);
}

/* Delete a copy row just updated (a 'delete' copy that now points at a recall). */
static void
delete_copy_row(CopyReg *reg, Relation rel, HeapTuple tup)
{
	Oid			argtypes[1] = {TIDOID};
	Datum		args[1];
	RecallBecome become;
	int			ret;

	args[0] = PointerGetDatum(&tup->t_self);
	recall_become(reg->copy_owner, SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS,
				  true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE ctid OPERATOR(pg_catalog.=) $1",
										 qualified_name(RelationGetRelid(rel))),
								1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "deleting a copy failed: %s", SPI_result_code_string(ret));
	SPI_finish();
	recall_unbecome(&become);
}

/*
 * recall.copy_guard_trigger(): BEFORE INSERT OR UPDATE and AFTER UPDATE
 * FOR EACH ROW on a copy table.
 */
Datum
recall_copy_guard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = recall_trigger_data(fcinfo, "recall.copy_guard_trigger",
												RECALL_FIRED_BEFORE | RECALL_FIRED_AFTER |
												RECALL_FIRED_ROW | RECALL_FIRED_INSERT |
												RECALL_FIRED_UPDATE,
												"FOR EACH ROW on INSERT or UPDATE");
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tup;
	ListCell   *lc;
	bool		before;
	bool		is_update;

	before = TRIGGER_FIRED_BEFORE(trigdata->tg_event);
	is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);
	tup = is_update ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	/* the recall's own wipe of its copies needs no second look */
	if (recall_in_copy_wipe > 0)
		return before ? PointerGetDatum(tup) : PointerGetDatum(NULL);

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);

	foreach(lc, copy_regs_for(rel))
	{
		CopyReg    *reg = (CopyReg *) lfirst(lc);

		/* an UPDATE that leaves match and content alone (a flag) changes nothing */
		if (is_update && copy_row_unchanged(reg, trigdata->tg_trigtuple, tup, tupdesc))
			continue;

		if (before)
		{
			/* an updated row of a 'delete' copy goes after the update */
			if (reg->is_delete && is_update)
				continue;
			if (!points_at_recalled(reg, tup, tupdesc))
				continue;
			if (reg->is_delete)
				return PointerGetDatum(NULL);	/* the insert is skipped */
			tup = wipe_copy_row(reg, rel, tup);
		}
		else if (reg->is_delete && is_update && points_at_recalled(reg, tup, tupdesc))
		{
			delete_copy_row(reg, rel, tup);
			break;
		}
	}

	if (!before)
		return PointerGetDatum(NULL);
	return PointerGetDatum(tup);
}

/*
 * recall._treat_existing_copies(tbl regclass, copy regclass, match name[],
 * since xid8 DEFAULT NULL) returns bigint: give the copy rows that point at
 * messages recalled before the registration (still there, or deleted
 * since) the treatment of a recall; with since, only at the messages
 * recalled by transactions since that one.  Run by recall.add_copy(); the caller must own both tables.
 * Keys are compared as text here, so that a copy value that is no key
 * simply matches nothing.
 */
Datum
recall_treat_existing_copies(PG_FUNCTION_ARGS)
{
	Oid			tbl;
	Oid			copy;
	int			nmatch;
	char	  **match;
	bool		has_since = (PG_NARGS() > 3 && !PG_ARGISNULL(3));
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

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table, copy and match must not be null")));
	tbl = PG_GETARG_OID(0);
	copy = PG_GETARG_OID(1);
	match = name_array(PG_GETARG_DATUM(2), &nmatch);
	recall_check_owner(tbl);
	recall_check_owner(copy);
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
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			types[2] = {REGCLASSOID, XID8OID};
		Datum		args[2];
		char		nulls[2] = {' ', has_since ? ' ' : 'n'};

		args[0] = ObjectIdGetDatum(tbl);
		args[1] = has_since ? PG_GETARG_DATUM(3) : (Datum) 0;
		ret = SPI_execute_with_args("SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT e.pk), '[]')"
									" FROM recall.events e WHERE e.tbl OPERATOR(pg_catalog.=) $1"
									" AND ($2 IS NULL OR e.xid OPERATOR(pg_catalog.>=) $2)",
									2, types, args, nulls, true, 1);
	}
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));
	pks = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							false, -1);
	SPI_finish();
	recall_unbecome(&become);
	/* nothing recalled since: no scan (the usual second pass of add_copy) */
	if (has_since && JB_ROOT_COUNT(DatumGetJsonbP(pks)) == 0)
		PG_RETURN_INT64(0);

	/*
	 * Every recalled message (its row, or its event once deleted); with
	 * "since", only the messages recalled since then (all in the log).
	 */
	initStringInfo(&cond);
	if (has_since)
		appendStringInfoString(&cond, " WHERE EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements($1) AS e(pk) WHERE true");
	else
	{
		appendStringInfo(&cond, " WHERE EXISTS (SELECT 1 FROM %s t WHERE t.recalled_at IS NOT NULL", reg->tbl_name);
		for (int i = 0; i < reg->nkeys; i++)
			appendStringInfo(&cond, " AND t.%s::pg_catalog.text OPERATOR(pg_catalog.=) m.%s::pg_catalog.text",
							 quote_identifier(reg->key_names[i]), quote_identifier(reg->match_names[i]));
		appendStringInfoString(&cond, ") OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements($1) AS e(pk) WHERE true");
	}
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

	/* as in a recall: the copy table's owner, row-level security not forced */
	recall_become(reg->copy_owner, SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS,
				  true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	recall_in_copy_wipe++;
	PG_TRY();
	{
		ret = SPI_execute_with_args(sql.data, 1, argtypes, &pks, NULL, false, 0);
	}
	PG_FINALLY();
	{
		recall_in_copy_wipe--;
	}
	PG_END_TRY();
	if (ret != SPI_OK_UPDATE && ret != SPI_OK_DELETE)
		elog(ERROR, "treating existing copies failed: %s", SPI_result_code_string(ret));
	n = SPI_processed;
	SPI_finish();
	recall_unbecome(&become);
	PG_RETURN_INT64((int64) n);
}
