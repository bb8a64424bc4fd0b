/* A program built against an installed libbackup: initialises the library,
 * prints its version and the message of a provoked error. */
#include <stdio.h>
#include <string.h>

#include <libbackup/libbackup.h>

int main(int argc, char **argv)
{
	const char *missing = argc > 1 ? argv[1] : "/nonexistent/backup.aibk";
	bk_stream *s = NULL;
	if (bk_init() != 0) {
		fprintf(stderr, "bk_init failed\n");
		return 1;
	}
	printf("version %s\n", bk_version());
	printf("header %s\n", BK_VERSION_STRING);
	int rc = bk_stream_file_open(&s, missing);
	const bk_error *e = bk_error_last();
	printf("rc %d %s\n", rc, rc == BK_ENOTFOUND ? "BK_ENOTFOUND" : "other");
	printf("code %d\n", e->code);
	printf("message %s\n", e->message ? e->message : "(null)");
	bk_stream_free(s);
	bk_shutdown();
	return rc < 0 ? 0 : 1;
}
