/* Internal: the memory archive (aibo-backup(5), DESIGN.md section 4).
 *
 * A memory archive is a zstd-compressed pax tar:
 *   MANIFEST.json                  first, always
 *   domains/<domain>/<path>        regular files (and, optionally, folders)
 * with <domain> one of personality, memories, map, photos, settings, logs.
 *
 * Paths. A manifest entry's "path" is relative to "domains/": "<domain>/<rel>",
 * for example "memories/people/alice.json". The *domain path* of an entry is
 * <rel>, the path relative to the domain's folder ("people/alice.json").
 *
 * Domain digest. For one domain, BLAKE2b-256 (unkeyed, 32-byte output) over
 * the concatenation, for each file of the domain in byte-wise order of the
 * domain path, of
 *     domain path || 0x00 || size (u64 big-endian) || BLAKE2b-256 of the file
 * (the file digest as 32 raw bytes). A domain without files has the digest of
 * the empty input. The same digest is computed over a unit's memory folder
 * laid out as <root>/<domain>/<rel> (bk_tree_digests), so a memory restored
 * from an archive equals its source exactly when the domain digests match.
 *
 * The archive is written to, and read from, a bk_stream, so it stacks under
 * the age encryption: tree -> bk_archive_write -> age -> file, and
 * file -> age -> bk_archive_read -> staging folder -> domains in place. */
#ifndef BK_ARCHIVE_H
#define BK_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <locale.h>

#include <libbackup/progress.h>
#include <libbackup/stream.h>

#define BK_MANIFEST_FORMAT    "aibo-memory/1"
#define BK_MANIFEST_NAME      "MANIFEST.json"
#define BK_ARCHIVE_DIGEST_LEN 32
#define BK_ARCHIVE_CHECK_LEN  16 /* Poly1305 tag */
#define BK_ARCHIVE_CHECK_KEY  32 /* Poly1305 key */

/* The memory domains, in byte-wise order of their names. */
enum {
	BK_DOMAIN_LOGS,
	BK_DOMAIN_MAP,
	BK_DOMAIN_MEMORIES,
	BK_DOMAIN_PERSONALITY,
	BK_DOMAIN_PHOTOS,
	BK_DOMAIN_SETTINGS,
	BK_DOMAIN_COUNT
};
/* A set of domains: bit (1u << BK_DOMAIN_x); 0 in options means "all". */
#define BK_DOMAIN_BIT(d) (1u << (d))
#define BK_DOMAINS_ALL   ((1u << BK_DOMAIN_COUNT) - 1)

/* "logs", "map", ...; NULL when out of range. */
const char *bk_domain_name(int domain);
/* The domain named by the `len` bytes at `name`, or -1. */
int bk_domain_lookup(const char *name, size_t len);
/* Parses a comma-separated list of domain names into a set (BK_EUSER on an
 * unknown name). */
int bk_domain_set_parse(const char *list, unsigned *out);

typedef struct bk_domain_digest {
	bool present;   /* the domain is part of the memory (its folder exists) */
	uint64_t items; /* files */
	uint64_t bytes; /* sum of their sizes */
	uint8_t digest[BK_ARCHIVE_DIGEST_LEN];
} bk_domain_digest;

typedef struct bk_domain_digests {
	bk_domain_digest d[BK_DOMAIN_COUNT];
} bk_domain_digests;

/* Limits on what a manifest, a tree or an archive may hold. A limit of 0
 * means "no limit". Exceeding one is BK_ENOSPACE ("limit-exceeded"). */
typedef struct bk_archive_limits {
	uint64_t max_entries;      /* files */
	uint64_t max_total_bytes;  /* sum of file sizes */
	size_t max_path;           /* bytes of an entry's path below domains/ */
	size_t max_manifest_bytes; /* the encoded MANIFEST.json */
} bk_archive_limits;

#define BK_ARCHIVE_LIMITS_DEFAULT                                                                  \
	{                                                                                          \
		.max_entries = 1000000, .max_total_bytes = (uint64_t)256 << 30, .max_path = 1024,  \
		.max_manifest_bytes = (size_t)256 << 20                                            \
	}

/* --- Domain digests --------------------------------------------------------- */

/* The domain digests of a memory folder laid out as <root>/<domain>/<rel>.
 * Only regular files and folders are allowed (a symbolic link or special file
 * is BK_EFORMAT "tree-unsafe-file"); a top-level name that is not a domain is
 * BK_EFORMAT "unknown-domain" (top-level names starting with ".staging-",
 * left by bk_archive_read, are skipped). A domain is present when its folder
 * exists. Reads every file once with a bounded buffer. */
int bk_tree_digests(const char *root, bk_domain_digests *out);

/* True when both sets have the same present domains with equal items, bytes
 * and digests. */
bool bk_domain_digests_equal(const bk_domain_digests *a, const bk_domain_digests *b);

/* JSON form {"<domain>": {"items": N, "bytes": N, "digest": "<hex>"}, ...}
 * holding the present domains. */
int bk_domain_digests_to_json(const bk_domain_digests *d, json_t **out);
/* Strict inverse of the above (BK_EFORMAT on unknown domains, wrong types,
 * bad hex, unknown keys). */
int bk_domain_digests_from_json(const json_t *j, bk_domain_digests *out);

/* --- Manifest ------------------------------------------------------------- */

typedef struct bk_manifest_entry {
	char *path;      /* "<domain>/<rel>", relative to domains/ */
	const char *rel; /* <rel>: points into path */
	int domain;      /* BK_DOMAIN_x */
	uint64_t size;
	uint32_t mode; /* permission bits (at most 0777) */
	int64_t mtime; /* seconds since the epoch */
	uint8_t digest[BK_ARCHIVE_DIGEST_LEN];
	/* Not part of the manifest: the writer's keyed check of the content it
	 * hashed (see bk_archive__scan). */
	uint8_t check[BK_ARCHIVE_CHECK_LEN];
} bk_manifest_entry;

/* What the manifest says about the unit the memory belongs to. */
typedef struct bk_manifest_info {
	const char *serial;
	const char *model;
	const char *hardware_revision;
	const char *firmware_version;
	uint64_t schema_version;
	const char *backup_id; /* NULL: a new random UUID v4 */
	int64_t created;       /* 0: now */
} bk_manifest_info;

typedef struct bk_manifest bk_manifest;

/* A new manifest without entries; `domains` (a set, 0 = none yet) are
 * declared present even when they end up without files. */
int bk_manifest_new(bk_manifest **out, const bk_manifest_info *info, unsigned domains);
/* Adds a file (its domain is declared present). `path` is "<domain>/<rel>". */
int bk_manifest_add(bk_manifest *m, const char *path, uint64_t size, uint32_t mode, int64_t mtime,
                    const uint8_t digest[BK_ARCHIVE_DIGEST_LEN]);
/* Sorts the entries, refuses duplicates and conflicting paths, checks the
 * limits (NULL: defaults) and computes the domain totals and digests. */
int bk_manifest_finish(bk_manifest *m, const bk_archive_limits *limits);
/* Encodes a finished manifest as JSON (allocated with bk__malloc). Also
 * records the BLAKE2b-256 of these bytes (bk_manifest_raw_digest). */
int bk_manifest_encode(bk_manifest *m, char **out, size_t *out_len);
/* Strict parser: the format must be aibo-memory/1, every field present with
 * its type, no unknown keys, no duplicate keys or paths, hex digests of the
 * right length, only known domains, domain totals and digests consistent with
 * the entries, within `limits` (NULL: defaults). Errors: BK_EFORMAT
 * ("manifest-invalid", "manifest-format", "manifest-duplicate",
 * "manifest-inconsistent", "unknown-domain"), BK_ENOSPACE ("limit-exceeded"). */
int bk_manifest_parse(bk_manifest **out, const void *data, size_t len,
                      const bk_archive_limits *limits);
void bk_manifest_free(bk_manifest *m);

const char *bk_manifest_backup_id(const bk_manifest *m);
const char *bk_manifest_serial(const bk_manifest *m);
const char *bk_manifest_model(const bk_manifest *m);
const char *bk_manifest_hardware_revision(const bk_manifest *m);
const char *bk_manifest_firmware_version(const bk_manifest *m);
uint64_t bk_manifest_schema_version(const bk_manifest *m);
int64_t bk_manifest_created(const bk_manifest *m);
size_t bk_manifest_count(const bk_manifest *m);
/* Entries in byte-wise path order (after finish or parse). */
const bk_manifest_entry *bk_manifest_entry_at(const bk_manifest *m, size_t i);
/* The entry with this path ("<domain>/<rel>"), or NULL. */
const bk_manifest_entry *bk_manifest_find(const bk_manifest *m, const char *path);
const bk_domain_digests *bk_manifest_domains(const bk_manifest *m);
/* BLAKE2b-256 of the manifest's bytes as parsed or last encoded; false when
 * neither happened yet. */
bool bk_manifest_raw_digest(const bk_manifest *m, uint8_t out[BK_ARCHIVE_DIGEST_LEN]);
uint64_t bk_manifest_total_bytes(const bk_manifest *m);

/* Checks a "<domain>/<rel>" path: relative, no empty, "." or ".." component,
 * no control character or backslash, a known domain and a non-empty <rel>,
 * at most `max_path` bytes (0: no limit). Sets *out_domain. BK_EFORMAT
 * ("archive-unsafe-path" or "unknown-domain"), BK_ENOSPACE for the length. */
int bk_archive__check_path(const char *path, size_t max_path, int *out_domain);

/* --- Module internals (shared by the archive's source files) --- */

/* Hashes what `fd` holds from its position to its end with a bounded buffer.
 * With `check_key`, also computes the Poly1305 tag of the same bytes under
 * that key into `check`. */
int bk_archive__hash_fd(int fd, const char *what, uint64_t *out_size,
                        uint8_t digest[BK_ARCHIVE_DIGEST_LEN], const uint8_t *check_key,
                        uint8_t *check);
/* Opens the folder made of the first `len` bytes of `rel` below `dirfd`,
 * one component at a time with O_NOFOLLOW (never leaving `dirfd`); with
 * `create`, missing folders are made. */
int bk_archive__open_dir(int dirfd, const char *rel, size_t len, bool create, int *out_fd);
/* Hashes the memory folder `root` into a new, unfinished manifest. With
 * `threads` > 1, the folder is walked first and the files are then hashed by
 * `threads` threads (the caller's included); a file that changes between the
 * walk and its hashing is BK_ERROR "source-changed". With `check_key`
 * (BK_ARCHIVE_CHECK_KEY bytes), each entry's `check` gets the Poly1305 tag
 * of the content hashed. */
int bk_archive__scan(bk_manifest **out, const char *root, unsigned domains,
                     const bk_manifest_info *info, const bk_archive_limits *limits, int threads,
                     const uint8_t *check_key);
/* The entry at `i` of an unfinished manifest, to fill in its digest. */
bk_manifest_entry *bk_archive__entry_mut(bk_manifest *m, size_t i);

/* --- Worker threads (pipe.c) ---
 *
 * The last error is per thread: a worker keeps its failure in a
 * bk_archive_err and the thread that waits for it raises it again. */

/* At most this many threads hash files (bk_archive__scan). */
#define BK_ARCHIVE_MAX_THREADS 16

/* The worker threads an archive writer or a tree digest uses by default:
 * the online CPUs, at least 2 (reading and compressing overlap even on one)
 * and at most 4 (beyond that the compressor is the limit). */
int bk_archive__auto_threads(void);

typedef struct bk_archive_err {
	int code;
	const char *reason;
	char message[512];
} bk_archive_err;

/* Keeps this thread's last error (its code must be `code`). */
void bk_archive__err_keep(bk_archive_err *e, int code);
/* Sets the kept error as this thread's last error; returns its code. */
int bk_archive__err_raise(const bk_archive_err *e);

/* A bounded queue of buffers from one producer thread to one consumer
 * thread. Buffers are allocated up front; memory is `count` * `cap` bytes
 * whatever the amount of data. Either side may stop it (on failure or
 * cancellation), which wakes and releases the other. */
typedef struct bk_archive_slot {
	uint8_t *buf;
	size_t len;
	int kind;             /* the user's tag */
	bk_deadline deadline; /* for the consumer's writes */
} bk_archive_slot;

typedef struct bk_archive_ring bk_archive_ring;

int bk_archive__ring_new(bk_archive_ring **out, unsigned count, size_t cap);
/* Producer: the next free slot (len 0), waiting for one; NULL once stopped. */
bk_archive_slot *bk_archive__ring_acquire(bk_archive_ring *r);
/* Producer: hands the acquired slot to the consumer. */
void bk_archive__ring_publish(bk_archive_ring *r);
/* Producer: nothing more will be published. */
void bk_archive__ring_close(bk_archive_ring *r);
/* Consumer: the next published slot, waiting for one; NULL at the end (closed
 * and drained) or once stopped. */
bk_archive_slot *bk_archive__ring_peek(bk_archive_ring *r);
/* Consumer: gives the peeked slot back to the producer. */
void bk_archive__ring_release(bk_archive_ring *r);
/* Either side: stops the queue, waking both. With `err` (not NULL), the first
 * failure is kept for the other side. */
void bk_archive__ring_stop(bk_archive_ring *r, const bk_archive_err *err);
/* Whether a failure was kept (copied into `out`, which may be NULL). */
bool bk_archive__ring_failed(bk_archive_ring *r, bk_archive_err *out);
/* The slot size given to bk_archive__ring_new. */
size_t bk_archive__ring_cap(const bk_archive_ring *r);
void bk_archive__ring_free(bk_archive_ring *r);

/* A write filter over `next` that copies what is written into a bounded
 * queue (2 MiB) and writes it to `next` on its own thread, so that a slow
 * `next` (a disk that blocks) overlaps with the work of the writer. A
 * failure of `next` is returned by a later write or by closing. Closing
 * waits until everything is written, then finishes `next` when owned. With
 * `own_next`, the filter owns `next` once this call succeeds. With
 * BK_ARCHIVE_ASYNC_WRITEBACK and a file below (BK_STREAM_CTRL_FD), the
 * kernel is asked to start writing every few MiB out to the disk, so that a
 * final fsync has little left to do. */
#define BK_ARCHIVE_ASYNC_WRITEBACK 1u
int bk_archive__async_writer_new(bk_stream **out, bk_stream *next, int own_next, unsigned flags);
/* A read filter over `src` that reads it ahead on its own thread into a
 * bounded queue (2 MiB), so that the work behind `src` (decryption, a
 * digest) overlaps with the reader's. An error of `src` is returned by the
 * read that reaches it; the end of `src` is seen once the thread stopped, so
 * state kept by the streams below may then be read. With `own_src`, the
 * filter owns `src` once this call succeeds; freeing the filter early stops
 * the thread. */
int bk_archive__async_reader_new(bk_stream **out, bk_stream *src, int own_src);
/* Well-formed UTF-8 (no overlong forms, surrogates, or values past U+10FFFF). */
bool bk_archive__valid_utf8(const char *s, size_t len);
/* Paths in archives are UTF-8 bytes whatever the process locale: libarchive
 * runs with this thread's LC_CTYPE set to C.UTF-8 (uselocale, which touches
 * no other thread) between enter and leave. */
typedef struct bk_archive_locale {
	locale_t mine;
	locale_t prev;
} bk_archive_locale;
void bk_archive__utf8_enter(bk_archive_locale *l);
void bk_archive__utf8_leave(bk_archive_locale *l);
/* Removes `name` in `dirfd` and everything below it, following no link. */
int bk_archive__remove_tree(int dirfd, const char *name);

/* --- Archive ---------------------------------------------------------------- */

typedef struct bk_archive_stats {
	uint64_t tar_bytes;        /* the uncompressed tar stream */
	uint64_t compressed_bytes; /* bytes written to / read from the stream */
	uint64_t entries;          /* tar entries, MANIFEST.json included */
	uint64_t files;            /* files (manifest entries) */
	uint64_t file_bytes;       /* their content */
} bk_archive_stats;

#define BK_ARCHIVE_WRITE_OPTS_VERSION 1

typedef struct bk_archive_write_opts {
	unsigned version;
	bk_manifest_info info;
	unsigned domains;      /* domains to include (0: every present one) */
	int compression_level; /* zstd level 1..19 (0: 3) */
	/* 0: everything runs on the calling thread. Otherwise the files are
	 * hashed by `threads` threads (at most BK_ARCHIVE_MAX_THREADS), and
	 * while the archive is written one thread reads and re-hashes the files
	 * ahead of the compressor and another writes to `out`, which must then
	 * allow being written from a thread other than the caller's (it is used
	 * by one thread at a time, and not at all once the call returns). */
	int threads;
	bk_archive_limits limits;
	bk_progress_cb progress;
	void *progress_payload;
	bk_deadline deadline;
} bk_archive_write_opts;

#define BK_ARCHIVE_WRITE_OPTS_INIT                                                                 \
	{                                                                                          \
		.version = BK_ARCHIVE_WRITE_OPTS_VERSION, .limits = BK_ARCHIVE_LIMITS_DEFAULT,     \
		.deadline = BK_DEADLINE_NONE                                                       \
	}

/* Archives the memory folder `src_dir` (laid out <src_dir>/<domain>/<rel>,
 * regular files and folders only) into `out`: one pass hashing every file
 * into the manifest, a second pass streaming the tar, re-hashing each file
 * and failing (BK_ERROR "source-changed") if one changed in between. Does not
 * close `out`. Memory stays bounded (a few MiB of buffers) whatever the size
 * of the files. Progress callbacks run on the calling thread. On success *out_manifest (may be NULL) gets the manifest and
 * *out_stats (may be NULL) the statistics. */
int bk_archive_write(bk_stream *out, const char *src_dir, const bk_archive_write_opts *opts,
                     bk_manifest **out_manifest, bk_archive_stats *out_stats);

#define BK_ARCHIVE_READ_OPTS_VERSION 1

typedef struct bk_archive_read_opts {
	unsigned version;
	/* Where the domains go: <dest_dir>/<domain>. NULL: verify only, nothing
	 * is written. The archive is extracted into <dest_dir>/.staging-<id>
	 * and the domains are moved into place only once everything checked;
	 * an existing domain folder is replaced, others are left alone. */
	const char *dest_dir;
	unsigned domains; /* domains to install (0: all in the archive) */
	bk_archive_limits limits;
	bool skip_space_check; /* do not compare with the free space */
	bool no_sync;          /* do not flush the staged files to disk before
	                        * moving them into place (scratch folders, tests) */
	bk_progress_cb progress;
	void *progress_payload;
	bk_deadline deadline;
} bk_archive_read_opts;

#define BK_ARCHIVE_READ_OPTS_INIT                                                                  \
	{                                                                                          \
		.version = BK_ARCHIVE_READ_OPTS_VERSION, .limits = BK_ARCHIVE_LIMITS_DEFAULT,      \
		.deadline = BK_DEADLINE_NONE                                                       \
	}

/* Reads and checks a memory archive from `in` (until its end; `in` is not
 * closed). Errors name the entry: BK_EFORMAT for a hostile or malformed
 * archive ("manifest-not-first", "archive-unsafe-path", "archive-link",
 * "archive-special-file", "archive-duplicate", "archive-undeclared-entry",
 * "archive-missing-entry", "archive-corrupt"), BK_EVERIFY for content
 * ("entry-size-mismatch", "entry-digest-mismatch"), BK_ENOSPACE
 * ("limit-exceeded", "no-space"). On failure nothing is left in dest_dir. */
int bk_archive_read(bk_stream *in, const bk_archive_read_opts *opts, bk_manifest **out_manifest,
                    bk_archive_stats *out_stats);

#endif
