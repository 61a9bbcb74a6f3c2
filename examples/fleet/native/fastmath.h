/* libfastmath: a tiny C library, compiled from source in the cpu base's run step. */
#ifndef FASTMATH_H
#define FASTMATH_H
#include <stddef.h>

double fastmath_dot(const double *a, const double *b, size_t n);
const char *fastmath_version(void);

#endif
