/* A core runs an ESSOP weight update on a periphery tile: the C side of
 * sw/driver.py's Driver.outer_product.
 *
 * Every address and field comes from the PeakRDL C header generated with the Verilog
 * (build/verilog/periphery_<tag>_regs/aimc_periph.h):
 *
 *   cc -std=c11 -Wall -Wextra -Werror -I build/verilog/periphery_essop_tiny_regs \
 *      -c sw/example_essop.c
 *
 * A job is `products` outer products x·δᵀ of one engine tile each: the core writes the layer
 * registers (BL, learning rate, LFSR seeds), JOB.PRODUCTS and CTRL.START (with CTRL.RESEED to
 * start the LFSRs from the seeds), a DMA engine the SoC provides (not shown) moves one s_axis
 * beat per product (rows binary16 x, then cols binary16 δ) and the read-out beats back; the
 * core waits for STATUS.done and decodes each read-out beat into counts C, the exponent E and
 * the error flag: ΔW = C·2^E (golden.essop.decode). The beat's bit layout (count and exponent
 * widths, rows per beat) is the export JSON's `streams.m_axis`; it is passed in
 * `struct aimc_essop_format`.
 *
 * The layer fields pack into LAYER0, LAYER1 .. by width, so which register holds a seed
 * depends on the config (essop_tiny: all in LAYER0; essop_paper: seed_d in LAYER1): the
 * header says which, and the preprocessor picks it.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "aimc_periph.h"

#define FIELD(reg, f, v) \
    (((uint32_t)(v) << AIMC_PERIPH__##reg##__##f##_bp) & AIMC_PERIPH__##reg##__##f##_bm)
#define GET(reg, f, w) (((w) & AIMC_PERIPH__##reg##__##f##_bm) >> AIMC_PERIPH__##reg##__##f##_bp)
/* v fits the field: a value that does not is refused here, never truncated */
#define FITS(reg, f, v) ((uint32_t)(v) <= GET(reg, f, 0xFFFFFFFFu))
/* the same through a register name that is itself a macro (expanded before pasting) */
#define FIELD_IN(reg, f, v) FIELD(reg, f, v)
#define FITS_IN(reg, f, v) FITS(reg, f, v)

#ifdef AIMC_PERIPH__LAYER0__SEED_X_bm
#define SEED_X_REG LAYER0
#else
#define SEED_X_REG LAYER1
#endif
#ifdef AIMC_PERIPH__LAYER0__SEED_D_bm
#define SEED_D_REG LAYER0
#else
#define SEED_D_REG LAYER1
#endif

enum aimc_result { AIMC_OK = 0, AIMC_NOT_FOUND = -1, AIMC_BUSY = -2, AIMC_ERROR = -3,
                   AIMC_TIMEOUT = -4, AIMC_REJECTED = -5 };

struct aimc_essop_job {
    uint32_t products;      /* outer products (engine tiles) of the job */
    uint32_t log2_bl;       /* bitstream length BL = 2^log2_bl */
    uint32_t lr_shift;      /* learning rate 2^-lr_shift, in the exponent */
    uint32_t seed_x, seed_d;/* non-zero LFSR seeds, loaded with `reseed` */
    int reseed;             /* start the LFSRs from the seeds (else they run on) */
};

struct aimc_essop_format {  /* the export JSON's streams.m_axis */
    unsigned count_bits;    /* bits of one signed count */
    unsigned exp_bits;      /* bits of the signed exponent E */
    unsigned rows_per_beat; /* rows of counts per read-out beat */
    unsigned cols;          /* counts per row */
};

/* Checks the ID register; returns rows (and cols through `cols`), or AIMC_NOT_FOUND. */
int aimc_essop_probe(volatile aimc_periph_t *dev, int *cols)
{
    uint32_t id = dev->ID;
    if (GET(ID, MAGIC, id) != AIMC_PERIPH__ID__MAGIC_reset || GET(ID, UNIT, id) != 3u)
        return AIMC_NOT_FOUND;
    uint32_t geo = dev->GEOMETRY;
    *cols = (int)GET(GEOMETRY, COLS, geo);
    return (int)GET(GEOMETRY, ROWS, geo);
}

/* Writes the layer registers and the job, then starts it (with a reseed if asked). */
int aimc_essop_start(volatile aimc_periph_t *dev, const struct aimc_essop_job *job)
{
    int cols;
    if (aimc_essop_probe(dev, &cols) < 0)
        return AIMC_NOT_FOUND;
    if (!FITS(LAYER0, LOG2_BL, job->log2_bl) || !FITS(LAYER0, LR_SHIFT, job->lr_shift)
        || !FITS_IN(SEED_X_REG, SEED_X, job->seed_x) || !FITS_IN(SEED_D_REG, SEED_D, job->seed_d)
        || !FITS(JOB, PRODUCTS, job->products) || job->products == 0
        || (job->reseed && (job->seed_x == 0 || job->seed_d == 0)))
        return AIMC_ERROR;
    if (GET(STATUS, BUSY, dev->STATUS))
        return AIMC_BUSY;
    dev->CTRL = FIELD(CTRL, CLEAR, 1);
    uint32_t layer0 = FIELD(LAYER0, LOG2_BL, job->log2_bl) | FIELD(LAYER0, LR_SHIFT, job->lr_shift);
#if defined(AIMC_PERIPH__LAYER1__SEED_X_bm) || defined(AIMC_PERIPH__LAYER1__SEED_D_bm)
    uint32_t layer1 = 0;
#endif
#ifdef AIMC_PERIPH__LAYER0__SEED_X_bm
    layer0 |= FIELD(LAYER0, SEED_X, job->seed_x);
#else
    layer1 |= FIELD(LAYER1, SEED_X, job->seed_x);
#endif
#ifdef AIMC_PERIPH__LAYER0__SEED_D_bm
    layer0 |= FIELD(LAYER0, SEED_D, job->seed_d);
#else
    layer1 |= FIELD(LAYER1, SEED_D, job->seed_d);
#endif
    dev->LAYER0 = layer0;
#if defined(AIMC_PERIPH__LAYER1__SEED_X_bm) || defined(AIMC_PERIPH__LAYER1__SEED_D_bm)
    dev->LAYER1 = layer1;
#endif
    dev->JOB = FIELD(JOB, PRODUCTS, job->products);
    dev->CTRL = FIELD(CTRL, START, 1) | FIELD(CTRL, RESEED, job->reseed ? 1 : 0);
    return GET(STATUS, BUS_ERROR, dev->STATUS) ? AIMC_ERROR : AIMC_OK;
}

/* Polls for the job's end (or use the interrupt: IRQ_EN). AIMC_REJECTED: the engine rejected
 * products (log2_bl above its maximum, or a reseed with a zero seed: STATUS.reg_error). */
int aimc_essop_wait(volatile aimc_periph_t *dev, unsigned long max_polls)
{
    for (unsigned long i = 0; i < max_polls; i++) {
        uint32_t st = dev->STATUS;
        if (GET(STATUS, FRAME_ERROR, st) || GET(STATUS, BUS_ERROR, st))
            return AIMC_ERROR;
        if (GET(STATUS, REG_ERROR, st))
            return AIMC_REJECTED;
        if (GET(STATUS, DONE, st))
            return AIMC_OK;
    }
    return AIMC_TIMEOUT;
}

/* Bits [lsb, lsb + width) of a beat of 32-bit words (least significant word first), width
 * at most 32, sign-extended. */
static int32_t beat_field(const uint32_t *beat, unsigned lsb, unsigned width)
{
    uint64_t pair = beat[lsb / 32];
    if (lsb % 32 + width > 32)
        pair |= (uint64_t)beat[lsb / 32 + 1] << 32;
    uint32_t raw = (uint32_t)(pair >> (lsb % 32)) & (uint32_t)((1ull << width) - 1);
    uint32_t sign = 1u << (width - 1);
    return (int32_t)(raw ^ sign) - (int32_t)sign;
}

/* One read-out beat -> its rows_per_beat x cols counts (row-major), E and the error flag;
 * the weight update of count c is aimc_essop_dw(c, E) (0 for an error product: its counts are
 * 0 and its row tile's update is to be skipped). */
void aimc_essop_decode(const uint32_t *beat, const struct aimc_essop_format *fmt,
                       int32_t *counts, int *exp, int *error)
{
    unsigned n = fmt->rows_per_beat * fmt->cols;
    for (unsigned k = 0; k < n; k++)
        counts[k] = beat_field(beat, k * fmt->count_bits, fmt->count_bits);
    *exp = beat_field(beat, n * fmt->count_bits, fmt->exp_bits);
    *error = (int)((beat[(n * fmt->count_bits + fmt->exp_bits) / 32]
                    >> ((n * fmt->count_bits + fmt->exp_bits) % 32)) & 1u);
}

/* ΔW = C·2^E, exact in a double (golden.essop.decode). */
double aimc_essop_dw(int32_t count, int exp)
{
    return ldexp((double)count, exp);
}
