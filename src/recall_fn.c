/*-------------------------------------------------------------------------
 *
 * recall_fn.c
 *	  recall.recall(tbl, id, actor, reason): recall one message by key.
 *
 * Runs an UPDATE of the table with the caller's privileges; the triggers
 * do the rest.  Plans are prepared once per table and kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_recall);

/* WHERE clause matching the key against $1..$n. */
static void
append_key_condition(StringInfo sql, RecallTable *cfg)
{
	appendStringInfoString(sql, " WHERE ");
	for (int i = 0; i < cfg->nkeys; i++)
		appendStringInfo(sql, "%s%s = $%d", i > 0 ? " AND " : "",
						 quote_identifier(cfg->key_names[i]), i + 1);
}

/* Prepare the UPDATE and the existence check for cfg's relation. */
static void
prepare_plans(RecallTable *cfg)
{
	StringInfoData sql;
	char	   *relname;
	Oid		   *argtypes = palloc(sizeof(Oid) * (cfg->nkeys + 2));

	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(cfg->relid)),
										 get_rel_name(cfg->relid));
	for (int i = 0; i < cfg->nkeys; i++)
		argtypes[i] = cfg->key_types[i];
	argtypes[cfg->nkeys] = TEXTOID;
	argtypes[cfg->nkeys + 1] = TEXTOID;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s SET recalled_at = pg_catalog.now(), recalled_by = $%d,"
					 " recall_reason = $%d",
					 relname, cfg->nkeys + 1, cfg->nkeys + 2);
	append_key_condition(&sql, cfg);
	appendStringInfoString(&sql, " AND recalled_at IS NULL");
	cfg->update_plan = recall_prepare_kept(sql.data, cfg->nkeys + 2, argtypes);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM %s", relname);
	append_key_condition(&sql, cfg);
	cfg->exists_plan = recall_prepare_kept(sql.data, cfg->nkeys, argtypes);
}

/*
 * Convert the id argument to the key's values.  Errors here (a value that
 * is not of the key's type) are raised by the caller as 22023.
 */
static void
convert_id(RecallTable *cfg, Oid argtype, Datum id, Datum *keys)
{
	/*
	 * Text for a composite key (a driver's untyped parameter resolves
	 * recall.recall(regclass, text, ...)): the jsonb object as JSON text.
	 */
	if (argtype == TEXTOID && cfg->nkeys > 1)
	{
		Jsonb	   *jb = recall_parse_jsonb(TextDatumGetCString(id));

		/* not JSON: refused below, as any id that is not jsonb */
		if (jb != NULL)
		{
			id = JsonbPGetDatum(jb);
			argtype = JSONBOID;
		}
	}
	if (argtype == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(id);

		if (JB_ROOT_IS_SCALAR(jb) && cfg->nkeys == 1)
		{
			JsonbValue	v;
			char	   *text;

			if (!JsonbExtractScalar(&jb->root, &v) ||
				(text = recall_jsonb_scalar_text(&v)) == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("jsonb id is null")));
			keys[0] = recall_datum_from_text(text, cfg->key_types[0], -1);
			return;
		}
		for (int i = 0; i < cfg->nkeys; i++)
		{
			bool		is_object;
			char	   *text = recall_jsonb_field_text(jb, cfg->key_names[i], &is_object);

			if (!is_object)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("jsonb id must be an object naming every key column")));
			if (text == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("jsonb id has no value for key column \"%s\"",
								cfg->key_names[i])));
			keys[i] = recall_datum_from_text(text, cfg->key_types[i], -1);
		}
		return;
	}
	if (cfg->nkeys > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a composite key needs a jsonb object as id"),
				 errhint("Pass the id as jsonb_build_object('%s', ..., ...).", cfg->key_names[0])));
	{
		Oid			typoutput;
		bool		typisvarlena;

		getTypeOutputInfo(argtype, &typoutput, &typisvarlena);
		keys[0] = recall_datum_from_text(OidOutputFunctionCall(typoutput, id), cfg->key_types[0], -1);
	}
}

/* Arguments of convert_id, for recall_try. */
typedef struct ConvertCall
{
	RecallTable *cfg;
	Oid			argtype;
	Datum		id;
	Datum	   *keys;
} ConvertCall;

static void
convert_id_call(void *arg)
{
	ConvertCall *call = (ConvertCall *) arg;

	convert_id(call->cfg, call->argtype, call->id, call->keys);
}

/*
 * convert_id in a subtransaction, so that any failure of the key type's
 * input function becomes one clear 22023 error.
 */
static void
convert_id_checked(RecallTable *cfg, Oid argtype, Datum id, Datum *keys)
{
	ConvertCall call = {cfg, argtype, id, keys};
	ErrorData  *edata;

	if (cfg->nkeys == 1 && argtype == cfg->key_types[0])
	{
		keys[0] = id;
		return;
	}
	edata = recall_try(convert_id_call, &call);
	if (edata == NULL)
		return;
	if (edata->sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE)
		ReThrowError(edata);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid id for table \"%s\": %s", cfg->relname, edata->message),
			 errhint("Pass the key value, or a jsonb object naming every key column for a composite key.")));
}

/*
 * recall.recall(tbl regclass, id anyelement, actor text, reason text)
 * returns boolean: true if recalled now, false if it already was; P0002 if
 * there is no such message.  Also recall.recall(tbl, id text, ...), which
 * an id of unknown type (a driver's untyped parameter) resolves to.
 */
Datum
recall_recall(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			argtype;
	RecallTable *cfg;
	Datum	   *values;
	char	   *nulls;
	int			ret;
	bool		recalled;
	SPIPlanPtr	update_plan;
	SPIPlanPtr	exists_plan;
	char	   *qualified_name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be null")));
	relid = PG_GETARG_OID(0);
	if (!OidIsValid(get_rel_relkind(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	cfg = recall_get_table_by_oid(relid, true);
	if (cfg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not enabled for recall", get_rel_name(relid)),
				 errhint("Call recall.enable() on the table first.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("id must not be null"),
				 errhint("Pass the message's key value.")));
	argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);

	values = palloc(sizeof(Datum) * (cfg->nkeys + 2));
	nulls = palloc(sizeof(char) * (cfg->nkeys + 2));
	memset(nulls, ' ', cfg->nkeys + 2);
	convert_id_checked(cfg, argtype, PG_GETARG_DATUM(1), values);
	values[cfg->nkeys] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[cfg->nkeys] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[cfg->nkeys + 1] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[cfg->nkeys + 1] = PG_ARGISNULL(3) ? 'n' : ' ';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the entry may have been reloaded by the lookup in convert_id */
	cfg = recall_get_table_by_oid(relid, false);
	if (cfg->update_plan == NULL || cfg->exists_plan == NULL)
		prepare_plans(cfg);
	/* the UPDATE's triggers may reload cfg; its old plans live until commit */
	update_plan = cfg->update_plan;
	exists_plan = cfg->exists_plan;
	qualified_name = pstrdup(cfg->relname);

	recall_actor_from_argument = !PG_ARGISNULL(2);
	PG_TRY();
	{
		ret = SPI_execute_plan(update_plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		recall_actor_from_argument = false;
	}
	PG_END_TRY();
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "recall update failed: %s", SPI_result_code_string(ret));
	recalled = (SPI_processed > 0);
	if (!recalled)
	{
		ret = SPI_execute_plan(exists_plan, values, nulls, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "recall lookup failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("message not found in table \"%s\"", qualified_name),
					 errdetail("No row of relation \"%s\" has that key.", get_rel_name(relid))));
	}
	SPI_finish();
	PG_RETURN_BOOL(recalled);
}
