/* The simulated USB unit: a usbdevfs ioctl handler on a umockdev test bed.
 *
 * libusb's Linux backend talks to /dev/bus/usb/BBB/DDD with ioctls; under
 * umockdev's preload every ioctl of a host process travels over a socket to
 * the handler here, which runs on the test bed's single worker thread. The
 * handler never waits for the device: a bulk IN request is kept pending and
 * completed on a later reap once the server side has written bytes, and an
 * OUT request is completed once its bytes fit into the session socket. libusb
 * polls the reap ioctl while it waits (the device file always looks ready),
 * so the pending work is pumped from there. All state is guarded by one
 * mutex, taken by the worker and by the public calls. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "device/virtual/usbsim.h"
#include "libbackup/util/util.h"

#ifdef BK_HAVE_UMOCKDEV

#include <linux/ioctl.h>
#include <linux/usbdevice_fs.h>
#include <umockdev.h>

enum {
	EP_OUT = 0x01,
	EP_IN = 0x81,
	MAX_PACKET = 512,
	SCRATCH = 1 << 20,     /* most bytes handed to one IN request */
	SOCK_BUF = 1 << 20,    /* session socket buffers */
	MAX_QUEUED = 8,        /* sessions waiting for bk_usbsim_accept() */
	CLIENT_CHECK_MS = 100, /* how often vanished host processes are looked for */
	URB_STATUS_SHUTDOWN = -ESHUTDOWN,
};

typedef struct sim_urb {
	struct sim_urb *next;
	UMockdevIoctlData *data;   /* the struct usbdevfs_urb (own reference) */
	UMockdevIoctlData *buffer; /* the resolved OUT/control buffer, or NULL */
	uint8_t endpoint;
	uint8_t type;
	int length;
	size_t done; /* OUT bytes passed on so far */
	int status;
	int actual;
} sim_urb;

typedef struct urb_queue {
	sim_urb *head;
	sim_urb *tail;
} urb_queue;

typedef struct sim_client {
	struct sim_client *next;
	bk_usbsim *sim;
	UMockdevIoctlClient *client; /* own reference */
	urb_queue pending_in;
	urb_queue pending_out;
	urb_queue done;
	bool claimed;
	bool dead; /* opened before the unit dropped off the bus */
} sim_client;

struct bk_usbsim {
	UMockdevTestbed *tb;
	UMockdevIoctlBase *handler;
	gulong ioctl_id;
	gulong connect_id;
	char *root_dir;
	char *devnode;
	char *syspath;
	char *record;
	char *serial;
	uint16_t vid;
	uint16_t pid;
	unsigned busnum;
	unsigned devnum;
	uint8_t dev_desc[18];
	uint8_t cfg_desc[32];

	GMutex lock;
	GCond cond;
	sim_client *clients;
	sim_client *owner; /* the host of the current session */
	int host_fd;       /* our end of the session socket, or -1 */
	int queued[MAX_QUEUED];
	size_t nqueued;
	bool gone;
	bool closing;
	GMainContext *worker_ctx; /* the test bed's worker, once a client came */
	GSource *client_check;
	bool quiet; /* our handlers are disconnected */
	uint8_t *scratch;
	bk_usbsim_stats stats;
};

/* --- Small helpers ----------------------------------------------------- */

static void queue_push(urb_queue *q, sim_urb *u)
{
	u->next = NULL;
	if (q->tail)
		q->tail->next = u;
	else
		q->head = u;
	q->tail = u;
}

static sim_urb *queue_pop(urb_queue *q)
{
	sim_urb *u = q->head;
	if (u) {
		q->head = u->next;
		if (q->head == NULL)
			q->tail = NULL;
		u->next = NULL;
	}
	return u;
}

/* Unlinks the URB whose client address is `addr`, or returns NULL. */
static sim_urb *queue_take(urb_queue *q, gulong addr)
{
	sim_urb *prev = NULL;
	for (sim_urb *u = q->head; u; prev = u, u = u->next) {
		if (u->data->client_addr != addr)
			continue;
		if (prev)
			prev->next = u->next;
		else
			q->head = u->next;
		if (q->tail == u)
			q->tail = prev;
		u->next = NULL;
		return u;
	}
	return NULL;
}

static void urb_free(sim_urb *u)
{
	if (u == NULL)
		return;
	if (u->buffer)
		g_object_unref(u->buffer);
	if (u->data)
		g_object_unref(u->data);
	bk__free(u);
}

static void queue_clear(urb_queue *q)
{
	sim_urb *u;
	while ((u = queue_pop(q)) != NULL)
		urb_free(u);
}

static void urb_finish(sim_client *c, sim_urb *u, int status, int actual)
{
	u->status = status;
	u->actual = actual;
	queue_push(&c->done, u);
}

/* Completes every request still waiting with `status`. */
static void fail_pending(sim_client *c, int status)
{
	sim_urb *u;
	while ((u = queue_pop(&c->pending_out)) != NULL)
		urb_finish(c, u, status, (int)u->done);
	while ((u = queue_pop(&c->pending_in)) != NULL)
		urb_finish(c, u, status, 0);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void build_descriptors(bk_usbsim *sim)
{
	uint8_t *d = sim->dev_desc;
	memset(d, 0, sizeof(sim->dev_desc));
	d[0] = 18;   /* bLength */
	d[1] = 0x01; /* DEVICE */
	put_le16(d + 2, 0x0200);
	d[7] = 64; /* bMaxPacketSize0 */
	put_le16(d + 8, sim->vid);
	put_le16(d + 10, sim->pid);
	put_le16(d + 12, 0x0100);
	d[14] = 1; /* iManufacturer */
	d[15] = 2; /* iProduct */
	d[16] = 3; /* iSerialNumber */
	d[17] = 1; /* bNumConfigurations */

	static const uint8_t cfg[32] = {
	    9,
	    0x02,
	    32,
	    0,
	    1,
	    1,
	    0,
	    0x80,
	    50, /* configuration 1 */
	    9,
	    0x04,
	    0,
	    0,
	    2,
	    0xff,
	    0,
	    0,
	    0, /* vendor interface 0 */
	    7,
	    0x05,
	    EP_OUT,
	    0x02,
	    MAX_PACKET & 0xff,
	    MAX_PACKET >> 8,
	    0,
	    7,
	    0x05,
	    EP_IN,
	    0x02,
	    MAX_PACKET & 0xff,
	    MAX_PACKET >> 8,
	    0,
	};
	memcpy(sim->cfg_desc, cfg, sizeof(cfg));
}

static const char *string_for(const bk_usbsim *sim, unsigned index)
{
	switch (index) {
	case 1:
		return "aibo-restore lab";
	case 2:
		return "Virtual robot unit";
	case 3:
		return sim->serial;
	default:
		return NULL;
	}
}

/* --- Sessions ------------------------------------------------------------ */

static void end_session(bk_usbsim *sim, int status)
{
	if (sim->host_fd >= 0) {
		close(sim->host_fd);
		sim->host_fd = -1;
	}
	if (sim->owner) {
		sim->owner->claimed = false;
		fail_pending(sim->owner, status);
		sim->owner = NULL;
	}
}

static int start_session(bk_usbsim *sim, sim_client *c)
{
	int sv[2];
	if (sim->nqueued == MAX_QUEUED)
		return EBUSY;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return errno;
	int size = SOCK_BUF;
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	int fl = fcntl(sv[0], F_GETFL);
	if (fl >= 0)
		fcntl(sv[0], F_SETFL, fl | O_NONBLOCK);
	sim->host_fd = sv[0];
	sim->queued[sim->nqueued++] = sv[1];
	sim->owner = c;
	c->claimed = true;
	sim->stats.sessions++;
	g_cond_broadcast(&sim->cond);
	return 0;
}

static int claim(bk_usbsim *sim, sim_client *c, unsigned ifnum)
{
	if (ifnum != 0)
		return ENOENT;
	if (sim->owner == c)
		return 0;
	if (sim->owner != NULL)
		return EBUSY;
	return start_session(sim, c);
}

/* Moves bytes between the session socket and the owner's requests. IN
 * requests are only filled while reaping: a buffer filled during the submit
 * would be copied to the host twice (with the submit's answer and the
 * reap's). */
static void pump(bk_usbsim *sim, sim_client *c, bool fill_in)
{
	if (c != sim->owner || sim->host_fd < 0)
		return;
	sim_urb *u;
	while ((u = c->pending_out.head) != NULL) {
		size_t left = (size_t)u->length - u->done;
		if (left > 0) {
			ssize_t n = send(sim->host_fd, u->buffer->data + u->done, left,
			                 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			if (n < 0)
				n = (ssize_t)left; /* the server hung up: the bytes are dropped */
			u->done += (size_t)n;
			sim->stats.bytes_out += (uint64_t)n;
			if (u->done < (size_t)u->length)
				break;
		}
		queue_pop(&c->pending_out);
		urb_finish(c, u, 0, u->length);
	}
	while (fill_in && (u = c->pending_in.head) != NULL) {
		size_t want = (size_t)u->length < SCRATCH ? (size_t)u->length : SCRATCH;
		ssize_t n = recv(sim->host_fd, sim->scratch, want, MSG_DONTWAIT);
		if (n <= 0)
			break; /* nothing yet, or the server side closed: the host sees silence */
		GError *err = NULL;
		UMockdevIoctlData *buf = umockdev_ioctl_data_resolve(
		    u->data, offsetof(struct usbdevfs_urb, buffer), (gsize)n, &err);
		queue_pop(&c->pending_in);
		if (buf == NULL) {
			g_clear_error(&err);
			urb_finish(c, u, -EIO, 0);
			continue;
		}
		memcpy(buf->data, sim->scratch, (size_t)n);
		g_object_unref(buf); /* the URB keeps it until flushed */
		sim->stats.bytes_in += (uint64_t)n;
		urb_finish(c, u, 0, (int)n);
	}
}

/* --- Requests -------------------------------------------------------------- */

/* Answers a control transfer on endpoint 0; returns the URB status. */
static int control(bk_usbsim *sim, uint8_t *buf, int len, int *actual)
{
	bk_cur cur;
	uint8_t type, req;
	uint16_t value, index, length;
	*actual = 0;
	bk_cur_init(&cur, buf, (size_t)len);
	if (bk_cur_u8(&cur, &type) || bk_cur_u8(&cur, &req) || bk_cur_u16le(&cur, &value) ||
	    bk_cur_u16le(&cur, &index) || bk_cur_u16le(&cur, &length))
		return -EINVAL;
	size_t room = bk_cur_left(&cur) < length ? bk_cur_left(&cur) : length;
	uint8_t *out = buf + 8;
	uint8_t tmp[256];
	size_t n = 0;

	if (type == 0x80 && req == 0x06) { /* GET_DESCRIPTOR */
		uint8_t dtype = (uint8_t)(value >> 8), dindex = (uint8_t)value;
		if (dtype == 0x01) {
			memcpy(tmp, sim->dev_desc, sizeof(sim->dev_desc));
			n = sizeof(sim->dev_desc);
		} else if (dtype == 0x02 && dindex == 0) {
			memcpy(tmp, sim->cfg_desc, sizeof(sim->cfg_desc));
			n = sizeof(sim->cfg_desc);
		} else if (dtype == 0x03 && dindex == 0) {
			tmp[0] = 4;
			tmp[1] = 0x03;
			put_le16(tmp + 2, 0x0409);
			n = 4;
		} else if (dtype == 0x03) {
			const char *s = string_for(sim, dindex);
			if (s == NULL)
				return -EPIPE;
			size_t sl = strlen(s);
			if (sl > 126)
				sl = 126;
			tmp[0] = (uint8_t)(2 + 2 * sl);
			tmp[1] = 0x03;
			for (size_t i = 0; i < sl; i++)
				put_le16(tmp + 2 + 2 * i, (uint8_t)s[i]);
			n = 2 + 2 * sl;
		} else {
			return -EPIPE;
		}
	} else if (type == 0x80 && req == 0x00) { /* GET_STATUS */
		tmp[0] = tmp[1] = 0;
		n = 2;
	} else if (type == 0x80 && req == 0x08) { /* GET_CONFIGURATION */
		tmp[0] = 1;
		n = 1;
	} else if (type == 0x00 && (req == 0x09 || req == 0x01 || req == 0x03)) {
		n = 0; /* SET_CONFIGURATION, CLEAR_FEATURE, SET_FEATURE */
	} else if (type == 0x01 && req == 0x0b) {
		n = 0; /* SET_INTERFACE */
	} else {
		return -EPIPE;
	}
	if (n > room)
		n = room;
	memcpy(out, tmp, n);
	*actual = (int)n;
	return 0;
}

static int submit(bk_usbsim *sim, sim_client *c, UMockdevIoctlData *arg)
{
	GError *err = NULL;
	sim_urb *u = NULL;
	int rc = 0;
	UMockdevIoctlData *data =
	    umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_urb), &err);
	if (data == NULL) {
		g_clear_error(&err);
		return EFAULT;
	}
	struct usbdevfs_urb urb;
	memcpy(&urb, data->data, sizeof(urb));
	if (urb.buffer_length < 0) {
		rc = EINVAL;
		goto done;
	}
	u = bk__calloc(1, sizeof(*u));
	if (u == NULL) {
		rc = ENOMEM;
		goto done;
	}
	u->data = data;
	data = NULL;
	u->endpoint = urb.endpoint;
	u->type = urb.type;
	u->length = urb.buffer_length;

	bool need_buffer = (urb.type == USBDEVFS_URB_TYPE_CONTROL) ||
	                   (urb.type == USBDEVFS_URB_TYPE_BULK && urb.endpoint == EP_OUT);
	if (need_buffer && urb.buffer_length > 0) {
		u->buffer = umockdev_ioctl_data_resolve(
		    u->data, offsetof(struct usbdevfs_urb, buffer), (gsize)urb.buffer_length, &err);
		if (u->buffer == NULL) {
			g_clear_error(&err);
			rc = EFAULT;
			goto done;
		}
	}

	if (urb.type == USBDEVFS_URB_TYPE_CONTROL && urb.endpoint == 0) {
		int actual = 0;
		int status = urb.buffer_length >= 8
		                 ? control(sim, u->buffer->data, urb.buffer_length, &actual)
		                 : -EINVAL;
		if (status == -EINVAL) {
			rc = EINVAL;
			goto done;
		}
		urb_finish(c, u, status, actual);
		u = NULL;
		goto done;
	}
	if (urb.type != USBDEVFS_URB_TYPE_BULK ||
	    (urb.endpoint != EP_OUT && urb.endpoint != EP_IN)) {
		rc = EINVAL;
		goto done;
	}
	if (sim->owner != c) {
		/* Like the kernel: using an endpoint claims its interface. */
		rc = claim(sim, c, 0);
		if (rc)
			goto done;
	}
	if (urb.endpoint == EP_OUT)
		queue_push(&c->pending_out, u);
	else
		queue_push(&c->pending_in, u);
	u = NULL;
	pump(sim, c, false);
done:
	urb_free(u);
	if (data)
		g_object_unref(data);
	return rc;
}

/* Hands back one completed request; EAGAIN when there is none. */
static int reap(bk_usbsim *sim, sim_client *c, UMockdevIoctlData *arg)
{
	GError *err = NULL;
	pump(sim, c, true);
	if (c->done.head == NULL)
		return EAGAIN;
	UMockdevIoctlData *slot = umockdev_ioctl_data_resolve(arg, 0, sizeof(void *), &err);
	if (slot == NULL) {
		g_clear_error(&err);
		return EFAULT;
	}
	sim_urb *u = queue_pop(&c->done);
	struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->data->data;
	urb->status = u->status;
	urb->actual_length = u->actual;
	umockdev_ioctl_data_set_ptr(slot, 0, u->data);
	g_object_unref(slot);
	urb_free(u);
	return 0;
}

static int discard(sim_client *c, UMockdevIoctlData *arg)
{
	if (arg->data_len < (gint)sizeof(gulong))
		return EINVAL;
	gulong addr;
	memcpy(&addr, arg->data, sizeof(addr));
	sim_urb *u = queue_take(&c->pending_in, addr);
	if (u == NULL)
		u = queue_take(&c->pending_out, addr);
	if (u == NULL)
		return EINVAL; /* already complete: it is reaped normally */
	urb_finish(c, u, -ENOENT, u->endpoint == EP_OUT ? (int)u->done : 0);
	return 0;
}

/* Reads the unsigned int an ioctl argument points to. */
static int arg_uint(UMockdevIoctlData *arg, unsigned *out)
{
	GError *err = NULL;
	UMockdevIoctlData *d = umockdev_ioctl_data_resolve(arg, 0, sizeof(unsigned), &err);
	if (d == NULL) {
		g_clear_error(&err);
		return EFAULT;
	}
	memcpy(out, d->data, sizeof(unsigned));
	g_object_unref(d);
	return 0;
}

/* Handles one ioctl with the lock held; returns 0 or an errno value, and
 * *out_res the ioctl's result on success. */
static int handle(bk_usbsim *sim, sim_client *c, unsigned long req, UMockdevIoctlData *arg,
                  long *out_res)
{
	GError *err = NULL;
	unsigned v = 0;
	int rc;
	*out_res = 0;
	if (req == USBDEVFS_DISCARDURB)
		return discard(c, arg);
	if (c->dead || sim->closing) {
		if (req == USBDEVFS_REAPURB || req == USBDEVFS_REAPURBNDELAY) {
			fail_pending(c, URB_STATUS_SHUTDOWN);
			if (c->done.head)
				return reap(sim, c, arg);
		}
		return ENODEV;
	}
	switch (req) {
	case USBDEVFS_GET_CAPABILITIES: {
		UMockdevIoctlData *d = umockdev_ioctl_data_resolve(arg, 0, sizeof(uint32_t), &err);
		if (d == NULL) {
			g_clear_error(&err);
			return EFAULT;
		}
		uint32_t caps = USBDEVFS_CAP_BULK_SCATTER_GATHER | USBDEVFS_CAP_NO_PACKET_SIZE_LIM |
		                USBDEVFS_CAP_ZERO_PACKET;
		memcpy(d->data, &caps, sizeof(caps));
		g_object_unref(d);
		return 0;
	}
	case USBDEVFS_CLAIMINTERFACE:
		rc = arg_uint(arg, &v);
		return rc ? rc : claim(sim, c, v);
	case USBDEVFS_DISCONNECT_CLAIM:
		rc = arg_uint(arg, &v); /* the interface number is the first member */
		return rc ? rc : claim(sim, c, v);
	case USBDEVFS_RELEASEINTERFACE:
		rc = arg_uint(arg, &v);
		if (rc)
			return rc;
		if (v != 0 || !c->claimed)
			return EINVAL;
		end_session(sim, -ENOENT);
		return 0;
	case USBDEVFS_SETINTERFACE: {
		UMockdevIoctlData *d =
		    umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_setinterface), &err);
		if (d == NULL) {
			g_clear_error(&err);
			return EFAULT;
		}
		struct usbdevfs_setinterface si;
		memcpy(&si, d->data, sizeof(si));
		g_object_unref(d);
		return (si.interface == 0 && si.altsetting == 0) ? 0 : EINVAL;
	}
	case USBDEVFS_SETCONFIGURATION:
		rc = arg_uint(arg, &v);
		return rc ? rc : (v == 1 || v == 0 ? 0 : EINVAL);
	case USBDEVFS_CLEAR_HALT:
	case USBDEVFS_RESETEP:
	case USBDEVFS_RESET:
		return 0;
	case USBDEVFS_GETDRIVER:
		return ENODATA;
	case USBDEVFS_GET_SPEED:
		*out_res = 3; /* high speed */
		return 0;
	case USBDEVFS_CONNECTINFO: {
		UMockdevIoctlData *d =
		    umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_connectinfo), &err);
		if (d == NULL) {
			g_clear_error(&err);
			return EFAULT;
		}
		struct usbdevfs_connectinfo ci = {.devnum = sim->devnum, .slow = 0};
		memcpy(d->data, &ci, sizeof(ci));
		g_object_unref(d);
		return 0;
	}
	case USBDEVFS_SUBMITURB:
		return submit(sim, c, arg);
	case USBDEVFS_REAPURB:
	case USBDEVFS_REAPURBNDELAY:
		return reap(sim, c, arg);
	default:
		return ENOTTY;
	}
}

static gboolean on_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer payload)
{
	bk_usbsim *sim = payload;
	BK_UNUSED(base);
	long res = 0;
	int err;
	g_mutex_lock(&sim->lock);
	sim_client *c = g_object_get_data(G_OBJECT(client), "bk-usbsim");
	if (c == NULL)
		err = ENODEV;
	else
		err = handle(sim, c, umockdev_ioctl_client_get_request(client),
		             umockdev_ioctl_client_get_arg(client), &res);
	g_mutex_unlock(&sim->lock);
	umockdev_ioctl_client_complete(client, err ? -1 : res, err);
	return TRUE;
}

static void client_drop(bk_usbsim *sim, sim_client *c)
{
	if (sim->owner == c)
		end_session(sim, -ENOENT);
	queue_clear(&c->pending_in);
	queue_clear(&c->pending_out);
	queue_clear(&c->done);
	g_object_set_data(G_OBJECT(c->client), "bk-usbsim", NULL);
	g_object_unref(c->client);
	bk__free(c);
}

/* umockdev 0.17 tells nobody when a host process goes away (neither
 * client-vanished nor notify::connected is emitted), but the client's
 * connection reads as closed: the worker looks for those regularly and ends
 * their sessions, so the server side sees the end of the stream. */
static gboolean check_clients(gpointer payload)
{
	bk_usbsim *sim = payload;
	g_mutex_lock(&sim->lock);
	for (sim_client **pp = &sim->clients; *pp;) {
		sim_client *c = *pp;
		if (umockdev_ioctl_client_get_connected(c->client)) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		client_drop(sim, c);
	}
	g_mutex_unlock(&sim->lock);
	return G_SOURCE_CONTINUE;
}

static void on_client_connected(UMockdevIoctlBase *base, UMockdevIoctlClient *client,
                                gpointer payload)
{
	bk_usbsim *sim = payload;
	BK_UNUSED(base);
	sim_client *c = bk__calloc(1, sizeof(*c));
	if (c == NULL)
		return; /* its ioctls then fail with ENODEV */
	c->sim = sim;
	c->client = g_object_ref(client);
	g_mutex_lock(&sim->lock);
	if (sim->client_check == NULL && !sim->closing) {
		/* Runs on the worker, like the ioctl handler. */
		sim->worker_ctx = g_main_context_ref_thread_default();
		sim->client_check = g_timeout_source_new(CLIENT_CHECK_MS);
		g_source_set_callback(sim->client_check, check_clients, sim, NULL);
		g_source_attach(sim->client_check, sim->worker_ctx);
	}
	c->dead = sim->gone || sim->closing;
	c->next = sim->clients;
	sim->clients = c;
	g_object_set_data(G_OBJECT(client), "bk-usbsim", c);
	g_mutex_unlock(&sim->lock);
}

/* --- Public API ------------------------------------------------------------ */

static int valid_serial(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 126)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	return 1;
}

static int add_device(bk_usbsim *sim)
{
	GError *err = NULL;
	if (!umockdev_testbed_add_from_string(sim->tb, sim->record, &err)) {
		int rc =
		    bk__error_set(BK_ERROR, "usbsim-device", "usbsim: cannot add the device: %s",
		                  err ? err->message : "unknown error");
		g_clear_error(&err);
		return rc;
	}
	return 0;
}

int bk_usbsim_new(bk_usbsim **out, const bk_usbsim_opts *opts)
{
	bk_usbsim_opts def = BK_USBSIM_OPTS_INIT;
	bk_usbsim *sim = NULL;
	bk_buf rec = BK_BUF_INIT;
	char hex[2 * (18 + 32) + 1];
	GError *err = NULL;
	int rc = 0;

	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usbsim: no output");
	*out = NULL;
	if (opts == NULL)
		opts = &def;
	if (opts->version < 1 || !valid_serial(opts->serial) || opts->busnum < 1 ||
	    opts->busnum > 255 || opts->devnum < 1 || opts->devnum > 127 || opts->port < 1 ||
	    opts->port > 15)
		return bk__error_set(
		    BK_EINVALID, "usbsim-options",
		    "usbsim: invalid options (serial, bus, device or port out of range)");

	sim = bk__calloc(1, sizeof(*sim));
	if (sim == NULL)
		return BK_ENOMEM;
	g_mutex_init(&sim->lock);
	g_cond_init(&sim->cond);
	sim->host_fd = -1;
	sim->vid = opts->vid;
	sim->pid = opts->pid;
	sim->busnum = opts->busnum;
	sim->devnum = opts->devnum;
	sim->serial = bk__strdup(opts->serial);
	sim->scratch = bk__malloc(SCRATCH);
	sim->devnode = bk__asprintf("/dev/bus/usb/%03u/%03u", opts->busnum, opts->devnum);
	sim->syspath = bk__asprintf("/sys/devices/pci0000:00/0000:00:14.0/usb%u/%u-%u",
	                            opts->busnum, opts->busnum, opts->port);
	if (!sim->serial || !sim->scratch || !sim->devnode || !sim->syspath) {
		rc = BK_ENOMEM;
		goto done;
	}
	build_descriptors(sim);
	bk_hex_encode(hex, sim->dev_desc, sizeof(sim->dev_desc));
	bk_hex_encode(hex + 36, sim->cfg_desc, sizeof(sim->cfg_desc));
	rc = bk_buf_printf(&rec,
	                   "P: %s\nN: bus/usb/%03u/%03u\nE: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\n"
	                   "E: DRIVER=usb\nE: BUSNUM=%03u\nE: DEVNUM=%03u\nE: DEVNAME=%s\n"
	                   "E: PRODUCT=%x/%x/100\n"
	                   "A: busnum=%u\nA: devnum=%u\nA: speed=480\nA: bConfigurationValue=1\n"
	                   "A: bNumConfigurations=1\nA: idVendor=%04x\nA: idProduct=%04x\n"
	                   "A: serial=%s\nA: manufacturer=%s\nA: product=%s\nH: descriptors=%s\n",
	                   sim->syspath + 4, opts->busnum, opts->devnum, opts->busnum, opts->devnum,
	                   sim->devnode, sim->vid, sim->pid, opts->busnum, opts->devnum, sim->vid,
	                   sim->pid, sim->serial, string_for(sim, 1), string_for(sim, 2), hex);
	if (rc == 0)
		rc = bk_buf_cstr(&rec);
	if (rc)
		goto done;
	sim->record = (char *)bk_buf_steal(&rec, NULL);

	sim->tb = umockdev_testbed_new();
	sim->root_dir = umockdev_testbed_get_root_dir(sim->tb);
	sim->handler = umockdev_ioctl_base_new();
	sim->ioctl_id = g_signal_connect(sim->handler, "handle-ioctl", G_CALLBACK(on_ioctl), sim);
	sim->connect_id = g_signal_connect(sim->handler, "client-connected",
	                                   G_CALLBACK(on_client_connected), sim);
	if (!umockdev_testbed_attach_ioctl(sim->tb, sim->devnode, sim->handler, &err)) {
		rc = bk__error_set(BK_ERROR, "usbsim-attach", "usbsim: cannot attach to %s: %s",
		                   sim->devnode, err ? err->message : "unknown error");
		g_clear_error(&err);
		goto done;
	}
	rc = add_device(sim);
done:
	bk_buf_free(&rec);
	if (rc) {
		bk_usbsim_free(sim);
		return rc;
	}
	*out = sim;
	return 0;
}

int bk_usbsim_env(const bk_usbsim *sim, const char **out_dir, const char **out_preload)
{
	if (sim == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usbsim: no simulator");
	if (out_dir)
		*out_dir = sim->root_dir;
	if (out_preload)
		*out_preload = "libumockdev-preload.so.0";
	return 0;
}

int bk_usbsim_accept(bk_usbsim *sim, int *out_fd, bk_deadline d)
{
	if (sim == NULL || out_fd == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usbsim: no simulator");
	*out_fd = -1;
	int rc = 0;
	g_mutex_lock(&sim->lock);
	while (sim->nqueued == 0) {
		if (d == BK_DEADLINE_NONE) {
			g_cond_wait(&sim->cond, &sim->lock);
			continue;
		}
		int left = bk_deadline_left(d);
		if (left == 0) {
			rc = bk__error_set(BK_ETIMEOUT, "timeout",
			                   "usbsim: no host session before the deadline");
			goto done;
		}
		g_cond_wait_until(&sim->cond, &sim->lock,
		                  g_get_monotonic_time() + (gint64)left * 1000);
	}
	*out_fd = sim->queued[0];
	sim->nqueued--;
	memmove(sim->queued, sim->queued + 1, sim->nqueued * sizeof(sim->queued[0]));
done:
	g_mutex_unlock(&sim->lock);
	return rc;
}

int bk_usbsim_set_gone(bk_usbsim *sim, bool gone)
{
	if (sim == NULL)
		return bk__error_set(BK_EINVALID, NULL, "usbsim: no simulator");
	g_mutex_lock(&sim->lock);
	bool was = sim->gone;
	sim->gone = gone;
	if (gone && !was) {
		end_session(sim, URB_STATUS_SHUTDOWN);
		for (sim_client *c = sim->clients; c; c = c->next)
			c->dead = true;
	}
	g_mutex_unlock(&sim->lock);
	if (gone && !was)
		umockdev_testbed_remove_device(sim->tb, sim->syspath);
	else if (!gone && was)
		return add_device(sim);
	return 0;
}

void bk_usbsim_get_stats(bk_usbsim *sim, bk_usbsim_stats *out)
{
	if (sim == NULL || out == NULL)
		return;
	g_mutex_lock(&sim->lock);
	*out = sim->stats;
	g_mutex_unlock(&sim->lock);
}

/* Disconnects everything of ours that the worker calls. */
static void disconnect_all(bk_usbsim *sim)
{
	if (sim->client_check) {
		g_source_destroy(sim->client_check);
		g_source_unref(sim->client_check);
		sim->client_check = NULL;
	}
	if (sim->handler && !sim->quiet) {
		g_signal_handler_disconnect(sim->handler, sim->ioctl_id);
		g_signal_handler_disconnect(sim->handler, sim->connect_id);
	}
	sim->quiet = true;
}

/* Runs on the worker: once it has run, no handler of ours is running or
 * will run, whatever the worker's own shutdown does later. */
static gboolean quiesce_in_worker(gpointer payload)
{
	bk_usbsim *sim = payload;
	g_mutex_lock(&sim->lock);
	disconnect_all(sim);
	g_cond_broadcast(&sim->cond);
	g_mutex_unlock(&sim->lock);
	return G_SOURCE_REMOVE;
}

void bk_usbsim_free(bk_usbsim *sim)
{
	if (sim == NULL)
		return;
	g_mutex_lock(&sim->lock);
	sim->closing = true;
	end_session(sim, URB_STATUS_SHUTDOWN);
	if (sim->worker_ctx) {
		g_main_context_invoke(sim->worker_ctx, quiesce_in_worker, sim);
		gint64 until = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
		while (!sim->quiet && g_cond_wait_until(&sim->cond, &sim->lock, until)) {
		}
	}
	g_mutex_unlock(&sim->lock);
	/* No client ever connected, or the worker did not answer: disconnect
	 * from here; the lock then waits out a call already inside. */
	disconnect_all(sim);
	g_mutex_lock(&sim->lock);
	g_mutex_unlock(&sim->lock);
	if (sim->tb) {
		if (sim->handler)
			umockdev_testbed_detach_ioctl(sim->tb, sim->devnode, NULL);
		/* Stops the worker and removes the test bed folder. */
		g_object_unref(sim->tb);
	}
	if (sim->worker_ctx)
		g_main_context_unref(sim->worker_ctx);
	while (sim->clients) {
		sim_client *c = sim->clients;
		sim->clients = c->next;
		client_drop(sim, c);
	}
	for (size_t i = 0; i < sim->nqueued; i++)
		close(sim->queued[i]);
	sim->nqueued = 0;
	if (sim->handler)
		g_object_unref(sim->handler);
	g_free(sim->root_dir);
	g_mutex_clear(&sim->lock);
	g_cond_clear(&sim->cond);
	bk__free(sim->scratch);
	bk__free(sim->serial);
	bk__free(sim->devnode);
	bk__free(sim->syspath);
	bk__free(sim->record);
	bk__free(sim);
}

#else /* !BK_HAVE_UMOCKDEV */

static int unavailable(void)
{
	return bk__error_set(
	    BK_EINCOMPAT, "usbsim-unavailable",
	    "usbsim: built without umockdev, the simulated USB unit is unavailable");
}

int bk_usbsim_new(bk_usbsim **out, const bk_usbsim_opts *opts)
{
	BK_UNUSED(opts);
	if (out)
		*out = NULL;
	return unavailable();
}

int bk_usbsim_env(const bk_usbsim *sim, const char **out_dir, const char **out_preload)
{
	BK_UNUSED(sim);
	BK_UNUSED(out_dir);
	BK_UNUSED(out_preload);
	return unavailable();
}

int bk_usbsim_accept(bk_usbsim *sim, int *out_fd, bk_deadline d)
{
	BK_UNUSED(sim);
	BK_UNUSED(d);
	if (out_fd)
		*out_fd = -1;
	return unavailable();
}

int bk_usbsim_set_gone(bk_usbsim *sim, bool gone)
{
	BK_UNUSED(sim);
	BK_UNUSED(gone);
	return unavailable();
}

void bk_usbsim_get_stats(bk_usbsim *sim, bk_usbsim_stats *out)
{
	BK_UNUSED(sim);
	if (out)
		memset(out, 0, sizeof(*out));
}

void bk_usbsim_free(bk_usbsim *sim)
{
	BK_UNUSED(sim);
}

#endif
