/* libbackup: shared definitions for every public header. */
#ifndef LIBBACKUP_COMMON_H
#define LIBBACKUP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(BK_BUILDING_LIBRARY)
#define BK_EXTERN __attribute__((visibility("default")))
#else
#define BK_EXTERN
#endif

#ifdef __cplusplus
#define BK_BEGIN_DECLS extern "C" {
#define BK_END_DECLS }
#else
#define BK_BEGIN_DECLS
#define BK_END_DECLS
#endif

BK_BEGIN_DECLS
/* Frees memory the library handed over to the caller. NULL is a no-op. */
BK_EXTERN void bk_free(void *p);
BK_END_DECLS

#endif
