#ifndef COUNTERS_H
#define COUNTERS_H
#include <stdint.h>
/* Counting executed instructions under QEMU: with -icount shift=0 one instruction takes 1 ns of
 * virtual time, and SysTick (clocked at 25 MHz on the mps2 boards) counts once per 40
 * instructions. Without -icount SysTick follows host time. On silicon it counts CPU cycles.
 * Polled, with its interrupt off: it adds no exception frame to the stack being measured. */
void     ticks_start(void);        /* restart from 0 */
uint32_t ticks_elapsed(void);      /* ticks since ticks_start(); UINT32_MAX after 2^24 ticks */
#endif
