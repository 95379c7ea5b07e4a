/* A slow disk for benchmarks: every fsync/fdatasync first sleeps
 * SLOWSYNC_MS milliseconds (default 20), as an SD card's flush can take.
 * Built and preloaded by bench/poll.py --fsync-ms; never used by the product.
 *   gcc -shared -fPIC -O2 -o slowsync.so slowsync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void pause_ms(void) {
    const char *v = getenv("SLOWSYNC_MS");
    long ms = v ? atol(v) : 20;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    pause_ms();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    pause_ms();
    return real(fd);
}
