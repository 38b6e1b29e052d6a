/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The common entry point of pg_recall's workers.
 *
 * The launcher (launcher.c) gives each worker a slot in shared memory and
 * passes its index as bgw_main_arg (and the slot's generation in
 * bgw_extra); the slot says which database and what kind of work.  The
 * worker attaches to its slot, connects to its database as the bootstrap
 * superuser, and runs its kind's loop; when the loop returns, it exits and
 * gives the slot back (also after an error, which the launcher counts as a
 * failure and retries after a back-off).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"

#include "pg_recall.h"
#include "worker.h"

/* Is someone waiting to drop (or rename, or copy) this database? */
bool
recall_database_wanted_elsewhere(void)
{
	LOCKTAG		tag;

	/* DROP DATABASE holds a lock that conflicts with a connection's */
	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, true);
	return false;
}

/* Is pg_recall installed in this database? */
static bool
extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("pg_recall", true));
	CommitTransactionCommand();
	return installed;
}

/*
 * recall_worker_main: a dispatcher, purger or rebuilder of one database.
 */
void
recall_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	uint32		generation;
	Oid			dboid;
	RecallWorkerKind kind;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	if (!recall_worker_attach(index, generation, &dboid, &kind))
		proc_exit(0);			/* the slot went to another worker meanwhile */

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	/* Citus hides shards from processes it does not know (no-op without it) */
	recall_citus_worker_start();

	switch (kind)
	{
		case RECALL_WORKER_DISPATCHER:
			/* it leaves by itself without the extension (or when dropped) */
			recall_dispatcher_loop();
			break;
		case RECALL_WORKER_PURGER:
			if (extension_installed())
				recall_purger_loop();
			break;
		case RECALL_WORKER_REBUILDER:
			if (extension_installed())
				recall_rebuilder_loop();
			break;
	}
	proc_exit(0);
}
