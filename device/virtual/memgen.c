/* Deterministic memory generator for virtual units. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "device/virtual/memgen.h"
#include "libbackup/util/util.h"

const char *const bk_vdev_domains[] = {"personality", "memories", "map",
				       "photos",      "settings", "logs"};

/* A ChaCha20 keystream as the deterministic source. */
typedef struct rng {
	uint8_t key[crypto_stream_chacha20_KEYBYTES];
	uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
	uint64_t block;
	uint8_t buf[64];
	size_t pos;
} rng;

static void rng_init(rng *r, uint64_t seed, const char *purpose)
{
	uint8_t in[64];
	memset(r, 0, sizeof(*r));
	memset(in, 0, sizeof(in));
	bk_put_u64be(in, seed);
	bk_strlcpy((char *)in + 8, purpose, sizeof(in) - 8);
	crypto_generichash(r->key, sizeof(r->key), in, sizeof(in), NULL, 0);
	r->pos = sizeof(r->buf);
}

static void rng_bytes(rng *r, uint8_t *out, size_t n)
{
	/* Bulk: whole keystream blocks straight into the output. */
	while (n > 0) {
		if (r->pos == sizeof(r->buf) && n >= 64) {
			size_t blocks = n / 64;
			memset(out, 0, blocks * 64);
			crypto_stream_chacha20_xor_ic(out, out, blocks * 64, r->nonce, r->block, r->key);
			r->block += blocks;
			out += blocks * 64;
			n -= blocks * 64;
			continue;
		}
		if (r->pos == sizeof(r->buf)) {
			memset(r->buf, 0, sizeof(r->buf));
			crypto_stream_chacha20_xor_ic(r->buf, r->buf, sizeof(r->buf), r->nonce,
						      r->block++, r->key);
			r->pos = 0;
		}
		size_t take = sizeof(r->buf) - r->pos;
		if (take > n)
			take = n;
		memcpy(out, r->buf + r->pos, take);
		r->pos += take;
		out += take;
		n -= take;
	}
}

static uint32_t rng_u32(rng *r, uint32_t bound)
{
	uint8_t b[4];
	rng_bytes(r, b, 4);
	uint32_t v = bk_get_u32be(b);
	return bound ? v % bound : v;
}

static const char *const names[] = {"alice", "bruno", "chiara", "daichi", "emma",  "farid",
				    "grace", "hiro",  "ines",	"jonas",  "kaito", "lena",
				    "mika",  "noor",  "oskar",	"priya",  "quinn", "rosa",
				    "sora",  "tomas", "uma",	"viktor", "wen",   "yuki"};
static const char *const tricks[] = {"sit",	  "paw",	"bang",	 "dance",   "spin",
				     "high-five", "play-dead",	"fetch", "beg",	    "bow",
				     "roll-over", "peekaboo",	"sing",	 "yoga",    "salute"};
static const char *const rooms[] = {"living-room", "kitchen", "bedroom", "hallway", "study"};

typedef struct gen {
	const char *root;
	uint64_t budget;
	uint64_t written;
	rng r;
	bk_buf b;
} gen;

static int write_file(gen *g, const char *domain, const char *rel, const void *data, size_t len)
{
	char path[4096];
	int rc = 0;
	snprintf(path, sizeof(path), "%s/%s/%s", g->root, domain, rel);
	char *dir = bk_path_dirname(path);
	if (dir == NULL)
		return BK_ENOMEM;
	rc = bk_mkdir_p(dir, 0755);
	bk__free(dir);
	if (rc)
		return rc;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return bk__error_errno(errno, "%s", path);
	const uint8_t *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = bk__error_errno(n < 0 ? errno : EIO, "%s", path);
			break;
		}
		p += n;
		left -= (size_t)n;
	}
	if (close(fd) != 0 && rc == 0)
		rc = bk__error_errno(errno, "%s", path);
	/* Fixed times, so that the same seed gives the same tree. */
	struct timespec ts[2] = {{1767225600, 0}, {1767225600, 0}};
	if (rc == 0 && utimensat(AT_FDCWD, path, ts, 0) != 0)
		rc = bk__error_errno(errno, "%s", path);
	g->written += len;
	return rc;
}

static uint64_t left_of(const gen *g)
{
	return g->written >= g->budget ? 0 : g->budget - g->written;
}

static int put_text(gen *g, const char *domain, const char *rel)
{
	int rc = write_file(g, domain, rel, g->b.data ? g->b.data : (uint8_t *)"", g->b.len);
	bk_buf_reset(&g->b);
	return rc;
}

static int gen_personality(gen *g)
{
	static const char *const traits[] = {"curiosity", "affection", "energy", "patience",
					     "playfulness", "bravery"};
	int rc = bk_buf_printf(&g->b, "{\n  \"name\": \"%s\",\n  \"age_days\": %u,\n  \"traits\": {",
			       names[rng_u32(&g->r, BK_ARRAY_LEN(names))], 30 + rng_u32(&g->r, 2000));
	for (size_t i = 0; rc == 0 && i < BK_ARRAY_LEN(traits); i++)
		rc = bk_buf_printf(&g->b, "%s\n    \"%s\": %u", i ? "," : "", traits[i],
				   rng_u32(&g->r, 101));
	if (rc == 0)
		rc = bk_buf_printf(&g->b, "\n  }\n}\n");
	if (rc == 0)
		rc = put_text(g, "personality", "state.json");
	if (rc)
		return rc;
	/* Growth: one line per day of life, as the unit's learning log. */
	for (unsigned day = 0; rc == 0 && day < 400 && left_of(g) > 2048 + g->b.len; day++)
		rc = bk_buf_printf(&g->b, "{\"day\":%u,\"xp\":%u,\"mood\":%u,\"steps\":%u}\n", day,
				   day * 37 + rng_u32(&g->r, 50), rng_u32(&g->r, 100),
				   rng_u32(&g->r, 20000));
	return rc ? rc : put_text(g, "personality", "growth.jsonl");
}

static int gen_memories(gen *g, uint64_t budget)
{
	uint64_t start = g->written;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < BK_ARRAY_LEN(names) && g->written - start + 2048 < budget;
	     i++) {
		uint8_t face[384];
		char b64[sodium_base64_ENCODED_LEN(sizeof(face), sodium_base64_VARIANT_ORIGINAL)];
		rng_bytes(&g->r, face, sizeof(face));
		sodium_bin2base64(b64, sizeof(b64), face, sizeof(face), sodium_base64_VARIANT_ORIGINAL);
		rc = bk_buf_printf(&g->b,
				   "{\"name\":\"%s\",\"relation\":\"%s\",\"met_day\":%u,"
				   "\"encounters\":%u,\"face_embedding\":\"%s\"}\n",
				   names[i], i == 0 ? "owner" : i < 4 ? "family" : "friend",
				   rng_u32(&g->r, 900), rng_u32(&g->r, 5000), b64);
		char rel[64];
		snprintf(rel, sizeof(rel), "people/%s.json", names[i]);
		if (rc == 0)
			rc = put_text(g, "memories", rel);
	}
	for (size_t i = 0; rc == 0 && i < BK_ARRAY_LEN(tricks) && g->written - start + 1024 < budget;
	     i++) {
		rc = bk_buf_printf(&g->b, "{\"trick\":\"%s\",\"learned_day\":%u,\"mastery\":%u,"
					  "\"motion\":[",
				   tricks[i], rng_u32(&g->r, 900), rng_u32(&g->r, 101));
		for (int k = 0; rc == 0 && k < 48; k++)
			rc = bk_buf_printf(&g->b, "%s%d", k ? "," : "", (int)rng_u32(&g->r, 360) - 180);
		if (rc == 0)
			rc = bk_buf_printf(&g->b, "]}\n");
		char rel[64];
		snprintf(rel, sizeof(rel), "tricks/%s.json", tricks[i]);
		if (rc == 0)
			rc = put_text(g, "memories", rel);
	}
	return rc;
}

static int gen_map(gen *g, uint64_t budget)
{
	uint64_t start = g->written;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < BK_ARRAY_LEN(rooms) && g->written - start + 512 < budget;
	     i++) {
		/* An occupancy grid: runs of free and occupied cells. */
		uint64_t want = (budget - (g->written - start)) / (BK_ARRAY_LEN(rooms) - i);
		if (want > 4u << 20)
			want = 4u << 20;
		size_t side = 16;
		while ((uint64_t)(side * 2) * (side * 2) <= want)
			side *= 2;
		rc = bk_buf_reserve(&g->b, side * side);
		for (size_t y = 0; rc == 0 && y < side; y++) {
			uint8_t cell = 0;
			for (size_t x = 0; x < side; x++) {
				if (rng_u32(&g->r, 16) == 0)
					cell = cell ? 0 : (uint8_t)(100 + rng_u32(&g->r, 100));
				g->b.data[g->b.len++] = (x == 0 || y == 0 || x == side - 1 ||
							 y == side - 1)
								? 255
								: cell;
			}
		}
		char rel[64];
		snprintf(rel, sizeof(rel), "rooms/%s.grid", rooms[i]);
		if (rc == 0)
			rc = put_text(g, "map", rel);
		if (rc == 0)
			rc = bk_buf_printf(&g->b,
					   "{\"room\":\"%s\",\"width\":%zu,\"height\":%zu,"
					   "\"resolution_mm\":20,\"charger\":[%u,%u]}\n",
					   rooms[i], side, side, rng_u32(&g->r, (uint32_t)side),
					   rng_u32(&g->r, (uint32_t)side));
		snprintf(rel, sizeof(rel), "rooms/%s.json", rooms[i]);
		if (rc == 0)
			rc = put_text(g, "map", rel);
	}
	return rc;
}

static int gen_photos(gen *g, uint64_t budget)
{
	uint64_t start = g->written;
	int rc = 0;
	for (unsigned i = 0; rc == 0 && g->written - start + 4096 < budget; i++) {
		uint64_t room = budget - (g->written - start);
		size_t len = 256 * 1024 + rng_u32(&g->r, 1792 * 1024);
		if (len > room)
			len = (size_t)room;
		bk_buf_reset(&g->b);
		rc = bk_buf_reserve(&g->b, len);
		if (rc)
			break;
		/* JPEG-like: SOI + JFIF APP0, entropy-coded noise, EOI. */
		static const uint8_t head[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I',
					       'F',  0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01,
					       0x00, 0x00};
		memcpy(g->b.data, head, sizeof(head));
		rng_bytes(&g->r, g->b.data + sizeof(head), len - sizeof(head) - 2);
		g->b.data[len - 2] = 0xff;
		g->b.data[len - 1] = 0xd9;
		g->b.len = len;
		char rel[64];
		snprintf(rel, sizeof(rel), "%04u/IMG_%04u.jpg", 2025 + i / 200, i);
		rc = put_text(g, "photos", rel);
	}
	return rc;
}

static int gen_settings(gen *g)
{
	int rc = bk_buf_printf(&g->b,
			       "{\"owner_name\":\"%s\",\"language\":\"ja-JP\",\"volume\":%u,"
			       "\"wake_word\":true,\"photo_sharing\":%s}\n",
			       names[0], rng_u32(&g->r, 11), rng_u32(&g->r, 2) ? "true" : "false");
	if (rc == 0)
		rc = put_text(g, "settings", "owner.json");
	if (rc == 0)
		rc = bk_buf_printf(&g->b, "{\"wake\":\"07:%02u\",\"sleep\":\"22:%02u\","
					  "\"patrol\":[\"%s\",\"%s\"]}\n",
				   rng_u32(&g->r, 60), rng_u32(&g->r, 60), rooms[0], rooms[2]);
	if (rc == 0)
		rc = put_text(g, "settings", "schedule.json");
	return rc;
}

static int gen_logs(gen *g, uint64_t budget)
{
	static const char *const events[] = {"wake", "sleep", "charge", "play", "pet", "walk",
					     "error E%u", "recognised", "photo"};
	uint64_t start = g->written;
	int rc = 0;
	for (unsigned f = 0; rc == 0 && g->written - start + 256 < budget; f++) {
		uint64_t room = budget - (g->written - start);
		size_t want = room > (1u << 20) ? (1u << 20) : (size_t)room;
		unsigned t = f * 86400;
		while (rc == 0 && g->b.len + 96 < want) {
			unsigned e = rng_u32(&g->r, BK_ARRAY_LEN(events));
			char ev[32];
			snprintf(ev, sizeof(ev), events[e], 100 + rng_u32(&g->r, 50));
			t += 1 + rng_u32(&g->r, 600);
			rc = bk_buf_printf(&g->b, "t=%u level=%s event=\"%s\" battery=%u\n", t,
					   e == 6 ? "warn" : "info", ev, rng_u32(&g->r, 101));
		}
		char rel[64];
		snprintf(rel, sizeof(rel), "events-%03u.log", f);
		if (rc == 0)
			rc = put_text(g, "logs", rel);
	}
	return rc;
}

int bk_vdev_memgen(const char *root, uint64_t size, uint64_t seed)
{
	gen g;
	int rc;
	memset(&g, 0, sizeof(g));
	g.root = root;
	g.budget = size;
	rng_init(&g.r, seed, "aibo-vdev memory");
	rc = bk_mkdir_p(root, 0755);
	for (size_t i = 0; rc == 0 && i < BK_VDEV_DOMAIN_COUNT; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", root, bk_vdev_domains[i]);
		rc = bk_mkdir_p(path, 0755);
	}
	if (rc || size == 0)
		goto done;
	rc = gen_personality(&g);
	if (rc == 0)
		rc = gen_settings(&g);
	/* Shares of what is left: memories 10%, map 12%, logs 13%, photos the rest. */
	uint64_t rest = left_of(&g);
	if (rc == 0)
		rc = gen_memories(&g, rest / 10);
	if (rc == 0)
		rc = gen_map(&g, rest * 12 / 100);
	if (rc == 0)
		rc = gen_logs(&g, rest * 13 / 100);
	if (rc == 0)
		rc = gen_photos(&g, left_of(&g));
done:
	bk_buf_free(&g.b);
	return rc;
}
