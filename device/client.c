/* The device client (libbackup/device.h): sessions with a unit over the
 * Noise channel, requests with JSON bodies, and windowed transfers. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <libbackup/device.h>

#include "crypto/age.h"
#include "crypto/cert.h"
#include "device/channel.h"
#include "device/usb.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_WINDOW     8
#define MAX_WINDOW         64
#define MAX_CAS            16

_Static_assert((int)BK_DEVICE_PING == (int)BK_MSG_PING, "message numbers");
_Static_assert((int)BK_DEVICE_INFO == (int)BK_MSG_INFO, "message numbers");
_Static_assert((int)BK_DEVICE_BACKUP_READ == (int)BK_MSG_BACKUP_READ, "message numbers");
_Static_assert((int)BK_DEVICE_RESTORE_WRITE == (int)BK_MSG_RESTORE_WRITE, "message numbers");
_Static_assert((int)BK_DEVICE_FW_WRITE == (int)BK_MSG_FW_WRITE, "message numbers");
_Static_assert((int)BK_DEVICE_IDENTITY_INSTALL == (int)BK_MSG_IDENTITY_INSTALL, "message numbers");

struct bk_device {
	bool has_uri;
	bk_device_uri uri;
	char uri_text[BK_URI_STRING_MAX];
	char name[BK_URI_STRING_MAX + 140]; /* names the unit in error messages */
	bk_keyfile *keys;
	bk_cert *cert;
	bk_minisign_pubkey cas[MAX_CAS];
	size_t ncas;
	char serial[BK_URI_SERIAL_MAX + 1]; /* expected serial ("" = any) */
	char model[BK_CERT_NAME_MAX + 1];
	int64_t timeout_ms;
	unsigned window;
	uint16_t vid, pid;
	bk_channel *ch;
	uint32_t next_id;
	uint32_t version; /* negotiated protocol version */
};

/* --- Helpers ----------------------------------------------------------------- */

static bk_deadline call_deadline(const bk_device *dev, bk_deadline d)
{
	return (d == 0 || d == BK_DEADLINE_NONE) ? bk_deadline_in(dev->timeout_ms) : d;
}

static int named(const bk_device *dev, int rc)
{
	return bk__error_prefix(rc, "%s", dev->name);
}

static uint32_t new_id(bk_device *dev)
{
	uint32_t id = dev->next_id++;
	if (dev->next_id == 0)
		dev->next_id = 1; /* id 0 is the unit's own messages */
	return id;
}

static void set_name(bk_device *dev)
{
	if (dev->serial[0] && dev->uri_text[0])
		snprintf(dev->name, sizeof(dev->name), "unit %s (%s)", dev->serial, dev->uri_text);
	else if (dev->serial[0])
		snprintf(dev->name, sizeof(dev->name), "unit %s", dev->serial);
	else if (dev->uri_text[0])
		snprintf(dev->name, sizeof(dev->name), "unit at %s", dev->uri_text);
	else
		snprintf(dev->name, sizeof(dev->name), "unit");
}

static int not_connected(const bk_device *dev)
{
	return bk__error_set(BK_EDISCONNECTED, "not-connected",
	                     "%s: not connected (the connection was lost; reconnect)", dev->name);
}

/* Waits for the answer to request `id`, discarding late answers to requests
 * that were given up. The unit's own ERROR (id 0) ends the session. */
static int recv_answer(bk_device *dev, uint32_t id, bk_proto_msg *out, bk_deadline d)
{
	for (;;) {
		int rc = bk_channel_recv(dev->ch, out, d);
		if (rc == BK_EFORMAT && out->id != id && out->id != 0) {
			bk_proto_msg_clear(out);
			continue;
		}
		if (rc)
			return rc;
		if (out->id == 0 && out->type == BK_MSG_ERROR) {
			rc = bk_proto_error_decode(out->json);
			bk_proto_msg_clear(out);
			bk_channel_set_broken(dev->ch);
			return rc;
		}
		if (out->id == id)
			return 0;
		bk_proto_msg_clear(out);
	}
}

/* --- Opening ------------------------------------------------------------------ */

static int load_credentials(bk_device *dev, const bk_device_opts *o)
{
	int rc;
	if (o->terminal_key == NULL)
		return bk__error_set(BK_EUSER, "no-terminal-key",
		                     "no terminal key configured (depot.terminal_key)");
	rc = bk_keyfile_read(&dev->keys, o->terminal_key);
	if (rc)
		return bk__error_prefix(rc, "terminal key");
	if (o->terminal_cert) {
		rc = bk_cert_read(&dev->cert, o->terminal_cert);
		if (rc)
			return bk__error_prefix(rc, "terminal certificate");
	}
	if (o->factory_ca_count == 0 || o->factory_ca == NULL)
		return bk__error_set(BK_EUSER, "no-factory-ca",
		                     "no factory CA configured (trust.factory_ca): units cannot be "
		                     "authenticated");
	if (o->factory_ca_count > MAX_CAS)
		return bk__error_set(BK_EUSER, "too-many-cas", "at most %d factory CA keys",
		                     MAX_CAS);
	for (size_t i = 0; i < o->factory_ca_count; i++) {
		rc = bk_minisign_pubkey_read(&dev->cas[i], o->factory_ca[i]);
		if (rc)
			return bk__error_prefix(rc, "factory CA");
	}
	dev->ncas = o->factory_ca_count;
	return 0;
}

static int new_device(bk_device **out, const bk_device_opts *opts)
{
	bk_device_opts o = BK_DEVICE_OPTS_INIT;
	bk_device *dev;
	int rc;
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no output");
	*out = NULL;
	if (opts) {
		if (opts->version != BK_DEVICE_OPTS_VERSION)
			return bk__error_set(BK_EINVALID, NULL,
			                     "device: unknown options version %u", opts->version);
		o = *opts;
	}
	if (o.window > MAX_WINDOW)
		return bk__error_set(BK_EUSER, "bad-window",
		                     "a window of %u requests is over the limit of %d", o.window,
		                     MAX_WINDOW);
	if (o.serial && (o.serial[0] == '\0' || strlen(o.serial) > BK_URI_SERIAL_MAX))
		return bk__error_set(BK_EUSER, "bad-serial", "'%s' is not a unit serial", o.serial);
	dev = bk__calloc(1, sizeof(*dev));
	if (dev == NULL)
		return BK_ENOMEM;
	dev->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
	dev->window = o.window ? o.window : DEFAULT_WINDOW;
	dev->vid = o.usb_vid ? o.usb_vid : BK_USB_DEFAULT_VID;
	dev->pid = o.usb_pid ? o.usb_pid : BK_USB_DEFAULT_PID;
	dev->next_id = 1;
	if (o.serial)
		bk_strlcpy(dev->serial, o.serial, sizeof(dev->serial));
	rc = load_credentials(dev, &o);
	if (rc) {
		bk_device_free(dev);
		return rc;
	}
	*out = dev;
	return 0;
}

/* Handshake and HELLO over a connected transport (owned). */
static int start_session(bk_device *dev, bk_stream *transport, bk_deadline d)
{
	bk_channel_cfg cfg;
	json_t *offer = NULL;
	bk_proto_msg ans;
	uint32_t id;
	int rc, send_rc;
	memset(&cfg, 0, sizeof(cfg));
	memset(&ans, 0, sizeof(ans));
	cfg.noise_secret = bk_keyfile_noise_secret(dev->keys);
	cfg.cert = dev->cert;
	cfg.cas = dev->cas;
	cfg.ncas = dev->ncas;
	cfg.expect_serial = dev->serial[0] ? dev->serial : NULL;
	bk_channel_free(dev->ch);
	dev->ch = NULL;
	rc = bk_channel_connect(&dev->ch, transport, 1, &cfg, d);
	if (rc)
		goto done;
	if (!dev->serial[0])
		bk_strlcpy(dev->serial, bk_cert_serial(bk_channel_peer_cert(dev->ch)),
		           sizeof(dev->serial));
	bk_strlcpy(dev->model, bk_cert_model(bk_channel_peer_cert(dev->ch)), sizeof(dev->model));
	set_name(dev);
	rc = bk_proto_hello_offer(&offer);
	if (rc)
		goto done;
	id = new_id(dev);
	{
		bk_proto_msg m = {.type = BK_MSG_HELLO, .id = id, .json = offer};
		send_rc = bk_channel_send(dev->ch, &m, d);
	}
	/* Even when sending failed, the unit may have said why it hung up. */
	if (send_rc && send_rc != BK_EDISCONNECTED) {
		rc = send_rc;
		goto done;
	}
	rc = recv_answer(dev, id, &ans, d);
	if (rc == BK_EDISCONNECTED && send_rc)
		rc = send_rc;
	if (rc)
		goto done;
	if (ans.type == BK_MSG_ERROR)
		rc = bk_proto_error_decode(ans.json);
	else if (ans.type != BK_MSG_HELLO)
		rc = bk__error_set(BK_EFORMAT, "bad-hello", "the unit answered HELLO with %s",
		                   bk_proto_type_name(ans.type));
	else
		rc = bk_proto_hello_accept(ans.json, BK_PROTO_VERSION, BK_PROTO_VERSION,
		                           &dev->version);
done:
	if (rc) {
		set_name(dev);
		rc = named(dev, rc);
		bk_channel_free(dev->ch);
		dev->ch = NULL;
	}
	bk_proto_msg_clear(&ans);
	json_decref(offer);
	return rc;
}

static int connect_uri(bk_device *dev, bk_deadline d)
{
	bk_stream *t = NULL;
	int rc;
	if (dev->uri.kind == BK_URI_USB_SERIAL || dev->uri.kind == BK_URI_USB_PORT)
		rc = bk_usb_open_uri(&t, &dev->uri, dev->vid, dev->pid, d);
	else
		rc = bk_transport_connect(&t, &dev->uri, d);
	if (rc)
		return rc; /* the transport's message names the address */
	return start_session(dev, t, d);
}

int bk_device_open(bk_device **out, const char *uri, const bk_device_opts *opts)
{
	bk_device *dev = NULL;
	bk_device_uri u;
	int rc;
	if (out)
		*out = NULL;
	if (uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no URI");
	rc = bk_device_uri_parse(&u, uri);
	if (rc)
		return rc;
	rc = new_device(&dev, opts);
	if (rc)
		return rc;
	dev->has_uri = true;
	dev->uri = u;
	rc = bk_device_uri_format(&u, dev->uri_text, sizeof(dev->uri_text));
	if (rc == 0 && u.kind == BK_URI_USB_SERIAL) {
		if (dev->serial[0] && strcmp(dev->serial, u.serial) != 0)
			rc = bk__error_set(BK_EUSER, "serial-conflict",
			                   "%s names unit %s but unit %s was asked for", uri,
			                   u.serial, dev->serial);
		else
			bk_strlcpy(dev->serial, u.serial, sizeof(dev->serial));
	}
	set_name(dev);
	if (rc == 0)
		rc = connect_uri(dev, bk_deadline_in(dev->timeout_ms));
	if (rc) {
		bk_device_free(dev);
		return rc;
	}
	*out = dev;
	return 0;
}

int bk_device_open_stream(bk_device **out, bk_stream *transport, const bk_device_opts *opts)
{
	bk_device *dev = NULL;
	int rc;
	if (out)
		*out = NULL;
	if (transport == NULL) {
		return bk__error_set(BK_EINVALID, NULL, "device: no transport");
	}
	rc = new_device(&dev, opts);
	if (rc) {
		bk_stream_free(transport);
		return rc;
	}
	set_name(dev);
	rc = start_session(dev, transport, bk_deadline_in(dev->timeout_ms));
	if (rc) {
		bk_device_free(dev);
		return rc;
	}
	*out = dev;
	return 0;
}

int bk_device_reconnect(bk_device *dev)
{
	if (dev == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no handle");
	bk_channel_free(dev->ch);
	dev->ch = NULL;
	if (!dev->has_uri)
		return bk__error_set(BK_EINVALID, "no-uri",
		                     "%s: opened over a given transport: cannot reconnect",
		                     dev->name);
	return connect_uri(dev, bk_deadline_in(dev->timeout_ms));
}

void bk_device_free(bk_device *dev)
{
	if (dev == NULL)
		return;
	bk_channel_free(dev->ch);
	bk_keyfile_free(dev->keys);
	bk_cert_free(dev->cert);
	sodium_memzero(dev, sizeof(*dev));
	bk__free(dev);
}

const char *bk_device_serial(const bk_device *dev)
{
	return dev ? dev->serial : NULL;
}

const char *bk_device_model(const bk_device *dev)
{
	return dev ? dev->model : NULL;
}

int bk_device_certificate(const bk_device *dev, const uint8_t **out, size_t *out_len)
{
	const bk_cert *c = dev && dev->ch ? bk_channel_peer_cert(dev->ch) : NULL;
	*out = NULL;
	*out_len = 0;
	if (dev == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no handle");
	if (c == NULL)
		return bk__error_set(BK_EDISCONNECTED, "disconnected", "%s: no session",
				     dev->uri_text);
	*out = bk_cert_bytes(c, out_len);
	return 0;
}

const char *bk_device_get_uri(const bk_device *dev)
{
	return dev ? dev->uri_text : NULL;
}

int bk_device_connected(const bk_device *dev)
{
	return dev && dev->ch && !bk_channel_broken(dev->ch);
}

/* --- Calls ------------------------------------------------------------------- */

/* Sends one JSON request and waits for its answer (OK or DATA); an ERROR
 * answer becomes the last error. */
static int call_msg(bk_device *dev, int type, json_t *body, bk_proto_msg *ans, bk_deadline d)
{
	int rc;
	uint32_t id;
	memset(ans, 0, sizeof(*ans));
	if (!bk_device_connected(dev))
		return not_connected(dev);
	id = new_id(dev);
	{
		bk_proto_msg m = {.type = (uint8_t)type, .id = id, .json = body};
		rc = bk_channel_send(dev->ch, &m, d);
	}
	if (rc == 0)
		rc = recv_answer(dev, id, ans, d);
	if (rc == 0 && ans->type == BK_MSG_ERROR) {
		rc = bk_proto_error_decode(ans->json);
		bk_proto_msg_clear(ans);
	}
	if (rc == BK_ETIMEOUT)
		rc = bk__error_set(BK_ETIMEOUT, "timeout", "%s did not answer in time",
		                   bk_proto_type_name((uint8_t)type));
	return rc ? named(dev, rc) : 0;
}

int bk_device_call(bk_device *dev, int type, const char *json_body, char **json_reply,
                   bk_deadline d)
{
	json_t *body = NULL;
	bk_proto_msg ans;
	int rc = 0;
	memset(&ans, 0, sizeof(ans));
	if (json_reply)
		*json_reply = NULL;
	if (dev == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no handle");
	if (type < 0 || type > 0x7f || bk_proto_type_name((uint8_t)type) == NULL ||
	    bk_proto_type_is_response((uint8_t)type) || type == BK_MSG_HELLO ||
	    bk_proto_type_body((uint8_t)type) != BK_PROTO_BODY_JSON)
		return bk__error_set(BK_EINVALID, NULL, "device: 0x%02x is not a JSON request type",
		                     (unsigned)type);
	if (json_body) {
		json_error_t jerr;
		body = json_loads(json_body, JSON_REJECT_DUPLICATES, &jerr);
		if (body == NULL || !json_is_object(body)) {
			json_decref(body);
			return bk__error_set(BK_EINVALID, "bad-json", "device: request body: %s",
			                     body ? "not an object" : jerr.text);
		}
	}
	rc = call_msg(dev, type, body, &ans, call_deadline(dev, d));
	if (rc == 0 && ans.type != BK_MSG_OK)
		rc = named(dev, bk__error_set(BK_EFORMAT, "bad-answer",
		                              "%s answered with %s instead of OK",
		                              bk_proto_type_name((uint8_t)type),
		                              bk_proto_type_name(ans.type)));
	if (rc == 0 && json_reply) {
		char *s = json_dumps(ans.json, JSON_COMPACT);
		*json_reply = s ? bk__strdup(s) : NULL;
		free(s);
		if (*json_reply == NULL)
			rc = bk__error_oom();
	}
	bk_proto_msg_clear(&ans);
	json_decref(body);
	return rc;
}

int bk_device_ping(bk_device *dev, int64_t *rtt_ms, bk_deadline d)
{
	int64_t t0 = bk_now_ms();
	int rc = bk_device_call(dev, BK_DEVICE_PING, NULL, NULL, d);
	if (rc == 0 && rtt_ms)
		*rtt_ms = bk_now_ms() - t0;
	return rc;
}

/* --- INFO ---------------------------------------------------------------------- */

typedef struct info_impl {
	bk_device_info pub; /* first */
	json_t *root;
	char *text;
	char fingerprint[65];
	char issuer[17];
	char recipient[128];
	bk_device_slot *slots;
	bk_device_domain *domains;
} info_impl;

static int bad_info(const char *what)
{
	return bk__error_set(BK_EFORMAT, "bad-info", "INFO answer: %s missing or not valid", what);
}

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int ju64(json_t *o, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return bad_info(key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* The certificate part, from what the handshake verified. */
static int info_cert(info_impl *in, const bk_cert *c, json_t *unit_cert)
{
	uint8_t fp[32];
	char t1[21], t2[21];
	json_t *o;
	bk_age_recipient r;
	bk_cert_fingerprint(c, fp);
	bk_hex_encode(in->fingerprint, fp, sizeof(fp));
	bk_minisign_key_id_hex(in->issuer, bk_cert_issuer_key_id(c));
	const char *reported = jstr(unit_cert, "fingerprint");
	const char *status = reported == NULL                         ? "valid"
	                     : strcmp(reported, in->fingerprint) == 0 ? "valid"
	                                                              : "inconsistent";
	if (bk_cert_age_key(c)) {
		memcpy(r.public_key, bk_cert_age_key(c), sizeof(r.public_key));
		bk_age_recipient_format(in->recipient, &r);
	}
	bk_time_rfc3339(t1, bk_cert_not_before(c));
	bk_time_rfc3339(t2, bk_cert_not_after(c));
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "status", status, "verified_by", "terminal",
	              "fingerprint", in->fingerprint, "issuer", in->issuer, "not_before", t1,
	              "not_after", t2);
	if (o == NULL || json_object_set_new(in->root, "certificate", o) != 0 ||
	    json_object_set_new(in->root, "age_recipient", json_string(in->recipient)) != 0)
		return bk__error_oom();
	in->pub.cert_status = status;
	in->pub.cert_fingerprint = in->fingerprint;
	in->pub.cert_issuer = in->issuer;
	in->pub.cert_not_before = bk_cert_not_before(c);
	in->pub.cert_not_after = bk_cert_not_after(c);
	in->pub.age_recipient = in->recipient;
	return 0;
}

static int info_parse(info_impl *in)
{
	json_t *r = in->root, *fw, *slots, *domains, *mem, *v;
	bk_device_info *p = &in->pub;
	int rc;
	if (!(p->serial = jstr(r, "serial")))
		return bad_info("serial");
	if (!(p->model = jstr(r, "model")))
		return bad_info("model");
	if (!(p->hw_revision = jstr(r, "hw_revision")))
		return bad_info("hw_revision");
	if (!(p->state = jstr(r, "state")))
		return bad_info("state");
	v = json_object_get(r, "battery");
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100)
		return bad_info("battery");
	p->battery = (int)json_integer_value(v);
	fw = json_object_get(r, "firmware");
	if (!json_is_object(fw) || !(p->firmware_version = jstr(fw, "version")))
		return bad_info("firmware");
	if ((rc = ju64(fw, "security_counter", &p->security_counter)) ||
	    (rc = ju64(fw, "schema_min", &p->schema_min)) ||
	    (rc = ju64(fw, "schema_max", &p->schema_max)))
		return rc;
	mem = json_object_get(r, "memory");
	if (!json_is_object(mem) || (rc = ju64(mem, "schema", &p->memory_schema)))
		return bad_info("memory");
	slots = json_object_get(r, "slots");
	if (!json_is_array(slots) || json_array_size(slots) > 8)
		return bad_info("slots");
	in->slots = bk__calloc(json_array_size(slots) + 1, sizeof(*in->slots));
	if (in->slots == NULL)
		return BK_ENOMEM;
	for (size_t i = 0; i < json_array_size(slots); i++) {
		json_t *s = json_array_get(slots, i);
		bk_device_slot *d = &in->slots[i];
		if (!json_is_object(s) || !(d->name = jstr(s, "name")) ||
		    !(d->state = jstr(s, "state")) || !(d->version = jstr(s, "version")) ||
		    !json_is_boolean(json_object_get(s, "running")))
			return bad_info("slot");
		d->running = json_is_true(json_object_get(s, "running"));
		if ((rc = ju64(s, "security_counter", &d->security_counter)) ||
		    (rc = ju64(s, "schema_min", &d->schema_min)) ||
		    (rc = ju64(s, "schema_max", &d->schema_max)))
			return rc;
	}
	p->slots = in->slots;
	p->slot_count = json_array_size(slots);
	domains = json_object_get(r, "domains");
	if (!json_is_object(domains) || json_object_size(domains) > 64)
		return bad_info("domains");
	in->domains = bk__calloc(json_object_size(domains) + 1, sizeof(*in->domains));
	if (in->domains == NULL)
		return BK_ENOMEM;
	{
		const char *k;
		size_t i = 0;
		json_object_foreach(domains, k, v)
		{
			bk_device_domain *d = &in->domains[i++];
			d->name = k;
			if (!json_is_object(v) || !(d->digest = jstr(v, "digest")) ||
			    strlen(d->digest) != 64)
				return bad_info("domain digest");
			if ((rc = ju64(v, "items", &d->items)) ||
			    (rc = ju64(v, "bytes", &d->bytes)))
				return rc;
		}
		p->domains = in->domains;
		p->domain_count = i;
	}
	return 0;
}

int bk_device_info_get(bk_device *dev, bk_device_info **out, bk_deadline d)
{
	info_impl *in = NULL;
	bk_proto_msg ans;
	char *s = NULL;
	int rc;
	memset(&ans, 0, sizeof(ans));
	if (out == NULL || dev == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no handle");
	*out = NULL;
	rc = call_msg(dev, BK_MSG_INFO, NULL, &ans, call_deadline(dev, d));
	if (rc)
		return rc;
	in = bk__calloc(1, sizeof(*in));
	if (in == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	if (ans.type != BK_MSG_OK) {
		rc = bad_info("answer type");
		goto done;
	}
	in->root = ans.json;
	ans.json = NULL;
	rc = info_cert(in, bk_channel_peer_cert(dev->ch), json_object_get(in->root, "certificate"));
	if (rc == 0)
		rc = info_parse(in);
	if (rc == 0 && strcmp(in->pub.serial, dev->serial) != 0)
		rc = bk__error_set(BK_EFORMAT, "bad-info",
		                   "INFO names serial %s, the certificate %s", in->pub.serial,
		                   dev->serial);
	if (rc)
		goto done;
	s = json_dumps(in->root, JSON_COMPACT);
	in->text = s ? bk__strdup(s) : NULL;
	if (in->text == NULL) {
		rc = bk__error_oom();
		goto done;
	}
	in->pub.json = in->text;
	*out = &in->pub;
	in = NULL;
done:
	free(s);
	bk_device_info_free(in ? &in->pub : NULL);
	bk_proto_msg_clear(&ans);
	return rc ? named(dev, rc) : 0;
}

void bk_device_info_free(bk_device_info *info)
{
	info_impl *in = (info_impl *)info;
	if (in == NULL)
		return;
	json_decref(in->root);
	bk__free(in->text);
	bk__free(in->slots);
	bk__free(in->domains);
	bk__free(in);
}

/* --- Windowed transfers ------------------------------------------------------ */

typedef struct pending {
	uint32_t id;
	uint64_t off;
	size_t len;
	size_t got; /* bytes answered */
	bool done;
	bk_deadline due;
} pending;

typedef struct xfer {
	bk_device *dev;
	pending ring[MAX_WINDOW];
	unsigned head, count, window;
	size_t chunk;
	int64_t req_ms;
	bk_deadline deadline;
	uint64_t start, next, end;
	uint64_t prefix;  /* bytes from start answered without a gap */
	bool prefix_stop; /* a short answer ended the data */
} xfer;

static int xfer_init(xfer *x, bk_device *dev, uint64_t offset, uint64_t len,
                     const bk_device_xfer_opts *opts)
{
	bk_device_xfer_opts o = BK_DEVICE_XFER_OPTS_INIT;
	memset(x, 0, sizeof(*x));
	if (dev == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no handle");
	if (opts) {
		if (opts->version != BK_DEVICE_XFER_OPTS_VERSION)
			return bk__error_set(BK_EINVALID, NULL, "device: unknown transfer options");
		o = *opts;
	}
	if (offset > INT64_MAX || len > (uint64_t)INT64_MAX - offset)
		return bk__error_set(BK_EINVALID, NULL, "device: range past 2^63");
	x->dev = dev;
	x->window = o.window ? o.window : dev->window;
	if (x->window > MAX_WINDOW)
		x->window = MAX_WINDOW;
	x->chunk = o.chunk && o.chunk < BK_PROTO_DATA_MAX ? o.chunk : BK_PROTO_DATA_MAX;
	x->req_ms = o.request_timeout_ms > 0 ? o.request_timeout_ms : dev->timeout_ms;
	x->deadline = o.deadline ? o.deadline : BK_DEADLINE_NONE;
	x->start = x->next = offset;
	x->end = offset + len;
	if (!bk_device_connected(dev))
		return not_connected(dev);
	return 0;
}

static pending *xfer_find(xfer *x, uint32_t id)
{
	for (unsigned i = 0; i < x->count; i++) {
		pending *p = &x->ring[(x->head + i) % MAX_WINDOW];
		if (p->id == id && !p->done)
			return p;
	}
	return NULL;
}

static pending *xfer_push(xfer *x, size_t n)
{
	pending *p = &x->ring[(x->head + x->count) % MAX_WINDOW];
	memset(p, 0, sizeof(*p));
	p->id = new_id(x->dev);
	p->off = x->next;
	p->len = n;
	p->due = bk_deadline_in(x->req_ms);
	if (p->due > x->deadline)
		p->due = x->deadline;
	x->count++;
	x->next += n;
	return p;
}

/* Pops finished requests at the head, growing the gap-free prefix. */
static void xfer_advance(xfer *x)
{
	while (x->count && x->ring[x->head].done) {
		pending *p = &x->ring[x->head];
		if (!x->prefix_stop) {
			x->prefix += p->got;
			if (p->got < p->len)
				x->prefix_stop = true;
		}
		x->head = (x->head + 1) % MAX_WINDOW;
		x->count--;
	}
}

/* Waits for the next answer to one of the pending requests. */
static int xfer_recv(xfer *x, bk_proto_msg *ans, pending **out)
{
	for (;;) {
		bk_deadline due = x->ring[x->head].due;
		int rc = bk_channel_recv(x->dev->ch, ans, due);
		if (rc == BK_EFORMAT && xfer_find(x, ans->id) == NULL && ans->id != 0) {
			bk_proto_msg_clear(ans);
			continue;
		}
		if (rc == BK_ETIMEOUT)
			return bk__error_set(BK_ETIMEOUT, "timeout",
			                     "request for offset %llu was not answered in time",
			                     (unsigned long long)x->ring[x->head].off);
		if (rc)
			return rc;
		if (ans->id == 0 && ans->type == BK_MSG_ERROR) {
			rc = bk_proto_error_decode(ans->json);
			bk_proto_msg_clear(ans);
			bk_channel_set_broken(x->dev->ch);
			return rc;
		}
		*out = xfer_find(x, ans->id);
		if (*out)
			break;
		bk_proto_msg_clear(ans);
	}
	if (ans->type == BK_MSG_ERROR) {
		int rc = bk_proto_error_decode(ans->json);
		bk_proto_msg_clear(ans);
		return bk__error_prefix(rc, "offset %llu", (unsigned long long)(*out)->off);
	}
	return 0;
}

int bk_device_read_range(bk_device *dev, int type, uint64_t offset, uint64_t len,
                         bk_device_sink sink, void *payload, const bk_device_xfer_opts *opts,
                         uint64_t *out_done)
{
	xfer x;
	const char *tid = opts ? opts->id : NULL;
	bk_proto_msg ans;
	int rc;
	memset(&ans, 0, sizeof(ans));
	if (out_done)
		*out_done = 0;
	rc = xfer_init(&x, dev, offset, len, opts);
	if (rc == 0 && (sink == NULL || bk_proto_type_body((uint8_t)type) != BK_PROTO_BODY_JSON ||
	                bk_proto_type_is_response((uint8_t)type)))
		rc = bk__error_set(BK_EINVALID, NULL, "device: bad read request");
	while (rc == 0) {
		while (x.count < x.window && x.next < x.end && !x.prefix_stop) {
			size_t n = x.end - x.next < x.chunk ? (size_t)(x.end - x.next) : x.chunk;
			pending *p = xfer_push(&x, n);
			json_t *body = json_pack("{s:I, s:I}", "offset", (json_int_t)p->off, "len",
			                         (json_int_t)n);
			if (body && tid && json_object_set_new(body, "id", json_string(tid)) != 0) {
				json_decref(body);
				body = NULL;
			}
			if (body == NULL) {
				rc = bk__error_oom();
				break;
			}
			bk_proto_msg m = {.type = (uint8_t)type, .id = p->id, .json = body};
			rc = bk_channel_send(dev->ch, &m, p->due);
			json_decref(body);
			if (rc)
				break;
		}
		if (rc || x.count == 0)
			break;
		pending *p = NULL;
		rc = xfer_recv(&x, &ans, &p);
		if (rc)
			break;
		if (ans.type != BK_MSG_DATA || ans.offset != p->off || ans.data_len > p->len) {
			rc = bk__error_set(BK_EFORMAT, "bad-answer",
			                   "the answer for offset %llu is not the data asked for",
			                   (unsigned long long)p->off);
			break;
		}
		if (ans.data_len)
			rc = sink(payload, ans.offset, ans.data, ans.data_len);
		p->got = ans.data_len;
		p->done = true;
		bk_proto_msg_clear(&ans);
		if (p->got < p->len && p->off + p->got < x.end)
			x.end = p->off + p->got; /* the data ends here: ask for nothing past it */
		xfer_advance(&x);
	}
	bk_proto_msg_clear(&ans);
	if (out_done)
		*out_done = x.prefix;
	return rc && dev ? named(dev, rc) : rc;
}

int bk_device_write_range(bk_device *dev, int type, uint64_t offset, uint64_t len,
                          bk_device_source source, void *payload, const bk_device_xfer_opts *opts,
                          uint64_t *out_done)
{
	xfer x;
	bk_proto_msg ans;
	uint8_t *buf = NULL;
	int rc;
	memset(&ans, 0, sizeof(ans));
	if (out_done)
		*out_done = 0;
	rc = xfer_init(&x, dev, offset, len, opts);
	if (rc == 0 && (source == NULL || bk_proto_type_body((uint8_t)type) != BK_PROTO_BODY_DATA ||
	                bk_proto_type_is_response((uint8_t)type)))
		rc = bk__error_set(BK_EINVALID, NULL, "device: bad write request");
	if (rc == 0 && (buf = bk__malloc(BK_PROTO_DATA_MAX)) == NULL)
		rc = BK_ENOMEM;
	while (rc == 0) {
		while (x.count < x.window && x.next < x.end) {
			size_t n = x.end - x.next < x.chunk ? (size_t)(x.end - x.next) : x.chunk;
			rc = source(payload, x.next, buf, n);
			if (rc)
				break;
			pending *p = xfer_push(&x, n);
			bk_proto_msg m = {.type = (uint8_t)type,
			                  .id = p->id,
			                  .offset = p->off,
			                  .data = buf,
			                  .data_len = n};
			rc = bk_channel_send(dev->ch, &m, p->due);
			if (rc)
				break;
		}
		if (rc || x.count == 0)
			break;
		pending *p = NULL;
		rc = xfer_recv(&x, &ans, &p);
		if (rc)
			break;
		if (ans.type != BK_MSG_OK) {
			rc =
			    bk__error_set(BK_EFORMAT, "bad-answer",
			                  "the write at offset %llu was answered with %s",
			                  (unsigned long long)p->off, bk_proto_type_name(ans.type));
			break;
		}
		p->got = p->len;
		p->done = true;
		bk_proto_msg_clear(&ans);
		xfer_advance(&x);
	}
	bk_proto_msg_clear(&ans);
	bk__free(buf);
	if (out_done)
		*out_done = x.prefix;
	return rc && dev ? named(dev, rc) : rc;
}

/* --- Finding units --------------------------------------------------------- */

int bk_device_usb_list(bk_device_usb_unit **out, size_t *count, uint16_t vid, uint16_t pid)
{
	bk_usb_unit *units = NULL;
	bk_device_usb_unit *res = NULL;
	size_t n = 0;
	int rc;
	if (out == NULL || count == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no output");
	*out = NULL;
	*count = 0;
	rc =
	    bk_usb_list(&units, &n, vid ? vid : BK_USB_DEFAULT_VID, pid ? pid : BK_USB_DEFAULT_PID);
	if (rc || n == 0)
		goto done;
	res = bk__calloc(n, sizeof(*res));
	if (res == NULL) {
		rc = BK_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		bk_strlcpy(res[i].serial, units[i].serial, sizeof(res[i].serial));
		bk_strlcpy(res[i].path, units[i].path, sizeof(res[i].path));
		snprintf(res[i].uri, sizeof(res[i].uri), "usb:%s",
		         units[i].serial[0] ? units[i].serial : units[i].path);
	}
	*out = res;
	*count = n;
done:
	bk_usb_list_free(units);
	return rc;
}

int bk_device_parse_vid_pid(const char *text, uint16_t *vid, uint16_t *pid)
{
	uint8_t b[4];
	char hex[9];
	if (text == NULL || strlen(text) != 9 || text[4] != ':')
		goto bad;
	memcpy(hex, text, 4);
	memcpy(hex + 4, text + 5, 4);
	hex[8] = '\0';
	for (int i = 0; i < 8; i++)
		if (hex[i] >= 'A' && hex[i] <= 'F')
			hex[i] = (char)(hex[i] - 'A' + 'a');
	if (bk_hex_decode(b, sizeof(b), hex) != 0)
		goto bad;
	*vid = (uint16_t)(b[0] << 8 | b[1]);
	*pid = (uint16_t)(b[2] << 8 | b[3]);
	return 0;
bad:
	return bk__error_set(BK_EUSER, "bad-vid-pid", "'%s' is not a USB VID:PID (like 1209:0001)",
	                     text ? text : "");
}

int bk_device_uri_check(const char *uri)
{
	bk_device_uri u;
	if (uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "device: no URI");
	return bk_device_uri_parse(&u, uri);
}
