/* What the machine charges for the three things a supervisor's start-up and exit are
 * made of, so runs on different days (or hosts) can be compared: a `cpuid` (a VM exit
 * under a hypervisor: glibc's start-up and libgcc_s's constructor run dozens), a page
 * fault on fresh anonymous memory, and a trivial system call. Medians of 5 rounds
 * (and the first round's faults).
 * Built and run by bench/run-all.sh:  cc -O2 -o vmcost bench/vmcost.c && ./vmcost */
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v) {
    qsort(v, 5, sizeof *v, by_value);
    return v[2];
}

int main(void) {
    enum { CPUIDS = 200, PAGES = 500, CALLS = 2000 };
    double cpuid_us[5], fault_us[5], call_us[5];
    for (int round = 0; round < 5; round++) {
        unsigned a, b, c, d;
        double t = now_us();
        for (int i = 0; i < CPUIDS; i++) __cpuid_count(i % 8, 0, a, b, c, d);
        cpuid_us[round] = (now_us() - t) / CPUIDS;

        char *p = mmap(NULL, PAGES * 4096L, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 1;
        t = now_us();
        for (int i = 0; i < PAGES; i++) p[i * 4096L] = 1;
        fault_us[round] = (now_us() - t) / PAGES;
        munmap(p, PAGES * 4096L);

        t = now_us();
        for (int i = 0; i < CALLS; i++) getppid();
        call_us[round] = (now_us() - t) / CALLS;
    }
    /* The first round's faults may land on guest memory the host has not backed yet. */
    double cold = fault_us[0];
    printf("cpuid µs %.2f, anonymous page fault µs %.2f (first round %.2f), getppid µs %.3f\n",
           median(cpuid_us), median(fault_us), cold, median(call_us));
    return 0;
}
