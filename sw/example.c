/* A core programs an NMPU periphery tile and runs one job: the C side of sw/driver.py.
 *
 * Every address and field comes from the PeakRDL C header generated with the Verilog
 * (build/verilog/periphery_<tag>_regs/aimc_periph.h):
 *
 *   cc -std=c11 -Wall -Werror -I build/verilog/periphery_nmpu_small_regs -c sw/example.c
 *
 * The parameter words are the images of golden.compiler (golden.nmpu.pack_params), split into
 * 32-bit bus words, least significant first; the streams are moved by a DMA engine the SoC
 * provides (not shown): the core starts the job and waits for STATUS.done.
 *
 * The top holds several parameter images (PeripheryConfig.images): aimc_program loads a layer
 * into one of them, aimc_run names the image in the job descriptor (IMAGE.BASE), so the layers
 * of a network are loaded once and each job switches layer with a few register writes.
 */
#include <stddef.h>
#include <stdint.h>

#include "aimc_periph.h"

#define FIELD(reg, f, v) \
    (((uint32_t)(v) << AIMC_PERIPH__##reg##__##f##_bp) & AIMC_PERIPH__##reg##__##f##_bm)
#define GET(reg, f, w) (((w) & AIMC_PERIPH__##reg##__##f##_bm) >> AIMC_PERIPH__##reg##__##f##_bp)

enum aimc_result { AIMC_OK = 0, AIMC_NOT_FOUND = -1, AIMC_BUSY = -2, AIMC_ERROR = -3,
                   AIMC_TIMEOUT = -4 };

struct aimc_layer {
    const uint64_t *words;   /* one parameter word per column (golden.nmpu.pack_params) */
    unsigned bus_words;      /* 32-bit bus words per column word: ceil(word_bits / 32) */
    uint32_t shift, pre_cut, round_mode, relu_mid, relu_out, residual_en;
};

/* Checks the ID register; returns the number of columns, or AIMC_NOT_FOUND. */
int aimc_probe(volatile aimc_periph_t *dev)
{
    uint32_t id = dev->ID;
    if (GET(ID, MAGIC, id) != AIMC_PERIPH__ID__MAGIC_reset || GET(ID, UNIT, id) != 1u)
        return AIMC_NOT_FOUND;
    return (int)GET(GEOMETRY, COLUMNS, dev->GEOMETRY);
}

/* Bus words of a window slot: the column word's bus words rounded up to a power of two. */
static size_t aimc_stride(unsigned bus_words)
{
    size_t stride = 1;
    while (stride < bus_words)
        stride <<= 1;
    return stride;
}

/* Parameter images the top holds: the window has one slot per column of each image. */
static size_t aimc_images(volatile aimc_periph_t *dev, int columns, unsigned bus_words)
{
    return (sizeof(dev->PARAMS.mem) / sizeof(dev->PARAMS.mem[0]))
           / ((size_t)columns * aimc_stride(bus_words));
}

/* Writes one layer's parameters into image `image` (column j at slot image * columns + j). */
int aimc_load(volatile aimc_periph_t *dev, const struct aimc_layer *layer, unsigned image)
{
    int columns = aimc_probe(dev);
    if (columns < 0)
        return columns;
    if (image >= aimc_images(dev, columns, layer->bus_words))
        return AIMC_ERROR;                     /* the top would refuse it (SLVERR) */
    if (GET(STATUS, BUSY, dev->STATUS))
        return AIMC_BUSY;
    size_t stride = aimc_stride(layer->bus_words);
    for (int col = 0; col < columns; col++) {
        size_t slot = (size_t)image * (size_t)columns + (size_t)col;
        for (unsigned k = 0; k < layer->bus_words; k++)   /* the last word commits the column */
            dev->PARAMS.mem[slot * stride + k] = (uint32_t)(layer->words[col] >> (32u * k));
    }
    return GET(STATUS, BUS_ERROR, dev->STATUS) ? AIMC_ERROR : AIMC_OK;
}

/* Writes the layer registers of one layer (its parameters are in an image: aimc_load). */
int aimc_program(volatile aimc_periph_t *dev, const struct aimc_layer *layer)
{
    if (GET(STATUS, BUSY, dev->STATUS))
        return AIMC_BUSY;
    dev->LAYER0 = FIELD(LAYER0, SHIFT, layer->shift) | FIELD(LAYER0, PRE_CUT, layer->pre_cut)
                | FIELD(LAYER0, ROUND_MODE, layer->round_mode)
                | FIELD(LAYER0, RELU_MID, layer->relu_mid)
                | FIELD(LAYER0, RELU_OUT, layer->relu_out)
                | FIELD(LAYER0, RESIDUAL_EN, layer->residual_en);
    return GET(STATUS, BUS_ERROR, dev->STATUS) ? AIMC_ERROR : AIMC_OK;
}

/* Starts a job of `vectors` vectors on parameter image `image` and polls for its end (or use
 * the interrupt: IRQ_EN). */
int aimc_run(volatile aimc_periph_t *dev, uint32_t vectors, unsigned image,
             unsigned long max_polls)
{
    dev->CTRL = FIELD(CTRL, CLEAR, 1);
    dev->IMAGE = FIELD(IMAGE, BASE, image);    /* refused (BUS_ERROR) beyond the images */
    dev->JOB = FIELD(JOB, VECTORS, vectors);
    dev->CTRL = FIELD(CTRL, START, 1);
    for (unsigned long i = 0; i < max_polls; i++) {
        uint32_t st = dev->STATUS;
        if (GET(STATUS, FRAME_ERROR, st) || GET(STATUS, REG_ERROR, st) || GET(STATUS, BUS_ERROR, st))
            return AIMC_ERROR;
        if (GET(STATUS, DONE, st))
            return AIMC_OK;
    }
    return AIMC_TIMEOUT;
}

/* Two layers loaded once, then run back to back: the layer switch is register writes only. */
int aimc_two_layers(volatile aimc_periph_t *dev, const struct aimc_layer layers[2],
                    uint32_t vectors, unsigned long max_polls)
{
    int rc;
    for (unsigned k = 0; k < 2; k++)
        if ((rc = aimc_load(dev, &layers[k], k)) != AIMC_OK)
            return rc;
    for (unsigned k = 0; k < 2; k++) {
        if ((rc = aimc_program(dev, &layers[k])) != AIMC_OK)
            return rc;
        if ((rc = aimc_run(dev, vectors, k, max_polls)) != AIMC_OK)
            return rc;
    }
    return AIMC_OK;
}
