/*-------------------------------------------------------------------------
 *
 * pg_recall.c
 *	  Module entry point: settings and callbacks.
 *
 * pg_recall makes message recall a property of the database: a recall
 * wipes the content in its own transaction, on every write path, checks
 * permission, freezes the row, logs an event and notifies listeners.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/inval.h"

#include "erasure.h"
#include "pg_recall.h"
#include "worker.h"

PG_MODULE_MAGIC;

/* recall.actor: the end user the application recalls for */
char	   *recall_actor_guc = NULL;

/* recall.reason: the reason of an admin recall */
char	   *recall_reason_guc = NULL;

/* recall.actor_scope: which recall.actor and recall.reason values count */
int			recall_actor_scope = RECALL_ACTOR_SCOPE_TRANSACTION;

static const struct config_enum_entry actor_scope_options[] = {
	{"transaction", RECALL_ACTOR_SCOPE_TRANSACTION, false},
	{"session", RECALL_ACTOR_SCOPE_SESSION, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * The one relcache callback of the module: a backend has room for ten
 * (PostgreSQL 15), shared with other extensions and logical replication,
 * so pg_recall registers one and fans out to its caches.
 */
static void
recall_relcache_callback(Datum arg, Oid relid)
{
	recall_config_invalidate(relid);
	recall_copies_invalidate(relid);
	recall_log_writer_invalidate(relid);
	recall_citus_invalidate(relid);
}

/* Define settings and register callbacks. */
void
_PG_init(void)
{
	DefineCustomStringVariable("recall.actor",
							   gettext_noop("Actor of recalls made by this session when a statement names none."),
							   gettext_noop("Used when a table's actor_source is 'statement'; elsewhere it must name the bound identity or be empty."),
							   &recall_actor_guc,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("recall.reason",
							   gettext_noop("Reason of recalls made by this session when a statement gives none."),
							   gettext_noop("A recall with admin power needs a reason."),
							   &recall_reason_guc,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomEnumVariable("recall.actor_scope",
							 gettext_noop("Which values of recall.actor and recall.reason a recall may use."),
							 gettext_noop("'transaction': only values set in the current transaction or in the connection's startup options (a pooled connection carries session-level SETs over to other clients); 'session': any value."),
							 &recall_actor_scope,
							 RECALL_ACTOR_SCOPE_TRANSACTION,
							 actor_scope_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	/* after the definitions: it looks them up */
	recall_actor_init();
	/* erasure's clocks */
	recall_erasure_init();
	/* the background workers' settings; their launcher when preloaded */
	recall_workers_init();
	/* Citus distributed tables: a setting of its own, and hooks */
	recall_citus_init();

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("recall");
#else
	EmitWarningsOnPlaceholders("recall");
#endif

	CacheRegisterRelcacheCallback(recall_relcache_callback, (Datum) 0);
	recall_config_init();
	recall_events_init();
	recall_log_writer_init();
	recall_copies_init();
}
