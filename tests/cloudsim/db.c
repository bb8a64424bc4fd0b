/* aibo-cloudsim: the SQLite database holding units, tickets, backups and the
 * idempotency records. */
#include <stdio.h>

#include "sim.h"

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS units(serial TEXT PRIMARY KEY, model TEXT NOT NULL,"
    " hw_rev TEXT NOT NULL, device_id TEXT NOT NULL, owner TEXT, status TEXT NOT NULL,"
    " firmware TEXT, cert BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tickets(ticket TEXT PRIMARY KEY, old_serial TEXT NOT NULL,"
    " new_serial TEXT, status TEXT NOT NULL, outcome TEXT, summary TEXT);"
    "CREATE TABLE IF NOT EXISTS backups(id TEXT PRIMARY KEY, serial TEXT NOT NULL,"
    " path TEXT NOT NULL, statement_path TEXT NOT NULL, size INTEGER NOT NULL,"
    " created TEXT NOT NULL, firmware TEXT, schema INTEGER);"
    "CREATE TABLE IF NOT EXISTS idempotency(key TEXT PRIMARY KEY, request BLOB NOT NULL,"
    " status INTEGER NOT NULL, body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS reassignments(ticket TEXT NOT NULL, new_serial TEXT NOT NULL,"
    " at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS events(ticket TEXT NOT NULL, seq INTEGER NOT NULL,"
    " body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS terminals(terminal_id TEXT PRIMARY KEY, keys BLOB NOT NULL);";

int sim_db_open(sqlite3 **out, const char *path)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	*out = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "aibo-cloudsim: %s: %s\n", path,
		        db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, schema, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "aibo-cloudsim: %s: %s\n", path, err ? err : "schema failed");
		sqlite3_free(err);
		sqlite3_close(db);
		return -1;
	}
	*out = db;
	return 0;
}
