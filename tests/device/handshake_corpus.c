/* The seed corpora of the channel handshake fuzz targets.
 *
 *   handshake_corpus --write DIR   records sessions between the fixed
 *                                  terminal and unit of
 *                                  tests/fuzz/fuzz_handshake_common.h and
 *                                  writes DIR/handshake_unit/ and
 *                                  DIR/handshake_terminal/
 *   handshake_corpus --check DIR   checks that the "valid-*" seeds in those
 *                                  folders still complete the handshake (so
 *                                  the corpus reaches the transport code) */
#include <pthread.h>
#include <stdio.h>

#include "tests/fuzz/fuzz_handshake_common.h"

typedef struct tee {
	bk_stream base;
	bk_buf *out;
} tee;

static int tee_read(bk_stream *s, void *buf, size_t len, size_t *n, bk_deadline d)
{
	return bk_stream_read(s->next, buf, len, n, d);
}

static int tee_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	tee *t = (tee *)s;
	if (bk_buf_put(t->out, buf, len) != 0)
		return BK_ENOMEM;
	return bk_stream_write(s->next, buf, len, d);
}

static int tee_ctrl(bk_stream *s, int op, void *arg)
{
	return bk_stream_ctrl(s->next, op, arg);
}

static void tee_release(bk_stream *s)
{
	bk__free(s);
}

static const bk_stream_ops tee_ops = {
    .version = BK_STREAM_OPS_VERSION,
    .name = "tee",
    .read = tee_read,
    .write = tee_write,
    .release = tee_release,
    .ctrl = tee_ctrl,
};

static bk_stream *tee_new(bk_stream *next, bk_buf *out)
{
	tee *t = bk__calloc(1, sizeof(*t));
	if (t == NULL)
		abort();
	t->base.ops = &tee_ops;
	t->base.next = next;
	t->base.owns_next = 1;
	t->out = out;
	return &t->base;
}

typedef struct side {
	bk_stream *s;
	bk_buf rec;
	bool no_cert;
	int rc;
} side;

static void *unit_main(void *arg)
{
	side *u = arg;
	bk_channel_cfg cfg;
	bk_channel *ch = NULL;
	fh_unit_cfg(&cfg, fh_world_get());
	u->rc = bk_channel_accept(&ch, tee_new(u->s, &u->rec), 1, &cfg, bk_deadline_in(5000));
	if (u->rc == 0) {
		json_t *hello = NULL;
		bk_proto_hello_answer(&hello, 1);
		bk_proto_msg m = {.type = BK_MSG_HELLO, .id = 1, .json = hello};
		bk_channel_send(ch, &m, bk_deadline_in(5000));
		json_decref(hello);
		uint8_t data[100];
		memset(data, 0xab, sizeof(data));
		bk_proto_msg dm = {.type = BK_MSG_DATA,
		                   .id = 2,
		                   .offset = 4096,
		                   .data = data,
		                   .data_len = sizeof(data)};
		bk_channel_send(ch, &dm, bk_deadline_in(5000));
		bk_channel_refuse(ch, BK_EBUSY, "busy", "unit is busy");
		bk_channel_linger(ch, 2000);
	}
	bk_channel_free(ch);
	return NULL;
}

/* Runs one session; *unit_bytes and *terminal_bytes get what each sent. */
static void record(bk_buf *unit_bytes, bk_buf *terminal_bytes, bool no_cert)
{
	const fh_world *w = fh_world_get();
	side u;
	bk_stream *t = NULL;
	bk_channel *ch = NULL;
	bk_channel_cfg cfg;
	pthread_t th;
	memset(&u, 0, sizeof(u));
	if (bk_transport_pair_new(&t, &u.s) != 0 || pthread_create(&th, NULL, unit_main, &u) != 0)
		abort();
	fh_terminal_cfg(&cfg, w);
	if (no_cert)
		cfg.cert = NULL;
	if (bk_channel_connect(&ch, tee_new(t, terminal_bytes), 1, &cfg, bk_deadline_in(5000)) ==
	    0) {
		json_t *offer = NULL;
		bk_proto_hello_offer(&offer);
		bk_proto_msg m = {.type = BK_MSG_HELLO, .id = 1, .json = offer};
		bk_channel_send(ch, &m, bk_deadline_in(5000));
		json_decref(offer);
		bk_proto_msg p = {.type = BK_MSG_PING, .id = 2};
		bk_channel_send(ch, &p, bk_deadline_in(5000));
		uint8_t data[300];
		memset(data, 0x17, sizeof(data));
		bk_proto_msg dm = {.type = BK_MSG_RESTORE_WRITE,
		                   .id = 3,
		                   .offset = 65536,
		                   .data = data,
		                   .data_len = sizeof(data)};
		bk_channel_send(ch, &dm, bk_deadline_in(5000));
		bk_proto_msg info = {.type = BK_MSG_INFO, .id = 4};
		bk_channel_send(ch, &info, bk_deadline_in(5000));
	}
	bk_channel_free(ch);
	pthread_join(th, NULL);
	bk_buf_put(unit_bytes, u.rec.data, u.rec.len);
	bk_buf_free(&u.rec);
}

static void put(const char *dir, const char *target, const char *name, const void *p, size_t n)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, target);
	bk_mkdir_p(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static int write_corpus(const char *dir)
{
	bk_buf ub = BK_BUF_INIT, tb = BK_BUF_INIT, ub2 = BK_BUF_INIT, tb2 = BK_BUF_INIT;
	record(&ub, &tb, false);
	record(&ub2, &tb2, true);
	/* The unit side receives the terminal's bytes. */
	put(dir, "handshake_unit", "valid-session", tb.data, tb.len);
	put(dir, "handshake_unit", "message-1-only", tb.data, 2 + bk_get_u16be(tb.data));
	put(dir, "handshake_unit", "no-certificate", tb2.data, tb2.len);
	put(dir, "handshake_unit", "truncated", tb.data, tb.len / 2);
	put(dir, "handshake_unit", "plaintext-command", "\x00\x05\x10\x00\x00\x00\x01", 7);
	/* The terminal side receives the unit's bytes. */
	put(dir, "handshake_terminal", "valid-session", ub.data, ub.len);
	put(dir, "handshake_terminal", "message-2-only", ub.data, 2 + bk_get_u16be(ub.data));
	put(dir, "handshake_terminal", "truncated", ub.data, ub.len / 3);
	put(dir, "handshake_terminal", "short-frame",
	    "\x00\x20"
	    "0123456789abcdef0123456789abcdef",
	    34);
	printf("unit seeds from %zu bytes, terminal seeds from %zu bytes\n", tb.len, ub.len);
	bk_buf_free(&ub);
	bk_buf_free(&tb);
	bk_buf_free(&ub2);
	bk_buf_free(&tb2);
	return 0;
}

static int check_corpus(const char *dir)
{
	const fh_world *w = fh_world_get();
	char path[1024];
	uint8_t *data = NULL;
	size_t len = 0;
	bk_channel_cfg cfg;
	bk_channel *ch = NULL;
	int failures = 0;

	snprintf(path, sizeof(path), "%s/handshake_unit/valid-session", dir);
	if (bk_file_read(path, 1 << 20, &data, &len) != 0) {
		fprintf(stderr, "%s: %s\n", path, bk_error_last()->message);
		return 1;
	}
	fh_unit_cfg(&cfg, w);
	if (bk_channel_accept(&ch, fh_stream_new(data, len, NULL), 1, &cfg, BK_DEADLINE_NONE) !=
	    0) {
		fprintf(stderr, "unit seed no longer completes the handshake: %s\n",
		        bk_error_last()->message);
		failures++;
	} else {
		bk_proto_msg m;
		if (bk_channel_recv(ch, &m, BK_DEADLINE_NONE) != 0 || m.type != BK_MSG_HELLO) {
			fprintf(stderr, "unit seed: no HELLO after the handshake\n");
			failures++;
		}
		bk_proto_msg_clear(&m);
	}
	bk_channel_free(ch);
	ch = NULL;
	bk__free(data);

	snprintf(path, sizeof(path), "%s/handshake_terminal/valid-session", dir);
	if (bk_file_read(path, 1 << 20, &data, &len) != 0) {
		fprintf(stderr, "%s: %s\n", path, bk_error_last()->message);
		return 1;
	}
	fh_terminal_cfg(&cfg, w);
	if (bk_channel_connect(&ch, fh_stream_new(data, len, NULL), 1, &cfg, BK_DEADLINE_NONE) !=
	    0) {
		fprintf(stderr, "terminal seed no longer completes the handshake: %s\n",
		        bk_error_last()->message);
		failures++;
	}
	bk_channel_free(ch);
	bk__free(data);
	printf("%d passed, %d failed, 0 skipped\n", 2 - failures, failures);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write") == 0)
		return write_corpus(argv[2]);
	if (argc == 3 && strcmp(argv[1], "--check") == 0)
		return check_corpus(argv[2]);
	fprintf(stderr, "usage: handshake_corpus --write|--check DIR\n");
	return 2;
}
