"""The periphery register map: one description (hdl.periphery.periphery_regmap), emitted as
SystemRDL and compiled by systemrdl-compiler, agrees field by field with the Python register
model and with the Amaranth register block (every address of the map read and written in the
Amaranth simulator); the PeakRDL C header and the C examples (NMPU, ESSOP) compile with
`cc -std=c11 -Wall -Werror`; configs and maps that cannot be built are rejected by name."""

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from hdl.config import ESSOP_PRESETS, NMPU_PRESETS, NMPUConfig
from hdl.periphery import (PERIPHERY_PRESETS, SLVERR, OKAY, Periphery, PeripheryConfig,
                           periphery_regmap)
from hdl.regmap import Field, Reg, RegModel, pack_fields, write_outputs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """SystemRDL, C header (and HTML for one preset) of every preset."""
    out = {}
    for name, cfg in PERIPHERY_PRESETS.items():
        d = tmp_path_factory.mktemp(name)
        out[name] = write_outputs(periphery_regmap(cfg), d, html=name == "nmpu_tiny")
    return out


@pytest.mark.parametrize("name", list(PERIPHERY_PRESETS))
def test_compiled_systemrdl_equals_the_description(name, outputs):
    rm = periphery_regmap(PERIPHERY_PRESETS[name])
    model = RegModel.from_file(outputs[name]["rdl"])
    assert list(model.regs) == [r.name for r in rm.regs]
    for r in rm.regs:
        mr = model[r.name]
        assert mr.address == r.offset
        assert (mr.readable, mr.writable) == ("r" in r.sw, "w" in r.sw), r.name
        assert mr.fields == {f.name: (f.lsb, f.width) for f in r.fields}, r.name
    w = rm.window
    if w is None:  # ESSOP: no parameter memory, the registers fill the address space
        assert model.mem is None
        end = max(r.offset for r in rm.regs) + 4
        assert 1 << rm.addr_bits >= end > 1 << (rm.addr_bits - 1)
    else:
        assert model.mem == (w.name, w.offset, w.entries * w.stride, False, True)
        assert rm.addr_bits == (w.offset * 2 - 1).bit_length()
    if name == "nmpu_tiny":
        assert (outputs[name]["html"]).exists()


def test_word_layouts_follow_the_config():
    ldpu = periphery_regmap(PERIPHERY_PRESETS["ldpu_small"])
    assert (ldpu.window.words, ldpu.window.stride, ldpu.window.word_bits) == (3, 4, 80)
    nmpu = periphery_regmap(PERIPHERY_PRESETS["nmpu_paper"])
    assert (nmpu.window.words, nmpu.window.stride) == (1, 1)
    assert nmpu.window.offset >= 256 * 4
    # parameter images: one window slot per column of each, IMAGE.base wide enough for all,
    # with a range check when not every value of its bits is an image
    for images, entries, bits, maximum in ((1, 4, 1, 0), (2, 8, 1, None), (3, 12, 2, 2),
                                           (4, 16, 2, None), (5, 20, 3, 4)):
        rm = periphery_regmap(PeripheryConfig(name="i", core=NMPU_PRESETS["tiny"], images=images))
        base = rm.reg("IMAGE").field("base")
        assert (rm.window.entries, base.width, base.maximum) == (entries, bits, maximum), images
        assert rm.reg("IMAGE").locked and rm.window.offset >= entries * rm.window.stride * 4
    assert [r.offset for r in nmpu.regs] == sorted(r.offset for r in nmpu.regs)
    wide = PeripheryConfig(name="wide", core=dataclasses.replace(NMPU_PRESETS["tiny"],
                                                                 clamp_count_bits=40))
    clamps = [r for r in periphery_regmap(wide).regs if r.name.startswith("CLAMP")]
    assert [(r.name, [(f.name, f.width) for f in r.fields]) for r in clamps] == [
        ("CLAMP0", [("count_0", 32)]), ("CLAMP1", [("count_1", 8)])]


# -- the Amaranth register block against the compiled SystemRDL ---------------------------------

def _write(ctx, dut, addr, data, strb=0xF):
    ctx.set(dut.s_axil_awaddr, addr)
    ctx.set(dut.s_axil_wdata, data)
    ctx.set(dut.s_axil_wstrb, strb)
    ctx.set(dut.s_axil_awvalid, 1)
    ctx.set(dut.s_axil_wvalid, 1)
    ctx.set(dut.s_axil_bready, 1)


async def apb_access(ctx, dut, addr, write, data=0, strb=0xF):
    """One APB access (setup phase, then access phases until PREADY); returns (resp as
    AXI's OKAY / SLVERR, PRDATA)."""
    ctx.set(dut.s_apb_paddr, addr)
    ctx.set(dut.s_apb_pwrite, int(write))
    ctx.set(dut.s_apb_pwdata, data if write else 0)
    ctx.set(dut.s_apb_pstrb, strb if write else 0)
    ctx.set(dut.s_apb_psel, 1)
    ctx.set(dut.s_apb_penable, 0)
    await ctx.tick()
    ctx.set(dut.s_apb_penable, 1)
    while not ctx.get(dut.s_apb_pready):
        await ctx.tick()
    resp = SLVERR if ctx.get(dut.s_apb_pslverr) else OKAY
    rdata = ctx.get(dut.s_apb_prdata)
    await ctx.tick()
    ctx.set(dut.s_apb_psel, 0)
    ctx.set(dut.s_apb_penable, 0)
    return resp, rdata


async def axil_write(ctx, dut, addr, data, strb=0xF):
    """A write on the top's control port (AXI4-Lite, or APB on an APB top); returns the
    response."""
    if hasattr(dut, "s_apb_psel"):
        return (await apb_access(ctx, dut, addr, True, data, strb))[0]
    _write(ctx, dut, addr, data, strb)
    while not ctx.get(dut.s_axil_awready):
        await ctx.tick()
    assert ctx.get(dut.s_axil_wready)
    await ctx.tick()
    ctx.set(dut.s_axil_awvalid, 0)
    ctx.set(dut.s_axil_wvalid, 0)
    while not ctx.get(dut.s_axil_bvalid):
        await ctx.tick()
    resp = ctx.get(dut.s_axil_bresp)
    await ctx.tick()
    return resp


async def axil_read(ctx, dut, addr):
    """A read on the top's control port; returns (response, data)."""
    if hasattr(dut, "s_apb_psel"):
        return await apb_access(ctx, dut, addr, False)
    ctx.set(dut.s_axil_araddr, addr)
    ctx.set(dut.s_axil_arvalid, 1)
    ctx.set(dut.s_axil_rready, 1)
    while not ctx.get(dut.s_axil_arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(dut.s_axil_arvalid, 0)
    while not ctx.get(dut.s_axil_rvalid):
        await ctx.tick()
    resp, data = ctx.get(dut.s_axil_rresp), ctx.get(dut.s_axil_rdata)
    await ctx.tick()
    return resp, data


@pytest.mark.parametrize("name", ["nmpu_tiny", "nmpu_images", "nmpu_apb", "ldpu_small",
                                  "essop_tiny"])
def test_register_block_follows_the_compiled_map(name, outputs):
    """Read and write every word address below the window as the compiled SystemRDL says:
    readable registers answer OKAY with their reset or constant values, write-only and unmapped
    ones SLVERR; every rw field takes all-ones and reads it back; writes to read-only and
    unmapped addresses answer SLVERR and change no readable register."""
    cfg = PERIPHERY_PRESETS[name]
    model = RegModel.from_file(outputs[name]["rdl"])
    dut = Periphery(cfg)
    by_addr = {r.address: r for r in model.regs.values()}
    window = model.mem[1] if model.mem else 1 << periphery_regmap(cfg).addr_bits
    seen = {}
    limited = []
    rm = periphery_regmap(cfg)

    async def snapshot(ctx):
        out = {}
        for a, r in by_addr.items():
            if r.readable:
                out[a] = await axil_read(ctx, dut, a)
        return out

    async def bench(ctx):
        before = await snapshot(ctx)
        for a in range(0, window, 4):
            r = by_addr.get(a)
            resp, data = await axil_read(ctx, dut, a)
            seen[a] = (resp, data)
            assert resp == (OKAY if r is not None and r.readable else SLVERR), hex(a)
        for a, r in by_addr.items():
            if r.writable and r.readable:
                # the largest legal value of every field (all ones, or the field's `maximum`);
                # one above a field's maximum is refused and changes nothing
                fields = rm.reg(r.name).fields
                top = {f.name: (1 << f.width) - 1 if f.maximum is None else f.maximum
                       for f in fields}
                ones = sum(top[name] << lsb for name, (lsb, w) in r.fields.items())
                assert await axil_write(ctx, dut, a, ones) == OKAY, r.name
                assert await axil_read(ctx, dut, a) == (OKAY, ones), r.name
                for f in fields:
                    if f.maximum is not None:
                        above = ones + (1 << f.lsb)
                        assert await axil_write(ctx, dut, a, above) == SLVERR, f"{r.name}.{f.name}"
                        assert await axil_read(ctx, dut, a) == (OKAY, ones), r.name
                        limited.append(f"{r.name}.{f.name}")
                assert await axil_write(ctx, dut, a, 0) == OKAY
        for a in range(0, window, 4):
            r = by_addr.get(a)
            if r is None or not r.writable:
                assert await axil_write(ctx, dut, a, 0xFFFFFFFF) == SLVERR, hex(a)
            elif r.readable:
                assert await axil_write(ctx, dut, a, 1, strb=0x3) == SLVERR, f"{hex(a)} strobe"
        # the window: a slot's words up to `words` of columns below `columns`; the rest refused
        w = rm.window
        for a in range(w.offset, 2 * w.offset, 4) if w else ():
            slot, sub = divmod((a - w.offset) // 4, w.stride)
            legal = slot < w.entries and sub < w.words
            assert await axil_write(ctx, dut, a, 0) == (OKAY if legal else SLVERR), hex(a)
        after = await snapshot(ctx)
        status = model["STATUS"]
        for a, v in after.items():
            if a == status.address:  # only bus_error moved
                lsb, _ = status.fields["bus_error"]
                assert v[1] == before[a][1] | (1 << lsb)
            else:
                assert v == before[a], by_addr[a].name

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # the fields with a range check: IMAGE.base of a top with 1 (0) or 3 images (0 .. 2)
    assert limited == (["IMAGE.base"] if name in ("nmpu_tiny", "nmpu_images") else []), limited
    ident = model["ID"].decode(seen[model.address("ID")][1])
    assert ident == {f.name: f.value for f in rm.reg("ID").fields}
    geo = model["GEOMETRY"].decode(seen[model.address("GEOMETRY")][1])
    assert geo == {name: getattr(cfg.core, name) for name in geo}
    assert set(geo) == ({"rows", "cols"} if cfg.unit == "essop" else {"columns", "lanes"})


# -- C ------------------------------------------------------------------------------------------

def _cc():
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc): `make setup` installs g++/gcc")
    return cc


@pytest.mark.parametrize("name", list(PERIPHERY_PRESETS))
def test_c_header_compiles(name, outputs, tmp_path):
    header = outputs[name]["header"]
    src = tmp_path / "use.c"
    src.write_text(f'#include "{header.name}"\nint main(void) {{ return sizeof(aimc_periph_t) '
                   f'== 0; }}\n')
    proc = subprocess.run([_cc(), "-std=c11", "-Wall", "-Werror", "-I", str(header.parent),
                           "-o", str(tmp_path / "use"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# the C examples: the NMPU's (sw/example.c) and the ESSOP's (sw/example_essop.c, whose seeds sit
# in LAYER0 on essop_tiny and seed_d in LAYER1 on essop_paper)
C_EXAMPLES = {"nmpu_small": "example.c", "nmpu_paper": "example.c",
              "essop_tiny": "example_essop.c", "essop_paper": "example_essop.c"}


def _cc_example(example, include, tmp_path):
    return subprocess.run([_cc(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(include),
                           "-c", "-o", str(tmp_path / "example.o"), str(ROOT / "sw" / example)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("name", list(C_EXAMPLES))
def test_c_example_compiles(name, outputs, tmp_path):
    proc = _cc_example(C_EXAMPLES[name], outputs[name]["header"].parent, tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name,field", [("nmpu_small", "LAYER0__SHIFT_"),
                                        ("nmpu_small", "IMAGE__BASE_"),
                                        ("essop_tiny", "LAYER0__SEED_D_"),
                                        ("essop_paper", "LAYER1__SEED_D_"),
                                        ("essop_tiny", "JOB__PRODUCTS_")])
def test_c_example_fails_on_a_renamed_field(name, field, outputs, tmp_path):
    """The examples really use the generated names: without the field they do not build."""
    header = outputs[name]["header"]
    assert field in header.read_text()
    (tmp_path / header.name).write_text(header.read_text().replace(field, "RENAMED__X_"))
    assert _cc_example(C_EXAMPLES[name], tmp_path, tmp_path).returncode != 0


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(unit="fp16outer"), "`unit` must be one of nmpu, ldpu, essop"),
    (dict(unit="essop", core=NMPU_PRESETS["tiny"]),
     "`core` of a essop periphery must be a ESSOPConfig"),
    (dict(unit="essop", core=dataclasses.replace(ESSOP_PRESETS["tiny"], acc_max=2)),
     "must read out every product .acc_max 1., not acc_max 2"),
    (dict(unit="ldpu", core=NMPU_PRESETS["tiny"]), "`core` of a ldpu periphery must be a LDPUConfig"),
    (dict(job_bits=0), r"`job_bits` must be in \[1, 32\], not 0"),
    (dict(job_bits=33), r"`job_bits` must be in \[1, 32\], not 33"),
    (dict(job_bits=True), "`job_bits` must be an int"),
    (dict(images=0), r"`images` must be in \[1, 256\], not 0"),
    (dict(bus="ahb"), "`bus` must be one of axil, apb, not 'ahb'"),
    (dict(images=257), r"`images` must be in \[1, 256\], not 257"),
    (dict(images=2.0), "`images` must be an int, not float"),
    (dict(unit="essop", core=ESSOP_PRESETS["tiny"], images=2),
     "`images` of an essop periphery must be 1 .the unit has no parameter memory., not 2"),
    (dict(name="Bad Name"), "`name` must be lower-case"),
])
def test_bad_configs_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PeripheryConfig(**kwargs)


def test_config_round_trip_and_unknown_fields():
    for cfg in PERIPHERY_PRESETS.values():
        assert PeripheryConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.tag == cfg.name
    custom = PeripheryConfig(name="mine", core=NMPUConfig(name="c", columns=8, lanes=8))
    assert custom.tag.startswith("mine-")
    with pytest.raises(ValueError, match="unknown periphery config field.*lanes"):
        PeripheryConfig.from_dict({"name": "x", "lanes": 4})
    with pytest.raises(ValueError, match="`unit` must be one of"):
        PeripheryConfig.from_dict({"unit": "fp16outer", "core": {}})
    with pytest.raises(ValueError, match="unknown LDPU config field"):
        PeripheryConfig.from_dict({"unit": "ldpu", "core": {"lanes": 2}})


def test_bad_maps_are_named():
    with pytest.raises(ValueError, match="field b overlaps"):
        Reg("R", 0, "rw", (Field("a", 0, 4, ""), Field("b", 3, 2, "")), "")
    with pytest.raises(ValueError, match="not word aligned"):
        Reg("R", 2, "rw", (Field("a", 0, 4, ""),), "")
    with pytest.raises(ValueError, match="does not fit 32 bits"):
        Reg("R", 0, "rw", (Field("a", 30, 4, ""),), "")
    with pytest.raises(ValueError, match="`sw` must be one of"):
        Reg("R", 0, "x", (Field("a", 0, 4, ""),), "")
    with pytest.raises(ValueError, match="field a: `maximum` 3 must be below"):
        Field("a", 0, 2, "", maximum=3)
    regs = pack_fields([("a", 20, ""), ("b", 20, ""), ("c", 40, "")], 0x20, "L", "")
    assert [[(f.name, f.lsb, f.width) for f in r.fields] for r in regs] == [
        [("a", 0, 20)], [("b", 0, 20)], [("c_0", 0, 32)], [("c_1", 0, 8)]]
    model = RegModel.from_file(write_outputs(periphery_regmap(PERIPHERY_PRESETS["nmpu_tiny"]),
                                             ROOT / "build" / "test_regmap", html=False)["rdl"])
    with pytest.raises(ValueError, match="LAYER0.shift is 3 bits: 8 does not fit"):
        model["LAYER0"].encode(shift=8)
    with pytest.raises(KeyError, match="no field 'shfit'"):
        model["LAYER0"].encode(shfit=1)
