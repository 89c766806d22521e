/*
 * units: durations (250ms 10s 5m 1h 1.5s), sizes (512 64KiB 64MiB 1GiB 10kB
 * 5MB) and rates (5/s 300/m 1000/h 0.5/s) as text.
 */
#ifndef PIPECTL_UNITS_H
#define PIPECTL_UNITS_H

/* Syntax only: return 0 and the value (which may be 0), or -1. */
int units_duration(const char *s, double *seconds);
int units_size(const char *s, long long *bytes);
int units_rate(const char *s, double *per_second);

/* Strict value parsers, shared with the command line: as above, and the
 * value must be greater than 0. Return 0 or -1. */
int parse_duration(const char *s, double *seconds);
int parse_size(const char *s, long long *bytes);
int parse_rate(const char *s, double *per_second);

#endif
