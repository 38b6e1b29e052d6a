/*-------------------------------------------------------------------------
 *
 * erasure.h
 *	  Erasure: the targeted purge (purge.c), the index rebuilds (rebuild.c),
 *	  the throttled sweep (sweep.c) and the workers' loops (purger.c).
 *
 * Three clocks (SPEC, Erasure):
 *	1. recall.purge_delay: the pages a recall left its old bytes on (the
 *	   residue recorded in recall.events and recall.purge_queue) are pruned
 *	   and their free space zeroed, once no snapshot can see them;
 *	2. recall.index_rebuild_interval: every index holding a content column
 *	   that has seen a purged recall since its last rebuild is rebuilt with
 *	   REINDEX CONCURRENTLY by the rebuilder worker;
 *	3. recall.sweep_interval: pages changed since the last sweep are pruned
 *	   and their free space zeroed, cost-limited like autovacuum.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RECALL_ERASURE_H
#define RECALL_ERASURE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/bitmapset.h"
#include "nodes/pg_list.h"
#include "storage/block.h"
#include "storage/bufmgr.h"
#include "nodes/nodes.h"
#include "utils/relcache.h"
#include "worker.h"

struct GlobalVisState;

/*
 * The page work is written against the pruning API of the majors it was
 * tested on; heap_page_prune() changes shape in every major (16 drops
 * oldest_xmin again, 17 replaces it with heap_page_prune_and_freeze), and
 * a wrong guess prunes nothing while the purge reports success.
 */
#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 160000
#error "pg_recall's erasure is implemented and tested for PostgreSQL 15 only"
#endif

/* Settings (purger.c) */
extern int	recall_purge_delay_ms;	/* 0: the targeted purge is off */
extern int	recall_index_rebuild_interval_s;	/* -1: never; 0: at once */
extern int	recall_sweep_interval_s;	/* -1: never */
extern double recall_sweep_cost_delay;	/* ms; -1: autovacuum's */
extern int	recall_sweep_cost_limit;	/* -1: autovacuum's */
extern void recall_erasure_init(void);

/* What one relation's purge did: one row of recall.purge(). */
typedef struct ErasureResult
{
	Oid			relid;
	const char *kind;			/* heap, toast, index, deferred */
	int64		pages_scanned;
	int64		pages_scrubbed;
	int64		bytes_zeroed;
	bool		rebuilt;
} ErasureResult;

/* Where results go: a tuplestore (recall.purge()), or nowhere (workers). */
typedef struct ErasureSink
{
	struct Tuplestorestate *store;
	TupleDesc	desc;
	int64		nrows;
} ErasureSink;
extern void recall_erasure_emit(ErasureSink *sink, ErasureResult *res);

/* What scrubbing one page came to. */
typedef enum ScrubStatus
{
	SCRUB_DONE,					/* pruned, free space zeroed (or already clean) */
	SCRUB_BUSY,					/* in use: its cleanup lock was not free */
	SCRUB_GONE					/* past the end of the relation (truncated) */
} ScrubStatus;

/* purge.c: page work */
extern ScrubStatus recall_scrub_block(Relation rel, BlockNumber blk,
									  BufferAccessStrategy strategy,
									  TransactionId oldest, struct GlobalVisState *vistest,
									  bool *still_dying, ErasureResult *res);
extern Relation recall_open_heap_for_scrub(Oid relid, bool *busy);
extern void recall_heap_relations(Oid root, List **out);

/* purge.c: clock 1 */
typedef struct PurgeCycle
{
	Oid			only_tbl;		/* one enabled table, or InvalidOid: all */
	Oid			owner;			/* only tables this role owns, or InvalidOid */
	bool		own_transactions;	/* worker: a short transaction per step */
	int64		min_age_ms;		/* purge a table once its oldest recall is this old */
	ErasureSink *sink;			/* NULL: no rows */
	/* out */
	TimestampTz next_due;		/* 0: nothing pending */
	int64		marked_indexes; /* content indexes marked dirty */
	bool		sweep_requested;	/* recalls without residue: sweep now */
} PurgeCycle;
extern void recall_purge_cycle(PurgeCycle *cycle);

/* rebuild.c: clock 2 */
extern Bitmapset *recall_content_attnums(Oid relid, List *names);
extern bool recall_index_holds_columns(Oid indexoid, Bitmapset *cols);
extern List *recall_content_indexes(Relation rel, List *names);
extern void recall_mark_indexes_dirty(Oid tbl, List *indexes, TimestampTz since);
extern TimestampTz recall_rebuild_next_due(void);
extern bool recall_rebuild_one(void);
extern int	recall_drop_leftover_indexes(Oid only_tbl);
extern char *recall_run_utility(Node *stmt, const char *text, Oid as_role,
								bool as_superuser);

/* sweep.c: clock 3 */
extern TimestampTz recall_sweep_step(long budget_ms);
extern void recall_sweep_request(List *relids, Oid tbl);
extern void recall_sweep_reset(void);
extern List *recall_enabled_relations(List **tbls);

/* purger.c: the workers' loops, called by worker.c's entry points */
extern void recall_purger_loop(void);
extern void recall_rebuilder_loop(void);

/* purger.c: steps (a transaction each) */
extern void recall_step_begin(const char *activity);
extern void recall_step_end(void);
extern bool recall_extension_present(void);

#endif							/* RECALL_ERASURE_H */
