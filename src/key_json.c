/*-------------------------------------------------------------------------
 *
 * key_json.c
 *	  A message key as a jsonb object, spelled the same in every session.
 *
 * recall.events.pk names the recalled message; a copy guard later spells
 * a copy's match values the same way to find a deleted message's recall.
 * The spelling is built in C from the key's own datums, so that no cast to
 * json is ever looked up (a table owner's cast would run as whoever writes
 * the event) and no session setting (TimeZone, DateStyle, bytea_output,
 * extra_float_digits) changes it:
 *	- integers, oid and numeric: JSON numbers; floats too when finite;
 *	- bool: JSON true/false;
 *	- date and time types: ISO 8601, timestamptz in UTC;
 *	- bytea: "\x" and lower-case hex;
 *	- anything else: a JSON string of the type's output function.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "pg_recall.h"

/* A string JsonbValue of a C string. */
static void
string_value(JsonbValue *v, char *s)
{
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = strlen(s);
}

/* A numeric JsonbValue parsed from a canonical number's text. */
static void
numeric_value(JsonbValue *v, const char *s)
{
	v->type = jbvNumeric;
	v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
														 ObjectIdGetDatum(InvalidOid),
														 Int32GetDatum(-1)));
}

/* The canonical JsonbValue of one key datum of type typid (not null). */
static void
key_value(JsonbValue *v, Oid typid, Datum d)
{
	Oid			base = typid;
	char		buf[MAXDATELEN + 1];

	/* the common key types need no catalog lookup */
	if (typid != INT8OID && typid != INT4OID && typid != TEXTOID && typid != UUIDOID)
		base = getBaseType(typid);

	switch (base)
	{
		case INT2OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt16(d));
			return;
		case INT4OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(d));
			return;
		case INT8OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt64(d));
			return;
		case OIDOID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric((int64) DatumGetObjectId(d));
			return;
		case NUMERICOID:
			if (!numeric_is_nan(DatumGetNumeric(d)) && !numeric_is_inf(DatumGetNumeric(d)))
			{
				v->type = jbvNumeric;
				v->val.numeric = DatumGetNumeric(d);
				return;
			}
			break;
		case FLOAT4OID:
		case FLOAT8OID:
			{
				double		f = (base == FLOAT4OID) ? DatumGetFloat4(d) : DatumGetFloat8(d);
				char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

				if (isfinite(f))
				{
					if (base == FLOAT4OID)
						float_to_shortest_decimal_buf((float) f, num);
					else
						double_to_shortest_decimal_buf(f, num);
					numeric_value(v, num);
					return;
				}
				string_value(v, pstrdup(isnan(f) ? "NaN" : (f > 0 ? "Infinity" : "-Infinity")));
				return;
			}
		case BOOLOID:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(d);
			return;
		case DATEOID:
		case TIMESTAMPOID:
			string_value(v, pstrdup(JsonEncodeDateTime(buf, d, base, NULL)));
			return;
		case TIMESTAMPTZOID:
			{
				int			utc = 0;

				string_value(v, pstrdup(JsonEncodeDateTime(buf, d, base, &utc)));
				return;
			}
		case BYTEAOID:
			{
				bytea	   *b = DatumGetByteaPP(d);
				int			len = VARSIZE_ANY_EXHDR(b);
				char	   *s = palloc(len * 2 + 3);

				s[0] = '\\';
				s[1] = 'x';
				hex_encode(VARDATA_ANY(b), len, s + 2);
				s[len * 2 + 2] = '\0';
				string_value(v, s);
				return;
			}
		case TEXTOID:
		case VARCHAROID:
			string_value(v, TextDatumGetCString(d));
			return;
		default:
			break;
	}
	string_value(v, recall_output_text(base, d));
}

/*
 * The key {"name": value, ...} of n key columns.  A null value is JSON
 * null (a replica identity index has no nulls; a broken row still logs).
 */
Jsonb *
recall_key_jsonb(int n, char **names, Oid *types, Datum *values, bool *nulls)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < n; i++)
	{
		JsonbValue	v;

		string_value(&k, names[i]);
		pushJsonbValue(&state, WJB_KEY, &k);
		if (nulls[i])
			v.type = jbvNull;
		else
			key_value(&v, types[i], values[i]);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* The hash of a key, as recall.events.key_hash stores it. */
int64
recall_key_hash(Jsonb *pk)
{
	return DatumGetInt64(DirectFunctionCall2(jsonb_hash_extended, JsonbPGetDatum(pk),
											 Int64GetDatum(0)));
}
