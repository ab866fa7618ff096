/*
 * fnrun-tsc-khz: the host's TSC rate in kHz, for guests under TCG.
 *
 * Under TCG a guest's TSC counts at the host's rate. Told that rate
 * (tsc_early_khz= on its kernel command line), the guest's kernel need not
 * calibrate its TSC against the emulated PIT, which fails on a busy host: the
 * kernel then marks the TSC unstable and keeps time with jiffies, in 4 ms
 * steps, for the VM's life and every clone of a snapshot of it.
 *
 * Prints the median of five 10 ms measurements against CLOCK_MONOTONIC_RAW.
 * Exits 1 where there is no TSC to read (not x86-64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define ROUNDS 5

#if defined(__x86_64__)
static long long nanoseconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC_RAW, &now);
  return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
#endif

int main(void) {
#if defined(__x86_64__)
  double khz[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    long long started = nanoseconds();
    unsigned long long counted = __rdtsc();
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
    long long ended = nanoseconds();
    unsigned long long count = __rdtsc() - counted;
    khz[i] = (double)count * 1e6 / (double)(ended - started);
  }
  qsort(khz, ROUNDS, sizeof khz[0], by_value);
  printf("%.0f\n", khz[ROUNDS / 2]);
  return 0;
#else
  return 1;
#endif
}
