/*-------------------------------------------------------------------------
 *
 * compat_1_0.c
 *	  Entry points that only pg_recall 1.0's SQL objects still name.
 *
 * Between the installation of this library and ALTER EXTENSION pg_recall
 * UPDATE, a database keeps the triggers that 1.0 put on enabled tables.
 * Its BEFORE UPDATE trigger calls the guard of this version, which now
 * writes the event itself; the two AFTER triggers of 1.0 have nothing left
 * to do.  The upgrade script drops them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"

#include "pg_recall.h"

PG_FUNCTION_INFO_V1(recall_event_trigger);
PG_FUNCTION_INFO_V1(recall_notify_trigger);

/* 1.0's "~recall_event" (AFTER UPDATE row): the guard logged the recall. */
Datum
recall_event_trigger(PG_FUNCTION_ARGS)
{
	(void) recall_trigger_data(fcinfo, "recall.event_trigger", RECALL_FIRED_ANY, "as a trigger");
	return PointerGetDatum(NULL);
}

/* 1.0's "~recall_notify" (AFTER UPDATE statement): notified at pre-commit. */
Datum
recall_notify_trigger(PG_FUNCTION_ARGS)
{
	(void) recall_trigger_data(fcinfo, "recall.notify_trigger", RECALL_FIRED_ANY, "as a trigger");
	return PointerGetDatum(NULL);
}
