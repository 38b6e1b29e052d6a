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

#include "erasure.h"
#include "pg_recall.h"

PG_MODULE_MAGIC;

/* recall.actor: the end user the application recalls for */
char	   *recall_actor_guc = NULL;

/* recall.reason: the reason of an admin recall */
char	   *recall_reason_guc = NULL;

void		_PG_init(void);

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
	/* erasure's clocks */
	recall_erasure_init();
	/* the background dispatcher, when preloaded */
	recall_dispatcher_register();

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("recall");
#else
	EmitWarningsOnPlaceholders("recall");
#endif

	recall_config_init();
	recall_events_init();
	recall_copies_init();
}
