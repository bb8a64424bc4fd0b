/* HMAC and HKDF: SHA-256 against RFC 4231 and RFC 5869, BLAKE2b (the Noise
 * flavour) against independently computed values and its definition. */
#include <string.h>

#include <sodium.h>

#include <libbackup/libbackup.h>

#include "crypto/kdf.h"
#include "libbackup/util/util.h"
#include "testlib.h"

/* Decodes hex into a static rotating buffer; *len gets the byte count. */
static const uint8_t *hx(const char *hex, size_t *len)
{
	static uint8_t slots[4][512];
	static int next;
	uint8_t *p = slots[next++ % 4];
	size_t n = strlen(hex) / 2;
	if (n > sizeof(slots[0]) || bk_hex_decode(p, n, hex) != 0)
		n = 0;
	if (len)
		*len = n;
	return p;
}

static void fill(uint8_t *p, size_t n, uint8_t v)
{
	memset(p, v, n);
}

static void check_hex(const uint8_t *got, size_t n, const char *want)
{
	char hex[2 * 256 + 1];
	REQUIRE(n <= 256);
	bk_hex_encode(hex, got, n);
	CHECK_STR(hex, want);
}

/* RFC 4231, test cases 1 to 7. */
static void test_hmac_sha256_rfc4231(void)
{
	uint8_t key[131], data[152], mac[BK_SHA256_LEN];

	fill(key, 20, 0x0b);
	bk_hmac_sha256(mac, key, 20, (const uint8_t *)"Hi There", 8);
	check_hex(mac, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

	bk_hmac_sha256(mac, (const uint8_t *)"Jefe", 4,
	               (const uint8_t *)"what do ya want for nothing?", 28);
	check_hex(mac, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	fill(key, 20, 0xaa);
	fill(data, 50, 0xdd);
	bk_hmac_sha256(mac, key, 20, data, 50);
	check_hex(mac, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

	for (int i = 0; i < 25; i++)
		key[i] = (uint8_t)(i + 1);
	fill(data, 50, 0xcd);
	bk_hmac_sha256(mac, key, 25, data, 50);
	check_hex(mac, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

	fill(key, 20, 0x0c);
	bk_hmac_sha256(mac, key, 20, (const uint8_t *)"Test With Truncation", 20);
	check_hex(mac, 16, "a3b6167473100ee06e0c796c2955552b"); /* truncated to 128 bits */

	fill(key, 131, 0xaa);
	const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
	bk_hmac_sha256(mac, key, 131, (const uint8_t *)m6, strlen(m6));
	check_hex(mac, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

	const char *m7 = "This is a test using a larger than block-size key and a larger than "
	                 "block-size data. The key needs to be hashed before being used by the "
	                 "HMAC algorithm.";
	bk_hmac_sha256(mac, key, 131, (const uint8_t *)m7, strlen(m7));
	check_hex(mac, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* RFC 5869, test cases 1 to 3 (SHA-256). */
static void test_hkdf_sha256_rfc5869(void)
{
	uint8_t ikm[80], salt[80], info[80], okm[82];

	fill(ikm, 22, 0x0b);
	for (int i = 0; i < 13; i++)
		salt[i] = (uint8_t)i;
	for (int i = 0; i < 10; i++)
		info[i] = (uint8_t)(0xf0 + i);
	REQUIRE_OK(bk_hkdf_sha256(okm, 42, ikm, 22, salt, 13, info, 10));
	check_hex(okm, 42,
	          "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887"
	          "185865");

	for (int i = 0; i < 80; i++) {
		ikm[i] = (uint8_t)i;
		salt[i] = (uint8_t)(0x60 + i);
		info[i] = (uint8_t)(0xb0 + i);
	}
	REQUIRE_OK(bk_hkdf_sha256(okm, 82, ikm, 80, salt, 80, info, 80));
	check_hex(okm, 82,
	          "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac782"
	          "7271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3"
	          "434f1d87");

	fill(ikm, 22, 0x0b);
	REQUIRE_OK(bk_hkdf_sha256(okm, 42, ikm, 22, NULL, 0, NULL, 0));
	check_hex(okm, 42,
	          "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b6"
	          "1a96c8");

	/* Too long an output is refused. */
	CHECK_EQ(bk_hkdf_sha256(okm, 255 * 32 + 1, ikm, 22, NULL, 0, NULL, 0), BK_EINVALID);
}

/* HMAC straight from RFC 2104 with BLAKE2b-512 (block 128 bytes). */
static void hmac_b2b_ref(uint8_t out[64], const uint8_t *key, size_t key_len, const uint8_t *msg,
                         size_t msg_len)
{
	uint8_t k[128] = {0}, ipad[128], opad[128], inner[64];
	crypto_generichash_blake2b_state st;
	if (key_len > 128)
		crypto_generichash_blake2b(k, 64, key, key_len, NULL, 0);
	else
		memcpy(k, key, key_len);
	for (int i = 0; i < 128; i++) {
		ipad[i] = k[i] ^ 0x36;
		opad[i] = k[i] ^ 0x5c;
	}
	crypto_generichash_blake2b_init(&st, NULL, 0, 64);
	crypto_generichash_blake2b_update(&st, ipad, 128);
	crypto_generichash_blake2b_update(&st, msg, msg_len);
	crypto_generichash_blake2b_final(&st, inner, 64);
	crypto_generichash_blake2b_init(&st, NULL, 0, 64);
	crypto_generichash_blake2b_update(&st, opad, 128);
	crypto_generichash_blake2b_update(&st, inner, 64);
	crypto_generichash_blake2b_final(&st, out, 64);
}

/* Values computed independently (OpenSSL `mac -digest BLAKE2B512 HMAC`). */
static void test_hmac_blake2b_known(void)
{
	uint8_t key[131], mac[64];
	size_t n;
	const uint8_t *k = hx("000102", &n);
	bk_hmac_blake2b(mac, k, n, (const uint8_t *)"abc", 3);
	check_hex(mac, 64,
	          "7d587e5cb2b4c975b6565695cb6a3ec5c7127f951d07b18f5b78fc9eafa8706cc8007fe0605a4d"
	          "43a98181a11e57f46992c7f196db319b3c4ee7bbce8ff5d228");

	fill(key, 131, 0xaa);
	const char *m = "Test Using Larger Than Block-Size Key - Hash Key First";
	bk_hmac_blake2b(mac, key, 131, (const uint8_t *)m, strlen(m));
	check_hex(mac, 64,
	          "a54b2943b2a20227d41ca46c0945af09bc1faefb2f49894c23aebc557fb79c4889dca74408dc86"
	          "5086667aedee4a3185c53a49c80b814c4c5813ea0c8b38a8f8");

	fill(key, 128, 0x0b); /* exactly one block: used as is */
	bk_hmac_blake2b(mac, key, 128, NULL, 0);
	check_hex(mac, 64,
	          "a9d4442255c8fbe82372a4138e0bc36170a3bab87eeb2db38131b906e15e8930944f89bbabee54"
	          "056b0eb62fccb367a2390eeeacc395e0684010af44e6714cbb");
}

static void test_hmac_blake2b_definition(void)
{
	uint8_t key[200], msg[300], a[64], b[64];
	size_t key_lens[] = {0, 1, 32, 64, 127, 128, 129, 200};
	size_t msg_lens[] = {0, 1, 64, 128, 129, 300};
	randombytes_buf(key, sizeof(key));
	randombytes_buf(msg, sizeof(msg));
	for (size_t i = 0; i < BK_ARRAY_LEN(key_lens); i++) {
		for (size_t j = 0; j < BK_ARRAY_LEN(msg_lens); j++) {
			bk_hmac_blake2b(a, key, key_lens[i], msg, msg_lens[j]);
			hmac_b2b_ref(b, key, key_lens[i], msg, msg_lens[j]);
			CHECK(memcmp(a, b, 64) == 0);
		}
	}
}

/* Noise section 4.3: HKDF(ck, ikm) with temp_key = HMAC(ck, ikm),
 * output1 = HMAC(temp_key, 0x01), output2 = HMAC(temp_key, output1 || 0x02),
 * output3 = HMAC(temp_key, output2 || 0x03). */
static void test_noise_hkdf(void)
{
	uint8_t ck[64], ikm[32], o1[64], o2[64], o3[64], p1[64], p2[64];
	for (int i = 0; i < 64; i++)
		ck[i] = (uint8_t)i;
	for (int i = 0; i < 32; i++)
		ikm[i] = (uint8_t)(100 + i);

	/* Known values (Python hmac + hashlib.blake2b). */
	bk_noise_hkdf_blake2b(o1, o2, o3, ck, ikm, sizeof(ikm));
	check_hex(o1, 64,
	          "2262ed5f40c3324574d00a1e0849a7cc67fb5b6a80211c3c59404bb8e47512b1cb95e73840718c"
	          "5d68ca345f934f39a52f1f31e8f6d3ed521f0664f46feddae4");
	check_hex(o2, 64,
	          "f6a6559fa2aaab64d3d2666b83fe3f4fed6fae1959537fedd6a39b6f8d411e6132593234cc2a75"
	          "0244335da5021c27bf7eacbb65cfa608457de6ecc144b90077");
	check_hex(o3, 64,
	          "07c82c1301c70e885f4662f1f3f7b7bb9e04d81c94a6e1882f812c02ffb69580c93095bb599ad2"
	          "fced3d3cf38c9c17df4fb3c0029f231247fca69b040e16449e");
	bk_noise_hkdf_blake2b(p1, p2, NULL, ck, NULL, 0);
	check_hex(p1, 64,
	          "03be0946afb62e33dcc2e8cb76dfad47663d284d81c0bde963f32a283dede221be2b9e3a86fa82"
	          "934234d2a6ed331fb664a3e670252b9454da9ed2567b435e11");
	check_hex(p2, 64,
	          "8481b385940ea1ddc1e37243d34e6a00d9e35fe86844b75be2f9d084efcbf4a9d18c764645baf5"
	          "262707efcb490c9ddfcc81c78ff75e1e727428f05b9fee857f");

	/* From the definition, on random inputs; two outputs equal the first two of three. */
	for (int round = 0; round < 8; round++) {
		uint8_t temp[64], buf[65], r1[64], r2[64], r3[64];
		size_t ikm_len = (size_t)round * 4;
		randombytes_buf(ck, sizeof(ck));
		randombytes_buf(ikm, sizeof(ikm));
		hmac_b2b_ref(temp, ck, 64, ikm, ikm_len);
		buf[0] = 1;
		hmac_b2b_ref(r1, temp, 64, buf, 1);
		memcpy(buf, r1, 64);
		buf[64] = 2;
		hmac_b2b_ref(r2, temp, 64, buf, 65);
		memcpy(buf, r2, 64);
		buf[64] = 3;
		hmac_b2b_ref(r3, temp, 64, buf, 65);
		bk_noise_hkdf_blake2b(o1, o2, o3, ck, ikm, ikm_len);
		bk_noise_hkdf_blake2b(p1, p2, NULL, ck, ikm, ikm_len);
		CHECK(memcmp(o1, r1, 64) == 0);
		CHECK(memcmp(o2, r2, 64) == 0);
		CHECK(memcmp(o3, r3, 64) == 0);
		CHECK(memcmp(p1, r1, 64) == 0);
		CHECK(memcmp(p2, r2, 64) == 0);
	}
}

BK_RUN_TESTS(BK_TEST(test_hmac_sha256_rfc4231), BK_TEST(test_hkdf_sha256_rfc5869),
             BK_TEST(test_hmac_blake2b_known), BK_TEST(test_hmac_blake2b_definition),
             BK_TEST(test_noise_hkdf))
