/* Deterministic replay of one interleaving of the publish reservation (issue 8,
 * finding 14): while a producer is between its loads and its CAS, other
 * producers fill the ring and the consumer empties it again, so the head the
 * producer reloads is ahead of the tail it still holds. The ring is empty at
 * that point: the publish must succeed, never report RT_PUB_RING_FULL.
 * Built by tests/test_ring_stress.py; prints "ok" and exits 0 on success. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hook(int point);
#define RT_TEST_HOOK(point) hook(point)
#include "../rt_ring.c"

static rt_ring *ring;
static int nested;
static int cas_hooks;
static int reload_hooks;
static char strings[30];

static int publish_one(void)
{
    rt_record rec;
    memset(&rec, 0, sizeof(rec));
    rec.url_len = sizeof(strings);
    return rt_ring_publish(ring, &rec, strings, sizeof(strings)); /* 4 cells */
}

static void drain_all(void)
{
    static uint8_t out[1 << 16];
    size_t used;
    uint32_t count, klass;
    do {
        if (rt_ring_drain(ring, out, sizeof(out), 1000, &used, &count, &klass) != RT_OK) {
            printf("drain failed\n");
            exit(1);
        }
    } while (count);
}

static void others(int n)
{
    nested = 1;
    for (int i = 0; i < n; i++)
        if (publish_one() & RT_PUB_RING_FULL) {
            printf("setup publish hit a full ring\n");
            exit(1);
        }
    nested = 0;
}

static void hook(int point)
{
    if (nested)
        return;
    if (point == 0 && cas_hooks++ == 0) {
        others(16); /* the tail moves a whole ring ahead: our CAS fails */
    } else if (point == 1 && reload_hooks++ == 0) {
        drain_all(); /* the consumer empties the ring ... */
        others(5);   /* ... others publish past our stale tail ... */
        drain_all(); /* ... and are consumed too: head > our tail */
    }
}

int main(void)
{
    if (rt_ring_create(64, 1000, 1000, 0, 0, &ring) != RT_OK)
        return 1;
    int result = publish_one();
    if (result < 0 || (result & RT_PUB_RING_FULL)) {
        printf("spurious ring full on an empty ring (result %d)\n", result);
        return 1;
    }
    drain_all();
    rt_ring_stats st;
    rt_ring_stats_get(ring, &st);
    if (st.rejected_ring_full != 0 || st.head != st.tail) {
        printf("unexpected state: rejected %llu head %llu tail %llu\n",
               (unsigned long long)st.rejected_ring_full, (unsigned long long)st.head,
               (unsigned long long)st.tail);
        return 1;
    }
    rt_ring_close(ring);
    printf("ok\n");
    return 0;
}
