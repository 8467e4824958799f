#!/usr/bin/env python3
"""Runs the machine code of ember's AVX-512 SGEMM microkernel, and of its AVX512-BF16 bf16 GEMM
microkernel (vdpbf16ps), on an emulated AVX-512 CPU.

Why: the development machine has no AVX-512, so the 12x32 kernel's *logic* is tested through
an instance of the same macro on emulated 16-lane vectors (crates/ember-cpu/src/gemm), but its
real instance -- the instructions a user's AVX-512 CPU would execute -- never ran. This script
runs exactly those bytes, taken from a release build of `ember`, on BochsCPU (the CPU of the
Bochs emulator, built with EVEX/AVX-512; PyPI `bochscpu-python`), and checks every element of
the 12x32 tile it writes.

How: the kernel is a leaf function (no calls, no data outside its arguments and stack), so the
pages holding it are mapped into a bare long-mode guest at their address in the ELF file, with
the packed A and B slivers, the C tile, a stack, and a return address pointing at a `hlt`.
Arguments follow the x86-64 C convention, which is how rustc passed them (read from the
disassembly: kc in rdi, a/b/c in rsi/rdx/rcx, rs_c/cs_c in r8/r9, alpha/beta in xmm0/xmm1).
Inputs are small integers and alpha, beta powers of two times small integers, so every FMA is
exact in f32 and the expected tile is known exactly: any wrong lane, row, stride, or
instruction shows as a mismatch.

Usage:  scripts/avx512-emulate.py [path/to/ember]     (default target/release/ember; an
        optimised build: in a debug build the kernel calls memset and cannot run alone)
Needs:  a venv with bochscpu-python (BOCHS_VENV, default ~/.venvs/bochs; created if missing).
        Its wheel wants glibc >= 2.38 (two C23 symbols); on an older glibc the script builds a
        two-function shim with `cc` and preloads it.
Exit status 0 when every case matches; prints one line per case. The bf16 kernel is skipped,
with a line saying so, when the emulated CPU raises #UD at vdpbf16ps (the bochscpu wheel's CPU
model has AVX-512F but, as of bochscpu-python 0.4.0, not AVX512-BF16).
"""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("BOCHS_VENV", os.path.expanduser("~/.venvs/bochs"))
SHIM = os.path.join(VENV, "libc23shim.so")
SYMBOL = "ember_cpu::gemm::kernel::avx512::ukr_f32_12x32"
# The AVX512-BF16 kernel (vdpbf16ps): same tile and argument order, `kc` counts pairs of k and
# the slivers hold 32-bit words of two bf16 values.
SYMBOL_BF16 = "ember_cpu::gemm::bf16::ukr"


def ensure_environment():
    """Re-executes this script inside the venv (creating it), with the glibc shim if needed."""
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", "bochscpu-python"])
    if os.environ.get("EMBER_BOCHS_CHILD") == "1":
        return
    env = dict(os.environ, EMBER_BOCHS_CHILD="1")
    probe = subprocess.run([py, "-c", "import bochscpu"], capture_output=True, text=True)
    if probe.returncode != 0:
        if "__isoc23" not in probe.stderr:
            sys.exit(f"cannot import bochscpu: {probe.stderr.strip()}")
        if not os.path.exists(SHIM):
            src = SHIM[:-3] + ".c"
            with open(src, "w") as f:
                f.write(
                    "#include <stdlib.h>\n#include <stdio.h>\n#include <stdarg.h>\n"
                    "unsigned long long __isoc23_strtoull(const char *s, char **e, int b)"
                    " { return strtoull(s, e, b); }\n"
                    "int __isoc23_sscanf(const char *s, const char *f, ...)"
                    " { va_list ap; va_start(ap, f); int r = vsscanf(s, f, ap);"
                    " va_end(ap); return r; }\n"
                )
            subprocess.check_call(["cc", "-shared", "-fPIC", "-o", SHIM, src])
        env["LD_PRELOAD"] = SHIM
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], env)


def kernel_location(binary, symbol=SYMBOL):
    """(address, size) of the kernel in the ELF file, from its symbol table."""
    out = subprocess.run(["nm", "-C", "-S", binary], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[3] == symbol:
            return int(parts[0], 16), int(parts[1], 16)
    sys.exit(f"{binary}: symbol {symbol} not found (a stripped or non-x86-64 build?)")


def check_leaf(binary, addr, size):
    """Exits unless the kernel calls nothing (an unoptimised build calls memset, which this
    bare guest does not have)."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={addr:#x}",
         f"--stop-address={addr + size:#x}", binary],
        capture_output=True, text=True, check=True).stdout
    calls = [l.strip() for l in out.splitlines() if "\tcall" in l or " call " in l]
    if calls:
        sys.exit(f"the kernel in {binary} calls other code ({calls[0]}): use an optimised "
                 "build (cargo build --release --bin ember)")


def file_offset(binary, vaddr):
    """The file offset of virtual address `vaddr`, from the ELF64 program headers."""
    with open(binary, "rb") as f:
        ident = f.read(64)
        assert ident[:4] == b"\x7fELF" and ident[4] == 2, "not an ELF64 file"
        phoff, = struct.unpack_from("<Q", ident, 32)
        phentsize, phnum = struct.unpack_from("<HH", ident, 54)
        f.seek(phoff)
        for _ in range(phnum):
            ph = f.read(phentsize)
            ptype, _, off, va, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", ph)
            if ptype == 1 and va <= vaddr < va + filesz:
                return vaddr - va + off
    sys.exit(f"address {vaddr:#x} is in no loaded segment")


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_bits(x):
    """bf16 bits of a small integer (exact in bf16: the top half of its f32 bits)."""
    return f32_bits(x) >> 16


def run_case(binary, code_addr, code_size, kc, alpha, beta, rs_c, cs_c, seed, bf16=False):
    """One call of the kernel. With `bf16`, `kc` counts pairs of k and each sliver value is a
    32-bit word of two bf16 values (low half: the even k)."""
    import bochscpu
    import bochscpu.cpu
    import bochscpu.memory as mem

    page = mem.page_size()
    sess = bochscpu.Session()

    def missing(gpa):
        raise RuntimeError(f"guest touched unmapped physical page {gpa:#x}")

    sess.missing_page_handler = missing
    pt = mem.PageMapLevel4Table()
    hosts = []
    next_gpa = [0x1000_0000]

    def map_range(gva, size, rw=True):
        """Maps [gva, gva+size) page by page to fresh host pages."""
        start = gva & ~(page - 1)
        end = (gva + size + page - 1) & ~(page - 1)
        for p in range(start, end, page):
            hva = mem.allocate_host_page()
            hosts.append(hva)
            gpa = next_gpa[0]
            next_gpa[0] += page
            mem.page_insert(gpa, hva)
            pt.insert(p, gpa, 1 if rw else 0)

    # Guest virtual layout: the kernel at its ELF address (plus a base), data elsewhere.
    base = 0x5555_0000_0000
    code_gva = base + code_addr
    with open(binary, "rb") as f:
        f.seek(file_offset(binary, code_addr))
        code = f.read(code_size)
    a_gva, b_gva, c_gva = 0x7000_0000_0000, 0x7000_1000_0000, 0x7000_2000_0000
    stack_gva, ret_gva = 0x7fff_0000_0000, 0x7fff_1000_0000

    # Exact small-integer inputs: products and sums stay exact in f32.
    rng = seed
    def small():
        nonlocal rng
        rng = (rng * 6364136223846793005 + 1442695040888963407) % 2**64
        return float((rng >> 33) % 7) - 3.0
    if bf16:
        a2 = [(small(), small()) for _ in range(12 * kc)]
        b2 = [(small(), small()) for _ in range(32 * kc)]
        a = [bf16_bits(lo) | (bf16_bits(hi) << 16) for lo, hi in a2]
        b = [bf16_bits(lo) | (bf16_bits(hi) << 16) for lo, hi in b2]
    else:
        a = [small() for _ in range(12 * kc)]
        b = [small() for _ in range(32 * kc)]
    c_len = 11 * rs_c + 31 * cs_c + 1
    c_old = [small() if beta != 0.0 else float("nan") for _ in range(c_len)]

    map_range(code_gva, code_size, rw=False)
    map_range(a_gva, max(4 * len(a), 4))
    map_range(b_gva, max(4 * len(b), 4))
    map_range(c_gva, 4 * c_len)
    map_range(stack_gva, 4 * page)
    map_range(ret_gva, page, rw=False)
    pml4 = 0x100_0000
    for hva, gpa in pt.commit(pml4):
        mem.page_insert(gpa, hva)

    def write(gva, data):
        assert mem.virt_write(pml4, gva, list(bytes(data)))

    write(code_gva, code)
    if kc:
        fmt = "I" if bf16 else "f"
        write(a_gva, struct.pack(f"<{len(a)}{fmt}", *a))
        write(b_gva, struct.pack(f"<{len(b)}{fmt}", *b))
    write(c_gva, struct.pack(f"<{c_len}f", *c_old))
    write(ret_gva, b"\xf4")  # hlt
    rsp = stack_gva + 3 * page
    write(rsp, struct.pack("<Q", ret_gva))  # the return address `call` would have pushed

    state = bochscpu.State()
    bochscpu.cpu.set_long_mode(state)
    state.cr4 = int(state.cr4) | (1 << 9) | (1 << 10) | (1 << 18)  # OSFXSR, OSXMMEXCPT, OSXSAVE
    state.xcr0 = 0xE7  # x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
    state.mxcsr = 0x1F80
    state.cr3 = pml4
    state.rip, state.rsp = code_gva, rsp
    state.rdi, state.rsi, state.rdx, state.rcx = kc, a_gva, b_gva, c_gva
    state.r8, state.r9 = rs_c, cs_c
    zmm = state.zmm
    for reg, val in ((0, alpha), (1, beta)):
        z = zmm[reg]
        z.q = [f32_bits(val)] + [0] * 7
        zmm[reg] = z
    state.zmm = zmm
    cs = bochscpu.Segment()
    cs.present, cs.selector, cs.base, cs.limit, cs.attr = True, 0x33, 0, 0xFFFF_FFFF, 0x22FB
    ds = bochscpu.Segment()
    ds.present, ds.selector, ds.base, ds.limit, ds.attr = True, 0x2B, 0, 0xFFFF_FFFF, 0xCF3
    state.cs = cs
    state.ds = state.ss = state.es = state.fs = state.gs = ds
    sess.cpu.state = state

    trouble = []

    def on_exception(s, cpu_id, vector, error_code):
        # The guest runs in user mode, so the `hlt` after the return raises #GP: that is the
        # normal end. Any other exception is a failure.
        if s.cpu.rip not in (ret_gva, ret_gva + 1):
            trouble.append(f"exception vector {vector} (error code {error_code}) at "
                           f"{s.cpu.rip - base:#x} in the ELF")
        s.stop()

    def on_hlt(s, cpu_id):
        s.stop()

    hook = bochscpu.Hook()
    hook.exception = on_exception
    hook.hlt = on_hlt
    sess.run([hook])
    if trouble:
        return False, trouble[0]
    final = sess.cpu.state
    if final.rip not in (ret_gva, ret_gva + 1):
        return False, f"stopped at {final.rip:#x}, not at the return address"
    got = struct.unpack(f"<{c_len}f", bytes(mem.virt_read(pml4, c_gva, 4 * c_len)))
    for hva in hosts:
        mem.release_host_page(hva)

    # The exact expected tile: C = alpha·(A·B) + beta·C_old on the tile, untouched elsewhere.
    want = list(c_old)
    for i in range(12):
        for j in range(32):
            if bf16:
                acc = sum(a2[p * 12 + i][h] * b2[p * 32 + j][h] for p in range(kc) for h in (0, 1))
            else:
                acc = sum(a[p * 12 + i] * b[p * 32 + j] for p in range(kc))
            o = i * rs_c + j * cs_c
            want[o] = alpha * acc + (beta * c_old[o] if beta != 0.0 else 0.0)
    bad = [o for o in range(c_len)
           if not (got[o] == want[o] or (got[o] != got[o] and want[o] != want[o]))]
    if bad:
        o = bad[0]
        return False, f"{len(bad)} elements differ, first at offset {o}: got {got[o]}, want {want[o]}"
    return True, f"all {12 * 32} tile elements exact"


def main():
    ensure_environment()
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "target", "release", "ember")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `cargo build --release --bin ember`")
    cases = [
        # kc, alpha, beta, rs_c, cs_c: contiguous rows (the vector store path), with and
        # without beta (NaN in C must be ignored when beta = 0), kc = 0 and 1, and a strided
        # C (column stride 2, the scalar path).
        (16, 1.0, 0.0, 32, 1), (37, 0.5, -1.5, 40, 1), (1, 2.0, 1.0, 32, 1),
        (0, 1.0, 0.5, 32, 1), (9, -0.25, 0.0, 1, 13), (23, 1.0, 2.0, 70, 2),
    ]
    ok_all = True
    for symbol, bf16 in ((SYMBOL, False), (SYMBOL_BF16, True)):
        addr, size = kernel_location(binary, symbol)
        check_leaf(binary, addr, size)
        print(f"{symbol}: {size} bytes at {addr:#x} in {os.path.relpath(binary)}")
        for n, (kc, alpha, beta, rs_c, cs_c) in enumerate(cases):
            ok, msg = run_case(binary, addr, size, kc, alpha, beta, rs_c, cs_c, seed=n + 1,
                               bf16=bf16)
            if bf16 and not ok and msg.startswith("exception vector 6 "):
                # #UD at vdpbf16ps: the CPU model of the bochscpu wheel (Tiger Lake-like) has
                # AVX-512 but not AVX512-BF16, so this kernel cannot be checked here.
                print(f"SKIPPED {symbol}: the emulated CPU has no AVX512-BF16 ({msg})")
                break
            ok_all &= ok
            what = "pairs" if bf16 else "kc"
            print(f"{'ok  ' if ok else 'FAIL'} {what}={kc:<3} alpha={alpha:<5} beta={beta:<4} "
                  f"rs_c={rs_c:<3} cs_c={cs_c}: {msg}")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
