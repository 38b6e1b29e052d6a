/*-------------------------------------------------------------------------
 *
 * actor.c
 *	  Who recalls: the actor of a recall, from the table's actor source.
 *
 * 'statement' trusts the application: the statement's recalled_by, else
 * the setting recall.actor, else session_user.  'role' takes current_user
 * and 'setting' a setting (or one claim of its JSON object), which the
 * connection layer sets; under those two, naming anyone else is refused as
 * an impersonation attempt.
 *
 * recall.actor_scope = 'transaction' refuses a recall.actor or
 * recall.reason that a session-level SET left behind in an earlier
 * transaction: behind a transaction-pooling pooler, that SET was probably
 * made by another client of the same server connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "catalog/pg_authid.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "pg_recall.h"

/*
 * The claim parsed from a setting is cached by the setting's text, so a
 * statement that recalls many rows parses it once.
 */
static char *claim_cache_raw = NULL;
static char *claim_cache_key = NULL;
static char *claim_cache_value = NULL;
static bool claim_cache_is_object = false;

/* set by recall.recall() while its UPDATE runs: recalled_by is its argument */
bool		recall_actor_from_argument = false;

/*
 * GUC's own records of recall.actor and recall.reason: where the current
 * value comes from, and the values stacked by this transaction.
 */
static struct config_generic *actor_record = NULL;
static struct config_generic *reason_record = NULL;

/*
 * The recall recall_resolve_actor resolved last, for recall_given_reason's
 * refusal, which is called next for the same row and has no table.  Kept
 * only when that refusal may happen, in TopMemoryContext.
 */
static Oid	resolved_relid = InvalidOid;
static char *resolved_actor = NULL;

static void refuse_on(const char *relname, const char *actor, const char *message,
					  const char *detail, const char *hint) pg_attribute_noreturn();

/* GUC's record of a setting defined by this module. */
static struct config_generic *
setting_record(const char *name)
{
	struct config_generic **vars;
	int			nvars;

#if PG_VERSION_NUM >= 160000
	vars = get_guc_variables(&nvars);
#else
	vars = get_guc_variables();
	nvars = GetNumConfigOptions();
#endif
	for (int i = 0; i < nvars; i++)
		if (strcmp(vars[i]->name, name) == 0)
			return vars[i];
	elog(ERROR, "setting \"%s\" is not defined", name);
	return NULL;				/* keep compiler quiet */
}

/*
 * Find the records of recall.actor and recall.reason, once, after _PG_init
 * defined them (a record lives as long as the process).
 */
void
recall_actor_init(void)
{
	actor_record = setting_record("recall.actor");
	reason_record = setting_record("recall.reason");
}

/*
 * Is the setting's value left over from an earlier transaction, so that
 * recall.actor_scope = 'transaction' does not let it count?
 *
 * A SET, SET LOCAL or set_config() stores source PGC_S_SESSION and, while
 * its transaction lasts, pushes the prior value on the record's stack;
 * the end of the transaction (or a rollback to a savepoint) pops it.  So a
 * session value with an empty stack was set by an earlier transaction.
 * GUC keeps that stack exact in every case a mark of our own would have to
 * follow: a SET LOCAL reverted at commit, a savepoint rolled back, a
 * function's SET clause, and a value SET before this library was loaded
 * (GUC re-applies it then, and drops the stack entry when it was
 * committed).  Every other source (the connection's startup options, ALTER
 * ROLE or DATABASE SET, the configuration file) belongs to this connection
 * and counts.  Three loads, cheap enough for every row.
 */
static inline bool
left_over(struct config_generic *record)
{
	return (recall_actor_scope == RECALL_ACTOR_SCOPE_TRANSACTION &&
			record->source == PGC_S_SESSION && record->stack == NULL) ||
	/* on a Citus worker: left over on the coordinator that forwarded it */
		recall_citus_left_over(record == reason_record);
}

/* Does recall.actor_scope refuse the current recall.actor (or reason)? */
bool
recall_setting_left_over(bool reason)
{
	return left_over(reason ? reason_record : actor_record);
}

/*
 * Refuse a recall on the table named relname: 42501, and a LOG line for
 * the server log, since the refused transaction rolls back (and a caller
 * may catch the error).
 */
static void
refuse_on(const char *relname, const char *actor, const char *message,
		  const char *detail, const char *hint)
{
	ereport(LOG,
			(errmsg("pg_recall: refused recall on table \"%s\" by actor \"%s\" (role \"%s\"): %s",
					relname ? relname : "", actor ? actor : "",
					GetUserNameFromId(GetUserId(), true), message),
			 detail ? errdetail_internal("%s", detail) : 0));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

/* Refuse a recall on cfg's table (see refuse_on). */
void
recall_refuse(RecallTable *cfg, const char *actor, const char *message,
			  const char *detail, const char *hint)
{
	refuse_on(cfg->relname, actor, message, detail, hint);
}

/*
 * Refuse a recall that would use a setting left over from an earlier
 * transaction; what names what the statement could give instead.
 */
static void
refuse_left_over(const char *relname, const char *actor, const char *setting,
				 const char *what)
{
	refuse_on(relname, actor,
			  relname
			  ? psprintf("permission denied to recall a message of table \"%s\" with setting \"%s\" from an earlier transaction",
						 relname, setting)
			  : psprintf("permission denied to recall with setting \"%s\" from an earlier transaction",
						 setting),
			  psprintf("Setting \"recall.actor_scope\" is \"transaction\", so \"%s\" counts only when set in the current transaction or for the connection itself (startup options, ALTER ROLE or ALTER DATABASE); this value was set by a session-level SET in an earlier transaction, possibly by another client of a pooled connection.",
					   setting),
			  psprintf("Use SET LOCAL %s or set_config('%s', ..., true) in the recalling transaction, or give %s in the statement.",
					   setting, setting, what));
}

/*
 * The claim's value in the setting's JSON object, or NULL; *is_object
 * tells whether the setting was a JSON object at all.
 */
static const char *
claim_of(const char *raw, const char *claim, bool *is_object)
{
	Jsonb	   *jb;
	char	   *value;
	MemoryContext oldcxt;

	if (claim_cache_raw != NULL && strcmp(claim_cache_raw, raw) == 0 &&
		strcmp(claim_cache_key, claim) == 0)
	{
		*is_object = claim_cache_is_object;
		return claim_cache_value;
	}

	jb = recall_parse_jsonb(raw);
	*is_object = false;
	value = jb ? recall_jsonb_field_text(jb, claim, is_object) : NULL;

	if (claim_cache_raw)
		pfree(claim_cache_raw);
	if (claim_cache_key)
		pfree(claim_cache_key);
	if (claim_cache_value)
		pfree(claim_cache_value);
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	claim_cache_raw = pstrdup(raw);
	claim_cache_key = pstrdup(claim);
	claim_cache_value = value ? pstrdup(value) : NULL;
	claim_cache_is_object = *is_object;
	MemoryContextSwitchTo(oldcxt);
	return claim_cache_value;
}

/* Refuse when a channel names someone other than the bound identity. */
static void
check_impersonation(RecallTable *cfg, const char *identity, const char *named,
					const char *channel, const char *source)
{
	if (named == NULL || named[0] == '\0' || strcmp(named, identity) == 0)
		return;
	recall_refuse(cfg, named,
				  psprintf("permission denied to recall as \"%s\"", named),
				  psprintf("The actor of table \"%s\" is taken from %s, which names \"%s\"; %s names \"%s\".",
						   cfg->relname, source, identity, channel, named),
				  "Leave recalled_by, the actor argument and recall.actor unset, or set them to the same identity.");
}

/*
 * The actor of a recall on cfg's table; given is the statement's
 * recalled_by (NULL or empty when it gave none).
 */
static char *
resolve_actor(RecallTable *cfg, const char *given)
{
	const char *identity;
	const char *source;

	if (cfg->actor_source == ACTOR_SOURCE_STATEMENT)
	{
		if (given != NULL && given[0] != '\0')
			return pstrdup(given);
		if (recall_actor_guc != NULL && recall_actor_guc[0] != '\0')
		{
			if (left_over(actor_record))
				refuse_left_over(cfg->relname, recall_actor_guc, "recall.actor",
								 "the actor");
			return pstrdup(recall_actor_guc);
		}
		return GetUserNameFromId(GetSessionUserId(), false);
	}
	if (cfg->actor_source == ACTOR_SOURCE_ROLE)
	{
		identity = GetUserNameFromId(GetUserId(), false);
		source = "current_user";
	}
	else
	{
		const char *raw;

		/*
		 * Read with the caller's privileges: a superuser-only setting
		 * (data_directory, primary_conninfo) names no one for others, and
		 * its value appears nowhere.
		 */
		if ((GetConfigOptionFlags(cfg->actor_setting, true) & GUC_SUPERUSER_ONLY) &&
			!has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_SETTINGS))
			recall_refuse(cfg, given,
						  "permission denied to recall without an identity",
						  psprintf("Setting \"%s\", the actor source of table \"%s\", is readable by superusers only.",
								   cfg->actor_setting, cfg->relname),
						  "Name the actor in a setting the application role may read, such as request.jwt.claims.");
		raw = GetConfigOption(cfg->actor_setting, true, true);

		if (cfg->actor_claim != NULL)
		{
			bool		is_object = false;

			identity = (raw != NULL && raw[0] != '\0') ? claim_of(raw, cfg->actor_claim, &is_object) : NULL;
			source = psprintf("claim \"%s\" of setting \"%s\"", cfg->actor_claim, cfg->actor_setting);
			if (raw != NULL && raw[0] != '\0' && !is_object)
				recall_refuse(cfg, given,
							  "permission denied to recall without an identity",
							  psprintf("Setting \"%s\" is not a JSON object, so it has no claim \"%s\".",
									   cfg->actor_setting, cfg->actor_claim),
							  psprintf("Set \"%s\" to a JSON object with a non-empty \"%s\" before recalling.",
									   cfg->actor_setting, cfg->actor_claim));
		}
		else
		{
			identity = raw;
			source = psprintf("setting \"%s\"", cfg->actor_setting);
		}
		if (identity == NULL || identity[0] == '\0')
			recall_refuse(cfg, given,
						  "permission denied to recall without an identity",
						  psprintf("The actor of table \"%s\" is taken from %s, which is missing or empty.",
								   cfg->relname, source),
						  cfg->actor_claim
						  ? psprintf("Set \"%s\" to a JSON object with a non-empty \"%s\" before recalling.",
									 cfg->actor_setting, cfg->actor_claim)
						  : psprintf("Set \"%s\" before recalling.", cfg->actor_setting));
	}

	check_impersonation(cfg, identity, given,
						recall_actor_from_argument ? "the actor argument of recall.recall()" : "recalled_by",
						source);

	/*
	 * Never the actor here, so never left over "where it would be used":
	 * any value, even one from an earlier transaction, must name the
	 * identity (fail closed).
	 */
	check_impersonation(cfg, identity, recall_actor_guc, "setting recall.actor", source);
	return pstrdup(identity);
}

/*
 * The actor of a recall on cfg's table; given is the statement's
 * recalled_by (NULL or empty when it gave none).  When recall.reason is
 * left over, remembers the table and actor for recall_given_reason, which
 * the caller calls next for the same row and which then refuses unless
 * the statement gives a reason (rare: nothing is copied otherwise).
 */
char *
recall_resolve_actor(RecallTable *cfg, const char *given)
{
	char	   *actor = resolve_actor(cfg, given);

	resolved_relid = InvalidOid;
	if (recall_reason_guc != NULL && recall_reason_guc[0] != '\0' &&
		left_over(reason_record))
	{
		if (resolved_actor != NULL)
			pfree(resolved_actor);
		resolved_actor = MemoryContextStrdup(TopMemoryContext, actor);
		resolved_relid = cfg->root_relid;
	}
	return actor;
}

/*
 * The reason of a recall: the statement's recall_reason, else
 * recall.reason, unless recall.actor_scope refuses it as left over from
 * an earlier transaction.  Called after recall_resolve_actor for the same
 * row, whose table and actor a refusal names.
 */
char *
recall_given_reason(const char *given)
{
	Oid			relid = resolved_relid;

	/* the pairing holds for this row only */
	resolved_relid = InvalidOid;

	if (given != NULL && given[0] != '\0')
		return pstrdup(given);
	if (recall_reason_guc != NULL && recall_reason_guc[0] != '\0')
	{
		if (left_over(reason_record))
			refuse_left_over(OidIsValid(relid) ? get_rel_name(relid) : NULL,
							 OidIsValid(relid) ? resolved_actor : NULL,
							 "recall.reason", "the reason");
		return pstrdup(recall_reason_guc);
	}
	return NULL;
}
