"""The C export measured on a microcontroller: an Arm Cortex-M4F, built and emulated.

* **Flash and RAM** -- ``model.c`` cross-compiled with ``arm-none-eabi-gcc -Os -mcpu=cortex-m4
  -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16``: flash = text + data (``.rodata`` is in text),
  static RAM = data + bss (from ``arm-none-eabi-size``), stack of one step from
  ``-fstack-usage`` (the step's frame and every function it calls that was not inlined).
* **Running it** -- a bare-metal firmware (vector table, reset handler, no C library beyond
  ``libm``) links the model with a few real series as constants and runs on QEMU's MPS2 AN386
  board (a Cortex-M4), printing each series' logits through Arm semihosting; the host compares
  them with its own.
* **Instructions per time step** -- counted, not estimated: QEMU runs one instruction per
  translation block (``-singlestep``) and logs each block it executes (``-d exec,nochain``), so
  the log holds one line per executed instruction. The firmware is run twice on windows of two
  lengths; the difference divided by the difference in samples is the cost of one step, with
  the start-up and the classification's fixed cost taken out.

Everything here needs the Debian packages ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi``
(for ``libm``) and ``qemu-system-arm``; :func:`toolchain` says which are missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["toolchain", "CFLAGS", "measure_flash_ram", "build_firmware", "run_firmware",
           "instructions_per_step", "deployment", "device_cost", "CLOCK_MHZ",
           "DEPLOYMENT_FIGURES"]

#: a run's report measures its exported model's deployment figures (off in most tests: each
#: costs a C export, a cross-compilation and two emulator runs, a few seconds)
DEPLOYMENT_FIGURES = True

CFLAGS = ["-Os", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
          "-std=c99", "-ffunction-sections", "-fdata-sections"]
#: the clock the latency estimate states (a common Cortex-M4F part: STM32L4 at 80 MHz), with one
#: instruction per cycle (the M4 issues one per cycle, loads and multiplies-accumulates in one
#: to two; flash wait states come on top)
CLOCK_MHZ = 80

_LINKER = """
MEMORY
{
  FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
  RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(reset_handler)
SECTIONS
{
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(4); _etext = .; } > FLASH
  .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  _sidata = LOADADDR(.data);
  .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
  /DISCARD/ : { *(.ARM.exidx*) }
}
"""

_STARTUP = r"""
/* bare-metal start-up for QEMU's mps2-an386 (Cortex-M4F), output through Arm semihosting */
#include <stdint.h>
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void reset_handler(void);
static void hang(void) { for (;;) {} }
__attribute__((section(".vectors"), used))
static const void *const vectors[16] = {
    &_estack, (const void *)reset_handler, (const void *)hang, (const void *)hang,
    (const void *)hang, (const void *)hang, (const void *)hang, 0, 0, 0, 0,
    (const void *)hang, (const void *)hang, 0, (const void *)hang, (const void *)hang};
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
void put(const char *s) { semihost(0x04, s); }  /* SYS_WRITE0 */
void put_hex(uint32_t v)
{
    char buf[10];
    int i;
    for (i = 0; i < 8; ++i) buf[i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 15u];
    buf[8] = ' ';
    buf[9] = 0;
    put(buf);
}
void reset_handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;  /* the FPU on */
    __asm__ volatile("dsb\n isb");
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    main();
    /* SYS_EXIT; on AArch32 r1 holds the reason itself: ADP_Stopped_ApplicationExit */
    semihost(0x18, (const void *)0x20026u);
    hang();
}
/* what libm may call when a result overflows (no C library here) */
int *__errno(void) { static int e; return &e; }
"""


def toolchain() -> dict[str, str | None]:
    """Paths of the cross compiler, its ``size`` and QEMU (None where absent)."""
    return {"gcc": shutil.which("arm-none-eabi-gcc"), "size": shutil.which("arm-none-eabi-size"),
            "qemu": shutil.which("qemu-system-arm")}


def _missing(*names: str) -> str | None:
    tc = toolchain()
    gone = [n for n in names if tc[n] is None]
    if not gone:
        return None
    pkgs = {"gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi", "size": "binutils-arm-none-eabi",
            "qemu": "qemu-system-arm"}
    return "needs " + " ".join(sorted({pkgs[n] for n in gone})) + " (apt-get install)"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()[:2000]}")
    return r


def measure_flash_ram(c_path: str | Path) -> dict[str, Any]:
    """Flash, static RAM and the stack of one step of the exported ``NAME.c`` on the M4F."""
    why = _missing("gcc", "size")
    if why:
        return {"available": False, "why": why}
    c_path = Path(c_path)
    prefix = _prefix(c_path)
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "model.o"
        _run([toolchain()["gcc"], *CFLAGS, "-fstack-usage", "-I", str(c_path.parent), "-c",
              str(c_path), "-o", str(obj)])
        out = _run([toolchain()["size"], str(obj)]).stdout.splitlines()[-1].split()
        text, data, bss = (int(v) for v in out[:3])
        frames = {}
        for line in (Path(tmp) / "model.su").read_text().splitlines():
            name, size = line.split("\t")[0].rsplit(":", 1)[-1], int(line.split("\t")[1])
            frames[name] = size
    step = frames.get(f"{prefix}_step", 0) + frames.get(f"{prefix}_step_graph", 0)
    return {"available": True, "flash_bytes": text + data, "text_bytes": text,
            "data_bytes": data, "bss_bytes": bss, "static_ram_bytes": data + bss,
            "stack_bytes": step, "cflags": " ".join(CFLAGS)}


def _prefix(c_path: Path) -> str:
    m = re.search(r"void (\w+)_reset\(", c_path.read_text())
    if m is None:
        raise ValueError(f"{c_path} is not a C file written by seqeq export")
    return m.group(1)


def build_firmware(c_path: str | Path, X: np.ndarray, lengths, out_dir: str | Path) -> Path:
    """An ELF for mps2-an386 that classifies the series ``X (n, T, C)`` (real ``lengths``),
    compiled in, and prints each one's logits as float32 bits in hex, a line per series."""
    why = _missing("gcc")
    if why:
        raise RuntimeError(why)
    c_path, out_dir = Path(c_path), Path(out_dir)
    prefix = _prefix(c_path)
    P = prefix.upper()
    X = np.ascontiguousarray(X, np.float32)
    n, T, C = X.shape
    vals = ", ".join(f"0x{v:08x}u" for v in X.view(np.uint32).ravel())
    main = f"""#include <stdint.h>
#include "{c_path.stem}.h"
void put(const char *s);
void put_hex(uint32_t v);
static const uint32_t data_bits[{max(1, X.size)}] = {{{vals or "0"}}};
static const int lengths[{n}] = {{{", ".join(str(int(v)) for v in lengths)}}};
int main(void)
{{
    float logits[{P}_CLASSES];
    int i, k;
    for (i = 0; i < {n}; ++i) {{
        {prefix}_classify((const float *)(const void *)(data_bits + (long)i * {T * C}),
                          lengths[i], logits);
        for (k = 0; k < {P}_CLASSES; ++k) {{
            union {{ float f; uint32_t u; }} b;
            b.f = logits[k];
            put_hex(b.u);
        }}
        put("\\n");
    }}
    return 0;
}}
"""
    (out_dir / "fw_main.c").write_text(main)
    (out_dir / "fw_startup.c").write_text(_STARTUP)
    (out_dir / "fw.ld").write_text(_LINKER)
    elf = out_dir / "fw.elf"
    _run([toolchain()["gcc"], *CFLAGS, "-nostartfiles", "-nostdlib", "-I", str(c_path.parent),
          str(out_dir / "fw_startup.c"), str(out_dir / "fw_main.c"), str(c_path),
          "-T", str(out_dir / "fw.ld"), "-Wl,--gc-sections", "-o", str(elf), "-lm", "-lc", "-lgcc"])
    return elf


def run_firmware(elf: str | Path, n_classes: int, count: bool = False,
                 timeout: float = 300) -> tuple[np.ndarray, int | None]:
    """Run ``elf`` on QEMU's mps2-an386: (logits (n, classes), executed instructions where
    ``count``)."""
    why = _missing("qemu")
    if why:
        raise RuntimeError(why)
    with tempfile.TemporaryDirectory() as tmp:
        log, printed = Path(tmp) / "exec.log", Path(tmp) / "semihosting.txt"
        cmd = [toolchain()["qemu"], "-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
               "-monitor", "none", "-serial", "none",
               "-chardev", f"file,id=semihosting,path={printed}",
               "-semihosting-config", "enable=on,target=native,chardev=semihosting",
               "-kernel", str(elf)]
        if count:
            cmd += ["-singlestep", "-d", "exec,nochain", "-D", str(log)]
        _run(cmd, timeout=timeout)
        insns = None
        if count:
            with open(log, "rb") as f:
                insns = sum(chunk.count(b"Trace ") for chunk in iter(lambda: f.read(1 << 22), b""))
        text = printed.read_text() if printed.is_file() else ""
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    bits = np.array([[int(v, 16) for v in row] for row in rows], dtype=np.uint32)
    return bits.view(np.float32).reshape(len(rows), n_classes), insns


def instructions_per_step(c_path: str | Path, x: np.ndarray, n_classes: int,
                          short: int = 4) -> dict[str, Any]:
    """Executed Cortex-M4 instructions per time step of the exported model, counted on QEMU
    (see the module docstring) from one series ``x (T, C)``: the firmware classifies its first
    ``short`` samples, then all ``T``; (I_T - I_short) / (T - short)."""
    why = _missing("gcc", "qemu")
    if why:
        return {"available": False, "why": why}
    x = np.asarray(x, np.float32)
    T = len(x)
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for L in (short, T):
            d = Path(tmp) / f"len{L}"
            d.mkdir()
            elf = build_firmware(c_path, x[None], [L], d)
            counts.append(run_firmware(elf, n_classes, count=True)[1])
    per_step = (counts[1] - counts[0]) / (T - short)
    return {"available": True, "instructions_per_step": round(per_step, 1),
            "method": "QEMU 'mps2-an386' -singlestep -d exec,nochain: one log line per executed "
                      f"instruction; windows of {short} and {T} samples, difference / {T - short}",
            "clock_mhz": CLOCK_MHZ, "us_per_step_at_clock": round(per_step / CLOCK_MHZ, 2)}


_COSTS: dict[str, dict[str, int]] = {}


def device_cost(spec) -> dict[str, int]:
    """``{"ram_bytes", "macs_per_step"}`` of ``spec``'s model as C: the state struct plus the
    step's scratch, and its multiply-accumulates per sample. Computed by compiling the step of an
    untrained model of that spec (neither depends on the weights' values; about a second, cached
    per spec), so the search can refuse a candidate before it trains."""
    import json as _json

    from ..models import build_model
    from .c_source import compile_step_graph, state_struct_bytes
    from .streaming import build_streaming_model, state_layout

    key = _json.dumps(spec.to_dict(), sort_keys=True)
    if key not in _COSTS:
        model = build_model(spec, seed=0).eval()
        _, _, sizes = compile_step_graph(build_streaming_model(model), "cost")
        S = max(b for _, b in state_layout(model).values())
        state = state_struct_bytes(S, spec.num_classes)
        _COSTS[key] = {"ram_bytes": state + sizes["scratch"], "macs_per_step": sizes["macs"]}
    return _COSTS[key]


def deployment(model, spec, *, class_names, channel_names, quantize: str | None,
               series: np.ndarray, window_steps: int) -> dict[str, Any]:
    """The deployment figures of ``model`` exported to C (see the module docstring): what the
    export itself knows (weights, state and scratch bytes, multiply-accumulates per sample), and
    where the Arm toolchain and QEMU are present, the measured flash, stack and instructions per
    sample on the Cortex-M4F; ``series (T, C)`` is a real series to count on, ``window_steps``
    the samples of a typical window (the latency estimate)."""
    from .c_source import export_c

    out: dict[str, Any] = {"target": "Arm Cortex-M4F (-mcpu=cortex-m4 -mfloat-abi=hard)",
                           "quantize": quantize or "none", "clock_mhz": CLOCK_MHZ,
                           "window_steps": int(window_steps)}
    with tempfile.TemporaryDirectory() as tmp:
        c_path = Path(tmp) / "model.c"
        info = export_c(model, spec, c_path, class_names=class_names,
                        channel_names=channel_names, quantize=quantize)
        out.update({k: info[k] for k in ("weight_bytes", "state_bytes", "scratch_bytes",
                                         "macs_per_step", "state_size")})
        fr = measure_flash_ram(c_path)
        if fr["available"]:
            out.update({"flash_bytes": fr["flash_bytes"], "stack_bytes": fr["stack_bytes"],
                        "static_ram_bytes": fr["static_ram_bytes"],
                        "ram_bytes": info["state_bytes"] + fr["stack_bytes"]
                        + fr["static_ram_bytes"]})
        else:
            out.update({"flash_bytes": None, "stack_bytes": None,
                        "ram_bytes": info["state_bytes"] + info["scratch_bytes"],
                        "unmeasured": fr["why"]})
        pool = int(getattr(model, "pool", 1))
        x = np.asarray(series, np.float32)[: 6 * pool]
        ins = (instructions_per_step(c_path, x, len(class_names), short=2 * pool)
               if len(x) > 2 * pool else {"available": False, "why": "the series is too short"})
        if ins["available"]:
            per = ins["instructions_per_step"]
            out.update({"instructions_per_step": per, "instructions_method": ins["method"],
                        "ms_per_window": round(per * window_steps / (CLOCK_MHZ * 1e3), 3)})
        else:
            out.update({"instructions_per_step": None, "ms_per_window": None})
            out.setdefault("unmeasured", ins["why"])
    return out
