#!/usr/bin/env python3
"""Runs the machine code of ember's AVX-512 VNNI int8 microkernel on an emulated CPU (BochsCPU).

Why: the int8 GEMM's 8x32 `vpdpbusd` kernel (crates/ember-cpu/src/qgemm/kernel.rs) runs in the
test suite only on a CPU with AVX-512 VNNI. This script runs its real instructions, taken from
a release build, on Bochs's emulated CPU, like scripts/avx512-emulate.py does for the f32
kernel (whose session, page-mapping and exception machinery it reuses), and checks every
element of the 8x32 i32 tile against sums computed here in Python.

The kernel is not in the `ember` binary (the CLI does not call it); it is in the example that
times quantized inference:
    cargo build --release -p ember-nn --example quant_mlp_infer
    scripts/avx512-vnni-emulate.py [target/release/examples/quant_mlp_infer]

Arguments as rustc passes them (read from the disassembly): kq_full in rdi, the address of the
8 row pointers in rsi, the tail (address of 8 i32, or 0 for None) in rdx, the packed B sliver
in rcx, the 8x32 i32 output in r8. Cases: K a multiple of 4, K with a 1..3-byte tail, K < 4,
and the extreme values (A = 255 with B = -128 / 127).
Exit status 0 when every case matches; prints one line per case.

Status (2026-12-07): NOT in CI. The CPU model compiled into the bochscpu-python 0.4.0 wheel has
AVX-512F but not AVX512_VNNI: every `vpdpbusd` raises #UD (exception vector 6), so only the
K = 0 case (which executes none) passes, and the binding offers no way to choose another model
(Bochs itself has VNNI in its tigerlake and sapphire_rapids models). The VNNI kernel is checked
natively instead, by the test suite on a CPU with AVX-512 VNNI (the Zen 4 development machine).
The script is kept so that a bochscpu build with such a model can run it unchanged.
"""
import importlib.util
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("emu", os.path.join(HERE, "avx512-emulate.py"))
emu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(emu)

SYMBOL = "ember_cpu::qgemm::kernel::x86::ukr_avx512_vnni"
MR, NR = 8, 32


def run_case(binary, code_addr, code_size, k, seed, extreme=None):
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
        start = gva & ~(page - 1)
        end = (gva + size + page - 1) & ~(page - 1)
        for p in range(start, end, page):
            hva = mem.allocate_host_page()
            hosts.append(hva)
            gpa = next_gpa[0]
            next_gpa[0] += page
            mem.page_insert(gpa, hva)
            pt.insert(p, gpa, 1 if rw else 0)

    base = 0x5555_0000_0000
    code_gva = base + code_addr
    with open(binary, "rb") as f:
        f.seek(emu.file_offset(binary, code_addr))
        code = f.read(code_size)
    rows_gva, a_gva, tail_gva = 0x7000_0000_0000, 0x7000_1000_0000, 0x7000_2000_0000
    b_gva, out_gva = 0x7000_3000_0000, 0x7000_4000_0000
    stack_gva, ret_gva = 0x7fff_0000_0000, 0x7fff_1000_0000

    rng = seed
    def rnd(n):
        nonlocal rng
        rng = (rng * 6364136223846793005 + 1442695040888963407) % 2**64
        return (rng >> 33) % n
    kq_full, rem = k // 4, k % 4
    quads = kq_full + (rem > 0)
    if extreme:
        a = [[extreme[0]] * k for _ in range(MR)]
        bt = [[extreme[1]] * k for _ in range(NR)]  # column j of B
    else:
        a = [[rnd(256) for _ in range(k)] for _ in range(MR)]
        bt = [[rnd(256) - 128 for _ in range(k)] for _ in range(NR)]
    lda = k + 5  # rows not back to back
    a_bytes = bytearray(MR * lda)
    for r in range(MR):
        a_bytes[r * lda:r * lda + k] = bytes(a[r])
    # The packed sliver: for each quad, 32 columns x 4 bytes (zero beyond K).
    b_bytes = bytearray(quads * NR * 4)
    for q in range(quads):
        for j in range(NR):
            for t in range(4):
                p = 4 * q + t
                if p < k:
                    b_bytes[(q * NR + j) * 4 + t] = bt[j][p] & 0xFF
    tail = [0] * MR
    for r in range(MR):
        t = a[r][4 * kq_full:k] + [0] * (4 - rem)
        tail[r] = struct.unpack("<i", bytes(t))[0]

    map_range(code_gva, code_size, rw=False)
    map_range(rows_gva, 8 * MR)
    map_range(a_gva, len(a_bytes))
    map_range(tail_gva, 4 * MR)
    map_range(b_gva, max(len(b_bytes), 4))
    map_range(out_gva, 4 * MR * NR)
    map_range(stack_gva, 4 * page)
    map_range(ret_gva, page, rw=False)
    pml4 = 0x100_0000
    for hva, gpa in pt.commit(pml4):
        mem.page_insert(gpa, hva)

    def write(gva, data):
        assert mem.virt_write(pml4, gva, list(bytes(data)))

    write(code_gva, code)
    write(rows_gva, struct.pack(f"<{MR}Q", *[a_gva + r * lda for r in range(MR)]))
    write(a_gva, a_bytes)
    write(tail_gva, struct.pack(f"<{MR}i", *tail))
    if b_bytes:
        write(b_gva, b_bytes)
    write(out_gva, struct.pack(f"<{MR * NR}i", *([0x5A5A5A5A] * (MR * NR))))
    write(ret_gva, b"\xf4")
    rsp = stack_gva + 3 * page
    write(rsp, struct.pack("<Q", ret_gva))

    state = bochscpu.State()
    bochscpu.cpu.set_long_mode(state)
    state.cr4 = int(state.cr4) | (1 << 9) | (1 << 10) | (1 << 18)
    state.xcr0 = 0xE7
    state.mxcsr = 0x1F80
    state.cr3 = pml4
    state.rip, state.rsp = code_gva, rsp
    state.rdi, state.rsi = kq_full, rows_gva
    state.rdx = tail_gva if rem else 0
    state.rcx, state.r8 = b_gva, out_gva
    cs = bochscpu.Segment()
    cs.present, cs.selector, cs.base, cs.limit, cs.attr = True, 0x33, 0, 0xFFFF_FFFF, 0x22FB
    ds = bochscpu.Segment()
    ds.present, ds.selector, ds.base, ds.limit, ds.attr = True, 0x2B, 0, 0xFFFF_FFFF, 0xCF3
    state.cs = cs
    state.ds = state.ss = state.es = state.fs = state.gs = ds
    sess.cpu.state = state

    trouble = []

    def on_exception(s, cpu_id, vector, error_code):
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
    got = struct.unpack(f"<{MR * NR}i", bytes(mem.virt_read(pml4, out_gva, 4 * MR * NR)))
    for hva in hosts:
        mem.release_host_page(hva)
    bad = []
    for i in range(MR):
        for j in range(NR):
            want = sum(a[i][p] * bt[j][p] for p in range(k))
            if got[i * NR + j] != want:
                bad.append((i, j, got[i * NR + j], want))
    if bad:
        i, j, g, w = bad[0]
        return False, f"{len(bad)} elements differ, first ({i}, {j}): got {g}, want {w}"
    return True, f"all {MR * NR} tile elements exact"


def main():
    emu.__file__ = os.path.abspath(__file__)  # its re-exec into the venv must run this script
    emu.ensure_environment()
    default = os.path.join(HERE, "..", "target", "release", "examples", "quant_mlp_infer")
    binary = sys.argv[1] if len(sys.argv) > 1 else default
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: cargo build --release -p ember-nn --example quant_mlp_infer")
    emu.SYMBOL = SYMBOL
    addr, size = emu.kernel_location(binary)
    emu.check_leaf(binary, addr, size)
    print(f"{SYMBOL}: {size} bytes at {addr:#x} in {os.path.relpath(binary)}")
    cases = [(64, None), (37, None), (3, None), (1, None), (0, None), (130, (255, -128)),
             (130, (255, 127)), (9, (0, -128))]
    ok_all = True
    for n, (k, extreme) in enumerate(cases):
        ok, msg = run_case(binary, addr, size, k, seed=n + 1, extreme=extreme)
        ok_all &= ok
        print(f"{'ok  ' if ok else 'FAIL'} k={k:<4} {'extreme ' + str(extreme) if extreme else 'random':18}: {msg}")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
