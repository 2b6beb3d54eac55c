/* Firmware: the DS-CNN keyword spotter (MLPerf Tiny's, int8; build/ds_cnn.c from kiln) on one
 * 49x10 feature map. Here the map is synthetic (a seeded generator) and the bench model's weights
 * are random, so the keyword is arbitrary: replace `features` with your MFCC front end's output. */
#include <stdint.h>

#include "counters.h"
#include "ds_cnn.h"
#include "semihost.h"

static const char *const keyword[DS_CNN_OUTPUT_0_SIZE] = {
    "silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go" };

static float features[DS_CNN_INPUT_0_SIZE];
static float scores[DS_CNN_OUTPUT_0_SIZE];

int main(void)
{
    const void *inputs[1];
    void *outputs[1];
    uint32_t state = 12345u, ticks;
    int i, best = 0;
    for (i = 0; i < DS_CNN_INPUT_0_SIZE; i++) {       /* uniform in [-2, 2) */
        state = state * 1664525u + 1013904223u;
        features[i] = (float)(state >> 8) * (4.0f / 16777216.0f) - 2.0f;
    }
    inputs[0] = features;
    outputs[0] = scores;
    ticks_start();
    if (ds_cnn_run(inputs, outputs) != 0) return 100;
    ticks = ticks_elapsed();
    for (i = 1; i < DS_CNN_OUTPUT_0_SIZE; i++)
        if (scores[i] > scores[best]) best = i;
    sh_puts("keyword: "); sh_puts(keyword[best]);
    sh_puts(" (class "); sh_put_i32(best); sh_puts("), ");
    sh_put_u32(ticks * 40u); sh_puts(" instructions\n");
    return 0;
}
