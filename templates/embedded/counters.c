#include "counters.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu
#define SYST_COUNTFLAG (1u << 16)  /* set when the counter wrapped; reading CSR clears it */

void ticks_start(void)
{
    SYST_CSR = 0u;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0u;
    SYST_CSR = 5u;                 /* ENABLE | CLKSOURCE = processor clock, no interrupt */
    while (SYST_CVR == 0u) { }     /* CVR reads 0 until the first reload */
    (void)SYST_CSR;
}

uint32_t ticks_elapsed(void)
{
    const uint32_t now = SYST_CVR;
    return (SYST_CSR & SYST_COUNTFLAG) ? UINT32_MAX : SYST_RELOAD - now;
}
