/* Debian's Wine 8 lacks bcryptprimitives.dll, whose ProcessPrng Rust's std imports on
 * Windows for its random numbers; without it no Rust .exe starts under that Wine. This shim,
 * placed beside the .exe, provides ProcessPrng on top of RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. Test infrastructure only: never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
