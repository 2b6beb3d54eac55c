/* The profiling hook of `kiln bench --layers` and `kiln compile --tune`: built only into the
 * profiling library (with the model's C emitted with profile=True), never into shipped code.
 * kiln_profile_ns[i] is the CLOCK_MONOTONIC time, in ns, at which layer i started; the last
 * element, at which the run ended. KILN_PROFILE_MARKS (layers + 1) is set on the command line. */
#define _POSIX_C_SOURCE 199309L
#include <time.h>

extern long long kiln_profile_ns[KILN_PROFILE_MARKS];
long long kiln_profile_ns[KILN_PROFILE_MARKS];

void kiln_profile_mark(int layer);

void kiln_profile_mark(int layer)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    kiln_profile_ns[layer] = (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
