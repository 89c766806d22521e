/*
 * cmd_kinds: `pipectl kinds [--json]`: the stage kinds this build knows and
 * the options of each, from the kinds' own option tables (the same tables
 * the config reader walks), as text or as JSON.
 */
#include <stdio.h>
#include <string.h>
#include <jansson.h>

#include "cli/cmd.h"
#include "core/option.h"

/* Prints one kind of the dump (k: an element of option_kinds_json()). */
static void kinds_print(const json_t *k)
{
	const char *role = json_string_value(json_object_get(k, "role"));
	const char *sel = json_string_value(json_object_get(k, "selector"));
	const json_t *opts = json_object_get(k, "options"), *o;
	size_t i;

	if (!sel)
		printf("%s (%s: {...})\n", json_string_value(json_object_get(k, "kind")), role);
	else if (json_is_true(json_object_get(k, "nested")))
		printf("%s (%s: {%s: {...}})\n", json_string_value(json_object_get(k, "kind")),
		       role, sel);
	else
		printf("%s (%s: {%s, ...})\n", json_string_value(json_object_get(k, "kind")),
		       role, sel);
	json_array_foreach(opts, i, o) {
		const char *def = json_string_value(json_object_get(o, "default"));
		printf("  %-16s %-18s", json_string_value(json_object_get(o, "key")),
		       json_string_value(json_object_get(o, "type")));
		if (json_is_true(json_object_get(o, "required")))
			printf(" (required)");
		else if (def)
			printf(" (default %s)", def);
		else if (json_is_true(json_object_get(o, "inherit")))
			printf(" (default: defaults:)");
		printf("  %s\n", json_string_value(json_object_get(o, "doc")));
	}
}

int cmd_kinds(int argc, char **argv)
{
	bool as_json = false;
	json_t *all, *k;
	size_t i;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--json") == 0)
			as_json = true;
		else
			return usage_error("kinds", "unknown argument \"%s\"", argv[a]);
	}
	all = option_kinds_json();
	if (as_json) {
		json_dumpf(all, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		json_array_foreach(all, i, k) {
			if (i > 0)
				putchar('\n');
			kinds_print(k);
		}
	}
	json_decref(all);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
}
