/* SPDX-License-Identifier: GPL-3.0-or-later
 *
 * haul.live lab: LD_PRELOAD shim that makes getuid() and geteuid() return HAUL_FAKE_UID.
 *
 * Why: CRIU reads every task's rlimits with prlimit(2), which for a task whose user or group
 * IDs differ from CRIU's needs CAP_SYS_RESOURCE, and the lab's machines lack it in their
 * bounding set. There CRIU can dump only tasks that run as root:root. PostgreSQL refuses to
 * run as root, so tests/lab/image/usr/local/sbin/haul-postgres runs it as root with this
 * shim preloaded, telling it the postgres user's uid, when CAP_SYS_RESOURCE is missing. Built
 * into every lab image by `lab image build` as /usr/local/lib/haul-lab/fakeuid.so.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static long fake_uid = -1;

__attribute__((constructor)) static void haul_fakeuid_init(void)
{
    const char *s = getenv("HAUL_FAKE_UID");

    if (s && *s)
        fake_uid = atol(s);
}

uid_t getuid(void)
{
    return fake_uid >= 0 ? (uid_t)fake_uid : (uid_t)syscall(SYS_getuid);
}

uid_t geteuid(void)
{
    return fake_uid >= 0 ? (uid_t)fake_uid : (uid_t)syscall(SYS_geteuid);
}
