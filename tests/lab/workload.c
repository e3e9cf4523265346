/*
 * haul-workload: the lab's test container workload.
 *
 * - holds --memory-mib N MiB of non-zero memory and dirties --dirty-mib-per-s R MiB/s of it;
 * - adds 1 to a counter every millisecond;
 * - writes its state as JSON to /tmp/state every 10 ms (atomically, via rename):
 *   counter, token (random, chosen at start), max_gap_ms (largest CLOCK_REALTIME gap
 *   between two iterations: CRIU restores a time namespace, so CLOCK_MONOTONIC inside a
 *   restored container hides downtime), memory_mib, dirty_mib_per_s, pid, realtime_ms.
 *
 * It never prints memory contents. Built static so that a container needs nothing else.
 *
 * SPDX-License-Identifier: GPL-3.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static double now_ms(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: haul-workload [--memory-mib N] [--dirty-mib-per-s R] [--state PATH]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long memory_mib = 64;
	double dirty_mib_per_s = 0;
	const char *state_path = "/tmp/state";
	char tmp_path[4096];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--memory-mib") && i + 1 < argc)
			memory_mib = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--dirty-mib-per-s") && i + 1 < argc)
			dirty_mib_per_s = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--state") && i + 1 < argc)
			state_path = argv[++i];
		else
			usage();
	}
	snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", state_path);

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
					 "\"realtime_ms\": %.3f}\n",
					 counter, token, max_gap, memory_mib, dirty_mib_per_s, (int)getpid(), rt);
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
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
}
