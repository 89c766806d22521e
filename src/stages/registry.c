/*
 * registry: the table of stage kinds, and the choice of kind for a spec.
 */
#include "core/stage.h"

#include <string.h>

#include "core/option.h"

/* Every kind, one line each, in the order `pipectl kinds` lists them (for a
 * role, the order its selectors are named in messages). Adding a kind is
 * one file under src/stages/ that defines `const struct stage_kind
 * stage_NAME` and one line here. */
#define STAGE_KINDS(X) \
	X(stage_fetch_http) \
	X(stage_fetch_file) \
	X(stage_transform) \
	X(stage_load_sqlite) \
	X(stage_load_file) \
	X(stage_load_stdout) \
	X(stage_load_http) \
	X(stage_fetch_sqlite)

#define DECLARE(k) extern const struct stage_kind k;
#define ENTRY(k) &k,
STAGE_KINDS(DECLARE)

const struct stage_kind *const stage_kinds[] = {
	STAGE_KINDS(ENTRY)
	NULL,
};

void stage_opts_free(const struct stage_kind *kind, void *opts)
{
	if (!kind || !opts)
		return;
	option_free(kind->options, opts);
	if (kind->free_opts)
		kind->free_opts(opts);
}

const struct stage_kind *stage_kind_for(const struct stage_spec *spec)
{
	return spec->kind;
}

const struct stage_kind *stage_kind_by_name(const char *name)
{
	size_t i;

	for (i = 0; stage_kinds[i]; i++)
		if (strcmp(stage_kinds[i]->name, name) == 0)
			return stage_kinds[i];
	return NULL;
}

const struct stage_kind *stage_kind_find(const char *role, const char *selector)
{
	size_t i;

	for (i = 0; stage_kinds[i]; i++) {
		const struct stage_kind *k = stage_kinds[i];
		if (!k->role || strcmp(k->role, role) != 0)
			continue;
		if (!selector ? !k->selector : k->selector && strcmp(k->selector, selector) == 0)
			return k;
	}
	return NULL;
}

bool stage_role_known(const char *role)
{
	size_t i;

	for (i = 0; stage_kinds[i]; i++)
		if (stage_kinds[i]->role && strcmp(stage_kinds[i]->role, role) == 0)
			return true;
	return false;
}

json_t *stage_kinds_json(void)
{
	json_t *all = json_array();
	size_t i, j;

	for (i = 0; stage_kinds[i]; i++) {
		const struct stage_kind *k = stage_kinds[i];
		json_t *opts = json_array();
		for (j = 0; k->options && k->options[j].key; j++) {
			const struct opt *o = &k->options[j];
			json_t *jo = json_pack("{s:s, s:s, s:b, s:b, s:s}", "key", o->key,
			                       "type", option_type_name(o),
			                       "required", (o->flags & (OPT_REQUIRED | OPT_SELECTOR)) != 0,
			                       "inherit", (o->flags & OPT_INHERIT) != 0,
			                       "doc", o->doc ? o->doc : "");
			if (o->def)
				json_object_set_new(jo, "default", json_string(o->def));
			if ((o->type == OPT_INT || o->type == OPT_LONG) && (o->min || o->max)) {
				json_object_set_new(jo, "min", json_real(o->min));
				json_object_set_new(jo, "max", json_real(o->max));
			}
			if (o->words) {
				json_t *w = json_array();
				size_t x;
				for (x = 0; o->words[x]; x++)
					json_array_append_new(w, json_string(o->words[x]));
				json_object_set_new(jo, "words", w);
			}
			json_array_append_new(opts, jo);
		}
		json_array_append_new(all, json_pack("{s:s, s:s?, s:s?, s:b, s:o}", "kind", k->name,
		                                     "role", k->role, "selector", k->selector,
		                                     "nested", k->nested, "options", opts));
	}
	return all;
}
