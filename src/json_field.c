/*-------------------------------------------------------------------------
 *
 * json_field.c
 *	  Text of one top-level field of a JSON object.
 *
 * Used for the actor claim of a setting (request.jwt.claims ->> 'sub') and
 * for a composite message key passed to recall.recall() as jsonb.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "pg_recall.h"

/* Text of a scalar JSON value; NULL for null, objects and arrays. */
char *
recall_jsonb_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * Text of field key of jb if jb is an object holding a scalar there; NULL
 * otherwise.  *is_object tells whether jb was an object at all.
 */
char *
recall_jsonb_field_text(Jsonb *jb, const char *key, bool *is_object)
{
	JsonbValue	v;

	*is_object = JB_ROOT_IS_OBJECT(jb) && !JB_ROOT_IS_SCALAR(jb);
	if (!*is_object)
		return NULL;
	if (getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &v) == NULL)
		return NULL;
	return recall_jsonb_scalar_text(&v);
}

/*
 * Parse text as jsonb, or return NULL if it is not valid JSON (never an
 * error: a setting that is not JSON is a missing identity, not a crash).
 */
Jsonb *
recall_parse_jsonb(const char *text)
{
	JsonLexContext *lex;

#if PG_VERSION_NUM >= 170000
	JsonLexContext lexbuf;

	lex = makeJsonLexContextCstringLen(&lexbuf, unconstify(char *, text), strlen(text),
									   GetDatabaseEncoding(), false);
#else
	lex = makeJsonLexContextCstringLen(unconstify(char *, text), strlen(text),
									   GetDatabaseEncoding(), false);
#endif
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}
