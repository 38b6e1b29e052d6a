/*-------------------------------------------------------------------------
 *
 * wiped.c
 *	  The wiped value of a content column.
 *
 * A nullable content column is wiped to NULL.  A NOT NULL one is wiped to
 * its DEFAULT when that is a constant (the DBA's tombstone), else to the
 * empty value of its type.  recall.enable() fixes the values through
 * recall._wiped_value(); the triggers compare against them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_wiped_value);

/*
 * Text of the empty value of a type (domains resolved), or NULL when the
 * type has none: string types and bytea, json and jsonb, arrays, tsvector.
 */
const char *
recall_empty_literal(Oid typid)
{
	Oid			base = getBaseType(typid);
	char		category;
	bool		preferred;

	if (base == BYTEAOID)
		return "\\x";
	if (base == JSONOID || base == JSONBOID)
		return "{}";
	if (base == TSVECTOROID)
		return "";
	if (OidIsValid(get_element_type(base)))
		return "{}";
	get_type_category_preferred(base, &category, &preferred);
	if (category == TYPCATEGORY_STRING)
		return "";
	return NULL;
}

/* A datum of type typid (typmod applied, domains checked) read from text. */
Datum
recall_datum_from_text(const char *text, Oid typid, int32 typmod)
{
	Oid			infunc;
	Oid			ioparam;

	getTypeInputInfo(typid, &infunc, &ioparam);
	return OidInputFunctionCall(infunc, unconstify(char *, text), ioparam, typmod);
}

/*
 * Does value hold col's wiped value?  Its type's empty value counts too (a
 * table's own trigger may recompute '' or an empty tsvector from wiped
 * content): *is_exact tells whether the value needs no normalising.
 */
bool
recall_content_is_wiped(RecallContentColumn *col, Datum value, bool isnull,
						bool *is_exact)
{
	bool		exact;

	if (col->wiped_isnull)
		exact = isnull;
	else
		exact = !isnull && datum_image_eq(value, col->wiped, col->typbyval, col->typlen);
	*is_exact = exact;
	if (exact)
		return true;
	return !isnull && col->has_empty &&
		datum_image_eq(value, col->empty, col->typbyval, col->typlen);
}

/*
 * Does a column refuse NULL: its own NOT NULL, or a NOT NULL domain
 * anywhere in its type's chain of domains?  (A NOT NULL domain column
 * wiped to NULL would make its rows fail a dump's restore.)
 */
static bool
column_is_not_null(Form_pg_attribute att)
{
	Oid			typid = att->atttypid;

	if (att->attnotnull)
		return true;
	for (;;)
	{
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
		Form_pg_type typ;
		bool		notnull;
		Oid			base;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for type %u", typid);
		typ = (Form_pg_type) GETSTRUCT(tup);
		notnull = (typ->typtype == TYPTYPE_DOMAIN && typ->typnotnull);
		base = typ->typbasetype;
		ReleaseSysCache(tup);
		if (notnull)
			return true;
		if (!OidIsValid(base))
			return false;
		typid = base;
	}
}

/* What wiped_literal works on, for recall_try-free owner switching. */
typedef struct WipedCall
{
	Relation	rel;
	AttrNumber	attnum;
	char	   *literal;		/* result; NULL for SQL NULL */
} WipedCall;

/*
 * The wiped value of a column as text (NULL for SQL NULL).  Evaluating a
 * default or checking a domain may run the table owner's code: the caller
 * switches to that owner first.
 */
static void
wiped_literal(WipedCall *call)
{
	Relation	rel = call->rel;
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), call->attnum - 1);
	Node	   *def;
	char	   *literal = NULL;

	call->literal = NULL;
	if (!column_is_not_null(att))
		return;

	/* a constant DEFAULT (the column's or its domain's) is the DBA's tombstone */
	def = build_column_default(rel, call->attnum);
	if (def != NULL)
	{
		def = eval_const_expressions(NULL, def);
		if (IsA(def, Const) && !((Const *) def)->constisnull)
		{
			Const	   *c = (Const *) def;
			Oid			typoutput;
			bool		typisvarlena;

			getTypeOutputInfo(c->consttype, &typoutput, &typisvarlena);
			literal = OidOutputFunctionCall(typoutput, c->constvalue);
		}
	}

	if (literal == NULL)
	{
		const char *empty = recall_empty_literal(att->atttypid);

		if (empty == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("content column \"%s\" of type %s is NOT NULL and has no wiped value",
							NameStr(att->attname), format_type_be(att->atttypid)),
					 errdetail("A NOT NULL content column is wiped to its constant default, or to the empty value of a string, bytea, json, jsonb, array or tsvector type."),
					 errhint("Drop the NOT NULL constraint of column \"%s\", or give it a constant default to serve as the tombstone.",
							 NameStr(att->attname))));
		literal = pstrdup(empty);
	}

	/* the column's own input function (domain checks included) must accept it */
	(void) recall_datum_from_text(literal, att->atttypid, att->atttypmod);
	call->literal = literal;
}

/*
 * The wiped value of column attnum of rel, as text, or NULL.  Runs as the
 * table's owner with SECURITY_RESTRICTED_OPERATION and search_path pinned:
 * a default's functions and a domain's checks are the owner's code, never
 * to be run with the rights of whoever calls enable() (a superuser, say).
 */
char *
recall_wiped_literal(Relation rel, AttrNumber attnum)
{
	WipedCall	call = {rel, attnum, NULL};
	RecallBecome become;

	recall_become(rel->rd_rel->relowner, SECURITY_RESTRICTED_OPERATION, true, &become);
	wiped_literal(&call);
	recall_unbecome(&become);
	return call.literal;
}

/*
 * recall._wiped_value(tbl regclass, col name) returns text
 *
 * The wiped value of a content column as text, NULL for a nullable column;
 * 22023 for a NOT NULL column with neither a constant default nor an empty
 * value.  The caller must own the table.
 */
Datum
recall_wiped_value(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Name		colname = PG_GETARG_NAME(1);
	Relation	rel;
	int			attnum;
	char	   *literal;

	recall_check_owner(relid);
	rel = relation_open(relid, AccessShareLock);
	attnum = SPI_fnumber(RelationGetDescr(rel), NameStr(*colname));
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						NameStr(*colname), RelationGetRelationName(rel))));
	literal = recall_wiped_literal(rel, (AttrNumber) attnum);
	relation_close(rel, AccessShareLock);
	if (literal == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(literal));
}
