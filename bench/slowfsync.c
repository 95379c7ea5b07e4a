/* LD_PRELOAD shim: a slow disk (an SD card) for benchmarks.
 *
 * Adds SLOWFSYNC_MS milliseconds (default 20, fractions allowed) before every
 * fsync, fdatasync, sync_file_range and msync, then calls the real one. The
 * process that waits is the one that synced, so a gateway that syncs on its
 * event-loop thread stalls exactly as it would on an SD card.
 *
 * Built by bench/run into a temp folder:
 *   gcc -shared -fPIC -O2 -o slowfsync.so bench/slowfsync.c -ldl
 * Used as:
 *   LD_PRELOAD=/tmp/.../slowfsync.so SLOWFSYNC_MS=20 python -m gateway run ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>

static long delay_ns(void)
{
    static long ns = -1;
    if (ns < 0) {
        const char *s = getenv("SLOWFSYNC_MS");
        double ms = s ? atof(s) : 20.0;
        ns = ms > 0 ? (long)(ms * 1e6) : 0;
    }
    return ns;
}

static void slow(void)
{
    long ns = delay_ns();
    struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
    int saved = errno;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    errno = saved;
}

#define REAL(name) static __typeof__(name) *real_##name; \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int fsync(int fd)
{
    REAL(fsync);
    slow();
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    slow();
    return real_fdatasync(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
    REAL(sync_file_range);
    slow();
    return real_sync_file_range(fd, offset, nbytes, flags);
}

int msync(void *addr, size_t length, int flags)
{
    REAL(msync);
    slow();
    return real_msync(addr, length, flags);
}
