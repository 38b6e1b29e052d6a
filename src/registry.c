/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  Writes to recall.tables on behalf of a table's owner.
 *
 * recall.enable() and recall.disable() run with the caller's rights, so
 * that every change to the user's table is one its owner could make.  The
 * registry itself is written here, after checking that the caller owns the
 * table, as the extension's owner; then a relcache invalidation of the
 * table makes every backend reload its cached settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_registry_put);
PG_FUNCTION_INFO_V1(recall_registry_delete);
PG_FUNCTION_INFO_V1(recall_copies_put);
PG_FUNCTION_INFO_V1(recall_copies_delete);

/* Run one registry statement as the extension's owner. */
static uint64
registry_exec(const char *sql, Oid argtype, Datum arg, int expected)
{
	RecallBecome become;
	int			ret;
	uint64		processed;

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, false, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, false, 0);
	if (ret != expected)
		elog(ERROR, "registry statement failed: %s", SPI_result_code_string(ret));
	processed = SPI_processed;
	SPI_finish();
	recall_unbecome(&become);
	return processed;
}

/*
 * recall._registry_put(entry recall.tables): insert or replace the row of
 * entry.tbl.
 */
Datum
recall_registry_put(PG_FUNCTION_ARGS)
{
	HeapTupleHeader entry = PG_GETARG_HEAPTUPLEHEADER(0);
	Oid			rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	bool		isnull;
	Oid			relid;

	relid = DatumGetObjectId(GetAttributeByName(entry, "tbl", &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("registry entry has no table")));
	recall_check_owner(relid);
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(entry),
												  HeapTupleHeaderGetTypMod(entry));

		recall_check_registry_row(entry, desc, relid);
		ReleaseTupleDesc(desc);
	}

	registry_exec("DELETE FROM recall.tables WHERE tbl OPERATOR(pg_catalog.=) ($1).tbl",
				  rowtype, PG_GETARG_DATUM(0), SPI_OK_DELETE);
	registry_exec("INSERT INTO recall.tables SELECT ($1).*",
				  rowtype, PG_GETARG_DATUM(0), SPI_OK_INSERT);
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/*
 * recall._registry_delete(tbl regclass) returns boolean: remove the row of
 * tbl; true if there was one.
 */
Datum
recall_registry_delete(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	uint64		n;

	recall_check_owner(relid);
	n = registry_exec("DELETE FROM recall.tables WHERE tbl OPERATOR(pg_catalog.=) $1",
					  REGCLASSOID, ObjectIdGetDatum(relid), SPI_OK_DELETE);
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_BOOL(n > 0);
}

/*
 * recall._copies_put(entry recall.copies): insert or replace a copy
 * registration; the caller must own both tables.
 */
Datum
recall_copies_put(PG_FUNCTION_ARGS)
{
	HeapTupleHeader entry = PG_GETARG_HEAPTUPLEHEADER(0);
	Oid			rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	bool		isnull;
	Oid			tbl = DatumGetObjectId(GetAttributeByName(entry, "tbl", &isnull));
	Oid			copy;
	TupleDesc	desc;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("copy registration has no table")));
	copy = DatumGetObjectId(GetAttributeByName(entry, "copy", &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("copy registration has no copy table")));
	recall_check_owner(tbl);
	recall_check_owner(copy);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(entry), HeapTupleHeaderGetTypMod(entry));
	recall_check_copies_row(entry, desc, tbl, copy);
	ReleaseTupleDesc(desc);
	registry_exec("DELETE FROM recall.copies WHERE tbl OPERATOR(pg_catalog.=) ($1).tbl"
				  " AND copy OPERATOR(pg_catalog.=) ($1).copy"
				  " AND match OPERATOR(pg_catalog.=) ($1).match",
				  rowtype, PG_GETARG_DATUM(0), SPI_OK_DELETE);
	registry_exec("INSERT INTO recall.copies SELECT ($1).*",
				  rowtype, PG_GETARG_DATUM(0), SPI_OK_INSERT);
	CacheInvalidateRelcacheByRelid(tbl);
	CacheInvalidateRelcacheByRelid(copy);
	PG_RETURN_VOID();
}

/*
 * recall._copies_delete(entry recall.copies) returns boolean: remove the
 * registration with entry's tbl, copy and match.
 */
Datum
recall_copies_delete(PG_FUNCTION_ARGS)
{
	HeapTupleHeader entry = PG_GETARG_HEAPTUPLEHEADER(0);
	Oid			rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	bool		tnull;
	bool		cnull;
	Oid			tbl = DatumGetObjectId(GetAttributeByName(entry, "tbl", &tnull));
	Oid			copy = DatumGetObjectId(GetAttributeByName(entry, "copy", &cnull));
	uint64		n;

	if (tnull || cnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("copy registration has no table or no copy table")));

	recall_check_owner(tbl);
	recall_check_owner(copy);
	n = registry_exec("DELETE FROM recall.copies WHERE tbl OPERATOR(pg_catalog.=) ($1).tbl"
					  " AND copy OPERATOR(pg_catalog.=) ($1).copy"
					  " AND match OPERATOR(pg_catalog.=) ($1).match",
					  rowtype, PG_GETARG_DATUM(0), SPI_OK_DELETE);
	CacheInvalidateRelcacheByRelid(tbl);
	CacheInvalidateRelcacheByRelid(copy);
	PG_RETURN_BOOL(n > 0);
}
