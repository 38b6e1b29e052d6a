/*-------------------------------------------------------------------------
 *
 * registry_check.c
 *	  Complete validation of registry rows handed to the C writers.
 *
 * recall.enable() and recall.add_copy() run with the caller's rights and
 * hand their computed row to recall._registry_put() / _copies_put(), which
 * any role may call directly.  So the writers trust nothing in the row:
 * every field is checked against the catalogs, and the derived fields
 * (the key, the wiped values, the view's name) are recomputed here and
 * must match.  A row that passes describes the caller's own table exactly
 * as enable() would have; a bad one is refused with 22023 (or 42501, 42P01,
 * 0A000) before anything is written, so that the caches, the triggers and
 * the dispatcher never meet a malformed registry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/genam.h"
#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "pg_recall.h"

/* Refuse a registry row: 22023, naming the table and what is wrong. */
static void
bad_entry(const char *what, Oid relid, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s for table \"%s\"", what, get_rel_name(relid)),
			 errdetail_internal("%s", detail)));
}

/* A field of a registry row; *isnull says whether it is null or absent. */
static Datum
field(HeapTupleHeader row, TupleDesc desc, const char *name, bool *isnull)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return GetAttributeByNum(row, att->attnum, isnull);
	}
	*isnull = true;				/* a 1.0 row has no such field */
	return (Datum) 0;
}

/* A text field as a C string, or NULL. */
static char *
text_field(HeapTupleHeader row, TupleDesc desc, const char *name)
{
	bool		isnull;
	Datum		d = field(row, desc, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* A name field as a C string, or NULL. */
static char *
name_field(HeapTupleHeader row, TupleDesc desc, const char *name)
{
	bool		isnull;
	Datum		d = field(row, desc, name, &isnull);

	return isnull ? NULL : pstrdup(NameStr(*DatumGetName(d)));
}

/*
 * The elements of a name[] or text[] field as C strings, or NULL if the
 * field is null; a null element is NULL (refused in a name[]).
 */
static char **
array_field(HeapTupleHeader row, TupleDesc desc, const char *name, Oid elemtype,
			int *n, Oid relid)
{
	bool		isnull;
	Datum		d = field(row, desc, name, &isnull);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	char	  **strs;

	*n = 0;
	if (isnull)
		return NULL;
	arr = DatumGetArrayTypeP(d);
	if (ARR_NDIM(arr) > 1 || ARR_ELEMTYPE(arr) != elemtype)
		bad_entry(name, relid, "It must be a one-dimensional array of the registry's type.");
	if (elemtype == NAMEOID)
		deconstruct_array(arr, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, n);
	else
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	strs = palloc(sizeof(char *) * (*n + 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i] && elemtype == NAMEOID)
			bad_entry(name, relid, "Column names must not be null.");
		strs[i] = nulls[i] ? NULL
			: elemtype == NAMEOID ? pstrdup(NameStr(*DatumGetName(elems[i])))
			: TextDatumGetCString(elems[i]);
	}
	return strs;
}

/* A live column of rel by name, or an error naming what it was for. */
static Form_pg_attribute
live_column(Relation rel, const char *name, const char *what)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errdetail("It is named as %s.", what)));
	return TupleDescAttr(RelationGetDescr(rel), attnum - 1);
}

static bool
in_list(char **list, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* The message key of rel: its primary key, else its replica identity index. */
static char **
table_key(Relation rel, int *n)
{
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	char	  **names;

	if (!OidIsValid(indexoid))
		indexoid = RelationGetReplicaIndex(rel);
	if (!OidIsValid(indexoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" has no primary key or replica identity index",
						RelationGetRelationName(rel))));
	index = index_open(indexoid, AccessShareLock);
	*n = index->rd_index->indnkeyatts;
	names = palloc(sizeof(char *) * (*n + 1));
	for (int i = 0; i < *n; i++)
	{
		AttrNumber	att = index->rd_index->indkey.values[i];

		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("the key of table \"%s\" has an expression",
							RelationGetRelationName(rel))));
		names[i] = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), att - 1)->attname));
	}
	index_close(index, AccessShareLock);
	return names;
}

/*
 * Refuse what pg_recall cannot protect: anything but an ordinary or
 * partitioned table, a temporary table, plain inheritance.
 */
void
recall_check_protectable(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	char		relkind = rel->rd_rel->relkind;

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("Only ordinary and partitioned tables can hold recallable messages.")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot enable recall on temporary table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("A temporary table ends with its session; pg_recall guards tables that last.")));
	if (!rel->rd_rel->relispartition && has_superclass(relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot enable recall on table \"%s\" with inheritance",
						RelationGetRelationName(rel)),
				 errdetail("Rows reached through plain inheritance would not be guarded."),
				 errhint("Use declarative partitioning (partitions are guarded), or detach the inheritance.")));
	if (relkind == RELKIND_RELATION && has_subclass(relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot enable recall on table \"%s\" with inheritance",
						RelationGetRelationName(rel)),
				 errdetail("Rows reached through plain inheritance would not be guarded."),
				 errhint("Use declarative partitioning (partitions are guarded), or detach the inheritance.")));
}

/* The view name enable() gives a table: <table>_visible, cut to fit. */
static char *
view_name_of(const char *relname)
{
	int			len = strlen(relname);

	while (len + (int) strlen("_visible") > NAMEDATALEN - 1)
		len = pg_mbcliplen(relname, len, len - 1);
	return psprintf("%.*s_visible", len, relname);
}

/* Are two wiped literals the same (NULL meaning SQL NULL)? */
static bool
same_literal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/*
 * Check a recall.tables row completely against its table (the caller owns
 * it, see recall_check_owner).  Errors out on anything enable() would not
 * have written.
 */
void
recall_check_registry_row(HeapTupleHeader row, TupleDesc desc, Oid relid)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	int			nkeys;
	char	  **keys = table_key(rel, &nkeys);
	int			ngiven;
	char	  **given = array_field(row, desc, "key_columns", NAMEOID, &ngiven, relid);
	int			ncontent;
	char	  **content = array_field(row, desc, "content", NAMEOID, &ncontent, relid);
	int			nwiped;
	char	  **wiped = array_field(row, desc, "wiped_values", TEXTOID, &nwiped, relid);
	static const char *const recall_cols[] = {"recalled_at", "recalled_by", "recall_reason"};
	static const char *const optional[] = {"sender", "sent_at", "conversation"};
	char	   *opt[3];
	char	   *s;
	char	   *source;
	char	   *setting;
	char	   *claim;
	Oid			sent_type = InvalidOid;
	bool		isnull;

	recall_check_protectable(rel);

	/* the key: the table's own */
	if (given == NULL || ngiven != nkeys)
		bad_entry("key_columns", relid, "They must be the table's primary key or replica identity columns.");
	for (int i = 0; i < nkeys; i++)
		if (strcmp(given[i], keys[i]) != 0)
			bad_entry("key_columns", relid, "They must be the table's primary key or replica identity columns.");

	/* content columns and their wiped values, recomputed */
	if (content == NULL || ncontent < 1)
		bad_entry("content", relid, "At least one content column is needed.");
	if (wiped == NULL || nwiped != ncontent)
		bad_entry("wiped_values", relid, "There must be one wiped value per content column.");
	for (int i = 0; i < ncontent; i++)
	{
		Form_pg_attribute att = live_column(rel, content[i], "a content column");

		if (in_list(keys, nkeys, content[i]) || in_list((char **) recall_cols, 3, content[i]) ||
			in_list(content, i, content[i]) || att->attgenerated != '\0')
			bad_entry("content", relid,
					  psprintf("Column \"%s\" cannot be a content column.", content[i]));
		if (!same_literal(wiped[i], recall_wiped_literal(rel, att->attnum)))
			bad_entry("wiped_values", relid,
					  psprintf("The wiped value of column \"%s\" is not the one recall.enable() computes.",
							   content[i]));
	}

	/* the recall columns, of their types */
	for (int i = 0; i < 3; i++)
	{
		Form_pg_attribute att = live_column(rel, recall_cols[i], "a recall column");

		if (att->atttypid != (i == 0 ? TIMESTAMPTZOID : TEXTOID))
			bad_entry("registry entry", relid,
					  psprintf("Column \"%s\" has the wrong type.", recall_cols[i]));
	}

	/* sender, sent_at, conversation */
	for (int i = 0; i < 3; i++)
	{
		opt[i] = name_field(row, desc, optional[i]);
		if (opt[i] == NULL)
			continue;
		if (in_list((char **) recall_cols, 3, opt[i]) || in_list(content, ncontent, opt[i]))
			bad_entry(optional[i], relid,
					  psprintf("Column \"%s\" cannot be a recall or content column.", opt[i]));
		if (i == 1)
			sent_type = getBaseType(live_column(rel, opt[i], "sent_at")->atttypid);
		else
			(void) live_column(rel, opt[i], optional[i]);
	}
	s = text_field(row, desc, "sent_at_unit");
	if (sent_type == TIMESTAMPOID || sent_type == TIMESTAMPTZOID)
	{
		if (s != NULL)
			bad_entry("sent_at_unit", relid, "It applies only to an integer sent_at column.");
	}
	else if (sent_type == INT2OID || sent_type == INT4OID || sent_type == INT8OID)
	{
		if (s == NULL || (strcmp(s, "s") != 0 && strcmp(s, "ms") != 0))
			bad_entry("sent_at_unit", relid, "An integer sent_at needs 's' or 'ms'.");
	}
	else if (OidIsValid(sent_type))
		bad_entry("sent_at", relid, "It must be of type timestamp, timestamptz or an integer type.");
	else if (s != NULL)
		bad_entry("sent_at_unit", relid, "It needs a sent_at column.");
	s = text_field(row, desc, "sent_at_timezone");
	if (s != NULL && (sent_type != TIMESTAMPOID || pg_tzset(s) == NULL))
		bad_entry("sent_at_timezone", relid, "It must be a known time zone, for a timestamp sent_at only.");

	(void) field(row, desc, "recall_window", &isnull);
	if (!isnull)
	{
		Interval   *w = DatumGetIntervalP(field(row, desc, "recall_window", &isnull));

		if (opt[0] == NULL || opt[1] == NULL)
			bad_entry("recall_window", relid, "It needs both a sender and a sent_at column.");
		if (w->time < 0 || w->day < 0 || w->month < 0)
			bad_entry("recall_window", relid, "It must not be negative.");
	}

	/* notification channel, write policy, actor */
	s = text_field(row, desc, "channel");
	if (s == NULL || s[0] == '\0' || strlen(s) >= NAMEDATALEN)
		bad_entry("channel", relid, "A channel name is 1 to 63 bytes long.");
	s = text_field(row, desc, "on_recalled_write");
	if (s == NULL || (strcmp(s, "error") != 0 && strcmp(s, "keep_wiped") != 0))
		bad_entry("on_recalled_write", relid, "It is 'error' or 'keep_wiped'.");
	source = text_field(row, desc, "actor_source");
	setting = text_field(row, desc, "actor_setting");
	claim = text_field(row, desc, "actor_claim");
	if (source == NULL || (strcmp(source, "statement") != 0 && strcmp(source, "role") != 0 &&
						   strcmp(source, "setting") != 0))
		bad_entry("actor_source", relid, "It is 'statement', 'role' or 'setting'.");
	if (strcmp(source, "setting") == 0)
	{
		if (setting == NULL || setting[0] == '\0')
			bad_entry("actor_setting", relid, "actor_source 'setting' needs a setting.");
		if (claim != NULL && claim[0] == '\0')
			bad_entry("actor_claim", relid, "It must not be empty.");
	}
	else if (setting != NULL || claim != NULL)
		bad_entry("actor_setting", relid, "actor_setting and actor_claim need actor_source 'setting'.");
	s = name_field(row, desc, "view_name");
	if (s == NULL || strcmp(s, view_name_of(RelationGetRelationName(rel))) != 0)
		bad_entry("view_name", relid, "It must be the name recall.enable() gives the view.");

	relation_close(rel, AccessShareLock);
}

/*
 * Check a recall.copies row completely: both tables the caller's, the
 * message table enabled, match columns one per key column, content and
 * wiped values as add_copy() computes them.
 */
void
recall_check_copies_row(HeapTupleHeader row, TupleDesc desc, Oid tbl, Oid copy)
{
	Relation	trel = relation_open(tbl, AccessShareLock);
	Relation	crel = relation_open(copy, AccessShareLock);
	int			nkeys;
	char	  **keys = table_key(trel, &nkeys);
	int			nmatch;
	char	  **match = array_field(row, desc, "match", NAMEOID, &nmatch, copy);
	int			ncontent;
	char	  **content = array_field(row, desc, "content", NAMEOID, &ncontent, copy);
	int			nwiped;
	char	  **wiped = array_field(row, desc, "wiped_values", TEXTOID, &nwiped, copy);
	char	   *action = text_field(row, desc, "action");

	if (recall_get_table(trel, true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not enabled for recall", RelationGetRelationName(trel)),
				 errhint("Call recall.enable() on the table first.")));
	if (crel->rd_rel->relkind != RELKIND_RELATION &&
		crel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(crel))));
	if (crel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot register temporary table \"%s\" as a copy",
						RelationGetRelationName(crel)),
				 errdetail("A temporary table ends with its session; pg_recall guards tables that last.")));
	if (match == NULL || nmatch != nkeys)
		bad_entry("match", copy, "There must be one match column per key column of the message table.");
	for (int i = 0; i < nmatch; i++)
		(void) live_column(crel, match[i], "a match column");
	if (action == NULL || (strcmp(action, "wipe") != 0 && strcmp(action, "delete") != 0))
		bad_entry("action", copy, "It is 'wipe' or 'delete'.");
	if (strcmp(action, "delete") == 0)
	{
		if (content != NULL || wiped != NULL)
			bad_entry("content", copy, "A 'delete' copy takes no content columns.");
	}
	else
	{
		if (content == NULL || ncontent < 1)
			bad_entry("content", copy, "A 'wipe' copy needs content columns.");
		if (wiped == NULL || nwiped != ncontent)
			bad_entry("wiped_values", copy, "There must be one wiped value per content column.");
		for (int i = 0; i < ncontent; i++)
		{
			Form_pg_attribute att = live_column(crel, content[i], "a content column");

			if (in_list(match, nmatch, content[i]) || in_list(content, i, content[i]) ||
				(tbl == copy && in_list(keys, nkeys, content[i])) || att->attgenerated != '\0')
				bad_entry("content", copy,
						  psprintf("Column \"%s\" cannot be a content column.", content[i]));
			if (!same_literal(wiped[i], recall_wiped_literal(crel, att->attnum)))
				bad_entry("wiped_values", copy,
						  psprintf("The wiped value of column \"%s\" is not the one recall.add_copy() computes.",
								   content[i]));
		}
	}
	relation_close(crel, AccessShareLock);
	relation_close(trel, AccessShareLock);
}
