/* See rt_ring.h for the theory of operation. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_ring.h"
#include "rt_status.h"

_Static_assert(sizeof(rt_record) == 184, "rt_record layout changed");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
               "64-bit atomics must be lock-free to work across processes");

/* Test builds (csrc/tests/ring_reload.c) define this to run code at fixed
 * points of the publish loop, making one interleaving of threads deterministic. */
#ifndef RT_TEST_HOOK
#define RT_TEST_HOOK(point) ((void)0)
#endif

#define RT_MAGIC 0x52545249474e4731ULL /* "RTRING1" */
#define RT_VERSION 2u
#define RT_HEADER_SIZE 4096

typedef struct rt_header {
    uint64_t magic;
    uint32_t version;
    uint32_t cell_size;
    uint64_t ncells;
    uint64_t record_size;
    int64_t origin_realtime_ns;
    int64_t origin_monotonic_ns;
    uint32_t owner_pid;
    /* Producer and consumer cursors on their own cache lines. */
    alignas(64) _Atomic uint64_t tail;
    alignas(64) _Atomic uint64_t head;
    alignas(64) _Atomic uint64_t primary;
    _Atomic uint64_t limit;
    _Atomic uint64_t secondary;
    _Atomic uint64_t secondary_cap;
    _Atomic uint32_t pending;
    alignas(64) _Atomic uint64_t dropped_overflow;
    _Atomic uint64_t rejected_ring_full;
    _Atomic uint64_t published;
    _Atomic uint64_t corrupt_records;
    _Atomic uint64_t lost_stuck;
} rt_header;

/* A first cell's seq while its producer writes: bit 63, the cell count, and
 * the low 32 bits of the position (ncells <= 2^31, so a marker left by an
 * earlier lap never matches). A committed cell holds position + 1 (bit 63
 * clear). */
#define RT_SEQ_RESERVED (1ULL << 63)
#define RT_RESERVED(pos, k) (RT_SEQ_RESERVED | ((uint64_t)(k) << 32) | ((pos) & 0xffffffffULL))

static int reserved_at(uint64_t seq, uint64_t pos)
{
    return (seq & RT_SEQ_RESERVED) && (seq & 0xffffffffULL) == (pos & 0xffffffffULL);
}

_Static_assert(sizeof(rt_header) <= RT_HEADER_SIZE, "header too large");

typedef struct rt_cell {
    _Atomic uint64_t seq;
    uint8_t data[RT_CELL_PAYLOAD];
} rt_cell;

_Static_assert(sizeof(rt_cell) == RT_CELL_SIZE, "cell layout");

struct rt_ring {
    rt_header *hdr;
    rt_cell *cells;
    uint64_t mask;
    size_t map_size;
    int shared;
    int fd; /* shared: kept open to fstat the segment; -1 otherwise */
};

static int valid_ncells(uint64_t n)
{
    return n >= 64 && n <= (1ULL << 31) && (n & (n - 1)) == 0;
}

/* A POSIX shared-memory name: one leading '/', then 1..250 bytes, no other '/'. */
static int valid_name(const char *name)
{
    if (name == NULL || name[0] != '/')
        return 0;
    size_t n = strlen(name + 1);
    return n >= 1 && n <= 250 && strchr(name + 1, '/') == NULL;
}

/* 0 when another process truncated the segment below our mapping: touching
 * the missing pages would raise SIGBUS. */
static int segment_intact(const rt_ring *r)
{
    struct stat st;
    if (r->fd < 0)
        return 1;
    return fstat(r->fd, &st) == 0 && (size_t)st.st_size >= r->map_size;
}

static void init_header(rt_header *h, uint64_t ncells, uint64_t limit,
                        uint64_t secondary_cap, int64_t real_ns, int64_t mono_ns)
{
    h->version = RT_VERSION;
    h->cell_size = RT_CELL_SIZE;
    h->ncells = ncells;
    h->record_size = sizeof(rt_record);
    h->origin_realtime_ns = real_ns;
    h->origin_monotonic_ns = mono_ns;
    h->owner_pid = (uint32_t)getpid();
    atomic_init(&h->tail, 0);
    atomic_init(&h->head, 0);
    atomic_init(&h->primary, 0);
    atomic_init(&h->limit, limit);
    atomic_init(&h->secondary, 0);
    atomic_init(&h->secondary_cap, secondary_cap);
    atomic_init(&h->pending, 0);
    atomic_init(&h->dropped_overflow, 0);
    atomic_init(&h->rejected_ring_full, 0);
    atomic_init(&h->published, 0);
    atomic_init(&h->corrupt_records, 0);
    atomic_init(&h->lost_stuck, 0);
    /* The magic goes last so an attacher never sees a half-made header. */
    atomic_thread_fence(memory_order_release);
    h->magic = RT_MAGIC;
}

static rt_ring *wrap(void *base, uint64_t ncells, size_t map_size, int shared, int fd)
{
    rt_ring *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->hdr = (rt_header *)base;
    r->cells = (rt_cell *)((uint8_t *)base + RT_HEADER_SIZE);
    r->mask = ncells - 1;
    r->map_size = map_size;
    r->shared = shared;
    r->fd = fd;
    return r;
}

int rt_ring_create(uint64_t ncells, uint64_t limit, uint64_t secondary_cap,
                   int64_t origin_realtime_ns, int64_t origin_monotonic_ns,
                   rt_ring **out)
{
    if (out == NULL || !valid_ncells(ncells))
        return RT_EINVAL;
    size_t size = RT_HEADER_SIZE + ncells * RT_CELL_SIZE;
    void *base = aligned_alloc(4096, size);
    if (base == NULL)
        return RT_ENOMEM;
    memset(base, 0, size);
    init_header((rt_header *)base, ncells, limit, secondary_cap,
                origin_realtime_ns, origin_monotonic_ns);
    *out = wrap(base, ncells, size, 0, -1);
    if (*out == NULL) {
        free(base);
        return RT_ENOMEM;
    }
    return RT_OK;
}

int rt_ring_create_shared(const char *name, uint64_t ncells, uint64_t limit,
                          uint64_t secondary_cap, int64_t origin_realtime_ns,
                          int64_t origin_monotonic_ns, rt_ring **out)
{
    if (out == NULL || !valid_name(name) || !valid_ncells(ncells))
        return RT_EINVAL;
    size_t size = RT_HEADER_SIZE + ncells * RT_CELL_SIZE;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return errno == EEXIST ? RT_EEXIST : RT_ESYS;
    if (ftruncate(fd, (off_t)size) != 0) {
        int saved = errno;
        close(fd);
        shm_unlink(name);
        errno = saved;
        return RT_ESYS;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int saved = errno;
        close(fd);
        shm_unlink(name);
        errno = saved;
        return RT_ESYS;
    }
    /* ftruncate gave zero-filled pages: every seq starts at 0. */
    init_header((rt_header *)base, ncells, limit, secondary_cap,
                origin_realtime_ns, origin_monotonic_ns);
    *out = wrap(base, ncells, size, 1, fd);
    if (*out == NULL) {
        munmap(base, size);
        close(fd);
        shm_unlink(name);
        return RT_ENOMEM;
    }
    return RT_OK;
}

int rt_ring_attach(const char *name, rt_ring **out)
{
    struct stat st;
    if (out == NULL || !valid_name(name))
        return RT_EINVAL;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? RT_ENOENT : RT_ESYS;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return RT_ESYS;
    }
    if ((size_t)st.st_size < RT_HEADER_SIZE) {
        close(fd);
        return RT_EFOREIGN;
    }
    /* The mapping size is fixed here, from the size seen now; a later
     * truncation is caught by segment_intact() before any access. */
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                      MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int saved = errno;
        close(fd);
        errno = saved;
        return RT_ESYS;
    }
    rt_header *h = (rt_header *)base;
    uint64_t magic = h->magic;
    atomic_thread_fence(memory_order_acquire);
    if (magic != RT_MAGIC || h->version != RT_VERSION ||
        h->cell_size != RT_CELL_SIZE || h->record_size != sizeof(rt_record) ||
        !valid_ncells(h->ncells) ||
        (size_t)st.st_size != RT_HEADER_SIZE + h->ncells * RT_CELL_SIZE) {
        munmap(base, (size_t)st.st_size);
        close(fd);
        return RT_EFOREIGN;
    }
    *out = wrap(base, h->ncells, (size_t)st.st_size, 1, fd);
    if (*out == NULL) {
        munmap(base, (size_t)st.st_size);
        close(fd);
        return RT_ENOMEM;
    }
    return RT_OK;
}

int rt_ring_close(rt_ring *r)
{
    if (r == NULL)
        return RT_EINVAL;
    if (r->shared) {
        munmap(r->hdr, r->map_size);
        close(r->fd);
    } else
        free(r->hdr);
    free(r);
    return RT_OK;
}

int rt_ring_unlink(const char *name)
{
    if (!valid_name(name))
        return RT_EINVAL;
    if (shm_unlink(name) != 0)
        return errno == ENOENT ? RT_ENOENT : RT_ESYS;
    return RT_OK;
}

uint64_t rt_ring_max_record(const rt_ring *r)
{
    /* Half the ring, so one oversized record can never starve all others. */
    return (r->mask + 1) / 2 * RT_CELL_PAYLOAD - 8;
}

int rt_record_stamp(rt_record *rec, uint32_t slot)
{
    if (rec == NULL || slot >= RT_NSTAMPS)
        return RT_EINVAL;
    int64_t now = rt_now_ns();
    if (now < 0)
        return RT_ESYS;
    rec->stamp[slot] = now;
    return RT_OK;
}

/* Decide where a new entry goes; see the header comment. */
static int classify(rt_header *h)
{
    if (!atomic_load_explicit(&h->pending, memory_order_acquire)) {
        uint64_t n = atomic_load_explicit(&h->primary, memory_order_relaxed);
        while (n < atomic_load_explicit(&h->limit, memory_order_relaxed)) {
            if (atomic_compare_exchange_weak_explicit(
                    &h->primary, &n, n + 1, memory_order_acq_rel,
                    memory_order_relaxed))
                return RT_PUB_PRIMARY;
        }
    }
    int result;
    uint64_t s = atomic_load_explicit(&h->secondary, memory_order_relaxed);
    for (;;) {
        if (s >= atomic_load_explicit(&h->secondary_cap, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&h->dropped_overflow, 1, memory_order_relaxed);
            result = RT_PUB_DROPPED;
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&h->secondary, &s, s + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            result = RT_PUB_SECONDARY;
            break;
        }
    }
    uint32_t expected = 0;
    if (atomic_compare_exchange_strong_explicit(&h->pending, &expected, 1,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        result |= RT_PUB_BECAME_FULL;
    return result;
}

/* Copy len bytes into the ring's byte stream starting at cell `pos`, byte
 * `off` of its payload, skipping each cell's seq word. */
static void put_bytes(rt_ring *r, uint64_t pos, size_t off, const void *src,
                      size_t len)
{
    const uint8_t *p = src;
    pos += off / RT_CELL_PAYLOAD;
    off %= RT_CELL_PAYLOAD;
    while (len > 0) {
        rt_cell *c = &r->cells[pos & r->mask];
        size_t n = RT_CELL_PAYLOAD - off;
        if (n > len)
            n = len;
        memcpy(c->data + off, p, n);
        p += n;
        len -= n;
        off += n;
        if (off == RT_CELL_PAYLOAD) {
            off = 0;
            pos++;
        }
    }
}

static void get_bytes(const rt_ring *r, uint64_t pos, size_t off, void *dst,
                      size_t len)
{
    uint8_t *p = dst;
    pos += off / RT_CELL_PAYLOAD;
    off %= RT_CELL_PAYLOAD;
    while (len > 0) {
        const rt_cell *c = &r->cells[pos & r->mask];
        size_t n = RT_CELL_PAYLOAD - off;
        if (n > len)
            n = len;
        memcpy(p, c->data + off, n);
        p += n;
        len -= n;
        off += n;
        if (off == RT_CELL_PAYLOAD) {
            off = 0;
            pos++;
        }
    }
}

/* Reserve, classify, copy and commit one record whose fixed part is `rec`
 * (already validated) followed by strings_len bytes of strings. */
static int publish(rt_ring *r, const rt_record *rec, const char *strings,
                   uint32_t strings_len)
{
    rt_header *h = r->hdr;
    uint64_t len = sizeof(rt_record) + (uint64_t)strings_len;
    if (len > rt_ring_max_record(r))
        return RT_ETOOBIG;
    if (!segment_intact(r))
        return RT_ETRUNC;
    /* The first cell also carries the record length (8 bytes). */
    uint64_t k = (len + 8 + RT_CELL_PAYLOAD - 1) / RT_CELL_PAYLOAD;
    uint64_t ncells = r->mask + 1;

    /* head before tail: head never passes tail, so t - hd cannot underflow.
     * A failed CAS refreshes t, which only grows, so that stays true; but a
     * reloaded head may be ahead of an old t, so the reload refreshes both,
     * in the same order. */
    uint64_t hd = atomic_load_explicit(&h->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&h->tail, memory_order_acquire);
    for (;;) {
        if (t + k - hd > ncells) {
            RT_TEST_HOOK(1);
            hd = atomic_load_explicit(&h->head, memory_order_acquire);
            t = atomic_load_explicit(&h->tail, memory_order_acquire);
            if (t + k - hd > ncells) {
                atomic_fetch_add_explicit(&h->rejected_ring_full, 1,
                                          memory_order_relaxed);
                return RT_PUB_RING_FULL;
            }
        }
        RT_TEST_HOOK(0);
        if (atomic_compare_exchange_weak_explicit(&h->tail, &t, t + k,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    atomic_store_explicit(&r->cells[t & r->mask].seq, RT_RESERVED(t, k),
                          memory_order_relaxed);

    int result = classify(h);
    rt_record copy = *rec;
    copy.flags &= (uint16_t)~RT_FLAG_CLASS_MASK;
    if (result & RT_PUB_SECONDARY)
        copy.flags |= RT_FLAG_SECONDARY;
    if (result & RT_PUB_DROPPED)
        copy.flags |= RT_FLAG_DROPPED;

    /* Continuation cells get seq 0, so a stale seq from an earlier lap can
     * never be read as a committed record start. */
    for (uint64_t i = 1; i < k; i++)
        atomic_store_explicit(&r->cells[(t + i) & r->mask].seq, 0,
                              memory_order_relaxed);
    put_bytes(r, t, 0, &len, 8);
    put_bytes(r, t, 8, &copy, sizeof(copy));
    if (strings_len)
        put_bytes(r, t, 8 + sizeof(copy), strings, strings_len);
    atomic_fetch_add_explicit(&h->published, 1, memory_order_relaxed);
    atomic_store_explicit(&r->cells[t & r->mask].seq, t + 1,
                          memory_order_release);
    return result;
}

int rt_ring_publish(rt_ring *r, const rt_record *rec, const char *strings,
                    uint32_t strings_len)
{
    if (r == NULL || rec == NULL || (strings == NULL && strings_len != 0))
        return RT_EINVAL;
    if ((uint64_t)rec->url_len + rec->text_len != strings_len)
        return RT_EINVAL;
    return publish(r, rec, strings, strings_len);
}

int rt_ring_publish_raw(rt_ring *r, const char *buf, uint32_t len)
{
    if (r == NULL || buf == NULL || len < sizeof(rt_record))
        return RT_EINVAL;
    rt_record rec;
    memcpy(&rec, buf, sizeof(rec)); /* buf need not be aligned */
    uint32_t strings_len = len - (uint32_t)sizeof(rt_record);
    if ((uint64_t)rec.url_len + rec.text_len != strings_len)
        return RT_EINVAL;
    return publish(r, &rec, buf + sizeof(rt_record), strings_len);
}

/* The first position after `pos` (exclusive) whose cell starts a committed or
 * reserved record, or the tail: where the consumer resumes after stepping over
 * a damaged record or a dead reservation. Continuation cells hold seq 0. */
static uint64_t next_start(const rt_ring *r, uint64_t pos)
{
    uint64_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    for (pos++; pos < t; pos++) {
        uint64_t seq = atomic_load_explicit(&r->cells[pos & r->mask].seq,
                                            memory_order_acquire);
        if (seq == pos + 1 || reserved_at(seq, pos))
            break;
    }
    return pos;
}

int rt_ring_drain(rt_ring *r, uint8_t *out, size_t cap, uint32_t max_count,
                  size_t *used, uint32_t *count, uint32_t *klass)
{
    if (r == NULL || out == NULL || used == NULL || count == NULL ||
        klass == NULL)
        return RT_EINVAL;
    rt_header *h = r->hdr;
    if (!segment_intact(r))
        return RT_ETRUNC;
    uint64_t hd = atomic_load_explicit(&h->head, memory_order_relaxed);
    size_t pos = 0;
    uint32_t n = 0;
    uint32_t run_class = 0;
    *used = 0;
    *count = 0;
    *klass = 0;
    while (n < max_count) {
        const rt_cell *c = &r->cells[hd & r->mask];
        if (atomic_load_explicit(&c->seq, memory_order_acquire) != hd + 1)
            break;
        uint64_t len;
        uint32_t lens[2]; /* url_len, text_len */
        get_bytes(r, hd, 0, &len, 8);
        get_bytes(r, hd, 8 + offsetof(rt_record, url_len), lens, sizeof(lens));
        if (len < sizeof(rt_record) || len > rt_ring_max_record(r) ||
            len != sizeof(rt_record) + (uint64_t)lens[0] + lens[1]) {
            /* A damaged record (a stray write into a shared segment): deliver
             * what was read, then step over it with a counted error. */
            if (n > 0)
                break;
            hd = next_start(r, hd);
            atomic_fetch_add_explicit(&h->corrupt_records, 1, memory_order_relaxed);
            atomic_store_explicit(&h->head, hd, memory_order_release);
            continue;
        }
        uint16_t flags;
        get_bytes(r, hd, 8 + offsetof(rt_record, flags), &flags, sizeof(flags));
        uint32_t cls = flags & RT_FLAG_CLASS_MASK;
        if (n > 0 && cls != run_class)
            break;
        size_t need = 8 + ((len + 7) & ~(uint64_t)7);
        if (pos + need > cap) {
            if (n == 0)
                return RT_ETOOBIG;
            break;
        }
        memcpy(out + pos, &len, 8);
        get_bytes(r, hd, 8, out + pos + 8, len);
        memset(out + pos + 8 + len, 0, need - 8 - len);
        pos += need;
        run_class = cls;
        n++;
        uint64_t k = (len + 8 + RT_CELL_PAYLOAD - 1) / RT_CELL_PAYLOAD;
        hd += k;
        /* Release the cells only after the copy above is complete. */
        atomic_store_explicit(&h->head, hd, memory_order_release);
    }
    *used = pos;
    *count = n;
    *klass = run_class;
    return RT_OK;
}

int rt_ring_skip_stuck(rt_ring *r, uint64_t at, uint64_t *skipped)
{
    if (r == NULL || skipped == NULL)
        return RT_EINVAL;
    *skipped = 0;
    if (!segment_intact(r))
        return RT_ETRUNC;
    rt_header *h = r->hdr;
    uint64_t hd = atomic_load_explicit(&h->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&h->tail, memory_order_acquire);
    if (hd != at || t <= hd)
        return RT_OK;
    uint64_t seq = atomic_load_explicit(&r->cells[hd & r->mask].seq,
                                        memory_order_acquire);
    if (seq == hd + 1)
        return RT_OK; /* committed after all */
    uint64_t next;
    uint64_t k = (seq >> 32) & 0x7fffffffULL;
    if (reserved_at(seq, hd) && k >= 1 && hd + k <= t)
        next = hd + k;
    else
        next = next_start(r, hd); /* died between its CAS and its mark */
    *skipped = next - hd;
    atomic_fetch_add_explicit(&h->lost_stuck, 1, memory_order_relaxed);
    atomic_store_explicit(&h->head, next, memory_order_release);
    return RT_OK;
}

int rt_ring_stats_get(const rt_ring *r, rt_ring_stats *out)
{
    if (r == NULL || out == NULL)
        return RT_EINVAL;
    rt_header *h = r->hdr;
    out->ncells = h->ncells;
    out->head = atomic_load(&h->head);
    out->tail = atomic_load(&h->tail);
    out->primary = atomic_load(&h->primary);
    out->limit = atomic_load(&h->limit);
    out->secondary = atomic_load(&h->secondary);
    out->secondary_cap = atomic_load(&h->secondary_cap);
    out->dropped_overflow = atomic_load(&h->dropped_overflow);
    out->rejected_ring_full = atomic_load(&h->rejected_ring_full);
    out->published = atomic_load(&h->published);
    out->pending = atomic_load(&h->pending);
    out->owner_pid = h->owner_pid;
    out->origin_realtime_ns = h->origin_realtime_ns;
    out->origin_monotonic_ns = h->origin_monotonic_ns;
    out->corrupt_records = atomic_load(&h->corrupt_records);
    out->lost_stuck = atomic_load(&h->lost_stuck);
    return RT_OK;
}

int rt_ring_set_limit(rt_ring *r, uint64_t limit)
{
    if (r == NULL)
        return RT_EINVAL;
    atomic_store(&r->hdr->limit, limit);
    return RT_OK;
}

int rt_ring_set_secondary_cap(rt_ring *r, uint64_t cap)
{
    if (r == NULL)
        return RT_EINVAL;
    atomic_store(&r->hdr->secondary_cap, cap);
    return RT_OK;
}

int rt_ring_claim_primary(rt_ring *r, uint64_t want, uint64_t *got)
{
    if (r == NULL || got == NULL)
        return RT_EINVAL;
    rt_header *h = r->hdr;
    uint64_t n = atomic_load(&h->primary);
    for (;;) {
        uint64_t lim = atomic_load(&h->limit);
        uint64_t room = n < lim ? lim - n : 0;
        uint64_t take = want < room ? want : room;
        if (take == 0) {
            *got = 0;
            return RT_OK;
        }
        if (atomic_compare_exchange_weak(&h->primary, &n, n + take)) {
            *got = take;
            return RT_OK;
        }
    }
}

static int release(_Atomic uint64_t *counter, uint64_t n)
{
    uint64_t v = atomic_load(counter);
    do {
        if (n > v)
            return RT_EINVAL;
    } while (!atomic_compare_exchange_weak(counter, &v, v - n));
    return RT_OK;
}

int rt_ring_release_primary(rt_ring *r, uint64_t n)
{
    return r == NULL ? RT_EINVAL : release(&r->hdr->primary, n);
}

int rt_ring_release_secondary(rt_ring *r, uint64_t n)
{
    return r == NULL ? RT_EINVAL : release(&r->hdr->secondary, n);
}

int rt_ring_try_set_pending(rt_ring *r, uint32_t *won)
{
    if (r == NULL || won == NULL)
        return RT_EINVAL;
    uint32_t expected = 0;
    *won = atomic_compare_exchange_strong(&r->hdr->pending, &expected, 1) ? 1 : 0;
    return RT_OK;
}

int rt_ring_clear_pending(rt_ring *r)
{
    if (r == NULL)
        return RT_EINVAL;
    atomic_store(&r->hdr->pending, 0);
    return RT_OK;
}
