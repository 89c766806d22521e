/*
 * registry: the table of stage kinds, and the choice of kind for a spec.
 */
#include "core/stage.h"

#include <string.h>

extern const struct stage_kind stage_fetch_http;
extern const struct stage_kind stage_fetch_file;
extern const struct stage_kind stage_transform;
extern const struct stage_kind stage_load_sqlite;
extern const struct stage_kind stage_load_file;
extern const struct stage_kind stage_load_stdout;
extern const struct stage_kind stage_load_http;
extern const struct stage_kind stage_fetch_sqlite;

const struct stage_kind *const stage_kinds[] = {
	&stage_fetch_http,
	&stage_fetch_file,
	&stage_transform,
	&stage_load_sqlite,
	&stage_load_file,
	&stage_load_stdout,
	&stage_load_http,
	&stage_fetch_sqlite,
	NULL,
};

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
