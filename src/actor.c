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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
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
 * Refuse a recall: 42501, and a LOG line for the server log, since the
 * refused transaction rolls back (and a caller may catch the error).
 */
void
recall_refuse(RecallTable *cfg, const char *actor, const char *message,
			  const char *detail, const char *hint)
{
	ereport(LOG,
			(errmsg("pg_recall: refused recall on table \"%s\" by actor \"%s\" (role \"%s\"): %s",
					cfg->relname, actor ? actor : "",
					GetUserNameFromId(GetUserId(), true), message),
			 detail ? errdetail_internal("%s", detail) : 0));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
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
char *
recall_resolve_actor(RecallTable *cfg, const char *given)
{
	const char *identity;
	const char *source;

	if (cfg->actor_source == ACTOR_SOURCE_STATEMENT)
	{
		if (given != NULL && given[0] != '\0')
			return pstrdup(given);
		if (recall_actor_guc != NULL && recall_actor_guc[0] != '\0')
			return pstrdup(recall_actor_guc);
		return GetUserNameFromId(GetSessionUserId(), false);
	}

	if (cfg->actor_source == ACTOR_SOURCE_ROLE)
	{
		identity = GetUserNameFromId(GetUserId(), false);
		source = "current_user";
	}
	else
	{
		const char *raw = GetConfigOption(cfg->actor_setting, true, false);

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
	check_impersonation(cfg, identity, recall_actor_guc, "setting recall.actor", source);
	return pstrdup(identity);
}

/* The reason of a recall: the statement's recall_reason, else recall.reason. */
char *
recall_given_reason(const char *given)
{
	if (given != NULL && given[0] != '\0')
		return pstrdup(given);
	if (recall_reason_guc != NULL && recall_reason_guc[0] != '\0')
		return pstrdup(recall_reason_guc);
	return NULL;
}
