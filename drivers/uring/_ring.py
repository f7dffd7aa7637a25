"""An io_uring instance in C against the kernel ABI (``<linux/io_uring.h>``, io_uring(7)).

No liburing: the three system calls (``io_uring_setup``, ``io_uring_enter``,
``io_uring_register``) and the ring mappings are done here, so the only build dependency is the
kernel's UAPI header that every Debian C toolchain carries (``linux-libc-dev``).  The layout of
``struct io_uring_sqe``/``io_uring_cqe`` comes from that header (``_Static_assert``-checked) and the
ring field offsets from ``io_uring_params.sq_off``/``cq_off`` at setup, as the kernel asks.

Completions are reaped from the shared CQ ring with an acquire load of the tail and a release
store of the head — no system call when entries are ready (io_uring(7), "Reading completions").
Submission fills SQEs locally and publishes them with one release store of the SQ tail; one
``io_uring_enter`` then submits the batch (or, with SQPOLL, only wakes the kernel thread when it
has gone idle: ``IORING_SQ_NEED_WAKEUP``).
"""

from __future__ import annotations

from types import ModuleType

from labrig.cbuild import build_module

__all__ = ["load_ring"]

_CDEF = """
typedef struct lr_ring lr_ring;
lr_ring *lr_new(void);
void lr_free(lr_ring *r);
int lr_setup(lr_ring *r, unsigned entries, unsigned flags, unsigned sq_thread_idle_ms);
unsigned lr_sq_entries(lr_ring *r);
unsigned lr_features(lr_ring *r);
int lr_register_buffers(lr_ring *r, uint64_t *addrs, uint64_t *lens, unsigned n);
int lr_register_files(lr_ring *r, int *fds, unsigned n);
int lr_unregister_buffers(lr_ring *r);
int lr_prep(lr_ring *r, int opcode, int fd, int fixed_file, uint64_t addr, uint32_t len,
            uint64_t off, int buf_index, uint32_t op_flags, uint64_t user_data);
int lr_submit(lr_ring *r, unsigned wait_nr);
int lr_reap(lr_ring *r, uint64_t *user_data, int32_t *res, unsigned max);
int lr_reap32(lr_ring *r, uint64_t *user_data, int32_t *res, uint64_t *extra, unsigned max);
int lr_prep_cmd(lr_ring *r, int fd, int fixed_file, uint32_t cmd_op, const uint8_t *cmd,
                unsigned cmd_len, uint64_t user_data);
unsigned lr_sq_space(lr_ring *r);
unsigned lr_cq_ready(lr_ring *r);
int lr_probe_opcode(int opcode);
static const int LR_OP_READ, LR_OP_WRITE, LR_OP_READ_FIXED, LR_OP_WRITE_FIXED, LR_OP_FSYNC,
    LR_OP_FALLOCATE, LR_OP_URING_CMD, LR_SETUP_SQPOLL, LR_SETUP_SQE128, LR_SETUP_CQE32,
    LR_FSYNC_DATASYNC, LR_RWF_DSYNC;
"""

_SRC = r"""
#include <linux/io_uring.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct io_uring_sqe) == 64, "io_uring_sqe is 64 bytes (io_uring.h)");
_Static_assert(sizeof(struct io_uring_cqe) == 16, "io_uring_cqe is 16 bytes (io_uring.h)");

/* Opcodes and flags handed to Python from the header itself, never retyped. */
static const int LR_OP_READ = IORING_OP_READ, LR_OP_WRITE = IORING_OP_WRITE,
    LR_OP_READ_FIXED = IORING_OP_READ_FIXED, LR_OP_WRITE_FIXED = IORING_OP_WRITE_FIXED,
    LR_OP_FSYNC = IORING_OP_FSYNC, LR_OP_FALLOCATE = IORING_OP_FALLOCATE,
    LR_OP_URING_CMD = IORING_OP_URING_CMD, LR_SETUP_SQPOLL = IORING_SETUP_SQPOLL,
    LR_SETUP_SQE128 = IORING_SETUP_SQE128, LR_SETUP_CQE32 = IORING_SETUP_CQE32,
    LR_FSYNC_DATASYNC = IORING_FSYNC_DATASYNC, LR_RWF_DSYNC = RWF_DSYNC;

typedef struct lr_ring lr_ring;
struct lr_ring {
    int fd;
    unsigned setup_flags, features;
    unsigned sqe_shift, cqe_shift;   /* 1 for IORING_SETUP_SQE128 / CQE32 rings */
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_entries, *sq_flags, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask, *cq_entries;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_ptr, *cq_ptr;
    size_t sq_sz, cq_sz, sqes_sz;
    unsigned local_tail, pending;
};

static int sys_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}
static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}
static int sys_register(int fd, unsigned op, void *arg, unsigned nr) {
    return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

lr_ring *lr_new(void) {
    lr_ring *r = (lr_ring *)calloc(1, sizeof(lr_ring));
    if (r) r->fd = -1;
    return r;
}

void lr_free(lr_ring *r) {
    if (!r) return;
    if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_sz);
    if (r->cq_ptr && r->cq_ptr != MAP_FAILED && r->cq_ptr != r->sq_ptr) munmap(r->cq_ptr, r->cq_sz);
    if (r->sq_ptr && r->sq_ptr != MAP_FAILED) munmap(r->sq_ptr, r->sq_sz);
    if (r->fd >= 0) close(r->fd);
    free(r);
}

/* io_uring_setup(2) + the three mmaps of io_uring(7).  Returns 0 or -errno. */
int lr_setup(lr_ring *r, unsigned entries, unsigned flags, unsigned sq_thread_idle_ms) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = flags;
    p.sq_thread_idle = sq_thread_idle_ms;
    int fd = sys_setup(entries, &p);
    if (fd < 0) return -errno;
    r->fd = fd;
    r->setup_flags = flags;
    r->features = p.features;
    r->sqe_shift = (flags & IORING_SETUP_SQE128) ? 1 : 0;
    r->cqe_shift = (flags & IORING_SETUP_CQE32) ? 1 : 0;
    r->sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_sz = p.cq_off.cqes + ((size_t)p.cq_entries * sizeof(struct io_uring_cqe) << r->cqe_shift);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_sz > r->sq_sz) r->sq_sz = r->cq_sz;
        r->cq_sz = r->sq_sz;
    }
    r->sq_ptr = mmap(NULL, r->sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_SQ_RING);
    if (r->sq_ptr == MAP_FAILED) return -errno;
    if (p.features & IORING_FEAT_SINGLE_MMAP) r->cq_ptr = r->sq_ptr;
    else {
        r->cq_ptr = mmap(NULL, r->cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_CQ_RING);
        if (r->cq_ptr == MAP_FAILED) return -errno;
    }
    char *sq = (char *)r->sq_ptr, *cq = (char *)r->cq_ptr;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_entries = (unsigned *)(sq + p.sq_off.ring_entries);
    r->sq_flags = (unsigned *)(sq + p.sq_off.flags);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cq_entries = (unsigned *)(cq + p.cq_off.ring_entries);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sqes_sz = (size_t)p.sq_entries * sizeof(struct io_uring_sqe) << r->sqe_shift;
    r->sqes = (struct io_uring_sqe *)mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) return -errno;
    r->local_tail = *r->sq_tail;
    r->pending = 0;
    return 0;
}

unsigned lr_sq_entries(lr_ring *r) { return *r->sq_entries; }
unsigned lr_features(lr_ring *r) { return r->features; }

int lr_register_buffers(lr_ring *r, uint64_t *addrs, uint64_t *lens, unsigned n) {
    struct iovec *iov = (struct iovec *)calloc(n ? n : 1, sizeof(struct iovec));
    if (!iov) return -ENOMEM;
    for (unsigned i = 0; i < n; i++) { iov[i].iov_base = (void *)(uintptr_t)addrs[i]; iov[i].iov_len = lens[i]; }
    int rc = sys_register(r->fd, IORING_REGISTER_BUFFERS, iov, n);
    int e = errno;
    free(iov);
    return rc < 0 ? -e : 0;
}

/* 0, or -ENXIO when none were registered, or another -errno. */
int lr_unregister_buffers(lr_ring *r) {
    int rc = sys_register(r->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
    return rc < 0 ? -errno : 0;
}

int lr_register_files(lr_ring *r, int *fds, unsigned n) {
    int rc = sys_register(r->fd, IORING_REGISTER_FILES, fds, n);
    return rc < 0 ? -errno : 0;
}

unsigned lr_sq_space(lr_ring *r) {
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    return *r->sq_entries - (r->local_tail - head);
}

/* Fill one SQE (not yet visible to the kernel).  op_flags: rw_flags for reads/writes,
   fsync_flags for FSYNC, the fallocate mode for FALLOCATE (carried in len, per io_uring.h).
   Returns 0, or -EBUSY when the SQ is full. */
int lr_prep(lr_ring *r, int opcode, int fd, int fixed_file, uint64_t addr, uint32_t len,
            uint64_t off, int buf_index, uint32_t op_flags, uint64_t user_data) {
    if (lr_sq_space(r) == 0) return -EBUSY;
    unsigned idx = r->local_tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx << r->sqe_shift];
    memset(sqe, 0, sizeof(*sqe) << r->sqe_shift);
    sqe->opcode = (uint8_t)opcode;
    sqe->fd = fd;
    if (fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
    sqe->addr = addr;
    sqe->len = len;
    sqe->off = off;
    sqe->user_data = user_data;
    switch (opcode) {
    case IORING_OP_FSYNC: sqe->fsync_flags = op_flags; break;
    case IORING_OP_READ_FIXED:
    case IORING_OP_WRITE_FIXED: sqe->buf_index = (uint16_t)buf_index; sqe->rw_flags = (int)op_flags; break;
    default: sqe->rw_flags = (int)op_flags; break;
    }
    r->sq_array[idx] = idx;
    r->local_tail++;
    r->pending++;
    return 0;
}

/* Publish the filled SQEs and enter the kernel once: submit them and, if wait_nr > 0, wait
   for that many completions.  Returns the number submitted or -errno. */
int lr_submit(lr_ring *r, unsigned wait_nr) {
    unsigned n = r->pending;
    __atomic_store_n(r->sq_tail, r->local_tail, __ATOMIC_RELEASE);
    r->pending = 0;
    unsigned flags = wait_nr ? IORING_ENTER_GETEVENTS : 0;
    if (r->setup_flags & IORING_SETUP_SQPOLL) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(r->sq_flags, __ATOMIC_RELAXED) & IORING_SQ_NEED_WAKEUP)
            flags |= IORING_ENTER_SQ_WAKEUP;
        if (!flags) return (int)n;
        int rc;
        do { rc = sys_enter(r->fd, n, wait_nr, flags); } while (rc < 0 && errno == EINTR);
        return rc < 0 ? -errno : (int)n;
    }
    if (n == 0 && wait_nr == 0) return 0;
    int rc;
    do { rc = sys_enter(r->fd, n, wait_nr, flags); } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : rc;
}

/* CQEs ready to be reaped (acquire load of the tail). */
unsigned lr_cq_ready(lr_ring *r) {
    return __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) - *r->cq_head;
}

/* Copy up to max ready CQEs out of the shared ring; no system call. */
int lr_reap(lr_ring *r, uint64_t *user_data, int32_t *res, unsigned max) {
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    unsigned mask = *r->cq_mask, n = 0;
    while (head != tail && n < max) {
        struct io_uring_cqe *c = &r->cqes[(head & mask) << r->cqe_shift];
        user_data[n] = c->user_data;
        res[n] = c->res;
        head++; n++;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return (int)n;
}

/* lr_reap for CQE32 rings: also copies big_cqe[0] (for NVMe passthrough: completion DW0). */
int lr_reap32(lr_ring *r, uint64_t *user_data, int32_t *res, uint64_t *extra, unsigned max) {
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    unsigned mask = *r->cq_mask, n = 0;
    while (head != tail && n < max) {
        struct io_uring_cqe *c = &r->cqes[(head & mask) << r->cqe_shift];
        user_data[n] = c->user_data;
        res[n] = c->res;
        extra[n] = r->cqe_shift ? c->big_cqe[0] : 0;
        head++; n++;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return (int)n;
}

/* An IORING_OP_URING_CMD SQE on an SQE128 ring: cmd_op (e.g. NVME_URING_CMD_IO) and up to 80
   bytes of command (struct nvme_uring_cmd) in the SQE's cmd area. */
int lr_prep_cmd(lr_ring *r, int fd, int fixed_file, uint32_t cmd_op, const uint8_t *cmd,
                unsigned cmd_len, uint64_t user_data) {
    if (!r->sqe_shift) return -EINVAL;
    if (cmd_len > 80) return -E2BIG;
    if (lr_sq_space(r) == 0) return -EBUSY;
    unsigned idx = r->local_tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx << 1];
    memset(sqe, 0, 2 * sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fd;
    if (fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
    sqe->cmd_op = cmd_op;
    sqe->user_data = user_data;
    memcpy(sqe->cmd, cmd, cmd_len);
    r->sq_array[idx] = idx;
    r->local_tail++;
    r->pending++;
    return 0;
}

/* 1 if the running kernel supports opcode (IORING_REGISTER_PROBE), 0 if not, -errno. */
int lr_probe_opcode(int opcode) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    int fd = sys_setup(2, &p);
    if (fd < 0) return -errno;
    size_t sz = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *pr = (struct io_uring_probe *)calloc(1, sz);
    int rc = sys_register(fd, IORING_REGISTER_PROBE, pr, 256);
    int out = rc < 0 ? -errno
              : (opcode <= pr->last_op && (pr->ops[opcode].flags & IO_URING_OP_SUPPORTED)) ? 1 : 0;
    free(pr);
    close(fd);
    return out;
}
"""


def load_ring() -> ModuleType:
    """The compiled ring module (``.ffi``, ``.lib``), built on first use.

    Raises
    ------
    labrig.errors.BackendUnavailable
        No C compiler, cffi or kernel io_uring header (Debian: ``linux-libc-dev``).
    """
    return build_module("uring", "_labrig_uring", _CDEF, _SRC, backend="uring")
