/* Internal: the catalog's connection, for the modules that add tables
 * (the repair journal). */
#ifndef BK_CATALOG_INTERNAL_H
#define BK_CATALOG_INTERNAL_H

#include <sqlite3.h>

#include <libbackup/catalog.h>

struct bk_catalog {
	sqlite3 *db;
	char *path;
	int schema;
};

/* Maps an SQLite result onto a BK_E* error naming the database and `what`. */
int bk_catalog__sql_error(bk_catalog *cat, int src, const char *what);
int bk_catalog__exec(bk_catalog *cat, const char *sql, const char *what);
int bk_catalog__prepare(bk_catalog *cat, sqlite3_stmt **st, const char *sql);
/* Runs one statement that returns no rows, its parameters bound in order as
 * `types` says: 't' text (const char *, NULL binds NULL), 'i' int64_t, 'z'
 * int64_t bound as NULL when 0. A failure names `what`. */
int bk_catalog__run(bk_catalog *cat, const char *what, const char *sql, const char *types, ...);
/* BEGIN IMMEDIATE (waits up to the busy timeout for other writers). */
int bk_catalog__begin(bk_catalog *cat);
int bk_catalog__commit(bk_catalog *cat);
void bk_catalog__rollback(bk_catalog *cat);
void bk_catalog__now(char out[21]);

#endif
