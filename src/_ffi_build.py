"""cffi build script (API, out-of-line mode): compiles csrc/ into restiming._native.

setup.py only points ``cffi_modules`` here. The cdef below is the whole C surface
Python may touch; every function returns a status checked by ``_binding.ensure``.
"""

from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

CDEF = """
#define RT_OK 0
#define RT_EINVAL -1
#define RT_ENOMEM -2
#define RT_ESYS -3
#define RT_ENOENT -4
#define RT_EFOREIGN -5
#define RT_ETOOBIG -6
#define RT_EEXIST -7
#define RT_ETRUNC -8

#define RT_NSTAMPS 17
#define RT_CELL_SIZE 64
#define RT_FLAG_SECONDARY 1
#define RT_FLAG_DROPPED 2
#define RT_FLAG_REUSED 4
#define RT_FLAG_TAO_FAILED 8
#define RT_PUB_PRIMARY 1
#define RT_PUB_SECONDARY 2
#define RT_PUB_DROPPED 4
#define RT_PUB_BECAME_FULL 8
#define RT_PUB_RING_FULL 16

typedef struct rt_record {
    int64_t stamp[17];
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

int64_t rt_now_ns(void);
int rt_clock_resolution_ns(int64_t *out);
int rt_clock_pair(int64_t *realtime_ns, int64_t *monotonic_ns);

int rt_ring_create(uint64_t ncells, uint64_t limit, uint64_t secondary_cap,
                   int64_t origin_realtime_ns, int64_t origin_monotonic_ns,
                   rt_ring **out);
int rt_ring_create_shared(const char *name, uint64_t ncells, uint64_t limit,
                          uint64_t secondary_cap, int64_t origin_realtime_ns,
                          int64_t origin_monotonic_ns, rt_ring **out);
int rt_ring_attach(const char *name, rt_ring **out);
int rt_ring_close(rt_ring *r);
int rt_ring_unlink(const char *name);
uint64_t rt_ring_max_record(const rt_ring *r);
int rt_record_stamp(rt_record *rec, uint32_t slot);
int rt_ring_publish(rt_ring *r, const rt_record *rec, const char *strings,
                    uint32_t strings_len);
int rt_ring_publish_raw(rt_ring *r, const char *buf, uint32_t len);
int rt_ring_skip_stuck(rt_ring *r, uint64_t at, uint64_t *skipped);
int rt_ring_drain(rt_ring *r, uint8_t *out, size_t cap, uint32_t max_count,
                  size_t *used, uint32_t *count, uint32_t *klass);
int rt_ring_stats_get(const rt_ring *r, rt_ring_stats *out);
int rt_ring_set_limit(rt_ring *r, uint64_t limit);
int rt_ring_set_secondary_cap(rt_ring *r, uint64_t cap);
int rt_ring_claim_primary(rt_ring *r, uint64_t want, uint64_t *got);
int rt_ring_release_primary(rt_ring *r, uint64_t n);
int rt_ring_release_secondary(rt_ring *r, uint64_t n);
int rt_ring_try_set_pending(rt_ring *r, uint32_t *won);
int rt_ring_clear_pending(rt_ring *r);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "restiming._native",
    '#include "rt_status.h"\n#include "rt_clock.h"\n#include "rt_ring.h"\n',
    sources=[str(p.relative_to(ROOT)) for p in (CSRC / "rt_clock.c", CSRC / "rt_ring.c")],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra"],
    libraries=["rt"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
