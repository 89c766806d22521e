/*
 * option: option tables of the stage kinds, and the walker that reads a
 * kind's YAML mapping through its table (see option.h).
 */
#include "core/option.h"

#include <string.h>

#include "core/stage.h"

size_t option_count(const struct opt *opts)
{
	size_t n = 0;

	while (opts && opts[n].key)
		n++;
	return n;
}

const struct opt *option_find(const struct opt *opts, const char *key)
{
	size_t i;

	for (i = 0; opts && opts[i].key; i++)
		if (strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

const char *option_type_name(const struct opt *o)
{
	switch (o->type) {
	case OPT_STRING: return "string";
	case OPT_TEMPLATE: return "template";
	case OPT_JQ: return "jq";
	case OPT_INT: case OPT_LONG: return "integer";
	case OPT_BOOL: return "boolean";
	case OPT_DURATION: return "duration";
	case OPT_SIZE: return "size";
	case OPT_ENUM: return "enum";
	case OPT_STRING_LIST: return "string list";
	case OPT_TEMPLATE_LIST: return "template list";
	case OPT_CUSTOM: break;
	}
	return o->shape ? o->shape : "mapping";
}

json_t *option_kinds_json(void)
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
