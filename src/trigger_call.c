/*-------------------------------------------------------------------------
 *
 * trigger_call.c
 *	  The trigger protocol check every trigger function of pg_recall makes.
 *
 * A trigger function may be called by hand (SELECT recall.guard_trigger())
 * or attached with the wrong timing: it must say so with SQLSTATE 39P01
 * (as contrib/tcn does) before touching fcinfo->context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"

#include "pg_recall.h"

/*
 * The TriggerData of a trigger call, after checking that it is one, fired
 * as "allowed" says (RECALL_FIRED_* flags); "how" describes the allowed
 * firing for the error message.
 */
TriggerData *
recall_trigger_data(FunctionCallInfo fcinfo, const char *name, int allowed, const char *how)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent ev;
	int			fired;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager", name)));
	ev = trigdata->tg_event;
	fired = (TRIGGER_FIRED_BEFORE(ev) ? RECALL_FIRED_BEFORE : RECALL_FIRED_AFTER) |
		(TRIGGER_FIRED_FOR_ROW(ev) ? RECALL_FIRED_ROW : RECALL_FIRED_STATEMENT) |
		(TRIGGER_FIRED_BY_INSERT(ev) ? RECALL_FIRED_INSERT :
		 TRIGGER_FIRED_BY_UPDATE(ev) ? RECALL_FIRED_UPDATE : RECALL_FIRED_OTHER);
	/* every part of the firing (timing, level, event) must be allowed */
	if ((fired & allowed) != fired)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired %s", name, how)));
	return trigdata;
}
