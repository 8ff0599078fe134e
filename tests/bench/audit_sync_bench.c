/*
 * audit_sync_bench.c - what one durable audit record costs on a file system, for each way
 * the audit log could lay out its file (issue 15): the wall time and the CPU time of one
 * write of a line + fdatasync().
 *
 *   audit_sync_bench [--dir DIR] [--n N] [--rounds R] [--line BYTES] [--prealloc BYTES]
 *
 * Patterns, each in a fresh file in DIR, interleaved round by round (the disk is shared):
 *   append      O_APPEND write + fdatasync: the file grows, so every sync also writes the
 *               inode (its size) - what signer/audit.c does;
 *   dsync       the same through O_DSYNC (no separate fdatasync call);
 *   fallocate   fallocate(0, BYTES) first, then pwrite in place + fdatasync: the blocks
 *               are allocated but "unwritten", and converting an extent to written is a
 *               metadata change that the sync has to write too;
 *   zeroed      BYTES of zeros written and fsync'ed first, then pwrite in place +
 *               fdatasync: no size change, no extent change, only the data block;
 *   zeroed+ahead as zeroed, but the zeros are written ahead in PREALLOC-sized steps while
 *               the records go (the write and sync of each step counted in the figures),
 *               as a writer that keeps a zero tail would run.
 * Output: per pattern, the median over rounds of each round's median and p99 wall µs per
 * record, the spread (min-max of the round medians), and the CPU µs per record
 * (utime + stime of this process, over all rounds). Label `bench`: never run by the tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 31

enum pattern { P_APPEND, P_DSYNC, P_FALLOCATE, P_ZEROED, P_AHEAD, P_COUNT };
static const char *const pattern_names[P_COUNT] = {"append", "dsync", "fallocate", "zeroed", "zeroed+ahead"};

struct stats {
    double med[MAX_ROUNDS], p99[MAX_ROUNDS];
    double cpu_us; /* summed over rounds */
    unsigned long long n;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec * 1e6 +
           (double)ru.ru_stime.tv_usec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int write_zeros(int fd, off_t off, size_t len)
{
    static char zeros[65536];
    while (len > 0) {
        size_t n = len < sizeof(zeros) ? len : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, off);
        if (w <= 0) {
            return -1;
        }
        off += w;
        len -= (size_t)w;
    }
    return 0;
}

/* One round of one pattern: n records of line_len bytes. Returns 0, or -1 with errno. */
static int run(enum pattern p, const char *dir, unsigned n, const char *line, size_t line_len, size_t prealloc,
               uint64_t *lat, struct stats *st, unsigned round)
{
    char path[4096];
    int fd, flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    size_t total = (size_t)n * line_len;
    off_t off = 0, zero_end = 0;

    snprintf(path, sizeof(path), "%s/audit_sync_bench.%d.%s", dir, (int)getpid(), pattern_names[p]);
    if (p == P_APPEND) {
        flags |= O_APPEND;
    } else if (p == P_DSYNC) {
        flags |= O_APPEND | O_DSYNC;
    }
    fd = open(path, flags, 0600);
    if (fd < 0) {
        return -1;
    }
    (void)unlink(path);
    /* The set-up (not timed): a file that exists on disk, with its blocks ready if the
     * pattern preallocates. */
    if (p == P_FALLOCATE && fallocate(fd, 0, 0, (off_t)total) != 0) {
        close(fd);
        return -1;
    }
    if (p == P_ZEROED && write_zeros(fd, 0, total) != 0) {
        close(fd);
        return -1;
    }
    if (fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    double c0 = cpu_us();
    for (unsigned i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        if (p == P_AHEAD && off + (off_t)line_len > zero_end) {
            /* The writer's own cost of keeping a zero tail: write the next step and make
             * it (and the size) durable before records go into it. */
            if (write_zeros(fd, zero_end, prealloc) != 0 || fdatasync(fd) != 0) {
                close(fd);
                return -1;
            }
            zero_end += (off_t)prealloc;
        }
        ssize_t w = p == P_APPEND || p == P_DSYNC ? write(fd, line, line_len) : pwrite(fd, line, line_len, off);
        if (w != (ssize_t)line_len || (p != P_DSYNC && fdatasync(fd) != 0)) {
            close(fd);
            return -1;
        }
        off += (off_t)line_len;
        lat[i] = now_ns() - t0;
    }
    st->cpu_us += cpu_us() - c0;
    st->n += n;
    close(fd);
    qsort(lat, n, sizeof(lat[0]), cmp_u64);
    st->med[round] = (double)lat[n / 2] / 1000.0;
    st->p99[round] = (double)lat[(size_t)n * 99 / 100] / 1000.0;
    return 0;
}

static double median_of(const double *v, unsigned n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, n * sizeof(v[0]));
    qsort(s, n, sizeof(s[0]), cmp_double);
    return s[n / 2];
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    unsigned n = 2000, rounds = 5;
    size_t line_len = 400, prealloc = 1 << 20;
    static struct stats st[P_COUNT];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            n = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--line") == 0 && i + 1 < argc) {
            line_len = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--prealloc") == 0 && i + 1 < argc) {
            prealloc = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: audit_sync_bench [--dir DIR] [--n N] [--rounds R] [--line BYTES] "
                            "[--prealloc BYTES]\n");
            return 2;
        }
    }
    if (n < 100 || n > 1000000 || rounds < 1 || rounds > MAX_ROUNDS || line_len < 2 || line_len > 65536 ||
        prealloc < line_len || prealloc > (1u << 30)) {
        fprintf(stderr, "audit_sync_bench: an argument is out of range\n");
        return 2;
    }
    char *line = malloc(line_len);
    uint64_t *lat = calloc(n, sizeof(*lat));
    if (line == NULL || lat == NULL) {
        return 1;
    }
    memset(line, 'a', line_len - 1);
    line[line_len - 1] = '\n';
    for (unsigned r = 0; r < rounds; r++) {
        for (int p = 0; p < P_COUNT; p++) {
            if (run((enum pattern)p, dir, n, line, line_len, prealloc, lat, &st[p], r) != 0) {
                fprintf(stderr, "audit_sync_bench: %s in %s: %s\n", pattern_names[p], dir, strerror(errno));
                return 1;
            }
        }
    }
    printf("audit_sync_bench: %s, %u records of %zu bytes per pattern and round, %u rounds (interleaved), "
           "zero steps of %zu bytes\n",
           dir, n, line_len, rounds, prealloc);
    printf("| pattern      | p50 µs (median) | p50 min-max   | p99 µs (median) | CPU µs/record |\n");
    printf("|--------------|-----------------|---------------|-----------------|---------------|\n");
    for (int p = 0; p < P_COUNT; p++) {
        double lo = st[p].med[0], hi = st[p].med[0];
        for (unsigned r = 1; r < rounds; r++) {
            lo = st[p].med[r] < lo ? st[p].med[r] : lo;
            hi = st[p].med[r] > hi ? st[p].med[r] : hi;
        }
        printf("| %-12s | %15.1f | %5.0f - %5.0f | %15.1f | %13.1f |\n", pattern_names[p], median_of(st[p].med, rounds),
               lo, hi, median_of(st[p].p99, rounds), st[p].n > 0 ? st[p].cpu_us / (double)st[p].n : 0.0);
    }
    free(line);
    free(lat);
    return 0;
}
