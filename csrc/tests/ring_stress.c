/* Stress harness for the ring, built by the test suite with
 * -fsanitize=thread (and plainly): producers publish self-describing records
 * while one consumer drains; every record is checked for tearing and counted
 * exactly once. A second phase races the buffer classification. Exit 0 only
 * when every check passed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../rt_ring.h"
#include "../rt_status.h"

#define PRODUCERS 4

static rt_ring *ring;
static long per_producer;
static atomic_int producers_done;
static atomic_long became_full;

static uint32_t url_len_for(long i) { return (uint32_t)(1 + (i * 37) % 700); }

static void *produce(void *arg)
{
    long id = (long)(intptr_t)arg;
    char *buf = malloc(1024);
    for (long i = 0; i < per_producer; i++) {
        rt_record rec;
        memset(&rec, 0, sizeof(rec));
        rec.stamp[0] = id;
        rec.stamp[1] = i;
        for (int s = 2; s < RT_NSTAMPS; s++)
            rec.stamp[s] = id * 1000003 + i + s;
        rec.url_len = url_len_for(i);
        rec.text_len = 3;
        for (uint32_t b = 0; b < rec.url_len + 3; b++)
            buf[b] = (char)('a' + (id + i + b) % 26);
        for (;;) {
            int st = rt_ring_publish(ring, &rec, buf, rec.url_len + 3);
            if (st < 0) {
                fprintf(stderr, "publish failed %d\n", st);
                exit(2);
            }
            if (st & RT_PUB_BECAME_FULL)
                atomic_fetch_add(&became_full, 1);
            if (!(st & RT_PUB_RING_FULL))
                break;
            sched_yield();
        }
    }
    free(buf);
    atomic_fetch_add(&producers_done, 1);
    return NULL;
}

static int check_record(const uint8_t *p, uint64_t len, char *seen)
{
    rt_record rec;
    memcpy(&rec, p, sizeof(rec));
    long id = (long)rec.stamp[0], i = (long)rec.stamp[1];
    if (id < 0 || id >= PRODUCERS || i < 0 || i >= per_producer)
        return 0;
    for (int s = 2; s < RT_NSTAMPS; s++)
        if (rec.stamp[s] != id * 1000003 + i + s)
            return 0;
    if (rec.url_len != url_len_for(i) || rec.text_len != 3 ||
        len != sizeof(rec) + rec.url_len + 3)
        return 0;
    const uint8_t *str = p + sizeof(rec);
    for (uint32_t b = 0; b < rec.url_len + 3; b++)
        if (str[b] != (uint8_t)('a' + (id + i + b) % 26))
            return 0;
    char *flag = &seen[id * per_producer + i];
    if (*flag)
        return 0; /* duplicate */
    *flag = 1;
    return 1;
}

static int transport_phase(void)
{
    pthread_t th[PRODUCERS];
    size_t cap = 1 << 16;
    uint8_t *out = malloc(cap);
    char *seen = calloc((size_t)PRODUCERS * per_producer, 1);
    long got = 0;
    if (rt_ring_create(1024, UINT64_MAX / 2, 0, 0, 0, &ring) != RT_OK)
        return 0;
    for (long p = 0; p < PRODUCERS; p++)
        pthread_create(&th[p], NULL, produce, (void *)(intptr_t)p);
    for (;;) {
        int done = atomic_load(&producers_done) == PRODUCERS;
        size_t used;
        uint32_t count, klass;
        int st = rt_ring_drain(ring, out, cap, 512, &used, &count, &klass);
        if (st != RT_OK) {
            fprintf(stderr, "drain failed %d\n", st);
            return 0;
        }
        if (count && klass != 0) {
            fprintf(stderr, "unlimited buffer gave class %u\n", klass);
            return 0;
        }
        for (size_t pos = 0; pos < used;) {
            uint64_t len;
            memcpy(&len, out + pos, 8);
            if (!check_record(out + pos + 8, len, seen)) {
                fprintf(stderr, "torn or duplicate record at %ld\n", got);
                return 0;
            }
            pos += 8 + ((len + 7) & ~(uint64_t)7);
            got++;
        }
        if (done && count == 0)
            break;
    }
    for (long p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    rt_ring_stats st;
    rt_ring_stats_get(ring, &st);
    rt_ring_close(ring);
    free(out);
    free(seen);
    if (got != PRODUCERS * per_producer) {
        fprintf(stderr, "lost records: got %ld of %ld\n", got,
                PRODUCERS * per_producer);
        return 0;
    }
    printf("transport: %ld records, %llu ring-full retries\n", got,
           (unsigned long long)st.rejected_ring_full);
    return 1;
}

static int classify_phase(void)
{
    /* limit 100, overflow room 100: exactly 100 primary, 100 secondary, the
     * rest dropped, and exactly one producer told about the transition. */
    pthread_t th[PRODUCERS];
    long saved = per_producer;
    per_producer = 100;
    atomic_store(&producers_done, 0);
    atomic_store(&became_full, 0);
    if (rt_ring_create(1 << 16, 100, 100, 0, 0, &ring) != RT_OK)
        return 0;
    for (long p = 0; p < PRODUCERS; p++)
        pthread_create(&th[p], NULL, produce, (void *)(intptr_t)p);
    for (long p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    rt_ring_stats st;
    rt_ring_stats_get(ring, &st);
    rt_ring_close(ring);
    per_producer = saved;
    if (st.primary != 100 || st.secondary != 100 ||
        st.dropped_overflow != PRODUCERS * 100 - 200 || st.pending != 1 ||
        atomic_load(&became_full) != 1) {
        fprintf(stderr, "classification wrong: primary %llu secondary %llu "
                "dropped %llu became_full %ld\n",
                (unsigned long long)st.primary,
                (unsigned long long)st.secondary,
                (unsigned long long)st.dropped_overflow,
                atomic_load(&became_full));
        return 0;
    }
    printf("classify: ok\n");
    return 1;
}

int main(int argc, char **argv)
{
    per_producer = argc > 1 ? atol(argv[1]) : 50000;
    if (!transport_phase() || !classify_phase())
        return 1;
    printf("ok\n");
    return 0;
}
