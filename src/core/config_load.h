/*
 * config: reads a pipeline YAML file into a typed spec (core/spec.h) that
 * keeps the source position of every value, so that any later error can
 * point at a line. Reading does no I/O beyond the file itself. All errors in
 * a file are collected (not just the first) as diagnostics; see diag.h.
 *
 * config sits above spec and dag: it reads the stages, then runs dag.c's
 * checks (names, cycles) on them; dag.c knows only spec.h.
 */
#ifndef PIPECTL_CONFIG_H
#define PIPECTL_CONFIG_H

#include "base/diag.h"
#include "core/spec.h"

/*
 * Parses and checks path. Returns the spec (the caller frees it with
 * spec_free), or NULL when any error was found; every error found is
 * appended to d (so callers print them all). Checks: YAML syntax,
 * duplicate keys, unknown keys (with a suggestion), types, required keys,
 * durations/sizes, stage references, cycles (dag.c), jq expressions and
 * ${...} templates (expr.c). A file larger than 16 MiB is refused unread
 * ("file too large").
 */
struct spec *config_load(const char *path, struct diags *d);

#endif
