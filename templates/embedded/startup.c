/* Minimal Cortex-M startup (QEMU mps2 boards): vector table, Reset_Handler, fault handlers.
 * Builds for M0+/M3 (soft float) and M4F; the FPU is switched on only where the code uses it. */
#include <stdint.h>
#include "semihost.h"

extern uint32_t __data_start__, __data_end__, __data_load__;
extern uint32_t __bss_start__, __bss_end__, __stack_top__;
extern int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((noreturn));
void Default_Handler(void);

typedef void (*handler_t)(void);

/* word 0 = initial MSP, word 1 = reset vector, then 14 system exceptions */
__attribute__((section(".isr_vector"), used))
const struct {
    uint32_t *initial_sp;
    handler_t vec[15];
} vector_table = {
    &__stack_top__,
    {
        Reset_Handler,
        Fault_Handler,   /* NMI */
        Fault_Handler,   /* HardFault */
        Fault_Handler,   /* MemManage */
        Fault_Handler,   /* BusFault */
        Fault_Handler,   /* UsageFault */
        0, 0, 0, 0,      /* reserved */
        Default_Handler, /* SVCall */
        Default_Handler, /* DebugMon */
        0,               /* reserved */
        Default_Handler, /* PendSV */
        Default_Handler, /* SysTick: polled, its interrupt stays off */
    }
};

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

void Reset_Handler(void)
{
    uint32_t *src, *dst;
#if defined(__ARM_FP)
    /* 1. FPU on (CP10+CP11 full access) before any float instruction. */
    SCB_CPACR |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    /* 2. .data from flash image, zero .bss (plain loops, no libc). */
    for (src = &__data_load__, dst = &__data_start__; dst < &__data_end__;)
        *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;)
        *dst++ = 0u;
    /* 3. run, 4. report status to the host and stop QEMU */
    sh_exit(main());
}

#define SCB_CFSR  (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR  (*(volatile uint32_t *)0xE000ED2Cu)
void Fault_Handler(void)
{
    sh_puts("FAULT CFSR=");  sh_put_hex(SCB_CFSR);
    sh_puts(" HFSR=");       sh_put_hex(SCB_HFSR);
    sh_puts("\n");
    sh_exit(99);
}

void Default_Handler(void) { sh_puts("unexpected exception\n"); sh_exit(98); }
