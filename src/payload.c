/*-------------------------------------------------------------------------
 *
 * payload.c
 *	  Notification payloads.
 *
 * One message: {"v":1,"op":"recall","table":...,"pk":{...},
 * "conversation":...,"seq":n,"at":"..."}; a statement that recalled
 * several, or a single payload too large for NOTIFY:
 * {"v":1,"op":"recall_bulk","table":...,"count":n,"first_seq":a,
 * "last_seq":b}.  Never content, never a reason.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "pg_recall.h"

/* The single-message payload. */
char *
recall_single_payload(const char *table, const char *pk_json,
					  const char *conversation, int64 seq, TimestampTz at)
{
	StringInfoData buf;
	char		ts[MAXDATELEN + 1];

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"v\":1,\"op\":\"recall\",\"table\":");
	escape_json(&buf, table);
	appendStringInfo(&buf, ",\"pk\":%s,\"conversation\":", pk_json);
	if (conversation)
		escape_json(&buf, conversation);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ",\"seq\":" INT64_FORMAT ",\"at\":\"%s\"}", seq,
					 JsonEncodeDateTime(ts, TimestampTzGetDatum(at), TIMESTAMPTZOID, NULL));
	return buf.data;
}

/* The bulk payload. */
char *
recall_bulk_payload(const char *table, int64 count, int64 first_seq, int64 last_seq)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"v\":1,\"op\":\"recall_bulk\",\"table\":");
	escape_json(&buf, table);
	appendStringInfo(&buf, ",\"count\":" INT64_FORMAT ",\"first_seq\":" INT64_FORMAT
					 ",\"last_seq\":" INT64_FORMAT "}", count, first_seq, last_seq);
	return buf.data;
}

/* A scalar JSON value, compactly. */
static void
append_scalar(StringInfo buf, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "null");
			break;
		case jbvString:
			{
				char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

				escape_json(buf, s);
				break;
			}
		case jbvNumeric:
			appendStringInfoString(buf,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvBool:
			appendStringInfoString(buf, v->val.boolean ? "true" : "false");
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

/*
 * A message key (a jsonb object) as compact JSON text, as the recall
 * transaction writes it into its own payload.
 */
char *
recall_jsonb_compact(Jsonb *jb)
{
	StringInfoData buf;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;
	int			depth = 0;

	initStringInfo(&buf);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				if (depth > 0 && !first)
					appendStringInfoChar(&buf, ',');
				appendStringInfoChar(&buf, tok == WJB_BEGIN_OBJECT ? '{' : '[');
				depth++;
				first = true;
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				appendStringInfoChar(&buf, tok == WJB_END_OBJECT ? '}' : ']');
				depth--;
				first = false;
				break;
			case WJB_KEY:
				if (!first)
					appendStringInfoChar(&buf, ',');
				append_scalar(&buf, &v);
				appendStringInfoChar(&buf, ':');
				first = true;	/* the value follows without a comma */
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					appendStringInfoChar(&buf, ',');
				if (v.type == jbvBinary)
					elog(ERROR, "unexpected nested jsonb container");
				append_scalar(&buf, &v);
				first = false;
				break;
			default:
				break;
		}
	}
	return buf.data;
}
