/*-------------------------------------------------------------------------
 *
 * pg_recall.h
 *	  Shared declarations of the pg_recall extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RECALL_H
#define PG_RECALL_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/htup.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/* The name of the trigger recall.enable() puts on a table. */
#define RECALL_GUARD_TRIGGER "~recall_guard"

/* NOTIFY refuses payloads of this many bytes or more (async.c). */
#define RECALL_PAYLOAD_MAX 8000

/* Where the actor of a recall comes from (recall.tables.actor_source). */
typedef enum RecallActorSource
{
	ACTOR_SOURCE_STATEMENT,
	ACTOR_SOURCE_ROLE,
	ACTOR_SOURCE_SETTING
} RecallActorSource;

/*
 * Which values of recall.actor and recall.reason count (recall.actor_scope):
 * behind a transaction-pooling pooler, a session-level SET outlives the
 * client that made it.
 */
typedef enum RecallActorScope
{
	RECALL_ACTOR_SCOPE_TRANSACTION, /* set in this transaction, or at startup */
	RECALL_ACTOR_SCOPE_SESSION	/* any value */
} RecallActorScope;

/* One content column: what it is wiped to, and its type's empty value. */
typedef struct RecallContentColumn
{
	AttrNumber	attnum;
	Oid			typid;
	int16		typlen;
	bool		typbyval;
	bool		wiped_isnull;
	Datum		wiped;
	bool		has_empty;		/* empty value of the type, also accepted */
	Datum		empty;
} RecallContentColumn;

/*
 * Settings of an enabled table, resolved against one relation: the enabled
 * table itself, or one of its partitions (attribute numbers may differ).
 * Cached per relation OID in CacheMemoryContext; rebuilt after a relcache
 * invalidation of the relation or of the enabled table.
 */
typedef struct RecallTable
{
	Oid			relid;			/* hash key: the relation the trigger fired on */
	bool		valid;
	MemoryContext mcxt;			/* everything below lives here */

	Oid			root_relid;		/* the enabled table (recall.tables.tbl) */
	char	   *qualified_name; /* "schema.table", quoted as needed */
	char	   *relname;		/* its plain name, for messages */
	char	   *channel;

	int			nkeys;
	AttrNumber *key_attnums;
	Oid		   *key_types;
	char	  **key_names;

	int			ncontent;
	RecallContentColumn *content;

	AttrNumber	recalled_at_att;
	AttrNumber	recalled_by_att;
	AttrNumber	reason_att;

	AttrNumber	sender_att;		/* InvalidAttrNumber if none */
	AttrNumber	sent_at_att;
	Oid			sent_at_type;
	int			sent_at_divisor;	/* 1 for seconds, 1000 for ms, 0 timestamps */
	AttrNumber	conversation_att;
	bool		has_window;
	Interval	window;

	bool		keep_wiped;

	/* partition key columns of every ancestor, as this relation's attnums */
	int			npartkey;
	AttrNumber *partkey_attnums;

	RecallActorSource actor_source;
	char	   *actor_setting;
	char	   *actor_claim;

	/* a timestamp (without time zone) sent_at is read in this zone */
	struct pg_tz *sent_at_zone;

	/* copies are registered: events carry key_hash, recalls queue copy wipes */
	bool		has_copies;

	/*
	 * An enabled BEFORE ROW INSERT or UPDATE trigger whose name sorts after
	 * the guard's: it could put content back after the wipe, so the guard
	 * refuses every write while it exists (NULL: none).
	 */
	char	   *late_trigger;

	/* plans, prepared on first use and kept */
	SPIPlanPtr	update_plan;
	SPIPlanPtr	exists_plan;
} RecallTable;

/* What a recall stamps on the row, and how it was allowed. */
typedef struct RecallStamp
{
	TimestampTz at;
	char	   *actor;
	char	   *reason;
	bool		privileged;		/* admin power (not the sender's own recall) */
} RecallStamp;

/* pg_recall's own logs, appended to by log_writer.c. */
typedef enum RecallLog
{
	RECALL_LOG_EVENTS,
	RECALL_LOG_AUDIT,
	RECALL_LOG_PURGE_QUEUE,
	RECALL_NLOGS
} RecallLog;

/* pg_recall.c */
extern char *recall_actor_guc;
extern char *recall_reason_guc;
extern int	recall_actor_scope;

/* become.c */
typedef struct RecallBecome
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} RecallBecome;
extern void recall_become(Oid role, int flags, bool pin_search_path, RecallBecome *state);
extern void recall_unbecome(RecallBecome *state);
extern ErrorData *recall_try(void (*fn) (void *arg), void *arg);
extern bool recall_is_owner(Oid relid, Oid role);
extern void recall_check_owner(Oid relid);
extern SPIPlanPtr recall_prepare_kept(const char *sql, int nargs, Oid *argtypes);

/* config.c */
extern RecallTable *recall_get_table(Relation rel, bool missing_ok);
extern RecallTable *recall_get_table_by_oid(Oid relid, bool missing_ok);
extern Oid	recall_extension_owner(void);
extern void recall_config_init(void);
extern void recall_config_invalidate(Oid relid);
extern void recall_retire_plan(SPIPlanPtr plan);
extern void recall_retire_context(MemoryContext cxt);
extern char *recall_text_of(HeapTuple tuple, TupleDesc tupdesc, AttrNumber attnum,
							bool *isnull);
extern char *recall_output_text(Oid typid, Datum d);

/* wiped.c */
extern const char *recall_empty_literal(Oid typid);
extern Datum recall_datum_from_text(const char *text, Oid typid, int32 typmod);
extern char *recall_wiped_literal(Relation rel, AttrNumber attnum);
extern bool recall_content_is_wiped(RecallContentColumn *col, Datum value,
									bool isnull, bool *is_exactly_wiped);

/* json_field.c */
extern char *recall_jsonb_scalar_text(JsonbValue *v);
extern char *recall_jsonb_field_text(Jsonb *jb, const char *key, bool *is_object);
extern Jsonb *recall_parse_jsonb(const char *text);

/* trigger_call.c */
#define RECALL_FIRED_BEFORE		0x01
#define RECALL_FIRED_AFTER		0x02
#define RECALL_FIRED_ROW		0x04
#define RECALL_FIRED_STATEMENT	0x08
#define RECALL_FIRED_INSERT		0x10
#define RECALL_FIRED_UPDATE		0x20
#define RECALL_FIRED_OTHER		0x40	/* DELETE, TRUNCATE */
#define RECALL_FIRED_ANY		0x7F
extern struct TriggerData *recall_trigger_data(FunctionCallInfo fcinfo, const char *name,
											   int allowed, const char *how);

/* registry_check.c */
extern void recall_check_protectable(Relation rel);
extern void recall_check_registry_row(HeapTupleHeader row, TupleDesc desc, Oid relid);
extern void recall_check_copies_row(HeapTupleHeader row, TupleDesc desc, Oid tbl, Oid copy);

/* key_json.c */
extern Jsonb *recall_key_jsonb(int n, char **names, Oid *types, Datum *values, bool *nulls);
extern int64 recall_key_hash(Jsonb *pk);

/* actor.c */
extern char *recall_resolve_actor(RecallTable *cfg, const char *given);
extern char *recall_given_reason(const char *given);
extern void recall_actor_init(void);
extern bool recall_actor_from_argument;
extern void recall_refuse(RecallTable *cfg, const char *actor, const char *message,
						  const char *detail, const char *hint) pg_attribute_noreturn();

/* guard.c */
extern bool recall_is_self(RecallTable *cfg, HeapTuple oldtup, TupleDesc tupdesc,
						   const char *actor, TimestampTz now,
						   TimestampTz *window_end);
extern bool recall_is_admin(void);

/* events.c */
extern void recall_log_recall(RecallTable *cfg, Relation rel, HeapTuple oldtup,
							  HeapTuple newtup, RecallStamp *stamp);
extern Jsonb *recall_row_key(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc);
extern void recall_toast_residue(struct varlena *attr, List **residue);
extern int32 recall_statement_group(void);
extern void recall_events_init(void);

/* log_writer.c */
extern void recall_log_append(RecallLog which, Datum *values, bool *nulls, int ncols);
extern int64 recall_log_next_seq(void);
extern bool recall_log_exists(RecallLog which);
extern void recall_log_writer_init(void);
extern void recall_log_writer_invalidate(Oid relid);

/* event_log.c */
extern bool recall_parse_cursor(const char *cursor, uint64 *xid, int64 *seq);

/* payload.c */
extern char *recall_single_payload(const char *table, const char *pk_json,
								   const char *conversation, int64 seq, TimestampTz at);
extern char *recall_bulk_payload(const char *table, int64 count, int64 first_seq,
								 int64 last_seq);
extern char *recall_jsonb_compact(Jsonb *jb);

/* launcher.c (the workers' API is in worker.h) */
extern bool recall_dispatcher_enabled;
extern void recall_dispatcher_wake_at_commit(void);

/* copies.c */
extern void recall_queue_copies(RecallTable *cfg, HeapTuple tup, TupleDesc tupdesc);
extern void recall_copies_init(void);
extern void recall_copies_invalidate(Oid relid);
extern int	recall_in_copy_wipe;

/* citus.c: pg_recall on Citus distributed tables (no-ops without Citus) */
extern void recall_citus_init(void);
extern bool recall_citus_installed(void);
extern bool recall_citus_is_table(Oid relid);
extern char *recall_citus_shard_settings(Relation rel, Oid *root_relid);
extern const char *recall_guard_name(Relation rel);
extern TimestampTz recall_citus_recall_time(void);
extern bool recall_citus_left_over(bool reason);
extern void recall_citus_gather_events(void);
extern void recall_citus_worker_start(void);
extern void recall_citus_invalidate(Oid relid);
extern List *recall_citus_local_shards(Oid logical_relid);
extern Oid	recall_citus_shard_table(Oid relid);

/* actor.c, for citus.c: does recall.actor_scope refuse the current value? */
extern bool recall_setting_left_over(bool reason);


#endif							/* PG_RECALL_H */
