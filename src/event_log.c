/*-------------------------------------------------------------------------
 *
 * event_log.c
 *	  Gap-free reading of recall.events: recall.events_after().
 *
 * An event is handed out only once its transaction is older than every
 * transaction still in flight (its xid is below the snapshot's xmin), in
 * (xid, seq) order.  Every later event then sorts after it, so a reader
 * that resumes from the last cursor can neither skip nor repeat one,
 * whatever order concurrent recalls commit in.  The cursor is "xid:seq".
 *
 * A reader sees the events of the tables it may SELECT from; the log
 * itself is read as the extension's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"
#include "utils/xid8.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_events_after);

static SPIPlanPtr from_start_plan = NULL;
static SPIPlanPtr after_cursor_plan = NULL;

#define EVENTS_SELECT \
	"SELECT e.xid::pg_catalog.text OPERATOR(pg_catalog.||) ':'" \
	" OPERATOR(pg_catalog.||) e.seq::pg_catalog.text," \
	" e.seq, e.tbl, e.pk, e.conversation, e.actor, e.privileged, e.recalled_at" \
	" FROM recall.events e" \
	" WHERE e.xid OPERATOR(pg_catalog.<)" \
	"  pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())" \
	" AND pg_catalog.has_table_privilege($1, e.tbl::pg_catalog.oid, 'SELECT')"

#define EVENTS_ORDER " ORDER BY e.xid, e.seq LIMIT $2"

/*
 * Parse a cursor "xid:seq"; 22023 for anything else.
 */
bool
recall_parse_cursor(const char *cursor, uint64 *xid, int64 *seq)
{
	char	   *end;
	const char *p = cursor;

	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	*xid = strtoull(p, &end, 10);
	if (errno != 0 || *end != ':')
		return false;
	p = end + 1;
	if (*p < '0' || *p > '9')
		return false;
	*seq = strtoll(p, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	return true;
}

/*
 * recall.events_after(after text, max_events integer)
 *	 RETURNS TABLE (cursor, seq, tbl, pk, conversation, actor, privileged,
 *					recalled_at)
 */
Datum
recall_events_after(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			caller = GetUserId();
	int32		max_events = PG_ARGISNULL(1) ? 1000 : PG_GETARG_INT32(1);
	uint64		xid = 0;
	int64		seq = 0;
	bool		from_start = PG_ARGISNULL(0);
	Datum		args[4];
	RecallBecome become;
	int			ret;

	if (!from_start)
	{
		char	   *cursor = text_to_cstring(PG_GETARG_TEXT_PP(0));

		if (!recall_parse_cursor(cursor, &xid, &seq))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid recall event cursor \"%s\"", cursor),
					 errhint("Pass a cursor returned by recall.events_after() or recall.head(), or NULL to read from the oldest event.")));
	}
	if (max_events < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be at least 1")));

	InitMaterializedSRF(fcinfo, 0);

	/* on a Citus coordinator: the workers' events first (citus.c) */
	recall_citus_gather_events();

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, false, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = ObjectIdGetDatum(caller);
	args[1] = Int64GetDatum(max_events);
	if (from_start)
	{
		if (from_start_plan == NULL)
		{
			Oid			types[2] = {OIDOID, INT8OID};

			from_start_plan = recall_prepare_kept(EVENTS_SELECT EVENTS_ORDER, 2, types);
		}
		ret = SPI_execute_plan(from_start_plan, args, NULL, true, 0);
	}
	else
	{
		if (after_cursor_plan == NULL)
		{
			Oid			types[4] = {OIDOID, INT8OID, XID8OID, INT8OID};

			after_cursor_plan = recall_prepare_kept(EVENTS_SELECT
									 " AND (e.xid, e.seq) OPERATOR(pg_catalog.>) ($3, $4)"
									 EVENTS_ORDER, 4, types);
		}
		args[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(xid));
		args[3] = Int64GetDatum(seq);
		ret = SPI_execute_plan(after_cursor_plan, args, NULL, true, 0);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading recall.events failed: %s", SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[8];
		bool		nulls[8];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	recall_unbecome(&become);
	return (Datum) 0;
}
