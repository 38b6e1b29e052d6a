/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  Wiping the content of rows recalled before enable() listed it.
 *
 * recall.enable() wipes every content column of the rows already recalled
 * (an earlier enable with fewer content columns, data loaded with the
 * recall columns).  On a large table in use that must not hold the table:
 *	- pass 1 runs before any catalog change, with nothing stronger than a
 *	  RowExclusiveLock, in batches of a few thousand blocks (TID ranges of
 *	  each leaf relation), one UPDATE each;
 *	- pass 2 runs after the catalog changes, for the recalls made while
 *	  pass 1 ran (a recall by an earlier version of the guard, which knew
 *	  fewer content columns), found in recall.events, not by a scan.
 * The UPDATEs run as the table's owner with SECURITY_RESTRICTED_OPERATION
 * when the caller is someone else (a superuser enabling another role's
 * table): the table's own triggers fire, and they are the owner's code.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_backfill);

/* Blocks of a leaf relation one backfill statement covers. */
#define BACKFILL_BLOCKS 4096

/* Quoted, schema-qualified name of a relation. */
static char *
qualified(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * SET list and "not yet wiped" condition for the content columns: each
 * compared with its wiped value as text (every type has an output
 * function; not every type has an equality operator).
 */
static void
build_clauses(Relation rel, char **content, int ncontent, StringInfo set, StringInfo unwiped)
{
	appendStringInfoString(unwiped, "NOT (");
	for (int i = 0; i < ncontent; i++)
	{
		int			attnum = SPI_fnumber(RelationGetDescr(rel), content[i]);
		char	   *literal;
		const char *col = quote_identifier(content[i]);

		if (attnum <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							content[i], RelationGetRelationName(rel))));
		literal = recall_wiped_literal(rel, (AttrNumber) attnum);
		if (i > 0)
		{
			appendStringInfoString(set, ", ");
			appendStringInfoString(unwiped, " AND ");
		}
		if (literal == NULL)
		{
			appendStringInfo(set, "%s = NULL", col);
			appendStringInfo(unwiped, "%s IS NULL", col);
		}
		else
		{
			appendStringInfo(set, "%s = %s", col, quote_literal_cstr(literal));
			appendStringInfo(unwiped, "(%s IS NOT NULL AND %s::pg_catalog.text OPERATOR(pg_catalog.=) %s)",
							 col, col, quote_literal_cstr(literal));
		}
	}
	appendStringInfoChar(unwiped, ')');
}

/* Pass 1 over one leaf relation, in block ranges. */
static int64
backfill_leaf(Oid leaf, const char *set, const char *unwiped)
{
	Relation	rel = relation_open(leaf, AccessShareLock);
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	char	   *name = qualified(leaf);
	int64		n = 0;

	relation_close(rel, AccessShareLock);
	for (BlockNumber from = 0; from < nblocks; from += BACKFILL_BLOCKS)
	{
		int			ret;

		CHECK_FOR_INTERRUPTS();
		ret = SPI_execute(psprintf("UPDATE ONLY %s SET %s WHERE ctid OPERATOR(pg_catalog.>=) '(%u,0)'"
								   " AND ctid OPERATOR(pg_catalog.<) '(%u,0)'"
								   " AND recalled_at IS NOT NULL AND %s",
								   name, set, from, from + BACKFILL_BLOCKS, unwiped),
						  false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "backfill of %s failed: %s", name, SPI_result_code_string(ret));
		n += SPI_processed;
	}
	return n;
}

/*
 * Both passes on a Citus table: its rows are on its shards, which a scan of
 * its shell cannot reach, and the events of pass 2 on its workers; one
 * UPDATE through Citus, each worker wiping what its shards hold.
 */
static int64
backfill_distributed(Oid relid, const char *set, const char *unwiped)
{
	char	   *name = qualified(relid);
	int			ret;

	ret = SPI_execute(psprintf("UPDATE %s SET %s WHERE recalled_at IS NOT NULL AND %s",
							   name, set, unwiped),
					  false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "backfill of %s failed: %s", name, SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * Pass 2: the messages of tbl recalled since xid "since" (their keys from
 * recall.events, read as the extension's owner).
 */
static int64
backfill_since(Relation rel, FullTransactionId since, const char *set, const char *unwiped)
{
	Oid			relid = RelationGetRelid(rel);
	RecallBecome become;
	Datum		args[2];
	Oid			argtypes[2] = {REGCLASSOID, XID8OID};
	Datum		pks;
	bool		isnull;
	int			ret;
	RecallTable *cfg = recall_get_table(rel, false);
	StringInfoData sql;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = FullTransactionIdGetDatum(since);
	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	ret = SPI_execute_with_args("SELECT pg_catalog.jsonb_agg(e.pk) FROM recall.events e"
								" WHERE e.tbl OPERATOR(pg_catalog.=) $1"
								" AND e.xid OPERATOR(pg_catalog.>=) $2",
								2, argtypes, args, NULL, true, 1);
	recall_unbecome(&become);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));
	pks = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return 0;

	/* the keys as rows of the table's type: its own input functions parse them */
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s t SET %s FROM pg_catalog.jsonb_populate_recordset(NULL::%s, $1) k"
					 " WHERE t.recalled_at IS NOT NULL AND %s",
					 qualified(relid), set, qualified(relid), unwiped);
	for (int i = 0; i < cfg->nkeys; i++)
		appendStringInfo(&sql, " AND t.%s = k.%s", quote_identifier(cfg->key_names[i]),
						 quote_identifier(cfg->key_names[i]));
	argtypes[0] = JSONBOID;
	args[0] = pks;
	ret = SPI_execute_with_args(sql.data, 1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "backfill of %s failed: %s", RelationGetRelationName(rel),
			 SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * recall._backfill(tbl regclass, content name[], since xid8 DEFAULT NULL)
 * returns bigint: wipe the given content columns of tbl's recalled rows
 * that still hold something else; since NULL: every row (pass 1), else the
 * rows recalled since that transaction (pass 2, the table enabled).
 * Returns the number of rows wiped.  The caller must own the table.
 */
Datum
recall_backfill(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Datum	   *elems;
	bool	   *elemnulls;
	int			ncontent;
	char	  **content;
	Relation	rel;
	StringInfoData set;
	StringInfoData unwiped;
	RecallBecome become;
	bool		switched;
	int64		n = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table and content must not be null")));
	relid = PG_GETARG_OID(0);
	recall_check_owner(relid);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, &elemnulls, &ncontent);
	if (ncontent < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("content must name at least one column")));
	content = palloc(sizeof(char *) * ncontent);
	for (int i = 0; i < ncontent; i++)
	{
		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("content column names must not be null")));
		content[i] = NameStr(*DatumGetName(elems[i]));
	}

	rel = relation_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
	initStringInfo(&set);
	initStringInfo(&unwiped);
	build_clauses(rel, content, ncontent, &set, &unwiped);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the table's triggers are its owner's code: run with the owner's rights */
	switched = (GetUserId() != rel->rd_rel->relowner);
	if (switched)
		recall_become(rel->rd_rel->relowner, SECURITY_RESTRICTED_OPERATION, false, &become);
	if (recall_citus_is_table(relid))
		n = backfill_distributed(relid, set.data, unwiped.data);
	else if (PG_ARGISNULL(2))
	{
		ListCell   *lc;
		List	   *leaves = rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE
			? find_all_inheritors(relid, AccessShareLock, NULL) : list_make1_oid(relid);

		foreach(lc, leaves)
			if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
				n += backfill_leaf(lfirst_oid(lc), set.data, unwiped.data);
	}
	else
		n = backfill_since(rel, PG_GETARG_FULLTRANSACTIONID(2),
						   set.data, unwiped.data);
	if (switched)
		recall_unbecome(&become);
	SPI_finish();
	relation_close(rel, AccessShareLock);
	PG_RETURN_INT64(n);
}
