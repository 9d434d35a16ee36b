/* bf16_gemm.c: CPU detection, the kernel choice and the threaded drivers (see bf16_gemm.h).
 * Compiled for the build's baseline target: only bf16_kern.c uses the bf16 instructions. */
#include "autograd/bf16_gemm.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define GT_BF16_X86 1
#endif

#include "autograd/bf16_kern.h"

#ifdef GT_BF16_X86
static uint64_t xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static gt_bf16_kernel detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return GT_BF16K_OFF; /* OSXSAVE */
    uint64_t x = xcr0();
    if ((x & 0xe6) != 0xe6) return GT_BF16K_OFF; /* the OS saves SSE, AVX and AVX-512 state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return GT_BF16K_OFF;
    bool avx512f = b & (1u << 16), avx512bw = b & (1u << 30), amx_bf16 = d & (1u << 22),
         amx_tile = d & (1u << 24);
    unsigned a1, b1, c1, d1;
    if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) a1 = 0;
    bool avx512bf16 = a1 & (1u << 5);
    if (!avx512f || !avx512bw || !avx512bf16) return GT_BF16K_OFF;
    /* AMX: XTILECFG/XTILEDATA in XCR0 and Linux's per-process permission for the tile data */
    if (amx_bf16 && amx_tile && (x & 0x60000) == 0x60000 && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                                                                 18 /* XFEATURE_XTILEDATA */) == 0)
        return GT_BF16K_AMX;
    return GT_BF16K_AVX512;
}
#else
static gt_bf16_kernel detect(void) { return GT_BF16K_OFF; }
#endif

static int g_best = -1, g_active = -1, g_forced = -1;

gt_bf16_kernel gt_bf16_kernel_best(void) {
    int b = __atomic_load_n(&g_best, __ATOMIC_ACQUIRE);
    if (b < 0) {
        b = (int)detect();
        __atomic_store_n(&g_best, b, __ATOMIC_RELEASE);
    }
    return (gt_bf16_kernel)b;
}

#ifdef GT_BF16_X86
static bool cpu_is_amd(void) {
    unsigned a, b, c, d;
    return __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163; /* AuthenticAMD */
}
#else
static bool cpu_is_amd(void) { return false; }
#endif

/* Measured (bench/bf16_gemm, 2 threads, the 270M shapes at M 512): on a Xeon with AMX, AMX 2-6x
 * sgemm and the AVX512-BF16 kernel about 0.35x (its vdpbf16ps issues at the fp32 FMA rate there);
 * on an AMD EPYC (Zen 4, no AMX) the AVX512-BF16 kernel 2.0-4.2x sgemm (vdpbf16ps: twice the FMA
 * rate). So: AMX, else AVX512-BF16 on AMD, else off. */
gt_bf16_kernel gt_bf16_kernel_auto(void) {
    gt_bf16_kernel b = gt_bf16_kernel_best();
    if (b == GT_BF16K_AMX) return b;
    return b == GT_BF16K_AVX512 && cpu_is_amd() ? b : GT_BF16K_OFF;
}

static gt_bf16_kernel clamp(gt_bf16_kernel want) {
    gt_bf16_kernel best = gt_bf16_kernel_best();
    if (want == GT_BF16K_AMX) return best == GT_BF16K_AMX ? want : GT_BF16K_OFF;
    if (want == GT_BF16K_AVX512) return best != GT_BF16K_OFF ? want : GT_BF16K_OFF;
    return GT_BF16K_OFF;
}

static gt_bf16_kernel from_env(void) {
    const char *e = getenv("GT_BF16_KERNEL");
    if (!e || !*e || !strcmp(e, "auto")) return gt_bf16_kernel_auto();
    if (!strcmp(e, "amx")) return clamp(GT_BF16K_AMX);
    if (!strcmp(e, "avx512")) return clamp(GT_BF16K_AVX512);
    return GT_BF16K_OFF; /* "off" and anything unknown: the safe path */
}

gt_bf16_kernel gt_bf16_kernel_active(void) {
    int f = __atomic_load_n(&g_forced, __ATOMIC_ACQUIRE);
    if (f >= 0) return (gt_bf16_kernel)f;
    int a = __atomic_load_n(&g_active, __ATOMIC_ACQUIRE);
    if (a < 0) {
        a = (int)from_env();
        __atomic_store_n(&g_active, a, __ATOMIC_RELEASE);
    }
    return (gt_bf16_kernel)a;
}

gt_bf16_kernel gt_bf16_kernel_force(int k) {
    if (k < 0) {
        __atomic_store_n(&g_forced, -1, __ATOMIC_RELEASE);
        __atomic_store_n(&g_active, -1, __ATOMIC_RELEASE); /* re-read the environment */
    } else {
        __atomic_store_n(&g_forced, (int)clamp((gt_bf16_kernel)k), __ATOMIC_RELEASE);
    }
    return gt_bf16_kernel_active();
}

const char *gt_bf16_kernel_name(gt_bf16_kernel k) {
    switch (k) {
    case GT_BF16K_AMX: return "amx";
    case GT_BF16K_AVX512: return "avx512";
    default: return "off";
    }
}

/* Blocks of 32 x 32 (16 at the edges), visited as: chunks of MC rows of A (kept in L2 while the
 * B panels stream past), then column blocks, then the row blocks of the chunk. The threads split
 * that sequence into contiguous runs of equal length: it holds only blocks with rows (a last chunk
 * of M % MC rows has fewer row blocks; counting the empty ones gave one thread of two a third
 * more work at M = 640, the o and down projections' forward). */
enum { MC = 256 };

/* Block i's first row and column in the visiting order above. */
static void block_at(int64_t i, int64_t M, int64_t N, int64_t *m0, int64_t *n0) {
    int64_t nb = (N + 31) / 32, mbc = MC / 32, full = M / MC * nb * mbc, rbl = (M % MC + 31) / 32;
    int64_t ch, jb, ib;
    if (i < full) ch = i / (nb * mbc), jb = i % (nb * mbc) / mbc, ib = i % mbc;
    else ch = M / MC, jb = (i - full) / rbl, ib = (i - full) % rbl;
    *m0 = ch * MC + ib * 32, *n0 = jb * 32;
}

/* Block i of the visiting order above, on the calling thread (AMX: its tile configuration loaded). */
static void run_block(gt_bf16_kernel k, int64_t i, int64_t M, int64_t N, int64_t K, const uint16_t *A, int64_t lda,
                      const uint16_t *Bp, int64_t ldb, const gt_bf16k_out *o) {
    int64_t m0, n0;
    block_at(i, M, N, &m0, &n0);
    int mt = M - m0 >= 32 ? 2 : 1, nt = N - n0 >= 32 ? 2 : 1;
    if (k == GT_BF16K_AMX) gt_bf16k_amx_block(m0, n0, mt, nt, K, A, lda, Bp, o);
    else if (ldb > 0) gt_bf16k_avx_block_rowb(m0, n0, mt, nt, K, A, lda, Bp, ldb, o);
    else gt_bf16k_avx_block(m0, n0, mt, nt, K, A, lda, Bp, o);
}

/* Work claiming: the blocks are split into `runs` contiguous runs as a static split would give
 * them, each taken in order through its own counter by the thread that starts on it; a thread
 * whose run is done takes what is left of the others' through theirs. A thread slowed down (the
 * VM's other work, costlier blocks) then no longer holds up the region's end: on the 270M step
 * (1 x 512, 12 steps each way, alternated in one process) the two threads' times within a GEMM
 * differed by 12.7 ms a step in all, 3.2 ms with claiming, and the GEMMs' wall time fell by 2.9
 * ms a step. (Blocks dealt out one at a time from a single shared counter measured slower, a
 * step median of 1157 against 1131 ms.) One cache line per counter: only a thief shares it. */
enum { MAX_RUNS = 64 };
typedef struct {
    _Alignas(64) int64_t next;
} claim;

static void run_claimed(gt_bf16_kernel k, int t, int runs, claim *pos, int64_t total, int64_t M, int64_t N, int64_t K,
                        const uint16_t *A, int64_t lda, const uint16_t *Bp, int64_t ldb, const gt_bf16k_out *o) {
    if (k == GT_BF16K_AMX) gt_bf16k_amx_thread_init();
    for (int v = 0; v < runs; v++) {
        int u = (t + v) % runs;
        int64_t end = total * (u + 1) / runs;
        for (int64_t i; (i = __atomic_fetch_add(&pos[u].next, 1, __ATOMIC_RELAXED)) < end;)
            run_block(k, i, M, N, K, A, lda, Bp, ldb, o);
    }
    if (k == GT_BF16K_AMX) gt_bf16k_amx_thread_done();
}

/* Dot products cost one vdpbf16ps per 16 pairs and column against one per pair for a padded
 * panel, plus the loads and transposes: measured on the LM head (one process, alternated), 1
 * valid column of 16 made it 2.3% faster, 5 to 8 columns the same either way. The copy of the
 * columns lives on the stack: up to 32 KiB. */
enum { EDGE_COLS = 8, EDGE_VALUES = 16384 };

/* ldb > 0: B row-major (the AVX512 kernel only), else packed panels */
static void gemm(gt_bf16_kernel k, int threads, int64_t M, int64_t N, int64_t K, const uint16_t *A, int64_t lda,
                 const uint16_t *B, int64_t ldb, float *C, int64_t ldc, int64_t Mv, int64_t Nv, bool trans,
                 bool accumulate) {
    if (k == GT_BF16K_OFF || M <= 0 || N <= 0) return;
    gt_bf16k_out o = {C, ldc, Mv, Nv, trans, accumulate, NULL, 0, 0};
    /* A last panel with at most EDGE_COLS valid columns goes as dot products (bf16_kern.c's
     * avx_dots): its columns copied here, K-contiguous, once for all the blocks. */
    uint16_t ecol[EDGE_VALUES];
    int64_t e = Nv % 16, n0e = Nv - e;
    if (k == GT_BF16K_AVX512 && e > 0 && e <= EDGE_COLS && e * K <= EDGE_VALUES && Nv <= N) {
        for (int64_t j = 0; j < e; j++)
            for (int64_t kk = 0; kk < K; kk++)
                ecol[j * K + kk] = ldb > 0 ? B[kk * ldb + n0e + j] : B[n0e * K + kk / 2 * 32 + 2 * j + kk % 2];
        o.ecol = ecol, o.ecol_n0 = n0e, o.ecol_e = e;
    }
    int64_t total = (M / MC * (MC / 32) + (M % MC + 31) / 32) * ((N + 31) / 32);
    claim pos[MAX_RUNS];
    int runs = threads > 1 ? (threads < MAX_RUNS ? threads : MAX_RUNS) : 1;
    for (int r = 0; r < runs; r++) pos[r].next = total * r / runs;
    if (threads <= 1) { /* attention's per-head products: no OpenMP region (a microsecond a call) */
        run_claimed(k, 0, 1, pos, total, M, N, K, A, lda, B, ldb, &o);
        return;
    }
#pragma omp parallel num_threads(threads)
    run_claimed(k, omp_get_thread_num() % runs, runs, pos, total, M, N, K, A, lda, B, ldb, &o);
}

void gt_bf16_gemm(gt_bf16_kernel k, int threads, int64_t M, int64_t N, int64_t K, const uint16_t *A,
                  int64_t lda, const uint16_t *Bp, float *C, int64_t ldc, int64_t Mv, int64_t Nv,
                  bool trans, bool accumulate) {
    gemm(k, threads, M, N, K, A, lda, Bp, 0, C, ldc, Mv, Nv, trans, accumulate);
}

bool gt_bf16_gemm_rowb(gt_bf16_kernel k, int threads, int64_t M, int64_t N, int64_t K, const uint16_t *A,
                       int64_t lda, const uint16_t *B, int64_t ldb, float *C, int64_t ldc, int64_t Mv, int64_t Nv,
                       bool trans, bool accumulate) {
    /* Packed instead (cheaper there): a B of more than 4 MiB (the 270M's largest W is 2.6 MiB):
     * each 32-column block reads one line from every row, so the rows span more pages than the
     * TLB maps (Gemma 3 4B's input gradients ran at 0.6x the packed kernel); and rows a multiple
     * of 4 KiB apart, whose lines all fall in a few cache sets (the 270M's down projection, 2048
     * columns: the step 2.3% faster at 1 x 512 packing it, steps alternated in one process). */
    if (k != GT_BF16K_AVX512 || K * ldb * 2 > (int64_t)4 << 20 || (ldb * 2) % 4096 == 0) return false;
    gemm(k, threads, M, N, K, A, lda, B, ldb, C, ldc, Mv, Nv, trans, accumulate);
    return true;
}

void gt_bf16_pack_a(int threads, const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *A) {
    int64_t Mp = (M + 15) / 16 * 16;
    if (threads <= 1) {
        gt_bf16k_pack_a_rows(x, M, K, ldx, A, 0, Mp);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < Mp; r += 16) gt_bf16k_pack_a_rows(x, M, K, ldx, A, r, r + 16);
}

void gt_bf16_pack_bt(int threads, const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *Bp) {
    int64_t np = (M + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t p = 0; p < np; p++) gt_bf16k_pack_bt_panels(x, M, K, ldx, Bp, p, p + 1);
}

void gt_bf16_pack_b16(int threads, const uint16_t *W, int64_t K, int64_t N, int64_t ldw, uint16_t *Bp) {
    if (threads <= 1) {
        gt_bf16k_pack_b16_pairs(W, N, ldw, Bp, K, 0, K);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t k = 0; k < K; k += 32) gt_bf16k_pack_b16_pairs(W, N, ldw, Bp, K, k, k + 32 < K ? k + 32 : K);
}

void gt_bf16_pack_a_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                        int64_t Kp) {
    gt_bf16k_pack_a_pad(x, ldx, mv, kv, s, A, Mp, Kp);
}

void gt_bf16_pack_at_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                         int64_t Kp) {
    gt_bf16k_pack_at_pad(x, ldx, mv, kv, s, A, Mp, Kp);
}

void gt_bf16_pack_bt_pad(const float *x, int64_t ldx, int64_t nv, int64_t kv, float s, uint16_t *Bp, int64_t Np,
                         int64_t Kp) {
    gt_bf16k_pack_bt_pad(x, ldx, nv, kv, s, Bp, Np, Kp);
}

void gt_bf16_pack_b_pad(const float *x, int64_t ldx, int64_t kv, int64_t nv, float s, uint16_t *Bp, int64_t Np,
                        int64_t Kp) {
    gt_bf16k_pack_b_pad(x, ldx, kv, nv, s, Bp, Np, Kp);
}
