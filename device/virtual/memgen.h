/* The virtual robot's deterministic memory: a realistic tree of personality
 * and growth state, memories (people, tricks), room map, photos, settings
 * and logs, generated from a seed to about a requested size. */
#ifndef BK_VDEV_MEMGEN_H
#define BK_VDEV_MEMGEN_H

#include <stdint.h>

/* The memory domains, in their canonical order. */
extern const char *const bk_vdev_domains[];
#define BK_VDEV_DOMAIN_COUNT 6

/* Creates `root`/<domain>/... with about `size` bytes in total (never more
 * than size + a few KiB; at least the personality state, unless size is 0:
 * then every domain folder exists and is empty). The same seed and size give
 * the same bytes. `root` must not exist or be empty. */
int bk_vdev_memgen(const char *root, uint64_t size, uint64_t seed);

#endif
