/* The virtual robot's server: one thread per connection (see server.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "device/virtual/server.h"
#include "device/virtual/usbsim.h"

#define MAX_SESSIONS 16
#define HANDSHAKE_MS 10000

typedef struct slot {
	bool used;
	pthread_t thread;
	bk_stream *stream;
	struct bk_vserver *srv;
	volatile int finished;
} slot;

struct bk_vserver {
	bk_vunit *unit;
	bk_listener *listener;
	bk_usbsim *sim;
	char uri[BK_URI_STRING_MAX + 8];
	volatile sig_atomic_t stop;
	slot slots[MAX_SESSIONS];
	pthread_mutex_t lock;
	unsigned sessions;
	bool started;
	pthread_t runner;
	int run_rc;
	char run_reason[64];
	char run_message[512];
};

int bk_vserver_new(bk_vserver **out, bk_vunit *u, const char *listen_uri, bool usb)
{
	bk_vserver *s;
	int rc = 0;
	*out = NULL;
	if (u == NULL || (listen_uri == NULL && !usb))
		return bk__error_set(BK_EUSER, "nothing-to-serve",
		                     "serve needs --listen URI or --usb");
	s = bk__calloc(1, sizeof(*s));
	if (s == NULL)
		return BK_ENOMEM;
	s->unit = u;
	pthread_mutex_init(&s->lock, NULL);
	if (listen_uri) {
		bk_device_uri uri;
		rc = bk_device_uri_parse(&uri, listen_uri);
		if (rc == 0 && uri.kind != BK_URI_TCP && uri.kind != BK_URI_UNIX)
			rc = bk__error_set(
			    BK_EUSER, "bad-listen-uri",
			    "%s: --listen takes a tcp: or unix: URI (use --usb for USB)",
			    listen_uri);
		if (rc == 0)
			rc = bk_listener_new(&s->listener, &uri);
		if (rc == 0)
			rc = bk_device_uri_format(bk_listener_uri(s->listener), s->uri,
			                          sizeof(s->uri));
	}
	if (rc == 0 && usb) {
		bk_usbsim_opts o = BK_USBSIM_OPTS_INIT;
		o.serial = bk_vunit_serial(u);
		rc = bk_usbsim_new(&s->sim, &o);
		if (rc == 0 && s->listener == NULL)
			snprintf(s->uri, sizeof(s->uri), "usb:%s", bk_vunit_serial(u));
	}
	if (rc) {
		bk_vserver_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

const char *bk_vserver_uri(const bk_vserver *s)
{
	return s->uri;
}

int bk_vserver_usb_env(const bk_vserver *s, const char **out_dir, const char **out_preload)
{
	if (s->sim == NULL)
		return bk__error_set(BK_EINVALID, NULL, "server: not serving USB");
	return bk_usbsim_env(s->sim, out_dir, out_preload);
}

static void *session_main(void *arg)
{
	slot *sl = arg;
	bk_stream *st = sl->stream;
	sl->stream = NULL;
	int rc = bk_vunit_serve(sl->srv->unit, st, bk_deadline_in(HANDSHAKE_MS));
	if (rc)
		bk__log(BK_LOG_INFO, "vdev", "session ended: %s", bk_error_last()->message);
	else
		bk__log(BK_LOG_INFO, "vdev", "session ended");
	pthread_mutex_lock(&sl->srv->lock);
	sl->srv->sessions++;
	pthread_mutex_unlock(&sl->srv->lock);
	__atomic_store_n(&sl->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void reap(bk_vserver *s, bool all)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		slot *sl = &s->slots[i];
		if (!sl->used)
			continue;
		if (!all && !__atomic_load_n(&sl->finished, __ATOMIC_ACQUIRE))
			continue;
		pthread_join(sl->thread, NULL);
		sl->used = false;
	}
}

static void spawn(bk_vserver *s, bk_stream *st)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		slot *sl = &s->slots[i];
		if (sl->used)
			continue;
		sl->used = true;
		sl->finished = 0;
		sl->stream = st;
		sl->srv = s;
		if (pthread_create(&sl->thread, NULL, session_main, sl) != 0) {
			sl->used = false;
			break;
		}
		return;
	}
	bk__log(BK_LOG_WARNING, "vdev", "too many connections: one dropped");
	bk_stream_free(st);
}

int bk_vserver_run(bk_vserver *s)
{
	int rc = 0;
	while (!s->stop && !bk_vunit_dead(s->unit)) {
		reap(s, false);
		if (s->listener) {
			bk_stream *st = NULL;
			rc =
			    bk_listener_accept(s->listener, &st, bk_deadline_in(s->sim ? 50 : 100));
			if (rc == 0)
				spawn(s, st);
			else if (rc != BK_ETIMEOUT)
				break;
			rc = 0;
		}
		if (s->sim) {
			int fd = -1;
			bk_stream *st = NULL;
			rc = bk_usbsim_accept(s->sim, &fd, bk_deadline_in(50));
			if (rc == 0) {
				rc = bk_stream_fd_new(&st, fd, 1);
				if (rc == 0)
					spawn(s, st);
			} else if (rc != BK_ETIMEOUT) {
				break;
			}
			rc = 0;
		}
	}
	bk_vunit_interrupt(s->unit, true);
	reap(s, true);
	bk_vunit_interrupt(s->unit, false);
	if (rc == 0 && bk_vunit_dead(s->unit))
		rc = bk__error_set(BK_EDISCONNECTED, "power-loss", "unit %s: power lost at step %s",
		                   bk_vunit_serial(s->unit), bk_vunit_death_step(s->unit));
	return rc;
}

void bk_vserver_request_stop(bk_vserver *s)
{
	if (s)
		s->stop = 1;
}

static void *runner_main(void *arg)
{
	bk_vserver *s = arg;
	s->run_rc = bk_vserver_run(s);
	if (s->run_rc) {
		bk_strlcpy(s->run_reason, bk_error_last()->reason, sizeof(s->run_reason));
		bk_strlcpy(s->run_message, bk_error_last()->message, sizeof(s->run_message));
	}
	return NULL;
}

int bk_vserver_start(bk_vserver *s)
{
	if (s->started)
		return bk__error_set(BK_EINVALID, NULL, "server: already started");
	s->stop = 0;
	if (pthread_create(&s->runner, NULL, runner_main, s) != 0)
		return bk__error_set(BK_ERROR, "thread", "server: cannot start a thread");
	s->started = true;
	return 0;
}

int bk_vserver_stop(bk_vserver *s)
{
	if (s == NULL || !s->started)
		return 0;
	s->stop = 1;
	pthread_join(s->runner, NULL);
	s->started = false;
	if (s->run_rc) /* the error belongs to the runner's thread: raise it here */
		return bk__error_set(s->run_rc,
		                     strcmp(s->run_reason, "power-loss") == 0 ? "power-loss" : NULL,
		                     "%s", s->run_message);
	return 0;
}

unsigned bk_vserver_sessions(bk_vserver *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = s->sessions;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void bk_vserver_free(bk_vserver *s)
{
	if (s == NULL)
		return;
	bk_vserver_stop(s);
	reap(s, true);
	bk_listener_free(s->listener);
	bk_usbsim_free(s->sim);
	pthread_mutex_destroy(&s->lock);
	bk__free(s);
}
