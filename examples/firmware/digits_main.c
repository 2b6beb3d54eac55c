/* Firmware: classify three 8x8 digit images with the int8 digits model (build/digits.c from
 * kiln) and print each prediction and the instructions it took, through semihosting. */
#include <stdint.h>

#include "counters.h"
#include "digits.h"
#include "semihost.h"

#define IMAGES 3

/* Three images of examples/digits/digits_test.npz (pixels / 16), and their labels. */
static const float image[IMAGES][DIGITS_INPUT_0_SIZE] = {
    {
        0.0000f, 0.0000f, 0.4375f, 1.0000f, 0.8750f, 0.1875f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 0.5625f, 0.8750f, 0.6875f, 0.9375f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 0.0625f, 0.3125f, 0.0000f, 0.9375f, 0.3125f, 0.0000f,
        0.0000f, 0.0000f, 0.0000f, 0.0000f, 0.0000f, 1.0000f, 0.3125f, 0.0000f,
        0.0000f, 0.0000f, 0.0000f, 0.0000f, 0.1875f, 1.0000f, 0.2500f, 0.0000f,
        0.0000f, 0.0000f, 0.0000f, 0.0625f, 0.7500f, 0.8750f, 0.0625f, 0.0000f,
        0.0000f, 0.0000f, 0.3125f, 0.7500f, 1.0000f, 1.0000f, 0.8750f, 0.0625f,
        0.0000f, 0.0000f, 0.5000f, 1.0000f, 0.8750f, 0.6250f, 0.8125f, 0.1875f,
    }, {
        0.0000f, 0.0000f, 0.1250f, 0.8750f, 0.8125f, 0.1875f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 0.8125f, 0.8125f, 0.5625f, 0.6875f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 1.0000f, 0.4375f, 0.0000f, 0.7500f, 0.0000f, 0.0000f,
        0.0000f, 0.1875f, 1.0000f, 0.3125f, 0.0000f, 0.6250f, 0.3125f, 0.0000f,
        0.0000f, 0.3125f, 1.0000f, 0.0625f, 0.0000f, 0.5000f, 0.3125f, 0.0000f,
        0.0000f, 0.1875f, 1.0000f, 0.0625f, 0.0000f, 0.6250f, 0.3125f, 0.0000f,
        0.0000f, 0.0000f, 1.0000f, 0.5000f, 0.3125f, 0.8750f, 0.1875f, 0.0000f,
        0.0000f, 0.0000f, 0.2500f, 1.0000f, 1.0000f, 0.5625f, 0.0625f, 0.0000f,
    }, {
        0.0000f, 0.0000f, 0.0000f, 0.6250f, 0.5625f, 0.0000f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 0.3125f, 0.9375f, 0.0000f, 0.0000f, 0.5625f, 0.3125f,
        0.0000f, 0.0000f, 0.8750f, 0.6250f, 0.0000f, 0.4375f, 1.0000f, 0.2500f,
        0.0000f, 0.3125f, 1.0000f, 0.4375f, 0.3125f, 1.0000f, 0.3750f, 0.0000f,
        0.0000f, 0.6875f, 1.0000f, 1.0000f, 1.0000f, 0.8750f, 0.0000f, 0.0000f,
        0.0000f, 0.1875f, 0.2500f, 0.6875f, 1.0000f, 0.5000f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 0.0000f, 0.4375f, 1.0000f, 0.1250f, 0.0000f, 0.0000f,
        0.0000f, 0.0000f, 0.0000f, 0.7500f, 0.7500f, 0.0000f, 0.0000f, 0.0000f,
    },
};
static const int label[IMAGES] = { 2, 0, 4 };
static float logits[DIGITS_OUTPUT_0_SIZE];

int main(void)
{
    int i, k, best, wrong = 0;
    for (i = 0; i < IMAGES; i++) {
        const void *inputs[1];
        void *outputs[1];
        uint32_t ticks;
        inputs[0] = image[i];
        outputs[0] = logits;
        ticks_start();
        if (digits_run(inputs, outputs) != 0) return 100;
        ticks = ticks_elapsed();
        for (best = 0, k = 1; k < DIGITS_OUTPUT_0_SIZE; k++)
            if (logits[k] > logits[best]) best = k;
        sh_puts("image "); sh_put_i32(i);
        sh_puts(": prediction "); sh_put_i32(best);
        sh_puts(" (label "); sh_put_i32(label[i]);
        sh_puts("), "); sh_put_u32(ticks * 40u);
        sh_puts(" instructions\n");
        wrong += best != label[i];
    }
    return wrong;
}
