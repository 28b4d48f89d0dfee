#include <stdio.h>
#include "CSupport.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <string.h>

static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

int sgpt_cpu_features(void) {
    unsigned int a, b, c, d;
    int mask = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    unsigned int maxLeaf = a;
    char vendor[13];
    memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4); vendor[12] = 0;
    if (strcmp(vendor, "GenuineIntel") == 0) mask |= SGPT_CPU_INTEL;
    if (strcmp(vendor, "AuthenticAMD") == 0) mask |= SGPT_CPU_AMD;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return mask;
    int osxsave = (c >> 27) & 1;
    if ((c >> 12) & 1) mask |= SGPT_CPU_FMA;
    if (!osxsave || maxLeaf < 7) return mask;
    unsigned long long xcr0 = read_xcr0();
    int ymm = (xcr0 & 0x6) == 0x6;
    int zmm = (xcr0 & 0xe6) == 0xe6;
    int tiles = (xcr0 & 0x60000) == 0x60000;
    __cpuid_count(7, 0, a, b, c, d);
    if (ymm && ((b >> 5) & 1)) mask |= SGPT_CPU_AVX2;
    if (zmm) {
        if ((b >> 16) & 1) mask |= SGPT_CPU_AVX512F;
        if ((b >> 17) & 1) mask |= SGPT_CPU_AVX512DQ;
        if ((b >> 30) & 1) mask |= SGPT_CPU_AVX512BW;
        if ((b >> 31) & 1) mask |= SGPT_CPU_AVX512VL;
    }
    if (tiles && ((d >> 22) & 1)) mask |= SGPT_CPU_AMX_BF16;
    __cpuid_count(7, 1, a, b, c, d);
    if (zmm && ((a >> 5) & 1)) mask |= SGPT_CPU_AVX512BF16;
    return mask;
}
#else
int sgpt_cpu_features(void) { return 0; }
#endif

void sgpt_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
