/*
 * dag: the stage graph of a spec. Edges come from `needs`; the order is
 * topological (stable: file order among ready stages). A cycle is reported
 * with its path, "a → b → c → a", at the position of the first stage on it.
 */
#ifndef PIPECTL_DAG_H
#define PIPECTL_DAG_H

#include <stddef.h>
#include "core/spec.h"
#include "base/diag.h"

struct dag {
	size_t n;                      /* number of stages (== spec->n_stages) */
	size_t *order;                 /* stage indexes in topological order */
	size_t **down;                 /* down[i]: indexes of stages that need i */
	size_t *n_down;
	size_t **up;                   /* up[i]: indexes of stages i needs (deduplicated) */
	size_t *n_up;
};

/* Builds the graph. Unknown `needs` names and cycles are reported to d and
 * make it return NULL. Caller frees with dag_free. */
struct dag *dag_build(const struct spec *s, struct diags *d);
void dag_free(struct dag *g);

#endif
