/*
 * registry: the table of stage kinds, and the choice of kind for a spec.
 */
#include "core/stage.h"

extern const struct stage_kind stage_fetch_http;
extern const struct stage_kind stage_fetch_file;
extern const struct stage_kind stage_transform;
extern const struct stage_kind stage_load_sqlite;
extern const struct stage_kind stage_load_file;
extern const struct stage_kind stage_load_stdout;
extern const struct stage_kind stage_load_http;

const struct stage_kind *const stage_kinds[] = {
	&stage_fetch_http,
	&stage_fetch_file,
	&stage_transform,
	&stage_load_sqlite,
	&stage_load_file,
	&stage_load_stdout,
	&stage_load_http,
	NULL,
};

const struct stage_kind *stage_kind_for(const struct stage_spec *spec)
{
	switch (spec->type) {
	case STAGE_FETCH:
		return spec->u.fetch.file.s ? &stage_fetch_file : &stage_fetch_http;
	case STAGE_TRANSFORM:
		return &stage_transform;
	case STAGE_LOAD:
		switch (spec->u.load.target) {
		case LOAD_SQLITE: return &stage_load_sqlite;
		case LOAD_FILE: return &stage_load_file;
		case LOAD_STDOUT: return &stage_load_stdout;
		case LOAD_HTTP: return &stage_load_http;
		}
	}
	return &stage_transform;
}
