/*-------------------------------------------------------------------------
 *
 * become.c
 *	  Acting as another role, and catching an error, for a moment.
 *
 * The logs are the extension owner's; the wipe of copies runs as the
 * message table's owner with search_path pinned.  Both switch the user id
 * (and maybe search_path) around a few SPI calls and switch back.  An
 * error in between needs no undoing: transaction abort restores both.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "pg_recall.h"

/* Act as role, with the extra security flags; pin search_path if asked. */
void
recall_become(Oid role, int flags, bool pin_search_path, RecallBecome *state)
{
	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(role, state->save_sec_context | SECURITY_LOCAL_USERID_CHANGE | flags);
	state->save_nestlevel = -1;
	if (pin_search_path)
	{
		state->save_nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
}

/* Undo recall_become. */
void
recall_unbecome(RecallBecome *state)
{
	if (state->save_nestlevel >= 0)
		AtEOXact_GUC(false, state->save_nestlevel);
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * Run fn(arg) in a subtransaction.  On error, roll it back and return the
 * error (the caller decides: rethrow it, or carry on); NULL on success.
 */
ErrorData *
recall_try(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/* Does role own relid (superusers own everything)? */
bool
recall_is_owner(Oid relid, Oid role)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(RelationRelationId, relid, role);
#else
	return pg_class_ownercheck(relid, role);
#endif
}

/* Error unless the current user owns relid: 42P01 or 42501. */
void
recall_check_owner(Oid relid)
{
	char		relkind = get_rel_relkind(relid);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!recall_is_owner(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind),
					   get_rel_name(relid));
}

/* Prepare a statement and keep it for the backend's life. */
SPIPlanPtr
recall_prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}
