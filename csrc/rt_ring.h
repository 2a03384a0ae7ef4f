/* restiming lock-free ring of Resource Timing records.
 *
 * Theory of operation
 * -------------------
 * Producers (threads, or processes mapping the same shared-memory segment)
 * publish fixed-layout records followed by their strings; one consumer (the
 * owning Performance, which serialises its drains) takes them out in order.
 *
 * Transport. The data area is `ncells` cells of RT_CELL_SIZE bytes; a record
 * occupies ceil((8 + len) / RT_CELL_PAYLOAD) consecutive cells, wrapping
 * around. A producer reserves its cells with one CAS on `tail` (failing with
 * RT_PUB_RING_FULL, nothing written, when the consumer is a whole ring
 * behind), copies the record, then publishes it by storing seq = position + 1
 * with release order into the first cell. The consumer waits for that seq at
 * `head`, copies the record out and releases the cells by advancing `head`.
 * Positions are 64-bit and never wrap, so a stale seq never matches.
 * Right after its CAS a producer marks its first cell "reserved" with the
 * position and its cell count, so that the consumer can step over a
 * reservation whose producer died before committing (rt_ring_skip_stuck,
 * called by the owner after a bound) and count the record lost.
 *
 * Damage. A committed record whose length word does not match its own
 * url_len/text_len, or exceeds the limit, is skipped and counted
 * (corrupt_records): the consumer steps to the next committed or reserved
 * cell (or to the tail) and keeps draining; records before it in the same
 * call are delivered first. A shared segment that another process truncated
 * is detected with fstat before each publish and drain (RT_ETRUNC) instead of
 * touching pages that no longer exist (SIGBUS).
 *
 * Buffer semantics (Resource Timing, "add a PerformanceResourceTiming entry"):
 * `primary` counts entries in the primary buffer (drained or in transit),
 * `limit` is the buffer size, `pending` is the buffer-full-event-pending flag,
 * `secondary` counts entries in the secondary buffer, bounded by
 * `secondary_cap` (the overflow room). A record goes to the primary buffer if
 * primary < limit and no event is pending; otherwise to the secondary buffer,
 * and the producer whose CAS moves `pending` from 0 to 1 gets RT_PUB_BECAME_FULL
 * (exactly once per transition). With the overflow room exhausted the record
 * is still delivered (for observers) but flagged dropped and counted.
 *
 * https://w3c.github.io/resource-timing/#sec-extensions-performance-interface
 */
#ifndef RT_RING_H
#define RT_RING_H
#include <stddef.h>
#include <stdint.h>

#define RT_NSTAMPS 17
#define RT_CELL_SIZE 64
#define RT_CELL_PAYLOAD (RT_CELL_SIZE - 8)

/* Stamp slots, in the order of the record layout. */
enum {
    RT_START_TIME = 0,
    RT_FETCH_START,
    RT_REDIRECT_START,
    RT_REDIRECT_END,
    RT_DOMAIN_LOOKUP_START,
    RT_DOMAIN_LOOKUP_END,
    RT_CONNECT_START,
    RT_CONNECT_END,
    RT_SECURE_CONNECTION_START,
    RT_REQUEST_START,
    RT_REQUEST_END,
    RT_FIRST_INTERIM_RESPONSE_START,
    RT_FINAL_RESPONSE_HEADERS_START,
    RT_RESPONSE_END,
    RT_INTENDED_START,
    RT_PROXY_CONNECT_START,
    RT_PROXY_CONNECT_END
};

/* Record flags. The class bits are written by the ring, not the producer. */
#define RT_FLAG_SECONDARY 0x1u
#define RT_FLAG_DROPPED 0x2u
#define RT_FLAG_REUSED 0x4u
#define RT_FLAG_TAO_FAILED 0x8u
#define RT_FLAG_CLASS_MASK (RT_FLAG_SECONDARY | RT_FLAG_DROPPED)

/* Fixed layout, 184 bytes, followed by url_len bytes of URL and text_len
 * bytes of the other strings (NUL-separated). Stamps are CLOCK_MONOTONIC ns,
 * 0 = not set. */
typedef struct rt_record {
    int64_t stamp[RT_NSTAMPS];
    int64_t encoded_body_size;
    int64_t decoded_body_size;
    int64_t bytes_sent;
    int64_t bytes_received;
    uint32_t connection_id;
    uint16_t response_status;
    uint16_t flags;
    uint32_t url_len;
    uint32_t text_len;
} rt_record;

/* Publish result bits (>= 0); failures are negative RT_E* codes. */
#define RT_PUB_PRIMARY 0x1
#define RT_PUB_SECONDARY 0x2
#define RT_PUB_DROPPED 0x4
#define RT_PUB_BECAME_FULL 0x8
#define RT_PUB_RING_FULL 0x10

typedef struct rt_ring rt_ring;

typedef struct rt_ring_stats {
    uint64_t ncells;
    uint64_t head;
    uint64_t tail;
    uint64_t primary;
    uint64_t limit;
    uint64_t secondary;
    uint64_t secondary_cap;
    uint64_t dropped_overflow;
    uint64_t rejected_ring_full;
    uint64_t published;
    uint32_t pending;
    uint32_t owner_pid;
    int64_t origin_realtime_ns;
    int64_t origin_monotonic_ns;
    uint64_t corrupt_records;
    uint64_t lost_stuck;
} rt_ring_stats;

/* ncells must be a power of two, 64 <= ncells <= 2^31. */
int rt_ring_create(uint64_t ncells, uint64_t limit, uint64_t secondary_cap,
                   int64_t origin_realtime_ns, int64_t origin_monotonic_ns,
                   rt_ring **out);
int rt_ring_create_shared(const char *name, uint64_t ncells, uint64_t limit,
                          uint64_t secondary_cap, int64_t origin_realtime_ns,
                          int64_t origin_monotonic_ns, rt_ring **out);
int rt_ring_attach(const char *name, rt_ring **out);
int rt_ring_close(rt_ring *r);
int rt_ring_unlink(const char *name);

/* Largest record (fixed part + strings) a ring of this size accepts. */
uint64_t rt_ring_max_record(const rt_ring *r);

int rt_record_stamp(rt_record *rec, uint32_t slot);
int rt_ring_publish(rt_ring *r, const rt_record *rec, const char *strings,
                    uint32_t strings_len);
/* The same, from one packed buffer: the fixed-size record (sizeof(rt_record)) then its url_len +
 * text_len bytes of strings; len must be exactly that (RT_EINVAL otherwise).
 * The recording hot path: one call per entry. */
int rt_ring_publish_raw(rt_ring *r, const char *buf, uint32_t len);

/* Copy a run of committed records that share one class into out, each as a
 * uint64 length followed by the record, padded to 8 bytes. Stops at a class
 * change, an uncommitted record, max_count, or when the next one does not
 * fit. *klass gets the run's class bits. Returns RT_ETOOBIG when the very
 * first record is larger than cap. */
int rt_ring_drain(rt_ring *r, uint8_t *out, size_t cap, uint32_t max_count,
                  size_t *used, uint32_t *count, uint32_t *klass);

/* Consumer side: if head is still `at`, the ring is not empty and the cell
 * at head is not committed (its producer died or stopped mid-publish), step
 * over that reservation and count one record lost. *skipped = cells skipped
 * (0 when nothing was stuck). The caller decides how long is "stuck". */
int rt_ring_skip_stuck(rt_ring *r, uint64_t at, uint64_t *skipped);

int rt_ring_stats_get(const rt_ring *r, rt_ring_stats *out);
int rt_ring_set_limit(rt_ring *r, uint64_t limit);
int rt_ring_set_secondary_cap(rt_ring *r, uint64_t cap);
/* Take up to `want` free primary slots (below limit); *got says how many. */
int rt_ring_claim_primary(rt_ring *r, uint64_t want, uint64_t *got);
int rt_ring_release_primary(rt_ring *r, uint64_t n);
int rt_ring_release_secondary(rt_ring *r, uint64_t n);
/* *won = 1 when this call moved pending from 0 to 1. */
int rt_ring_try_set_pending(rt_ring *r, uint32_t *won);
int rt_ring_clear_pending(rt_ring *r);

#endif
