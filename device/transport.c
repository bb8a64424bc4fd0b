/* Socket transports: TCP and Unix clients and listeners, and the in-process
 * pair. Each is a bk_stream over a non-blocking socket; deadlines are kept
 * with poll(2), writes use send(2) with MSG_NOSIGNAL so a closed peer is an
 * error, never a SIGPIPE. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "device/device_internal.h"

typedef struct sock_stream {
	bk_stream base;
	int fd;
	char peer[BK_URI_STRING_MAX]; /* names the other end in error messages */
} sock_stream;

/* Waits until `fd` is ready for `events` or the deadline passes. */
static int wait_ready(int fd, short events, bk_deadline d, const char *who)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int left = bk_deadline_left(d);
		int r = poll(&p, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return bk__error_errno(errno, "%s: poll", who);
		if (r == 0 && left == 0)
			return bk__error_set(BK_ETIMEOUT, "timeout", "%s: timed out", who);
	}
}

static int sock_errno(int err, const char *who, const char *what)
{
	switch (err) {
	case ECONNRESET:
		return bk__error_set(BK_EDISCONNECTED, "connection-reset",
				     "%s: connection reset by peer", who);
	case EPIPE:
	case ENOTCONN:
	case ESHUTDOWN:
		return bk__error_set(BK_EDISCONNECTED, "connection-closed",
				     "%s: connection closed by peer", who);
	case ETIMEDOUT:
		return bk__error_set(BK_ETIMEOUT, "timeout", "%s: connection timed out", who);
	default:
		return bk__error_errno(err, "%s: %s", who, what);
	}
}

static int sock_read(bk_stream *s, void *buf, size_t len, size_t *out_n, bk_deadline d)
{
	sock_stream *k = (sock_stream *)s;
	for (;;) {
		ssize_t n = recv(k->fd, buf, len, 0);
		if (n >= 0) {
			*out_n = (size_t)n;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int rc = wait_ready(k->fd, POLLIN, d, k->peer);
			if (rc)
				return rc;
			continue;
		}
		return sock_errno(errno, k->peer, "receive");
	}
}

static int sock_write(bk_stream *s, const void *buf, size_t len, bk_deadline d)
{
	sock_stream *k = (sock_stream *)s;
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = send(k->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = wait_ready(k->fd, POLLOUT, d, k->peer);
			if (rc)
				return rc;
			continue;
		}
		return sock_errno(n < 0 ? errno : EPIPE, k->peer, "send");
	}
	return 0;
}

static int sock_ctrl(bk_stream *s, int op, void *arg)
{
	sock_stream *k = (sock_stream *)s;
	if (op == BK_STREAM_CTRL_FD) {
		*(int *)arg = k->fd;
		return 0;
	}
	if (op == BK_STREAM_CTRL_SHUTDOWN_WR) {
		if (shutdown(k->fd, SHUT_WR) != 0)
			return sock_errno(errno, k->peer, "shutdown");
		return 0;
	}
	return BK_EINVALID;
}

static void sock_release(bk_stream *s)
{
	sock_stream *k = (sock_stream *)s;
	if (k->fd >= 0)
		close(k->fd);
	bk__free(k);
}

static const bk_stream_ops tcp_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "tcp",
	.read = sock_read,
	.write = sock_write,
	.release = sock_release,
	.ctrl = sock_ctrl,
};

static const bk_stream_ops unix_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "unix",
	.read = sock_read,
	.write = sock_write,
	.release = sock_release,
	.ctrl = sock_ctrl,
};

static const bk_stream_ops pair_ops = {
	.version = BK_STREAM_OPS_VERSION,
	.name = "in-process",
	.read = sock_read,
	.write = sock_write,
	.release = sock_release,
	.ctrl = sock_ctrl,
};

/* Wraps a connected non-blocking socket; takes `fd` (closed on failure). */
static int sock_new(bk_stream **out, int fd, const bk_stream_ops *ops, const char *peer)
{
	*out = NULL;
	sock_stream *k = bk__calloc(1, sizeof(*k));
	if (k == NULL) {
		close(fd);
		return BK_ENOMEM;
	}
	k->base.ops = ops;
	k->fd = fd;
	bk_strlcpy(k->peer, peer, sizeof(k->peer));
	*out = &k->base;
	return 0;
}

/* Socket buffers of a TCP connection: large enough that a bulk transfer
 * (a backup, a restore, a firmware image) keeps both ends busy instead of
 * waking each other every few frames (measured: about a tenth more channel
 * throughput on loopback than the kernel's own sizing). */
#define TCP_BUFFER (2 << 20)

static void tune_tcp(int fd)
{
	int one = 1, size = TCP_BUFFER;
	/* Best effort: a failure only costs latency or throughput. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static int connect_errno(int err, const char *who)
{
	switch (err) {
	case ECONNREFUSED:
		return bk__error_set(BK_EDISCONNECTED, "connection-refused",
				     "%s: connection refused (nothing listening)", who);
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
		return bk__error_set(BK_EDISCONNECTED, "unreachable", "%s: %s", who,
				     err == ENETUNREACH || err == ENETDOWN ? "network unreachable"
									 : "host unreachable");
	case ENOENT:
		return bk__error_set(BK_ENOTFOUND, "no-such-socket", "%s: no such socket", who);
	default:
		return sock_errno(err, who, "connect");
	}
}

/* Connects a fresh non-blocking socket to `addr` before `d`; on success *out_fd
 * holds it. */
static int connect_addr(int *out_fd, int family, const struct sockaddr *addr, socklen_t addr_len,
			bk_deadline d, const char *who)
{
	int rc = 0;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	*out_fd = -1;
	if (fd < 0)
		return bk__error_errno(errno, "%s: socket", who);
	for (;;) {
		if (connect(fd, addr, addr_len) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && family == AF_UNIX) {
			/* A Unix listener's backlog is full: retry shortly. */
			if (bk_deadline_left(d) == 0) {
				rc = bk__error_set(BK_ETIMEOUT, "timeout", "%s: connect timed out",
						   who);
				goto done;
			}
			poll(NULL, 0, 10);
			continue;
		}
		if (errno != EINPROGRESS) {
			rc = connect_errno(errno, who);
			goto done;
		}
		rc = wait_ready(fd, POLLOUT, d, who);
		if (rc) {
			if (rc == BK_ETIMEOUT)
				bk__error_set(BK_ETIMEOUT, "timeout", "%s: connect timed out", who);
			goto done;
		}
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err) {
			rc = connect_errno(err, who);
			goto done;
		}
		break;
	}
done:
	if (rc) {
		close(fd);
		return rc;
	}
	*out_fd = fd;
	return 0;
}

static int resolve(struct addrinfo **out, const char *host, uint16_t port, int passive,
		   const char *who)
{
	char service[8];
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
	snprintf(service, sizeof(service), "%u", port);
	int r = getaddrinfo(host, service, &hints, out);
	if (r == 0)
		return 0;
	*out = NULL;
	if (r == EAI_NONAME || r == EAI_NODATA || r == EAI_FAMILY)
		return bk__error_set(BK_ENOTFOUND, "unknown-host", "%s: unknown host", who);
	if (r == EAI_MEMORY)
		return bk__error_oom();
	if (r == EAI_SYSTEM)
		return bk__error_errno(errno, "%s: resolving the host", who);
	return bk__error_set(BK_EIO, "resolver-failed", "%s: resolving the host: %s", who,
			     gai_strerror(r));
}

static int tcp_connect(bk_stream **out, const bk_device_uri *uri, const char *who, bk_deadline d)
{
	struct addrinfo *list = NULL;
	int fd = -1;
	int rc = resolve(&list, uri->host, uri->port, 0, who);
	if (rc)
		goto done;
	if (list == NULL) {
		rc = bk__error_set(BK_ENOTFOUND, "unknown-host", "%s: no address", who);
		goto done;
	}
	for (struct addrinfo *a = list; a; a = a->ai_next) {
		rc = connect_addr(&fd, a->ai_family, a->ai_addr, a->ai_addrlen, d, who);
		if (rc == 0 || rc == BK_ETIMEOUT)
			break;
	}
	if (rc)
		goto done;
	tune_tcp(fd);
	rc = sock_new(out, fd, &tcp_ops, who);
done:
	if (list)
		freeaddrinfo(list);
	return rc;
}

static void unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	bk_strlcpy(sa->sun_path, path, sizeof(sa->sun_path));
}

static int unix_connect(bk_stream **out, const bk_device_uri *uri, const char *who, bk_deadline d)
{
	struct sockaddr_un sa;
	int fd = -1;
	unix_addr(&sa, uri->path);
	int rc = connect_addr(&fd, AF_UNIX, (const struct sockaddr *)&sa, sizeof(sa), d, who);
	if (rc)
		return rc;
	return sock_new(out, fd, &unix_ops, who);
}

int bk_transport_connect(bk_stream **out, const bk_device_uri *uri, bk_deadline d)
{
	char who[BK_URI_STRING_MAX];
	if (out == NULL)
		return bk__error_set(BK_EINVALID, NULL, "transport: no output given");
	*out = NULL;
	if (uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "transport: no device given");
	int rc = bk_device_uri_format(uri, who, sizeof(who));
	if (rc)
		return rc;
	if (uri->kind == BK_URI_TCP)
		return tcp_connect(out, uri, who, d);
	if (uri->kind == BK_URI_UNIX)
		return unix_connect(out, uri, who, d);
	return bk__error_set(BK_EINVALID, NULL, "%s: not a socket transport", who);
}

/* --- Listeners --- */

struct bk_listener {
	int fd;
	bk_device_uri uri;
	char who[BK_URI_STRING_MAX];
	/* unix: the socket file this listener made, removed on free */
	int made_file;
	dev_t dev;
	ino_t ino;
};

static int tcp_listen(bk_listener *l, const bk_device_uri *uri)
{
	struct addrinfo *list = NULL;
	int rc = resolve(&list, uri->host, uri->port, 1, l->who);
	if (rc)
		goto done;
	if (list == NULL) {
		rc = bk__error_set(BK_ENOTFOUND, "unknown-host", "%s: no address", l->who);
		goto done;
	}
	for (struct addrinfo *a = list; a; a = a->ai_next) {
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = bk__error_errno(errno, "%s: socket", l->who);
			continue;
		}
		int one = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
			int err = errno;
			close(fd);
			if (err == EADDRINUSE)
				rc = bk__error_set(BK_EBUSY, "address-in-use",
						   "%s: address already in use", l->who);
			else
				rc = bk__error_errno(err, "%s: listen", l->who);
			continue;
		}
		l->fd = fd;
		rc = 0;
		break;
	}
	if (rc)
		goto done;

	/* The address actually bound (the port, when 0 was asked for). */
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0) {
		rc = bk__error_errno(errno, "%s: getsockname", l->who);
		goto done;
	}
	int r = getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv, sizeof(serv),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	uint64_t port;
	if (r != 0 || bk_parse_u64(serv, &port) != 0 || port > 65535 ||
	    !bk_strlcpy(l->uri.host, host, sizeof(l->uri.host))) {
		rc = bk__error_set(BK_EIO, "listen-failed", "%s: cannot name the bound address",
				   l->who);
		goto done;
	}
	l->uri.kind = BK_URI_TCP;
	l->uri.port = (uint16_t)port;
done:
	if (list)
		freeaddrinfo(list);
	return rc;
}

/* Is someone accepting on the socket file at `sa`? 1 yes, 0 no (stale),
 * negative: an error. */
static int unix_alive(const struct sockaddr_un *sa, const char *who)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bk__error_errno(errno, "%s: socket", who);
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int err = errno;
	close(fd);
	if (r == 0 || err == EAGAIN)
		return 1;
	if (err == ECONNREFUSED)
		return 0;
	if (err == ENOENT)
		return 0;
	return bk__error_errno(err, "%s: checking the existing socket", who);
}

static int unix_listen(bk_listener *l, const bk_device_uri *uri)
{
	struct sockaddr_un sa;
	struct stat st;
	int rc = 0;
	unix_addr(&sa, uri->path);
	if (lstat(uri->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return bk__error_set(BK_EEXIST, "not-a-socket",
					     "%s: exists and is not a socket, refusing to "
					     "replace it",
					     l->who);
		rc = unix_alive(&sa, l->who);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return bk__error_set(BK_EBUSY, "address-in-use",
					     "%s: another program is listening on it", l->who);
		/* Stale: remove it, unless it was replaced meanwhile. */
		struct stat again;
		if (lstat(uri->path, &again) == 0 && again.st_dev == st.st_dev &&
		    again.st_ino == st.st_ino && S_ISSOCK(again.st_mode) &&
		    unlink(uri->path) != 0 && errno != ENOENT)
			return bk__error_errno(errno, "%s: removing the stale socket", l->who);
	} else if (errno != ENOENT) {
		return bk__error_errno(errno, "%s", l->who);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bk__error_errno(errno, "%s: socket", l->who);
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int err = errno;
		close(fd);
		if (err == EADDRINUSE)
			return bk__error_set(BK_EBUSY, "address-in-use",
					     "%s: address already in use", l->who);
		return bk__error_errno(err, "%s: bind", l->who);
	}
	l->fd = fd;
	if (lstat(uri->path, &st) == 0) {
		l->made_file = 1;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	l->uri = *uri;
	if (listen(fd, 64) != 0)
		return bk__error_errno(errno, "%s: listen", l->who);
	return 0;
}

int bk_listener_new(bk_listener **out, const bk_device_uri *uri)
{
	bk_listener *l = NULL;
	int rc;
	if (out == NULL || uri == NULL)
		return bk__error_set(BK_EINVALID, NULL, "listener: no address given");
	*out = NULL;
	l = bk__calloc(1, sizeof(*l));
	if (l == NULL)
		return BK_ENOMEM;
	l->fd = -1;
	rc = bk_device_uri_format(uri, l->who, sizeof(l->who));
	if (rc)
		goto done;
	if (uri->kind == BK_URI_TCP)
		rc = tcp_listen(l, uri);
	else if (uri->kind == BK_URI_UNIX)
		rc = unix_listen(l, uri);
	else
		rc = bk__error_set(BK_EINVALID, NULL, "%s: cannot listen on this kind of device",
				   l->who);
	if (rc)
		goto done;
	rc = bk_device_uri_format(&l->uri, l->who, sizeof(l->who));
done:
	if (rc) {
		bk_listener_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

const bk_device_uri *bk_listener_uri(const bk_listener *l)
{
	return l ? &l->uri : NULL;
}

int bk_listener_fd(const bk_listener *l)
{
	return l ? l->fd : -1;
}

int bk_listener_accept(bk_listener *l, bk_stream **out, bk_deadline d)
{
	if (out == NULL || l == NULL)
		return bk__error_set(BK_EINVALID, NULL, "listener: nothing to accept on");
	*out = NULL;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			char peer[BK_URI_STRING_MAX];
			char host[NI_MAXHOST], serv[NI_MAXSERV];
			if (l->uri.kind == BK_URI_UNIX)
				return sock_new(out, fd, &unix_ops, l->who);
			tune_tcp(fd);
			if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv,
					sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
				if (strchr(host, ':'))
					snprintf(peer, sizeof(peer), "tcp:[%s]:%s", host, serv);
				else
					snprintf(peer, sizeof(peer), "tcp:%s:%s", host, serv);
			else
				bk_strlcpy(peer, "tcp peer", sizeof(peer));
			return sock_new(out, fd, &tcp_ops, peer);
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int rc = wait_ready(l->fd, POLLIN, d, l->who);
			if (rc)
				return rc;
			continue;
		}
		return bk__error_errno(errno, "%s: accept", l->who);
	}
}

void bk_listener_free(bk_listener *l)
{
	if (l == NULL)
		return;
	if (l->made_file) {
		struct stat st;
		/* Only the socket file this listener made, not one that replaced it. */
		if (lstat(l->uri.path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
			unlink(l->uri.path);
	}
	if (l->fd >= 0)
		close(l->fd);
	bk__free(l);
}

/* --- In-process pair --- */

int bk_transport_pair_new(bk_stream **out_a, bk_stream **out_b)
{
	int sv[2];
	int rc;
	if (out_a == NULL || out_b == NULL)
		return bk__error_set(BK_EINVALID, NULL, "transport pair: no output given");
	*out_a = NULL;
	*out_b = NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return bk__error_errno(errno, "in-process transport: socketpair");
	rc = sock_new(out_a, sv[0], &pair_ops, "in-process peer b");
	if (rc) {
		close(sv[1]);
		return rc;
	}
	rc = sock_new(out_b, sv[1], &pair_ops, "in-process peer a");
	if (rc) {
		bk_stream_free(*out_a);
		*out_a = NULL;
		return rc;
	}
	return 0;
}
