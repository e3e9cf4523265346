/*
 * haul-workload: the lab's test container workload.
 *
 * - holds --memory-mib N MiB of non-zero memory and dirties --dirty-mib-per-s R MiB/s of it;
 * - adds 1 to a counter every millisecond;
 * - with --listen PORT, also serves TCP on 0.0.0.0:PORT (up to MAX_CLIENTS connections at
 *   once, single-threaded, inside the 1 ms loop): every request is one line (anything that
 *   ends in '\n'), and the answer is the current counter in decimal followed by '\n';
 * - writes its state as JSON to /tmp/state every 10 ms (atomically, via rename):
 *   counter, token (random, chosen at start), max_gap_ms (largest CLOCK_REALTIME gap
 *   between two iterations: CRIU restores a time namespace, so CLOCK_MONOTONIC inside a
 *   restored container hides downtime), memory_mib, dirty_mib_per_s, pid, realtime_ms,
 *   listen_port (null without --listen) and connections (client connections open now).
 *
 * Between two ticks it waits in ppoll() until the next tick's deadline, so network activity
 * never delays or adds ticks. It never prints memory contents. Built static so that a
 * container needs nothing else.
 *
 * SPDX-License-Identifier: GPL-3.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAX_CLIENTS 64
#define OUT_SIZE 4096
#define ANSWER_MAX 21 /* 20 digits of a 64-bit counter and '\n' */

/* One client connection: the answers not written yet. */
struct client {
	char out[OUT_SIZE + 1]; /* + 1: sprintf's '\0' */
	size_t out_len;
};

static struct pollfd pfds[1 + MAX_CLIENTS]; /* [0]: the listening socket, or fd -1 */
static struct client clients[1 + MAX_CLIENTS];
static int nclients;

static double now_ms(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: haul-workload [--memory-mib N] [--dirty-mib-per-s R] [--state PATH]"
		" [--listen PORT]\n");
	exit(2);
}

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, MAX_CLIENTS)) {
		perror("listen");
		exit(1);
	}
	return fd;
}

static void drop_client(int i)
{
	close(pfds[i].fd);
	nclients--;
	/* Keep the array dense: move the last client into the hole. */
	if (i != nclients + 1) {
		pfds[i] = pfds[nclients + 1];
		clients[i] = clients[nclients + 1];
	}
}

static void accept_clients(void)
{
	int one = 1;
	for (;;) {
		int fd = accept4(pfds[0].fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or an aborted connection: nothing to do */
		if (nclients == MAX_CLIENTS) {
			close(fd); /* full: the client sees the connection closed */
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		nclients++;
		pfds[nclients] = (struct pollfd){ .fd = fd, .events = POLLIN };
		clients[nclients].out_len = 0;
	}
}

/* Reads requests, queues one answer per '\n', writes what the socket takes. 0: drop it. */
static int serve_client(int i, unsigned long long counter)
{
	struct client *c = &clients[i];
	char in[OUT_SIZE / ANSWER_MAX];
	/* Read only as much as can be answered: each byte may be a '\n'. */
	size_t room = (OUT_SIZE - c->out_len) / ANSWER_MAX;
	if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR) && room) {
		ssize_t n = read(pfds[i].fd, in, room < sizeof(in) ? room : sizeof(in));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return 0;
		for (ssize_t k = 0; k < n; k++)
			if (in[k] == '\n')
				c->out_len += sprintf(c->out + c->out_len, "%llu\n", counter);
	}
	if (c->out_len) {
		ssize_t n = send(pfds[i].fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return 0;
		if (n > 0) {
			memmove(c->out, c->out + n, c->out_len - n);
			c->out_len -= n;
		}
	}
	/* Stop reading while the answers cannot be written (a client that does not read). */
	pfds[i].events = (c->out_len ? POLLOUT : 0) |
			 (OUT_SIZE - c->out_len >= ANSWER_MAX ? POLLIN : 0);
	return 1;
}

/* Serves the network (when listening) until the monotonic deadline has passed. */
static void wait_until(const struct timespec *deadline, unsigned long long counter)
{
	for (;;) {
		struct timespec now, left;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = deadline->tv_sec - now.tv_sec;
		left.tv_nsec = deadline->tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_nsec += 1000000000;
			left.tv_sec--;
		}
		if (left.tv_sec < 0 || (left.tv_sec == 0 && left.tv_nsec == 0))
			return;
		if (pfds[0].fd < 0) {
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline, NULL);
			continue; /* EINTR, or check the time once more */
		}
		if (ppoll(pfds, 1 + nclients, &left, NULL) <= 0)
			continue; /* timeout or EINTR */
		/* Backwards, so that drop_client's move only touches clients already served. */
		for (int i = nclients; i >= 1; i--)
			if (pfds[i].revents && !serve_client(i, counter))
				drop_client(i);
		if (pfds[0].revents & POLLIN)
			accept_clients();
	}
}

int main(int argc, char **argv)
{
	unsigned long memory_mib = 64;
	double dirty_mib_per_s = 0;
	const char *state_path = "/tmp/state";
	char tmp_path[4096];
	int listen_port = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--memory-mib") && i + 1 < argc)
			memory_mib = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--dirty-mib-per-s") && i + 1 < argc)
			dirty_mib_per_s = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--state") && i + 1 < argc)
			state_path = argv[++i];
		else if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			listen_port = atoi(argv[++i]);
		else
			usage();
	}
	if (listen_port < 0 || listen_port > 65535)
		usage();
	snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", state_path);
	pfds[0] = (struct pollfd){ .fd = listen_port ? listen_on(listen_port) : -1, .events = POLLIN };
	char port_json[8] = "null";
	if (listen_port)
		snprintf(port_json, sizeof(port_json), "%d", listen_port);

	uint64_t tok[2];
	if (getrandom(tok, sizeof(tok), 0) != sizeof(tok)) {
		perror("getrandom");
		return 1;
	}
	char token[33];
	snprintf(token, sizeof(token), "%016llx%016llx", (unsigned long long)tok[0],
		 (unsigned long long)tok[1]);

	size_t size = memory_mib << 20;
	unsigned char *mem = NULL;
	size_t npages = size / PAGE;
	if (size) {
		mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		/* Non-zero, non-repeating content so that no page is trivially skipped. */
		uint64_t x = tok[0] | 1;
		for (size_t off = 0; off < size; off += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(mem + off, &x, 8);
		}
	}

	/* Pages to dirty per 1 ms iteration, kept as a fraction. */
	double pages_per_ms = dirty_mib_per_s * 256.0 / 1000.0;
	double dirty_debt = 0;
	size_t cursor = 0;

	unsigned long long counter = 0;
	double max_gap = 0;
	double prev_rt = now_ms(CLOCK_REALTIME);
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);

	for (;;) {
		counter++;
		double rt = now_ms(CLOCK_REALTIME);
		double gap = rt - prev_rt;
		if (gap > max_gap)
			max_gap = gap;
		prev_rt = rt;

		if (npages && pages_per_ms > 0) {
			dirty_debt += pages_per_ms;
			while (dirty_debt >= 1) {
				mem[cursor * PAGE + (counter % PAGE)] ^= 0x5a;
				cursor = (cursor + 1) % npages;
				dirty_debt -= 1;
			}
		}

		if (counter % 10 == 0) {
			char buf[512];
			int n = snprintf(buf, sizeof(buf),
					 "{\"counter\": %llu, \"token\": \"%s\", \"max_gap_ms\": %.3f, "
					 "\"memory_mib\": %lu, \"dirty_mib_per_s\": %.3f, \"pid\": %d, "
					 "\"realtime_ms\": %.3f, \"listen_port\": %s, \"connections\": %d}\n",
					 counter, token, max_gap, memory_mib, dirty_mib_per_s, (int)getpid(), rt,
					 port_json, nclients);
			int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd >= 0) {
				if (write(fd, buf, n) == n)
					rename(tmp_path, state_path);
				close(fd);
			}
		}

		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		struct timespec mono;
		clock_gettime(CLOCK_MONOTONIC, &mono);
		/* Fell behind by more than 100 ms (frozen, or a loaded machine): do not catch up. */
		double behind = (mono.tv_sec - next.tv_sec) * 1000.0 + (mono.tv_nsec - next.tv_nsec) / 1e6;
		if (behind > 100)
			next = mono;
		wait_until(&next, counter);
	}
}
