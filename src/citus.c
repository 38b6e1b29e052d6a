/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  pg_recall on Citus distributed tables.
 *
 * A distributed table is a shell on the coordinator (and on every worker,
 * with metadata sync) and shards on the workers; a recall through the
 * coordinator runs on the shards, in the workers' own transactions.  What
 * pg_recall needs there, and how it gets it:
 *
 *	- Settings.  recall.enable() gives the guard trigger of a table in a
 *	  database with Citus its registry row as its one argument (JSON).
 *	  Citus creates the trigger on every shard from the table's definition
 *	  (at distribution, and for every new shard: moves, splits, new nodes),
 *	  so each shard carries its own settings, in step with its DDL.  A
 *	  shard's guard finds no registry row for itself and reads that
 *	  argument (recall_citus_shard_settings, called by config.c).
 *	- The logical table.  A shard is resolved to its distributed table
 *	  through Citus's metadata (pg_dist_shard, on every node with metadata
 *	  sync), then to the enabled ancestor for a partition; events and
 *	  notifications name that table, never a shard.
 *	- The registry on the workers.  When a worker's transaction creates or
 *	  drops the guard of a distributed table's shell (Citus propagates the
 *	  DDL, and creates shells on new nodes), the worker keeps its own
 *	  recall.tables row of the shell in step at pre-commit, for its purger
 *	  and dispatcher.  A shard that gets the guard gets its content
 *	  columns' statistics target set to 0 and their statistics removed.
 *	- Citus's checks.  The SQL functions that create or drop pg_recall's
 *	  triggers run with citus.enable_unsafe_triggers (their SET clause);
 *	  a statement that distributes an enabled table gets it for its own
 *	  duration (the executor hooks below), and only when the table has no
 *	  trigger but pg_recall's.
 *	- Actor and reason.  Citus propagates SET LOCAL to the workers only
 *	  with citus.propagate_set_commands = 'local'.  Before a distributed
 *	  statement runs, the coordinator forwards recall.actor, recall.reason
 *	  and the tables' actor settings through that mechanism when they
 *	  changed, whatever set them (SET LOCAL, set_config(), SET), and marks
 *	  a value left over from an earlier transaction (recall.actor_scope)
 *	  so that the worker refuses it as the coordinator would.
 *	- recalled_at.  A worker stamps a recall with the distributed
 *	  transaction's timestamp, which Citus gives every node of the
 *	  transaction, so one statement has one recalled_at on every worker.
 *	- Events.  Each worker keeps its own log.  The coordinator copies the
 *	  workers' events into its own recall.events (recall._citus_gather):
 *	  per worker, the events of finished transactions after that worker's
 *	  position, in (xid, seq) order, as events_after() reads one log; the
 *	  copies and the new position commit together, so every event is
 *	  copied once.  The copies are ordinary events of the coordinator's
 *	  log: events_after(), head(), the dispatcher and the relay see them.
 *	  recall_citus_gather_events() copies (events_after() calls it; the
 *	  dispatcher is the place to call it on every batch), and a
 *	  coordinator's distributed write wakes the dispatcher at commit.
 *	- Background workers see shards (Citus hides them from catalog
 *	  queries of processes it does not know).
 *	- Erasure, on each worker for its shards.  The guard records the
 *	  shard's pages as the recall's residue, and the worker's purger,
 *	  started by the commit (a COMMIT PREPARED too), scrubs them; the
 *	  purge marks the shard's content indexes, found through the shard's
 *	  distributed table (recall_citus_shard_table), for the worker's
 *	  rebuilder; the sweep visits the node's shards of a table
 *	  (recall_citus_local_shards).
 *
 * Nothing here links against Citus: its objects are looked up by name at
 * run time, and every entry point returns at once where the Citus library
 * is not loaded or the extension is not installed in the database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/heap.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "optimizer/planner.h"
#include "postmaster/bgworker.h"
#include "parser/parse_func.h"
#include "storage/proc.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_recall.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(recall_citus_table);
PG_FUNCTION_INFO_V1(recall_guard_args);
PG_FUNCTION_INFO_V1(recall_citus_check_copy);
PG_FUNCTION_INFO_V1(recall_citus_gather);

/* recall.citus_left_over: forwarded by a coordinator, see forward_settings */
static char *citus_left_over_guc = NULL;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;

/*
 * Per transaction (reset at its end): whether the citus extension is
 * installed (-1: not looked up), this node's group (-1: not looked up),
 * the shells whose guard this transaction created or dropped, and what
 * the coordinator forwarded to the workers.
 */
static int	xact_citus_installed = -1;
static int	xact_local_group = -1;
static List *guard_changes = NIL;	/* OIDs, TopTransactionContext */
static List *forwarded = NIL;	/* ForwardedSetting *, TopTransactionContext */

/*
 * The actor settings of the enabled tables, for the backend's life, read
 * again after a relcache invalidation (recall.enable() sends one for the
 * table it changes).
 */
static List *actor_settings = NIL;	/* char *, TopMemoryContext */
static bool actor_settings_known = false;

/* Gathering and waking the dispatcher, at most this often per process. */
#define GATHER_MIN_INTERVAL_MS 100
static TimestampTz last_gather = 0;
static TimestampTz last_wake = 0;

/* A setting as the coordinator last sent it to the workers. */
typedef struct ForwardedSetting
{
	char	   *name;
	char	   *value;
} ForwardedSetting;

/* The statement that distributes an enabled table, and its GUC level. */
static QueryDesc *distributing_query = NULL;
static int	distributing_nestlevel = -1;

/* Distributed transaction timestamp, once known in this transaction. */
static bool recall_time_known = false;
static TimestampTz recall_time;

/* ---------------------------------------------------------------------
 * Is Citus here?
 * ---------------------------------------------------------------------
 */

/*
 * Is the Citus library loaded in this process?  Its settings exist then
 * (a SET of an unknown citus.* name would only make a placeholder).  Citus
 * loads only from shared_preload_libraries, and before any other library
 * with hooks (it refuses otherwise), so the answer is the same for the
 * process's life.
 */
static bool
citus_loaded(void)
{
	static int	loaded = -1;

	if (loaded < 0)
	{
		int			flags = GetConfigOptionFlags("citus.enable_unsafe_triggers", true);

		loaded = (flags != 0 && (flags & GUC_CUSTOM_PLACEHOLDER) == 0) ? 1 : 0;
	}
	return loaded == 1;
}

/* Is Citus loaded and its extension installed in this database? */
bool
recall_citus_installed(void)
{
	if (!citus_loaded() || !IsTransactionState())
		return false;
	if (xact_citus_installed < 0)
		xact_citus_installed = OidIsValid(get_extension_oid("citus", true)) ? 1 : 0;
	return xact_citus_installed == 1;
}

/*
 * Run a query with one optional argument and return the first column of
 * its first row as text (NULL: no row or null).  SPI must be connected.
 */
static char *
spi_value(const char *sql, Oid argtype, Datum arg)
{
	int			ret;

	ret = SPI_execute_with_args(sql, OidIsValid(argtype) ? 1 : 0, &argtype, &arg,
								NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Run a query whose first column is an oid and return its values (nulls
 * skipped), in the caller's memory context.  SPI must be connected.
 */
static List *
spi_oids(const char *sql, int nargs, Oid *argtypes, Datum *args, MemoryContext cxt)
{
	List	   *oids = NIL;
	int			ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 0);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old;

		if (isnull)
			continue;
		old = MemoryContextSwitchTo(cxt);
		oids = lappend_oid(oids, DatumGetObjectId(d));
		MemoryContextSwitchTo(old);
	}
	return oids;
}

/* This node's Citus group: 0 on the coordinator (per transaction). */
static int
local_group(void)
{
	if (xact_local_group < 0)
	{
		char	   *g;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		g = spi_value("SELECT groupid FROM pg_catalog.pg_dist_local_group", InvalidOid, 0);
		xact_local_group = g ? atoi(g) : 0;
		SPI_finish();
	}
	return xact_local_group;
}

/* Is relid a Citus table (in pg_dist_partition)?  SPI must be connected. */
static bool
is_citus_table(Oid relid)
{
	return spi_value("SELECT 1 FROM pg_catalog.pg_dist_partition p"
					 " WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1",
					 REGCLASSOID, ObjectIdGetDatum(relid)) != NULL;
}

/* The partition method of a Citus table ('h', 'n'...), or '\0'. */
static char
citus_partmethod(Oid relid)
{
	char	   *m = spi_value("SELECT p.partmethod FROM pg_catalog.pg_dist_partition p"
							  " WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1",
							  REGCLASSOID, ObjectIdGetDatum(relid));

	return m ? m[0] : '\0';
}

/* ---------------------------------------------------------------------
 * The guard of a shard
 * ---------------------------------------------------------------------
 */

/*
 * Is name the guard's trigger name: "~recall_guard", or, on a shard, the
 * name Citus gives it there ("~recall_guard_<shard id>")?
 */
static bool
is_guard_name(const char *name)
{
	size_t		len = strlen(RECALL_GUARD_TRIGGER);

	if (strncmp(name, RECALL_GUARD_TRIGGER, len) != 0)
		return false;
	if (name[len] == '\0')
		return true;
	if (name[len] != '_' || name[len + 1] == '\0')
		return false;
	for (const char *p = name + len + 1; *p; p++)
		if (!isdigit((unsigned char) *p))
			return false;
	return true;
}

/* rel's guard trigger (NULL: none). */
static Trigger *
guard_trigger_of(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	if (trigdesc == NULL)
		return NULL;
	for (int i = 0; i < trigdesc->numtriggers; i++)
		if (is_guard_name(trigdesc->triggers[i].tgname))
			return &trigdesc->triggers[i];
	return NULL;
}

/*
 * The name of rel's guard trigger, against which the triggers that fire
 * after it are found: on a shard, Citus appends the shard id to it (and
 * to the names of the table's other triggers alike).
 */
const char *
recall_guard_name(Relation rel)
{
	Trigger    *t = guard_trigger_of(rel);

	return t ? t->tgname : RECALL_GUARD_TRIGGER;
}

/* The shard id at the end of a shard's name ("messages_102008"), or 0. */
static int64
shard_id_of_name(const char *relname)
{
	const char *us = strrchr(relname, '_');
	int64		id = 0;

	if (us == NULL || us[1] == '\0')
		return 0;
	for (const char *p = us + 1; *p; p++)
	{
		if (!isdigit((unsigned char) *p) || id > (PG_INT64_MAX - 9) / 10)
			return 0;
		id = id * 10 + (*p - '0');
	}
	return id;
}

/*
 * The distributed table a shard belongs to, from Citus's metadata; the
 * name must be the shard's exactly (a local table may end in digits too).
 * InvalidOid if rel is no known shard.  SPI must be connected.
 */
static Oid
shard_logical_relid(const char *relname, Oid nspoid)
{
	int64		shardid = shard_id_of_name(relname);
	Oid			argtypes[3] = {INT8OID, TEXTOID, OIDOID};
	Datum		args[3];
	List	   *logical;

	if (shardid == 0)
		return InvalidOid;
	args[0] = Int64GetDatum(shardid);
	args[1] = CStringGetTextDatum(relname);
	args[2] = ObjectIdGetDatum(nspoid);
	/* shard_name() qualifies the name outside schema public */
	logical = spi_oids("SELECT s.logicalrelid::pg_catalog.oid"
					   " FROM pg_catalog.pg_dist_shard s"
					   "      JOIN pg_catalog.pg_class c"
					   "        ON c.oid OPERATOR(pg_catalog.=) s.logicalrelid,"
					   "      pg_catalog.parse_ident(pg_catalog.shard_name(s.logicalrelid, s.shardid)) AS n"
					   " WHERE s.shardid OPERATOR(pg_catalog.=) $1"
					   "   AND c.relnamespace OPERATOR(pg_catalog.=) $3"
					   "   AND n[pg_catalog.array_upper(n, 1)] OPERATOR(pg_catalog.=) $2",
					   3, argtypes, args, CurrentMemoryContext);
	return list_length(logical) == 1 ? linitial_oid(logical) : InvalidOid;
}

/*
 * The enabled table among a distributed table and its ancestors: the one
 * whose guard is its own, not cloned from a parent (for a partition).
 */
static Oid
enabled_ancestor(Oid logical)
{
	List	   *candidates = list_make1_oid(logical);
	ListCell   *lc;

	if (get_rel_relispartition(logical))
		candidates = list_concat(candidates, get_partition_ancestors(logical));
	foreach(lc, candidates)
	{
		Relation	r = relation_open(lfirst_oid(lc), AccessShareLock);
		Trigger    *t = guard_trigger_of(r);
		bool		own = (t != NULL && !t->tgisclone);

		relation_close(r, AccessShareLock);
		if (own)
			return lfirst_oid(lc);
	}
	return logical;
}

/*
 * The settings of a shard: the argument of its guard trigger (JSON, the
 * enabled table's registry row), and in *root_relid the enabled table
 * (the shard itself while Citus's metadata does not know it yet, as when
 * a table is being distributed: only the invariant is checked then).
 * NULL when Citus is not installed or rel's guard carries no settings.
 * Called by config.c with SPI connected; the result is palloc'd.
 */
char *
recall_citus_shard_settings(Relation rel, Oid *root_relid)
{
	Trigger    *t;
	Oid			logical;

	if (!recall_citus_installed())
		return NULL;
	t = guard_trigger_of(rel);
	if (t == NULL || t->tgnargs != 1)
		return NULL;
	logical = shard_logical_relid(RelationGetRelationName(rel), RelationGetNamespace(rel));
	*root_relid = OidIsValid(logical) ? enabled_ancestor(logical) : RelationGetRelid(rel);
	return pstrdup(t->tgargs[0]);
}

/* ---------------------------------------------------------------------
 * SQL helpers of recall.enable() and recall.add_copy()
 * ---------------------------------------------------------------------
 */

/* Is relid a Citus table, whose rows are on its shards (false without Citus)? */
bool
recall_citus_is_table(Oid relid)
{
	bool		result;

	if (!recall_citus_installed())
		return false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	result = is_citus_table(relid);
	SPI_finish();
	return result;
}

/* recall._citus_table(tbl regclass) RETURNS boolean: recall_citus_is_table. */
Datum
recall_citus_table(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(recall_citus_is_table(PG_GETARG_OID(0)));
}

/*
 * recall._guard_args(tbl regclass) RETURNS text: the argument list of the
 * guard trigger of tbl, as SQL: '' without Citus; with Citus, tbl's
 * registry row as a JSON string literal, which travels with the trigger to
 * every shard.  Only a distributed (hash or single-shard) table or a local
 * one may be enabled there.
 */
Datum
recall_guard_args(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *json;
	char		method;

	if (!recall_citus_installed())
		PG_RETURN_TEXT_P(cstring_to_text(""));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	method = citus_partmethod(relid);
	if (method != '\0' && method != 'h' && method != 'n')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot enable recall on table \"%s\"", get_rel_name(relid)),
				 errdetail("pg_recall supports Citus distributed tables, not reference tables or local tables added to Citus metadata.")));
	if (method == 'n' && spi_value("SELECT 1 FROM pg_catalog.pg_dist_partition p"
								   " WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1"
								   "   AND p.repmodel OPERATOR(pg_catalog.=) 't'",
								   REGCLASSOID, ObjectIdGetDatum(relid)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot enable recall on table \"%s\"", get_rel_name(relid)),
				 errdetail("pg_recall supports Citus distributed tables, not reference tables or local tables added to Citus metadata.")));
	json = spi_value("SELECT (pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.-) 'tbl')::pg_catalog.text"
					 " FROM recall.tables t WHERE t.tbl OPERATOR(pg_catalog.=) $1",
					 REGCLASSOID, ObjectIdGetDatum(relid));
	if (json == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation with OID %u is not enabled for recall", relid)));
	json = quote_literal_cstr(json);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(json));
}

/*
 * recall._citus_check_copy(tbl regclass, copy regclass) RETURNS void:
 * copies are wiped by the node that recalls, in its own tables; the rows
 * of a Citus table are on other nodes, so registrations involving one are
 * refused.
 */
Datum
recall_citus_check_copy(PG_FUNCTION_ARGS)
{
	Oid			rels[2] = {PG_GETARG_OID(0), PG_GETARG_OID(1)};

	if (!recall_citus_installed())
		PG_RETURN_VOID();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < 2; i++)
		if (is_citus_table(rels[i]))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot register copies with Citus table \"%s\"", get_rel_name(rels[i])),
					 errdetail("Copies are wiped by the node that recalls the message, and the rows of a Citus table are on its workers.")));
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * The guard's DDL on the workers
 * ---------------------------------------------------------------------
 */

/*
 * The content columns of a settings argument (the "content" array of the
 * registry row's JSON), as a list of names.
 */
static List *
content_of_settings(const char *json)
{
	Jsonb	   *jb = recall_parse_jsonb(json);
	JsonbValue	key;
	JsonbValue *arr;
	List	   *names = NIL;

	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return NIL;
	key.type = jbvString;
	key.val.string.val = "content";
	key.val.string.len = strlen("content");
	arr = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &key);
	if (arr == NULL || arr->type != jbvBinary)
		return NIL;
	{
		JsonbIterator *it = JsonbIteratorInit(arr->val.binary.data);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_ELEM && v.type == jbvString)
				names = lappend(names, pnstrdup(v.val.string.val, v.val.string.len));
	}
	return names;
}

/*
 * Set the statistics target of the content columns of relid to 0 and
 * remove their statistics, as recall.enable() does on a local table: the
 * statistics would keep most common values of message text.  Done in the
 * catalog, as ALTER TABLE ... SET STATISTICS does, since Citus does not
 * take that command on a distributed table (and does not need to: every
 * shard is handled as it gets its guard).
 */
static void
clear_content_statistics(Oid relid, List *columns)
{
	Relation	attrel;
	ListCell   *lc;

	attrel = table_open(AttributeRelationId, RowExclusiveLock);
	foreach(lc, columns)
	{
		AttrNumber	attnum = get_attnum(relid, (char *) lfirst(lc));
		HeapTuple	tup;
		Form_pg_attribute att;

		if (attnum <= 0)
			continue;
		tup = SearchSysCacheCopyAttNum(relid, attnum);
		if (!HeapTupleIsValid(tup))
			continue;
		att = (Form_pg_attribute) GETSTRUCT(tup);
		if (att->attstattarget != 0)
		{
			att->attstattarget = 0;
			CatalogTupleUpdate(attrel, &tup->t_self, tup);
		}
		heap_freetuple(tup);
		RemoveStatistics(relid, attnum);
	}
	table_close(attrel, RowExclusiveLock);
	CacheInvalidateRelcacheByRelid(relid);
}

/* Remember that this transaction created or dropped relid's guard. */
static void
note_guard_change(Oid relid)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	guard_changes = list_append_unique_oid(guard_changes, relid);
	MemoryContextSwitchTo(old);
}

/* The relation of a DROP TRIGGER name list ([schema,] table, trigger). */
static Oid
dropped_trigger_relation(List *names, const char **trigname)
{
	List	   *relname = list_copy_head(names, list_length(names) - 1);

	*trigname = strVal(llast(names));
	return RangeVarGetRelid(makeRangeVarFromNameList(relname), NoLock, true);
}

/*
 * ProcessUtility hook: on any node, a CREATE TRIGGER of the guard with its
 * settings (recall.enable() on the coordinator, Citus's copy of it on a
 * shard or a worker's shell) clears the content columns' statistics of the
 * relation; and a CREATE or DROP of a guard is remembered, so that a worker
 * keeps its registry row of the shell in step at pre-commit.
 */
static void
citus_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	CreateTrigStmt *create = NULL;
	List	   *dropped = NIL;

	if (citus_loaded())
	{
		if (IsA(parsetree, CreateTrigStmt) &&
			is_guard_name(((CreateTrigStmt *) parsetree)->trigname) &&
			list_length(((CreateTrigStmt *) parsetree)->args) == 1)
			create = (CreateTrigStmt *) copyObject(parsetree);
		else if (IsA(parsetree, DropStmt) &&
				 ((DropStmt *) parsetree)->removeType == OBJECT_TRIGGER)
		{
			ListCell   *lc;

			foreach(lc, ((DropStmt *) parsetree)->objects)
			{
				const char *trigname;
				Oid			relid = dropped_trigger_relation((List *) lfirst(lc), &trigname);

				if (OidIsValid(relid) && is_guard_name(trigname))
					dropped = lappend_oid(dropped, relid);
			}
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (create != NULL && recall_citus_installed())
	{
		Oid			relid = RangeVarGetRelid(create->relation, NoLock, true);

		if (OidIsValid(relid) && recall_is_owner(relid, GetUserId()))
			clear_content_statistics(relid,
									 content_of_settings(strVal(linitial(create->args))));
		if (OidIsValid(relid))
			note_guard_change(relid);
	}
	if (dropped != NIL && recall_citus_installed())
	{
		ListCell   *lc;

		foreach(lc, dropped)
			note_guard_change(lfirst_oid(lc));
	}
}

/*
 * At pre-commit on a worker: for each shell of a distributed table whose
 * guard this transaction created or dropped, put the guard's settings into
 * the worker's recall.tables (through recall._registry_put, which checks
 * the row and the caller's ownership), or remove its row.
 */
static void
sync_worker_registry(void)
{
	List	   *relids = guard_changes;
	ListCell   *lc;

	guard_changes = NIL;
	if (relids == NIL || !recall_citus_installed() ||
		!OidIsValid(get_extension_oid("pg_recall", true)))
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	if (local_group() == 0)
	{
		/* the coordinator: recall.enable() and disable() wrote it */
		PopActiveSnapshot();
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		Relation	rel;
		Trigger    *t;
		char	   *settings = NULL;
		Oid			argtypes[2] = {TEXTOID, OIDOID};
		Datum		args[2];
		int			ret;

		rel = try_relation_open(relid, AccessShareLock);
		if (rel == NULL)
			continue;
		t = guard_trigger_of(rel);
		if (t != NULL && !t->tgisclone && t->tgnargs == 1 &&
			strcmp(t->tgname, RECALL_GUARD_TRIGGER) == 0)
			settings = pstrdup(t->tgargs[0]);
		relation_close(rel, AccessShareLock);
		if (!is_citus_table(relid))
			continue;			/* a shard, or a local table */

		args[0] = settings ? CStringGetTextDatum(settings) : (Datum) 0;
		args[1] = ObjectIdGetDatum(relid);
		if (settings != NULL)
			ret = SPI_execute_with_args("SELECT recall._registry_put(pg_catalog.jsonb_populate_record("
										"NULL::recall.tables, $1::pg_catalog.jsonb OPERATOR(pg_catalog.||)"
										" pg_catalog.jsonb_build_object('tbl', $2)))",
										2, argtypes, args, NULL, false, 0);
		else
			ret = SPI_execute_with_args("SELECT recall._registry_delete(t.tbl) FROM recall.tables t"
										" WHERE t.tbl OPERATOR(pg_catalog.=) $2::pg_catalog.regclass",
										2, argtypes, args, "n ", false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "keeping recall.tables of a Citus table failed: %s",
				 SPI_result_code_string(ret));
	}
	SPI_finish();
	PopActiveSnapshot();
}

/* ---------------------------------------------------------------------
 * Distributing an enabled table
 * ---------------------------------------------------------------------
 */

/* Is relid registered with pg_recall as a message table or a copy? */
static bool
has_copy_registrations(Oid relid)
{
	bool		found;

	if (!OidIsValid(get_extension_oid("pg_recall", true)))
		return false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	found = spi_value("SELECT 1 FROM recall.copies c"
					  " WHERE c.tbl OPERATOR(pg_catalog.=) $1 OR c.copy OPERATOR(pg_catalog.=) $1",
					  REGCLASSOID, ObjectIdGetDatum(relid)) != NULL;
	SPI_finish();
	return found;
}

/* What a statement does to an enabled table through Citus. */
typedef enum DistributionKind
{
	DIST_NONE,
	DIST_ALLOWED,				/* create_distributed_table */
	DIST_REFUSED				/* reference or Citus local table */
} DistributionKind;

typedef struct DistributionCall
{
	DistributionKind kind;
	const char *function;
	Oid			relid;
} DistributionCall;

/* The kind of a Citus function that makes a Citus table of its first argument. */
static DistributionKind
distribution_kind(Oid funcid, const char **name)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	DistributionKind kind = DIST_NONE;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
		return DIST_NONE;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->pronamespace == PG_CATALOG_NAMESPACE && proc->prolang == ClanguageId)
	{
		const char *n = NameStr(proc->proname);

		if (strcmp(n, "create_distributed_table") == 0)
			kind = DIST_ALLOWED;
		else if (strcmp(n, "create_reference_table") == 0 ||
				 strcmp(n, "citus_add_local_table_to_metadata") == 0)
			kind = DIST_REFUSED;
		if (kind != DIST_NONE)
			*name = pstrdup(n);
	}
	ReleaseSysCache(tup);
	return kind;
}

/* Find a call of a distribution function with a constant table. */
static bool
find_distribution_call(Node *node, DistributionCall *call)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr))
	{
		FuncExpr   *f = (FuncExpr *) node;
		const char *name = NULL;
		DistributionKind kind;

		if (f->funcid >= FirstNormalObjectId &&
			(kind = distribution_kind(f->funcid, &name)) != DIST_NONE &&
			f->args != NIL && IsA(linitial(f->args), Const) &&
			!((Const *) linitial(f->args))->constisnull &&
			((Const *) linitial(f->args))->consttype == REGCLASSOID)
		{
			call->kind = kind;
			call->function = name;
			call->relid = DatumGetObjectId(((Const *) linitial(f->args))->constvalue);
			return true;
		}
	}
	return expression_tree_walker(node, find_distribution_call, (void *) call);
}

/* Walk a plan's expressions and children for a distribution call. */
static bool
plan_distribution_call(Plan *plan, DistributionCall *call)
{
	if (plan == NULL)
		return false;
	if (find_distribution_call((Node *) plan->targetlist, call) ||
		find_distribution_call((Node *) plan->qual, call))
		return true;
	if (IsA(plan, Result) &&
		find_distribution_call(((Result *) plan)->resconstantqual, call))
		return true;
	return plan_distribution_call(plan->lefttree, call) ||
		plan_distribution_call(plan->righttree, call);
}

/*
 * Does a plan call a function whose OID is at or above FirstNormalObjectId
 * (an extension's)?  A cheap test before walking it: the planner records
 * such functions in invalItems.
 */
static bool
plan_calls_extension_function(PlannedStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->invalItems)
		if (((PlanInvalItem *) lfirst(lc))->cacheId == PROCOID)
			return true;
	return false;
}

/*
 * A statement that makes a Citus table of an enabled table: allowed for
 * create_distributed_table, with citus.enable_unsafe_triggers for its own
 * duration when pg_recall's triggers are the table's only ones (Citus
 * refuses a table with triggers otherwise); refused for reference tables
 * and Citus local tables.  A guard without settings (the table was enabled
 * before Citus was installed) must be refreshed first.
 */
static void
check_distribution(QueryDesc *queryDesc)
{
	DistributionCall call = {DIST_NONE, NULL, InvalidOid};
	PlannedStmt *stmt = queryDesc->plannedstmt;
	Relation	rel;
	Trigger    *guard;
	bool		others = false;
	bool		has_args;
	const char *relname;
	ListCell   *lc;

	if (!plan_calls_extension_function(stmt))
		return;
	if (!plan_distribution_call(stmt->planTree, &call))
	{
		foreach(lc, stmt->subplans)
			if (plan_distribution_call((Plan *) lfirst(lc), &call))
				break;
	}
	if (call.kind == DIST_NONE || !recall_citus_installed())
		return;

	rel = try_relation_open(call.relid, AccessShareLock);
	if (rel == NULL)
		return;
	guard = guard_trigger_of(rel);
	has_args = (guard != NULL && guard->tgnargs == 1);
	for (int i = 0; rel->trigdesc != NULL && i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *t = &rel->trigdesc->triggers[i];

		if (!t->tgisinternal && t != guard &&
			strcmp(t->tgname, "~recall_copy_guard") != 0 &&
			strcmp(t->tgname, "~recall_copy_delete") != 0)
			others = true;
	}
	relname = pstrdup(RelationGetRelationName(rel));
	relation_close(rel, AccessShareLock);

	if (guard == NULL)
	{
		/* a copy table: registrations with a Citus table are refused */
		if (has_copy_registrations(call.relid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot distribute table \"%s\": it holds copies registered with pg_recall", relname),
					 errhint("Drop its registrations with recall.drop_copy() first.")));
		return;
	}
	if (call.kind == DIST_REFUSED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot call %s on table \"%s\", which is enabled for recall", call.function, relname),
				 errdetail("pg_recall supports Citus distributed tables, not reference tables or local tables added to Citus metadata."),
				 errhint("Use create_distributed_table(), or disable recall on the table first.")));
	if (!has_args)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" was enabled for recall before Citus was installed", relname),
				 errdetail("Its guard trigger does not carry the settings that its shards need."),
				 errhint("Run recall.enable() on the table again, then distribute it.")));
	if (has_copy_registrations(call.relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute table \"%s\": it has copies registered with pg_recall", relname),
				 errhint("Drop its registrations with recall.drop_copy() first.")));
	if (others)
		return;					/* Citus's own rules, and the user's setting */

	distributing_nestlevel = NewGUCNestLevel();
	distributing_query = queryDesc;
	(void) set_config_option("citus.enable_unsafe_triggers", "on",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/* ---------------------------------------------------------------------
 * Actor and reason through the coordinator
 * ---------------------------------------------------------------------
 */

/* Is pg_recall installed in this database (per transaction)? */
static bool
recall_installed(void)
{
	static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
	static bool installed = false;

	if (checked_lxid != MyProc->lxid)
	{
		installed = OidIsValid(get_extension_oid("pg_recall", true));
		checked_lxid = MyProc->lxid;
	}
	return installed;
}

/*
 * The settings a worker's guard reads from the session: recall.actor,
 * recall.reason, and the actor settings ('setting' source) of the enabled
 * tables, looked up once per transaction.
 */
static List *
settings_to_forward(void)
{
	List	   *names = list_make2("recall.actor", "recall.reason");

	if (!actor_settings_known)
	{
		MemoryContext old;
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ret = SPI_execute("SELECT DISTINCT t.actor_setting FROM recall.tables t"
						  " WHERE t.actor_setting IS NOT NULL", true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading recall.tables failed: %s", SPI_result_code_string(ret));
		list_free_deep(actor_settings);
		actor_settings = NIL;
		old = MemoryContextSwitchTo(TopMemoryContext);
		for (uint64 i = 0; i < SPI_processed; i++)
			actor_settings = lappend(actor_settings,
									 pstrdup(SPI_getvalue(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1)));
		MemoryContextSwitchTo(old);
		SPI_finish();
		actor_settings_known = true;
	}
	return list_concat(names, actor_settings);
}

/* A relation's cache entry was invalidated (pg_recall.c's callback). */
void
recall_citus_invalidate(Oid relid)
{
	actor_settings_known = false;
}

/* The value the coordinator last forwarded for name (NULL: none). */
static ForwardedSetting *
forwarded_setting(const char *name)
{
	ListCell   *lc;

	foreach(lc, forwarded)
	{
		ForwardedSetting *f = (ForwardedSetting *) lfirst(lc);

		if (strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

/* "SET LOCAL name TO 'value'", each part of the name quoted. */
static char *
set_local_command(const char *name, const char *value)
{
	StringInfoData buf;
	char	   *copy = pstrdup(name);
	char	   *part;
	char	   *save = NULL;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "SET LOCAL ");
	for (part = strtok_r(copy, ".", &save); part; part = strtok_r(NULL, ".", &save))
	{
		appendStringInfo(&buf, "%s%s", first ? "" : ".", quote_identifier(part));
		first = false;
	}
	appendStringInfo(&buf, " TO %s", quote_literal_cstr(value));
	return buf.data;
}

/*
 * Before a distributed statement: send the workers the settings that
 * changed since this transaction last sent them, as SET LOCAL through
 * Citus (citus.propagate_set_commands = 'local' for these commands only;
 * Citus sends them to the connections of the transaction and replays them
 * on the ones it opens later).  The coordinator's own settings are left
 * as they were: the commands run in a GUC nest level that is then rolled
 * back.  recall.citus_left_over names the values that recall.actor_scope
 * does not let count here (left over from an earlier transaction): on the
 * worker they arrive as SET LOCAL, which would count, so the worker
 * refuses them by that mark instead.
 */
static void
forward_settings(void)
{
	List	   *names = settings_to_forward();
	List	   *send = NIL;
	ListCell   *lc;
	StringInfoData marker;
	int			nestlevel;
	MemoryContext old;

	initStringInfo(&marker);
	if (recall_setting_left_over(false))
		appendStringInfoString(&marker, "actor");
	if (recall_setting_left_over(true))
		appendStringInfo(&marker, "%sreason", marker.len > 0 ? "," : "");

	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		const char *value = GetConfigOption(name, true, false);
		ForwardedSetting *f = forwarded_setting(name);

		if (value == NULL)
			continue;			/* not defined in this session */
		if (f == NULL ? value[0] == '\0' : strcmp(f->value, value) == 0)
			continue;
		send = lappend(send, list_make2((void *) name, (void *) value));
	}
	{
		ForwardedSetting *f = forwarded_setting("recall.citus_left_over");

		if (f == NULL ? marker.len > 0 : strcmp(f->value, marker.data) != 0)
			send = lappend(send, list_make2((void *) "recall.citus_left_over", marker.data));
	}
	if (send == NIL)
		return;

	nestlevel = NewGUCNestLevel();
	(void) set_config_option("citus.propagate_set_commands", "local",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, send)
	{
		List	   *pair = (List *) lfirst(lc);
		int			ret = SPI_execute(set_local_command(linitial(pair), lsecond(pair)),
									  false, 0);

		if (ret != SPI_OK_UTILITY)
			elog(ERROR, "forwarding a setting failed: %s", SPI_result_code_string(ret));
	}
	SPI_finish();
	AtEOXact_GUC(false, nestlevel);

	old = MemoryContextSwitchTo(TopTransactionContext);
	foreach(lc, send)
	{
		List	   *pair = (List *) lfirst(lc);
		ForwardedSetting *f = forwarded_setting(linitial(pair));

		if (f == NULL)
		{
			f = palloc(sizeof(ForwardedSetting));
			f->name = pstrdup(linitial(pair));
			forwarded = lappend(forwarded, f);
		}
		else
			pfree(f->value);
		f->value = pstrdup(lsecond(pair));
	}
	MemoryContextSwitchTo(old);
}

/*
 * Does recall.citus_left_over, forwarded by the coordinator, mark the
 * value of recall.actor (or recall.reason) as left over there?  Consulted
 * by actor.c wherever it checks recall.actor_scope.
 */
bool
recall_citus_left_over(bool reason)
{
	if (citus_left_over_guc == NULL || citus_left_over_guc[0] == '\0')
		return false;
	return strstr(citus_left_over_guc, reason ? "reason" : "actor") != NULL;
}

/* Is the plan a Citus distributed plan that may write? */
static bool
is_distributed_write(PlannedStmt *stmt)
{
	Plan	   *plan = stmt->planTree;

	if (stmt->commandType == CMD_SELECT && !stmt->hasModifyingCTE)
		return false;
	for (int depth = 0; plan != NULL && depth < 2; depth++, plan = plan->lefttree)
	{
		if (IsA(plan, CustomScan) &&
			strncmp(((CustomScan *) plan)->methods->CustomName, "Citus", 5) == 0)
			return true;
	}
	return false;
}

/* Has this transaction run a distributed write (the coordinator wakes its dispatcher)? */
static bool xact_distributed_write = false;

/* Has this transaction copied workers' events into the log? */
static bool xact_gathered = false;

/* ---------------------------------------------------------------------
 * recalled_at across workers
 * ---------------------------------------------------------------------
 */

/*
 * The time a recall is stamped with: the distributed transaction's
 * timestamp, which Citus gives every node taking part in it (on the
 * coordinator at its first distributed statement, on the workers as their
 * transaction begins), so that one statement recalls with one recalled_at
 * on every worker; otherwise (no Citus, or no distributed transaction, as
 * a single-shard statement outside a transaction block) the transaction's
 * start, as on one server.
 */
TimestampTz
recall_citus_recall_time(void)
{
	static LocalTransactionId none_lxid = InvalidLocalTransactionId;
	static CommandId none_cid = InvalidCommandId;
	static LocalTransactionId fn_lxid = InvalidLocalTransactionId;
	static Oid	fn = InvalidOid;
	Datum		d;
	HeapTupleHeader h;
	bool		num_null;
	bool		stamp_null;
	Datum		num;
	Datum		stamp;

	if (recall_time_known)
		return recall_time;
	if (!recall_citus_installed() ||
		(none_lxid == MyProc->lxid && none_cid == GetCurrentCommandId(false)))
		return GetCurrentTransactionStartTimestamp();

	if (fn_lxid != MyProc->lxid)
	{
		fn = LookupFuncName(list_make2(makeString("pg_catalog"),
									   makeString("get_current_transaction_id")),
							0, NULL, true);
		fn_lxid = MyProc->lxid;
	}
	if (OidIsValid(fn))
	{
		d = OidFunctionCall0(fn);
		h = DatumGetHeapTupleHeader(d);
		num = GetAttributeByName(h, "transaction_number", &num_null);
		stamp = GetAttributeByName(h, "transaction_stamp", &stamp_null);
		if (!num_null && !stamp_null && DatumGetInt64(num) != 0)
		{
			recall_time = DatumGetTimestampTz(stamp);
			recall_time_known = true;
			return recall_time;
		}
	}
	none_lxid = MyProc->lxid;
	none_cid = GetCurrentCommandId(false);
	return GetCurrentTransactionStartTimestamp();
}

/* ---------------------------------------------------------------------
 * The workers' events on the coordinator
 * ---------------------------------------------------------------------
 */

/* Copy the workers' new events into this node's log; the count. */
static int64
gather(void)
{
	RecallBecome become;
	char	   *n;
	int64		count;

	recall_become(recall_extension_owner(), SECURITY_RESTRICTED_OPERATION, true, &become);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	n = spi_value("SELECT recall._citus_gather()", InvalidOid, 0);
	count = n ? strtoi64(n, NULL, 10) : 0;
	SPI_finish();
	recall_unbecome(&become);
	if (count > 0)
		xact_gathered = true;
	return count;
}

/* gather() for recall_try: errors are reported, never raised. */
static void
gather_for_try(void *arg)
{
	(void) gather();
}

/*
 * On the coordinator of a Citus cluster, copy the workers' new events into
 * this node's recall.events (see recall._citus_gather), so that
 * events_after(), the dispatcher and the relay see them.  Called by
 * recall.events_after() and, in its own transaction, by the dispatcher.
 * Does nothing elsewhere, in a transaction block (the copies would wait
 * for its end, and hold other readers' copying back meanwhile), in a
 * read-only transaction, on a standby, or within GATHER_MIN_INTERVAL_MS of
 * this process's last copy (each one opens a connection to every worker).
 * A worker that cannot be read is a WARNING; its events are copied next
 * time.
 */
void
recall_citus_gather_events(void)
{
	ErrorData  *edata;

	if (!recall_citus_installed() || IsTransactionBlock() || XactReadOnly ||
		RecoveryInProgress() || !recall_installed() ||
		!TimestampDifferenceExceeds(last_gather, GetCurrentTimestamp(),
									GATHER_MIN_INTERVAL_MS) ||
		local_group() != 0)
		return;
	last_gather = GetCurrentTimestamp();
	edata = recall_try(gather_for_try, NULL);
	if (edata != NULL)
		ereport(WARNING,
				(errmsg("pg_recall: could not copy the recall events of the Citus workers: %s",
						edata->message)));
}

/*
 * recall.citus_gather() RETURNS bigint: copy the workers' new events into
 * this node's recall.events now; the number copied.
 */
Datum
recall_citus_gather(PG_FUNCTION_ARGS)
{
	if (!recall_citus_installed() || local_group() != 0)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(gather());
}

/* ---------------------------------------------------------------------
 * Hooks and callbacks
 * ---------------------------------------------------------------------
 */

/*
 * ExecutorStart hook (the coordinator): a statement that distributes an
 * enabled table, and a distributed write, which the workers' guards will
 * judge with the settings forwarded first.
 */
static void
citus_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (citus_loaded() && !(eflags & EXEC_FLAG_EXPLAIN_ONLY) && IsTransactionState())
	{
		PlannedStmt *stmt = queryDesc->plannedstmt;

		if (distributing_query == NULL)
			check_distribution(queryDesc);
		if (is_distributed_write(stmt) && recall_citus_installed() && recall_installed())
		{
			forward_settings();
			xact_distributed_write = true;
		}
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* ExecutorEnd hook: the end of a statement that distributed an enabled table. */
static void
citus_ExecutorEnd(QueryDesc *queryDesc)
{
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	if (queryDesc == distributing_query)
	{
		AtEOXact_GUC(true, distributing_nestlevel);
		distributing_query = NULL;
		distributing_nestlevel = -1;
	}
}

/* Forget the transaction's state; keep a worker's registry in step. */
static void
citus_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (guard_changes != NIL)
				sync_worker_registry();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:

			/*
			 * Events copied: the dispatcher notifies them.  A distributed
			 * write (maybe recalls on the workers): the dispatcher copies
			 * the workers' events, and it is woken for that at most every
			 * GATHER_MIN_INTERVAL_MS by a backend, since it cannot tell
			 * recalls from other writes (running, it also looks every
			 * recall.dispatch_interval).
			 */
			if (xact_gathered ||
				(xact_distributed_write &&
				 TimestampDifferenceExceeds(last_wake, GetCurrentTimestamp(),
											GATHER_MIN_INTERVAL_MS)))
			{
				last_wake = GetCurrentTimestamp();
				recall_request_dispatch(MyDatabaseId);
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			xact_citus_installed = -1;
			xact_local_group = -1;
			guard_changes = NIL;
			forwarded = NIL;
			recall_time_known = false;
			xact_distributed_write = false;
			xact_gathered = false;
			distributing_query = NULL;
			distributing_nestlevel = -1;
			break;
		default:
			break;
	}
}

/*
 * A rolled back subtransaction takes back its SET LOCALs on the workers
 * (Citus rolls them back there too): send everything again next time.
 */
static void
citus_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		forwarded = NIL;
		if (distributing_query != NULL)
		{
			distributing_query = NULL;
			distributing_nestlevel = -1;
		}
	}
}

/*
 * For pg_recall's background workers: Citus hides shards from the catalog
 * queries (pg_class) of every process whose application_name it does not
 * know, background workers included; the dispatcher, purger and rebuilder
 * read catalog rows of shards.  Called by worker.c once connected, before
 * the worker's first query (Citus filters in its planner).
 */
void
recall_citus_worker_start(void)
{
	if (citus_loaded())
		SetConfigOption("citus.override_table_visibility", "off",
						PGC_USERSET, PGC_S_OVERRIDE);
}

/*
 * Define recall.citus_left_over (before the prefix is reserved) and,
 * where Citus is loaded, install the hooks; called from _PG_init.
 */
void
recall_citus_init(void)
{
	DefineCustomStringVariable("recall.citus_left_over",
							   gettext_noop("Set by a Citus coordinator: its recall.actor or recall.reason is left over from an earlier transaction."),
							   NULL,
							   &citus_left_over_guc,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	/*
	 * Citus is loaded first or not at all (see citus_loaded): without it,
	 * no statement pays for the hooks.
	 */
	if (!citus_loaded())
		return;

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = citus_ProcessUtility;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = citus_ExecutorStart;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = citus_ExecutorEnd;
	RegisterXactCallback(citus_xact_callback, NULL);
	RegisterSubXactCallback(citus_subxact_callback, NULL);
}

/* ---------------------------------------------------------------------
 * For the purger
 * ---------------------------------------------------------------------
 */

/*
 * The shard relations of a distributed table that are on this node (NIL
 * without Citus, or for a table that is not distributed): what an enabled
 * table's "relations" are on a worker, where the shell has no rows.  The
 * targeted purge needs none of this (an event's residue names the shard's
 * pages); a sweep of a table, or the fallback for an event without
 * residue, visits these instead of the shell.  A shard is in its table's
 * schema; it is looked up there, qualified, by the name Citus gives it
 * (shard_name() leaves the schema out for public, and the purger's
 * search_path is pinned), not through pg_class, whose shard rows Citus
 * hides from ordinary sessions (recall.purge()).
 */
List *
recall_citus_local_shards(Oid logical_relid)
{
	List	   *shards;
	Oid			argtypes[3] = {REGCLASSOID, INT4OID, TEXTOID};
	Datum		args[3];
	char	   *nspname;
	MemoryContext caller = CurrentMemoryContext;

	if (!recall_citus_installed())
		return NIL;
	nspname = get_namespace_name(get_rel_namespace(logical_relid));
	if (nspname == NULL)
		return NIL;
	args[0] = ObjectIdGetDatum(logical_relid);
	args[1] = Int32GetDatum(local_group());
	args[2] = CStringGetTextDatum(nspname);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	shards = spi_oids("SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($3)"
					  "        OPERATOR(pg_catalog.||) '.'"
					  "        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(n[pg_catalog.array_upper(n, 1)]))"
					  "       ::pg_catalog.oid"
					  " FROM pg_catalog.pg_dist_shard s"
					  "      JOIN pg_catalog.pg_dist_placement p"
					  "        ON p.shardid OPERATOR(pg_catalog.=) s.shardid,"
					  "      pg_catalog.parse_ident(pg_catalog.shard_name(s.logicalrelid, s.shardid)) AS n"
					  " WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1"
					  "   AND p.groupid OPERATOR(pg_catalog.=) $2"
					  " ORDER BY s.shardid",
					  3, argtypes, args, caller);
	SPI_finish();
	return shards;
}

/*
 * The enabled table whose rows a shard on this node holds (through
 * Citus's metadata, then the enabled ancestor of a distributed
 * partition), or InvalidOid: no Citus, or relid is no known shard.  The
 * purge marks a shard's content indexes by the enabled table's content
 * columns (the shard has the same columns).
 */
Oid
recall_citus_shard_table(Oid relid)
{
	char	   *relname;
	Oid			logical;

	if (!recall_citus_installed())
		return InvalidOid;
	relname = get_rel_name(relid);
	if (relname == NULL || shard_id_of_name(relname) == 0)
		return InvalidOid;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	logical = shard_logical_relid(relname, get_rel_namespace(relid));
	SPI_finish();
	return OidIsValid(logical) ? enabled_ancestor(logical) : InvalidOid;
}
